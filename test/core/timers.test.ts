/**
 * ExpiryTimers: the heap of soft-state deadlines behind publication and subscription expiry.
 * Each test waits for the last callback it expects and then checks what fired, in which order
 * and never before its deadline: how late a timer fires on a loaded machine does not matter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineHeap, ExpiryTimers, type Timed } from '../../core/timers.js';

/**
 * Wait for `p`, keeping the event loop alive meanwhile: ExpiryTimers' own timer does not
 * (a node with nothing else to do may exit), so a test with nothing else pending would end early.
 */
async function held(p: Promise<void>): Promise<void> {
  const keep = setInterval(() => undefined, 1000);
  try {
    await p;
  } finally {
    clearInterval(keep);
  }
}

/** A promise with its resolve function, for "this callback has run". */
function signal(): { done: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const done = new Promise<void>((r) => (fire = r));
  return { done, fire };
}

test('deadlines fire once each, in order, and cleared or re-armed keys do not fire early', async () => {
  const t = new ExpiryTimers<() => void>((fire) => fire());
  const fired: Array<{ key: string; at: number; due: number }> = [];
  const last = signal();
  const now = Date.now();
  const arm = (key: string, due: number, label = key, then?: () => void): void =>
    t.set(key, due, () => {
      fired.push({ key: label, at: Date.now(), due });
      then?.();
    });
  arm('c', now + 60);
  arm('a', now + 20);
  arm('b', now + 40);
  arm('gone', now + 10);
  t.clear('gone');
  arm('moved', now + 10, 'moved-early');
  arm('moved', now + 80, 'moved', last.fire);
  assert.equal(t.size, 4);
  assert.equal(typeof t.get('a'), 'function', 'a live key holds its value');
  assert.equal(t.get('gone'), undefined, 'a cleared key holds nothing');
  await held(last.done);
  // Whatever was due before 'moved' has fired by now; nothing fires twice (checked after one more turn).
  await new Promise((r) => setImmediate(r));
  assert.equal(t.get('a'), undefined, 'an expired key is no longer held');
  assert.deepEqual(
    fired.map((f) => f.key),
    ['a', 'b', 'c', 'moved'],
  );
  for (const f of fired) assert.ok(f.at >= f.due, `${f.key} fired ${f.due - f.at} ms before its deadline`);
  assert.equal(t.size, 0);
});

test('a callback may arm new deadlines, and many stale entries are compacted', async () => {
  const t = new ExpiryTimers<() => void>((fire) => fire());
  const fired: Array<{ i: number; at: number }> = [];
  const chained = signal();
  const lastOfK = signal();
  const now = Date.now();
  // 5,000 re-arms of one key leave stale entries behind; only the last deadline counts.
  const kDue = now + 150 + (4999 % 97);
  for (let i = 0; i < 5000; i++)
    t.set('k', now + 150 + (i % 97), () => {
      fired.push({ i, at: Date.now() });
      lastOfK.fire();
    });
  t.set('chain', now + 5, () =>
    t.set('next', Date.now() + 5, () => {
      fired.push({ i: -1, at: Date.now() });
      chained.fire();
    }),
  );
  assert.equal(t.size, 2);
  await held(chained.done);
  await held(lastOfK.done);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    fired.map((f) => f.i),
    [-1, 4999],
    'the chained deadline, then k once, with its last value',
  );
  assert.ok(fired[1]!.at >= kDue, `k fired ${kDue - fired[1]!.at} ms before its last deadline`);
  t.clearAll();
  assert.equal(t.size, 0);
});

test('DeadlineHeap: objects carrying their deadline fire once each, in deadline order, never early; cleared ones never, re-armed ones at their last deadline', async () => {
  interface Item extends Timed {
    name: number;
    due: number;
    firedAt?: number;
  }
  const fired: Item[] = [];
  const all = signal();
  let expected = 0;
  const heap = new DeadlineHeap<Item>((v) => {
    v.firedAt = Date.now();
    fired.push(v);
    if (fired.length === expected) all.fire();
  });
  const now = Date.now();
  // A fixed pseudo-random sequence: deadlines within 300 ms, then re-arms and clears in between.
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const items: Item[] = Array.from({ length: 400 }, (_, name) => ({ name, due: 0, deadline: 0, heapIndex: -1 }));
  for (const it of items) {
    it.due = now + 20 + rand(300);
    heap.set(it, it.due);
  }
  const cleared = new Set<Item>();
  for (let k = 0; k < 300; k++) {
    const it = items[rand(items.length)]!;
    if (rand(3) === 0) {
      heap.clear(it);
      cleared.add(it);
    } else {
      it.due = now + 20 + rand(300);
      heap.set(it, it.due);
      cleared.delete(it);
    }
  }
  heap.clear(items[0]!);
  heap.clear(items[0]!); // twice: no effect
  cleared.add(items[0]!);
  expected = items.length - cleared.size;
  assert.equal(heap.size, expected);
  for (const it of cleared) assert.equal(it.heapIndex, -1);
  await held(all.done);
  await new Promise((r) => setTimeout(r, 5)); // nothing more fires
  assert.equal(fired.length, expected, 'each armed object fired once');
  assert.equal(new Set(fired).size, fired.length);
  for (const it of fired) {
    assert.ok(!cleared.has(it), `cleared item ${it.name} fired`);
    assert.ok(it.firedAt! >= it.due, `item ${it.name} fired ${it.due - it.firedAt!} ms early`);
    assert.equal(it.heapIndex, -1);
  }
  for (let i = 1; i < fired.length; i++) {
    // In deadline order: one run fires what is due in order, and a later run only later deadlines.
    assert.ok(fired[i]!.due >= fired[i - 1]!.due, `deadline order at ${i}`);
  }
  assert.equal(heap.size, 0);
  heap.clearAll();
});
