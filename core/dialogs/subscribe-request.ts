/**
 * What every UAS of a subscription reads off a request, the presence server's (sip/) and the
 * list server's (rls/) alike: the Expires rules PUBLISH and SUBSCRIBE share (RFC 3903 §6 step 4,
 * RFC 6665 §4.2.1.1, with the presence module's min_expires / max_expires / default_expires /
 * min_expires_action), Accept matching, the one Contact of a dialog-creating SUBSCRIBE, and the
 * dialog's record built from the request.
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { SipRequest } from '../../transport/message.js';
import { NameAddr } from '../../transport/uri.js';
import type { Config } from '../config.js';
import { SipError } from '../errors.js';
import { SCHEMA_VERSION, compactSubscription, type Subscription } from '../store/records.js';

/** The granted lifetime in seconds (0 = remove/unsubscribe), at most `max`; throws 423 or 400. */
export function grantedExpires(req: SipRequest, config: Config, max = config.max_expires): number {
  let requested: number | undefined;
  try {
    requested = req.intHeader('expires');
  } catch {
    throw new SipError(400, 'Malformed Expires header');
  }
  if (requested === undefined) return Math.min(config.default_expires, max);
  if (requested === 0) return 0;
  if (requested < config.min_expires) {
    if (config.min_expires_action === 1) throw new SipError(423, 'Interval Too Brief', [['min-expires', String(config.min_expires)]]);
    return config.min_expires;
  }
  return Math.min(requested, max);
}

/**
 * Accept matching (RFC 3261 §20.1, HTTP semantics): the most specific media range that matches
 * (the type, then type/*, then * / *) decides, and q=0 on it means "not acceptable".
 */
export function accepts(accept: string[], type: string): boolean {
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

/** The remote target of a dialog-creating SUBSCRIBE: its one Contact's URI (RFC 6665 §4.1.2.1); throws 400. */
export function remoteTargetOf(req: SipRequest): string {
  const contacts = req.headers.getAll('contact');
  if (contacts.length === 0) throw new SipError(400, 'Missing Contact header');
  if (contacts.length > 1) throw new SipError(400, 'More than one Contact in SUBSCRIBE');
  try {
    return NameAddr.parse(contacts[0]!).uri.toString();
  } catch {
    throw new SipError(400, 'Malformed Contact header');
  }
}

/** What the notifier decides of a new subscription; the rest of its record comes from the request. */
export interface NewDialog {
  localTag: string;
  presentityUri: string;
  event: string;
  eventId: string;
  remoteTarget: string;
  expires: number;
  state: 'active' | 'pending';
  subHandling: string;
  minInterval: number;
  maxInterval: number;
  eventView: string;
}

/**
 * The record of the dialog an initial SUBSCRIBE creates (notifier side), in the compact form a
 * live node keeps (store/records.ts compactSubscription: the rare fields aside). Its strings are
 * still slices of the request: the caller owns them (ownStrings).
 */
export function dialogRecord(incoming: IncomingRequest, d: NewDialog, now: number): Subscription {
  const req = incoming.request;
  const from = req.from;
  return compactSubscription({
    schema: SCHEMA_VERSION,
    id: d.localTag,
    presentityUri: d.presentityUri,
    event: d.event,
    eventId: d.eventId,
    watcherUri: from.uri.toString(),
    watcherDisplay: from.displayName ?? '',
    callId: req.callId,
    localTag: d.localTag,
    // RFC 4475 §3.4.1: an RFC 2543 peer sends no From tag; its dialog is keyed with an empty one.
    remoteTag: from.tag ?? '',
    remoteCseq: req.cseq.seq,
    localCseq: 0,
    routeSet: req.headers.getAll('record-route'),
    remoteTarget: d.remoteTarget,
    transport: incoming.source.proto,
    flowId: incoming.source.flow?.id ?? '',
    sourceAddress: incoming.source.address,
    sourcePort: incoming.source.port,
    expiresAt: now + d.expires * 1000,
    state: d.state,
    reason: '',
    localUri: req.to.uri.toString(),
    accept: req.headers.getAll('accept').join(', '),
    winfoVersion: 0,
    createdAt: now,
    subHandling: d.subHandling,
    minInterval: d.minInterval,
    maxInterval: d.maxInterval,
    eventView: d.eventView,
    winfoId: '',
    winfoEvent: '',
  });
}
