/**
 * PUBLISH processing, RFC 3903 §6 step by step, and the soft state it creates: each
 * publication expires on its own and every change reaches the watchers through the notifier.
 * The 2xx is sent only after the store has committed the change.
 */
import type { IncomingRequest } from '../transport/stack.js';
import type { SipResponse } from '../transport/message.js';
import { SipUri } from '../transport/uri.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';
import type { Publication } from './store/records.js';
import type { PackageRegistry } from './packages/registry.js';
import type { EventPackage, PackageContext } from './packages/types.js';
import { SipError } from './errors.js';
import { grantedExpires } from './expires.js';
import { ExpiryTimers } from './timers.js';
import { newEntityTag } from './ids.js';
import { presentityKey } from './subscription.js';

export interface PublicationDeps {
  config: Config;
  store: Store;
  packages: PackageRegistry;
  ctx: PackageContext;
  log: Logger;
  /** The presentity's state for this event changed (committed). */
  onChange: (presentityUri: string, event: string) => void;
}

/** `sip:alice@example.com` from a Request-URI: no port, no parameters, host lower-cased. */
export function presentityOf(uri: string): string {
  let u: SipUri;
  try {
    u = SipUri.parse(uri);
  } catch {
    throw new SipError(400, 'Malformed Request-URI');
  }
  if (u.user === undefined) throw new SipError(404, 'Not Found'); // no presentity without a user part
  return `${u.scheme === 'pres' || u.scheme === 'sips' ? 'sip' : u.scheme}:${u.user}@${u.host.toLowerCase()}`;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

const timerKey = (p: { presentityUri: string; event: string; entityTag: string }): string =>
  `${p.presentityUri}\u0000${p.event}\u0000${p.entityTag}`;

export class Publications {
  /**
   * Every live publication by presentity, event and entity-tag with its expiry: a write-through
   * copy of the store (like Kamailio's publ_cache), so a refresh, modify or remove finds its
   * publication without a read and decode. Workers and RPC read the store.
   */
  private readonly live = new ExpiryTimers<Publication>((p) => {
    this.counted(p, -1); // the timers let go of it before calling
    this.expire(p).catch((err) => this.deps.log.error({ err, presentityUri: p.presentityUri }, 'publication expiry failed'));
  });
  /** Live publications per presentity and event, so /metrics counts presentities without a store scan. */
  private readonly perPresentity = new Map<string, number>();

  /** Presentities (with event) that have at least one live publication. */
  get presentityCount(): number {
    return this.perPresentity.size;
  }

  private counted(p: Publication, delta: 1 | -1): void {
    const k = presentityKey(p.presentityUri, p.event);
    const n = (this.perPresentity.get(k) ?? 0) + delta;
    if (n > 0) this.perPresentity.set(k, n);
    else this.perPresentity.delete(k);
  }

  constructor(private readonly deps: PublicationDeps) {}

  /** Re-arm expiry for every stored publication; remove those that expired while the node was down. */
  async recover(): Promise<{ live: number; expired: number }> {
    const now = Date.now();
    let live = 0;
    const expired: Publication[] = [];
    for (const p of this.deps.store.allPublications()) {
      if (p.expiresAt <= now) expired.push(p);
      else {
        live++;
        this.arm(p);
      }
    }
    // A store that cannot write (disk full) does not stop the start: the clean_period sweep removes them later.
    await Promise.all(expired.map((p) => this.deps.store.removePublication(p.presentityUri, p.event, p.entityTag))).catch((err) =>
      this.deps.log.error({ err }, 'removing expired publications failed'),
    );
    // Watchers are told once subscriptions are back (node.start calls notifyRecovered()).
    for (const p of expired) this.recoveredChanges.add(presentityKey(p.presentityUri, p.event));
    return { live, expired: expired.length };
  }

  private readonly recoveredChanges = new Set<string>();

  /** After subscriptions are recovered: NOTIFY the watchers of publications that expired while down. */
  notifyRecovered(): void {
    for (const k of this.recoveredChanges) {
      const [uri, event] = k.split('\u0000') as [string, string];
      this.deps.onChange(uri, event);
    }
    this.recoveredChanges.clear();
  }

  stop(): void {
    this.live.clearAll();
    this.perPresentity.clear();
  }

  /**
   * Presentity+event keys with a PUBLISH being processed, each with the PUBLISHes waiting behind
   * it (usually none: an empty list).
   */
  private readonly busy = new Map<string, Array<() => void>>();

  handle = async (incoming: IncomingRequest): Promise<SipResponse> => {
    // §6 step 1: the Request-URI names the presentity this node holds state for.
    const presentityUri = presentityOf(incoming.request.uri);
    // PUBLISHes of one presentity and event run one after the other: two requests with the
    // same SIP-If-Match must not both succeed (the second one gets 412).
    const key = presentityKey(presentityUri, (incoming.request.headers.get('event') ?? '').trim().toLowerCase());
    const waiting = this.busy.get(key);
    if (waiting === undefined) this.busy.set(key, []);
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      return await this.process(incoming, presentityUri);
    } finally {
      const queue = this.busy.get(key)!;
      const next = queue.shift();
      if (next) next();
      else this.busy.delete(key);
    }
  };

  private async process(incoming: IncomingRequest, presentityUri: string): Promise<SipResponse> {
    const req = incoming.request;
    const { config, store, packages } = this.deps;

    // §6 step 2: the Event header names a package this node accepts publications for.
    const eventHeader = req.headers.get('event');
    const pkg: EventPackage | undefined = packages.lookup(eventHeader);
    if (!pkg || pkg.publishTypes.length === 0) {
      const publishable = packages.all().filter((p) => p.publishTypes.length > 0).map((p) => p.name);
      throw new SipError(489, 'Bad Event', [['allow-events', publishable.join(', ')]]);
    }

    // §6 step 3: SIP-If-Match names the publication being refreshed, modified or removed; it
    // holds a single entity-tag (a token) or the request is invalid.
    const ifMatch = req.headers.get('sip-if-match')?.trim();
    let existing: Publication | undefined;
    if (ifMatch !== undefined) {
      if (req.headers.count('sip-if-match') > 1 || /[\s,]/.test(ifMatch)) throw new SipError(400, 'More than one entity-tag in SIP-If-Match');
      existing = ifMatch.length > 0 ? this.live.get(timerKey({ presentityUri, event: pkg.name, entityTag: ifMatch })) : undefined;
      if (!existing || existing.expiresAt <= Date.now()) throw new SipError(412, 'Conditional Request Failed');
    }

    // §6 step 4: Expires — too brief (423), too long (shortened), absent (default), 0 (removal).
    const expires = grantedExpires(req, config);

    // §6 step 5: an initial PUBLISH carries a body, of a type the package understands, and valid.
    const hasBody = req.body.length > 0;
    if (!existing && !hasBody) throw new SipError(400, 'Initial PUBLISH without a body');
    let contentType = existing?.contentType ?? '';
    let body: Uint8Array = existing?.body ?? new Uint8Array();
    if (hasBody) {
      const ct = req.contentType;
      if (ct === undefined || !pkg.publishTypes.includes(ct)) {
        throw new SipError(415, 'Unsupported Media Type', [['accept', pkg.publishTypes.join(', ')]]);
      }
      let text: string;
      try {
        text = UTF8.decode(req.body);
      } catch {
        // XML 1.0 §4.3.3: bytes that are not the declared encoding are a fatal error (the XCAP
        // server says 409 <not-utf-8> for the same); nothing is rewritten to U+FFFD.
        throw new SipError(400, 'Body is not valid UTF-8');
      }
      const reason = await pkg.validate(text, this.deps.ctx);
      if (reason !== undefined) throw new SipError(400, sanitiseReason(reason));
      contentType = ct;
      body = req.body;
    }

    if (expires === 0) {
      // Removal (§6 step 4): the entity-tag ceases to exist; nothing stored for an initial one.
      if (existing) {
        this.disarm(existing);
        await this.rearmOnFailure(existing, store.removePublication(presentityUri, pkg.name, existing.entityTag));
        this.deps.log.info({ callId: req.callId, presentityUri, event: pkg.name, entityTag: existing.entityTag }, 'publication removed');
        this.deps.onChange(presentityUri, pkg.name);
      }
      // §6 step 6: Expires and SIP-ETag in every 2xx; here the tag of the publication removed
      // (an initial PUBLISH with Expires 0 stores nothing, and gets a tag that names nothing).
      const res = incoming.reply(200, 'OK');
      res.headers.append('sip-etag', existing?.entityTag ?? newEntityTag());
      res.headers.append('expires', '0');
      return res;
    }

    // A modify that carries the very document already published changes no state: it is kept
    // in its place among the presentity's publications and nobody is notified (some clients,
    // linphone among them, refresh this way instead of with an empty body).
    const changed = !existing || (hasBody && (existing.contentType !== contentType || Buffer.compare(existing.body, req.body) !== 0));

    // §6 step 6: a fresh entity-tag for every successful PUBLISH, committed before the 2xx.
    const now = Date.now();
    const publication: Publication = {
      presentityUri,
      event: pkg.name,
      entityTag: newEntityTag(),
      expiresAt: now + expires * 1000,
      receivedAt: changed || !existing ? now : existing.receivedAt,
      contentType,
      body,
      sender: safeFromUri(incoming),
      callId: req.callId,
    };
    if (existing) this.disarm(existing);
    await this.rearmOnFailure(
      existing,
      Promise.all([
        store.putPublication(publication),
        existing ? store.removePublication(presentityUri, pkg.name, existing.entityTag) : Promise.resolve(true),
      ]),
    );
    this.arm(publication);
    const res = incoming.reply(200, 'OK');
    res.headers.append('sip-etag', publication.entityTag);
    res.headers.append('expires', String(expires));
    if (this.deps.log.isLevelEnabled('debug')) {
      this.deps.log.debug(
        { callId: req.callId, presentityUri, event: pkg.name, entityTag: publication.entityTag, expires, refresh: !changed },
        existing ? (changed ? 'publication modified' : 'publication refreshed') : 'publication created',
      );
    }
    if (changed) this.deps.onChange(presentityUri, pkg.name);
    return res;
  }

  private arm(p: Publication): void {
    const key = timerKey(p);
    if (this.live.get(key) === undefined) this.counted(p, 1);
    this.live.set(key, p.expiresAt + this.deps.config.expires_offset * 1000, p);
  }

  private disarm(p: Publication): void {
    const key = timerKey(p);
    if (this.live.get(key) === undefined) return;
    this.counted(p, -1);
    this.live.clear(key);
  }

  /** A write that fails leaves the publication it replaced (or removed) live, as the store still has it. */
  private async rearmOnFailure<T>(existing: Publication | undefined, write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (err) {
      if (existing) this.arm(existing);
      throw err;
    }
  }

  private async expire(p: Publication): Promise<void> {
    const key = timerKey(p);
    const current = this.live.get(key);
    if (current) this.disarm(current);
    else if (!this.deps.store.getPublication(p.presentityUri, p.event, p.entityTag)) return; // gone already
    await this.deps.store.removePublication(p.presentityUri, p.event, p.entityTag);
    this.deps.log.info({ presentityUri: p.presentityUri, event: p.event, entityTag: p.entityTag }, 'publication expired');
    this.deps.onChange(p.presentityUri, p.event);
  }

  /** presence.cleanup: drop every expired publication now. */
  async cleanup(): Promise<number> {
    const now = Date.now();
    let n = 0;
    for (const p of this.deps.store.allPublications()) {
      if (p.expiresAt <= now) {
        await this.expire(p);
        n++;
      }
    }
    return n;
  }
}

function safeFromUri(incoming: IncomingRequest): string {
  try {
    return incoming.request.from.uri.aor;
  } catch {
    return '';
  }
}

/** A reason phrase must stay on one line and within a sane length. */
export function sanitiseReason(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 120);
}
