/**
 * The cluster kit of deploy/cluster/ end to end, in network namespaces this test creates and
 * removes: three presenced nodes, the Kamailio edge and HAProxy, each its own host (namespace) on a
 * bridge; the test's SIP UAs and HTTP requests use sockets of a fourth, client namespace
 * (test/support/netns.ts), so everything crosses the veth addresses, nothing uses a LAN address.
 *
 * What it pins down (README "Running a cluster"):
 *  - the edge (SIP), HAProxy (XCAP) and the documented function agree on the owner of a presentity;
 *  - pres-rules PUT through HAProxy take effect for that presentity's watchers, NOTIFYs come back
 *    through the edge (loose routing on the edge's Record-Route);
 *  - a node killed with SIGKILL: its presentities get 503 with Retry-After from the edge (and from
 *    HAProxy), never another node; the other shards keep working (PUBLISH, NOTIFY, refreshes);
 *  - the node restarted on its store: the edge sends it traffic again once it answers OPTIONS, its
 *    watchers keep their dialogs (NOTIFY CSeq continues) and get what the publishers published once
 *    they retry;
 *  - presenced rpc --cluster finds the owning node; /metrics carries the node label;
 *  - cluster.sh add-node: unmoved presentities keep state and dialogs, moved ones take their XCAP
 *    documents along and leave their old dialogs (481 from the edge both ways), the new node takes
 *    its share by the same function at the edge and in HAProxy.
 * Runs as root (namespaces); about 30 s.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, ownerOf } from '../support/cluster.js';
import { Netns } from '../support/netns.js';
import { TestUa } from '../support/sip-ua.js';
import {
  pidf,
  publish,
  subscribe,
  subscribeWinfo,
  parseWinfo,
  parseSubState,
  bodyOf,
  cseqOf,
  rules,
  type Dialog,
} from '../support/presence.js';
import { CT } from '../support/xcap-http.js';
import type { SipRequest, SipResponse } from '../../transport/message.js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'core', 'main.js');
const NODES = 3;
const cluster = new Cluster({ name: 'pct', nodes: NODES, subnet: '198.51.100', pingInterval: 1, nodeJson: { log_level: 'info' } });

let ns: Netns | undefined;
let publisher: TestUa;
let watcher: TestUa;
/** One presentity per shard, and the watcher's dialog with it. */
const shard: Array<{ node: number; presentity: string; dialog?: Dialog; target?: string; route?: string; etag?: string }> = [];

/** pres-rules letting the test's watcher see everything (no transformations: the whole document). */
const allowWatcher = (): string => rules([{ id: 'w', who: `<cr:one id="${watcher.aor}"/>`, handling: 'allow' }]);

const xcapUrl = (presentity: string): string => `http://${cluster.xcap}:8080/xcap-root/pres-rules/users/${presentity}/index`;

/** First presentity sip:PREFIXn@example.com the mapping gives to `node`. */
function presentityOn(node: number, prefix: string): string {
  for (let i = 0; ; i++) {
    const p = `sip:${prefix}${i}@example.com`;
    if (ownerOf(p, NODES) === node) return p;
  }
}

/**
 * Ask until the answer satisfies `done`: each attempt waits for its own answer, with a 100 ms pace
 * between attempts (not a margin: the loop ends on the observed state, bounded by timeoutMs).
 */
async function until<T extends { status: number }>(
  what: string,
  ask: () => Promise<T>,
  done: (r: T) => boolean,
  timeoutMs = 20_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < end) {
    last = await ask();
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: still ${last?.status} after ${timeoutMs} ms`);
}

/** presence.presentity_show on node n, straight to its RPC port. */
async function showOn(n: number, presentity: string): Promise<unknown[]> {
  const r = await ns!.request('POST', `http://${cluster.nodeIp(n)}:8081/RPC`, {
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'presence.presentity_show', params: [presentity, 'presence'] }),
    headers: { 'content-type': 'application/json' },
  });
  return (JSON.parse(r.text) as { result: unknown[] }).result;
}

const options = (presentity: string): Promise<SipResponse> =>
  publisher.request({ method: 'OPTIONS', uri: presentity, to: `<${presentity}>` });

/** A refresh of the watcher's dialog as RFC 3261 §12.2.1.1 builds it: R-URI = remote target, Route = the route set. */
function refresh(s: (typeof shard)[number], expires: number): Promise<SipResponse> {
  const d = s.dialog!;
  d.cseq++;
  return watcher.request({
    method: 'SUBSCRIBE',
    uri: s.target!,
    from: `<${watcher.aor}>;tag=${d.fromTag}`,
    to: `<${s.presentity}>;tag=${d.toTag}`,
    callId: d.callId,
    cseq: d.cseq,
    headers: [
      ['route', s.route!],
      ['event', 'presence'],
      ['expires', String(expires)],
    ],
  });
}

const nextNotify = (s: (typeof shard)[number], pred: (r: SipRequest) => boolean = () => true): Promise<SipRequest> =>
  watcher.nextRequest('NOTIFY', (r) => r.callId === s.dialog!.callId && pred(r), 10_000);

before(async () => {
  await cluster.down(); // a run that died before its after hook
  await cluster.up();
  ns = await Netns.open(cluster.namespace('client'));
  publisher = TestUa.adopt(await ns.udp(cluster.client), cluster.edge, 5060);
  watcher = TestUa.adopt(await ns.udp(cluster.client), cluster.edge, 5060);
});

after(async () => {
  // CLUSTER_DEBUG=1: what the watcher received, first lines of each message (the nodes' and the
  // edge's logs are in the cluster directory until cluster.sh down removes it).
  if (process.env.CLUSTER_DEBUG)
    for (const r of watcher?.received ?? []) console.log(r.raw.toString().split('\r\n').slice(0, 12).join(' | '));
  await publisher?.close();
  await watcher?.close();
  ns?.close();
  await cluster.down();
  const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.startsWith(`${cluster.o.name}-`));
  assert.deepEqual(left, [], 'cluster.sh down leaves no namespace behind');
});

test('edge, HAProxy and the documented mapping agree on the owner of 45 presentities', async () => {
  const presentities = Array.from({ length: 45 }, (_, i) =>
    i % 5 === 4 ? `sip:Map${i}@Example.COM` : `sip:map${i}@example.${i % 3 === 0 ? 'org' : 'com'}`,
  );
  const counts = new Map<number, number>();
  for (const p of presentities) {
    const owner = ownerOf(p, NODES);
    counts.set(owner, (counts.get(owner) ?? 0) + 1);
    const res = await publish(publisher, p, { body: pidf(p, 't1', 'open'), expires: 600 });
    assert.equal(res.status, 200, `PUBLISH ${p} through the edge`);
    const put = await ns!.request('PUT', xcapUrl(p), { body: allowWatcher(), headers: { 'content-type': CT.presRules } });
    assert.equal(put.status, 201, `PUT pres-rules of ${p} through HAProxy: ${put.text}`);
    assert.equal(put.headers['x-presenced-node'], `n${owner}`, `HAProxy sent ${p} to its owner`);
  }
  assert.equal(counts.size, NODES, 'the presentities cover every node');
  // Ask every node what it holds: the publication and the document are on the owner only.
  for (const p of presentities) {
    const owner = ownerOf(p, NODES);
    for (let n = 1; n <= NODES; n++) {
      const pubs = await showOn(n, p);
      assert.equal(pubs.length, n === owner ? 1 : 0, `${p}: publications on node ${n} (owner ${owner})`);
      const doc = await ns!.request('GET', `http://${cluster.nodeIp(n)}:8080/xcap-root/pres-rules/users/${p}/index`);
      assert.equal(doc.status, n === owner ? 200 : 404, `${p}: pres-rules on node ${n} (owner ${owner})`);
    }
  }
});

test('watchers on every shard: pres-rules PUT through HAProxy take effect, winfo lists them, NOTIFYs come through the edge', async () => {
  for (let node = 1; node <= NODES; node++) shard.push({ node, presentity: presentityOn(node, 'shard') });
  for (const s of shard) {
    const { res, dialog } = await subscribe(watcher, s.presentity, { expires: 600 });
    assert.equal(res.status, 200, `SUBSCRIBE ${s.presentity}`);
    s.dialog = dialog;
    s.route = res.headers.get('record-route');
    assert.match(s.route ?? '', new RegExp(`^<sip:${cluster.edge.replace(/\./g, '\\.')}[;:>]`), 'the edge Record-Routes');
    s.target = /<([^>]+)>/.exec(res.headers.get('contact') ?? '')?.[1];
    assert.match(
      s.target ?? '',
      new RegExp(`@?${cluster.nodeIp(s.node).replace(/\./g, '\\.')}[:;>]|sip:${cluster.nodeIp(s.node).replace(/\./g, '\\.')}`),
      'the owner answered',
    );
    const first = await nextNotify(s);
    assert.equal(parseSubState(first).state, 'pending', 'no rules yet: pending');
    assert.equal(first.topVia.host, cluster.edge, 'NOTIFY relayed by the edge');
  }
  for (const s of shard) {
    const put = await ns!.request('PUT', xcapUrl(s.presentity), { body: allowWatcher(), headers: { 'content-type': CT.presRules } });
    assert.equal(put.status, 201);
    const active = await nextNotify(s, (r) => parseSubState(r).state === 'active');
    assert.equal(active.topVia.host, cluster.edge);
  }
  // Watcher info from the owner: each presentity sees the watcher (whose own AOR may hash to any node).
  for (const s of shard) {
    const w = await subscribeWinfo(publisher, s.presentity, s.presentity);
    assert.equal(w.res.status, 200, `presence.winfo of ${s.presentity}`);
    const info = await publisher.nextRequest('NOTIFY', (r) => r.callId === w.dialog.callId, 10_000);
    assert.deepEqual(
      parseWinfo(bodyOf(info)).watchers.map((x) => [x.uri, x.status]),
      [[watcher.aor, 'active']],
    );
  }
  for (const s of shard) {
    const res = await publish(publisher, s.presentity, { body: pidf(s.presentity, 't1', 'open', `before-${s.node}`), expires: 600 });
    assert.equal(res.status, 200);
    s.etag = res.headers.get('sip-etag');
    const n = await nextNotify(s, (r) => bodyOf(r).includes(`before-${s.node}`));
    assert.equal(parseSubState(n).state, 'active');
  }
});

test('SIGKILL of a node: its presentities get 503 with Retry-After, the other shards are untouched, a restart resumes them', async () => {
  const victim = shard[1]!;
  const others = shard.filter((s) => s !== victim);
  const lastCseq = cseqOf(
    watcher
      .requests('NOTIFY')
      .filter((r) => r.callId === victim.dialog!.callId)
      .at(-1)!,
  );
  await cluster.killNode(victim.node);

  const refused = await until(
    'edge refusing the dead node',
    () => options(victim.presentity),
    (r) => r.status === 503,
  );
  assert.match(refused.headers.get('retry-after') ?? '', /^\d+$/, '503 carries Retry-After');
  const duringOutage = pidf(victim.presentity, 't1', 'closed', `outage-${victim.node}`);
  const pub503 = await publish(publisher, victim.presentity, { body: duringOutage, expires: 600 });
  assert.equal(pub503.status, 503, 'PUBLISH to the dead shard: 503, not re-hashed');
  assert.match(pub503.headers.get('retry-after') ?? '', /^\d+$/);
  for (const s of others)
    assert.equal((await showOn(s.node, victim.presentity)).length, 0, `node ${s.node} holds nothing of the dead shard`);
  // HAProxy's own health check (same interval) refuses the dead shard's documents the same way.
  const xcap503 = await until(
    'HAProxy refusing the dead node',
    () => ns!.request('GET', xcapUrl(victim.presentity)),
    (r) => r.status === 503,
  );
  assert.equal(xcap503.headers['retry-after'], '5');
  for (const s of others)
    assert.equal((await ns!.request('GET', xcapUrl(s.presentity))).status, 200, `XCAP of node ${s.node} still served`);

  for (const s of others) {
    const res = await publish(publisher, s.presentity, {
      body: pidf(s.presentity, 't1', 'open', `during-${s.node}`),
      etag: s.etag,
      expires: 600,
    });
    assert.equal(res.status, 200, `PUBLISH (modify, SIP-If-Match) on node ${s.node}: same node still owns it`);
    await nextNotify(s, (r) => bodyOf(r).includes(`during-${s.node}`));
    const r = await refresh(s, 600);
    assert.equal(r.status, 200, `in-dialog refresh of ${s.presentity} loose-routed to node ${s.node}`);
    await nextNotify(s, (n) => cseqOf(n) > 0);
  }

  await cluster.startNode(victim.node);
  // The edge sends it traffic again once it answers OPTIONS 200 (after its store is recovered).
  const retried = await until(
    'publisher retrying on the restarted shard',
    () => publish(publisher, victim.presentity, { body: duringOutage, expires: 600 }),
    (r) => r.status !== 503,
  );
  assert.equal(retried.status, 200);
  const n = await nextNotify(victim, (r) => bodyOf(r).includes(`outage-${victim.node}`));
  assert.ok(cseqOf(n) > lastCseq, `NOTIFY CSeq continues the dialog (${cseqOf(n)} > ${lastCseq})`);
  assert.equal(parseSubState(n).state, 'active');
  const r = await refresh(victim, 600);
  assert.equal(r.status, 200, 'the watcher keeps its dialog across the restart');
  await nextNotify(victim, (x) => cseqOf(x) > cseqOf(n));
  const pubRefresh = await publish(publisher, victim.presentity, { etag: victim.etag, expires: 600 });
  assert.equal(
    pubRefresh.status,
    200,
    'a PUBLISH refresh of the publication made before the kill reaches the same node, which recovered it',
  );
});

test('presenced rpc --cluster finds the owner; /metrics carries the node label', async () => {
  for (const s of shard) {
    const out = await ns!.exec(process.execPath, [
      MAIN,
      'rpc',
      '--cluster',
      `${cluster.dir}/cluster.rpc`,
      'presence.presentity_show',
      s.presentity,
      'presence',
    ]);
    assert.equal(out.code, 0, out.stderr);
    const answers = JSON.parse(out.stdout) as Array<{ node: string; result: unknown[] }>;
    assert.deepEqual(
      answers.map((a) => a.node),
      [`n${s.node}`],
    );
    const watchers = await ns!.exec(process.execPath, [
      MAIN,
      'rpc',
      '--cluster',
      `${cluster.dir}/cluster.rpc`,
      'presence.watcher_list',
      s.presentity,
      'presence',
    ]);
    const w = JSON.parse(watchers.stdout) as Array<{ node: string; result: Array<{ watcher_uri: string }> }>;
    assert.deepEqual(
      w.map((a) => a.node),
      [`n${s.node}`],
    );
    assert.equal(w[0]!.result[0]!.watcher_uri, watcher.aor);
  }
  for (let i = 1; i <= NODES; i++) {
    const m = await ns!.request('GET', `http://${cluster.nodeIp(i)}:8081/metrics`);
    assert.match(m.text, new RegExp(`^presenced_subscriptions\\{node="n${i}"\\} \\d+$`, 'm'));
  }
});

test('adding a node (cluster.sh add-node): what keeps its owner keeps its state and dialogs; what moves takes its documents along, its publications are published anew, its old dialogs end with 481', async () => {
  // Under modulo mapping 3 -> 4 nodes, a presentity keeps its owner when slot mod 3 = slot mod 4.
  const pick = (prefix: string, moves: boolean): string => {
    for (let i = 0; ; i++) {
      const p = `sip:${prefix}${i}@example.com`;
      if ((ownerOf(p, NODES) !== ownerOf(p, NODES + 1)) === moves) return p;
    }
  };
  const keep = pick('keep', false);
  const move = pick('move', true);
  const etags = new Map<string, string>();
  const dialogs = new Map<string, (typeof shard)[number]>();
  for (const p of [keep, move]) {
    const res = await publish(publisher, p, { body: pidf(p, 't1', 'open'), expires: 600 });
    assert.equal(res.status, 200);
    etags.set(p, res.headers.get('sip-etag')!);
    assert.equal((await ns!.request('PUT', xcapUrl(p), { body: allowWatcher(), headers: { 'content-type': CT.presRules } })).status, 201);
    const sub = await subscribe(watcher, p, { expires: 600 });
    assert.equal(sub.res.status, 200);
    const s = {
      node: ownerOf(p, NODES),
      presentity: p,
      dialog: sub.dialog,
      target: /<([^>]+)>/.exec(sub.res.headers.get('contact')!)![1],
      route: sub.res.headers.get('record-route'),
    };
    await nextNotify(s, (r) => parseSubState(r).state === 'active');
    dialogs.set(p, s);
  }
  const notifiesOf = (callId: string): number => watcher.requests('NOTIFY').filter((r) => r.callId === callId).length;
  const before = notifiesOf(dialogs.get(move)!.dialog!.callId);

  await cluster.addNode();

  const keepRefresh = await until(
    'edge back after its restart',
    () => publish(publisher, keep, { etag: etags.get(keep), expires: 600 }),
    (r) => r.status !== 503,
  );
  assert.equal(keepRefresh.status, 200, 'an unmoved presentity keeps its publication (same owner)');
  assert.equal((await ns!.request('GET', xcapUrl(keep))).status, 200, 'and its documents');
  const moved = await publish(publisher, move, { etag: etags.get(move), expires: 600 });
  assert.equal(moved.status, 412, 'a moved presentity: its new owner has none of its publications (the publisher publishes anew)');
  assert.equal((await publish(publisher, move, { body: pidf(move, 't1', 'open'), expires: 600 })).status, 200);
  assert.equal((await showOn(ownerOf(move, NODES + 1), move)).length, 1, 'the new publication is on the new owner');
  // add-node moved its documents (move-documents.mjs): on the new owner through HAProxy, gone from the old one.
  const doc = await ns!.request('GET', xcapUrl(move));
  assert.equal(doc.status, 200, 'its pres-rules moved with it');
  assert.equal(doc.headers['x-presenced-node'], `n${ownerOf(move, NODES + 1)}`);
  const oldCopy = await ns!.request('GET', `http://${cluster.nodeIp(ownerOf(move, NODES))}:8080/xcap-root/pres-rules/users/${move}/index`);
  assert.equal(oldCopy.status, 404, 'and left the old owner');

  // Dialogs go on through the restarted edge while their node still owns the presentity; a dialog
  // left on the old owner of a moved presentity is ended by the edge (481), both ways.
  for (const s of [...shard, dialogs.get(keep)!]) {
    const moves = ownerOf(s.presentity, NODES) !== ownerOf(s.presentity, NODES + 1);
    assert.equal(
      (await refresh(s, 600)).status,
      moves ? 481 : 200,
      `dialog with ${s.presentity} (${moves ? 'moved' : 'same owner'}) after the edge restart`,
    );
  }
  const old = dialogs.get(move)!;
  const refused = await refresh(old, 600);
  assert.equal(refused.status, 481, 'a refresh of a dialog on the old owner: 481 from the edge');
  assert.match(refused.headers.get('server') ?? '', /presenced-edge/);
  const again = await subscribe(watcher, move, { expires: 600 });
  assert.equal(again.res.status, 200, 'the watcher subscribes anew');
  assert.match(
    again.res.headers.get('contact') ?? '',
    new RegExp(`@${cluster.nodeIp(ownerOf(move, NODES + 1)).replace(/\./g, '\\.')}:`),
    'to the new owner',
  );
  const fresh = await again.dialog.nextNotify(10_000);
  assert.equal(parseSubState(fresh).state, 'active', 'the moved pres-rules allow it there');
  // The old owner lets go without the watcher hearing from it: deleting the moved pres-rules there
  // ended the subscription, and its terminated NOTIFY got 481 from the edge (a node that no longer
  // owns the presentity), as the edge's log says.
  const watchersOnOld = async (): Promise<number> =>
    (
      JSON.parse(
        (
          await ns!.request('POST', `http://${cluster.nodeIp(old.node)}:8081/RPC`, {
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'presence.watcher_list', params: [move, 'presence'] }),
            headers: { 'content-type': 'application/json' },
          })
        ).text,
      ) as { result: unknown[] }
    ).result.length;
  await until(
    'the old owner dropping the moved watcher',
    async () => ({ status: await watchersOnOld() }),
    (r) => r.status === 0,
  );
  const edgeLog = readFileSync(`${cluster.dir}/edge/log`, 'utf8');
  assert.ok(
    edgeLog.includes(`NOTIFY for ${move.slice(4)} from ${cluster.nodeIp(old.node)}, owner is set ${ownerOf(move, NODES + 1)}: 481`),
    "the edge refused the old owner's NOTIFY",
  );
  assert.equal(notifiesOf(old.dialog!.callId), before, 'no NOTIFY of the old dialog reached the watcher');
  // The new node takes its share, by the same function at the edge and in HAProxy.
  let onNew = 0;
  for (let i = 0; i < 16; i++) {
    const p = `sip:grow${i}@example.net`;
    const owner = ownerOf(p, NODES + 1);
    assert.equal((await publish(publisher, p, { body: pidf(p, 't1', 'open'), expires: 600 })).status, 200);
    assert.equal((await showOn(owner, p)).length, 1, `${p} on node ${owner}`);
    const put = await ns!.request('PUT', xcapUrl(p), { body: allowWatcher(), headers: { 'content-type': CT.presRules } });
    assert.equal(put.headers['x-presenced-node'], `n${owner}`);
    if (owner === NODES + 1) onNew++;
  }
  assert.ok(onNew > 0, 'node 4 owns some of them');
});
