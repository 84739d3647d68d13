/**
 * ExpiryTimers: the heap of soft-state deadlines behind publication and subscription expiry.
 * Each test waits for the last callback it expects and then checks what fired, in which order
 * and never before its deadline: how late a timer fires on a loaded machine does not matter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpiryTimers } from '../../core/timers.js';

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
