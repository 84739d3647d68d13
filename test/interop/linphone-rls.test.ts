/**
 * linphonec (liblinphone 5.1.65) as a real list subscriber of the resource list server
 * (RFC 4662 over an RFC 4826 service URI). Its "bodyless" friend list ([sip] bodyless_lists,
 * see test/interop/linphone/bob-rls.rc) SUBSCRIBEs to the service URI with
 * Supported: eventlist, Accept: multipart/related, application/rlmi+xml and no body. The test
 * reads, from linphonec's own SIP trace, the NOTIFYs it received with the strict reader
 * (test/support/rlmi.ts): full state first, then a partial NOTIFY after a change, each
 * answered 200 by linphonec, which must still be running; its quit ends the list subscription.
 *
 * What linphonec 5.1.65 cannot do with an RFC-conforming list server, so what is NOT asserted
 * (found by reading liblinphone 5.1.65 / belle-sip 5.1.64 and by trying each change on the
 * node's output by hand; Flexisip's presence server, which liblinphone is tested against,
 * sends exactly the non-conforming forms):
 * - it hands a list NOTIFY to the friend list only when the NOTIFY's Event is "Presence" with
 *   a capital P (coreapi/linphonecore.c, linphone_core_internal_notify_received:
 *   strcmp(notified_event, "Presence"), still so in liblinphone's master); the subscription
 *   said "presence", and event packages are tokens compared case-sensitively (RFC 6665
 *   §8.2.1), so a conforming NOTIFY says "presence";
 * - it finds a resource's part only by a header spelt exactly "Content-Id" whose value equals
 *   the cid with no angle brackets (friendlist.c: strcmp on the custom header); RFC 2045 header
 *   names are case-insensitive and an RFC 2392 Content-ID is <...>;
 * - belle-sip keeps the quotes of a quoted boundary parameter (bodyhandler.c: "body not
 *   starting by specified boundary '"..."'"), and liblinphone then dies with SIGSEGV on the
 *   part-less multipart. A quoted boundary is valid (RFC 2046 §5.1.1), but a boundary made of
 *   token characters may as well be sent unquoted, which avoids the crash: this test asserts
 *   linphonec survives and answers 200.
 * With all three changed by hand linphonec printed `Friend "carol" <sip:carol@example.com> is
 * Online`, then Offline after the change: the rest of its list handling works.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, type RunningNode } from '../support/node.js';
import { Linphonec } from '../support/linphone.js';
import { header, nextNotify } from '../support/traced-client.js';
import { openUa, pidf, publish, putRules, rules } from '../support/presence.js';
import { metric, untilMetric, watcherList } from '../support/rpc.js';
import { Xcap } from '../support/xcap-http.js';
import { ListView, entry, putServices, rlsServices } from '../support/rls.js';
import { SipRequest } from '../../transport/message.js';
import type { TraceMessage } from '../support/traced-client.js';
import type { TestUa } from '../support/sip-ua.js';

const TEMPLATES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'interop', 'linphone');
const BOB = 'sip:bob@example.com';
const SERVICE = 'sip:bobs-buddies@example.com';
const CAROL = 'sip:carol@example.com';
const DAVE = 'sip:dave@example.com';
const SUBSCRIBE_EXPIRES = 300;
const QUIT_AFTER_S = 300;

let node: RunningNode;
let bob: Linphonec | undefined;
let phone: TestUa;

/** A traced NOTIFY as a request for the strict reader: its Content-Type and body as linphonec received them. */
function asRequest(m: TraceMessage): SipRequest {
  const r = new SipRequest('NOTIFY', 'sip:bob@127.0.0.1');
  r.headers.append('content-type', header(m, 'content-type') ?? '');
  r.body = Buffer.from(m.body, 'utf8');
  return r;
}

before(async () => {
  node = await startNode({ waitn_time: 0 });
  phone = await openUa(node, 'udp');
  for (const u of [CAROL, DAVE])
    assert.equal(await putRules(node.xcapPort, u, rules([{ id: 'bob', who: `<cr:one id="${BOB}"/>`, handling: 'allow' }])), 201);
  assert.equal((await publish(phone, CAROL, { body: pidf(CAROL, 'c', 'open'), expires: 600 })).status, 200);
  assert.equal((await publish(phone, DAVE, { body: pidf(DAVE, 'd', 'closed'), expires: 600 })).status, 200);
  await putServices(new Xcap(node.xcapPort), BOB, rlsServices([{ uri: SERVICE, list: entry(CAROL, 'Carol') + entry(DAVE, 'Dave') }]));
});
after(async () => {
  if (bob && process.env.RLS_LINPHONE_DUMP) (await import('node:fs')).writeFileSync(process.env.RLS_LINPHONE_DUMP, bob.log);
  await bob?.kill();
  await phone?.close();
  await node?.stop();
});

test('linphonec subscribes to the service URI with Supported: eventlist, receives the list’s full state and a partial change (valid list documents, answered 200, linphonec still up), and ends it at quit', async () => {
  bob = await Linphonec.start({
    name: 'bob-rls',
    templates: TEMPLATES,
    rc: 'bob-rls.rc',
    vars: { UDP_PORT: node.udpPort, SUBSCRIBE_EXPIRES, SERVICE },
    quitAfterS: QUIT_AFTER_S,
  });
  const sub = await bob.nextMessage('the list SUBSCRIBE', (m) => m.sent && m.method === 'SUBSCRIBE', 0);
  assert.equal(sub.startLine, `SUBSCRIBE ${SERVICE} SIP/2.0`);
  assert.equal(header(sub, 'event'), 'presence');
  assert.match(header(sub, 'supported') ?? '', /\beventlist\b/, sub.text);
  const accept = (sub.headers.get('accept') ?? []).join(', ');
  assert.match(accept, /multipart\/related/);
  assert.match(accept, /application\/rlmi\+xml/);
  assert.match(header(sub, 'from') ?? '', new RegExp(`<${BOB}>;tag=`));
  assert.equal(Number(header(sub, 'content-length') ?? '0'), 0, 'a bodyless list SUBSCRIBE (not an RFC 5367 ad-hoc list)');
  const ok = await bob.waitFor('the response to the list SUBSCRIBE', () => bob!.responseTo(sub));
  assert.equal(ok.status, 200, ok.text);

  const first = await nextNotify(bob, 0, 'the first list NOTIFY (answered 200 by linphonec)');
  assert.equal(header(first.req, 'call-id'), header(sub, 'call-id'));
  assert.match(header(first.req, 'require') ?? '', /\beventlist\b/);
  const view = new ListView();
  const full = view.apply(asRequest(first.req));
  assert.equal(full.list.fullState, true);
  assert.deepEqual(view.order, [CAROL, DAVE]);
  assert.deepEqual(view.resources.get(CAROL)!.names, ['Carol']);
  assert.match(view.resources.get(CAROL)!.body!.body, /<basic>open<\/basic>/);
  assert.deepEqual(
    (await watcherList(node.rpcPort, SERVICE)).map((w) => w.watcher_uri),
    [BOB],
    'the node lists bob as the list’s subscriber',
  );

  // carol goes offline: a partial NOTIFY naming carol only, answered 200.
  const mark = bob.messages().length;
  assert.equal((await publish(phone, CAROL, { body: pidf(CAROL, 'c', 'closed'), expires: 600 })).status, 200);
  const next = await nextNotify(bob, mark, 'the partial list NOTIFY (answered 200 by linphonec)');
  const partial = view.apply(asRequest(next.req));
  assert.equal(partial.list.fullState, false);
  assert.deepEqual(
    partial.list.resources.map((r) => r.uri),
    [CAROL],
  );
  assert.match(view.resources.get(CAROL)!.body!.body, /<basic>closed<\/basic>/);
  assert.equal(bob.child.exitCode, null, `linphonec is still running:\n${bob.tail()}`);

  // At quit linphonec ends its list subscription (SUBSCRIBE Expires: 0): the node drops it.
  const before = await metric(node.rpcPort, 'presenced_rls_list_subscriptions');
  assert.ok(before >= 1);
  bob.quit();
  await untilMetric(node.rpcPort, 'presenced_rls_list_subscriptions', (v) => v === before - 1, 'the list subscription ended at quit');
  const unsub = bob.requests('SUBSCRIBE', true).at(-1)!;
  assert.equal(header(unsub, 'expires'), '0', unsub.text);
});
