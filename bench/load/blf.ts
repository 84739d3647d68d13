/**
 * The BLF figures of issue 13, on the same driver and targets as the presence figures:
 *
 * - dialog PUBLISH/s: `concurrency` phones' calls in a closed loop, each call the PUBLISHes
 *   pua_dialoginfo sends for one end: initial (early), modify (confirmed), modify
 *   (terminated), removal (Expires: 0); every 2xx counts.
 * - a call's state change → the last of N `dialog` watchers' NOTIFYs (the busy-lamp keys of
 *   N phones watching one extension): fanoutLatency() of scenarios.ts with dialog-info bodies.
 */
import { headerValue, type Reply } from './driver.js';
import type { PresenceLoad, Counts } from './scenarios.js';
import { DOMAIN } from '../fixtures/messages.js';
import { percentile } from '../lib/report.js';

export interface DialogPublishResult {
  durationS: number;
  perSecond: number;
  failurePct: number;
  counts: Counts;
  latencyMs: { p50: number; p99: number };
  concurrency: number;
  calls: number;
}

function callDocument(uri: string, call: string, state: string, version: number): string {
  return (
    `<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="${version}" state="full" entity="${uri}">` +
    `<dialog id="${call}" call-id="${call}@bench" local-tag="l-${call}" remote-tag="r-${call}" direction="recipient"><state>${state}</state>` +
    `<remote><identity>sip:caller@${DOMAIN}</identity></remote></dialog></dialog-info>`
  );
}

export async function dialogPublish(
  load: PresenceLoad,
  o: { durationS: number; warmupS: number; concurrency: number },
): Promise<DialogPublishResult> {
  const start = performance.now();
  const countFrom = start + o.warmupS * 1000;
  const end = countFrom + o.durationS * 1000;
  const counts: Counts = { ok: 0, failed: 0, timeouts: 0, byStatus: {} };
  const lat: number[] = [];
  let calls = 0;
  const record = (r: Reply): boolean => {
    const now = performance.now();
    const ok = r.status >= 200 && r.status < 300;
    if (now >= countFrom && now <= end) {
      if (ok) counts.ok++;
      else {
        counts.failed++;
        if (r.status === 0) counts.timeouts++;
      }
      counts.byStatus[String(r.status)] = (counts.byStatus[String(r.status)] ?? 0) + 1;
      lat.push(r.latencyMs);
    }
    return ok;
  };
  const slot = async (k: number): Promise<void> => {
    const sock = k % load.driver.sockets.length;
    const uri = `sip:ext${k}-${load.run}@${DOMAIN}`;
    for (let n = 0; performance.now() < end; n++) {
      const call = `c${k}-${n}-${load.run}`;
      let r = await load.publish(sock, uri, { body: callDocument(uri, call, 'early', 1), expires: 600 });
      if (!record(r)) continue;
      let etag = headerValue(r.head, 'sip-etag');
      for (const [state, v] of [
        ['confirmed', 2],
        ['terminated', 3],
      ] as const) {
        if (etag === undefined) break;
        r = await load.publish(sock, uri, { etag, body: callDocument(uri, call, state, v), expires: 600 });
        if (!record(r)) {
          etag = undefined;
          break;
        }
        etag = headerValue(r.head, 'sip-etag');
      }
      if (etag !== undefined) record(await load.publish(sock, uri, { etag, expires: 0 }));
      if (performance.now() >= countFrom) calls++;
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, (_, k) => slot(k)));
  lat.sort((a, b) => a - b);
  const total = counts.ok + counts.failed;
  return {
    durationS: o.durationS,
    perSecond: counts.ok / o.durationS,
    failurePct: total ? (100 * counts.failed) / total : 0,
    counts,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    concurrency: o.concurrency,
    calls,
  };
}
