/**
 * RFC 4475 (SIP torture test messages) as far as they apply to a node that serves non-INVITE
 * requests: INVITEs are adapted to OPTIONS (or kept as another method where the method is the
 * point). Valid messages (§3.1.1) must parse to the expected values and be accepted; invalid
 * ones (§3.1.2, §3.3) are sent over UDP to a real node and must get a 400 (or the status
 * RFC 4475 names), or no answer when no response can be routed, and the node must keep
 * answering OPTIONS.
 *
 * To make a response routable to the test, the end-to-end cases insert one extra Via (ours,
 * with rport) above the message's own Via header fields; everything else is sent verbatim.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { parseMessage, validateRequest } from '../../transport/parser.js';
import { SipRequest, SipResponse, parseVia } from '../../transport/message.js';
import { NameAddr, SipUri } from '../../transport/uri.js';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa, type Received } from '../support/sip-ua.js';

/** Header block written with "\n" line ends → CRLF, blank line, then the body. */
function sip(head: string, body: Buffer | string = ''): Buffer {
  const h = Buffer.from(head.replace(/^\n/, '').replace(/\r?\n/g, '\r\n') + '\r\n\r\n', 'utf8');
  return Buffer.concat([h, typeof body === 'string' ? Buffer.from(body, 'utf8') : body]);
}

const SDP = [
  'v=0',
  'o=mhandley 29739 7272939 IN IP4 192.0.2.3',
  's=-',
  'c=IN IP4 192.0.2.4',
  't=0 0',
  'm=audio 49217 RTP/AVP 0 12',
  'm=video 3227 RTP/AVP 31',
  'a=rtpmap:31 LPC',
  '',
].join('\r\n');

function parseRequest(buf: Buffer): { req: SipRequest; problems: string[] } {
  const { message, problems } = parseMessage(buf, true);
  assert.ok(message instanceof SipRequest, 'expected a request');
  return { req: message, problems };
}

function accepted(buf: Buffer): SipRequest {
  const { req, problems } = parseRequest(buf);
  assert.deepEqual(problems, []);
  assert.equal(validateRequest(req, problems), undefined);
  return req;
}

// ───────────────────────────── §3.1.1 valid messages ─────────────────────────────

/** §3.1.1.1 wsinv: a short tortuous request (INVITE → OPTIONS). */
const wsinv = (): Buffer =>
  sip(
    `
OPTIONS sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : ${SDP.length}
cseq: 0009
  OPTIONS
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33`,
    SDP,
  );

/** §3.1.1.2 intmeth: a wide range of valid characters (unknown method kept). */
const intmeth = (): Buffer =>
  sip(
    `
!interesting-Method0123456789_*+\`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+\`'~
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~\` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1'+\`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word\`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+\`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_\`'~:\ufeff\u5927\u505c\u96fb
Content-Length: 0`,
  );

/** §3.1.1.3 esc01: valid use of % escaping (INVITE → OPTIONS). */
const esc01 = (): Buffer =>
  sip(
    `
OPTIONS sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 OPTIONS
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: ${SDP.length}`,
    SDP,
  );

/** §3.1.1.4 escnull: escaped NULs in URIs. */
const escnull = (): Buffer =>
  sip(`
REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0`);

/** §3.1.1.5 esc02: % that is not an escape; RE%47IST%45R is not REGISTER. */
const esc02 = (): Buffer =>
  sip(`
RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0`);

/** §3.1.1.6 lwsdisp: no LWS between display name and <. */
const lwsdisp = (): Buffer =>
  sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0`);

/** §3.1.1.7 longreq: long values in header fields (INVITE → OPTIONS). */
const LONG = {
  displayName: 'I have a user name of ' + 'extreme'.repeat(40) + ' proportion',
  tag: '12982424' + '9'.repeat(300),
  callId: 'longreq.one' + 'really'.repeat(60) + 'longcallid',
  headerName: 'Unknown-' + 'Long'.repeat(40) + '-Name',
  branch: 'z9hG4bK' + 'longbranchvalue'.repeat(20),
  vias: 40,
  routes: 20,
};
const longreq = (): Buffer => {
  const lines = [
    'OPTIONS sip:user@example.com SIP/2.0',
    `To: "${LONG.displayName}" <sip:user@example.com>`,
    `From: sip:caller@example.net;tag=${LONG.tag}`,
    `Call-ID: ${LONG.callId}`,
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    `${LONG.headerName}: unknown-${'long'.repeat(30)}-value; unknown-long-parameter-name=${'x'.repeat(200)}`,
    'Route: ' + Array.from({ length: LONG.routes }, (_, i) => `<sip:hop${i}.${'many'.repeat(10)}.example.com;lr>`).join(', '),
  ];
  for (let i = LONG.vias - 1; i > 0; i--) lines.push(`${i % 2 ? 'v' : 'Via'}: SIP/2.0/TCP sip${i}.example.com`);
  lines.push(`Via: SIP/2.0/TCP 192.0.2.1;branch=${LONG.branch}`);
  lines.push(`Contact: <sip:amazinglylongcallername${'x'.repeat(200)}@host5.example.net>`);
  lines.push('Content-Type: application/sdp', `l: ${SDP.length}`);
  return sip(lines.join('\n'), SDP);
};

/** §3.1.1.8 dblreq: extra trailing octets (a second request) in one datagram. */
const dblreq = (): Buffer =>
  Buffer.concat([
    sip(`
OPTIONS sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0`),
    sip(
      `
OPTIONS sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: ${SDP.length}`,
      SDP,
    ),
  ]);

/** §3.1.1.9 semiuri: semicolon-separated parameters in the URI user part. */
const semiuri = (): Buffer =>
  sip(`
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0`);

/** §3.1.1.10 transports: a variety of transport types in Via. */
const transports = (): Buffer =>
  sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0`);

/** §3.1.1.11 mpart01: a multipart MIME body with a binary part. */
const BINARY = Buffer.from(Array.from({ length: 256 }, (_, i) => (i * 7 + 13) & 0xff).concat([0x0d, 0x0a, 0x0d, 0x0a, 0x00]));
const MPART_BODY = Buffer.concat([
  Buffer.from('--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello\r\n'),
  Buffer.from('--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n'),
  BINARY,
  Buffer.from('\r\n--7a9cbec02ceef655--\r\n'),
]);
const mpart01 = (): Buffer =>
  sip(
    `
MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: ${MPART_BODY.length}`,
    MPART_BODY,
  );

/** badbranch (RFC 4475): a branch that is only the magic cookie is still a valid request. */
const badbranch = (): Buffer =>
  sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0`);

test('wsinv (§3.1.1.1): LWS, folding, odd case, compact forms and escaped quotes parse to the right values', () => {
  const req = accepted(wsinv());
  assert.equal(req.method, 'OPTIONS');
  assert.equal(req.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
  assert.equal(SipUri.parse(req.uri).params.has('unknownparam'), true);
  assert.equal(req.to.uri.toString(), 'sip:vivekg@chair-dnrc.example.com');
  assert.equal(req.toTag, '1918181833n');
  assert.equal(req.from.displayName, 'J Rosenberg \\"');
  assert.equal(req.from.uri.toString(), 'sip:jdrosen@example.com');
  assert.equal(req.fromTag, '98asjd8');
  assert.equal(req.headers.get('max-forwards'), '0068');
  assert.equal(req.callId, 'wsinv.ndaksdj@192.0.2.1');
  assert.deepEqual(req.cseq, { seq: 9, method: 'OPTIONS' });
  const vias = req.headers.getAll('via').map(parseVia);
  assert.deepEqual(
    vias.map((v) => [v.protocol, v.host, v.branch]),
    [
      ['UDP', '192.0.2.2', '390skdjuw'],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['UDP', '192.168.255.111', 'z9hG4bK30239'],
    ],
  );
  assert.equal(req.headers.get('subject'), '');
  assert.equal(req.headers.get('newfangledheader'), 'newfangled value continued newfangled value');
  assert.equal(req.headers.get('unknownheaderwithunusualvalue'), ';;,,;;,;');
  const route = NameAddr.parse(req.headers.get('route')!);
  assert.equal(route.uri.host, 'services.example.com');
  assert.deepEqual(
    [...route.uri.params],
    [
      ['lr', ''],
      ['unknownwith', 'value'],
      ['unknown-no-value', ''],
    ],
  );
  const contact = NameAddr.parse(req.headers.get('contact')!);
  assert.equal(contact.displayName, 'Quoted string ""');
  assert.deepEqual(
    [...contact.params],
    [
      ['newparam', 'newvalue'],
      ['secondparam', ''],
      ['q', '0.33'],
    ],
  );
  assert.equal(req.contentType, 'application/sdp');
  assert.equal(req.body.toString(), SDP);
});

test('intmeth (§3.1.1.2): unusual method, URI, display names, parameters, Call-ID and header name', () => {
  const req = accepted(intmeth());
  const method = "!interesting-Method0123456789_*+`.%indeed'~";
  assert.equal(req.method, method);
  assert.deepEqual(req.cseq, { seq: 139122385, method });
  const ruri = SipUri.parse(req.uri);
  assert.equal(ruri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  assert.equal(ruri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
  assert.equal(ruri.host, 'example.com');
  assert.equal(req.topVia.branch, "z9hG4bK-.!%66*_+`'~");
  assert.equal(req.to.displayName, 'BEL:\x07 NUL:\x00 DEL:\x7f');
  assert.equal(req.to.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
  assert.equal(req.from.displayName, "token1~` token2'+_ token3*%!.-");
  assert.equal(req.from.params.get("fromparam''~+*_!.-%"), 'работающий');
  assert.equal(req.fromTag, "_token~1'+`*%!-.");
  assert.equal(req.callId, 'intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
  assert.equal(req.headers.get("extensionheader-!.%*+_`'~"), '\ufeff大停電');
});

test('esc01 (§3.1.1.3): escaped characters stay escaped in URIs and parameters; "C" is Content-Type', () => {
  const req = accepted(esc01());
  assert.equal(req.uri, 'sip:sips%3Auser%40example.com@example.net');
  const ruri = SipUri.parse(req.uri);
  assert.equal(ruri.user, 'sips%3Auser%40example.com');
  assert.equal(ruri.host, 'example.net');
  assert.equal(req.to.uri.user, '%75se%72');
  assert.equal(req.from.uri.user, 'I%20have%20spaces');
  assert.equal(req.callId, 'esc01.239409asdfakjkn23onasd0-3234');
  const contact = NameAddr.parse(req.headers.get('contact')!);
  assert.equal(contact.uri.user, 'cal%6Cer');
  assert.ok(contact.uri.params.has('%6c%72'));
  assert.equal(contact.uri.params.get('n%61me'), 'v%61lue%25%34%31');
  assert.equal(req.contentType, 'application/sdp');
});

test('escnull (§3.1.1.4): %00 in URIs; "L:0" is Content-Length', () => {
  const req = accepted(escnull());
  assert.equal(req.to.uri.user, 'null-%00-null');
  assert.equal(req.fromTag, '839923423');
  assert.deepEqual(
    req.headers.getAll('contact').map((c) => NameAddr.parse(c).uri.user),
    ['%00', '%00%00'],
  );
  assert.equal(req.headers.get('content-length'), '0');
});

test('esc02 (§3.1.1.5): RE%47IST%45R is an unknown method, C%6Fntact an unknown header', () => {
  const req = accepted(esc02());
  assert.equal(req.method, 'RE%47IST%45R');
  assert.notEqual(req.method, 'REGISTER');
  assert.equal(req.to.displayName, '%Z%45');
  assert.equal(req.headers.getAll('contact').length, 2);
  assert.equal(req.headers.get('c%6fntact'), '<sip:alias2@host2.example.com>');
  assert.equal(req.topVia.branch, 'z9hG4bK209%fzsnel234');
});

test('lwsdisp (§3.1.1.6): display name directly followed by <', () => {
  const req = accepted(lwsdisp());
  assert.equal(req.from.displayName, 'caller');
  assert.equal(req.from.uri.toString(), 'sip:caller@example.com');
  assert.equal(req.fromTag, '323');
});

test('longreq (§3.1.1.7): long display name, tag, Call-ID, header name, Via and Route lists', () => {
  const req = accepted(longreq());
  assert.equal(req.to.displayName, LONG.displayName);
  assert.equal(req.fromTag, LONG.tag);
  assert.equal(req.callId, LONG.callId);
  assert.match(req.headers.get(LONG.headerName.toLowerCase())!, /^unknown-(long)+-value; unknown-long-parameter-name=x+$/);
  const vias = req.headers.getAll('via').map(parseVia);
  assert.equal(vias.length, LONG.vias);
  assert.equal(vias[0]!.host, `sip${LONG.vias - 1}.example.com`);
  assert.equal(vias[LONG.vias - 1]!.branch, LONG.branch);
  assert.equal(req.headers.getAll('route').length, LONG.routes);
  assert.equal(req.body.toString(), SDP);
});

test('dblreq (§3.1.1.8): the octets after Content-Length in a datagram are ignored', () => {
  const req = accepted(dblreq());
  assert.equal(req.callId, 'dblreq.0ha0isndaksdj99sdfafnl3lk233412');
  assert.equal(req.body.length, 0);
  assert.equal(NameAddr.parse(req.headers.get('contact')!).uri.user, 'j.user');
});

test('semiuri (§3.1.1.9): ";" in the user part of the Request-URI; a folded Accept list', () => {
  const req = accepted(semiuri());
  const ruri = SipUri.parse(req.uri);
  assert.equal(ruri.user, 'user;par=u%40example.net');
  assert.equal(ruri.host, 'example.com');
  assert.equal(ruri.params.size, 0);
  assert.deepEqual(req.headers.getAll('accept'), [
    'application/sdp',
    'application/pkcs7-mime',
    'multipart/mixed',
    'multipart/signed',
    'message/sip',
    'message/sipfrag',
  ]);
});

test('transports (§3.1.1.10): Via with UDP, SCTP, TLS, an unknown transport and TCP', () => {
  const req = accepted(transports());
  assert.deepEqual(
    req.headers.getAll('via').map((v) => parseVia(v).protocol),
    ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP'],
  );
});

test('mpart01 (§3.1.1.11): a multipart body with binary octets is kept byte for byte', () => {
  const req = accepted(mpart01());
  assert.equal(req.method, 'MESSAGE');
  assert.equal(req.contentType, 'multipart/mixed');
  assert.ok(req.body.equals(MPART_BODY));
  assert.ok(req.headers.get('identity')!.endsWith('UA='));
  assert.ok(req.body.includes(BINARY));
});

test('unreason (§3.1.1.12) and noreason (§3.1.1.13): unusual and empty reason phrases', () => {
  const reason = '= 2**3 * 5**2 но сто девяносто девять - простое';
  const un = parseMessage(
    sip(
      `
SIP/2.0 200 ${reason}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: ${SDP.length}
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>`,
      SDP,
    ),
    true,
  ).message;
  assert.ok(un instanceof SipResponse);
  assert.equal(un.status, 200);
  assert.equal(un.reason, reason);
  assert.equal(un.body.toString(), SDP);
  const no = parseMessage(
    sip(`
SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0`),
    true,
  ).message;
  assert.ok(no instanceof SipResponse);
  assert.equal(no.status, 100);
  assert.equal(no.reason, '');
});

// ───────────────────────────── end to end ─────────────────────────────

let node: RunningNode;
let ua: TestUa;
before(async () => {
  node = await startNode();
  ua = await TestUa.open('udp', node.udpPort);
});
after(async () => {
  await ua?.close();
  await node?.stop();
});

/** Insert our routable Via as the first header field. */
function withOurVia(buf: Buffer, branch: string): Buffer {
  const eol = buf.indexOf('\r\n');
  const via = Buffer.from(`\r\nVia: SIP/2.0/UDP 127.0.0.1:${ua.localPort};branch=${branch};rport`);
  return Buffer.concat([buf.subarray(0, eol), via, buf.subarray(eol)]);
}

const branchOf = (r: Received): string | undefined => {
  try {
    return r.message.topVia.branch;
  } catch {
    return undefined;
  }
};

/** Send a message with our Via on top; resolve with the final response to it. */
async function send(buf: Buffer, branch = `z9hG4bK${randomBytes(6).toString('hex')}`): Promise<SipResponse> {
  const p = ua.waitFor((r) => r.message instanceof SipResponse && r.message.status >= 200 && branchOf(r) === branch, 3000, 'a response');
  ua.sendRaw(withOurVia(buf, branch));
  return (await p).message as SipResponse;
}

/** Send raw bytes that must get no answer; an OPTIONS sent right after is answered first. */
async function sendExpectingSilence(buf: Buffer, isAnswer: (r: Received) => boolean): Promise<void> {
  const from = ua.received.length;
  ua.sendRaw(buf);
  await stillAnswers();
  await new Promise((r) => setTimeout(r, 100));
  const answers = ua.received.slice(from).filter(isAnswer);
  assert.equal(answers.length, 0, `unexpected answer: ${answers[0]?.raw.toString().split('\r\n')[0]}`);
}

async function stillAnswers(): Promise<void> {
  const res = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` }, 3000);
  assert.equal(res.status, 200);
}

const VALID: Array<[string, () => Buffer, number | undefined]> = [
  ['wsinv', wsinv, 200],
  ['intmeth', intmeth, 501],
  ['esc01', esc01, 200],
  ['escnull', escnull, undefined],
  ['esc02', esc02, 501],
  ['lwsdisp', lwsdisp, 200],
  ['longreq', longreq, 200],
  ['semiuri', semiuri, 200],
  ['transports', transports, 200],
  ['mpart01', mpart01, undefined],
  ['badbranch', badbranch, 200],
];

for (const [name, make, status] of VALID) {
  // Parsed and understood: no 400, and no 5xx but the 501 an unknown method gets (RFC 3261 §21.5.2).
  test(`e2e: the node accepts ${name} (no 400, no 5xx${status ? `, ${status}` : ''})`, async () => {
    const res = await send(make());
    assert.notEqual(res.status, 400, `${name} rejected: ${res.status} ${res.reason}`);
    assert.ok(res.status < 500 || res.status === 501, `${res.status} ${res.reason}`);
    if (status !== undefined) assert.equal(res.status, status, `${res.status} ${res.reason}`);
  });
}

test('e2e: esc02 is not treated as REGISTER, intmeth is an unknown method', async () => {
  for (const make of [esc02, intmeth]) {
    const res = await send(make());
    assert.equal(res.status, 501, `an unknown method: ${res.status} ${res.reason}`);
  }
});

test('e2e: longreq is answered with every Via, the long tag and Call-ID echoed', async () => {
  const res = await send(longreq());
  assert.equal(res.headers.getAll('via').length, LONG.vias + 1);
  assert.equal(res.fromTag, LONG.tag);
  assert.equal(res.callId, LONG.callId);
});

test('e2e: dblreq is answered once, for the first request only (§3.1.1.8)', async () => {
  const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
  const from = ua.received.length;
  const res = await send(dblreq(), branch);
  assert.equal(res.status, 200);
  assert.equal(res.callId, 'dblreq.0ha0isndaksdj99sdfafnl3lk233412');
  await stillAnswers();
  assert.equal(ua.received.slice(from).filter((r) => r.message.callId.startsWith('dblreq.')).length, 1);
});

test('e2e: a retransmitted wsinv (RFC 2543 branch below ours) gets the same response', async () => {
  const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
  const first = await send(wsinv(), branch);
  const second = await send(wsinv(), branch);
  assert.equal(second.toTag, first.toTag);
});

// §3.1.2 and §3.3: invalid messages. [name, message, expected status(es), reason pattern]
const INVALID: Array<[string, Buffer, number[], RegExp]> = [
  [
    'badinv01 (§3.1.2.1): extraneous separators in Via',
    sip(
      `
OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: ${SDP.length}
Content-Type: application/sdp`,
      SDP,
    ),
    [400],
    /Via/,
  ],
  [
    'clerr (§3.1.2.2): Content-Length larger than the message',
    sip(
      `
OPTIONS sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999`,
      SDP,
    ),
    [400],
    /Content-Length/,
  ],
  [
    'ncl (§3.1.2.3): negative Content-Length',
    sip(
      `
OPTIONS sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 OPTIONS
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999`,
      SDP,
    ),
    [400],
    /Content-Length/,
  ],
  [
    'scalar02 (§3.1.2.4): overlarge CSeq, Max-Forwards and Expires',
    sip(`
REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 10000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>;expires=280297596632815
l: 0`),
    [400],
    /CSeq/,
  ],
  [
    'scalar02 variant: Max-Forwards 300 alone',
    sip(`
OPTIONS sip:example.com SIP/2.0
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 3689348 OPTIONS
Call-ID: scalar02b.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
l: 0`),
    [400],
    /Max-Forwards/,
  ],
  [
    'quotbal (§3.1.2.6): unterminated quoted display name',
    sip(
      `
OPTIONS sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: ${SDP.length}`,
      SDP,
    ),
    [400],
    /To/,
  ],
  [
    'ltgtruri (§3.1.2.7): Request-URI in <>',
    sip(`
OPTIONS <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw
l: 0`),
    [400],
    /Request-URI/,
  ],
  [
    'lwsruri (§3.1.2.8): LWS inside the Request-URI',
    sip(`
OPTIONS sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 OPTIONS
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
l: 0`),
    [400],
    /Request-Line/,
  ],
  [
    'lwsstart (§3.1.2.9): several SP between the Request-Line elements',
    sip(`
OPTIONS  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
l: 0`),
    [400],
    /Request-Line/,
  ],
  [
    'trws (§3.1.2.10): SP after the SIP-Version',
    sip(`
OPTIONS sip:remote-target@example.com SIP/2.0  
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
l: 0`),
    [400],
    /Request-Line/,
  ],
  [
    'regbadct (§3.1.2.13, adapted to To): an addr-spec URI with headers outside <>',
    sip(`
OPTIONS sip:example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:user@example.com;tag=998332
To: sip:user@example.com?Route=%3Csip:sip.example.com%3E
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 OPTIONS
l: 0`),
    [400],
    /To/,
  ],
  [
    'badvers (§3.1.2.16): unknown SIP version (Via kept routable)',
    sip(`
OPTIONS sip:t.watson@example.org SIP/7.0
Via: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To: T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq: 1 OPTIONS
l: 0`),
    // RFC 4475 §3.1.2.16 / RFC 3261 §8.2.1: 505 Version Not Supported.
    [505],
    /[Vv]ersion/,
  ],
  [
    'mismatch01 (§3.1.2.17): CSeq method differs from the request method',
    sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0`),
    [400],
    /CSeq/,
  ],
  [
    'mismatch02 (§3.1.2.18): unknown method, CSeq method mismatch',
    sip(
      `
NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: ${SDP.length}`,
      SDP,
    ),
    [400],
    /CSeq/,
  ],
  [
    'insuf (§3.3.1): Call-ID, From and To missing',
    sip(`
OPTIONS sip:user@example.com SIP/2.0
CSeq: 193942 OPTIONS
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 0`),
    [400],
    /Missing (Call-ID|From|To) header/,
  ],
  [
    'unkscm (§3.3.2): unknown Request-URI scheme',
    sip(`
OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bK39sdkfjw
l: 0`),
    [416],
    /.*/,
  ],
  [
    'novelsc (§3.3.3): novel Request-URI scheme',
    sip(`
OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bK39sdkfjw
l: 0`),
    [416],
    /.*/,
  ],
  [
    'unksm2 (§3.3.4): To URI of an unknown scheme',
    sip(`
REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <sip:user@example.com>;tag=3459
Max-Forwards: 70
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <sip:user@host.example.com>
l: 0`),
    [400],
    /To/,
  ],
  [
    'bext01 (§3.3.5): Require of unknown extensions',
    sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0`),
    [420],
    /.*/,
  ],
  [
    'multi01 (§3.3.8): several values in single-valued header fields',
    sip(
      `
OPTIONS sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 OPTIONS
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 OPTIONS
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: ${SDP.length}`,
      SDP,
    ),
    [400],
    /More than one/,
  ],
  [
    'mcl01 (§3.3.9): two Content-Length values',
    sip(
      `
OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain`,
      "There's no way to know how many octets are supposed to be here.",
    ),
    [400],
    /Content-Length/,
  ],
];

for (const [name, buf, statuses, reason] of INVALID) {
  test(`e2e: ${name} → ${statuses.join(' or ')}, then OPTIONS still answered`, async () => {
    const res = await send(buf);
    assert.ok(statuses.includes(res.status), `got ${res.status} ${res.reason}`);
    assert.match(res.reason, reason);
    if (name.startsWith('bext01')) {
      assert.match(res.headers.get('unsupported') ?? '', /nothingSupportsThis\b.*nothingSupportsThisEither/);
      assert.doesNotMatch(res.headers.get('unsupported') ?? '', /noProxiesSupportThis/, 'a UAS ignores Proxy-Require');
    }
    await stillAnswers();
  });
}

// Messages RFC 4475 lets an element either reject with 400 or accept liberally.
const EITHER: Array<[string, Buffer]> = [
  [
    'escruri (§3.1.2.11): escaped headers in the Request-URI',
    sip(`
OPTIONS sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 OPTIONS
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
l: 0`),
  ],
  [
    'baddate (§3.1.2.12): non-GMT time zone in Date',
    sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 OPTIONS
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
l: 0`),
  ],
  [
    'badaspec (§3.1.2.14): spaces inside <> around the addr-spec',
    sip(`
OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0`),
  ],
  [
    'baddn (§3.1.2.15): unquoted display names with non-token characters',
    sip(`
OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0`),
  ],
  [
    'zeromf (§3.3.11): Max-Forwards 0 on OPTIONS to the UAS',
    sip(`
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
l: 0`),
  ],
];

for (const [name, buf] of EITHER) {
  test(`e2e: ${name} → 200 (liberal) or 400/483 (strict), never a crash`, async () => {
    const res = await send(buf);
    const allowed = name.startsWith('zeromf') ? [200, 483] : [200, 400];
    assert.ok(allowed.includes(res.status), `got ${res.status} ${res.reason}`);
    if (res.status === 200) {
      // A liberal answer still echoes the request's From/To untouched (RFC 3261 §8.2.6.2).
      const req = parseRequest(buf).req;
      assert.equal(res.fromTag, req.fromTag);
      assert.equal(res.callId, req.callId);
    }
    await stillAnswers();
  });
}

/** RFC 4475 §3.1.2.16 badvers exactly as the RFC prints it: its only Via is SIP/7.0/UDP c.example.com. */
const badversVerbatim = (callId: string): Buffer =>
  sip(`
OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: ${callId}
CSeq:    1 OPTIONS
l: 0`);

test('e2e: badvers sent verbatim over TCP (its only Via is SIP/7.0) gets 505 on the connection', async () => {
  const tcp = await TestUa.open('tcp', node.tcpPort);
  try {
    const callId = `badvers.tcp.${randomBytes(4).toString('hex')}@c.example.com`;
    const p = tcp.waitFor((r) => r.message instanceof SipResponse && r.message.callId === callId, 3000, 'the 505');
    tcp.sendRaw(badversVerbatim(callId));
    const res = (await p).message as SipResponse;
    assert.equal(res.status, 505);
    assert.equal(
      res.headers.get('via'),
      'SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw;received=127.0.0.1',
      'the Via is echoed, received added',
    );
  } finally {
    await tcp.close();
  }
});

test('e2e: badvers sent verbatim over UDP from port 5060 gets 505 at received:5060 (RFC 3261 §18.2.2)', async () => {
  // The Via names c.example.com without a port or rport: the answer goes to the source address
  // (received) at port 5060. A loopback address of our own keeps clear of any node on 127.0.0.1:5060.
  const sock = dgram.createSocket('udp4');
  let bound = '';
  for (let attempt = 0; attempt < 20 && !bound; attempt++) {
    const addr = `127.${1 + (randomBytes(1)[0]! % 250)}.${randomBytes(1)[0]}.${2 + (randomBytes(1)[0]! % 250)}`;
    bound = await new Promise<string>((resolve) => {
      const onError = (): void => resolve('');
      sock.once('error', onError);
      sock.bind(5060, addr, () => {
        sock.off('error', onError);
        resolve(addr);
      });
    });
  }
  assert.ok(bound, 'no free loopback address with port 5060');
  try {
    const callId = `badvers.udp.${randomBytes(4).toString('hex')}@c.example.com`;
    const answer = new Promise<SipResponse>((resolve) =>
      sock.on('message', (data) => {
        const { message } = parseMessage(data, true);
        if (message instanceof SipResponse && message.callId === callId) resolve(message);
      }),
    );
    sock.send(badversVerbatim(callId), node.udpPort, '127.0.0.1');
    const res = await answer;
    assert.equal(res.status, 505);
    assert.equal(res.topVia.sentProtocol, 'SIP/7.0');
    await stillAnswers();
  } finally {
    sock.close();
  }
});

test('e2e: bigcode (§3.1.2.19), a response with an overlarge status code, is dropped', async () => {
  const buf = sip(`
SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 127.0.0.1:${ua.localPort};branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0`);
  await sendExpectingSilence(buf, (r) => r.message.callId.startsWith('bigcode.'));
});
