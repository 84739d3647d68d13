/**
 * SIP message model and serializer (RFC 3261 §7, §20). Header names are stored in their
 * long, lower-case form; values are kept as received (one entry per header line) and split
 * into list elements only when asked for.
 */
import { splitList, parseParams } from './grammar.js';
import { NameAddr } from './uri.js';

/** Compact forms (RFC 3261 §7.3.3 and the event/SIP-ETag RFCs). */
export const COMPACT_FORMS: Readonly<Record<string, string>> = {
  i: 'call-id',
  m: 'contact',
  e: 'content-encoding',
  l: 'content-length',
  c: 'content-type',
  f: 'from',
  s: 'subject',
  k: 'supported',
  t: 'to',
  v: 'via',
  o: 'event',
  u: 'allow-events',
  r: 'refer-to',
  b: 'referred-by',
  x: 'session-expires',
  a: 'accept-contact',
  j: 'reject-contact',
  d: 'request-disposition',
  y: 'identity',
};

const CANONICAL: Record<string, string> = {
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'sip-etag': 'SIP-ETag',
  'sip-if-match': 'SIP-If-Match',
  'mime-version': 'MIME-Version',
};

const canonicalCache = new Map<string, string>();
/** `content-type` → `Content-Type`, with the RFC spellings for the irregular ones. */
export function canonicalName(lower: string): string {
  let c = canonicalCache.get(lower);
  if (c !== undefined) return c;
  c = CANONICAL[lower] ?? lower.replace(/(^|-)([a-z])/g, (_m, d: string, ch: string) => d + ch.toUpperCase());
  if (canonicalCache.size < 512) canonicalCache.set(lower, c);
  return c;
}

export interface Via {
  protocol: string; // "UDP", "TCP", "WS", ...
  host: string;
  port: number | undefined;
  params: Map<string, string>;
  branch: string | undefined;
  /**
   * protocol-name/protocol-version when it is not SIP/2.0 (RFC 3261 §25.1 sent-protocol): such a
   * Via still routes a response (a 505 to a SIP/7.0 request, RFC 4475 §3.1.2.16).
   */
  sentProtocol?: string;
}

/** JavaScript's \s (what the regular expression used before allowed around the Via's parts). */
function isSpace(c: number): boolean {
  if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) return true;
  if (c < 0xa0) return false;
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

const isLineTerminator = (c: number): boolean => c === 0x0a || c === 0x0d || c === 0x2028 || c === 0x2029;

function isViaTokenChar(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x21 ||
    c === 0x25 ||
    c === 0x2a ||
    c === 0x5f ||
    c === 0x2b ||
    c === 0x60 ||
    c === 0x27 ||
    c === 0x7e
  );
}

/**
 * via-parm = sent-protocol LWS sent-by *( SEMI via-params ), sent-protocol = protocol-name
 * SLASH protocol-version SLASH transport, with LWS allowed around each slash (RFC 3261
 * §25.1). Scanned once, left to right: linear in the value whatever its spaces. Returns
 * [protocol-name/version, transport, sent-by, ";params" or undefined].
 */
function splitVia(value: string): [string, string, string, string | undefined] | undefined {
  const n = value.length;
  let i = 0;
  const skip = (): void => {
    while (i < n && isSpace(value.charCodeAt(i))) i++;
  };
  const token = (): string | undefined => {
    const from = i;
    while (i < n && isViaTokenChar(value.charCodeAt(i))) i++;
    return i > from ? value.slice(from, i) : undefined;
  };
  const slash = (): boolean => {
    skip();
    if (value.charCodeAt(i) !== 0x2f) return false;
    i++;
    skip();
    return true;
  };
  skip();
  const name = token();
  if (name === undefined || !slash()) return undefined;
  const version = token();
  if (version === undefined || !slash()) return undefined;
  const transport = token();
  if (transport === undefined) return undefined;
  const gap = i;
  skip();
  if (i === gap) return undefined;
  const hostAt = i;
  while (i < n) {
    const c = value.charCodeAt(i);
    if (c === 0x3b || isSpace(c)) break;
    i++;
  }
  if (i === hostAt) return undefined;
  const sentBy = value.slice(hostAt, i);
  skip();
  if (i === n) return [`${name}/${version}`, transport, sentBy, undefined];
  if (value.charCodeAt(i) !== 0x3b) return undefined;
  for (let k = i; k < n; k++) if (isLineTerminator(value.charCodeAt(k))) return undefined;
  return [`${name}/${version}`, transport, sentBy, value.slice(i)];
}

export function parseVia(value: string): Via {
  const m = splitVia(value);
  if (m === undefined) throw new SyntaxError(`malformed Via: ${value.slice(0, 100)}`);
  const sentBy = m[2];
  let host: string;
  let port: number | undefined;
  if (sentBy.startsWith('[')) {
    const close = sentBy.indexOf(']');
    if (close === -1) throw new SyntaxError('malformed Via host');
    host = sentBy.slice(0, close + 1);
    if (sentBy[close + 1] === ':') port = Number(sentBy.slice(close + 2));
  } else {
    const pc = sentBy.indexOf(':');
    host = pc === -1 ? sentBy : sentBy.slice(0, pc);
    if (pc !== -1) port = Number(sentBy.slice(pc + 1));
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new SyntaxError('malformed Via port');
  if (host.length === 0) throw new SyntaxError('malformed Via host');
  const params = m[3] ? parseParams(m[3]) : new Map<string, string>();
  const via: Via = { protocol: m[1].toUpperCase(), host, port, params, branch: params.get('branch') };
  const sent = m[0].toUpperCase();
  if (sent !== 'SIP/2.0') via.sentProtocol = sent;
  return via;
}

function firstVia(value: string): Via {
  return parseVia(splitList(value)[0]!);
}

/** A header value and what it parsed to. */
interface Parsed<T> {
  raw: string;
  value: T;
}

/** `memo` while the header still has the value it was parsed from, else a fresh parse. */
function parsedOnce<T>(memo: Parsed<T> | undefined, raw: string, parse: (raw: string) => T): Parsed<T> {
  return memo !== undefined && memo.raw === raw ? memo : { raw, value: parse(raw) };
}

export function formatVia(v: Via): string {
  let s = `${v.sentProtocol ?? 'SIP/2.0'}/${v.protocol} ${v.host}${v.port !== undefined ? ':' + v.port : ''}`;
  for (const [k, val] of v.params) s += val === '' ? `;${k}` : `;${k}=${val}`;
  return s;
}

export interface CSeq {
  seq: number;
  method: string;
}

export function parseCSeq(value: string): CSeq {
  const m = /^\s*(\d{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)\s*$/.exec(value);
  if (!m) throw new SyntaxError(`malformed CSeq: ${value}`);
  const seq = Number(m[1]);
  if (seq > 0xffffffff) throw new SyntaxError('CSeq number out of range');
  return { seq, method: m[2]! };
}

/** Headers whose values are comma-separated lists and may be split (RFC 3261 §7.3.1). */
const LIST_HEADERS = new Set([
  'via',
  'route',
  'record-route',
  'contact',
  'allow',
  'supported',
  'require',
  'proxy-require',
  'unsupported',
  'allow-events',
  'accept',
  'accept-encoding',
  'accept-language',
  'content-encoding',
  'content-language',
  'in-reply-to',
]);

export class Headers {
  /** [lowerName, value] pairs in message order. */
  readonly entries: Array<[string, string]> = [];

  get(name: string): string | undefined {
    for (const e of this.entries) if (e[0] === name) return e[1];
    return undefined;
  }

  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** All values of a header, list headers split into their elements. */
  getAll(name: string): string[] {
    const out: string[] = [];
    const split = LIST_HEADERS.has(name);
    for (const e of this.entries) {
      if (e[0] !== name) continue;
      if (split) for (const v of splitList(e[1])) out.push(v);
      else out.push(e[1]);
    }
    return out;
  }

  count(name: string): number {
    let n = 0;
    for (const e of this.entries) if (e[0] === name) n++;
    return n;
  }

  append(name: string, value: string): this {
    this.entries.push([name, value]);
    return this;
  }

  prepend(name: string, value: string): this {
    this.entries.unshift([name, value]);
    return this;
  }

  set(name: string, value: string): this {
    this.remove(name);
    this.entries.push([name, value]);
    return this;
  }

  remove(name: string): this {
    // Compacted in place: a splice per match is quadratic in a message of many such headers.
    let kept = 0;
    for (const e of this.entries) if (e[0] !== name) this.entries[kept++] = e;
    this.entries.length = kept;
    return this;
  }

  /** Replace the first Via (and only it), keeping the rest of its list. */
  replaceTopVia(value: string): void {
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      if (e[0] !== 'via') continue;
      const parts = splitList(e[1]);
      parts[0] = value;
      e[1] = parts.join(', ');
      return;
    }
  }
}

export abstract class SipMessage {
  readonly headers = new Headers();
  body: Buffer = EMPTY;

  get callId(): string {
    return this.headers.get('call-id') ?? '';
  }

  // CSeq, the first Via, From and To are parsed once per header value (the receive path asks for
  // them several times): treat what they return as read-only; a changed top Via is written back
  // with setTopVia().

  get cseq(): CSeq {
    return (this.cseqMemo = parsedOnce(this.cseqMemo, this.headers.get('cseq') ?? '', parseCSeq)).value;
  }

  get topVia(): Via {
    const v = this.headers.get('via');
    if (v === undefined) throw new SyntaxError('no Via');
    return (this.viaMemo = parsedOnce(this.viaMemo, v, firstVia)).value;
  }

  /** Write a changed top Via back (RFC 3261 §18.2.1 received/rport) and keep it parsed. */
  setTopVia(via: Via): void {
    this.headers.replaceTopVia(formatVia(via));
    const raw = this.headers.get('via');
    if (raw !== undefined) this.viaMemo = { raw, value: via };
  }

  get from(): NameAddr {
    return (this.fromMemo = parsedOnce(this.fromMemo, this.headers.get('from') ?? '', NameAddr.parse)).value;
  }

  get to(): NameAddr {
    return (this.toMemo = parsedOnce(this.toMemo, this.headers.get('to') ?? '', NameAddr.parse)).value;
  }

  private cseqMemo: Parsed<CSeq> | undefined;
  private viaMemo: Parsed<Via> | undefined;
  private fromMemo: Parsed<NameAddr> | undefined;
  private toMemo: Parsed<NameAddr> | undefined;

  get fromTag(): string | undefined {
    return tagOf(this.headers.get('from'));
  }

  get toTag(): string | undefined {
    return tagOf(this.headers.get('to'));
  }

  /** Numeric header value, or undefined when absent; throws on a malformed number. */
  intHeader(name: string): number | undefined {
    const v = this.headers.get(name);
    if (v === undefined) return undefined;
    const t = v.trim();
    if (!/^\d{1,10}$/.test(t)) throw new SyntaxError(`malformed ${canonicalName(name)}: ${v}`);
    return Number(t);
  }

  /** Content-Type media type without parameters, lower-cased. */
  get contentType(): string | undefined {
    const v = this.headers.get('content-type');
    if (v === undefined) return undefined;
    const semi = v.indexOf(';');
    return (semi === -1 ? v : v.slice(0, semi)).trim().toLowerCase();
  }

  abstract startLine(): string;

  /** Serialise; Content-Length is always written from the body. */
  toBuffer(): Buffer {
    let head = this.startLine() + '\r\n';
    for (const [name, value] of this.headers.entries) {
      if (name === 'content-length') continue;
      head += canonicalName(name) + ': ' + value + '\r\n';
    }
    head += 'Content-Length: ' + this.body.length + '\r\n\r\n';
    if (this.body.length === 0) return Buffer.from(head, 'utf8');
    const h = Buffer.from(head, 'utf8');
    return Buffer.concat([h, this.body], h.length + this.body.length);
  }

  toString(): string {
    return this.toBuffer().toString('utf8');
  }
}

function tagOf(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  // Fast path: the tag parameter is outside <>; find ";tag=" after the last '>'.
  const gt = v.lastIndexOf('>');
  const search = gt === -1 ? v : v.slice(gt);
  const m = /;\s*tag\s*=\s*([^;\s,]+)/i.exec(search);
  return m ? m[1] : undefined;
}

export const EMPTY = Buffer.alloc(0);

/**
 * A string to keep long (a transaction key, a dialog's record): flat, and not a view into the
 * message it came from. V8 keeps a concatenation as a rope of its parts and a substring as a
 * slice holding its whole parent (the SIP message); a fresh sequential copy holds neither
 * (measured: ropes and slices were about a third of the heap per subscription).
 */
export function ownString(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

const fewValues = new Map<string, string>();
/** Bound on the values sharedString() keeps: past it, each caller gets a copy of its own. */
const FEW_VALUES_MAX = 4096;

/**
 * One flat copy for a value that many long-lived records hold and that has few distinct values
 * across a node (a proxy's address, "presence", "udp", our Contact): every holder shares it.
 */
export function sharedString(v: string): string {
  let s = fewValues.get(v);
  if (s !== undefined) return s;
  s = ownString(v);
  if (fewValues.size < FEW_VALUES_MAX) fewValues.set(s, s);
  return s;
}

/**
 * A request as the stack sends it in a client transaction: the stack chooses the top Via
 * (branch, sent-by) and asks for the bytes once. SipRequest is one; a transaction user with a
 * precomputed form of its requests (the notifier's per-dialog NOTIFY) is another.
 */
export interface OutgoingRequest {
  readonly method: string;
  /** The request's bytes with `topVia` as its first Via header field value. */
  serialize(topVia: string): Buffer;
}

export class SipRequest extends SipMessage implements OutgoingRequest {
  constructor(
    public method: string,
    public uri: string,
  ) {
    super();
  }
  startLine(): string {
    return `${this.method} ${this.uri} SIP/2.0`;
  }
  serialize(topVia: string): Buffer {
    this.headers.prepend('via', topVia);
    return this.toBuffer();
  }
}

export class SipResponse extends SipMessage {
  constructor(
    public status: number,
    public reason: string,
  ) {
    super();
  }
  startLine(): string {
    return `SIP/2.0 ${this.status} ${this.reason}`;
  }
}

export const REASON_PHRASES: Readonly<Record<number, string>> = {
  100: 'Trying',
  200: 'OK',
  202: 'Accepted',
  204: 'No Notification',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  412: 'Conditional Request Failed',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Unsupported URI Scheme',
  420: 'Bad Extension',
  423: 'Interval Too Brief',
  480: 'Temporarily Unavailable',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  489: 'Bad Event',
  500: 'Server Internal Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
  505: 'Version Not Supported',
  513: 'Message Too Large',
};

/**
 * Build a response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied;
 * `toTag` added to To when the request's To has none.
 */
export function createResponse(req: SipRequest, status: number, reason?: string, toTag?: string): SipResponse {
  const res = new SipResponse(status, reason ?? REASON_PHRASES[status] ?? 'Unknown');
  for (const [name, value] of req.headers.entries) {
    if (name === 'via' || name === 'from' || name === 'call-id' || name === 'cseq') res.headers.append(name, value);
    else if (name === 'to') {
      res.headers.append('to', toTag !== undefined && tagOf(value) === undefined && status > 100 ? `${value};tag=${toTag}` : value);
    }
  }
  return res;
}
