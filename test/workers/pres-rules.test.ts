import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateRules, applyTransformations } from '../../workers/pres-rules.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';

const L = DEFAULT_XML_LIMITS;
const now = Date.parse('2026-06-01T12:00:00Z');

function ruleset(...rules: string[]): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?><cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" ' +
    'xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy" ' +
    'xmlns:wr="urn:presenced:params:xml:ns:winfo-rules">' +
    rules.join('') +
    '</cr:ruleset>'
  );
}

function rule(id: string, conditions: string, handling: string, transformations = ''): string {
  return (
    `<cr:rule id="${id}"><cr:conditions>${conditions}</cr:conditions>` +
    `<cr:actions><pr:sub-handling>${handling}</pr:sub-handling></cr:actions>` +
    (transformations ? `<cr:transformations>${transformations}</cr:transformations>` : '') +
    '</cr:rule>'
  );
}

const evalFor = (rulesXml: string | undefined, watcherUri: string, spheres: string[] = []) =>
  evaluateRules({ rulesXml, watcherUri, spheres, now }, L);

test('no document → confirm (pending)', () => {
  assert.equal(evalFor(undefined, 'sip:bob@example.com').handling, 'confirm');
});

test('identity one matches exactly (scheme sips/sip and host case folded); no matching rule → confirm', () => {
  const doc = ruleset(rule('a', '<cr:identity><cr:one id="sip:bob@Example.com"/></cr:identity>', 'allow'));
  assert.equal(evalFor(doc, 'sip:bob@example.com').handling, 'allow');
  assert.equal(evalFor(doc, 'sip:carol@example.com').handling, 'confirm');
});

test('many with domain and except', () => {
  const doc = ruleset(
    rule('d', '<cr:identity><cr:many domain="example.com"><cr:except id="sip:eve@example.com"/></cr:many></cr:identity>', 'allow'),
  );
  assert.equal(evalFor(doc, 'sip:bob@example.com').handling, 'allow');
  assert.equal(evalFor(doc, 'sip:eve@example.com').handling, 'confirm');
  assert.equal(evalFor(doc, 'sip:bob@other.org').handling, 'confirm');
});

test('several matching rules combine by the maximum sub-handling', () => {
  const doc = ruleset(
    rule('block-all', '', 'block'),
    rule('polite', '<cr:identity><cr:many domain="example.com"/></cr:identity>', 'polite-block'),
    rule('bob', '<cr:identity><cr:one id="sip:bob@example.com"/></cr:identity>', 'allow'),
  );
  assert.equal(evalFor(doc, 'sip:bob@example.com').handling, 'allow');
  assert.equal(evalFor(doc, 'sip:carol@example.com').handling, 'polite-block');
  assert.equal(evalFor(doc, 'sip:mallory@evil.net').handling, 'block');
});

test('sphere and validity conditions', () => {
  const doc = ruleset(
    rule('work', '<cr:sphere value="work"/>', 'allow'),
    rule('later', '<cr:validity><cr:from>2030-01-01T00:00:00Z</cr:from><cr:until>2031-01-01T00:00:00Z</cr:until></cr:validity>', 'allow'),
  );
  assert.equal(evalFor(doc, 'sip:bob@example.com', ['work']).handling, 'allow');
  assert.equal(evalFor(doc, 'sip:bob@example.com', ['home']).handling, 'confirm');
  const now2 = ruleset(
    rule('now', '<cr:validity><cr:from>2026-01-01T00:00:00Z</cr:from><cr:until>2027-01-01T00:00:00Z</cr:until></cr:validity>', 'allow'),
  );
  assert.equal(evalFor(now2, 'sip:bob@example.com').handling, 'allow');
});

test('transformations: union across rules; none at all means the whole document', () => {
  const plain = ruleset(rule('a', '', 'allow'));
  assert.equal(evalFor(plain, 'sip:bob@example.com').transformations, undefined);
  const doc = ruleset(
    rule('a', '', 'allow', '<pr:provide-services><pr:occurrence-id>t1</pr:occurrence-id></pr:provide-services>'),
    rule('b', '', 'allow', '<pr:provide-persons><pr:all-persons/></pr:provide-persons><pr:provide-activities>true</pr:provide-activities>'),
  );
  const t = evalFor(doc, 'sip:bob@example.com').transformations!;
  assert.deepEqual(t.services, ['occurrence-id:t1']);
  assert.equal(t.persons, 'all');
  assert.deepEqual(t.attributes, ['activities']);
});

test('boolean permissions (xs:boolean): "true" and "1" grant, "false" and "0" do not', () => {
  const withValue = (v: string) =>
    evalFor(
      ruleset(rule('a', '', 'allow', `<pr:provide-activities>${v}</pr:provide-activities><pr:provide-note> ${v} </pr:provide-note>`)),
      'sip:bob@example.com',
    ).transformations!;
  assert.deepEqual(withValue('true').attributes, ['activities', 'note']);
  assert.deepEqual(withValue('1').attributes, ['activities', 'note']);
  assert.equal(withValue('false').attributes, undefined);
  assert.equal(withValue('0').attributes, undefined);
});

/** A rule whose only action is presenced's wr:winfo-handling (and optionally a sub-handling). */
function winfoRule(id: string, conditions: string, winfo: string, handling = ''): string {
  return (
    `<cr:rule id="${id}"><cr:conditions>${conditions}</cr:conditions><cr:actions>` +
    (handling ? `<pr:sub-handling>${handling}</pr:sub-handling>` : '') +
    `<wr:winfo-handling>${winfo}</wr:winfo-handling></cr:actions></cr:rule>`
  );
}

test('winfo-handling: no document, no matching rule or no such action → block; allow wins over block (maximum); unknown values grant nothing', () => {
  const bob = '<cr:identity><cr:one id="sip:bob@example.com"/></cr:identity>';
  assert.equal(evalFor(undefined, 'sip:bob@example.com').winfoHandling, 'block');
  assert.equal(
    evalFor(ruleset(rule('a', bob, 'allow')), 'sip:bob@example.com').winfoHandling,
    'block',
    'sub-handling allow is no winfo grant',
  );
  const doc = ruleset(
    winfoRule('everyone', '', 'block'),
    winfoRule('bob', bob, 'allow'),
    winfoRule('carol', '<cr:identity><cr:one id="sip:carol@example.com"/></cr:identity>', 'yes-please'),
  );
  assert.equal(evalFor(doc, 'sip:bob@example.com').winfoHandling, 'allow');
  assert.equal(evalFor(doc, 'sip:carol@example.com').winfoHandling, 'block');
  assert.equal(evalFor(doc, 'sip:dave@example.com').winfoHandling, 'block');
  // A winfo grant is no presence grant: bob stays at confirm (pending) for presence.
  assert.equal(evalFor(doc, 'sip:bob@example.com').handling, 'confirm');
  // Both actions in one rule.
  const both = ruleset(winfoRule('bob', bob, 'allow', 'allow'));
  assert.deepEqual([evalFor(both, 'sip:bob@example.com').handling, evalFor(both, 'sip:bob@example.com').winfoHandling], ['allow', 'allow']);
  // The element must be in presenced's namespace.
  const wrongNs = ruleset(
    `<cr:rule id="x"><cr:conditions>${bob}</cr:conditions><cr:actions><pr:winfo-handling>allow</pr:winfo-handling></cr:actions></cr:rule>`,
  );
  assert.equal(evalFor(wrongNs, 'sip:bob@example.com').winfoHandling, 'block');
});

const PIDF =
  '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" ' +
  'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">' +
  '<tuple id="t1"><status><basic>open</basic></status><note>secret tuple note</note></tuple>' +
  '<tuple id="t2"><status><basic>open</basic></status></tuple>' +
  '<note>top note</note>' +
  '<dm:person id="p1"><rpid:activities><rpid:meeting/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood></dm:person>' +
  '</presence>';

test('applyTransformations hides tuples, notes and attributes not provided', () => {
  const out = applyTransformations(PIDF, { services: ['occurrence-id:t1'], persons: 'all', attributes: ['activities'] }, L);
  assert.match(out, /id="t1"/);
  assert.doesNotMatch(out, /id="t2"/);
  assert.doesNotMatch(out, /secret tuple note/);
  assert.doesNotMatch(out, /top note/);
  assert.match(out, /meeting/);
  assert.doesNotMatch(out, /happy/);
  const withNote = applyTransformations(PIDF, { services: 'all', attributes: ['note'] }, L);
  assert.match(withNote, /secret tuple note/);
  assert.match(withNote, /top note/);
  assert.doesNotMatch(withNote, /dm:person|<person/, 'persons not provided');
});

test('applyTransformations keeps a provided device its <deviceID> (RFC 4479 §3.3); provide-deviceID governs the one in a tuple', () => {
  const doc =
    '<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.com">' +
    '<tuple id="t1"><status><basic>open</basic></status><dm:deviceID>urn:uuid:dev1</dm:deviceID></tuple>' +
    '<dm:device id="d1"><dm:deviceID>urn:uuid:dev1</dm:deviceID><dm:note>device note</dm:note></dm:device></presence>';
  const out = applyTransformations(doc, { services: 'all', devices: 'all' }, L);
  assert.match(out, /<dm:device id="d1">\s*<dm:deviceID>urn:uuid:dev1<\/dm:deviceID>\s*<\/dm:device>/, out);
  assert.doesNotMatch(out, /device note/, 'other device attributes still need their permission');
  assert.doesNotMatch(out, /<tuple id="t1">[\s\S]*deviceID[\s\S]*<\/tuple>/, 'the tuple deviceID needs provide-deviceID');
  const withId = applyTransformations(doc, { services: 'all', devices: 'all', attributes: ['deviceID'] }, L);
  assert.match(withId, /<tuple id="t1">[\s\S]*<dm:deviceID>urn:uuid:dev1<\/dm:deviceID>[\s\S]*<\/tuple>/);
});
