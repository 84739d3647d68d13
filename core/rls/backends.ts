/**
 * The list server's back-end subscriptions over SIP (RFC 4662 §5): for a resource this node does
 * not serve, a SUBSCRIBE sent through outbound_proxy with the list subscriber as From, so the
 * resource's own server authorises that watcher. One per resource, event and subscriber, shared
 * by every list of that subscriber holding the resource. Its NOTIFYs are answered here and what
 * they say (state, reason, body) becomes the resource's RLMI instance; it is refreshed before it
 * expires, subscribed again after the notifier ends it with a reason that allows it (RFC 6665
 * §4.1.3: deactivated, probation, timeout), and unsubscribed when no list needs it any more.
 *
 * Back-end dialogs live in memory only: after a restart the recovered lists subscribe afresh
 * (the old dialogs' NOTIFYs get 481, which ends them at the notifier).
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { SipResponse } from '../../transport/message.js';
import type { Protocol } from '../../transport/flows.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { newCallId, newTag } from '../ids.js';
import type { SipSender } from '../dialogs/subscription-dialog.js';
import { SubscriberDialog } from '../dialogs/subscriber-dialog.js';
import type { ListResource } from './lists.js';
import type { ResourceInstance } from './rlmi.js';

export interface BackendDeps {
  config: Config;
  sender: SipSender;
  log: Logger;
  /** Our Contact for a transport. */
  contact: (proto: Protocol) => string;
  /** A back-end's state changed: the lists that hold it, and the resource (presentity key). */
  changed: (users: Iterable<object>, resourceKey: string) => void;
}

interface Backend {
  key: string;
  resource: ListResource;
  event: string;
  watcherUri: string;
  accept: string | undefined;
  dialog: SubscriberDialog;
  users: Set<object>;
  /** What the last NOTIFY (or a failed SUBSCRIBE) said; undefined until then. */
  state: Omit<ResourceInstance, 'id'> | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** Back-end subscriptions ask for an hour and are refreshed before it ends (subscriber-dialog.ts). */
const BACKEND_EXPIRES = 3600;
/** After the notifier ends one with a reason that allows it, or a refresh fails: subscribe again this much later. */
const RESUBSCRIBE_MS = 5000;
/** Outcomes of a back-end SUBSCRIBE worth trying again: overload, timeout, transport failure, server errors. */
const TRANSIENT = new Set(['408', '480', '500', '503', '504', 'transport-error']);

export class Backends {
  private readonly byKey = new Map<string, Backend>();
  /** Call-ID + our tag → back-end (NOTIFYs find theirs by it). */
  private readonly byDialog = new Map<string, Backend>();
  private limitLogged = 0;

  constructor(private readonly deps: BackendDeps) {}

  get count(): number {
    return this.byKey.size;
  }

  private static keyOf(resourceKey: string, event: string, watcherAor: string): string {
    return `${resourceKey}\u0000${event}\u0000${watcherAor}`;
  }

  acquire(user: object, resource: ListResource, event: string, watcherAor: string, watcherUri: string, accept: string | undefined): void {
    const key = Backends.keyOf(resource.key, event, watcherAor);
    const b = this.byKey.get(key);
    if (b) {
      b.users.add(user);
      return;
    }
    const max = this.deps.config.max_backend_subs;
    if (max > 0 && this.byKey.size >= max) {
      const now = Date.now();
      if (now - this.limitLogged > this.deps.config.limit_log_interval * 1000) {
        this.limitLogged = now;
        this.deps.log.warn({ max, resource: resource.uri }, 'limit reached: max_backend_subs; resource left without state');
      }
      return;
    }
    const created: Backend = {
      key,
      resource,
      event,
      watcherUri,
      accept,
      dialog: this.newDialog(resource, event, watcherUri, accept),
      users: new Set([user]),
      state: undefined,
      timer: undefined,
    };
    this.byKey.set(key, created);
    this.subscribe(created);
  }

  release(user: object, resource: ListResource, event: string, watcherAor: string): void {
    const key = Backends.keyOf(resource.key, event, watcherAor);
    const b = this.byKey.get(key);
    if (!b || !b.users.delete(user) || b.users.size > 0) return;
    this.byKey.delete(key);
    this.drop(b);
  }

  /** The RLMI instance of a resource for a subscriber; undefined while nothing is known. */
  instance(resource: ListResource, event: string, watcherAor: string, id: string): ResourceInstance | undefined {
    const b = this.byKey.get(Backends.keyOf(resource.key, event, watcherAor));
    return b?.state ? { id, ...b.state } : undefined;
  }

  private newDialog(resource: ListResource, event: string, watcherUri: string, accept: string | undefined): SubscriberDialog {
    const proxy = this.deps.config.outbound_proxy_target!;
    return new SubscriberDialog({
      resourceUri: resource.uri,
      localUri: watcherUri,
      contact: this.deps.contact(proxy.proto),
      event,
      expires: BACKEND_EXPIRES,
      ...(accept ? { accept: [accept] } : {}),
      callId: newCallId('rls.presenced'),
      localTag: newTag(),
    });
  }

  private dialogId(b: Backend): string {
    return `${b.dialog.params.callId}\u0000${b.dialog.params.localTag}`;
  }

  /** The initial SUBSCRIBE, through the outbound proxy. */
  private subscribe(b: Backend): void {
    const d = b.dialog;
    this.byDialog.set(this.dialogId(b), b);
    const req = d.initialRequest();
    this.deps.sender.sendRequest(req, this.deps.config.outbound_proxy_target!).then(
      (outcome) => {
        if (outcome.kind === 'response') d.onResponse(outcome.response);
        else d.onFailure(outcome);
        if (this.byKey.get(b.key) !== b) {
          // No list needs it any more (released while the SUBSCRIBE was on its way): end it now.
          if (b.dialog === d) this.drop(b);
          return;
        }
        if (d.state === 'terminated') {
          const status = d.reason;
          // Overload, a lost request or a server error is passing: subscribe again later (after
          // Retry-After when the answer has one, RFC 3261 §21.5.4), the resource's state unknown meanwhile.
          if (TRANSIENT.has(status)) {
            let retry: number | undefined;
            if (outcome.kind === 'response') {
              try {
                retry = outcome.response.intHeader('retry-after');
              } catch {
                retry = undefined;
              }
            }
            this.deps.log.info(
              { resource: b.resource.uri, watcherUri: b.watcherUri, status },
              'back-end SUBSCRIBE failed for now: trying again',
            );
            this.again(b, Math.min(Math.max(retry ?? RESUBSCRIBE_MS / 1000, 1), 300) * 1000);
            return;
          }
          this.set(b, { state: 'terminated', reason: status === '403' || status === '603' ? 'rejected' : 'noresource' });
          this.deps.log.info({ resource: b.resource.uri, watcherUri: b.watcherUri, status }, 'back-end SUBSCRIBE refused');
        }
        this.arm(b);
      },
      (err) => this.deps.log.error({ err, resource: b.resource.uri }, 'back-end SUBSCRIBE failed'),
    );
  }

  /** Refresh timer (or, once ended, nothing). */
  private arm(b: Backend): void {
    if (b.timer) clearTimeout(b.timer);
    b.timer = undefined;
    const at = b.dialog.refreshAt();
    if (at === undefined) return;
    b.timer = setTimeout(() => this.refresh(b), Math.max(0, at - Date.now()));
    b.timer.unref();
  }

  private refresh(b: Backend): void {
    b.timer = undefined;
    if (this.byKey.get(b.key) !== b || b.dialog.remoteTag === undefined) return;
    const d = b.dialog;
    d.send(this.deps.sender, d.refreshRequest()).then(
      () => {
        if (this.byKey.get(b.key) !== b) return;
        if (d.state === 'terminated') this.again(b, RESUBSCRIBE_MS);
        else this.arm(b);
      },
      (err) => this.deps.log.error({ err, resource: b.resource.uri }, 'back-end refresh failed'),
    );
  }

  /** A new dialog for the same back-end, `ms` from now (the old one ended). */
  private again(b: Backend, ms: number): void {
    if (b.timer) clearTimeout(b.timer);
    b.timer = setTimeout(() => {
      b.timer = undefined;
      if (this.byKey.get(b.key) !== b) return;
      this.byDialog.delete(this.dialogId(b));
      b.dialog = this.newDialog(b.resource, b.event, b.watcherUri, b.accept);
      this.subscribe(b);
    }, ms);
    b.timer.unref();
  }

  /** Unsubscribe (Expires: 0) a back-end no list needs; its final NOTIFY is answered, then forgotten. */
  private drop(b: Backend): void {
    if (b.timer) clearTimeout(b.timer);
    b.timer = undefined;
    const d = b.dialog;
    if (d.remoteTag === undefined || d.state === 'terminated') {
      this.byDialog.delete(this.dialogId(b));
      return;
    }
    d.send(this.deps.sender, d.unsubscribeRequest()).finally(() => {
      // The final NOTIFY may come after the 200: keep answering it for a while.
      setTimeout(() => this.byDialog.delete(this.dialogId(b)), 32_000).unref();
    });
  }

  private set(b: Backend, state: Omit<ResourceInstance, 'id'>): void {
    b.state = state;
    this.deps.changed(b.users, b.resource.key);
  }

  receive(incoming: IncomingRequest): SipResponse | void {
    const req = incoming.request;
    const b = this.byDialog.get(`${req.callId}\u0000${req.toTag ?? ''}`);
    if (!b) return incoming.reply(481, 'Subscription Does Not Exist');
    const verdict = b.dialog.receiveNotify(req);
    if (verdict.status !== 200) return incoming.reply(verdict.status, verdict.reason);
    incoming.respond(incoming.reply(200, 'OK'));
    if (this.byKey.get(b.key) !== b) return; // dropped: the final NOTIFY of an unsubscribe
    const body =
      verdict.body.length > 0
        ? { type: verdict.contentType ?? 'application/octet-stream', data: verdict.body.toString('utf8') }
        : undefined;
    if (verdict.state === 'terminated') {
      this.set(b, { state: 'terminated', reason: verdict.reason || 'noresource' });
      if (['deactivated', 'probation', 'timeout', ''].includes(verdict.reason))
        this.again(b, (verdict.retryAfter ?? RESUBSCRIBE_MS / 1000) * 1000);
      return;
    }
    // A NOTIFY without body keeps the body the resource had (RFC 6665 leaves the state as it was).
    const previous = b.state?.body;
    this.set(b, {
      state: verdict.state,
      ...((body ?? (verdict.state === 'active' ? previous : undefined)) ? { body: body ?? previous! } : {}),
    });
    this.arm(b);
  }

  stop(): void {
    for (const b of this.byKey.values()) if (b.timer) clearTimeout(b.timer);
  }
}
