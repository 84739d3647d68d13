/**
 * The list server at its edges: a fetch (Expires: 0), rls_max_expires, a service URI written
 * with another case of scheme and host (RFC 3261 §19.1.4), lists that name themselves or
 * reference each other in a cycle (the node must answer and stay up), a subscriber that
 * answers 481 to a list NOTIFY (RFC 6665 §4.1.3: the subscription is gone), a resource whose
 * owner blocks the subscriber later, disable_rls, rls_event without <packages>, and bad values
 * of the new configuration keys (exit 2 naming the key).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, runExpectingFailure, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { pidf, publish, putRules, rules, uniqueUri, parseSubState, tuplesOf, showsOpen } from '../support/presence.js';
import { metric, untilMetric, watcherList } from '../support/rpc.js';
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
} from '../support/rls.js';
import { urisOf } from '../support/rlmi.js';

let node: RunningNode;
let xcap: Xcap;
let ua: TestUa;

before(async () => {
  node = await startNode({ waitn_time: 0, rls_max_expires: 120, rls_event: ['presence', 'dialog'] });
  xcap = new Xcap(node.xcapPort);
  ua = await TestUa.open('udp', node.udpPort);
});
after(async () => {
  await ua.close();
  assert.equal(await node.stop(), 0, `the node exits cleanly; stderr: ${node.stderr.join('')}`);
});

const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);
const allow = (presentity: string): Promise<number> =>
  putRules(node.xcapPort, presentity, rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]));

async function open(uri: string): Promise<void> {
  assert.equal(await allow(uri), 201);
  assert.equal((await publish(ua, uri, { body: pidf(uri, 't', 'open'), expires: 600 })).status, 200);
}

/** The node still serves: OPTIONS answered. */
async function alive(): Promise<void> {
  const r = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` });
  assert.equal(r.status, 200);
}

test('a fetch (Expires: 0) of a list: 200, one full-state NOTIFY with Subscription-State terminated', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await open(a);
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(a) }]));
  const { res, dialog } = await subscribeList(ua, service, { expires: 0 });
  assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  const n = await dialog.nextNotify();
  assert.equal(parseSubState(n).state, 'terminated', n.headers.get('subscription-state'));
  assert.ok(hasOptionTag(n, 'require', 'eventlist'));
  const v = new ListView();
  const p = v.apply(n);
  assert.equal(p.list.fullState, true);
  assert.equal(basicOf(v.resources.get(a)), 'open', 'a fetch shows the state');
});

test('rls_max_expires caps the granted duration', async () => {
  const service = uniqueUri('list');
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(uniqueUri('a')) }]));
  const { res, dialog } = await subscribeList(ua, service, { expires: 3600 });
  assert.equal(res.status, 200);
  const granted = Number(res.headers.get('expires'));
  assert.ok(granted > 0 && granted <= 120, `Expires ${granted} must be ≤ rls_max_expires 120`);
  const n = await dialog.nextNotify();
  assert.ok((parseSubState(n).expires ?? Infinity) <= 120, n.headers.get('subscription-state'));
  await refreshList(dialog, 0);
});

test('the Request-URI matches a service URI by RFC 3261 comparison (scheme and host case-insensitive)', async () => {
  const tag = Math.random().toString(36).slice(2, 10);
  const service = `sip:Case-${tag}@example.com`;
  const a = uniqueUri('a');
  await open(a);
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(a) }]));
  const { res, dialog } = await subscribeList(ua, `SIP:Case-${tag}@EXAMPLE.COM`);
  assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  const n = await dialog.nextNotify();
  assert.ok(hasOptionTag(n, 'require', 'eventlist'), 'served as the list');
  assert.deepEqual(urisOf(new ListView().apply(n)), [a]);
  await refreshList(dialog, 0);
});

test('a list naming its own service URI, and <external> lists referencing each other in a cycle: answered, finite, node up', async () => {
  const owner = ua.aor;
  const self = uniqueUri('self');
  const cyc = uniqueUri('cyc');
  const [a, b] = [uniqueUri('a'), uniqueUri('b')];
  await open(a);
  await open(b);
  const root = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const sel = (name: string): string => `${root}/resource-lists/users/${owner}/index/~~/resource-lists/list%5b@name=%22${name}%22%5d`;
  await putLists(
    xcap,
    owner,
    `<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">` +
      `<list name="one"><entry uri="${a}"/><external anchor="${sel('two')}"/></list>` +
      `<list name="two"><entry uri="${b}"/><external anchor="${sel('one')}"/></list></resource-lists>\n`,
  );
  await putServices(
    xcap,
    owner,
    rlsServices([
      { uri: self, list: entry(a) + entry(self) },
      { uri: cyc, resourceList: sel('one') },
    ]),
  );
  const s1 = await subscribeList(ua, self);
  assert.equal(s1.res.status, 200, `${s1.res.status} ${s1.res.reason}`);
  const v1 = new ListView();
  v1.apply(await s1.dialog.nextNotify());
  assert.equal(v1.order[0], a);
  assert.ok(v1.order.length <= 2, `finite: ${v1.order.join(', ')}`);
  const s2 = await subscribeList(ua, cyc);
  assert.equal(s2.res.status, 200, `${s2.res.status} ${s2.res.reason}`);
  const v2 = new ListView();
  v2.apply(await s2.dialog.nextNotify());
  assert.deepEqual(v2.order, [a, b], 'the cycle is followed once: a, b, each once');
  await refreshList(s2.dialog, 0);
  await alive();
  await refreshList(s1.dialog, 0);
});

test('a subscriber answering 481 to a list NOTIFY loses the subscription (RFC 6665 §4.1.3)', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await open(a);
  const sub = await TestUa.open('udp', node.udpPort);
  try {
    await putServices(xcap, sub.aor, rlsServices([{ uri: service, list: entry(a) }]));
    assert.equal(await putRules(node.xcapPort, a, rules([{ id: 'w', who: `<cr:one id="${sub.aor}"/>`, handling: 'allow' }])), 200);
    const { res, dialog } = await subscribeList(sub, service);
    assert.equal(res.status, 200);
    await dialog.nextNotify();
    assert.deepEqual(
      (await watcherList(node.rpcPort, service)).map((w) => w.watcher_uri),
      [sub.aor],
    );
    const before = await metric(node.rpcPort, 'presenced_rls_list_subscriptions');
    sub.answer = (r) => (r.method === 'NOTIFY' ? 481 : 405);
    assert.equal((await publish(ua, a, { body: pidf(a, 't', 'closed'), expires: 600 })).status, 200);
    await dialog.nextNotify();
    await untilMetric(node.rpcPort, 'presenced_rls_list_subscriptions', (v) => v === before - 1, 'the list subscription dropped');
    assert.deepEqual(await watcherList(node.rpcPort, service), []);
  } finally {
    await sub.close();
  }
});

test('a resource whose owner blocks the subscriber later: its instance becomes terminated;reason=rejected, the list stays active', async () => {
  const service = uniqueUri('list');
  const [a, b] = [uniqueUri('a'), uniqueUri('b')];
  await open(a);
  await open(b);
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(a) + entry(b) }]));
  const { res, dialog } = await subscribeList(ua, service);
  assert.equal(res.status, 200);
  const view = new ListView();
  view.apply(await dialog.nextNotify());
  assert.equal(view.resources.get(a)!.state, 'active');
  assert.equal(await putRules(node.xcapPort, a, rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'block' }])), 200);
  await view.until(dialog, (v) => v.resources.get(a)!.state === 'terminated');
  assert.equal(view.resources.get(a)!.reason, 'rejected');
  assert.ok(!view.resources.get(a)!.body || !showsOpen(view.resources.get(a)!.body!.body), 'no state shown once blocked');
  assert.equal(parseSubState(view.notifies.at(-1)!.req).state, 'active', 'the list subscription itself goes on');
  assert.equal(view.resources.get(b)!.state, 'active');
  await refreshList(dialog, 0);
});

test('rls_event ["presence","dialog"] and a service without <packages>: a dialog list subscription is accepted', async () => {
  const service = uniqueUri('list');
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(uniqueUri('a')) }]));
  const { res, dialog } = await subscribeList(ua, service, { event: 'dialog' });
  assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  const n = await dialog.nextNotify();
  assert.equal((n.headers.get('event') ?? '').split(';')[0]!.trim(), 'dialog');
  assert.ok(hasOptionTag(n, 'require', 'eventlist'));
  new ListView().apply(n);
  await refreshList(dialog, 0);
});

test('disable_rls=1: a SUBSCRIBE to a service URI is an ordinary presentity subscription', async () => {
  const plain = await startNode({ disable_rls: 1 });
  const u = await TestUa.open('udp', plain.udpPort);
  try {
    const service = uniqueUri('list');
    await putServices(new Xcap(plain.xcapPort), u.aor, rlsServices([{ uri: service, list: entry(uniqueUri('a')) }]));
    const { res, dialog } = await subscribeList(u, service);
    assert.ok(res.status === 200 || res.status === 202, `${res.status} ${res.reason}`);
    const n = await dialog.nextNotify();
    assert.ok(!hasOptionTag(n, 'require', 'eventlist'), 'no list');
    assert.doesNotMatch(n.headers.get('content-type') ?? '', /multipart/);
  } finally {
    await u.close();
    assert.equal(await plain.stop(), 0);
  }
});

test('bad values of the list server keys exit 2 naming the key', async () => {
  for (const [key, value] of [
    ['waitn_time', -1],
    ['outbound_proxy', 'not a sip uri'],
    ['max_notify_body_length', 'big'],
    ['rls_event', 5],
    ['disable_rls', 2],
  ] as Array<[string, unknown]>) {
    const r = await runExpectingFailure({ listen: ['udp:127.0.0.1:0'], [key]: value });
    assert.equal(r.code, 2, `${key}=${JSON.stringify(value)}: exit ${r.code}; ${r.stderr}`);
    assert.match(r.stderr, new RegExp(key), `${key}: ${r.stderr}`);
  }
});

test('a list subscription that is not refreshed ends with a final NOTIFY terminated;reason=timeout (RFC 6665 §4.1.3)', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await open(a);
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(a) }]));
  const { res, dialog } = await subscribeList(ua, service, { expires: 2 });
  assert.equal(res.status, 200);
  const view = new ListView();
  view.apply(await dialog.nextNotify());
  const end = await dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
  assert.equal(parseSubState(end).reason, 'timeout', end.headers.get('subscription-state'));
  assert.ok(hasOptionTag(end, 'require', 'eventlist'));
  view.apply(end);
  await untilMetric(node.rpcPort, 'presenced_rls_list_subscriptions', () => true, 'metric present');
  assert.deepEqual(await watcherList(node.rpcPort, service), [], 'no list subscriber left');
});

test('rls_server_address is the Contact of the 2xx and of list NOTIFYs', async () => {
  const n2 = await startNode({ waitn_time: 0, rls_server_address: 'sip:rls.example.net:5099' });
  const u = await TestUa.open('udp', n2.udpPort);
  try {
    const service = uniqueUri('list');
    await putServices(new Xcap(n2.xcapPort), u.aor, rlsServices([{ uri: service, list: entry(uniqueUri('a')) }]));
    const { res, dialog } = await subscribeList(u, service);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('contact') ?? '', /^<sip:rls\.example\.net:5099>$/, `2xx Contact: ${res.headers.get('contact')}`);
    const n = await dialog.nextNotify();
    assert.match(n.headers.get('contact') ?? '', /^<?sip:([^@>]*@)?rls\.example\.net:5099[;>]?/, `Contact: ${n.headers.get('contact')}`);
    await refreshList(dialog, 0);
  } finally {
    await u.close();
    assert.equal(await n2.stop(), 0);
  }
});

test('Event: presence;id=… : every list NOTIFY carries the same id (RFC 6665 §8.2.1); a refresh with it is the same subscription', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await open(a);
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list: entry(a) }]));
  const { res, dialog } = await subscribeList(ua, service, { event: 'presence;id=L7' });
  assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  const view = new ListView();
  const n0 = await dialog.nextNotify();
  assert.match(n0.headers.get('event') ?? '', /^presence\s*;\s*id=L7$/);
  view.apply(n0);
  assert.equal((await publish(ua, a, { body: pidf(a, 't', 'closed'), expires: 600 })).status, 200);
  const n1 = await dialog.nextNotify();
  assert.match(n1.headers.get('event') ?? '', /^presence\s*;\s*id=L7$/);
  view.apply(n1);
  assert.equal((await refreshList(dialog, 0)).status, 200);
});

test('dangling references and odd entries (an <entry-ref> to nothing, an <external> to a missing document, a tel: URI): the list is served, the node stays up', async () => {
  const service = uniqueUri('list');
  const a = uniqueUri('a');
  await open(a);
  const root = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const list =
    entry(a) +
    `<rl:entry-ref ref="resource-lists/users/${ua.aor}/index/~~/resource-lists/list%5b@name=%22none%22%5d/entry%5b@uri=%22sip:none@example.com%22%5d"/>` +
    `<rl:external anchor="${root}/resource-lists/users/${ua.aor}/missing-doc/~~/resource-lists/list%5b@name=%22x%22%5d"/>` +
    entry('tel:+15551234567');
  await putServices(xcap, ua.aor, rlsServices([{ uri: service, list }]));
  const { res, dialog } = await subscribeList(ua, service);
  assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  const view = new ListView();
  view.apply(await dialog.nextNotify());
  assert.equal(view.order[0], a);
  assert.equal(basicOf(view.resources.get(a)), 'open');
  assert.ok(!view.order.includes('sip:none@example.com'));
  await alive();
  await refreshList(dialog, 0);
});
