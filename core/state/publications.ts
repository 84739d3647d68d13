/**
 * Publications (RFC 3903) as soft state: every live publication held in memory, written through
 * to the store, each expiring on its own; recovery after a restart. Every committed change is
 * reported on the event hub (`presentity.changed`), never by calling the notifier. The PUBLISH
 * transaction, RFC 3903 §6 step by step, is sip/publish-uas.ts.
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { EventHub, BaseEvents } from '../events.js';
import type { StateStore } from '../store/interfaces.js';
import { publicationId, type Publication } from '../store/records.js';
import { ExpiryTimers } from '../timers.js';
import { presentityKey } from '../uris.js';

export interface PublicationDeps {
  config: Config;
  store: StateStore;
  log: Logger;
  hub: EventHub<BaseEvents>;
}

const timerKey = (p: { presentityUri: string; event: string; entityTag: string }): string =>
  `${p.presentityUri}\u0000${p.event}\u0000${p.entityTag}`;

export class Publications {
  /**
   * Every live publication by presentity, event and entity-tag with its expiry: a write-through
   * copy of the store (like Kamailio's publ_cache), so a refresh, modify or remove finds its
   * publication, and the main thread composes, without a read and decode. Workers and RPC read the store.
   */
  private readonly live = new ExpiryTimers<Publication>((p) => {
    this.counted(p, -1); // the timers let go of it before calling
    this.expire(p, true).catch((err) => this.deps.log.error({ err, presentityUri: p.presentityUri }, 'publication expiry failed'));
  });
  /** Live publications per presentity and event (for composition on the main thread, and /metrics without a store scan). */
  private readonly perPresentity = new Map<string, Publication[]>();

  /** Presentities (with event) that have at least one live publication. */
  presentityCountOf(event: string): number {
    const tail = `\u0000${event}`;
    let n = 0;
    for (const k of this.perPresentity.keys()) if (k.endsWith(tail)) n++;
    return n;
  }

  /** Live publications of every presentity and event (publication limits). */
  get liveCount(): number {
    return this.live.size;
  }

  get presentityCount(): number {
    return this.perPresentity.size;
  }

  private counted(p: Publication, delta: 1 | -1): void {
    const k = presentityKey(p.presentityUri, p.event);
    const list = this.perPresentity.get(k);
    if (delta === 1) {
      if (list) list.push(p);
      else this.perPresentity.set(k, [p]);
      return;
    }
    if (!list) return;
    const i = list.indexOf(p);
    if (i !== -1) list.splice(i, 1);
    if (list.length === 0) this.perPresentity.delete(k);
  }

  /** A presentity's live publications of an event, newest first, then in store key order (as the workers read them). */
  of(presentityUri: string, event: string): Publication[] {
    const list = this.perPresentity.get(presentityKey(presentityUri, event));
    if (!list) return [];
    return list.slice().sort((a, b) => b.receivedAt - a.receivedAt || compare(publicationId(a), publicationId(b)));
  }

  /**
   * The live publication an entity-tag names (RFC 3903 §6 step 3), if it has not expired, grace
   * included: Kamailio keeps a publication expires_offset seconds past its expiry, and one that
   * is kept can still be refreshed, modified or removed.
   */
  find(presentityUri: string, event: string, entityTag: string): Publication | undefined {
    const p = this.live.get(timerKey({ presentityUri, event, entityTag }));
    return p && this.removedAt(p) > Date.now() ? p : undefined;
  }

  /** When a publication is removed: its expiry plus the grace of expires_offset. */
  private removedAt(p: Publication): number {
    return p.expiresAt + this.deps.config.expires_offset * 1000;
  }

  /**
   * A new publication, or `existing` replaced by it (refresh, modify): committed, then live. A
   * replacement keeps the stable id, so it is one write over the same record.
   */
  async put(publication: Publication, existing: Publication | undefined): Promise<void> {
    publication.id = existing ? publicationId(existing) : publication.entityTag;
    if (existing) this.disarm(existing);
    await this.rearmOnFailure(existing, this.deps.store.putPublication(publication));
    this.arm(publication);
  }

  /** A publication removed (RFC 3903 §6 step 4, Expires 0): committed, then gone. */
  async remove(existing: Publication): Promise<void> {
    this.disarm(existing);
    await this.rearmOnFailure(existing, this.deps.store.removePublication(existing.presentityUri, existing.event, publicationId(existing)));
  }

  /** Report a committed change of a presentity's state (after the 2xx to the PUBLISH left). */
  changed(presentityUri: string, event: string): void {
    this.deps.hub.emit('presentity.changed', { presentityUri, event });
  }

  constructor(private readonly deps: PublicationDeps) {}

  /** Re-arm expiry for every stored publication; remove those whose grace (expires_offset) ran out while the node was down. */
  async recover(): Promise<{ live: number; expired: number }> {
    const now = Date.now();
    let live = 0;
    const expired: Publication[] = [];
    for (const p of this.deps.store.allPublications()) {
      if (this.removedAt(p) <= now) expired.push(p);
      else {
        live++;
        this.arm(p);
      }
    }
    // A store that cannot write (disk full) does not stop the start: the clean_period sweep removes them later.
    await Promise.all(expired.map((p) => this.deps.store.removePublication(p.presentityUri, p.event, publicationId(p)))).catch((err) =>
      this.deps.log.error({ err }, 'removing expired publications failed'),
    );
    // Watchers are told once subscriptions are back (node.start calls notifyRecovered()).
    for (const p of expired) this.recoveredChanges.add(presentityKey(p.presentityUri, p.event));
    return { live, expired: expired.length };
  }

  private readonly recoveredChanges = new Set<string>();

  /** After subscriptions are recovered: NOTIFY the watchers of publications that expired while down. */
  notifyRecovered(): void {
    for (const k of this.recoveredChanges) {
      const [uri, event] = k.split('\u0000') as [string, string];
      this.changed(uri, event);
    }
    this.recoveredChanges.clear();
  }

  stop(): void {
    this.live.clearAll();
    this.perPresentity.clear();
  }

  private arm(p: Publication): void {
    const key = timerKey(p);
    if (this.live.get(key) === undefined) this.counted(p, 1);
    this.live.set(key, this.removedAt(p), p);
  }

  private disarm(p: Publication): void {
    const key = timerKey(p);
    if (this.live.get(key) === undefined) return;
    this.counted(p, -1);
    this.live.clear(key);
  }

  /** A write that fails leaves the publication it replaced (or removed) live, as the store still has it. */
  private async rearmOnFailure<T>(existing: Publication | undefined, write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (err) {
      if (existing) this.arm(existing);
      throw err;
    }
  }

  /** `fromTimer`: its expiry timer fired (and let go of it), so it was live until now. */
  private async expire(p: Publication, fromTimer = false): Promise<void> {
    const key = timerKey(p);
    const current = this.live.get(key);
    const wasLive = fromTimer || current !== undefined;
    if (current) this.disarm(current);
    else if (this.deps.store.getPublication(p.presentityUri, p.event, publicationId(p))?.entityTag !== p.entityTag) return; // gone or replaced already
    try {
      await this.deps.store.removePublication(p.presentityUri, p.event, publicationId(p));
    } catch (err) {
      if (!wasLive) throw err; // a sweep of the store: nothing changed for the watchers
      // It is gone from memory, so from what the watchers are sent: they are told. The store
      // keeps it (full disk) until the clean_period sweep or the next start removes it.
      this.deps.log.error(
        { err, presentityUri: p.presentityUri, entityTag: p.entityTag },
        'removing an expired publication from the store failed',
      );
    }
    this.deps.log.info({ presentityUri: p.presentityUri, event: p.event, entityTag: p.entityTag }, 'publication expired');
    this.changed(p.presentityUri, p.event);
  }

  /** presence.cleanup: drop every expired publication now (past its grace, as the expiry timers do). */
  async cleanup(): Promise<number> {
    const now = Date.now();
    let n = 0;
    for (const p of this.deps.store.allPublications()) {
      if (this.removedAt(p) <= now) {
        await this.expire(p);
        n++;
      }
    }
    return n;
  }
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
