/**
 * SIP over WebSocket (RFC 7118) on uWebSockets.js, plain (ws) or over TLS (wss): the `sip`
 * subprotocol, one SIP message per WebSocket message, responses and in-dialog requests back on
 * the same connection (the only way to reach a browser client).
 */
import uWS from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import type { Flow, Logger, Source } from './flows.js';
import type { TlsSettings } from './tcp.js';
import { listenExclusive, hostPort } from './listen.js';

export type WsProtocol = 'ws' | 'wss';

const BOOT = randomBytes(3).toString('hex');
let nextId = 1;

interface WsData {
  flow?: WsFlow;
}

class WsFlow implements Flow {
  readonly id: string;
  closed = false;
  constructor(
    readonly proto: WsProtocol,
    private readonly ws: uWS.WebSocket<WsData>,
    readonly remoteAddress: string,
    readonly remotePort: number,
    readonly localAddress: string,
    readonly localPort: number,
  ) {
    this.id = `${proto}-${BOOT}-${nextId++}`;
  }
  send(data: Buffer): boolean {
    if (this.closed) return false;
    // RFC 7118 §5: UTF-8 SIP messages go in text frames.
    // uWS returns 2 when the message was dropped (backpressure limit): report it as a failure.
    return this.ws.send(data, false) !== 2;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ws.end(1001, 'closing');
  }
}

export class WsListener {
  private token: uWS.us_listen_socket | undefined;
  boundPort = 0;
  private readonly flows = new Set<WsFlow>();

  constructor(
    readonly proto: WsProtocol,
    readonly address: string,
    readonly port: number,
    private readonly maxMessageSize: number,
    private readonly hooks: {
      onMessage: (data: Buffer, source: Source) => void;
      onOpen: (flow: Flow) => void;
      onClose: (flow: Flow) => void;
      /** May a new connection be accepted (max_connections)? A refused upgrade gets HTTP 503. */
      admit?: (remote: string) => boolean;
      /** A refused upgrade or an oversized frame: counted and logged (rate-limited) by the stack. */
      dropped?: (reason: 'ws-no-sip-subprotocol' | 'ws-frame-too-large', fields: object, msg: string) => void;
    },
    private readonly log: Logger,
    private readonly tls?: TlsSettings,
  ) {
    if (proto === 'wss' && !(tls?.certificateFile && tls.privateKeyFile))
      throw new Error('a WSS listener needs a certificate and a private key');
  }

  async listen(): Promise<void> {
    // uWebSockets.js reads the PEM files itself (once, here); the configuration checked them at start.
    const app =
      this.proto === 'wss'
        ? uWS.SSLApp({ cert_file_name: this.tls!.certificateFile!, key_file_name: this.tls!.privateKeyFile! })
        : uWS.App();
    app.ws<WsData>('/*', {
      maxPayloadLength: this.maxMessageSize,
      idleTimeout: 120,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        // RFC 7118 §4.1: the client offers the "sip" subprotocol; refuse anything else.
        // RFC 6455 §4.2.2: the answer must be one of the offered tokens, exactly as offered.
        const protocols = req
          .getHeader('sec-websocket-protocol')
          .split(',')
          .map((p) => p.trim());
        if (!protocols.includes('sip')) {
          this.hooks.dropped?.(
            'ws-no-sip-subprotocol',
            { remote: Buffer.from(res.getRemoteAddressAsText()).toString(), offered: protocols.join(',').slice(0, 100) },
            `${this.proto} upgrade refused: no "sip" subprotocol`,
          );
          res.writeStatus('400 Bad Request').end('WebSocket subprotocol "sip" required (RFC 7118)\n');
          return;
        }
        if (this.hooks.admit?.(Buffer.from(res.getRemoteAddressAsText()).toString()) === false) {
          res.writeStatus('503 Service Unavailable').writeHeader('Retry-After', '5').end('too many connections\n');
          return;
        }
        res.upgrade<WsData>({}, req.getHeader('sec-websocket-key'), 'sip', req.getHeader('sec-websocket-extensions'), context);
      },
      open: (ws) => {
        const remote = Buffer.from(ws.getRemoteAddressAsText()).toString();
        const flow = new WsFlow(this.proto, ws, remote, 0, this.address, this.boundPort);
        ws.getUserData().flow = flow;
        this.flows.add(flow);
        this.hooks.onOpen(flow);
      },
      message: (ws, message) => {
        const flow = ws.getUserData().flow;
        if (!flow) return;
        // The ArrayBuffer is only valid during this call: copy it.
        const data = Buffer.from(Buffer.from(message));
        this.hooks.onMessage(data, {
          proto: this.proto,
          address: flow.remoteAddress,
          port: flow.remotePort,
          localAddress: this.address,
          localPort: this.boundPort,
          flow,
        });
      },
      close: (ws, code, message) => {
        const flow = ws.getUserData().flow;
        if (!flow) return;
        // uWebSockets.js closes a connection whose frame is over maxPayloadLength itself, reported
        // as 1006 with this text (not the 1009 of RFC 6455 §7.4.1 on the wire).
        if (code === 1006 && Buffer.from(message).toString() === 'Received too big message')
          this.hooks.dropped?.(
            'ws-frame-too-large',
            { remote: flow.remoteAddress, max: this.maxMessageSize },
            `${this.proto} connection closed: a frame over max_message_size`,
          );
        flow.closed = true;
        this.flows.delete(flow);
        this.hooks.onClose(flow);
      },
    });
    const token = await listenExclusive(app, 'listen', this.address, this.port, `${this.proto}:${hostPort(this.address, this.port)}`);
    this.token = token;
    this.boundPort = uWS.us_socket_local_port(token);
    this.log.debug({ proto: this.proto, port: this.boundPort }, 'WebSocket listener bound');
  }

  async close(): Promise<void> {
    for (const f of this.flows) f.close();
    if (this.token) uWS.us_listen_socket_close(this.token);
    this.token = undefined;
  }
}
