/**
 * SUBSCRIBE, the notifier's UAS (RFC 6665 §4.2.1, RFC 3856 §6): a new subscription creates a
 * dialog whose state is committed to the store before the 2xx, then gets its first NOTIFY;
 * refreshes and unsubscribes follow §4.2.1.2 and §4.2.1.4. The subscriptions themselves (indices,
 * expiry, recovery) are state/subscriptions.ts.
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { SipResponse, SipRequest } from '../../transport/message.js';
import { NameAddr } from '../../transport/uri.js';
import { ownString } from '../../transport/message.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { StateStore } from '../store/interfaces.js';
import type { Subscription } from '../store/records.js';
import { requestedIntervals } from '../dialogs/rate-control.js';
import { LiveSubscription, ownStrings, type Subscriptions } from '../state/subscriptions.js';
import type { WatcherInfo } from '../state/watcher-info.js';
import type { PackageRegistry } from '../packages/registry.js';
import { parseEventHeader, type EventPackage } from '../packages/types.js';
import type { Notifier } from '../notify/notifier.js';
import type { Authorization } from '../authorization/index.js';
import type { StateLimits } from '../limits.js';
import { SipError } from '../errors.js';
import { ExpiryTimers } from '../timers.js';
import { newTag } from '../ids.js';
import { presentityOf } from '../uris.js';
import { grantedExpires, accepts, remoteTargetOf, dialogRecord } from '../dialogs/subscribe-request.js';

export interface SubscribeUasDeps {
  config: Config;
  store: StateStore;
  packages: PackageRegistry;
  log: Logger;
  subscriptions: Subscriptions;
  watcherInfo: WatcherInfo;
  notifier: Notifier;
  authorization: Authorization;
  /** Subscription limits per watcher and in total (core/limits.ts). */
  limits?: StateLimits;
}

/** Merged-request memory (RFC 3261 §8.2.2.2): how long an initial SUBSCRIBE's identity is kept. */
const MERGE_WINDOW_MS = 32_000;

export class SubscribeUas {
  /** Initial SUBSCRIBEs of the last MERGE_WINDOW_MS by Call-ID, From tag and CSeq: the branch each came with, and the subscription it made. */
  private readonly recentInitial = new ExpiryTimers<{ branch: string; sub?: LiveSubscription }>(() => undefined);

  constructor(private readonly deps: SubscribeUasDeps) {}

  handle = async (incoming: IncomingRequest): Promise<SipResponse | void> => {
    const req = incoming.request;
    const toTag = req.toTag;
    if (toTag !== undefined) return this.inDialog(incoming, toTag);
    return this.initial(incoming);
  };

  // ───── RFC 6665 §4.2.1: a new subscription ─────

  private async initial(incoming: IncomingRequest): Promise<SipResponse | void> {
    const req = incoming.request;
    const { config, store } = this.deps;
    const presentityUri = presentityOf(req.uri);
    const pkg = this.packageOf(req);

    const acceptValues = req.headers.getAll('accept');
    if (acceptValues.length > 0 && !accepts(acceptValues, pkg.notifyType)) {
      throw new SipError(406, 'Not Acceptable', [['accept', pkg.notifyType]]);
    }
    const remoteTarget = remoteTargetOf(req);
    const from = req.from;
    // RFC 4475 §3.4.1: an RFC 2543 peer sends no From tag; its dialog is keyed with an empty one.
    const fromTag = from.tag ?? '';
    const expires = grantedExpires(req, config);
    const event = parseEventHeader(req.headers.get('event') ?? '');
    const rate = requestedIntervals(event?.params, config.notify_min_interval);
    if (expires !== 0) this.deps.limits?.checkSubscription(from.uri.aor, this.deps.subscriptions.count, req.callId);

    // RFC 3261 §8.2.2.2: the same initial request arriving over two paths (a fork upstream) is merged.
    const cseq = req.cseq;
    const mergeKey = ownString(`${req.callId}\u0000${fromTag}\u0000${cseq.seq}`);
    const branch = req.topVia.branch ?? '';
    const now = Date.now();
    const seen = this.recentInitial.get(mergeKey);
    if (seen) {
      if (seen.branch !== branch) throw new SipError(482, 'Loop Detected');
      // The same request again once its transaction is gone (TCP ends it with the response):
      // the subscription it created is answered again, not created twice.
      const created = seen.sub !== undefined && this.deps.subscriptions.has(seen.sub) ? seen.sub : undefined;
      if (created && created.record.callId === req.callId && created.record.remoteTag === fromTag) {
        const remaining = Math.max(0, Math.round((created.record.expiresAt - now) / 1000));
        this.deps.log.info({ callId: req.callId, presentityUri }, 'initial SUBSCRIBE sent again: answered from its subscription');
        incoming.respond(this.okResponse(incoming, created.record.localTag, remaining));
        return;
      }
    }
    // Owned: a slice of the request would keep the whole request text alive for the window.
    const remembered: { branch: string; sub?: LiveSubscription } = { branch: ownString(branch) };
    this.recentInitial.set(mergeKey, now + MERGE_WINDOW_MS, remembered);

    const auth = await this.deps.authorization.evaluate(presentityUri, from.uri.aor, pkg);
    if (auth.handling === 'block') throw new SipError(403, 'Forbidden');

    const localTag = newTag(config.to_tag_pref);
    const record = dialogRecord(
      incoming,
      {
        localTag,
        presentityUri,
        event: pkg.name,
        eventId: event?.id ?? '',
        remoteTarget,
        expires,
        state: auth.handling === 'confirm' ? 'pending' : 'active',
        subHandling: auth.handling,
        minInterval: rate.minInterval,
        maxInterval: rate.maxInterval,
        eventView: event && pkg.viewOf ? pkg.viewOf(event.params) : '',
      },
      now,
    );
    ownStrings(record);
    const sub = new LiveSubscription(record);
    sub.bodyKey = auth.bodyKey;
    const { notifier, subscriptions } = this.deps;

    const res = this.okResponse(incoming, localTag, expires);
    this.mustFit(incoming, res);
    if (expires === 0) {
      // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, terminated, nothing stored.
      incoming.respond(res);
      this.deps.log.debug({ callId: req.callId, presentityUri, event: pkg.name }, 'fetch subscription');
      notifier.schedule(sub, { kind: 'terminate', reason: 'timeout' });
      return;
    }
    record.winfoId = this.deps.watcherInfo.winfoIdFor(record) ?? '';
    // The first NOTIFY CSeqs are reserved in the same transaction: the first NOTIFY waits for no second commit.
    await Promise.all([store.putSubscription(record), notifier.reserveCseq(sub, 1)]);
    incoming.respond(res);
    subscriptions.add(sub);
    remembered.sub = sub;
    this.deps.log.info(
      {
        callId: req.callId,
        presentityUri,
        watcherUri: record.watcherUri,
        event: pkg.name,
        state: record.state,
        expires,
        ...rateLog(record),
      },
      'subscription created',
    );
    notifier.schedule(sub, { kind: 'state', immediate: true });
  }

  private packageOf(req: SipRequest): EventPackage {
    const pkg = this.deps.packages.lookup(req.headers.get('event'));
    if (!pkg) throw new SipError(489, 'Bad Event', [['allow-events', this.deps.packages.names().join(', ')]]);
    return pkg;
  }

  private okResponse(incoming: IncomingRequest, localTag: string, expires: number): SipResponse {
    const res = incoming.reply(200, 'OK', localTag);
    res.headers.append('expires', String(expires));
    res.headers.append('contact', this.deps.notifier.contact(incoming.source.proto, incoming.source.address));
    // RFC 6665 §4.4.4 (SHOULD): the events supported, in responses to dialog-creating requests too.
    res.headers.append('allow-events', this.deps.packages.names().join(', '));
    // RFC 3261 §12.1.1: a dialog-creating 2xx copies the Record-Route headers.
    for (const rr of incoming.request.headers.getAll('record-route')) res.headers.append('record-route', rr);
    return res;
  }

  // ───── RFC 6665 §4.2.1.2 / §4.2.1.4: refresh and unsubscribe ─────

  private async inDialog(incoming: IncomingRequest, toTag: string): Promise<SipResponse | void> {
    const req = incoming.request;
    const sub = this.deps.subscriptions.inDialog(req.callId, toTag, req.fromTag ?? '');
    if (!sub || sub.ended) throw new SipError(481, 'Subscription Does Not Exist');
    const pkg = this.packageOf(req);
    const event = parseEventHeader(req.headers.get('event') ?? '');
    if (pkg.name !== sub.record.event || (event?.id ?? '') !== sub.record.eventId) throw new SipError(481, 'Subscription Does Not Exist');
    const cseq = req.cseq.seq;
    // RFC 3261 §12.2.2: a lower remote CSeq is out of order. (The same one again, once its
    // transaction is gone, is the refresh sent again: it is processed as a refresh.)
    if (cseq < sub.record.remoteCseq) throw new SipError(500, 'CSeq Out Of Order');
    const expires = grantedExpires(req, this.deps.config);
    // RFC 6446: a refresh restates the rate parameters; one it leaves out no longer applies.
    const rate = expires === 0 ? undefined : requestedIntervals(event?.params, this.deps.config.notify_min_interval);
    const rec = sub.record;
    // SUBSCRIBE is a target refresh request (RFC 6665 §4.1.2.1); a refused one changes nothing.
    const contact = req.headers.getAll('contact')[0];
    let remoteTarget = rec.remoteTarget;
    if (contact && expires !== 0) {
      try {
        remoteTarget = NameAddr.parse(contact).uri.toString();
      } catch {
        throw new SipError(400, 'Malformed Contact header');
      }
    }
    const res = this.okResponse(incoming, rec.localTag, expires);
    this.mustFit(incoming, res);
    // A request the store refuses (503, full disk) changes nothing, its remote CSeq included.
    if (expires === 0) {
      await this.deps.subscriptions.unsubscribe(sub);
      rec.remoteCseq = cseq;
      incoming.respond(res);
      this.deps.notifier.schedule(sub, { kind: 'terminate', reason: 'timeout' });
      return;
    }
    await this.deps.subscriptions.refresh(sub, {
      remoteCseq: cseq,
      remoteTarget: ownString(remoteTarget),
      flowId: incoming.source.flow ? incoming.source.flow.id : rec.flowId,
      expiresAt: Date.now() + expires * 1000,
      minInterval: rate!.minInterval,
      maxInterval: rate!.maxInterval,
    });
    incoming.respond(res);
    this.deps.notifier.schedule(sub, { kind: 'state', immediate: true });
  }

  /**
   * The 2xx must reach the subscriber before the state it acknowledges is committed: RFC 3261
   * §18.2.2 sends it back over the request's transport, and over UDP one datagram may be too
   * small for it (a SUBSCRIBE through many Record-Routing proxies, each copied into the 2xx,
   * RFC 3261 §12.1.1). Refused then, with nothing created or changed; over TCP it would pass.
   */
  private mustFit(incoming: IncomingRequest, res: SipResponse): void {
    if (!incoming.fits(res)) throw new SipError(513, 'Response Too Large For UDP');
  }

  stop(): void {
    this.recentInitial.clearAll();
  }
}

/** The RFC 6446 parameters in use, for a log line (nothing when there are none). */
function rateLog(rec: Subscription): { minInterval?: number; maxInterval?: number } {
  const out: { minInterval?: number; maxInterval?: number } = {};
  if (rec.minInterval) out.minInterval = rec.minInterval;
  if (rec.maxInterval) out.maxInterval = rec.maxInterval;
  return out;
}
