/**
 * Record types and their protobuf codecs (records.proto). Workers import this module for the
 * types and the decoders only.
 */
import protobuf from 'protobufjs';
import { fileURLToPath } from 'node:url';
import { join, dirname } from 'node:path';
import { existsSync } from 'node:fs';

/** Bumped when a record gains meaning a reader must know about. */
export const SCHEMA_VERSION = 1;

export interface Publication {
  schema?: number;
  presentityUri: string;
  event: string;
  entityTag: string;
  expiresAt: number;
  receivedAt: number;
  contentType: string;
  body: Uint8Array;
  sender: string;
  callId: string;
  /**
   * Stable across refreshes and modifications (the entity-tag of its initial PUBLISH), so one
   * changes its record in place; the store key. Empty or absent in records written before it:
   * then the entity-tag, which such records are keyed by.
   */
  id?: string;
}

/** The store key of a publication within its presentity and event (see Publication.id). */
export function publicationId(p: Publication): string {
  return p.id || p.entityTag;
}

export type SubscriptionState = 'active' | 'pending' | 'terminated';

export interface Subscription {
  schema?: number;
  id: string;
  presentityUri: string;
  event: string;
  eventId: string;
  watcherUri: string;
  watcherDisplay: string;
  callId: string;
  localTag: string;
  remoteTag: string;
  remoteCseq: number;
  localCseq: number;
  routeSet: string[];
  remoteTarget: string;
  transport: string;
  flowId: string;
  sourceAddress: string;
  sourcePort: number;
  expiresAt: number;
  state: SubscriptionState;
  reason: string;
  localUri: string;
  accept: string;
  winfoVersion: number;
  createdAt: number;
  subHandling: string;
  /** Id of its <watcher> element in watcherinfo documents; empty or absent = `id`. */
  winfoId?: string;
  /** RFC 6446 min-interval / max-interval in use, in seconds; 0 or absent = none. */
  minInterval?: number;
  maxInterval?: number;
  /** The package's view of the state this subscription asked for with Event parameters (RFC 4235 §3.2); empty or absent = all of it. */
  eventView?: string;
  /** presence: its watcher-info event, '' or absent = subscribe, approved once a pending one was approved (RFC 3857 §4.7.1). */
  winfoEvent?: string;
}

export interface WatcherAuth {
  schema?: number;
  presentityUri: string;
  event: string;
  watcherUri: string;
  status: string;
  winfoEvent: string;
  insertedAt: number;
  displayName: string;
  subHandling: string;
  /** Id of the <watcher> element (RFC 3858) of the watcher's subscription. */
  winfoId?: string;
  /** status waiting: when the subscription ended and when the entry is given up (ms since epoch). */
  endedAt?: number;
  waitingUntil?: number;
}

export interface XcapDocument {
  schema?: number;
  auid: string;
  xui: string;
  name: string;
  etag: string;
  contentType: string;
  body: Uint8Array;
  updatedAt: number;
  source: string;
}

// records.proto stays beside the sources; from dist/core/store/ that is ../../../core/store/.
const here = dirname(fileURLToPath(import.meta.url));
const PROTO_PATH = existsSync(join(here, 'records.proto'))
  ? join(here, 'records.proto')
  : join(here, '..', '..', '..', 'core', 'store', 'records.proto');

const root = protobuf.loadSync(PROTO_PATH);

class Codec<T extends object> {
  private readonly type: protobuf.Type;
  constructor(name: string) {
    this.type = root.lookupType(`presenced.store.${name}`);
  }
  /**
   * The records are plain objects whose fields already have the wire types (strings, numbers,
   * string arrays, Uint8Array), so they are encoded as they are: no fromObject() conversion,
   * no copy. The record is stamped with the schema version it is written under.
   */
  encode(value: T): Buffer {
    (value as { schema?: number }).schema = SCHEMA_VERSION;
    const bytes = this.type.encode(value).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  decode(bytes: Uint8Array): T {
    return this.type.toObject(this.type.decode(bytes), { longs: Number, defaults: true, arrays: true, bytes: Buffer }) as T;
  }
}

export const codecs = {
  publication: new Codec<Publication>('Publication'),
  subscription: new Codec<Subscription>('Subscription'),
  watcher: new Codec<WatcherAuth>('WatcherAuth'),
  xcap: new Codec<XcapDocument>('XcapDocument'),
};
