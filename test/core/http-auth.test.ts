/**
 * core/http-auth.ts, the Digest and Basic code the XCAP server (xcap_auth) and the admin port
 * (rpc_auth) share: nonce-counts taken once each, in any order within a window, and the client's
 * answer to a challenge accepted by the server's check.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DigestAuth, BasicAuth, answerChallenge } from '../../core/http-auth.js';

const USERS = { ops: 'pw' };
const CRED = { user: 'ops', password: 'pw' };

test('Digest nonce-counts: each once; out of order within 32 below the highest; older ones refused', () => {
  const auth = new DigestAuth('presenced', USERS);
  const challenge = auth.challenge();
  const verify = (nc: number): string => {
    const r = auth.verify(answerChallenge(challenge, CRED, 'POST', '/RPC', nc)!, 'POST', '/RPC');
    return r.ok ? 'ok' : r.reason;
  };
  const steps: Array<[number, string]> = [
    [1, 'ok'],
    [1, 'nonce count replayed'],
    [40, 'ok'],
    [8, 'ok'], // 32 below 40: the window's last place
    [7, 'nonce count replayed'], // 33 below: out of the window
    [8, 'nonce count replayed'],
    [39, 'ok'],
    [39, 'nonce count replayed'],
    [40, 'nonce count replayed'],
    [72, 'ok'], // 32 above: 40 is now the window's last place, and still taken
    [40, 'nonce count replayed'],
    [41, 'ok'],
    [200, 'ok'], // far above: everything seen so far falls out of the window
    [167, 'nonce count replayed'], // 33 below: out of the window
    [168, 'ok'], // 32 below, never used: still taken
    [168, 'nonce count replayed'],
    [72, 'nonce count replayed'],
  ];
  for (const [nc, want] of steps) assert.equal(verify(nc), want, `nc ${nc}`);
});

test('Digest: a wrong password, another request target or method, another realm are refused', () => {
  const auth = new DigestAuth('presenced', USERS);
  const challenge = auth.challenge();
  assert.equal(auth.verify(answerChallenge(challenge, { user: 'ops', password: 'no' }, 'POST', '/RPC')!, 'POST', '/RPC').ok, false);
  assert.equal(auth.verify(answerChallenge(challenge, CRED, 'POST', '/RPC')!, 'POST', '/metrics').ok, false);
  assert.equal(auth.verify(answerChallenge(challenge, CRED, 'GET', '/RPC')!, 'POST', '/RPC').ok, false);
  const other = new DigestAuth('elsewhere', USERS);
  assert.equal(other.verify(answerChallenge(challenge, CRED, 'POST', '/RPC')!, 'POST', '/RPC').ok, false);
});

test('Basic: the right user:password only; the client answers a Basic challenge with it', () => {
  const auth = new BasicAuth('ops', USERS);
  const header = answerChallenge(auth.challenge(), CRED, 'POST', '/RPC')!;
  assert.equal(header, `Basic ${Buffer.from('ops:pw').toString('base64')}`);
  assert.deepEqual(auth.verify(header), { ok: true, xui: 'ops' });
  for (const bad of ['ops:pW', 'ops:pw ', 'nobody:pw', 'opspw'])
    assert.equal(auth.verify(`Basic ${Buffer.from(bad).toString('base64')}`).ok, false, bad);
  assert.equal(auth.verify('Digest username="ops"').ok, false);
});
