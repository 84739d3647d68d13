/**
 * How list NOTIFYs are shaped (contract keys waitn_time and max_notify_body_length; RFC 4662
 * §4.8 lets an RLS hold changes back to limit the rate of notifications). Contents only, never
 * timing: with a long waitn_time, two changes made right after the first NOTIFY go out together
 * in one partial NOTIFY; with max_notify_body_length, a full state too long for one body comes
 * in several NOTIFYs, each within the limit and each a valid list document, which together
 * give the subscriber every resource's state.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { pidf, publish, putRules, rules, uniqueUri, tuplesOf } from '../support/presence.js';
import { ListView, entry, putServices, refreshList, rlsServices, subscribeList, type ResourceView } from '../support/rls.js';
import { urisOf } from '../support/rlmi.js';

const nodes: RunningNode[] = [];
after(async () => {
  for (const n of nodes) assert.equal(await n.stop(), 0, `the node exits cleanly; stderr: ${n.stderr.join('')}`);
});
const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);

async function setup(
  config: Record<string, unknown>,
  count: number,
  note = '',
): Promise<{ node: RunningNode; ua: TestUa; service: string; uris: string[] }> {
  const node = await startNode(config);
  nodes.push(node);
  const ua = await TestUa.open('udp', node.udpPort);
  const owner = ua.aor;
  const service = uniqueUri('list');
  const uris = Array.from({ length: count }, () => uniqueUri('r'));
  for (const u of uris) {
    assert.equal(await putRules(node.xcapPort, u, rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }])), 201);
    assert.equal((await publish(ua, u, { body: pidf(u, 't', 'open', note), expires: 600 })).status, 200);
  }
  await putServices(new Xcap(node.xcapPort), owner, rlsServices([{ uri: service, list: uris.map((u) => entry(u)).join('') }]));
  return { node, ua, service, uris };
}

test('waitn_time: two changes right after a NOTIFY go out together in the next NOTIFY', async () => {
  const { ua, service, uris } = await setup({ waitn_time: 10 }, 3);
  const [a, b, c] = uris as [string, string, string];
  try {
    const { res, dialog } = await subscribeList(ua, service);
    assert.equal(res.status, 200);
    const view = new ListView();
    view.apply(await dialog.nextNotify());
    assert.equal((await publish(ua, a, { body: pidf(a, 't', 'closed'), expires: 600 })).status, 200);
    assert.equal((await publish(ua, b, { body: pidf(b, 't', 'closed'), expires: 600 })).status, 200);
    const n = view.apply(await dialog.nextNotify());
    assert.equal(n.list.fullState, false);
    assert.deepEqual(urisOf(n).sort(), [a, b].sort(), 'one partial NOTIFY names both changed resources and nothing else');
    assert.equal(basicOf(view.resources.get(a)), 'closed');
    assert.equal(basicOf(view.resources.get(b)), 'closed');
    assert.equal(basicOf(view.resources.get(c)), 'open');
    assert.equal((await refreshList(dialog, 0)).status, 200);
  } finally {
    await ua.close();
  }
});

test('max_notify_body_length: a full state too long for one body comes in several NOTIFYs, each within the limit, together complete', async () => {
  const LIMIT = 2000;
  const note = 'n'.repeat(300);
  const { ua, service, uris } = await setup({ waitn_time: 0, max_notify_body_length: LIMIT }, 8, note);
  try {
    const { res, dialog } = await subscribeList(ua, service);
    assert.equal(res.status, 200);
    const view = new ListView();
    const complete = (v: ListView): boolean => uris.every((u) => basicOf(v.resources.get(u)) === 'open');
    await view.until(dialog, complete);
    assert.ok(view.notifies.length >= 2, `8 × ~450-byte PIDF cannot fit ${LIMIT} bytes: ${view.notifies.length} NOTIFY`);
    for (const { req } of view.notifies) assert.ok(req.body.length <= LIMIT, `a NOTIFY body of ${req.body.length} bytes > ${LIMIT}`);
    assert.equal(view.notifies[0]!.parsed.list.fullState, true, 'the first is full state');
    assert.deepEqual(view.order, uris, 'every resource, in list order');
    // A refresh's full state is split the same way.
    const mark = view.notifies.length;
    assert.equal((await refreshList(dialog, 600)).status, 200);
    view.apply(await dialog.nextNotify());
    assert.equal(view.notifies[mark]!.parsed.list.fullState, true);
    await view.until(dialog, complete);
    for (const { req } of view.notifies.slice(mark)) assert.ok(req.body.length <= LIMIT, `${req.body.length} > ${LIMIT}`);
    assert.equal((await refreshList(dialog, 0)).status, 200);
  } finally {
    await ua.close();
  }
});

test('max_notify_body_length smaller than one resource’s body: every NOTIFY is still a valid list document and the node stays up', async () => {
  const LIMIT = 600;
  const { node, ua, service, uris } = await setup({ waitn_time: 0, max_notify_body_length: LIMIT }, 2, 'x'.repeat(1500));
  try {
    const { res, dialog } = await subscribeList(ua, service);
    assert.equal(res.status, 200);
    const view = new ListView();
    view.apply(await dialog.nextNotify());
    assert.equal(view.notifies[0]!.parsed.list.fullState, true);
    assert.deepEqual(view.order, uris, 'the RLMI names every resource even if no state part fits');
    // Whatever was sent for the oversize parts: the node answers and later changes still arrive.
    const r = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` });
    assert.equal(r.status, 200);
    assert.equal((await refreshList(dialog, 0)).status, 200);
    await dialog.nextNotify(undefined, (n) => /^terminated/.test(n.headers.get('subscription-state') ?? ''));
  } finally {
    await ua.close();
  }
});

test('a list of 150 resources over UDP (full state beyond one datagram): full state, then each of 150 changes reaches the subscriber (waitn_time 0), every NOTIFY valid', async () => {
  const { ua, service, uris } = await setup({ waitn_time: 0 }, 150);
  try {
    const { res, dialog } = await subscribeList(ua, service);
    assert.equal(res.status, 200);
    const view = new ListView();
    // The full state may come in several NOTIFYs (a UDP datagram holds at most 64 KB).
    view.apply(await dialog.nextNotify());
    assert.equal(view.notifies[0]!.parsed.list.fullState, true);
    assert.deepEqual(view.order, uris);
    await view.until(dialog, (v) => uris.every((u) => basicOf(v.resources.get(u)) === 'open'));
    await Promise.all(
      uris.map(async (u) => assert.equal((await publish(ua, u, { body: pidf(u, 't', 'closed'), expires: 600 })).status, 200)),
    );
    await view
      .until(dialog, (v) => uris.every((u) => basicOf(v.resources.get(u)) === 'closed'))
      .catch((err: Error) => {
        const open = uris.filter((u) => basicOf(view.resources.get(u)) !== 'closed').length;
        const sizes = view.notifies.map((n) => `v${n.parsed.list.version}:${n.parsed.list.resources.length}`).join(' ');
        throw new Error(`${err.message}; ${open} of ${uris.length} never shown closed; NOTIFYs (version:resources): ${sizes}`);
      });
    assert.equal((await refreshList(dialog, 0)).status, 200);
  } finally {
    await ua.close();
  }
});
