/**
 * state/subscriptions.ts against an in-memory store: the indices, removal, expiry and recovery,
 * and what each reports on the event hub (it never calls the notifier).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subscriptions, LiveSubscription, type SubscriptionEvents } from '../../../core/state/subscriptions.js';
import { MemoryStore, recordingHub, quietLog, testConfig, subscriptionRecord } from '../../support/fake-sip.js';

function setup(): {
  store: MemoryStore;
  subs: Subscriptions;
  events: Array<[string, unknown]>;
  hub: ReturnType<typeof recordingHub>['hub'];
} {
  const store = new MemoryStore();
  const { hub, events } = recordingHub();
  const subs = new Subscriptions({ config: testConfig(), store, log: quietLog(), hub });
  return { store, subs, events, hub };
}

const ended = (events: Array<[string, unknown]>): Array<SubscriptionEvents['subscription.ended']> =>
  events.filter(([n]) => n === 'subscription.ended').map(([, p]) => p as SubscriptionEvents['subscription.ended']);

test('add: indexed by id, dialog and presentity, reported as created', () => {
  const { subs, events } = setup();
  const a = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  const b = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  const c = new LiveSubscription(subscriptionRecord('sip:carol@example.com', { event: 'message-summary' }));
  for (const s of [a, b, c]) subs.add(s);
  assert.equal(subs.count, 3);
  assert.deepEqual([...subs.watchersOf('sip:alice@example.com', 'presence')], [a, b]);
  assert.equal(subs.watcherCount('sip:carol@example.com', 'presence'), 0);
  assert.equal(subs.watcherCount('sip:carol@example.com', 'message-summary'), 1);
  assert.equal(subs.inDialog(b.record.callId, b.record.localTag, b.record.remoteTag), b);
  assert.equal(subs.inDialog(b.record.callId, b.record.localTag, 'other'), undefined);
  assert.equal(subs.get(c.id), c);
  assert.deepEqual(
    events.map(([n, p]) => [n, (p as { what: string }).what]),
    [
      ['subscription.changed', 'created'],
      ['subscription.changed', 'created'],
      ['subscription.changed', 'created'],
    ],
  );
  // Two dialogs of one Call-ID (RFC 3261 §12: the tags tell them apart).
  const twin = new LiveSubscription(subscriptionRecord('sip:alice@example.com', { callId: b.record.callId, remoteTag: 'twin' }));
  subs.add(twin);
  assert.equal(subs.inDialog(b.record.callId, twin.record.localTag, 'twin'), twin);
  assert.equal(subs.inDialog(b.record.callId, b.record.localTag, b.record.remoteTag), b);
  void subs.forget(b, 'test');
  assert.equal(subs.inDialog(b.record.callId, b.record.localTag, b.record.remoteTag), undefined);
  assert.equal(subs.inDialog(b.record.callId, twin.record.localTag, 'twin'), twin);
  subs.stop();
});

test('forget and terminate: gone from memory and store, reported ended; terminate asks for the final NOTIFY', async () => {
  const { store, subs, events } = setup();
  const a = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  const b = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  for (const s of [a, b]) {
    await store.putSubscription(s.record);
    subs.add(s);
  }
  await subs.forget(a, 'unsubscribed');
  await subs.forget(a, 'unsubscribed'); // idempotent
  await subs.terminate(b, 'deactivated');
  assert.equal(subs.count, 0);
  assert.equal(subs.watcherCount('sip:alice@example.com', 'presence'), 0);
  assert.equal(store.subscriptions.size, 0);
  assert.deepEqual(
    ended(events).map((e) => [e.sub, e.why, e.final]),
    [
      [a, 'unsubscribed', undefined],
      [b, 'deactivated', 'deactivated'],
    ],
  );
  subs.stop();
});

test('a subscription expires on its own: removed and reported ended with a terminated NOTIFY (reason timeout) due', async () => {
  const { store, subs, hub } = setup();
  const gone = new Promise<SubscriptionEvents['subscription.ended']>((resolve) => hub.on('subscription.ended', resolve));
  const s = new LiveSubscription(subscriptionRecord('sip:alice@example.com', { expiresAt: Date.now() + 30 }));
  await store.putSubscription(s.record);
  subs.add(s);
  const keepAlive = setInterval(() => undefined, 1000); // the expiry timers do not hold the process open
  const e = await gone;
  clearInterval(keepAlive);
  assert.equal(e.sub, s);
  assert.equal(e.final, 'timeout');
  assert.equal(store.subscriptions.size, 0);
  assert.equal(subs.count, 0);
  subs.stop();
});

test('refresh and authorize: committed first, then reported', async () => {
  const { store, subs, events } = setup();
  const s = new LiveSubscription(subscriptionRecord('sip:alice@example.com', { state: 'pending', subHandling: 'confirm' }));
  subs.add(s);
  await subs.refresh(s, { expiresAt: Date.now() + 900_000 });
  assert.equal(store.subscriptions.get(s.id)!.expiresAt, s.record.expiresAt);
  await subs.authorize(s, 'allow', '{"x":1}');
  assert.equal(store.subscriptions.get(s.id)!.state, 'active');
  assert.equal(store.subscriptions.get(s.id)!.subHandling, 'allow');
  assert.equal(s.bodyKey, '{"x":1}');
  assert.deepEqual(
    events.map(([, p]) => (p as { what: string }).what),
    ['created', 'refreshed', 'authorized'],
  );
  subs.stop();
});

test('a refresh or an unsubscribe the store refuses changes nothing, in memory as in the store', async () => {
  const { store, subs, events } = setup();
  const s = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  await store.putSubscription(s.record);
  subs.add(s);
  const stored = { ...store.subscriptions.get(s.id)! };
  const refuse = (): Promise<boolean> => Promise.reject(new Error('store full'));
  store.putSubscription = refuse;
  store.removeSubscription = refuse;
  await assert.rejects(subs.refresh(s, { expiresAt: s.record.expiresAt + 900_000, remoteCseq: 7 }), /store full/);
  assert.equal(s.record.expiresAt, stored.expiresAt);
  assert.equal(s.record.remoteCseq, stored.remoteCseq);
  await assert.rejects(subs.unsubscribe(s), /store full/);
  assert.equal(subs.get(s.id), s);
  assert.equal(subs.inDialog(s.record.callId, s.record.localTag, s.record.remoteTag), s);
  assert.deepEqual(store.subscriptions.get(s.id), stored);
  assert.deepEqual(
    events.map(([n]) => n),
    ['subscription.changed'],
  );
  subs.stop();
});

test('recover: live ones resume (flow gone, body key from the authoriser); expired ones are removed and end with a final NOTIFY after', async () => {
  const { store, subs, events } = setup();
  const live = subscriptionRecord('sip:alice@example.com', { flowId: 'tcp-7' });
  const old = subscriptionRecord('sip:alice@example.com', { expiresAt: Date.now() - 1 });
  await store.putSubscription(live);
  await store.putSubscription(old);
  const asked: string[] = [];
  const r = await subs.recover(async (rec) => {
    asked.push(rec.id);
    return 'key-' + rec.id;
  });
  assert.deepEqual(r, { live: 1, expired: 1 });
  assert.deepEqual(asked, [live.id], 'only live ones are authorised');
  const back = subs.get(live.id)!;
  assert.equal(back.bodyKey, 'key-' + live.id);
  assert.equal(back.record.flowId, '');
  assert.equal(store.subscriptions.has(old.id), false);
  assert.deepEqual(
    events.map(([n, p]) => [n, (p as { what?: string; final?: string }).what ?? (p as { final?: string }).final]),
    [
      ['subscription.changed', 'resumed'],
      ['subscription.ended', 'timeout'],
    ],
  );
  subs.stop();
});

test('expires_offset: a subscription past its expiry but within the grace resumes after a restart; past the grace it ends', async () => {
  const store = new MemoryStore();
  const { hub, events } = recordingHub();
  const subs = new Subscriptions({ config: testConfig({ expires_offset: 60 }), store, log: quietLog(), hub });
  const grace = subscriptionRecord('sip:alice@example.com', { expiresAt: Date.now() - 5_000 });
  const gone = subscriptionRecord('sip:alice@example.com', { expiresAt: Date.now() - 61_000 });
  await store.putSubscription(grace);
  await store.putSubscription(gone);
  assert.deepEqual(await subs.recover(async () => ''), { live: 1, expired: 1 });
  assert.ok(subs.get(grace.id), 'within the grace: resumed');
  assert.equal(store.subscriptions.has(gone.id), false);
  assert.deepEqual(
    ended(events).map((e) => e.sub.id),
    [gone.id],
  );
  subs.stop();
});

test('a subscription that expires while the store cannot write still ends: reported, with its terminated NOTIFY due', async () => {
  const { store, subs, events } = setup();
  const s = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  await store.putSubscription(s.record);
  subs.add(s);
  store.removeSubscription = () => Promise.reject(new Error('store full'));
  await subs.terminate(s, 'timeout');
  assert.equal(subs.get(s.id), undefined);
  assert.deepEqual(
    ended(events).map((e) => [e.sub.id, e.final]),
    [[s.id, 'timeout']],
  );
  subs.stop();
});

test('a removal the store refused (full disk) is tried again until committed: a restart then does not bring the ended subscription back', async () => {
  const { store, subs } = setup();
  const s = new LiveSubscription(subscriptionRecord('sip:alice@example.com'));
  await store.putSubscription(s.record);
  subs.add(s);
  const remove = store.removeSubscription.bind(store);
  let refused = 0;
  let committed!: () => void;
  const done = new Promise<void>((resolve) => (committed = resolve));
  store.removeSubscription = (id: string) => {
    if (refused++ < 2) return Promise.reject(new Error('store full'));
    return remove(id).then((r) => {
      committed();
      return r;
    });
  };
  await subs.terminate(s, 'timeout');
  assert.ok(store.subscriptions.has(s.id), 'still in the store while it is full');
  const alive = setInterval(() => undefined, 1000); // the node's retry timer does not hold the process: this does
  await done; // the retries (every 5 s) reach a store with room again
  clearInterval(alive);
  assert.equal(store.subscriptions.has(s.id), false);
  assert.equal(refused, 3, 'refused twice, then committed');
  subs.stop();
});
