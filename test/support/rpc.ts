/**
 * JSON-RPC client for tests: POST /RPC on the node's admin port.
 */
import { EVENT_WAIT_MS } from './wait.js';

export async function rpcRaw(port: number, body: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}/RPC`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

let nextId = 1;
export async function rpc(
  port: number,
  method: string,
  params?: unknown[],
): Promise<{ result?: unknown; error?: { code: number; message: string } }> {
  const { json } = await rpcRaw(port, JSON.stringify({ jsonrpc: '2.0', id: nextId++, method, ...(params ? { params } : {}) }));
  return json as { result?: unknown; error?: { code: number; message: string } };
}

/** The result of a call that must succeed (a JSON-RPC error fails the caller with the call in the message). */
export async function rpcResult<T>(port: number, method: string, params: unknown[]): Promise<T> {
  const r = await rpc(port, method, params);
  if (r.error !== undefined) throw new Error(`${method} ${JSON.stringify(params)}: ${JSON.stringify(r.error)}`);
  return r.result as T;
}

/** One entry of presence.presentity_show. */
export interface ListedPublication {
  etag: string;
  expires: number;
  content_type: string;
  body: string;
}

/** One entry of presence.watcher_list. */
export interface ListedWatcher {
  watcher_uri: string;
  status: string;
  contact: string;
  transport: string;
  call_id: string;
}

export const presentityShow = (port: number, presentity: string, event = 'presence'): Promise<ListedPublication[]> =>
  rpcResult(port, 'presence.presentity_show', [presentity, event]);

export const watcherList = (port: number, presentity: string, event = 'presence'): Promise<ListedWatcher[]> =>
  rpcResult(port, 'presence.watcher_list', [presentity, event]);

/** A gauge or counter of GET /metrics on the node's admin port (the sum over its label sets). */
export async function metric(port: number, name: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (m && m[1] === name) {
      sum += Number(m[3]);
      found = true;
    }
  }
  if (!found) throw new Error(`no ${name} in /metrics`);
  return sum;
}

/** Wait (polling every 20 ms, up to EVENT_WAIT_MS) until a metric satisfies `ok`; resolves with its value. */
export async function untilMetric(port: number, name: string, ok: (v: number) => boolean, what: string): Promise<number> {
  const end = Date.now() + EVENT_WAIT_MS;
  for (;;) {
    const v = await metric(port, name);
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (${name} = ${v})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
