/**
 * XCAP with HTTP Digest (xcap_auth = "digest"): 401 challenges, each user in their own tree.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { Xcap, CT, presRules, parseChallenge, digestAuthorization, sel } from '../support/xcap-http.js';

let node: RunningNode;
let xcap: Xcap;
const alice = { username: 'sip:alice@example.com', password: 'alice-secret' };
const bob = { username: 'bob@example.com', password: 'bob-secret' }; // without the scheme: also accepted
const ALICE_DOC = '/pres-rules/users/sip:alice@example.com/index';
const BOB_DOC = '/pres-rules/users/sip:bob@example.com/index';

before(async () => {
  node = await startNode({
    xcap_auth: 'digest',
    xcap_auth_realm: 'example.com',
    xcap_auth_users: { 'sip:alice@example.com': alice.password, 'sip:bob@example.com': bob.password },
  });
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

test('no or wrong credentials → 401 with a Digest challenge (MD5, qop=auth)', async () => {
  const r = await xcap.get(ALICE_DOC);
  assert.equal(r.status, 401);
  const challenge = r.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /^Digest /);
  const c = parseChallenge(challenge);
  assert.equal(c.realm, 'example.com');
  assert.equal(c.qop, 'auth');
  assert.equal(c.algorithm, 'MD5');
  assert.ok(c.nonce);
  assert.equal((await xcap.get(ALICE_DOC, { digest: { ...alice, password: 'wrong' } })).status, 401);
  assert.equal((await xcap.get(ALICE_DOC, { digest: { username: 'sip:mallory@example.com', password: 'x' } })).status, 401);
  assert.equal((await xcap.put(ALICE_DOC, presRules([{ id: 'a' }]), CT.presRules)).status, 401);
  assert.equal((await xcap.get('/xcap-caps/global/index')).status, 401);
});

test('a user reads and writes their own tree, and only that', async () => {
  const put = await xcap.put(ALICE_DOC, presRules([{ id: 'a' }]), CT.presRules, { digest: alice });
  assert.equal(put.status, 201);
  assert.equal((await xcap.get(ALICE_DOC, { digest: alice })).status, 200);
  assert.equal((await xcap.get(ALICE_DOC + sel('ruleset/rule[@id="a"]/@id'), { digest: alice })).text, 'a');
  assert.equal((await xcap.get(`/pres-rules/users/${encodeURIComponent('sip:alice@example.com')}/index`, { digest: alice })).status, 200);

  assert.equal((await xcap.get(ALICE_DOC, { digest: bob })).status, 403);
  assert.equal((await xcap.put(ALICE_DOC, presRules([{ id: 'evil' }]), CT.presRules, { digest: bob })).status, 403);
  assert.equal((await xcap.delete(ALICE_DOC, { digest: bob })).status, 403);
  assert.equal((await xcap.get(ALICE_DOC, { digest: alice })).etag, put.etag, 'bob changed nothing');

  assert.equal((await xcap.put(BOB_DOC, presRules([{ id: 'b' }]), CT.presRules, { digest: bob })).status, 201);
  assert.equal((await xcap.get('/xcap-caps/global/index', { digest: bob })).status, 200, 'anyone authenticated reads xcap-caps');
  assert.equal(
    (
      await xcap.put('/resource-lists/global/index', '<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>', CT.resourceLists, {
        digest: alice,
      })
    ).status,
    403,
  );
});

test('a replayed Authorization (same nonce count) and a digest for another URI are refused', async () => {
  const first = await xcap.get(ALICE_DOC);
  const challenge = first.headers.get('www-authenticate')!;
  const authorization = digestAuthorization(challenge, 'GET', `/xcap-root${ALICE_DOC}`, alice, 7);
  const once = await xcap.get(ALICE_DOC, { headers: { Authorization: authorization } });
  assert.notEqual(once.status, 401);
  assert.equal((await xcap.get(ALICE_DOC, { headers: { Authorization: authorization } })).status, 401, 'replay');
  const next = digestAuthorization(challenge, 'GET', `/xcap-root${ALICE_DOC}`, alice, 8);
  assert.notEqual((await xcap.get(ALICE_DOC, { headers: { Authorization: next } })).status, 401, 'the next nonce count is fine');
  const elsewhere = digestAuthorization(challenge, 'GET', `/xcap-root${BOB_DOC}`, alice, 9);
  assert.equal((await xcap.get(ALICE_DOC, { headers: { Authorization: elsewhere } })).status, 401);
  const otherMethod = digestAuthorization(challenge, 'GET', `/xcap-root${ALICE_DOC}`, alice, 10);
  assert.equal((await xcap.delete(ALICE_DOC, { headers: { Authorization: otherMethod } })).status, 401, 'the method is part of the digest');
  const forged = authorization.replace(/nonce="[^"]*"/, `nonce="${Date.now().toString(36)}.AAAAAAAAAAAAAAAAAAAAAA"`);
  assert.equal((await xcap.get(ALICE_DOC, { headers: { Authorization: forged } })).status, 401, 'a nonce this server did not issue');
});
