/**
 * A small XCAP client for the tests (plain fetch), with RFC 7616 Digest, and sample documents.
 */
import { createHash, randomBytes } from 'node:crypto';

export const NS = {
  cp: 'urn:ietf:params:xml:ns:common-policy',
  pr: 'urn:ietf:params:xml:ns:pres-rules',
  wr: 'urn:presenced:params:xml:ns:winfo-rules',
  rl: 'urn:ietf:params:xml:ns:resource-lists',
  rls: 'urn:ietf:params:xml:ns:rls-services',
  pidf: 'urn:ietf:params:xml:ns:pidf',
  err: 'urn:ietf:params:xml:ns:xcap-error',
  caps: 'urn:ietf:params:xml:ns:xcap-caps',
};

export const CT = {
  presRules: 'application/auth-policy+xml',
  resourceLists: 'application/resource-lists+xml',
  rlsServices: 'application/rls-services+xml',
  pidf: 'application/pidf+xml',
  el: 'application/xcap-el+xml',
  att: 'application/xcap-att+xml',
  error: 'application/xcap-error+xml',
};

export interface XcapReply {
  status: number;
  headers: Headers;
  text: string;
  etag: string | null;
}

export interface XcapRequest {
  body?: string | Buffer;
  contentType?: string;
  headers?: Record<string, string>;
  /** Digest credentials: username and password (answers the 401 challenge, then retries). */
  digest?: { username: string; password: string };
}

export class Xcap {
  constructor(
    readonly port: number,
    readonly root = '/xcap-root',
  ) {}

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${this.root}${path}`;
  }

  /** `path` is below the XCAP root and sent as written (the caller percent-encodes). */
  async request(method: string, path: string, opts: XcapRequest = {}): Promise<XcapReply> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.contentType) headers['Content-Type'] = opts.contentType;
    const send = async (h: Record<string, string>): Promise<Response> => fetch(this.url(path), { method, headers: h, body: opts.body });
    let res = await send(headers);
    if (res.status === 401 && opts.digest) {
      await res.arrayBuffer();
      const target = new URL(this.url(path));
      const authorization = digestAuthorization(
        res.headers.get('www-authenticate') ?? '',
        method,
        target.pathname + target.search,
        opts.digest,
      );
      res = await send({ ...headers, Authorization: authorization });
    }
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, etag: res.headers.get('etag') };
  }

  get(path: string, opts?: XcapRequest): Promise<XcapReply> {
    return this.request('GET', path, opts);
  }
  put(path: string, body: string | Buffer, contentType: string, opts: XcapRequest = {}): Promise<XcapReply> {
    return this.request('PUT', path, { ...opts, body, contentType });
  }
  delete(path: string, opts?: XcapRequest): Promise<XcapReply> {
    return this.request('DELETE', path, opts);
  }
}

/** The tag of an xcap-error body, e.g. "not-well-formed". */
export function errorElement(reply: XcapReply): string | undefined {
  const m = new RegExp(`<xcap-error xmlns="${NS.err}">\\s*<([a-z0-9-]+)`).exec(reply.text);
  return m?.[1];
}

function md5(s: string): string {
  return createHash('md5').update(s).digest('hex');
}

export function parseChallenge(header: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of header.replace(/^Digest\s+/i, '').matchAll(/([a-z]+)=(?:"([^"]*)"|([^,\s]*))/gi))
    out[m[1]!.toLowerCase()] = m[2] ?? m[3]!;
  return out;
}

export function digestAuthorization(
  challenge: string,
  method: string,
  uri: string,
  cred: { username: string; password: string },
  nc = 1,
): string {
  const c = parseChallenge(challenge);
  const cnonce = randomBytes(8).toString('hex');
  const ncHex = nc.toString(16).padStart(8, '0');
  const ha1 = md5(`${cred.username}:${c.realm}:${cred.password}`);
  const ha2 = md5(`${method}:${uri}`);
  const response = md5(`${ha1}:${c.nonce}:${ncHex}:${cnonce}:auth:${ha2}`);
  return (
    `Digest username="${cred.username}", realm="${c.realm}", nonce="${c.nonce}", uri="${uri}", ` +
    `algorithm=MD5, qop=auth, nc=${ncHex}, cnonce="${cnonce}", response="${response}"`
  );
}

export function presRules(rules: Array<{ id: string; handling?: string; identity?: string }>): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<cr:ruleset xmlns="${NS.pr}" xmlns:cr="${NS.cp}">` +
    rules
      .map(
        (r) =>
          `<cr:rule id="${r.id}"><cr:conditions>${r.identity ? `<cr:identity><cr:one id="${r.identity}"/></cr:identity>` : ''}</cr:conditions>` +
          `<cr:actions><sub-handling>${r.handling ?? 'allow'}</sub-handling></cr:actions><cr:transformations/></cr:rule>`,
      )
      .join('') +
    '</cr:ruleset>\n'
  );
}

export function resourceLists(lists: Record<string, string[]>): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="${NS.rl}">` +
    Object.entries(lists)
      .map(([name, uris]) => `<list name="${name}">${uris.map((u) => `<entry uri="${u}"/>`).join('')}</list>`)
      .join('') +
    '</resource-lists>\n'
  );
}

/** Percent-encode a node selector for the request path (keeps "/" between steps). */
export function sel(selector: string): string {
  return '/~~/' + selector.split('/').map(encodeURIComponent).join('/');
}
