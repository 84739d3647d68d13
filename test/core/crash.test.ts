/**
 * Crash safety end to end (issue 4, DESIGN "LMDB is the store"): what a node acknowledged
 * survives SIGKILL; after a restart on the same store every live subscription resumes in its
 * dialog above its last CSeq (the next one after a clean stop, or with notify_cseq_reserve = 1
 * even after SIGKILL; at most notify_cseq_reserve above it otherwise), and what expired while the node was down is cleaned up, expired
 * subscriptions getting their terminated NOTIFY. Ports are ephemeral, so the restarted node
 * listens elsewhere: publishers talk to the new port, NOTIFYs still reach the watchers' Contact.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa, UaProto } from '../support/sip-ua.js';
import {
  Dialog,
  pidf,
  publish,
  subscribe,
  watch,
  openUa,
  uniqueUri,
  parseSubState,
  bodyOf,
  cseqOf,
  showsOpen,
  sleep,
} from '../support/presence.js';
import { watcherList } from '../support/rpc.js';

const CONFIG = { force_active: 1, min_expires: 0, sip_t1: 50 };
/** The shipped notify_cseq_reserve: after SIGKILL a dialog continues at most this far above its last NOTIFY. */
const RESERVE = 64;

/**
 * The expiry a publication or subscription is refreshed to just before a SIGKILL, so that it
 * runs out while the node is down: the only room this file needs is for the 200 to that refresh
 * to reach us and the kill to follow, not for a whole PUBLISH/SUBSCRIBE/NOTIFY exchange.
 */
const SHORT_S = 4;

/** Wait until the instant `at` (ms since the epoch, this machine's clock: the node's too) has passed. */
async function pastInstant(at: number): Promise<void> {
  while (Date.now() <= at) await sleep(at - Date.now() + 1);
}

/** The first NOTIFY after a SIGKILL restart: above the last one sent, within the reservation. */
function assertResumedCseq(after: number, before: number): void {
  assert.ok(after > before && after <= before + RESERVE, `CSeq ${after} after the restart, ${before} before it (reserve ${RESERVE})`);
}

/** A store directory shared by a node and its restart; removed at the end. */
async function withStore(fn: (dataDir: string, nodes: RunningNode[], uas: TestUa[]) => Promise<void>): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-crash-'));
  const nodes: RunningNode[] = [];
  const uas: TestUa[] = [];
  try {
    await fn(dataDir, nodes, uas);
  } finally {
    await Promise.all(uas.map((u) => u.close()));
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function open(node: RunningNode, proto: UaProto, uas: TestUa[]): Promise<TestUa> {
  const ua = await openUa(node, proto);
  uas.push(ua);
  return ua;
}

/** Talk to an old dialog from another UA (the watcher's own UA still points at the dead node's port). */
function sameDialog(via: TestUa, d: Dialog): Dialog {
  const copy = new Dialog(via, d.presentity, d.event, d.callId, d.fromTag, d.toTag);
  copy.cseq = d.cseq;
  return copy;
}

// One test at a time: each starts two nodes, and two of them wait for expiries on the wall clock.
describe('SIGKILL and restart on the same store', { concurrency: 1 }, () => {
  for (const proto of ['udp', 'tcp'] as const) {
    test(`[${proto}] the next PUBLISH after a restart reaches the old watcher in its old dialog with CSeq + 1`, () =>
      withStore(async (dataDir, nodes, uas) => {
        const first = await startNode(CONFIG, { dataDir });
        nodes.push(first);
        const publisher = await open(first, proto, uas);
        const watcher = await open(first, proto, uas);

        const p = uniqueUri('crash');
        const pub = await publish(publisher, p, { body: pidf(p, 't1', 'open', 'before'), expires: 600 });
        assert.equal(pub.status, 200);
        const etag = pub.headers.get('sip-etag')!;
        const w = await watch(watcher, p, { expires: 600 });
        assert.match(bodyOf(w.first), /before/);

        // Acknowledged just before the kill: a publication and a subscription of another presentity.
        const q = uniqueUri('crash-late');
        const latePub = await publish(publisher, q, { body: pidf(q, 'late', 'open', 'late'), expires: 600 });
        assert.equal(latePub.status, 200);
        const lateWatcher = await open(first, proto, uas);
        const late = await subscribe(lateWatcher, q, { expires: 600 });
        await first.kill(); // right on the 2xx: its immediate NOTIFY may or may not have left
        assert.equal(late.res.status, 200, 'late SUBSCRIBE acknowledged');
        const lateSub = late.dialog;

        const second = await startNode(CONFIG, { dataDir });
        nodes.push(second);
        const publisher2 = await open(second, proto, uas);

        const mod = await publish(publisher2, p, { etag, body: pidf(p, 't1', 'closed', 'after'), expires: 600 });
        assert.equal(mod.status, 200, `the entity-tag acknowledged before the crash still works: ${mod.status} ${mod.reason}`);
        const n = await w.dialog.nextNotify(undefined, (r) => bodyOf(r).includes('after'));
        assert.equal(n.callId, w.dialog.callId, 'same Call-ID');
        assert.equal(n.fromTag, w.dialog.toTag, 'same local tag');
        assert.equal(n.toTag, w.dialog.fromTag, 'same remote tag');
        assertResumedCseq(cseqOf(n), cseqOf(w.first));
        assert.equal(parseSubState(n).state, 'active');
        const expires = parseSubState(n).expires!;
        assert.ok(expires > 500 && expires <= 600, `remaining expiry carried over (${expires})`);

        // What was acknowledged right before SIGKILL is there too.
        const lateRefresh = await publish(publisher2, q, { etag: latePub.headers.get('sip-etag')!, expires: 600 });
        assert.equal(lateRefresh.status, 200, 'a publication acknowledged just before the kill survived');
        const probe = await open(second, proto, uas);
        const r = await sameDialog(probe, lateSub).request(600);
        assert.equal(r.status, 200, 'a subscription acknowledged just before the kill survived');
        assert.equal(r.toTag, lateSub.toTag);
        const latest = await probe.nextRequest('NOTIFY', (x) => x.callId === lateSub.callId);
        assert.equal(showsOpen(bodyOf(latest)), true);
      }));

    for (const [how, cfg] of [
      ['after a clean stop (SIGTERM)', CONFIG],
      ['after SIGKILL with notify_cseq_reserve = 1', { ...CONFIG, notify_cseq_reserve: 1 }],
    ] as const) {
      test(`[${proto}] ${how} a dialog continues with exactly the next CSeq (RFC 3261 §12.2.1.1)`, () =>
        withStore(async (dataDir, nodes, uas) => {
          const first = await startNode(cfg, { dataDir });
          nodes.push(first);
          const ua = await open(first, proto, uas);
          const p = uniqueUri('cseq');
          const pub = await publish(ua, p, { body: pidf(p, 't1', 'open', 'v0'), expires: 600 });
          const w = await watch(ua, p, { expires: 600 });
          // A few NOTIFYs, so the last CSeq is neither the first nor a reservation boundary.
          let last = w.first;
          let etag = pub.headers.get('sip-etag')!;
          for (let v = 1; v <= 3; v++) {
            const mod = await publish(ua, p, { etag, body: pidf(p, 't1', 'open', `v${v}`), expires: 600 });
            etag = mod.headers.get('sip-etag')!;
            last = await w.dialog.nextNotify(undefined, (r) => bodyOf(r).includes(`v${v}`));
          }
          if (cfg === CONFIG) assert.equal(await first.stop(), 0, 'clean exit');
          else await first.kill();

          const second = await startNode(cfg, { dataDir });
          nodes.push(second);
          const ua2 = await open(second, proto, uas);
          assert.equal((await publish(ua2, p, { etag, body: pidf(p, 't1', 'closed', 'after'), expires: 600 })).status, 200);
          const n = await w.dialog.nextNotify(undefined, (r) => bodyOf(r).includes('after'));
          assert.equal(cseqOf(n), cseqOf(last) + 1, 'the next CSeq of the dialog');
        }));
    }

    test(`[${proto}] what expired while the node was down: terminated NOTIFY for the subscription, the publication gone`, () =>
      withStore(async (dataDir, nodes, uas) => {
        const first = await startNode(CONFIG, { dataDir });
        nodes.push(first);
        const publisher = await open(first, proto, uas);
        const watcher = await open(first, proto, uas);

        const p = uniqueUri('down');
        const pub = await publish(publisher, p, { body: pidf(p, 'brief', 'open'), expires: 600 });
        assert.equal(pub.status, 200);
        const short = await watch(watcher, p, { expires: 600 });
        assert.equal(showsOpen(bodyOf(short.first)), true);
        // Both refreshed to SHORT_S, then the node is killed; it is restarted only once both ran out.
        const pubRefresh = await publish(publisher, p, { etag: pub.headers.get('sip-etag')!, expires: SHORT_S });
        assert.equal(pubRefresh.status, 200);
        assert.equal((await short.dialog.request(SHORT_S)).status, 200);
        const runsOut = Date.now() + SHORT_S * 1000;
        await first.kill();
        await pastInstant(runsOut);

        const second = await startNode(CONFIG, { dataDir });
        nodes.push(second);
        const last = await short.dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
        assert.equal(parseSubState(last).reason, 'timeout', `Subscription-State: ${last.headers.get('subscription-state')}`);
        assert.equal(last.callId, short.dialog.callId);
        assert.equal(last.fromTag, short.dialog.toTag);
        assertResumedCseq(cseqOf(last), cseqOf(short.first));
        assert.equal(showsOpen(bodyOf(last)), false, 'the final NOTIFY does not show the expired publication open');

        const publisher2 = await open(second, proto, uas);
        const stale = await publish(publisher2, p, { etag: pubRefresh.headers.get('sip-etag')!, expires: 60 });
        assert.equal(stale.status, 412, 'the publication that expired while down is gone');
        const fresh = await watch(publisher2, p, { expires: 60 });
        assert.equal(showsOpen(bodyOf(fresh.first)), false, 'a new watcher sees nothing open');
        assert.equal((await sameDialog(publisher2, short.dialog).request(60)).status, 481, 'the expired subscription is gone');
      }));

    test(`[${proto}] an unsubscribed (versioned) dialog;sla watcher stays unsubscribed across a restart`, () =>
      withStore(async (dataDir, nodes, uas) => {
        const cfg = { ...CONFIG, disable_bla: 0 };
        const first = await startNode(cfg, { dataDir });
        nodes.push(first);
        const ua = await open(first, proto, uas);
        const line = uniqueUri('line');
        const info = (state: string): string =>
          `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="${line}">` +
          `<dialog id="d1"><state>${state}</state></dialog></dialog-info>`;
        const pub = await publish(ua, line, {
          event: 'dialog;sla',
          body: info('confirmed'),
          contentType: 'application/dialog-info+xml',
          expires: 600,
        });
        assert.equal(pub.status, 200);
        const w = await watch(ua, line, { event: 'dialog;sla', expires: 600 });
        assert.equal((await w.dialog.request(0)).status, 200);
        // The 200 to the unsubscribe follows the store's commit of the removal: kill right away.
        const last = await w.dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
        await first.kill();

        const second = await startNode(cfg, { dataDir });
        nodes.push(second);
        const ua2 = await open(second, proto, uas);
        // A watcher of the line subscribed after the restart: its NOTIFY for the change below is
        // sent in the same fan-out a resurrected old dialog would get one from.
        const control = await watch(ua2, line, { event: 'dialog;sla', expires: 600 });
        const mod = await publish(ua2, line, {
          event: 'dialog;sla',
          etag: pub.headers.get('sip-etag')!,
          body: info('terminated'),
          contentType: 'application/dialog-info+xml',
          expires: 600,
        });
        assert.equal(mod.status, 200);
        await control.dialog.nextNotify(undefined, (r) => bodyOf(r).includes('terminated'));
        const after = ua.requests('NOTIFY').filter((r) => r.callId === w.dialog.callId && cseqOf(r) > cseqOf(last));
        assert.deepEqual(
          after.map((r) => `${cseqOf(r)} ${r.headers.get('subscription-state')}`),
          [],
          'no NOTIFY in a dialog the watcher ended before the crash',
        );
        const listed = await watcherList(second.rpcPort, line, 'dialog;sla');
        assert.deepEqual(
          listed.map((x) => x.call_id).filter((id) => id === w.dialog.callId),
          [],
          "the ended subscription is not among the line's watchers",
        );
        assert.equal((await sameDialog(ua2, w.dialog).request(600)).status, 481, 'the ended subscription was not resurrected');
      }));

    test(`[${proto}] a live watcher learns after the restart that a publication expired while the node was down`, () =>
      withStore(async (dataDir, nodes, uas) => {
        const first = await startNode(CONFIG, { dataDir });
        nodes.push(first);
        const publisher = await open(first, proto, uas);
        const watcher = await open(first, proto, uas);
        const p = uniqueUri('stale');
        const pub = await publish(publisher, p, { body: pidf(p, 'brief', 'open'), expires: 600 });
        assert.equal(pub.status, 200);
        const live = await watch(watcher, p, { expires: 600 });
        assert.equal(showsOpen(bodyOf(live.first)), true);
        // A refresh to SHORT_S (no state change, no NOTIFY), the kill, a restart once it ran out.
        assert.equal((await publish(publisher, p, { etag: pub.headers.get('sip-etag')!, expires: SHORT_S })).status, 200);
        const runsOut = Date.now() + SHORT_S * 1000;
        await first.kill();
        await pastInstant(runsOut);
        nodes.push(await startNode(CONFIG, { dataDir }));
        // RFC 6665 §4.2.2 / RFC 3903 §6: the state changed (the soft state is gone), so the watcher is told.
        const n = await live.dialog.nextNotify(undefined, (r) => !showsOpen(bodyOf(r)));
        assertResumedCseq(cseqOf(n), cseqOf(live.first));
        assert.equal(parseSubState(n).state, 'active');
      }));
  }
});
