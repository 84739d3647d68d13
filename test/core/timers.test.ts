/**
 * ExpiryTimers: the heap of soft-state deadlines behind publication and subscription expiry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExpiryTimers } from '../../core/timers.js';

test('deadlines fire once each, in order, and cleared or re-armed keys do not fire early', async () => {
  const t = new ExpiryTimers<() => void>((fire) => fire());
  const fired: string[] = [];
  const now = Date.now();
  t.set('c', now + 60, () => fired.push('c'));
  t.set('a', now + 20, () => fired.push('a'));
  t.set('b', now + 40, () => fired.push('b'));
  t.set('gone', now + 10, () => fired.push('gone'));
  t.clear('gone');
  t.set('moved', now + 10, () => fired.push('moved-early'));
  t.set('moved', now + 80, () => fired.push('moved'));
  assert.equal(t.size, 4);
  assert.equal(typeof t.get('a'), 'function', 'a live key holds its value');
  assert.equal(t.get('gone'), undefined, 'a cleared key holds nothing');
  await sleep(150);
  assert.equal(t.get('a'), undefined, 'an expired key is no longer held');
  assert.deepEqual(fired, ['a', 'b', 'c', 'moved']);
  assert.equal(t.size, 0);
});

test('a callback may arm new deadlines, and many stale entries are compacted', async () => {
  const t = new ExpiryTimers<() => void>((fire) => fire());
  const fired: number[] = [];
  const now = Date.now();
  // 5,000 re-arms of one key leave stale entries behind; only the last deadline counts.
  for (let i = 0; i < 5000; i++) t.set('k', now + 150 + (i % 97), () => fired.push(i));
  t.set('chain', now + 5, () => t.set('next', Date.now() + 5, () => fired.push(-1)));
  assert.equal(t.size, 2);
  await sleep(60);
  assert.deepEqual(fired, [-1]);
  await sleep(250);
  assert.deepEqual(fired, [-1, 4999]);
  t.clearAll();
  assert.equal(t.size, 0);
});
