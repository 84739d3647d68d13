/**
 * The NOTIFY side of RFC 6665: composing the state once per presentity change (and per
 * authorisation outcome), then one cheap NOTIFY per watcher, one in flight per subscription
 * with the newest state queued behind it. A watcher that answers 481, times out or whose
 * transport fails is removed; it never delays the others. Subscriptions that asked for RFC 6446
 * rate control (min-interval / max-interval) also have their NOTIFYs spaced and kept alive here.
 */
import { ownString, type OutgoingRequest } from '../transport/message.js';
import { SipUri, NameAddr } from '../transport/uri.js';
import type { SipStack, ClientOutcome } from '../transport/stack.js';
import type { Target, Protocol } from '../transport/flows.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { StoreWriteError, type Store } from './store/store.js';
import type { Subscription } from './store/records.js';
import type { PackageRegistry } from './packages/registry.js';
import { VERSION_SLOT, type PackageContext } from './packages/types.js';
import { LiveSubscription, presentityKey, type Pending } from './subscription.js';
import { RateControl, type RateIntervals } from './rate-control.js';
import { MAX_TIMER_DELAY } from './timers.js';

export interface NotifierDeps {
  config: Config;
  stack: SipStack;
  store: Store;
  packages: PackageRegistry;
  ctx: PackageContext;
  log: Logger;
  /** Live subscriptions of a presentity+event. */
  watchersOf: (presentityUri: string, event: string) => Iterable<LiveSubscription>;
  /** Forget a subscription (memory and store) — it ended. */
  forget: (sub: LiveSubscription, reason: string) => Promise<void>;
  /** Transform a composed body for an authorisation outcome key ('' = untransformed). */
  transform?: (sub: LiveSubscription, body: string) => Promise<string>;
}

export interface NotifyStats {
  sent: number;
  failed: number;
  removedByFailure: number;
}

interface BodyEntry {
  body: Promise<string | undefined>;
  /** The body once composed (undefined until then, or when there is nothing to send). */
  value?: string | undefined;
  transformed: Map<string, Promise<string>>;
}

/** Body a polite-blocked watcher sees (RFC 5025 §3.2.1): a valid document that reveals nothing. */
function politeBlockBody(presentityUri: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="' +
    presentityUri.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;') +
    '"><tuple id="polite-block"><status><basic>closed</basic></status></tuple></presence>\n'
  );
}

/** A NOTIFY that could not be built (composition or store failure): what was queued waits this long. */
const RETRY_AFTER_FAILURE_MS = 1000;

/** NOTIFY client transactions outstanding at once, node-wide. */
const MAX_IN_FLIGHT = 1000;

/** Two NOTIFYs waiting for the same turn become one with the whole current state (partial bodies cannot be merged). */
function coalesce(older: Pending, newer: Pending): Pending {
  if (newer.kind === 'terminate') return newer;
  if (older.kind === 'terminate') return older;
  return older.immediate || newer.immediate ? { kind: 'state', immediate: true } : { kind: 'state' };
}

export class Notifier {
  private readonly bodies = new Map<string, BodyEntry>();
  readonly stats: NotifyStats = { sent: 0, failed: 0, removedByFailure: 0 };

  constructor(private readonly deps: NotifierDeps) {}

  /** The presentity's state changed: recompose once, then NOTIFY every active watcher. */
  presentityChanged(presentityUri: string, event: string): void {
    this.bodies.delete(presentityKey(presentityUri, event));
    for (const sub of this.deps.watchersOf(presentityUri, event)) {
      if (sub.record.state === 'active') this.schedule(sub, { kind: 'state' });
    }
  }

  /** Drop a presentity's composed body without notifying (the next NOTIFY recomposes). */
  invalidate(presentityUri: string, event: string): void {
    this.bodies.delete(presentityKey(presentityUri, event));
  }

  /** Queue a NOTIFY for one subscription (state update or final). Nothing follows a final one. */
  schedule(sub: LiveSubscription, pending: Pending): void {
    if (sub.ended) return;
    if (pending.kind === 'terminate') {
      sub.ended = true;
      // A final NOTIFY is never held back by min-interval, and no rate timer outlives the subscription.
      if (sub.rate !== undefined) this.endRate(sub);
    }
    this.enqueue(sub, pending);
  }

  /** Send now, or behind the subscription's NOTIFY in flight, or when a node-wide slot frees. */
  private enqueue(sub: LiveSubscription, pending: Pending): void {
    if (sub.inFlight) {
      sub.queued = sub.queued === undefined ? pending : coalesce(sub.queued, pending);
      return;
    }
    // RFC 6446 min-interval: too soon after the last NOTIFY, the state waits for its turn.
    if (sub.rate !== undefined && pending.kind === 'state' && this.holdForRate(sub, sub.rate, pending)) return;
    if (this.inFlightTotal >= MAX_IN_FLIGHT) {
      // Too many NOTIFYs outstanding: wait for a slot (a burst of 10,000 would let retransmission
      // timers fire before the 200s are even read). Marked in flight so later updates coalesce.
      sub.inFlight = true;
      this.backlog.push([sub, pending]);
      return;
    }
    this.start(sub, pending);
  }

  private start(sub: LiveSubscription, pending: Pending): void {
    this.inFlightTotal++;
    void this.send(sub, pending);
  }

  /** A NOTIFY finished (answered, failed or never sent): its slot goes to the longest waiting. */
  private release(): void {
    this.inFlightTotal--;
    while (this.backlogHead < this.backlog.length && this.inFlightTotal < MAX_IN_FLIGHT) {
      const [next, p] = this.backlog[this.backlogHead++]!;
      next.inFlight = false;
      this.start(next, p);
    }
    if (this.backlogHead === this.backlog.length) {
      this.backlog.length = 0;
      this.backlogHead = 0;
    }
  }

  private inFlightTotal = 0;
  private lastBody: string | undefined;
  private lastBodyBuf: Buffer = Buffer.alloc(0);
  private readonly backlog: Array<[LiveSubscription, Pending]> = [];
  private backlogHead = 0;

  /** The composed (untransformed) body of a presentity, computed once per change. */
  private composed(sub: LiveSubscription): BodyEntry {
    const key = sub.presentityKey;
    let entry = this.bodies.get(key);
    if (!entry) {
      const pkg = this.deps.packages.get(sub.record.event);
      const body = pkg ? pkg.compose(sub.record.presentityUri, this.deps.ctx) : Promise.resolve(undefined);
      const e: BodyEntry = { body, transformed: new Map() };
      entry = e;
      this.bodies.set(key, e);
      body.then(
        (b) => (e.value = b),
        () => {
          // A failed composition must not stick: the next change or NOTIFY tries again.
          if (this.bodies.get(key) === e) this.bodies.delete(key);
        },
      );
    }
    return entry;
  }

  /** The body already composed for this watcher's outcome, if there is one (no await needed). */
  private readyBody(sub: LiveSubscription): string | undefined {
    if (sub.bodyKey !== '' || sub.record.subHandling === 'polite-block') return undefined;
    return this.bodies.get(sub.presentityKey)?.value;
  }

  /** Body for an active watcher, per its authorisation outcome (one computation per outcome). */
  private async bodyFor(sub: LiveSubscription): Promise<string | undefined> {
    if (sub.record.subHandling === 'polite-block') return politeBlockBody(sub.record.presentityUri);
    const entry = this.composed(sub);
    const transform = this.deps.transform;
    if (sub.bodyKey === '' || !transform) return entry.body;
    let t = entry.transformed.get(sub.bodyKey);
    if (!t) {
      t = entry.body.then((b) => (b === undefined ? '' : transform(sub, b)));
      entry.transformed.set(sub.bodyKey, t);
    }
    const out = await t;
    return out === '' ? undefined : out;
  }

  /** Send one NOTIFY and act on its outcome; never rejects (a failure is logged). */
  private async send(sub: LiveSubscription, pending: Pending): Promise<void> {
    const rec = sub.record;
    sub.inFlight = true;
    try {
      const pkg = this.deps.packages.get(rec.event);
      let body: string | undefined;
      let state: string;
      if (pending.kind === 'terminate') {
        state = `terminated;reason=${pending.reason}`;
        // A final NOTIFY after expiry, unsubscribe or fetch still carries the state (RFC 6665 §4.4.3).
        if (rec.state === 'active' && (pending.reason === 'timeout' || pending.reason === 'noresource')) body = await this.bodyFor(sub);
      } else {
        // The state the body is for; the expires it shows is computed last, just before sending.
        state = rec.state;
        if (rec.state === 'active') body = pending.body ?? this.readyBody(sub) ?? (await this.bodyFor(sub));
      }
      if (body !== undefined && pkg?.versioned) {
        body = body.split(VERSION_SLOT).join(String(rec.winfoVersion));
        rec.winfoVersion++;
      }
      // The subscription ended while this NOTIFY waited (backlog, composition): only its final
      // NOTIFY may still go, and nothing may write its record back into the store.
      if (sub.ended && pending.kind !== 'terminate') {
        sub.inFlight = false;
        const next = sub.queued; // the final NOTIFY, if it was queued behind this one
        sub.queued = undefined;
        if (next) this.enqueue(sub, next);
        return;
      }
      rec.localCseq++;
      // The store holds this CSeq or a higher one before the NOTIFY leaves, so a restart continues
      // above it (see reserveCseq); where the body's version must survive too, the whole record.
      // (A final NOTIFY writes nothing: its subscription is already gone from the store.)
      if (pending.kind !== 'terminate') {
        try {
          if (pkg?.versioned) await this.deps.store.putSubscription(rec);
          else if (rec.localCseq > sub.cseqReserved) await this.reserveCseq(sub);
        } catch (err) {
          // A store that cannot write (disk full) holds no NOTIFY back: the CSeq is right in memory, only not durable yet.
          if (!(err instanceof StoreWriteError)) throw err;
        }
        state += `;expires=${Math.max(0, Math.round((rec.expiresAt - Date.now()) / 1000))}`;
        // RFC 6446: the rate parameters in use, as Subscription-State parameters.
        if (sub.rate !== undefined) state += sub.rate.stateParams;
      }
      const wire = this.wire(sub);
      // min-interval and max-interval count between NOTIFYs leaving, after the body and the CSeq commit.
      if (sub.rate !== undefined && pending.kind === 'state') this.sentUnderRate(sub, sub.rate);
      const outcome = await this.deps.stack.sendRequest(wire.request(rec.localCseq, state, this.encode(body), pkg?.notifyType), wire.target);
      sub.inFlight = false;
      const forgetting = this.afterOutcome(sub, pending, outcome);
      if (forgetting) await forgetting;
    } catch (err) {
      sub.inFlight = false;
      this.deps.log.error({ err, callId: rec.callId }, 'NOTIFY failed');
      // What was queued behind it is tried again shortly, not parked until the next change.
      const next = sub.queued;
      sub.queued = undefined;
      if (next) {
        setTimeout(() => {
          if (next.kind === 'terminate' || !sub.ended) this.enqueue(sub, next);
        }, RETRY_AFTER_FAILURE_MS).unref();
      }
    } finally {
      this.release();
    }
  }

  /**
   * Store the dialog's NOTIFY CSeq `notify_cseq_reserve` ahead, not one by one: the NOTIFYs up to
   * it leave without a write, so a fan-out to N watchers writes N/reserve records and only the
   * NOTIFY that reserves waits for a commit. A restart continues above the stored number; after
   * a crash a watcher may see a gap of up to the reserve, which RFC 3261 §12.2.2 has it accept
   * (a clean stop stores the exact numbers, see flushCseqs). 1 = every CSeq committed, contiguous
   * even across SIGKILL (§12.2.1.1 asks for contiguous numbers).
   */
  async reserveCseq(sub: LiveSubscription, from = sub.record.localCseq): Promise<void> {
    const reserved = from + this.deps.config.notify_cseq_reserve - 1;
    const flushes = this.cseqFlushes;
    await this.deps.store.putCseq(sub.record.id, reserved);
    // Only once committed (a failed write reserves nothing), and not over a clean stop's exact
    // number written meanwhile (that write came after this one).
    if (flushes === this.cseqFlushes && reserved > sub.cseqReserved) sub.cseqReserved = reserved;
  }

  private cseqFlushes = 0;

  /** Clean stop: the exact CSeq of each dialog, so the next process continues without a gap. */
  flushCseqs(subs: Iterable<LiveSubscription>): Promise<unknown> {
    this.cseqFlushes++;
    const writes: Promise<boolean>[] = [];
    for (const sub of subs) {
      if (sub.ended || sub.cseqReserved <= sub.record.localCseq) continue;
      // A NOTIFY still leaving after this reserves again first.
      sub.cseqReserved = sub.record.localCseq;
      writes.push(this.deps.store.putCseq(sub.record.id, sub.record.localCseq));
    }
    return Promise.all(writes);
  }

  /** Act on a NOTIFY's outcome; a promise only when the subscription has to be forgotten. */
  private afterOutcome(sub: LiveSubscription, pending: Pending, outcome: ClientOutcome): Promise<void> | undefined {
    const rec = sub.record;
    const status = outcome.kind === 'response' ? outcome.response.status : outcome.kind === 'timeout' ? 408 : 503;
    if (status >= 200 && status < 300) this.stats.sent++;
    else {
      this.stats.failed++;
      const why = outcome.kind === 'transport-error' ? outcome.error.message : outcome.kind === 'timeout' ? 'timeout (Timer F)' : `${status}`;
      this.deps.log.info({ callId: rec.callId, watcherUri: rec.watcherUri, presentityUri: rec.presentityUri, status, why }, 'NOTIFY not accepted');
    }
    if (pending.kind === 'terminate') return undefined; // already forgotten by whoever ended it
    // RFC 6665 §4.2.2: 481 ends the subscription, and so does a transport failure; a timeout (Timer F or 408)
    // does when timeout_rm_subs = 1 (Kamailio's parameter, default 1).
    const timedOut = outcome.kind === 'timeout' || status === 408;
    const fatal = status === 481 || outcome.kind === 'transport-error' || (timedOut && this.deps.config.timeout_rm_subs === 1);
    if (fatal) {
      sub.ended = true;
      sub.queued = undefined;
      if (sub.rate !== undefined) this.endRate(sub);
      this.stats.removedByFailure++;
      return this.deps.forget(sub, status === 481 ? 'watcher answered 481' : 'NOTIFY failed: ' + status);
    }
    const next = sub.queued;
    sub.queued = undefined;
    // Queued while this one was in flight (a final NOTIFY was admitted by schedule() already).
    if (next) this.enqueue(sub, next);
  }

  // ───── RFC 6446 rate control ─────

  /**
   * Put a subscription under the rate parameters of its record, or take it out of rate control
   * when it has none. Called after each SUBSCRIBE, before the NOTIFY it calls for (which carries
   * the whole current state, so a NOTIFY held back until then is dropped), and for each
   * subscription recovered after a restart, where when the last NOTIFY went out is unknown:
   * min-interval and max-interval then count from now.
   */
  applyRate(sub: LiveSubscription): void {
    const intervals: RateIntervals = { minInterval: sub.record.minInterval ?? 0, maxInterval: sub.record.maxInterval ?? 0 };
    const old = sub.rate;
    if (old !== undefined) {
      if (old.same(intervals)) {
        old.held = undefined;
        this.armRate(sub, old);
        return;
      }
      this.endRate(sub);
    }
    if (sub.ended || (intervals.minInterval === 0 && intervals.maxInterval === 0)) return;
    const rate = new RateControl(intervals, Date.now());
    sub.rate = rate;
    this.armRate(sub, rate);
  }

  /** Whether a state NOTIFY must wait for min-interval; if so it is held (coalesced) and the timer armed. */
  private holdForRate(sub: LiveSubscription, rate: RateControl, pending: Pending & { kind: 'state' }): boolean {
    if (pending.immediate) {
      rate.held = undefined; // the immediate NOTIFY carries the newest state
      return false;
    }
    if (rate.held === undefined && (rate.minMs === 0 || Date.now() >= rate.lastSentAt + rate.minMs)) return false;
    rate.held = rate.held === undefined ? pending : coalesce(rate.held, pending);
    this.armRate(sub, rate);
    return true;
  }

  /** A state NOTIFY of a rate-controlled subscription leaves: min-interval and max-interval count from now. */
  private sentUnderRate(sub: LiveSubscription, rate: RateControl): void {
    rate.lastSentAt = Date.now();
    // The timer is moved lazily: one armed earlier than needed re-arms itself when it fires.
    if (rate.timer === undefined) this.armRate(sub, rate);
  }

  /** Arm the subscription's one timer for its next deadline, unless it already fires before it. */
  private armRate(sub: LiveSubscription, rate: RateControl): void {
    const at = rate.nextDeadline();
    if (at === Infinity) {
      if (rate.timer !== undefined) clearTimeout(rate.timer);
      rate.timer = undefined;
      rate.timerAt = Infinity;
      return;
    }
    if (rate.timer !== undefined) {
      if (rate.timerAt <= at) return;
      clearTimeout(rate.timer);
    }
    rate.timerAt = at;
    rate.timer = setTimeout(() => this.rateDue(sub, rate), Math.max(0, Math.min(at - Date.now(), MAX_TIMER_DELAY)));
    rate.timer.unref();
  }

  /** The rate timer fired: release the held NOTIFY, or send the current state after max-interval of silence. */
  private rateDue(sub: LiveSubscription, rate: RateControl): void {
    rate.timer = undefined;
    rate.timerAt = Infinity;
    if (sub.rate !== rate || sub.ended) return;
    const now = Date.now();
    if (rate.held !== undefined) {
      if (now >= rate.lastSentAt + rate.minMs) {
        const held = rate.held;
        rate.held = undefined;
        this.enqueue(sub, held);
      }
    } else if (rate.maxMs !== 0 && now >= rate.lastSentAt + rate.maxMs) {
      // RFC 6446 max-interval: the current state in its entirety, as after a refresh. Counted as
      // sent now even if it waits behind a NOTIFY in flight or for a node-wide slot, so a
      // subscription stuck there gets one timer per max-interval, not a busy loop.
      this.enqueue(sub, { kind: 'state' });
      rate.lastSentAt = Math.max(rate.lastSentAt, now);
    }
    if (sub.rate === rate) this.armRate(sub, rate);
  }

  /** Out of rate control (it ended, the node stops, or a refresh left the parameters out): no timer, nothing held. */
  endRate(sub: LiveSubscription): void {
    const rate = sub.rate;
    if (rate === undefined) return;
    if (rate.timer !== undefined) clearTimeout(rate.timer);
    rate.timer = undefined;
    rate.timerAt = Infinity;
    rate.held = undefined;
    sub.rate = undefined;
  }

  /** The dialog's NOTIFY template, rebuilt only after a target refresh or a new flow. */
  private wire(sub: LiveSubscription): NotifyWire {
    const rec = sub.record;
    const w = sub.wire;
    if (w && w.remoteTarget === rec.remoteTarget && w.flowId === rec.flowId) return w;
    return (sub.wire = new NotifyWire(rec, this.contact(rec.transport as Protocol)));
  }

  /** Every watcher of one change shares the same string: encode it once. */
  private encode(body: string | undefined): Buffer | undefined {
    if (body === undefined) return undefined;
    if (body !== this.lastBody) {
      this.lastBody = body;
      this.lastBodyBuf = Buffer.from(body, 'utf8');
    }
    return this.lastBodyBuf;
  }

  /** Our Contact: server_address when configured, else the listener of the transport used. */
  contact(proto: Protocol): string {
    const configured = this.deps.config.server_address;
    if (configured) return configured.startsWith('<') ? configured : `<${configured}>`;
    // The listener of the subscriber's own transport: a TCP or TLS subscriber whose connection
    // closed reconnects there; a WebSocket one (RFC 7118 §5) keeps using its connection, and
    // the URI says which kind it is.
    const sb = this.deps.stack.sentBy(proto);
    return `<sip:presence@${sb.host}:${sb.port}${proto === 'udp' ? '' : `;transport=${proto}`}>`;
  }
}

/** Where a NOTIFY goes: the first route, else the remote target; on the SUBSCRIBE's flow if it is still open. */
export function notifyTarget(rec: Subscription): Target {
  const first = rec.routeSet[0];
  let uri: SipUri;
  try {
    uri = first ? NameAddr.parse(first).uri : SipUri.parse(rec.remoteTarget);
  } catch {
    uri = new SipUri('sip', undefined, rec.sourceAddress, rec.sourcePort, new Map(), undefined);
  }
  const proto = uri.transport as Protocol;
  const target: Target = { proto, host: uri.host, port: uri.port ?? (proto === 'tls' || proto === 'wss' ? 5061 : 5060) };
  if (rec.flowId) target.flowId = rec.flowId;
  return target;
}

/**
 * The constant part of one dialog's NOTIFYs (RFC 6665 §4.2.2, RFC 3261 §12.2.1.1): Request-URI,
 * Route set, From/To with tags, Call-ID, Contact and Event, serialised once. A NOTIFY then only
 * adds its Via (the stack's), CSeq, Subscription-State and body.
 */
export class NotifyWire {
  readonly remoteTarget: string;
  readonly flowId: string;
  readonly target: Target;
  private readonly startLine: string;
  private readonly dialogHeaders: string;

  constructor(rec: Subscription, contact: string) {
    this.remoteTarget = rec.remoteTarget;
    this.flowId = rec.flowId;
    this.target = notifyTarget(rec);
    let requestUri = rec.remoteTarget;
    const routes = rec.routeSet.slice();
    // RFC 3261 §12.2.1.1: a strict router first in the route set gets the Request-URI.
    if (routes.length > 0 && !/;\s*lr\b/i.test(routes[0]!)) {
      requestUri = NameAddr.parse(routes.shift()!).uri.toString();
      routes.push(`<${rec.remoteTarget}>`);
    }
    this.startLine = ownString(`NOTIFY ${requestUri} SIP/2.0\r\nVia: `);
    let h = `\r\nMax-Forwards: 70\r\nFrom: <${rec.localUri}>;tag=${rec.localTag}\r\nTo: <${rec.watcherUri}>;tag=${rec.remoteTag}\r\nCall-ID: ${rec.callId}\r\n`;
    for (const r of routes) h += `Route: ${r}\r\n`;
    h += `Contact: ${contact}\r\nEvent: ${rec.eventId ? `${rec.event};id=${rec.eventId}` : rec.event}\r\n`;
    this.dialogHeaders = ownString(h);
  }

  /** One NOTIFY of this dialog. `body` is shared between watchers and never written to. */
  request(cseq: number, state: string, body: Buffer | undefined, contentType: string | undefined): OutgoingRequest {
    return new PreparedNotify(this, cseq, state, body, contentType);
  }

  serialize(via: string, cseq: number, state: string, body: Buffer | undefined, contentType: string | undefined): Buffer {
    let head = this.startLine + via + this.dialogHeaders + 'CSeq: ' + cseq + ' NOTIFY\r\nSubscription-State: ' + state + '\r\n';
    if (body === undefined) return Buffer.from(head + 'Content-Length: 0\r\n\r\n', 'utf8');
    head += 'Content-Type: ' + (contentType ?? 'application/octet-stream') + '\r\nContent-Length: ' + body.length + '\r\n\r\n';
    const headLength = Buffer.byteLength(head, 'utf8');
    const out = Buffer.allocUnsafe(headLength + body.length);
    out.write(head, 0, 'utf8');
    body.copy(out, headLength);
    return out;
  }
}

class PreparedNotify implements OutgoingRequest {
  readonly method = 'NOTIFY';
  constructor(
    private readonly wire: NotifyWire,
    private readonly cseq: number,
    private readonly state: string,
    private readonly body: Buffer | undefined,
    private readonly contentType: string | undefined,
  ) {}

  serialize(topVia: string): Buffer {
    return this.wire.serialize(topVia, this.cseq, this.state, this.body, this.contentType);
  }
}
