/**
 * Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6).
 *
 *   Trying ──1xx──▶ Proceeding ──final──▶ Completed ──Timer K──▶ Terminated
 *     │ Timer E: retransmit at min(2^n*T1, T2) (unreliable only; T2 once Proceeding)
 *     └ Timer F (64*T1): the TU gets a 408 and the transaction ends
 *
 * A transport error ends the transaction with a 503 to the TU (§8.1.3.1).
 */
import type { SipResponse } from '../message.js';
import { timer64T1, type TimerSettings, type Send } from './timers.js';

export type NonInviteClientState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** What the TU learns: a final response, or a locally generated timeout/transport failure. */
export type ClientOutcome =
  | { kind: 'response'; response: SipResponse }
  | { kind: 'timeout' }
  | { kind: 'transport-error'; error: Error };

export class NonInviteClientTransaction {
  state: NonInviteClientState = 'trying';
  private timerE: NodeJS.Timeout | undefined;
  private timerF: NodeJS.Timeout | undefined;
  private timerK: NodeJS.Timeout | undefined;
  private eInterval: number;
  private settled = false;

  constructor(
    readonly key: string,
    private readonly request: Buffer,
    private readonly send: Send,
    private readonly reliable: boolean,
    private readonly timers: TimerSettings,
    private readonly onOutcome: (outcome: ClientOutcome) => void,
    private readonly onTerminated: (tx: NonInviteClientTransaction) => void,
  ) {
    this.eInterval = timers.t1;
  }

  start(): void {
    this.send(this.request);
    if (!this.reliable) this.scheduleE();
    this.timerF = setTimeout(() => {
      if (this.state === 'trying' || this.state === 'proceeding') {
        this.settle({ kind: 'timeout' });
        this.terminate();
      }
    }, timer64T1(this.timers));
    this.timerF.unref();
  }

  private scheduleE(): void {
    this.timerE = setTimeout(() => {
      if (this.state !== 'trying' && this.state !== 'proceeding') return;
      this.send(this.request);
      this.eInterval = this.state === 'proceeding' ? this.timers.t2 : Math.min(this.eInterval * 2, this.timers.t2);
      this.scheduleE();
    }, this.eInterval);
    this.timerE.unref();
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
    this.clearRetransmission();
    this.settle({ kind: 'response', response });
    this.timerK = setTimeout(() => this.terminate(), this.reliable ? 0 : this.timers.t4);
    this.timerK.unref();
  }

  transportError(error: Error): void {
    if (this.state === 'terminated') return;
    this.settle({ kind: 'transport-error', error });
    this.terminate();
  }

  private clearRetransmission(): void {
    if (this.timerE) clearTimeout(this.timerE);
    if (this.timerF) clearTimeout(this.timerF);
  }

  private settle(outcome: ClientOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.onOutcome(outcome);
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.clearRetransmission();
    if (this.timerK) clearTimeout(this.timerK);
    this.onTerminated(this);
  }
}
