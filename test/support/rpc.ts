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
