/**
 * The resource list server (RFC 4662 over RFC 4826 rls-services): a SUBSCRIBE to a service URI
 * with `Supported: eventlist` becomes one list subscription whose NOTIFYs carry the state of
 * every resource of the list (multipart/related with an RLMI root, rlmi.ts), full state first
 * and after each SUBSCRIBE, then partial state naming what changed.
 *
 * Each resource's state comes from a back-end subscription made on the list subscriber's behalf
 * (RFC 4662 §5): authorised by that resource's own rules with the subscriber as watcher. A
 * resource this node serves is watched inside the node (the hub's presentity.changed, its body
 * composed by its event package once per change and shared by every list that holds it); any
 * other one gets a real SUBSCRIBE through outbound_proxy (backends.ts), one per resource and
 * subscriber, shared by that subscriber's lists.
 *
 * List subscriptions are stored like other dialogs (their own LMDB database) before the 2xx,
 * their NOTIFY CSeq and RLMI version with each NOTIFY, so a restart resumes them.
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { SipResponse, SipRequest } from '../../transport/message.js';
import { ownString } from '../../transport/message.js';
import { NameAddr } from '../../transport/uri.js';
import type { Protocol } from '../../transport/flows.js';
import type { ClientOutcome } from '../../transport/stack.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { EventHub, BaseEvents } from '../events.js';
import { SipError } from '../errors.js';
import { ExpiryTimers } from '../timers.js';
import { newTag } from '../ids.js';
import { presentityKey, uriAor, dialogKey } from '../uris.js';
import type { StateLimits } from '../limits.js';
import type { Subscription } from '../store/records.js';
import { grantedExpires, accepts, remoteTargetOf, dialogRecord } from '../dialogs/subscribe-request.js';
import { ownStrings } from '../state/subscriptions.js';
import { NotifierDialog, notifyResult, type SipSender } from '../dialogs/subscription-dialog.js';
import type { PackageRegistry } from '../packages/registry.js';
import { parseEventHeader, type AuthorizationOutcome, type EventPackage, type PackageContext } from '../packages/types.js';
import { type ServiceLists, serviceKey as serviceKeyOf, type ListResource, type ResolvedService } from './lists.js';
import { splitNotify, type ResourceEntry, type ResourceInstance } from './rlmi.js';
import { Backends } from './backends.js';
import { shardOf } from './shard.js';
import { sameXui } from '../uris.js';
import type { ListWatchers } from '../state/list-watchers.js';

/** The part of the store the list server writes (core/store/store.ts). */
export interface ListStore {
  putListSubscription(s: Subscription): Promise<boolean>;
  removeListSubscription(id: string): Promise<boolean>;
  allListSubscriptions(): Iterable<Subscription>;
}

export interface ListServerDeps {
  config: Config;
  store: ListStore;
  log: Logger;
  hub: EventHub<BaseEvents>;
  packages: PackageRegistry;
  ctx: PackageContext;
  sender: SipSender;
  lists: ServiceLists;
  /** The resource's rules with the list subscriber as watcher (core/authorization). */
  authorize: (resourceUri: string, watcherAor: string, pkg: EventPackage) => Promise<AuthorizationOutcome> | AuthorizationOutcome;
  /** A composed body transformed for an outcome's key (RFC 5025 transformations). */
  transform: (bodyKey: string, body: string) => Promise<string>;
  /** Our Contact toward a peer (the notifier's: server_address, else the listener). */
  contact: (proto: Protocol, peer?: string) => string;
  limits?: StateLimits;
  /** Live presence subscriptions (with the lists' members, the total max_subscriptions bounds). */
  subscriptionCount?: () => number;
  /** Watcher info of list members served here (their owners see them in presence.winfo). */
  watchers?: ListWatchers;
}

/** One resource of one list subscription (about 100 of these per list: kept small). */
interface Member {
  res: ListResource;
  /** RLMI instance id (base 36 in the document): stable for the life of the list subscription. */
  id: number;
  /** Served by this node (no SIP), or through a back-end SIP subscription. */
  local: boolean;
  /** Local: the authorisation outcome (shared objects, see outcomeOf), or its evaluation under way; undefined until first asked and after the resource's rules change. */
  auth: AuthorizationOutcome | Promise<AuthorizationOutcome> | undefined;
}

/** One object per distinct outcome: a list of 100 resources holds 100 references, not 100 copies. */
const outcomes = new Map<string, AuthorizationOutcome>();
function outcomeOf(o: AuthorizationOutcome): AuthorizationOutcome {
  const key = `${o.handling}\u0000${o.bodyKey}`;
  let shared = outcomes.get(key);
  if (!shared) {
    shared = { handling: o.handling, bodyKey: o.bodyKey };
    if (outcomes.size < 4096) outcomes.set(key, shared);
  }
  return shared;
}

export class ListSubscription extends NotifierDialog {
  service: ResolvedService;
  members = new Map<string, Member>();
  /** Resources whose state changed since the last NOTIFY (presentity keys). */
  readonly dirty = new Set<string>();
  /** The next NOTIFY carries full state (the first, and after each SUBSCRIBE or list change). */
  full = true;
  /** A NOTIFY is on its way: what changes meanwhile waits for it. */
  sending = false;
  /** When the last state NOTIFY left (waitn_time counts from it), and the timer of the one waiting. */
  lastSentAt = 0;
  timer: NodeJS.Timeout | undefined;
  private instances = 0;

  constructor(record: Subscription, service: ResolvedService) {
    super(record);
    this.service = service;
    this.watcherAor = ownString(uriAor(record.watcherUri));
  }

  /** Whether its members count toward the limits (until it ends). */
  counted = true;
  /** The subscriber's address of record (one string for all its members). */
  readonly watcherAor: string;

  nextInstanceId(): number {
    return ++this.instances;
  }

  /** Every list NOTIFY says `Require: eventlist` (RFC 4662 §4.3). */
  protected override get notifyHeaders(): string {
    return 'Require: eventlist\r\n';
  }
}

/** Whether the subscriber supports resource lists (RFC 4662 §4.1: eventlist in Supported). */
function supportsEventlist(req: SipRequest): boolean {
  for (const v of req.headers.getAll('supported')) for (const t of v.split(',')) if (t.trim().toLowerCase() === 'eventlist') return true;
  return false;
}

/** A UDP datagram's payload (65,507 bytes) less room for a NOTIFY's headers (a long route set included). */
const UDP_BODY_MAX = 60_000;
/** A list NOTIFY that could not be built or sent (composition, store): tried again this much later. */
const RETRY_AFTER_FAILURE_MS = 1000;

export class ListServer {
  private readonly byId = new Map<string, ListSubscription>();
  private readonly byDialog = new Map<string, ListSubscription>();
  /** Lists holding each locally served resource (presentity key → subscriptions). */
  private readonly watching = new Map<string, Set<ListSubscription>>();
  /** Composed body of each locally served resource, until it changes. */
  private readonly bodies = new Map<string, Promise<string | undefined>>();
  private readonly expiry = new ExpiryTimers<ListSubscription>((sub) => void this.expired(sub));
  private readonly backends: Backends;
  /** Members of every live list (each a resource watched on a subscriber's behalf). */
  private memberTotal = 0;
  /** The node is stopping: nothing more is sent or scheduled. */
  private stopped = false;
  /** Re-resolving every list after a document change: one run at a time, one more at most waiting. */
  private resolving: Promise<void> | undefined;
  private resolveAgain = false;
  readonly stats = { notifies: 0, failed: 0 };

  constructor(private readonly deps: ListServerDeps) {
    const { hub, config } = deps;
    this.backends = new Backends({
      config,
      sender: deps.sender,
      log: deps.log,
      contact: (proto) => this.contactFor(proto),
      changed: (subs, key) => {
        for (const sub of subs) this.touch(sub as ListSubscription, key);
      },
    });
    hub.on('presentity.changed', ({ presentityUri, event }) => this.resourceChanged(presentityKey(presentityUri, event)));
    hub.on('document.changed', (c) => {
      if (c.auid === 'rls-services' || c.auid === 'resource-lists') {
        deps.lists.invalidate();
        this.reresolveAll();
      } else if (c.auid === 'pres-rules' && c.xui) {
        for (const sub of this.watching.get(presentityKey(c.xui, 'presence')) ?? []) {
          const m = sub.members.get(c.xui);
          if (m) m.auth = undefined;
          this.touch(sub, c.xui);
        }
      } else if (c.xui) {
        for (const pkg of deps.packages.all())
          if (pkg.stateDocuments?.includes(c.auid)) this.resourceChanged(presentityKey(c.xui, pkg.name));
      }
    });
  }

  get listCount(): number {
    return this.byId.size;
  }

  /** Back-end subscriptions: locally served resources watched, and SIP ones. */
  get backendCounts(): { local: number; sip: number } {
    return { local: this.watching.size, sip: this.backends.count };
  }

  /** The list subscriptions of a service URI, for presence.watcher_list. */
  subscribersOf(serviceUri: string, event: string): Subscription[] {
    const out: Subscription[] = [];
    const key = serviceKeyOf(serviceUri);
    for (const sub of this.byId.values())
      if (sub.record.event === event && serviceKeyOf(sub.record.presentityUri) === key) out.push(sub.record);
    return out;
  }

  /** The list subscribers watching a locally served resource through their lists, for presence.watcher_list. */
  backendWatchersOf(resourceUri: string, event: string): Array<{ watcherUri: string; service: string }> {
    return [...(this.watching.get(presentityKey(resourceUri, event)) ?? [])].map((s) => ({
      watcherUri: s.record.watcherUri,
      service: s.record.presentityUri,
    }));
  }

  // ───── SUBSCRIBE ─────

  /** Whether a SUBSCRIBE is the list server's: in one of its dialogs, or to a service URI. */
  claims(req: SipRequest): boolean | Promise<boolean> {
    if (this.deps.config.disable_rls) return false;
    const toTag = req.toTag;
    if (toTag !== undefined) return this.byDialog.has(dialogKey(req.callId, toTag, req.fromTag ?? ''));
    const owner = this.deps.lists.ownerOf(req.uri);
    if (owner === undefined) return false;
    return typeof owner === 'string' ? this.mayList(req, owner) : owner.then((o) => o !== undefined && this.mayList(req, o));
  }

  /**
   * Whether the subscriber may have the list (rls_list_subscribers): only the owner of the
   * document that defines it (Kamailio rls looks for services in the subscriber's own
   * rls-services document only), or anyone. Anyone else's SUBSCRIBE to the URI is the
   * presence server's, as Kamailio passes it on (to_presence_code).
   */
  private mayList(req: SipRequest, owner: string): boolean {
    if (this.deps.config.rls_list_subscribers === 'any') return true;
    try {
      return sameXui(owner, req.from.uri.aor);
    } catch {
      return false;
    }
  }

  handle = async (incoming: IncomingRequest): Promise<SipResponse | void> => {
    const toTag = incoming.request.toTag;
    if (toTag !== undefined) return this.inDialog(incoming, toTag);
    return this.initial(incoming);
  };

  private packageFor(req: SipRequest, service: ResolvedService): EventPackage {
    const { config, packages } = this.deps;
    const served = (name: string): boolean =>
      config.rls_event.includes(name) && (service.packages === null || service.packages.includes(name));
    const pkg = packages.lookup(req.headers.get('event'));
    if (!pkg || !served(pkg.name)) {
      const names = packages.names().filter(served);
      throw new SipError(489, 'Bad Event', [['allow-events', names.join(', ') || packages.names().join(', ')]]);
    }
    return pkg;
  }

  private async initial(incoming: IncomingRequest): Promise<SipResponse | void> {
    const req = incoming.request;
    const { config, store, log } = this.deps;
    const service = await this.deps.lists.lookup(req.uri);
    if (!service) throw new SipError(404, 'Not Found');
    const pkg = this.packageFor(req, service);
    // RFC 4662 §4.1: a list is served only to a subscriber that supports the extension.
    if (!supportsEventlist(req)) throw new SipError(421, 'Extension Required', [['require', 'eventlist']]);
    // RFC 4662 §4.1 asks the subscriber to list multipart/related in Accept.
    const accept = req.headers.getAll('accept');
    if (accept.length > 0 && !accepts(accept, 'multipart/related'))
      throw new SipError(406, 'Not Acceptable', [['accept', 'multipart/related, application/rlmi+xml']]);
    const remoteTarget = remoteTargetOf(req);
    const expires = grantedExpires(req, this.deps.config, this.deps.config.rls_max_expires);
    const from = req.from;
    // Limits (core/limits.ts): a list counts once toward its subscriber's subscriptions, and each of
    // its resources toward the node's total (what a list of 1,000 costs is 1,000 watchers' state).
    if (expires !== 0)
      this.deps.limits?.checkSubscription(
        from.uri.aor,
        (this.deps.subscriptionCount?.() ?? 0) + this.memberTotal + service.resources.length,
        req.callId,
      );
    const event = parseEventHeader(req.headers.get('event') ?? '');
    const now = Date.now();
    const localTag = newTag(config.to_tag_pref);
    const record = dialogRecord(
      incoming,
      {
        localTag,
        presentityUri: service.uri,
        event: pkg.name,
        eventId: event?.id ?? '',
        remoteTarget,
        expires,
        state: 'active',
        subHandling: 'allow',
        minInterval: 0,
        maxInterval: 0,
        eventView: '',
      },
      now,
    );
    ownStrings(record);
    const sub = new ListSubscription(record, service);
    const res = this.okResponse(incoming, localTag, expires);
    if (expires === 0) {
      // A fetch (RFC 6665 §4.4.3): one NOTIFY with the full state, terminated, nothing kept.
      incoming.respond(res);
      this.attach(sub, false); // no back-end SUBSCRIBE for a one-off answer: resources served elsewhere show no state
      await this.sendNow(sub, 'timeout');
      this.detach(sub);
      return;
    }
    await store.putListSubscription(record);
    incoming.respond(res);
    this.add(sub);
    log.info(
      {
        callId: req.callId,
        service: service.uri,
        watcherUri: record.watcherUri,
        event: pkg.name,
        resources: service.resources.length,
        expires,
      },
      'list subscription created',
    );
    this.schedule(sub, true);
  }

  private okResponse(incoming: IncomingRequest, localTag: string, expires: number): SipResponse {
    const res = incoming.reply(200, 'OK', localTag);
    res.headers.append('expires', String(expires));
    res.headers.append('contact', this.contactFor(incoming.source.proto, incoming.source.address));
    res.headers.append('require', 'eventlist');
    res.headers.append('allow-events', this.deps.packages.names().join(', '));
    for (const rr of incoming.request.headers.getAll('record-route')) res.headers.append('record-route', rr);
    return res;
  }

  /**
   * The longest list NOTIFY body for a subscriber's transport: max_notify_body_length, and over
   * UDP never more than a datagram holds with the headers (RFC 768: 65,507 bytes of payload):
   * a full state of a long list is split rather than lost.
   */
  private bodyLimit(transport: string): number {
    const configured = this.deps.config.max_notify_body_length;
    if (transport !== 'udp') return configured;
    return configured === 0 ? UDP_BODY_MAX : Math.min(configured, UDP_BODY_MAX);
  }

  private readonly contactOf = (proto: Protocol, peer?: string): string => this.contactFor(proto, peer);

  private contactFor(proto: Protocol, peer?: string): string {
    const a = this.deps.config.rls_server_address;
    if (a) return a.startsWith('<') ? a : `<${a}>`;
    return this.deps.contact(proto, peer);
  }

  private async inDialog(incoming: IncomingRequest, toTag: string): Promise<SipResponse | void> {
    const req = incoming.request;
    const sub = this.byDialog.get(dialogKey(req.callId, toTag, req.fromTag ?? ''));
    if (!sub || sub.ended) throw new SipError(481, 'Subscription Does Not Exist');
    const pkg = this.deps.packages.lookup(req.headers.get('event'));
    const event = parseEventHeader(req.headers.get('event') ?? '');
    if (!pkg || pkg.name !== sub.record.event || (event?.id ?? '') !== sub.record.eventId)
      throw new SipError(481, 'Subscription Does Not Exist');
    const rec = sub.record;
    const cseq = req.cseq.seq;
    if (cseq < rec.remoteCseq) throw new SipError(500, 'CSeq Out Of Order');
    const expires = grantedExpires(req, this.deps.config, this.deps.config.rls_max_expires);
    let remoteTarget = rec.remoteTarget;
    const contact = req.headers.getAll('contact')[0];
    if (contact && expires !== 0) {
      try {
        remoteTarget = NameAddr.parse(contact).uri.toString();
      } catch {
        throw new SipError(400, 'Malformed Contact header');
      }
    }
    if (expires === 0) {
      rec.remoteCseq = cseq;
      await this.deps.store.removeListSubscription(rec.id);
      incoming.respond(this.okResponse(incoming, rec.localTag, 0));
      this.end(sub, 'timeout', 'unsubscribed');
      return;
    }
    const before = { remoteCseq: rec.remoteCseq, remoteTarget: rec.remoteTarget, expiresAt: rec.expiresAt, flowId: rec.flowId };
    rec.remoteCseq = cseq;
    rec.remoteTarget = ownString(remoteTarget);
    if (incoming.source.flow) rec.flowId = incoming.source.flow.id;
    rec.expiresAt = Date.now() + expires * 1000;
    try {
      await this.deps.store.putListSubscription(rec);
    } catch (err) {
      Object.assign(rec, before); // a refused refresh changes nothing
      throw err;
    }
    this.expiry.set(rec.id, rec.expiresAt, sub);
    incoming.respond(this.okResponse(incoming, rec.localTag, expires));
    this.schedule(sub, true); // RFC 4662 §4.5 with RFC 6665 §4.2.1.2: a SUBSCRIBE is answered with full state
  }

  // ───── the lists' members ─────

  private isLocal(res: ListResource): boolean {
    const { config } = this.deps;
    if (!config.outbound_proxy_target) return true;
    const at = res.key.lastIndexOf('@');
    const host = at < 0 ? '' : res.key.slice(at + 1).toLowerCase();
    if (config.rls_local_domains.length > 0 && !config.rls_local_domains.some((d) => d.toLowerCase() === host)) return false;
    return config.cluster_nodes === 1 || shardOf(res.key, config.cluster_nodes) === config.cluster_index;
  }

  /** Take up the service's resources: local ones watched, others subscribed to through the proxy. */
  private attach(sub: ListSubscription, remote = true): void {
    for (const res of sub.service.resources) this.addMember(sub, res, remote);
  }

  private addMember(sub: ListSubscription, res: ListResource, remote = true): void {
    const m: Member = { res, id: sub.nextInstanceId(), local: this.isLocal(res), auth: undefined };
    sub.members.set(res.key, m);
    this.memberTotal++;
    const k = presentityKey(res.key, sub.record.event);
    if (!m.local && !remote) return;
    if (m.local) {
      let set = this.watching.get(k);
      if (!set) this.watching.set(k, (set = new Set()));
      set.add(sub);
      if (sub.record.event === 'presence') this.deps.watchers?.hold(res.key, sub.watcherAor);
    } else {
      const pkg = this.deps.packages.get(sub.record.event);
      this.backends.acquire(sub, res, sub.record.event, sub.watcherAor, sub.record.watcherUri, pkg?.notifyType);
    }
  }

  private removeMember(sub: ListSubscription, m: Member): void {
    if (sub.members.delete(m.res.key) && sub.counted) this.memberTotal--;
    if (m.local) {
      const k = presentityKey(m.res.key, sub.record.event);
      const set = this.watching.get(k);
      if (set?.delete(sub) && sub.record.event === 'presence') this.deps.watchers?.release(m.res.key, sub.watcherAor);
      if (set && set.size === 0) {
        this.watching.delete(k);
        this.bodies.delete(k);
      }
    } else this.backends.release(sub, m.res, sub.record.event, sub.watcherAor);
  }

  private detach(sub: ListSubscription): void {
    for (const m of [...sub.members.values()]) this.removeMember(sub, m);
  }

  private add(sub: ListSubscription): void {
    this.byId.set(sub.id, sub);
    this.deps.limits?.subscriptionAdded(sub.watcherAor);
    this.byDialog.set(sub.dialogKey, sub);
    this.expiry.set(sub.id, sub.record.expiresAt, sub);
    this.attach(sub);
  }

  /** Gone: a final NOTIFY with `reason` (none when the subscriber is gone), nothing kept. */
  private end(sub: ListSubscription, reason: string | undefined, why: string): void {
    if (!this.byId.has(sub.id)) return;
    this.byId.delete(sub.id);
    this.deps.limits?.subscriptionRemoved(sub.watcherAor);
    // Its members stop counting now, though its final NOTIFY still shows them.
    this.memberTotal -= sub.members.size;
    sub.counted = false;
    this.byDialog.delete(sub.dialogKey);
    this.expiry.clear(sub.id);
    if (sub.timer) clearTimeout(sub.timer);
    sub.timer = undefined;
    this.deps.log.info({ callId: sub.record.callId, service: sub.record.presentityUri, why }, 'list subscription ended');
    if (reason !== undefined) {
      sub.full = true;
      void this.sendNow(sub, reason).finally(() => this.detach(sub));
    } else {
      sub.fail();
      this.detach(sub);
    }
  }

  private expired(sub: ListSubscription): void {
    this.deps.store
      .removeListSubscription(sub.id)
      .catch((err) => this.deps.log.error({ err, id: sub.id }, 'removing an expired list subscription failed'));
    this.end(sub, 'timeout', 'expired');
  }

  /** Every live list against the documents as they are now: members added and removed, full state sent. */
  private reresolveAll(): void {
    if (this.resolving) {
      this.resolveAgain = true;
      return;
    }
    this.resolving = (async () => {
      do {
        this.resolveAgain = false;
        for (const sub of [...this.byId.values()]) {
          let service: ResolvedService | undefined;
          try {
            service = await this.deps.lists.lookup(sub.record.presentityUri);
          } catch (err) {
            this.deps.log.error({ err, service: sub.record.presentityUri }, 'resolving a list failed');
            continue;
          }
          if (!this.byId.has(sub.id)) continue;
          if (!service || !(service.packages === null || service.packages.includes(sub.record.event))) {
            await this.deps.store.removeListSubscription(sub.id).catch(() => undefined);
            this.end(sub, 'noresource', 'service removed');
            continue;
          }
          this.update(sub, service);
        }
      } while (this.resolveAgain);
    })().finally(() => (this.resolving = undefined));
  }

  private update(sub: ListSubscription, service: ResolvedService): void {
    const old = sub.service;
    sub.service = service;
    const keys = new Set(service.resources.map((r) => r.key));
    let changed = old.name !== service.name || old.resources.length !== service.resources.length;
    for (const m of [...sub.members.values()]) {
      if (!keys.has(m.res.key)) {
        this.removeMember(sub, m);
        changed = true;
      }
    }
    for (const res of service.resources) {
      const m = sub.members.get(res.key);
      if (!m) {
        this.addMember(sub, res);
        changed = true;
      } else if (m.res.name !== res.name || m.res.uri !== res.uri) {
        m.res = res;
        changed = true;
      }
    }
    if (!changed) changed = old.resources.some((r, i) => r.key !== service.resources[i]!.key);
    if (changed) this.schedule(sub, true);
  }

  // ───── changes ─────

  private resourceChanged(key: string): void {
    const subs = this.watching.get(key);
    if (!subs) return;
    this.bodies.delete(key);
    const presentity = key.slice(0, key.indexOf('\u0000'));
    for (const sub of subs) this.touch(sub, presentity);
  }

  private touch(sub: ListSubscription, resourceKey: string): void {
    if (!sub.members.has(resourceKey)) return;
    sub.dirty.add(resourceKey);
    this.schedule(sub, false);
  }

  /** A NOTIFY is due: now, or when waitn_time has passed since the last one, or after the one in flight. */
  private schedule(sub: ListSubscription, full: boolean): void {
    if (full) {
      sub.full = true;
      // A NOTIFY a SUBSCRIBE calls for is never held back.
      if (sub.timer) clearTimeout(sub.timer);
      sub.timer = undefined;
      sub.lastSentAt = 0;
    }
    if (sub.sending || sub.timer || sub.ended || this.stopped) return;
    const wait = this.deps.config.waitn_time * 1000;
    const due = sub.lastSentAt + wait - Date.now();
    if (wait === 0 || due <= 0) {
      void this.sendNow(sub);
      return;
    }
    sub.timer = setTimeout(() => {
      sub.timer = undefined;
      void this.sendNow(sub);
    }, due);
    sub.timer.unref();
  }

  private composed(key: string, presentityUri: string, pkg: EventPackage): Promise<string | undefined> {
    let b = this.bodies.get(key);
    if (!b) {
      b = pkg.compose(presentityUri, this.deps.ctx);
      this.bodies.set(key, b);
      b.catch(() => this.bodies.get(key) === b && this.bodies.delete(key));
    }
    return b;
  }

  /** What a member's RLMI <instance> says now. */
  private async instanceOf(sub: ListSubscription, m: Member, pkg: EventPackage | undefined): Promise<ResourceInstance | undefined> {
    if (!m.local) return this.backends.instance(m.res, sub.record.event, sub.watcherAor, m.id.toString(36));
    if (!pkg) return { id: m.id.toString(36), state: 'terminated', reason: 'noresource' };
    if (m.auth === undefined) {
      const pending = Promise.resolve(this.deps.authorize(m.res.key, sub.watcherAor, pkg)).then(outcomeOf);
      m.auth = pending;
      // Kept resolved: a settled promise per member would cost more than the outcome it holds.
      pending.then(
        (o) => {
          if (m.auth === pending) m.auth = o;
        },
        () => {
          if (m.auth === pending) m.auth = undefined;
        },
      );
    }
    const auth = m.auth instanceof Promise ? await m.auth : m.auth;
    if (pkg.name === 'presence' && sub.members.get(m.res.key) === m)
      this.deps.watchers?.set(
        m.res.key,
        sub.watcherAor,
        auth.handling === 'block' ? 'terminated' : auth.handling === 'confirm' ? 'pending' : 'active',
      );
    if (auth.handling === 'block') return { id: m.id.toString(36), state: 'terminated', reason: 'rejected' };
    if (auth.handling === 'confirm') return { id: m.id.toString(36), state: 'pending' };
    const substitute = pkg.substituteBody?.(auth.handling, m.res.key);
    let data = substitute ?? (await this.composed(presentityKey(m.res.key, pkg.name), m.res.key, pkg));
    if (data !== undefined && substitute === undefined && auth.bodyKey !== '') data = await this.deps.transform(auth.bodyKey, data);
    if (data !== undefined && pkg.versioned) data = data.split('\u0000version\u0000').join('0');
    return data === undefined
      ? { id: m.id.toString(36), state: 'active' }
      : { id: m.id.toString(36), state: 'active', body: { type: pkg.notifyType, data } };
  }

  /**
   * Send the list's state: full when due, else the resources that changed. `final`: the
   * terminated NOTIFY with that reason. One at a time per subscription; what changes meanwhile
   * follows it.
   */
  private async sendNow(sub: ListSubscription, final?: string): Promise<void> {
    if (sub.ended && final === undefined) return;
    if (sub.sending && final === undefined) return;
    if (this.stopped) return;
    sub.sending = true;
    if (final !== undefined) sub.end();
    const rec = sub.record;
    let failed = false;
    try {
      const full = sub.full || final !== undefined;
      const keys = full ? [...sub.members.keys()] : [...sub.dirty];
      sub.full = false;
      sub.dirty.clear();
      if (keys.length === 0 && !full) return;
      const pkg = this.deps.packages.get(rec.event);
      const entries: ResourceEntry[] = await Promise.all(
        keys.map(async (k) => {
          const m = sub.members.get(k)!;
          const instance = m ? await this.instanceOf(sub, m, pkg) : undefined;
          return instance ? { uri: m.res.uri, name: m.res.name, instance } : { uri: m?.res.uri ?? k, name: m?.res.name ?? '' };
        }),
      );
      const bodies = splitNotify(
        {
          uri: rec.presentityUri,
          version: rec.winfoVersion,
          fullState: full,
          name: sub.service.name,
          resources: entries,
          tag: rec.localTag,
          host: 'rls.presenced',
        },
        this.bodyLimit(rec.transport),
      );
      for (const [i, b] of bodies.entries()) {
        const last = i === bodies.length - 1;
        rec.winfoVersion++;
        const cseq = sub.nextCseq();
        let state: string;
        if (final !== undefined && last) state = `terminated;reason=${final}`;
        else {
          state = sub.activeState();
          if (this.byId.has(sub.id)) await this.deps.store.putListSubscription(rec); // version and CSeq survive a restart
        }
        sub.lastSentAt = Date.now();
        const wire = sub.template(this.contactOf);
        const outcome = await this.deps.sender.sendRequest(
          wire.request(cseq, state, Buffer.from(b.body, 'utf8'), b.contentType),
          wire.target,
        );
        if (!this.afterOutcome(sub, outcome) || (final === undefined && sub.ended)) return;
      }
    } catch (err) {
      failed = true;
      if (!this.stopped) this.deps.log.error({ err, callId: rec.callId }, 'list NOTIFY failed');
      sub.full = true; // what it should have carried goes with the next one
    } finally {
      sub.sending = false;
      if (failed) {
        // Tried again a little later (composition or store failure), never in a tight loop.
        if (!sub.ended && !this.stopped && !sub.timer) {
          sub.timer = setTimeout(() => {
            sub.timer = undefined;
            void this.sendNow(sub);
          }, RETRY_AFTER_FAILURE_MS);
          sub.timer.unref();
        }
      } else if (!sub.ended && (sub.full || sub.dirty.size > 0)) this.schedule(sub, false);
    }
  }

  /** Whether the subscription lives on after this NOTIFY's outcome (481, transport failure, timeout end it). */
  private afterOutcome(sub: ListSubscription, outcome: ClientOutcome): boolean {
    const { status, kind, fatal, why } = notifyResult(outcome, this.deps.config.timeout_rm_subs === 1);
    if (kind === '2xx') {
      this.stats.notifies++;
      return true;
    }
    this.stats.failed++;
    this.deps.log.info({ callId: sub.record.callId, service: sub.record.presentityUri, status, why }, 'list NOTIFY not accepted');
    if (fatal && !sub.ended) {
      this.deps.store.removeListSubscription(sub.id).catch(() => undefined);
      this.end(sub, undefined, `NOTIFY answered ${status}`);
    }
    return !fatal;
  }

  // ───── back-end NOTIFYs (SIP) ─────

  /** A NOTIFY in one of the back-end subscriptions' dialogs (or 481). */
  handleNotify = (incoming: IncomingRequest): SipResponse | void => this.backends.receive(incoming);

  // ───── recovery and stop ─────

  async recover(): Promise<{ live: number; expired: number }> {
    let live = 0;
    let expired = 0;
    const now = Date.now();
    for (const rec of this.deps.store.allListSubscriptions()) {
      if (rec.expiresAt <= now) {
        expired++;
        await this.deps.store.removeListSubscription(rec.id).catch(() => undefined);
        continue;
      }
      const service = await this.deps.lists.lookup(rec.presentityUri);
      if (!service) {
        expired++;
        await this.deps.store.removeListSubscription(rec.id).catch(() => undefined);
        continue;
      }
      const sub = new ListSubscription(rec, service);
      this.add(sub);
      this.schedule(sub, true); // the state may have changed while the node was down
      live++;
    }
    return { live, expired };
  }

  stop(): void {
    this.stopped = true;
    this.expiry.clearAll();
    for (const sub of this.byId.values()) if (sub.timer) clearTimeout(sub.timer);
    this.backends.stop();
  }
}
