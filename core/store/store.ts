/**
 * The LMDB store: one environment, one named database per record kind, protobuf values.
 * Reads are synchronous (memory-mapped); writes are batched by lmdb-js and their promises
 * resolve after the transaction commits — callers await them before acknowledging anything.
 *
 * Keys:
 *   publication   [presentityUri, event, entityTag]
 *   subscription  id
 *   cseq          id → last NOTIFY CSeq (a small record written on every NOTIFY)
 *   watcher       [presentityUri, event, watcherUri]
 *   <xcap_table>  "auid/users/xui/doc" | "auid/global/doc"
 */
import { open, type RootDatabase, type Database } from 'lmdb';
import { mkdirSync } from 'node:fs';
import { codecs, publicationId, type Publication, type Subscription, type WatcherAuth, type XcapDocument } from './records.js';

type Key = string | Array<string>;

export class Store {
  private constructor(
    readonly path: string,
    readonly env: RootDatabase,
    private readonly pubs: Database<Buffer, Key>,
    private readonly subs: Database<Buffer, Key>,
    private readonly cseqs: Database<number, Key>,
    private readonly watchers: Database<Buffer, Key>,
    private readonly xcap: Database<Buffer, Key>,
  ) {}

  static open(path: string, xcapTable: string, readOnly = false): Store {
    if (!readOnly) mkdirSync(path, { recursive: true });
    const env = open<Buffer, Key>({ path, maxDbs: 16, readOnly, mapSize: 2 * 1024 * 1024 * 1024 });
    const db = <V>(name: string, encoding: 'binary' | 'msgpack') =>
      env.openDB<V, Key>({ name, encoding, readOnly } as never) as unknown as Database<V, Key>;
    return new Store(
      path,
      env,
      db<Buffer>('publication', 'binary'),
      db<Buffer>('subscription', 'binary'),
      db<number>('cseq', 'msgpack'),
      db<Buffer>('watcher', 'binary'),
      db<Buffer>(xcapTable, 'binary'),
    );
  }

  async close(): Promise<void> {
    await this.env.flushed;
    await this.env.close();
  }

  // ───── publications ─────

  /** Written under its stable id: a refresh or modification overwrites its own record. */
  putPublication(p: Publication): Promise<boolean> {
    return this.pubs.put([p.presentityUri, p.event, publicationId(p)], codecs.publication.encode(p));
  }

  /** `id`: the publication's publicationId() (its first entity-tag). */
  getPublication(presentityUri: string, event: string, id: string): Publication | undefined {
    const v = this.pubs.get([presentityUri, event, id]);
    return v ? codecs.publication.decode(v) : undefined;
  }

  removePublication(presentityUri: string, event: string, id: string): Promise<boolean> {
    return this.pubs.remove([presentityUri, event, id]);
  }

  /** Every publication of one presentity and event, in key order. */
  publicationsOf(presentityUri: string, event: string): Publication[] {
    const out: Publication[] = [];
    for (const { value } of this.pubs.getRange({ start: [presentityUri, event], end: [presentityUri, event, '\uffff'] })) {
      out.push(codecs.publication.decode(value));
    }
    return out;
  }

  *allPublications(): Iterable<Publication> {
    for (const { value } of this.pubs.getRange({})) yield codecs.publication.decode(value);
  }

  /** Distinct presentity URIs with at least one publication (for presence.presentity_list). */
  presentities(): Array<{ presentityUri: string; event: string; count: number }> {
    const out: Array<{ presentityUri: string; event: string; count: number }> = [];
    for (const key of this.pubs.getKeys({})) {
      const [uri, event] = key as string[];
      const last = out[out.length - 1];
      if (last && last.presentityUri === uri && last.event === event) last.count++;
      else out.push({ presentityUri: uri!, event: event!, count: 1 });
    }
    return out;
  }

  // ───── subscriptions ─────

  putSubscription(s: Subscription): Promise<boolean> {
    return this.subs.put(s.id, codecs.subscription.encode(s));
  }

  removeSubscription(id: string): Promise<boolean> {
    this.cseqs.remove(id);
    return this.subs.remove(id);
  }

  putCseq(id: string, cseq: number): Promise<boolean> {
    return this.cseqs.put(id, cseq);
  }

  *allSubscriptions(): Iterable<Subscription> {
    for (const { value } of this.subs.getRange({})) {
      const s = codecs.subscription.decode(value);
      const c = this.cseqs.get(s.id);
      if (c !== undefined && c > s.localCseq) s.localCseq = c;
      yield s;
    }
  }

  // ───── watcher authorisation states ─────

  putWatcher(w: WatcherAuth): Promise<boolean> {
    return this.watchers.put([w.presentityUri, w.event, w.watcherUri], codecs.watcher.encode(w));
  }

  getWatcher(presentityUri: string, event: string, watcherUri: string): WatcherAuth | undefined {
    const v = this.watchers.get([presentityUri, event, watcherUri]);
    return v ? codecs.watcher.decode(v) : undefined;
  }

  removeWatcher(presentityUri: string, event: string, watcherUri: string): Promise<boolean> {
    return this.watchers.remove([presentityUri, event, watcherUri]);
  }

  watchersOf(presentityUri: string, event: string): WatcherAuth[] {
    const out: WatcherAuth[] = [];
    for (const { value } of this.watchers.getRange({ start: [presentityUri, event], end: [presentityUri, event, '\uffff'] })) {
      out.push(codecs.watcher.decode(value));
    }
    return out;
  }

  *allWatchers(): Iterable<WatcherAuth> {
    for (const { value } of this.watchers.getRange({})) yield codecs.watcher.decode(value);
  }

  // ───── XCAP documents ─────

  static xcapKey(auid: string, xui: string, name: string): string {
    return xui ? `${auid}/users/${xui}/${name}` : `${auid}/global/${name}`;
  }

  getXcap(auid: string, xui: string, name: string): XcapDocument | undefined {
    const v = this.xcap.get(Store.xcapKey(auid, xui, name));
    return v ? codecs.xcap.decode(v) : undefined;
  }

  putXcap(doc: XcapDocument): Promise<boolean> {
    return this.xcap.put(Store.xcapKey(doc.auid, doc.xui, doc.name), codecs.xcap.encode(doc));
  }

  /** Conditional write: only when the stored ETag is still `ifEtag` (undefined = must not exist). */
  putXcapIf(doc: XcapDocument, ifEtag: string | null | undefined): Promise<boolean> {
    const key = Store.xcapKey(doc.auid, doc.xui, doc.name);
    return this.xcap.transaction(() => {
      const cur = this.xcap.get(key);
      const curTag = cur ? codecs.xcap.decode(cur).etag : undefined;
      if (ifEtag !== null && curTag !== (ifEtag ?? undefined)) return false;
      this.xcap.putSync(key, codecs.xcap.encode(doc));
      return true;
    });
  }

  removeXcap(auid: string, xui: string, name: string): Promise<boolean> {
    return this.xcap.remove(Store.xcapKey(auid, xui, name));
  }

  *allXcapDocuments(): Iterable<XcapDocument> {
    for (const { value } of this.xcap.getRange({})) yield codecs.xcap.decode(value);
  }

  /** Every document in every user's tree of an auid (not the global tree), in key order. */
  *xcapUsersDocuments(auid: string): Iterable<XcapDocument> {
    const prefix = `${auid}/users/`;
    for (const { key, value } of this.xcap.getRange({ start: prefix, end: prefix + '\uffff' })) {
      if (typeof key === 'string' && key.startsWith(prefix)) yield codecs.xcap.decode(value);
    }
  }

  /** Document names under one user's tree of an auid. */
  xcapDocumentsOf(auid: string, xui: string): XcapDocument[] {
    const prefix = `${auid}/users/${xui}/`;
    const out: XcapDocument[] = [];
    for (const { key, value } of this.xcap.getRange({ start: prefix, end: prefix + '\uffff' })) {
      if (typeof key === 'string' && key.startsWith(prefix)) out.push(codecs.xcap.decode(value));
    }
    return out;
  }
}
