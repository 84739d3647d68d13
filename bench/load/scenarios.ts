/**
 * The end-to-end figures of issue 6, driven through SipDriver against any presence server:
 * the PUBLISH mix, SUBSCRIBE with the initial NOTIFY answered, NOTIFY fan-out throughput and
 * PUBLISH→last-NOTIFY latency. Each returns plain numbers; run.ts prints and stores them.
 */
import { randomBytes } from 'node:crypto';
import { type SipDriver, headerValue, tagOf, type InboundRequest, type Reply } from './driver.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { percentile } from '../lib/report.js';

const MARKER = Buffer.from('bench-v');

export interface Watcher {
  index: number;
  presentity: Presentity;
  sock: number;
  user: string;
  callId: string;
  fromTag: string;
  toTag: string | undefined;
  cseq: number;
  /** Highest marker version seen in a NOTIFY body (0 = none yet). */
  version: number;
  notifies: number;
  lastCseq: number;
  terminated: boolean;
  firstNotify: (() => void) | undefined;
}

export interface Presentity {
  uri: string;
  watchers: Watcher[];
  /** Fan-out bookkeeping: the version being waited for and how many watchers still lack it. */
  cycleVersion: number;
  cycleMissing: number;
  cycleDone: (() => void) | undefined;
}

/** The event package a PresenceLoad drives: its Event token, body type and a document carrying the version marker. */
export interface LoadEvent {
  name: string;
  contentType: string;
  body(uri: string, version: number): string;
}

export const PRESENCE_EVENT: LoadEvent = {
  name: 'presence',
  contentType: 'application/pidf+xml',
  body: (uri, v) => pidfDocument(uri, 1, `bench-v${v}`),
};

/**
 * `dialog` (RFC 4235) as pua_dialoginfo PUBLISHes it: one call of the presentity, its state
 * alternating early/confirmed, the marker in the remote identity.
 */
export const DIALOG_EVENT: LoadEvent = {
  name: 'dialog',
  contentType: 'application/dialog-info+xml',
  body: (uri, v) =>
    `<?xml version="1.0"?>\n<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="${v}" state="full" entity="${uri}">` +
    `<dialog id="call-${v >> 1}" call-id="call-${v >> 1}@bench" local-tag="l${v >> 1}" remote-tag="r${v >> 1}" direction="recipient">` +
    `<state>${v % 2 ? 'early' : 'confirmed'}</state><remote><identity>sip:bench-v${v}@${DOMAIN}</identity></remote></dialog></dialog-info>`,
};

export interface Counts {
  ok: number;
  failed: number;
  timeouts: number;
  byStatus: Record<string, number>;
}

function newCounts(): Counts {
  return { ok: 0, failed: 0, timeouts: 0, byStatus: {} };
}

function count(c: Counts, r: Reply): boolean {
  const ok = r.status >= 200 && r.status < 300;
  if (ok) c.ok++;
  else {
    c.failed++;
    if (r.status === 0) c.timeouts++;
  }
  const k = String(r.status);
  c.byStatus[k] = (c.byStatus[k] ?? 0) + 1;
  return ok;
}

/** The presence side of the driver: dialogs by Call-ID, NOTIFY bodies read for their version marker. */
export class PresenceLoad {
  readonly watchersByCallId = new Map<string, Watcher>();
  readonly run = randomBytes(3).toString('hex');
  notifiesReceived = 0;
  unknownNotifies = 0;
  /** NOTIFYs received again with a CSeq already seen: the server retransmitted (something was lost). */
  repeatedNotifies = 0;
  terminatedNotifies = 0;
  private cseq = 1;

  constructor(
    readonly driver: SipDriver,
    readonly opts: { expires: number; xcap?: string | undefined; event?: LoadEvent },
  ) {
    driver.onRequest = (req) => this.onRequest(req);
  }

  private onRequest(req: InboundRequest): void {
    if (req.method !== 'NOTIFY') return;
    this.notifiesReceived++;
    const w = this.watchersByCallId.get(req.callId);
    if (!w) {
      this.unknownNotifies++;
      return;
    }
    if (req.cseq <= w.lastCseq) {
      this.repeatedNotifies++;
      return;
    }
    w.lastCseq = req.cseq;
    w.notifies++;
    if (req.subscriptionState.startsWith('terminated')) {
      w.terminated = true;
      this.terminatedNotifies++;
    }
    const m = req.raw.indexOf(MARKER, req.bodyStart);
    if (m !== -1) {
      let v = 0;
      for (let i = m + MARKER.length; i < req.raw.length; i++) {
        const c = req.raw[i]!;
        if (c < 0x30 || c > 0x39) break;
        v = v * 10 + (c - 0x30);
      }
      if (v > w.version) {
        const p = w.presentity;
        if (w.version < p.cycleVersion && v >= p.cycleVersion) {
          p.cycleMissing--;
          if (p.cycleMissing === 0) p.cycleDone?.();
        }
        w.version = v;
      }
    }
    if (w.firstNotify) {
      const f = w.firstNotify;
      w.firstNotify = undefined;
      f();
    }
  }

  presentity(name: string): Presentity {
    return { uri: `sip:${name}-${this.run}@${DOMAIN}`, watchers: [], cycleVersion: 0, cycleMissing: 0, cycleDone: undefined };
  }

  addWatchers(p: Presentity, n: number, firstIndex: number): Watcher[] {
    const out: Watcher[] = [];
    for (let i = 0; i < n; i++) {
      const index = firstIndex + i;
      const w: Watcher = {
        index,
        presentity: p,
        sock: index % this.driver.sockets.length,
        user: `w${index}-${this.run}`,
        callId: `${this.run}-${index}@bench`,
        fromTag: `f${index}`,
        toTag: undefined,
        cseq: 1,
        version: 0,
        notifies: 0,
        lastCseq: -1,
        terminated: false,
        firstNotify: undefined,
      };
      p.watchers.push(w);
      this.watchersByCallId.set(w.callId, w);
      out.push(w);
    }
    return out;
  }

  get event(): LoadEvent {
    return this.opts.event ?? PRESENCE_EVENT;
  }

  publish(sock: number, uri: string, o: { etag?: string; body?: string; expires: number }): Promise<Reply> {
    let h =
      `Max-Forwards: 70\r\nFrom: <${uri}>;tag=p${this.cseq}\r\nTo: <${uri}>\r\nCall-ID: pub-${this.run}-${this.cseq}@bench\r\n` +
      `CSeq: ${this.cseq++} PUBLISH\r\nEvent: ${this.event.name}\r\nExpires: ${o.expires}\r\n`;
    if (o.etag !== undefined) h += `SIP-If-Match: ${o.etag}\r\n`;
    if (o.body !== undefined) h += `Content-Type: ${this.event.contentType}\r\n`;
    return this.driver.request(sock, 'PUBLISH', uri, h, o.body ?? '');
  }

  /** Initial SUBSCRIBE (or, with expires 0 on an established dialog, an unsubscribe). */
  subscribeRequest(w: Watcher, expires: number): Promise<Reply> {
    const contact = `<sip:${w.user}@${this.driver.localHost}:${this.driver.ports[w.sock]}>`;
    const to = w.toTag ? `<${w.presentity.uri}>;tag=${w.toTag}` : `<${w.presentity.uri}>`;
    const h =
      `Max-Forwards: 70\r\nFrom: <sip:${w.user}@${DOMAIN}>;tag=${w.fromTag}\r\nTo: ${to}\r\nCall-ID: ${w.callId}\r\n` +
      `CSeq: ${w.cseq++} SUBSCRIBE\r\nContact: ${contact}\r\nEvent: ${this.event.name}\r\nAccept: ${this.event.contentType}\r\nExpires: ${expires}\r\n`;
    return this.driver.request(w.sock, 'SUBSCRIBE', w.presentity.uri, h);
  }

  /** SUBSCRIBE, then wait for its first NOTIFY (answered by the driver). Resolves with the 2xx reply or a failure. */
  async subscribe(w: Watcher, timeoutMs: number): Promise<Reply> {
    const notified = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      w.firstNotify = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
    const r = await this.subscribeRequest(w, this.opts.expires);
    if (r.status < 200 || r.status >= 300) {
      w.firstNotify = undefined;
      return r;
    }
    w.toTag = tagOf(headerValue(r.head, 'to', 't'));
    const got = await notified;
    return got ? r : { status: 0, head: '', latencyMs: timeoutMs };
  }

  /** PUT an allow-all pres-rules document for a presentity (RFC 4825 / RFC 5025) when an XCAP root was given. */
  async putRules(presentityUri: string, doc: string): Promise<number> {
    if (!this.opts.xcap) return 0;
    const url = `${this.opts.xcap.replace(/\/$/, '')}/pres-rules/users/${encodeURIComponent(presentityUri).replace(/%3A/g, ':').replace(/%40/g, '@')}/index`;
    const res = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/auth-policy+xml' }, body: doc });
    await res.arrayBuffer();
    return res.status;
  }
}

// ───────────────────────────── PUBLISH mix ─────────────────────────────

export interface PublishResult {
  durationS: number;
  perSecond: number;
  failurePct: number;
  counts: Counts;
  byKind: Record<'initial' | 'refresh' | 'remove', number>;
  latencyMs: { p50: number; p99: number };
  concurrency: number;
  refreshes: number;
}

/**
 * `concurrency` publishers, each cycling initial (with body) → `refreshes` × refresh (SIP-If-Match,
 * no body) → remove (Expires: 0), for `durationS` after `warmupS`. Closed loop: the rate is what the
 * server sustains at that many in flight; failures are non-2xx and timeouts.
 */
export async function publishMix(
  load: PresenceLoad,
  o: { durationS: number; warmupS: number; concurrency: number; refreshes: number },
): Promise<PublishResult> {
  const start = performance.now();
  const countFrom = start + o.warmupS * 1000;
  const end = countFrom + o.durationS * 1000;
  const counts = newCounts();
  const byKind = { initial: 0, refresh: 0, remove: 0 };
  const lat: number[] = [];
  const record = (r: Reply, kind: keyof typeof byKind): boolean => {
    const now = performance.now();
    const ok = r.status >= 200 && r.status < 300;
    if (now >= countFrom && now <= end) {
      count(counts, r);
      byKind[kind]++;
      lat.push(r.latencyMs);
    }
    return ok;
  };
  const slot = async (k: number): Promise<void> => {
    const sock = k % load.driver.sockets.length;
    const uri = `sip:pub${k}-${load.run}@${DOMAIN}`;
    let v = 0;
    while (performance.now() < end) {
      const body = pidfDocument(uri, 1, `bench-v${++v}`);
      let r = await load.publish(sock, uri, { body, expires: 600 });
      if (!record(r, 'initial')) continue;
      let etag = headerValue(r.head, 'sip-etag');
      for (let i = 0; i < o.refreshes && etag !== undefined && performance.now() < end; i++) {
        r = await load.publish(sock, uri, { etag, expires: 600 });
        if (!record(r, 'refresh')) break;
        etag = headerValue(r.head, 'sip-etag');
      }
      if (etag !== undefined) record(await load.publish(sock, uri, { etag, expires: 0 }), 'remove');
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
    byKind,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    concurrency: o.concurrency,
    refreshes: o.refreshes,
  };
}

// ───────────────────────────── SUBSCRIBE ─────────────────────────────

export interface SubscribeResult {
  subscriptions: number;
  elapsedS: number;
  perSecond: number;
  failurePct: number;
  counts: Counts;
  latencyMs: { p50: number; p99: number };
  /** Rate over the first and the last 10 % of the subscriptions (a server whose tables scan linearly slows down). */
  firstTenthPerSecond: number;
  lastTenthPerSecond: number;
  concurrency: number;
}

/** Subscribe every watcher, `concurrency` at a time; one completes when its 2xx and first NOTIFY have arrived. */
export async function subscribeAll(
  load: PresenceLoad,
  watchers: Watcher[],
  o: { concurrency: number; timeoutMs: number; progress?: (done: number) => void },
): Promise<SubscribeResult> {
  const counts = newCounts();
  const lat: number[] = [];
  const doneAt: number[] = [];
  let next = 0;
  const start = performance.now();
  const worker = async (): Promise<void> => {
    while (next < watchers.length) {
      const w = watchers[next++]!;
      const t0 = performance.now();
      const r = await load.subscribe(w, o.timeoutMs);
      doneAt.push(performance.now());
      if (count(counts, r)) lat.push(performance.now() - t0);
      if (o.progress && (counts.ok + counts.failed) % 5000 === 0) o.progress(counts.ok + counts.failed);
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency, watchers.length) }, () => worker()));
  const elapsedS = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const total = counts.ok + counts.failed;
  const tenth = Math.max(1, Math.floor(doneAt.length / 10));
  const rate = (from: number, to: number): number =>
    (to - from) / (((doneAt[to - 1] ?? start) - (from > 0 ? doneAt[from - 1]! : start)) / 1000);
  return {
    firstTenthPerSecond: rate(0, tenth),
    lastTenthPerSecond: rate(doneAt.length - tenth, doneAt.length),
    subscriptions: counts.ok,
    elapsedS,
    perSecond: counts.ok / elapsedS,
    failurePct: total ? (100 * counts.failed) / total : 0,
    counts,
    latencyMs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
    concurrency: o.concurrency,
  };
}

// ───────────────────────────── fan-out ─────────────────────────────

export interface Publisher {
  p: Presentity;
  sock: number;
  etag: string | undefined;
  version: number;
}

/** One change of a presentity: PUBLISH version v, resolve when every watcher has a NOTIFY with ≥ v (or the timeout). */
async function cycle(
  load: PresenceLoad,
  pub: Publisher,
  timeoutMs: number,
): Promise<{ ok: boolean; latencyMs: number; missing: number; publish: Reply }> {
  const p = pub.p;
  const v = ++pub.version;
  p.cycleVersion = v;
  p.cycleMissing = 0;
  for (const w of p.watchers) if (!w.terminated && w.toTag !== undefined && w.version < v) p.cycleMissing++;
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const done = new Promise<boolean>((resolve) => {
    if (p.cycleMissing === 0) return resolve(true);
    p.cycleDone = () => resolve(true);
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const body = load.event.body(p.uri, v);
  const r = await load.publish(pub.sock, p.uri, pub.etag !== undefined ? { etag: pub.etag, body, expires: 3600 } : { body, expires: 3600 });
  if (r.status >= 200 && r.status < 300) pub.etag = headerValue(r.head, 'sip-etag');
  else {
    // Rejected or lost: nothing will be notified for this version.
    p.cycleDone = undefined;
    if (timer) clearTimeout(timer);
    return { ok: false, latencyMs: performance.now() - t0, missing: p.cycleMissing, publish: r };
  }
  const ok = await done;
  if (timer) clearTimeout(timer);
  p.cycleDone = undefined;
  return { ok, latencyMs: performance.now() - t0, missing: ok ? 0 : p.cycleMissing, publish: r };
}

export interface FanoutResult {
  watchersPerPresentity: number;
  presentities: number;
  durationS: number;
  notifiesPerSecond: number;
  cycles: number;
  incompleteCycles: number;
  publishFailures: number;
  /** Per-cycle PUBLISH→last NOTIFY while `presentities` publishers run at once. */
  cycleMs: { p50: number; p99: number };
}

/** Publishers of `presentities` change their state in a closed loop for `durationS`; NOTIFYs/s counted after the warm-up. */
export async function fanout(
  load: PresenceLoad,
  presentities: Presentity[],
  o: { durationS: number; warmupS: number; timeoutMs: number; publishers: Map<string, Publisher> },
): Promise<FanoutResult> {
  const start = performance.now();
  const countFrom = start + o.warmupS * 1000;
  const end = countFrom + o.durationS * 1000;
  let counted0 = -1;
  let counted1 = -1;
  const warmTimer = setTimeout(() => (counted0 = load.notifiesReceived), o.warmupS * 1000);
  let cycles = 0;
  let incomplete = 0;
  let publishFailures = 0;
  const lat: number[] = [];
  const loop = async (pub: Publisher): Promise<void> => {
    while (performance.now() < end) {
      const c = await cycle(load, pub, o.timeoutMs);
      const now = performance.now();
      if (!c.publish.status || c.publish.status >= 300) publishFailures++;
      else if (now >= countFrom && now <= end) {
        cycles++;
        if (!c.ok) incomplete++;
        else lat.push(c.latencyMs);
      }
    }
  };
  const endTimer = setTimeout(() => (counted1 = load.notifiesReceived), o.warmupS * 1000 + o.durationS * 1000);
  await Promise.all(presentities.map((p) => loop(publisherOf(o.publishers, p, load))));
  clearTimeout(warmTimer);
  clearTimeout(endTimer);
  if (counted0 < 0) counted0 = 0;
  if (counted1 < 0) counted1 = load.notifiesReceived;
  lat.sort((a, b) => a - b);
  return {
    watchersPerPresentity: presentities[0]?.watchers.length ?? 0,
    presentities: presentities.length,
    durationS: o.durationS,
    notifiesPerSecond: (counted1 - counted0) / o.durationS,
    cycles,
    incompleteCycles: incomplete,
    publishFailures,
    cycleMs: { p50: percentile(lat, 50), p99: percentile(lat, 99) },
  };
}

export function publisherOf(map: Map<string, Publisher>, p: Presentity, load: PresenceLoad): Publisher {
  let pub = map.get(p.uri);
  if (!pub) {
    pub = { p, sock: map.size % load.driver.sockets.length, etag: undefined, version: Math.max(0, ...p.watchers.map((w) => w.version)) };
    map.set(p.uri, pub);
  }
  return pub;
}

export interface LatencyResult {
  watchers: number;
  samples: number;
  incomplete: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** PUBLISH→last of its NOTIFYs, one change at a time (nothing else running), `cycles` samples. */
export async function fanoutLatency(
  load: PresenceLoad,
  p: Presentity,
  o: { cycles: number; timeoutMs: number; publishers: Map<string, Publisher> },
): Promise<LatencyResult> {
  const pub = publisherOf(o.publishers, p, load);
  const lat: number[] = [];
  let incomplete = 0;
  // One unmeasured change first: the body is composed and cached paths are warm.
  await cycle(load, pub, o.timeoutMs);
  for (let i = 0; i < o.cycles; i++) {
    const c = await cycle(load, pub, o.timeoutMs);
    if (c.ok) lat.push(c.latencyMs);
    else incomplete++;
  }
  lat.sort((a, b) => a - b);
  return {
    watchers: p.watchers.length,
    samples: lat.length,
    incomplete,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
    maxMs: lat[lat.length - 1] ?? NaN,
  };
}

/** End every dialog (Expires: 0), `concurrency` at a time; used for servers the bench did not start. */
export async function unsubscribeAll(load: PresenceLoad, watchers: Watcher[], concurrency: number): Promise<number> {
  let next = 0;
  let ok = 0;
  const worker = async (): Promise<void> => {
    while (next < watchers.length) {
      const w = watchers[next++]!;
      if (w.toTag === undefined || w.terminated) continue;
      const r = await load.subscribeRequest(w, 0);
      if (r.status >= 200 && r.status < 300) ok++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  return ok;
}

// ───────────────────────────── overload (issue 12) ─────────────────────────────

export interface OverloadResult {
  offeredPerSecond: number;
  durationS: number;
  sent: number;
  /** 2xx per second of the window, and their latency. */
  acceptedPerSecond: number;
  acceptedLatencyMs: { p50: number; p99: number };
  /** 503 per second (the node shedding), and how fast they came back. */
  refusedPerSecond: number;
  refusedLatencyMs: { p50: number; p99: number };
  /** Other non-2xx answers. */
  otherFailures: number;
  /** No answer within the driver's timeout (the driver never retransmits). */
  unanswered: number;
  counts: Counts;
  /** After the burst: the first new PUBLISH's status and latency (the node recovered?). */
  after: { status: number; latencyMs: number };
}

/**
 * Open loop: PUBLISH offered at `rate` requests/s for `durationS`, whatever the server answers,
 * in the mix of the PUBLISH phase (an initial with body; each 2xx lets its publication be
 * refreshed `refreshes` times, then removed). Requests are sent every 5 ms in the number the
 * rate calls for; none is retransmitted. Then, once every request is answered or timed out,
 * one new PUBLISH shows whether the server recovered.
 */
export async function overloadBurst(
  load: PresenceLoad,
  o: { rate: number; durationS: number; refreshes: number },
): Promise<OverloadResult> {
  const counts = newCounts();
  const accepted: number[] = [];
  const refused: number[] = [];
  let otherFailures = 0;
  /** Publications granted and not yet removed: [uri, etag, refreshes done]. */
  const ready: Array<[string, string, number]> = [];
  let readyHead = 0;
  let sent = 0;
  let n = 0;
  const pending: Array<Promise<void>> = [];
  const one = (): Promise<void> => {
    const sock = n % load.driver.sockets.length;
    const next = readyHead < ready.length ? ready[readyHead++]! : undefined;
    if (readyHead > 4096 && readyHead * 2 > ready.length) {
      ready.splice(0, readyHead);
      readyHead = 0;
    }
    let p: Promise<Reply>;
    let uri: string;
    let done = 0;
    if (next) {
      [uri, , done] = next;
      p = load.publish(sock, uri, { etag: next[1], expires: done >= o.refreshes ? 0 : 600 });
    } else {
      uri = `sip:ovl${n}-${load.run}@${DOMAIN}`;
      p = load.publish(sock, uri, { body: pidfDocument(uri, 1, `bench-v${n}`), expires: 600 });
    }
    n++;
    return p.then((r) => {
      count(counts, r);
      if (r.status >= 200 && r.status < 300) {
        accepted.push(r.latencyMs);
        const etag = headerValue(r.head, 'sip-etag');
        const removal = next !== undefined && done >= o.refreshes;
        if (etag !== undefined && !removal) ready.push([uri, etag, next ? done + 1 : 0]);
      } else if (r.status === 503) refused.push(r.latencyMs);
      else if (r.status !== 0) otherFailures++;
    });
  };
  const start = performance.now();
  const end = start + o.durationS * 1000;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      const due = Math.floor(((Math.min(now, end) - start) / 1000) * o.rate);
      for (; sent < due; sent++) pending.push(one());
      if (now >= end) {
        clearInterval(tick);
        resolve();
      }
    }, 5);
  });
  await Promise.all(pending);
  const after = await load.publish(0, `sip:ovl-after-${load.run}@${DOMAIN}`, {
    body: pidfDocument(`sip:ovl-after-${load.run}@${DOMAIN}`, 1, 'bench-v1'),
    expires: 60,
  });
  accepted.sort((a, b) => a - b);
  refused.sort((a, b) => a - b);
  return {
    offeredPerSecond: sent / o.durationS,
    durationS: o.durationS,
    sent,
    acceptedPerSecond: accepted.length / o.durationS,
    acceptedLatencyMs: { p50: percentile(accepted, 50), p99: percentile(accepted, 99) },
    refusedPerSecond: refused.length / o.durationS,
    refusedLatencyMs: { p50: percentile(refused, 50), p99: percentile(refused, 99) },
    otherFailures,
    unanswered: counts.timeouts,
    counts,
    after: { status: after.status, latencyMs: after.latencyMs },
  };
}
