/**
 * presence.explain: why a watcher sees what it sees — its subscription and dialog, the
 * pres-rules rule that matched (or that none did), the last NOTIFY with its outcome and body,
 * and the publications behind it. Driven over SIP and XCAP, read over the RPC port.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { publish, pidf, watch, uniqueUri, bodyOf } from '../support/presence.js';
import { rpc, rpcResult } from '../support/rpc.js';
import { Xcap, presRules, CT } from '../support/xcap-http.js';

let node: RunningNode;

before(async () => {
  node = await startNode();
});

after(async () => {
  await node?.stop();
});

interface Explained {
  presentity_uri: string;
  subscriptions:
    | string
    | Array<{
        state: string;
        sub_handling: string;
        dialog: { call_id: string };
        contact: string;
        last_notify: string | { cseq: number; outcome: string; body: string | null; subscription_state: string };
      }>;
  authorization: {
    package_policy: string;
    rules: { document: string | null; matched_rules?: string[]; transformations?: unknown; verdict: string };
  };
  publications: Array<{ etag: string; content_type: string }>;
}

test('explain names the matched rule, the last NOTIFY and its outcome, and the publications; a watcher no rule matches is pending and says why', async () => {
  const presentity = uniqueUri('explained');
  const publisher = await TestUa.open('udp', node.udpPort);
  const friend = await TestUa.open('udp', node.udpPort);
  const stranger = await TestUa.open('tcp', node.tcpPort);
  try {
    const xcap = new Xcap(node.xcapPort);
    const put = await xcap.put(
      `/pres-rules/users/${presentity}/index`,
      presRules([{ id: 'friends', handling: 'allow', identity: friend.aor }]),
      CT.presRules,
    );
    assert.ok(put.status === 201 || put.status === 200, `PUT pres-rules: ${put.status} ${put.text}`);
    const pub = await publish(publisher, presentity, { body: pidf(presentity, 'desk', 'open', 'in the office'), expires: 600 });
    assert.equal(pub.status, 200);
    const etag = pub.headers.get('sip-etag')!;
    const { first } = await watch(friend, presentity);

    const e = await rpcResult<Explained>(node.rpcPort, 'presence.explain', [presentity, 'presence', friend.aor]);
    assert.equal(e.presentity_uri, presentity);
    assert.ok(Array.isArray(e.subscriptions) && e.subscriptions.length === 1, JSON.stringify(e.subscriptions));
    const sub = e.subscriptions[0]!;
    assert.equal(sub.state, 'active');
    assert.equal(sub.sub_handling, 'allow');
    assert.equal(sub.dialog.call_id, first.callId);
    assert.equal(e.authorization.package_policy, 'allow');
    assert.deepEqual(e.authorization.rules.matched_rules, ['friends']);
    assert.match(e.authorization.rules.document ?? '', /^pres-rules\/users\/.+\/index$/);
    assert.ok(typeof sub.last_notify === 'object');
    assert.equal(sub.last_notify.cseq, first.cseq.seq, 'the NOTIFY the watcher got');
    assert.equal(sub.last_notify.outcome, '200 accepted');
    // The body the watcher got, as it got it: this rule provides no attribute, so RFC 5025 leaves
    // an empty document, and explain shows that (and the transformations that made it).
    assert.equal(sub.last_notify.body, bodyOf(first));
    assert.doesNotMatch(sub.last_notify.body ?? '', /in the office/);
    assert.ok(e.authorization.rules.transformations, "the rule's transformations");
    assert.match(sub.last_notify.subscription_state, /^active;expires=\d+/);
    assert.deepEqual(
      e.publications.map((x) => x.etag),
      [etag],
    );

    // No rule for this one: pending, and the answer says so.
    const other = await watch(stranger, presentity);
    assert.equal(other.res.status, 200);
    const s = await rpcResult<Explained>(node.rpcPort, 'presence.explain', [presentity, 'presence', stranger.aor]);
    assert.ok(Array.isArray(s.subscriptions));
    assert.equal(s.subscriptions[0]!.state, 'pending');
    assert.equal(s.authorization.package_policy, 'confirm');
    assert.deepEqual(s.authorization.rules.matched_rules, []);
    assert.match(s.authorization.rules.verdict, /no rule matches/);

    // Nobody: no subscription, and no pres-rules document for another presentity.
    const n = await rpcResult<Explained>(node.rpcPort, 'presence.explain', [uniqueUri('nobody'), 'presence', 'sip:nobody@example.com']);
    assert.equal(n.subscriptions, 'no live subscription of this watcher');
    assert.equal(n.authorization.rules.document, null);
    assert.match(n.authorization.rules.verdict, /no pres-rules document/);
  } finally {
    await publisher.close();
    await friend.close();
    await stranger.close();
  }
});

test('explain refuses wrong params with a JSON-RPC error that says what was expected', async () => {
  for (const params of [
    [],
    ['sip:a@example.com', 'presence'],
    ['not a uri', 'presence', 'sip:b@example.com'],
    ['sip:a@example.com', 'no-such-event', 'sip:b@example.com'],
  ]) {
    const r = await rpc(node.rpcPort, 'presence.explain', params);
    assert.equal(r.error?.code, -32602, JSON.stringify(params));
    assert.match(r.error?.message ?? '', /presence\.explain presentity_uri event watcher_uri|not a presentity URI|unknown event/);
  }
});
