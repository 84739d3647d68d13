/**
 * The main-thread parts of the XCAP server: URIs, node selectors, preconditions, Digest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseXcapUri, documentPathOf } from '../../core/xcap/uri.js';
import { parseNodeSelector, parseNamespaceBindings } from '../../core/xcap/selectors.js';
import { evaluatePreconditions, parseEntityTags } from '../../core/xcap/conditional.js';
import { DigestAuth } from '../../core/xcap/auth.js';
import { XcapError } from '../../core/xcap/errors.js';
import { digestAuthorization } from '../support/xcap-http.js';

const status = (fn: () => unknown): number | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    assert.ok(err instanceof XcapError, String(err));
    return err.status;
  }
};

test('XCAP URIs: users and global trees, percent-decoding per segment, node selector after ~~', () => {
  assert.deepEqual(parseXcapUri('/xcap-root', '/xcap-root/pres-rules/users/sip%3Aalice%40example.com/index'), {
    auid: 'pres-rules',
    xui: 'sip:alice@example.com',
    name: 'index',
    documentPath: '/xcap-root/pres-rules/users/sip%3Aalice%40example.com/index',
  });
  const g = parseXcapUri('/xcap-root', '/xcap-root/resource-lists/global/dir/doc')!;
  assert.equal(g.xui, '');
  assert.equal(g.name, 'dir/doc');
  const s = parseXcapUri('/xcap-root', '/xcap-root/pres-rules/users/sip:a@b/index/~~/ruleset/rule%5B%40id%3D%22a%2Fb%22%5D')!;
  assert.equal(s.name, 'index');
  assert.equal(s.nodeSelector, 'ruleset/rule[@id="a/b"]');
  assert.equal(parseXcapUri('/xcap-root', '/other/pres-rules/users/sip:a@b/index'), undefined);
  assert.equal(
    status(() => parseXcapUri('/xcap-root', '/xcap-root/pres-rules/users/sip:a@b')),
    404,
  );
  assert.equal(
    status(() => parseXcapUri('/xcap-root', '/xcap-root/pres-rules/users/sip%2Fa/index')),
    404,
  );
  assert.equal(
    status(() => parseXcapUri('/xcap-root', '/xcap-root/pres-rules/users/%E0%A4%A/index')),
    400,
  );
  assert.equal(documentPathOf('/r', 'pres-rules', 'sip:a b@x', 'index'), '/r/pres-rules/users/sip:a%20b@x/index');
});

test('node selectors (RFC 4825 §6.3) and xmlns() bindings (§6.4)', () => {
  const ns = parseNamespaceBindings('xmlns(cp=urn:ietf:params:xml:ns:common-policy)xmlns(pr=urn:ietf:params:xml:ns:pres-rules)');
  assert.deepEqual(ns, { cp: 'urn:ietf:params:xml:ns:common-policy', pr: 'urn:ietf:params:xml:ns:pres-rules' });
  assert.deepEqual(parseNamespaceBindings('xmlns(a%3Durn%3Ax)'), { a: 'urn:x' });
  assert.equal(
    status(() => parseNamespaceBindings('foo=bar')),
    400,
  );

  const sel = parseNodeSelector(`cp:ruleset/cp:rule[2][@id="a&quot;b"]/*[1]/pr:sub-handling/@x`, ns);
  assert.equal(sel.steps.length, 4);
  assert.deepEqual(sel.steps[0]!.name, { ns: 'urn:ietf:params:xml:ns:common-policy', local: 'ruleset' });
  assert.equal(sel.steps[1]!.position, 2);
  assert.deepEqual(sel.steps[1]!.attr, { ns: '', local: 'id', value: 'a"b' });
  assert.deepEqual(sel.steps[2]!.name, { ns: null, local: '*' });
  assert.deepEqual(sel.terminal, { kind: 'attribute', ns: '', local: 'x' });
  assert.deepEqual(parseNodeSelector('a/namespace::*', {}).terminal, { kind: 'namespace' });
  assert.deepEqual(parseNodeSelector("a/b[@c='d/e']", {}).steps[1]!.attr, { ns: '', local: 'c', value: 'd/e' });
  for (const bad of ['', '@id', 'a/b[', 'a/b[0]', 'a/b[x]', 'x:a', 'a//b', 'a/b[@c=d]', 'a/b[@c="d"][1]', 'a/@*']) {
    assert.equal(
      status(() => parseNodeSelector(bad, {})),
      400,
      bad,
    );
  }
});

test('preconditions (RFC 7232 §6)', () => {
  assert.deepEqual(parseEntityTags('"a", W/"b" ,c'), [
    { weak: false, tag: 'a' },
    { weak: true, tag: 'b' },
    { weak: false, tag: 'c' },
  ]);
  assert.equal(parseEntityTags(' * '), '*');
  assert.equal(evaluatePreconditions('PUT', 'a', '"a"', undefined), undefined);
  assert.equal(evaluatePreconditions('PUT', 'a', '"b"', undefined), 412);
  assert.equal(evaluatePreconditions('PUT', 'a', 'W/"a"', undefined), 412, 'If-Match compares strongly');
  assert.equal(evaluatePreconditions('PUT', undefined, '*', undefined), 412);
  assert.equal(evaluatePreconditions('PUT', 'a', '*', undefined), undefined);
  assert.equal(evaluatePreconditions('PUT', 'a', undefined, '*'), 412);
  assert.equal(evaluatePreconditions('PUT', undefined, undefined, '*'), undefined);
  assert.equal(evaluatePreconditions('GET', 'a', undefined, 'W/"a"'), 304, 'If-None-Match compares weakly');
  assert.equal(evaluatePreconditions('DELETE', 'a', undefined, '"a"'), 412);
  assert.equal(evaluatePreconditions('GET', 'a', '"b"', '"a"'), 412, 'If-Match first');
});

test('Digest: a right answer passes once per nonce count; an expired nonce asks again with stale=true', () => {
  const auth = new DigestAuth('example.com', { 'sip:alice@example.com': 'pw' });
  const t0 = Date.now();
  const challenge = auth.challenge();
  const h = digestAuthorization(challenge, 'PUT', '/x?y', { username: 'alice@example.com', password: 'pw' }, 1);
  assert.deepEqual(auth.verify(h, 'PUT', '/x?y', t0), { ok: true, xui: 'sip:alice@example.com' });
  assert.equal(auth.verify(h, 'PUT', '/x?y', t0).ok, false, 'the same nc again');
  const h2 = digestAuthorization(challenge, 'PUT', '/x?y', { username: 'alice@example.com', password: 'pw' }, 2);
  assert.deepEqual(auth.verify(h2, 'PUT', '/x?y', t0 + 400_000), { ok: false, stale: true, reason: 'nonce expired' });
  const wrong = digestAuthorization(challenge, 'PUT', '/x?y', { username: 'alice@example.com', password: 'nope' }, 3);
  assert.deepEqual(auth.verify(wrong, 'PUT', '/x?y', t0), { ok: false, stale: false, reason: 'wrong credentials' });
  assert.match(auth.challenge(true), /stale=true/);
  assert.equal(auth.verify('Basic YWxpY2U6cHc=', 'PUT', '/x?y').ok, false);
});
