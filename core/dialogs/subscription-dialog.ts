/**
 * A live subscription: the stored record (dialog state, RFC 6665) plus what only the running
 * node needs (the NOTIFY in flight, what is queued behind it, the precomputed header parts).
 */
import { ownString } from '../transport/message.js';
import type { Subscription } from './store/records.js';
import type { NotifyWire } from './notifier.js';
import type { RateControl } from './rate-control.js';
import type { LiveState } from './watchers.js';

export type SubHandling = 'block' | 'confirm' | 'polite-block' | 'allow';

/** What the notifier must send next for a subscription once nothing is in flight. */
export type Pending =
  | {
      kind: 'state';
      /** An explicit body (e.g. a partial watcherinfo) instead of the composed state. */
      body?: string;
      /** The NOTIFY a SUBSCRIBE calls for (RFC 6665 §4.2.1): never held back by min-interval (RFC 6446). */
      immediate?: boolean;
    }
  | { kind: 'terminate'; reason: string };

export class LiveSubscription {
  /** A NOTIFY of this subscription is awaiting its final response. */
  inFlight = false;
  /** Sent once the in-flight NOTIFY is answered (RFC 6665 §4.2.2: one NOTIFY at a time, newest state). */
  queued: Pending | undefined;
  /** Ended: no NOTIFY is sent after the final one. */
  ended = false;
  /** Authorisation outcome's transformation key (which composed body this watcher sees). */
  bodyKey = '';
  /** The dialog's NOTIFY template (the notifier builds it on first use and after a target refresh). */
  wire: NotifyWire | undefined;
  /** What presence.winfo shows of it (presence subscriptions; set by WatcherInfo). */
  winfo: LiveState | undefined;
  /** RFC 6446 rate control in use (min-interval / max-interval); undefined for most subscriptions. */
  rate: RateControl | undefined;
  /**
   * The highest NOTIFY CSeq the store already holds for this dialog: a NOTIFY at or below it leaves
   * without a store write (config notify_cseq_reserve). 0 until the first reservation.
   */
  cseqReserved = 0;

  /** presentity + event: the key of the composed body this watcher's NOTIFYs share (fixed for a subscription). */
  presentityKey: string;

  constructor(public record: Subscription) {
    this.presentityKey = ownString(presentityKey(record.presentityUri, record.event));
  }

  get id(): string {
    return this.record.id;
  }

  get dialogKey(): string {
    return dialogKey(this.record.callId, this.record.localTag, this.record.remoteTag);
  }

}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}\u0000${localTag}\u0000${remoteTag}`;
}

export function presentityKey(presentityUri: string, event: string): string {
  return `${presentityUri}\u0000${event}`;
}

/** Record fields with few distinct values across a node (a proxy's address, "presence", "udp"): one copy each. */
const FEW_VALUES = new Set(['event', 'transport', 'sourceAddress', 'state', 'reason', 'accept', 'subHandling']);
const fewValues = new Map<string, string>();
/** Bound on the copies kept: past it, values are owned per record as the rest. */
const FEW_VALUES_MAX = 4096;

function shared(v: string): string {
  let s = fewValues.get(v);
  if (s !== undefined) return s;
  s = ownString(v);
  if (fewValues.size < FEW_VALUES_MAX) fewValues.set(s, s);
  return s;
}

/**
 * Every string of a subscription record made its own (see ownString()), and those with few
 * distinct values shared between records.
 */
export function ownStrings(rec: Subscription): void {
  const r = rec as unknown as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    const v = r[k];
    if (typeof v === 'string') r[k] = FEW_VALUES.has(k) ? shared(v) : ownString(v);
  }
  rec.routeSet = rec.routeSet.map(ownString); // Record-Route often carries per-dialog parameters
}

/** A new watcher of a presentity takes the presentity's strings from one already watching it. */
export function sharePresentity(sub: LiveSubscription, peer: LiveSubscription): void {
  const rec = sub.record;
  const other = peer.record;
  if (rec.presentityUri === other.presentityUri) rec.presentityUri = other.presentityUri;
  if (rec.localUri === other.localUri) rec.localUri = other.localUri;
  if (sub.presentityKey === peer.presentityKey) sub.presentityKey = peer.presentityKey;
}
