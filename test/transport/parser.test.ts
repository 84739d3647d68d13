/**
 * Unit tests of the SIP message model, parser and serializer (RFC 3261 §7, §18.3, §20, §25):
 * compact forms, folding, lists, quoted strings, name-addr/addr-spec, datagram and stream
 * framing, and the round trip through toBuffer().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMessage, validateRequest, StreamFramer, SipParseError, hasRoutableVia } from '../../transport/parser.js';
import { SipRequest, SipResponse, parseVia, parseCSeq, canonicalName, createResponse, formatVia } from '../../transport/message.js';
import { NameAddr, SipUri } from '../../transport/uri.js';
import { splitList, parseParams, readQuoted, quote } from '../../transport/grammar.js';

const CRLF = '\r\n';
const raw = (lines: string[], body = ''): Buffer => Buffer.from(lines.join(CRLF) + CRLF + CRLF + body);

function request(buf: Buffer, datagram = true): { req: SipRequest; problems: string[] } {
  const { message, problems } = parseMessage(buf, datagram);
  assert.ok(message instanceof SipRequest, 'expected a request');
  return { req: message, problems };
}

const BASE = [
  'OPTIONS sip:alice@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds',
  'Max-Forwards: 70',
  'To: <sip:alice@example.com>',
  'From: "Bob" <sip:bob@example.org>;tag=1928301774',
  'Call-ID: a84b4c76e66710@pc33.example.org',
  'CSeq: 314159 OPTIONS',
];

// ───────────────────────────── start line ─────────────────────────────

test('a request line gives method, Request-URI and no problems', () => {
  const { req, problems } = request(raw([...BASE, 'Content-Length: 0']));
  assert.equal(req.method, 'OPTIONS');
  assert.equal(req.uri, 'sip:alice@example.com');
  assert.deepEqual(problems, []);
  assert.equal(validateRequest(req, problems), undefined);
});

test('a status line gives status and reason phrase; the empty and the unusual reason phrase parse', () => {
  const r = parseMessage(Buffer.from('SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n'), true).message;
  assert.ok(r instanceof SipResponse);
  assert.equal(r.status, 180);
  assert.equal(r.reason, 'Ringing');
  const empty = parseMessage(Buffer.from('SIP/2.0 100 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n'), true).message as SipResponse;
  assert.equal(empty.status, 100);
  assert.equal(empty.reason, '');
});

test('a status code of more than three digits is not a status line (RFC 4475 §3.1.2.19 bigcode)', () => {
  const buf = raw([
    'SIP/2.0 4294967301 better not break the receiver',
    'Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe',
    'Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i',
    'CSeq: 353494 INVITE',
    'From: <sip:user@example.com>;tag=39ansfi3',
    'To: <sip:user@example.edu>;tag=902jndnke3',
    'Content-Length: 0',
  ]);
  assert.throws(() => parseMessage(buf, true), SipParseError);
});

test('leading CRLFs before the start line are ignored (RFC 3261 §7.5)', () => {
  const { req } = request(Buffer.concat([Buffer.from('\r\n\r\n'), raw([...BASE, 'Content-Length: 0'])]));
  assert.equal(req.method, 'OPTIONS');
});

test('garbage, an HTTP request and half a start line are not SIP', () => {
  assert.throws(() => parseMessage(Buffer.from([0x00, 0xff, 0x13, 0x37, 0x0d, 0x0a, 0x42]), true), SipParseError);
  assert.throws(() => parseMessage(Buffer.from('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n'), true), SipParseError);
  assert.throws(() => parseMessage(Buffer.from('OPTIONS sip:'), true), SipParseError);
  assert.throws(() => parseMessage(Buffer.from('SIP/2.0 99 Too Small\r\n\r\n'), true), SipParseError);
});

test('an unsupported version in a request is a problem reported, not a throw', () => {
  const lines = [...BASE, 'Content-Length: 0'];
  lines[0] = 'OPTIONS sip:alice@example.com SIP/7.0';
  const { req, problems } = request(raw(lines));
  assert.equal(req.method, 'OPTIONS');
  assert.match(problems.join(), /SIP\/7\.0/);
  assert.match(validateRequest(req, problems) ?? '', /version/i);
});

// ───────────────────────────── headers ─────────────────────────────

test('compact header forms map to their long names (RFC 3261 §7.3.3, RFC 6665 §8.2.1)', () => {
  const buf = raw(
    [
      'SUBSCRIBE sip:alice@example.com SIP/2.0',
      'v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcompact',
      'f: <sip:bob@example.org>;tag=a1',
      't: <sip:alice@example.com>',
      'i: compact-1@example.org',
      'CSeq: 1 SUBSCRIBE',
      'm: <sip:bob@192.0.2.1>',
      'o: presence',
      'u: presence, message-summary',
      'k: eventlist',
      'c: text/plain',
      'l: 5',
    ],
    'hello',
  );
  const { req, problems } = request(buf);
  assert.deepEqual(problems, []);
  const h = req.headers;
  assert.equal(h.get('via'), 'SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcompact');
  assert.equal(req.fromTag, 'a1');
  assert.equal(req.to.uri.toString(), 'sip:alice@example.com');
  assert.equal(req.callId, 'compact-1@example.org');
  assert.equal(h.get('contact'), '<sip:bob@192.0.2.1>');
  assert.equal(h.get('event'), 'presence');
  assert.deepEqual(h.getAll('allow-events'), ['presence', 'message-summary']);
  assert.equal(h.get('supported'), 'eventlist');
  assert.equal(req.contentType, 'text/plain');
  assert.equal(h.get('content-length'), '5');
  assert.equal(req.body.toString(), 'hello');
  assert.equal(validateRequest(req, problems), undefined);
  // Serialised with long, canonical names.
  const out = req.toString();
  for (const name of [
    'Via:',
    'From:',
    'To:',
    'Call-ID:',
    'Contact:',
    'Event:',
    'Allow-Events:',
    'Supported:',
    'Content-Type:',
    'Content-Length: 5',
  ]) {
    assert.ok(out.includes(`\r\n${name}`), `${name} in ${out}`);
  }
});

test('header names are case-insensitive and may have LWS before the colon', () => {
  const buf = raw([
    'OPTIONS sip:alice@example.com SIP/2.0',
    'vIa  : SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcase',
    'MaX-fOrWaRdS: 0068',
    'TO\t: <sip:alice@example.com>',
    'from:<sip:bob@example.org>;tag=77',
    'CALL-ID: case@x',
    'cseq: 9 OPTIONS',
    'CONTENT-LENGTH   :   0',
  ]);
  const { req, problems } = request(buf);
  assert.deepEqual(problems, []);
  assert.equal(req.topVia.branch, 'z9hG4bKcase');
  assert.equal(req.headers.get('max-forwards'), '0068');
  assert.equal(req.callId, 'case@x');
  assert.deepEqual(req.cseq, { seq: 9, method: 'OPTIONS' });
  assert.equal(req.fromTag, '77');
  assert.equal(req.intHeader('content-length'), 0);
  assert.equal(validateRequest(req, problems), undefined);
});

test('folded header lines are unfolded into one value with single spaces (RFC 3261 §7.3.1)', () => {
  const buf = raw([
    'OPTIONS sip:alice@example.com SIP/2.0',
    'Via  : SIP  /   2.0',
    ' /UDP',
    '    192.0.2.2;branch=z9hG4bK390skdjuw',
    'TO :',
    ' sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n',
    'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
    '  ;',
    '  tag = 98asjd8',
    'Call-ID: fold@x',
    'cseq: 0009',
    '\tOPTIONS',
    "Subject: I know you're there,",
    '         pull up a chair',
    'Content-Length: 0',
  ]);
  const { req, problems } = request(buf);
  assert.deepEqual(problems, []);
  assert.equal(req.headers.get('subject'), "I know you're there, pull up a chair");
  assert.equal(req.headers.get('to'), 'sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n');
  assert.equal(req.toTag, '1918181833n');
  assert.equal(req.to.uri.toString(), 'sip:vivekg@chair-dnrc.example.com');
  assert.deepEqual(req.cseq, { seq: 9, method: 'OPTIONS' });
  const via = req.topVia;
  assert.equal(via.protocol, 'UDP');
  assert.equal(via.host, '192.0.2.2');
  assert.equal(via.branch, 'z9hG4bK390skdjuw');
  assert.equal(req.from.displayName, 'J Rosenberg \\"');
  assert.equal(req.fromTag, '98asjd8');
  assert.equal(validateRequest(req, problems), undefined);
});

test('a continuation line before any header is a problem', () => {
  const lines = [...BASE, 'Content-Length: 0'];
  lines.splice(1, 0, ' orphan continuation');
  const { problems } = request(raw(lines));
  assert.match(problems.join(), /continuation/);
});

test('a header line without a colon, or with a bad name, is a problem that validateRequest reports', () => {
  for (const bad of ['This is not a header', 'Bad Name: value', '<x>: y']) {
    const { req, problems } = request(raw([...BASE, bad, 'Content-Length: 0']));
    assert.ok(problems.length > 0, bad);
    assert.ok(validateRequest(req, problems), bad);
  }
});

test('comma-separated Via, Contact and Route values split outside quotes and <> (RFC 3261 §7.3.1)', () => {
  const buf = raw([
    'OPTIONS sip:alice@example.com SIP/2.0',
    'Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa, SIP/2.0/TCP p2.example.com:5070;branch=z9hG4bKb',
    'Via: SIP/2.0/UDP [2001:db8::9:1]:5062;branch=z9hG4bKc;received=2001:db8::9:255',
    'Route: "Proxy, the first" <sip:p1.example.com;lr>, <sip:p2.example.com;lr;x="a,b">',
    'Route: <sip:p3.example.com;lr>',
    'Contact: "Doe, \\"John\\"" <sip:john@192.0.2.4>;q=0.7;expires=60, <sip:john@192.0.2.5?Subject=a,b>;q=0.1',
    'To: <sip:alice@example.com>',
    'From: <sip:bob@example.org>;tag=1',
    'Call-ID: lists@x',
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
  ]);
  const { req, problems } = request(buf);
  assert.deepEqual(problems, []);
  const vias = req.headers.getAll('via').map(parseVia);
  assert.deepEqual(
    vias.map((v) => [v.protocol, v.host, v.port, v.branch]),
    [
      ['UDP', 'p1.example.com', undefined, 'z9hG4bKa'],
      ['TCP', 'p2.example.com', 5070, 'z9hG4bKb'],
      ['UDP', '[2001:db8::9:1]', 5062, 'z9hG4bKc'],
    ],
  );
  assert.equal(vias[2]!.params.get('received'), '2001:db8::9:255');
  assert.equal(req.topVia.host, 'p1.example.com');

  const routes = req.headers.getAll('route').map((r) => NameAddr.parse(r));
  assert.equal(routes.length, 3);
  assert.equal(routes[0]!.displayName, 'Proxy, the first');
  assert.equal(routes[0]!.uri.host, 'p1.example.com');
  assert.ok(routes[0]!.uri.params.has('lr'));
  assert.equal(routes[1]!.uri.params.get('x'), 'a,b');
  assert.equal(routes[2]!.uri.host, 'p3.example.com');

  const contacts = req.headers.getAll('contact').map((c) => NameAddr.parse(c));
  assert.equal(contacts.length, 2);
  assert.equal(contacts[0]!.displayName, 'Doe, "John"');
  assert.equal(contacts[0]!.params.get('q'), '0.7');
  assert.equal(contacts[0]!.params.get('expires'), '60');
  assert.equal(contacts[1]!.uri.headers, 'Subject=a,b');
  assert.equal(contacts[1]!.params.get('q'), '0.1');
  // A header that is not a list is never split.
  assert.deepEqual(req.headers.getAll('from'), ['<sip:bob@example.org>;tag=1']);
});

test('splitList, parseParams and quoted strings with escapes', () => {
  assert.deepEqual(splitList('a, "b,\\"c" <x,y>;p="1,2" ,d,,'), ['a', '"b,\\"c" <x,y>;p="1,2"', 'd']);
  const p = parseParams(';Tag = 12 ;lr; q=0.5;name="a;b \\"q\\""; ;');
  assert.deepEqual(
    [...p],
    [
      ['tag', '12'],
      ['lr', ''],
      ['q', '0.5'],
      ['name', 'a;b "q"'],
    ],
  );
  assert.deepEqual(readQuoted('"a\\\\b\\"c" rest', 0), ['a\\b"c', 9]);
  assert.throws(() => readQuoted('"unterminated', 0), SyntaxError);
  assert.equal(quote('say "hi" \\o/'), '"say \\"hi\\" \\\\o/"');
});

// ───────────────────────────── URIs ─────────────────────────────

test('SipUri parses user, password, host, port, parameters and headers', () => {
  const u = SipUri.parse('sips:alice:secret@Example.COM:5061;transport=TCP;lr;maddr=239.255.255.1?Subject=hi&Priority=urgent');
  assert.equal(u.scheme, 'sips');
  assert.equal(u.user, 'alice');
  assert.equal(u.password, 'secret');
  assert.equal(u.host, 'Example.COM');
  assert.equal(u.port, 5061);
  assert.equal(u.transport, 'tcp');
  assert.ok(u.params.has('lr'));
  assert.equal(u.params.get('maddr'), '239.255.255.1');
  assert.equal(u.headers, 'Subject=hi&Priority=urgent');
  assert.equal(u.aor, 'sips:alice@example.com');
  assert.equal(u.toString(), 'sips:alice:secret@Example.COM:5061;transport=TCP;lr;maddr=239.255.255.1?Subject=hi&Priority=urgent');

  const v6 = SipUri.parse('sip:[2001:db8::10]:5070');
  assert.equal(v6.host, '[2001:db8::10]');
  assert.equal(v6.port, 5070);
  assert.equal(v6.user, undefined);
  assert.equal(SipUri.parse('sip:example.com').transport, 'udp');

  for (const bad of [
    'alice@example.com',
    'http://example.com/',
    'sip:alice@exa mple.com',
    'sip:alice@host:99999',
    'sip:@host',
    'sip:[::1',
    'sip:a@host:12x',
  ]) {
    assert.throws(() => SipUri.parse(bad), SyntaxError, bad);
  }
});

test('a user part may hold ";", "?", "," and "/" unescaped (RFC 3261 §25.1 user-unreserved; RFC 4475 semiuri, intmeth)', () => {
  const semi = SipUri.parse('sip:user;par=u%40example.net@example.com');
  assert.equal(semi.user, 'user;par=u%40example.net');
  assert.equal(semi.host, 'example.com');
  assert.equal(semi.params.size, 0);

  const crazy = SipUri.parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com");
  assert.equal(crazy.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  assert.equal(crazy.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
  assert.equal(crazy.host, 'example.com');
  assert.equal(crazy.headers, undefined);
  // ...while '?' after the host still starts the headers.
  const h = SipUri.parse('sip:bob@example.com;lr?Route=%3Csip:example.net%3E');
  assert.equal(h.user, 'bob');
  assert.ok(h.params.has('lr'));
  assert.equal(h.headers, 'Route=%3Csip:example.net%3E');
});

test('NameAddr: name-addr with quoted or token display name, addr-spec whose parameters belong to the header', () => {
  const a = NameAddr.parse('"Alice \\"the\\" Admin" <sip:alice@example.com;transport=tcp>;tag=abc;expires=30');
  assert.equal(a.displayName, 'Alice "the" Admin');
  assert.equal(a.uri.params.get('transport'), 'tcp');
  assert.equal(a.tag, 'abc');
  assert.equal(a.params.get('expires'), '30');
  assert.equal(a.toString(), '"Alice \\"the\\" Admin" <sip:alice@example.com;transport=tcp>;tag=abc;expires=30');

  const b = NameAddr.parse('Bob Smith <sip:bob@example.org>');
  assert.equal(b.displayName, 'Bob Smith');
  const c = NameAddr.parse('caller<sip:caller@example.com>;tag=323');
  assert.equal(c.displayName, 'caller');
  assert.equal(c.tag, '323');

  // addr-spec: ";tag" and ";transport" here are header parameters, not URI parameters (§20.10).
  const d = NameAddr.parse('sip:carol@example.net;transport=tcp;tag=xyz');
  assert.equal(d.displayName, undefined);
  assert.equal(d.uri.params.size, 0);
  assert.equal(d.tag, 'xyz');
  assert.equal(d.params.get('transport'), 'tcp');

  const star = NameAddr.parse(' * ');
  assert.ok(star.star);
  assert.equal(star.toString(), '*');

  for (const bad of [
    '"Mr. J. User <sip:j.user@example.com>',
    '<sip:alice@example.com',
    '"Alice" sip:alice@example.com',
    '<isbn:2983792873>',
  ]) {
    assert.throws(() => NameAddr.parse(bad), SyntaxError, bad);
  }
});

test('an addr-spec whose URI has headers must be a name-addr (RFC 3261 §20.10; RFC 4475 §3.1.2.13 regbadct)', () => {
  assert.throws(() => NameAddr.parse('sip:user@example.com?Route=%3Csip:sip.example.com%3E'), SyntaxError);
  const ok = NameAddr.parse('<sip:user@example.com?Route=%3Csip:sip.example.com%3E>');
  assert.equal(ok.uri.headers, 'Route=%3Csip:sip.example.com%3E');
});

test('parseVia accepts LWS around the slashes and rejects what is not a Via', () => {
  const v = parseVia('SIP  / 2.0  / TCP     spindle.example.com:5080   ;  branch  =   z9hG4bK9ikj8 ; rport ; received=192.0.2.9');
  assert.equal(v.protocol, 'TCP');
  assert.equal(v.host, 'spindle.example.com');
  assert.equal(v.port, 5080);
  assert.equal(v.branch, 'z9hG4bK9ikj8');
  assert.equal(v.params.get('rport'), '');
  assert.equal(v.params.get('received'), '192.0.2.9');
  assert.equal(formatVia(v), 'SIP/2.0/TCP spindle.example.com:5080;branch=z9hG4bK9ikj8;rport;received=192.0.2.9');
  // Another sent-protocol parses (it routes a 505, RFC 4475 §3.1.2.16) and says which it is.
  const other = parseVia('SIP/7.0/UDP c.example.com;branch=z9hG4bKx');
  assert.equal(other.sentProtocol, 'SIP/7.0');
  assert.equal(formatVia(other), 'SIP/7.0/UDP c.example.com;branch=z9hG4bKx');
  assert.equal(v.sentProtocol, undefined);
  for (const bad of [
    '',
    ';',
    'SIP/2.0/UDP',
    'SIP/2.0/UDP host:0',
    'SIP/2.0/UDP host:70000',
    'HTTP/1.1 host',
    'SIP/2.0/UDP host x',
    'SIP/2.0/UDP host;a=\u2028',
  ]) {
    assert.throws(() => parseVia(bad), SyntaxError, JSON.stringify(bad));
  }
});

test('parseCSeq: number and method, range checked', () => {
  assert.deepEqual(parseCSeq(' 4711   SUBSCRIBE '), { seq: 4711, method: 'SUBSCRIBE' });
  assert.deepEqual(parseCSeq('4294967295 OPTIONS'), { seq: 4294967295, method: 'OPTIONS' });
  for (const bad of ['4294967296 OPTIONS', '36893488147419103232 REGISTER', '-1 OPTIONS', 'OPTIONS', '1', '1 OPT IONS']) {
    assert.throws(() => parseCSeq(bad), SyntaxError, bad);
  }
});

// ───────────────────────────── Content-Length and bodies ─────────────────────────────

test('datagram: octets past Content-Length are discarded (RFC 3261 §18.3)', () => {
  const { req, problems } = request(raw([...BASE, 'Content-Type: text/plain', 'Content-Length: 5'], 'hello, and some trailing junk'));
  assert.deepEqual(problems, []);
  assert.equal(req.body.toString(), 'hello');
});

test('datagram: without Content-Length the body is the rest of the datagram', () => {
  const { req, problems } = request(raw([...BASE, 'Content-Type: text/plain'], 'all of it'));
  assert.deepEqual(problems, []);
  assert.equal(req.body.toString(), 'all of it');
});

test('datagram: a Content-Length larger than the datagram is a problem (RFC 4475 §3.1.2.2 clerr)', () => {
  const { req, problems } = request(raw([...BASE, 'Content-Type: text/plain', 'Content-Length: 9999'], 'short'));
  assert.match(problems.join(), /Content-Length larger than the datagram/);
  assert.match(validateRequest(req, problems)!, /Content-Length/);
});

test('malformed, negative and duplicate Content-Length values are problems (RFC 4475 ncl, mcl01)', () => {
  for (const cl of [['Content-Length: -999'], ['Content-Length: 12abc'], ['Content-Length: 0', 'l: 4'], ['Content-Length: 99999999999']]) {
    const { req, problems } = request(raw([...BASE, ...cl]));
    assert.ok(problems.length > 0, cl.join('|'));
    assert.ok(validateRequest(req, problems), cl.join('|'));
  }
});

test('a binary body survives parsing and serialisation byte for byte', () => {
  const body = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) body[i] = i;
  const head = Buffer.from([...BASE, 'Content-Type: application/octet-stream', `Content-Length: ${body.length}`].join(CRLF) + CRLF + CRLF);
  const { req, problems } = request(Buffer.concat([head, body]));
  assert.deepEqual(problems, []);
  assert.ok(req.body.equals(body));
  const again = request(req.toBuffer()).req;
  assert.ok(again.body.equals(body));
  // Stream framing cuts exactly the same body.
  const framer = new StreamFramer({ maxMessageSize: 65535 });
  const { messages } = framer.push(Buffer.concat([head, body, head, body]));
  assert.equal(messages.length, 2);
  for (const m of messages) assert.ok(request(m, false).req.body.equals(body));
});

// ───────────────────────────── validateRequest ─────────────────────────────

test('validateRequest names each missing mandatory header (RFC 3261 §8.1.1)', () => {
  const names: Record<string, string> = { via: 'Via', 'call-id': 'Call-ID', cseq: 'CSeq', from: 'From', to: 'To' };
  for (const [lower, canonical] of Object.entries(names)) {
    const { req, problems } = request(raw([...BASE, 'Content-Length: 0']));
    req.headers.remove(lower);
    const reason = validateRequest(req, problems);
    assert.ok(reason?.includes(canonical), `${lower}: ${reason}`);
  }
});

test('validateRequest: duplicate single-valued headers, CSeq mismatch, bad Max-Forwards, bad Request-URI (RFC 4475 multi01, mismatch01)', () => {
  const cases: Array<[string, (lines: string[]) => void, RegExp]> = [
    ['two From', (l) => l.push('From: <sip:caller@example.net>;tag=2923420123'), /From/],
    ['two To', (l) => l.push('To: sip:other@example.net'), /To/],
    ['two Call-ID', (l) => l.push('Call-ID: other@x'), /Call-ID/],
    ['two CSeq', (l) => l.push('CSeq: 314159 OPTIONS'), /CSeq/],
    ['CSeq method mismatch', (l) => (l[6] = 'CSeq: 8 INVITE'), /CSeq/],
    ['CSeq overflow', (l) => (l[6] = 'CSeq: 36893488147419103232 OPTIONS'), /CSeq/],
    ['Max-Forwards not a number', (l) => (l[2] = 'Max-Forwards: many'), /Max-Forwards/],
    ['Request-URI in <>', (l) => (l[0] = 'OPTIONS <sip:alice@example.com> SIP/2.0'), /Request-URI/],
    ['malformed To', (l) => (l[3] = 'To: "Mr. J. User <sip:j.user@example.com>'), /To/],
    ['malformed From', (l) => (l[4] = 'From: <isbn:2983792873>;tag=1'), /From/],
    ['malformed top Via', (l) => (l[1] = 'Via: SIP/2.0/UDP'), /Via/],
    ['malformed second Via', (l) => (l[1] += ';;,;,,'), /Via/],
  ];
  for (const [what, edit, reason] of cases) {
    const lines = [...BASE];
    edit(lines);
    const { req, problems } = request(raw([...lines, 'Content-Length: 0']));
    const r = validateRequest(req, problems);
    assert.ok(r !== undefined, `${what} accepted`);
    assert.match(r, reason, what);
    assert.ok(!/[\r\n]/.test(r) && r.length <= 100, 'a reason phrase fits on the status line');
  }
});

test('hasRoutableVia is false without a Via or with an unparseable one', () => {
  const { req } = request(raw([...BASE, 'Content-Length: 0']));
  assert.ok(hasRoutableVia(req));
  req.headers.remove('via');
  assert.ok(!hasRoutableVia(req));
  req.headers.append('via', 'SIP/2.0/UDP');
  assert.ok(!hasRoutableVia(req));
  // Another SIP version's Via routes (its 505), but the request is not valid as SIP/2.0.
  req.headers.set('via', 'SIP/7.0/UDP 192.0.2.1;branch=z9hG4bKx');
  assert.ok(hasRoutableVia(req));
  assert.equal(validateRequest(req, []), 'Malformed Via header');
});

// ───────────────────────────── serialisation ─────────────────────────────

test('serialiser round trip: parse(toBuffer()) gives the same message, and toBuffer() is stable', () => {
  const buf = raw(
    [
      'PUBLISH sip:alice@example.com SIP/2.0',
      'v: SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bKrt;rport, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKrt2',
      'f: "Alice, A." <sip:alice@example.com>;tag=x1',
      't: <sip:alice@example.com>',
      'i: roundtrip@x',
      'CSeq: 2 PUBLISH',
      'Max-Forwards: 70',
      'o: presence',
      'Expires: 3600',
      'SIP-If-Match: dx200xyz',
      'Subject: folded',
      '  value',
      'c: application/pidf+xml',
      'l: 12',
    ],
    '<presence/>\n',
  );
  const { req: a } = request(buf);
  const outA = a.toBuffer();
  const { req: b, problems } = request(outA);
  assert.deepEqual(problems, []);
  assert.equal(b.method, a.method);
  assert.equal(b.uri, a.uri);
  const noCl = (e: Array<[string, string]>): Array<[string, string]> => e.filter(([n]) => n !== 'content-length');
  assert.deepEqual(noCl(b.headers.entries), noCl(a.headers.entries));
  assert.ok(b.body.equals(a.body));
  assert.ok(b.toBuffer().equals(outA), 'serialising a parsed message again gives the same bytes');
  assert.equal(b.headers.get('subject'), 'folded value');
  assert.equal(b.headers.get('content-length'), '12');
  assert.equal(validateRequest(b, problems), undefined);

  const res = new SipResponse(200, 'OK');
  res.headers.append('via', 'SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKr');
  res.headers.append('sip-etag', 'abc');
  res.headers.append('expires', '60');
  const parsed = parseMessage(res.toBuffer(), true).message as SipResponse;
  assert.equal(parsed.status, 200);
  assert.equal(parsed.reason, 'OK');
  assert.equal(parsed.headers.get('sip-etag'), 'abc');
  assert.ok(parsed.toBuffer().equals(res.toBuffer()));
});

test('Content-Length is always written from the body, whatever the header said', () => {
  const { req } = request(raw([...BASE, 'Content-Length: 3'], 'abcdef'));
  assert.equal(req.body.toString(), 'abc');
  req.body = Buffer.from('0123456789');
  const s = req.toString();
  assert.equal(s.match(/Content-Length/g)?.length, 1);
  assert.ok(s.endsWith('Content-Length: 10\r\n\r\n0123456789'));
});

test('canonical header names on output: Call-ID, CSeq, SIP-ETag, WWW-Authenticate and the regular ones', () => {
  const expect: Record<string, string> = {
    'call-id': 'Call-ID',
    cseq: 'CSeq',
    'sip-etag': 'SIP-ETag',
    'sip-if-match': 'SIP-If-Match',
    'www-authenticate': 'WWW-Authenticate',
    'mime-version': 'MIME-Version',
    'content-type': 'Content-Type',
    'allow-events': 'Allow-Events',
    'max-forwards': 'Max-Forwards',
    via: 'Via',
    'x-some-thing': 'X-Some-Thing',
  };
  for (const [lower, canonical] of Object.entries(expect)) assert.equal(canonicalName(lower), canonical);
  const res = new SipResponse(401, 'Unauthorized');
  for (const lower of Object.keys(expect)) res.headers.append(lower, 'v');
  const text = res.toString();
  for (const canonical of Object.values(expect)) assert.ok(text.includes(`\r\n${canonical}: v\r\n`), canonical);
});

test('createResponse copies Via (all of them, in order), From, To, Call-ID, CSeq and adds the To tag', () => {
  const { req } = request(
    raw([
      'SUBSCRIBE sip:alice@example.com SIP/2.0',
      'Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1',
      'Via: SIP/2.0/UDP b.example.com;branch=z9hG4bK2',
      'From: <sip:bob@example.org>;tag=f',
      'To: <sip:alice@example.com>',
      'Call-ID: cr@x',
      'CSeq: 5 SUBSCRIBE',
      'Event: presence',
      'Content-Length: 0',
    ]),
  );
  const res = createResponse(req, 202, undefined, 'totag');
  assert.equal(res.reason, 'Accepted');
  assert.deepEqual(res.headers.getAll('via'), ['SIP/2.0/UDP a.example.com;branch=z9hG4bK1', 'SIP/2.0/UDP b.example.com;branch=z9hG4bK2']);
  assert.equal(res.toTag, 'totag');
  assert.equal(res.fromTag, 'f');
  assert.equal(res.callId, 'cr@x');
  assert.deepEqual(res.cseq, { seq: 5, method: 'SUBSCRIBE' });
  assert.equal(res.headers.has('event'), false);
  // A To that already has a tag keeps it.
  req.headers.set('to', '<sip:alice@example.com>;tag=existing');
  assert.equal(createResponse(req, 200, undefined, 'other').toTag, 'existing');
});

// ───────────────────────────── stream framing ─────────────────────────────

const OPT = (n: number, body = ''): Buffer =>
  raw(
    [
      'OPTIONS sip:alice@example.com SIP/2.0',
      `Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKframe${n}`,
      'To: <sip:alice@example.com>',
      'From: <sip:bob@example.org>;tag=1',
      `Call-ID: frame${n}@x`,
      `CSeq: ${n} OPTIONS`,
      `${n % 2 ? 'l' : 'Content-Length'}: ${Buffer.byteLength(body)}`,
    ],
    body,
  );

test('StreamFramer: several messages in one chunk, with CRLFs between them', () => {
  const f = new StreamFramer({ maxMessageSize: 65535 });
  const { messages, ping } = f.push(Buffer.concat([OPT(1, 'abc'), Buffer.from('\r\n'), OPT(2), OPT(3, 'x\r\n\r\ny')]));
  assert.equal(ping, false);
  assert.deepEqual(
    messages.map((m) => request(m, false).req.callId),
    ['frame1@x', 'frame2@x', 'frame3@x'],
  );
  assert.equal(request(messages[2]!, false).req.body.toString(), 'x\r\n\r\ny');
  assert.equal(f.pending, 0);
});

test('StreamFramer: one message fed byte by byte comes out once, whole', () => {
  const f = new StreamFramer({ maxMessageSize: 65535 });
  const m = OPT(4, 'body over\r\n\r\nseveral lines');
  const out: Buffer[] = [];
  for (let i = 0; i < m.length; i++) {
    out.push(...f.push(m.subarray(i, i + 1)).messages);
    if (i < m.length - 1) assert.equal(f.pending, i + 1);
  }
  assert.equal(out.length, 1);
  assert.ok(out[0]!.equals(m));
  assert.equal(f.pending, 0);
});

test('StreamFramer: a double CRLF between messages is a keep-alive ping (RFC 5626 §4.4.1), even split across chunks', () => {
  const f = new StreamFramer({ maxMessageSize: 65535 });
  assert.equal(f.push(Buffer.from('\r\n\r\n')).ping, true);
  assert.equal(f.push(Buffer.from('\r\n')).ping, false, 'a single CRLF is not a ping');
  assert.equal(f.pending, 0);
  const g = new StreamFramer({ maxMessageSize: 65535 });
  assert.equal(g.push(Buffer.from('\r\n')).ping, false);
  assert.equal(g.push(Buffer.from('\r\n')).ping, true, 'the second half of a ping completes it');
  const h = new StreamFramer({ maxMessageSize: 65535 });
  let pings = 0;
  for (const b of '\r\n\r\n') if (h.push(Buffer.from(b)).ping) pings++;
  assert.equal(pings, 1);
  const { messages, ping } = h.push(Buffer.concat([OPT(5), Buffer.from('\r\n\r\n')]));
  assert.equal(messages.length, 1);
  assert.equal(ping, true);
});

test('StreamFramer: no Content-Length on a stream, or a message over the size limit, cannot be framed', () => {
  const noCl = Buffer.from([...BASE].join(CRLF) + CRLF + CRLF);
  assert.throws(() => new StreamFramer({ maxMessageSize: 65535 }).push(noCl), SipParseError);
  assert.throws(() => new StreamFramer({ maxMessageSize: 1024 }).push(OPT(6, 'x'.repeat(2000))), /size limit/);
  // A header section that never ends is cut off at the limit too, without waiting for more.
  const f = new StreamFramer({ maxMessageSize: 1024 });
  f.push(Buffer.from('OPTIONS sip:a@b SIP/2.0\r\n'));
  assert.throws(() => f.push(Buffer.from('X-Filler: ' + 'y'.repeat(1100) + '\r\n')), /size limit/);
  // A message exactly at the limit is fine.
  const m = OPT(7);
  const { messages } = new StreamFramer({ maxMessageSize: m.length }).push(m);
  assert.equal(messages.length, 1);
});

test('Via: the usual spelling and the regular expression agree; anything but visible ASCII in sent-by or parameters is left to the regular expression', () => {
  const v = parseVia('SIP/2.0/udp 127.0.0.1:5060;branch=z9hG4bK1;rport;received=10.0.0.1');
  assert.deepEqual(
    [v.protocol, v.host, v.port, v.branch, v.params.get('rport'), v.params.get('received')],
    ['UDP', '127.0.0.1', 5060, 'z9hG4bK1', '', '10.0.0.1'],
  );
  const v6 = parseVia('SIP/2.0/TCP [::1]:5061 ;branch=z9hG4bK2');
  assert.deepEqual([v6.host, v6.port, v6.branch], ['[::1]', 5061, 'z9hG4bK2']);
  assert.throws(() => parseVia('SIP/2.0/UDP h\u00a0x;branch=z9hG4bK3'), /malformed Via/, 'NBSP inside the host');
  assert.throws(() => parseVia('SIP/2.0/UDP a\u000bb;branch=z9hG4bK3'), /malformed Via/, 'a vertical tab inside the host');
  assert.throws(() => parseVia('SIP/2.0/UDP h;branch=a\rb'), /malformed Via/, 'a bare CR in the parameters');
  assert.throws(() => parseVia('SIP/2.0/UDP h;branch=a\u2028b'), /malformed Via/, 'a line separator in the parameters');
  assert.equal(parseVia('SIP/2.0/UDP h\u00a0;branch=z9hG4bK4').host, 'h', 'trailing NBSP after the host is white space');
});

test('parameters: names lower-cased and trimmed, values trimmed of any white space, quoted values unquoted', () => {
  const p = parseParams(';LR;Branch = z9hG4bK1 ;a=b\u00a0;q\u000b=1;tag="x;y"');
  assert.deepEqual(
    [...p],
    [
      ['lr', ''],
      ['branch', 'z9hG4bK1'],
      ['a', 'b'],
      ['q', '1'],
      ['tag', 'x;y'],
    ],
  );
});

test('a header section of lines without a colon is reported, line by line, and parses in time linear in its size', () => {
  const head = 'OPTIONS sip:a@b SIP/2.0\r\n' + 'a\r\n'.repeat(20_000) + BASE.slice(1).join(CRLF) + CRLF + CRLF;
  const { message, problems } = parseMessage(Buffer.from(head), true);
  assert.equal(problems.length, 20_000);
  assert.match(problems[0]!, /malformed header line/);
  assert.equal(message.headers.get('call-id') !== undefined, true, 'the headers after them are still read');
});
