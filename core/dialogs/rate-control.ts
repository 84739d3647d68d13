/**
 * RFC 6446 notification rate control, notifier side. A SUBSCRIBE (initial or refresh) may carry
 * `min-interval` and `max-interval` Event header parameters, in seconds: the notifier sends
 * state NOTIFYs no more often than every min-interval (changes in between coalesce into one
 * NOTIFY with the newest full state) and at least every max-interval (the current state, as
 * after a refresh). Every SUBSCRIBE restates the parameters: one a refresh leaves out no longer
 * applies. The values in use are echoed as Subscription-State parameters of the same names
 * (RFC 6446 §9.2 adds them to both headers' grammar).
 *
 * This file checks what a SUBSCRIBE asks for and holds a subscription's rate state; the
 * scheduling lives in the notifier. `adaptive-min-rate` is not implemented (README).
 */
import { SipError } from './errors.js';
import type { Pending } from './subscription.js';

/** The rate parameters in use for a subscription, in seconds; 0 = not in use. */
export interface RateIntervals {
  minInterval: number;
  maxInterval: number;
}

/** delta-seconds is at most 2^32-1 (RFC 3261 §20.19 reads larger values as that). */
const MAX_DELTA_SECONDS = 0xffffffff;

function intervalParam(params: ReadonlyMap<string, string>, name: 'min-interval' | 'max-interval'): number {
  const raw = params.get(name);
  if (raw === undefined) return 0;
  // RFC 6446 §9.2: "min-interval" / "max-interval" EQUAL delta-seconds (1*DIGIT).
  if (!/^\d+$/.test(raw)) throw new SipError(400, `Malformed ${name} Event parameter`);
  const seconds = Math.min(Number(raw), MAX_DELTA_SECONDS);
  // Refused rather than read as "no rate control": 0 would mean no spacing at all (min) or a
  // NOTIFY at every instant (max), neither of which a subscriber asking for rate control means.
  if (seconds === 0) throw new SipError(400, `${name} must be at least 1 second`);
  return seconds;
}

/**
 * The intervals a SUBSCRIBE asks for (its Event header parameters), checked and bounded: values
 * that are not delta-seconds, zero, or a min-interval above the max-interval get 400 with the
 * reason. Both are raised to `floor` (the node's notify_min_interval) and max-interval to at
 * least the min-interval in use: a notifier may space NOTIFYs wider than asked, and the
 * Subscription-State parameters tell the subscriber what it got.
 */
export function requestedIntervals(params: ReadonlyMap<string, string> | undefined, floor: number): RateIntervals {
  if (params === undefined || params.size === 0) return { minInterval: 0, maxInterval: 0 };
  const min = intervalParam(params, 'min-interval');
  const max = intervalParam(params, 'max-interval');
  if (min !== 0 && max !== 0 && min > max) throw new SipError(400, 'min-interval exceeds max-interval');
  const minInterval = min === 0 ? 0 : Math.max(min, floor);
  const maxInterval = max === 0 ? 0 : Math.max(max, floor, minInterval);
  return { minInterval, maxInterval };
}

/**
 * The live rate state of one rate-controlled subscription (subscriptions without parameters
 * have none, and the notifier's hot path only tests for its absence).
 */
export class RateControl {
  readonly minMs: number;
  readonly maxMs: number;
  /** Appended to Subscription-State: the values in use. */
  readonly stateParams: string;
  /** When the last state NOTIFY of the subscription started (ms since epoch). */
  lastSentAt: number;
  /** A state NOTIFY held back by min-interval (coalesced: the newest full state). */
  held: Pending | undefined;
  /** The subscription's one timer: releases `held`, or sends the max-interval NOTIFY. */
  timer: NodeJS.Timeout | undefined;
  /** When `timer` fires (Infinity = not armed). */
  timerAt = Infinity;

  constructor(intervals: RateIntervals, lastSentAt: number) {
    this.minMs = intervals.minInterval * 1000;
    this.maxMs = intervals.maxInterval * 1000;
    let p = '';
    if (intervals.minInterval) p += `;min-interval=${intervals.minInterval}`;
    if (intervals.maxInterval) p += `;max-interval=${intervals.maxInterval}`;
    this.stateParams = p;
    this.lastSentAt = lastSentAt;
  }

  /** When the timer is next needed: the held NOTIFY's turn, else the max-interval deadline. */
  nextDeadline(): number {
    if (this.held !== undefined) return this.lastSentAt + this.minMs;
    return this.maxMs === 0 ? Infinity : this.lastSentAt + this.maxMs;
  }

  same(intervals: RateIntervals): boolean {
    return this.minMs === intervals.minInterval * 1000 && this.maxMs === intervals.maxInterval * 1000;
  }
}
