/**
 * One RFC 6665 subscription dialog, subscriber side: the node subscribing to a resource itself
 * (the list server's back-end subscriptions, RFC 4662 §5). It builds the initial SUBSCRIBE,
 * becomes a dialog with the first 2xx or NOTIFY (whichever comes first, RFC 6665 §4.1.2.4),
 * checks each NOTIFY (dialog, CSeq, Event, Subscription-State: §4.1.3, RFC 3261 §12.2.2) and
 * builds the refresh and unsubscribe requests (§4.1.2.2, §4.1.2.3). It sends through a SipSender,
 * so it runs against the real stack or a fake one alike. The notifier side is subscription-dialog.ts.
 */
import { SipRequest, ownString, type SipResponse } from '../../transport/message.js';
import { NameAddr } from '../../transport/uri.js';
import { parseParams } from '../../transport/grammar.js';
import type { Target } from '../../transport/flows.js';
import type { ClientOutcome } from '../../transport/stack.js';
import { dialogKey } from '../uris.js';
import type { SipSender } from './subscription-dialog.js';
import { dialogRouting, dialogTarget } from './notify-wire.js';

/** RFC 6665 §4.1.2: before any answer `init`; then what the notifier says (pending, active), or over. */
export type SubscriberState = 'init' | 'pending' | 'active' | 'terminated';

export interface SubscribeParams {
  /** The resource subscribed to: Request-URI and To of the initial SUBSCRIBE. */
  resourceUri: string;
  /** Who subscribes: our From. */
  localUri: string;
  /** Our Contact header value (where NOTIFYs come). */
  contact: string;
  /** Event package (and RFC 6665 §8.2.1 id when several subscriptions share a dialog's identity). */
  event: string;
  eventId?: string;
  /** Duration asked for, in seconds (each refresh asks for it again). */
  expires: number;
  accept?: readonly string[];
  callId: string;
  localTag: string;
  /** A preloaded route set (an outbound proxy) for the initial request. */
  route?: readonly string[];
}

/** What to answer a NOTIFY, and what it said when it is accepted (200). */
export type NotifyVerdict =
  | {
      status: 200;
      state: 'pending' | 'active' | 'terminated';
      /** terminated: the reason parameter (RFC 6665 §4.1.3), lower-cased; '' without one. */
      reason: string;
      /** terminated: retry-after, in seconds. */
      retryAfter?: number;
      body: Buffer;
      contentType: string | undefined;
    }
  | { status: 400 | 481 | 500; reason: string };

/** How far ahead of expiry a refresh is due (RFC 6665 §4.1.2.2 leaves it to us): a third, at most 30 s. */
function refreshMargin(durationMs: number): number {
  return Math.min(Math.floor(durationMs / 3), 30_000);
}

export class SubscriberDialog {
  state: SubscriberState = 'init';
  /** The notifier's tag (its To tag in the 2xx, its From tag in NOTIFYs); undefined until the dialog exists. */
  remoteTag: string | undefined;
  /** RFC 3261 §12.1.2: the Record-Route of the 2xx, reversed (or of the first NOTIFY, in order). */
  routeSet: string[];
  /** Where in-dialog requests go: the notifier's Contact (target refresh on every NOTIFY and 2xx). */
  remoteTarget: string;
  /** CSeq of our last SUBSCRIBE. */
  localCseq = 0;
  /** CSeq of the last NOTIFY accepted (undefined before the first). */
  remoteCseq: number | undefined;
  /** When the subscription ends unless refreshed (ms since epoch); 0 before the first answer. */
  expiresAt = 0;
  /** Why it ended (terminated): a Subscription-State reason, or the status of a failed SUBSCRIBE. */
  reason = '';
  /** terminated: seconds the notifier asked us to wait before subscribing again (retry-after). */
  retryAfter: number | undefined;
  /** When the last SUBSCRIBE was sent, for its Expires (the 2xx's counts from about then). */
  private askedAt = 0;
  /** The duration asked for last (0 = an unsubscribe is on its way). */
  private asked: number;

  constructor(readonly params: SubscribeParams) {
    this.routeSet = [...(params.route ?? [])];
    this.remoteTarget = params.resourceUri;
    this.asked = params.expires;
  }

  get dialogKey(): string {
    return dialogKey(this.params.callId, this.params.localTag, this.remoteTag ?? '');
  }

  /** The initial SUBSCRIBE (RFC 6665 §4.1.2.1). */
  initialRequest(now = Date.now()): SipRequest {
    return this.request(this.params.expires, now);
  }

  /** A refresh (§4.1.2.2): the same dialog, a higher CSeq, the duration asked again. */
  refreshRequest(now = Date.now()): SipRequest {
    if (this.remoteTag === undefined) throw new Error('no dialog yet: send the initial SUBSCRIBE again instead');
    return this.request(this.params.expires, now);
  }

  /** An unsubscribe (§4.1.2.3): Expires 0; a final NOTIFY follows. */
  unsubscribeRequest(now = Date.now()): SipRequest {
    if (this.remoteTag === undefined) throw new Error('no dialog yet');
    return this.request(0, now);
  }

  /**
   * When a refresh is due (ms since epoch): a margin before expiry taken from the duration granted
   * (a third of it, at most 30 s); undefined when none will be (not active or pending, no expiry
   * known yet, or an unsubscribe on its way).
   */
  refreshAt(): number | undefined {
    if (this.state !== 'active' && this.state !== 'pending') return undefined;
    if (this.asked === 0 || this.expiresAt === 0) return undefined;
    const granted = Math.min(this.params.expires * 1000, Math.max(0, this.expiresAt - this.askedAt));
    return this.expiresAt - refreshMargin(granted);
  }

  /** Whether a refresh should be sent now (an active or pending dialog close to its expiry). */
  refreshDue(now = Date.now()): boolean {
    const at = this.refreshAt();
    return at !== undefined && now >= at;
  }

  /** Where the next request goes: the first route, else the remote target (RFC 3261 §8.1.2). */
  target(): Target {
    return dialogTarget(this.routeSet, this.remoteTarget);
  }

  private request(expires: number, now: number): SipRequest {
    const p = this.params;
    const { requestUri, routes } = dialogRouting(this.routeSet, this.remoteTarget);
    const req = new SipRequest('SUBSCRIBE', requestUri);
    const h = req.headers;
    h.append('max-forwards', '70');
    for (const r of routes) h.append('route', r);
    h.append('from', `<${p.localUri}>;tag=${p.localTag}`);
    h.append('to', this.remoteTag === undefined ? `<${p.resourceUri}>` : `<${p.resourceUri}>;tag=${this.remoteTag}`);
    h.append('call-id', p.callId);
    h.append('cseq', `${++this.localCseq} SUBSCRIBE`);
    h.append('event', p.eventId ? `${p.event};id=${p.eventId}` : p.event);
    h.append('expires', String(expires));
    h.append('contact', p.contact);
    if (p.accept && p.accept.length > 0) h.append('accept', p.accept.join(', '));
    this.asked = expires;
    this.askedAt = now;
    return req;
  }

  /**
   * The final response to our last SUBSCRIBE. A 2xx creates the dialog (the first one: its To
   * tag, reversed Record-Route, Contact) and sets the expiry from its Expires (RFC 6665
   * §4.1.2.1: the duration granted). A failure ends a subscription that has no dialog yet; a
   * failed refresh ends it on 481 or 408 (§4.1.2.2: the subscription is gone), and otherwise it
   * stays until it expires.
   */
  onResponse(res: SipResponse, now = Date.now()): void {
    if (this.state === 'terminated') return;
    if (res.status >= 200 && res.status < 300) {
      if (this.remoteTag === undefined) {
        const tag = res.toTag;
        if (tag === undefined) return; // not a dialog-creating 2xx: wait for the NOTIFY
        this.remoteTag = ownString(tag);
        this.routeSet = res.headers.getAll('record-route').reverse().map(ownString);
      }
      this.takeContact(res.headers.get('contact'));
      if (this.asked === 0) return; // an unsubscribe: the final NOTIFY ends it
      let granted = this.asked;
      try {
        granted = res.intHeader('expires') ?? this.asked;
      } catch {
        // A malformed Expires in a 2xx: keep what we asked for (it is at most that, §4.1.2.1).
      }
      this.expiresAt = this.askedAt + Math.min(granted, this.asked) * 1000;
      if (this.state === 'init') this.state = 'pending'; // until a NOTIFY says active
      return;
    }
    if (res.status < 200) return;
    if (this.remoteTag === undefined || res.status === 481 || res.status === 408 || this.asked === 0) {
      this.end(String(res.status));
    }
  }

  /** A SUBSCRIBE that got no response (Timer F, transport failure). */
  onFailure(outcome: Exclude<ClientOutcome, { kind: 'response' }>): void {
    if (this.remoteTag === undefined || this.asked === 0) this.end(outcome.kind === 'timeout' ? '408' : 'transport-error');
  }

  /** Send a SUBSCRIBE (initial, refresh or unsubscribe) and apply its outcome. */
  async send(sender: SipSender, req: SipRequest): Promise<ClientOutcome> {
    const outcome = await sender.sendRequest(req, this.target());
    if (outcome.kind === 'response') this.onResponse(outcome.response);
    else this.onFailure(outcome);
    return outcome;
  }

  /** A NOTIFY for this subscription (RFC 6665 §4.1.3): what to answer, and, when accepted, the state it carries. */
  receiveNotify(req: SipRequest, now = Date.now()): NotifyVerdict {
    const p = this.params;
    // RFC 6665 §4.1.3: a NOTIFY that matches no subscription of ours gets 481.
    if (req.callId !== p.callId || req.toTag !== p.localTag) return { status: 481, reason: 'Subscription Does Not Exist' };
    const fromTag = req.fromTag;
    if (fromTag === undefined) return { status: 400, reason: 'Missing From tag' };
    if (this.state === 'terminated') return { status: 481, reason: 'Subscription Does Not Exist' };
    if (this.remoteTag !== undefined && fromTag !== this.remoteTag) return { status: 481, reason: 'Subscription Does Not Exist' };
    const event = req.headers.get('event');
    if (event === undefined) return { status: 400, reason: 'Missing Event header' };
    const semi = event.indexOf(';');
    const name = (semi === -1 ? event : event.slice(0, semi)).trim().toLowerCase();
    const id = semi === -1 ? undefined : parseParams(event, semi).get('id');
    if (name !== p.event.toLowerCase() || (id ?? '') !== (p.eventId ?? '')) return { status: 481, reason: 'Subscription Does Not Exist' };
    let cseq: number;
    try {
      cseq = req.cseq.seq;
    } catch {
      return { status: 400, reason: 'Malformed CSeq' };
    }
    // RFC 3261 §12.2.2: a lower CSeq than the last one is out of order.
    if (this.remoteCseq !== undefined && cseq < this.remoteCseq) return { status: 500, reason: 'CSeq Out Of Order' };
    const raw = req.headers.get('subscription-state');
    if (raw === undefined) return { status: 400, reason: 'Missing Subscription-State' };
    const ss = raw.indexOf(';');
    const value = (ss === -1 ? raw : raw.slice(0, ss)).trim().toLowerCase();
    const params = ss === -1 ? new Map<string, string>() : parseParams(raw, ss);
    const expires = params.get('expires');
    const retryAfter = params.get('retry-after');
    if ((expires !== undefined && !/^\d+$/.test(expires)) || (retryAfter !== undefined && !/^\d+$/.test(retryAfter))) {
      return { status: 400, reason: 'Malformed Subscription-State' };
    }

    // Accepted: the first NOTIFY creates the dialog when it beats the 2xx (§4.1.2.4); its
    // Record-Route, in order, is the route set (RFC 3261 §12.1.1).
    if (this.remoteTag === undefined) {
      this.remoteTag = ownString(fromTag);
      this.routeSet = req.headers.getAll('record-route').map(ownString);
    }
    this.remoteCseq = cseq;
    this.takeContact(req.headers.get('contact')); // NOTIFY is a target refresh request (§4.1.3 with RFC 3261 §12.2)
    const body = req.body;
    const contentType = req.contentType;
    if (value === 'terminated') {
      this.end(params.get('reason')?.toLowerCase() ?? '');
      if (retryAfter !== undefined) this.retryAfter = Number(retryAfter);
      return retryAfter !== undefined
        ? { status: 200, state: 'terminated', reason: this.reason, retryAfter: Number(retryAfter), body, contentType }
        : { status: 200, state: 'terminated', reason: this.reason, body, contentType };
    }
    // §4.1.3: an expires parameter tells the duration left (never longer than we asked for).
    if (expires !== undefined) this.expiresAt = now + Math.min(Number(expires), this.params.expires) * 1000;
    // active, or pending; an extension value we do not know is read as pending (RFC 6665 §8.2.3 allows them).
    this.state = value === 'active' ? 'active' : 'pending';
    return { status: 200, state: this.state, reason: '', body, contentType };
  }

  private takeContact(contact: string | undefined): void {
    if (contact === undefined) return;
    try {
      this.remoteTarget = ownString(NameAddr.parse(contact).uri.toString());
    } catch {
      // A Contact we cannot parse changes nothing: the target stays the last good one.
    }
  }

  private end(reason: string): void {
    this.state = 'terminated';
    this.reason = reason;
  }
}
