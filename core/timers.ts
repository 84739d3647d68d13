/**
 * Soft-state expiry. A node holds hundreds of thousands of deadlines, so they are not Node
 * timers each: DeadlineHeap keeps objects that carry their own deadline in an indexed binary
 * min-heap under a single Node timer armed for the earliest one; ExpiryTimers is the same by key
 * (publication entity-tag, waiting watcher), each key holding the value it is for (so the owner
 * needs no map of its own: get()).
 */
/** Longest delay a Node timer takes (about 24.8 days); a later deadline is re-armed on firing. */
export const MAX_TIMER_DELAY = 0x7fffffff;

/**
 * The single Node timer of a heap of deadlines, armed for the earliest one (unref'd: expiry
 * alone does not keep a process alive). A deadline beyond what a Node timer can wait fires
 * early; the heap finds nothing due and arms again.
 */
class EarliestTimer {
  private timer: NodeJS.Timeout | undefined;
  /** The deadline it is armed for; Infinity when unarmed. */
  at = Infinity;

  constructor(private readonly fire: () => void) {}

  /** Armed for `at`, or unarmed when undefined (the heap is empty). */
  arm(at: number | undefined): void {
    if (this.timer) clearTimeout(this.timer);
    if (at === undefined) {
      this.timer = undefined;
      this.at = Infinity;
      return;
    }
    this.at = at;
    this.timer = setTimeout(this.run, Math.max(0, Math.min(at - Date.now(), MAX_TIMER_DELAY)));
    this.timer.unref();
  }

  private readonly run = (): void => {
    this.timer = undefined;
    this.at = Infinity;
    this.fire();
  };
}

/** One armed key of ExpiryTimers: its own place in the DeadlineHeap. */
interface Entry<T> extends Timed {
  key: string;
  value: T;
}

export class ExpiryTimers<T> {
  private readonly current = new Map<string, Entry<T>>();
  private readonly heap = new DeadlineHeap<Entry<T>>((e) => {
    this.current.delete(e.key);
    this.expire(e.value);
  });

  /** `expire` gets the value of each key whose deadline passed (it is no longer held then). */
  constructor(private readonly expire: (value: T) => void) {}

  set(key: string, expiresAt: number, value: T): void {
    let e = this.current.get(key);
    if (e === undefined) {
      e = { key, value, deadline: 0, heapIndex: -1 };
      this.current.set(key, e);
    } else e.value = value;
    this.heap.set(e, expiresAt);
  }

  /** The value a live key holds. */
  get(key: string): T | undefined {
    return this.current.get(key)?.value;
  }

  clear(key: string): void {
    const e = this.current.get(key);
    if (e === undefined) return;
    this.current.delete(key);
    this.heap.clear(e);
  }

  clearAll(): void {
    this.current.clear();
    this.heap.clearAll();
  }

  get size(): number {
    return this.current.size;
  }
}

/** What a DeadlineHeap holds: the object itself carries its deadline and its place in the heap. */
export interface Timed {
  /**
   * When it is due, in ms after the heap's origin (a small integer, so V8 keeps it in the object
   * rather than in a number box of its own); meaningful while `heapIndex` ≥ 0.
   */
  deadline: number;
  /** Its index in the heap, -1 when not armed. */
  heapIndex: number;
}

/**
 * ExpiryTimers for objects that carry their own deadline (live subscriptions: hundreds of
 * thousands). An indexed binary min-heap of the objects themselves under a single Node timer: no
 * key, no entry object and no map per armed object, and a re-armed or cleared one leaves no stale
 * entry behind (it moves or leaves the heap at once, in O(log n)).
 */
export class DeadlineHeap<T extends Timed> {
  private readonly heap: T[] = [];
  private readonly timer = new EarliestTimer(() => this.run());
  /** Deadlines are kept relative to this (ms since epoch). */
  private readonly origin = Date.now();

  /** `expire` gets each object whose deadline passed (it is out of the heap then). */
  constructor(private readonly expire: (value: T) => void) {}

  get size(): number {
    return this.heap.length;
  }

  /** Arm `v` for `at` (ms since epoch), or move it there if armed already. */
  set(v: T, at: number): void {
    v.deadline = Math.ceil(at - this.origin);
    if (v.heapIndex >= 0 && this.heap[v.heapIndex] === v) {
      this.up(v.heapIndex);
      this.down(v.heapIndex);
    } else {
      v.heapIndex = this.heap.length;
      this.heap.push(v);
      this.up(v.heapIndex);
    }
    // Moved later, the earliest one's timer fires early and re-arms: no harm.
    if (at < this.timer.at) this.timer.arm(this.heap[0]!.deadline + this.origin);
  }

  clear(v: T): void {
    const i = v.heapIndex;
    if (i < 0 || this.heap[i] !== v) return;
    v.heapIndex = -1;
    const last = this.heap.pop()!;
    if (last !== v) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.up(i);
      this.down(last.heapIndex);
    }
  }

  clearAll(): void {
    for (const v of this.heap) v.heapIndex = -1;
    this.heap.length = 0;
    this.timer.arm(undefined);
  }

  private run(): void {
    const now = Date.now() - this.origin;
    const due: T[] = [];
    while (this.heap.length > 0 && this.heap[0]!.deadline <= now) {
      const v = this.heap[0]!;
      this.clear(v);
      due.push(v);
    }
    const top = this.heap[0];
    this.timer.arm(top === undefined ? undefined : top.deadline + this.origin);
    // Fired after the heap is consistent: a callback may set or clear others.
    for (const v of due) this.expire(v);
  }

  private up(i: number): void {
    const h = this.heap;
    const v = h[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent]!;
      if (p.deadline <= v.deadline) break;
      h[i] = p;
      p.heapIndex = i;
      i = parent;
    }
    h[i] = v;
    v.heapIndex = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const v = h[i]!;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]!.deadline < h[l]!.deadline ? r : l;
      if (h[c]!.deadline >= v.deadline) break;
      h[i] = h[c]!;
      h[i]!.heapIndex = i;
      i = c;
    }
    h[i] = v;
    v.heapIndex = i;
  }
}
