/**
 * The admin port (node:http): JSON-RPC 2.0 at POST /RPC in Kamailio `jsonrpcs` shape, and
 * Prometheus text at GET /metrics. A bad call gets a JSON-RPC error object, never a crash; a
 * body over MAX_BODY gets a 413 (read to its end first when it is not much larger, so that the
 * client, still sending, reads the answer). node:http, not uWebSockets.js: see core/xcap/server.ts.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { RpcError, PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INTERNAL_ERROR } from './errors.js';
import type { RpcMethod } from './methods.js';
import type { ConsoleAssets } from '../console/assets.js';
import { listenHttp, requestTarget, refuseLargeBeforeContinue, answerClientErrors } from '../http.js';

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
  /** The web console's files (web_console = 1), served under /console/. */
  console?: () => Promise<ConsoleAssets>;
}

export class RpcServer {
  private server: http.Server | undefined;
  private console: ConsoleAssets | undefined;

  constructor(private readonly deps: RpcServerDeps) {}

  async start(): Promise<number> {
    this.console = this.deps.console ? await this.deps.console() : undefined;
    const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 60_000 }, (req, res) => this.onRequest(req, res));
    refuseLargeBeforeContinue(server, MAX_BODY, (req, res) => this.onRequest(req, res));
    answerClientErrors(server, (status, reason) => {
      this.count('http', `refused-${status}`);
      this.deps.log.info({ status, reason }, 'RPC port: HTTP request refused by the parser');
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
    if (path === '/RPC' && req.method === 'POST') this.onRpc(req, res);
    else if (path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) this.onMetrics(res);
    else if (this.console && path?.startsWith('/console') && (req.method === 'GET' || req.method === 'HEAD'))
      this.onConsole(path, this.console, res);
    else if (path === '/RPC') answer(res, 405, 'text/plain', 'use POST with a JSON-RPC 2.0 body\n', [['Allow', 'POST']]);
    else if (path === undefined)
      answer(res, 400, 'text/plain', 'the request-target must be a path or an http URL (RFC 9112 §3.2)\n', [], true);
    else answer(res, 404, 'text/plain', 'presenced admin port: POST /RPC, GET /metrics\n');
  }

  /**
   * The console is a page and a script of our own that talk to /RPC and /metrics on this same
   * port (same origin, same access as the RPC itself); the CSP lets the page load nothing else.
   */
  private onConsole(path: string, assets: ConsoleAssets, res: ServerResponse): void {
    const csp = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'";
    if (path === '/console') answer(res, 301, undefined, '', [['Location', '/console/']]);
    else if (path === '/console/')
      answer(res, 200, 'text/html; charset=utf-8', assets.page, [
        ['Content-Security-Policy', csp],
        ['Cache-Control', 'no-cache'],
      ]);
    else if (path === '/console/app.js') answer(res, 200, 'text/javascript; charset=utf-8', assets.script, [['Cache-Control', 'no-cache']]);
    else answer(res, 404, 'text/plain', 'no such console file\n');
  }

  private onMetrics(res: ServerResponse): void {
    this.deps
      .metrics()
      .then((m) => answer(res, 200, m.contentType, m.body))
      .catch((err) => {
        this.deps.log.error({ err }, 'metrics failed');
        answer(res, 500, 'text/plain', '');
      });
  }

  private onRpc(req: IncomingMessage, res: ServerResponse): void {
    const tooLarge = `JSON-RPC body over ${MAX_BODY} bytes\n`;
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > DRAIN_LIMIT) {
      this.tooLarge(res, tooLarge, true);
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
        this.tooLarge(res, tooLarge, true);
      } else if (size <= MAX_BODY) chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (size > MAX_BODY) {
        this.tooLarge(res, tooLarge, false);
        return;
      }
      this.dispatch(Buffer.concat(chunks, size).toString('utf8')).then((out) => {
        if (out === undefined) answer(res, 204, undefined, '');
        else answer(res, 200, 'application/json', JSON.stringify(out));
      });
    });
  }

  /** One request or a batch (JSON-RPC 2.0 §6); undefined when only notifications were sent. */
  async dispatch(text: string): Promise<RpcResponse | RpcResponse[] | undefined> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return errorResponse(null, new RpcError(PARSE_ERROR, `Parse error: ${(err as Error).message}`));
    }
    if (Array.isArray(parsed)) {
      if (parsed.length === 0) return errorResponse(null, new RpcError(INVALID_REQUEST, 'Invalid Request: empty batch'));
      const out = (await Promise.all(parsed.map((r) => this.call(r)))).filter((r): r is RpcResponse => r !== undefined);
      return out.length > 0 ? out : undefined;
    }
    return this.call(parsed);
  }

  private async call(request: unknown): Promise<RpcResponse | undefined> {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      return errorResponse(null, new RpcError(INVALID_REQUEST, 'Invalid Request: not an object'));
    }
    const r = request as Record<string, unknown>;
    const id = 'id' in r ? r.id : undefined;
    const isNotification = !('id' in r);
    if (r.jsonrpc !== '2.0' || typeof r.method !== 'string') {
      return errorResponse(id ?? null, new RpcError(INVALID_REQUEST, 'Invalid Request: needs jsonrpc "2.0" and a method string'));
    }
    if (id !== undefined && id !== null && typeof id !== 'string' && typeof id !== 'number') {
      return errorResponse(null, new RpcError(INVALID_REQUEST, 'Invalid Request: id must be a string, number or null'));
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
      this.count(label, 'error');
      this.deps.log.info(
        { method: r.method.slice(0, 100), code: (err as RpcError).code, reason: (err as RpcError).message.slice(0, 300) },
        'RPC call refused',
      );
      return isNotification ? undefined : errorResponse(id ?? null, err as RpcError);
    }
    this.count(label, 'ok');
    this.deps.log.info({ method: r.method }, 'RPC call');
    return isNotification ? undefined : { jsonrpc: '2.0', id, result: result ?? null };
  }

  /** 413 for a JSON-RPC body over MAX_BODY: counted (method `http`) and logged like the parser's refusals. */
  private tooLarge(res: ServerResponse, text: string, close: boolean): void {
    this.count('http', 'refused-413');
    this.deps.log.info({ status: 413, reason: text.trim() }, 'RPC port: HTTP request refused');
    answer(res, 413, 'text/plain', text, [], close);
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
