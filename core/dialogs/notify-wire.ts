/**
 * The wire form of one subscription dialog's NOTIFYs (RFC 6665 §4.2.2, RFC 3261 §12.2.1.1): where
 * they go, resolved once per dialog (and again only after a target refresh), and their bytes,
 * written from the dialog's record with the Via, CSeq, Subscription-State and body of each NOTIFY.
 */
import { ownString, sharedString, type OutgoingRequest } from '../../transport/message.js';
import { SipUri, NameAddr } from '../../transport/uri.js';
import type { Target, Protocol } from '../../transport/flows.js';
import type { Subscription } from '../store/records.js';

/** Where an in-dialog request goes (RFC 3261 §8.1.2, §12.2.1.1): the first route, else the remote target. Throws when neither parses. */
export function dialogTarget(routeSet: readonly string[], remoteTarget: string): Target {
  const first = routeSet[0];
  return targetOf(first !== undefined ? NameAddr.parse(first).uri : SipUri.parse(remoteTarget));
}

function targetOf(uri: SipUri): Target {
  const proto = uri.transport as Protocol;
  return { proto, host: sharedString(uri.host), port: uri.port ?? (proto === 'tls' || proto === 'wss' ? 5061 : 5060) };
}

/**
 * The Request-URI and Route header values of an in-dialog request (RFC 3261 §12.2.1.1): the
 * remote target and the route set, unless a strict router comes first in the route set: then
 * it gets the Request-URI and the remote target goes last.
 */
export function dialogRouting(routeSet: readonly string[], remoteTarget: string): { requestUri: string; routes: string[] } {
  const routes = routeSet.slice();
  if (routes.length > 0 && !/;\s*lr\b/i.test(routes[0]!)) {
    const requestUri = NameAddr.parse(routes.shift()!).uri.toString();
    routes.push(`<${remoteTarget}>`);
    return { requestUri, routes };
  }
  return { requestUri: remoteTarget, routes };
}

/** Where a NOTIFY goes: the first route, else the remote target; on the SUBSCRIBE's flow if it is still open. */
export function notifyTarget(rec: Subscription): Target {
  let target: Target;
  try {
    target = dialogTarget(rec.routeSet, rec.remoteTarget);
  } catch {
    target = targetOf(new SipUri('sip', undefined, rec.sourceAddress, rec.sourcePort, new Map(), undefined));
  }
  if (rec.flowId) target.flowId = rec.flowId;
  return target;
}

/**
 * Where one dialog's NOTIFYs go and what they carry besides the dialog's record (RFC 6665
 * §4.2.2, RFC 3261 §12.2.1.1): the target, resolved once (a URI parse), our Contact, fixed with
 * the dialog's first NOTIFY, the Request-URI and Route lines (RFC 3261 §12.2.1.1, worked out
 * once), and constant extra header lines. The rest of the dialog's header lines (From/To with
 * tags, Call-ID, Event) are written from the record at each NOTIFY: kept serialised they cost about 330 bytes per subscription, written they cost a
 * concatenation (`npm run bench -- --only micro --filter notify`).
 */
export class NotifyWire {
  /** The remote target and flow the wire was made for: a target refresh or a new flow makes a new one. */
  readonly remoteTarget: string;
  readonly flowId: string;
  // Where NOTIFYs go, as fields of the wire: one object per dialog, not two.
  private readonly proto: Protocol;
  private readonly host: string;
  private readonly port: number;
  private readonly contact: string;
  /** The Request-URI (the remote target's own string unless a strict router comes first). */
  private readonly requestUri: string;
  /** The Route header lines, CRLF-ended ('' without a route set): worked out once, not per NOTIFY. */
  private readonly routeLines: string;

  /** `extraHeaders`: more constant header lines, each ending in CRLF (a list's `Require: eventlist`). */
  constructor(
    private readonly rec: Subscription,
    contact: string,
    private readonly extraHeaders = '',
  ) {
    this.remoteTarget = rec.remoteTarget;
    this.flowId = rec.flowId;
    const t = notifyTarget(rec);
    this.proto = t.proto;
    this.host = t.host;
    this.port = t.port;
    this.contact = sharedString(contact);
    if (rec.routeSet.length === 0) {
      this.requestUri = rec.remoteTarget;
      this.routeLines = '';
    } else {
      const { requestUri, routes } = dialogRouting(rec.routeSet, rec.remoteTarget);
      this.requestUri = requestUri === rec.remoteTarget ? rec.remoteTarget : ownString(requestUri);
      this.routeLines = ownString(routes.map((r) => `Route: ${r}\r\n`).join(''));
    }
  }

  /** Where its NOTIFYs go (made per NOTIFY: a short-lived object). */
  get target(): Target {
    const t: Target = { proto: this.proto, host: this.host, port: this.port };
    if (this.flowId) t.flowId = this.flowId;
    return t;
  }

  /** One NOTIFY of this dialog. `body` is shared between watchers and never written to. */
  request(cseq: number, state: string, body: Buffer | undefined, contentType: string | undefined): OutgoingRequest {
    return new PreparedNotify(this, cseq, state, body, contentType);
  }

  serialize(via: string, cseq: number, state: string, body: Buffer | undefined, contentType: string | undefined): Buffer {
    const rec = this.rec;
    let head =
      'NOTIFY ' +
      this.requestUri +
      ' SIP/2.0\r\nVia: ' +
      via +
      '\r\nMax-Forwards: 70\r\n' +
      this.routeLines +
      'From: <' +
      rec.localUri +
      '>;tag=' +
      rec.localTag +
      '\r\nTo: <' +
      rec.watcherUri +
      (rec.remoteTag ? '>;tag=' + rec.remoteTag : '>') +
      '\r\nCall-ID: ' +
      rec.callId +
      '\r\nContact: ' +
      this.contact +
      '\r\nEvent: ' +
      (rec.eventId ? rec.event + ';id=' + rec.eventId : rec.event) +
      '\r\n' +
      this.extraHeaders +
      'CSeq: ' +
      cseq +
      ' NOTIFY\r\nSubscription-State: ' +
      state +
      '\r\n';
    if (body === undefined) return Buffer.from(head + 'Content-Length: 0\r\n\r\n', 'utf8');
    head += 'Content-Type: ' + (contentType ?? 'application/octet-stream') + '\r\nContent-Length: ' + body.length + '\r\n\r\n';
    const headLength = Buffer.byteLength(head, 'utf8');
    const out = Buffer.allocUnsafe(headLength + body.length);
    out.write(head, 0, 'utf8');
    body.copy(out, headLength);
    return out;
  }
}

class PreparedNotify implements OutgoingRequest {
  readonly method = 'NOTIFY';
  constructor(
    private readonly wire: NotifyWire,
    private readonly cseq: number,
    private readonly state: string,
    private readonly body: Buffer | undefined,
    private readonly contentType: string | undefined,
  ) {}

  serialize(topVia: string): Buffer {
    return this.wire.serialize(topVia, this.cseq, this.state, this.body, this.contentType);
  }
}
