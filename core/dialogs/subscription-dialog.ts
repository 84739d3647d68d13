/**
 * One RFC 6665 subscription dialog, notifier side: the stored record (dialog state: Call-ID,
 * tags, CSeqs, route set, remote target) plus what only the running node needs: the NOTIFY in
 * flight, what is queued behind it, whether the final NOTIFY went, the precomputed NOTIFY wire
 * template and RFC 6446 rate control. The flags change here only, through the methods below; the
 * notifier decides when to call them. (The subscriber side, for subscriptions the node makes
 * itself, is subscriber-dialog.ts.)
 */
import type { OutgoingRequest } from '../../transport/message.js';
import type { ClientOutcome } from '../../transport/stack.js';
import type { Target, Protocol } from '../../transport/flows.js';
import type { Subscription } from '../store/records.js';
import { dialogKey } from '../uris.js';
import { NotifyWire } from './notify-wire.js';
import { RateControl, coalesce, type Pending, type RateIntervals } from './rate-control.js';

export type { Pending };

/** The part of the SIP stack a dialog sends through (transport/stack.ts SipStack is one; tests use a fake). */
export interface SipSender {
  sendRequest(req: OutgoingRequest, target: Target): Promise<ClientOutcome>;
  /** Our sent-by (host and port) for a transport: the address of its listener (on a wildcard listener, our address toward `peer`). */
  sentBy(proto: Protocol, peer?: string): { host: string; port: number };
  /** Resolves once our address toward `peer` is known (wildcard listeners); undefined when it already is. */
  addressReady(proto: Protocol, peer: string): Promise<unknown> | undefined;
}

export type NotifyOutcome = '2xx' | '481' | 'timeout' | 'transport-error' | 'other';

/** What a NOTIFY's outcome means for its subscription (RFC 6665 §4.2.2). */
export interface NotifyResult {
  /** The final status, 408 for a timeout and 503 for a transport failure. */
  status: number;
  kind: NotifyOutcome;
  /** The subscription is over: 481, a transport failure, or a timeout when `timeoutEnds` (Kamailio's timeout_rm_subs). */
  fatal: boolean;
  /** For a failure: why, for the log. */
  why: string;
}

export function notifyResult(outcome: ClientOutcome, timeoutEnds: boolean): NotifyResult {
  const status = outcome.kind === 'response' ? outcome.response.status : outcome.kind === 'timeout' ? 408 : 503;
  const kind: NotifyOutcome =
    outcome.kind === 'timeout'
      ? 'timeout'
      : outcome.kind === 'transport-error'
        ? 'transport-error'
        : status < 300
          ? '2xx'
          : status === 481
            ? '481'
            : 'other';
  const timedOut = outcome.kind === 'timeout' || status === 408;
  const fatal = status === 481 || outcome.kind === 'transport-error' || (timedOut && timeoutEnds);
  const why =
    kind === '2xx'
      ? ''
      : outcome.kind === 'transport-error'
        ? outcome.error.message
        : outcome.kind === 'timeout'
          ? 'timeout (Timer F)'
          : `${status}`;
  return { status, kind, fatal, why };
}

/** The dialog's last NOTIFY, for presence.explain: what left, when, and how it was answered. */
export interface LastNotify {
  /** When it left: performance.now(), whole ms (add performance.timeOrigin for ms since epoch). */
  at: number;
  cseq: number;
  /**
   * Its Subscription-State; without the expires parameter when `expires` is 0 or more (then a
   * state shared by many dialogs, not a string per dialog): see lastNotifyState().
   */
  subscriptionState: string;
  /** The expires parameter it carried, -1 when `subscriptionState` is whole. */
  expires: number;
  /** The body as sent (the string shared by every watcher of that change, not a copy). */
  body: string | undefined;
  /** The final response's status (408 timeout, 503 transport error), 0 while unanswered. */
  status: number;
  /** Why it failed, when it did. */
  why: string;
}

/** The Subscription-State header value of a dialog's last NOTIFY, as it was sent. */
export function lastNotifyState(last: LastNotify): string {
  return last.expires < 0 ? last.subscriptionState : `${last.subscriptionState};expires=${last.expires}`;
}

export class NotifierDialog {
  // The last NOTIFY sent in this dialog (for presence.explain): fields of the dialog, not an object each.
  private lastAt = -1;
  private lastCseq = 0;
  private lastState = '';
  private lastExpires = -1;
  private lastBody: string | undefined = undefined;
  private lastStatus = 0;
  private lastWhy = '';

  /** The last NOTIFY sent in this dialog; undefined before the first. */
  get lastNotify(): LastNotify | undefined {
    if (this.lastAt < 0) return undefined;
    return {
      at: this.lastAt,
      cseq: this.lastCseq,
      subscriptionState: this.lastState,
      expires: this.lastExpires,
      body: this.lastBody,
      status: this.lastStatus,
      why: this.lastWhy,
    };
  }

  /**
   * A NOTIFY leaves now (`at`: performance.now()) with Subscription-State `state`, `expires` its
   * expires parameter (-1 for a final one): remembered as the last one, unanswered yet. A plain
   * active or pending state is kept as the record's state plus the number, not a string per dialog.
   */
  notifyLeft(at: number, cseq: number, state: string, expires: number, body: string | undefined): void {
    const plain = expires >= 0 && this.rate === undefined;
    this.lastAt = Math.round(at);
    this.lastCseq = cseq;
    this.lastState = plain ? this.record.state : state;
    this.lastExpires = plain ? expires : -1;
    this.lastBody = body;
    this.lastStatus = 0;
    this.lastWhy = '';
  }

  /** The last NOTIFY's final status (408 timeout, 503 transport error) and, for a failure, why. */
  notifyAnswered(status: number, why?: string): void {
    if (this.lastAt < 0) return;
    this.lastStatus = status;
    if (why !== undefined) this.lastWhy = why;
  }

  /** The presentity change (performance.now(), whole ms up) this dialog's NOTIFYs have covered: changes before it was created do not count. */
  changeSeen = Math.ceil(performance.now());
  /** A NOTIFY of this subscription is awaiting its final response (or a node-wide slot). */
  inFlight = false;
  /** Sent once the in-flight NOTIFY is answered (RFC 6665 §4.2.2: one NOTIFY at a time, newest state). */
  queued: Pending | undefined;
  /** Ended: no NOTIFY is sent after the final one. */
  ended = false;
  /** The dialog's NOTIFY template (built on first use and after a target refresh). */
  private wire: NotifyWire | undefined;
  /** RFC 6446 rate control in use (min-interval / max-interval); undefined for most subscriptions. */
  rate: RateControl | undefined;
  /**
   * The highest NOTIFY CSeq the store already holds for this dialog: a NOTIFY at or below it leaves
   * without a store write (config notify_cseq_reserve). 0 until the first reservation.
   */
  cseqReserved = 0;

  constructor(public record: Subscription) {}

  get id(): string {
    return this.record.id;
  }

  get dialogKey(): string {
    return dialogKey(this.record.callId, this.record.localTag, this.record.remoteTag);
  }

  // ───── one NOTIFY at a time (RFC 6665 §4.2.2) ─────

  /**
   * Whether `pending` may start now. With a NOTIFY in flight it waits behind it instead,
   * coalesced with whatever waits already.
   */
  admit(pending: Pending): boolean {
    if (!this.inFlight) return true;
    this.queued = this.queued === undefined ? pending : coalesce(this.queued, pending);
    return false;
  }

  /** A NOTIFY of this dialog starts (or waits for a node-wide slot, holding its turn). */
  occupy(): void {
    this.inFlight = true;
  }

  /** The NOTIFY in flight is done (answered, failed, or dropped): what waited behind it, now due. */
  settle(): Pending | undefined {
    this.inFlight = false;
    const next = this.queued;
    this.queued = undefined;
    return next;
  }

  /** The final NOTIFY is on its way (or the subscription died): nothing else is sent, no rate timer stays. */
  end(): void {
    this.ended = true;
    this.endRate();
  }

  /** The subscriber is gone (481, transport failure, timeout): nothing is sent any more, not even what was queued. */
  fail(): void {
    this.end();
    this.queued = undefined;
  }

  // ───── CSeq (RFC 3261 §12.2.1.1) ─────

  /** The CSeq of the next NOTIFY. */
  nextCseq(): number {
    return ++this.record.localCseq;
  }

  /** Whether the store already holds a CSeq at or above the current one (see reserveCseq in the notifier). */
  get cseqCovered(): boolean {
    return this.record.localCseq <= this.cseqReserved;
  }

  // ───── wire form ─────

  /** The dialog's NOTIFY template, rebuilt only after a target refresh or a new flow. */
  template(contact: (proto: Protocol, peer?: string) => string): NotifyWire {
    const rec = this.record;
    const w = this.wire;
    if (w && w.remoteTarget === rec.remoteTarget && w.flowId === rec.flowId) return w;
    return (this.wire = new NotifyWire(rec, contact(rec.transport as Protocol, rec.sourceAddress), this.notifyHeaders));
  }

  /** Constant header lines every NOTIFY of this dialog carries besides the dialog's own (CRLF-ended); none here. */
  protected get notifyHeaders(): string {
    return '';
  }

  /** Whether the NOTIFY template exists (its Contact is fixed with the dialog's first NOTIFY). */
  get hasTemplate(): boolean {
    return this.wire !== undefined;
  }

  /** Subscription-State of a non-final NOTIFY leaving now: state, expires left, and the RFC 6446 parameters in use. */
  activeState(expires = this.expiresLeft()): string {
    const s = `${this.record.state};expires=${expires}`;
    return this.rate === undefined ? s : s + this.rate.stateParams;
  }

  /** Seconds left until the subscription expires (its Subscription-State expires parameter). */
  expiresLeft(): number {
    return Math.max(0, Math.round((this.record.expiresAt - Date.now()) / 1000));
  }

  // ───── RFC 6446 rate control ─────

  /**
   * Put the dialog under the rate parameters of its record, or take it out of rate control
   * when it has none. Called after each SUBSCRIBE, before the NOTIFY it calls for (which carries
   * the whole current state, so a NOTIFY held back until then is dropped), and for each
   * subscription recovered after a restart, where when the last NOTIFY went out is unknown:
   * min-interval and max-interval then count from now. `due` is called with a NOTIFY whose turn came.
   */
  applyRate(due: (pending: Pending) => void): void {
    const intervals: RateIntervals = { minInterval: this.record.minInterval ?? 0, maxInterval: this.record.maxInterval ?? 0 };
    const old = this.rate;
    if (old !== undefined) {
      if (old.same(intervals)) {
        old.restated();
        return;
      }
      this.endRate();
    }
    if (this.ended || (intervals.minInterval === 0 && intervals.maxInterval === 0)) return;
    this.rate = new RateControl(intervals, Date.now(), (p) => {
      if (!this.ended) due(p);
    });
    this.rate.arm();
  }

  /** Out of rate control: no timer, nothing held. */
  endRate(): void {
    if (this.rate === undefined) return;
    this.rate.end();
    this.rate = undefined;
  }
}
