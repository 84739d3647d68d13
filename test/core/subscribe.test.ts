/**
 * SUBSCRIBE / NOTIFY end to end (RFC 6665, RFC 3856; issue 4), over UDP and TCP against a
 * real node: dialog creation, the immediate NOTIFY and its headers, refresh, unsubscribe,
 * expiry, CSeq order, watchers that answer 481 or never answer, merged requests, pending.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa } from '../support/sip-ua.js';
import { SipRequest } from '../../transport/message.js';
import { NameAddr } from '../../transport/uri.js';
import {
  Dialog,
  pidf,
  publish,
  subscribe,
  watch,
  uniqueUri,
  parseSubState,
  bodyOf,
  cseqOf,
  showsOpen,
  sleep,
  fetchBarrier,
  receivedSince,
  storedKeys,
  withUas,
} from '../support/presence.js';
import { rmSync } from 'node:fs';

const CONFIG = { force_active: 1, min_expires: 60, max_expires: 3600, sip_t1: 50 };
/** Short subscriptions allowed; Timer F = 64 × 50 ms = 3.2 s. */
const QUICK = { force_active: 1, min_expires: 0, sip_t1: 50 };
/** Timer F of QUICK's NOTIFYs: 64 × T1. */
const TIMER_F_MS = 64 * 50;
/** No authorisation rules and no force_active: watchers stay pending. */
const PENDING = { force_active: 0, sip_t1: 50 };

let node: RunningNode;
let quick: RunningNode;
let pending: RunningNode;
before(async () => {
  [node, quick, pending] = await Promise.all([startNode(CONFIG), startNode(QUICK), startNode(PENDING)]);
});
after(async () => {
  await Promise.all([node?.stop(), quick?.stop(), pending?.stop()]);
});

async function publishOk(ua: TestUa, presentity: string, note: string, etag?: string): Promise<string> {
  const res = await publish(ua, presentity, { body: pidf(presentity, 't1', 'open', note), expires: 600, etag });
  assert.equal(res.status, 200, `PUBLISH: ${res.status} ${res.reason}`);
  return res.headers.get('sip-etag')!;
}

const hasNote = (note: string) => (r: SipRequest) => bodyOf(r).includes(`<note>${note}</note>`);

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] SUBSCRIBE → 200 with a To tag, Contact and Expires ≤ requested`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const { res } = await subscribe(ua, p, { expires: 600 });
      assert.equal(res.status, 200);
      assert.ok(res.toTag, 'the 2xx creates the dialog: To tag (RFC 6665 §4.2.1.1)');
      const contact = res.headers.get('contact');
      assert.ok(contact, '2xx to SUBSCRIBE carries Contact');
      assert.doesNotThrow(() => NameAddr.parse(contact), `Contact parses: ${contact}`);
      const granted = Number(res.headers.get('expires'));
      assert.ok(granted > 0 && granted <= 600, `Expires ${granted} ≤ 600`);
      assert.match(res.headers.get('allow-events') ?? '', /\bpresence\b/, 'Allow-Events in the 2xx (RFC 6665 §4.4.4)');
      const long = await subscribe(ua, uniqueUri(), { expires: 100_000 });
      assert.equal(long.res.status, 200);
      assert.ok(Number(long.res.headers.get('expires')) <= 3600, 'Expires shortened to max_expires');
    }));

  test(`[${proto}] SUBSCRIBE below min_expires → 423 with Min-Expires`, () =>
    withUas(node, proto, 1, async (ua) => {
      const { res } = await subscribe(ua, uniqueUri(), { expires: 10 });
      assert.equal(res.status, 423);
      assert.equal(res.headers.get('min-expires'), '60');
      const { dialog } = await watch(ua, uniqueUri());
      const refresh = await dialog.request(5);
      assert.equal(refresh.status, 423, 'a too brief refresh is refused too');
      assert.equal(refresh.headers.get('min-expires'), '60');
    }));

  test(`[${proto}] SUBSCRIBE without Contact or otherwise malformed → 400, not 500`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const noContact = ua.build({
        method: 'SUBSCRIBE',
        uri: p,
        bare: true,
        headers: [
          ['max-forwards', '70'],
          ['event', 'presence'],
          ['expires', '600'],
        ],
      });
      const r1 = await ua.request(noContact);
      assert.equal(r1.status, 400, `missing Contact: ${r1.status} ${r1.reason}`);
      const r2 = await ua.request({
        method: 'SUBSCRIBE',
        uri: p,
        headers: [
          ['event', 'presence'],
          ['expires', 'soon'],
        ],
      });
      assert.equal(r2.status, 400, `malformed Expires: ${r2.status} ${r2.reason}`);
      const r3 = await ua.request({
        method: 'SUBSCRIBE',
        uri: p,
        from: `<${ua.aor}>`,
        headers: [
          ['event', 'presence'],
          ['expires', '600'],
        ],
      });
      // RFC 4475 §3.4.1: an RFC 2543 SUBSCRIBE without From tag is accepted (test/core/uri-robustness.test.ts follows its dialog).
      assert.equal(r3.status, 200, `From without tag: ${r3.status} ${r3.reason}`);
      const r4 = await ua.request({
        method: 'SUBSCRIBE',
        uri: p,
        headers: [
          ['event', 'presence'],
          ['expires', '600'],
          ['contact', 'this is <not a uri'],
        ],
        bare: true,
      });
      assert.equal(r4.status, 400, `malformed Contact: ${r4.status} ${r4.reason}`);
    }));

  test(`[${proto}] Accept (RFC 3261 §20.1, HTTP semantics): a range that excludes PIDF, or gives it q=0, → 406 with Accept; no NOTIFY follows`, () =>
    withUas(node, proto, 1, async (ua) => {
      const cases: Array<[string, number]> = [
        ['application/pidf+xml', 200],
        ['application/*', 200],
        ['*/*', 200],
        ['text/plain, application/pidf+xml;q=0.5', 200],
        ['text/plain', 406],
        ['application/pidf+xml;q=0', 406],
        ['*/*, application/pidf+xml;q=0', 406],
        ['application/*;q=0, application/pidf+xml', 200],
      ];
      const refused = new Set<string>();
      const mark = ua.received.length;
      for (const [accept, status] of cases) {
        const { res, dialog } = await subscribe(ua, uniqueUri(), { expires: 600, headers: [['accept', accept]] });
        assert.equal(res.status, status, `Accept: ${accept} → ${res.status} ${res.reason}`);
        if (status === 406) {
          assert.equal(res.headers.get('accept'), 'application/pidf+xml');
          refused.add(dialog.callId);
        }
      }
      const stray = await receivedSince(ua, mark, 'NOTIFY', (r) => refused.has(r.callId ?? ''), uniqueUri());
      assert.equal(stray.length, 0, 'no NOTIFY after a 406');
    }));

  test(`[${proto}] SUBSCRIBE with an unknown Event → 489 with Allow-Events`, () =>
    withUas(node, proto, 1, async (ua) => {
      const { res } = await subscribe(ua, uniqueUri(), { event: 'no-such-package', expires: 600 });
      assert.equal(res.status, 489);
      assert.match(res.headers.get('allow-events') ?? '', /\bpresence\b/);
      const bare = await ua.request({ method: 'SUBSCRIBE', uri: uniqueUri(), headers: [['expires', '600']] });
      assert.equal(bare.status, 489, 'no Event header is no package (RFC 6665 §7.2.1)');
    }));

  test(`[${proto}] immediate NOTIFY: dialog identifiers, Subscription-State, Event id, Contact, Max-Forwards, Route = Record-Route`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      await publishOk(ua, p, 'here');
      const rr1 = `<sip:127.0.0.1:${ua.localPort}${proto === 'tcp' ? ';transport=tcp' : ''};lr>`;
      const rr2 = '<sip:proxy2.example.invalid;lr;ftag=x1>';
      const { res, dialog } = await subscribe(ua, p, {
        event: 'presence;id=watch-42',
        expires: 600,
        headers: [
          ['record-route', rr1],
          ['record-route', rr2],
        ],
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.headers.getAll('record-route'), [rr1, rr2], 'the 2xx copies Record-Route (RFC 3261 §12.1.1)');
      const granted = Number(res.headers.get('expires'));
      const n = await dialog.nextNotify(3000);
      assert.equal(n.callId, dialog.callId);
      assert.equal(n.fromTag, res.toTag, "NOTIFY From tag is the 2xx's To tag");
      assert.equal(n.toTag, dialog.fromTag, "NOTIFY To tag is the SUBSCRIBE's From tag");
      assert.equal(n.cseq.method, 'NOTIFY');
      const st = parseSubState(n);
      assert.equal(st.state, 'active');
      assert.ok(st.expires !== undefined && st.expires > 0 && st.expires <= granted, `expires=${st.expires} within the granted ${granted}`);
      const ev = n.headers.get('event') ?? '';
      assert.match(ev, /^\s*presence\s*;/i);
      assert.match(ev, /;\s*id\s*=\s*watch-42\b/, `Event keeps the id (RFC 6665 §8.2.1), got "${ev}"`);
      assert.ok(n.headers.get('contact'), 'NOTIFY carries Contact');
      assert.ok(Number(n.headers.get('max-forwards')) > 0, 'NOTIFY carries Max-Forwards');
      assert.deepEqual(n.headers.getAll('route'), [rr1, rr2], 'route set = Record-Route in order (RFC 3261 §12.1.1)');
      assert.equal(
        n.uri,
        `sip:${ua.user}@127.0.0.1:${ua.localPort}${proto === 'tcp' ? ';transport=tcp' : ''}`,
        'Request-URI = remote target (loose routing)',
      );
      assert.equal(n.contentType, 'application/pidf+xml');
      assert.equal(showsOpen(bodyOf(n)), true);
      // The id is part of the dialog usage: a refresh with it works, without it is 481.
      assert.equal((await dialog.request(600)).status, 200);
      await dialog.nextNotify(3000);
      const other = new Dialog(ua, p, 'presence', dialog.callId, dialog.fromTag, dialog.toTag);
      other.cseq = dialog.cseq;
      assert.equal((await other.request(600)).status, 481, 'a different event id names no subscription');
    }));

  test(`[${proto}] in-dialog refresh → 200 and a NOTIFY`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      await publishOk(ua, p, 'here');
      const { dialog, first } = await watch(ua, p, { expires: 600 });
      const res = await dialog.request(1200);
      assert.equal(res.status, 200);
      assert.equal(res.toTag, dialog.toTag, 'same dialog');
      const granted = Number(res.headers.get('expires'));
      assert.ok(granted > 600 && granted <= 1200, `refreshed Expires ${granted}`);
      const n = await dialog.nextNotify(3000);
      assert.ok(cseqOf(n) > cseqOf(first));
      const st = parseSubState(n);
      assert.equal(st.state, 'active');
      assert.ok(st.expires! > 600 && st.expires! <= granted, `NOTIFY expires=${st.expires} reflects the refresh`);
      assert.equal(showsOpen(bodyOf(n)), true, 'the refresh NOTIFY carries the full state');
    }));

  test(`[${proto}] an in-dialog refresh with a malformed Contact → 400 and changes nothing (its CSeq may be used again)`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const { dialog } = await watch(ua, p, { expires: 600 });
      const cseq = dialog.cseq + 1;
      const bad = await ua.request({
        method: 'SUBSCRIBE',
        uri: p,
        from: `<${ua.aor}>;tag=${dialog.fromTag}`,
        to: `<${p}>;tag=${dialog.toTag}`,
        callId: dialog.callId,
        cseq,
        headers: [
          ['max-forwards', '70'],
          ['event', 'presence'],
          ['expires', '600'],
          ['contact', 'this is <not a uri'],
        ],
        bare: true,
      });
      assert.equal(bad.status, 400, `${bad.status} ${bad.reason}`);
      dialog.cseq = cseq - 1; // the same CSeq again, now with a good Contact
      const ok = await dialog.request(600);
      assert.equal(ok.status, 200, `the refused refresh did not consume CSeq ${cseq}: ${ok.status} ${ok.reason}`);
    }));

  test(`[${proto}] Expires: 0 → final NOTIFY terminated, then nothing more`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const etag = await publishOk(ua, p, 'one');
      const { dialog } = await watch(ua, p);
      const res = await dialog.request(0);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('expires'), '0');
      const last = await dialog.nextNotify(3000);
      assert.equal(parseSubState(last).state, 'terminated');
      const mark = ua.received.length;
      await publishOk(ua, p, 'two', etag);
      // Above the final NOTIFY's CSeq: over UDP it may itself come again (a retransmission).
      const later = await receivedSince(ua, mark, 'NOTIFY', (r) => r.callId === dialog.callId && cseqOf(r) > cseqOf(last), p);
      assert.deepEqual(
        later.map((r) => `${cseqOf(r)} ${parseSubState(r).state}`),
        [],
        'no NOTIFY after the terminated one',
      );
      assert.equal((await dialog.request(600)).status, 481, 'the subscription is gone');
    }));

  test(`[${proto}] initial SUBSCRIBE with Expires: 0 (fetch) → 200 and one terminated NOTIFY with the state`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      await publishOk(ua, p, 'fetched');
      const { res, dialog } = await subscribe(ua, p, { expires: 0 });
      assert.equal(res.status, 200);
      const n = await dialog.nextNotify(3000);
      assert.equal(parseSubState(n).state, 'terminated');
      assert.match(bodyOf(n), /fetched/, 'a fetch NOTIFY carries the current state (RFC 6665 §4.4.3)');
    }));

  test(`[${proto}] NOTIFY CSeq strictly increases across many NOTIFYs`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      let etag = await publishOk(ua, p, 'n0');
      const { dialog } = await watch(ua, p);
      for (let i = 1; i <= 15; i++) {
        etag = await publishOk(ua, p, `n${i}`, etag);
        if (i % 5 === 0) await dialog.nextNotify(3000, hasNote(`n${i}`));
      }
      assert.equal((await dialog.request(600)).status, 200);
      // The NOTIFY the refresh calls for: the last one, after those of n1..n15.
      await fetchBarrier(ua, p);
      const all = dialog.notifies();
      assert.ok(all.length >= 5, `expected several NOTIFYs, got ${all.length}`);
      // Distinct transactions in arrival order (UDP retransmissions repeat a CSeq and are skipped).
      const seqs = all.map(cseqOf).filter((s, i, a) => i === 0 || s !== a[i - 1]);
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `CSeq ${seqs[i]} after ${seqs[i - 1]}: ${seqs.join(',')}`);
    }));

  test(`[${proto}] in-dialog SUBSCRIBE for an unknown dialog → 481`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const d = new Dialog(ua, p, 'presence', `nobody-${Date.now()}@test`, 'ftag1', 'no-such-tag');
      assert.equal((await d.request(600)).status, 481);
      const { dialog } = await watch(ua, p);
      const wrongTag = new Dialog(ua, p, 'presence', dialog.callId, dialog.fromTag, dialog.toTag + 'x');
      wrongTag.cseq = 10;
      assert.equal((await wrongTag.request(600)).status, 481, 'right Call-ID, wrong To tag');
      assert.equal((await d.request(0)).status, 481, 'unsubscribing an unknown dialog is 481 too');
    }));

  test(`[${proto}] a merged initial SUBSCRIBE (same Call-ID, From tag, CSeq; other branch) → 482`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const same = { method: 'SUBSCRIBE', uri: p, callId: `merge-${Date.now()}@test`, from: `<${ua.aor}>;tag=merge1`, cseq: 7 };
      const headers: Array<[string, string]> = [
        ['event', 'presence'],
        ['expires', '600'],
      ];
      const first = await ua.request({ ...same, headers });
      assert.equal(first.status, 200);
      const second = await ua.request({ ...same, headers });
      assert.equal(second.status, 482, 'RFC 3261 §8.2.2.2 merged request (RFC 6665 §4.2.1 forking)');
    }));

  test(`[${proto}] force_active 0 and no rules → pending: NOTIFY Subscription-State pending without body`, () =>
    withUas(pending, proto, 1, async (ua) => {
      const p = uniqueUri();
      const pub = await publish(ua, p, { body: pidf(p, 't1', 'open', 'secret'), expires: 600 });
      assert.equal(pub.status, 200);
      const { res, dialog } = await subscribe(ua, p, { expires: 600 });
      assert.ok(res.status === 200 || res.status === 202, `${res.status}`);
      const n = await dialog.nextNotify(3000);
      const st = parseSubState(n);
      assert.equal(st.state, 'pending');
      assert.ok(st.expires !== undefined && st.expires > 0, 'pending carries expires');
      assert.equal(n.body.length, 0, 'a pending NOTIFY reveals no state');
      assert.equal(n.headers.get('content-type'), undefined);
      const mark = ua.received.length;
      const pub2 = await publish(ua, p, { etag: pub.headers.get('sip-etag')!, body: pidf(p, 't1', 'open', 'secret2'), expires: 600 });
      assert.equal(pub2.status, 200);
      const later = await receivedSince(ua, mark, 'NOTIFY', (r) => r.callId === dialog.callId && r.body.length > 0, p);
      assert.deepEqual(later.map(bodyOf), [], 'a pending watcher gets no state on publication');
    }));
}

// UDP: the retransmission meets its server transaction (Timer J). TCP: the transaction ended
// with the response (Timer J = 0), so the subscription it created answers instead.
for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] an initial SUBSCRIBE sent again (same branch) after its 200: same To tag, one subscription`, () =>
    withUas(node, proto, 1, async (ua) => {
      const p = uniqueUri();
      const req = ua.build({
        method: 'SUBSCRIBE',
        uri: p,
        headers: [
          ['event', 'presence'],
          ['expires', '600'],
        ],
      });
      const first = await ua.request(req);
      assert.equal(first.status, 200);
      const again = await ua.request(req);
      assert.equal(again.status, 200, 'a retransmission is not a merged request');
      assert.equal(again.toTag, first.toTag, 'the same dialog');
      await ua.nextRequest('NOTIFY', (r) => r.callId === req.callId);
      await fetchBarrier(ua, p);
      const notifies = ua.requests('NOTIFY').filter((r) => r.callId === req.callId);
      assert.equal(new Set(notifies.map((r) => r.fromTag)).size, 1, 'one dialog');
      assert.equal(new Set(notifies.map(cseqOf)).size, 1, 'one immediate NOTIFY');
    }));
}

describe('timers: expiry, a watcher answering 481, a watcher not answering, a dead connection', { concurrency: true }, () => {
  for (const proto of ['udp', 'tcp'] as const) {
    test(`[${proto}] a subscription of 2 s expires → NOTIFY terminated;reason=timeout`, () =>
      withUas(quick, proto, 1, async (ua) => {
        const p = uniqueUri();
        // Taken before the SUBSCRIBE is sent: the node's 2 s start later, whatever the load.
        const since = Date.now();
        const { res, dialog } = await subscribe(ua, p, { expires: 2 });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('expires'), '2');
        const first = await dialog.nextNotify(3000);
        assert.equal(parseSubState(first).state, 'active');
        const last = await dialog.nextNotify(5000, (r) => parseSubState(r).state === 'terminated');
        const st = parseSubState(last);
        assert.equal(st.reason, 'timeout', `Subscription-State: ${last.headers.get('subscription-state')}`);
        assert.ok(Date.now() - since >= 2000, `not before its time (${Date.now() - since} ms)`);
        assert.ok(cseqOf(last) > cseqOf(first));
        assert.equal((await dialog.request(60)).status, 481, 'the expired subscription is gone');
      }));

    test(`[${proto}] a watcher answering 481 is removed; the other watchers keep getting NOTIFYs`, () =>
      withUas(quick, proto, 2, async (gone, stays) => {
        const p = uniqueUri();
        let etag = await publishOk(stays, p, 'a');
        const g = await watch(gone, p);
        const s = await watch(stays, p);
        gone.answer = (req) => (req.method === 'NOTIFY' ? 481 : 405);
        etag = await publishOk(stays, p, 'b', etag);
        const refused = await g.dialog.nextNotify(3000, hasNote('b'));
        await s.dialog.nextNotify(3000, hasNote('b'));
        await quick.waitForLog((l) => l.msg === 'subscription ended' && l.callId === g.dialog.callId);
        const mark = gone.received.length;
        etag = await publishOk(stays, p, 'c', etag);
        await s.dialog.nextNotify(3000, hasNote('c'));
        etag = await publishOk(stays, p, 'd', etag);
        await s.dialog.nextNotify(3000, hasNote('d'));
        gone.answer = (req) => (req.method === 'NOTIFY' ? 200 : 405);
        const after = await receivedSince(gone, mark, 'NOTIFY', (r) => r.callId === g.dialog.callId && cseqOf(r) > cseqOf(refused), p);
        assert.deepEqual(after.map(bodyOf), [], 'no NOTIFY to a watcher that answered 481 (RFC 6665 §4.2.2)');
        assert.equal((await g.dialog.request(60)).status, 481, 'its subscription is gone from the node');
      }));

    test(`[${proto}] a watcher that never answers is removed after Timer F and never delays the others`, () =>
      withUas(quick, proto, 2, async (mute, live) => {
        const p = uniqueUri();
        let etag = await publishOk(live, p, 'a');
        const m = await watch(mute, p, { expires: 60 });
        const l = await watch(live, p, { expires: 60 });
        mute.answer = () => undefined;
        const delays: number[] = [];
        for (const note of ['b', 'c', 'd']) {
          const t0 = Date.now();
          etag = await publishOk(live, p, note, etag);
          await l.dialog.nextNotify(2000, hasNote(note));
          delays.push(Date.now() - t0);
          await sleep(300);
        }
        // A node that waited for the mute watcher would give up on it only after Timer F.
        assert.ok(
          delays.every((d) => d < TIMER_F_MS),
          `the answering watcher got each NOTIFY before the other one's Timer F (PUBLISH → NOTIFY: ${delays.join(', ')} ms)`,
        );
        const firstUnanswered = mute.received.find(
          (r) => r.message instanceof SipRequest && r.message.callId === m.dialog.callId && hasNote('b')(r.message),
        );
        assert.ok(firstUnanswered, 'the mute watcher was sent the NOTIFY');
        // Timer F = 64 × T1 = 3.2 s from that NOTIFY: the node ends the subscription then.
        await quick.waitForLog((l) => l.msg === 'subscription ended' && l.callId === m.dialog.callId);
        const lastSeq = Math.max(...m.dialog.notifies().map(cseqOf));
        const mark = mute.received.length;
        const t0 = Date.now();
        etag = await publishOk(live, p, 'e', etag);
        await l.dialog.nextNotify(2000, hasNote('e'));
        assert.ok(Date.now() - t0 < TIMER_F_MS, 'still prompt');
        mute.answer = (req) => (req.method === 'NOTIFY' ? 200 : 405);
        const after = await receivedSince(mute, mark, 'NOTIFY', (r) => r.callId === m.dialog.callId && cseqOf(r) > lastSeq, p);
        assert.deepEqual(
          after.map((r) => cseqOf(r)),
          [],
          'no new NOTIFY to the removed watcher',
        );
        assert.equal((await m.dialog.request(60)).status, 481, 'a watcher whose NOTIFY timed out is removed (timeout_rm_subs = 1)');
      }));
  }

  test('[udp] a subscription that ends for any reason leaves no record behind in the store', async () => {
    const clean = await startNode(QUICK, { keepData: true });
    try {
      await withUas(clean, 'udp', 3, async (ua, refuser, mute) => {
        const p = uniqueUri('clean');
        const etag = await publishOk(ua, p, 'a');
        const brief = await publish(ua, p, { body: pidf(p, 'brief', 'open'), expires: 2 });
        const removed = await publish(ua, p, { body: pidf(p, 'removed', 'open'), expires: 600 });
        assert.equal((await publish(ua, p, { etag: removed.headers.get('sip-etag')!, expires: 0 })).status, 200);
        assert.equal(brief.status, 200);

        const live = await watch(ua, p, { expires: 600 });
        const unsub = await watch(ua, p, { expires: 600 });
        const expiring = await watch(ua, p, { expires: 2 });
        const fetched = await subscribe(ua, p, { expires: 0 });
        await fetched.dialog.nextNotify(3000);
        const r481 = await watch(refuser, p, { expires: 600 });
        const m = await watch(mute, p, { expires: 600 });
        refuser.answer = () => 481;
        mute.answer = () => undefined;
        assert.equal((await unsub.dialog.request(0)).status, 200);
        await unsub.dialog.nextNotify(3000, (r) => parseSubState(r).state === 'terminated');
        await publishOk(ua, p, 'b', etag);
        await live.dialog.nextNotify(3000, hasNote('b'));
        await r481.dialog.nextNotify(3000, hasNote('b'));
        await m.dialog.nextNotify(3000, hasNote('b'));
        // Timer F (3.2 s) for the mute watcher; the 2 s subscription and publication expire meanwhile.
        await expiring.dialog.nextNotify(4000, (r) => parseSubState(r).state === 'terminated');
        await clean.waitForLog((l) => l.msg === 'subscription ended' && l.callId === m.dialog.callId);
        await clean.waitForLog((l) => l.msg === 'subscription ended' && l.callId === r481.dialog.callId);
        await clean.waitForLog((l) => l.msg === 'publication expired' && l.entityTag === brief.headers.get('sip-etag'));
      });
      assert.equal(await clean.stop(), 0, 'clean shutdown');
      const keys = await storedKeys(String(clean.config.db_url));
      assert.equal(keys.subscriptions.length, 1, `only the live subscription is stored: ${keys.subscriptions.join(', ')}`);
      assert.deepEqual(
        keys.cseqs.filter((k) => !keys.subscriptions.includes(k)),
        [],
        `no CSeq record of an ended subscription (${keys.cseqs.length} CSeq records for ${keys.subscriptions.length} subscription)`,
      );
      assert.equal(keys.publications.length, 1, `only the live publication is stored: ${JSON.stringify(keys.publications)}`);
    } finally {
      await clean.kill();
      rmSync(clean.dataDir, { recursive: true, force: true });
    }
  });

  test('[tcp] a watcher whose connection is dead is removed and does not delay the others', () =>
    withUas(quick, 'tcp', 3, async (dead, live, probe) => {
      const p = uniqueUri();
      let etag = await publishOk(live, p, 'a');
      const d = await watch(dead, p);
      const l = await watch(live, p);
      await dead.close();
      const t0 = Date.now();
      etag = await publishOk(live, p, 'b', etag);
      await l.dialog.nextNotify(2000, hasNote('b'));
      assert.ok(Date.now() - t0 < TIMER_F_MS, `prompt despite the dead watcher (${Date.now() - t0} ms)`);
      await quick.waitForLog((l) => l.msg === 'subscription ended' && l.callId === d.dialog.callId);
      // Probe the dead watcher's dialog from another connection: matching is by Call-ID and tags.
      const ghost = new Dialog(probe, p, 'presence', d.dialog.callId, d.dialog.fromTag, d.dialog.toTag);
      ghost.cseq = d.dialog.cseq;
      assert.equal((await ghost.request(0)).status, 481, 'the dead watcher was removed');
    }));
});
