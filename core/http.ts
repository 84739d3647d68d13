/**
 * What the XCAP server and the admin port share of HTTP/1.1 (node:http underneath): binding
 * the port as a configuration key, and reading the request-target in either form an origin
 * server must accept.
 */
import type http from 'node:http';
import { ListenError, hostPort } from '../transport/listen.js';

/**
 * Listen on address:port; resolves with the bound port. node:http never sets SO_REUSEPORT, so
 * a port in use is an error (EADDRINUSE), raised as a ListenError naming `setting`.
 */
export function listenHttp(server: http.Server, setting: string, address: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => reject(new ListenError(setting, hostPort(address, port), err.code, err.message));
    server.once('error', failed);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', failed);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export interface RequestTarget {
  /** The path, still percent-encoded, as sent. */
  path: string;
  /** The query without its "?" ('' when none). */
  query: string;
  /** The authority of an absolute-form target, which takes the place of Host (RFC 9112 §3.2.2). */
  authority?: string;
}

/**
 * The request-target in origin-form (`/path?query`) or absolute-form (`http://host/path?query`,
 * which RFC 9112 §3.2.2 says a server MUST accept); undefined for anything else (asterisk or
 * authority form, another scheme), which gets a 400.
 */
export function requestTarget(req: http.IncomingMessage): RequestTarget | undefined {
  const url = req.url ?? '';
  let authority: string | undefined;
  let rest = url;
  if (!url.startsWith('/')) {
    const m = /^https?:\/\/([^/?#]*)/i.exec(url);
    if (!m) return undefined;
    authority = m[1]!;
    rest = url.slice(m[0].length);
    if (!rest.startsWith('/')) rest = '/' + rest;
  }
  const q = rest.indexOf('?');
  const out: RequestTarget = q === -1 ? { path: rest, query: '' } : { path: rest.slice(0, q), query: rest.slice(q + 1) };
  if (authority !== undefined) out.authority = authority;
  return out;
}

/**
 * `Expect: 100-continue` (RFC 9110 §10.1.1): a body declared larger than `maxBody` is refused
 * with 413 before the client sends it, instead of node:http's automatic 100 Continue; other
 * requests get their 100 and go to `handler`.
 */
export function refuseLargeBeforeContinue(
  server: http.Server,
  maxBody: number,
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  refused?: (req: http.IncomingMessage, status: number, reason: string) => void,
): void {
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (Number(req.headers['content-length'] ?? 0) > maxBody) {
      const body = `the body is larger than ${maxBody} bytes\n`;
      refused?.(req, 413, body.trim());
      res.writeHead(413, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
      res.end(body);
      return;
    }
    res.writeContinue();
    handler(req, res);
  });
}

/**
 * Requests node:http's parser refuses before any handler sees them (two Content-Lengths, CL with
 * TE, a bad request line, headers too large, a request too slow): answered as node:http does by
 * default (400, 431 or 408, then the connection closed, RFC 9112 §6.3), and reported to `refused`
 * so they are counted and logged like every other refusal.
 */
export function answerClientErrors(server: http.Server, refused: (status: number, reason: string) => void): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (err.code !== 'ECONNRESET' && socket.writable) {
      const text = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      refused(status, err.code ?? err.message);
    }
    socket.destroy();
  });
}
