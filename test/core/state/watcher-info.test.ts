/**
 * state/watcher-info.ts: how presence subscriptions' life cycle becomes watcher states (RFC 3857
 * §4.7.1) in the store and watcherinfo.changed reports, from the subscriptions' own events.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subscriptions, LiveSubscription } from '../../../core/state/subscriptions.js';
import { WatcherInfo, type WinfoEvents } from '../../../core/state/watcher-info.js';
import { MemoryStore, recordingHub, quietLog, testConfig, subscriptionRecord } from '../../support/fake-sip.js';

type Change = WinfoEvents['watcherinfo.changed'];

test('created, approved, and a pending one that times out becomes waiting (stored first, then reported)', async () => {
  const config = testConfig({ winfo_waiting_period: 60 });
  const store = new MemoryStore();
  const { hub } = recordingHub();
  const subscriptions = new Subscriptions({ config, store, log: quietLog(), hub });
  const winfo = new WatcherInfo({ config, store, hub, subscriptions, log: quietLog() });
  winfo.start();
  const changes: Change[] = [];
  let onChange: () => void = () => undefined;
  hub.on('watcherinfo.changed', (c) => {
    changes.push(c);
    onChange();
  });
  const alice = 'sip:alice@example.com';
  const bob = new LiveSubscription(
    subscriptionRecord(alice, { watcherUri: 'sip:bob@example.org', state: 'pending', subHandling: 'confirm' }),
  );
  const carol = new LiveSubscription(subscriptionRecord(alice, { watcherUri: '<sip:carol@example.org>' }));
  subscriptions.add(bob);
  subscriptions.add(carol);
  assert.deepEqual(
    changes.map((c) => [c.entry.uri, c.entry.status, c.entry.event]),
    [
      ['sip:bob@example.org', 'pending', 'subscribe'],
      ['sip:carol@example.org', 'active', 'subscribe'],
    ],
  );
  assert.deepEqual(
    winfo.list(alice).map((e) => [e.uri, e.status]),
    [
      ['sip:bob@example.org', 'pending'],
      ['sip:carol@example.org', 'active'],
    ],
  );

  const reported = new Promise<void>((resolve) => (onChange = resolve));
  await subscriptions.forget(bob, 'timeout', 'timeout');
  await reported;
  const last = changes.at(-1)!;
  assert.deepEqual([last.entry.uri, last.entry.status, last.entry.event], ['sip:bob@example.org', 'waiting', 'timeout']);
  assert.equal(last.entry.id, bob.id, 'the same <watcher> id');
  assert.equal(store.getWatcher(alice, 'presence', 'sip:bob@example.org')?.status, 'waiting');
  assert.deepEqual(
    winfo.waitingOf(alice).map((w) => w.watcherUri),
    ['sip:bob@example.org'],
  );

  // The rules now block bob: his waiting entry ends rejected.
  assert.equal(await winfo.reevaluate(alice, async (aor) => (aor === 'sip:bob@example.org' ? 'block' : 'allow')), 1);
  assert.deepEqual([changes.at(-1)!.entry.status, changes.at(-1)!.entry.event], ['terminated', 'rejected']);
  assert.equal(store.getWatcher(alice, 'presence', 'sip:bob@example.org'), undefined);
  winfo.stop();
  subscriptions.stop();
});

test('a live subscription keeps its watcher-info event in its own record: approved survives a restart; a watcher record of an earlier version is read once, moved into the record and dropped', async () => {
  const config = testConfig({ winfo_waiting_period: 60 });
  const store = new MemoryStore();
  const alice = 'sip:alice@example.com';
  const run = () => {
    const { hub } = recordingHub();
    const subscriptions = new Subscriptions({ config, store, log: quietLog(), hub });
    const winfo = new WatcherInfo({ config, store, hub, subscriptions, log: quietLog() });
    return { subscriptions, winfo };
  };

  // First run: bob pending, then approved; carol active from the start.
  const first = run();
  first.winfo.start();
  const bob = new LiveSubscription(
    subscriptionRecord(alice, { watcherUri: 'sip:bob@example.org', state: 'pending', subHandling: 'confirm' }),
  );
  const carol = new LiveSubscription(subscriptionRecord(alice, { watcherUri: 'sip:carol@example.org' }));
  await store.putSubscription(bob.record);
  await store.putSubscription(carol.record);
  first.subscriptions.add(bob);
  first.subscriptions.add(carol);
  await first.subscriptions.authorize(bob, 'allow', '');
  assert.equal(store.subscriptions.get(bob.id)!.winfoEvent, 'approved', 'the approval is in the stored record');
  assert.equal(store.watchers.size, 0, 'no watcher record for live subscriptions');
  first.winfo.stop();
  first.subscriptions.stop();

  // A record as an earlier version stored it: no winfoEvent, a watcher record beside it.
  const dave = subscriptionRecord(alice, { watcherUri: 'sip:dave@example.org' });
  delete dave.winfoEvent;
  await store.putSubscription(dave);
  await store.putWatcher({
    presentityUri: alice,
    event: 'presence',
    watcherUri: 'sip:dave@example.org',
    status: 'active',
    winfoEvent: 'approved',
    insertedAt: dave.createdAt,
    displayName: '',
    subHandling: 'allow',
    winfoId: dave.id,
  });

  // Restart on the same store.
  const second = run();
  second.winfo.load();
  await second.subscriptions.recover(async () => '');
  second.winfo.start();
  const rows = second.winfo
    .list(alice)
    .map((e) => [e.uri, e.status, e.event])
    .sort();
  assert.deepEqual(rows, [
    ['sip:bob@example.org', 'active', 'approved'],
    ['sip:carol@example.org', 'active', 'subscribe'],
    ['sip:dave@example.org', 'active', 'approved'],
  ]);
  await new Promise((r) => setImmediate(r));
  assert.equal(store.subscriptions.get(dave.id)!.winfoEvent, 'approved', "dave's approval moved into his record");
  assert.equal(store.watchers.size, 0, 'the old watcher record is gone');

  // Back to pending (the rules now ask for confirmation): subscribe again, in the record too.
  const back = [...second.subscriptions.watchersOf(alice, 'presence')].find((s) => s.id === bob.id)!;
  await second.subscriptions.authorize(back, 'confirm', '');
  assert.equal(store.subscriptions.get(bob.id)!.winfoEvent, '');
  assert.deepEqual(
    second.winfo
      .list(alice)
      .filter((e) => e.uri === 'sip:bob@example.org')
      .map((e) => [e.status, e.event]),
    [['pending', 'subscribe']],
  );
  second.winfo.stop();
  second.subscriptions.stop();
});
