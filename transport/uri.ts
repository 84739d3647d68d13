/**
 * SIP URIs (RFC 3261 §19.1) and name-addr / addr-spec header values (§20.10, §25.1).
 */
import { parseParams, formatParams, readQuoted, quote } from './grammar.js';

export class SipUri {
  constructor(
    public scheme: string,
    public user: string | undefined,
    public host: string,
    public port: number | undefined,
    public params: Map<string, string>,
    public headers: string | undefined,
    public password?: string,
  ) {}

  /** `transport` URI parameter, lower-cased (udp when absent for sip:, tls for sips:). */
  get transport(): string {
    const t = this.params.get('transport');
    if (t) return t.toLowerCase();
    return this.scheme === 'sips' ? 'tls' : 'udp';
  }

  /** user@host without parameters, normalised (see normalizedAor): the form a presentity or watcher is keyed by. */
  get aor(): string {
    return normalizedAor(this);
  }

  toString(): string {
    let s = this.scheme + ':';
    if (this.user !== undefined) s += this.user + (this.password !== undefined ? ':' + this.password : '') + '@';
    s += this.host;
    if (this.port !== undefined) s += ':' + this.port;
    s += formatParams(this.params);
    if (this.headers) s += '?' + this.headers;
    return s;
  }

  static parse(text: string): SipUri {
    const t = text.trim();
    const colon = t.indexOf(':');
    if (colon <= 0) throw new SyntaxError(`not a URI: ${t}`);
    const scheme = t.slice(0, colon).toLowerCase();
    if (scheme !== 'sip' && scheme !== 'sips' && scheme !== 'pres' && scheme !== 'tel') {
      throw new SyntaxError(`unsupported URI scheme: ${scheme}`);
    }
    let rest = t.slice(colon + 1);
    if (scheme === 'tel') {
      const semi = rest.indexOf(';');
      const number = semi === -1 ? rest : rest.slice(0, semi);
      if (number.length === 0) throw new SyntaxError('empty tel number');
      return new SipUri(scheme, number, '', undefined, semi === -1 ? new Map() : parseParams(rest, semi), undefined);
    }
    let user: string | undefined;
    let password: string | undefined;
    // The userinfo may hold ';', '?' and ',' unescaped (RFC 3261 §25.1 user-unreserved) but
    // never '@', which appears nowhere else unescaped: cut at the first '@' before the headers.
    const at = rest.indexOf('@');
    if (at !== -1) {
      const userinfo = rest.slice(0, at);
      const pc = userinfo.indexOf(':');
      if (pc !== -1) {
        user = userinfo.slice(0, pc);
        password = userinfo.slice(pc + 1);
      } else user = userinfo;
      if (user.length === 0) throw new SyntaxError('empty user part');
      if (/[\s<>"]/.test(user)) throw new SyntaxError('invalid character in user part');
      rest = rest.slice(at + 1);
    }
    let headers: string | undefined;
    const q = rest.indexOf('?');
    if (q !== -1) {
      headers = rest.slice(q + 1);
      rest = rest.slice(0, q);
    }
    const semi = rest.indexOf(';');
    const hostport = semi === -1 ? rest : rest.slice(0, semi);
    const params = semi === -1 ? new Map<string, string>() : parseParams(rest, semi);
    let host: string;
    let port: number | undefined;
    if (hostport.startsWith('[')) {
      const close = hostport.indexOf(']');
      if (close === -1) throw new SyntaxError('unterminated IPv6 reference');
      host = hostport.slice(0, close + 1);
      const after = hostport.slice(close + 1);
      if (after.startsWith(':')) port = parsePort(after.slice(1));
      else if (after.length > 0) throw new SyntaxError('junk after IPv6 reference');
    } else {
      const pc = hostport.indexOf(':');
      if (pc === -1) host = hostport;
      else {
        host = hostport.slice(0, pc);
        port = parsePort(hostport.slice(pc + 1));
      }
    }
    if (!HOST.test(host) && !(host.includes('%') && HOST.test(unescapeUnreserved(host)))) throw new SyntaxError(`invalid host: ${host}`);
    return new SipUri(scheme, user, host, port, params, headers, password);
  }
}

const HOST = /^[A-Za-z0-9.\-\[\]:]+$/;

/** RFC 2396 §2.3 unreserved = alphanum / mark, by code point. */
const UNRESERVED = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()") UNRESERVED[c.charCodeAt(0)] = 1;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20;
  return c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
}

/**
 * `%HH` escapes of unreserved characters replaced by the characters, the other escapes with
 * upper-case hex digits (RFC 3261 §19.1.4: a character outside the reserved set and its
 * escape are equivalent; RFC 3986 §6.2.2.1: hex digits compare case-insensitively). One pass.
 */
export function unescapeUnreserved(s: string): string {
  if (s.indexOf('%') === -1) return s;
  let out = '';
  let from = 0;
  for (let i = s.indexOf('%'); i !== -1 && i + 2 < s.length; i = s.indexOf('%', i + 1)) {
    const hi = hexValue(s.charCodeAt(i + 1));
    const lo = hexValue(s.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) continue;
    const code = hi * 16 + lo;
    out += s.slice(from, i) + (code < 128 && UNRESERVED[code] === 1 ? String.fromCharCode(code) : s.slice(i, i + 3).toUpperCase());
    from = i + 3;
    i += 2;
  }
  return from === 0 ? s : out + s.slice(from);
}

/**
 * The address of record a presentity or a watcher is keyed by: scheme:user@host, without
 * password, port, parameters or headers, in one spelling per RFC 3261 §19.1.4 equivalence
 * class: scheme and host lower-cased, unreserved characters unescaped in user and host, the
 * user otherwise kept as it is (its comparison is case-sensitive). `scheme` overrides the
 * URI's own (a presentity is one whether addressed by sip:, sips: or pres:).
 */
export function normalizedAor(uri: SipUri, scheme: string = uri.scheme): string {
  const host = unescapeUnreserved(uri.host).toLowerCase();
  return uri.user !== undefined ? `${scheme}:${unescapeUnreserved(uri.user)}@${host}` : `${scheme}:${host}`;
}

function parsePort(s: string): number {
  if (!/^\d{1,5}$/.test(s)) throw new SyntaxError(`invalid port: ${s}`);
  const p = Number(s);
  if (p > 65535) throw new SyntaxError(`invalid port: ${s}`);
  return p;
}

/** A From/To/Contact/Route value: optional display name, URI, header parameters. */
export class NameAddr {
  constructor(
    public uri: SipUri,
    public displayName: string | undefined,
    public params: Map<string, string>,
    /** `*` in Contact (RFC 3261 §10.2.2). */
    public star = false,
  ) {}

  get tag(): string | undefined {
    return this.params.get('tag');
  }

  toString(): string {
    if (this.star) return '*';
    const dn = this.displayName !== undefined ? quote(this.displayName) + ' ' : '';
    return `${dn}<${this.uri.toString()}>${formatParams(this.params)}`;
  }

  static parse(text: string): NameAddr {
    const t = text.trim();
    if (t === '*') return new NameAddr(new SipUri('sip', undefined, '*', undefined, new Map(), undefined), undefined, new Map(), true);
    let displayName: string | undefined;
    let i = 0;
    if (t[0] === '"') {
      const [dn, end] = readQuoted(t, 0);
      displayName = dn;
      i = end;
    }
    const lt = t.indexOf('<', i);
    if (lt !== -1) {
      if (displayName === undefined) {
        const dn = t.slice(0, lt).trim();
        if (dn.length > 0) displayName = dn;
      }
      const gt = t.indexOf('>', lt);
      if (gt === -1) throw new SyntaxError('unterminated <URI>');
      const uri = SipUri.parse(t.slice(lt + 1, gt));
      return new NameAddr(uri, displayName, parseParams(t, gt + 1));
    }
    if (displayName !== undefined) throw new SyntaxError('display name without <URI>');
    // addr-spec form: parameters after ';' belong to the header, not to the URI (§20.10).
    const semi = t.indexOf(';');
    const spec = semi === -1 ? t : t.slice(0, semi);
    // A URI with headers (or a ',') must be enclosed in <> (RFC 3261 §20.10).
    if (spec.includes('?') || spec.includes(',')) throw new SyntaxError('addr-spec with "?" or "," must be a name-addr');
    const uri = SipUri.parse(spec);
    return new NameAddr(uri, undefined, semi === -1 ? new Map() : parseParams(t, semi));
  }
}
