/**
 * A tiny SIP user agent for tests, over UDP, TCP or TLS on loopback: sends requests (or raw
 * bytes), matches responses by branch, receives in-dialog requests (NOTIFY) and answers them
 * with a configurable status. It uses the project's own parser, so it only trusts bytes.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { SipRequest, SipResponse, createResponse } from '../../transport/message.js';
import { parseMessage, StreamFramer } from '../../transport/parser.js';
import { backstop } from './wait.js';

export type UaProto = 'udp' | 'tcp' | 'tls';

/** For a TLS UA: the CA it trusts for the node's certificate, and the certificate of its own listener. */
export interface UaTlsOptions {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

export interface RequestOptions {
  method: string;
  uri: string;
  from?: string;
  to?: string;
  callId?: string;
  cseq?: number;
  headers?: Array<[string, string]> | Record<string, string>;
  body?: string;
  contentType?: string;
  /** Skip adding default headers (Max-Forwards, Contact). */
  bare?: boolean;
}

export interface Received {
  message: SipRequest | SipResponse;
  raw: Buffer;
  at: number;
}

const rand = (n = 6): string => randomBytes(n).toString('hex');

/** What a retransmission of a request repeats: method, Call-ID, CSeq and the branch of its top Via. */
function transactionKey(req: SipRequest): string {
  return `${req.method} ${req.callId} ${req.cseq.seq} ${req.topVia.branch}`;
}

export class TestUa {
  readonly received: Received[] = [];
  /** Status to answer incoming requests with (per method); undefined = do not answer. */
  answer: (req: SipRequest) => number | undefined = (req) => (req.method === 'NOTIFY' ? 200 : 405);
  private waiters: Array<{ pred: (r: Received) => boolean; resolve: (r: Received) => void }> = [];
  private udp: dgram.Socket | undefined;
  private tcp: net.Socket | undefined;
  private tcpServer: net.Server | undefined;
  /** Connections the node opened towards this UA's listener (TCP/TLS). */
  readonly inbound = new Set<net.Socket>();
  /** How many connections the node opened towards this UA so far. */
  inboundCount = 0;
  private tlsOptions: UaTlsOptions | undefined;
  localPort = 0;
  readonly user = `ua${rand(3)}`;

  private constructor(
    readonly proto: UaProto,
    public serverPort: number,
    /** Where requests go (a test may point it at a Contact the node gave). */
    public serverHost = '127.0.0.1',
    /** The address the UA binds and names in Via and Contact (a network namespace's address for a UA on an adopted socket). */
    public localHost = '127.0.0.1',
  ) {}

  /** `hosts`: the node's address and the UA's own, for a UA outside loopback (a network namespace). */
  static async open(
    proto: UaProto,
    serverPort: number,
    tlsOptions?: UaTlsOptions,
    hosts: { server?: string; local?: string } = {},
  ): Promise<TestUa> {
    const ua = new TestUa(proto, serverPort, hosts.server, hosts.local);
    if (proto === 'tls' && !tlsOptions) throw new Error('a TLS test UA needs a CA and its own certificate');
    ua.tlsOptions = tlsOptions;
    if (proto === 'udp') {
      const s = dgram.createSocket('udp4');
      ua.udp = s;
      await new Promise<void>((r) => s.bind(0, ua.localHost, () => r()));
      ua.localPort = s.address().port;
      s.on('message', (data) => ua.onBytes(data, true, undefined));
    } else {
      // A listening socket for requests the server opens a connection for, plus the outbound connection.
      const adopt = (sock: net.Socket): void => {
        ua.inbound.add(sock);
        ua.inboundCount++;
        ua.attachStream(sock);
        sock.on('error', () => undefined);
        sock.on('close', () => ua.inbound.delete(sock));
      };
      const server = tlsOptions ? tls.createServer({ cert: tlsOptions.cert, key: tlsOptions.key }, adopt) : net.createServer(adopt);
      ua.tcpServer = server;
      await new Promise<void>((r) => server.listen(0, ua.localHost, () => r()));
      ua.localPort = (server.address() as net.AddressInfo).port;
      await ua.connect();
    }
    return ua;
  }

  /**
   * A UDP UA on a socket bound elsewhere, e.g. inside a network namespace (test/support/netns.ts),
   * talking to serverHost:serverPort.
   */
  static adopt(socket: dgram.Socket, serverHost: string, serverPort: number): TestUa {
    const ua = new TestUa('udp', serverPort, serverHost);
    ua.udp = socket;
    const a = socket.address();
    ua.localHost = a.address;
    ua.localPort = a.port;
    socket.on('message', (data) => ua.onBytes(data, true, undefined));
    return ua;
  }

  /** (Re)open the outbound TCP or TLS connection (TLS: the node's certificate is verified with the test CA). */
  async connect(): Promise<void> {
    const t = this.tlsOptions;
    const sock = t
      ? tls.connect({ host: this.serverHost, port: this.serverPort, ca: t.ca })
      : net.connect({ host: this.serverHost, port: this.serverPort });
    await new Promise<void>((resolve, reject) => {
      sock.once(t ? 'secureConnect' : 'connect', () => resolve());
      sock.once('error', reject);
    });
    sock.on('error', () => undefined);
    this.tcp = sock;
    this.attachStream(sock);
  }

  private attachStream(sock: net.Socket): void {
    const framer = new StreamFramer({ maxMessageSize: 1 << 20 });
    sock.on('data', (chunk: Buffer) => {
      for (const raw of framer.push(chunk).messages) this.onBytes(raw, false, sock);
    });
  }

  /** Close the outbound connection (the node's requests must then come on a new one). */
  async disconnect(): Promise<void> {
    const sock = this.tcp;
    this.tcp = undefined;
    if (!sock || sock.destroyed) return;
    await new Promise<void>((resolve) => {
      sock.once('close', () => resolve());
      sock.destroy();
    });
  }

  get contact(): string {
    return `<sip:${this.user}@${this.localHost}:${this.localPort}${this.proto === 'udp' ? '' : `;transport=${this.proto}`}>`;
  }

  get aor(): string {
    return `sip:${this.user}@example.com`;
  }

  private onBytes(raw: Buffer, datagram: boolean, sock: net.Socket | undefined): void {
    let message: SipRequest | SipResponse;
    try {
      message = parseMessage(raw, datagram).message;
    } catch {
      return;
    }
    const rec: Received = { message, raw, at: Date.now() };
    this.received.push(rec);
    if (message instanceof SipRequest) {
      const status = this.answer(message);
      if (status !== undefined) {
        const res = createResponse(message, status, undefined, message.toTag ? undefined : rand());
        this.replyTo(message, res, sock);
      }
    }
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.pred(rec)) {
        this.waiters[i]!.resolve(rec);
        this.waiters.splice(i, 1);
      }
    }
  }

  /** Send a response to a received request, back where it came from (its Via / its connection). */
  replyTo(req: SipRequest, res: SipResponse, sock?: net.Socket): void {
    const data = res.toBuffer();
    if (this.proto === 'udp') {
      const via = req.topVia;
      const port = Number(via.params.get('rport') || via.port || 5060);
      this.udp!.send(data, port, via.params.get('received') ?? via.host);
    } else (sock ?? this.tcp)!.write(data);
  }

  sendRaw(data: Buffer | string): void {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.proto === 'udp') this.udp!.send(buf, this.serverPort, this.serverHost);
    else this.tcp!.write(buf);
  }

  build(o: RequestOptions): SipRequest {
    const req = new SipRequest(o.method, o.uri);
    const branch = `z9hG4bK${rand()}`;
    req.headers.append('via', `SIP/2.0/${this.proto.toUpperCase()} ${this.localHost}:${this.localPort};branch=${branch};rport`);
    req.headers.append('from', o.from ?? `<${this.aor}>;tag=${rand()}`);
    req.headers.append('to', o.to ?? `<${o.uri}>`);
    req.headers.append('call-id', o.callId ?? `${rand(8)}@test`);
    req.headers.append('cseq', `${o.cseq ?? 1} ${o.method}`);
    if (!o.bare) {
      req.headers.append('max-forwards', '70');
      if (o.method === 'SUBSCRIBE') req.headers.append('contact', this.contact);
    }
    const hs = o.headers ? (Array.isArray(o.headers) ? o.headers : Object.entries(o.headers)) : [];
    for (const [k, v] of hs) req.headers.append(k.toLowerCase(), v);
    if (o.body !== undefined) {
      req.body = Buffer.from(o.body);
      if (o.contentType) req.headers.append('content-type', o.contentType);
    }
    return req;
  }

  /** Send a request and wait for its final response. */
  async request(o: RequestOptions | SipRequest, timeoutMs = 5000): Promise<SipResponse> {
    const req = o instanceof SipRequest ? o : this.build(o);
    const branch = req.topVia.branch;
    const p = this.waitFor(
      (r) => r.message instanceof SipResponse && r.message.status >= 200 && r.message.topVia.branch === branch,
      timeoutMs,
      `final response to ${req.method}`,
    );
    this.sendRaw(req.toBuffer());
    return (await p).message as SipResponse;
  }

  waitFor(pred: (r: Received) => boolean, timeoutMs = 5000, what = 'a message'): Promise<Received> {
    timeoutMs = backstop(timeoutMs);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.findIndex((w) => w.resolve === done);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = (r: Received): void => {
        clearTimeout(t);
        resolve(r);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  /**
   * Wait for the next request (e.g. NOTIFY) received after `since` matching pred. Each request is
   * handed out once, and so is each transaction: a UDP retransmission of a request handed out
   * already (the node resends a NOTIFY until our 200 reaches it, sooner on a loaded machine) is not
   * a new request.
   */
  nextRequest(method: string, pred: (r: SipRequest) => boolean = () => true, timeoutMs = 5000, since = 0): Promise<SipRequest> {
    const fresh = (r: Received): boolean =>
      r.message instanceof SipRequest &&
      r.message.method === method &&
      !this.consumed.has(r) &&
      !this.consumedTransactions.has(transactionKey(r.message)) &&
      pred(r.message);
    const take = (r: Received): SipRequest => {
      this.consumed.add(r);
      this.consumedTransactions.add(transactionKey(r.message as SipRequest));
      return r.message as SipRequest;
    };
    const seen = this.received.find((r) => r.at >= since && fresh(r));
    if (seen) return Promise.resolve(take(seen));
    return this.waitFor(fresh, timeoutMs, method).then(take);
  }

  /** Requests handed out by nextRequest(), so each is returned once. */
  private readonly consumed = new Set<Received>();
  /** Their transactions (transactionKey), so a retransmission is not handed out as a new request. */
  private readonly consumedTransactions = new Set<string>();

  requests(method: string): SipRequest[] {
    return this.received.filter((r) => r.message instanceof SipRequest && r.message.method === method).map((r) => r.message as SipRequest);
  }

  async close(): Promise<void> {
    this.udp?.close();
    this.tcp?.destroy();
    for (const s of this.inbound) s.destroy();
    if (this.tcpServer) await new Promise<void>((r) => this.tcpServer!.close(() => r()));
  }
}
