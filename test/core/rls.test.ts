/**
 * The resource list server end to end (RFC 4662 over RFC 4826), the lead's own cases: a list of
 * local resources over UDP, its first full-state NOTIFY and a partial one, the 421 without
 * eventlist, and the list's change through XCAP. (test/rls/ has the suite from the RFC's text.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { publish, pidf, subscribe, subState, subscribeWinfo, parseWinfo, putRules, rules } from '../support/presence.js';
import { Xcap, CT, NS } from '../support/xcap-http.js';
import type { SipRequest } from '../../transport/message.js';
import { parseListNotify, type MimePart } from '../support/rlmi.js';
import { rlsServices, entry } from '../support/rls.js';

let node: RunningNode;
let xcap: Xcap;
before(async () => {
  node = await startNode({ force_active: 1, waitn_time: 0 });
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

/** An rls-services document of presence lists, service URI → its entries (test/support/rls.ts writes it). */
function rlsDoc(services: Record<string, string[]>): string {
  return rlsServices(
    Object.entries(services).map(([uri, entries]) => ({ uri, list: entries.map((e) => entry(e)).join(''), packages: ['presence'] })),
  );
}

/**
 * A list NOTIFY as these tests read it, through the strict reader of test/support/rlmi.ts (it
 * refuses a body whose framing, start, root type or cids are wrong): each resource's first
 * instance, and the parts other than the root.
 */
function rlmi(n: SipRequest): {
  version: number;
  fullState: boolean;
  resources: Array<{ uri: string; state?: string; cid?: string }>;
  parts: MimePart[];
} {
  const l = parseListNotify(n);
  return {
    version: l.list.version,
    fullState: l.list.fullState,
    resources: l.list.resources.map((r) => ({ uri: r.uri, state: r.instances[0]?.state, cid: r.instances[0]?.cid })),
    parts: [...l.parts.values()],
  };
}

test('a list of local resources: 200, full state with each resource, then partial state naming only what changed', async () => {
  const service = 'sip:rls-buddies@example.com';
  const alice = 'sip:rls-alice@example.com';
  const bob = 'sip:rls-bob@example.com';
  const ua = await TestUa.open('udp', node.udpPort);
  const stranger = await TestUa.open('udp', node.udpPort);
  const owner = ua.aor;
  const put = await xcap.put(`/rls-services/users/${owner}/index`, rlsDoc({ [service]: [alice, bob] }), CT.rlsServices);
  assert.equal(put.status, 201, put.text);
  try {
    // Someone else's SUBSCRIBE to the URI is no list subscription (rls_list_subscribers = owner):
    // the presence server answers it, as Kamailio passes it on.
    const other = await subscribe(stranger, service, { expires: 0, headers: [['supported', 'eventlist']] });
    assert.equal(other.res.status, 200);
    const on = await other.dialog.nextNotify();
    assert.equal(on.headers.get('require'), undefined);
    assert.doesNotMatch(on.headers.get('content-type') ?? '', /multipart/);

    assert.equal((await publish(ua, alice, { body: pidf(alice, 'a1', 'open') })).status, 200);

    const no = await subscribe(ua, service, { expires: 300 });
    assert.equal(no.res.status, 421);
    assert.equal(no.res.headers.get('require'), 'eventlist');

    const s = await subscribe(ua, service, {
      expires: 300,
      headers: [
        ['supported', 'eventlist'],
        ['accept', 'application/pidf+xml, application/rlmi+xml, multipart/related'],
      ],
    });
    assert.equal(s.res.status, 200);
    const n0 = await s.dialog.nextNotify();
    assert.equal(n0.headers.get('require'), 'eventlist');
    assert.match(subState(n0), /^active/);
    const d0 = rlmi(n0);
    assert.equal(d0.version, 0);
    assert.equal(d0.fullState, true);
    assert.deepEqual(
      d0.resources.map((r) => r.uri),
      [alice, bob],
    );
    const a = d0.resources[0]!;
    assert.equal(a.state, 'active');
    const aPart = d0.parts.find((p) => p.headers.get('content-id') === `<${a.cid}>`);
    assert.ok(aPart, 'the cid names a part');
    assert.match(aPart.body, /<basic>open<\/basic>/);

    assert.equal((await publish(ua, bob, { body: pidf(bob, 'b1', 'closed') })).status, 200);
    const n1 = await s.dialog.nextNotify();
    const d1 = rlmi(n1);
    assert.equal(d1.version, 1);
    assert.equal(d1.fullState, false);
    assert.deepEqual(
      d1.resources.map((r) => r.uri),
      [bob],
    );

    // The list changes through XCAP: a full-state NOTIFY with the new member.
    const carol = 'sip:rls-carol@example.com';
    assert.equal(
      (await xcap.put(`/rls-services/users/${owner}/index`, rlsDoc({ [service]: [alice, bob, carol] }), CT.rlsServices)).status,
      200,
    );
    const n2 = await s.dialog.nextNotify();
    const d2 = rlmi(n2);
    assert.equal(d2.fullState, true);
    assert.equal(d2.version, 2);
    assert.deepEqual(
      d2.resources.map((r) => r.uri),
      [alice, bob, carol],
    );

    // /metrics shows the list subscription and the resources it watches inside the node.
    const metrics = await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`).then((r) => r.text());
    assert.match(metrics, /^presenced_rls_list_subscriptions\{[^}]*\} 1$/m);
    assert.match(metrics, /^presenced_rls_backend_subscriptions\{kind="local"[^}]*\} 3$/m);
    assert.match(metrics, /^presenced_rls_backend_subscriptions\{kind="sip"[^}]*\} 0$/m);

    // Unsubscribe: 200 and a final NOTIFY.
    const un = await s.dialog.request(0);
    assert.equal(un.status, 200);
    const n3 = await s.dialog.nextNotify();
    assert.match(subState(n3), /^terminated/);
  } finally {
    await ua.close();
    await stranger.close();
  }
});

test('a resource served elsewhere: a back-end SUBSCRIBE through outbound_proxy, its NOTIFYs folded into the list', async () => {
  // The "other node" serves b.example.com; this list server's own domain is a.example.com.
  const other = await startNode({ force_active: 1 });
  const lists = await startNode({
    force_active: 1,
    waitn_time: 0,
    outbound_proxy: `sip:127.0.0.1:${other.udpPort}`,
    rls_local_domains: ['a.example.com'],
  });
  const ua = await TestUa.open('udp', lists.udpPort);
  const publisher = await TestUa.open('udp', other.udpPort);
  try {
    const owner = ua.aor;
    const service = 'sip:remote-buddies@a.example.com';
    const local = 'sip:carl@a.example.com';
    const remote = 'sip:dora@b.example.com';
    const x = new Xcap(lists.xcapPort);
    assert.equal((await x.put(`/rls-services/users/${owner}/index`, rlsDoc({ [service]: [local, remote] }), CT.rlsServices)).status, 201);
    const s = await subscribe(ua, service, { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(s.res.status, 200);
    // Full state at once; the remote resource shows its instance once its back-end NOTIFY came.
    let seen: ReturnType<typeof rlmi> | undefined;
    for (;;) {
      const d = rlmi(await s.dialog.nextNotify(60_000));
      const r = d.resources.find((x) => x.uri === remote);
      if (r?.state === 'active') {
        seen = d;
        break;
      }
    }
    assert.ok(seen);
    // dora publishes on the other node: her state reaches the list through the back-end subscription.
    assert.equal((await publish(publisher, remote, { body: pidf(remote, 'd1', 'open', 'from afar') })).status, 200);
    for (;;) {
      const d = rlmi(await s.dialog.nextNotify(60_000));
      const r = d.resources.find((x) => x.uri === remote);
      const part = r?.cid ? d.parts.find((p) => p.headers.get('content-id') === `<${r.cid}>`) : undefined;
      if (part && /from afar/.test(part.body)) {
        assert.equal(d.fullState, false);
        assert.deepEqual(
          d.resources.map((x) => x.uri),
          [remote],
          'partial state names only the resource that changed',
        );
        break;
      }
    }
    // The other node sees the list subscriber as dora's watcher (the back-end's From).
    const watchers = await fetch(`http://127.0.0.1:${other.rpcPort}/RPC`, {
      method: 'POST',
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'presence.watcher_list', params: [remote, 'presence'] }),
    }).then((r) => r.json() as Promise<{ result: Array<{ watcher_uri: string }> }>);
    assert.deepEqual(
      watchers.result.map((w) => w.watcher_uri),
      [ua.aor],
    );
  } finally {
    await ua.close();
    await publisher.close();
    await lists.stop();
    await other.stop();
  }
});

test("a list member served here is the owner's watcher: pending in her watcher info, active in the list once her rules allow it", async () => {
  const n = await startNode({ force_active: 0, waitn_time: 0 });
  const bobUa = await TestUa.open('udp', n.udpPort);
  const aliceUa = await TestUa.open('tcp', n.tcpPort);
  try {
    const alice = 'sip:wl-alice@example.com';
    const service = `sip:bobs-list@example.com`;
    const x = new Xcap(n.xcapPort);
    assert.equal((await x.put(`/rls-services/users/${bobUa.aor}/index`, rlsDoc({ [service]: [alice] }), CT.rlsServices)).status, 201);
    // alice watches her own watchers.
    const w = await subscribeWinfo(aliceUa, alice, alice);
    assert.equal(w.res.status, 200);
    assert.deepEqual(parseWinfo((await w.dialog.nextNotify()).body.toString()).watchers, []);

    // bob subscribes to his list: alice has no rule for him, so she is pending there...
    const s = await subscribe(bobUa, service, { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(s.res.status, 200);
    const d0 = rlmi(await s.dialog.nextNotify());
    assert.equal(d0.resources[0]!.state, 'pending');
    // ...and bob is a pending watcher in alice's watcher info.
    const p1 = parseWinfo((await w.dialog.nextNotify()).body.toString());
    assert.deepEqual(
      p1.watchers.map((x) => [x.uri, x.status, x.event]),
      [[bobUa.aor, 'pending', 'subscribe']],
    );

    // alice allows bob: his list shows her active, her watcher info says approved.
    assert.equal(await putRules(n.xcapPort, alice, rules([{ id: 'bob', who: `<cr:one id="${bobUa.aor}"/>`, handling: 'allow' }])), 201);
    const d1 = rlmi(await s.dialog.nextNotify());
    assert.equal(d1.fullState, false);
    assert.equal(d1.resources[0]!.state, 'active');
    const p2 = parseWinfo((await w.dialog.nextNotify()).body.toString());
    assert.deepEqual(
      p2.watchers.map((x) => [x.uri, x.status, x.event]),
      [[bobUa.aor, 'active', 'approved']],
    );
    assert.equal(p2.watchers[0]!.id, p1.watchers[0]!.id, 'the same <watcher> id');
  } finally {
    await bobUa.close();
    await aliceUa.close();
    await n.stop();
  }
});

test("references: <external>, <entry-ref> and <resource-list> are followed into the owner's own documents only, nested lists flattened, each resource once", async () => {
  const ua = await TestUa.open('tcp', node.tcpPort);
  try {
    const me = ua.aor;
    const someone = 'sip:someone-else@example.com';
    const mine = `<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="${NS.rl}">
  <list name="friends"><entry uri="sip:ref-f1@example.com"><display-name>F One</display-name></entry><list name="inner"><entry uri="sip:ref-f2@example.com"/></list></list>
  <list name="work"><entry uri="sip:ref-w1@example.com"/><entry uri="sip:ref-f1@example.com"/></list>
</resource-lists>`;
    const theirs = `<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="${NS.rl}"><list name="secret"><entry uri="sip:ref-secret@example.com"/></list></resource-lists>`;
    assert.equal((await xcap.put(`/resource-lists/users/${me}/index`, mine, CT.resourceLists)).status, 201);
    assert.equal((await xcap.put(`/resource-lists/users/${someone}/index`, theirs, CT.resourceLists)).status, 201);
    const base = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
    const listSel = (xui: string, name: string): string =>
      `resource-lists/users/${xui}/index/~~/resource-lists/list%5b@name=%22${name}%22%5d`;
    const svc = 'sip:ref-service@example.com';
    const svc2 = 'sip:ref-service2@example.com';
    const doc = `<?xml version="1.0" encoding="UTF-8"?>
<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}">
  <service uri="${svc}">
    <list name="all">
      <rl:external anchor="${base}/${listSel(me, 'friends')}"/>
      <rl:external anchor="${base}/${listSel(someone, 'secret')}"/>
      <rl:entry-ref ref="${listSel(me, 'work')}/entry%5b@uri=%22sip:ref-w1@example.com%22%5d"/>
      <rl:entry uri="sip:ref-f2@example.com"/>
    </list>
    <packages><package>presence</package></packages>
  </service>
  <service uri="${svc2}">
    <resource-list>${base}/${listSel(me, 'work')}</resource-list>
  </service>
</rls-services>`;
    assert.equal((await xcap.put(`/rls-services/users/${me}/index`, doc, CT.rlsServices)).status, 201);
    const s = await subscribe(ua, svc, { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(s.res.status, 200);
    const d = rlmi(await s.dialog.nextNotify());
    assert.deepEqual(
      d.resources.map((r) => r.uri),
      ['sip:ref-f1@example.com', 'sip:ref-f2@example.com', 'sip:ref-w1@example.com'],
      "friends (nested list flattened), the entry-ref, the duplicate dropped; the other user's list left out",
    );
    const s2 = await subscribe(ua, svc2, { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(s2.res.status, 200);
    const d2 = rlmi(await s2.dialog.nextNotify());
    assert.deepEqual(
      d2.resources.map((r) => r.uri),
      ['sip:ref-w1@example.com', 'sip:ref-f1@example.com'],
    );
  } finally {
    await ua.close();
  }
});

test('limits: each resource of a list counts toward max_subscriptions; beyond, the list SUBSCRIBE gets 503 with Retry-After', async () => {
  const n = await startNode({ force_active: 1, max_subscriptions: 12 });
  const ua = await TestUa.open('udp', n.udpPort);
  try {
    const x = new Xcap(n.xcapPort);
    const ten = Array.from({ length: 10 }, (_, i) => `sip:lim-${i}@example.com`);
    const doc = rlsDoc({ 'sip:lim-a@example.com': ten, 'sip:lim-b@example.com': ten });
    assert.equal((await x.put(`/rls-services/users/${ua.aor}/index`, doc, CT.rlsServices)).status, 201);
    const a = await subscribe(ua, 'sip:lim-a@example.com', { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(a.res.status, 200);
    const b = await subscribe(ua, 'sip:lim-b@example.com', { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(b.res.status, 503, '10 + 10 resources are more than 12 subscriptions');
    assert.ok(b.res.headers.get('retry-after'));
    // Once the first list is gone, the second fits.
    assert.equal((await a.dialog.request(0)).status, 200);
    const again = await subscribe(ua, 'sip:lim-b@example.com', { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(again.res.status, 200);
  } finally {
    await ua.close();
    await n.stop();
  }
});

test('a back-end SUBSCRIBE refused for now (503 with Retry-After) is tried again, and the resource shows its state once it is taken', async () => {
  const other = await startNode({ force_active: 1, max_subscriptions: 1 });
  const lists = await startNode({
    force_active: 1,
    waitn_time: 0,
    outbound_proxy: `sip:127.0.0.1:${other.udpPort}`,
    rls_local_domains: ['a.example.com'],
  });
  const ua = await TestUa.open('udp', lists.udpPort);
  const direct = await TestUa.open('udp', other.udpPort);
  try {
    const remote = 'sip:busy@b.example.com';
    // The other node's only subscription slot is taken.
    const held = await subscribe(direct, 'sip:someone@b.example.com', { expires: 300 });
    assert.equal(held.res.status, 200);
    const x = new Xcap(lists.xcapPort);
    assert.equal(
      (await x.put(`/rls-services/users/${ua.aor}/index`, rlsDoc({ 'sip:retry-list@a.example.com': [remote] }), CT.rlsServices)).status,
      201,
    );
    const s = await subscribe(ua, 'sip:retry-list@a.example.com', { expires: 300, headers: [['supported', 'eventlist']] });
    assert.equal(s.res.status, 200);
    const first = rlmi(await s.dialog.nextNotify());
    assert.notEqual(first.resources[0]?.state, 'active');
    await lists.waitForLog((l) => l.msg === 'back-end SUBSCRIBE failed for now: trying again', 60_000);
    // The slot frees: the next try is taken, and the list shows the resource active.
    assert.equal((await held.dialog.request(0)).status, 200);
    for (;;) {
      const d = rlmi(await s.dialog.nextNotify(60_000));
      if (d.resources.find((r) => r.uri === remote)?.state === 'active') break;
    }
  } finally {
    await ua.close();
    await direct.close();
    await lists.stop();
    await other.stop();
  }
});
