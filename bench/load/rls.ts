/**
 * The resource list server figures (issue 14), the same driver against presenced's list server
 * and Kamailio's rls module: `subscribers` list subscribers (each its own user, list of the same
 * `resources` resources, and dialog over UDP, `Supported: eventlist`), measuring
 *
 * - SUBSCRIBE → the first NOTIFY (RFC 4662: full state, multipart/related with RLMI), and
 *   SUBSCRIBE → the moment the subscriber holds every resource's published state (when a
 *   server sends the first NOTIFY before its back-end subscriptions have answered, the states
 *   come in later NOTIFYs: this second figure is the one a user sees as "the buddy list filled");
 * - NOTIFYs per second delivered to the list subscribers while the resources change at a
 *   steady PUBLISH rate (open loop), resource states delivered per second, and each change →
 *   the last list subscriber holding it;
 * - memory (PSS of the process tree) across the SUBSCRIBE phase, per list subscription and per
 *   back-end subscription, right after and, with --settle, once finished transactions are gone.
 *
 * Every resource is published once before the lists are subscribed, so each has a state to
 * deliver. Resource states carry the driver's version marker (bench-vN) in the PIDF note; the
 * driver reads, per NOTIFY part, the entity and that marker, so it knows which version of which
 * resource each subscriber holds without parsing XML.
 */
import { randomBytes } from 'node:crypto';
import { type SipDriver, headerValue, tagOf, type InboundRequest, type Reply } from './driver.js';
import { DOMAIN } from '../fixtures/messages.js';
import { percentile } from '../lib/report.js';

/**
 * Who subscribes to what: fixed before a target starts (Kamailio's xcap table is filled from it).
 * Every list subscriber owns its list, as a buddy list is one user's: its own rls-services
 * document (users/SUBSCRIBER/index) with one service, its own service URI, the same resources.
 * Kamailio's rls looks for a service in the subscriber's own document only, and presenced serves
 * a list to its owner by default (rls_list_subscribers "owner").
 */
export interface RlsPlan {
  run: string;
  resources: string[];
  /** List subscriber users (their From is sip:USER@DOMAIN). */
  subscribers: string[];
  /** Each subscriber's service URI. */
  serviceUris: string[];
}

export function rlsPlan(resources: number, subscribers: number): RlsPlan {
  const run = randomBytes(3).toString('hex');
  const users = Array.from({ length: subscribers }, (_, i) => `l${i}-${run}`);
  return {
    run,
    resources: Array.from({ length: resources }, (_, i) => `sip:r${i}-${run}@${DOMAIN}`),
    subscribers: users,
    serviceUris: users.map((u) => `sip:buddies-${u}@${DOMAIN}`),
  };
}

/** Subscriber i's rls-services document: one <service> with a <list> of every resource, package presence. */
export function rlsDocument(plan: RlsPlan, i: number): string {
  let doc =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    '<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" xmlns:rl="urn:ietf:params:xml:ns:resource-lists">' +
    `<service uri="${plan.serviceUris[i]}"><list name="buddies">`;
  for (const r of plan.resources) doc += `<rl:entry uri="${r}"/>`;
  return doc + '</list><packages><package>presence</package></packages></service></rls-services>';
}

/** A minimal PIDF (one tuple) with the version marker: 100 of them fit one UDP NOTIFY with room to spare. */
export function resourcePidf(uri: string, version: number): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${uri}">` +
    `<tuple id="t1"><status><basic>${version % 2 ? 'open' : 'closed'}</basic></status><note>bench-v${version}</note></tuple></presence>`
  );
}

interface ListSub {
  index: number;
  user: string;
  sock: number;
  callId: string;
  fromTag: string;
  toTag: string | undefined;
  cseq: number;
  /** CSeqs of the NOTIFYs received (a list server may send two at once: order is not a retransmission sign). */
  seen: Set<number>;
  /** Version of each resource held (0 = no state yet). */
  versions: Int32Array;
  /** Resources whose held version is below `wanted` (the subscribe phase's completion count). */
  missing: number;
  notifies: number;
  firstNotifyAt: number;
  firstFullState: boolean;
  firstMultipart: boolean;
  completeAt: number;
  onFirst: (() => void) | undefined;
  onComplete: (() => void) | undefined;
  terminated: boolean;
}

interface PendingChange {
  version: number;
  at: number;
  missing: number;
}

const ENTITY = Buffer.from('entity="');
const MARKER = Buffer.from('bench-v');
const FULL_STATE = Buffer.from('fullState="true"');
const FULL_STATE_1 = Buffer.from("fullState='true'");

export interface RlsSubscribeResult {
  lists: number;
  resources: number;
  elapsedS: number;
  perSecond: number;
  failurePct: number;
  byStatus: Record<string, number>;
  /** SUBSCRIBE sent → first NOTIFY received. */
  firstNotifyMs: { p50: number; p99: number };
  /** How many first NOTIFYs were multipart/related with RLMI fullState="true". */
  firstFullState: number;
  /** Resources with a state in the first NOTIFY, mean over the subscribers. */
  statesInFirstNotify: number;
  /** SUBSCRIBE sent → every resource's published state held. */
  completeMs: { p50: number; p99: number };
  /** Subscribers that never held every state within the timeout. */
  incomplete: number;
  concurrency: number;
}

export interface RlsNotifyResult {
  /** PUBLISH/s offered (open loop, round-robin over the resources). */
  offeredPerSecond: number;
  durationS: number;
  publishes: number;
  publishFailures: number;
  /** NOTIFYs received by the list subscribers per second of the window. */
  notifiesPerSecond: number;
  /** Resource states (multipart parts with a newer version) delivered per second. */
  statesPerSecond: number;
  /** Mean bytes per list NOTIFY received in the window. */
  meanNotifyBytes: number;
  /** PUBLISH sent → the last list subscriber holding that version (or a later one). */
  changeToAllMs: { p50: number; p99: number; max: number };
  changesDelivered: number;
  /** Changes some subscriber still lacked `drainS` after the window. */
  changesIncomplete: number;
  drainS: number;
}

export class RlsLoad {
  readonly subs: ListSub[] = [];
  private readonly byCallId = new Map<string, ListSub>();
  private readonly resourceIndex = new Map<string, number>();
  /** Per resource: the version published last, its SIP-ETag, and the changes not yet everywhere. */
  readonly published: Int32Array;
  private readonly etags: Array<string | undefined>;
  private readonly pending: PendingChange[][];
  private readonly changeLat: number[] = [];
  private wanted: Int32Array;
  private cseq = 1;
  notifies = 0;
  notifyBytes = 0;
  statesDelivered = 0;
  unknownNotifies = 0;
  repeatedNotifies = 0;
  terminatedNotifies = 0;

  constructor(
    readonly driver: SipDriver,
    readonly plan: RlsPlan,
    readonly expires: number,
  ) {
    const n = plan.resources.length;
    for (const [i, r] of plan.resources.entries()) this.resourceIndex.set(r, i);
    this.published = new Int32Array(n);
    this.wanted = new Int32Array(n);
    this.etags = new Array<string | undefined>(n).fill(undefined);
    this.pending = Array.from({ length: n }, () => []);
    plan.subscribers.forEach((user, index) => {
      const s: ListSub = {
        index,
        user,
        sock: index % driver.sockets.length,
        callId: `${plan.run}-list-${index}@bench`,
        fromTag: `lf${index}`,
        toTag: undefined,
        cseq: 1,
        seen: new Set(),
        versions: new Int32Array(n),
        missing: n,
        notifies: 0,
        firstNotifyAt: 0,
        firstFullState: false,
        firstMultipart: false,
        completeAt: 0,
        onFirst: undefined,
        onComplete: undefined,
        terminated: false,
      };
      this.subs.push(s);
      this.byCallId.set(s.callId, s);
    });
    driver.onRequest = (req) => this.onRequest(req);
  }

  private onRequest(req: InboundRequest): void {
    if (req.method !== 'NOTIFY') return;
    const s = this.byCallId.get(req.callId);
    if (!s) {
      this.unknownNotifies++;
      return;
    }
    if (s.seen.has(req.cseq)) {
      this.repeatedNotifies++;
      return;
    }
    s.seen.add(req.cseq);
    s.notifies++;
    this.notifies++;
    this.notifyBytes += req.raw.length;
    if (req.subscriptionState.startsWith('terminated')) {
      s.terminated = true;
      this.terminatedNotifies++;
    }
    const first = s.notifies === 1;
    if (first) {
      s.firstNotifyAt = req.at;
      const ct = headerValue(req.raw.toString('latin1', 0, req.bodyStart), 'content-type', 'c') ?? '';
      s.firstMultipart = /^multipart\/related/i.test(ct) && /application\/rlmi\+xml/i.test(ct);
      s.firstFullState = req.raw.indexOf(FULL_STATE, req.bodyStart) !== -1 || req.raw.indexOf(FULL_STATE_1, req.bodyStart) !== -1;
    }
    // Each resource part: entity="URI" … bench-vN.
    const raw = req.raw;
    let at = raw.indexOf(ENTITY, req.bodyStart);
    while (at !== -1) {
      const uStart = at + ENTITY.length;
      const uEnd = raw.indexOf(0x22, uStart);
      if (uEnd === -1) break;
      const next = raw.indexOf(ENTITY, uEnd);
      const r = this.resourceIndex.get(raw.toString('latin1', uStart, uEnd));
      const m = raw.indexOf(MARKER, uEnd);
      if (r !== undefined && m !== -1 && (next === -1 || m < next)) {
        let v = 0;
        for (let i = m + MARKER.length; i < raw.length; i++) {
          const c = raw[i]!;
          if (c < 0x30 || c > 0x39) break;
          v = v * 10 + (c - 0x30);
        }
        this.advance(s, r, v, req.at);
      }
      at = next;
    }
    if (first && s.onFirst) {
      const f = s.onFirst;
      s.onFirst = undefined;
      f();
    }
  }

  private advance(s: ListSub, r: number, v: number, at: number): void {
    const old = s.versions[r]!;
    if (v <= old) return;
    s.versions[r] = v;
    this.statesDelivered++;
    const w = this.wanted[r]!;
    if (old < w && v >= w) {
      s.missing--;
      if (s.missing === 0) {
        s.completeAt = at;
        const f = s.onComplete;
        s.onComplete = undefined;
        f?.();
      }
    }
    const q = this.pending[r]!;
    for (const c of q) {
      if (c.version > v) break;
      if (c.version > old) {
        c.missing--;
        if (c.missing === 0) this.changeLat.push(at - c.at);
      }
    }
    // Changes are in version order and a later one is never everywhere before an earlier one.
    let k = 0;
    while (k < q.length && q[k]!.missing === 0) k++;
    if (k > 0) q.splice(0, k);
  }

  /** PUBLISH the next version of resource `r` (a refresh with body once it has an ETag). */
  async publish(r: number, sock = r % this.driver.sockets.length): Promise<Reply> {
    const uri = this.plan.resources[r]!;
    const v = this.published[r]! + 1;
    this.published[r] = v;
    const live = this.subs.filter((s) => s.toTag !== undefined && !s.terminated).length;
    const change: PendingChange = { version: v, at: performance.now(), missing: 0 };
    if (live > 0) {
      for (const s of this.subs) if (s.toTag !== undefined && !s.terminated && s.versions[r]! < v) change.missing++;
      if (change.missing > 0) this.pending[r]!.push(change);
    }
    let h =
      `Max-Forwards: 70\r\nFrom: <${uri}>;tag=rp${this.cseq}\r\nTo: <${uri}>\r\nCall-ID: rpub-${this.plan.run}-${this.cseq}@bench\r\n` +
      `CSeq: ${this.cseq++} PUBLISH\r\nEvent: presence\r\nExpires: 7200\r\nContent-Type: application/pidf+xml\r\n`;
    const etag = this.etags[r];
    if (etag !== undefined) h += `SIP-If-Match: ${etag}\r\n`;
    const reply = await this.driver.request(sock, 'PUBLISH', uri, h, resourcePidf(uri, v));
    if (reply.status >= 200 && reply.status < 300) this.etags[r] = headerValue(reply.head, 'sip-etag');
    else {
      // Nothing will be notified for it: forget the change.
      const q = this.pending[r]!;
      const i = q.indexOf(change);
      if (i !== -1) q.splice(i, 1);
      if (reply.status === 412) this.etags[r] = undefined;
    }
    return reply;
  }

  private subscribeRequest(s: ListSub, expires: number): Promise<Reply> {
    const contact = `<sip:${s.user}@${this.driver.localHost}:${this.driver.ports[s.sock]}>`;
    const service = this.plan.serviceUris[s.index]!;
    const to = s.toTag ? `<${service}>;tag=${s.toTag}` : `<${service}>`;
    const h =
      `Max-Forwards: 70\r\nFrom: <sip:${s.user}@${DOMAIN}>;tag=${s.fromTag}\r\nTo: ${to}\r\nCall-ID: ${s.callId}\r\n` +
      `CSeq: ${s.cseq++} SUBSCRIBE\r\nContact: ${contact}\r\nEvent: presence\r\nSupported: eventlist\r\n` +
      `Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\nExpires: ${expires}\r\n`;
    return this.driver.request(s.sock, 'SUBSCRIBE', service, h);
  }

  /** Every resource published once (version 1), `concurrency` at a time; returns the failures. */
  async publishAll(concurrency: number): Promise<number> {
    let next = 0;
    let failed = 0;
    const worker = async (): Promise<void> => {
      while (next < this.plan.resources.length) {
        const r = next++;
        const reply = await this.publish(r);
        if (reply.status < 200 || reply.status >= 300) failed++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, this.plan.resources.length) }, () => worker()));
    this.wanted = Int32Array.from(this.published);
    for (const s of this.subs) {
      let m = 0;
      for (let r = 0; r < this.wanted.length; r++) if (s.versions[r]! < this.wanted[r]!) m++;
      s.missing = m;
    }
    return failed;
  }

  /**
   * Subscribe the lists `from`..`to`, `concurrency` SUBSCRIBEs in flight, each in flight until its
   * first NOTIFY (the rate: lists/s up to the last first NOTIFY); then until it holds every state.
   */
  async subscribeLists(o: { from: number; to: number; concurrency: number; timeoutMs: number }): Promise<RlsSubscribeResult> {
    const first: number[] = [];
    const complete: number[] = [];
    const byStatus: Record<string, number> = {};
    let ok = 0;
    let failed = 0;
    let incomplete = 0;
    let fullState = 0;
    let statesInFirst = 0;
    let next = o.from;
    const start = performance.now();
    const completions: Array<Promise<void>> = [];
    let lastFirst = start;
    // A slot is free again once the first NOTIFY is in; the rest of the states are waited for aside.
    const one = async (s: ListSub): Promise<void> => {
      const gotFirst = new Promise<void>((r) => (s.onFirst = r));
      const gotAll = new Promise<void>((r) => (s.onComplete = s.missing === 0 ? undefined : r));
      const t0 = performance.now();
      const reply = await this.subscribeRequest(s, this.expires);
      byStatus[reply.status] = (byStatus[reply.status] ?? 0) + 1;
      if (reply.status < 200 || reply.status >= 300) {
        failed++;
        s.onFirst = undefined;
        s.onComplete = undefined;
        return;
      }
      s.toTag = tagOf(headerValue(reply.head, 'to', 't'));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), o.timeoutMs)));
      const f = await Promise.race([gotFirst.then(() => 'ok' as const), timeout]);
      if (f === 'timeout') {
        clearTimeout(timer);
        failed++;
        s.onFirst = undefined;
        s.onComplete = undefined;
        return;
      }
      ok++;
      lastFirst = Math.max(lastFirst, s.firstNotifyAt);
      first.push(s.firstNotifyAt - t0);
      if (s.firstMultipart && s.firstFullState) fullState++;
      statesInFirst += this.plan.resources.length - s.missing;
      completions.push(
        (async () => {
          const c = s.missing === 0 ? 'ok' : await Promise.race([gotAll.then(() => 'ok' as const), timeout]);
          clearTimeout(timer);
          if (c === 'ok') complete.push(s.completeAt - t0);
          else {
            incomplete++;
            s.onComplete = undefined;
          }
        })(),
      );
    };
    const worker = async (): Promise<void> => {
      while (next < o.to) await one(this.subs[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(o.concurrency, o.to - o.from) }, () => worker()));
    await Promise.all(completions);
    const elapsedS = (lastFirst - start) / 1000;
    first.sort((a, b) => a - b);
    complete.sort((a, b) => a - b);
    return {
      lists: ok,
      resources: this.plan.resources.length,
      elapsedS,
      perSecond: ok / elapsedS,
      failurePct: ok + failed ? (100 * failed) / (ok + failed) : 0,
      byStatus,
      firstNotifyMs: { p50: percentile(first, 50), p99: percentile(first, 99) },
      firstFullState: fullState,
      statesInFirstNotify: ok ? statesInFirst / ok : 0,
      completeMs: { p50: percentile(complete, 50), p99: percentile(complete, 99) },
      incomplete,
      concurrency: o.concurrency,
    };
  }

  /**
   * Open loop: `rate` PUBLISH/s round-robin over the resources for warm-up + `durationS`, the
   * list NOTIFYs counted over `durationS`; then up to `drainS` for the last changes to arrive.
   */
  async changes(o: { rate: number; durationS: number; warmupS: number; drainS: number }): Promise<RlsNotifyResult> {
    const n = this.plan.resources.length;
    let sent = 0;
    let failures = 0;
    let k = 0;
    const inflight: Array<Promise<void>> = [];
    const start = performance.now();
    const countFrom = start + o.warmupS * 1000;
    const end = countFrom + o.durationS * 1000;
    let n0 = -1;
    let b0 = 0;
    let s0 = 0;
    let n1 = -1;
    let b1 = 0;
    let s1 = 0;
    let lat0 = 0;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        if (n0 < 0 && now >= countFrom) {
          n0 = this.notifies;
          b0 = this.notifyBytes;
          s0 = this.statesDelivered;
          lat0 = this.changeLat.length;
        }
        const due = Math.floor(((Math.min(now, end) - start) / 1000) * o.rate);
        for (; sent < due; sent++) {
          const r = k++ % n;
          inflight.push(
            this.publish(r).then((reply) => {
              if (reply.status < 200 || reply.status >= 300) failures++;
            }),
          );
        }
        if (now >= end) {
          n1 = this.notifies;
          b1 = this.notifyBytes;
          s1 = this.statesDelivered;
          clearInterval(tick);
          resolve();
        }
      }, 5);
    });
    await Promise.all(inflight);
    // Drain: until every change is everywhere, or drainS.
    const drainEnd = performance.now() + o.drainS * 1000;
    while (performance.now() < drainEnd && this.pending.some((q) => q.length > 0)) await new Promise((r) => setTimeout(r, 100));
    const incomplete = this.pending.reduce((a, q) => a + q.length, 0);
    for (const q of this.pending) q.length = 0;
    const lat = this.changeLat.slice(lat0).sort((a, b) => a - b);
    const notifies = n1 - n0;
    return {
      offeredPerSecond: o.rate,
      durationS: o.durationS,
      publishes: sent,
      publishFailures: failures,
      notifiesPerSecond: notifies / o.durationS,
      statesPerSecond: (s1 - s0) / o.durationS,
      meanNotifyBytes: notifies > 0 ? (b1 - b0) / notifies : 0,
      changeToAllMs: { p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? NaN },
      changesDelivered: lat.length,
      changesIncomplete: incomplete,
      drainS: o.drainS,
    };
  }

  /** End every list subscription (Expires: 0). */
  async unsubscribeAll(concurrency: number): Promise<number> {
    let next = 0;
    let ok = 0;
    const worker = async (): Promise<void> => {
      while (next < this.subs.length) {
        const s = this.subs[next++]!;
        if (s.toTag === undefined || s.terminated) continue;
        const r = await this.subscribeRequest(s, 0);
        if (r.status >= 200 && r.status < 300) ok++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, () => worker()));
    return ok;
  }
}
