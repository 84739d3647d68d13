/**
 * TCP listener and connection pool (RFC 3261 §18): framing by Content-Length, responses on
 * the connection the request came in on, outgoing requests reuse an open connection to the
 * same address, and connections are closed when idle or when they hold half a message too
 * long.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Flow, Logger, Source } from './flows.js';
import { StreamFramer, SipParseError } from './parser.js';

export interface TcpLimits {
  maxMessageSize: number;
  /** Close a connection with no traffic for this long (ms). */
  idleTimeout: number;
  /** Close a connection that has held an incomplete message for this long (ms). */
  partialTimeout: number;
}

let nextConnectionId = 1;
/** Flow ids are unique across restarts: a stored flow id never names a new connection. */
const BOOT = randomBytes(3).toString('hex');

export class TcpConnection implements Flow {
  readonly id: string;
  readonly proto = 'tcp' as const;
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
  ) {
    this.id = `tcp-${BOOT}-${nextConnectionId++}`;
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

export class TcpTransport {
  private server: net.Server | undefined;
  boundPort = 0;
  /** Every open connection, by remote ip:port (one per remote endpoint is reused). */
  private readonly byRemote = new Map<string, TcpConnection>();
  readonly byId = new Map<string, TcpConnection>();
  private readonly pendingConnects = new Map<string, Promise<TcpConnection>>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly address: string,
    readonly port: number,
    private readonly limits: TcpLimits,
    private readonly onMessage: (data: Buffer, source: Source) => void,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    const server = net.createServer({ noDelay: true }, (socket) => this.adopt(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.port, host: this.address, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (server.address() as net.AddressInfo).port;
    server.on('error', (err) => this.log.error({ err }, 'TCP server error'));
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, this.limits.partialTimeout));
    this.sweeper.unref();
  }

  get connectionCount(): number {
    return this.byId.size;
  }

  private adopt(socket: net.Socket): TcpConnection {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    const conn = new TcpConnection(socket, this.limits);
    this.byId.set(conn.id, conn);
    this.byRemote.set(`${conn.remoteAddress}:${conn.remotePort}`, conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('error', (err) => this.log.debug({ err, flow: conn.id }, 'TCP connection error'));
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
    let framed;
    try {
      framed = conn.framer.push(chunk);
    } catch (err) {
      // A stream we cannot frame cannot be resynchronised: drop the connection (§18.3).
      this.log.warn(
        { flow: conn.id, remote: `${conn.remoteAddress}:${conn.remotePort}`, reason: (err as SipParseError).message },
        'closing TCP connection: unframeable input',
      );
      conn.close();
      return;
    }
    if (framed.ping) conn.send(Buffer.from('\r\n')); // RFC 5626 §4.4.1 pong
    conn.partialSince = conn.framer.pending > 0 ? conn.partialSince || Date.now() : 0;
    for (const raw of framed.messages) {
      this.onMessage(raw, {
        proto: 'tcp',
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
        this.log.warn({ flow: conn.id, pending: conn.framer.pending }, 'closing TCP connection: incomplete message timed out');
        conn.close();
      } else if (now - conn.lastActivity > this.limits.idleTimeout) {
        this.log.debug({ flow: conn.id }, 'closing idle TCP connection');
        conn.close();
      }
    }
  }

  /** An open connection to host:port, reusing one when it exists. */
  async connect(host: string, port: number): Promise<TcpConnection> {
    const key = `${host}:${port}`;
    const existing = this.byRemote.get(key);
    if (existing && !existing.closed) return existing;
    const pending = this.pendingConnects.get(key);
    if (pending) return pending;
    const p = new Promise<TcpConnection>((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      const timer = setTimeout(() => socket.destroy(new Error(`TCP connect to ${key} timed out`)), 10_000);
      socket.once('connect', () => {
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
