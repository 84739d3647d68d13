/**
 * Non-INVITE server transaction, RFC 3261 §17.2.2 (Figure 8).
 *
 *   Trying ──1xx──▶ Proceeding ──final──▶ Completed ──Timer J──▶ Terminated
 *     └──────────────final──────────────────▲
 *
 * Request retransmissions are absorbed in Trying and answered with the last response in
 * Proceeding and Completed. Timer J is 64*T1 for unreliable transports and zero otherwise; the
 * stack runs it (`onCompleted`), in one queue for all transactions, since every Timer J of a
 * stack has the same length and tens of thousands are pending at a time.
 */
import type { SipResponse } from '../message.js';
import type { Send } from './timers.js';

export type NonInviteServerState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/**
 * A response kept for retransmission (Timer J, 32 s over UDP), as a one-byte string in the V8
 * heap (each byte one latin1 character, lossless): not a slice of Node's shared 8 KB Buffer pool
 * (tens of thousands of kept slices pinned about 1.7 KB of pool each), and not a Buffer of its
 * own either, which is a malloc'd block plus about 200 B of objects, released only when a full
 * GC finds the Buffer dead: after a burst of 100,000 SUBSCRIBEs, some 45 MB of such blocks
 * stayed in the malloc arena after their transactions had ended.
 */
export function retained(bytes: Buffer): string {
  return bytes.toString('latin1');
}

/** The bytes of a kept response, to send again. */
export function resent(kept: string): Buffer {
  return Buffer.from(kept, 'latin1');
}

export class NonInviteServerTransaction {
  state: NonInviteServerState = 'trying';
  private lastResponse: Buffer | string | undefined;

  constructor(
    readonly key: string,
    private readonly send: Send,
    private readonly reliable: boolean,
    private readonly onTerminated: (tx: NonInviteServerTransaction) => void,
    /** Completed on an unreliable transport: the stack terminates it when Timer J fires. */
    private readonly onCompleted: (tx: NonInviteServerTransaction) => void,
  ) {}

  /** The TU's response. Responses after the final one are ignored (§17.2.2). */
  respond(response: SipResponse): void {
    if (this.state === 'completed' || this.state === 'terminated') return;
    const bytes = response.toBuffer();
    this.send(bytes);
    this.lastResponse = this.reliable ? bytes : retained(bytes);
    if (response.status < 200) {
      this.state = 'proceeding';
      return;
    }
    this.state = 'completed';
    if (this.reliable) this.terminate();
    else this.onCompleted(this);
  }

  /** A retransmission of the request matched this transaction. */
  receiveRequest(): void {
    const last = this.lastResponse;
    if ((this.state === 'proceeding' || this.state === 'completed') && last !== undefined)
      this.send(typeof last === 'string' ? resent(last) : last);
  }

  /** Transport error while sending: the transaction ends (§17.2.4). */
  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.lastResponse = undefined;
    this.onTerminated(this);
  }
}
