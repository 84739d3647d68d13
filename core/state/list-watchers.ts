/**
 * Watcher information (RFC 3857) of watchers that reach a presentity only through a resource
 * list served inside this node (core/rls/): a list subscriber is that resource's watcher as much
 * as if its back-end subscription had been a SIP SUBSCRIBE, so the presentity's owner sees it
 * in presence.winfo — pending until a rule allows it, then approved, rejected, or gone (timeout)
 * when no list of that watcher holds the presentity any more. One entry per presentity and
 * watcher address of record, however many of the watcher's lists or devices hold it. It reports
 * each change on the hub as `watcherinfo.changed`, as watcher-info.ts does for subscriptions.
 *
 * A node with 1,000 lists of 100 resources holds 100,000 of these, so an entry is two numbers:
 * its state packed in one, when it began in the other; the <watcher> element is built when
 * asked for (its id derived from presentity and watcher, so it is the same each time).
 */
import { createHash } from 'node:crypto';
import type { EventHub } from '../events.js';
import type { WatcherEntry, WinfoEvents } from './watcher-info.js';
import type { WinfoEvent, WinfoStatus } from './subscriptions.js';

const STATUSES: WinfoStatus[] = ['pending', 'active', 'terminated'];
const EVENTS: WinfoEvent[] = ['subscribe', 'approved', 'rejected', 'timeout'];

/** Packed: holders << 5 | reported << 4 | status << 2 | event. */
interface Held {
  bits: number;
  /** When it began (seconds since epoch). */
  since: number;
}

const holders = (h: Held): number => h.bits >>> 5;
const reported = (h: Held): boolean => (h.bits & 16) !== 0;
const statusOf = (h: Held): WinfoStatus => STATUSES[(h.bits >> 2) & 3]!;
const eventOf = (h: Held): WinfoEvent => EVENTS[h.bits & 3]!;
const pack = (n: number, rep: boolean, status: WinfoStatus, event: WinfoEvent): number =>
  (n << 5) | (rep ? 16 : 0) | (STATUSES.indexOf(status) << 2) | EVENTS.indexOf(event);

export class ListWatchers {
  /** presentity URI → watcher AOR → entry. */
  private readonly byPresentity = new Map<string, Map<string, Held>>();

  constructor(private readonly hub: EventHub<WinfoEvents>) {}

  /** The presentity's list watchers, for its full watcherinfo document. */
  list = (presentityUri: string): WatcherEntry[] => {
    const m = this.byPresentity.get(presentityUri);
    if (!m) return [];
    return [...m].map(([aor, h]) => entry(presentityUri, aor, h, statusOf(h), eventOf(h)));
  };

  /** A list subscription holds the watcher on the presentity now (pending until set() says more). */
  hold(presentityUri: string, watcherAor: string): void {
    let m = this.byPresentity.get(presentityUri);
    if (!m) this.byPresentity.set(presentityUri, (m = new Map()));
    const h = m.get(watcherAor);
    if (h) h.bits += 32;
    else m.set(watcherAor, { bits: pack(1, false, 'pending', 'subscribe'), since: Math.floor(Date.now() / 1000) });
  }

  /** The watcher's authorisation outcome on the presentity (RFC 3857 §4.7.1 transitions). */
  set(presentityUri: string, watcherAor: string, status: 'pending' | 'active' | 'terminated'): void {
    const h = this.byPresentity.get(presentityUri)?.get(watcherAor);
    if (!h) return;
    let event: WinfoEvent;
    if (status === 'pending') event = 'subscribe';
    else if (status === 'active') event = !reported(h) ? 'subscribe' : statusOf(h) === 'active' ? eventOf(h) : 'approved';
    else event = 'rejected';
    if (reported(h) && statusOf(h) === status && eventOf(h) === event) return;
    h.bits = pack(holders(h), true, status, event);
    this.report(presentityUri, watcherAor, h, status, event);
  }

  /** A list subscription no longer holds the watcher on the presentity: gone (timeout) when none does. */
  release(presentityUri: string, watcherAor: string): void {
    const m = this.byPresentity.get(presentityUri);
    const h = m?.get(watcherAor);
    if (!m || !h) return;
    h.bits -= 32;
    if (holders(h) > 0) return;
    m.delete(watcherAor);
    if (m.size === 0) this.byPresentity.delete(presentityUri);
    this.report(presentityUri, watcherAor, h, 'terminated', 'timeout');
  }

  private report(presentityUri: string, watcherAor: string, h: Held, status: WinfoStatus, event: WinfoEvent): void {
    this.hub.emit('watcherinfo.changed', { presentityUri, entry: entry(presentityUri, watcherAor, h, status, event) });
  }
}

function entry(presentityUri: string, aor: string, h: Held, status: WinfoStatus, event: WinfoEvent): WatcherEntry {
  return {
    id: `l${createHash('sha1').update(presentityUri).update('\u0000').update(aor).digest('base64url').slice(0, 12)}`,
    uri: aor,
    displayName: '',
    status,
    event,
    durationSubscribed: Math.max(0, Math.floor(Date.now() / 1000) - h.since),
  };
}
