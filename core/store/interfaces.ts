/**
 * What the layers above see of the store: the synchronous reads (LMDB, no await) and the writes
 * that resolve once committed (DESIGN.md: a 2xx only after the commit). `Store` (store.ts) is
 * the LMDB implementation of both; state/ takes these interfaces, so tests can hand it another.
 * Workers use the read side only.
 */
import type { Publication, Subscription, WatcherAuth, XcapDocument } from './records.js';

export interface StoreReader {
  /** `id`: publicationId() of the publication, its store key. */
  getPublication(presentityUri: string, event: string, id: string): Publication | undefined;
  publicationsOf(presentityUri: string, event: string): Publication[];
  allPublications(): Iterable<Publication>;
  presentities(): Array<{ presentityUri: string; event: string; count: number }>;
  allSubscriptions(): Iterable<Subscription>;
  getWatcher(presentityUri: string, event: string, watcherUri: string): WatcherAuth | undefined;
  watchersOf(presentityUri: string, event: string): WatcherAuth[];
  allWatchers(): Iterable<WatcherAuth>;
  getXcap(auid: string, xui: string, name: string): XcapDocument | undefined;
  xcapDocumentsOf(auid: string, xui: string): XcapDocument[];
  /** Every XCAP document, global and users', in key order (what a cluster's add-node moves). */
  allXcapDocuments(): Iterable<XcapDocument>;
}

export interface StoreWriter {
  /** Under publicationId(p): a refresh overwrites the record it replaces. */
  putPublication(p: Publication): Promise<boolean>;
  removePublication(presentityUri: string, event: string, id: string): Promise<boolean>;
  putSubscription(s: Subscription): Promise<boolean>;
  removeSubscription(id: string): Promise<boolean>;
  /** The dialog's NOTIFY CSeq, stored apart from the record (see notify_cseq_reserve). */
  putCseq(id: string, cseq: number): Promise<boolean>;
  putWatcher(w: WatcherAuth): Promise<boolean>;
  removeWatcher(presentityUri: string, event: string, watcherUri: string): Promise<boolean>;
}

export type StateStore = StoreReader & StoreWriter;
