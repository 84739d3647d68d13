/**
 * HTTP Digest authentication for the XCAP server (RFC 7616 with MD5 and qop=auth, the form
 * RFC 2617 clients speak). Nonces are stateless (a timestamp signed with a per-process key);
 * the last nonce-count seen per nonce is remembered to refuse replays.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const NONCE_LIFETIME_MS = 300_000;

export type DigestResult = { ok: true; xui: string } | { ok: false; stale: boolean; reason: string };

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

export class DigestAuth {
  private readonly key = randomBytes(32);
  /** nonce → highest nonce-count accepted. */
  private readonly counts = new Map<string, number>();

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

  /** The WWW-Authenticate value of a 401. */
  challenge(stale = false): string {
    return `Digest realm="${this.realm}", qop="auth", algorithm=MD5, nonce="${this.newNonce()}"${stale ? ', stale=true' : ''}`;
  }

  /** The XUI an Authorization username stands for: the key itself, or the key without "sip:". */
  private xuiOf(username: string): string | undefined {
    if (Object.hasOwn(this.users, username)) return username;
    if (Object.hasOwn(this.users, `sip:${username}`)) return `sip:${username}`;
    return undefined;
  }

  /** Check an Authorization header for `method` on `requestTarget` (path and query as sent). */
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
    const last = this.counts.get(nonce) ?? 0;
    if (count <= last) return { ok: false, stale: false, reason: 'nonce count replayed' };
    this.counts.set(nonce, count);
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
