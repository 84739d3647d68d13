/**
 * Watcher information (RFC 3857): turns subscription life-cycle events of the `presence`
 * package into watcherinfo NOTIFYs for the presentity's presence.winfo subscribers, and keeps
 * the watcher authorisation states in the store (removed with the subscription).
 */
import type { Store } from './store/store.js';
import type { Logger } from './log.js';
import type { Notifier } from './notifier.js';
import type { LiveSubscription } from './subscription.js';
import type { SubscriptionEvent } from './subscriptions.js';
import { uriAor } from './subscriptions.js';
import { watcherinfoDocument, type WatcherEntry } from './packages/winfo.js';

const WINFO_EVENTS = new Set(['subscribe', 'approved', 'deactivated', 'probation', 'rejected', 'timeout', 'giveup', 'noresource']);

/** RFC 3857 §3.3 event for a subscription that ended with `why`. */
function endEvent(why: string | undefined): WatcherEntry['event'] {
  const reason = (why ?? '').split(';')[0]!;
  if (WINFO_EVENTS.has(reason)) return reason as WatcherEntry['event'];
  return 'timeout'; // unsubscribed, expired, or the watcher stopped answering
}

export function watcherEntry(sub: LiveSubscription, event: WatcherEntry['event'], ended = false): WatcherEntry {
  const r = sub.record;
  return {
    id: r.id,
    uri: uriAor(r.watcherUri),
    displayName: r.watcherDisplay,
    status: ended ? 'terminated' : r.state === 'active' ? 'active' : 'pending',
    event,
    durationSubscribed: Math.max(0, Math.round((Date.now() - r.createdAt) / 1000)),
  };
}

export class WatcherInfo {
  /** The last event of each live presence watcher, for the full list. */
  private readonly lastEvent = new Map<string, WatcherEntry['event']>();

  constructor(
    private readonly store: Store,
    private readonly notifier: () => Notifier,
    private readonly winfoWatchers: (presentityUri: string) => Iterable<LiveSubscription>,
    private readonly presenceWatchers: (presentityUri: string) => Iterable<LiveSubscription>,
    private readonly log: Logger,
  ) {}

  /** Full list of a presentity's watchers (first NOTIFY, refreshes, coalesced updates). */
  list = (presentityUri: string): WatcherEntry[] => {
    const out: WatcherEntry[] = [];
    for (const sub of this.presenceWatchers(presentityUri)) out.push(watcherEntry(sub, this.lastEvent.get(sub.id) ?? 'subscribe'));
    return out;
  };

  onSubscriptionEvent = (sub: LiveSubscription, event: SubscriptionEvent, why?: string): void => {
    const r = sub.record;
    if (r.event !== 'presence' || event === 'refreshed') return;
    let entry: WatcherEntry;
    if (event === 'ended') {
      this.lastEvent.delete(r.id);
      entry = watcherEntry(sub, endEvent(why), true);
      this.store.removeWatcher(r.presentityUri, r.event, entry.uri).catch((err) => this.log.error({ err }, 'watcher removal failed'));
    } else {
      const ev: WatcherEntry['event'] = event === 'authorized' && r.state === 'active' ? 'approved' : 'subscribe';
      this.lastEvent.set(r.id, ev);
      entry = watcherEntry(sub, ev);
      this.store
        .putWatcher({
          presentityUri: r.presentityUri,
          event: r.event,
          watcherUri: entry.uri,
          status: entry.status,
          winfoEvent: ev,
          insertedAt: r.createdAt,
          displayName: r.watcherDisplay,
          subHandling: r.subHandling,
        })
        .catch((err) => this.log.error({ err }, 'watcher state write failed'));
    }
    const notifier = this.notifier();
    notifier.invalidate(r.presentityUri, 'presence.winfo');
    const partial = watcherinfoDocument(r.presentityUri, 'presence', 'partial', [entry]);
    for (const w of this.winfoWatchers(r.presentityUri)) {
      // A winfo subscription's first NOTIFY is the full list; partial ones only after it.
      if (w.record.state === 'active' && w.record.winfoVersion > 0) notifier.schedule(w, { kind: 'state', body: partial });
    }
  };
}
