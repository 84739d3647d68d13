/**
 * state/publications.ts against an in-memory store: the write-through copy the main thread
 * composes from, expiry, recovery, and the presentity.changed reports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Publications } from '../../../core/state/publications.js';
import type { Publication } from '../../../core/store/records.js';
import { MemoryStore, recordingHub, quietLog, testConfig } from '../../support/fake-sip.js';

function pub(entityTag: string, receivedAt: number, overrides: Partial<Publication> = {}): Publication {
  return {
    presentityUri: 'sip:alice@example.com',
    event: 'presence',
    entityTag,
    expiresAt: Date.now() + 600_000,
    receivedAt,
    contentType: 'application/pidf+xml',
    body: Buffer.from(`<presence id="${entityTag}"/>`),
    sender: 'sip:alice@example.com',
    callId: 'c@x',
    ...overrides,
  };
}

test('put, find, of (newest first), remove; a refresh replaces the publication in memory, and its record in the store under the same id', async () => {
  const store = new MemoryStore();
  const { hub, events } = recordingHub();
  const pubs = new Publications({ config: testConfig(), store, log: quietLog(), hub });
  const a = pub('a', 1000);
  const b = pub('b', 3000);
  const c = pub('c', 2000);
  for (const p of [a, b, c]) await pubs.put(p, undefined);
  assert.deepEqual(
    pubs.of('sip:alice@example.com', 'presence').map((p) => p.entityTag),
    ['b', 'c', 'a'],
  );
  assert.equal(pubs.presentityCount, 1);
  assert.equal(pubs.find('sip:alice@example.com', 'presence', 'b'), b);
  assert.equal(pubs.find('sip:alice@example.com', 'message-summary', 'b'), undefined);

  const a2 = pub('a2', 4000);
  let removals = 0;
  const remove = store.removePublication.bind(store);
  store.removePublication = (...args) => (removals++, remove(...args));
  await pubs.put(a2, a);
  assert.equal(removals, 0, 'a refresh is one write, no removal');
  assert.equal(pubs.find('sip:alice@example.com', 'presence', 'a'), undefined);
  assert.equal(pubs.find('sip:alice@example.com', 'presence', 'a2'), a2);
  assert.equal(store.publications.size, 3);
  assert.equal(store.getPublication('sip:alice@example.com', 'presence', 'a')?.entityTag, 'a2', 'stored under its first entity-tag');
  assert.equal(store.getPublication('sip:alice@example.com', 'presence', 'a2'), undefined);
  assert.deepEqual(
    pubs.of('sip:alice@example.com', 'presence').map((p) => p.entityTag),
    ['a2', 'b', 'c'],
  );

  store.removePublication = remove;
  await pubs.remove(b);
  await pubs.remove(c);
  await pubs.remove(a2);
  assert.deepEqual(pubs.of('sip:alice@example.com', 'presence'), []);
  assert.equal(pubs.presentityCount, 0);
  assert.equal(store.publications.size, 0);
  assert.deepEqual(events, [], 'writes report nothing by themselves: the PUBLISH handler reports after its 2xx');
  pubs.changed('sip:alice@example.com', 'presence');
  assert.deepEqual(events, [['presentity.changed', { presentityUri: 'sip:alice@example.com', event: 'presence' }]]);
  pubs.stop();
});

test('a publication whose store write fails stays as it was', async () => {
  const store = new MemoryStore();
  const { hub } = recordingHub();
  const pubs = new Publications({ config: testConfig(), store, log: quietLog(), hub });
  const a = pub('a', 1000);
  await pubs.put(a, undefined);
  store.putPublication = () => Promise.reject(new Error('disk full'));
  await assert.rejects(pubs.put(pub('a2', 2000), a), /disk full/);
  assert.equal(pubs.find('sip:alice@example.com', 'presence', 'a'), a);
  assert.deepEqual(pubs.of('sip:alice@example.com', 'presence'), [a]);
  pubs.stop();
});

test('expiry: gone from memory and store, reported', async () => {
  const store = new MemoryStore();
  const { hub } = recordingHub();
  const pubs = new Publications({ config: testConfig(), store, log: quietLog(), hub });
  const changed = new Promise((resolve) => hub.on('presentity.changed', resolve));
  await pubs.put(pub('a', 1000, { expiresAt: Date.now() + 30 }), undefined);
  const keepAlive = setInterval(() => undefined, 1000); // the expiry timers do not hold the process open
  assert.deepEqual(await changed, { presentityUri: 'sip:alice@example.com', event: 'presence' });
  clearInterval(keepAlive);
  assert.equal(store.publications.size, 0);
  assert.deepEqual(pubs.of('sip:alice@example.com', 'presence'), []);
  pubs.stop();
});

test('recover: live ones back in memory; expired ones removed, reported only once watchers are back (notifyRecovered)', async () => {
  const store = new MemoryStore();
  await store.putPublication(pub('live', 1000));
  await store.putPublication(pub('old', 1000, { presentityUri: 'sip:bob@example.com', expiresAt: Date.now() - 1 }));
  const { hub, events } = recordingHub();
  const pubs = new Publications({ config: testConfig(), store, log: quietLog(), hub });
  assert.deepEqual(await pubs.recover(), { live: 1, expired: 1 });
  assert.equal(pubs.of('sip:alice@example.com', 'presence').length, 1);
  assert.equal(store.getPublication('sip:bob@example.com', 'presence', 'old'), undefined);
  assert.deepEqual(events, []);
  pubs.notifyRecovered();
  assert.deepEqual(events, [['presentity.changed', { presentityUri: 'sip:bob@example.com', event: 'presence' }]]);
  pubs.stop();
});

test('expires_offset: a publication past its expiry but within the grace is recovered and found by its entity-tag; past the grace it is removed', async () => {
  const store = new MemoryStore();
  const now = Date.now();
  await store.putPublication(pub('grace', 1000, { expiresAt: now - 5_000 }));
  await store.putPublication(pub('gone', 1000, { presentityUri: 'sip:bob@example.com', expiresAt: now - 61_000 }));
  const { hub } = recordingHub();
  const pubs = new Publications({ config: testConfig({ expires_offset: 60 }), store, log: quietLog(), hub });
  assert.deepEqual(await pubs.recover(), { live: 1, expired: 1 });
  assert.equal(pubs.find('sip:alice@example.com', 'presence', 'grace')?.entityTag, 'grace', 'within the grace: SIP-If-Match finds it');
  assert.equal(store.getPublication('sip:bob@example.com', 'presence', 'gone'), undefined);
  assert.equal(await pubs.cleanup(), 0, 'presence.cleanup leaves the one within its grace');
  assert.ok(store.getPublication('sip:alice@example.com', 'presence', 'grace'));
  pubs.stop();
});

test('a publication that expires while the store cannot write is still gone for the watchers (reported); a sweep of the store does not report it again', async () => {
  const store = new MemoryStore();
  const { hub, events } = recordingHub();
  const pubs = new Publications({ config: testConfig(), store, log: quietLog(), hub });
  const keepAlive = setInterval(() => undefined, 1000);
  const changed = new Promise<void>((resolve) => hub.on('presentity.changed', () => resolve()));
  await pubs.put(pub('short', 1000, { expiresAt: Date.now() + 20 }), undefined);
  store.removePublication = () => Promise.reject(new Error('store full'));
  await changed;
  clearInterval(keepAlive);
  assert.deepEqual(pubs.of('sip:alice@example.com', 'presence'), []);
  assert.ok(store.getPublication('sip:alice@example.com', 'presence', 'short'), 'the store still has it');
  await assert.rejects(pubs.cleanup(), /store full/);
  assert.equal(events.length, 1, 'reported once');
  pubs.stop();
});
