/**
 * The SIP stack: listeners, the receive pipeline (parse → validate → transaction match) and
 * the send side (response routing by Via, RFC 3261 §18.2.2 + RFC 3581; requests to a target
 * over UDP, TCP, TLS or an existing flow). It knows nothing of presence: the transaction user
 * registers one request handler.
 */
import net from 'node:net';
import { lookup } from 'node:dns/promises';
import { randomBytes } from 'node:crypto';
import { type SipRequest, SipResponse, createResponse, ownString, type Via, type OutgoingRequest } from './message.js';
import { parseMessage, validateRequest, hasRoutableVia, UNSUPPORTED_VERSION, type ParsedMessage } from './parser.js';
import { type Flow, type Logger, type Protocol, type Source, type Target, bareHost, uriHost, isReliable } from './flows.js';
import { UdpListener, DatagramTooLargeError, MAX_DATAGRAM } from './udp.js';
import { TcpTransport, type StreamProtocol, type TlsSettings } from './tcp.js';
import { WsListener } from './ws.js';
import { ListenError, hostPort } from './listen.js';
import { LocalAddresses, isWildcard, fallbackAddress } from './local-address.js';
import { NonInviteServerTransaction } from './transactions/non-invite-server-transaction.js';
import { InviteServerTransaction } from './transactions/invite-server-transaction.js';
import { NonInviteClientTransaction, type ClientOutcome } from './transactions/non-invite-client-transaction.js';
import { DEFAULT_TIMERS, timer64T1, type TimerSettings, type Send } from './transactions/timers.js';
import type { MessageTap } from './hep.js';
import { SipCounters, RefusalLog } from './sip-stats.js';
import { OverloadGuard, Refusals, OVERLOAD_OFF, type OverloadSettings } from './overload.js';

export type { TlsSettings };

export interface ListenSpec {
  proto: Protocol;
  address: string;
  port: number;
  /**
   * The host (and port) to put in Via and Contact instead of the listener's (Kamailio's
   * `advertise`): the public address of a node behind NAT. Without it a wildcard listener
   * advertises, toward each peer, the local address that routes to it (local-address.ts).
   */
  advertise?: { host: string; port?: number };
}

export interface StackOptions {
  listen: ListenSpec[];
  maxMessageSize: number;
  tcpIdleTimeout: number;
  tcpPartialTimeout: number;
  /**
   * RFC 3261 §18.1.1 (Kamailio's udp_mtu / udp_mtu_try_proto): a request that would go over UDP
   * and is larger than this many bytes goes over `udpMtuTryProto` instead. 0 = never.
   */
  udpMtu?: number;
  udpMtuTryProto?: 'udp' | 'tcp' | 'tls';
  /** Certificates for tls/wss listeners and outgoing TLS connections. */
  tls?: TlsSettings;
  timers?: TimerSettings;
  /** Load shedding and the server-transaction limit (overload.ts); none when absent. */
  overload?: OverloadSettings;
  /** Most TCP/TLS/WebSocket connections open at once; a new one beyond is refused. 0 = no limit. */
  maxConnections?: number;
  /** Host-name lookups in progress at once for requests we send; beyond, the request fails at once. 0 = no limit. */
  maxDnsLookups?: number;
  /** Refusals by a limit are logged at most once per this many ms per limit (default 10 s). */
  refusalLogIntervalMs?: number;
  /** Server / User-Agent header value. */
  userAgent: string;
  /** Sees a copy of every message received and sent (SIP capture, HEP). */
  tap?: MessageTap;
  /** Event packages counted by name in stats.requestsByEvent (others count as `other`). */
  eventLabels?: string[];
  log: Logger;
}

/** A request delivered to the transaction user together with the means to answer it. */
export interface IncomingRequest {
  request: SipRequest;
  source: Source;
  /** Send a response through the server transaction. */
  respond(response: SipResponse): void;
  /** Build a response with the request's Via/From/To/Call-ID/CSeq (and our To-tag). */
  reply(status: number, reason?: string, toTag?: string): SipResponse;
  /**
   * Whether `response` can go back on the transport the request came on (RFC 3261 §18.2.2:
   * always that one): over UDP one datagram, at most 65,507 bytes; a connection takes any size.
   * A TU about to commit state its 2xx acknowledges asks first, and refuses what it could not
   * acknowledge (the stack answers a response that does not fit with 513 instead).
   */
  fits(response: SipResponse): boolean;
}

export type RequestHandler = (incoming: IncomingRequest) => void | Promise<void>;

type ServerTx = NonInviteServerTransaction | InviteServerTransaction;

const BRANCH_COOKIE = 'z9hG4bK';
const VIA_TRANSPORT: Record<Protocol, string> = { udp: 'UDP', tcp: 'TCP', tls: 'TLS', ws: 'WS', wss: 'WSS' };

/** The top Via of a request we send: our sent-by for the transport, a fresh branch, rport (RFC 3581). */
function topVia(proto: Protocol, sb: { host: string; port: number }, branch: string): string {
  return `SIP/2.0/${VIA_TRANSPORT[proto]} ${sb.host}:${sb.port};branch=${branch};rport`;
}

export class SipStack {
  readonly timers: TimerSettings;
  private readonly udp: UdpListener[] = [];
  private readonly tcp: TcpTransport[] = [];
  private readonly tls: TcpTransport[] = [];
  private readonly ws: WsListener[] = [];
  private readonly extraFlows = new Map<string, Flow>();
  private readonly serverTx = new Map<string, ServerTx>();
  private readonly clientTx = new Map<string, NonInviteClientTransaction>();
  private handler: RequestHandler = () => {};
  private readonly branchPrefix = BRANCH_COOKIE + randomBytes(6).toString('hex');
  private branchCounter = 0;
  private readonly log: Logger;
  private readonly tap: MessageTap | undefined;
  /** Requests and responses by method and status, for /metrics. */
  readonly stats: SipCounters;
  private readonly refusalLog: RefusalLog;
  /** Refusals by every limit of the node, by configuration key (the TU counts its own here too). */
  readonly refusals: Refusals;
  readonly overload: OverloadGuard;
  private dnsLookups = 0;
  /** Our address toward each peer, for wildcard listeners without `advertise`. */
  private readonly localAddresses = new LocalAddresses();

  constructor(private readonly options: StackOptions) {
    this.timers = options.timers ?? DEFAULT_TIMERS;
    this.log = options.log;
    this.tap = options.tap;
    this.stats = new SipCounters(new Set(options.eventLabels));
    this.refusalLog = new RefusalLog(options.log);
    this.refusals = new Refusals(options.log, options.refusalLogIntervalMs ?? 10_000);
    this.overload = new OverloadGuard(options.overload ?? OVERLOAD_OFF, this.refusals);
  }

  onRequest(handler: RequestHandler): void {
    this.handler = handler;
  }

  async start(): Promise<void> {
    this.sentByCache.clear();
    this.wildcardPort.clear();
    for (const spec of this.options.listen) {
      try {
        await this.startListener(spec);
      } catch (err) {
        if (err instanceof ListenError) throw err;
        const e = err as NodeJS.ErrnoException;
        throw new ListenError('listen', `${spec.proto}:${hostPort(spec.address, spec.port)}`, e.code, e.message);
      }
    }
    this.overload.start(new Set(this.udp.map((u) => u.boundPort)), Math.min(...this.udp.map((u) => u.recvBufferSize)));
  }

  private async startListener(spec: ListenSpec): Promise<void> {
    // A wildcard listener learns which of our addresses each peer reached (for Via and Contact).
    const learn = isWildcard(spec.address) && !spec.advertise;
    if (spec.proto === 'udp') {
      const l = new UdpListener(
        spec.address,
        spec.port,
        learn ? (d, s) => this.receiveOnWildcard(d, s) : (d, s) => this.receive(d, s, true),
        this.log,
      );
      await l.listen();
      this.udp.push(l);
    } else if (spec.proto === 'tcp' || spec.proto === 'tls') {
      const t = new TcpTransport(
        spec.proto,
        spec.address,
        spec.port,
        {
          maxMessageSize: this.options.maxMessageSize,
          idleTimeout: this.options.tcpIdleTimeout,
          partialTimeout: this.options.tcpPartialTimeout,
          admit: this.admitConnection,
          dropped: (reason) => this.stats.drop(reason),
        },
        learn
          ? (d, s) => {
              this.localAddresses.learn(s.address, s.localAddress);
              this.receive(d, s, false);
            }
          : (d, s) => this.receive(d, s, false),
        this.log,
        this.options.tls,
      );
      await t.listen();
      (spec.proto === 'tcp' ? this.tcp : this.tls).push(t);
    } else if (spec.proto === 'ws' || spec.proto === 'wss') {
      const w = new WsListener(
        spec.proto,
        spec.address,
        spec.port,
        this.options.maxMessageSize,
        {
          // RFC 7118: message framing is the WebSocket's; Content-Length may be absent.
          onMessage: (d, s) => this.receive(d, s, true),
          onOpen: (f) => {
            this.attachFlow(f);
            // uWS tells no connection's local address: look up the route to the client instead.
            if (learn) void this.localAddresses.resolve(f.remoteAddress);
          },
          onClose: (f) => this.detachFlow(f),
          admit: this.admitConnection,
          dropped: (reason, fields, msg) => {
            this.stats.drop(reason);
            this.refusalLog.dropped(fields, msg);
          },
        },
        this.log,
        this.options.tls,
      );
      await w.listen();
      this.ws.push(w);
    }
  }

  /** Bound listeners, with the actual port when 0 was asked for. */
  listeners(): ListenSpec[] {
    return [
      ...this.udp.map((u) => ({ proto: 'udp' as const, address: u.address, port: u.boundPort })),
      ...this.tcp.map((t) => ({ proto: 'tcp' as const, address: t.address, port: t.boundPort })),
      ...this.tls.map((t) => ({ proto: 'tls' as const, address: t.address, port: t.boundPort })),
      ...this.ws.map((w) => ({ proto: w.proto, address: w.address, port: w.boundPort })),
    ];
  }

  get serverTransactions(): number {
    return this.serverTx.size;
  }

  /** May a listener accept one more connection (max_connections)? Counts the refusal when not. */
  private readonly admitConnection = (remote: string): boolean => {
    const max = this.options.maxConnections ?? 0;
    if (max === 0 || this.tcpConnections < max) return true;
    this.refusals.refuse('max_connections', { connections: this.tcpConnections, max, remote });
    return false;
  };

  get pendingClientTransactions(): number {
    return this.clientTx.size;
  }

  get tcpConnections(): number {
    let n = 0;
    for (const t of this.tcp) n += t.connectionCount;
    for (const t of this.tls) n += t.connectionCount;
    return n + this.extraFlows.size;
  }

  // Not a closure in receiveRequest: that one would keep the whole request alive for Timer J.
  private readonly serverTerminated = (tx: ServerTx): void => {
    this.serverTx.delete(tx.key);
  };

  /** Completed non-INVITE server transactions in Timer J order (all Timer Js are 64*T1 long; monotonic clock). */
  private readonly timerJQueue: Array<{ at: number; tx: NonInviteServerTransaction }> = [];
  private timerJHead = 0;
  private timerJ: NodeJS.Timeout | undefined;

  private readonly serverCompleted = (tx: NonInviteServerTransaction): void => {
    this.timerJQueue.push({ at: performance.now() + timer64T1(this.timers), tx });
    if (!this.timerJ) this.armTimerJ();
  };

  private armTimerJ(): void {
    const next = this.timerJQueue[this.timerJHead];
    if (!next) {
      this.timerJQueue.length = 0;
      this.timerJHead = 0;
      this.timerJ = undefined;
      return;
    }
    this.timerJ = setTimeout(this.runTimerJ, Math.max(0, next.at - performance.now()));
    this.timerJ.unref();
  }

  private readonly runTimerJ = (): void => {
    const now = performance.now();
    const q = this.timerJQueue;
    while (this.timerJHead < q.length && q[this.timerJHead]!.at <= now) q[this.timerJHead++]!.tx.terminate();
    if (this.timerJHead > 4096 && this.timerJHead * 2 > q.length) {
      q.splice(0, this.timerJHead);
      this.timerJHead = 0;
    }
    this.armTimerJ();
  };

  private readonly clientTerminated = (tx: NonInviteClientTransaction): void => {
    this.clientTx.delete(tx.key);
  };

  async stop(): Promise<void> {
    this.overload.stop();
    if (this.timerJ) clearTimeout(this.timerJ);
    this.timerJ = undefined;
    for (const tx of this.serverTx.values()) tx.terminate();
    for (const tx of this.clientTx.values()) tx.terminate();
    await Promise.all([
      ...this.udp.map((u) => u.close()),
      ...this.tcp.map((t) => t.close()),
      ...this.tls.map((t) => t.close()),
      ...this.ws.map((w) => w.close()),
    ]);
    for (const f of this.extraFlows.values()) f.close();
  }

  /** Register a flow owned by another listener (WebSocket), so requests can target it. */
  attachFlow(flow: Flow): void {
    this.extraFlows.set(flow.id, flow);
  }

  detachFlow(flow: Flow): void {
    this.extraFlows.delete(flow.id);
  }

  findFlow(id: string): Flow | undefined {
    const f = this.extraFlows.get(id);
    if (f) return f;
    for (const t of id.startsWith('tls-') ? this.tls : this.tcp) {
      const c = t.byId.get(id);
      if (c) return c;
    }
    return undefined;
  }

  // ───────────────────────────── receive ─────────────────────────────

  /** Entry point for every received message. `datagram` = message-per-packet framing. */
  receive(data: Buffer, source: Source, datagram: boolean): void {
    this.tap?.message(
      data,
      source.proto,
      { address: source.address, port: source.port },
      { address: source.localAddress, port: source.localPort },
    );
    let parsed: ParsedMessage;
    try {
      parsed = parseMessage(data, datagram);
    } catch (err) {
      this.stats.drop('unparseable');
      this.refusalLog.dropped(
        { remote: `${source.proto}:${source.address}:${source.port}`, bytes: data.length, reason: (err as Error).message },
        'dropped unparseable message',
      );
      return;
    }
    const { message } = parsed;
    try {
      if (message instanceof SipResponse) this.receiveResponse(message);
      else this.receiveRequest(message, parsed.problems, source, data.length);
    } catch (err) {
      this.log.error({ err, callId: message.callId }, 'error while handling a received message');
    }
  }

  /**
   * A datagram on a wildcard UDP listener: its local address becomes the one of ours that routes
   * to the sender (looked up once per sender; later datagrams of a sender being looked up wait
   * behind the first, in order), so the answer's Contact names an address the sender can reach.
   */
  private receiveOnWildcard(data: Buffer, source: Source): void {
    const local = this.localAddresses.resolve(source.address);
    if (typeof local === 'string') {
      source.localAddress = local;
      this.receive(data, source, true);
      return;
    }
    local.then((address) => {
      source.localAddress = address;
      this.receive(data, source, true);
    });
  }

  private receiveResponse(res: SipResponse): void {
    let via: Via;
    let method: string;
    try {
      via = res.topVia;
      method = res.cseq.method;
    } catch (err) {
      this.stats.drop('unparseable');
      this.refusalLog.dropped({ callId: res.callId, status: res.status, reason: (err as Error).message }, 'dropped unparseable message');
      return;
    }
    const key = via.branch ? via.branch + '|' + method : undefined;
    const tx = key ? this.clientTx.get(key) : undefined;
    if (!tx) {
      // A retransmitted final response to one of our completed transactions (Timer K, RFC 3261
      // §17.1.2.2) is absorbed silently; the branch says it is ours.
      if (via.branch?.startsWith(this.branchPrefix)) return;
      this.stats.drop('stray-response');
      this.log.debug({ callId: res.callId, status: res.status }, 'stray response dropped');
      return;
    }
    this.stats.responseReceived(method, res.status);
    tx.receiveResponse(res);
  }

  private receiveRequest(req: SipRequest, problems: string[], source: Source, size: number): void {
    this.stats.request(req.method, req);
    if (!hasRoutableVia(req)) {
      this.stats.drop('no-via');
      this.refusalLog.dropped({ callId: req.callId, remote: `${source.address}:${source.port}` }, 'dropped request without a usable Via');
      return;
    }
    this.stampVia(req, source);
    if (size > this.options.maxMessageSize) {
      if (req.method !== 'ACK')
        this.sendStateless(req, source, 513, 'Message Too Large', `${size} bytes, over max_message_size (${this.options.maxMessageSize})`);
      return;
    }
    const bad = validateRequest(req, problems);
    if (bad !== undefined) {
      // RFC 3261 §8.2.1 / RFC 4475 §3.1.2.16: another SIP version gets 505, the rest 400.
      const otherVersion = bad.startsWith(UNSUPPORTED_VERSION);
      if (req.method !== 'ACK') this.sendStateless(req, source, otherVersion ? 505 : 400, otherVersion ? 'Version Not Supported' : bad);
      return;
    }
    const via = req.topVia;
    const method = req.method === 'ACK' ? 'INVITE' : req.method;
    // Flat and not a slice of the request: the key lives with the transaction (Timer J: 32 s).
    const key = ownString(this.serverKey(req, via, method));
    const existing = this.serverTx.get(key);
    if (req.method === 'ACK') {
      if (existing instanceof InviteServerTransaction) existing.receiveAck();
      return;
    }
    if (existing) {
      existing.receiveRequest();
      return;
    }
    if (req.method === 'CANCEL') {
      // Nothing this stack holds is cancellable: no INVITE ever stays in Proceeding.
      this.sendStateless(req, source, 481);
      return;
    }
    // Overload (RFC 3261 §21.5.4): a new request is refused statelessly, before it costs a transaction.
    if (this.overload.refuse(req.method, this.serverTx.size, req.callId) !== undefined) {
      this.sendStateless(req, source, 503, 'Service Unavailable', undefined, this.overload.retryAfter);
      return;
    }
    const send = this.responseSender(req, source);
    const reliable = isReliable(source.proto);
    const arrived = performance.now();
    const tx: ServerTx =
      req.method === 'INVITE'
        ? new InviteServerTransaction(key, send, reliable, this.timers, this.serverTerminated)
        : new NonInviteServerTransaction(key, send, reliable, this.serverTerminated, this.serverCompleted);
    this.serverTx.set(key, tx);
    this.overload.inFlight++;
    const incoming: IncomingRequest = {
      request: req,
      source,
      respond: (res) => this.respondVia(tx, res, req, arrived),
      // RFC 3261 §8.2.6.2: a UAS response carries a To tag (the TU passes the dialog's own).
      reply: (status, reason, toTag) => createResponse(req, status, reason, toTag ?? this.newTag()),
      fits: (res) => reliable || this.fitsDatagram(res),
    };
    let result: void | Promise<void>;
    try {
      result = this.handler(incoming);
    } catch (err) {
      this.failRequest(tx, req, err);
      return;
    }
    if (result && typeof (result as Promise<void>).then === 'function') {
      (result as Promise<void>).catch((err) => this.failRequest(tx, req, err));
    }
  }

  private respondVia(tx: ServerTx, res: SipResponse, req: SipRequest, arrived?: number): void {
    if (!res.headers.has('server')) res.headers.append('server', this.options.userAgent);
    const awaited = tx.state === 'trying' || tx.state === 'proceeding';
    try {
      try {
        tx.respond(res);
      } catch (err) {
        if (!(err instanceof DatagramTooLargeError)) throw err;
        // RFC 3261 §18.2.2: a response goes back over the transport the request came on, and no
        // datagram holds this one (Kamailio logs the failed send and the client hears nothing
        // until it times out). It is refused instead, with what does fit: the request's own
        // Via/From/To/Call-ID/CSeq. 513 tells the client it is about size: over TCP it would pass.
        // (Every Via is copied, RFC 3261 §8.2.6.2: a Via stack that fills a datagram leaves nothing to send.)
        this.log.warn({ callId: req.callId, status: res.status, bytes: err.size }, 'response too large for UDP: answered 513 instead');
        res = createResponse(req, 513, 'Response Too Large For UDP', res.toTag ?? this.newTag());
        res.headers.append('server', this.options.userAgent);
        tx.respond(res);
      }
    } catch (err) {
      // RFC 3261 §17.2.4: a transport error ends the transaction (it would otherwise wait in
      // Trying for ever). A 513 that does not fit either (the Via stack alone fills a datagram) ends here.
      this.log.error({ err, callId: req.callId }, 'response could not be sent');
      tx.terminate();
      return;
    } finally {
      if (awaited && tx.state !== 'trying' && tx.state !== 'proceeding') this.overload.inFlight--;
    }
    if (arrived !== undefined && res.status >= 200) this.stats.answered(req.method, performance.now() - arrived);
    this.counted(req, res);
  }

  /**
   * Whether a response fits in one UDP datagram. Its size in UTF-16 code units bounds its UTF-8
   * bytes to three times as many: only a response near the limit is serialised to know.
   */
  private fitsDatagram(res: SipResponse): boolean {
    const server = res.headers.has('server') ? 0 : this.options.userAgent.length + 10;
    let units = res.startLine().length + 40 + server; // + CRLFs, Content-Length
    for (const [name, value] of res.headers.entries) units += name.length + value.length + 4;
    if (units * 3 + res.body.length <= MAX_DATAGRAM) return true;
    return res.toBuffer().length + server <= MAX_DATAGRAM;
  }

  /** Counts a response we sent and logs a refusal (RFC 3261 §21.4–21.6: 4xx, 5xx, 6xx). */
  private counted(req: SipRequest, res: SipResponse, detail?: string): void {
    this.stats.responseSent(req.method, res.status);
    if (res.status < 400) return;
    let event: string | undefined;
    try {
      event = req.headers.get('event') ?? undefined;
    } catch {
      event = undefined;
    }
    const via = req.topVia;
    this.refusalLog.refused({
      callId: req.callId,
      method: req.method,
      event,
      status: res.status,
      reason: detail ?? res.reason,
      remote: `${via.params.get('received') ?? bareHost(via.host)}:${via.params.get('rport') || via.port || 5060}`,
    });
  }

  private failRequest(tx: ServerTx, req: SipRequest, err: unknown): void {
    this.log.error({ err, callId: req.callId, method: req.method }, 'request handler failed');
    const res = createResponse(req, 500, 'Server Internal Error');
    this.respondVia(tx, res, req);
  }

  /** Transaction key (RFC 3261 §17.2.3): branch + sent-by + method, or the RFC 2543 tuple. */
  private serverKey(req: SipRequest, via: Via, method: string): string {
    const sentBy = `${via.host}:${via.port ?? ''}`;
    if (via.branch && via.branch.startsWith(BRANCH_COOKIE)) return `${via.branch}|${sentBy}|${method}`;
    const cseq = req.cseq;
    return `2543|${req.callId}|${cseq.seq}|${req.fromTag ?? ''}|${req.uri}|${sentBy}|${method}`;
  }

  /** RFC 3261 §18.2.1 `received` and RFC 3581 §4 `rport` on the top Via. */
  private stampVia(req: SipRequest, source: Source): void {
    const via = req.topVia;
    let changed = false;
    if (bareHost(via.host) !== source.address) {
      via.params.set('received', source.address);
      changed = true;
    }
    if (via.params.has('rport') && via.params.get('rport') === '' && source.port > 0) {
      via.params.set('rport', String(source.port));
      if (!via.params.has('received')) via.params.set('received', source.address);
      changed = true;
    }
    if (changed) req.setTopVia(via);
  }

  private sendStateless(req: SipRequest, source: Source, status: number, reason?: string, detail?: string, retryAfter?: string): void {
    const res = createResponse(req, status, reason);
    if (retryAfter !== undefined) res.headers.append('retry-after', retryAfter);
    res.headers.append('server', this.options.userAgent);
    this.responseSender(req, source)(res.toBuffer());
    this.counted(req, res, detail);
  }

  /** Every UDP datagram we send leaves here (the capture tap sees it). */
  /** @internal */
  sendUdp(udp: UdpListener, data: Buffer, host: string, port: number): void {
    this.tap?.message(data, 'udp', { address: udp.address, port: udp.boundPort }, { address: host, port });
    udp.send(data, host, port);
  }

  /** Every message we write on a connection leaves here; false when the flow is closed. */
  private sendFlow(flow: Flow, data: Buffer): boolean {
    if (flow.closed) return false;
    this.tap?.message(
      data,
      flow.proto,
      { address: flow.localAddress, port: flow.localPort },
      { address: flow.remoteAddress, port: flow.remotePort },
    );
    return flow.send(data);
  }

  /** How responses to this request travel (RFC 3261 §18.2.2, RFC 3581 §4). */
  private responseSender(req: SipRequest, source: Source): Send {
    const via = req.topVia;
    if (source.flow) {
      const host = via.params.get('received') ?? bareHost(via.host);
      return this.flowSender(source.flow, host, via.port ?? 5060, req.callId);
    }
    const udp = this.udpFor(source.localAddress, source.localPort);
    const rport = via.params.get('rport');
    const host = via.params.get('received') ?? bareHost(via.host);
    const port = rport ? Number(rport) : (via.port ?? 5060);
    return udpSender(this, udp, host, port);
  }

  // The senders are made in functions of their own so that a closure kept by a server
  // transaction (for Timer J, 32 s on UDP) holds a few strings, not the parsed request.
  private flowSender(flow: Flow, host: string, port: number, callId: string | undefined): Send {
    return (data) => {
      if (this.sendFlow(flow, data)) return;
      if (flow.proto !== 'tcp' && flow.proto !== 'tls') return; // a closed WebSocket cannot be reopened by the server
      this.sendStream(flow.proto, host, port, data).catch((err) =>
        this.log.info({ err, callId }, 'response lost: connection closed and reconnect failed'),
      );
    };
  }

  private udpFor(address?: string, port?: number): UdpListener | undefined {
    return this.udp.find((u) => u.boundPort === port && (u.address === address || isWildcard(u.address))) ?? this.udp[0];
  }

  /** Send on an open TCP/TLS connection to host:port, or a new one (`serverName`: see TcpTransport.connect). */
  private async sendStream(proto: StreamProtocol, host: string, port: number, data: Buffer, serverName?: string): Promise<Flow> {
    const t = (proto === 'tcp' ? this.tcp : this.tls)[0];
    if (!t) throw new Error(`no ${proto.toUpperCase()} listener configured`);
    const conn = await t.connect(host, port, serverName);
    this.sendFlow(conn, data);
    return conn;
  }

  // ───────────────────────────── send ─────────────────────────────

  private tagPool = randomBytes(0);
  private tagOffset = 0;

  /** A To tag; random bytes come from a pooled CSPRNG draw (one syscall per 680 tags). */
  newTag(): string {
    if (this.tagOffset + 6 > this.tagPool.length) {
      this.tagPool = randomBytes(4096);
      this.tagOffset = 0;
    }
    this.tagOffset += 6;
    return this.tagPool.toString('hex', this.tagOffset - 6, this.tagOffset);
  }

  newBranch(): string {
    return this.branchPrefix + (this.branchCounter++).toString(36);
  }

  /**
   * The sent-by we advertise for a protocol (Via, and the Contact built on it): the first
   * listener of that kind, by its `advertise` when it has one. A wildcard listener has no
   * address of its own: toward `peer` (an IP address) it is the local address that routes
   * there, once known (a peer that sent us something is; requests we send look it up first).
   */
  sentBy(proto: Protocol, peer?: string): { host: string; port: number } {
    const sb = this.sentByCache.get(proto);
    if (sb) return sb;
    const wildcard = this.wildcardPort.get(proto);
    if (wildcard) return { host: uriHost(this.localToward(peer) ?? fallbackAddress(wildcard.v6)), port: wildcard.port };
    const l = this.listeners().find((x) => x.proto === proto) ?? this.listeners()[0];
    if (!l) throw new Error('no listener');
    const advertise = this.options.listen.find((x) => x.proto === l.proto)?.advertise;
    if (advertise || !isWildcard(l.address)) {
      const fixed = advertise
        ? { host: uriHost(advertise.host), port: advertise.port ?? l.port }
        : { host: uriHost(l.address), port: l.port };
      if (l.port !== 0) this.sentByCache.set(proto, fixed);
      return fixed;
    }
    if (l.port !== 0 && l.proto === proto) this.wildcardPort.set(proto, { port: l.port, v6: l.address === '::' });
    return { host: uriHost(this.localToward(peer) ?? fallbackAddress(l.address === '::')), port: l.port };
  }

  private localToward(peer: string | undefined): string | undefined {
    if (peer === undefined) return undefined;
    const p = bareHost(peer);
    return net.isIP(p) !== 0 ? this.localAddresses.toward(p) : undefined;
  }

  /** sentBy of listeners with an address of their own (or advertised): the same for every peer. */
  private readonly sentByCache = new Map<Protocol, { host: string; port: number }>();
  /** Protocols whose first listener is a wildcard without `advertise`, and its port. */
  private readonly wildcardPort = new Map<Protocol, { port: number; v6: boolean }>();

  /**
   * Resolves once sentBy(proto, peer) knows our address toward `peer`; undefined when it does
   * already (also: the listener has an address of its own, or `peer` is not an IP address).
   * For a Contact built to last, e.g. a dialog's, toward a peer not heard from since a restart.
   */
  addressReady(proto: Protocol, peer: string): Promise<unknown> | undefined {
    const p = bareHost(peer);
    return net.isIP(p) === 0 ? undefined : this.localAddressReady(proto, p);
  }

  /** Resolves once sentBy(proto, address) knows our address toward it; undefined when it already does. */
  private localAddressReady(proto: Protocol, address: string): Promise<unknown> | undefined {
    if (this.sentByCache.has(proto)) return undefined;
    if (!this.wildcardPort.has(proto)) {
      this.sentBy(proto);
      if (!this.wildcardPort.has(proto)) return undefined;
    }
    const local = this.localAddresses.resolve(address);
    return typeof local === 'string' ? undefined : local;
  }

  /**
   * Send a request in a new non-INVITE client transaction and resolve with its outcome.
   * The stack adds the top Via (with a fresh branch and rport) for the transport chosen.
   */
  sendRequest(req: OutgoingRequest, target: Target): Promise<ClientOutcome> {
    const branch = this.newBranch();
    let flow: Flow | undefined = target.flowId ? this.findFlow(target.flowId) : undefined;
    if (flow?.closed) flow = undefined;
    const proto: Protocol = flow ? flow.proto : target.proto;
    const key = branch + '|' + req.method;
    const host = bareHost(target.host);
    if (flow) {
      // A connection we opened has an ephemeral local port: Via names the listener (RFC 3261 §18.1.1).
      // A WebSocket flow names its own listener, unless that has no address of its own or advertises another.
      const own =
        flow.proto !== 'tcp' &&
        flow.proto !== 'tls' &&
        !isWildcard(flow.localAddress) &&
        !this.options.listen.some((x) => x.proto === flow!.proto && x.advertise);
      const sb = own ? { host: uriHost(flow.localAddress), port: flow.localPort } : this.sentBy(proto, flow.remoteAddress);
      return this.startClient(key, req.serialize(topVia(proto, sb, branch)), flow, proto, host, target.port);
    }
    // A WebSocket client is reachable only on its own connection (RFC 7118 §5): no lookup.
    if (proto === 'ws' || proto === 'wss') {
      return Promise.resolve({ kind: 'transport-error', error: new Error(`no open ${proto} flow to the subscriber`) });
    }
    // (Not an async function: the usual NOTIFY, to an IP literal, costs one promise, not two.)
    if (net.isIP(host) !== 0) return this.sendTo(req, branch, proto, host, target.port, undefined);
    // Host names come from peers (Contact, Record-Route): lookups in progress are bounded, so
    // that unresolvable names cannot queue without end in libuv's four-thread pool.
    const maxLookups = this.options.maxDnsLookups ?? 0;
    if (maxLookups > 0 && this.dnsLookups >= maxLookups) {
      this.refusals.refuse('max_dns_lookups', { host, lookups: this.dnsLookups, max: maxLookups });
      return Promise.resolve({
        kind: 'transport-error',
        error: new Error(`${maxLookups} DNS lookups in progress (max_dns_lookups): ${host} not looked up`),
      });
    }
    this.dnsLookups++;
    return lookup(host).then(
      (a) => {
        this.dnsLookups--;
        return this.sendTo(req, branch, proto, a.address, target.port, host);
      },
      (err: Error): ClientOutcome => {
        this.dnsLookups--;
        return { kind: 'transport-error', error: err };
      },
    );
  }

  /**
   * A new transaction to an address. RFC 3261 §18.1.1 (udp_mtu / udp_mtu_try_proto): a request
   * too large for UDP goes over a congestion-controlled transport with the top Via changed to
   * it, and over UDP after all if that connection is refused (a reset: nothing listens there),
   * as the section says it SHOULD.
   */
  private sendTo(
    req: OutgoingRequest,
    branch: string,
    proto: Protocol,
    address: string,
    port: number,
    serverName: string | undefined,
  ): Promise<ClientOutcome> {
    // Via names our address toward the target: on a wildcard listener, looked up first.
    const ready = this.localAddressReady(proto, address);
    if (ready) return ready.then(() => this.sendTo(req, branch, proto, address, port, serverName));
    const key = branch + '|' + req.method;
    const data = req.serialize(topVia(proto, this.sentBy(proto, address), branch));
    const mtu = this.options.udpMtu ?? 0;
    const stream = this.options.udpMtuTryProto ?? 'udp';
    if (proto !== 'udp' || mtu === 0 || data.length <= mtu || stream === 'udp')
      return this.startClient(key, data, undefined, proto, address, port, serverName);
    const streamBranch = this.newBranch();
    const streamData = req.serialize(topVia(stream, this.sentBy(stream, address), streamBranch));
    return this.startClient(streamBranch + '|' + req.method, streamData, undefined, stream, address, port, serverName).then((o) => {
      if (o.kind !== 'transport-error' || (o.error as NodeJS.ErrnoException).code !== 'ECONNREFUSED') return o;
      this.log.debug(
        { address, port, bytes: streamData.length },
        `${stream.toUpperCase()} refused for a request too large for UDP: sent over UDP`,
      );
      return this.startClient(key, data, undefined, 'udp', address, port);
    });
  }

  private startClient(
    key: string,
    data: Buffer,
    flow: Flow | undefined,
    proto: Protocol,
    host: string,
    port: number,
    serverName?: string,
  ): Promise<ClientOutcome> {
    return new Promise<ClientOutcome>((resolve) => {
      let tx: NonInviteClientTransaction;
      let send: Send;
      if (flow) {
        const f = flow;
        send = (d) => {
          if (!this.sendFlow(f, d)) tx.transportError(new Error(`flow ${f.id} closed`));
        };
      } else if (proto === 'udp') {
        const udp = this.udpFor();
        if (!udp) {
          resolve({ kind: 'transport-error', error: new Error('no UDP listener configured') });
          return;
        }
        send = (d) => {
          try {
            this.sendUdp(udp, d, host, port);
          } catch (err) {
            tx.transportError(err as Error); // RFC 3261 §8.1.3.1: a transport error is a 503 to the TU
          }
        };
      } else if (proto === 'tcp' || proto === 'tls') {
        let conn: Promise<Flow> | undefined;
        send = (d) => {
          conn = conn
            ? conn.then((c) => {
                if (!this.sendFlow(c, d)) throw new Error('connection closed');
                return c;
              })
            : this.sendStream(proto, host, port, d, serverName);
          conn.catch((err: Error) => tx.transportError(err));
        };
      } else {
        resolve({ kind: 'transport-error', error: new Error(`no route for ${proto} without an open flow`) });
        return;
      }
      tx = new NonInviteClientTransaction(key, data, send, isReliable(proto), this.timers, resolve, this.clientTerminated);
      this.clientTx.set(key, tx);
      tx.start();
    });
  }
}

function udpSender(stack: SipStack, udp: UdpListener | undefined, host: string, port: number): Send {
  return (data) => {
    if (udp) stack.sendUdp(udp, data, host, port);
  };
}

export type { ClientOutcome };
