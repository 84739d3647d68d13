/**
 * The admin port (node:http): JSON-RPC 2.0 at POST /RPC in Kamailio `jsonrpcs` shape, and
 * Prometheus text at GET /metrics. A bad call gets a JSON-RPC error object, never a crash; a
 * body over MAX_BODY gets a 413 (read to its end first when it is not much larger, so that the
 * client, still sending, reads the answer). node:http, not uWebSockets.js: see core/xcap/server.ts.
 * With rpc_auth every request needs credentials first (401 with the challenge), the XCAP
 * server's Digest code or Basic (core/http-auth.ts); /metrics only if rpc_metrics_open is 0.
 * Every refusal, at the HTTP level or a JSON-RPC error, is counted and logged.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { RpcError, PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INTERNAL_ERROR } from './errors.js';
import type { RpcMethod } from './methods.js';
import type { ConsoleAssets } from '../console/assets.js';
import { listenHttp, requestTarget, refuseLargeBeforeContinue, answerClientErrors } from '../http.js';
import { BasicAuth, DigestAuth, type HttpAuthenticator } from '../http-auth.js';

const MAX_BODY = 1 << 20;
/** Bodies up to this size over MAX_BODY are read and dropped before the 413; past it the connection is closed at once. */
const DRAIN_LIMIT = 16 * MAX_BODY;

interface RpcResponse {
  jsonrpc: '2.0';
  id: unknown;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

export interface RpcServerDeps {
  address: string;
  port: number;
  methods: Map<string, RpcMethod>;
  metrics: () => Promise<{ contentType: string; body: string }>;
  log: Logger;
  /** Where calls are counted by `method outcome`, for /metrics (RPC calls by method and outcome). */
  calls: Map<string, number>;
  /** JSON-RPC error answers by code, for /metrics. */
  errorCodes?: Map<string, number>;
  /** The web console's files (web_console = 1), served under /console/. */
  console?: () => Promise<ConsoleAssets>;
  /** rpc_auth: the credentials every request on the port needs (none when absent). */
  auth?: RpcAuthSettings;
}

export interface RpcAuthSettings {
  scheme: 'digest' | 'basic';
  realm: string;
  /** user name → password. */
  users: Record<string, string>;
  /** GET /metrics without credentials (rpc_metrics_open = 1). */
  metricsOpen: boolean;
}

export class RpcServer {
  private server: http.Server | undefined;
  private console: ConsoleAssets | undefined;
  private readonly auth: HttpAuthenticator | undefined;

  constructor(private readonly deps: RpcServerDeps) {
    const a = deps.auth;
    if (a) this.auth = a.scheme === 'digest' ? new DigestAuth(a.realm, a.users) : new BasicAuth(a.realm, a.users);
  }

  async start(): Promise<number> {
    this.console = this.deps.console ? await this.deps.console() : undefined;
    const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 60_000 }, (req, res) => this.onRequest(req, res));
    refuseLargeBeforeContinue(
      server,
      MAX_BODY,
      (req, res) => this.onRequest(req, res),
      (req, status, reason) => {
        this.count('http', `refused-${status}`);
        this.logRefusal({ status, reason, method: req.method, target: (req.url ?? '').slice(0, 200) }, 'RPC port: HTTP request refused');
      },
    );
    answerClientErrors(server, (status, reason) => {
      this.count('http', `refused-${status}`);
      this.logRefusal({ status, reason }, 'RPC port: HTTP request refused by the parser');
    });
    this.server = server;
    return listenHttp(server, 'rpc_listen', this.deps.address, this.deps.port);
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.close();
    server.closeAllConnections();
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const target = requestTarget(req);
    const path = target?.path;
    let user: string | undefined;
    if (this.auth && !(path === '/metrics' && this.deps.auth!.metricsOpen)) {
      user = this.authenticate(this.auth, req, res);
      if (user === undefined) return;
    }
    if (path === '/RPC' && req.method === 'POST') this.onRpc(req, res, user);
    else if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) this.onMetrics(req, res);
    else if (this.console && path?.startsWith('/console') && (req.method === 'GET' || req.method === 'HEAD'))
      this.onConsole(req, path, this.console, res);
    else if (path === '/RPC') this.refuse(req, res, 405, 'use POST with a JSON-RPC 2.0 body', [['Allow', 'POST']]);
    else if (path === undefined) this.refuse(req, res, 400, 'the request-target must be a path or an http URL (RFC 9112 §3.2)', [], true);
    else this.refuse(req, res, 404, `presenced admin port: POST /RPC, GET /metrics${this.console ? ', GET /console/' : ''}`);
  }

  /** The user the request's credentials are of; undefined when it got its 401 (counted and logged). */
  private authenticate(auth: HttpAuthenticator, req: IncomingMessage, res: ServerResponse): string | undefined {
    const header = req.headers.authorization;
    const result = header ? auth.verify(header, req.method ?? '', req.url ?? '') : undefined;
    if (result?.ok) return result.xui;
    // A body still on its way is drained by node:http (keep-alive) unless it is large or unframed by length.
    const close = Number(req.headers['content-length'] ?? 0) > MAX_BODY || req.headers['transfer-encoding'] !== undefined;
    // Why (unknown user, wrong password, replay) goes to the log only: the answer tells a guesser nothing.
    this.refuse(
      req,
      res,
      401,
      result?.reason ?? 'authentication required',
      [['WWW-Authenticate', auth.challenge(result !== undefined && !result.ok && result.stale)]],
      close,
      'authentication required',
    );
    return undefined;
  }

  /**
   * An HTTP-level refusal: answered with `status` and the reason as text, counted as method
   * `http`, outcome `refused-STATUS` (presenced_rpc_calls_total), and logged with the reason.
   */
  private refuse(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    reason: string,
    headers: Array<[string, string]> = [],
    close = false,
    /** The answer's text when it must say less than the log line. */
    answered = reason,
  ): void {
    this.count('http', `refused-${status}`);
    this.logRefusal(
      {
        status,
        reason,
        method: req.method,
        target: (req.url ?? '').slice(0, 200),
        remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
      },
      'RPC port: HTTP request refused',
    );
    answer(res, status, 'text/plain', `${answered}\n`, headers, close);
  }

  /**
   * The console is a page and a script of our own that talk to /RPC and /metrics on this same
   * port (same origin, same access as the RPC itself); the CSP lets the page load nothing else.
   */
  private onConsole(req: IncomingMessage, path: string, assets: ConsoleAssets, res: ServerResponse): void {
    const csp = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'";
    if (path === '/console') answer(res, 301, undefined, '', [['Location', '/console/']]);
    else if (path === '/console/')
      answer(res, 200, 'text/html; charset=utf-8', assets.page, [
        ['Content-Security-Policy', csp],
        ['Cache-Control', 'no-cache'],
      ]);
    else if (path === '/console/app.js') answer(res, 200, 'text/javascript; charset=utf-8', assets.script, [['Cache-Control', 'no-cache']]);
    else this.refuse(req, res, 404, 'no such console file');
  }

  private onMetrics(req: IncomingMessage, res: ServerResponse): void {
    this.deps
      .metrics()
      .then((m) => answer(res, 200, m.contentType, m.body))
      .catch((err) => {
        this.deps.log.error({ err }, 'metrics failed');
        this.refuse(req, res, 500, `metrics failed: ${(err as Error).message}`);
      });
  }

  private onRpc(req: IncomingMessage, res: ServerResponse, user: string | undefined): void {
    const tooLarge = `JSON-RPC body over ${MAX_BODY} bytes\n`;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > DRAIN_LIMIT) {
      this.tooLarge(req, res, tooLarge, true);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.byteLength;
      if (size > DRAIN_LIMIT) {
        done = true;
        req.pause();
        this.tooLarge(req, res, tooLarge, true);
      } else if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (size > MAX_BODY) {
        this.tooLarge(req, res, tooLarge, false);
        return;
      }
      this.dispatch(Buffer.concat(chunks, size).toString('utf8'), user).then((out) => {
        if (out === undefined) answer(res, 204, undefined, '');
        else answer(res, 200, 'application/json', JSON.stringify(out));
      });
    });
  }

  /** One request or a batch (JSON-RPC 2.0 §6); undefined when only notifications were sent. */
  async dispatch(text: string, user?: string): Promise<RpcResponse | RpcResponse[] | undefined> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return this.refused(null, new RpcError(PARSE_ERROR, `Parse error: ${(err as Error).message}`), 'invalid', user);
    }
    if (Array.isArray(parsed)) {
      if (parsed.length === 0) return this.refused(null, new RpcError(INVALID_REQUEST, 'Invalid Request: empty batch'), 'invalid', user);
      const out = (await Promise.all(parsed.map((r) => this.call(r, user)))).filter((r): r is RpcResponse => r !== undefined);
      return out.length > 0 ? out : undefined;
    }
    return this.call(parsed, user);
  }

  private async call(request: unknown, user: string | undefined): Promise<RpcResponse | undefined> {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      return this.refused(null, new RpcError(INVALID_REQUEST, 'Invalid Request: not an object'), 'invalid', user);
    }
    const r = request as Record<string, unknown>;
    const id = 'id' in r ? r.id : undefined;
    const isNotification = !('id' in r);
    if (r.jsonrpc !== '2.0' || typeof r.method !== 'string') {
      return this.refused(
        id ?? null,
        new RpcError(INVALID_REQUEST, 'Invalid Request: needs jsonrpc "2.0" and a method string'),
        'invalid',
        user,
      );
    }
    if (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number') {
      return this.refused(null, new RpcError(INVALID_REQUEST, 'Invalid Request: id must be a string, number or null'), 'invalid', user);
    }
    const method = this.deps.methods.get(r.method);
    const label = method ? r.method : 'unknown';
    let result: unknown;
    try {
      if (!method) throw new RpcError(METHOD_NOT_FOUND, `Method not found: ${r.method}`);
      let params: unknown[];
      if (r.params === undefined) params = [];
      else if (Array.isArray(r.params)) params = r.params;
      else throw new RpcError(-32602, 'Invalid params: params must be an array (positional, as Kamailio jsonrpcs)');
      result = await method(params);
    } catch (err) {
      if (!(err instanceof RpcError)) {
        this.deps.log.error({ err, method: r.method }, 'RPC method failed');
        err = new RpcError(INTERNAL_ERROR, `Internal error: ${(err as Error).message}`);
      }
      const refusal = this.refused(id ?? null, err as RpcError, label, user, r.method);
      return isNotification ? undefined : refusal;
    }
    this.count(label, 'ok');
    this.deps.log.info({ method: r.method, ...(user !== undefined ? { user } : {}) }, 'RPC call');
    return isNotification ? undefined : { jsonrpc: '2.0', id, result: result ?? null };
  }

  /**
   * A JSON-RPC error answer: counted by method (`invalid` for a request that names none, `unknown`
   * for a method that does not exist) with outcome `error` (presenced_rpc_calls_total) and by
   * code (presenced_rpc_errors_total), and logged as `RPC call refused` with code and reason.
   */
  private refused(id: unknown, err: RpcError, label: string, user: string | undefined, method?: string): RpcResponse {
    this.count(label, 'error');
    const codes = this.deps.errorCodes;
    if (codes) codes.set(String(err.code), (codes.get(String(err.code)) ?? 0) + 1);
    this.logRefusal(
      {
        method: (method ?? label).slice(0, 100),
        code: err.code,
        reason: err.message.slice(0, 300),
        ...(user !== undefined ? { user } : {}),
      },
      'RPC call refused',
    );
    return errorResponse(id, err);
  }

  /** 413 for a JSON-RPC body over MAX_BODY: counted (method `http`) and logged like the parser's refusals. */
  private tooLarge(req: IncomingMessage, res: ServerResponse, text: string, close: boolean): void {
    this.refuse(req, res, 413, text.trim(), [], close);
  }

  private refusalsLogged = { windowStart: 0, n: 0 };

  /** A refusal is worth an info line, 50 a second at most (as the SIP and XCAP refusals): a flood cannot fill the disk. */
  private logRefusal(fields: object, msg: string): void {
    const now = Date.now();
    if (now - this.refusalsLogged.windowStart >= 1000) this.refusalsLogged = { windowStart: now, n: 0 };
    if (this.refusalsLogged.n++ < 50) this.deps.log.info(fields, msg);
  }

  private count(method: string, outcome: string): void {
    const key = `${method} ${outcome}`;
    this.deps.calls.set(key, (this.deps.calls.get(key) ?? 0) + 1);
  }
}

/** Write a whole response unless the client has gone; `close` ends the connection after it. */
function answer(
  res: ServerResponse,
  status: number,
  contentType: string | undefined,
  body: string,
  headers: Array<[string, string]> = [],
  close = false,
): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = status;
  if (contentType) res.setHeader('Content-Type', contentType);
  for (const [k, v] of headers) res.setHeader(k, v);
  if (close) res.setHeader('Connection', 'close');
  if (status !== 204) res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(status === 204 ? undefined : body);
}

function errorResponse(id: unknown, err: RpcError): RpcResponse {
  return { jsonrpc: '2.0', id, error: { code: err.code, message: err.message, ...(err.data !== undefined ? { data: err.data } : {}) } };
}
