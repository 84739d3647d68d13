/**
 * The xcap_client side (integrated_xcap_server = 0): documents come from the external XCAP
 * servers of `xcap_server`, tried in order, and are cached in the same LMDB table the
 * embedded server would write, with the URL they came from (`source`) and their ETag. A
 * refetch sends If-None-Match, so an unchanged document costs a 304; a 404 from the server a
 * copy came from removes that copy. With `periodical_query` = 1 every document fetched so far
 * is refetched every `query_period` seconds, and `onDocumentChanged` reports what changed.
 */
import { createHash } from 'node:crypto';
import type { Config } from '../config.js';
import { Store } from '../store/store.js';
import type { Logger } from '../log.js';
import type { XcapDocument } from '../store/records.js';
import type { XcapChange } from './server.js';
import { documentPathOf } from './uri.js';
import { parseEntityTags, quoteEtag } from './conditional.js';

/** How long one HTTP request to an XCAP server may take. */
const REQUEST_TIMEOUT_MS = 5000;

export interface XcapClientDeps {
  config: Config;
  store: Store;
  log: Logger;
  /** Called after a fetched document was stored, replaced or removed from the cache. */
  onDocumentChanged?: (change: XcapChange) => void;
}

interface DocKey {
  auid: string;
  xui: string;
  name: string;
}

export class XcapClient {
  onDocumentChanged: ((change: XcapChange) => void) | undefined;
  private readonly known = new Map<string, DocKey>();
  private readonly pending = new Map<string, Promise<XcapDocument | undefined>>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(private readonly deps: XcapClientDeps) {
    this.onDocumentChanged = deps.onDocumentChanged;
  }

  /** Start the periodic refresh (when periodical_query = 1). */
  start(): void {
    const { config } = this.deps;
    if (!config.periodical_query || this.timer) return;
    // Copies cached before a restart are refreshed too, not only those fetched since.
    for (const doc of this.deps.store.allXcapDocuments()) {
      if (doc.source && doc.source !== 'embedded')
        this.known.set(Store.xcapKey(doc.auid, doc.xui, doc.name), { auid: doc.auid, xui: doc.xui, name: doc.name });
    }
    this.timer = setInterval(() => {
      if (!this.refreshing) this.refreshing = this.refreshAll().finally(() => (this.refreshing = undefined));
    }, config.query_period * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing;
    await Promise.allSettled([...this.pending.values()]);
  }

  /** Refetch every document fetched so far (one at a time: a refresh is background work). */
  async refreshAll(): Promise<void> {
    for (const k of [...this.known.values()]) {
      try {
        await this.fetch(k.auid, k.xui, k.name);
      } catch (err) {
        this.deps.log.warn({ err, auid: k.auid, xui: k.xui, name: k.name }, 'XCAP refresh failed');
      }
    }
  }

  /**
   * The current document from the XCAP servers (the cached copy when it is unchanged, or
   * when no server answers); undefined when the servers do not have it.
   */
  fetch(auid: string, xui: string, name = 'index'): Promise<XcapDocument | undefined> {
    const key = Store.xcapKey(auid, xui, name);
    this.known.set(key, { auid, xui, name });
    let p = this.pending.get(key);
    if (!p) {
      p = this.fetchNow({ auid, xui, name }).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async fetchNow(k: DocKey): Promise<XcapDocument | undefined> {
    const { config, store, log } = this.deps;
    let cached = store.getXcap(k.auid, k.xui, k.name);
    let unreachable = false;
    for (const base of config.xcap_server) {
      const url = base.replace(/\/+$/, '') + documentPathOf('', k.auid, k.xui, k.name);
      const headers: Record<string, string> = { Accept: '*/*' };
      const fromHere = cached !== undefined && cached.source === base;
      if (fromHere && cached!.etag) headers['If-None-Match'] = quoteEtag(cached!.etag);
      let res: Response;
      let body: Buffer;
      try {
        res = await fetch(url, { headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
        body = Buffer.from(await res.arrayBuffer());
      } catch (err) {
        log.warn({ err: (err as Error).message, url }, 'XCAP server unreachable');
        unreachable = true;
        continue;
      }
      if (res.status === 304 && fromHere) return cached;
      if (res.status === 200) {
        if (body.length > config.max_xml_size) {
          log.warn({ url, size: body.length, max_xml_size: config.max_xml_size }, 'XCAP document larger than max_xml_size, ignored');
          unreachable = true;
          continue;
        }
        const tags = parseEntityTags(res.headers.get('etag') ?? '');
        const etag = tags !== '*' && tags[0] ? tags[0].tag : createHash('sha1').update(body).digest('base64url');
        if (fromHere && cached!.etag === etag && Buffer.compare(Buffer.from(cached!.body), body) === 0) return cached;
        const doc: XcapDocument = {
          auid: k.auid,
          xui: k.xui,
          name: k.name,
          etag,
          contentType: (res.headers.get('content-type') ?? '').split(';')[0]!.trim(),
          body,
          updatedAt: Date.now(),
          source: base,
        };
        await store.putXcap(doc);
        this.changed(k, doc);
        return doc;
      }
      if (res.status === 404) {
        if (fromHere) {
          await store.removeXcap(k.auid, k.xui, k.name);
          this.changed(k, undefined);
          cached = undefined;
        }
        continue;
      }
      log.warn({ url, status: res.status }, 'XCAP server answered with an error');
      unreachable = true;
    }
    if (cached && unreachable) return cached; // a stale copy beats none while a server is down
    if (cached) {
      // Every server answered 404, including for a copy from a server no longer listed.
      await store.removeXcap(k.auid, k.xui, k.name);
      this.changed(k, undefined);
    }
    return undefined;
  }

  private changed(k: DocKey, doc: XcapDocument | undefined): void {
    try {
      this.onDocumentChanged?.({ ...k, doc });
    } catch (err) {
      this.deps.log.error({ err, auid: k.auid, xui: k.xui, name: k.name }, 'onDocumentChanged failed');
    }
  }
}
