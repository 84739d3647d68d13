/**
 * The embedded XCAP server (RFC 4825) end to end: a real node, plain HTTP.
 */
import { EVENT_WAIT_MS } from '../support/wait.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { startNode, type RunningNode } from '../support/node.js';
import { Xcap, CT, NS, errorElement, presRules, resourceLists, sel } from '../support/xcap-http.js';

const MAX = 16384;
let node: RunningNode;
let xcap: Xcap;

before(async () => {
  node = await startNode({ max_xml_size: MAX });
  assert.ok(node.xcapPort > 0, 'the node logs the XCAP port it bound');
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

/** Unique user per test so tests do not see each other's documents. */
let n = 0;
const user = () => `sip:user${++n}@example.com`;
const rulesPath = (xui: string) => `/pres-rules/users/${xui}/index`;

async function assertAlive(): Promise<void> {
  const r = await xcap.get('/xcap-caps/global/index');
  assert.equal(r.status, 200, 'the node still answers');
}

test('xcap-caps lists the auids, extensions and namespaces, and is read-only', async () => {
  const r = await xcap.get('/xcap-caps/global/index');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/xcap-caps+xml');
  assert.ok(r.etag);
  assert.match(r.text, /<xcap-caps xmlns="urn:ietf:params:xml:ns:xcap-caps">/);
  for (const auid of ['xcap-caps', 'pres-rules', 'resource-lists', 'rls-services', 'pidf-manipulation'])
    assert.match(r.text, new RegExp(`<auid>${auid}</auid>`));
  assert.match(r.text, /<extensions\/>/);
  for (const ns of [NS.cp, NS.pr, NS.wr, NS.rl, NS.rls, NS.pidf, NS.err]) assert.ok(r.text.includes(`<namespace>${ns}</namespace>`), ns);
  const caps = await xcap.put('/xcap-caps/global/index', r.text, 'application/xcap-caps+xml');
  assert.equal(caps.status, 405);
  assert.match(caps.headers.get('allow') ?? '', /GET/);
  assert.doesNotMatch(caps.headers.get('allow') ?? '', /PUT/);
  assert.equal((await xcap.get('/xcap-caps/users/sip:alice@example.com/index')).status, 404);
  assert.equal((await xcap.get('/xcap-caps/global/index', { headers: { 'If-None-Match': r.etag! } })).status, 304);
  const sub = await xcap.get('/xcap-caps/global/index' + sel('xcap-caps/auids/auid[2]'));
  assert.equal(sub.status, 200);
  assert.equal(sub.text, '<auid xmlns="urn:ietf:params:xml:ns:xcap-caps">pres-rules</auid>');
});

test('PUT creates (201) and replaces (200) with a new ETag; GET returns it; DELETE → 200, then 404', async () => {
  const path = rulesPath(user());
  assert.equal((await xcap.get(path)).status, 404);
  const doc1 = presRules([{ id: 'a' }]);
  const created = await xcap.put(path, doc1, CT.presRules);
  assert.equal(created.status, 201);
  assert.ok(created.etag);

  const got = await xcap.get(path);
  assert.equal(got.status, 200);
  assert.equal(got.text, doc1, 'the document comes back byte for byte');
  assert.equal(got.etag, created.etag);
  assert.equal(got.headers.get('content-type'), CT.presRules);

  const doc2 = presRules([{ id: 'a' }, { id: 'b', handling: 'block' }]);
  const replaced = await xcap.put(path, doc2, `${CT.presRules}; charset=utf-8`);
  assert.equal(replaced.status, 200);
  assert.ok(replaced.etag && replaced.etag !== created.etag, 'a new ETag on every change');
  assert.equal((await xcap.get(path)).text, doc2);

  const head = await xcap.request('HEAD', path);
  assert.equal(head.status, 200);
  assert.equal(head.etag, replaced.etag);
  assert.equal(head.text, '');

  assert.equal((await xcap.delete(path)).status, 200);
  assert.equal((await xcap.get(path)).status, 404);
  assert.equal((await xcap.delete(path)).status, 404);
});

test('the XUI may be percent-encoded (RFC 4825 §6); every auid takes its own document type', async () => {
  const xui = user();
  const doc = presRules([{ id: 'x' }]);
  assert.equal((await xcap.put(`/pres-rules/users/${encodeURIComponent(xui)}/index`, doc, CT.presRules)).status, 201);
  const raw = await xcap.get(rulesPath(xui));
  assert.equal(raw.status, 200);
  assert.equal(raw.text, doc);

  const rl = resourceLists({ friends: ['sip:bob@example.com'] });
  assert.equal((await xcap.put(`/resource-lists/users/${xui}/index`, rl, CT.resourceLists)).status, 201);
  const rls = `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}"><service uri="sip:friends@example.com"><list name="f"><rl:entry uri="sip:bob@example.com"/></list><packages><package>presence</package></packages></service></rls-services>`;
  assert.equal((await xcap.put(`/rls-services/users/${xui}/index`, rls, CT.rlsServices)).status, 201);
  const pidf = `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${NS.pidf}" entity="${xui}"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>`;
  assert.equal((await xcap.put(`/pidf-manipulation/users/${xui}/perm-presence`, pidf, CT.pidf)).status, 201);
  assert.equal((await xcap.get(`/pidf-manipulation/users/${xui}/perm-presence`)).text, pidf);
  assert.equal((await xcap.put('/resource-lists/global/shared', rl, CT.resourceLists)).status, 201, 'global documents');
  assert.equal((await xcap.get('/resource-lists/global/shared')).text, rl);

  // The wrong document for the auid, the wrong namespace, the wrong Content-Type.
  const wrongRoot = await xcap.put(`/pres-rules/users/${xui}/other`, rl, CT.presRules);
  assert.equal(wrongRoot.status, 409);
  assert.equal(wrongRoot.headers.get('content-type'), CT.error);
  assert.equal(errorElement(wrongRoot), 'schema-validation-error');
  const wrongNs = await xcap.put(`/pres-rules/users/${xui}/other`, '<ruleset xmlns="urn:example:not-common-policy"/>', CT.presRules);
  assert.equal(errorElement(wrongNs), 'schema-validation-error');
  const wrongType = await xcap.put(`/pres-rules/users/${xui}/other`, doc, CT.resourceLists);
  assert.equal(wrongType.status, 415);
  assert.equal((await xcap.put(`/pres-rules/users/${xui}/other`, doc, 'text/xml')).status, 415);
  assert.equal((await xcap.get(`/pres-rules/users/${xui}/other`)).status, 404, 'nothing was stored');
});

test('not well-formed bodies → 409 <not-well-formed/>, and nothing changes', async () => {
  const path = rulesPath(user());
  const put = await xcap.put(path, presRules([{ id: 'a' }]), CT.presRules);
  for (const body of [
    '<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a">',
    'not xml at all',
    '',
    `<ruleset xmlns="${NS.cp}"><q:rule id="a"/></ruleset>`,
  ]) {
    const r = await xcap.put(path, body, CT.presRules);
    assert.equal(r.status, 409, JSON.stringify(body));
    assert.equal(r.headers.get('content-type'), CT.error);
    assert.match(r.text, /<xcap-error xmlns="urn:ietf:params:xml:ns:xcap-error"><not-well-formed/);
  }
  const latin1 = Buffer.from(`<ruleset xmlns="${NS.cp}"><rule id="\u00e9"/></ruleset>`, 'latin1');
  assert.equal(errorElement(await xcap.put(path, latin1, CT.presRules)), 'not-utf-8');
  assert.equal((await xcap.get(path)).etag, put.etag);
});

test('a 304 carries no Content-Length (RFC 9110 §8.6) and the keep-alive connection serves the next request', async () => {
  const rel = rulesPath(user());
  const path = '/xcap-root' + rel;
  const put = await xcap.put(rel, presRules([{ id: 'a' }]), CT.presRules);
  assert.equal(put.status, 201);
  const raw = await new Promise<string>((resolve, reject) => {
    const sock = connect(node.xcapPort, '127.0.0.1', () => {
      // Two requests pipelined on one connection: the 304, then a GET of the same document.
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: ${put.etag}\r\n\r\nGET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`,
      );
    });
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      got += d;
      if (/HTTP\/1\.1 200[\s\S]*<\/ruleset>/.test(got)) {
        sock.destroy();
        resolve(got);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(got));
    setTimeout(() => sock.destroy(), EVENT_WAIT_MS).unref();
  });
  const [notModified, rest] = raw.split(/\r\n\r\n/, 2);
  assert.match(notModified!, /^HTTP\/1\.1 304 /);
  assert.match(notModified!, new RegExp(`\r\nETag: ${put.etag!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'i'));
  assert.doesNotMatch(notModified!, /content-length/i, 'no Content-Length on the 304');
  assert.match(rest ?? '', /^HTTP\/1\.1 200 /, `the next request on the connection is answered: ${JSON.stringify(raw.slice(0, 300))}`);
});

test('If-Match / If-None-Match (RFC 7232): 412 leaves the document alone, 304 on a matching GET', async () => {
  const path = rulesPath(user());
  const doc1 = presRules([{ id: 'a' }]);
  assert.equal(
    (await xcap.put(path, doc1, CT.presRules, { headers: { 'If-Match': '"nope"' } })).status,
    412,
    'If-Match on a missing document',
  );
  assert.equal((await xcap.get(path)).status, 404);
  const c = await xcap.put(path, doc1, CT.presRules, { headers: { 'If-None-Match': '*' } });
  assert.equal(c.status, 201);
  const etag = c.etag!;

  const doc2 = presRules([{ id: 'b' }]);
  assert.equal(
    (await xcap.put(path, doc2, CT.presRules, { headers: { 'If-None-Match': '*' } })).status,
    412,
    'If-None-Match: * on an existing document',
  );
  const stale = await xcap.put(path, doc2, CT.presRules, { headers: { 'If-Match': '"not-the-etag"' } });
  assert.equal(stale.status, 412);
  const still = await xcap.get(path);
  assert.equal(still.text, doc1);
  assert.equal(still.etag, etag);

  assert.equal((await xcap.get(path, { headers: { 'If-None-Match': etag } })).status, 304);
  assert.equal((await xcap.get(path, { headers: { 'If-None-Match': `"other", ${etag}` } })).status, 304);
  assert.equal((await xcap.get(path, { headers: { 'If-None-Match': '"other"' } })).status, 200);
  assert.equal((await xcap.get(path, { headers: { 'If-Match': '"other"' } })).status, 412);

  const ok = await xcap.put(path, doc2, CT.presRules, { headers: { 'If-Match': etag } });
  assert.equal(ok.status, 200);
  assert.notEqual(ok.etag, etag);
  assert.equal((await xcap.delete(path, { headers: { 'If-Match': etag } })).status, 412, 'the old ETag no longer matches');
  assert.equal((await xcap.get(path)).text, doc2);
  assert.equal((await xcap.delete(path, { headers: { 'If-Match': ok.etag! } })).status, 200);
  assert.equal((await xcap.get(path)).status, 404);
});

test('node selectors: GET, PUT and DELETE of elements and attributes (RFC 4825 §6.3)', async () => {
  const xui = user();
  const path = rulesPath(xui);
  const put = await xcap.put(
    path,
    presRules([
      { id: 'a', identity: 'sip:bob@example.com' },
      { id: 'b', handling: 'block' },
    ]),
    CT.presRules,
  );
  let etag = put.etag!;

  const el = await xcap.get(path + sel('ruleset/rule[@id="b"]'));
  assert.equal(el.status, 200);
  assert.equal(el.headers.get('content-type'), CT.el);
  assert.equal(el.etag, etag, 'the ETag of the document');
  assert.match(el.text, /^<cr:rule [^>]*id="b"><cr:conditions\/><cr:actions><sub-handling>block<\/sub-handling>/);
  const att = await xcap.get(path + sel('ruleset/rule[1]/conditions/identity/one/@id'));
  assert.equal(att.status, 200);
  assert.equal(att.headers.get('content-type'), CT.att);
  assert.equal(att.text, 'sip:bob@example.com');
  const prefixed = await xcap.get(`${path}${sel('cp:ruleset/cp:rule[2]/@id')}?xmlns(cp=${NS.cp})`);
  assert.equal(prefixed.status, 200);
  assert.equal(prefixed.text, 'b');
  assert.equal((await xcap.get(`${path}${sel('cp:ruleset')}`)).status, 400, 'an unbound prefix');
  for (const missing of ['ruleset/rule[@id="zz"]', 'ruleset/rule[3]', 'ruleset/rule', 'ruleset/rule[1]/@nope']) {
    assert.equal((await xcap.get(path + sel(missing))).status, 404, missing);
  }

  // Create a rule (201), replace it (200), ETag changes each time.
  const created = await xcap.put(path + sel('ruleset/rule[@id="c"]'), '<cr:rule id="c"><cr:conditions/><cr:actions/></cr:rule>', CT.el);
  assert.equal(created.status, 201);
  assert.ok(created.etag && created.etag !== etag);
  etag = created.etag;
  assert.equal((await xcap.get(path + sel('ruleset/rule[3]/@id'))).text, 'c');
  const replaced = await xcap.put(
    path + sel('ruleset/rule[@id="c"]'),
    '<cr:rule id="c"><cr:conditions><cr:identity><cr:one id="sip:carol@example.com"/></cr:identity></cr:conditions></cr:rule>',
    CT.el,
  );
  assert.equal(replaced.status, 200);
  assert.notEqual(replaced.etag, etag);
  assert.match((await xcap.get(path)).text, /<cr:rule id="c"><cr:conditions><cr:identity><cr:one id="sip:carol@example.com"\/>/);

  // Attributes.
  const attPut = await xcap.put(path + sel('ruleset/rule[@id="c"]/conditions/identity/one/@id'), 'sip:dave@example.com', CT.att);
  assert.equal(attPut.status, 200);
  assert.equal((await xcap.get(path + sel('ruleset/rule[@id="c"]/conditions/identity/one/@id'))).text, 'sip:dave@example.com');
  assert.equal(errorElement(await xcap.put(path + sel('ruleset/rule[@id="c"]/@id'), 'a<b', CT.att)), 'not-xml-att-value');
  // RFC 4825 §8.2.5: a new value the selector's own predicate would no longer select → 409 <cannot-insert>, nothing changed.
  const unchanged = await xcap.get(path);
  assert.equal(errorElement(await xcap.put(path + sel('ruleset/rule[@id="c"]/@id'), 'c2', CT.att)), 'cannot-insert');
  assert.equal((await xcap.get(path)).etag, unchanged.etag, 'the document is unchanged');
  assert.equal((await xcap.put(path + sel('ruleset/rule[@id="c"]/@id'), 'c', CT.att)).status, 200, 'the same value still selects it');

  // The wrong type for a node, a body that is not one element, a selector that cannot hold it.
  assert.equal((await xcap.put(path + sel('ruleset/rule[@id="d"]'), '<cr:rule id="d"/>', CT.presRules)).status, 415);
  assert.equal((await xcap.put(path + sel('ruleset/rule[@id="c"]/@id'), 'c', CT.el)).status, 415);
  assert.equal(
    errorElement(await xcap.put(path + sel('ruleset/rule[@id="d"]'), '<cr:rule id="d"/><cr:rule id="e"/>', CT.el)),
    'not-xml-frag',
  );
  assert.equal(errorElement(await xcap.put(path + sel('ruleset/rule[@id="d"]'), '<cr:rule id="e"/>', CT.el)), 'cannot-insert');
  // A second rule id "a": rule ids are xs:ID (RFC 4745 §13) and the schema is checked before
  // uniqueness constraints (RFC 4825 §8.2.5), so this is a schema error (it was uniqueness-failure).
  assert.equal(errorElement(await xcap.put(path + sel('ruleset/rule[2]'), '<cr:rule id="a"/>', CT.el)), 'schema-validation-error');
  const noParent = await xcap.put(path + sel('ruleset/rule[@id="zz"]/conditions'), '<cr:conditions/>', CT.el);
  assert.equal(errorElement(noParent), 'no-parent');
  assert.match(
    noParent.text,
    new RegExp(`<ancestor>http://127\\.0\\.0\\.1:${node.xcapPort}/xcap-root/pres-rules/users/[^<]*/index/~~/ruleset</ancestor>`),
  );
  const missingDoc = await xcap.put(rulesPath(user()) + sel('ruleset/rule[@id="x"]'), '<rule id="x"/>', CT.el);
  assert.equal(errorElement(missingDoc), 'no-parent', 'an element of a document that does not exist');

  // DELETE: element, then 404; attribute; positional delete RFC 4825 refuses.
  const before = (await xcap.get(path)).etag;
  const del = await xcap.delete(path + sel('ruleset/rule[@id="c"]'));
  assert.equal(del.status, 200);
  assert.ok(del.etag && del.etag !== before);
  assert.equal((await xcap.get(path + sel('ruleset/rule[@id="c"]'))).status, 404);
  assert.equal((await xcap.delete(path + sel('ruleset/rule[@id="c"]'))).status, 404);
  assert.equal(errorElement(await xcap.delete(path + sel('ruleset/rule[1]'))), 'cannot-delete');
  // <one> must keep its id (RFC 4745 §13): that DELETE is refused and nothing changes (it was a
  // 200 before the schema was checked); an optional attribute can go.
  const withId = (await xcap.get(path)).etag;
  assert.equal(errorElement(await xcap.delete(path + sel('ruleset/rule[@id="a"]/conditions/identity/one/@id'))), 'schema-validation-error');
  assert.equal((await xcap.get(path)).etag, withId);
  assert.equal(
    (await xcap.put(path + sel('ruleset/rule[@id="a"]/conditions/identity/many'), '<cr:many domain="example.com"/>', CT.el)).status,
    201,
  );
  assert.equal((await xcap.delete(path + sel('ruleset/rule[@id="a"]/conditions/identity/many/@domain'))).status, 200);
  assert.equal((await xcap.get(path + sel('ruleset/rule[@id="a"]/conditions/identity/many/@domain'))).status, 404);
  assert.equal((await xcap.put(path + sel('ruleset/namespace::*'), 'x', CT.att)).status, 405);

  // Conditional node operations use the document's ETag.
  const cur = (await xcap.get(path)).etag!;
  assert.equal(
    (await xcap.put(path + sel('ruleset/rule[@id="n"]'), '<cr:rule id="n"/>', CT.el, { headers: { 'If-Match': '"old"' } })).status,
    412,
  );
  assert.equal((await xcap.get(path + sel('ruleset/rule[@id="n"]'))).status, 404);
  assert.equal((await xcap.get(path + sel('ruleset/rule[@id="a"]'), { headers: { 'If-None-Match': cur } })).status, 304);
});

test('node selectors on resource-lists: entries by list name, position and uri', async () => {
  const path = `/resource-lists/users/${user()}/index`;
  await xcap.put(path, resourceLists({ friends: ['sip:bob@example.com', 'sip:carol@example.com'], work: [] }), CT.resourceLists);
  const add = await xcap.put(
    path + sel('resource-lists/list[@name="work"]/entry[@uri="sip:dave@example.com"]'),
    '<entry uri="sip:dave@example.com"><display-name>Dave</display-name></entry>',
    CT.el,
  );
  assert.equal(add.status, 201);
  const dave = await xcap.get(path + sel('resource-lists/list[@name="work"]/entry[1]/display-name'));
  assert.equal(dave.text, `<display-name xmlns="${NS.rl}">Dave</display-name>`);
  assert.equal((await xcap.get(path + sel('resource-lists/list[1]/entry[2]/@uri'))).text, 'sip:carol@example.com');
  assert.equal(
    errorElement(await xcap.put(path + sel('resource-lists/list[@name="friends"]/entry[3]'), '<entry uri="sip:bob@example.com"/>', CT.el)),
    'uniqueness-failure',
  );
  assert.equal((await xcap.delete(path + sel('resource-lists/list[@name="friends"]/entry[@uri="sip:bob@example.com"]'))).status, 200);
  assert.equal((await xcap.get(path + sel('resource-lists/list[@name="friends"]/entry[1]/@uri'))).text, 'sip:carol@example.com');
});

test('hostile XML gets a 4xx and the node stays up', async () => {
  const path = rulesPath(user());
  const billionLaughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
    Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join('') +
    `]><ruleset xmlns="${NS.cp}"><rule id="&lol9;"/></ruleset>`;
  const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ruleset xmlns="${NS.cp}"><rule id="&x;"/></ruleset>`;
  const paramEntity = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/evil.dtd"> %p;]><ruleset xmlns="${NS.cp}"/>`;
  const deep = `<ruleset xmlns="${NS.cp}"><rule id="d">${'<a>'.repeat(1000)}${'</a>'.repeat(1000)}</rule></ruleset>`;
  const hugeAttr = `<ruleset xmlns="${NS.cp}"><rule id="${'x'.repeat(MAX * 4)}"/></ruleset>`;
  const manyAttrs = `<ruleset xmlns="${NS.cp}"><rule id="r" ${Array.from({ length: 3000 }, (_, i) => `a${i}="1"`).join(' ')}/></ruleset>`;

  for (const [name, body] of Object.entries({ billionLaughs, xxe, paramEntity, deep })) {
    const r = await xcap.put(path, body, CT.presRules);
    assert.equal(r.status, 409, name);
    assert.equal(r.headers.get('content-type'), CT.error, name);
    await assertAlive();
  }
  assert.equal((await xcap.put(path, hugeAttr, CT.presRules)).status, 413);
  await assertAlive();
  assert.equal((await xcap.put(path, manyAttrs, CT.presRules)).status, 413);
  await assertAlive();
  // Without Content-Length (chunked): the server stops reading past max_xml_size.
  const chunked = await fetch(xcap.url(path), {
    method: 'PUT',
    headers: { 'Content-Type': CT.presRules },
    body: new ReadableStream({
      start(c) {
        for (let i = 0; i < 8; i++) c.enqueue(new TextEncoder().encode(`<!-- ${'z'.repeat(8000)} -->`));
        c.close();
      },
    }),
    duplex: 'half',
  } as RequestInit);
  assert.equal(chunked.status, 413);
  await chunked.arrayBuffer();
  await assertAlive();

  // A body announced far larger than the limit: 413 at once, and the connection is closed.
  const raw = await new Promise<string>((resolve, reject) => {
    const sock = connect(node.xcapPort, '127.0.0.1');
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      got += d;
      // The whole response head is enough: what the node does with the connection afterwards is not the point.
      if (/^HTTP\/1\.1 \d{3} [\s\S]*?\r\n\r\n/.test(got)) {
        sock.destroy();
        resolve(got);
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(got));
    sock.write(`PUT /xcap-root${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nContent-Length: 100000000\r\n\r\n<ruleset`);
    setTimeout(() => sock.destroy(), EVENT_WAIT_MS).unref();
  });
  assert.match(raw, /^HTTP\/1\.1 413 /);
  await assertAlive();

  // The same through a node selector: the fragment is checked like a document.
  await xcap.put(path, presRules([{ id: 'a' }]), CT.presRules);
  const frag = await xcap.put(
    path + sel('ruleset/rule[@id="z"]'),
    `<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rule xmlns="${NS.cp}" id="z">&x;</rule>`,
    CT.el,
  );
  assert.equal(frag.status, 409);
  const deepFrag = await xcap.put(
    path + sel('ruleset/rule[@id="z"]'),
    `<rule xmlns="${NS.cp}" id="z">${'<a>'.repeat(200)}${'</a>'.repeat(200)}</rule>`,
    CT.el,
  );
  assert.equal(deepFrag.status, 409);
  assert.equal((await xcap.get(path)).text, presRules([{ id: 'a' }]));
  await assertAlive();
  assert.equal(node.stderr.join(''), '', 'nothing on stderr');
});

test('methods, paths and auids the server does not serve', async () => {
  const path = rulesPath(user());
  const post = await xcap.request('POST', path, { body: 'x', contentType: CT.presRules });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD, PUT, DELETE');
  assert.equal((await xcap.request('PATCH', path)).status, 405);
  assert.equal((await xcap.get('/no-such-auid/users/sip:a@b/index')).status, 404);
  assert.equal((await xcap.get('/pres-rules/elsewhere/index')).status, 404);
  assert.equal((await xcap.get('/pres-rules/users/sip:a@b')).status, 404);
  assert.equal((await fetch(`http://127.0.0.1:${node.xcapPort}/not-xcap`)).status, 404);
  assert.equal((await xcap.get(`${path}/~~/ruleset/rule[`)).status, 400, 'a malformed node selector');
});
