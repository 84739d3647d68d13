/**
 * Watcher information (RFC 3857): turns life-cycle events of `presence` subscriptions into
 * watcherinfo NOTIFYs for the presentity's presence.winfo subscribers. A live subscription's
 * watcher state goes to the store with its own record (winfoEvent); the store's watcher table
 * keeps the waiting entries.
 *
 * The subscription state machine of RFC 3857 §4.7.1, as presenced runs it:
 *
 *   (new) ──subscribe──▶ pending | active          pending ──approved──▶ active
 *   pending ──timeout──▶ waiting                    (expired or unsubscribed before any policy)
 *   waiting ──giveup───▶ terminated                 (winfo_waiting_period after it ended)
 *   waiting ──rejected─▶ terminated                 (the rules now block the watcher)
 *   waiting ── the watcher subscribes again ──▶ its new subscription, under the same <watcher> id
 *   any other end ──▶ terminated, event from the reason (timeout, rejected, probation, deactivated)
 *
 * A waiting entry is no longer a subscription: it lives here and in the store (so it survives a
 * restart) and shows in full watcherinfo documents with status="waiting".
 */
import type { StateStore } from '../store/interfaces.js';
import type { Subscription, WatcherAuth } from '../store/records.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { EventHub, BaseEvents } from '../events.js';
import type {
  LiveSubscription,
  Subscriptions,
  SubscriptionEvents,
  SubscriptionChange,
  WatcherState,
  WinfoStatus,
  WinfoEvent,
} from './subscriptions.js';
import { uriAor } from '../uris.js';
import { ExpiryTimers } from '../timers.js';

/** One <watcher> of a watcherinfo document (RFC 3858 §4.4). */
export interface WatcherEntry {
  id: string;
  uri: string;
  displayName: string;
  status: WinfoStatus;
  event: WinfoEvent;
  durationSubscribed: number;
}

/** What watcher info reports on the hub: one watcher of a presentity changed (notify/ sends the partial documents). */
export interface WinfoEvents {
  'watcherinfo.changed': { presentityUri: string; entry: WatcherEntry };
}

/** Every event state/ reports: the hub the composition root makes. */
export type StateEvents = BaseEvents & SubscriptionEvents & WinfoEvents;

const WINFO_EVENTS = new Set<string>(['subscribe', 'approved', 'deactivated', 'probation', 'rejected', 'timeout', 'giveup', 'noresource']);
/** Subscription-State reasons (RFC 6665 §4.2.2) that are winfo events of the same name (RFC 3857 §4.7.1). */
const REASON_EVENTS = new Set<string>(['rejected', 'deactivated', 'probation', 'giveup', 'noresource']);

/** The winfo event of a subscription that ended with `why` (a Subscription-State reason or an internal cause). */
function endEvent(why: string | undefined): WinfoEvent {
  const reason = (why ?? '').split(';')[0]!.trim();
  if (REASON_EVENTS.has(reason)) return reason as WinfoEvent;
  if (reason === 'invariant') return 'rejected'; // xcapauth_userdel_reason = invariant: ended by a rules change
  // Expired, unsubscribed (RFC 6665 §4.1.2.3: a refresh with Expires 0), or its NOTIFYs failed.
  return 'timeout';
}

const seconds = (ms: number): number => Math.max(0, Math.round(ms / 1000));

type LiveState = WatcherState;

export interface WatcherInfoDeps {
  config: Config;
  store: StateStore;
  hub: EventHub<SubscriptionEvents & WinfoEvents>;
  /** Whose presence subscriptions this tracks. */
  subscriptions: Subscriptions;
  log: Logger;
}

export class WatcherInfo {
  /**
   * Live presence subscriptions by presentity and watcher AOR: the subscription, or a set when
   * the watcher subscribes from several devices. (Each one's winfo state is its `winfo`.)
   */
  private readonly byWatcher = new Map<string, Map<string, LiveSubscription | Set<LiveSubscription>>>();
  /** Waiting entries: presentity URI → watcher AOR → record (as stored). */
  private readonly waiting = new Map<string, Map<string, WatcherAuth>>();
  private readonly giveupTimers = new ExpiryTimers<WatcherAuth>((w) => this.end(w, 'giveup'));
  private started = false;

  constructor(private readonly deps: WatcherInfoDeps) {
    deps.hub.on('subscription.changed', ({ sub, what }) => this.onSubscriptionEvent(sub, what));
    deps.hub.on('subscription.ended', ({ sub, why }) => {
      if (sub.record.event === 'presence') this.ended(sub, why);
    });
  }

  // ───── full list (first NOTIFY, refreshes, coalesced updates) ─────

  list = (presentityUri: string): WatcherEntry[] => {
    const out: WatcherEntry[] = [];
    for (const sub of this.deps.subscriptions.watchersOf(presentityUri, 'presence')) {
      const st = this.stateOf(sub);
      out.push(entryOf(sub, st.aor, st.status, st.event));
    }
    for (const w of this.waiting.get(presentityUri)?.values() ?? []) out.push(waitingEntry(w, 'waiting', 'timeout'));
    return out;
  };

  /** The presentity's waiting watchers (RFC 3857 §4.7.1), as stored. */
  waitingOf(presentityUri: string): WatcherAuth[] {
    return [...(this.waiting.get(presentityUri)?.values() ?? [])];
  }

  private stateOf(sub: LiveSubscription): LiveState {
    return sub.winfo ?? this.resume(sub);
  }

  /**
   * A subscription recovered after a restart: its record remembers its last event. A record of
   * an earlier version has none; the watcher record that version kept beside it is read instead,
   * and an approval found there moves into the subscription's record (start() then drops it).
   */
  private resume(sub: LiveSubscription): LiveState {
    const r = sub.record;
    const aor = aorOf(r);
    const status: WinfoStatus = r.state === 'active' ? 'active' : 'pending';
    let event: WinfoEvent = r.winfoEvent === 'approved' && status === 'active' ? 'approved' : 'subscribe';
    if (!r.winfoEvent) {
      const stored = this.deps.store.getWatcher(r.presentityUri, r.event, aor);
      if (stored && stored.status === status && WINFO_EVENTS.has(stored.winfoEvent)) event = stored.winfoEvent as WinfoEvent;
      if (event !== 'subscribe') {
        r.winfoEvent = event;
        this.deps.store
          .putSubscription(r)
          .catch((err) => this.deps.log.error({ err, callId: r.callId }, 'subscription record update failed'));
      }
    }
    return this.track(sub, { aor, status, event });
  }

  private track(sub: LiveSubscription, st: LiveState): LiveState {
    sub.winfo = st;
    const p = sub.record.presentityUri;
    let of = this.byWatcher.get(p);
    if (of === undefined) {
      of = new Map();
      this.byWatcher.set(p, of);
    }
    const there = of.get(st.aor);
    if (there === undefined || there === sub) of.set(st.aor, sub);
    else if (there instanceof Set) there.add(sub);
    else of.set(st.aor, new Set([there, sub]));
    return st;
  }

  private untrack(sub: LiveSubscription): LiveState {
    const st = this.stateOf(sub);
    sub.winfo = undefined;
    const p = sub.record.presentityUri;
    const of = this.byWatcher.get(p);
    const there = of?.get(st.aor);
    if (there === sub) {
      of!.delete(st.aor);
      if (of!.size === 0) this.byWatcher.delete(p);
    } else if (there instanceof Set) {
      there.delete(sub);
      if (there.size === 1) of!.set(st.aor, there.values().next().value!);
    }
    return st;
  }

  // ───── subscription life cycle ─────

  /**
   * A new presence subscription replaces its watcher's waiting entry and takes over its
   * <watcher> id, so winfo subscribers see that entry change state (RFC 3858 §4: same id).
   */
  winfoIdFor = (record: Subscription): string | undefined => {
    if (record.event !== 'presence') return undefined;
    const w = this.waiting.get(record.presentityUri)?.get(uriAor(record.watcherUri));
    if (!w) return undefined;
    this.dropWaiting(w);
    this.deps.store
      .removeWatcher(w.presentityUri, w.event, w.watcherUri)
      .catch((err) => this.deps.log.error({ err, presentityUri: w.presentityUri }, 'watcher removal failed'));
    return w.winfoId || undefined;
  };

  private onSubscriptionEvent(sub: LiveSubscription, event: SubscriptionChange): void {
    const r = sub.record;
    if (r.event !== 'presence' || event === 'refreshed') return;
    if (event === 'resumed') {
      this.resume(sub);
      return;
    }
    const st = sub.winfo;
    const aor = st?.aor ?? aorOf(r);
    const status: WinfoStatus = r.state === 'active' ? 'active' : 'pending';
    if (event === 'authorized') {
      const before = st?.status ?? this.deps.store.getWatcher(r.presentityUri, r.event, aor)?.status;
      if (before === status) return; // other transformations, same winfo state: nothing to tell
    }
    const ev: WinfoEvent = event === 'authorized' && status === 'active' ? 'approved' : 'subscribe';
    this.track(sub, { aor, status, event: ev }); // the record carries it to the store (winfoEvent)
    this.publish(r.presentityUri, entryOf(sub, aor, status, ev));
  }

  private ended(sub: LiveSubscription, why: string | undefined): void {
    const r = sub.record;
    const aor = this.untrack(sub).aor;
    let event = endEvent(why);
    const sibling = this.otherSubscription(r.presentityUri, aor);
    // Nobody can read watcher info with disable_winfo = 1: nothing to remember a waiting watcher for.
    const period = this.deps.config.disable_winfo === 1 ? 0 : this.deps.config.winfo_waiting_period * 1000;
    const now = Date.now();
    // RFC 3857 §4.7.1: a subscription still pending when it times out goes to waiting, so the
    // presentity still learns that someone tried to watch it (not while another one of the
    // same watcher is live: that one shows the watcher).
    if (r.state !== 'active' && event === 'timeout' && period > 0 && !sibling) {
      const endedAt = Math.min(now, r.expiresAt);
      const waitingUntil = endedAt + period;
      const w: WatcherAuth = { ...authRecord(r, aor, 'waiting', 'timeout'), endedAt, waitingUntil };
      if (waitingUntil > now) {
        this.addWaiting(w);
        // Committed before the watcher-info NOTIFY tells anyone about it (DESIGN.md durability).
        this.deps.store
          .putWatcher(w)
          .catch((err) => this.deps.log.error({ err, callId: r.callId }, 'watcher state write failed'))
          .finally(() => {
            // Unless the entry was replaced or ended meanwhile (that change was published already).
            if (this.waiting.get(w.presentityUri)?.get(w.watcherUri) === w)
              this.publish(r.presentityUri, waitingEntry(w, 'waiting', 'timeout'));
          });
        return;
      }
      event = 'giveup'; // it expired while the node was down, longer ago than the waiting period
    }
    this.publish(r.presentityUri, entryOf(sub, aor, 'terminated', event));
  }

  /** A live presence subscription of this watcher to this presentity. */
  private otherSubscription(presentityUri: string, aor: string): LiveSubscription | undefined {
    const there = this.byWatcher.get(presentityUri)?.get(aor);
    return there instanceof Set ? there.values().next().value : there;
  }

  // ───── waiting entries ─────

  private addWaiting(w: WatcherAuth): void {
    let m = this.waiting.get(w.presentityUri);
    if (!m) {
      m = new Map();
      this.waiting.set(w.presentityUri, m);
    }
    m.set(w.watcherUri, w);
    if (this.started) this.arm(w);
  }

  private arm(w: WatcherAuth): void {
    this.giveupTimers.set(timerKey(w), w.waitingUntil ?? 0, w);
  }

  /** Forget a waiting entry here (the caller sees to the store). Whether it was still there. */
  private dropWaiting(w: WatcherAuth): boolean {
    const m = this.waiting.get(w.presentityUri);
    if (m?.get(w.watcherUri) !== w) return false;
    m.delete(w.watcherUri);
    if (m.size === 0) this.waiting.delete(w.presentityUri);
    this.giveupTimers.clear(timerKey(w));
    return true;
  }

  /** waiting → terminated: the server stops remembering it (giveup) or the rules now block the watcher (rejected). */
  private end(w: WatcherAuth, event: 'giveup' | 'rejected'): void {
    if (!this.dropWaiting(w)) return;
    this.deps.store
      .removeWatcher(w.presentityUri, w.event, w.watcherUri)
      .catch((err) => this.deps.log.error({ err, presentityUri: w.presentityUri }, 'watcher removal failed'));
    this.deps.log.info({ presentityUri: w.presentityUri, watcherUri: w.watcherUri, event }, 'waiting watcher removed');
    this.publish(w.presentityUri, waitingEntry(w, 'terminated', event));
  }

  /**
   * The presentity's rules changed: waiting watchers they now block are rejected. `handlingOf`
   * gives the presence sub-handling the rules give a watcher now. Resolves with how many.
   */
  async reevaluate(presentityUri: string, handlingOf: (watcherAor: string) => Promise<string>): Promise<number> {
    const m = this.waiting.get(presentityUri);
    if (!m) return 0;
    let n = 0;
    for (const w of [...m.values()]) {
      if ((await handlingOf(w.watcherUri)) !== 'block') continue;
      if (m.get(w.watcherUri) !== w) continue; // replaced meanwhile
      this.end(w, 'rejected');
      n++;
    }
    return n;
  }

  // ───── restart ─────

  /** Before subscriptions recover: the waiting entries of the previous run (armed by start()). */
  load(): number {
    let n = 0;
    for (const w of this.deps.store.allWatchers()) {
      if (w.status !== 'waiting') continue;
      this.addWaiting(w);
      n++;
    }
    return n;
  }

  /**
   * Once every subscription is back: a waiting entry whose watcher subscribed again (a crash
   * before its record went) is dropped; the giveup timers are armed (those due while the node
   * was down fire now, and the recovered winfo subscribers hear of it); and the store keeps
   * watcher records of waiting entries only: a live subscription's state is in its own record,
   * and records of watchers an earlier version kept (read by resume() already) go.
   */
  start(): void {
    this.started = true;
    for (const m of [...this.waiting.values()]) {
      for (const w of [...m.values()]) if (this.otherSubscription(w.presentityUri, w.watcherUri)) this.dropWaiting(w);
    }
    for (const m of this.waiting.values()) for (const w of m.values()) this.arm(w);
    for (const w of this.deps.store.allWatchers()) {
      if (w.event !== 'presence') continue;
      if (w.status === 'waiting' && this.waiting.get(w.presentityUri)?.get(w.watcherUri) !== undefined) continue;
      this.deps.store
        .removeWatcher(w.presentityUri, w.event, w.watcherUri)
        .catch((err) => this.deps.log.error({ err }, 'watcher removal failed'));
    }
  }

  stop(): void {
    this.giveupTimers.clearAll();
  }

  // ───── reporting ─────

  /** One watcher changed: reported, so its winfo subscribers get a partial document (notify/winfo-partials.ts). */
  private publish(presentityUri: string, entry: WatcherEntry): void {
    this.deps.hub.emit('watcherinfo.changed', { presentityUri, entry });
  }
}

/** The stored watcher state of a subscription's watcher (Kamailio's watchers table row). */
function authRecord(r: Subscription, aor: string, status: WinfoStatus | 'waiting', winfoEvent: WinfoEvent): WatcherAuth {
  return {
    presentityUri: r.presentityUri,
    event: r.event,
    watcherUri: aor,
    status,
    winfoEvent,
    insertedAt: r.createdAt,
    displayName: r.watcherDisplay,
    subHandling: r.subHandling,
    winfoId: r.winfoId || r.id,
  };
}

function entryOf(sub: LiveSubscription, aor: string, status: WinfoStatus, event: WinfoEvent): WatcherEntry {
  const r = sub.record;
  return {
    id: r.winfoId || r.id,
    uri: aor,
    displayName: r.watcherDisplay,
    status,
    event,
    durationSubscribed: seconds(Date.now() - r.createdAt),
  };
}

/** The watcher's AOR, the record's own string when its URI is one already (no copy per subscription). */
function aorOf(r: Subscription): string {
  const aor = uriAor(r.watcherUri);
  return aor === r.watcherUri ? r.watcherUri : aor;
}

function watcherKey(presentityUri: string, aor: string): string {
  return `${presentityUri}\u0000${aor}`;
}

function timerKey(w: WatcherAuth): string {
  return watcherKey(w.presentityUri, w.watcherUri);
}

function waitingEntry(w: WatcherAuth, status: WinfoStatus, event: WinfoEvent): WatcherEntry {
  return {
    id: w.winfoId || w.watcherUri,
    uri: w.watcherUri,
    displayName: w.displayName,
    status,
    event,
    durationSubscribed: seconds((w.endedAt ?? w.insertedAt) - w.insertedAt),
  };
}
