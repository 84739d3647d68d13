/**
 * The resource list server (RFC 4662 over RFC 4826 rls-services) with local resources, black
 * box over real sockets: lists are PUT through the node's XCAP server, resources PUBLISHed, a
 * list subscriber SUBSCRIBEs to the service URI and reads every NOTIFY body strictly
 * (test/support/rlmi.ts). waitn_time is 0 here: every change goes out at once (coalescing is
 * in waitn.test.ts). See test/rls/README.md for the rules and which test covers each.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { pidf, publish, putRules, rules, showsOpen, parseSubState, uniqueUri, tuplesOf } from '../support/presence.js';
import { JsSipClient, SubscriberEvents } from '../support/ws-client.js';
import { SipRequest, SipResponse } from '../../transport/message.js';
import {
  ListView,
  entry,
  hasOptionTag,
  putLists,
  putServices,
  refreshList,
  rlsServices,
  subscribeList,
  type ResourceView,
  docFor,
} from '../support/rls.js';
import { parseListNotify, urisOf } from '../support/rlmi.js';

let node: RunningNode;
let xcap: Xcap;
let ua: TestUa;

before(async () => {
  node = await startNode({ listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'], waitn_time: 0 });
  xcap = new Xcap(node.xcapPort);
  ua = await TestUa.open('udp', node.udpPort);
});
after(async () => {
  await ua.close();
  assert.equal(await node.stop(), 0, `the node exits cleanly; stderr: ${node.stderr.join('')}`);
});

const allow = (presentity: string, watcher: string): Promise<number> =>
  putRules(node.xcapPort, presentity, rules([{ id: 'w', who: `<cr:one id="${watcher}"/>`, handling: 'allow' }]));
const block = (presentity: string, watcher: string): Promise<number> =>
  putRules(node.xcapPort, presentity, rules([{ id: 'w', who: `<cr:one id="${watcher}"/>`, handling: 'block' }]));

async function published(uri: string, basic: 'open' | 'closed', note?: string): Promise<void> {
  const r = await publish(ua, uri, { body: pidf(uri, `t-${basic}`, basic, note), expires: 600 });
  assert.equal(r.status, 200, `PUBLISH ${uri} → ${r.status} ${r.reason}`);
}

const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);

/** Common checks of every list NOTIFY (RFC 4662 §4.5, §5; RFC 6665 §8.2.1). */
function checkListNotify(n: SipRequest, service: string): void {
  assert.ok(
    hasOptionTag(n, 'require', 'eventlist'),
    `NOTIFY must carry Require: eventlist (RFC 4662 §4.5); got ${n.headers.get('require')}`,
  );
  assert.equal((n.headers.get('event') ?? '').split(';')[0]!.trim(), 'presence', 'Event: the subscribed package');
  const parsed = parseListNotify(n);
  assert.equal(parsed.list.uri, service, '<list uri> is the service URI');
}

test('list of local resources: 200, full-state NOTIFY (version 0, allow→active, no rule→pending, block→terminated), partial NOTIFY on a change, rule change, refresh → full state, unsubscribe → final NOTIFY', async () => {
  const owner = ua.aor;
  const service = uniqueUri('list');
  const [a, b, c] = [uniqueUri('a'), uniqueUri('b'), uniqueUri('c')];
  assert.equal(await allow(a, ua.aor), 201);
  assert.equal(await block(c, ua.aor), 201);
  await published(a, 'open', 'at desk');
  await published(b, 'open', 'b is in');
  await published(c, 'open', 'c is in');
  await putServices(xcap, owner, rlsServices([{ uri: service, list: entry(a, 'Alice') + entry(b) + entry(c), packages: ['presence'] }]));

  const { res, dialog } = await subscribeList(ua, service, { expires: 600 });
  assert.equal(res.status, 200, `list SUBSCRIBE → ${res.status} ${res.reason}`);
  const expires = Number(res.headers.get('expires'));
  assert.ok(expires > 0 && expires <= 600, `Expires ${res.headers.get('expires')}`);
  assert.ok(res.toTag, '2xx has a To tag');

  const view = new ListView();
  const first = await dialog.nextNotify();
  checkListNotify(first, service);
  const ss = parseSubState(first);
  assert.equal(ss.state, 'active', first.headers.get('subscription-state'));
  assert.ok(ss.expires !== undefined && ss.expires <= expires, `Subscription-State expires ${ss.expires} ≤ ${expires}`);
  assert.match(first.headers.get('content-type') ?? '', /^multipart\/related\s*;/i);
  const f = view.apply(first);
  assert.equal(f.list.version, 0, 'the first NOTIFY has version 0 (RFC 4662 §5.2)');
  assert.equal(f.list.fullState, true, 'the first NOTIFY has full state (RFC 4662 §4.5)');
  assert.deepEqual(urisOf(f), [a, b, c], 'every resource, in document order');
  for (const part of f.parts.values())
    assert.equal(
      part.headers.get('content-transfer-encoding')?.toLowerCase(),
      'binary',
      'parts carry Content-Transfer-Encoding: binary (contract)',
    );

  const va = view.resources.get(a)!;
  assert.equal(va.state, 'active', 'a allows the subscriber: active');
  assert.deepEqual(va.names, ['Alice'], '<display-name> kept as <name>');
  assert.ok(va.body, 'an active instance carries a cid naming its state part');
  assert.match(va.body.contentType, /^application\/pidf\+xml/);
  assert.equal(basicOf(va), 'open');
  assert.match(va.body.body, new RegExp(`entity="${a}"`));

  const vb = view.resources.get(b)!;
  assert.equal(vb.state, 'pending', 'no rule for the subscriber: pending (RFC 5025 default confirm)');
  assert.ok(!vb.body || !showsOpen(vb.body.body), 'a pending instance does not show the resource’s state');
  const vc = view.resources.get(c)!;
  assert.equal(vc.state, 'terminated', 'block: terminated');
  assert.equal(vc.reason, 'rejected', 'block: reason=rejected (RFC 4662 §5.2 / RFC 6665 reason codes)');
  assert.ok(!vc.body || !showsOpen(vc.body.body), 'a rejected instance does not show the resource’s state');

  // A change of a: a partial NOTIFY naming a only, version 1.
  await published(a, 'closed', 'gone home');
  const n1 = await dialog.nextNotify();
  checkListNotify(n1, service);
  const p1 = view.apply(n1);
  assert.equal(p1.list.fullState, false, 'a change goes as partial state (RFC 4662 §4.5)');
  assert.deepEqual(urisOf(p1), [a], 'the partial NOTIFY names only the changed resource');
  assert.equal(basicOf(view.resources.get(a)), 'closed');

  // b's owner allows the subscriber: b becomes active with its state.
  assert.equal(await allow(b, ua.aor), 201);
  await view.until(dialog, (v) => v.resources.get(b)?.state === 'active' && basicOf(v.resources.get(b)) === 'open');
  const last = view.notifies.at(-1)!.parsed;
  if (!last.list.fullState) assert.deepEqual(urisOf(last), [b], 'the authorisation change names b only');

  // Refresh: a full-state NOTIFY.
  const r = await refreshList(dialog, 300);
  assert.equal(r.status, 200, `refresh → ${r.status}`);
  // (A partial NOTIFY that left before the refresh arrived may come first.)
  let nr = await dialog.nextNotify();
  checkListNotify(nr, service);
  let pr = view.apply(nr);
  while (!pr.list.fullState) {
    nr = await dialog.nextNotify();
    checkListNotify(nr, service);
    pr = view.apply(nr);
  }
  assert.equal(pr.list.fullState, true, 'a NOTIFY answering a refresh carries full state (RFC 4662 §4.5)');
  assert.deepEqual(urisOf(pr), [a, b, c]);
  assert.equal(view.resources.get(c)!.state, 'terminated');

  // Unsubscribe: a final NOTIFY, Subscription-State terminated, still a valid list document.
  const u = await refreshList(dialog, 0);
  assert.equal(u.status, 200, `unsubscribe → ${u.status}`);
  const nf = await dialog.nextNotify();
  checkListNotify(nf, service);
  assert.equal(parseSubState(nf).state, 'terminated', nf.headers.get('subscription-state'));
  const pf = view.apply(nf);
  assert.equal(pf.list.fullState, true, 'the final NOTIFY carries full state (contract)');
  assert.equal(nf.cseq.seq > n1.cseq.seq, true, 'CSeq goes up in the dialog');
});

test('a list SUBSCRIBE without Supported: eventlist → 421 with Require: eventlist (RFC 4662 §4.1, RFC 3261 §21.4.16)', async () => {
  const owner = ua.aor;
  const service = uniqueUri('list');
  await putServices(xcap, owner, rlsServices([{ uri: service, list: entry(uniqueUri('x')) }]));
  const { res } = await subscribeList(ua, service, { eventlist: false });
  assert.equal(res.status, 421, `→ ${res.status} ${res.reason}`);
  assert.ok(hasOptionTag(res, 'require', 'eventlist'), `421 must list eventlist in Require; got ${res.headers.get('require')}`);
});

test('a list SUBSCRIBE for an event the service does not offer → 489 Bad Event with Allow-Events (RFC 6665 §4.2.1.1)', async () => {
  const owner = ua.aor;
  const service = uniqueUri('list');
  await putServices(xcap, owner, rlsServices([{ uri: service, list: entry(uniqueUri('x')), packages: ['presence'] }]));
  const { res } = await subscribeList(ua, service, { event: 'dialog' });
  assert.equal(res.status, 489, `→ ${res.status} ${res.reason}`);
  assert.ok(res.headers.get('allow-events'), '489 carries Allow-Events');
  assert.match(res.headers.get('allow-events')!, /\bpresence\b/);
});

test('nested <list>, <entry-ref>, <external>, <resource-list>: flattened in document order, duplicates dropped, display names kept', async () => {
  const owner = ua.aor;
  const [a, d, e, fUri, g] = [uniqueUri('a'), uniqueUri('d'), uniqueUri('e'), uniqueUri('f'), uniqueUri('g')];
  for (const u of [a, d, e, fUri, g]) {
    assert.equal(await allow(u, ua.aor), 201);
    await published(u, 'open');
  }
  const listsXml =
    `<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` +
    `<list name="friends"><entry uri="${d}"><display-name>Dee</display-name></entry><entry uri="${e}"/></list>` +
    `<list name="work"><entry uri="${fUri}"/><entry uri="${a}"/></list></resource-lists>\n`;
  await putLists(xcap, owner, listsXml);
  const root = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const listSel = (name: string): string => `resource-lists/users/${owner}/index/~~/resource-lists/list%5b@name=%22${name}%22%5d`;
  const s1 = uniqueUri('nested');
  const s2 = uniqueUri('rl');
  const s1List =
    entry(a) +
    `<rl:list name="inner">${entry(g)}${entry(a)}</rl:list>` +
    `<rl:entry-ref ref="${listSel('friends')}/entry%5b@uri=%22${d}%22%5d"/>` +
    `<rl:external anchor="${root}/${listSel('work')}"/>`;
  await putServices(
    xcap,
    owner,
    rlsServices([
      { uri: s1, list: s1List },
      { uri: s2, resourceList: `${root}/${listSel('friends')}` },
    ]),
  );

  const one = await subscribeList(ua, s1);
  assert.equal(one.res.status, 200, `${one.res.status} ${one.res.reason}`);
  const v1 = new ListView();
  v1.apply(await one.dialog.nextNotify());
  assert.deepEqual(
    v1.order,
    [a, g, d, fUri],
    'a, the nested list’s g (its a dropped), the entry-ref’s d, the external list’s f (its a dropped)',
  );
  assert.deepEqual(v1.resources.get(d)!.names, ['Dee'], 'an <entry-ref>’s display name comes from the referenced entry');
  for (const u of v1.order) assert.equal(v1.resources.get(u)!.state, 'active', u);

  const two = await subscribeList(ua, s2);
  assert.equal(two.res.status, 200, `${two.res.status} ${two.res.reason}`);
  const v2 = new ListView();
  v2.apply(await two.dialog.nextNotify());
  assert.deepEqual(v2.order, [d, e], '<resource-list> points at the friends list');
  assert.equal(basicOf(v2.resources.get(e)), 'open');

  // A change of the referenced resource-lists document reaches the <resource-list> service too.
  await putLists(xcap, owner, listsXml.replace(`<entry uri="${e}"/>`, `<entry uri="${e}"/><entry uri="${g}"/>`));
  await v2.until(two.dialog, (v) => v.order.includes(g));
  assert.equal(v2.notifies.at(-1)!.parsed.list.fullState, true, 'a membership change goes as full state');
  assert.deepEqual(v2.order, [d, e, g]);

  await refreshList(one.dialog, 0);
  await refreshList(two.dialog, 0);
});

test('document change through XCAP: full-state NOTIFY with the resource added and the removed one gone; service deleted → terminated;reason=noresource', async () => {
  const owner = ua.aor;
  const service = uniqueUri('list');
  const [a, b, h] = [uniqueUri('a'), uniqueUri('b'), uniqueUri('h')];
  for (const u of [a, b, h]) {
    assert.equal(await allow(u, ua.aor), 201);
    await published(u, 'open');
  }
  await putServices(xcap, owner, rlsServices([{ uri: service, list: entry(a) + entry(b) }]));
  const { res, dialog } = await subscribeList(ua, service);
  assert.equal(res.status, 200);
  const view = new ListView();
  view.apply(await dialog.nextNotify());
  assert.deepEqual(view.order, [a, b]);

  await putServices(xcap, owner, rlsServices([{ uri: service, list: entry(a) + entry(h) }]));
  const n = await dialog.nextNotify();
  const p = view.apply(n);
  assert.equal(p.list.fullState, true, 'a list whose membership changed is sent as full state (RFC 4662 §4.6: b is gone only so)');
  assert.deepEqual(urisOf(p), [a, h]);
  assert.equal(view.resources.get(h)!.state, 'active');
  assert.equal(basicOf(view.resources.get(h)), 'open', 'the added resource is subscribed and its state shown');

  // The added resource is live: its change reaches the list.
  await published(h, 'closed');
  await view.until(dialog, (v) => basicOf(v.resources.get(h)) === 'closed');
  // The removed one is not: a change of b sends nothing naming b (checked with the next change of a as a barrier).
  await published(b, 'closed');
  await published(a, 'closed');
  await view.until(dialog, (v) => basicOf(v.resources.get(a)) === 'closed');
  for (const { parsed } of view.notifies.slice(2)) assert.ok(!urisOf(parsed).includes(b), 'no NOTIFY names the removed b');

  const del = await xcap.delete(`/rls-services/users/${owner}/${docFor(service)}`);
  assert.equal(del.status, 200);
  const end = await dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
  const ss = parseSubState(end);
  assert.equal(ss.reason, 'noresource', `the service is gone: ${end.headers.get('subscription-state')}`);
});

for (const proto of ['tcp', 'ws'] as const) {
  test(`over ${proto.toUpperCase()}: full state, then a partial NOTIFY on a change`, async () => {
    const service = uniqueUri('list');
    const a = uniqueUri('a');
    const watcherAor = uniqueUri('wsw');
    if (proto === 'ws') assert.equal(await allow(a, watcherAor), 201);
    await published(a, 'open');
    if (proto === 'tcp') {
      const t = await TestUa.open('tcp', node.tcpPort);
      try {
        await putServices(xcap, t.aor, rlsServices([{ uri: service, list: entry(a) }]));
        assert.equal(await allow(a, t.aor), 201);
        const { res, dialog } = await subscribeList(t, service);
        assert.equal(res.status, 200);
        const view = new ListView();
        const n0 = await dialog.nextNotify();
        checkListNotify(n0, service);
        view.apply(n0);
        assert.equal(basicOf(view.resources.get(a)), 'open');
        await published(a, 'closed');
        await view.until(dialog, (v) => basicOf(v.resources.get(a)) === 'closed');
        assert.equal(view.notifies.at(-1)!.parsed.list.fullState, false);
        await refreshList(dialog, 0);
      } finally {
        await t.close();
      }
      return;
    }
    // WebSocket: JsSIP (a real SIP stack) as the list subscriber, the NOTIFYs read raw off its socket.
    await putServices(xcap, watcherAor, rlsServices([{ uri: service, list: entry(a) }]));
    const client = await JsSipClient.connect(node.wsPort, watcherAor);
    try {
      const sub = client.ua.subscribe(service, 'presence', 'application/pidf+xml, application/rlmi+xml, multipart/related', {
        expires: 600,
        extraHeaders: ['Supported: eventlist'],
      });
      const events = new SubscriberEvents(sub);
      sub.subscribe();
      const view = new ListView();
      const n0 = await client.nextRequest('NOTIFY');
      checkListNotify(n0, service);
      view.apply(n0);
      assert.equal(view.resources.get(a)!.state, 'active');
      assert.equal(basicOf(view.resources.get(a)), 'open');
      await published(a, 'closed');
      for (;;) {
        view.apply(await client.nextRequest('NOTIFY'));
        if (basicOf(view.resources.get(a)) === 'closed') break;
      }
      assert.equal(view.notifies.at(-1)!.parsed.list.fullState, false);
      const oks = client.frames.filter((fr) => fr.message instanceof SipResponse && fr.message.cseq.method === 'SUBSCRIBE');
      assert.equal((oks[0]!.message as SipResponse).status, 200);
      sub.terminate();
      // JsSIP keeps the subscription's timers (its 600 s expiry among them) until the final
      // NOTIFY ends it: wait for that, or the test process would stay alive for them.
      await events.next('terminated');
    } finally {
      await client.stop();
    }
  });
}

test('a SUBSCRIBE to a URI that is no service is an ordinary presentity subscription (no list, no Require: eventlist)', async () => {
  const p = uniqueUri('plain');
  assert.equal(await allow(p, ua.aor), 201);
  await published(p, 'open');
  const { res, dialog } = await subscribeList(ua, p);
  assert.equal(res.status, 200);
  const n = await dialog.nextNotify();
  assert.ok(!hasOptionTag(n, 'require', 'eventlist'), 'not a list: no Require: eventlist');
  assert.match(n.headers.get('content-type') ?? '', /^application\/pidf\+xml/);
  assert.ok(n instanceof SipRequest && showsOpen(n.body.toString()));
  await refreshList(dialog, 0);
});

test('rls_list_subscribers "owner" (default): a stranger’s SUBSCRIBE to the service URI is the presence server’s, not the list', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await published(a, 'open');
  await putServices(xcap, uniqueUri('owner'), rlsServices([{ uri: service, list: entry(a) }]));
  const { res, dialog } = await subscribeList(ua, service);
  assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.reason}`);
  const n = await dialog.nextNotify();
  assert.ok(!hasOptionTag(n, 'require', 'eventlist'), 'no list for a stranger');
  assert.doesNotMatch(n.headers.get('content-type') ?? '', /multipart/);
  assert.doesNotMatch(n.body.toString(), new RegExp(a), 'the list’s members are not revealed');
  await refreshList(dialog, 0);
});
