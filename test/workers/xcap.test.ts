import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkDocument,
  selectNode,
  putNode,
  deleteNode,
  decodeAttValue,
  rlsServices,
  type Edited,
  type Selected,
  type XcapFailure,
} from '../../workers/xcap.js';
import { parseNodeSelector } from '../../core/xcap/selectors.js';
import { USAGE_BY_AUID, xcapCapsDocument } from '../../core/xcap/auids.js';
import { presRules, resourceLists, NS } from '../support/xcap-http.js';
import { ALLOW_ALL_RULES, rulesDocument } from '../../bench/fixtures/rules.js';
import { pidfDocument } from '../../bench/fixtures/messages.js';

const PRES = USAGE_BY_AUID.get('pres-rules')!.rules;
const RL = USAGE_BY_AUID.get('resource-lists')!.rules;
const RLS = USAGE_BY_AUID.get('rls-services')!.rules;
const PIDF = USAGE_BY_AUID.get('pidf-manipulation')!.rules;
const CAPS = USAGE_BY_AUID.get('xcap-caps')!.rules;

const rules2 = presRules([
  { id: 'a', identity: 'sip:bob@example.com' },
  { id: 'b', handling: 'block' },
]);
const lists = resourceLists({ friends: ['sip:bob@example.com', 'sip:carol@example.com'], work: ['sip:dave@example.com'] });

const s = (text: string, ns: Record<string, string> = {}) => parseNodeSelector(text, ns);

function ok<T extends Edited | Selected>(r: T): Extract<T, { ok: true }> {
  assert.equal(r.ok, true, JSON.stringify(r));
  return r as Extract<T, { ok: true }>;
}

test('checkDocument accepts each usage and names what is wrong otherwise', () => {
  assert.deepEqual(checkDocument({ xml: rules2, usage: PRES }), { ok: true });
  assert.deepEqual(checkDocument({ xml: lists, usage: RL }), { ok: true });
  // RFC 4826 §4.2: a <service> names its members (<resource-list> or <list>); RFC 3863 §4.4:
  // a <tuple> has a <status>. (These samples once lacked them and passed the old hand check.)
  assert.deepEqual(
    checkDocument({
      xml: `<rls-services xmlns="${NS.rls}"><service uri="sip:l@x"><resource-list>http://x/l</resource-list></service></rls-services>`,
      usage: RLS,
    }),
    { ok: true },
  );
  assert.deepEqual(
    checkDocument({ xml: `<presence xmlns="${NS.pidf}" entity="sip:a@x"><tuple id="t"><status/></tuple></presence>`, usage: PIDF }),
    { ok: true },
  );

  const kind = (xml: string, usage = PRES) => (checkDocument({ xml, usage }) as { kind: string }).kind;
  assert.equal(kind('<ruleset'), 'not-well-formed');
  assert.equal(kind(lists), 'schema', 'a resource-lists document is not pres-rules');
  assert.equal(kind(`<ruleset xmlns="urn:other"/>`), 'schema', 'right name, wrong namespace');
  assert.equal(kind(`<ruleset xmlns="${NS.cp}"><rule/></ruleset>`), 'schema', 'rule without id');
  assert.equal(kind(`<ruleset xmlns="${NS.cp}"><foo/></ruleset>`), 'schema');
  // RFC 4745 §13 types rule ids xs:ID, and RFC 4825 §8.2.5 validates the schema before the
  // uniqueness constraints: a duplicate rule id is a schema error (it was 'uniqueness' before).
  assert.equal(kind(`<ruleset xmlns="${NS.cp}"><rule id="x"/><rule id="x"/></ruleset>`), 'schema');
  assert.equal(kind(`<ruleset xmlns="${NS.cp}"><q:rule id="x"/></ruleset>`), 'not-well-formed', 'undeclared prefix');
  assert.equal(kind(`<!DOCTYPE r [<!ENTITY a "b">]><ruleset xmlns="${NS.cp}">&a;</ruleset>`), 'dtd');
  assert.equal(kind(`<ruleset xmlns="${NS.cp}">${'<x>'.repeat(100)}${'</x>'.repeat(100)}</ruleset>`), 'too-deep');
  assert.equal(kind(resourceLists({ l: ['sip:a@x', 'sip:a@x'] }), RL), 'uniqueness', 'entry uris unique in a list');
  assert.deepEqual(
    checkDocument({ xml: resourceLists({ l: ['sip:a@x'], m: ['sip:a@x'] }), usage: RL }),
    { ok: true },
    'but not across lists',
  );
  const dup = checkDocument({ xml: resourceLists({ l: ['sip:a@x', 'sip:b@x', 'sip:a@x'] }), usage: RL });
  assert.equal((dup as { field: string }).field, '/resource-lists/list/entry[3]/@uri');
});

test('selectNode: by name, position, attribute, prefixes, attribute and namespace selectors', () => {
  const el = ok(selectNode({ xml: rules2, selector: s('ruleset/rule[@id="b"]'), usage: PRES }));
  assert.equal(el.contentType, 'application/xcap-el+xml');
  assert.match(el.body, /^<cr:rule xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy" id="b">/);
  assert.match(el.body, /<sub-handling>block<\/sub-handling>/);

  assert.equal(ok(selectNode({ xml: rules2, selector: s('ruleset/rule[1]/@id'), usage: PRES })).body, 'a');
  assert.equal(ok(selectNode({ xml: rules2, selector: s('cp:ruleset/cp:rule[2]/@id', { cp: NS.cp }), usage: PRES })).body, 'b');
  assert.equal(ok(selectNode({ xml: rules2, selector: s('*/*[2]/@id'), usage: PRES })).body, 'b');
  const handling = ok(
    selectNode({ xml: rules2, selector: s('ruleset/rule[@id="a"]/actions/pr:sub-handling', { pr: NS.pr }), usage: PRES }),
  );
  assert.equal(handling.body, `<sub-handling xmlns="${NS.pr}" xmlns:cr="${NS.cp}">allow</sub-handling>`);
  assert.equal(ok(selectNode({ xml: rules2, selector: s('ruleset/rule[2][@id="b"]/@id'), usage: PRES })).body, 'b');
  const nsSel = ok(selectNode({ xml: rules2, selector: s('ruleset/namespace::*'), usage: PRES }));
  assert.equal(nsSel.contentType, 'application/xcap-ns+xml');
  assert.match(nsSel.body, /^<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" xmlns:cr="urn:ietf:params:xml:ns:common-policy"\/>$/);

  const notFound = (sel: string, ns: Record<string, string> = {}) =>
    (selectNode({ xml: rules2, selector: s(sel, ns), usage: PRES }) as { kind: string }).kind;
  assert.equal(notFound('ruleset/rule[3]'), 'not-found');
  assert.equal(notFound('ruleset/rule[@id="zz"]'), 'not-found');
  assert.equal(notFound('ruleset/rule[1][@id="b"]'), 'not-found', 'position first, then the attribute test');
  assert.equal(notFound('ruleset/rule'), 'not-found', 'two rules: no single element');
  assert.equal(notFound('ruleset/rule[1]/@nope'), 'not-found');
  assert.equal(notFound('x:ruleset', { x: 'urn:wrong' }), 'not-found', 'the namespace of a prefixed name counts');
  assert.equal(
    ok(selectNode({ xml: lists, selector: s('resource-lists/list[@name="friends"]/entry[2]/@uri'), usage: RL })).body,
    'sip:carol@example.com',
  );
  assert.equal(
    ok(selectNode({ xml: lists, selector: s('resource-lists/list/entry[@uri="sip:dave@example.com"]/@uri'), usage: RL })).body,
    'sip:dave@example.com',
  );
});

test('putNode: replace, insert by attribute, insert by position, and what cannot be inserted', () => {
  // Replace rule b.
  const r1 = ok(
    putNode({ xml: rules2, selector: s('ruleset/rule[@id="b"]'), body: '<cr:rule id="b"><cr:conditions/></cr:rule>', usage: PRES }),
  );
  assert.equal(r1.created, false);
  assert.match(r1.xml, /<cr:rule id="b"><cr:conditions\/><\/cr:rule><\/cr:ruleset>/);
  assert.doesNotMatch(r1.xml, /block/);
  // Insert rule c, unprefixed body in the parent's namespace context (default ns pres-rules there, so prefix it).
  const r2 = ok(putNode({ xml: rules2, selector: s('ruleset/rule[@id="c"]'), body: `<rule xmlns="${NS.cp}" id="c"/>`, usage: PRES }));
  assert.equal(r2.created, true);
  assert.equal(ok(selectNode({ xml: r2.xml, selector: s('ruleset/rule[3]/@id'), usage: PRES })).body, 'c');
  // Insert by position: the 3rd rule after 2.
  const r3 = ok(putNode({ xml: rules2, selector: s('ruleset/rule[3]'), body: '<cr:rule id="z"/>', usage: PRES }));
  assert.equal(r3.created, true);
  assert.equal(ok(selectNode({ xml: r3.xml, selector: s('ruleset/rule[3]/@id'), usage: PRES })).body, 'z');
  // Insert into resource-lists, unprefixed body inherits the default namespace.
  const r4 = ok(
    putNode({
      xml: lists,
      selector: s('resource-lists/list[@name="work"]/entry[@uri="sip:erin@example.com"]'),
      body: '<entry uri="sip:erin@example.com"/>',
      usage: RL,
    }),
  );
  assert.match(r4.xml, /<entry uri="sip:dave@example.com"\/><entry uri="sip:erin@example.com"\/><\/list>/);
  // A new attribute, and a changed one.
  const a1 = ok(putNode({ xml: lists, selector: s('resource-lists/list[@name="work"]/entry[1]/@uri'), body: 'sip:x@y', usage: RL }));
  assert.equal(a1.created, false);
  assert.match(a1.xml, /<entry uri="sip:x@y"\/>/);
  // (RFC 4826 §3.2: a <list> has only a name attribute of its own; this once created a "display" one.)
  const unnamed = `<resource-lists xmlns="${NS.rl}"><list><entry uri="sip:a@x"/></list></resource-lists>`;
  const a2 = ok(putNode({ xml: unnamed, selector: s('resource-lists/list[1]/@name'), body: 'a &amp; b &lt;c&gt;', usage: RL }));
  assert.equal(a2.created, true);
  assert.equal(ok(selectNode({ xml: a2.xml, selector: s('resource-lists/list[1]/@name'), usage: RL })).body, 'a &amp; b &lt;c>');

  const kind = (sel: string, body: string, xml = rules2, usage = PRES) =>
    (putNode({ xml, selector: s(sel), body, usage }) as { kind: string }).kind;
  assert.equal(kind('ruleset/rule[@id="c"]', '<cr:rule id="d"/>'), 'cannot-insert', 'the body does not match the selector');
  assert.equal(kind('ruleset/rule[5]', '<cr:rule id="d"/>'), 'cannot-insert', 'position past the end');
  assert.equal(kind('ruleset/rule[@id="a"]/nothing/rule[@id="q"]', '<cr:rule id="q"/>'), 'no-parent');
  assert.equal(kind('ruleset/rule[@id="c"]', '<cr:rule id="c">'), 'not-xml-frag');
  assert.equal(kind('ruleset/rule[@id="c"]', '<cr:rule id="c"/><cr:rule id="e"/>'), 'not-xml-frag');
  assert.equal(kind('ruleset/rule[@id="c"]', 'text<cr:rule id="c"/>'), 'not-xml-frag');
  assert.equal(kind('ruleset/rule[@id="c"]', '<zz:rule id="c"/>'), 'not-xml-frag', 'undeclared prefix');
  assert.equal(kind('ruleset/rule[@id="b"]', '<cr:rule id="a"/>'), 'cannot-insert');
  // xs:ID rule ids (RFC 4745 §13): a duplicate fails the schema, checked first (RFC 4825 §8.2.5).
  assert.equal(kind('ruleset/rule[2]', '<cr:rule id="a"/>'), 'schema', 'replacing rule 2 with a second id="a"');
  assert.equal(kind('ruleset/rule[1]/@id', 'b'), 'schema');
  assert.equal(kind('resource-lists/list[@name="friends"]/entry[3]', '<entry uri="sip:bob@example.com"/>', lists, RL), 'uniqueness');
  assert.equal(kind('ruleset/rule[1]/@id', 'a<b'), 'not-xml-att-value');
  assert.equal(kind('ruleset/rule[1]/@id', 'a&b'), 'not-xml-att-value');
  assert.equal(kind('ruleset/rule[1]/@id', '&#0;'), 'not-xml-att-value');
  assert.equal(kind('ruleset/rule[@id="c"]', '<!DOCTYPE x [<!ENTITY e "e">]><cr:rule id="c"/>'), 'dtd');
  assert.equal(kind('ruleset/rule[9]/@id', 'x'), 'no-parent');
  assert.equal(kind('ruleset/namespace::*', 'x'), 'cannot-insert');
  const np = putNode({ xml: rules2, selector: s('ruleset/rule[@id="a"]/nothing/rule[@id="q"]'), body: '<cr:rule id="q"/>', usage: PRES });
  assert.equal((np as { ancestorSteps: number }).ancestorSteps, 2, 'closest ancestor: ruleset/rule[@id="a"]');
});

test('putNode replaces the root element only with a root of the same name', () => {
  const r = ok(putNode({ xml: rules2, selector: s('ruleset'), body: `<ruleset xmlns="${NS.cp}"/>`, usage: PRES }));
  assert.equal(r.created, false);
  assert.deepEqual(checkDocument({ xml: r.xml, usage: PRES }), { ok: true });
  assert.equal(
    (putNode({ xml: rules2, selector: s('ruleset'), body: `<resource-lists xmlns="${NS.rl}"/>`, usage: PRES }) as { kind: string }).kind,
    'cannot-insert',
  );
});

test('deleteNode: element, attribute, and deletions RFC 4825 refuses', () => {
  const d1 = ok(deleteNode({ xml: rules2, selector: s('ruleset/rule[@id="a"]'), usage: PRES }));
  assert.doesNotMatch(d1.xml, /id="a"/);
  assert.match(d1.xml, /id="b"/);
  const d2 = ok(deleteNode({ xml: lists, selector: s('resource-lists/list[@name="friends"]/entry[2]'), usage: RL }));
  assert.doesNotMatch(d2.xml, /carol/);
  const d3 = ok(deleteNode({ xml: a2Lists(), selector: s('resource-lists/list/@name'), usage: RL }));
  assert.doesNotMatch(d3.xml, /name=/);

  const kind = (sel: string, xml = rules2, usage = PRES) => (deleteNode({ xml, selector: s(sel), usage }) as { kind: string }).kind;
  assert.equal(kind('ruleset/rule[@id="zz"]'), 'not-found');
  assert.equal(kind('ruleset/rule[1]'), 'cannot-delete', 'rule[1] would then select the other rule');
  assert.equal(kind('ruleset'), 'cannot-delete');
  assert.equal(kind('ruleset/rule[1]/@id'), 'schema', 'a rule needs its id');
  assert.equal(kind('ruleset/rule[1]/@nope'), 'not-found');
});

function a2Lists(): string {
  return `<resource-lists xmlns="${NS.rl}"><list name="x"/></resource-lists>`;
}

test('decodeAttValue follows the AttValue production', () => {
  assert.equal(decodeAttValue('a &amp; &#x41;&#66;'), 'a & AB');
  assert.equal(decodeAttValue('say "hi"'), 'say "hi"');
  assert.equal(decodeAttValue('<'), undefined);
  assert.equal(decodeAttValue('&nope;'), undefined);
  assert.equal(decodeAttValue('&amp'), undefined);
});

/** The failure a check gave, or a test failure when it passed. */
function failure(r: { ok: boolean }): XcapFailure {
  assert.equal(r.ok, false, 'expected a failure');
  return r as XcapFailure;
}

test('checkDocument validates each usage against its RFC schema; the reason names the line and the element', () => {
  const cp = (inner: string) => `<ruleset xmlns="${NS.cp}" xmlns:pr="${NS.pr}">\n${inner}\n</ruleset>`;
  const invalid: Array<[string, string, typeof PRES, RegExp]> = [
    ['rule without id', cp('<rule/>'), PRES, /^line 2: Element 'cp:rule': The attribute 'id' is required but missing\.$/],
    [
      'unknown cp element',
      cp('<rule id="a"><conditions><when/></conditions></rule>'),
      PRES,
      /^line 2: Element 'cp:when': This element is not expected\./,
    ],
    [
      'sub-handling maybe',
      cp('<rule id="a"><actions><pr:sub-handling>maybe</pr:sub-handling></actions></rule>'),
      PRES,
      /'maybe' is not an element of the set \{'block', 'confirm', 'polite-block', 'allow'\}/,
    ],
    [
      'provide-user-input loud',
      cp('<rule id="a"><transformations><pr:provide-user-input>loud</pr:provide-user-input></transformations></rule>'),
      PRES,
      /pr:provide-user-input/,
    ],
    [
      'all-services beside a service-uri',
      cp(
        '<rule id="a"><transformations><pr:provide-services><pr:all-services/><pr:class>x</pr:class></pr:provide-services></transformations></rule>',
      ),
      PRES,
      /pr:class/,
    ],
    ['empty identity', cp('<rule id="a"><conditions><identity/></conditions></rule>'), PRES, /cp:identity.*Missing child/],
    [
      'validity until not a dateTime',
      cp('<rule id="a"><conditions><validity><from>2020-01-01T00:00:00Z</from><until>tomorrow</until></validity></conditions></rule>'),
      PRES,
      /'tomorrow'.*xs:dateTime/,
    ],
    ['entry without uri', `<resource-lists xmlns="${NS.rl}"><list><entry/></list></resource-lists>`, RL, /rl:entry.*'uri' is required/],
    [
      'service without uri',
      `<rls-services xmlns="${NS.rls}"><service><resource-list>x</resource-list></service></rls-services>`,
      RLS,
      /rls:service.*'uri' is required/,
    ],
    [
      'tuple without status',
      `<presence xmlns="${NS.pidf}" entity="sip:a@x"><tuple id="t"/></presence>`,
      PIDF,
      /pidf:tuple.*Missing child.*pidf:status/,
    ],
    [
      'tuple without id',
      `<presence xmlns="${NS.pidf}" entity="sip:a@x"><tuple><status/></tuple></presence>`,
      PIDF,
      /pidf:tuple.*'id' is required/,
    ],
    ['caps without namespaces', `<xcap-caps xmlns="${NS.caps}"><auids/></xcap-caps>`, CAPS, /caps:xcap-caps.*Missing child/],
  ];
  for (const [label, xml, usage, reason] of invalid) {
    const f = failure(checkDocument({ xml, usage }));
    assert.equal(f.kind, 'schema', label);
    assert.match(f.reason, reason, label);
  }
  const many = failure(checkDocument({ xml: cp('<rule/><rule id="1"/><bogus/>'), usage: PRES }));
  assert.match(many.reason, /\(and 2 more\)$/, 'the count of further errors');

  const valid: Array<[string, string, typeof PRES]> = [
    ['bench allow-all rules', ALLOW_ALL_RULES, PRES],
    ['bench 10×10 rules', rulesDocument(10, 10), PRES],
    [
      'an OMA extension condition',
      cp(
        '<rule id="a"><conditions><o:other-identity xmlns:o="urn:oma:xml:xdm:common-policy"/></conditions><actions><pr:sub-handling> allow </pr:sub-handling></actions></rule>',
      ),
      PRES,
    ],
    ['bench PIDF (5 tuples)', pidfDocument('sip:alice@example.com', 5), PIDF],
    ['an empty resource-lists', `<resource-lists xmlns="${NS.rl}"/>`, RL],
    ['an empty rls-services', `<rls-services xmlns="${NS.rls}"/>`, RLS],
    ['the xcap-caps document the server sends', xcapCapsDocument(), CAPS],
  ];
  for (const [label, xml, usage] of valid) assert.deepEqual(checkDocument({ xml, usage }), { ok: true }, label);
});

test('putNode / deleteNode: the result is validated, and the reason speaks of the result, without a line', () => {
  const f1 = failure(
    putNode({
      xml: rules2,
      selector: s('ruleset/rule[@id="b"]/actions/sub-handling'),
      body: `<sub-handling xmlns="${NS.pr}">maybe</sub-handling>`,
      usage: PRES,
    }),
  );
  assert.equal(f1.kind, 'schema');
  assert.match(f1.reason, /^the result would not be valid: Element 'pr:sub-handling': .*'maybe'/);
  const f2 = failure(
    putNode({
      xml: rules2,
      selector: s('ruleset/rule[@id="c"]'),
      body: '<cr:rule id="c"><cr:actions/><cr:conditions/></cr:rule>',
      usage: PRES,
    }),
  );
  assert.match(f2.reason, /cp:conditions.*not expected/, 'conditions come before actions');
  const f3 = failure(deleteNode({ xml: rules2, selector: s('ruleset/rule[@id="a"]/conditions/identity/one'), usage: PRES }));
  assert.match(f3.reason, /cp:identity.*Missing child/);
  const pidf = `<presence xmlns="${NS.pidf}" entity="sip:a@x"><tuple id="t"><status/><contact>sip:a@h</contact></tuple></presence>`;
  assert.equal(failure(deleteNode({ xml: pidf, selector: s('presence/tuple/status'), usage: PIDF })).kind, 'schema');
  assert.equal(ok(deleteNode({ xml: pidf, selector: s('presence/tuple/contact'), usage: PIDF })).created, false);
});

test('hostile documents are refused before the schema sees them', () => {
  const laughs =
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">' +
    Array.from({ length: 9 }, (_, i) => `<!ENTITY ${'b'.repeat(i + 1)} "${`&${i ? 'b'.repeat(i) : 'a'};`.repeat(10)}">`).join('') +
    `]><resource-lists xmlns="${NS.rl}"><list name="&bbbbbbbbb;"/></resource-lists>`;
  const started = Date.now();
  assert.equal(failure(checkDocument({ xml: laughs, usage: RL })).kind, 'dtd');
  assert.equal(
    failure(checkDocument({ xml: `<!DOCTYPE p SYSTEM "file:///etc/passwd"><presence xmlns="${NS.pidf}" entity="x"/>`, usage: PIDF })).kind,
    'dtd',
  );
  // Expanding the entities would be 10^9 of them (gigabytes); the bound leaves room for a loaded machine.
  assert.ok(Date.now() - started < 10_000, `refused at once (${Date.now() - started} ms)`);
  // A schema hint in the document is ignored (validated with the server's schemas only).
  const hinted = `<presence xmlns="${NS.pidf}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="${NS.pidf} file:///etc/passwd" entity="x"><tuple id="t"/></presence>`;
  assert.equal(failure(checkDocument({ xml: hinted, usage: PIDF })).kind, 'schema');
});

test("rlsServices: each document's services, standing alone, in order; null for a document that does not parse", () => {
  const doc =
    `<r:rls-services xmlns:r="${NS.rls}" xmlns:rl="${NS.rl}"><r:service uri="sip:a@x"><r:list><rl:entry uri="sip:m@x"/></r:list></r:service>` +
    `<r:service uri="sip:b@x"><r:resource-list>http://x/l</r:resource-list></r:service></r:rls-services>`;
  const [one, two, three] = rlsServices({ docs: [doc, '<rls-services', `<resource-lists xmlns="${NS.rl}"/>`] });
  assert.deepEqual(
    one!.map((x) => x.uri),
    ['sip:a@x', 'sip:b@x'],
  );
  assert.equal(
    one![0]!.xml,
    `<r:service xmlns:r="${NS.rls}" xmlns:rl="${NS.rl}" uri="sip:a@x"><r:list><rl:entry uri="sip:m@x"/></r:list></r:service>`,
  );
  assert.equal(two, null);
  assert.deepEqual(three, [], 'another root: no services');
});
