/**
 * Worst-case inputs for every parsing step of a SIP message and of an XCAP URI, each as large
 * as a message may be, run through the parsers; meant to run under backtrack-guard.ts (which
 * sees any regular expression that backtracks more than linearly) and from the tests directly.
 *
 *   node linear-cases.js sip|xcap SIZE     prints "case NAME" per input, "work NAME W BYTES"
 *                                          for the TCP framer, then "done"
 *
 * Each family is a pattern that once made, or could make, a scan go back over what it had
 * read: runs of SP/HTAB between parts, a part that almost matches repeated, nesting
 * characters (<, ", [) repeated, many short lines.
 */
import { parseMessage, validateRequest, StreamFramer, SipParseError } from '../../transport/parser.js';
import { SipRequest, parseVia, parseCSeq, canonicalName } from '../../transport/message.js';
import { NameAddr, SipUri, normalizedAor } from '../../transport/uri.js';
import { splitList, parseParams } from '../../transport/grammar.js';
import { parseXcapUri } from '../../core/xcap/uri.js';
import { parseNodeSelector, parseNamespaceBindings } from '../../core/xcap/selectors.js';
import { XcapError } from '../../core/xcap/errors.js';
import { parseDigestHeader } from '../../core/xcap/auth.js';
import { parseEventHeader } from '../../core/packages/types.js';
import fc from 'fast-check';
import { amplifiedRequest, amplifiedXcap } from './sip-arbitraries.js';

/** prefix + unit repeated + suffix, about `size` characters long. */
export function fill(prefix: string, unit: string, suffix: string, size: number): string {
  const n = Math.max(1, Math.floor((size - prefix.length - suffix.length) / unit.length));
  return prefix + unit.repeat(n) + suffix;
}

const VIA = 'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKlinear';
const FROM = 'From: <sip:alice@example.com>;tag=a1';
const TO = 'To: <sip:alice@example.com>';
const REST = ['Call-ID: linear@example.com', 'CSeq: 1 OPTIONS', 'Max-Forwards: 70'];

/** A request with `startLine` and `headers` in place of the usual ones of the same name. */
function message(startLine: string, headers: string[] = []): string {
  const names = new Set(headers.map((h) => h.slice(0, h.indexOf(':')).trim().toLowerCase()));
  const base = [VIA, FROM, TO, ...REST].filter((h) => !names.has(h.slice(0, h.indexOf(':')).toLowerCase()));
  return [startLine, ...base, ...headers].join('\r\n') + '\r\n\r\n';
}

const OPT = 'OPTIONS sip:alice@example.com SIP/2.0';

/** SIP messages (whole, as one datagram) of about `size` bytes. */
export function sipCases(size: number): Array<[string, string]> {
  const h = (name: string, prefix: string, unit: string, suffix = ''): [string, string] => {
    const probe = message(OPT, [prefix + suffix]);
    return [name, message(OPT, [fill(prefix, unit, suffix, size - probe.length + prefix.length + suffix.length)])];
  };
  const line = (name: string, prefix: string, unit: string, suffix: string): [string, string] => {
    const probe = message('');
    return [name, message(fill(prefix, unit, suffix, size - probe.length))];
  };
  return [
    // Issue 12: the method, a run of spaces, (folded) more spaces, then the URI.
    line('request line: method then spaces', 'OPTIONS', ' ', ''),
    line('request line: method, spaces, URI', 'OPTIONS', ' ', 'sip:a@example.com SIP/2.0'),
    line('request line: method, spaces, folded spaces, URI', 'OPTIONS', ' ', `\r\n\t${' '.repeat(size / 4)}sip:a@example.com SIP/2.0`),
    line('request line: method, tabs, URI, tabs, no version', 'OPTIONS', '\t', 'sip:a@example.com\t\t\tSIP/'),
    line('request line: space-separated words', 'OPTIONS ', 'a ', 'SIP/2.0x'),
    line('request line: a URI of "SIP/" pieces', 'OPTIONS ', 'SIP/2 ', ' SIP/2.'),
    line('request line: digits and dots before the version', 'OPTIONS sip:a@b SIP/', '1.', '1.1'),
    line('status line: a reason with a line separator at the end', 'SIP/2.0 200 ', 'x', '\u2028'),
    line('status line: a version of digits', 'SIP/', '1', '.0 200 OK'),
    h('Via: spaces between the host and junk', `Via: SIP/2.0/UDP host`, ' ', 'x'),
    h('Via: spaces around slashes, repeated', 'Via: SIP', ' / ', 'x'),
    h('Via: a long host, then a line separator in the parameters', 'Via: SIP/2.0/UDP ', 'h', ';a=\u2028'),
    h('Via: many comma-separated elements', VIA, ', SIP/2.0/UDP h;branch=z9hG4bKx', ''),
    h('Via: semicolons', 'Via: SIP/2.0/UDP h', ';', ''),
    h('CSeq: spaces, a method, spaces, junk', 'CSeq: 1', ' ', 'OPTIONS x'),
    h('CSeq: digits', 'CSeq: ', '1', ' OPTIONS'),
    h('From: tag-like parameters', 'From: <sip:a@b>', ';tag =', ''),
    h('From: spaces after ;tag', 'From: <sip:a@b>;tag', ' ', ''),
    h('From: nested angle brackets', 'From: ', '<', 'sip:a@b>'),
    h('From: escaped quotes in the display name', 'From: "', '\\"', ' <sip:a@b>;tag=1'),
    h('From: an unterminated display name', 'From: "', 'a', ''),
    h('To: a long user part', 'To: <sip:', 'a', '@example.com>'),
    h('To: many URI parameters', 'To: <sip:a@b', ';x', '>'),
    h('To: parameters without values after =', 'To: <sip:a@b>', ';x=', ''),
    h('To: percent signs in the user part', 'To: <sip:', '%', '@b>'),
    h('To: a host of dots and a bad character', 'To: <sip:a@', '.', '!>'),
    h('To: port digits', 'To: <sip:a@b:', '1', '>'),
    h('Contact: commas', 'Contact: <sip:a@b>', ',', ''),
    h('Contact: quotes', 'Contact: ', '"', ''),
    h('Contact: angle brackets open and close', 'Contact: ', '<>', ''),
    h('Content-Length: digits', 'Content-Length: ', '0', ''),
    h('Max-Forwards: spaces', 'Max-Forwards: 1', ' ', 'x'),
    h('Event: parameters', 'Event: presence', ';id=1', ''),
    h('Accept: q parameters', 'Accept: application/pidf+xml', ';q = 0.', ''),
    h('Subject: folded lines', 'Subject: a', '\r\n b', ''),
    h('Expires: digits', 'Expires: ', '9', ''),
    h('Expires: spaces', 'Expires: 1', ' ', 'x'),
    h('SIP-If-Match: a long entity-tag', 'SIP-If-Match: ', 'a', ''),
    h('Record-Route: many', 'Record-Route: <sip:p@b;lr>', ',<sip:p@b;lr>', ''),
    h('Event: spaces and semicolons', 'Event: presence', ' ;', ''),
    h('Event: rate control digits', 'Event: presence;min-interval=', '1', ''),
    h('Event: an unterminated quoted parameter', 'Event: presence;id="', 'a', ''),
    h('Require: a long list', 'Require: a', ',a', ''),
    h('a header name of spaces', 'X', ' ', ': y'),
    h('a long header name', 'X', 'a', ': y'),
    h('many short headers', 'X: y', '\r\nX: y', ''),
    h('continuation lines without a header', 'X: y\r\nabc', '\r\n z', ''),
    h('header lines without a colon', 'X: y', '\r\nabc', ''),
    line('a Request-URI of scheme characters', 'OPTIONS ', 'a', ' SIP/2.0'),
    line('leading CRLFs', '\r\n', '\r\n', OPT),
  ];
}

/** Everything the receive path and core/ ask of a request, and the TCP framer. */
export function exerciseSip(text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let parsed: ReturnType<typeof parseMessage>;
  try {
    parsed = parseMessage(buf, true);
  } catch (err) {
    if (!(err instanceof SipParseError)) throw err;
    return;
  }
  const msg = parsed.message;
  const quiet = (f: () => unknown): void => {
    try {
      f();
    } catch (err) {
      if (!(err instanceof SyntaxError)) throw err;
    }
  };
  if (msg instanceof SipRequest) {
    validateRequest(msg, parsed.problems);
    quiet(() => normalizedAor(SipUri.parse(msg.uri)));
  }
  quiet(() => msg.topVia);
  for (const v of msg.headers.getAll('via')) quiet(() => parseVia(v));
  quiet(() => msg.cseq);
  quiet(() => normalizedAor(msg.from.uri));
  quiet(() => normalizedAor(msg.to.uri));
  void msg.fromTag;
  void msg.toTag;
  void msg.contentType;
  for (const c of msg.headers.getAll('contact')) quiet(() => NameAddr.parse(c));
  for (const [name, value] of msg.headers.entries) {
    canonicalName(name);
    splitList(value);
    parseParams(value, Math.max(0, value.indexOf(';')));
  }
  quiet(() => parseCSeq(msg.headers.get('cseq') ?? ''));
  parseEventHeader(msg.headers.get('event') ?? '');
  quiet(() => msg.intHeader('max-forwards'));
}

/**
 * Feed `text` (with a Content-Length) to a framer in chunks of `chunk` bytes; returns the
 * framer's work counter and the bytes fed.
 */
export function frame(text: string, chunk: number, maxMessageSize: number): { work: number; bytes: number } {
  const framer = new StreamFramer({ maxMessageSize });
  const withLength = text.replace(/\r\n\r\n$/, '\r\nContent-Length: 0\r\n\r\n');
  const buf = Buffer.from(withLength, 'utf8');
  for (let i = 0; i < buf.length; i += chunk) {
    try {
      framer.push(buf.subarray(i, i + chunk));
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err;
      break;
    }
  }
  return { work: framer.work, bytes: buf.length };
}

const ROOT = '/xcap-root';

/** XCAP request paths, node selectors and query components of about `size` characters. */
export function xcapCases(size: number): Array<[string, XcapKind, string]> {
  const p = (name: string, prefix: string, unit: string, suffix = ''): [string, 'path', string] => [
    name,
    'path',
    fill(prefix, unit, suffix, size),
  ];
  const s = (name: string, prefix: string, unit: string, suffix = ''): [string, 'selector', string] => [
    name,
    'selector',
    fill(prefix, unit, suffix, size),
  ];
  const q = (name: string, prefix: string, unit: string, suffix = ''): [string, 'query', string] => [
    name,
    'query',
    fill(prefix, unit, suffix, size),
  ];
  const d = (name: string, prefix: string, unit: string, suffix = ''): [string, 'digest', string] => [
    name,
    'digest',
    fill(prefix, unit, suffix, size),
  ];
  return [
    p('path: many segments', `${ROOT}/pres-rules/users/sip:a@b/`, 'a/', 'index'),
    p('path: empty segments', `${ROOT}/pres-rules/users/sip:a@b/`, '/', 'index'),
    p('path: percent-encoded XUI', `${ROOT}/pres-rules/users/sip:`, '%41', '@b/index'),
    p('path: a bad percent escape at the end', `${ROOT}/pres-rules/users/sip:`, 'a', '%4/index'),
    p('path: many ~~ that are not the separator', `${ROOT}/pres-rules/users/sip:a@b/index`, '~~', ''),
    p('path: separators', `${ROOT}/pres-rules/users/sip:a@b/index`, '/~~/', ''),
    s('selector: many steps', 'ruleset', '/rule', ''),
    s('selector: open brackets', 'ruleset', '[', ''),
    s('selector: positions', 'ruleset', '[1]', ''),
    s('selector: attribute test with spaces', 'ruleset[@id', ' ', '= "a"]'),
    s('selector: attribute test, unterminated value', 'ruleset[@id="', 'a', ''),
    s('selector: quotes', 'ruleset/', '"', ''),
    s('selector: character references', 'ruleset[@id="', '&#x1', ';"]'),
    s('selector: colons', 'ruleset/', 'a:', 'b'),
    s('selector: @ terminals', 'ruleset/', '@', ''),
    q('query: xmlns( then spaces', 'xmlns(', ' ', ''),
    q('query: many bindings', '', 'xmlns(a=urn:x)', ''),
    q('query: plus signs', 'xmlns(a=', '+', ')'),
    q('query: an unclosed binding', 'xmlns(a=', 'b', ''),
    q('query: percent escapes', 'xmlns(a=', '%20', ')'),
    d('Authorization: spaces after Digest', 'Digest', ' ', 'x'),
    d('Authorization: many parameters', 'Digest ', 'a=b, ', ''),
    d('Authorization: escaped quotes, unterminated', 'Digest a="', '\\"', ''),
    d('Authorization: backslashes', 'Digest a="', '\\', ''),
    d('Authorization: spaces around =', 'Digest a', ' ', '= x'),
  ];
}

export type XcapKind = 'path' | 'selector' | 'query' | 'digest';

export function exerciseXcap(kind: XcapKind, text: string): void {
  if (kind === 'digest') {
    parseDigestHeader(text);
    return;
  }
  try {
    if (kind === 'path') {
      const uri = parseXcapUri(ROOT, text);
      if (uri?.nodeSelector !== undefined) parseNodeSelector(uri.nodeSelector, {});
    } else if (kind === 'selector') parseNodeSelector(text, { a: 'urn:a' });
    else parseNamespaceBindings(text);
  } catch (err) {
    if (!(err instanceof XcapError)) throw err;
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const [mode, sizeArg] = process.argv.slice(2);
  const size = Number(sizeArg);
  if (mode === 'sip') {
    for (const [name, text] of sipCases(size)) {
      exerciseSip(text);
      const { work, bytes } = frame(text, 7, size * 2);
      console.log(`case ${name}`);
      console.log(`work ${name}\t${work}\t${bytes}`);
    }
  } else if (mode === 'xcap') {
    for (const [name, kind, text] of xcapCases(size)) {
      exerciseXcap(kind, text);
      console.log(`case ${name}`);
    }
  } else if (mode === 'fuzz-sip' || mode === 'fuzz-xcap') {
    // Generated fragments repeated to SIZE characters (sip-arbitraries.ts), seeded, bounded.
    const [seed, runs] = process.argv.slice(4).map(Number);
    const params = { seed: seed!, numRuns: runs! };
    if (mode === 'fuzz-sip')
      fc.assert(
        fc.property(amplifiedRequest(size), (text) => exerciseSip(text)),
        params,
      );
    else
      fc.assert(
        fc.property(amplifiedXcap(size), ([kind, text]) => exerciseXcap(kind, text)),
        params,
      );
    console.log(`case ${mode} ${runs}`);
  } else if (mode === 'control') {
    // The Request-Line pattern of before issue 12, cubic in a run of spaces: the guard must see it.
    /^([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+(.*?)[ \t]+SIP\/(\d+\.\d+)[ \t]*$/.exec('OPTIONS' + ' '.repeat(size));
    console.log('case control');
  } else throw new Error(`unknown mode ${mode}`);
  console.log('done');
}
