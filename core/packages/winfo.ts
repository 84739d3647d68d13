/**
 * `presence.winfo` (RFC 3857) with watcherinfo documents (RFC 3858): who watches a
 * presentity, with status and the event that led there. The first NOTIFY of a subscription
 * carries the full list, later ones only the watcher that changed (state="partial"). The
 * version is per subscription, from 0 (RFC 3858 §4.1).
 */
import type { EventPackage, PackageContext } from './types.js';
import { VERSION_SLOT } from './types.js';

export const WATCHERINFO_NS = 'urn:ietf:params:xml:ns:watcherinfo';

export interface WatcherEntry {
  id: string;
  uri: string;
  displayName: string;
  status: 'pending' | 'active' | 'waiting' | 'terminated';
  event: 'subscribe' | 'approved' | 'deactivated' | 'probation' | 'rejected' | 'timeout' | 'giveup' | 'noresource';
  durationSubscribed: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function watcherElement(w: WatcherEntry): string {
  const dn = w.displayName ? ` display-name="${esc(w.displayName)}"` : '';
  return `<watcher id="${esc(w.id)}" status="${w.status}" event="${w.event}" duration-subscribed="${w.durationSubscribed}"${dn}>${esc(w.uri)}</watcher>`;
}

export function watcherinfoDocument(resource: string, pkg: string, state: 'full' | 'partial', watchers: WatcherEntry[]): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<watcherinfo xmlns="${WATCHERINFO_NS}" version="${VERSION_SLOT}" state="${state}">` +
    `<watcher-list resource="${esc(resource)}" package="${esc(pkg)}">` +
    watchers.map(watcherElement).join('') +
    '</watcher-list></watcherinfo>\n'
  );
}

export const winfoPackage: EventPackage = {
  name: 'presence.winfo',
  publishTypes: [],
  notifyType: 'application/watcherinfo+xml',
  needsAuthorization: false,
  versioned: true,
  async validate() {
    return 'presence.winfo cannot be published';
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    const watchers = ctx.watchers ? ctx.watchers(presentityUri, 'presence') : [];
    return watcherinfoDocument(presentityUri, 'presence', 'full', watchers);
  },
};
