/**
 * The LMDB store: one environment, one named database per record kind, protobuf values.
 * Reads are synchronous (memory-mapped); writes are batched by lmdb-js and their promises
 * resolve after the transaction commits — callers await them before acknowledging anything.
 *
 * The generators (all*(), xcapUsersDocuments) scan without a snapshot (lmdb-js `snapshot: false`):
 * their callers may await between records (presence.cleanup expiring them, the restart recovery
 * evaluating rules), and a snapshot held across those awaits would keep LMDB from reusing any
 * page freed meanwhile: the file then grows with the write traffic, not with the data (issue
 * 12: 45 MB for 4 MB live). A scan may so see records written after it began.
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
import { stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { SipError } from '../errors.js';
import { LatencyHistogram } from '../../transport/sip-stats.js';
import {
  codecs,
  compactSubscription,
  plainSubscription,
  publicationId,
  type Publication,
  type Subscription,
  type WatcherAuth,
  type XcapDocument,
} from './records.js';

type Key = string | Array<string>;

/** The map size when the configuration names none (db_map_size): lmdb-js grows the map past it as the data needs. */
export const DEFAULT_MAP_SIZE = 2 * 1024 * 1024 * 1024;
/** Seconds a client is asked to wait (Retry-After) when a write was refused. */
export const STORE_RETRY_AFTER = 5;
/** A full store is logged at most once per this many ms. */
const FULL_LOG_INTERVAL_MS = 60_000;
/** Free space below the reserve refuses writes; twice the reserve accepts them again (see watchSpace). */
const MIN_RESERVE_BYTES = 1024 * 1024;
const MAX_RESERVE_BYTES = 64 * 1024 * 1024;
const SPACE_POLL_MS = 250;

/**
 * A write that did not commit (disk full, map that could not grow, I/O error): nothing of it is
 * stored. It is a SipError (503 + Retry-After) so a SIP handler that awaits the write answers
 * that by itself (RFC 3261 §21.5.4: the server is temporarily unable); XCAP answers 503 too.
 */
/**
 * The rejection of lmdb-js's own batch-start write when a commit fails: nobody holds its promise,
 * so it surfaces as an unhandled rejection. Every write of ours in that commit fails with the same
 * error and marks the store full (Store.failed), so this one carries nothing to act on.
 */
export function isOrphanCommitFailure(reason: unknown): boolean {
  return reason instanceof Error && reason.message === 'Commit failed (see commitError for details)' && 'commitError' in reason;
}

export class StoreWriteError extends SipError {
  constructor(readonly detail: string) {
    super(503, 'Service Unavailable', [['retry-after', String(STORE_RETRY_AFTER)]]);
    this.name = 'StoreWriteError';
    this.message = `store write failed: ${detail}`;
  }
}

export interface StoreOptions {
  readOnly?: boolean;
  /** LMDB map size in bytes (db_map_size); the map still grows when the data needs more. */
  mapSize?: number;
  /** Where write failures are reported (the writer only). */
  log?: Logger;
}

/** How the store's writes are doing, for /metrics and the logs. */
export interface WriteHealth {
  /** false while the filesystem is below its reserve or after a failed commit, until it has room again (writes are refused meanwhile). */
  writable: boolean;
  /** Writes that failed or were refused since start. */
  failures: number;
}

/** Pages and bytes of the data file, for /metrics (presenced_store_*_bytes). */
export interface StoreUsage {
  pageSize: number;
  /** Size of data.mdb on disk. */
  fileBytes: number;
  /** Pages that hold records (every database's branch, leaf and overflow pages, the free-page list's own). */
  usedBytes: number;
  /** Pages up to the highest one ever written (the part of the file LMDB has used). */
  highWaterBytes: number;
}

export class Store {
  private constructor(
    readonly path: string,
    readonly env: RootDatabase,
    private readonly log: Logger | undefined,
    private readonly pubs: Database<Buffer, Key>,
    private readonly subs: Database<Buffer, Key>,
    private readonly cseqs: Database<number, Key>,
    private readonly watchers: Database<Buffer, Key>,
    private readonly xcap: Database<Buffer, Key>,
    private readonly lists: Database<Buffer, Key>,
  ) {}

  static open(path: string, xcapTable: string, o: StoreOptions = {}): Store {
    const readOnly = o.readOnly ?? false;
    if (!readOnly) mkdirSync(path, { recursive: true });
    // eventTurnBatching on (lmdb-js's default): the writes of one event-loop turn share a
    // transaction, which is worth 25 % of PUBLISH/s and 15 % of SUBSCRIBE/s here (`npm run bench
    // -- --quick --only load --phases publish,subscribe`, off 13.7k/6.9k, on 18.5k/8.0k). lmdb-js
    // starts each such batch with a write of its own whose promise nobody holds: when a commit
    // fails (disk full) that promise rejects unhandled; main.ts lets exactly that rejection pass
    // (isOrphanCommitFailure), our own writes of the same commit report the failure.
    const env = open<Buffer, Key>({
      path,
      maxDbs: 16,
      readOnly,
      mapSize: o.mapSize ?? DEFAULT_MAP_SIZE,
      eventTurnBatching: true,
    } as never);
    const db = <V>(name: string, encoding: 'binary' | 'msgpack') =>
      env.openDB<V, Key>({ name, encoding, readOnly } as never) as unknown as Database<V, Key>;
    const store = new Store(
      path,
      env,
      o.log,
      db<Buffer>('publication', 'binary'),
      db<Buffer>('subscription', 'binary'),
      db<number>('cseq', 'msgpack'),
      db<Buffer>('watcher', 'binary'),
      db<Buffer>(xcapTable, 'binary'),
      db<Buffer>('list_subscription', 'binary'),
    );
    if (!readOnly) store.watchSpace();
    return store;
  }

  private readonly health: WriteHealth = { writable: true, failures: 0 };
  private lastFullLog = 0;
  private spaceTimer: NodeJS.Timeout | undefined;

  get writeHealth(): Readonly<WriteHealth> {
    return this.health;
  }

  /**
   * The writer watches the free space of its filesystem and refuses writes below a reserve,
   * before LMDB meets ENOSPC: lmdb-js 3.5 does not come out of a page write that failed for
   * space reliably (measured here: a glibc heap assertion killed the node on a later write,
   * after the space was back). The reserve is 5% of the filesystem, from 1 to 64 MiB: far more
   * than a poll interval of writes.
   */
  private watchSpace(): void {
    this.spaceTimer = setInterval(() => void this.checkSpace(), SPACE_POLL_MS);
    this.spaceTimer.unref();
    void this.checkSpace();
  }

  private async checkSpace(): Promise<void> {
    let free: number;
    let reserve: number;
    try {
      const fs = await statfs(this.path);
      free = fs.bavail * fs.bsize;
      reserve = Math.min(MAX_RESERVE_BYTES, Math.max(MIN_RESERVE_BYTES, Math.floor(fs.blocks * fs.bsize * 0.05)));
    } catch (err) {
      this.log?.error({ err, path: this.path }, 'cannot read the free space of the store filesystem');
      return;
    }
    if (!this.spaceTimer) return; // closed meanwhile
    if (this.health.writable) {
      if (free < reserve) this.full(`the filesystem of db_url has ${free} bytes free, below the reserve of ${reserve}`, reserve);
    } else if (free >= 2 * reserve) {
      this.health.writable = true;
      this.log?.warn({ path: this.path, freeBytes: free, failures: this.health.failures }, 'store writable again');
    } else if (Date.now() - this.lastFullLog >= FULL_LOG_INTERVAL_MS) {
      this.full(`still: the filesystem of db_url has ${free} bytes free`, reserve);
    }
  }

  /** Writes are refused from now on, until checkSpace() finds room; logged at most once per interval. */
  private full(detail: string, reserve?: number): void {
    const first = this.health.writable;
    this.health.writable = false;
    if (!first && Date.now() - this.lastFullLog < FULL_LOG_INTERVAL_MS) return;
    this.lastFullLog = Date.now();
    const until = reserve === undefined ? 'the filesystem has room again' : `it has ${2 * reserve} bytes free`;
    this.log?.error(
      { path: this.path, failures: this.health.failures },
      `store full: ${detail}. PUBLISH, SUBSCRIBE and XCAP writes get 503 with Retry-After until ${until}; ` +
        'reads, NOTIFYs and OPTIONS are served. Free space there or move db_url to a larger filesystem; nothing acknowledged was lost',
    );
  }

  /**
   * Every write goes through here: refused at once while the store is full (a write that
   * happened to fit in pages LMDB already has would succeed and the next not: clients would see
   * 503 and 200 at random), and a commit that fails becomes a StoreWriteError for the caller to
   * answer with.
   */
  /** Write queued → committed, for /metrics (presenced_store_commit_seconds). */
  readonly commitTime = new LatencyHistogram();

  private committed<T>(write: () => Promise<T>): Promise<T> {
    if (!this.health.writable) {
      this.health.failures++;
      return Promise.reject(new StoreWriteError('refused: the store is full'));
    }
    let pending: Promise<T>;
    const queued = performance.now();
    try {
      pending = write();
    } catch (err) {
      return Promise.reject(this.failed(err));
    }
    return pending.then(
      (v) => {
        this.commitTime.observe((performance.now() - queued) / 1000);
        return v;
      },
      (err: unknown) => {
        throw this.failed(err);
      },
    );
  }

  private failed(err: unknown): StoreWriteError {
    if (err instanceof StoreWriteError) return err;
    this.health.failures++;
    // lmdb-js rejects every write of a failed commit with one generic error, and the cause
    // (ENOSPC, EIO, MDB_MAP_FULL) a moment later in a promise of its own: that promise must be
    // handled here, or its rejection ends the process.
    const commitError = (err as { commitError?: Promise<unknown> }).commitError;
    if (commitError) commitError.then(undefined, (cause: unknown) => this.full(`a commit failed: ${describe(cause)}`));
    else this.full(`a write failed: ${describe(err)}`);
    this.health.writable = false;
    return new StoreWriteError(describe(err));
  }

  /** Pages in use against the file's size (lmdb-js reuses freed pages; a reader holding an old snapshot keeps it from doing so). */
  async usage(): Promise<StoreUsage> {
    const root = this.env.getStats() as { pageSize: number; lastPageNumber: number; free: PageStats } & PageStats;
    let pages = pagesOf(root) + pagesOf(root.free) + 2; // + the two meta pages
    for (const db of [this.pubs, this.subs, this.cseqs, this.watchers, this.xcap, this.lists]) pages += pagesOf(db.getStats() as PageStats);
    let fileBytes = 0;
    try {
      fileBytes = (await stat(join(this.path, 'data.mdb'))).size;
    } catch {
      // not there yet: nothing written
    }
    return {
      pageSize: root.pageSize,
      fileBytes,
      usedBytes: pages * root.pageSize,
      highWaterBytes: (root.lastPageNumber + 1) * root.pageSize,
    };
  }

  async close(): Promise<void> {
    if (this.spaceTimer) clearInterval(this.spaceTimer);
    this.spaceTimer = undefined;
    await this.env.flushed;
    await this.env.close();
  }

  // ───── publications ─────

  /** Written under its stable id: a refresh or modification overwrites its own record. */
  putPublication(p: Publication): Promise<boolean> {
    return this.committed(() => this.pubs.put([p.presentityUri, p.event, publicationId(p)], codecs.publication.encode(p)));
  }

  /** `id`: the publication's publicationId() (its first entity-tag). */
  getPublication(presentityUri: string, event: string, id: string): Publication | undefined {
    const v = this.pubs.get([presentityUri, event, id]);
    return v ? codecs.publication.decode(v) : undefined;
  }

  removePublication(presentityUri: string, event: string, id: string): Promise<boolean> {
    return this.committed(() => this.pubs.remove([presentityUri, event, id]));
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
    for (const { value } of this.pubs.getRange({ snapshot: false })) yield codecs.publication.decode(value);
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
    return this.committed(() => this.subs.put(s.id, encodeSubscription(s)));
  }

  removeSubscription(id: string): Promise<boolean> {
    return this.committed(() => Promise.all([this.cseqs.remove(id), this.subs.remove(id)]).then(([, removed]) => removed));
  }

  putCseq(id: string, cseq: number): Promise<boolean> {
    return this.committed(() => this.cseqs.put(id, cseq));
  }

  *allSubscriptions(): Iterable<Subscription> {
    for (const { key, value } of this.subs.getRange({ snapshot: false })) {
      const s = decodeSubscription(key as string, value);
      const c = this.cseqs.get(s.id);
      if (c !== undefined && c > s.localCseq) s.localCseq = c;
      yield s;
    }
  }

  // ───── list subscriptions (the resource list server's dialogs, RFC 4662): key = id ─────

  putListSubscription(s: Subscription): Promise<boolean> {
    return this.committed(() => this.lists.put(s.id, encodeSubscription(s)));
  }

  removeListSubscription(id: string): Promise<boolean> {
    return this.committed(() => Promise.all([this.cseqs.remove(id), this.lists.remove(id)]).then(([, removed]) => removed));
  }

  *allListSubscriptions(): Iterable<Subscription> {
    for (const { key, value } of this.lists.getRange({ snapshot: false })) {
      const s = decodeSubscription(key as string, value);
      const c = this.cseqs.get(s.id);
      if (c !== undefined && c > s.localCseq) s.localCseq = c;
      yield s;
    }
  }

  // ───── watcher authorisation states ─────

  putWatcher(w: WatcherAuth): Promise<boolean> {
    return this.committed(() => this.watchers.put([w.presentityUri, w.event, w.watcherUri], encodeWatcher(w)));
  }

  getWatcher(presentityUri: string, event: string, watcherUri: string): WatcherAuth | undefined {
    const key = [presentityUri, event, watcherUri];
    const v = this.watchers.get(key);
    return v ? decodeWatcher(key, v) : undefined;
  }

  removeWatcher(presentityUri: string, event: string, watcherUri: string): Promise<boolean> {
    return this.committed(() => this.watchers.remove([presentityUri, event, watcherUri]));
  }

  watchersOf(presentityUri: string, event: string): WatcherAuth[] {
    const out: WatcherAuth[] = [];
    for (const { key, value } of this.watchers.getRange({ start: [presentityUri, event], end: [presentityUri, event, '\uffff'] })) {
      out.push(decodeWatcher(key, value));
    }
    return out;
  }

  *allWatchers(): Iterable<WatcherAuth> {
    for (const { key, value } of this.watchers.getRange({ snapshot: false })) yield decodeWatcher(key, value);
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
    return this.committed(() => this.xcap.put(Store.xcapKey(doc.auid, doc.xui, doc.name), codecs.xcap.encode(doc)));
  }

  /** Conditional write: only when the stored ETag is still `ifEtag` (undefined = must not exist). */
  putXcapIf(doc: XcapDocument, ifEtag: string | null | undefined): Promise<boolean> {
    const key = Store.xcapKey(doc.auid, doc.xui, doc.name);
    return this.committed(() =>
      this.xcap.transaction(() => {
        const cur = this.xcap.get(key);
        const curTag = cur ? codecs.xcap.decode(cur).etag : undefined;
        if (ifEtag !== null && curTag !== (ifEtag ?? undefined)) return false;
        this.xcap.putSync(key, codecs.xcap.encode(doc));
        return true;
      }),
    );
  }

  removeXcap(auid: string, xui: string, name: string): Promise<boolean> {
    return this.committed(() => this.xcap.remove(Store.xcapKey(auid, xui, name)));
  }

  *allXcapDocuments(): Iterable<XcapDocument> {
    for (const { value } of this.xcap.getRange({ snapshot: false })) yield codecs.xcap.decode(value);
  }

  /** Every document in every user's tree of an auid (not the global tree), in key order. */
  *xcapUsersDocuments(auid: string): Iterable<XcapDocument> {
    const prefix = `${auid}/users/`;
    for (const { key, value } of this.xcap.getRange({ start: prefix, end: prefix + '\uffff', snapshot: false })) {
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

interface PageStats {
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

function pagesOf(s: PageStats): number {
  return s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
}

/** One line for a log or a reason: the error's message and its errno or LMDB code. */
function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code === undefined ? err.message : `${err.message} (${String(code)})`;
  }
  return String(err);
}

// ───── records as stored: without what their key says already ─────
// A live subscription costs its stored record too (the store's pages are mapped into the
// process): the id is the key, and so is our tag most often; the local URI is most often the
// presentity's; and a watcher's key holds its presentity, event and watcher URI. Records
// written before are read as well.

function encodeSubscription(s: Subscription): Buffer {
  // A plain copy: the encoder reads own properties (a live record keeps rare fields aside) and stamps the schema.
  const p = plainSubscription(s);
  p.id = '';
  if (p.localUri === p.presentityUri) p.localUri = '';
  if (p.localTag === s.id) p.localTag = ''; // our tag is the id (dialogs/subscribe-request.ts)
  return codecs.subscription.encode(p);
}

function decodeSubscription(key: string, value: Uint8Array): Subscription {
  const s = codecs.subscription.decode(value);
  if (!s.id) s.id = key;
  if (!s.localUri) s.localUri = s.presentityUri;
  if (!s.localTag) s.localTag = s.id;
  return compactSubscription(s);
}

function encodeWatcher(w: WatcherAuth): Buffer {
  const { presentityUri, event, watcherUri } = w;
  w.presentityUri = w.event = w.watcherUri = '';
  try {
    return codecs.watcher.encode(w);
  } finally {
    w.presentityUri = presentityUri;
    w.event = event;
    w.watcherUri = watcherUri;
  }
}

function decodeWatcher(key: Key, value: Uint8Array): WatcherAuth {
  const w = codecs.watcher.decode(value);
  if (!w.presentityUri && Array.isArray(key)) {
    w.presentityUri = String(key[0]);
    w.event = String(key[1]);
    w.watcherUri = String(key[2]);
  }
  return w;
}
