/**
 * SIP over WebSocket (RFC 7118) clients for tests: JsSIP (a real SIP library) running in
 * Node on top of the `ws` package.
 *
 * JsSIP's WebSocketInterface builds `new WebSocket(url, 'sip')` from the global scope, which
 * Node 20 does not provide: this module installs `RecordingWebSocket` (the `ws` class, plus a
 * log of every frame received) as `globalThis.WebSocket`. For wss:// the TLS options (the test
 * CA) are registered by URL before JsSIP opens it, since JsSIP passes only the URL and "sip". Each client connects to its own URL
 * (`ws://host:port/<id>`, the node serves every path), so the test can find the socket
 * of a client to inspect its frames or to kill it.
 *
 * JsSIP 3.13.8 has a Subscriber but no PUBLISH API: `publish()` sends one through JsSIP's own
 * transaction layer (SIPMessage.OutgoingRequest + RequestSender, the way its Options and
 * Message classes do), so the request still goes out on JsSIP's WebSocket transport.
 */
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import JsSIP from 'jssip';
import type { UA, UAConfiguration } from 'jssip/lib/UA.js';
import type { Subscriber } from 'jssip/lib/Subscriber.js';
import type { IncomingResponse } from 'jssip/lib/SIPMessage.js';
import { parseMessage } from '../../transport/parser.js';
import { SipRequest, type SipResponse } from '../../transport/message.js';

const require = createRequire(import.meta.url);

/** The part of the `ws` package's WebSocket these tests use (`ws` ships no types; @types/ws is not installed). */
export interface WsSocket {
  readonly protocol: string;
  readonly readyState: number;
  send(data: string | Buffer, opts?: { binary?: boolean }): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): this;
  on(event: 'open', listener: () => void): this;
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  once(event: 'open', listener: () => void): this;
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
}
/** TLS options of the `ws` client for wss:// URLs. */
export interface WsClientOptions {
  ca?: Buffer;
  rejectUnauthorized?: boolean;
}
export type WsConstructor = new (url: string, protocols?: string | string[], options?: WsClientOptions) => WsSocket;

/** The `ws` package's WebSocket class. */
export const WebSocket = require('ws') as WsConstructor;
export const WS_OPEN = 1;
export const WS_CLOSED = 3;

/** One WebSocket message a client received. */
export interface Frame {
  text: string;
  /** false for a text frame (RFC 7118 §5.1: the node sends UTF-8 SIP messages as text). */
  binary: boolean;
  at: number;
  message: SipRequest | SipResponse | undefined;
}

const sockets = new Map<string, RecordingWebSocket>();
/** TLS options for a URL JsSIP is about to open. */
const socketOptions = new Map<string, WsClientOptions>();

/** The `ws` WebSocket, recording each frame it receives. */
export class RecordingWebSocket extends WebSocket {
  readonly frames: Frame[] = [];
  readonly closed: Promise<number>;
  private readonly waiters = new Set<(f: Frame) => void>();

  constructor(
    readonly address: string,
    protocols?: string | string[],
  ) {
    super(address, protocols, socketOptions.get(address));
    sockets.set(address, this);
    this.on('message', (data, binary) => {
      // Text frames arrive as a Buffer; binary ones per binaryType, which JsSIP sets to 'arraybuffer'.
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      let message: SipRequest | SipResponse | undefined;
      try {
        message = parseMessage(buf, true).message;
      } catch {
        message = undefined;
      }
      const f: Frame = { text: buf.toString('utf8'), binary, at: Date.now(), message };
      this.frames.push(f);
      for (const w of [...this.waiters]) w(f);
    });
    this.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.once('close', (code) => resolve(code)));
  }

  onFrame(fn: (f: Frame) => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }
}
(globalThis as { WebSocket?: unknown }).WebSocket = RecordingWebSocket;

export interface PublishResult {
  status: number;
  reason: string;
  etag: string | undefined;
  expires: number | undefined;
}

export interface PublishOptions {
  body?: string;
  etag?: string;
  expires?: number;
  event?: string;
  contentType?: string;
}

interface OutgoingRequestCtor {
  new (method: string, ruri: unknown, ua: UA, params: Record<string, unknown> | null, extraHeaders: string[], body?: string): unknown;
}
interface RequestSenderCtor {
  new (
    ua: UA,
    request: unknown,
    handlers: { onRequestTimeout: () => void; onTransportError: () => void; onReceiveResponse: (r: IncomingResponse) => void },
  ): { send(): void };
}
const SIPMessage = require('jssip/lib/SIPMessage.js') as { OutgoingRequest: OutgoingRequestCtor };
const RequestSender = require('jssip/lib/RequestSender.js') as RequestSenderCtor;

/** A JsSIP UA connected over WebSocket to a node. */
export class JsSipClient {
  private readonly consumed = new Set<Frame>();

  private constructor(
    readonly ua: UA,
    readonly socket: RecordingWebSocket,
    readonly aor: string,
  ) {}

  /**
   * Start a JsSIP UA (no REGISTER) on ws://127.0.0.1:port, or wss:// when `tls` is given, and
   * wait until its WebSocket is open.
   */
  static async connect(port: number, aor: string, timeoutMs = 5000, tls?: WsClientOptions): Promise<JsSipClient> {
    const url = `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/${randomBytes(4).toString('hex')}`;
    if (tls) socketOptions.set(url, tls);
    const config: UAConfiguration = {
      sockets: [new JsSIP.WebSocketInterface(url)],
      uri: aor,
      register: false,
      // No reconnection attempts within a test: a socket the test kills stays dead.
      connection_recovery_min_interval: 600,
      connection_recovery_max_interval: 600,
    };
    const ua = new JsSIP.UA(config);
    const connected = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`JsSIP UA did not connect to ${url} in ${timeoutMs} ms`)), timeoutMs);
      ua.once('connected', () => {
        clearTimeout(t);
        resolve();
      });
    });
    ua.start();
    try {
      await connected;
    } catch (err) {
      ua.stop();
      throw err;
    }
    const socket = sockets.get(url);
    if (!socket) {
      ua.stop();
      throw new Error(`JsSIP did not open its WebSocket through globalThis.WebSocket (${url})`);
    }
    return new JsSipClient(ua, socket, aor);
  }

  get frames(): Frame[] {
    return this.socket.frames;
  }

  /** SIP requests received over the WebSocket. */
  requests(method: string): SipRequest[] {
    return this.frames.map((f) => f.message).filter((m): m is SipRequest => m instanceof SipRequest && m.method === method);
  }

  /** The next received request (each handed out once) matching method and pred, as the node sent it. */
  nextRequest(method: string, pred: (r: SipRequest) => boolean = () => true, timeoutMs = 5000): Promise<SipRequest> {
    const match = (f: Frame): boolean =>
      f.message instanceof SipRequest && f.message.method === method && pred(f.message) && !this.consumed.has(f);
    const seen = this.frames.find(match);
    if (seen) {
      this.consumed.add(seen);
      return Promise.resolve(seen.message as SipRequest);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        off();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for a ${method} over the WebSocket`));
      }, timeoutMs);
      const off = this.socket.onFrame((f) => {
        if (!match(f)) return;
        clearTimeout(t);
        off();
        this.consumed.add(f);
        resolve(f.message as SipRequest);
      });
    });
  }

  /** A JsSIP Subscriber (not yet sent: call subscribe()). */
  subscriber(target: string, event: string, accept: string, expires: number): Subscriber {
    return this.ua.subscribe(target, event, accept, { expires, contentType: accept });
  }

  /** PUBLISH (RFC 3903) through JsSIP's transaction layer; resolves with the final response. */
  publish(target: string, o: PublishOptions, timeoutMs = 5000): Promise<PublishResult> {
    const headers = [`Event: ${o.event ?? 'presence'}`];
    if (o.expires !== undefined) headers.push(`Expires: ${o.expires}`);
    if (o.etag !== undefined) headers.push(`SIP-If-Match: ${o.etag}`);
    if (o.body !== undefined) headers.push(`Content-Type: ${o.contentType ?? 'application/pidf+xml'}`);
    // normalizeTarget() exists on JsSIP's UA (its own classes use it) but is missing from its typings.
    const ruri = (this.ua as unknown as { normalizeTarget(t: string): unknown }).normalizeTarget(target);
    if (!ruri) return Promise.reject(new TypeError(`JsSIP cannot parse the target ${target}`));
    const request = new SIPMessage.OutgoingRequest('PUBLISH', ruri, this.ua, null, headers, o.body);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no final response to PUBLISH in ${timeoutMs} ms`)), timeoutMs);
      new RequestSender(this.ua, request, {
        onRequestTimeout: () => {
          clearTimeout(t);
          reject(new Error('PUBLISH: JsSIP request timeout'));
        },
        onTransportError: () => {
          clearTimeout(t);
          reject(new Error('PUBLISH: JsSIP transport error'));
        },
        onReceiveResponse: (r) => {
          if (r.status_code < 200) return;
          clearTimeout(t);
          const expires = r.getHeader('expires');
          resolve({
            status: r.status_code,
            reason: r.reason_phrase,
            etag: r.getHeader('sip-etag') || undefined,
            expires: expires ? Number(expires) : undefined,
          });
        },
      }).send();
    });
  }

  /** Stop the UA: JsSIP closes its WebSocket with a close frame. Resolves once it is closed. */
  async stop(): Promise<void> {
    this.ua.stop();
    if (this.socket.readyState !== WS_CLOSED) await this.socket.closed;
  }

  /**
   * Drop the connection the way a crashed browser tab does: the TCP connection is destroyed
   * with no WebSocket close frame and no un-SUBSCRIBE. The UA is stopped so that it does not
   * reconnect.
   */
  async kill(): Promise<void> {
    this.socket.terminate();
    this.ua.stop();
    if (this.socket.readyState !== WS_CLOSED) await this.socket.closed;
  }
}

/** Record the events a JsSIP Subscriber emits, to wait for them in order. */
export class SubscriberEvents {
  readonly log: Array<{ name: string; args: unknown[] }> = [];
  private readonly waiters = new Set<() => void>();
  private readonly consumed = new Set<number>();

  constructor(sub: Subscriber) {
    for (const name of ['pending', 'accepted', 'active', 'terminated', 'notify'] as const) {
      (sub as unknown as { on(n: string, l: (...a: unknown[]) => void): void }).on(name, (...args: unknown[]) => {
        this.log.push({ name, args });
        for (const w of [...this.waiters]) w();
      });
    }
  }

  names(): string[] {
    return this.log.map((e) => e.name);
  }

  /** The first not yet consumed event `name` whose arguments satisfy pred. */
  next(name: string, pred: (args: unknown[]) => boolean = () => true, timeoutMs = 5000): Promise<unknown[]> {
    const find = (): unknown[] | undefined => {
      const i = this.log.findIndex((e, idx) => e.name === name && !this.consumed.has(idx) && pred(e.args));
      if (i === -1) return undefined;
      this.consumed.add(i);
      return this.log[i]!.args;
    };
    const now = find();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for the Subscriber event "${name}"; got: ${this.names().join(', ')}`));
      }, timeoutMs);
      const check = (): void => {
        const a = find();
        if (!a) return;
        clearTimeout(t);
        this.waiters.delete(check);
        resolve(a);
      };
      this.waiters.add(check);
    });
  }

  /** The next `notify` event whose body satisfies pred: [isFinal, request, body, contentType]. */
  async nextNotify(
    pred: (body: string) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<{ isFinal: boolean; body: string; contentType: string; subscriptionState: string }> {
    const [isFinal, request, body, contentType] = await this.next('notify', (a) => pred(String(a[2] ?? '')), timeoutMs);
    return {
      isFinal: Boolean(isFinal),
      body: String(body ?? ''),
      contentType: String(contentType ?? ''),
      subscriptionState: (request as { getHeader(n: string): string }).getHeader('subscription-state') ?? '',
    };
  }
}
