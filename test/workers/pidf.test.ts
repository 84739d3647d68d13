/**
 * validatePidf (RFC 3863 §4): what a PUBLISHed presence document must be, with the reason a
 * 400 carries when it is not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validatePidf } from '../../workers/pidf.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';

const P = 'urn:ietf:params:xml:ns:pidf';
const doc = (tuples: string, extra = ''): string =>
  `<?xml version="1.0"?><presence xmlns="${P}" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:a@example.com">${tuples}${extra}</presence>`;
const tuple = (id: string | undefined, inner = '<status><basic>open</basic></status>'): string =>
  `<tuple${id === undefined ? '' : ` id="${id}"`}>${inner}</tuple>`;

test('valid documents pass: tuples with id and status, person/device elements, no tuple at all', () => {
  for (const xml of [
    doc(tuple('a')),
    doc(tuple('a') + tuple('b')),
    doc('', '<dm:person id="p"/>'),
    doc(tuple('a'), '<dm:device id="d"><dm:deviceID>urn:x</dm:deviceID></dm:device>'),
  ]) {
    assert.deepEqual(validatePidf(xml, DEFAULT_XML_LIMITS), { ok: true }, xml);
  }
});

test('a tuple without an id, or without a PIDF <status>, is named in the reason', () => {
  const noId = validatePidf(doc(tuple('a') + tuple(undefined)), DEFAULT_XML_LIMITS);
  assert.equal(noId.ok, false);
  assert.match(noId.ok ? '' : noId.reason, /<tuple> without an id/);
  const noStatus = validatePidf(doc(tuple('a') + tuple('b', '<note>x</note>')), DEFAULT_XML_LIMITS);
  assert.match(noStatus.ok ? '' : noStatus.reason, /<tuple id="b"> has no <status>/);
  const foreignStatus = validatePidf(doc(tuple('c', '<s:status xmlns:s="urn:example:x"/>')), DEFAULT_XML_LIMITS);
  assert.match(foreignStatus.ok ? '' : foreignStatus.reason, /<tuple id="c"> has no <status>/);
});

test('tuples of another namespace are not PIDF tuples and are not checked', () => {
  const xml = doc(tuple('a'), '<x:tuple xmlns:x="urn:example:x"/>');
  assert.deepEqual(validatePidf(xml, DEFAULT_XML_LIMITS), { ok: true });
});

test('the root must be <presence> in the PIDF namespace, with an entity', () => {
  for (const xml of [
    `<presence xmlns="urn:example:x" entity="sip:a@example.com"/>`,
    `<presence xmlns="${P}"/>`,
    `<status xmlns="${P}"/>`,
  ]) {
    const r = validatePidf(xml, DEFAULT_XML_LIMITS);
    assert.equal(r.ok, false, xml);
    assert.equal(r.ok ? '' : r.kind, 'invalid');
  }
});

test('RFC 3863 §4.4 schema: <basic> other than open/closed, children out of order, duplicate or non-NCName ids are refused with the schema message', () => {
  for (const [xml, message] of [
    [doc(tuple('a', '<status><basic>unknown</basic></status>')), /pidf:basic.*'unknown' is not an element of the set \{'open', 'closed'\}/],
    [doc(tuple('a', '<note>n</note><status><basic>open</basic></status>')), /pidf:note.*not expected/],
    [doc(tuple('a', '<status><basic>open</basic></status><timestamp>yesterday</timestamp>')), /pidf:timestamp.*'yesterday'/],
    [doc(tuple('a', '<status><basic>open</basic></status><contact priority="1.5">sip:a@example.com</contact>')), /priority/],
    [doc(tuple('a') + tuple('a')), /'a' is not a valid value of the atomic type 'xs:ID'/],
    [doc(tuple('1a')), /'1a' is not a valid value/],
  ] as const) {
    const r = validatePidf(xml, DEFAULT_XML_LIMITS);
    assert.equal(r.ok, false, xml);
    assert.equal(r.ok ? '' : r.kind, 'invalid');
    assert.match(r.ok ? '' : r.reason, message, xml);
  }
});

test("<dm:person> before the tuples, as baresip sends it, passes (the order of the document's children carries no meaning)", () => {
  const xml = doc(
    '',
    '<dm:person id="p4159"><rpid:activities xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"/></dm:person>' +
      tuple('t4109', '<status><basic>open</basic></status><contact>sip:alice@example.com</contact>') +
      '<note>n</note>' +
      tuple('t2'),
  );
  assert.deepEqual(validatePidf(xml, DEFAULT_XML_LIMITS), { ok: true });
});

test('RFC 4479 data model, RFC 4480 RPID and RFC 4482 CIPID elements (other namespaces, processContents="lax") pass as real clients send them', () => {
  const xml =
    `<?xml version="1.0" encoding="UTF-8"?>` +
    `<presence xmlns="${P}" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" ` +
    `xmlns:c="urn:ietf:params:xml:ns:pidf:cipid" xmlns:caps="urn:ietf:params:xml:ns:pidf:caps" entity="sip:alice@example.com">` +
    `<tuple id="t8a7"><status><basic>open</basic><rpid:x-unknown/></status><dm:deviceID>urn:uuid:d</dm:deviceID>` +
    `<caps:servcaps><caps:audio>true</caps:audio></caps:servcaps>` +
    `<contact priority="0.8">sip:alice@192.0.2.1</contact><note xml:lang="en">on the phone</note><timestamp>2026-12-02T10:00:00Z</timestamp></tuple>` +
    `<note>at work</note>` +
    `<dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood>` +
    `<c:card>http://example.com/alice.vcf</c:card><c:display-name>Alice</c:display-name><dm:timestamp>2026-12-02T10:00:00Z</dm:timestamp></dm:person>` +
    `<dm:device id="d1"><dm:deviceID>urn:uuid:d</dm:deviceID></dm:device>` +
    `</presence>`;
  assert.deepEqual(validatePidf(xml, DEFAULT_XML_LIMITS), { ok: true });
});
