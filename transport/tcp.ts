/**
 * TCP and TLS listener and connection pool (RFC 3261 §18; TLS framed as TCP, §18 and §26.2):
 * framing by Content-Length, responses on the connection the request came in on, outgoing
 * requests reuse an open connection to the same address, and connections are closed when idle
 * or when they hold half a message too long.
 */
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { Flow, Logger, Source } from './flows.js';
import { StreamFramer, type SipParseError } from './parser.js';

/** The stream transports this pool serves. */
export type StreamProtocol = 'tcp' | 'tls';

/** Certificate material for TLS (and WSS) listeners and for the TLS connections we open. */
export interface TlsSettings {
  /** PEM certificate chain and private key of our listeners (absent: no TLS listener possible). */
  cert?: Buffer;
  key?: Buffer;
  /** Their file names, for uWebSockets.js, which reads the files itself. */
  certificateFile?: string;
  privateKeyFile?: string;
  /** CAs that verify the peers we connect to (absent: Node's default CAs). */
  ca?: Buffer;
  /** Verify the server certificate of a connection we open (RFC 3261 §26.2.1). */
  rejectUnauthorized: boolean;
}

export interface TcpLimits {
  maxMessageSize: number;
  /** Close a connection with no traffic for this long (ms). */
  idleTimeout: number;
  /** Close a connection that has held an incomplete message for this long (ms). */
  partialTimeout: number;
  /** May a peer's new connection (remote ip:port) be kept? Refused ones are closed at once (max_connections). */
  admit?: (remote: string) => boolean;
  /** Input dropped with the connection (counted for /metrics; the warning is logged here). */
  dropped?: (reason: 'unframeable' | 'partial-timeout') => void;
}

let nextConnectionId = 1;
/** Flow ids are unique across restarts: a stored flow id never names a new connection. */
const BOOT = randomBytes(3).toString('hex');

export class TcpConnection implements Flow {
  readonly id: string;
  readonly framer: StreamFramer;
  lastActivity = Date.now();
  /** When the framer first held an incomplete message, 0 when it holds none. */
  partialSince = 0;
  closed = false;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;

  constructor(
    readonly socket: net.Socket,
    limits: TcpLimits,
    readonly proto: StreamProtocol,
  ) {
    this.id = `${proto}-${BOOT}-${nextConnectionId++}`;
    this.framer = new StreamFramer(limits);
    this.remoteAddress = normaliseAddress(socket.remoteAddress ?? '');
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = normaliseAddress(socket.localAddress ?? '');
    this.localPort = socket.localPort ?? 0;
  }

  send(data: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    this.lastActivity = Date.now();
    this.socket.write(data);
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }
}

function normaliseAddress(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

/** One listener of a stream transport and its connections: plain TCP, or TLS (with the certificate of `tlsSettings`). */
export class TcpTransport {
  private server: net.Server | undefined;
  /** TCP or TLS, for logs. */
  private readonly label: string;
  boundPort = 0;
  /** Every open connection, by remote ip:port (one per remote endpoint is reused). */
  private readonly byRemote = new Map<string, TcpConnection>();
  readonly byId = new Map<string, TcpConnection>();
  private readonly pendingConnects = new Map<string, Promise<TcpConnection>>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly proto: StreamProtocol,
    readonly address: string,
    readonly port: number,
    private readonly limits: TcpLimits,
    private readonly onMessage: (data: Buffer, source: Source) => void,
    private readonly log: Logger,
    private readonly tlsSettings?: TlsSettings,
  ) {
    this.label = proto.toUpperCase();
    if (proto === 'tls' && !tlsSettings?.cert) throw new Error('a TLS listener needs a certificate and a private key');
  }

  async listen(): Promise<void> {
    const t = this.tlsSettings;
    const server =
      this.proto === 'tls' && t
        ? // Adopted once the handshake is done; a failed handshake is only logged (tlsClientError).
          tls.createServer({ cert: t.cert, key: t.key, noDelay: true, handshakeTimeout: this.limits.partialTimeout }, (socket) =>
            this.inbound(socket),
          )
        : net.createServer({ noDelay: true }, (socket) => this.inbound(socket));
    if (server instanceof tls.Server) {
      server.on('tlsClientError', (err, socket) =>
        this.log.debug({ err, remote: `${normaliseAddress(socket.remoteAddress ?? '')}:${socket.remotePort}` }, 'TLS handshake failed'),
      );
    }
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.port, host: this.address, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (server.address() as net.AddressInfo).port;
    server.on('error', (err) => this.log.error({ err }, `${this.label} server error`));
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, this.limits.partialTimeout));
    this.sweeper.unref();
  }

  get connectionCount(): number {
    return this.byId.size;
  }

  private inbound(socket: net.Socket): void {
    if (this.limits.admit?.(`${normaliseAddress(socket.remoteAddress ?? '')}:${socket.remotePort}`) === false) socket.destroy();
    else this.adopt(socket);
  }

  private adopt(socket: net.Socket): TcpConnection {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const conn = new TcpConnection(socket, this.limits, this.proto);
    this.byId.set(conn.id, conn);
    this.byRemote.set(`${conn.remoteAddress}:${conn.remotePort}`, conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('error', (err) => this.log.debug({ err, flow: conn.id }, `${this.label} connection error`));
    socket.on('close', () => this.forget(conn));
    return conn;
  }

  private forget(conn: TcpConnection): void {
    conn.closed = true;
    this.byId.delete(conn.id);
    const key = `${conn.remoteAddress}:${conn.remotePort}`;
    if (this.byRemote.get(key) === conn) this.byRemote.delete(key);
  }

  private onData(conn: TcpConnection, chunk: Buffer): void {
    conn.lastActivity = Date.now();
    let framed: ReturnType<StreamFramer['push']>;
    try {
      framed = conn.framer.push(chunk);
    } catch (err) {
      // A stream we cannot frame cannot be resynchronised: drop the connection (§18.3).
      this.log.warn(
        { flow: conn.id, remote: `${conn.remoteAddress}:${conn.remotePort}`, reason: (err as SipParseError).message },
        `closing ${this.label} connection: unframeable input`,
      );
      this.limits.dropped?.('unframeable');
      conn.close();
      return;
    }
    if (framed.ping) conn.send(Buffer.from('\r\n')); // RFC 5626 §4.4.1 pong
    conn.partialSince = conn.framer.pending > 0 ? conn.partialSince || Date.now() : 0;
    for (const raw of framed.messages) {
      this.onMessage(raw, {
        proto: this.proto,
        address: conn.remoteAddress,
        port: conn.remotePort,
        localAddress: conn.localAddress,
        localPort: conn.localPort,
        flow: conn,
      });
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const conn of this.byId.values()) {
      if (conn.partialSince !== 0 && now - conn.partialSince > this.limits.partialTimeout) {
        this.log.warn({ flow: conn.id, pending: conn.framer.pending }, `closing ${this.label} connection: incomplete message timed out`);
        this.limits.dropped?.('partial-timeout');
        conn.close();
      } else if (now - conn.lastActivity > this.limits.idleTimeout) {
        this.log.debug({ flow: conn.id }, `closing idle ${this.label} connection`);
        conn.close();
      }
    }
  }

  /**
   * An open connection to host:port (an IP address), reusing one when it exists. Over TLS the
   * server certificate is checked against `serverName` (the host name the address was looked up
   * for, RFC 5922 §7.2) or else the address itself, unless verification is off.
   */
  async connect(host: string, port: number, serverName?: string): Promise<TcpConnection> {
    const key = `${host}:${port}`;
    const existing = this.byRemote.get(key);
    if (existing && !existing.closed) return existing;
    const pending = this.pendingConnects.get(key);
    if (pending) return pending;
    const p = new Promise<TcpConnection>((resolve, reject) => {
      let socket: net.Socket;
      let ready: string;
      if (this.proto === 'tls') {
        const t = this.tlsSettings;
        const options: tls.ConnectionOptions = { host, port, rejectUnauthorized: t?.rejectUnauthorized ?? true };
        if (t?.ca) options.ca = t.ca;
        // SNI carries host names only (RFC 6066 §3).
        if (serverName !== undefined && net.isIP(serverName) === 0) options.servername = serverName;
        socket = tls.connect(options);
        ready = 'secureConnect';
      } else {
        socket = net.connect({ host, port, noDelay: true });
        ready = 'connect';
      }
      const timer = setTimeout(() => socket.destroy(new Error(`${this.label} connect to ${key} timed out`)), 10_000);
      socket.once(ready, () => {
        clearTimeout(timer);
        resolve(this.adopt(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    this.pendingConnects.set(key, p);
    try {
      return await p;
    } finally {
      this.pendingConnects.delete(key);
    }
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    for (const conn of this.byId.values()) conn.close();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
