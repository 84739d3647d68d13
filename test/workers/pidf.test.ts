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
  for (const xml of [doc(tuple('a')), doc(tuple('a') + tuple('b')), doc('', '<dm:person id="p"/>'), doc(tuple('a'), '<dm:device id="d"><dm:deviceID>urn:x</dm:deviceID></dm:device>')]) {
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
