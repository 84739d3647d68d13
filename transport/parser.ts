/**
 * SIP message parser (RFC 3261 §7) and the TCP stream framer (§18.3).
 *
 * The parser is tolerant where RFC 3261 asks for it (LWS, folding, compact forms, case) and
 * records — rather than throws on — problems found after the start line, so the transaction
 * layer can still answer 400 with a reason when the Via is usable.
 */
import { COMPACT_FORMS, SipRequest, SipResponse, type SipMessage, EMPTY, parseVia, ownString } from './message.js';

export class SipParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SipParseError';
  }
}

export interface ParsedMessage {
  message: SipRequest | SipResponse;
  /** Problems that make the message invalid but still answerable (e.g. a bad header line). */
  problems: string[];
}

/** How validateRequest's reason starts for a SIP version other than 2.0 (answered 505). */
export const UNSUPPORTED_VERSION = 'unsupported SIP version';

/**
 * Locate the end of the header section (the first CRLFCRLF or LFLF); returns [headerEnd,
 * bodyStart] or undefined. One scan from LF to LF that stops at the first blank line: two
 * searches for each pattern to the end of the buffer would each read a framer's whole
 * buffer of pipelined messages, per message.
 */
export function findHeaderEnd(buf: Buffer, from = 0): [number, number] | undefined {
  for (let i = buf.indexOf(0x0a, from); i !== -1; i = buf.indexOf(0x0a, i + 1)) {
    if (buf[i + 1] === 0x0a) return [i, i + 2];
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a && i > from && buf[i - 1] === 0x0d) return [i - 1, i + 3];
  }
  return undefined;
}

const STATUS_LINE = /^SIP\/(\d+\.\d+) (\d{3})(?: (.*))?$/;
const WHITESPACE = /\s/;

/** RFC 3261 §25.1 token characters by code point (ASCII only). */
const TOKEN_CHARS = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~") TOKEN_CHARS[c.charCodeAt(0)] = 1;

/** c is an RFC 3261 token character. */
function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN_CHARS[c] === 1;
}

const isSpTab = (c: number): boolean => c === 0x20 || c === 0x09;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

export interface RequestLine {
  method: string;
  uri: string;
  /** "2.0" for SIP/2.0. */
  version: string;
  /** Written as RFC 3261 §25.1 has it: single SP separators, no whitespace in the URI. */
  strict: boolean;
}

/**
 * Split a Request-Line: method, Request-URI, "SIP/" version, with one SP between them when
 * strict and any run of SP/HTAB when loose (RFC 4475 §3.1.2.8-10: answerable, but a 400).
 * One pass from each end, no backtracking: linear in the line (a regular expression did this
 * in time cubic in a run of spaces, issue 12).
 */
export function parseRequestLine(line: string): RequestLine | undefined {
  const n = line.length;
  let i = 0;
  while (i < n && isTokenChar(line.charCodeAt(i))) i++;
  if (i === 0) return undefined;
  let uriStart = i;
  while (uriStart < n && isSpTab(line.charCodeAt(uriStart))) uriStart++;
  if (uriStart === i) return undefined;
  let end = n;
  while (end > uriStart && isSpTab(line.charCodeAt(end - 1))) end--;
  // "SIP/" 1*DIGIT "." 1*DIGIT at the end, read backwards.
  let k = end;
  while (k > uriStart && isDigit(line.charCodeAt(k - 1))) k--;
  if (k === end || k === uriStart || line.charCodeAt(k - 1) !== 0x2e) return undefined;
  const dot = --k;
  while (k > uriStart && isDigit(line.charCodeAt(k - 1))) k--;
  if (k === dot || k - 4 < uriStart || !line.startsWith('SIP/', k - 4)) return undefined;
  const sip = k - 4;
  let uriEnd = sip;
  while (uriEnd > uriStart && isSpTab(line.charCodeAt(uriEnd - 1))) uriEnd--;
  if (uriEnd === sip || uriEnd === uriStart) return undefined;
  const uri = line.slice(uriStart, uriEnd);
  const strict =
    uriStart === i + 1 &&
    line.charCodeAt(i) === 0x20 &&
    uriEnd === sip - 1 &&
    line.charCodeAt(uriEnd) === 0x20 &&
    end === n &&
    !WHITESPACE.test(uri);
  return { method: line.slice(0, i), uri, version: line.slice(k, end), strict };
}

/**
 * Parse one complete message. `datagram` marks UDP framing (body = rest of the datagram,
 * Content-Length optional); otherwise the caller (the framer) has already cut the body.
 */
export function parseMessage(buf: Buffer, datagram: boolean): ParsedMessage {
  // Leading CRLFs before a message are ignored (RFC 3261 §7.5).
  let start = 0;
  while (start < buf.length && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  const ends = findHeaderEnd(buf, start);
  const headerEnd = ends ? ends[0] : buf.length;
  const bodyStart = ends ? ends[1] : buf.length;
  const head = buf.toString('utf8', start, headerEnd);
  // Lines end at LF, with or without CR (RFC 3261 §7.5 asks for tolerance); scanned by index,
  // no array of lines.
  let eol = head.indexOf('\n');
  if (eol === -1) eol = head.length;
  const first = head.slice(0, eol > 0 && head.charCodeAt(eol - 1) === 0x0d ? eol - 1 : eol);
  const problems: string[] = [];

  let message: SipRequest | SipResponse;
  const rl = parseRequestLine(first);
  if (rl) {
    if (!rl.strict) problems.push('malformed Request-Line');
    if (rl.version !== '2.0') problems.unshift(`${UNSUPPORTED_VERSION} SIP/${rl.version}`);
    message = new SipRequest(rl.method, rl.uri);
  } else {
    const sm = STATUS_LINE.exec(first);
    if (!sm) throw new SipParseError(`not a SIP start line: ${JSON.stringify(first.slice(0, 80))}`);
    if (sm[1] !== '2.0') throw new SipParseError(`unsupported SIP version in response: ${sm[1]}`);
    const status = Number(sm[2]);
    if (status < 100 || status > 699) throw new SipParseError(`status code out of range: ${status}`);
    message = new SipResponse(status, sm[3] ?? '');
  }

  // Unfold continuation lines (§7.3.1) and split name: value.
  let current: [string, string] | undefined;
  for (let pos = eol + 1; pos < head.length; ) {
    let end = head.indexOf('\n', pos);
    if (end === -1) end = head.length;
    const from = pos;
    pos = end + 1;
    if (end > from && head.charCodeAt(end - 1) === 0x0d) end--;
    if (end === from) continue;
    const c0 = head.charCodeAt(from);
    if (c0 === 0x20 || c0 === 0x09) {
      if (current) {
        const more = trimmed(head, from, end);
        current[1] += current[1].length > 0 && more.length > 0 ? ' ' + more : more;
      } else problems.push('continuation line without a header');
      continue;
    }
    let colon = from;
    while (colon < end && head.charCodeAt(colon) !== 0x3a) colon++; // bounded by the line: linear in the head
    if (colon === end || colon === from) {
      problems.push(`malformed header line: ${head.slice(from, Math.min(end, from + 40))}`);
      current = undefined;
      continue;
    }
    const name = headerName(head.slice(from, colon));
    if (name === undefined) {
      problems.push(`malformed header name: ${head.slice(from, colon).trim().toLowerCase().slice(0, 40)}`);
      current = undefined;
      continue;
    }
    current = [name, trimmed(head, colon + 1, end)];
    message.headers.entries.push(current);
  }

  const clHeader = message.headers.get('content-length');
  let contentLength: number | undefined;
  if (clHeader !== undefined) {
    if (!/^\d{1,9}$/.test(clHeader)) problems.push(`malformed Content-Length: ${clHeader.slice(0, 20)}`);
    else contentLength = Number(clHeader);
    if (message.headers.count('content-length') > 1) problems.push('more than one Content-Length');
  }
  const available = buf.length - bodyStart;
  if (datagram) {
    if (contentLength !== undefined && contentLength > available) {
      problems.push('Content-Length larger than the datagram');
      message.body = available > 0 ? buf.subarray(bodyStart) : EMPTY;
    } else {
      // §18.3: octets past Content-Length in a datagram are discarded.
      const len = contentLength ?? available;
      message.body = len > 0 ? Buffer.from(buf.subarray(bodyStart, bodyStart + len)) : EMPTY;
    }
  } else {
    message.body = available > 0 ? Buffer.from(buf.subarray(bodyStart)) : EMPTY;
  }
  return { message, problems };
}

/** Raw header names seen (as written, with any SP/HTAB before the colon) → long lower-case form. */
const names = new Map<string, string>();
const NAMES_MAX = 512;
const TOKEN = /^[a-z0-9\-.!%*_+`'~]+$/;

/** The long, lower-case form of a header name as written before the colon; undefined if it is not a token. */
function headerName(raw: string): string | undefined {
  let name = names.get(raw);
  if (name !== undefined) return name;
  name = trimmed(raw, 0, raw.length).toLowerCase();
  if (!TOKEN.test(name)) return undefined;
  if (name.length === 1) name = COMPACT_FORMS[name] ?? name;
  // Owned key: a slice of the head would keep the whole request alive in the cache.
  if (names.size < NAMES_MAX) names.set(ownString(raw), name);
  return name;
}

/**
 * s[from, end) without leading and trailing SP/HTAB only: String.prototype.trim() would also
 * eat U+FEFF, NBSP and other Unicode spaces that belong to a UTF-8 header value (RFC 4475
 * §3.1.1.2 intmeth).
 */
function trimmed(s: string, from: number, end: number): string {
  while (from < end && (s.charCodeAt(from) === 0x20 || s.charCodeAt(from) === 0x09)) from++;
  while (end > from && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
  return s.slice(from, end);
}

/** Headers without which no request can be processed (RFC 3261 §8.1.1). */
const MANDATORY = ['via', 'call-id', 'cseq', 'from', 'to'] as const;

/**
 * Semantic checks of a request after parsing; returns a reason phrase for a 400, or undefined.
 */
export function validateRequest(req: SipRequest, problems: string[]): string | undefined {
  for (const h of MANDATORY) {
    if (!req.headers.has(h))
      return `Missing ${h === 'call-id' ? 'Call-ID' : h === 'cseq' ? 'CSeq' : h[0]!.toUpperCase() + h.slice(1)} header`;
  }
  if (problems.length > 0) return problems[0]!.replace(/[\r\n]/g, ' ').slice(0, 100);
  try {
    // Every Via, not just the top one (RFC 4475 §3.1.2.1 badinv01); the top one is parsed once.
    // A sent-protocol other than SIP/2.0 only routes the 505 of a request of that version.
    if (req.topVia.sentProtocol !== undefined) return 'Malformed Via header';
    const vias = req.headers.getAll('via');
    for (let i = 1; i < vias.length; i++) if (parseVia(vias[i]!).sentProtocol !== undefined) return 'Malformed Via header';
  } catch {
    return 'Malformed Via header';
  }
  let cseq: SipRequest['cseq'];
  try {
    cseq = req.cseq;
  } catch {
    return 'Malformed CSeq header';
  }
  if (cseq.method !== req.method) return 'CSeq method does not match the request method';
  for (const h of ['from', 'to'] as const) {
    if (req.headers.count(h) > 1) return `More than one ${h === 'from' ? 'From' : 'To'} header`;
    try {
      req[h];
    } catch {
      return `Malformed ${h === 'from' ? 'From' : 'To'} header`;
    }
  }
  if (req.headers.count('call-id') > 1) return 'More than one Call-ID header';
  if (req.headers.count('cseq') > 1) return 'More than one CSeq header';
  const mf = req.headers.get('max-forwards');
  // 1*DIGIT (leading zeros allowed, RFC 4475 §3.1.1.1), at most 255 (RFC 3261 §20.22).
  if (mf !== undefined && (!/^\d{1,10}$/.test(mf.trim()) || Number(mf) > 255)) return 'Malformed Max-Forwards header';
  if (!/^[a-z][a-z0-9+\-.]*:/i.test(req.uri)) return 'Malformed Request-URI';
  return undefined;
}

/** True for messages with a usable top Via, i.e. a response can be routed back. */
export function hasRoutableVia(msg: SipMessage): boolean {
  try {
    msg.topVia;
    return true;
  } catch {
    return false;
  }
}

export interface FramerLimits {
  maxMessageSize: number;
}

const CONTENT_LENGTH_LINE = /(?:^|\n)(?:content-length|l)[ \t]*:[ \t]*(\d+)/i;

/**
 * Cuts a TCP byte stream into messages using Content-Length (RFC 3261 §18.3). Keep-alive
 * CRLFs between messages (RFC 5626 §4.4.1) are reported so the caller can answer a ping.
 *
 * Linear in the bytes received however they are chunked (issue 12: a message trickled in byte
 * by byte was copied and searched again from its start on every chunk): received bytes go into
 * a buffer that doubles when full, the search for the blank line resumes where the last one
 * stopped, and a message's length is read from its header once.
 */
export class StreamFramer {
  /** Unread bytes are buf[start, end); bytes before `end` are never written again (messages handed out are views of them). */
  private buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  /** buf was allocated here and may be appended to in place. */
  private owned = false;
  /** Bytes of the current message's head (from `start`) already searched for the blank line. */
  private searched = 0;
  /** Total length of the current message once its header section has been read. */
  private total = -1;
  /** CR/LF octets seen between messages since the last message or ping, across chunks. */
  private crlfRun = 0;
  /** Bytes searched or copied so far: a work counter the tests hold against the bytes received. */
  work = 0;

  constructor(private readonly limits: FramerLimits) {}

  /** Bytes received but not yet forming a complete message. */
  get pending(): number {
    return this.end - this.start;
  }

  private append(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.end === this.start) {
      this.buf = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.owned = false;
      return;
    }
    if (this.owned && this.end + chunk.length <= this.buf.length) {
      chunk.copy(this.buf, this.end);
      this.end += chunk.length;
      this.work += chunk.length;
      return;
    }
    const pending = this.end - this.start;
    const next = Buffer.allocUnsafe(Math.max(4096, 2 * (pending + chunk.length)));
    this.buf.copy(next, 0, this.start, this.end);
    chunk.copy(next, pending);
    this.work += pending + chunk.length;
    this.buf = next;
    this.start = 0;
    this.end = pending + chunk.length;
    this.owned = true;
  }

  /**
   * Add a chunk; returns complete messages (raw) and whether a double-CRLF ping was seen.
   * Throws SipParseError when the stream cannot be framed (the connection must be closed).
   */
  push(chunk: Buffer): { messages: Buffer[]; ping: boolean } {
    this.append(chunk);
    const messages: Buffer[] = [];
    let ping = false;
    for (;;) {
      if (this.total < 0 && this.searched === 0) {
        let s = this.start;
        while (s < this.end && (this.buf[s] === 0x0d || this.buf[s] === 0x0a)) s++;
        if (s > this.start) {
          this.work += s - this.start;
          this.crlfRun += s - this.start;
          if (this.crlfRun >= 4) {
            ping = true;
            this.crlfRun = 0;
          }
          this.start = s;
        }
        if (this.start === this.end) break;
        this.crlfRun = 0;
      }
      const view = this.buf.subarray(this.start, this.end);
      if (this.total < 0) {
        // Resume 3 bytes back: the blank line may straddle the previous chunk's end.
        const from = Math.max(0, this.searched - 3);
        const ends = findHeaderEnd(view, from);
        this.work += (ends ? ends[1] : view.length) - from;
        if (!ends) {
          this.searched = view.length;
          if (view.length > this.limits.maxMessageSize) throw new SipParseError('header section over the message size limit');
          break;
        }
        const head = view.toString('latin1', 0, ends[0]);
        this.work += head.length;
        const m = CONTENT_LENGTH_LINE.exec(head);
        if (!m) throw new SipParseError('Content-Length missing on a stream transport');
        const total = ends[1] + Number(m[1]);
        if (total > this.limits.maxMessageSize) throw new SipParseError('message over the size limit');
        this.total = total;
      }
      if (view.length < this.total) break;
      messages.push(view.subarray(0, this.total));
      this.start += this.total;
      this.total = -1;
      this.searched = 0;
    }
    if (this.start === this.end) {
      this.buf = EMPTY;
      this.start = this.end = 0;
      this.owned = false;
    }
    return { messages, ping };
  }
}
