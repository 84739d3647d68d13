/**
 * State limits (issue 12, core/limits.ts) over real sockets: publications per presentity and in
 * total, subscriptions per watcher and in total. Beyond a limit the request gets 503 with
 * Retry-After, the refusal is counted in presenced_limit_refusals_total{limit="KEY"} and logged
 * (once per limit_log_interval) with the key; what is already held keeps working (refresh,
 * removal, unsubscribe) and frees room. A bad limit value stops the start with exit 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, runExpectingFailure, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { fleet } from '../support/fleet.js';
import { pidf, publish, subscribe, uniqueUri } from '../support/presence.js';

const { node, ua } = fleet({ limit_log_interval: 86400, force_active: 1, overload_retry_after: 30 });

async function refusals(n: RunningNode, limit: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${n.rpcPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`presenced_limit_refusals_total{limit="${limit}",node=`));
  return line ? Number(line.split(' ')[1]) : 0;
}

const logged = (n: RunningNode, limit: string): Array<Record<string, unknown>> =>
  n.logs.filter((l) => l.limit === limit && l.level === 'warn');

const doc = (p: string, t: string): string => pidf(p, t, 'open');

test('max_publications_per_presentity and max_publications: 503 + Retry-After beyond, refresh and removal still work', async () => {
  const n = await node({ max_publications_per_presentity: 2, max_publications: 3 });
  const u = await ua(n);
  const alice = uniqueUri('alice');
  const a1 = await publish(u, alice, { body: doc(alice, 'a1') });
  assert.equal(a1.status, 200);
  assert.equal((await publish(u, alice, { body: doc(alice, 'a2') })).status, 200);
  const third = await publish(u, alice, { body: doc(alice, 'a3') });
  assert.equal(third.status, 503);
  assert.equal(third.headers.get('retry-after'), '30');
  assert.equal(await refusals(n, 'max_publications_per_presentity'), 1);
  const line = logged(n, 'max_publications_per_presentity')[0];
  assert.ok(line, 'the refusal is logged with its key');
  assert.equal(line.presentityUri, alice);
  assert.equal(line.max, 2);

  // A refresh or modify of a held publication is not a new one.
  const etag = a1.headers.get('sip-etag')!;
  const refreshed = await publish(u, alice, { etag });
  assert.equal(refreshed.status, 200);

  // Another presentity: the third publication of the node, then the total is reached.
  const bob = uniqueUri('bob');
  assert.equal((await publish(u, bob, { body: doc(bob, 'b1') })).status, 200);
  const carol = uniqueUri('carol');
  const over = await publish(u, carol, { body: doc(carol, 'c1') });
  assert.equal(over.status, 503);
  assert.equal(await refusals(n, 'max_publications'), 1);

  // A removal frees room for a new publication.
  assert.equal((await publish(u, alice, { etag: refreshed.headers.get('sip-etag')!, expires: 0 })).status, 200);
  assert.equal((await publish(u, carol, { body: doc(carol, 'c1') })).status, 200);
  assert.equal(logged(n, 'max_publications').length, 1);
});

test('max_subscriptions_per_watcher and max_subscriptions: 503 + Retry-After beyond, unsubscribing frees room, fetches are not limited', async () => {
  const n = await node({ max_subscriptions_per_watcher: 2, max_subscriptions: 3 });
  const w = await ua(n);
  const first = await subscribe(w, uniqueUri('p'), { expires: 600 });
  assert.equal(first.res.status, 200);
  assert.equal((await subscribe(w, uniqueUri('p'), { expires: 600 })).res.status, 200);
  const third = await subscribe(w, uniqueUri('p'), { expires: 600 });
  assert.equal(third.res.status, 503);
  assert.equal(third.res.headers.get('retry-after'), '30');
  assert.equal(await refusals(n, 'max_subscriptions_per_watcher'), 1);
  assert.equal(logged(n, 'max_subscriptions_per_watcher')[0]?.watcher, w.aor);
  // A fetch (Expires: 0) creates no subscription.
  assert.equal((await subscribe(w, uniqueUri('p'), { expires: 0 })).res.status, 200);
  // A refresh of a held subscription is not a new one.
  assert.equal((await first.dialog.request(600)).status, 200);

  // Another watcher: the third subscription of the node, then the total is reached.
  const other = await ua(n);
  assert.equal((await subscribe(other, uniqueUri('p'), { expires: 600 })).res.status, 200);
  assert.equal((await subscribe(other, uniqueUri('p'), { expires: 600 })).res.status, 503);
  assert.equal(await refusals(n, 'max_subscriptions'), 1);

  // Unsubscribing frees room, for the watcher and for the node.
  assert.equal((await first.dialog.request(0)).status, 200);
  assert.equal((await subscribe(w, uniqueUri('p'), { expires: 600 })).res.status, 200);
});

test('a limit value out of range stops the start with exit 2 naming the key', async () => {
  for (const [key, value] of [
    ['max_publications_per_presentity', -1],
    ['overload_max_inflight', 'many'],
    ['overload_retry_after', 0],
    ['limit_log_interval', 1.5],
  ] as const) {
    const { code, stderr } = await runExpectingFailure({ [key]: value });
    assert.equal(code, 2, key);
    assert.match(stderr, new RegExp(`${key}: must be an integer from`));
  }
});

test('max_dns_lookups: NOTIFYs to host names beyond the lookups in progress fail at once (the subscription ends), counted and logged', async () => {
  const n = await node({ max_dns_lookups: 1, timeout_rm_subs: 1 });
  const publisher = await ua(n);
  const watchers = [await ua(n), await ua(n)];
  const p = uniqueUri('dns');
  // Contacts with a host name: every NOTIFY needs a lookup (localhost: loopback, no network).
  for (const w of watchers) {
    const res = await w.request({
      method: 'SUBSCRIBE',
      uri: p,
      bare: true,
      headers: [
        ['max-forwards', '70'],
        ['contact', `<sip:${w.user}@localhost:${w.localPort}>`],
        ['event', 'presence'],
        ['expires', '600'],
      ],
    });
    assert.equal(res.status, 200);
    await w.nextRequest('NOTIFY'); // one at a time: one lookup in progress
  }
  assert.equal(await refusals(n, 'max_dns_lookups'), 0);
  // One PUBLISH: both NOTIFYs are started in the same turn, so one lookup is already in progress for the second.
  assert.equal((await publish(publisher, p, { body: doc(p, 't') })).status, 200);
  const ended = await n.waitForLog((l) => l.msg === 'subscription ended');
  assert.match(String(ended.why), /NOTIFY failed/);
  assert.equal(await refusals(n, 'max_dns_lookups'), 1);
  assert.equal(logged(n, 'max_dns_lookups').length, 1);
  // The other watcher got its NOTIFY with the published state.
  const got = await Promise.any(watchers.map((w) => w.nextRequest('NOTIFY', (r) => r.body.toString().includes('<basic>open</basic>'))));
  assert.ok(got);
});
