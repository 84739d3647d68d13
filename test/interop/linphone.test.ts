/**
 * linphonec (Debian "linphone-cli", liblinphone 5.1.65 in bookworm) as a second independent
 * presence client of a real node: belle-sip's SIP stack, liblinphone's PIDF writer and its
 * PIDF/RPID reader, none of ours (baresip.test.ts is the first).
 *
 * What linphonec 5.1 can do, and so what is tested (see console/ and src/account/ of
 * liblinphone 5.1.65):
 * - Its own presence: the account's `publish=1` PUBLISHes `Event: presence` with
 *   `Expires: publish_expires`, application/pidf+xml, one tuple (basic open,
 *   `<pidfonline:online/>`, contact, timestamp): the core's presence model, which nothing in
 *   linphonec changes. linphonec 5.1 has no command to set it (`status` only prints
 *   register/autoanswer/hook state; no online/busy/away command exists), so alice's
 *   linphonec is always "open" while it runs. At 90 % of Expires belle-sip's refresher sends
 *   the same PUBLISH again with SIP-If-Match (body included: a modify, not a body-less
 *   refresh); at quit it removes the publication (Expires: 0, SIP-If-Match, no body).
 * - liblinphone sends PUBLISH only once the account's registration is Ok or Cleared: with
 *   no registrar, never. presenced answers REGISTER with 405, so alice registers with a
 *   stand-in front proxy (test/support/front-proxy.ts, the proxy+registrar the design puts
 *   in front of presenced) which relays her PUBLISH to presenced.
 * - SUBSCRIBE needs no registration with `subscribe_presence_only_when_registered=0`: bob
 *   (`reg_sendregister=0`, `publish=0`) talks to presenced directly. `friend add` on the
 *   console makes him SUBSCRIBE (`Event: presence`, `Expires: subscribe_expires`, no Accept).
 *   Every NOTIFY makes linphonec print `Friend "Alice" <sip:alice@example.com> is <Status>`:
 *   Online if any tuple is basic open, else Offline; an RPID activity of a dm:person (the
 *   first, if several) overrides that (busy → Busy, away → Away, on-the-phone → On the phone).
 *
 * So alice's status changes come from a second device of hers (a test UA publishing RPID),
 * composed by presenced with linphonec's publication; bob's linphonec follows them, then
 * alice's removal at quit; bob's quit unsubscribes. force_active = 1: no pres-rules.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, type RunningNode } from '../support/node.js';
import { rpcResult, presentityShow, watcherList, type ListedPublication, type ListedWatcher } from '../support/rpc.js';
import { Linphonec } from '../support/linphone.js';
import { header, basicOf, until, show, nextPublish, nextNotify } from '../support/traced-client.js';
import { FrontProxy } from '../support/front-proxy.js';
import { openUa, publish, RPID_NS, DM_NS, PIDF_NS } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';

// dist/test/interop/linphone.test.js → <repo>/test/interop/linphone/
const TEMPLATES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'interop', 'linphone');
const ALICE = 'sip:alice@example.com';
const BOB = 'sip:bob@example.com';
/**
 * alice's PUBLISH Expires: belle-sip refreshes at 90 %, 2 s before it runs out (a refresh
 * that came later would rightly get 412: the room a stalled machine has).
 */
const PUBLISH_EXPIRES = 20;
const REG_EXPIRES = 300;
const SUBSCRIBE_EXPIRES = 300;
const STEP_MS = 5000;
/**
 * linphonec's hard deadline (SIGTERM, then SIGKILL 2 s later), even if this process dies. The
 * whole file takes about 20 s, longer on a loaded machine; the `after` hook stops both anyway.
 */
const QUIT_AFTER_S = 300;

let node: RunningNode;
let proxy: FrontProxy;
let alice: Linphonec | undefined;
let bob: Linphonec | undefined;
let phone: TestUa | undefined;

before(async () => {
  node = await startNode({ force_active: 1 });
  proxy = await FrontProxy.start(node.udpPort);
});
after(async () => {
  await alice?.kill();
  await bob?.kill();
  await phone?.close();
  await proxy?.close();
  await node?.stop();
});

const publications = (): Promise<ListedPublication[]> => presentityShow(node.rpcPort, ALICE);
const watchers = (): Promise<ListedWatcher[]> => watcherList(node.rpcPort, ALICE);
const call = <T>(method: string, params: unknown[]): Promise<T> => rpcResult<T>(node.rpcPort, method, params);
const exitOf = (ua: Linphonec): Promise<unknown> => ua.exitWithin(STEP_MS);

/** A PIDF of alice's second device: one open tuple and a person with one RPID activity. */
function deviceDoc(activity: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${PIDF_NS}" xmlns:dm="${DM_NS}" xmlns:rpid="${RPID_NS}" entity="${ALICE}">` +
    '<tuple id="phone"><status><basic>open</basic></status></tuple>' +
    `<dm:person id="phone-user"><rpid:activities><rpid:${activity}/></rpid:activities></dm:person></presence>`
  );
}

let aliceEtag = '';
let firstPublishAt = 0;

test('alice (linphonec) registers with the front proxy and PUBLISHes her PIDF through it to presenced: 200, stored as sent', async () => {
  alice = await Linphonec.start({
    name: 'alice',
    templates: TEMPLATES,
    rc: 'alice.rc',
    vars: { PROXY_PORT: proxy.port, REG_EXPIRES, PUBLISH_EXPIRES },
    quitAfterS: QUIT_AFTER_S,
  });
  const reg = await alice.nextMessage('the REGISTER', (m) => m.sent && m.method === 'REGISTER', 0);
  assert.equal(reg.peer, `127.0.0.1:${proxy.port}`);
  const regOk = await alice.waitFor('the response to REGISTER', () => alice!.responseTo(reg));
  assert.equal(regOk.status, 200, regOk.text);
  assert.deepEqual(
    proxy.registrations.map((r) => [r.aor, r.expires]),
    [[ALICE, REG_EXPIRES]],
  );

  // The PUBLISH follows the 200 to REGISTER (never before it, see above).
  const first = await nextPublish(alice, 0, () => true, 'the first PUBLISH');
  firstPublishAt = Date.now();
  const wire = alice.messages().map((m) => m.text);
  assert.ok(wire.indexOf(first.req.text) > wire.indexOf(regOk.text), 'PUBLISH only after the 200 to REGISTER');
  assert.equal(first.req.startLine, `PUBLISH ${ALICE} SIP/2.0`);
  assert.equal(first.req.peer, `127.0.0.1:${proxy.port}`);
  assert.match(header(first.req, 'route') ?? '', new RegExp(`^<sip:127\\.0\\.0\\.1:${proxy.port};transport=udp;lr>$`));
  assert.equal(header(first.req, 'event'), 'presence');
  assert.equal(header(first.req, 'expires'), String(PUBLISH_EXPIRES));
  assert.equal(header(first.req, 'sip-if-match'), undefined);
  assert.equal(header(first.req, 'content-type'), 'application/pidf+xml');
  // liblinphone's PIDF: one tuple, basic open plus its own <pidfonline:online/>, a contact and a timestamp.
  assert.match(first.req.body, new RegExp(`<presence\\b[^>]*\\sentity="${ALICE}"`));
  assert.equal(basicOf(first.req.body), 'open');
  assert.match(first.req.body, /<pidfonline:online\/>/);
  assert.equal([...first.req.body.matchAll(/<tuple\b/g)].length, 1, first.req.body);

  assert.equal(first.res.status, 200, show(first.res));
  const etag = header(first.res, 'sip-etag');
  assert.ok(etag, `200 without SIP-ETag:\n${first.res.text}`);
  assert.equal(header(first.res, 'expires'), String(PUBLISH_EXPIRES));
  assert.ok(
    proxy.relayed.some((r) => r.direction === 'up' && r.startLine === first.req.startLine),
    'the front proxy relayed the PUBLISH',
  );

  // presenced answers 200 only once the store committed it: no waiting needed.
  const pubs = await publications();
  assert.equal(pubs.length, 1, JSON.stringify(pubs));
  assert.equal(pubs[0]!.etag, etag);
  assert.equal(pubs[0]!.content_type, 'application/pidf+xml');
  assert.equal(pubs[0]!.body, first.req.body);
  assert.equal(await call('presence.check_basic', [ALICE, 'open']), 1);
  aliceEtag = etag;
});

test('bob (linphonec, never registers) adds alice with `friend add`: SUBSCRIBE straight to presenced, 200, active NOTIFY with her PIDF, linphonec prints Online', async () => {
  assert.ok(alice, 'alice did not start (see the first test)');
  bob = await Linphonec.start({
    name: 'bob',
    templates: TEMPLATES,
    rc: 'bob.rc',
    vars: { UDP_PORT: node.udpPort, SUBSCRIBE_EXPIRES },
    quitAfterS: QUIT_AFTER_S,
  });
  bob.command(`friend add Alice ${ALICE}`);
  const sub = await bob.nextMessage('the SUBSCRIBE', (m) => m.sent && m.method === 'SUBSCRIBE', 0);
  assert.equal(sub.startLine, `SUBSCRIBE ${ALICE} SIP/2.0`);
  assert.equal(sub.peer, `127.0.0.1:${node.udpPort}`);
  assert.match(header(sub, 'route') ?? '', new RegExp(`^<sip:127\\.0\\.0\\.1:${node.udpPort};transport=udp;lr>$`));
  assert.equal(header(sub, 'event'), 'presence');
  assert.equal(header(sub, 'expires'), String(SUBSCRIBE_EXPIRES));
  assert.match(header(sub, 'from') ?? '', new RegExp(`<${BOB}>;tag=`));
  const ok = await bob.waitFor('the response to SUBSCRIBE', () => bob!.responseTo(sub));
  assert.equal(ok.status, 200, ok.text);
  assert.match(header(ok, 'to') ?? '', /;tag=/);
  assert.equal(header(ok, 'expires'), String(SUBSCRIBE_EXPIRES));

  const active = await nextNotify(bob, 0, 'the first NOTIFY');
  assert.equal(header(active.req, 'call-id'), header(sub, 'call-id'));
  assert.equal(header(active.req, 'event'), 'presence');
  assert.match(header(active.req, 'subscription-state') ?? '', /^active;expires=\d+$/);
  assert.equal(header(active.req, 'content-type'), 'application/pidf+xml');
  assert.equal(basicOf(active.req.body), 'open', active.req.text);
  assert.match(active.req.body, /<pidfonline:online\/>/);
  assert.equal(await bob.nthStatus(ALICE, 1), 'Online');
  assert.equal(bob.requests('REGISTER', true).length, 0, 'bob sent no REGISTER');
  assert.equal(bob.requests('PUBLISH', true).length, 0, 'bob sent no PUBLISH');

  const ws = await watchers();
  assert.equal(ws.length, 1, JSON.stringify(ws));
  assert.equal(ws[0]!.watcher_uri, BOB);
  assert.equal(ws[0]!.status, 'active');
  assert.equal(ws[0]!.call_id, header(sub, 'call-id'));
  assert.equal(ws[0]!.contact, /<([^>]+)>/.exec(header(sub, 'contact') ?? '')?.[1]);

  // The console knows the friend it subscribed to.
  const mark = bob.log.length;
  bob.command('friend list');
  await bob.waitFor('the friend list', () =>
    /name: Alice\naddress: sip:alice@example\.com\n/.test(bob!.log.slice(mark)) ? true : undefined,
  );
});

test("a second device of alice publishes RPID busy, then away (a modify), then removes it: bob's linphonec prints Busy, Away, Online from the composed NOTIFYs", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  phone = await openUa(node, 'udp');
  let mark = bob.messages().length;
  let statuses = bob.statuses(ALICE).length;
  const busy = await publish(phone, ALICE, { body: deviceDoc('busy'), expires: 60 });
  assert.equal(busy.status, 200);
  const n1 = await nextNotify(bob, mark, "the NOTIFY with the device's busy", (m) => m.body.includes('busy'));
  // Both publications in one document: linphonec's tuple, and the device's tuple and person.
  const lpTuple = /<tuple\b[^>]*\sid="([^"]+)"/.exec((await publications()).find((p) => p.etag === aliceEtag)?.body ?? '')?.[1];
  assert.ok(lpTuple, "linphonec's tuple id");
  assert.match(n1.req.body, new RegExp(`<tuple\\b[^>]*\\sid="${lpTuple}"`));
  assert.match(n1.req.body, /<tuple\b[^>]*\sid="phone"/);
  assert.match(n1.req.body, /<rpid:busy\/>/);
  assert.equal(await bob.nthStatus(ALICE, ++statuses), 'Busy');

  mark = bob.messages().length;
  const away = await publish(phone, ALICE, { body: deviceDoc('away'), etag: busy.headers.get('sip-etag')!, expires: 60 });
  assert.equal(away.status, 200);
  const n2 = await nextNotify(bob, mark, "the NOTIFY with the device's away", (m) => m.body.includes('away'));
  assert.doesNotMatch(n2.req.body, /busy/);
  assert.equal(await bob.nthStatus(ALICE, ++statuses), 'Away');

  mark = bob.messages().length;
  const removed = await publish(phone, ALICE, { etag: away.headers.get('sip-etag')!, expires: 0 });
  assert.equal(removed.status, 200);
  const n3 = await nextNotify(bob, mark, 'the NOTIFY after the device unpublished');
  assert.doesNotMatch(n3.req.body, /<dm:person|rpid:away/);
  assert.equal(basicOf(n3.req.body), 'open');
  assert.equal(await bob.nthStatus(ALICE, ++statuses), 'Online');
  assert.equal((await publications()).length, 1);
});

test("alice's linphonec refreshes her publication before it expires by sending it again (SIP-If-Match and the whole PIDF: a modify): 200 with a new SIP-ETag, the same document, so bob is not NOTIFYed", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const mark = alice.messages().length;
  const bobMark = bob.messages().length;
  const statuses = bob.statuses(ALICE).length;
  const before = await publications();
  const due = Math.max(0, firstPublishAt + PUBLISH_EXPIRES * 1000 - Date.now());
  const refresh = await nextPublish(
    alice,
    mark,
    (m) => header(m, 'sip-if-match') !== undefined && header(m, 'expires') !== '0',
    'the refreshing PUBLISH',
    due,
  );
  assert.equal(header(refresh.req, 'sip-if-match'), aliceEtag);
  assert.equal(header(refresh.req, 'expires'), String(PUBLISH_EXPIRES));
  // belle-sip's refresher re-sends the PUBLISH as it was, body included: for RFC 3903 that is
  // a modify (§4.4) with the same document, not a body-less refresh (§4.3).
  assert.equal(header(refresh.req, 'content-type'), 'application/pidf+xml');
  assert.equal(refresh.req.body, before[0]!.body);
  // 200, not 412: the publication it names was still live (refreshed before it ran out).
  assert.equal(refresh.res.status, 200, refresh.res.text);
  const etag = header(refresh.res, 'sip-etag')!;
  assert.ok(etag && etag !== aliceEtag, `a new entity-tag: ${etag}`);
  const pubs = await publications();
  assert.equal(pubs.length, 1, JSON.stringify(pubs));
  assert.equal(pubs[0]!.etag, etag);
  assert.equal(pubs[0]!.body, before[0]!.body);
  // Sent at 90 % of PUBLISH_EXPIRES, so at most a tenth of it was left before.
  assert.ok(pubs[0]!.expires > PUBLISH_EXPIRES / 2, `refreshed expiry: ${pubs[0]!.expires} s left`);
  // The same document again changes no state: presenced tells no watcher (as for a body-less
  // refresh). It then re-sends the current state on request (presence.refreshWatchers, type 1):
  // that NOTIFY leaves after anything the modify caused, from the same socket, so it is the only one.
  await call('presence.refreshWatchers', [ALICE, 'presence', 1]);
  const resent = await nextNotify(bob, bobMark, 'the NOTIFY presence.refreshWatchers asked for');
  // By CSeq: over UDP a NOTIFY may come twice (a retransmission), it is still one.
  const notifies = new Set(
    bob
      .messages()
      .slice(bobMark)
      .filter((m) => !m.sent && m.method === 'NOTIFY')
      .map((m) => header(m, 'cseq')),
  );
  assert.deepEqual([...notifies], [header(resent.req, 'cseq')], 'no NOTIFY for a modify with the same document');
  assert.equal(await bob.nthStatus(ALICE, statuses + 1), 'Online', "bob's linphonec saw the re-sent state only");
  assert.equal(bob.statuses(ALICE).length, statuses + 1, "bob's linphonec saw no other change");
  aliceEtag = etag;
});

test("alice quits: linphonec removes her publication (Expires: 0) and unregisters; bob's linphonec prints Offline", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const aliceMark = alice.messages().length;
  const bobMark = bob.messages().length;
  const statuses = bob.statuses(ALICE).length;
  alice.quit();
  const removal = await alice.nextMessage(
    'the removing PUBLISH',
    (m) => m.sent && m.method === 'PUBLISH' && header(m, 'expires') === '0',
    aliceMark,
  );
  assert.equal(header(removal, 'sip-if-match'), aliceEtag);
  assert.equal(removal.body, '');
  const exit = await exitOf(alice);
  assert.deepEqual(exit, { code: 0, signal: null }, alice.tail());
  // linphonec exits without waiting for the answers: the store says whether the removal was
  // applied, the front proxy whether it unregistered.
  await until("alice's publication gone", async () => ((await publications()).length === 0 ? true : undefined));
  const answer = alice.responseTo(removal);
  if (answer) assert.equal(answer.status, 200, answer.text);
  await until("alice's unregistration at the front proxy", async () => (proxy.registrations.length >= 2 ? true : undefined));
  assert.deepEqual(
    proxy.registrations.map((r) => [r.aor, r.expires]),
    [
      [ALICE, REG_EXPIRES],
      [ALICE, 0],
    ],
  );

  const gone = await nextNotify(bob, bobMark, 'the NOTIFY after alice unpublished');
  assert.match(header(gone.req, 'subscription-state') ?? '', /^active;/);
  assert.equal(basicOf(gone.req.body), undefined, `no tuple left:\n${gone.req.body}`);
  assert.equal(await bob.nthStatus(ALICE, statuses + 1), 'Offline');
});

test("bob quits: linphonec unsubscribes in the dialog (straight to presenced's Contact), presenced drops the watcher", async () => {
  assert.ok(bob, 'bob did not start (see the tests before)');
  const mark = bob.messages().length;
  const sub = bob.requests('SUBSCRIBE', true)[0]!;
  bob.quit();
  const unsub = await bob.nextMessage(
    'the unsubscribing SUBSCRIBE',
    (m) => m.sent && m.method === 'SUBSCRIBE' && header(m, 'expires') === '0',
    mark,
  );
  assert.equal(header(unsub, 'call-id'), header(sub, 'call-id'));
  assert.equal(unsub.startLine, `SUBSCRIBE sip:presence@127.0.0.1:${node.udpPort} SIP/2.0`);
  assert.equal(header(unsub, 'route'), undefined);
  assert.match(header(unsub, 'to') ?? '', /;tag=/);
  const exit = await exitOf(bob);
  assert.deepEqual(exit, { code: 0, signal: null }, bob.tail());
  // Like alice, linphonec does not wait for the 200 or the terminated NOTIFY.
  await until('no watcher left', async () => ((await watchers()).length === 0 ? true : undefined));
});

test('on the whole wire: every NOTIFY got 200 from linphonec with increasing CSeqs, every PUBLISH that got an answer got 200, the front proxy refused nothing', async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const notifies = bob.requests('NOTIFY', false);
  assert.ok(notifies.length >= 5, `NOTIFYs seen by bob: ${notifies.length}`);
  let last = 0;
  for (const n of notifies) {
    const res = bob.responseTo(n);
    assert.equal(res?.status, 200, `${n.text}\n${show(res)}`);
    const cseq = Number((header(n, 'cseq') ?? '').split(' ')[0]);
    assert.ok(cseq > last, `NOTIFY CSeq ${cseq} after ${last}`);
    last = cseq;
  }
  const publishes = alice.requests('PUBLISH', true);
  assert.ok(publishes.length >= 3, `PUBLISHes of alice: ${publishes.length}`);
  for (const p of publishes) {
    const res = alice.responseTo(p);
    if (header(p, 'expires') === '0' && !res) continue; // the removal at quit, see above
    assert.equal(res?.status, 200, `${p.text}\n${show(res)}`);
  }
  assert.deepEqual(proxy.refused, []);
});
