/**
 * SUBSCRIBE processing (RFC 6665 §4.2.1, RFC 3856 §6): new subscriptions create a dialog
 * whose state is committed to the store before the 2xx; refreshes, unsubscribes and expiry
 * follow the RFC; every subscription that ends is removed from memory and store alike.
 */
import type { IncomingRequest } from '../transport/stack.js';
import type { SipResponse, SipRequest } from '../transport/message.js';
import { NameAddr } from '../transport/uri.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';
import type { Subscription } from './store/records.js';
import type { PackageRegistry } from './packages/registry.js';
import type { EventPackage } from './packages/types.js';
import { parseEventHeader } from './packages/types.js';
import { requestedIntervals } from './rate-control.js';
import { SipError } from './errors.js';
import { grantedExpires } from './expires.js';
import { ExpiryTimers } from './timers.js';
import { newTag } from './ids.js';
import { presentityOf } from './publications.js';
import type { Notifier } from './notifier.js';
import { LiveSubscription, dialogKey, presentityKey, ownStrings, sharePresentity, type SubHandling } from './subscription.js';
import { ownString } from '../transport/message.js';

export interface AuthorizationOutcome {
  handling: SubHandling;
  /** Which transformed body the watcher gets ('' = the whole composed state). */
  bodyKey: string;
}

export interface Authorizer {
  evaluate(presentityUri: string, watcherUri: string, pkg: EventPackage): Promise<AuthorizationOutcome>;
}

/** `resumed`: a live subscription recovered from the store after a restart. */
export type SubscriptionEvent = 'created' | 'resumed' | 'refreshed' | 'ended' | 'authorized';

export interface SubscriptionDeps {
  config: Config;
  store: Store;
  packages: PackageRegistry;
  log: Logger;
  authorizer: Authorizer;
}

/**
 * Accept matching (RFC 3261 §20.1, HTTP semantics): the most specific media range that matches
 * (the type, then type/*, then * / *) decides, and q=0 on it means "not acceptable".
 */
function accepts(accept: string[], type: string): boolean {
  const wildcard = `${type.split('/')[0]}/*`;
  let best = -1; // 2 exact, 1 type/*, 0 */*
  let acceptable = false;
  for (const a of accept) {
    const semi = a.indexOf(';');
    const range = (semi === -1 ? a : a.slice(0, semi)).trim().toLowerCase();
    const rank = range === type ? 2 : range === wildcard ? 1 : range === '*/*' ? 0 : -1;
    if (rank < best || rank === -1) continue;
    const q = semi === -1 ? undefined : /(?:^|;)\s*q\s*=\s*([0-9.]+)/i.exec(a.slice(semi))?.[1];
    const ok = q === undefined || Number(q) > 0;
    // Of two ranges equally specific, one that accepts wins.
    acceptable = rank > best ? ok : acceptable || ok;
    best = rank;
  }
  return acceptable;
}

/** Merged-request memory (RFC 3261 §8.2.2.2): how long an initial SUBSCRIBE's identity is kept. */
const MERGE_WINDOW_MS = 32_000;

export class Subscriptions {
  readonly byId = new Map<string, LiveSubscription>();
  private readonly byDialog = new Map<string, LiveSubscription>();
  private readonly byPresentity = new Map<string, Set<LiveSubscription>>();
  private readonly timers = new ExpiryTimers<LiveSubscription>((sub) => {
    this.terminate(sub, 'timeout').catch((err) => this.deps.log.error({ err, callId: sub.record.callId }, 'expiry failed'));
  });
  /** Initial SUBSCRIBEs of the last MERGE_WINDOW_MS by Call-ID, From tag and CSeq: the branch each came with, and the subscription it made. */
  private readonly recentInitial = new ExpiryTimers<{ branch: string; subId?: string }>(() => undefined);
  notifier!: Notifier;
  /** Watcher-list changes (presence.winfo listens). */
  onEvent: ((sub: LiveSubscription, event: SubscriptionEvent, reason?: string) => void) | undefined;
  /**
   * The watcherinfo id a new subscription takes (presence.winfo): that of the entry it replaces
   * (a waiting one, RFC 3857 §4.7.1), or undefined for its own id.
   */
  winfoIdFor: ((record: Subscription) => string | undefined) | undefined;

  constructor(private readonly deps: SubscriptionDeps) {}

  watchersOf(presentityUri: string, event: string): Iterable<LiveSubscription> {
    return this.byPresentity.get(presentityKey(presentityUri, event)) ?? [];
  }

  get count(): number {
    return this.byId.size;
  }

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
    const contacts = req.headers.getAll('contact');
    if (contacts.length === 0) throw new SipError(400, 'Missing Contact header');
    if (contacts.length > 1) throw new SipError(400, 'More than one Contact in SUBSCRIBE');
    let remoteTarget: string;
    try {
      remoteTarget = NameAddr.parse(contacts[0]!).uri.toString();
    } catch {
      throw new SipError(400, 'Malformed Contact header');
    }
    const from = req.from;
    const fromTag = from.tag;
    if (!fromTag) throw new SipError(400, 'Missing From tag');
    const expires = grantedExpires(req, config);
    const event = parseEventHeader(req.headers.get('event') ?? '');
    const rate = requestedIntervals(event?.params, config.notify_min_interval);

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
      const created = seen.subId !== undefined ? this.byId.get(seen.subId) : undefined;
      if (created && created.record.callId === req.callId && created.record.remoteTag === fromTag) {
        const remaining = Math.max(0, Math.round((created.record.expiresAt - now) / 1000));
        this.deps.log.info({ callId: req.callId, presentityUri }, 'initial SUBSCRIBE sent again: answered from its subscription');
        incoming.respond(this.okResponse(incoming, created.record.localTag, remaining));
        return;
      }
    }
    // Owned: a slice of the request would keep the whole request text alive for the window.
    const remembered: { branch: string; subId?: string } = { branch: ownString(branch) };
    this.recentInitial.set(mergeKey, now + MERGE_WINDOW_MS, remembered);

    const watcherUri = from.uri.toString();
    const auth = await this.deps.authorizer.evaluate(presentityUri, from.uri.aor, pkg);
    if (auth.handling === 'block') throw new SipError(403, 'Forbidden');

    const localTag = newTag(config.to_tag_pref);
    const record: Subscription = {
      id: localTag,
      presentityUri,
      event: pkg.name,
      eventId: event?.id ?? '',
      watcherUri,
      watcherDisplay: from.displayName ?? '',
      callId: req.callId,
      localTag,
      remoteTag: fromTag,
      remoteCseq: cseq.seq,
      localCseq: 0,
      routeSet: req.headers.getAll('record-route'),
      remoteTarget,
      transport: incoming.source.proto,
      flowId: incoming.source.flow?.id ?? '',
      sourceAddress: incoming.source.address,
      sourcePort: incoming.source.port,
      expiresAt: now + expires * 1000,
      state: auth.handling === 'confirm' ? 'pending' : 'active',
      reason: '',
      localUri: req.to.uri.toString(),
      accept: acceptValues.join(', '),
      winfoVersion: 0,
      createdAt: now,
      subHandling: auth.handling,
      minInterval: rate.minInterval,
      maxInterval: rate.maxInterval,
    };
    ownStrings(record);
    const sub = new LiveSubscription(record);
    sub.bodyKey = auth.bodyKey;

    const res = this.okResponse(incoming, localTag, expires);
    if (expires === 0) {
      // A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, terminated, nothing stored.
      incoming.respond(res);
      this.deps.log.debug({ callId: req.callId, presentityUri, event: pkg.name }, 'fetch subscription');
      this.notifier.schedule(sub, { kind: 'terminate', reason: 'timeout' });
      return;
    }
    record.winfoId = this.winfoIdFor?.(record) ?? '';
    // The first NOTIFY CSeqs are reserved in the same transaction: the first NOTIFY waits for no second commit.
    await Promise.all([store.putSubscription(record), this.notifier.reserveCseq(sub, 1)]);
    this.add(sub);
    remembered.subId = record.id;
    this.notifier.applyRate(sub);
    incoming.respond(res);
    this.deps.log.info(
      { callId: req.callId, presentityUri, watcherUri, event: pkg.name, state: record.state, expires, ...rateLog(record) },
      'subscription created',
    );
    this.onEvent?.(sub, 'created');
    this.notifier.schedule(sub, { kind: 'state', immediate: true });
  }

  private packageOf(req: SipRequest): EventPackage {
    const pkg = this.deps.packages.lookup(req.headers.get('event'));
    if (!pkg) throw new SipError(489, 'Bad Event', [['allow-events', this.deps.packages.names().join(', ')]]);
    return pkg;
  }

  private okResponse(incoming: IncomingRequest, localTag: string, expires: number): SipResponse {
    const res = incoming.reply(200, 'OK', localTag);
    res.headers.append('expires', String(expires));
    res.headers.append('contact', this.notifier.contact(incoming.source.proto));
    // RFC 6665 §4.4.4 (SHOULD): the events supported, in responses to dialog-creating requests too.
    res.headers.append('allow-events', this.deps.packages.names().join(', '));
    // RFC 3261 §12.1.1: a dialog-creating 2xx copies the Record-Route headers.
    for (const rr of incoming.request.headers.getAll('record-route')) res.headers.append('record-route', rr);
    return res;
  }

  // ───── RFC 6665 §4.2.1.2 / §4.2.1.4: refresh and unsubscribe ─────

  private async inDialog(incoming: IncomingRequest, toTag: string): Promise<SipResponse | void> {
    const req = incoming.request;
    const sub = this.byDialog.get(dialogKey(req.callId, toTag, req.fromTag ?? ''));
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
    rec.remoteCseq = cseq;
    if (expires === 0) {
      await this.forget(sub, 'unsubscribed');
      incoming.respond(this.okResponse(incoming, rec.localTag, 0));
      this.notifier.schedule(sub, { kind: 'terminate', reason: 'timeout' });
      return;
    }
    rec.remoteTarget = ownString(remoteTarget);
    if (incoming.source.flow) rec.flowId = incoming.source.flow.id;
    rec.expiresAt = Date.now() + expires * 1000;
    rec.minInterval = rate!.minInterval;
    rec.maxInterval = rate!.maxInterval;
    await this.deps.store.putSubscription(rec);
    this.arm(sub);
    this.notifier.applyRate(sub);
    incoming.respond(this.okResponse(incoming, rec.localTag, expires));
    this.onEvent?.(sub, 'refreshed');
    this.notifier.schedule(sub, { kind: 'state', immediate: true });
  }

  // ───── life cycle ─────

  private add(sub: LiveSubscription): void {
    this.byId.set(sub.id, sub);
    this.byDialog.set(ownString(sub.dialogKey), sub);
    let set = this.byPresentity.get(sub.presentityKey);
    if (!set) {
      set = new Set();
      this.byPresentity.set(sub.presentityKey, set);
    } else {
      const peer = set.values().next();
      if (!peer.done) sharePresentity(sub, peer.value);
    }
    set.add(sub);
    this.arm(sub);
  }

  private arm(sub: LiveSubscription): void {
    this.timers.set(sub.id, sub.record.expiresAt + this.deps.config.expires_offset * 1000, sub);
  }

  /** End a subscription with a final NOTIFY (expiry, deauthorisation, administrative removal). */
  async terminate(sub: LiveSubscription, reason: string): Promise<void> {
    if (!this.byId.has(sub.id)) return;
    await this.forget(sub, reason);
    this.notifier.schedule(sub, { kind: 'terminate', reason });
  }

  /** Remove from memory and store; no NOTIFY. Idempotent. */
  forget = async (sub: LiveSubscription, why: string): Promise<void> => {
    if (this.byId.get(sub.id) !== sub) return;
    this.byId.delete(sub.id);
    this.byDialog.delete(sub.dialogKey);
    const set = this.byPresentity.get(sub.presentityKey);
    if (set) {
      set.delete(sub);
      if (set.size === 0) {
        this.byPresentity.delete(sub.presentityKey);
        this.notifier.invalidate(sub.record.presentityUri, sub.record.event); // no watcher left: drop its cached body
      }
    }
    this.timers.clear(sub.id);
    this.notifier.endRate(sub);
    await this.deps.store.removeSubscription(sub.id);
    this.deps.log.info(
      { callId: sub.record.callId, presentityUri: sub.record.presentityUri, watcherUri: sub.record.watcherUri, event: sub.record.event, why },
      'subscription ended',
    );
    this.onEvent?.(sub, 'ended', why);
  };

  /**
   * After a restart: live subscriptions resume in their dialogs (CSeq continues); those that
   * expired while the node was down get their terminated NOTIFY and are removed, and end for
   * presence.winfo once every live subscription (its winfo subscribers too) is back.
   */
  async recover(): Promise<{ live: number; expired: number }> {
    const now = Date.now();
    let live = 0;
    const expired: LiveSubscription[] = [];
    for (const rec of this.deps.store.allSubscriptions()) {
      rec.flowId = ''; // connections of the previous process are gone
      ownStrings(rec);
      const sub = new LiveSubscription(rec);
      if (rec.expiresAt <= now) {
        expired.push(sub);
        // A store that cannot write (disk full) does not stop the start: the record goes at the next one.
        await this.deps.store.removeSubscription(rec.id).catch((err) => this.deps.log.error({ err, callId: rec.callId }, 'removing an expired subscription failed'));
        this.notifier.schedule(sub, { kind: 'terminate', reason: 'timeout' });
        continue;
      }
      const pkg = this.deps.packages.get(rec.event);
      if (pkg) {
        const auth = await this.deps.authorizer.evaluate(rec.presentityUri, uriAor(rec.watcherUri), pkg);
        sub.bodyKey = auth.bodyKey;
      }
      this.add(sub);
      this.notifier.applyRate(sub);
      live++;
      this.onEvent?.(sub, 'resumed');
    }
    for (const sub of expired) this.onEvent?.(sub, 'ended', 'timeout');
    return { live, expired: expired.length };
  }

  /** Re-run authorisation for a presentity's watchers (rules changed) and NOTIFY those whose state changed. */
  async reevaluate(presentityUri: string, event: string): Promise<number> {
    const pkg = this.deps.packages.get(event);
    if (!pkg) return 0;
    let changed = 0;
    for (const sub of [...this.watchersOf(presentityUri, event)]) {
      const rec = sub.record;
      const auth = await this.deps.authorizer.evaluate(presentityUri, uriAor(rec.watcherUri), pkg);
      const before = rec.subHandling;
      const beforeKey = sub.bodyKey;
      if (auth.handling === before && auth.bodyKey === beforeKey) continue;
      changed++;
      const wasActive = rec.state === 'active';
      if (auth.handling === 'block' || (auth.handling === 'confirm' && wasActive)) {
        // A presence rule that now blocks the watcher: "rejected" (RFC 6665 §4.2.2, a change in
        // authorisation policy; Kamailio's xcap_auth does the same). An allowed watcher whose
        // rule is gone: xcapauth_userdel_reason (the seed's case, "a rule is no longer found"),
        // and so for a watcher-info grant taken away (no winfo-handling is a block; README "XCAP").
        const reason = auth.handling === 'block' && pkg.name !== 'presence.winfo' ? 'rejected' : this.deps.config.xcapauth_userdel_reason;
        rec.subHandling = auth.handling;
        await this.terminate(sub, reason);
        continue;
      }
      rec.subHandling = auth.handling;
      sub.bodyKey = auth.bodyKey;
      rec.state = auth.handling === 'confirm' ? 'pending' : 'active';
      await this.deps.store.putSubscription(rec);
      this.onEvent?.(sub, 'authorized');
      this.notifier.schedule(sub, { kind: 'state' });
    }
    return changed;
  }

  /** Clean stop: no more timers, and every dialog's exact CSeq stored. */
  stop(): Promise<unknown> {
    this.timers.clearAll();
    this.recentInitial.clearAll();
    for (const sub of this.byId.values()) this.notifier.endRate(sub);
    return this.notifier.flushCseqs(this.byId.values());
  }
}

/** The RFC 6446 parameters in use, for a log line (nothing when there are none). */
function rateLog(rec: Subscription): { minInterval?: number; maxInterval?: number } {
  const out: { minInterval?: number; maxInterval?: number } = {};
  if (rec.minInterval) out.minInterval = rec.minInterval;
  if (rec.maxInterval) out.maxInterval = rec.maxInterval;
  return out;
}

export function uriAor(uri: string): string {
  try {
    return NameAddr.parse(uri).uri.aor;
  } catch {
    return uri;
  }
}
