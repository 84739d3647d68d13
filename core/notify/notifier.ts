/**
 * The NOTIFY side of RFC 6665: composing the state once per presentity change (and per
 * authorisation outcome), then one cheap NOTIFY per watcher, one in flight per subscription
 * with the newest state queued behind it. A watcher that answers 481, times out or whose
 * transport fails is removed; it never delays the others. Subscriptions that asked for RFC 6446
 * rate control (min-interval / max-interval) have their NOTIFYs spaced by their dialog's
 * RateControl. It learns of changes through the event hub (state/ never calls it).
 */
import type { Protocol } from '../../transport/flows.js';
import type { ClientOutcome } from '../../transport/stack.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { EventHub } from '../events.js';
import type { StoreWriter } from '../store/interfaces.js';
import { StoreWriteError } from '../store/store.js';
import { LatencyHistogram } from '../../transport/sip-stats.js';
import { notifyResult, type SipSender, type Pending, type NotifyOutcome } from '../dialogs/subscription-dialog.js';
import type { LiveSubscription, Subscriptions } from '../state/subscriptions.js';
import type { StateEvents } from '../state/watcher-info.js';
import type { PackageRegistry } from '../packages/registry.js';
import { VERSION_SLOT, type EventPackage, type PackageContext } from '../packages/types.js';
import { presentityKey } from '../uris.js';

export interface NotifierDeps {
  config: Config;
  sender: SipSender;
  store: StoreWriter;
  packages: PackageRegistry;
  ctx: PackageContext;
  log: Logger;
  hub: EventHub<StateEvents>;
  /** The live subscriptions (whose watchers a change reaches; forgotten when their NOTIFY fails). */
  subscriptions: Subscriptions;
  /** Transform a composed body for an authorisation outcome key ('' = untransformed). */
  transform?: (sub: LiveSubscription, body: string) => Promise<string>;
}

export interface NotifyStats {
  sent: number;
  failed: number;
  removedByFailure: number;
  /** NOTIFYs by outcome: 2xx, 481, timeout, transport-error, other (any other final status). */
  readonly outcomes: Map<NotifyOutcome, number>;
  /** A presentity's committed change → each watcher's NOTIFY of it leaving. */
  readonly changeToNotify: LatencyHistogram;
}

export type { NotifyOutcome };

interface BodyEntry {
  body: Promise<string | undefined>;
  /** The body once composed (undefined until then, or when there is nothing to send). */
  value?: string | undefined;
  transformed: Map<string, Promise<string>>;
}

/** A NOTIFY that could not be built (composition or store failure): what was queued waits this long. */
const RETRY_AFTER_FAILURE_MS = 1000;

/** NOTIFY client transactions outstanding at once, node-wide. */
const MAX_IN_FLIGHT = 1000;

export class Notifier {
  private readonly bodies = new Map<string, BodyEntry>();
  readonly stats: NotifyStats = { sent: 0, failed: 0, removedByFailure: 0, outcomes: new Map(), changeToNotify: new LatencyHistogram() };
  /** When each watched presentity (presentity + event) last changed (performance.now()), for changeToNotify. */
  private readonly changedAt = new Map<string, number>();

  constructor(private readonly deps: NotifierDeps) {
    const { hub } = deps;
    hub.on('presentity.changed', (c) => this.presentityChanged(c.presentityUri, c.event));
    // Dropped once this change's NOTIFYs have taken it (each took the body before this runs).
    hub.on('body.stale', (c) => setImmediate(() => this.invalidate(c.presentityUri, c.event)));
    // A package whose state includes an XCAP document (presence: pidf-manipulation, RFC 4827).
    hub.on('document.changed', (c) => {
      if (!c.xui) return;
      for (const pkg of deps.packages.all()) if (pkg.stateDocuments?.includes(c.auid)) this.presentityChanged(c.xui, pkg.name);
    });
    // Every SUBSCRIBE restates the RFC 6446 parameters (and a recovered dialog counts them from now).
    hub.on('subscription.changed', ({ sub, what }) => {
      if (what !== 'authorized') this.applyRate(sub);
    });
    hub.on('subscription.ended', ({ sub, final }) => {
      if (final !== undefined) this.schedule(sub, { kind: 'terminate', reason: final });
      else sub.endRate();
      // No watcher left: drop its cached body.
      if (deps.subscriptions.watcherCount(sub.record.presentityUri, sub.record.event) === 0)
        this.invalidate(sub.record.presentityUri, sub.record.event);
    });
  }

  /** The presentity's state changed: recompose once, then NOTIFY every active watcher. */
  presentityChanged(presentityUri: string, event: string): void {
    const key = presentityKey(presentityUri, event);
    this.bodies.delete(key);
    // Only presentities someone watches are timed (the map stays as small as the watched set).
    if (this.deps.subscriptions.watcherCount(presentityUri, event) > 0) this.changedAt.set(key, performance.now());
    else this.changedAt.delete(key);
    for (const sub of this.deps.subscriptions.watchersOf(presentityUri, event)) {
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
    // A final NOTIFY is never held back by min-interval, and no rate timer outlives the subscription.
    if (pending.kind === 'terminate') sub.end();
    this.enqueue(sub, pending);
  }

  /** Put a subscription under the RFC 6446 parameters of its record (after each SUBSCRIBE, and on recovery). */
  applyRate(sub: LiveSubscription): void {
    sub.applyRate((p) => this.enqueue(sub, p));
  }

  /** Send now, or behind the subscription's NOTIFY in flight, or when a node-wide slot frees. */
  private enqueue(sub: LiveSubscription, pending: Pending): void {
    if (!sub.admit(pending)) return;
    // RFC 6446 min-interval: too soon after the last NOTIFY, the state waits for its turn.
    if (sub.rate !== undefined && pending.kind === 'state' && sub.rate.hold(pending)) return;
    // Too many NOTIFYs outstanding: wait for a slot (a burst of 10,000 would let retransmission
    // timers fire before the 200s are even read). It holds its turn, so later updates coalesce.
    sub.occupy();
    if (this.inFlightTotal >= MAX_IN_FLIGHT) {
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

  /** Body for an active watcher, per its authorisation outcome (one computation per outcome). */
  private bodyFor(sub: LiveSubscription, pkg: EventPackage | undefined): Promise<string | undefined> | string | undefined {
    const rec = sub.record;
    // A body the package puts in place of the state for this outcome (presence: polite-block).
    const substitute = pkg?.substituteBody?.(rec.subHandling, rec.presentityUri);
    if (substitute !== undefined) return substitute;
    if (sub.bodyKey === '' && !rec.eventView) {
      // Composed already for an earlier watcher of this change: no await.
      const e = this.bodies.get(sub.presentityKey);
      if (e?.value !== undefined) return e.value;
    }
    const entry = this.composed(sub);
    const view = rec.eventView;
    if (view && pkg?.viewBody) {
      // A view the Event parameters asked for (RFC 4235 §3.2), narrowed once per change and view.
      const key = `\u0000view\u0000${view}`;
      let v = entry.transformed.get(key);
      if (!v) {
        v = entry.body.then((b) => (b === undefined ? '' : pkg.viewBody!(rec.presentityUri, b, view, this.deps.ctx)));
        entry.transformed.set(key, v);
      }
      return v.then((out) => (out === '' ? undefined : out));
    }
    const transform = this.deps.transform;
    if (sub.bodyKey === '' || !transform) return entry.body;
    let t = entry.transformed.get(sub.bodyKey);
    if (!t) {
      t = entry.body.then((b) => (b === undefined ? '' : transform(sub, b)));
      entry.transformed.set(sub.bodyKey, t);
    }
    return t.then((out) => (out === '' ? undefined : out));
  }

  /** Send one NOTIFY and act on its outcome; never rejects (a failure is logged). */
  private async send(sub: LiveSubscription, pending: Pending): Promise<void> {
    const rec = sub.record;
    try {
      const pkg = this.deps.packages.get(rec.event);
      let body: string | undefined;
      let state: string;
      let expires = -1;
      if (pending.kind === 'terminate') {
        state = `terminated;reason=${pending.reason}`;
        // A final NOTIFY after expiry, unsubscribe or fetch still carries the state (RFC 6665 §4.4.3).
        if (rec.state === 'active' && (pending.reason === 'timeout' || pending.reason === 'noresource'))
          body = await this.bodyFor(sub, pkg);
      } else {
        state = '';
        if (rec.state === 'active') {
          const b = pending.body ?? this.bodyFor(sub, pkg);
          body = typeof b === 'object' ? await b : b;
        }
      }
      if (body !== undefined && pkg?.versioned) {
        body = body.split(VERSION_SLOT).join(String(rec.winfoVersion));
        rec.winfoVersion++;
      }
      // The subscription ended while this NOTIFY waited (backlog, composition): only its final
      // NOTIFY may still go, and nothing may write its record back into the store.
      if (sub.ended && pending.kind !== 'terminate') {
        const next = sub.settle(); // the final NOTIFY, if it was queued behind this one
        if (next) this.enqueue(sub, next);
        return;
      }
      const cseq = sub.nextCseq();
      // The store holds this CSeq or a higher one before the NOTIFY leaves, so a restart continues
      // above it (see reserveCseq); where the body's version must survive too, the whole record.
      // (A final NOTIFY writes nothing: its subscription is already gone from the store.)
      if (pending.kind !== 'terminate') {
        try {
          if (pkg?.versioned) await this.deps.store.putSubscription(rec);
          else if (!sub.cseqCovered) await this.reserveCseq(sub);
        } catch (err) {
          // A store that cannot write (disk full) holds no NOTIFY back: the CSeq is right in memory, only not durable yet.
          if (!(err instanceof StoreWriteError)) throw err;
        }
        // The expires it shows is computed last, just before sending.
        expires = sub.expiresLeft();
        state = sub.activeState(expires);
      }
      // The dialog's Contact is fixed with its first NOTIFY: on a wildcard listener, after the
      // address toward the subscriber is known (after a restart it may not be yet).
      const addressReady =
        sub.hasTemplate || !rec.sourceAddress ? undefined : this.deps.sender.addressReady(rec.transport as Protocol, rec.sourceAddress);
      if (addressReady) await addressReady;
      const wire = sub.template(this.contact);
      // min-interval and max-interval count between NOTIFYs leaving, after the body and the CSeq commit.
      if (sub.rate !== undefined && pending.kind === 'state') sub.rate.sent();
      const now = performance.now(); // one clock read per NOTIFY serves both records below
      sub.notifyLeft(now, cseq, state, expires, body);
      // The first NOTIFY of this dialog after a change it had not yet been told of: time it.
      const changed = this.changedAt.get(sub.presentityKey);
      if (changed !== undefined && changed > sub.changeSeen) {
        this.stats.changeToNotify.observe((now - changed) / 1000);
        sub.changeSeen = Math.ceil(changed); // whole ms: kept in the dialog object, not in a box of its own
      }
      const outcome = await this.deps.sender.sendRequest(wire.request(cseq, state, this.encode(body), pkg?.notifyType), wire.target);
      const forgetting = this.afterOutcome(sub, pending, outcome);
      if (forgetting) await forgetting;
    } catch (err) {
      this.deps.log.error({ err, callId: rec.callId }, 'NOTIFY failed');
      // What was queued behind it is tried again shortly, not parked until the next change.
      const next = sub.settle();
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

  /** Clean stop: no rate timers, and the exact CSeq of each dialog, so the next process continues without a gap. */
  stop(): Promise<unknown> {
    this.cseqFlushes++;
    const writes: Promise<boolean>[] = [];
    for (const sub of this.deps.subscriptions.all()) {
      sub.endRate();
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
    const { status, kind, fatal, why } = notifyResult(outcome, this.deps.config.timeout_rm_subs === 1);
    sub.notifyAnswered(status, kind === '2xx' ? undefined : why);
    this.stats.outcomes.set(kind, (this.stats.outcomes.get(kind) ?? 0) + 1);
    if (kind === '2xx') this.stats.sent++;
    else {
      this.stats.failed++;
      this.deps.log.info(
        { callId: rec.callId, watcherUri: rec.watcherUri, presentityUri: rec.presentityUri, status, why },
        'NOTIFY not accepted',
      );
    }
    if (pending.kind === 'terminate') {
      sub.settle();
      return undefined; // already forgotten by whoever ended it
    }
    // RFC 6665 §4.2.2: 481 ends the subscription, and so does a transport failure; a timeout (Timer F or 408)
    // does when timeout_rm_subs = 1 (Kamailio's parameter, default 1).
    if (fatal) {
      sub.settle();
      sub.fail();
      this.stats.removedByFailure++;
      return this.deps.subscriptions.forget(sub, status === 481 ? 'watcher answered 481' : 'NOTIFY failed: ' + status);
    }
    // Queued while this one was in flight (a final NOTIFY was admitted by schedule() already).
    const next = sub.settle();
    if (next) this.enqueue(sub, next);
    return undefined;
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

  /**
   * Our Contact: server_address when configured, else the listener of the transport used (on a
   * wildcard listener, our address toward `peer`, the address the subscriber's requests come from).
   */
  contact = (proto: Protocol, peer?: string): string => {
    const configured = this.deps.config.server_address;
    if (configured) return configured.startsWith('<') ? configured : `<${configured}>`;
    // The listener of the subscriber's own transport: a TCP or TLS subscriber whose connection
    // closed reconnects there; a WebSocket one (RFC 7118 §5) keeps using its connection, and
    // the URI says which kind it is.
    const sb = this.deps.sender.sentBy(proto, peer);
    return `<sip:presence@${sb.host}:${sb.port}${proto === 'udp' ? '' : `;transport=${proto}`}>`;
  };
}
