/**
 * Presence helpers over TestUa: PIDF documents, PUBLISH and SUBSCRIBE shortcuts, dialogs.
 */
import type { SipRequest, SipResponse } from '../../transport/message.js';
import type { TestUa } from './sip-ua.js';

export function pidf(entity: string, tupleId: string, basic: 'open' | 'closed', note?: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${entity}">` +
    `<tuple id="${tupleId}"><status><basic>${basic}</basic></status>${note ? `<note>${note}</note>` : ''}</tuple></presence>`
  );
}

export interface PublishOptions {
  event?: string;
  etag?: string;
  expires?: number;
  body?: string;
  contentType?: string;
  headers?: Array<[string, string]>;
}

export function publish(ua: TestUa, presentity: string, o: PublishOptions = {}): Promise<SipResponse> {
  const headers: Array<[string, string]> = [['event', o.event ?? 'presence'], ...(o.headers ?? [])];
  if (o.etag !== undefined) headers.push(['sip-if-match', o.etag]);
  if (o.expires !== undefined) headers.push(['expires', String(o.expires)]);
  return ua.request({
    method: 'PUBLISH',
    uri: presentity,
    to: `<${presentity}>`,
    from: `<${presentity}>;tag=${Math.random().toString(36).slice(2)}`,
    headers,
    body: o.body,
    contentType: o.body !== undefined ? (o.contentType ?? 'application/pidf+xml') : undefined,
  });
}

/** A subscriber-side dialog, enough to refresh, unsubscribe and check NOTIFYs. */
export class Dialog {
  cseq = 1;
  constructor(
    readonly ua: TestUa,
    readonly presentity: string,
    readonly event: string,
    readonly callId: string,
    readonly fromTag: string,
    public toTag: string,
  ) {}

  request(expires: number | undefined, extra: Array<[string, string]> = []): Promise<SipResponse> {
    this.cseq++;
    const headers: Array<[string, string]> = [['event', this.event], ...extra];
    if (expires !== undefined) headers.push(['expires', String(expires)]);
    return this.ua.request({
      method: 'SUBSCRIBE',
      uri: this.presentity,
      from: `<${this.ua.aor}>;tag=${this.fromTag}`,
      to: `<${this.presentity}>;tag=${this.toTag}`,
      callId: this.callId,
      cseq: this.cseq,
      headers,
    });
  }

  /** The next NOTIFY of this dialog. */
  nextNotify(timeoutMs = 5000, pred: (r: SipRequest) => boolean = () => true): Promise<SipRequest> {
    return this.ua.nextRequest('NOTIFY', (r) => r.callId === this.callId && pred(r), timeoutMs);
  }

  notifies(): SipRequest[] {
    return this.ua.requests('NOTIFY').filter((r) => r.callId === this.callId);
  }
}

export async function subscribe(
  ua: TestUa,
  presentity: string,
  o: { event?: string; expires?: number; headers?: Array<[string, string]> } = {},
): Promise<{ res: SipResponse; dialog: Dialog }> {
  const event = o.event ?? 'presence';
  const fromTag = Math.random().toString(36).slice(2);
  const callId = `${Math.random().toString(36).slice(2)}@test`;
  const headers: Array<[string, string]> = [['event', event], ...(o.headers ?? [])];
  if (o.expires !== undefined) headers.push(['expires', String(o.expires)]);
  const res = await ua.request({
    method: 'SUBSCRIBE',
    uri: presentity,
    from: `<${ua.aor}>;tag=${fromTag}`,
    to: `<${presentity}>`,
    callId,
    headers,
  });
  return { res, dialog: new Dialog(ua, presentity, event, callId, fromTag, res.toTag ?? '') };
}

export function subState(r: SipRequest): string {
  return r.headers.get('subscription-state') ?? '';
}
