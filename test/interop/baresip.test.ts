/**
 * baresip (Debian "baresip", 1.0.0 in bookworm) as an independent presence client of a real
 * node: its own SIP stack, PIDF writer and NOTIFY parser, none of ours.
 *
 * What baresip 1.0's presence module can do, and so what is tested (see modules/presence in
 * baresip v1.0.0):
 * - publisher.c: an account with `pubint=N` PUBLISHes `Event: presence`, `Expires: N`,
 *   application/pidf+xml with one tuple (basic open/closed) to its own AOR, through the
 *   account's outbound proxy; a status change is a modify (SIP-If-Match, full body), every
 *   0.9·N s a refresh (SIP-If-Match, no body), at quit a removal (SIP-If-Match, Expires: 0).
 *   The console commands `presence_online` / `presence_offline` are its only states: it
 *   cannot publish busy or away.
 * - subscriber.c: every contact marked `;presence=p2p` gets a SUBSCRIBE (`Event: presence`,
 *   `Expires: 600`, no Accept) sent to the contact's URI through the outbound proxy, so
 *   "p2p" works through a presence server as well; there is no other mode. A NOTIFY body
 *   sets the contact to Online (basic open), Offline (anything else), Busy (<rpid:busy/> or
 *   <rpid:on-the-phone/>), or Unknown (no body); the `contacts` command lists it.
 *
 * The scenario: alice (UDP) publishes, bob (TCP) subscribes and stays pending until alice's
 * pres-rules allow him (XCAP PUT), then follows her through online, busy (a second device:
 * a test UA publishing RPID on-the-phone, composed with baresip's publication), offline, a
 * refresh, and her removal at quit; bob's quit unsubscribes. Each step is checked on the
 * wire (baresip's SIP trace), in the node (JSON-RPC) and in what baresip itself shows.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, type RunningNode } from '../support/node.js';
import { rpcResult, presentityShow, watcherList, type ListedPublication, type ListedWatcher } from '../support/rpc.js';
import { Baresip } from '../support/baresip.js';
import { header, basicOf, until, show, nextPublish, nextNotify } from '../support/traced-client.js';
import { openUa, publish, rules, putRules, RPID_NS, DM_NS, PIDF_NS } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';

// dist/test/interop/baresip.test.js → <repo>/test/interop/baresip/
const TEMPLATES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'interop', 'baresip');
const ALICE = 'sip:alice@example.com';
const BOB = 'sip:bob@example.com';
/**
 * alice's PUBLISH Expires: baresip refreshes after 0.9 × 20 = 18 s, 2 s before expiry (a
 * refresh that came later would rightly get 412: the room a stalled machine has).
 */
const PUBINT = 20;
/**
 * baresip's own deadline (-t): it quits by itself even if this process dies. The whole file
 * takes about 25 s, longer on a loaded machine; the `after` hook kills both clients anyway.
 */
const QUIT_AFTER_S = 300;
const STEP_MS = 5000;

let node: RunningNode;
let alice: Baresip | undefined;
let bob: Baresip | undefined;
let phone: TestUa | undefined;

before(async () => {
  node = await startNode();
});
after(async () => {
  await alice?.kill();
  await bob?.kill();
  await phone?.close();
  await node?.stop();
});

const publications = (): Promise<ListedPublication[]> => presentityShow(node.rpcPort, ALICE);
const watchers = (): Promise<ListedWatcher[]> => watcherList(node.rpcPort, ALICE);
const call = <T>(method: string, params: unknown[]): Promise<T> => rpcResult<T>(node.rpcPort, method, params);
const exitOf = (ua: Baresip): Promise<unknown> => ua.exitWithin(STEP_MS);

let aliceEtag = '';

test('alice (baresip, UDP) PUBLISHes through presenced; presence_online modifies her publication (SIP-If-Match)', async () => {
  alice = await Baresip.start({
    name: 'alice',
    templates: TEMPLATES,
    accounts: 'alice.accounts',
    contacts: 'alice.contacts',
    vars: { PUBINT, UDP_PORT: node.udpPort },
    serverAddr: `127.0.0.1:${node.udpPort}`,
    quitAfterS: QUIT_AFTER_S,
  });
  // baresip publishes as soon as its presence module starts. Without REGISTER its status is
  // still "unknown" then, and it says so: <basic>unknown</basic> (not a PIDF value, RFC 3863
  // §4.1.4). Which final response that gets is not asserted here; the state set below is.
  const first = await nextPublish(alice, 0, () => true, 'the first PUBLISH');
  assert.equal(header(first.req, 'event'), 'presence');
  assert.equal(header(first.req, 'expires'), String(PUBINT));
  assert.equal(header(first.req, 'sip-if-match'), undefined);
  const mark = alice.messages().length;

  alice.command('presence_online');
  await alice.waitFor('the status change to Online', () =>
    /update status of 'sip:alice@example\.com' from '\w+' to 'Online'/.test(alice!.log) ? true : undefined,
  );
  const online = await nextPublish(alice, mark, (m) => basicOf(m.body) === 'open', 'the PUBLISH of basic open');
  assert.equal(online.res.status, 200, show(online.res));
  const etag = header(online.res, 'sip-etag');
  assert.ok(etag, `200 without SIP-ETag:\n${online.res.text}`);
  assert.equal(header(online.res, 'expires'), String(PUBINT));
  assert.equal(header(online.req, 'content-type'), 'application/pidf+xml');
  // A modify of the publication the first PUBLISH created, when that one was accepted.
  if (first.res.status === 200) assert.equal(header(online.req, 'sip-if-match'), header(first.res, 'sip-etag'));

  // presenced answers 200 only once the store committed it: no waiting needed.
  const pubs = await publications();
  assert.equal(pubs.length, 1, `one publication (the modify replaced the first): ${JSON.stringify(pubs)}`);
  assert.equal(pubs[0]!.etag, etag);
  assert.equal(pubs[0]!.content_type, 'application/pidf+xml');
  assert.equal(pubs[0]!.body, online.req.body);
  assert.equal(await call('presence.check_basic', [ALICE, 'open']), 1);
  aliceEtag = etag;
});

test('bob (baresip, TCP) SUBSCRIBEs to his ;presence=p2p contact through presenced: 200, pending NOTIFY without body, baresip shows Unknown', async () => {
  assert.ok(alice, 'alice did not start (see the first test)');
  bob = await Baresip.start({
    name: 'bob',
    templates: TEMPLATES,
    accounts: 'bob.accounts',
    contacts: 'bob.contacts',
    vars: { TCP_PORT: node.tcpPort },
    serverAddr: `127.0.0.1:${node.tcpPort}`,
    quitAfterS: QUIT_AFTER_S,
  });
  // baresip subscribes one second after start.
  const sub = await bob.nextMessage('the SUBSCRIBE', (m) => m.sent && m.method === 'SUBSCRIBE', 0);
  assert.equal(sub.startLine, `SUBSCRIBE ${ALICE} SIP/2.0`);
  assert.equal(sub.transport, 'TCP');
  assert.equal(header(sub, 'event'), 'presence');
  assert.equal(header(sub, 'expires'), '600');
  assert.match(header(sub, 'route') ?? '', new RegExp(`^<sip:127\\.0\\.0\\.1:${node.tcpPort};transport=tcp;lr>$`));
  const ok = await bob.waitFor('the response to SUBSCRIBE', () => bob!.responseTo(sub));
  assert.equal(ok.status, 200, ok.text);
  assert.match(header(ok, 'to') ?? '', /;tag=/);
  assert.equal(header(ok, 'expires'), '600');

  // No pres-rules for alice yet: bob waits (force_active = 0).
  const pending = await nextNotify(bob, 0, 'the first NOTIFY');
  assert.equal(header(pending.req, 'call-id'), header(sub, 'call-id'));
  assert.equal(header(pending.req, 'event'), 'presence');
  assert.match(header(pending.req, 'subscription-state') ?? '', /^pending;expires=\d+$/);
  assert.equal(pending.req.body, '');
  assert.equal(await bob.contactStatus(ALICE), 'Unknown');

  const ws = await watchers();
  assert.equal(ws.length, 1, JSON.stringify(ws));
  assert.equal(ws[0]!.watcher_uri, BOB);
  assert.equal(ws[0]!.status, 'pending');
  assert.equal(ws[0]!.call_id, header(sub, 'call-id'));
  assert.equal(ws[0]!.contact, /^<([^>]+)>/.exec(header(sub, 'contact') ?? '')?.[1]);
});

test("alice's pres-rules allow bob (XCAP PUT): bob gets an active NOTIFY with her PIDF, baresip shows Online", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const mark = bob.messages().length;
  // RFC 5025 §3.3: what the rule provides is spelled out, or the tuples and persons (and so
  // the basic status and activities baresip reads) are withheld.
  const allow = rules([
    {
      id: 'bob',
      who: `<cr:one id="${BOB}"/>`,
      handling: 'allow',
      transformations:
        '<pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons>' +
        '<pr:provide-all-attributes/>',
    },
  ]);
  const status = await putRules(node.xcapPort, ALICE, allow);
  assert.ok(status === 200 || status === 201, `XCAP PUT of alice's pres-rules: ${status}`);

  const active = await nextNotify(bob, mark, 'the NOTIFY after the rules allowed bob', (m) =>
    /^active/.test(header(m, 'subscription-state') ?? ''),
  );
  assert.match(header(active.req, 'subscription-state') ?? '', /^active;expires=\d+$/);
  assert.equal(header(active.req, 'content-type'), 'application/pidf+xml');
  assert.equal(basicOf(active.req.body), 'open', active.req.text);
  assert.match(active.req.body, new RegExp(`entity="${ALICE}"`));
  assert.equal(await bob.contactStatus(ALICE), 'Online');
  const ws = await until('bob active in watcher_list', async () => {
    const w = await watchers();
    return w.length === 1 && w[0]!.status === 'active' ? w : undefined;
  });
  assert.equal(ws[0]!.watcher_uri, BOB);
});

test("a second device of alice publishes RPID on-the-phone: bob's baresip shows Busy from the composed NOTIFY, then Online when it is removed", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  phone = await openUa(node, 'udp');
  const doc =
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${PIDF_NS}" xmlns:dm="${DM_NS}" xmlns:rpid="${RPID_NS}" entity="${ALICE}">` +
    '<tuple id="phone"><status><basic>open</basic></status></tuple>' +
    '<dm:person id="phone-user"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person></presence>';
  let mark = bob.messages().length;
  const res = await publish(phone, ALICE, { body: doc, expires: 60 });
  assert.equal(res.status, 200);
  const busy = await nextNotify(bob, mark, "the NOTIFY with the phone's publication", (m) => m.body.includes('on-the-phone'));
  // Both publications in one document: baresip's tuple and person, and the phone's.
  assert.match(busy.req.body, /<tuple\b[^>]*\sid="t4109"/);
  assert.match(busy.req.body, /<tuple\b[^>]*\sid="phone"/);
  assert.equal(await bob.contactStatus(ALICE), 'Busy');
  await bob.waitFor('"changed status from Online to Busy"', () =>
    /<sip:alice@example\.com> changed status from Online to Busy/.test(bob!.log) ? true : undefined,
  );

  mark = bob.messages().length;
  const removed = await publish(phone, ALICE, { etag: res.headers.get('sip-etag')!, expires: 0 });
  assert.equal(removed.status, 200);
  const back = await nextNotify(bob, mark, 'the NOTIFY after the phone unpublished');
  assert.doesNotMatch(back.req.body, /on-the-phone/);
  assert.equal(basicOf(back.req.body), 'open');
  assert.equal(await bob.contactStatus(ALICE), 'Online');
  assert.equal((await publications()).length, 1);
});

test("alice goes offline (presence_offline): her publication is modified to closed, bob's baresip shows Offline", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const aliceMark = alice.messages().length;
  const bobMark = bob.messages().length;
  alice.command('presence_offline');
  const off = await nextPublish(alice, aliceMark, (m) => basicOf(m.body) === 'closed', 'the PUBLISH of basic closed');
  assert.equal(header(off.req, 'sip-if-match'), aliceEtag);
  assert.equal(off.res.status, 200, off.res.text);
  const etag = header(off.res, 'sip-etag')!;
  assert.notEqual(etag, aliceEtag, 'a modify gets a new entity-tag (RFC 3903 §6, step 7)');
  const pubs = await publications();
  assert.equal(pubs.length, 1, JSON.stringify(pubs));
  assert.equal(pubs[0]!.etag, etag);
  assert.equal(basicOf(pubs[0]!.body), 'closed');
  assert.equal(await call('presence.check_basic', [ALICE, 'closed']), 1);
  aliceEtag = etag;

  const closed = await nextNotify(bob, bobMark, 'the NOTIFY of basic closed', (m) => basicOf(m.body) === 'closed');
  assert.match(header(closed.req, 'subscription-state') ?? '', /^active;/);
  await bob.waitFor('"changed status from Online to Offline"', () =>
    /<sip:alice@example\.com> changed status from Online to Offline/.test(bob!.log) ? true : undefined,
  );
  assert.equal(await bob.contactStatus(ALICE), 'Offline');
});

test("alice's baresip refreshes (SIP-If-Match, no body) before expiry: 200 with a new SIP-ETag, the state stays", async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const mark = alice.messages().length;
  const bobMark = bob.messages().length;
  // Due 0.9 × PUBINT after the 200 to presence_offline's PUBLISH.
  const refresh = await nextPublish(
    alice,
    mark,
    (m) => m.body === '' && header(m, 'expires') !== '0',
    'the refresh PUBLISH',
    PUBINT * 1000 + STEP_MS,
  );
  assert.equal(header(refresh.req, 'sip-if-match'), aliceEtag);
  assert.equal(header(refresh.req, 'expires'), String(PUBINT));
  assert.equal(refresh.res.status, 200, refresh.res.text);
  const etag = header(refresh.res, 'sip-etag')!;
  assert.ok(etag);
  const pubs = await publications();
  assert.equal(pubs.length, 1, JSON.stringify(pubs));
  assert.equal(pubs[0]!.etag, etag);
  assert.equal(basicOf(pubs[0]!.body), 'closed');
  // Sent at 0.9 × PUBINT, so at most PUBINT / 10 s were left before it.
  assert.ok(pubs[0]!.expires > PUBINT / 2, `refreshed expiry: ${pubs[0]!.expires} s left`);
  // A refresh changes no state (RFC 3903 §4.2): bob gets no NOTIFY for it. presenced then re-sends
  // the current state on request (presence.refreshWatchers, type 1): that NOTIFY goes out after
  // anything the refresh caused, over bob's TCP connection in order, so it is the only one.
  await call('presence.refreshWatchers', [ALICE, 'presence', 1]);
  const resent = await nextNotify(bob, bobMark, 'the NOTIFY presence.refreshWatchers asked for');
  const since = new Set(
    bob
      .messages()
      .slice(bobMark)
      .filter((m) => !m.sent && m.method === 'NOTIFY')
      .map((m) => header(m, 'cseq')),
  );
  assert.deepEqual([...since], [header(resent.req, 'cseq')], 'no NOTIFY for a refresh');
  assert.equal(await bob.contactStatus(ALICE), 'Offline');
  aliceEtag = etag;
});

test('alice quits: baresip removes her publication (Expires: 0), bob is notified; bob quits: unsubscribe, terminated NOTIFY, no watcher left', async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const aliceMark = alice.messages().length;
  const bobMark = bob.messages().length;
  alice.quit();
  const removal = await alice.nextMessage(
    'the removing PUBLISH',
    (m) => m.sent && m.method === 'PUBLISH' && header(m, 'expires') === '0',
    aliceMark,
  );
  assert.equal(header(removal, 'sip-if-match'), aliceEtag);
  assert.equal(removal.body, '');
  assert.equal(header(removal, 'content-type'), undefined);
  // baresip sends the removal without a response handler and exits at once: presenced's 200
  // may not be in its trace; the store says whether the removal was applied.
  const exit = await exitOf(alice);
  assert.deepEqual(exit, { code: 0, signal: null }, alice.tail());
  const answer = alice.responseTo(removal);
  if (answer) assert.equal(answer.status, 200, answer.text);
  await until("alice's publication gone", async () => ((await publications()).length === 0 ? true : undefined));

  const gone = await nextNotify(bob, bobMark, 'the NOTIFY after alice unpublished');
  assert.match(header(gone.req, 'subscription-state') ?? '', /^active;/);
  assert.equal(basicOf(gone.req.body), undefined, `no tuple left:\n${gone.req.body}`);
  // baresip reads a document without <basic>open</basic> as Offline.
  assert.equal(await bob.contactStatus(ALICE), 'Offline');

  const unsubMark = bob.messages().length;
  bob.quit();
  const unsub = await bob.nextMessage(
    'the unsubscribing SUBSCRIBE',
    (m) => m.sent && m.method === 'SUBSCRIBE' && header(m, 'expires') === '0',
    unsubMark,
  );
  const unsubOk = await bob.waitFor('the response to the unsubscribe', () => bob!.responseTo(unsub));
  assert.equal(unsubOk.status, 200, unsubOk.text);
  const final = await bob.nextMessage('the final NOTIFY', (m) => !m.sent && m.method === 'NOTIFY', unsubMark);
  assert.match(header(final, 'subscription-state') ?? '', /^terminated/);
  assert.deepEqual(await watchers(), []);
  const bobExit = await exitOf(bob);
  assert.deepEqual(bobExit, { code: 0, signal: null }, bob.tail());
});

test('on the whole wire: every NOTIFY got 200 from baresip, NOTIFY CSeqs increase, every PUBLISH after the first got 200', async () => {
  assert.ok(alice && bob, 'alice or bob did not start (see the tests before)');
  const notifies = bob.requests('NOTIFY', false);
  assert.ok(notifies.length >= 6, `NOTIFYs seen by bob: ${notifies.length}`);
  let last = 0;
  for (const n of notifies) {
    const res = bob.responseTo(n);
    assert.equal(res?.status, 200, `${n.text}\n${show(res)}`);
    const cseq = Number((header(n, 'cseq') ?? '').split(' ')[0]);
    // A UDP retransmission would repeat a CSeq; over TCP there is none.
    assert.ok(cseq > last, `NOTIFY CSeq ${cseq} after ${last}`);
    last = cseq;
  }
  const publishes = alice.requests('PUBLISH', true);
  for (const p of publishes.slice(1)) {
    if (header(p, 'expires') === '0') continue; // the removal at quit, see above
    const res = alice.responseTo(p);
    assert.equal(res?.status, 200, `${p.text}\n${show(res)}`);
  }
});
