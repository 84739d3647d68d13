/**
 * INVITE server transaction, RFC 3261 §17.2.1 (Figure 7), for the only thing this stack does
 * with an INVITE: reject it with a final non-2xx response.
 *
 *   Proceeding ──300-699──▶ Completed ──ACK──▶ Confirmed ──Timer I──▶ Terminated
 *                             │ Timer G: retransmit (unreliable)
 *                             └ Timer H (64*T1): Terminated
 */
import type { SipResponse } from '../message.js';
import { timer64T1, type TimerSettings, type Send } from './timers.js';
import { retained, resent } from './non-invite-server-transaction.js';

export type InviteServerState = 'proceeding' | 'completed' | 'confirmed' | 'terminated';

export class InviteServerTransaction {
  state: InviteServerState = 'proceeding';
  private lastResponse: string | undefined;
  private timerG: NodeJS.Timeout | undefined;
  private timerH: NodeJS.Timeout | undefined;
  private timerI: NodeJS.Timeout | undefined;
  private gInterval: number;

  constructor(
    readonly key: string,
    private readonly send: Send,
    private readonly reliable: boolean,
    private readonly timers: TimerSettings,
    private readonly onTerminated: (tx: InviteServerTransaction) => void,
  ) {
    this.gInterval = timers.t1;
  }

  respond(response: SipResponse): void {
    if (this.state !== 'proceeding') return;
    if (response.status < 300) throw new Error('this INVITE server transaction only sends rejections');
    const bytes = response.toBuffer();
    this.lastResponse = retained(bytes);
    this.send(bytes);
    this.state = 'completed';
    if (!this.reliable) this.scheduleG();
    this.timerH = setTimeout(() => this.terminate(), timer64T1(this.timers));
    this.timerH.unref();
  }

  private scheduleG(): void {
    this.timerG = setTimeout(() => {
      if (this.state !== 'completed' || this.lastResponse === undefined) return;
      this.send(resent(this.lastResponse));
      this.gInterval = Math.min(this.gInterval * 2, this.timers.t2);
      this.scheduleG();
    }, this.gInterval);
    this.timerG.unref();
  }

  receiveRequest(): void {
    if (this.state === 'completed' && this.lastResponse !== undefined) this.send(resent(this.lastResponse));
  }

  receiveAck(): void {
    if (this.state !== 'completed') return;
    this.state = 'confirmed';
    if (this.timerG) clearTimeout(this.timerG);
    this.timerI = setTimeout(() => this.terminate(), this.reliable ? 0 : this.timers.t4);
    this.timerI.unref();
  }

  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    for (const t of [this.timerG, this.timerH, this.timerI]) if (t) clearTimeout(t);
    this.onTerminated(this);
  }
}
