/**
 * Schema validation of XCAP writes (RFC 4825 §8.2.5) end to end: a real node, plain HTTP.
 * Invalid documents and edits that would leave an invalid document get 409
 * <schema-validation-error phrase="..."> and change nothing; valid documents carrying other
 * namespaces' extensions (RPID, data model, OMA) are accepted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startNode, type RunningNode } from '../support/node.js';
import { Xcap, CT, NS, errorElement, presRules, sel, type XcapReply } from '../support/xcap-http.js';
import { ALLOW_ALL_RULES, rulesDocument } from '../../bench/fixtures/rules.js';

let node: RunningNode;
let xcap: Xcap;

before(async () => {
  node = await startNode({});
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

let n = 0;
const user = () => `sip:schema${++n}@example.com`;

const OMA_CP = 'urn:oma:xml:xdm:common-policy';
const DM = 'urn:ietf:params:xml:ns:pidf:data-model';
const RPID = 'urn:ietf:params:xml:ns:pidf:rpid';

/** The phrase attribute of the error element, unescaped. */
function phraseOf(r: XcapReply): string {
  const raw = /phrase="([^"]*)"/.exec(r.text)?.[1] ?? '';
  return raw
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&');
}

/** 409 <schema-validation-error> with a phrase that says what is wrong. */
function assertSchemaError(r: XcapReply, mentions: RegExp, label: string): void {
  assert.equal(r.status, 409, `${label}: ${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type'), CT.error, label);
  assert.equal(errorElement(r), 'schema-validation-error', `${label}: ${r.text}`);
  assert.match(phraseOf(r), mentions, `${label}: phrase "${phraseOf(r)}"`);
}

/** Each body is refused at `path` and the stored document (or its absence) is unchanged. */
async function refusedUnchanged(path: string, contentType: string, cases: Array<[string, string, RegExp]>): Promise<void> {
  const before = await xcap.get(path);
  for (const [label, body, mentions] of cases) {
    assertSchemaError(await xcap.put(path, body, contentType), mentions, label);
    const now = await xcap.get(path);
    assert.equal(now.status, before.status, `${label}: nothing stored`);
    assert.equal(now.etag, before.etag, `${label}: same ETag`);
    assert.equal(now.text, before.text, `${label}: same document`);
  }
}

const ruleset = (inner: string, extraNs = '') =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<cr:ruleset xmlns="${NS.pr}" xmlns:cr="${NS.cp}"${extraNs}>${inner}</cr:ruleset>`;

test('pres-rules: RFC 4745/5025 schema violations → 409 <schema-validation-error>, the stored document unchanged', async () => {
  const path = `/pres-rules/users/${user()}/index`;
  assert.equal((await xcap.put(path, presRules([{ id: 'a' }]), CT.presRules)).status, 201);
  await refusedUnchanged(path, CT.presRules, [
    [
      'rule without id',
      ruleset('<cr:rule><cr:actions><sub-handling>allow</sub-handling></cr:actions></cr:rule>'),
      /line 2: .*cp:rule.*'id' is required/,
    ],
    [
      'unknown element in the common-policy namespace',
      ruleset('<cr:rule id="a"><cr:conditions><cr:whenever/></cr:conditions></cr:rule>'),
      /cp:whenever.*not expected/,
    ],
    ['unknown child of <ruleset>', ruleset('<cr:policy id="a"/>'), /cp:policy/],
    [
      'sub-handling "maybe"',
      ruleset('<cr:rule id="a"><cr:actions><sub-handling>maybe</sub-handling></cr:actions></cr:rule>'),
      /pr:sub-handling.*'maybe'/,
    ],
    [
      'provide-activities "sometimes"',
      ruleset('<cr:rule id="a"><cr:transformations><provide-activities>sometimes</provide-activities></cr:transformations></cr:rule>'),
      /provide-activities/,
    ],
    ['conditions out of order', ruleset('<cr:rule id="a"><cr:actions/><cr:conditions/></cr:rule>'), /cp:conditions/],
    [
      'validity with from only',
      ruleset(
        '<cr:rule id="a"><cr:conditions><cr:validity><cr:from>2030-01-01T00:00:00Z</cr:from></cr:validity></cr:conditions></cr:rule>',
      ),
      /cp:validity/,
    ],
    ['a rule id that is no xs:ID', ruleset('<cr:rule id="1st"/>'), /'1st'.*xs:ID/],
    ['two rules with one id', ruleset('<cr:rule id="a"/><cr:rule id="a"/>'), /'a'.*xs:ID/],
    [
      'root of the pres-rules namespace instead of <ruleset>',
      `<sub-handling xmlns="${NS.pr}">allow</sub-handling>`,
      /root element must be <ruleset>/,
    ],
  ]);
});

test('pres-rules: extensions of other namespaces and every RFC 5025 permission are accepted', async () => {
  const path = `/pres-rules/users/${user()}/index`;
  const doc = ruleset(
    '<cr:rule id="wp_prs_allow_own"><cr:conditions><cr:identity><cr:one id="sip:bob@example.com"/><cr:many domain="example.org"><cr:except id="sip:eve@example.org"/></cr:many></cr:identity>' +
      '<ocp:external-list><ocp:entry anc="http://xcap.example.com/resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5B@name=%22oma_allowedlist%22%5D"/></ocp:external-list>' +
      '<cr:sphere value="work"/><cr:validity><cr:from>2020-01-01T00:00:00Z</cr:from><cr:until>2040-01-01T00:00:00+01:00</cr:until></cr:validity></cr:conditions>' +
      '<cr:actions><sub-handling>allow</sub-handling><x:log xmlns:x="urn:example:actions">yes</x:log></cr:actions>' +
      '<cr:transformations><provide-services><service-uri-scheme>sip</service-uri-scheme><class>work</class></provide-services>' +
      '<provide-persons><all-persons/></provide-persons><provide-devices><deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</deviceID></provide-devices>' +
      '<provide-activities>true</provide-activities><provide-user-input>thresholds</provide-user-input><provide-note>1</provide-note>' +
      '<provide-unknown-attribute ns="urn:example:ext" name="colour">false</provide-unknown-attribute><x:blur xmlns:x="urn:example:transform"/></cr:transformations></cr:rule>' +
      '<cr:rule id="block_others"><cr:conditions><ocp:other-identity/></cr:conditions><cr:actions><sub-handling>polite-block</sub-handling></cr:actions></cr:rule>',
    ` xmlns:ocp="${OMA_CP}"`,
  );
  const r = await xcap.put(path, doc, CT.presRules);
  assert.equal(r.status, 201, r.text);
  assert.equal(
    (await xcap.put(`/pres-rules/users/${user()}/index`, ALLOW_ALL_RULES, CT.presRules)).status,
    201,
    'the bench allow-all document',
  );
  assert.equal(
    (await xcap.put(`/pres-rules/users/${user()}/index`, rulesDocument(10, 10), CT.presRules)).status,
    201,
    'the bench 10-rule document',
  );
});

test('resource-lists: entry without uri and foreign content in the wrong place → 409; extensions elsewhere → 201', async () => {
  const path = `/resource-lists/users/${user()}/index`;
  const rl = (inner: string) => `<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="${NS.rl}">${inner}</resource-lists>`;
  await refusedUnchanged(path, CT.resourceLists, [
    ['entry without uri', rl('<list name="friends"><entry><display-name>Bob</display-name></entry></list>'), /rl:entry.*'uri' is required/],
    ['entry-ref without ref', rl('<list name="friends"><entry-ref/></list>'), /'ref' is required/],
    ['unknown resource-lists element', rl('<list name="friends"><member uri="sip:bob@example.com"/></list>'), /rl:member/],
    ['two display-names', rl('<list name="f"><display-name>a</display-name><display-name>b</display-name></list>'), /rl:display-name/],
    ['an entry at the top', rl('<entry uri="sip:bob@example.com"/>'), /rl:entry/],
    ['an attribute of no namespace on <list>', rl('<list name="f" display="x"/>'), /display/],
    ['bad xml:lang', rl('<list name="f"><display-name xml:lang="not a tag">x</display-name></list>'), /xml:lang/],
  ]);
  const ok = rl(
    '<list name="friends" xmlns:x="urn:example:rl-ext" x:colour="blue"><display-name xml:lang="en">Friends</display-name>' +
      '<entry uri="sip:bob@example.com" x:since="2020"><display-name>Bob</display-name><x:note>met at IETF</x:note></entry>' +
      '<entry-ref ref="resource-lists/users/sip:carol@example.com/index/~~/resource-lists/list%5b@name=%22a%22%5d/entry%5b1%5d"/>' +
      '<external anchor="http://xcap.example.com/resource-lists/users/sip:dave@example.com/index/~~/resource-lists/list%5b@name=%22b%22%5d"/>' +
      '<list name="nested"><entry uri="tel:+15551234567"/></list><x:trailer/></list><list name="empty"/>',
  );
  const put = await xcap.put(path, ok, CT.resourceLists);
  assert.equal(put.status, 201, put.text);
  // Uniqueness (RFC 4826 §3.4.5) is still checked after the schema, with the field.
  const dup = await xcap.put(path, rl('<list name="a"><entry uri="sip:x@y"/><entry uri="sip:x@y"/></list>'), CT.resourceLists);
  assert.equal(errorElement(dup), 'uniqueness-failure');
  assert.match(dup.text, /<exists field="\/resource-lists\/list\/entry\[2\]\/@uri"\/>/);
  assert.equal((await xcap.get(path)).etag, put.etag);
});

test('rls-services: service without uri or members, entries in the wrong namespace → 409; a full service → 201', async () => {
  const path = `/rls-services/users/${user()}/index`;
  const rls = (inner: string) =>
    `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}">${inner}</rls-services>`;
  await refusedUnchanged(path, CT.rlsServices, [
    ['service without uri', rls('<service><resource-list>http://x/l</resource-list></service>'), /rls:service.*'uri' is required/],
    [
      'service without members',
      rls('<service uri="sip:s1@example.com"><packages><package>presence</package></packages></service>'),
      /rls:packages.*Expected is one of \( rls:resource-list, rls:list \)/,
    ],
    [
      'both a resource-list and a list',
      rls('<service uri="sip:s1@example.com"><resource-list>http://x/l</resource-list><list/></service>'),
      /rls:list/,
    ],
    [
      'entry of the resource-lists namespace without uri',
      rls('<service uri="sip:s1@example.com"><list><rl:entry/></list></service>'),
      /rl:entry.*'uri'/,
    ],
    [
      'unknown rls element in packages',
      rls('<service uri="sip:s1@example.com"><resource-list>http://x/l</resource-list><packages><pkg>presence</pkg></packages></service>'),
      /rls:pkg/,
    ],
  ]);
  const ok = rls(
    '<service uri="sip:s1@example.com" xmlns:x="urn:example:rls-ext" x:owner="me"><list name="l"><rl:display-name>Buddies</rl:display-name><rl:entry uri="sip:bob@example.com"/><rl:list name="inner"><rl:entry uri="sip:carol@example.com"/></rl:list></list>' +
      '<packages><package>presence</package><x:rate>10</x:rate><package>dialog</package></packages><x:anything/></service>' +
      '<service uri="sip:s2@example.com"><resource-list>http://xcap.example.com/resource-lists/users/sip:a@example.com/index/~~/resource-lists/list%5B@name=%22l1%22%5D</resource-list></service>',
  );
  const put = await xcap.put(path, ok, CT.rlsServices);
  assert.equal(put.status, 201, put.text);
});

test('pidf-manipulation: tuple without id or status → 409; RPID and data-model extensions → 201', async () => {
  const path = `/pidf-manipulation/users/${user()}/perm-presence`;
  const pidf = (inner: string, attrs = 'entity="sip:alice@example.com"') =>
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${NS.pidf}" xmlns:dm="${DM}" xmlns:rpid="${RPID}" ${attrs}>${inner}</presence>`;
  await refusedUnchanged(path, CT.pidf, [
    ['tuple without id', pidf('<tuple><status><basic>open</basic></status></tuple>'), /pidf:tuple.*'id' is required/],
    [
      'tuple without status',
      pidf('<tuple id="t1"><contact>sip:alice@host</contact></tuple>'),
      /pidf:contact.*Expected is \( pidf:status \)/,
    ],
    ['basic "busy"', pidf('<tuple id="t1"><status><basic>busy</basic></status></tuple>'), /pidf:basic.*'busy'/],
    ['presence without entity', pidf('', ''), /'entity' is required/],
    ['note before tuple', pidf('<note>x</note><tuple id="t1"><status/></tuple>'), /pidf:tuple/],
    ['contact priority 2', pidf('<tuple id="t1"><status/><contact priority="2">sip:a@b</contact></tuple>'), /priority/],
    ['two tuples with one id', pidf('<tuple id="t1"><status/></tuple><tuple id="t1"><status/></tuple>'), /'t1'.*xs:ID/],
  ]);
  const ok = pidf(
    '<tuple id="t1"><status><basic>open</basic><x:extra xmlns:x="urn:example:status"/></status><dm:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</dm:deviceID>' +
      '<contact priority="0.8">sip:alice@host.example.com</contact><note xml:lang="en">desk phone</note><timestamp>2024-05-01T10:00:00Z</timestamp></tuple>' +
      '<note xml:lang="fr">au bureau</note>' +
      '<dm:person id="p1"><rpid:activities><rpid:meeting/></rpid:activities><rpid:mood><rpid:happy/></rpid:mood><dm:note>In a meeting</dm:note></dm:person>' +
      '<dm:device id="d1"><dm:deviceID>urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6</dm:deviceID></dm:device>',
  );
  const put = await xcap.put(path, ok, CT.pidf);
  assert.equal(put.status, 201, put.text);
});

test('node PUT or DELETE that would leave an invalid document → 409 <schema-validation-error>, nothing changes', async () => {
  const xui = user();
  const rules = `/pres-rules/users/${xui}/index`;
  const put = await xcap.put(
    rules,
    presRules([
      { id: 'a', identity: 'sip:bob@example.com' },
      { id: 'b', handling: 'block' },
    ]),
    CT.presRules,
  );
  assert.equal(put.status, 201);
  const doc = (await xcap.get(rules)).text;
  const edits: Array<[string, () => Promise<XcapReply>, RegExp]> = [
    [
      'sub-handling element "maybe"',
      () =>
        xcap.put(rules + sel('ruleset/rule[@id="a"]/actions/sub-handling'), `<sub-handling xmlns="${NS.pr}">maybe</sub-handling>`, CT.el),
      /'maybe'/,
    ],
    [
      'a rule with an unknown cp child',
      () => xcap.put(rules + sel('ruleset/rule[@id="z"]'), '<cr:rule id="z"><cr:whenever/></cr:rule>', CT.el),
      /cp:whenever/,
    ],
    ['a rule id that is no xs:ID', () => xcap.put(rules + sel('ruleset/rule[2]/@id'), '9b', CT.att), /'9b'/],
    ['deleting the id of a rule', () => xcap.delete(rules + sel('ruleset/rule[@id="b"]/@id')), /'id' is required/],
    [
      'deleting <one id> from the only identity',
      () => xcap.delete(rules + sel('ruleset/rule[@id="a"]/conditions/identity/one')),
      /cp:identity/,
    ],
  ];
  for (const [label, run, mentions] of edits) {
    const r = await run();
    assertSchemaError(r, mentions, label);
    assert.doesNotMatch(phraseOf(r), /^line /, `${label}: no line of a document the client did not send`);
    const now = await xcap.get(rules);
    assert.equal(now.etag, put.etag, `${label}: same ETag`);
    assert.equal(now.text, doc, `${label}: same document`);
  }
  // The same edits done right are accepted.
  assert.equal(
    (
      await xcap.put(
        rules + sel('ruleset/rule[@id="a"]/actions/sub-handling'),
        `<sub-handling xmlns="${NS.pr}">confirm</sub-handling>`,
        CT.el,
      )
    ).status,
    200,
  );

  const presence = `/pidf-manipulation/users/${xui}/index`;
  const pidf = `<presence xmlns="${NS.pidf}" entity="${xui}"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>`;
  const p = await xcap.put(presence, pidf, CT.pidf);
  assert.equal(p.status, 201);
  assertSchemaError(await xcap.delete(presence + sel('presence/tuple/status')), /pidf:status/, 'deleting a tuple status');
  assertSchemaError(
    await xcap.put(presence + sel('presence/tuple/status/basic'), `<basic xmlns="${NS.pidf}">busy</basic>`, CT.el),
    /'busy'/,
    'basic busy',
  );
  assertSchemaError(
    await xcap.put(presence + sel('presence/tuple[@id="t2"]'), `<tuple xmlns="${NS.pidf}" id="t2"/>`, CT.el),
    /pidf:status/,
    'a tuple without status',
  );
  assert.equal((await xcap.get(presence)).etag, p.etag);
  assert.equal((await xcap.get(presence)).text, pidf);

  const lists = `/resource-lists/users/${xui}/index`;
  const l = await xcap.put(
    lists,
    `<resource-lists xmlns="${NS.rl}"><list name="f"><entry uri="sip:bob@example.com"/></list></resource-lists>`,
    CT.resourceLists,
  );
  assertSchemaError(await xcap.delete(lists + sel('resource-lists/list/entry/@uri')), /'uri' is required/, 'deleting an entry uri');
  assertSchemaError(
    await xcap.put(lists + sel('resource-lists/list/@display'), 'x', CT.att),
    /display/,
    'an attribute <list> does not have',
  );
  assert.equal((await xcap.get(lists)).etag, l.etag);
});

test('hostile bodies are refused before any schema work, and xsi:schemaLocation is never fetched', async () => {
  let fetched = 0;
  const trap: Server = createServer((req, res) => {
    fetched++;
    res.end('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>');
  });
  await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
  const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}/evil.xsd`;
  try {
    const xui = user();
    const bomb = (root: string) =>
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
      Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join('') +
      `]>${root.replace('LOL', '&lol9;')}`;
    const cases: Array<[string, string, string]> = [
      [
        `/resource-lists/users/${xui}/index`,
        CT.resourceLists,
        bomb(`<resource-lists xmlns="${NS.rl}"><list name="LOL"/></resource-lists>`),
      ],
      [
        `/rls-services/users/${xui}/index`,
        CT.rlsServices,
        bomb(`<rls-services xmlns="${NS.rls}"><service uri="sip:LOL@x"><resource-list>x</resource-list></service></rls-services>`),
      ],
      [
        `/pidf-manipulation/users/${xui}/index`,
        CT.pidf,
        `<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "${trapUrl}">]><presence xmlns="${NS.pidf}" entity="&x;"/>`,
      ],
    ];
    for (const [path, ct, body] of cases) {
      const started = Date.now();
      const r = await xcap.put(path, body, ct);
      assert.equal(r.status, 409, path);
      assert.notEqual(errorElement(r), 'schema-validation-error', 'refused before validation');
      // Expanding the entities would be 10^9 of them (gigabytes): seconds and more. Milliseconds
      // here; the bound leaves room for a loaded machine.
      assert.ok(Date.now() - started < 10_000, `answered at once (${Date.now() - started} ms)`);
      assert.equal((await xcap.get(path)).status, 404);
    }
    // A valid document that points at a schema: validated with the server's own schemas only.
    const hinted = `<resource-lists xmlns="${NS.rl}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="${NS.rl} ${trapUrl}"><list name="f"/></resource-lists>`;
    assert.equal((await xcap.put(`/resource-lists/users/${xui}/hinted`, hinted, CT.resourceLists)).status, 201);
    const hintedBad = `<resource-lists xmlns="${NS.rl}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="${NS.rl} ${trapUrl}"><list><entry/></list></resource-lists>`;
    assert.equal(
      errorElement(await xcap.put(`/resource-lists/users/${xui}/hinted2`, hintedBad, CT.resourceLists)),
      'schema-validation-error',
    );
    assert.equal(fetched, 0, 'nothing was fetched');
    assert.equal((await xcap.get('/xcap-caps/global/index')).status, 200, 'the node still answers');
  } finally {
    await new Promise<void>((resolve) => trap.close(() => resolve()));
  }
});
