/**
 * RFC 6446 notification rate control end to end, over UDP against a real node: min-interval
 * coalesces a burst of changes into one NOTIFY with the newest state, max-interval keeps NOTIFYs
 * coming without changes, both are echoed in Subscription-State, a refresh changes or removes
 * them, bad values get 400 with the reason, a final NOTIFY is never held back, and a restart on
 * the same store keeps applying them. Plus the parameter checks and the record field as units.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa } from '../support/sip-ua.js';
import type { SipRequest, SipResponse } from '../../transport/message.js';
import {
  pidf,
  publish,
  subscribe,
  watch,
  openUa,
  uniqueUri,
  parseSubState,
  bodyOf,
  collectFor,
  receivedSince,
  cseqOf,
  showsOpen,
  withUas,
  Dialog,
} from '../support/presence.js';
import { requestedIntervals } from '../../core/dialogs/rate-control.js';
import { SipError } from '../../core/errors.js';
import { codecs, type Subscription } from '../../core/store/records.js';

/** Short subscriptions allowed; Timer F = 64 × 50 ms. */
const CONFIG = { force_active: 1, min_expires: 0, sip_t1: 50 };

let node: RunningNode;
let floored: RunningNode;
before(async () => {
  [node, floored] = await Promise.all([startNode(CONFIG), startNode({ ...CONFIG, notify_min_interval: 3 })]);
});
after(async () => {
  await Promise.all([node?.stop(), floored?.stop()]);
});

async function publishNote(ua: TestUa, presentity: string, note: string, etag?: string): Promise<string> {
  const res = await publish(ua, presentity, { body: pidf(presentity, 't1', 'open', note), expires: 600, etag });
  assert.equal(res.status, 200, `PUBLISH: ${res.status} ${res.reason}`);
  return res.headers.get('sip-etag')!;
}

const hasNote = (note: string) => (r: SipRequest) => bodyOf(r).includes(`<note>${note}</note>`);

/** The NOTIFYs of a dialog with a CSeq above `cseq`, one per CSeq (UDP retransmissions repeat one). */
function notifiesAfter(d: Dialog, cseq: number): SipRequest[] {
  const seen = new Set<number>();
  return d.notifies().filter((n) => cseqOf(n) > cseq && !seen.has(cseqOf(n)) && seen.add(cseqOf(n)) !== undefined);
}

/** An in-dialog SUBSCRIBE with another Event header value (its parameters), CSeq kept in step with `d`. */
async function refresh(d: Dialog, event: string, expires = 600): Promise<SipResponse> {
  const other = new Dialog(d.ua, d.presentity, event, d.callId, d.fromTag, d.toTag);
  other.cseq = d.cseq;
  const res = await other.request(expires);
  d.cseq = other.cseq;
  return res;
}

/** When a received NOTIFY arrived at the UA. */
function arrivalOf(ua: TestUa, n: SipRequest): number {
  return ua.received.find((r) => r.message === n)!.at;
}

describe('RFC 6446 rate control over UDP', { concurrency: true }, () => {
  test('min-interval=5: the immediate NOTIFY, then 5 PUBLISHes in 300 ms become one NOTIFY with the newest state after about 5 s', () =>
    withUas(node, 'udp', 2, async (publisher, watcher) => {
      const p = uniqueUri('minint');
      let etag = await publishNote(publisher, p, 'n0');
      // Before the SUBSCRIBE leaves: the node's first NOTIFY, and so its interval, start later.
      const subscribedBefore = Date.now();
      const { res, dialog, first } = await watch(watcher, p, { event: 'presence;min-interval=5' });
      assert.equal(res.status, 200);
      const firstAt = arrivalOf(watcher, first);
      assert.match(bodyOf(first), /<note>n0<\/note>/, 'the immediate NOTIFY is not held back and carries the state');
      const st = parseSubState(first);
      assert.equal(st.state, 'active');
      assert.equal(
        st.params.get('min-interval'),
        '5',
        `Subscription-State echoes the min-interval in use: ${first.headers.get('subscription-state')}`,
      );
      assert.equal(st.params.has('max-interval'), false);

      for (let i = 1; i <= 5; i++) {
        etag = await publishNote(publisher, p, `n${i}`, etag);
        await new Promise((r) => setTimeout(r, 60));
      }
      assert.ok(Date.now() - subscribedBefore < 5000, 'the burst ended inside the interval (otherwise the test proves nothing)');
      const coalesced = await dialog.nextNotify(undefined, hasNote('n5'));
      const at = arrivalOf(watcher, coalesced);
      assert.ok(
        at - subscribedBefore >= 5000,
        `no NOTIFY before min-interval has passed (${at - subscribedBefore} ms after the SUBSCRIBE)`,
      );
      assert.ok(at - firstAt < 5000 + 5000, `the held state goes out once the interval has passed (${at - firstAt} ms)`);
      assert.equal(parseSubState(coalesced).params.get('min-interval'), '5');
      await receivedSince(watcher, watcher.received.length, 'NOTIFY', () => false, p); // a stray NOTIFY would be in before this
      assert.deepEqual(
        notifiesAfter(dialog, cseqOf(first)).map((n) => bodyOf(n).match(/<note>(n\d)<\/note>/)?.[1]),
        ['n5'],
        'one NOTIFY for the five changes, with the newest state',
      );
      assert.equal(cseqOf(coalesced), cseqOf(first) + 1, 'no NOTIFY in between');
    }));

  test('max-interval=1 and no change: NOTIFYs with the current state keep coming about every second', () =>
    withUas(node, 'udp', 2, async (publisher, watcher) => {
      const p = uniqueUri('maxint');
      await publishNote(publisher, p, 'steady');
      const subscribedBefore = Date.now();
      const { dialog, first } = await watch(watcher, p, { event: 'presence;max-interval=1' });
      assert.equal(parseSubState(first).params.get('max-interval'), '1', `echoed: ${first.headers.get('subscription-state')}`);
      const times = [arrivalOf(watcher, first)];
      let last = first;
      for (let i = 0; i < 3; i++) {
        last = await dialog.nextNotify(2500, (r) => cseqOf(r) > cseqOf(last));
        times.push(arrivalOf(watcher, last));
        const st = parseSubState(last);
        assert.equal(st.state, 'active');
        assert.equal(st.params.get('max-interval'), '1');
        assert.ok(showsOpen(bodyOf(last)) && hasNote('steady')(last), 'each carries the whole current state');
      }
      // Arrival times on a loaded machine bunch up (two read in one go) or stretch, so the pace is
      // checked against the node's clock where it can be: three periodic NOTIFYs take at least
      // three intervals from before the SUBSCRIBE; and none is very late.
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      assert.ok(
        times[3]! - subscribedBefore >= 3 * 1000 - 3 * 50,
        `not more often than every second: ${times[3]! - subscribedBefore} ms for three (gaps ${gaps.join(', ')} ms)`,
      );
      assert.ok(
        gaps.every((g) => g < 1000 + 4000),
        `they keep coming, about every second: gaps ${gaps.join(', ')} ms`,
      );
    }));

  test('a refresh changes the parameters, and one without them ends rate control', () =>
    withUas(node, 'udp', 2, async (publisher, watcher) => {
      const p = uniqueUri('refresh');
      let etag = await publishNote(publisher, p, 'a');
      const { dialog, first } = await watch(watcher, p, { event: 'presence;min-interval=3;max-interval=3' });
      assert.equal(parseSubState(first).params.get('min-interval'), '3');
      const periodic = await dialog.nextNotify(2500, (r) => cseqOf(r) > cseqOf(first));
      assert.equal(parseSubState(periodic).params.get('max-interval'), '3', 'max-interval at work');

      const changed = await refresh(dialog, 'presence;max-interval=2');
      assert.equal(changed.status, 200);
      const afterChange = await dialog.nextNotify(2000, (r) => cseqOf(r) > cseqOf(periodic));
      const ch = parseSubState(afterChange).params;
      assert.equal(ch.get('max-interval'), '2', `the refresh NOTIFY shows the new value: ${afterChange.headers.get('subscription-state')}`);
      assert.equal(ch.has('min-interval'), false, 'min-interval left out of the refresh: no longer in use');

      const removed = await refresh(dialog, 'presence');
      assert.equal(removed.status, 200);
      const plain = await dialog.nextNotify(
        2000,
        (r) => cseqOf(r) > cseqOf(afterChange) && !r.headers.get('subscription-state')!.includes('max-interval=2'),
      );
      const ps = parseSubState(plain);
      assert.equal(
        ps.params.has('max-interval') || ps.params.has('min-interval'),
        false,
        `no rate parameters: ${plain.headers.get('subscription-state')}`,
      );

      // No min-interval any more: back-to-back changes each get their NOTIFY at once (under the
      // old min-interval=3 each would wait 3 s after the one before).
      for (const note of ['b', 'c', 'd']) {
        const before = Math.max(...dialog.notifies().map((x) => arrivalOf(watcher, x)));
        etag = await publishNote(publisher, p, note, etag);
        const n = await dialog.nextNotify(undefined, hasNote(note));
        assert.ok(
          arrivalOf(watcher, n) - before < 3000,
          `prompt NOTIFY for ${note}: ${arrivalOf(watcher, n) - before} ms after the one before`,
        );
        assert.equal(parseSubState(n).params.has('min-interval'), false);
      }
      // No max-interval any more: silence without changes (the 2 s one would have come by now).
      const lastSeq = Math.max(...dialog.notifies().map(cseqOf));
      const idle = await collectFor(watcher, 'NOTIFY', (r) => r.callId === dialog.callId && cseqOf(r) > lastSeq, 2300);
      assert.deepEqual(
        idle.map((r) => r.headers.get('subscription-state')),
        [],
        'no NOTIFY without a change',
      );
    }));

  test('bad values get 400 with the reason, initial or refresh; the subscription and the node carry on', () =>
    withUas(node, 'udp', 1, async (ua) => {
      const p = uniqueUri('bad');
      const cases: Array<[string, RegExp]> = [
        ['presence;min-interval=soon', /min-interval/],
        ['presence;min-interval=0', /min-interval/],
        ['presence;max-interval=0', /max-interval/],
        ['presence;max-interval=-5', /max-interval/],
        ['presence;min-interval=1.5', /min-interval/],
        ['presence;min-interval', /min-interval/],
        ['presence;min-interval=5;max-interval=2', /min-interval.*max-interval/],
      ];
      for (const [event, reason] of cases) {
        const { res } = await subscribe(ua, p, { event, expires: 600 });
        assert.equal(res.status, 400, `Event: ${event} → ${res.status} ${res.reason}`);
        assert.match(res.reason, reason, `Event: ${event} → reason "${res.reason}"`);
      }
      const { dialog, first } = await watch(ua, p, { event: 'presence;min-interval=2' });
      const bad = await refresh(dialog, 'presence;max-interval=1;min-interval=2');
      assert.equal(bad.status, 400, `refresh with min > max: ${bad.status} ${bad.reason}`);
      assert.match(bad.reason, /min-interval.*max-interval/);
      const good = await refresh(dialog, 'presence;min-interval=3');
      assert.equal(good.status, 200, 'the subscription survived the refused refresh');
      const n = await dialog.nextNotify(2000, (r) => cseqOf(r) > cseqOf(first));
      assert.equal(parseSubState(n).params.get('min-interval'), '3');
      // A huge delta-seconds is read as 2^32-1 (RFC 3261 §20.19), not refused.
      const huge = await subscribe(ua, uniqueUri('huge'), { event: 'presence;max-interval=99999999999999', expires: 600 });
      assert.equal(huge.res.status, 200, `${huge.res.status} ${huge.res.reason}`);
      const hn = await huge.dialog.nextNotify(2000);
      assert.equal(parseSubState(hn).params.get('max-interval'), String(0xffffffff));
    }));

  test('a terminated NOTIFY is not held back by min-interval (unsubscribe, expiry), and carries the newest state', () =>
    withUas(node, 'udp', 2, async (publisher, watcher) => {
      const p = uniqueUri('final');
      let etag = await publishNote(publisher, p, 'x0');
      const unsub = await watch(watcher, p, { event: 'presence;min-interval=30' });
      const expiring = await watch(watcher, p, { event: 'presence;min-interval=30', expires: 600 });
      const mark = watcher.received.length;
      etag = await publishNote(publisher, p, 'x1', etag);
      etag = await publishNote(publisher, p, 'x2', etag);
      const ours = (r: SipRequest): boolean => r.callId === unsub.dialog.callId || r.callId === expiring.dialog.callId;
      const held = await receivedSince(watcher, mark, 'NOTIFY', (r) => ours(r) && (hasNote('x1')(r) || hasNote('x2')(r)), p);
      assert.deepEqual(held.map(bodyOf), [], 'the changes are held by min-interval=30');

      // "At once" next to the 30 s a held NOTIFY would wait.
      const t0 = Date.now();
      assert.equal((await unsub.dialog.request(0)).status, 200);
      const last = await unsub.dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
      assert.ok(Date.now() - t0 < 10_000, `the final NOTIFY went out at once (${Date.now() - t0} ms)`);
      assert.match(bodyOf(last), /<note>x2<\/note>/, 'the final NOTIFY carries the newest state (RFC 6665 §4.4.3)');
      assert.equal(parseSubState(last).params.has('min-interval'), false, 'no rate parameters on a terminated subscription');

      // The other one is refreshed to 2 s now, with the changes held: it expires 2 s on, not 30.
      const refreshedAt = Date.now();
      assert.equal((await expiring.dialog.request(2)).status, 200);
      const expired = await expiring.dialog.nextNotify(undefined, (r) => parseSubState(r).state === 'terminated');
      const waited = Date.now() - refreshedAt;
      assert.equal(parseSubState(expired).reason, 'timeout');
      assert.ok(waited >= 2000 && waited < 20_000, `expiry is not postponed by min-interval=30 (${waited} ms for a 2 s subscription)`);
      assert.match(bodyOf(expired), /<note>x2<\/note>/);
      const after = await receivedSince(
        watcher,
        mark,
        'NOTIFY',
        (r) => r.callId === unsub.dialog.callId || r.callId === expiring.dialog.callId,
        p,
      );
      assert.deepEqual(
        after.filter((r) => cseqOf(r) > cseqOf(r.callId === unsub.dialog.callId ? last : expired)).map(bodyOf),
        [],
        'nothing after the final NOTIFYs (the held state is dropped with the subscription)',
      );
    }));

  test('notify_min_interval raises what a subscriber asks for, and Subscription-State says so', () =>
    withUas(floored, 'udp', 1, async (ua) => {
      const p = uniqueUri('floor');
      const { first } = await watch(ua, p, { event: 'presence;min-interval=1;max-interval=2' });
      const st = parseSubState(first).params;
      assert.equal(st.get('min-interval'), '3', `raised to the node's floor: ${first.headers.get('subscription-state')}`);
      assert.equal(st.get('max-interval'), '3', 'max-interval never below the min-interval in use');
    }));
});

test('[udp] after SIGKILL and a restart on the same store, max-interval still applies to the old dialog', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-rate-'));
  const nodes: RunningNode[] = [];
  let watcher: TestUa | undefined;
  try {
    const first = await startNode(CONFIG, { dataDir });
    nodes.push(first);
    watcher = await openUa(first, 'udp');
    const p = uniqueUri('restart');
    const w = await watch(watcher, p, { event: 'presence;max-interval=1' });
    const before = await w.dialog.nextNotify(2500, (r) => cseqOf(r) > cseqOf(w.first));
    await first.kill();
    const killedAt = Date.now();
    const second = await startNode(CONFIG, { dataDir });
    nodes.push(second);
    const resumed = await w.dialog.nextNotify(5000, (r) => cseqOf(r) > cseqOf(before) && arrivalOf(watcher!, r) > killedAt);
    assert.equal(
      parseSubState(resumed).params.get('max-interval'),
      '1',
      `the record kept max-interval: ${resumed.headers.get('subscription-state')}`,
    );
    assert.equal(resumed.callId, w.dialog.callId, 'same dialog');
    const next = await w.dialog.nextNotify(undefined, (r) => cseqOf(r) > cseqOf(resumed));
    // The intervals count from the restart: the second periodic NOTIFY leaves two intervals after
    // the new process began (its first log line, the node's own clock), whenever we read it.
    const startedAt = Date.parse(String(second.logs[0]!.time));
    const since = arrivalOf(watcher, next) - startedAt;
    assert.ok(since >= 2 * 1000 - 50, `not more often than every second after the restart (${since} ms for two)`);
    const gap = arrivalOf(watcher, next) - arrivalOf(watcher, resumed);
    assert.ok(gap < 1000 + 4000, `and keeps coming about every second (${gap} ms)`);
  } finally {
    await watcher?.close();
    await Promise.all(nodes.map((n) => n.kill()));
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('rate parameters (unit)', () => {
  const params = (s: string): Map<string, string> =>
    new Map(
      s
        .split(';')
        .filter(Boolean)
        .map((kv) => {
          const [k, v = ''] = kv.split('=');
          return [k!, v];
        }),
    );

  test('absent → none; present → bounded by the floor, max-interval at least the min-interval in use', () => {
    assert.deepEqual(requestedIntervals(undefined, 1), { minInterval: 0, maxInterval: 0 });
    assert.deepEqual(requestedIntervals(params('id=7'), 1), { minInterval: 0, maxInterval: 0 });
    assert.deepEqual(requestedIntervals(params('min-interval=5'), 1), { minInterval: 5, maxInterval: 0 });
    assert.deepEqual(requestedIntervals(params('max-interval=60'), 1), { minInterval: 0, maxInterval: 60 });
    assert.deepEqual(requestedIntervals(params('min-interval=2;max-interval=2'), 1), { minInterval: 2, maxInterval: 2 });
    assert.deepEqual(requestedIntervals(params('min-interval=2;max-interval=4'), 10), { minInterval: 10, maxInterval: 10 });
    assert.deepEqual(requestedIntervals(params('max-interval=4'), 10), { minInterval: 0, maxInterval: 10 });
  });

  test('not delta-seconds, zero, or min above max → SipError 400', () => {
    for (const bad of [
      'min-interval=x',
      'min-interval=',
      'min-interval=0',
      'max-interval=0',
      'max-interval=1e3',
      'min-interval=3;max-interval=2',
    ]) {
      assert.throws(
        () => requestedIntervals(params(bad), 1),
        (err: unknown) => err instanceof SipError && err.status === 400 && /interval/.test(err.reason),
        bad,
      );
    }
  });

  test('a subscription record written before the rate fields decodes with none; new records keep them', () => {
    const rec: Subscription = {
      id: 'r1',
      presentityUri: 'sip:p@example.com',
      event: 'presence',
      eventId: '',
      watcherUri: 'sip:w@example.com',
      watcherDisplay: '',
      callId: 'c1',
      localTag: 'l',
      remoteTag: 'r',
      remoteCseq: 1,
      localCseq: 1,
      routeSet: [],
      remoteTarget: 'sip:w@127.0.0.1',
      transport: 'udp',
      flowId: '',
      sourceAddress: '127.0.0.1',
      sourcePort: 5060,
      expiresAt: 1,
      state: 'active',
      reason: '',
      localUri: 'sip:p@example.com',
      accept: '',
      winfoVersion: 0,
      createdAt: 1,
      subHandling: 'allow',
    };
    const old = codecs.subscription.decode(codecs.subscription.encode({ ...rec }));
    assert.equal(old.minInterval, 0);
    assert.equal(old.maxInterval, 0);
    assert.equal(old.callId, 'c1');
    const kept = codecs.subscription.decode(codecs.subscription.encode({ ...rec, minInterval: 5, maxInterval: 0xffffffff }));
    assert.equal(kept.minInterval, 5);
    assert.equal(kept.maxInterval, 0xffffffff);
  });
});
