/**
 * A live subscription: the stored record (dialog state, RFC 6665) plus what only the running
 * node needs (the NOTIFY in flight, what is queued behind it, the precomputed header parts).
 */
import type { Subscription } from './store/records.js';
import type { NotifyWire } from './notifier.js';
import type { RateControl } from './rate-control.js';

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
  /** RFC 6446 rate control in use (min-interval / max-interval); undefined for most subscriptions. */
  rate: RateControl | undefined;

  constructor(public record: Subscription) {}

  get id(): string {
    return this.record.id;
  }

  get dialogKey(): string {
    return dialogKey(this.record.callId, this.record.localTag, this.record.remoteTag);
  }

  get presentityKey(): string {
    return presentityKey(this.record.presentityUri, this.record.event);
  }
}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}\u0000${localTag}\u0000${remoteTag}`;
}

export function presentityKey(presentityUri: string, event: string): string {
  return `${presentityUri}\u0000${event}`;
}
