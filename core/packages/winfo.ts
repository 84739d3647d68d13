/**
 * `presence.winfo` (RFC 3857) with watcherinfo documents (RFC 3858): who watches a
 * presentity, with status and the event that led there. The first NOTIFY of a subscription
 * carries the full list, later ones only the watcher that changed (state="partial"). The
 * version is per subscription, from 0 (RFC 3858 §4.1).
 */
import type { EventPackage, PackageContext, AuthorizationRequest, AuthorizationOutcome } from './types.js';
import { VERSION_SLOT, userdelReason } from './types.js';
import type { WatcherEntry } from '../state/watcher-info.js';

export type { WatcherEntry };

export const WATCHERINFO_NS = 'urn:ietf:params:xml:ns:watcherinfo';

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
  versioned: true,
  async validate() {
    return 'presence.winfo cannot be published';
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    return watcherinfoDocument(presentityUri, 'presence', 'full', ctx.watchers(presentityUri));
  },
  // RFC 3857 §5.1: the presentity may always watch its own watchers; anyone else needs a rule of
  // its pres-rules granting <wr:winfo-handling>allow (presenced's extension, README "XCAP").
  async authorize(req: AuthorizationRequest): Promise<AuthorizationOutcome> {
    if (sameAor(req.watcherAor, req.presentityUri)) return { handling: 'allow', bodyKey: '' };
    if (!req.rules) return { handling: 'block', bodyKey: '' };
    const d = await req.rules();
    return { handling: d.winfoHandling === 'allow' ? 'allow' : 'block', bodyKey: '' };
  },
  // A watcher-info grant taken away ends like an allowed watcher whose rule is gone (README "XCAP").
  revokedReason: userdelReason,
};

/** The same address of record whether it is written sip: or sips: (presentity URIs are kept as sip:). */
function sameAor(a: string, b: string): boolean {
  return a.replace(/^sips?:/i, '') === b.replace(/^sips?:/i, '');
}
