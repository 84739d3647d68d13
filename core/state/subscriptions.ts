/**
 * The live subscriptions (RFC 6665 §4.2.1, notifier side) and their soft state: the indices by
 * id, dialog and presentity, each one's expiry, removal from memory and store alike, and recovery
 * after a restart. What happens to a subscription is reported on the event hub
 * (`subscription.changed`, `subscription.ended`); the notifier and watcher info listen. The
 * SUBSCRIBE transaction itself is sip/subscribe-uas.ts.
 */
import { ownString, sharedString } from '../../transport/message.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { EventHub } from '../events.js';
import type { StateStore } from '../store/interfaces.js';
import { RARE_SUBSCRIPTION_FIELDS, type Subscription } from '../store/records.js';
import { NotifierDialog } from '../dialogs/subscription-dialog.js';
import { DeadlineHeap, type Timed } from '../timers.js';
import { presentityKey, uriAor } from '../uris.js';
import type { StateLimits } from '../limits.js';

/** A watcher's status and the event that led there (RFC 3857 §4.7.1, RFC 3858 §4.4). */
export type WinfoStatus = 'pending' | 'active' | 'waiting' | 'terminated';
export type WinfoEvent = 'subscribe' | 'approved' | 'deactivated' | 'probation' | 'rejected' | 'timeout' | 'giveup' | 'noresource';

/** What presence.winfo shows of a live presence subscription (kept on it by watcher-info.ts); `aor` cached. */
export interface WatcherState {
  aor: string;
  status: WinfoStatus;
  event: WinfoEvent;
}

/**
 * A live subscription: its dialog (notifier role) plus what the state layer keeps for it — the
 * key of its presentity, the authorisation outcome's body key, its watcher-info state.
 */
export class LiveSubscription extends NotifierDialog implements Timed {
  /** presentity + event: the key of the composed body this watcher's NOTIFYs share (fixed for a subscription). */
  presentityKey: string;
  /** Authorisation outcome's transformation key (which composed body this watcher sees; '' = the whole state). */
  bodyKey = '';
  // What presence.winfo shows of it (presence subscriptions; set by WatcherInfo through `winfo`):
  // three fields of its own, not an object each.
  private winfoAor: string | undefined = undefined;
  private winfoStatus: WinfoStatus = 'pending';
  private winfoLast: WinfoEvent = 'subscribe';

  /** What presence.winfo shows of it (presence subscriptions; set by WatcherInfo). */
  get winfo(): WatcherState | undefined {
    return this.winfoAor === undefined ? undefined : { aor: this.winfoAor, status: this.winfoStatus, event: this.winfoLast };
  }

  set winfo(st: WatcherState | undefined) {
    this.winfoAor = st?.aor;
    if (st === undefined) return;
    this.winfoStatus = st.status;
    this.winfoLast = st.event;
  }
  /** When it is removed, and its place in the expiry heap (Subscriptions' DeadlineHeap). */
  deadline = 0;
  heapIndex = -1;

  constructor(record: Subscription) {
    super(record);
    this.presentityKey = ownString(presentityKey(record.presentityUri, record.event));
  }
}

/** `resumed`: a live subscription recovered from the store after a restart. */
export type SubscriptionChange = 'created' | 'resumed' | 'refreshed' | 'authorized';

/** What the subscriptions report on the hub. */
export interface SubscriptionEvents {
  'subscription.changed': { sub: LiveSubscription; what: SubscriptionChange };
  /** Gone from memory and store. `final`: the reason of the terminated NOTIFY now due (none: no NOTIFY, or sent by the caller). */
  'subscription.ended': { sub: LiveSubscription; why: string; final?: string };
}

export interface SubscriptionDeps {
  config: Config;
  store: StateStore;
  log: Logger;
  hub: EventHub<SubscriptionEvents>;
  /** Per-watcher and total subscription limits (core/limits.ts): counted as subscriptions come and go. */
  limits?: StateLimits;
}

/** How often removals the store refused (full disk) are tried again. */
const REMOVAL_RETRY_MS = 5000;

/** Record fields with few distinct values across a node (a proxy's address, "presence", "udp"): one copy each. */
const FEW_VALUES = new Set(['event', 'transport', 'sourceAddress', 'state', 'reason', 'accept', 'subHandling']);

/** The route set of every dialog without one (never written to: a dialog's route set is fixed). */
const NO_ROUTES = Object.freeze([]) as unknown as string[];

/**
 * Every string of a subscription record made its own (see ownString()), and those with few
 * distinct values shared between records.
 */
export function ownStrings(rec: Subscription): void {
  const r = rec as unknown as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    const v = r[k];
    if (typeof v === 'string') r[k] = FEW_VALUES.has(k) ? sharedString(v) : ownString(v);
  }
  // A compact record keeps its rare fields aside (not among its own keys): those set are owned too.
  for (const k of RARE_SUBSCRIPTION_FIELDS) {
    const v = r[k];
    if (typeof v === 'string' && v !== '') r[k] = ownString(v);
  }
  if (rec.id === rec.localTag) rec.id = rec.localTag; // the id is our tag: one string
  // Record-Route often carries per-dialog parameters; most dialogs have none and share one empty array.
  rec.routeSet = rec.routeSet.length === 0 ? NO_ROUTES : rec.routeSet.map(ownString);
}

/** A new watcher of a presentity takes the presentity's strings from one already watching it. */
function sharePresentity(sub: LiveSubscription, peer: LiveSubscription): void {
  const rec = sub.record;
  const other = peer.record;
  if (rec.presentityUri === other.presentityUri) rec.presentityUri = other.presentityUri;
  if (rec.localUri === other.localUri) rec.localUri = other.localUri;
  if (sub.presentityKey === peer.presentityKey) sub.presentityKey = peer.presentityKey;
}

export class Subscriptions {
  /** How many are live (each is in byCallId, under its Call-ID). */
  private live = 0;
  /**
   * By Call-ID, keyed by the record's own string (a key per dialog would be one more string per
   * subscription); the tags tell the dialogs apart. Several only when dialogs share a Call-ID.
   */
  private readonly byCallId = new Map<string, LiveSubscription | LiveSubscription[]>();
  private readonly byPresentity = new Map<string, Set<LiveSubscription>>();
  private readonly timers = new DeadlineHeap<LiveSubscription>((sub) => {
    this.terminate(sub, 'timeout').catch((err) => this.deps.log.error({ err, callId: sub.record.callId }, 'expiry failed'));
  });

  constructor(private readonly deps: SubscriptionDeps) {}

  watchersOf(presentityUri: string, event: string): Iterable<LiveSubscription> {
    return this.byPresentity.get(presentityKey(presentityUri, event)) ?? [];
  }

  watcherCount(presentityUri: string, event: string): number {
    return this.byPresentity.get(presentityKey(presentityUri, event))?.size ?? 0;
  }

  /** The live subscription with this id: a walk over all of them, for tools and tests (nothing on a hot path asks by id). */
  get(id: string): LiveSubscription | undefined {
    for (const sub of this.all()) if (sub.id === id) return sub;
    return undefined;
  }

  /** Whether `sub` is live (still in the indices). */
  has(sub: LiveSubscription): boolean {
    const r = sub.record;
    return this.inDialog(r.callId, r.localTag, r.remoteTag) === sub;
  }

  /** The subscription of a dialog (RFC 3261 §12: Call-ID, our tag, the subscriber's tag). */
  inDialog(callId: string, localTag: string, remoteTag: string): LiveSubscription | undefined {
    const there = this.byCallId.get(callId);
    const mine = (s: LiveSubscription): boolean => s.record.localTag === localTag && s.record.remoteTag === remoteTag;
    if (there === undefined) return undefined;
    if (!Array.isArray(there)) return mine(there) ? there : undefined;
    return there.find(mine);
  }

  *all(): Iterable<LiveSubscription> {
    for (const there of this.byCallId.values()) {
      if (Array.isArray(there)) yield* there.slice();
      else yield there;
    }
  }

  /** Live subscriptions of one event package (for /metrics; walks the presentities, not the subscriptions). */
  countOf(event: string): number {
    const tail = `\u0000${event}`;
    let n = 0;
    for (const [k, set] of this.byPresentity) if (k.endsWith(tail)) n += set.size;
    return n;
  }

  get count(): number {
    return this.live;
  }

  // ───── life cycle ─────

  /** A new subscription, committed to the store: indexed, its expiry armed, reported. */
  add(sub: LiveSubscription, what: 'created' | 'resumed' = 'created'): void {
    if (this.has(sub)) return; // added already
    this.live++;
    this.deps.limits?.subscriptionAdded(uriAor(sub.record.watcherUri));
    const callId = sub.record.callId;
    const there = this.byCallId.get(callId);
    if (there === undefined) this.byCallId.set(callId, sub);
    else if (Array.isArray(there)) there.push(sub);
    else this.byCallId.set(callId, [there, sub]);
    let set = this.byPresentity.get(sub.presentityKey);
    if (!set) {
      set = new Set();
      this.byPresentity.set(sub.presentityKey, set);
    } else {
      const peer = set.values().next();
      if (!peer.done) sharePresentity(sub, peer.value);
    }
    set.add(sub);
    this.arm(sub);
    this.deps.hub.emit('subscription.changed', { sub, what });
  }

  /**
   * A refresh (RFC 6665 §4.2.1.2): `changes` committed, then applied to the live record and the
   * expiry re-armed. A write the store refuses (full disk) changes nothing, in memory as in the
   * store: the subscriber keeps its previous expiry (RFC 6665 §4.1.2.2), and so does the node.
   */
  async refresh(sub: LiveSubscription, changes: Partial<Subscription>): Promise<void> {
    const rec = sub.record as unknown as Record<string, unknown>;
    const before: Record<string, unknown> = {};
    for (const k of Object.keys(changes)) before[k] = rec[k];
    // Written as the live record (not a copy): a write queued after this one (a new authorisation
    // outcome) then carries the refresh too, whatever order they commit in.
    Object.assign(rec, changes);
    try {
      await this.deps.store.putSubscription(sub.record);
    } catch (err) {
      for (const k of Object.keys(before)) if (rec[k] === (changes as Record<string, unknown>)[k]) rec[k] = before[k];
      throw err;
    }
    this.arm(sub);
    this.deps.hub.emit('subscription.changed', { sub, what: 'refreshed' });
  }

  /** Subscriptions whose unsubscribe is being committed: nothing may write their record meanwhile. */
  private readonly leaving = new Set<string>();

  /**
   * An unsubscribe (RFC 6665 §4.2.1.4): the record leaves the store first, then memory. A removal
   * the store refuses (full disk) throws and changes nothing: the subscription stays live in
   * memory and in the store, as it does for the subscriber, who got a 503 to its unsubscribe and
   * so still holds the subscription (RFC 6665 §4.1.2.2). Removing it from memory alone would
   * have it come back at the next restart, after a 200 that said it was gone.
   */
  async unsubscribe(sub: LiveSubscription): Promise<void> {
    this.leaving.add(sub.id);
    try {
      await this.deps.store.removeSubscription(sub.id);
    } finally {
      this.leaving.delete(sub.id);
    }
    if (this.drop(sub)) this.ended(sub, 'unsubscribed');
  }

  /** A new authorisation outcome (rules changed): committed, then reported. */
  async authorize(sub: LiveSubscription, handling: string, bodyKey: string): Promise<void> {
    const rec = sub.record;
    rec.subHandling = handling;
    sub.bodyKey = bodyKey;
    const was = rec.state;
    rec.state = handling === 'confirm' ? 'pending' : 'active';
    // The watcher-info event (RFC 3857 §4.7.1) goes with the record (watcher-info.ts reads it after
    // a restart): approved when a pending one becomes active, subscribe again when back to pending.
    if (rec.state !== was) rec.winfoEvent = rec.state === 'active' ? 'approved' : '';
    if (this.leaving.has(sub.id)) return; // its record is being removed: not written back
    await this.deps.store.putSubscription(rec);
    this.deps.hub.emit('subscription.changed', { sub, what: 'authorized' });
  }

  private arm(sub: LiveSubscription): void {
    this.timers.set(sub, this.removedAt(sub.record));
  }

  /** When a subscription is removed: its expiry plus the grace of expires_offset (Kamailio's presence module). */
  private removedAt(rec: Subscription): number {
    return rec.expiresAt + this.deps.config.expires_offset * 1000;
  }

  /** End a subscription with a final NOTIFY (expiry, deauthorisation, administrative removal). */
  async terminate(sub: LiveSubscription, reason: string): Promise<void> {
    await this.forget(sub, reason, reason);
  }

  /** Remove from memory and store; `final`: the reason of the terminated NOTIFY due. Idempotent. */
  forget = async (sub: LiveSubscription, why: string, final?: string): Promise<void> => {
    if (!this.drop(sub)) return;
    try {
      await this.deps.store.removeSubscription(sub.id);
    } catch (err) {
      // It is gone from memory: it still gets its final NOTIFY and leaves watcher info. The store
      // keeps the record (full disk) until a later try removes it (retryRemovals), so a restart
      // meanwhile does not bring back a subscription its watcher was told had ended.
      this.deps.log.error({ err, callId: sub.record.callId }, 'removing an ended subscription from the store failed: trying again');
      this.removalsDue.set(sub.id, sub);
      this.retryRemovals();
    }
    this.ended(sub, why, final);
  };

  /** Records of ended subscriptions the store could not remove yet (full disk). */
  private readonly removalsDue = new Map<string, LiveSubscription>();
  private removalTimer: NodeJS.Timeout | undefined;

  /** Try the removals the store refused again every few seconds until they are committed. */
  private retryRemovals(): void {
    if (this.removalTimer || this.removalsDue.size === 0) return;
    this.removalTimer = setTimeout(async () => {
      for (const [id, sub] of [...this.removalsDue]) {
        if (this.has(sub)) {
          this.removalsDue.delete(id); // live again: its record is current
          continue;
        }
        try {
          await this.deps.store.removeSubscription(id);
          this.removalsDue.delete(id);
        } catch {
          break; // still full: the next round tries again
        }
      }
      this.removalTimer = undefined;
      this.retryRemovals();
    }, REMOVAL_RETRY_MS);
    this.removalTimer.unref();
  }

  /** Out of every index, its expiry disarmed; false when it was not (or no longer) live. */
  private drop(sub: LiveSubscription): boolean {
    if (!this.has(sub)) return false;
    this.live--;
    this.deps.limits?.subscriptionRemoved(uriAor(sub.record.watcherUri));
    const there = this.byCallId.get(sub.record.callId);
    if (there === sub) this.byCallId.delete(sub.record.callId);
    else if (Array.isArray(there)) {
      const rest = there.filter((s) => s !== sub);
      if (rest.length === 1) this.byCallId.set(sub.record.callId, rest[0]!);
      else this.byCallId.set(sub.record.callId, rest);
    }
    const set = this.byPresentity.get(sub.presentityKey);
    if (set) {
      set.delete(sub);
      if (set.size === 0) this.byPresentity.delete(sub.presentityKey);
    }
    this.timers.clear(sub);
    return true;
  }

  private ended(sub: LiveSubscription, why: string, final?: string): void {
    this.deps.log.info(
      {
        callId: sub.record.callId,
        presentityUri: sub.record.presentityUri,
        watcherUri: sub.record.watcherUri,
        event: sub.record.event,
        why,
      },
      'subscription ended',
    );
    this.deps.hub.emit('subscription.ended', final === undefined ? { sub, why } : { sub, why, final });
  }

  /**
   * After a restart: live subscriptions resume in their dialogs (CSeq continues); those whose
   * grace (expires_offset) ran out while the node was down are removed and reported ended with a terminated NOTIFY due,
   * once every live subscription (its winfo subscribers too) is back. `outcomeOf` gives each
   * live one its authorisation body key before it can receive a NOTIFY.
   */
  async recover(outcomeOf: (rec: Subscription) => Promise<string>): Promise<{ live: number; expired: number }> {
    const now = Date.now();
    let live = 0;
    const expired: LiveSubscription[] = [];
    for (const rec of this.deps.store.allSubscriptions()) {
      rec.flowId = ''; // connections of the previous process are gone
      ownStrings(rec);
      const sub = new LiveSubscription(rec);
      // Within its grace (expires_offset) it resumes, and ends when the grace does, as it would have without the restart.
      if (this.removedAt(rec) <= now) {
        expired.push(sub);
        // A store that cannot write (disk full) does not stop the start: the record goes at the next one.
        await this.deps.store
          .removeSubscription(rec.id)
          .catch((err) => this.deps.log.error({ err, callId: rec.callId }, 'removing an expired subscription failed'));
        continue;
      }
      sub.bodyKey = await outcomeOf(rec);
      this.add(sub, 'resumed');
      live++;
    }
    for (const sub of expired) this.deps.hub.emit('subscription.ended', { sub, why: 'timeout', final: 'timeout' });
    return { live, expired: expired.length };
  }

  /** Clean stop: no more timers. */
  stop(): void {
    this.timers.clearAll();
    if (this.removalTimer) clearTimeout(this.removalTimer);
    this.removalTimer = undefined;
  }
}
