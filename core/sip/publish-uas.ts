/**
 * PUBLISH, the event state compositor's UAS: RFC 3903 §6 step by step, each step numbered
 * below. The 2xx is sent only after the store has committed the change, and before the
 * watchers are told of it. The publications themselves (memory, expiry, recovery) are
 * state/publications.ts.
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Publication } from '../store/records.js';
import type { Publications } from '../state/publications.js';
import type { PackageRegistry } from '../packages/registry.js';
import type { EventPackage, PackageContext } from '../packages/types.js';
import { SipError } from '../errors.js';
import { newEntityTag } from '../ids.js';
import { presentityOf, presentityKey } from '../uris.js';
import { grantedExpires } from '../dialogs/subscribe-request.js';
import { ownPublication, type StateLimits } from '../limits.js';

export interface PublishUasDeps {
  config: Config;
  packages: PackageRegistry;
  ctx: PackageContext;
  log: Logger;
  publications: Publications;
  /** Publication limits per presentity and in total (core/limits.ts). */
  limits?: StateLimits;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

export class PublishUas {
  constructor(private readonly deps: PublishUasDeps) {}

  /**
   * Presentity+event keys with a PUBLISH being processed, each with the PUBLISHes waiting behind
   * it (usually none: an empty list).
   */
  private readonly busy = new Map<string, Array<() => void>>();

  handle = async (incoming: IncomingRequest): Promise<void> => {
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

  private async process(incoming: IncomingRequest, presentityUri: string): Promise<void> {
    const req = incoming.request;
    const { config, packages, publications } = this.deps;

    // §6 step 2: the Event header names a package this node accepts publications for.
    const eventHeader = req.headers.get('event');
    const pkg: EventPackage | undefined = packages.lookup(eventHeader);
    if (!pkg || pkg.publishTypes.length === 0) {
      const publishable = packages
        .all()
        .filter((p) => p.publishTypes.length > 0)
        .map((p) => p.name);
      throw new SipError(489, 'Bad Event', [['allow-events', publishable.join(', ')]]);
    }

    // §6 step 3: SIP-If-Match names the publication being refreshed, modified or removed; it
    // holds a single entity-tag (a token) or the request is invalid.
    const ifMatch = req.headers.get('sip-if-match')?.trim();
    let existing: Publication | undefined;
    if (ifMatch !== undefined) {
      if (req.headers.count('sip-if-match') > 1 || /[\s,]/.test(ifMatch))
        throw new SipError(400, 'More than one entity-tag in SIP-If-Match');
      existing = ifMatch.length > 0 ? publications.find(presentityUri, pkg.name, ifMatch) : undefined;
      if (!existing) throw new SipError(412, 'Conditional Request Failed');
    }

    // §6 step 4: Expires — too brief (423), too long (shortened), absent (default), 0 (removal).
    const expires = grantedExpires(req, config);
    if (!existing && expires !== 0)
      this.deps.limits?.checkPublication(
        presentityUri,
        publications.of(presentityUri, pkg.name).length,
        publications.liveCount,
        req.callId,
      );

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
      // A copy: the request's body may be a view into the connection's receive buffer, and the
      // publication outlives the request (held in memory, composed from on the main thread).
      body = Uint8Array.prototype.slice.call(req.body);
    }

    if (expires === 0) {
      // Removal (§6 step 4): the entity-tag ceases to exist; nothing stored for an initial one.
      if (existing) {
        await publications.remove(existing);
        this.deps.log.info({ callId: req.callId, presentityUri, event: pkg.name, entityTag: existing.entityTag }, 'publication removed');
      }
      // §6 step 6: Expires and SIP-ETag in every 2xx; here the tag of the publication removed
      // (an initial PUBLISH with Expires 0 stores nothing, and gets a tag that names nothing).
      const res = incoming.reply(200, 'OK');
      res.headers.append('sip-etag', existing?.entityTag ?? newEntityTag());
      res.headers.append('expires', '0');
      // The 2xx leaves once the store committed, before the fan-out is scheduled.
      incoming.respond(res);
      if (existing) publications.changed(presentityUri, pkg.name);
      return;
    }

    // A modify that carries the very document already published changes no state: it is kept
    // in its place among the presentity's publications and nobody is notified (some clients,
    // linphone among them, refresh this way instead of with an empty body).
    const changed = !existing || (hasBody && (existing.contentType !== contentType || Buffer.compare(existing.body, req.body) !== 0));

    // §6 step 6: a fresh entity-tag for every successful PUBLISH, committed before the 2xx.
    const now = Date.now();
    const publication: Publication = ownPublication({
      presentityUri,
      event: pkg.name,
      entityTag: newEntityTag(),
      expiresAt: now + expires * 1000,
      receivedAt: changed || !existing ? now : existing.receivedAt,
      contentType,
      body,
      sender: safeFromUri(incoming),
      callId: req.callId,
    });
    await publications.put(publication, existing);
    const res = incoming.reply(200, 'OK');
    res.headers.append('sip-etag', publication.entityTag);
    res.headers.append('expires', String(expires));
    if (this.deps.log.isLevelEnabled('debug')) {
      this.deps.log.debug(
        { callId: req.callId, presentityUri, event: pkg.name, entityTag: publication.entityTag, expires, refresh: !changed },
        existing ? (changed ? 'publication modified' : 'publication refreshed') : 'publication created',
      );
    }
    // The 2xx leaves once the store committed, before the fan-out is scheduled.
    incoming.respond(res);
    if (changed) publications.changed(presentityUri, pkg.name);
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
  return s
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, 120);
}
