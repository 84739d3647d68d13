/**
 * rls-services across users (RFC 4826 §4.4) end to end: service URIs unique across every
 * user's documents (409 <uniqueness-failure> with an <alt-value>), the server-composed
 * global index (contents, ETag, read-only), and xcap-caps listing what the server supports.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { Xcap, CT, NS, errorElement, sel } from '../support/xcap-http.js';
import { checkDocument } from '../../workers/xcap.js';
import { schemaNamespaces } from '../../workers/xsd.js';
import { USAGE_BY_AUID } from '../../core/xcap/auids.js';
import { serviceUriKey } from '../../core/xcap/rls-services.js';

let node: RunningNode;
let xcap: Xcap;

before(async () => {
  node = await startNode({});
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

const INDEX = '/rls-services/global/index';
const docPath = (xui: string, name = 'index') => `/rls-services/users/${xui}/${name}`;

function services(uris: string[], lists = true): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}">` +
    uris
      .map((u, i) =>
        lists
          ? `<service uri="${u}"><list name="l${i}"><rl:entry uri="sip:member${i}@example.com"/></list><packages><package>presence</package></packages></service>`
          : `<service uri="${u}"><resource-list>http://xcap.example.com/resource-lists/users/sip:x@example.com/index/~~/resource-lists/list%5B@name=%22l${i}%22%5D</resource-list></service>`,
      )
      .join('') +
    '</rls-services>\n'
  );
}

/** The service URIs of the global index, in order. */
function indexUris(text: string): string[] {
  return [...text.matchAll(/<service [^>]*uri="([^"]*)"/g)].map((m) => m[1]!);
}

test('a service URI held in another user’s document → 409 <uniqueness-failure> with <alt-value>; the alternative is accepted', async () => {
  const alice = 'sip:alice@example.com';
  const bob = 'sip:bob@example.com';
  assert.equal((await xcap.put(docPath(alice), services(['sip:friends@example.com', 'sip:team@example.com']), CT.rlsServices)).status, 201);

  const clash = await xcap.put(docPath(bob), services(['sip:bobs@example.com', 'sip:friends@example.com']), CT.rlsServices);
  assert.equal(clash.status, 409);
  assert.equal(clash.headers.get('content-type'), CT.error);
  assert.equal(errorElement(clash), 'uniqueness-failure');
  assert.match(clash.text, /phrase="service uri &quot;sip:friends@example.com&quot; is already used/);
  const alt = /<exists field="\/rls-services\/service\[2\]\/@uri"><alt-value>([^<]+)<\/alt-value><\/exists>/.exec(clash.text);
  assert.ok(alt, clash.text);
  assert.equal(alt[1], 'sip:friends-2@example.com');
  assert.doesNotMatch(clash.text, /alice/, 'the other user is not named');
  assert.equal((await xcap.get(docPath(bob))).status, 404, 'nothing stored');

  // Scheme and host compare case-insensitively (RFC 3261 §19.1.4).
  const upper = await xcap.put(docPath(bob), services(['SIP:team@EXAMPLE.COM']), CT.rlsServices);
  assert.equal(errorElement(upper), 'uniqueness-failure');
  assert.match(upper.text, /<exists field="\/rls-services\/service\/@uri"><alt-value>SIP:team-2@EXAMPLE.COM<\/alt-value>/);

  // The suggested value works.
  assert.equal((await xcap.put(docPath(bob), services(['sip:bobs@example.com', alt[1]!]), CT.rlsServices)).status, 201);
  // Now friends-2 is taken too: the next suggestion moves on.
  const third = await xcap.put(docPath('sip:carol@example.com'), services(['sip:friends@example.com']), CT.rlsServices);
  assert.match(third.text, /<alt-value>sip:friends-3@example.com<\/alt-value>/);

  // Another document of the same user counts too; replacing one's own document does not clash with itself.
  assert.equal(
    errorElement(await xcap.put(docPath(alice, 'other'), services(['sip:team@example.com']), CT.rlsServices)),
    'uniqueness-failure',
  );
  assert.equal(
    (await xcap.put(docPath(alice), services(['sip:friends@example.com', 'sip:team@example.com'], false), CT.rlsServices)).status,
    200,
  );

  // A node PUT that adds a clashing service is refused the same way, and changes nothing.
  const before = await xcap.get(docPath(bob));
  const nodePut = await xcap.put(
    docPath(bob) + sel('rls-services/service[@uri="sip:team@example.com"]'),
    '<service uri="sip:team@example.com"><resource-list>http://x/l</resource-list></service>',
    CT.el,
  );
  assert.equal(errorElement(nodePut), 'uniqueness-failure');
  assert.match(nodePut.text, /<exists field="\/rls-services\/service\[3\]\/@uri"><alt-value>sip:team-2@example.com<\/alt-value>/);
  const after = await xcap.get(docPath(bob));
  assert.equal(after.etag, before.etag);
  assert.equal(after.text, before.text);

  // Once alice lets it go, bob may take it.
  assert.equal((await xcap.delete(docPath(alice))).status, 200);
  assert.equal(
    (
      await xcap.put(
        docPath(bob) + sel('rls-services/service[@uri="sip:team@example.com"]'),
        '<service uri="sip:team@example.com"><resource-list>http://x/l</resource-list></service>',
        CT.el,
      )
    ).status,
    201,
  );
});

test('the global index is the union of every user’s services; its ETag follows any change; it is read-only', async () => {
  const u1 = 'sip:index1@example.net';
  const u2 = 'sip:index2@example.net';
  const first = await xcap.get(INDEX);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('content-type'), CT.rlsServices);
  assert.ok(first.etag);
  assert.deepEqual(
    checkDocument({ xml: first.text, usage: USAGE_BY_AUID.get('rls-services')!.rules }),
    { ok: true },
    'the index is a valid rls-services document',
  );

  assert.equal((await xcap.put(docPath(u1), services(['sip:idx-a@example.net']), CT.rlsServices)).status, 201);
  assert.equal(
    (await xcap.put(docPath(u2, 'lists'), services(['sip:idx-b@example.net', 'sip:idx-c@example.net'], false), CT.rlsServices)).status,
    201,
  );
  const second = await xcap.get(INDEX);
  assert.notEqual(second.etag, first.etag, 'new documents → new ETag');
  for (const uri of ['sip:idx-a@example.net', 'sip:idx-b@example.net', 'sip:idx-c@example.net'])
    assert.ok(indexUris(second.text).includes(uri), uri);
  assert.deepEqual(checkDocument({ xml: second.text, usage: USAGE_BY_AUID.get('rls-services')!.rules }), { ok: true }, second.text);
  // Each service stands alone: the rl prefix of its user's document is declared on it.
  assert.match(
    second.text,
    new RegExp(
      `<service xmlns="${NS.rls}" xmlns:rl="${NS.rl}" uri="sip:idx-a@example.net"><list name="l0"><rl:entry uri="sip:member0@example.com"/>`,
    ),
  );

  // Unchanged store → same ETag, 304 on If-None-Match; node selectors work on it.
  const again = await xcap.get(INDEX);
  assert.equal(again.etag, second.etag);
  assert.equal(again.text, second.text);
  assert.equal((await xcap.get(INDEX, { headers: { 'If-None-Match': second.etag! } })).status, 304);
  const one = await xcap.get(INDEX + sel('rls-services/service[@uri="sip:idx-c@example.net"]/resource-list'));
  assert.equal(one.status, 200);
  assert.match(one.text, /^<resource-list xmlns="urn:ietf:params:xml:ns:rls-services"[^>]*>http:\/\/xcap\.example\.com\//);

  // A node change in one user's document changes the index and its ETag.
  assert.equal((await xcap.put(docPath(u1) + sel('rls-services/service/@uri'), 'sip:idx-a2@example.net', CT.att)).status, 200);
  const third = await xcap.get(INDEX);
  assert.notEqual(third.etag, second.etag);
  assert.ok(indexUris(third.text).includes('sip:idx-a2@example.net'));
  assert.ok(!indexUris(third.text).includes('sip:idx-a@example.net'));
  // A deleted document leaves it.
  assert.equal((await xcap.delete(docPath(u2, 'lists'))).status, 200);
  const fourth = await xcap.get(INDEX);
  assert.notEqual(fourth.etag, third.etag);
  assert.ok(!indexUris(fourth.text).includes('sip:idx-b@example.net'));
  assert.equal((await xcap.request('HEAD', INDEX)).etag, fourth.etag);

  // Clients cannot write the global tree (RFC 4826 §4.4.7): 405, Allow GET, HEAD; nothing changes.
  for (const [method, path] of [
    ['PUT', INDEX],
    ['DELETE', INDEX],
    ['PUT', '/rls-services/global/mine'],
    ['PUT', INDEX + sel('rls-services/service[@uri="sip:x@example.net"]')],
    ['DELETE', INDEX + sel('rls-services/service[1]')],
  ] as const) {
    const r = await xcap.request(
      method,
      path,
      method === 'PUT' ? { body: services(['sip:x@example.net']), contentType: CT.rlsServices } : {},
    );
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
  }
  assert.equal((await xcap.get('/rls-services/global/mine')).status, 404, 'the global tree has only index');
  assert.equal((await xcap.get(INDEX)).etag, fourth.etag);
});

test("xcap-caps lists exactly the auids served, the namespaces of the schemas the server validates with, and presenced's winfo-rules", async () => {
  const caps = await xcap.get('/xcap-caps/global/index');
  assert.equal(caps.status, 200);
  assert.deepEqual(
    checkDocument({ xml: caps.text, usage: USAGE_BY_AUID.get('xcap-caps')!.rules }),
    { ok: true },
    'valid against RFC 4825 §12.2',
  );
  const listed = (tag: string) => [...caps.text.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))].map((m) => m[1]!);
  assert.deepEqual(listed('auid').sort(), ['pidf-manipulation', 'pres-rules', 'resource-lists', 'rls-services', 'xcap-caps']);
  const expected = [...schemaNamespaces().filter((ns) => ns !== 'http://www.w3.org/XML/1998/namespace'), NS.err, NS.wr].sort();
  assert.deepEqual(listed('namespace').sort(), expected);
  assert.deepEqual(listed('extension'), []);
});

test('serviceUriKey: scheme and host case-insensitive, user part and parameters as written', () => {
  assert.equal(serviceUriKey('SIP:Friends@EXAMPLE.com'), serviceUriKey('sip:Friends@example.COM'));
  assert.notEqual(serviceUriKey('sip:Friends@example.com'), serviceUriKey('sip:friends@example.com'));
  assert.equal(serviceUriKey('sip:l@Example.com;pres-list=RCS'), 'sip:l@example.com;pres-list=RCS');
  assert.equal(serviceUriKey('tel:+1555'), 'tel:+1555');
});
