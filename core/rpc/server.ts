/**
 * The admin port (uWebSockets.js): JSON-RPC 2.0 at POST /RPC in Kamailio `jsonrpcs` shape,
 * and Prometheus text at GET /metrics. A bad call gets a JSON-RPC error object, never a crash.
 */
import uWS from 'uWebSockets.js';
import type { Logger } from '../log.js';
import { RpcError, PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INTERNAL_ERROR } from './errors.js';
import type { RpcMethod } from './methods.js';
import { listenExclusive } from '../../transport/listen.js';

const MAX_BODY = 1 << 20;

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
}

export class RpcServer {
  private token: uWS.us_listen_socket | undefined;

  constructor(private readonly deps: RpcServerDeps) {}

  async start(): Promise<number> {
    const app = uWS.App();
    app.post('/RPC', (res, req) => this.onRpc(res, req));
    app.get('/metrics', (res) => {
      let aborted = false;
      res.onAborted(() => (aborted = true));
      this.deps
        .metrics()
        .then((m) => {
          if (!aborted) res.cork(() => res.writeStatus('200 OK').writeHeader('Content-Type', m.contentType).end(m.body));
        })
        .catch((err) => {
          this.deps.log.error({ err }, 'metrics failed');
          if (!aborted) res.cork(() => res.writeStatus('500 Internal Server Error').end());
        });
    });
    app.any('/RPC', (res) => {
      res.writeStatus('405 Method Not Allowed').writeHeader('Allow', 'POST').end('use POST with a JSON-RPC 2.0 body\n');
    });
    app.any('/*', (res) => {
      res.writeStatus('404 Not Found').end('presenced admin port: POST /RPC, GET /metrics\n');
    });
    this.token = await listenExclusive(app, 'rpc_listen', this.deps.address, this.deps.port);
    return uWS.us_socket_local_port(this.token);
  }

  async stop(): Promise<void> {
    if (this.token) uWS.us_listen_socket_close(this.token);
    this.token = undefined;
  }

  private onRpc(res: uWS.HttpResponse, _req: uWS.HttpRequest): void {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      size += chunk.byteLength;
      if (size > MAX_BODY) {
        if (!aborted) {
          aborted = true;
          res.cork(() => res.writeStatus('413 Payload Too Large').end('JSON-RPC body over 1 MiB\n', true));
        }
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (!isLast || aborted) return;
      this.dispatch(Buffer.concat(chunks).toString('utf8')).then((out) => {
        if (aborted) return;
        res.cork(() => {
          if (out === undefined) res.writeStatus('204 No Content').end();
          else res.writeStatus('200 OK').writeHeader('Content-Type', 'application/json').end(JSON.stringify(out));
        });
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
      return isNotification ? undefined : errorResponse(id ?? null, err as RpcError);
    }
    this.deps.log.info({ method: r.method }, 'RPC call');
    return isNotification ? undefined : { jsonrpc: '2.0', id, result: result ?? null };
  }
}

function errorResponse(id: unknown, err: RpcError): RpcResponse {
  return { jsonrpc: '2.0', id, error: { code: err.code, message: err.message, ...(err.data !== undefined ? { data: err.data } : {}) } };
}
