/**
 * RFC 3261 §17 timer values (Table 4 of Appendix A). T1, T2 and T4 may be tuned per stack
 * (tests shorten them); every other timer derives from them as the RFC defines.
 */
export interface TimerSettings {
  /** RTT estimate, 500 ms by default. */
  t1: number;
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses, 4 s. */
  t2: number;
  /** Maximum duration a message will remain in the network, 5 s. */
  t4: number;
}

export const DEFAULT_TIMERS: TimerSettings = { t1: 500, t2: 4000, t4: 5000 };

/** Timer F / Timer H / Timer J (unreliable): 64*T1. */
export function timer64T1(t: TimerSettings): number {
  return 64 * t.t1;
}

/** Sends the bytes of one message to a fixed destination; false when the transport failed. */
export type Send = (data: Buffer) => void;
