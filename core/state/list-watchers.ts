/**
 * Watcher information (RFC 3857) of watchers that reach a presentity only through a resource
 * list served inside this node (core/rls/): a list subscriber is that resource's watcher as much
 * as if its back-end subscription had been a SIP SUBSCRIBE, so the presentity's owner sees it
 * in presence.winfo — pending until a rule allows it, then approved, rejected, or gone (timeout)
 * when no list of that watcher holds the presentity any more. One entry per presentity and
 * watcher address of record, however many of the watcher's lists or devices hold it. It reports
 * each change on the hub as `watcherinfo.changed`, as watcher-info.ts does for subscriptions.
 */
import type { EventHub } from '../events.js';
import type { WatcherEntry, WinfoEvents } from './watcher-info.js';
import type { WinfoEvent, WinfoStatus } from './subscriptions.js';

interface Held {
  entry: WatcherEntry;
  since: number;
  /** How many list subscriptions hold this watcher on this presentity. */
  holders: number;
  /** Whether its first state went out (later ones are transitions: approved, rejected). */
  reported: boolean;
}

let sequence = 0;

export class ListWatchers {
  /** presentity URI → watcher AOR → entry. */
  private readonly byPresentity = new Map<string, Map<string, Held>>();

  constructor(private readonly hub: EventHub<WinfoEvents>) {}

  /** The presentity's list watchers, for its full watcherinfo document. */
  list = (presentityUri: string): WatcherEntry[] => {
    const m = this.byPresentity.get(presentityUri);
    if (!m) return [];
    const now = Date.now();
    return [...m.values()].map((h) => ({ ...h.entry, durationSubscribed: Math.max(0, Math.round((now - h.since) / 1000)) }));
  };

  /** A list subscription holds the watcher on the presentity now. */
  hold(presentityUri: string, watcherAor: string, displayName: string): void {
    let m = this.byPresentity.get(presentityUri);
    if (!m) this.byPresentity.set(presentityUri, (m = new Map()));
    const h = m.get(watcherAor);
    if (h) {
      h.holders++;
      return;
    }
    // Pending until its authorisation is known (set() follows at once).
    m.set(watcherAor, {
      entry: {
        id: `l${(++sequence).toString(36)}`,
        uri: watcherAor,
        displayName,
        status: 'pending',
        event: 'subscribe',
        durationSubscribed: 0,
      },
      since: Date.now(),
      holders: 1,
      reported: false,
    });
  }

  /** The watcher's authorisation outcome on the presentity (RFC 3857 §4.7.1 transitions). */
  set(presentityUri: string, watcherAor: string, status: 'pending' | 'active' | 'terminated'): void {
    const h = this.byPresentity.get(presentityUri)?.get(watcherAor);
    if (!h) return;
    const e = h.entry;
    let event: WinfoEvent;
    if (status === 'pending') event = 'subscribe';
    else if (status === 'active') event = !h.reported ? 'subscribe' : e.status === 'active' ? e.event : 'approved';
    else event = 'rejected';
    if (h.reported && e.status === status && e.event === event) return;
    h.reported = true;
    e.status = status as WinfoStatus;
    e.event = event;
    this.report(presentityUri, h);
  }

  /** A list subscription no longer holds the watcher on the presentity: gone (timeout) when none does. */
  release(presentityUri: string, watcherAor: string): void {
    const m = this.byPresentity.get(presentityUri);
    const h = m?.get(watcherAor);
    if (!m || !h || --h.holders > 0) return;
    m.delete(watcherAor);
    if (m.size === 0) this.byPresentity.delete(presentityUri);
    h.entry.status = 'terminated';
    h.entry.event = 'timeout';
    this.report(presentityUri, h);
  }

  private report(presentityUri: string, h: Held): void {
    this.hub.emit('watcherinfo.changed', {
      presentityUri,
      entry: { ...h.entry, durationSubscribed: Math.max(0, Math.round((Date.now() - h.since) / 1000)) },
    });
  }
}
