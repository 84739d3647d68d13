/**
 * The load driver's SIP side: a few UDP sockets on loopback over which many publishers and
 * watchers are multiplexed (each watcher has its own Contact user and dialog; the socket is
 * chosen by index). Requests are matched to responses by Via branch; every NOTIFY (or other
 * request) is answered 200 at once, before anything else is done with it.
 *
 * It is deliberately not the project's SIP stack: it scans only what it needs (status,
 * branch, Call-ID, a few headers) so the generator costs a fraction of the server under test;
 * bench/load/null-server.ts measures that ceiling. No retransmission: on loopback a lost
 * datagram is a failure worth counting, not hiding.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';

export interface Endpoint {
  host: string;
  port: number;
}

export interface Reply {
  /** Final status, or 0 when the transaction timed out. */
  status: number;
  /** Header section of the response (latin1), for headerValue(). */
  head: string;
  latencyMs: number;
}

export interface InboundRequest {
  method: string;
  callId: string;
  /** The whole datagram and where its body starts. */
  raw: Buffer;
  bodyStart: number;
  subscriptionState: string;
  /** CSeq number (a repeat means a retransmission: our 200 or its request was lost). */
  cseq: number;
  at: number;
}

interface Pending {
  resolve: (r: Reply) => void;
  sentAt: number;
  deadline: number;
}

export interface DriverStats {
  requestsSent: number;
  responses: number;
  timeouts: number;
  strayResponses: number;
  inboundRequests: number;
  inboundBytes: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Value of the first header `name` (lower-case long name) or its compact form, from a header section. */
export function headerValue(head: string, name: string, compact?: string): string | undefined {
  let i = head.indexOf('\r\n');
  while (i !== -1) {
    const start = i + 2;
    const colon = head.indexOf(':', start);
    const eol = head.indexOf('\r\n', start);
    const end = eol === -1 ? head.length : eol;
    if (colon !== -1 && colon < end) {
      const n = head.slice(start, colon).trim().toLowerCase();
      if (n === name || (compact !== undefined && n === compact)) return head.slice(colon + 1, end).trim();
    }
    i = eol;
  }
  return undefined;
}

/** `;tag=` of a From/To value. */
export function tagOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const m = /;\s*tag=([^;\s,>]+)/i.exec(value.slice(value.lastIndexOf('>') + 1));
  return m ? m[1] : undefined;
}

export class SipDriver {
  readonly sockets: dgram.Socket[] = [];
  readonly ports: number[] = [];
  readonly stats: DriverStats = { requestsSent: 0, responses: 0, timeouts: 0, strayResponses: 0, inboundRequests: 0, inboundBytes: 0 };
  /** Called for every inbound request after its 200 has been sent. */
  onRequest: (req: InboundRequest) => void = () => {};
  private readonly pending = new Map<string, Pending>();
  private readonly branchPrefix = 'z9hG4bK-' + randomBytes(4).toString('hex') + '-';
  private seq = 0;
  private sweeper: NodeJS.Timeout | undefined;

  private constructor(
    readonly target: Endpoint,
    readonly timeoutMs: number,
    /** Our address: bound, and written in Via and Contact. */
    readonly localHost: string,
  ) {}

  static async open(target: Endpoint, sockets: number, timeoutMs: number, localHost = '127.0.0.1'): Promise<SipDriver> {
    const d = new SipDriver(target, timeoutMs, localHost);
    for (let i = 0; i < sockets; i++) {
      const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(0, localHost, () => {
          s.off('error', reject);
          resolve();
        });
      });
      s.on('error', () => undefined); // ICMP port unreachable after the target stops: not ours to report
      const idx = i;
      s.on('message', (buf, rinfo) => d.receive(buf, rinfo, idx));
      d.sockets.push(s);
      d.ports.push(s.address().port);
    }
    d.sweeper = setInterval(() => d.sweep(), 100);
    return d;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** `SIP/2.0/UDP LOCALHOST:PORT;branch=…;rport` for socket `sock`, and the branch. */
  newVia(sock: number): { via: string; branch: string } {
    const branch = this.branchPrefix + (this.seq++).toString(36);
    return { via: `Via: SIP/2.0/UDP ${this.localHost}:${this.ports[sock]};branch=${branch};rport\r\n`, branch };
  }

  /**
   * Send a request on socket `sock`. `headers` are complete header lines (each ending in
   * CRLF) other than Via and Content-Length; resolves with the final response or a timeout.
   */
  request(sock: number, method: string, uri: string, headers: string, body = ''): Promise<Reply> {
    const { via, branch } = this.newVia(sock);
    const text = `${method} ${uri} SIP/2.0\r\n${via}${headers}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const now = performance.now();
    return new Promise<Reply>((resolve) => {
      this.pending.set(branch, { resolve, sentAt: now, deadline: now + this.timeoutMs });
      this.stats.requestsSent++;
      this.sockets[sock]!.send(text, this.target.port, this.target.host);
    });
  }

  private sweep(): void {
    const now = performance.now();
    for (const [branch, p] of this.pending) {
      if (p.deadline > now) break; // insertion order = deadline order
      this.pending.delete(branch);
      this.stats.timeouts++;
      p.resolve({ status: 0, head: '', latencyMs: now - p.sentAt });
    }
  }

  private receive(buf: Buffer, rinfo: dgram.RemoteInfo, sock: number): void {
    const headEnd = buf.indexOf(CRLFCRLF);
    const end = headEnd === -1 ? buf.length : headEnd;
    // "SIP/2.0 " starts a response; anything else is a request.
    if (buf[0] === 0x53 && buf[1] === 0x49 && buf[2] === 0x50 && buf[3] === 0x2f) {
      const head = buf.toString('latin1', 0, end);
      const status = Number(head.slice(8, 11));
      if (status < 200) return;
      const b = head.indexOf('branch=');
      if (b === -1) return;
      let e = b + 7;
      while (e < head.length) {
        const c = head.charCodeAt(e);
        if (c === 0x3b || c === 0x2c || c === 0x0d || c === 0x20) break;
        e++;
      }
      const branch = head.slice(b + 7, e);
      const p = this.pending.get(branch);
      if (!p) {
        this.stats.strayResponses++;
        return;
      }
      this.pending.delete(branch);
      this.stats.responses++;
      p.resolve({ status, head, latencyMs: performance.now() - p.sentAt });
      return;
    }
    this.answer(buf, end, rinfo, sock);
  }

  /** 200 (501 for methods a UA would not take) with Via/From/To/Call-ID/CSeq copied, then hand the request on. */
  private answer(buf: Buffer, headEnd: number, rinfo: dgram.RemoteInfo, sock: number): void {
    const head = buf.toString('latin1', 0, headEnd);
    const sp = head.indexOf(' ');
    const method = head.slice(0, sp);
    let out = method === 'NOTIFY' || method === 'OPTIONS' ? 'SIP/2.0 200 OK\r\n' : 'SIP/2.0 501 Not Implemented\r\n';
    let callId = '';
    let subState = '';
    let cseq = 0;
    let toSeen = false;
    let i = head.indexOf('\r\n');
    while (i !== -1) {
      const start = i + 2;
      const eol = head.indexOf('\r\n', start);
      const end = eol === -1 ? head.length : eol;
      const colon = head.indexOf(':', start);
      if (colon !== -1 && colon < end) {
        const name = head.slice(start, colon).trim().toLowerCase();
        if (name === 'via' || name === 'v' || name === 'from' || name === 'f') {
          out += head.slice(start, end) + '\r\n';
        } else if (name === 'cseq') {
          cseq = parseInt(head.slice(colon + 1, end).trim(), 10);
          out += head.slice(start, end) + '\r\n';
        } else if (name === 'to' || name === 't') {
          out += head.slice(start, end) + '\r\n';
          toSeen = true;
        } else if (name === 'call-id' || name === 'i') {
          callId = head.slice(colon + 1, end).trim();
          out += head.slice(start, end) + '\r\n';
        } else if (name === 'subscription-state') subState = head.slice(colon + 1, end).trim();
      }
      i = eol;
    }
    if (!toSeen) return;
    this.sockets[sock]!.send(out + 'Content-Length: 0\r\n\r\n', rinfo.port, rinfo.address);
    this.stats.inboundRequests++;
    this.stats.inboundBytes += buf.length;
    this.onRequest({ method, callId, raw: buf, bodyStart: headEnd + 4, subscriptionState: subState, cseq, at: performance.now() });
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const p of this.pending.values()) p.resolve({ status: 0, head: '', latencyMs: 0 });
    this.pending.clear();
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
