/**
 * Watcher-info partial notifications (RFC 3857 §4.4, RFC 3858 §4.4): when one watcher of a
 * presentity changes, each presence.winfo subscriber past its full first NOTIFY gets a partial
 * document with that watcher only; the full document (the next refresh) is recomposed.
 */
import type { EventHub } from '../events.js';
import type { Subscriptions } from '../state/subscriptions.js';
import type { StateEvents } from '../state/watcher-info.js';
import { watcherinfoDocument } from '../packages/winfo.js';
import type { Notifier } from './notifier.js';

export function notifyWatcherChanges(hub: EventHub<StateEvents>, subscriptions: Subscriptions, notifier: Notifier): void {
  hub.on('watcherinfo.changed', ({ presentityUri, entry }) => {
    notifier.invalidate(presentityUri, 'presence.winfo');
    const partial = watcherinfoDocument(presentityUri, 'presence', 'partial', [entry]);
    for (const w of subscriptions.watchersOf(presentityUri, 'presence.winfo')) {
      if (w.record.state === 'active' && w.record.winfoVersion > 0) notifier.schedule(w, { kind: 'state', body: partial });
    }
  });
}
