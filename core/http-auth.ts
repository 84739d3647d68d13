/**
 * HTTP authentication shared by the XCAP server (xcap_auth) and the admin port (rpc_auth):
 * Digest (RFC 7616 with MD5 and qop=auth, the form RFC 2617 clients and browsers speak) and
 * Basic (RFC 7617), both server side, and the client side `presenced rpc` answers a challenge
 * with. Digest nonces are stateless (a timestamp signed with a per-process key); the
 * nonce-counts seen per nonce are remembered to refuse replays.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const NONCE_LIFETIME_MS = 300_000;

/** `xui`: the user the credentials are of (for XCAP an XUI, for the admin port a user name). */
export type DigestResult = { ok: true; xui: string } | { ok: false; stale: boolean; reason: string };

/** What the XCAP server and the admin port ask of a scheme: a challenge for a 401, and a check. */
export interface HttpAuthenticator {
  /** The WWW-Authenticate value of a 401. */
  challenge(stale?: boolean): string;
  /** Check an Authorization header for `method` on `requestTarget` (path and query as sent). */
  verify(authorization: string, method: string, requestTarget: string): DigestResult;
}

/** Nonce-counts may arrive out of order (a browser's parallel requests): this many below the highest are still taken once each. */
const NC_WINDOW = 32;

function md5(s: string): string {
  return createHash('md5').update(s, 'utf8').digest('hex');
}

/** Parse `Digest k=v, k="v", ...` into a map (keys lower-cased). */
export function parseDigestHeader(header: string): Map<string, string> | undefined {
  const m = /^\s*Digest\s+/i.exec(header);
  if (!m) return undefined;
  const out = new Map<string, string>();
  const re = /\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)/gy;
  re.lastIndex = m[0].length;
  while (re.lastIndex < header.length) {
    const p = re.exec(header);
    if (!p) return undefined;
    out.set(p[1]!.toLowerCase(), p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!);
  }
  return out;
}

export class DigestAuth implements HttpAuthenticator {
  private readonly key = randomBytes(32);
  /** nonce → highest nonce-count accepted, and which of the NC_WINDOW counts below it were (bit i: highest - 1 - i). */
  private readonly counts = new Map<string, { highest: number; below: number }>();

  constructor(
    readonly realm: string,
    /** XUI (sip:user@domain) → password. */
    private readonly users: Record<string, string>,
  ) {}

  private sign(ts: string): string {
    return createHmac('sha256', this.key).update(ts).update(this.realm).digest('base64url').slice(0, 22);
  }

  newNonce(now = Date.now()): string {
    const ts = now.toString(36);
    return `${ts}.${this.sign(ts)}`;
  }

  challenge(stale = false): string {
    return `Digest realm="${this.realm}", qop="auth", algorithm=MD5, nonce="${this.newNonce()}"${stale ? ', stale=true' : ''}`;
  }

  /** The XUI an Authorization username stands for: the key itself, or the key without "sip:". */
  private xuiOf(username: string): string | undefined {
    if (Object.hasOwn(this.users, username)) return username;
    if (Object.hasOwn(this.users, `sip:${username}`)) return `sip:${username}`;
    return undefined;
  }

  verify(authorization: string, method: string, requestTarget: string, now = Date.now()): DigestResult {
    const p = parseDigestHeader(authorization);
    if (!p) return { ok: false, stale: false, reason: 'no Digest credentials' };
    const username = p.get('username') ?? '';
    const nonce = p.get('nonce') ?? '';
    const uri = p.get('uri') ?? '';
    const response = (p.get('response') ?? '').toLowerCase();
    const qop = p.get('qop');
    const nc = p.get('nc') ?? '';
    const cnonce = p.get('cnonce') ?? '';
    const algorithm = (p.get('algorithm') ?? 'MD5').toUpperCase();
    if (p.get('realm') !== this.realm) return { ok: false, stale: false, reason: 'wrong realm' };
    if (algorithm !== 'MD5') return { ok: false, stale: false, reason: `algorithm ${algorithm} not supported` };
    if (qop !== 'auth' || !/^[0-9a-fA-F]{8}$/.test(nc) || cnonce === '')
      return { ok: false, stale: false, reason: 'qop=auth with nc and cnonce required' };
    if (uri !== requestTarget) return { ok: false, stale: false, reason: 'the digest uri is not the request target' };
    const xui = this.xuiOf(username);
    if (xui === undefined) return { ok: false, stale: false, reason: 'unknown user' };

    const dot = nonce.indexOf('.');
    const ts = nonce.slice(0, dot);
    const sig = Buffer.from(nonce.slice(dot + 1));
    const expected = Buffer.from(this.sign(ts));
    if (dot <= 0 || sig.length !== expected.length || !timingSafeEqual(sig, expected))
      return { ok: false, stale: false, reason: 'nonce not issued here' };

    const ha1 = md5(`${username}:${this.realm}:${this.users[xui]}`);
    const ha2 = md5(`${method}:${uri}`);
    const want = md5(`${ha1}:${nonce}:${nc}:${cnonce}:${qop}:${ha2}`);
    if (response.length !== want.length || !timingSafeEqual(Buffer.from(response), Buffer.from(want))) {
      return { ok: false, stale: false, reason: 'wrong credentials' };
    }
    // Right password on an old nonce: ask again with stale=true (RFC 7616 §3.3), no new password prompt.
    if (now - parseInt(ts, 36) > NONCE_LIFETIME_MS) return { ok: false, stale: true, reason: 'nonce expired' };
    const count = parseInt(nc, 16);
    const seen = this.counts.get(nonce) ?? { highest: 0, below: 0 };
    if (count > seen.highest) {
      // Shift the window up: the old highest becomes "seen, 1 below" (bits past the window drop).
      const shift = count - seen.highest;
      let below = shift >= NC_WINDOW ? 0 : (seen.below << shift) >>> 0;
      if (seen.highest > 0 && shift <= NC_WINDOW) below = (below | (1 << (shift - 1))) >>> 0;
      seen.below = below;
      seen.highest = count;
    } else {
      const bit = seen.highest - 1 - count;
      if (count === seen.highest || bit >= NC_WINDOW || count === 0 || (seen.below & (1 << bit)) !== 0)
        return { ok: false, stale: false, reason: 'nonce count replayed' };
      seen.below = (seen.below | (1 << bit)) >>> 0;
    }
    this.counts.set(nonce, seen);
    this.prune(now);
    return { ok: true, xui };
  }

  private prune(now: number): void {
    if (this.counts.size < 1024) return;
    for (const nonce of this.counts.keys()) {
      if (now - parseInt(nonce.slice(0, nonce.indexOf('.')), 36) > NONCE_LIFETIME_MS) this.counts.delete(nonce);
    }
  }
}

/**
 * Basic (RFC 7617): the password in every request, so only for a port reached over a trusted
 * network or a TLS proxy; Prometheus scrapes with it (basic_auth), it cannot do Digest.
 */
export class BasicAuth implements HttpAuthenticator {
  constructor(
    readonly realm: string,
    /** user name → password. */
    private readonly users: Record<string, string>,
  ) {}

  challenge(): string {
    return `Basic realm="${this.realm}", charset="UTF-8"`;
  }

  verify(authorization: string): DigestResult {
    const m = /^\s*Basic\s+([A-Za-z0-9+/]+=*)\s*$/i.exec(authorization);
    if (!m) return { ok: false, stale: false, reason: 'no Basic credentials' };
    const text = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon < 0) return { ok: false, stale: false, reason: 'Basic credentials without user:password' };
    const user = text.slice(0, colon);
    if (!Object.hasOwn(this.users, user)) return { ok: false, stale: false, reason: 'unknown user' };
    // Compared as digests: equal lengths, and no timing that tells how much of a guess was right.
    const given = createHash('sha256')
      .update(text.slice(colon + 1))
      .digest();
    const want = createHash('sha256').update(this.users[user]!).digest();
    if (!timingSafeEqual(given, want)) return { ok: false, stale: false, reason: 'wrong credentials' };
    return { ok: true, xui: user };
  }
}

/** The client's side: what to send in Authorization for a 401's WWW-Authenticate (Digest or Basic); undefined for another scheme. */
export function answerChallenge(
  wwwAuthenticate: string,
  credentials: { user: string; password: string },
  method: string,
  requestTarget: string,
  nc = 1,
): string | undefined {
  if (/^\s*Basic\b/i.test(wwwAuthenticate))
    return `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`, 'utf8').toString('base64')}`;
  const p = parseDigestHeader(wwwAuthenticate);
  if (!p) return undefined;
  const realm = p.get('realm') ?? '';
  const nonce = p.get('nonce') ?? '';
  const algorithm = (p.get('algorithm') ?? 'MD5').toUpperCase();
  const qops = (p.get('qop') ?? '').split(',').map((q) => q.trim());
  if (algorithm !== 'MD5' || !qops.includes('auth')) return undefined;
  const cnonce = randomBytes(8).toString('hex');
  const count = nc.toString(16).padStart(8, '0');
  const ha1 = md5(`${credentials.user}:${realm}:${credentials.password}`);
  const ha2 = md5(`${method}:${requestTarget}`);
  const response = md5(`${ha1}:${nonce}:${count}:${cnonce}:auth:${ha2}`);
  const q = (v: string): string => `"${v.replace(/(["\\])/g, '\\$1')}"`;
  return (
    `Digest username=${q(credentials.user)}, realm=${q(realm)}, nonce=${q(nonce)}, uri=${q(requestTarget)}, ` +
    `algorithm=MD5, qop=auth, nc=${count}, cnonce=${q(cnonce)}, response=${q(response)}`
  );
}
