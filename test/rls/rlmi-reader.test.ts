/**
 * The strict list-NOTIFY reader of test/support/rlmi.ts checked on its own: a body framed as
 * RFC 4662 §5 and RFC 2046 §5.1.1 say passes, and each way of breaking them is refused, so the
 * list tests cannot pass on a body a real subscriber could not read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SipRequest } from '../../transport/message.js';
import { parseListNotify, mediaParams } from '../support/rlmi.js';

const RLMI = (cid = 'bUZBsM@pres.example.com'): string =>
  '<?xml version="1.0" encoding="UTF-8"?>\r\n<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:adam-friends@pres.example.com" version="1" fullState="true">' +
  '<name xml:lang="en">Buddy List</name>' +
  `<resource uri="sip:bob@example.com"><name>Bob Smith</name><instance id="juwigmtboe" state="active" cid="${cid}"/></resource>` +
  '<resource uri="sip:dave@example.com"><name>Dave Jones</name><instance id="hqzsuxtfyq" state="pending"/></resource>' +
  '<resource uri="sip:ed@example.net"><instance id="x" state="terminated" reason="rejected"/></resource>' +
  '</list>';
const PIDF =
  '<?xml version="1.0" encoding="UTF-8"?>\r\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:bob@example.com"><tuple id="t"><status><basic>open</basic></status></tuple></presence>';

function body(o: { eol?: string; close?: string; cid?: string; rootType?: string } = {}): string {
  const eol = o.eol ?? '\r\n';
  return (
    `--50UBfW7LSCVLtggUPe5z${eol}Content-Transfer-Encoding: binary${eol}Content-ID: <nXYxAE@pres.example.com>${eol}` +
    `Content-Type: ${o.rootType ?? 'application/rlmi+xml;charset="UTF-8"'}${eol}${eol}${RLMI(o.cid)}${eol}` +
    `--50UBfW7LSCVLtggUPe5z${eol}Content-Transfer-Encoding: binary${eol}Content-ID: <bUZBsM@pres.example.com>${eol}` +
    `Content-Type: application/pidf+xml;charset="UTF-8"${eol}${eol}${PIDF}${eol}` +
    (o.close ?? `--50UBfW7LSCVLtggUPe5z--${eol}`)
  );
}

function notify(
  b: string,
  ct = 'multipart/related;type="application/rlmi+xml";start="<nXYxAE@pres.example.com>";boundary="50UBfW7LSCVLtggUPe5z"',
): SipRequest {
  const r = new SipRequest('NOTIFY', 'sip:u@127.0.0.1');
  r.headers.append('content-type', ct);
  r.body = Buffer.from(b);
  return r;
}

test('a well-formed list body reads: root by start, parts by cid, states and names', () => {
  const n = parseListNotify(notify(body()));
  assert.equal(n.list.uri, 'sip:adam-friends@pres.example.com');
  assert.equal(n.list.version, 1);
  assert.equal(n.list.fullState, true);
  assert.deepEqual(n.list.names, ['Buddy List']);
  assert.deepEqual(
    n.list.resources.map((r) => [r.uri, r.instances[0]!.state, r.instances[0]!.reason ?? '']),
    [
      ['sip:bob@example.com', 'active', ''],
      ['sip:dave@example.com', 'pending', ''],
      ['sip:ed@example.net', 'terminated', 'rejected'],
    ],
  );
  assert.equal(n.parts.get('bUZBsM@pres.example.com')!.body, PIDF);
  assert.equal(n.parts.get('bUZBsM@pres.example.com')!.headers.get('content-transfer-encoding'), 'binary');
});

test('the reader refuses what a subscriber could not rely on', () => {
  const cases: Array<[string, SipRequest, RegExp]> = [
    ['bare LF line ends', notify(body({ eol: '\n' })), /delimiter|CRLF|separator/],
    ['no closing delimiter', notify(body({ close: '' })), /no following delimiter|closing/],
    ['a cid naming no part', notify(body({ cid: 'nothere@x' })), /names no part/],
    ['a root part that is not RLMI', notify(body({ rootType: 'application/xml' })), /root part must be application\/rlmi\+xml/],
    [
      'start naming no part',
      notify(body(), 'multipart/related;type="application/rlmi+xml";start="<no@x>";boundary="50UBfW7LSCVLtggUPe5z"'),
      /names no part/,
    ],
    ['no start', notify(body(), 'multipart/related;type="application/rlmi+xml";boundary="50UBfW7LSCVLtggUPe5z"'), /without start/],
    [
      'wrong type parameter',
      notify(body(), 'multipart/related;type="application/pidf+xml";start="<nXYxAE@pres.example.com>";boundary="50UBfW7LSCVLtggUPe5z"'),
      /type must be/,
    ],
    [
      'another boundary',
      notify(body(), 'multipart/related;type="application/rlmi+xml";start="<nXYxAE@pres.example.com>";boundary="other"'),
      /no delimiter/,
    ],
    ['not multipart', notify(body(), 'application/rlmi+xml'), /must be multipart\/related/],
  ];
  for (const [what, req, msg] of cases) assert.throws(() => parseListNotify(req), msg, what);
});

test('media type parameters: quoted and token values, no duplicates', () => {
  const p = mediaParams('Multipart/Related; type="application/rlmi+xml" ; start="<a@b>";boundary=xyz');
  assert.equal(p.type, 'multipart/related');
  assert.equal(p.params.get('boundary'), 'xyz');
  assert.equal(p.params.get('start'), '<a@b>');
  assert.throws(() => mediaParams('multipart/related;boundary=a;boundary=b'), /twice/);
});
