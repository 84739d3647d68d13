/**
 * Following an XCAP reference inside this server's own documents, as the list server does for
 * RFC 4826 <external anchor>, <entry-ref ref> and <resource-list>: an absolute HTTP URI whose
 * path is under our XCAP root, or a URI relative to the root (entry-ref, §3.2). The element it
 * selects comes back as XML, read from the store (no HTTP request to ourselves).
 */
import type { StoreReader } from '../store/interfaces.js';
import type { WorkerPool } from '../pool.js';
import { parseXcapUri, type XcapUri } from './uri.js';
import { sameXui } from '../uris.js';
import type { NodeSelector } from '../../workers/xcap.js';
import { parseNodeSelector, parseNamespaceBindings } from './selectors.js';
import { USAGE_BY_AUID } from './auids.js';

/** What a reference resolves to, or why it does not. */
export type Resolved = { ok: true; xml: string } | { ok: false; why: string };

export class XcapReferences {
  constructor(
    private readonly store: StoreReader,
    private readonly pool: WorkerPool,
    private readonly root: string,
  ) {}

  /**
   * `ref` absolute (http[s]://host/ROOT/...) or relative to the XCAP root (`resource-lists/users/...`),
   * read on behalf of `reader` (a XUI): its own tree and the global trees only, as the XCAP
   * server lets a user read (a list must not reveal another user's documents).
   */
  async select(ref: string, reader: string): Promise<Resolved> {
    let path: string;
    let query = '';
    if (/^https?:\/\//i.test(ref)) {
      let url: URL;
      try {
        url = new URL(ref);
      } catch {
        return { ok: false, why: 'not a URI' };
      }
      path = url.pathname;
      query = url.search.slice(1);
    } else {
      const q = ref.indexOf('?');
      path = `${this.root}/${(q < 0 ? ref : ref.slice(0, q)).replace(/^\/+/, '')}`;
      query = q < 0 ? '' : ref.slice(q + 1);
    }
    let uri: XcapUri | undefined;
    try {
      uri = parseXcapUri(this.root, path);
    } catch (err) {
      return { ok: false, why: (err as Error).message };
    }
    if (!uri) return { ok: false, why: `not under this server's XCAP root ${this.root}` };
    if (uri.xui && !sameXui(uri.xui, reader)) return { ok: false, why: `a document of another user (${uri.xui})` };
    const usage = USAGE_BY_AUID.get(uri.auid);
    if (!usage) return { ok: false, why: `unknown auid ${uri.auid}` };
    const doc = this.store.getXcap(uri.auid, uri.xui, uri.name);
    if (!doc) return { ok: false, why: 'no such document' };
    const xml = Buffer.from(doc.body).toString('utf8');
    if (uri.nodeSelector === undefined) return { ok: true, xml };
    let selector: NodeSelector;
    try {
      selector = parseNodeSelector(uri.nodeSelector, parseNamespaceBindings(query));
    } catch (err) {
      return { ok: false, why: (err as Error).message };
    }
    const r = await this.pool.run('xcap.select', { xml, selector, usage: usage.rules });
    return r.ok ? { ok: true, xml: r.body } : { ok: false, why: r.reason };
  }
}
