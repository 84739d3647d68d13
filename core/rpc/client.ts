/**
 * The client side of the admin port, for `presenced rpc` (one node or a cluster): one JSON-RPC
 * POST, and when the port asks for credentials (401, rpc_auth) one retry answering its challenge
 * (Digest or Basic, core/http-auth.ts).
 */
import { answerChallenge } from '../http-auth.js';

export interface RpcCredentials {
  user: string;
  password: string;
}

export type RpcReply = { result?: unknown; error?: { code: number; message: string } };

/** Thrown for an answer that is not a JSON-RPC one (401, 404, ...): the message says what the port said. */
export class RpcHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'RpcHttpError';
  }
}

export async function postRpc(
  url: string,
  call: { method: string; params: unknown[] },
  credentials?: RpcCredentials,
  signal?: AbortSignal,
): Promise<RpcReply> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: call.method, params: call.params });
  const send = (authorization?: string): Promise<Response> =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
      body,
      ...(signal ? { signal } : {}),
    });
  let res = await send();
  if (res.status === 401) {
    const challenge = res.headers.get('www-authenticate') ?? '';
    await res.arrayBuffer();
    if (!credentials)
      throw new RpcHttpError(
        401,
        `${url} asks for credentials (${challenge.split(/[ ,]/, 1)[0]}): give --user, and --password-file or --config`,
      );
    const target = new URL(url);
    const authorization = answerChallenge(challenge, credentials, 'POST', target.pathname + target.search);
    if (!authorization) throw new RpcHttpError(401, `${url} asks for an authentication scheme presenced rpc does not speak: ${challenge}`);
    res = await send(authorization);
    if (res.status === 401) {
      await res.arrayBuffer();
      throw new RpcHttpError(401, `${url} refused the credentials of "${credentials.user}"`);
    }
  }
  const text = await res.text();
  if (!(res.headers.get('content-type') ?? '').includes('application/json'))
    throw new RpcHttpError(res.status, `${url} answered ${res.status}: ${text.trim().slice(0, 200)}`);
  return JSON.parse(text) as RpcReply;
}
