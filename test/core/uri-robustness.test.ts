/**
 * Issue 12, the URI cases, over real sockets:
 *
 * - long URIs are refused at the door (SIP 414 for the Request-URI, 400 for From/To, XCAP 414)
 *   and every URI up to max_uri_length can be stored: PUBLISH, SUBSCRIBE with its NOTIFY and
 *   XCAP PUT work at the limit, even at the largest limit allowed (900 bytes, two per key);
 * - escaped URIs name one presentity and one watcher (RFC 3261 §19.1.4);
 * - an RFC 2543 SUBSCRIBE without a From tag makes a dialog that NOTIFYs, refreshes and ends
 *   (RFC 4475 §3.4.1).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { buildConfig, ConfigError } from '../../core/config.js';
import type { SipRequest, SipResponse } from '../../transport/message.js';
import { startNode, type RunningNode } from '../support/node.js';
import { pidf, publish, subscribe, parseSubState, bodyOf, showsOpen, withUa, putRules, rules } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';

const LIMIT = 900;
let node: RunningNode;
before(async () => {
  node = await startNode({ max_uri_length: LIMIT, force_active: 0, sip_t1: 50 });
});
after(async () => {
  await node?.stop();
});

const uniq = (): string => randomBytes(4).toString('hex');

/** sip:USER@example.com exactly `bytes` long. */
function uriOf(bytes: number, prefix = 'u'): string {
  const fixed = `sip:${prefix}@example.com`.length;
  return `sip:${prefix}${'a'.repeat(bytes - fixed)}@example.com`;
}

test('max_uri_length: 512 by default, 64 to 900 allowed (two URIs must fit one LMDB key)', () => {
  assert.equal(buildConfig({}).max_uri_length, 512);
  for (const bad of [1024, 63, 'x'])
    assert.throws(
      () => buildConfig({ max_uri_length: bad }),
      (e: unknown) => e instanceof ConfigError && /max_uri_length/.test(e.message),
    );
});

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] PUBLISH: a Request-URI over max_uri_length → 414, at it → 200 (and 2,000 bytes → 414, not 500)`, () =>
    withUa(node, proto, async (ua) => {
      for (const bytes of [LIMIT + 1, 2000, 4000]) {
        const res = await publish(ua, uriOf(bytes, uniq()), { body: pidf('sip:x@example.com', 't1', 'open'), expires: 60 });
        assert.equal(res.status, 414, `${bytes} bytes: ${res.status} ${res.reason}`);
      }
      const atLimit = uriOf(LIMIT, uniq());
      const ok = await publish(ua, atLimit, { body: pidf(atLimit, 't1', 'open'), expires: 60 });
      assert.equal(ok.status, 200, `${ok.status} ${ok.reason}`);
    }));

  test(`[${proto}] SUBSCRIBE: Request-URI too long → 414, From URI too long → 400; both at the limit → 200 and a NOTIFY`, () =>
    withUa(node, proto, async (ua) => {
      const long = await ua.request({
        method: 'SUBSCRIBE',
        uri: uriOf(2000, uniq()),
        headers: [
          ['event', 'presence'],
          ['expires', '60'],
        ],
      });
      assert.equal(long.status, 414);
      const presentity = uriOf(LIMIT, uniq());
      const fromLong = await ua.request({
        method: 'SUBSCRIBE',
        uri: presentity,
        from: `<${uriOf(2000, uniq())}>;tag=${uniq()}`,
        headers: [
          ['event', 'presence'],
          ['expires', '60'],
        ],
      });
      assert.equal(fromLong.status, 400);
      assert.match(fromLong.reason, /From/);
      // Both URIs at the limit: the watcher's store key holds both, and must be writable.
      const watcher = uriOf(LIMIT, uniq());
      const callId = `${uniq()}@test`;
      const res = await ua.request({
        method: 'SUBSCRIBE',
        uri: presentity,
        from: `<${watcher}>;tag=${uniq()}`,
        to: `<${presentity}>`,
        callId,
        headers: [
          ['event', 'presence'],
          ['expires', '60'],
        ],
      });
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      const n = await ua.nextRequest('NOTIFY', (r) => r.callId === callId);
      assert.match(parseSubState(n).state, /pending|active/);
    }));
}

test('XCAP PUT: an XUI over max_uri_length → 414, at it → 201', async () => {
  const doc = rules([{ id: 'r1', who: '<cr:one id="sip:bob@example.com"/>', handling: 'allow' }]);
  assert.equal(await putRules(node.xcapPort, uriOf(2000, uniq()), doc), 414);
  assert.equal(await putRules(node.xcapPort, uriOf(LIMIT + 1, uniq()), doc), 414);
  assert.equal(await putRules(node.xcapPort, uriOf(LIMIT, uniq()), doc), 201);
});

test('escaped URIs: PUBLISH and pres-rules XUI sip:%70res…@Example.COM are those of sip:pres…@example.com, watcher sip:%62ob… is bob (RFC 3261 §19.1.4)', () =>
  withUa(node, 'udp', async (ua) => {
    const id = uniq();
    const published = await publish(ua, `sip:%70res${id}@Example.COM`, {
      body: pidf(`sip:pres${id}@example.com`, 't1', 'open', 'escaped'),
      expires: 60,
    });
    assert.equal(published.status, 200);
    // Authorise the watcher by a rule written for its plain URI, in a document PUT under an
    // escaped XUI with an upper-case host; the watcher subscribes with an escaped URI.
    assert.equal(
      await putRules(
        node.xcapPort,
        `sip:%70res${id}@EXAMPLE.com`,
        rules([{ id: 'r', who: `<cr:one id="sip:bob${id}@example.com"/>`, handling: 'allow' }]),
      ),
      201,
    );
    const callId = `${uniq()}@test`;
    const res = await ua.request({
      method: 'SUBSCRIBE',
      uri: `sip:pres${id}@example.com`,
      from: `<sip:%62ob${id}@EXAMPLE.com>;tag=${uniq()}`,
      to: `<sip:pres${id}@example.com>`,
      callId,
      headers: [
        ['event', 'presence'],
        ['expires', '60'],
      ],
    });
    assert.equal(res.status, 200);
    const n = await ua.nextRequest('NOTIFY', (r) => r.callId === callId && parseSubState(r).state === 'active');
    assert.ok(showsOpen(bodyOf(n)), 'the escaped PUBLISH is the state of the plain presentity');
    assert.match(bodyOf(n), /escaped/);
  }));

/** An in-dialog SUBSCRIBE as an RFC 2543 UA sends it: no From tag. */
function subscribe2543(
  ua: TestUa,
  presentity: string,
  callId: string,
  cseq: number,
  expires: number,
  toTag?: string,
): Promise<SipResponse> {
  return ua.request({
    method: 'SUBSCRIBE',
    uri: presentity,
    from: `<${ua.aor}>`,
    to: toTag ? `<${presentity}>;tag=${toTag}` : `<${presentity}>`,
    callId,
    cseq,
    headers: [
      ['event', 'presence'],
      ['expires', String(expires)],
    ],
  });
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] RFC 4475 §3.4.1: a SUBSCRIBE without From tag makes a dialog: NOTIFY, refresh, unsubscribe`, () =>
    withUa(node, proto, async (ua) => {
      const options = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${ua.serverPort}`, from: `<${ua.aor}>` });
      assert.equal(options.status, 200, 'any request without From tag is accepted');
      const presentity = `sip:p2543${uniq()}@example.com`;
      const callId = `${uniq()}@rfc2543`;
      const res = await subscribe2543(ua, presentity, callId, 1, 60);
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      const toTag = res.toTag!;
      assert.ok(toTag);
      assert.equal(res.fromTag, undefined, 'the From is echoed as it came');
      const first = await ua.nextRequest('NOTIFY', (r) => r.callId === callId);
      assert.equal(first.fromTag, toTag);
      assert.equal(first.toTag, undefined, 'NOTIFY To has no tag, as the SUBSCRIBE From had none');
      assert.ok(!/;\s*tag\s*=\s*(;|$)/.test(first.headers.get('to')!), `no empty tag parameter: ${first.headers.get('to')}`);
      const refreshed = await subscribe2543(ua, presentity, callId, 2, 60, toTag);
      assert.equal(refreshed.status, 200, 'the refresh finds the dialog keyed with the empty tag');
      await ua.nextRequest('NOTIFY', (r) => r.callId === callId && r !== first);
      const ended = await subscribe2543(ua, presentity, callId, 3, 0, toTag);
      assert.equal(ended.status, 200);
      const last = await ua.nextRequest('NOTIFY', (r: SipRequest) => r.callId === callId && parseSubState(r).state === 'terminated');
      assert.equal(last.toTag, undefined);
    }));
}

test('an Event header with an unterminated quoted parameter is not a 500 (found by the fuzz target)', () =>
  withUa(node, 'udp', async (ua) => {
    for (const method of ['SUBSCRIBE', 'PUBLISH'] as const) {
      const res = await ua.request({
        method,
        uri: `sip:q${uniq()}@example.com`,
        headers: [
          ['event', 'presence;id="abc'],
          ['expires', '60'],
        ],
        ...(method === 'PUBLISH' ? { body: pidf('sip:q@example.com', 't1', 'open'), contentType: 'application/pidf+xml' } : {}),
      });
      assert.ok(res.status < 500, `${method}: ${res.status} ${res.reason}`);
    }
  }));
