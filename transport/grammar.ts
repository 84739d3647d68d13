/**
 * Small lexical helpers for RFC 3261 §25 constructs that several header parsers share:
 * comma-separated lists, header parameters and quoted strings. They scan by index and
 * allocate only the strings they return.
 */

/** Split a header value on commas that are outside quotes and angle brackets (RFC 3261 §7.3.1). */
export function splitList(value: string): string[] {
  if (value.indexOf(',') === -1) return [value.trim()];
  const out: string[] = [];
  let depthAngle = 0;
  let inQuote = false;
  let start = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c /* < */) depthAngle++;
    else if (c === 0x3e /* > */) depthAngle = Math.max(0, depthAngle - 1);
    else if (c === 0x2c /* , */ && depthAngle === 0) {
      const part = value.slice(start, i).trim();
      if (part.length > 0) out.push(part);
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last.length > 0) out.push(last);
  return out;
}

/**
 * Parse `;name=value;flag` parameters starting at `from`. Names are lower-cased; a flag
 * without value maps to the empty string; quoted values are unquoted.
 */
export function parseParams(text: string, from = 0): Map<string, string> {
  const params = new Map<string, string>();
  let i = from;
  const n = text.length;
  while (i < n) {
    let c = text.charCodeAt(i);
    while (i < n && (c === 0x3b /* ; */ || c === 0x20 || c === 0x09)) c = text.charCodeAt(++i);
    if (i >= n) break;
    let j = i;
    while (j < n && (c = text.charCodeAt(j)) !== 0x3d /* = */ && c !== 0x3b) j++;
    const name = lowerTrimmed(text, i, j);
    if (j < n && c === 0x3d) {
      j++;
      while (j < n && ((c = text.charCodeAt(j)) === 0x20 || c === 0x09)) j++;
      if (c === 0x22 /* " */ && j < n) {
        const quoted = readQuotedOrRest(text, j);
        params.set(name, quoted[0]);
        j = quoted[1];
        while (j < n && text.charCodeAt(j) !== 0x3b) j++;
      } else {
        let k = j;
        while (k < n && text.charCodeAt(k) !== 0x3b) k++;
        params.set(name, text.slice(j, k).trim());
        j = k;
      }
    } else {
      params.set(name, '');
    }
    if (name.length === 0) params.delete('');
    i = j;
  }
  return params;
}

/** text[from, end) trimmed and lower-cased; a name of visible lower-case ASCII is taken as it is. */
function lowerTrimmed(text: string, from: number, end: number): string {
  for (let k = from; k < end; k++) {
    const c = text.charCodeAt(k);
    if (c < 0x21 || c > 0x7e || (c >= 0x41 && c <= 0x5a)) return text.slice(from, end).trim().toLowerCase();
  }
  return text.slice(from, end);
}

/**
 * readQuoted, except that an unterminated quoted-string is the rest of the text: a parameter
 * parser that throws turned an Event header `presence;id="abc` into a 500. Still one pass.
 */
function readQuotedOrRest(text: string, start: number): [string, number] {
  try {
    return readQuoted(text, start);
  } catch {
    return [text.slice(start + 1), text.length];
  }
}

/** Read a quoted-string starting at the opening quote; returns [unquoted, indexAfterClosingQuote]. */
export function readQuoted(text: string, start: number): [string, number] {
  let out = '';
  let i = start + 1;
  while (i < text.length) {
    const ch = text[i];
    if (ch === '\\' && i + 1 < text.length) {
      out += text[i + 1];
      i += 2;
      continue;
    }
    if (ch === '"') return [out, i + 1];
    out += ch;
    i++;
  }
  throw new SyntaxError('unterminated quoted string');
}

/** Serialise parameters back to `;a=b;c` form. */
export function formatParams(params: Map<string, string>): string {
  let s = '';
  for (const [k, v] of params) s += v === '' ? `;${k}` : `;${k}=${needsQuote(v) ? quote(v) : v}`;
  return s;
}

function needsQuote(v: string): boolean {
  return /[\s";,<>]/.test(v);
}

export function quote(v: string): string {
  return '"' + v.replace(/["\\]/g, (m) => '\\' + m) + '"';
}

/** RFC 3261 token characters. */
const TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
export function isToken(s: string): boolean {
  return TOKEN_RE.test(s);
}

/** The SIP methods of the IANA registry: a request with another method is not recognised (501). */
export const SIP_METHODS: ReadonlySet<string> = new Set([
  'ACK',
  'BYE',
  'CANCEL',
  'INFO',
  'INVITE',
  'MESSAGE',
  'NOTIFY',
  'OPTIONS',
  'PRACK',
  'PUBLISH',
  'REFER',
  'REGISTER',
  'SUBSCRIBE',
  'UPDATE',
]);
