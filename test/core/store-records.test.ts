/**
 * Records as the store keeps them (issue 11, memory): a subscription's value leaves out its id
 * (the key), our tag when it is the id, and a local URI equal to the presentity's, a watcher's value leaves out the
 * presentity, event and watcher URI (its key); all come back whole when read, and records
 * written whole by an earlier version are read as they were.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open } from 'lmdb';
import { Store } from '../../core/store/store.js';
import { codecs, compactSubscription, plainSubscription, type Subscription, type WatcherAuth } from '../../core/store/records.js';

function subscription(id: string, localUri: string): Subscription {
  const presentityUri = 'sip:alice@example.com';
  return {
    id,
    presentityUri,
    event: 'presence',
    eventId: '',
    watcherUri: `sip:${id}@example.com`,
    watcherDisplay: '',
    callId: `${id}@192.0.2.1`,
    localTag: id,
    remoteTag: `rt-${id}`,
    remoteCseq: 1,
    localCseq: 3,
    routeSet: ['<sip:proxy.example.com;lr>'],
    remoteTarget: `sip:${id}@192.0.2.1:5060`,
    transport: 'udp',
    flowId: '',
    sourceAddress: '192.0.2.1',
    sourcePort: 5060,
    expiresAt: Date.now() + 3_600_000,
    state: 'active',
    reason: '',
    localUri: localUri || presentityUri,
    accept: 'application/pidf+xml',
    winfoVersion: 0,
    createdAt: Date.now(),
    subHandling: 'allow',
    // Fields a read gives their defaults
    winfoId: '',
    minInterval: 0,
    maxInterval: 0,
    eventView: '',
    winfoEvent: '',
  };
}

function watcher(uri: string): WatcherAuth {
  return {
    presentityUri: 'sip:alice@example.com',
    event: 'presence',
    watcherUri: uri,
    status: 'active',
    winfoEvent: 'subscribe',
    insertedAt: Date.now(),
    displayName: '',
    subHandling: 'allow',
    winfoId: 'w1',
    endedAt: 0,
    waitingUntil: 0,
  };
}

const strip = <T extends object>(r: T): Omit<T, 'schema'> => {
  const { schema: _, ...rest } = r as T & { schema?: number };
  return rest;
};

test('subscriptions and watchers are stored without the fields their key holds, and read back whole', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-records-'));
  try {
    const path = join(dir, 'db');
    const a = subscription('aaa1', '');
    const b = subscription('bbb2', 'sip:alias@example.com'); // a local URI of its own is kept
    const w = watcher('sip:bob@example.com');
    let store = Store.open(path, 'xcap');
    await store.putSubscription(a);
    await store.putSubscription(b);
    await store.putWatcher(w);
    assert.equal(a.id, 'aaa1', 'the live record is left as it was');
    assert.equal(a.localUri, a.presentityUri);
    assert.equal(w.watcherUri, 'sip:bob@example.com');
    await store.close();

    // What is on disk: the values lack the key's fields.
    const env = open({ path, maxDbs: 16 });
    const subs = env.openDB({ name: 'subscription', encoding: 'binary' });
    const stored = codecs.subscription.decode(subs.get('aaa1') as Buffer);
    assert.equal(stored.id, '');
    assert.equal(stored.localUri, '');
    assert.equal(stored.localTag, '', 'our tag is the id');
    assert.equal(codecs.subscription.decode(subs.get('bbb2') as Buffer).localUri, 'sip:alias@example.com');
    const watchers = env.openDB({ name: 'watcher', encoding: 'binary' });
    const sw = codecs.watcher.decode(watchers.get([w.presentityUri, w.event, w.watcherUri]) as Buffer);
    assert.deepEqual([sw.presentityUri, sw.event, sw.watcherUri], ['', '', '']);
    // A record written whole, as an earlier version wrote it.
    const old = subscription('ccc3', '');
    await subs.put('ccc3', codecs.subscription.encode({ ...old }));
    const oldWatcher = watcher('sip:carol@example.com');
    await watchers.put([oldWatcher.presentityUri, oldWatcher.event, oldWatcher.watcherUri], codecs.watcher.encode({ ...oldWatcher }));
    await env.close();

    store = Store.open(path, 'xcap');
    // Read back in the compact form a live node keeps; compared field by field.
    const back = new Map([...store.allSubscriptions()].map((s) => [s.id, plainSubscription(s)]));
    assert.deepEqual(strip(back.get('aaa1')!), strip(a));
    assert.deepEqual(strip(back.get('bbb2')!), strip(b));
    assert.deepEqual(strip(back.get('ccc3')!), strip(old));
    assert.deepEqual(strip(store.getWatcher(w.presentityUri, w.event, w.watcherUri)!), strip(w));
    const all = store.watchersOf('sip:alice@example.com', 'presence').map(strip);
    assert.deepEqual(
      all.sort((x, y) => x.watcherUri.localeCompare(y.watcherUri)),
      [strip(w), strip(oldWatcher)],
    );
    assert.equal([...store.allWatchers()].length, 2);
    await store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the compact live record reads and writes every field as a plain one, and keeps rare fields aside only when set', () => {
  const plain = subscription('ddd4', '');
  const c = compactSubscription(plain);
  assert.deepEqual(strip(plainSubscription(c)), strip(plain));
  assert.equal((c as unknown as { rare: unknown }).rare, undefined, 'all rare fields at their defaults: no side object');
  c.minInterval = 5;
  c.flowId = 'tcp-1';
  c.winfoVersion++;
  assert.deepEqual([c.minInterval, c.flowId, c.winfoVersion, c.eventId], [5, 'tcp-1', 1, '']);
  Object.assign(c, { maxInterval: 60, state: 'pending' });
  assert.deepEqual([c.maxInterval, c.state], [60, 'pending']);
  assert.deepEqual(
    strip(plainSubscription(c)),
    strip({ ...plain, minInterval: 5, maxInterval: 60, flowId: 'tcp-1', winfoVersion: 1, state: 'pending' }),
  );
  assert.equal(compactSubscription(c), c, 'compact already: the same object');
});
