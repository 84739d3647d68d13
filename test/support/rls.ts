/**
 * Resource list (RFC 4662 / RFC 4826) helpers for tests: rls-services and resource-lists
 * documents, list SUBSCRIBEs, and a subscriber's view of a list that applies each NOTIFY the
 * way RFC 4662 §4.6 tells a subscriber to (full state replaces, partial state updates, the
 * version goes up by one per NOTIFY).
 */
import { createHash } from 'node:crypto';
import type { SipRequest, SipResponse } from '../../transport/message.js';
import { Dialog } from './presence.js';
import type { TestUa } from './sip-ua.js';
import { NS, CT, type Xcap } from './xcap-http.js';
import { parseListNotify, type ListNotify, type MimePart } from './rlmi.js';

/** What a list subscriber's SUBSCRIBE carries (RFC 4662 §4.1, §4.3). */
export const LIST_HEADERS: Array<[string, string]> = [
  ['supported', 'eventlist'],
  ['accept', 'application/pidf+xml, application/rlmi+xml, multipart/related'],
];

export interface ServiceSpec {
  uri: string;
  /** The inner XML of <list> (entries in the rl: prefix, e.g. `<rl:entry uri="..."/>`), or a <resource-list> URI. */
  list?: string;
  resourceList?: string;
  /** <packages>; none when undefined. */
  packages?: string[];
}

/** An rls-services document (RFC 4826 §4.2); the resource-lists namespace is bound to "rl". */
export function rlsServices(services: ServiceSpec[]): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}">` +
    services
      .map(
        (s) =>
          `<service uri="${esc(s.uri)}">` +
          (s.resourceList !== undefined ? `<resource-list>${esc(s.resourceList)}</resource-list>` : `<list>${s.list ?? ''}</list>`) +
          (s.packages ? `<packages>${s.packages.map((p) => `<package>${p}</package>`).join('')}</packages>` : '') +
          '</service>',
      )
      .join('') +
    '</rls-services>\n'
  );
}

/** `<rl:entry uri>` with an optional display name. */
export const entry = (uri: string, name?: string): string =>
  name === undefined ? `<rl:entry uri="${uri}"/>` : `<rl:entry uri="${uri}"><rl:display-name>${name}</rl:display-name></rl:entry>`;

/**
 * The rls-services document name for a service: one document per service (by its first
 * service URI), so that tests of one owner do not replace each other's lists.
 */
export const docFor = (service: string): string => `rls-${createHash('sha1').update(service).digest('hex').slice(0, 12)}`;

/** PUT `owner`'s rls-services document (default name: docFor of its first service URI). */
export async function putServices(
  xcap: Xcap,
  owner: string,
  xml: string,
  doc = docFor(/<service uri="([^"]*)"/.exec(xml)?.[1] ?? ''),
): Promise<void> {
  const r = await xcap.put(`/rls-services/users/${owner}/${doc}`, xml, CT.rlsServices);
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT rls-services of ${owner}: ${r.status} ${r.text}`);
}

export async function putLists(xcap: Xcap, owner: string, xml: string, doc = 'index'): Promise<void> {
  const r = await xcap.put(`/resource-lists/users/${owner}/${doc}`, xml, CT.resourceLists);
  if (r.status !== 200 && r.status !== 201) throw new Error(`PUT resource-lists of ${owner}: ${r.status} ${r.text}`);
}

/** A SUBSCRIBE to a service URI from `ua` (From = ua.aor); `eventlist: false` leaves out Supported: eventlist. */
export async function subscribeList(
  ua: TestUa,
  service: string,
  o: { event?: string; expires?: number; eventlist?: boolean } = {},
): Promise<{ res: SipResponse; dialog: Dialog }> {
  const event = o.event ?? 'presence';
  const fromTag = Math.random().toString(36).slice(2);
  const callId = `${Math.random().toString(36).slice(2)}@rls`;
  const headers: Array<[string, string]> = [
    ['event', event],
    ['expires', String(o.expires ?? 600)],
    ...(o.eventlist === false ? LIST_HEADERS.slice(1) : LIST_HEADERS),
  ];
  const res = await ua.request({
    method: 'SUBSCRIBE',
    uri: service,
    from: `<${ua.aor}>;tag=${fromTag}`,
    to: `<${service}>`,
    callId,
    headers,
  });
  return { res, dialog: new Dialog(ua, service, event, callId, fromTag, res.toTag ?? '') };
}

/** Refresh (or with 0, end) a list subscription, with the list headers again. */
export function refreshList(dialog: Dialog, expires: number): Promise<SipResponse> {
  return dialog.request(expires, LIST_HEADERS);
}

/** Whether a header's comma-separated option tags include `tag`. */
export function hasOptionTag(m: SipRequest | SipResponse, header: string, tag: string): boolean {
  return m.headers
    .getAll(header)
    .flatMap((v) => v.split(','))
    .some((t) => t.trim().toLowerCase() === tag);
}

export interface ResourceView {
  state: string;
  reason?: string;
  names: string[];
  body?: MimePart;
}

/**
 * A list subscriber's picture of the list (RFC 4662 §4.6): a full-state NOTIFY replaces it, a
 * partial one updates the resources it names. Each apply() checks the version is the previous
 * one plus one (0 first) and keeps the NOTIFYs.
 */
export class ListView {
  readonly resources = new Map<string, ResourceView>();
  readonly order: string[] = [];
  version = -1;
  readonly notifies: Array<{ req: SipRequest; parsed: ListNotify }> = [];

  apply(req: SipRequest): ListNotify {
    const parsed = parseListNotify(req);
    const v = parsed.list.version;
    if (v !== this.version + 1) throw new Error(`RLMI version ${v} after ${this.version}: must go up by one per NOTIFY (RFC 4662 §5.2)`);
    this.version = v;
    if (parsed.list.fullState) {
      this.resources.clear();
      this.order.length = 0;
    }
    for (const r of parsed.list.resources) {
      const inst = r.instances[0];
      const view: ResourceView = { state: inst?.state ?? 'none', names: r.names };
      if (inst?.reason !== undefined) view.reason = inst.reason;
      if (inst?.cid !== undefined) view.body = parsed.parts.get(inst.cid);
      if (!this.resources.has(r.uri)) this.order.push(r.uri);
      this.resources.set(r.uri, view);
    }
    this.notifies.push({ req, parsed });
    return parsed;
  }

  /** Apply the dialog's NOTIFYs until `done` holds for the view (backstop: the test wait). */
  async until(dialog: Dialog, done: (v: ListView) => boolean): Promise<void> {
    while (!done(this)) this.apply(await dialog.nextNotify());
  }
}
