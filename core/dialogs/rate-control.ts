/**
 * RFC 6446 notification rate control, notifier side. A SUBSCRIBE (initial or refresh) may carry
 * `min-interval` and `max-interval` Event header parameters, in seconds: the notifier sends
 * state NOTIFYs no more often than every min-interval (changes in between coalesce into one
 * NOTIFY with the newest full state) and at least every max-interval (the current state, as
 * after a refresh). Every SUBSCRIBE restates the parameters: one a refresh leaves out no longer
 * applies. The values in use are echoed as Subscription-State parameters of the same names
 * (RFC 6446 §9.2 adds them to both headers' grammar).
 *
 * This file checks what a SUBSCRIBE asks for and holds a subscription's rate state and its one
 * timer; the notifier asks it whether a NOTIFY may leave now. `adaptive-min-rate` is not
 * implemented (README).
 */
import { SipError } from '../errors.js';
import { MAX_TIMER_DELAY } from '../timers.js';

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

/** Two NOTIFYs waiting for the same turn become one with the whole current state (partial bodies cannot be merged). */
export function coalesce(older: Pending, newer: Pending): Pending {
  if (newer.kind === 'terminate') return newer;
  if (older.kind === 'terminate') return older;
  return older.immediate || newer.immediate ? { kind: 'state', immediate: true } : { kind: 'state' };
}

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

  /** `due`: a NOTIFY's turn came (the held one, or the max-interval one); the notifier enqueues it. */
  constructor(
    intervals: RateIntervals,
    lastSentAt: number,
    private readonly due: (pending: Pending) => void,
  ) {
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

  /** Whether a state NOTIFY must wait for min-interval; if so it is held (coalesced) and the timer armed. */
  hold(pending: Pending & { kind: 'state' }): boolean {
    if (pending.immediate) {
      this.held = undefined; // the immediate NOTIFY carries the newest state
      return false;
    }
    if (this.held === undefined && (this.minMs === 0 || Date.now() >= this.lastSentAt + this.minMs)) return false;
    this.held = this.held === undefined ? pending : coalesce(this.held, pending);
    this.arm();
    return true;
  }

  /** A state NOTIFY leaves: min-interval and max-interval count from now. */
  sent(): void {
    this.lastSentAt = Date.now();
    // The timer is moved lazily: one armed earlier than needed re-arms itself when it fires.
    if (this.timer === undefined) this.arm();
  }

  /** A SUBSCRIBE restated the same intervals: its NOTIFY carries the whole state, nothing stays held. */
  restated(): void {
    this.held = undefined;
    this.arm();
  }

  /** Arm the one timer for the next deadline, unless it already fires before it. */
  arm(): void {
    const at = this.nextDeadline();
    if (at === Infinity) {
      this.stop();
      return;
    }
    if (this.timer !== undefined) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.min(at - Date.now(), MAX_TIMER_DELAY)));
    this.timer.unref();
  }

  /** The timer fired: release the held NOTIFY, or send the current state after max-interval of silence. */
  private fire(): void {
    if (this.stopped) return;
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    if (this.held !== undefined) {
      if (now >= this.lastSentAt + this.minMs) {
        const held = this.held;
        this.held = undefined;
        this.due(held);
      }
    } else if (this.maxMs !== 0 && now >= this.lastSentAt + this.maxMs) {
      // RFC 6446 max-interval: the current state in its entirety, as after a refresh. Counted as
      // sent now even if it waits behind a NOTIFY in flight or for a node-wide slot, so a
      // subscription stuck there gets one timer per max-interval, not a busy loop.
      this.due({ kind: 'state' });
      this.lastSentAt = Math.max(this.lastSentAt, now);
    }
    if (!this.stopped) this.arm();
  }

  private stopped = false;

  /** Out of rate control (it ended, the node stops, or a refresh left the parameters out): no timer, nothing held. */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    this.held = undefined;
  }

  /** For good: the timer never re-arms. */
  end(): void {
    this.stopped = true;
    this.stop();
  }
}
