/**
 * JSON-RPC client for tests: POST /RPC on the node's admin port.
 */
export async function rpcRaw(port: number, body: string): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`http://127.0.0.1:${port}/RPC`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

let nextId = 1;
export async function rpc(port: number, method: string, params?: unknown[]): Promise<{ result?: unknown; error?: { code: number; message: string } }> {
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
