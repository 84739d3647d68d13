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

/** The fields of a subscription record most records leave at their default. */
type RareFields = Required<
  Pick<
    Subscription,
    | 'eventId'
    | 'watcherDisplay'
    | 'flowId'
    | 'reason'
    | 'winfoVersion'
    | 'winfoId'
    | 'minInterval'
    | 'maxInterval'
    | 'eventView'
    | 'winfoEvent'
  >
>;

const RARE_DEFAULTS: RareFields = {
  eventId: '',
  watcherDisplay: '',
  flowId: '',
  reason: '',
  winfoVersion: 0,
  winfoId: '',
  minInterval: 0,
  maxInterval: 0,
  eventView: '',
  winfoEvent: '',
};

/** The rare fields' names (for code that walks a record's fields). */
export const RARE_SUBSCRIPTION_FIELDS = Object.keys(RARE_DEFAULTS) as ReadonlyArray<keyof RareFields>;

/**
 * A subscription record as a live node keeps it (a node holds hundreds of thousands): the fields
 * every subscription uses are its own, the rare ones (RareFields) live in a side object made
 * only for a record that sets one, so the record is some 80 bytes smaller. It reads and writes
 * as any Subscription; the store encodes a plain copy of it (plainSubscription).
 */
class CompactSubscription implements Subscription {
  id: string;
  presentityUri: string;
  event: string;
  watcherUri: string;
  callId: string;
  localTag: string;
  remoteTag: string;
  remoteCseq: number;
  localCseq: number;
  routeSet: string[];
  remoteTarget: string;
  transport: string;
  sourceAddress: string;
  sourcePort: number;
  expiresAt: number;
  state: SubscriptionState;
  localUri: string;
  accept: string;
  createdAt: number;
  subHandling: string;
  private rare: Partial<RareFields> | undefined = undefined;
  // Accessors over `rare`, defined on the prototype below.
  declare eventId: string;
  declare watcherDisplay: string;
  declare flowId: string;
  declare reason: string;
  declare winfoVersion: number;
  declare winfoId: string;
  declare minInterval: number;
  declare maxInterval: number;
  declare eventView: string;
  declare winfoEvent: string;

  constructor(s: Subscription) {
    this.id = s.id;
    this.presentityUri = s.presentityUri;
    this.event = s.event;
    this.watcherUri = s.watcherUri;
    this.callId = s.callId;
    this.localTag = s.localTag;
    this.remoteTag = s.remoteTag;
    this.remoteCseq = s.remoteCseq;
    this.localCseq = s.localCseq;
    this.routeSet = s.routeSet;
    this.remoteTarget = s.remoteTarget;
    this.transport = s.transport;
    this.sourceAddress = s.sourceAddress;
    this.sourcePort = s.sourcePort;
    this.expiresAt = s.expiresAt;
    this.state = s.state;
    this.localUri = s.localUri;
    this.accept = s.accept;
    this.createdAt = s.createdAt;
    this.subHandling = s.subHandling;
    for (const k of RARE_SUBSCRIPTION_FIELDS) {
      const v = s[k];
      if (v !== undefined) this.setRare(k, v);
    }
  }

  private getRare<K extends keyof RareFields>(k: K): RareFields[K] {
    return this.rare?.[k] ?? RARE_DEFAULTS[k];
  }

  private setRare<K extends keyof RareFields>(k: K, v: RareFields[K]): void {
    if (this.rare === undefined) {
      if (v === RARE_DEFAULTS[k]) return;
      this.rare = {};
    }
    this.rare[k] = v;
  }

  // The rare fields' accessors, on the prototype (see the static block).
  static {
    for (const k of RARE_SUBSCRIPTION_FIELDS) {
      Object.defineProperty(CompactSubscription.prototype, k, {
        get(this: CompactSubscription) {
          return this.getRare(k);
        },
        set(this: CompactSubscription, v: never) {
          this.setRare(k, v);
        },
        enumerable: false,
        configurable: true,
      });
    }
  }
}

/** The record in its compact form for a live node (see CompactSubscription). */
export function compactSubscription(s: Subscription): Subscription {
  return s instanceof CompactSubscription ? s : new CompactSubscription(s);
}

/** A plain object with every field of `s` (what the encoder takes: it reads own properties only). */
export function plainSubscription(s: Subscription): Subscription {
  return {
    schema: s.schema,
    id: s.id,
    presentityUri: s.presentityUri,
    event: s.event,
    eventId: s.eventId,
    watcherUri: s.watcherUri,
    watcherDisplay: s.watcherDisplay,
    callId: s.callId,
    localTag: s.localTag,
    remoteTag: s.remoteTag,
    remoteCseq: s.remoteCseq,
    localCseq: s.localCseq,
    routeSet: s.routeSet,
    remoteTarget: s.remoteTarget,
    transport: s.transport,
    flowId: s.flowId,
    sourceAddress: s.sourceAddress,
    sourcePort: s.sourcePort,
    expiresAt: s.expiresAt,
    state: s.state,
    reason: s.reason,
    localUri: s.localUri,
    accept: s.accept,
    winfoVersion: s.winfoVersion,
    createdAt: s.createdAt,
    subHandling: s.subHandling,
    winfoId: s.winfoId,
    minInterval: s.minInterval,
    maxInterval: s.maxInterval,
    eventView: s.eventView,
    winfoEvent: s.winfoEvent,
  };
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
