/**
 * The waiting state of presence.winfo (RFC 3857 §4.7.1), end to end over UDP: a presence
 * subscription still pending when it times out leaves a waiting entry that full watcherinfo
 * documents show, which ends as terminated/giveup after winfo_waiting_period, is replaced by
 * the watcher's next subscription, is rejected when the rules come to block the watcher, and
 * survives a restart of the node on the same store; and the winfo event every other end of a
 * presence subscription carries (timeout, rejected, probation, deactivated).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import { rpc } from '../support/rpc.js';
import type { TestUa } from '../support/sip-ua.js';
import type { SipRequest } from '../../transport/message.js';
import {
  type Dialog,
  bodyOf,
  collectFor,
  openUa,
  parseSubState,
  parseWinfo,
  putRules,
  rules,
  sleep,
  subscribe,
  subscribeWinfo,
  uniqueUri,
  withUas,
  type WinfoDoc,
} from '../support/presence.js';

/** The next NOTIFY of a winfo dialog, parsed. */
async function nextWinfo(d: Dialog, timeoutMs = 5000, pred: (doc: WinfoDoc) => boolean = () => true): Promise<WinfoDoc> {
  const n = await d.nextNotify(timeoutMs, (r) => r.body.length > 0 && pred(parseWinfo(bodyOf(r))));
  return parseWinfo(bodyOf(n));
}

/** Refresh a winfo subscription and return the full document its NOTIFY carries (RFC 3857 §4.4). */
async function refreshed(d: Dialog): Promise<WinfoDoc> {
  const res = await d.request(600);
  assert.equal(res.status, 200);
  const doc = await nextWinfo(d, 5000, (x) => x.state === 'full');
  return doc;
}

const row = (doc: WinfoDoc): Array<[string, string, string]> => doc.watchers.map((w) => [w.uri, w.status, w.event]);

/**
 * winfo_waiting_period of the first suite: what a test does while a watcher is waiting (a
 * refresh, an RPC call, a new SUBSCRIBE) must fit in it, even on a loaded machine.
 */
const PERIOD_S = 10;

describe(`presence.winfo waiting state, winfo_waiting_period ${PERIOD_S} s`, { concurrency: true }, () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode({ force_active: 0, winfo_waiting_period: PERIOD_S });
  });
  after(async () => {
    await node.stop();
  });

  test('a pending watcher that times out is waiting (partial, and in full documents), then terminated/giveup after the period', async () => {
    await withUas(node, 'udp', 2, async (ownerUa, bobUa) => {
      const alice = ownerUa.aor;
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      assert.equal(owner.res.status, 200);
      assert.deepEqual(row(await nextWinfo(owner.dialog)), []);

      // Before the SUBSCRIBE leaves: its 1 s and the period after it count from later.
      const subscribedBefore = Date.now();
      const bob = await subscribe(bobUa, alice, { expires: 1 });
      assert.equal(bob.res.status, 200);
      const pending = await nextWinfo(owner.dialog);
      assert.deepEqual(row(pending), [[bobUa.aor, 'pending', 'subscribe']]);
      const id = pending.watchers[0]!.id;

      // Bob's subscription expires: he is told so, alice is told he is waiting.
      const bobEnd = await bob.dialog.nextNotify(5000, (r) => parseSubState(r).state === 'terminated');
      assert.equal(parseSubState(bobEnd).reason, 'timeout');
      const waiting = await nextWinfo(owner.dialog);
      assert.equal(waiting.state, 'partial');
      assert.deepEqual(row(waiting), [[bobUa.aor, 'waiting', 'timeout']]);
      assert.equal(waiting.watchers[0]!.id, id, 'the same <watcher> element');

      const full = await refreshed(owner.dialog);
      assert.deepEqual(row(full), [[bobUa.aor, 'waiting', 'timeout']]);
      // The operator sees him too: presence.watcher_list lists waiting watchers (no dialog).
      const listed = (await rpc(node.rpcPort, 'presence.watcher_list', [alice, 'presence'])).result as Array<{
        watcher_uri: string;
        status: string;
        call_id: string;
      }>;
      assert.deepEqual(
        listed.map((w) => [w.watcher_uri, w.status, w.call_id]),
        [[bobUa.aor, 'waiting', '']],
      );

      // winfo_waiting_period after the expiry the server stops remembering him.
      const gone = await nextWinfo(owner.dialog);
      const after = Date.now() - subscribedBefore;
      assert.ok(after >= 1000 + PERIOD_S * 1000, `not before the period (${after} ms after the SUBSCRIBE)`);
      assert.equal(gone.state, 'partial');
      assert.deepEqual(row(gone), [[bobUa.aor, 'terminated', 'giveup']]);
      assert.equal(gone.watchers[0]!.id, id);
      assert.deepEqual(row(await refreshed(owner.dialog)), []);
    });
  });

  test('the watcher subscribing again replaces its waiting entry under the same id, and it is not given up', async () => {
    await withUas(node, 'udp', 2, async (ownerUa, bobUa) => {
      const alice = ownerUa.aor;
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      await nextWinfo(owner.dialog);
      assert.equal((await subscribe(bobUa, alice, { expires: 1 })).res.status, 200);
      const id = (await nextWinfo(owner.dialog)).watchers[0]!.id;
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'waiting', 'timeout']]);
      // He was waiting before that NOTIFY reached us: given up, if at all, by then + the period.
      const giveupDue = Date.now() + PERIOD_S * 1000;

      const again = await subscribe(bobUa, alice, { expires: 600 });
      assert.equal(again.res.status, 200);
      const replaced = await nextWinfo(owner.dialog);
      assert.deepEqual(row(replaced), [[bobUa.aor, 'pending', 'subscribe']]);
      assert.equal(replaced.watchers[0]!.id, id, 'the new subscription takes over the waiting <watcher>');
      const full = await refreshed(owner.dialog);
      assert.deepEqual(row(full), [[bobUa.aor, 'pending', 'subscribe']]);
      assert.equal(full.watchers[0]!.id, id);

      // Past the moment the waiting entry would have been given up: nothing is.
      // (A NOTIFY may still arrive in that window — one coalesced from the updates above carries
      // the full list — but none may say anything but pending/subscribe of him.)
      const late = await collectFor(ownerUa, 'NOTIFY', (r) => r.callId === owner.dialog.callId, giveupDue - Date.now() + 500);
      for (const r of late) assert.deepEqual(row(parseWinfo(bodyOf(r))), [[bobUa.aor, 'pending', 'subscribe']]);

      // The rules approve bob: his subscription becomes active (approved), still the same id.
      assert.ok(
        [200, 201].includes(
          await putRules(node.xcapPort, alice, rules([{ id: 'bob', who: `<cr:one id="${bobUa.aor}"/>`, handling: 'allow' }])),
        ),
      );
      const approved = await nextWinfo(owner.dialog);
      assert.deepEqual(row(approved), [[bobUa.aor, 'active', 'approved']]);
      assert.equal(approved.watchers[0]!.id, id);
    });
  });
});

describe('presence.winfo waiting state, long period', { concurrency: true }, () => {
  let node: RunningNode;
  before(async () => {
    node = await startNode({ force_active: 0, winfo_waiting_period: 600 });
  });
  after(async () => {
    await node.stop();
  });

  test('the rules blocking a waiting watcher end its entry: terminated/rejected (an allowed one stays waiting)', async () => {
    await withUas(node, 'udp', 3, async (ownerUa, bobUa, carolUa) => {
      const alice = ownerUa.aor;
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      await nextWinfo(owner.dialog);
      // Each pending subscription ends while pending (an unsubscribe, as good as a time-out and
      // with no clock in it): each watcher waits.
      const waiting: Array<[string, string, string]> = [];
      for (const ua of [bobUa, carolUa]) {
        const sub = await subscribe(ua, alice, { expires: 600 });
        assert.equal(sub.res.status, 200);
        assert.deepEqual(row(await nextWinfo(owner.dialog)), [[ua.aor, 'pending', 'subscribe']]);
        assert.equal((await sub.dialog.request(0)).status, 200);
        waiting.push(...row(await nextWinfo(owner.dialog)));
      }
      waiting.sort();
      assert.deepEqual(
        waiting,
        [
          [bobUa.aor, 'waiting', 'timeout'],
          [carolUa.aor, 'waiting', 'timeout'],
        ].sort(),
      );

      const doc = rules([
        { id: 'bob', who: `<cr:one id="${bobUa.aor}"/>`, handling: 'block' },
        { id: 'carol', who: `<cr:one id="${carolUa.aor}"/>`, handling: 'allow' },
      ]);
      assert.ok([200, 201].includes(await putRules(node.xcapPort, alice, doc)));
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'terminated', 'rejected']]);
      assert.deepEqual(row(await refreshed(owner.dialog)), [[carolUa.aor, 'waiting', 'timeout']]);
    });
  });

  test('rules ending live watchers: a pending one blocked is terminated/rejected, an active one whose rule is gone terminated with xcapauth_userdel_reason (probation)', async () => {
    await withUas(node, 'udp', 3, async (ownerUa, bobUa, carolUa) => {
      const alice = ownerUa.aor;
      assert.ok(
        [200, 201].includes(
          await putRules(node.xcapPort, alice, rules([{ id: 'carol', who: `<cr:one id="${carolUa.aor}"/>`, handling: 'allow' }])),
        ),
      );
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      await nextWinfo(owner.dialog);
      const bob = await subscribe(bobUa, alice, { expires: 600 });
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'pending', 'subscribe']]);
      const carol = await subscribe(carolUa, alice, { expires: 600 });
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[carolUa.aor, 'active', 'subscribe']]);

      // bob is now blocked; carol's rule is gone.
      const blockBob = rules([{ id: 'bob', who: `<cr:one id="${bobUa.aor}"/>`, handling: 'block' }]);
      assert.equal(await putRules(node.xcapPort, alice, blockBob), 200);
      const ends = [await nextWinfo(owner.dialog), await nextWinfo(owner.dialog)].flatMap(row).sort();
      assert.deepEqual(
        ends,
        [
          [bobUa.aor, 'terminated', 'rejected'],
          [carolUa.aor, 'terminated', 'probation'],
        ].sort(),
      );
      assert.equal(parseSubState(await bob.dialog.nextNotify(5000, (r) => parseSubState(r).state === 'terminated')).reason, 'rejected');
      assert.equal(parseSubState(await carol.dialog.nextNotify(5000, (r) => parseSubState(r).state === 'terminated')).reason, 'probation');
      assert.deepEqual(row(await refreshed(owner.dialog)), [], 'blocked live watchers do not wait');
    });
  });

  test('an active watcher that unsubscribes is terminated/timeout, not waiting', async () => {
    await withUas(node, 'udp', 2, async (ownerUa, bobUa) => {
      const alice = ownerUa.aor;
      assert.ok(
        [200, 201].includes(
          await putRules(node.xcapPort, alice, rules([{ id: 'bob', who: `<cr:one id="${bobUa.aor}"/>`, handling: 'allow' }])),
        ),
      );
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      await nextWinfo(owner.dialog);
      const bob = await subscribe(bobUa, alice, { expires: 600 });
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'active', 'subscribe']]);
      assert.equal((await bob.dialog.request(0)).status, 200);
      assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'terminated', 'timeout']]);
      assert.deepEqual(row(await refreshed(owner.dialog)), []);
    });
  });

  test('a watcher subscribed from two devices: one pending subscription timing out is terminated/timeout while the other shows him', async () => {
    await withUas(node, 'udp', 3, async (ownerUa, bobPhone, bobLaptop) => {
      const alice = ownerUa.aor;
      const owner = await subscribeWinfo(ownerUa, alice, alice);
      await nextWinfo(owner.dialog);
      const bob = 'sip:bob-two-devices@example.com';
      const sub = (ua: TestUa, expires: number) =>
        ua.request({
          method: 'SUBSCRIBE',
          uri: alice,
          from: `<${bob}>;tag=${Math.random().toString(36).slice(2)}`,
          to: `<${alice}>`,
          headers: [
            ['event', 'presence'],
            ['expires', String(expires)],
          ],
        });
      assert.equal((await sub(bobPhone, 1)).status, 200);
      const phoneId = (await nextWinfo(owner.dialog)).watchers[0]!.id;
      assert.equal((await sub(bobLaptop, 600)).status, 200);
      // The laptop's pending entry and the phone's time-out come in either order (1 s is short
      // on a loaded machine): collect both, by <watcher> id.
      const seen = new Map<string, [string, string, string]>();
      while (seen.size < 2 || seen.get(phoneId)?.[1] !== 'terminated') {
        for (const w of (await nextWinfo(owner.dialog)).watchers) seen.set(w.id, [w.uri, w.status, w.event]);
      }
      const laptopId = [...seen.keys()].find((id) => id !== phoneId)!;
      assert.notEqual(laptopId, undefined, 'one <watcher> per subscription');
      assert.deepEqual(seen.get(laptopId), [bob, 'pending', 'subscribe']);
      assert.deepEqual(seen.get(phoneId), [bob, 'terminated', 'timeout']);
      assert.equal(seen.size, 2);
      const full = await refreshed(owner.dialog);
      assert.deepEqual(
        full.watchers.map((w) => [w.id, w.status]),
        [[laptopId, 'pending']],
      );
    });
  });

  test('winfo_waiting_period 0: a pending watcher that times out is simply terminated/timeout; xcapauth_userdel_reason deactivated gives event deactivated', async () => {
    const off = await startNode({ force_active: 0, winfo_waiting_period: 0, xcapauth_userdel_reason: 'deactivated' });
    try {
      await withUas(off, 'udp', 3, async (ownerUa, bobUa, carolUa) => {
        const alice = ownerUa.aor;
        const owner = await subscribeWinfo(ownerUa, alice, alice);
        await nextWinfo(owner.dialog);
        assert.equal((await subscribe(bobUa, alice, { expires: 1 })).res.status, 200);
        assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'pending', 'subscribe']]);
        assert.deepEqual(row(await nextWinfo(owner.dialog)), [[bobUa.aor, 'terminated', 'timeout']]);
        assert.deepEqual(row(await refreshed(owner.dialog)), []);

        assert.ok(
          [200, 201].includes(
            await putRules(off.xcapPort, alice, rules([{ id: 'carol', who: `<cr:one id="${carolUa.aor}"/>`, handling: 'allow' }])),
          ),
        );
        const carol = await subscribe(carolUa, alice, { expires: 600 });
        assert.deepEqual(row(await nextWinfo(owner.dialog)), [[carolUa.aor, 'active', 'subscribe']]);
        // carol's rule goes (a rule that blocked her would be "rejected"): xcapauth_userdel_reason.
        assert.equal(
          await putRules(off.xcapPort, alice, rules([{ id: 'other', who: '<cr:one id="sip:nobody@example.org"/>', handling: 'allow' }])),
          200,
        );
        assert.deepEqual(row(await nextWinfo(owner.dialog)), [[carolUa.aor, 'terminated', 'deactivated']]);
        assert.equal(
          parseSubState(await carol.dialog.nextNotify(5000, (r) => parseSubState(r).state === 'terminated')).reason,
          'deactivated',
        );
      });
    } finally {
      await off.stop();
    }
  });
});

test('waiting entries survive a restart on the same store, also for a pending subscription that expired while the node was down; their giveup timers resume', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-winfo-'));
  // The period must outlast the restart (a stop, carol's short expiry, a start, a SUBSCRIBE).
  const period = 20;
  const config = { force_active: 0, winfo_waiting_period: period };
  const uas: TestUa[] = [];
  const nodes: RunningNode[] = [];
  const open = async (n: RunningNode): Promise<TestUa> => {
    const ua = await openUa(n, 'udp');
    uas.push(ua);
    return ua;
  };
  try {
    const first = await startNode(config, { dataDir });
    nodes.push(first);
    const alice = uniqueUri('restart-alice');
    const [ownerUa, bobUa, carolUa] = [await open(first), await open(first), await open(first)];
    const owner = await subscribeWinfo(ownerUa, alice, alice);
    assert.equal(owner.res.status, 200);
    await nextWinfo(owner.dialog);
    const t0 = Date.now();
    assert.equal((await subscribe(bobUa, alice, { expires: 1 })).res.status, 200);
    const carol = await subscribe(carolUa, alice, { expires: 600 });
    assert.equal(carol.res.status, 200);
    // bob pending, carol pending, bob waiting: bob's 1 s may run out before carol's entry shows.
    const ids = new Map<string, string>();
    const seen = new Map<string, string>();
    while (seen.get(bobUa.aor) !== 'waiting/timeout' || seen.get(carolUa.aor) !== 'pending/subscribe') {
      for (const w of (await nextWinfo(owner.dialog)).watchers) {
        ids.set(w.uri, w.id);
        seen.set(w.uri, `${w.status}/${w.event}`);
      }
    }

    // Carol's subscription is refreshed to a few seconds just before a clean stop; the node
    // comes back once they have run out.
    const short = 3;
    assert.equal((await carol.dialog.request(short)).status, 200);
    const carolExpiry = Date.now() + short * 1000;
    assert.equal(await first.stop(), 0);
    while (Date.now() <= carolExpiry) await sleep(carolExpiry - Date.now() + 1);
    const second = await startNode(config, { dataDir });
    nodes.push(second);

    const ownerUa2 = await open(second);
    const owner2 = await subscribeWinfo(ownerUa2, alice, alice);
    assert.equal(owner2.res.status, 200);
    const full = await nextWinfo(owner2.dialog);
    assert.equal(full.state, 'full');
    assert.deepEqual(
      full.watchers.map((w) => [w.uri, w.status, w.event, w.id]).sort(),
      [
        [bobUa.aor, 'waiting', 'timeout', ids.get(bobUa.aor)],
        [carolUa.aor, 'waiting', 'timeout', ids.get(carolUa.aor)],
      ].sort(),
    );
    // Carol's subscription ended while the node was down: she gets her terminated NOTIFY now.
    const carolEnd: SipRequest = await carolUa.nextRequest('NOTIFY', (r) => parseSubState(r).state === 'terminated');
    assert.equal(parseSubState(carolEnd).reason, 'timeout');

    // The period after each expiry: given up, as before the restart.
    const gone = [await nextWinfo(owner2.dialog), await nextWinfo(owner2.dialog)].flatMap(row).sort();
    assert.deepEqual(
      gone,
      [
        [bobUa.aor, 'terminated', 'giveup'],
        [carolUa.aor, 'terminated', 'giveup'],
      ].sort(),
    );
    assert.ok(Date.now() >= t0 + 1000 + period * 1000, 'bob not given up before his period');
  } finally {
    await Promise.all(uas.map((u) => u.close()));
    for (const n of nodes) await n.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
