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
 * A response kept for retransmission (Timer J, 32 s over UDP) in an allocation of its own: the
 * serializer's Buffer is a slice of Node's shared 8 KB pool, and tens of thousands of kept slices
 * pinned about 1.7 KB of pool each (a heap snapshot after 50,000 fuzzed datagrams: 47 MB of
 * pool slabs held by lastResponse alone).
 */
export function retained(bytes: Buffer): Buffer {
  const own = Buffer.allocUnsafeSlow(bytes.length);
  bytes.copy(own);
  return own;
}

export class NonInviteServerTransaction {
  state: NonInviteServerState = 'trying';
  private lastResponse: Buffer | undefined;

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
    if ((this.state === 'proceeding' || this.state === 'completed') && this.lastResponse) this.send(this.lastResponse);
  }

  /** Transport error while sending: the transaction ends (§17.2.4). */
  terminate(): void {
    if (this.state === 'terminated') return;
    this.state = 'terminated';
    this.lastResponse = undefined;
    this.onTerminated(this);
  }
}
