/**
 * Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6).
 *
 *   Trying ──1xx──▶ Proceeding ──final──▶ Completed ──Timer K──▶ Terminated
 *     │ Timer E: retransmit at min(2^n*T1, T2) (unreliable only; T2 once Proceeding)
 *     └ Timer F (64*T1): the TU gets a 408 and the transaction ends
 *
 * A transport error ends the transaction with a 503 to the TU (§8.1.3.1).
 *
 * Cost matters here: the notifier runs tens of thousands of these a second. Timers E and F
 * share one Node timer (it fires at whichever is due first). Completed needs no state of its
 * own: the stack recognises late retransmissions of the final response by our branch prefix
 * and absorbs them (Timer K), so the transaction ends with its final response and nothing of
 * it (request bytes, closures, timers) outlives it.
 */
import type { SipResponse } from '../message.js';
import { timer64T1, type TimerSettings, type Send } from './timers.js';

export type NonInviteClientState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** What the TU learns: a final response, or a locally generated timeout/transport failure. */
export type ClientOutcome = { kind: 'response'; response: SipResponse } | { kind: 'timeout' } | { kind: 'transport-error'; error: Error };

export class NonInviteClientTransaction {
  state: NonInviteClientState = 'trying';
  private timer: NodeJS.Timeout | undefined;
  /** When Timer F fires (performance.now() ms: a monotonic clock, unmoved by wall-clock steps). */
  private deadlineF = 0;
  /** When Timer E fires next (unreliable transports only). */
  private nextE = Infinity;
  private eInterval: number;

  constructor(
    readonly key: string,
    private request: Buffer | undefined,
    private send: Send | undefined,
    private readonly reliable: boolean,
    private readonly timers: TimerSettings,
    private onOutcome: ((outcome: ClientOutcome) => void) | undefined,
    private readonly onTerminated: (tx: NonInviteClientTransaction) => void,
  ) {
    this.eInterval = timers.t1;
  }

  start(): void {
    const now = performance.now();
    this.deadlineF = now + timer64T1(this.timers);
    if (!this.reliable) this.nextE = now + this.eInterval;
    this.send!(this.request!);
    if (this.state === 'trying') this.arm(now);
  }

  /** One Node timer for E and F: due at the earlier of the two. */
  private arm(now: number): void {
    const due = Math.min(this.nextE, this.deadlineF);
    this.timer = setTimeout(fire, Math.max(0, due - now), this);
    this.timer.unref();
  }

  /** Timer E or F fired (see `fire` below: no closure per transaction). */
  onTimer(): void {
    this.timer = undefined;
    if (this.state !== 'trying' && this.state !== 'proceeding') return;
    const now = performance.now();
    if (now >= this.deadlineF) {
      this.settle({ kind: 'timeout' });
      this.terminate();
      return;
    }
    if (now >= this.nextE) {
      this.send!(this.request!);
      this.eInterval = this.state === 'proceeding' ? this.timers.t2 : Math.min(this.eInterval * 2, this.timers.t2);
      this.nextE = now + this.eInterval;
    }
    this.arm(now);
  }

  receiveResponse(response: SipResponse): void {
    if (this.state === 'completed' || this.state === 'terminated') return;
    if (response.status < 200) {
      if (this.state === 'trying') {
        this.state = 'proceeding';
        this.eInterval = this.timers.t2;
      }
      return;
    }
    this.state = 'completed';
    this.settle({ kind: 'response', response });
    this.terminate(); // Timer K: absorbed by the stack (see above)
  }

  transportError(error: Error): void {
    if (this.state === 'terminated') return;
    this.settle({ kind: 'transport-error', error });
    this.terminate();
  }

  /** The TU hears of the transaction once: the callback is dropped as it is called. */
  private settle(outcome: ClientOutcome): void {
    const cb = this.onOutcome;
    this.onOutcome = undefined;
    cb?.(outcome);
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.request = undefined; // nothing of it outlives the transaction
    this.send = undefined;
    this.onTerminated(this);
  }
}

function fire(tx: NonInviteClientTransaction): void {
  tx.onTimer();
}
