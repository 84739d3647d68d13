/**
 * What core/notifier.ts and transport/stack.ts do to put one NOTIFY for one watcher on the
 * wire (through the notifier's own buildNotify / notifyTarget), next to the
 * precomputed-template variant STYLE.md asks for.
 */
import { buildNotify, notifyTarget } from '../../core/notifier.js';
import type { Subscription } from '../../core/store/records.js';

export function sampleSubscription(i: number, presentityUri: string, port: number): Subscription {
  return {
    id: `10a1b2c3d4e5f6${i}`,
    presentityUri,
    event: 'presence',
    eventId: '',
    watcherUri: `sip:w${i}@example.com`,
    watcherDisplay: '',
    callId: `bench-${i}-1a2b3c@127.0.0.1`,
    localTag: `10a1b2c3d4e5f6${i}`,
    remoteTag: `bench-${i}`,
    remoteCseq: 1,
    localCseq: 41,
    routeSet: [],
    remoteTarget: `sip:w${i}@127.0.0.1:${port}`,
    transport: 'udp',
    flowId: '',
    sourceAddress: '127.0.0.1',
    sourcePort: port,
    expiresAt: Date.now() + 3_600_000,
    state: 'active',
    reason: '',
    localUri: presentityUri,
    accept: '',
    winfoVersion: 0,
    createdAt: Date.now(),
    subHandling: 'allow',
  };
}

/** Notifier.target(): where the NOTIFY goes (parses the remote target every time). */
export function targetAsToday(rec: Subscription): { proto: string; host: string; port: number } {
  return notifyTarget(rec);
}

/**
 * core/notifier.ts buildNotify() + the top Via SipStack.sendRequest() prepends +
 * SipMessage.toBuffer(); the body Buffer is shared across watchers as the notifier does.
 */
export function buildNotifyAsToday(rec: Subscription, state: string, body: Buffer | undefined, contact: string, via: string): Buffer {
  const req = buildNotify(rec, state, body, 'application/pidf+xml', contact);
  req.headers.prepend('via', via);
  return req.toBuffer();
}

/**
 * The proposed shape: the dialog's constant header lines built once (at SUBSCRIBE and on a
 * target refresh), the body encoded once per (presentity, version, outcome); per NOTIFY only
 * the Via branch, CSeq, Subscription-State and Content-Length are written.
 */
export class NotifyTemplate {
  private readonly prefix: string;
  private readonly middle: string;

  constructor(rec: Subscription, contact: string) {
    this.prefix = `NOTIFY ${rec.remoteTarget} SIP/2.0\r\nVia: `;
    let m =
      `Max-Forwards: 70\r\nFrom: <${rec.localUri}>;tag=${rec.localTag}\r\nTo: <${rec.watcherUri}>;tag=${rec.remoteTag}\r\n` +
      `Call-ID: ${rec.callId}\r\n`;
    this.middle = m;
    m = '';
    for (const r of rec.routeSet) m += `Route: ${r}\r\n`;
    m += `Contact: ${contact}\r\nEvent: ${rec.eventId ? `${rec.event};id=${rec.eventId}` : rec.event}\r\n`;
    this.suffix = m;
  }
  private readonly suffix: string;

  build(via: string, cseq: number, state: string, body: Buffer | undefined, contentType: string): Buffer {
    let head = this.prefix + via + '\r\n' + this.middle + 'CSeq: ' + cseq + ' NOTIFY\r\n' + this.suffix + 'Subscription-State: ' + state + '\r\n';
    if (body === undefined) return Buffer.from(head + 'Content-Length: 0\r\n\r\n', 'utf8');
    head += 'Content-Type: ' + contentType + '\r\nContent-Length: ' + body.length + '\r\n\r\n';
    const headLen = Buffer.byteLength(head, 'utf8');
    const out = Buffer.allocUnsafe(headLen + body.length);
    out.write(head, 0, 'utf8');
    body.copy(out, headLen);
    return out;
  }
}
