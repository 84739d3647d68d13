/**
 * Presence helpers over TestUa: PIDF documents, PUBLISH and SUBSCRIBE shortcuts, dialogs.
 */
import { SipRequest, type SipResponse } from '../../transport/message.js';
import { TestUa, type UaProto } from './sip-ua.js';
import { XmlDocument, type XmlElement } from 'libxml2-wasm';

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

  /** The next NOTIFY of this dialog (the UA hands out a retransmission only once, see TestUa). */
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
  // An Event header among o.headers replaces the default one (never two Event headers).
  const extra = o.headers ?? [];
  const headers: Array<[string, string]> = extra.some(([k]) => k.toLowerCase() === 'event') ? [...extra] : [['event', event], ...extra];
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

// ───── additions for the presence-core end-to-end suites (issue 4) ─────

export const PIDF_NS = 'urn:ietf:params:xml:ns:pidf';
export const DM_NS = 'urn:ietf:params:xml:ns:pidf:data-model';
export const RPID_NS = 'urn:ietf:params:xml:ns:pidf:rpid';
export const DIALOG_INFO_NS = 'urn:ietf:params:xml:ns:dialog-info';
/** Prefixes for XPath over NOTIFY bodies. */
export const XPATH_NS = { p: PIDF_NS, dm: DM_NS, rpid: RPID_NS, d: DIALOG_INFO_NS };

/** A presentity URI no other test uses. */
export function uniqueUri(prefix = 'p'): string {
  return `sip:${prefix}-${Math.random().toString(36).slice(2, 10)}@example.com`;
}

/** The node's SIP port for a transport. */
export function portFor(node: { udpPort: number; tcpPort: number; tlsPort?: number }, proto: UaProto): number {
  if (proto === 'tls') {
    if (!node.tlsPort) throw new Error('the node has no TLS listener');
    return node.tlsPort;
  }
  return proto === 'udp' ? node.udpPort : node.tcpPort;
}

/** Open a TestUa towards a node over `proto`. */
export function openUa(node: { udpPort: number; tcpPort: number }, proto: UaProto): Promise<TestUa> {
  return TestUa.open(proto, portFor(node, proto));
}

export interface TupleSpec {
  id: string;
  basic: 'open' | 'closed';
  note?: string;
}

/** A PIDF document with several tuples and any extra (already namespaced) elements after them. */
export function pidfDoc(entity: string, tuples: TupleSpec[], extra = '', xmlns: Record<string, string> = {}): string {
  const decls = Object.entries(xmlns)
    .map(([prefix, uri]) => ` xmlns:${prefix}="${uri}"`)
    .join('');
  const ts = tuples
    .map((t) => `<tuple id="${t.id}"><status><basic>${t.basic}</basic></status>${t.note ? `<note>${t.note}</note>` : ''}</tuple>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${PIDF_NS}"${decls} entity="${entity}">${ts}${extra}</presence>`;
}

/** Parse an XML body with libxml2-wasm, run fn, always dispose the document. */
export function withXml<T>(body: string, fn: (doc: XmlDocument) => T): T {
  const doc = XmlDocument.fromString(body);
  try {
    return fn(doc);
  } finally {
    doc.dispose();
  }
}

/** The text of every node an XPath (prefixes from XPATH_NS) selects in an XML body. */
export function xpathTexts(body: string, xpath: string): string[] {
  return withXml(body, (doc) => doc.find(xpath, XPATH_NS).map((n) => n.content.trim()));
}

/** tuple id → basic status, in document order, of a PIDF body. */
export function tuplesOf(body: string): Array<{ id: string; basic: string }> {
  return withXml(body, (doc) =>
    doc.find('/p:presence/p:tuple', XPATH_NS).map((n) => {
      const el = n as XmlElement;
      return { id: el.attr('id')?.value ?? '', basic: el.get('p:status/p:basic', XPATH_NS)?.content.trim() ?? '' };
    }),
  );
}

/** Whether a NOTIFY body shows any tuple with basic status open (an empty body shows nothing). */
export function showsOpen(body: string): boolean {
  if (body.trim() === '') return false;
  return tuplesOf(body).some((t) => t.basic === 'open');
}

/** Subscription-State split into its value and parameters (RFC 6665 §8.2.3). */
export function parseSubState(r: SipRequest): { state: string; expires?: number; reason?: string; params: Map<string, string> } {
  const [value = '', ...rest] = subState(r).split(';');
  const params = new Map<string, string>();
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq === -1) params.set(p.trim().toLowerCase(), '');
    else params.set(p.slice(0, eq).trim().toLowerCase(), p.slice(eq + 1).trim());
  }
  const out: { state: string; expires?: number; reason?: string; params: Map<string, string> } = {
    state: value.trim().toLowerCase(),
    params,
  };
  if (params.has('expires')) out.expires = Number(params.get('expires'));
  if (params.has('reason')) out.reason = params.get('reason')!;
  return out;
}

/** The body of a message as text. */
export function bodyOf(m: SipRequest | SipResponse): string {
  return m.body.toString('utf8');
}

/**
 * Wait `ms` and return the requests of `method` matching pred that arrived meanwhile; a test
 * asserts the list is empty to show that nothing was sent.
 */
export async function collectFor(ua: TestUa, method: string, pred: (r: SipRequest) => boolean, ms: number): Promise<SipRequest[]> {
  const since = Date.now();
  await new Promise((r) => setTimeout(r, ms));
  return ua.received
    .filter((x) => x.at >= since && x.message instanceof SipRequest)
    .map((x) => x.message as SipRequest)
    .filter((m) => m.method === method && pred(m));
}

/**
 * A fetch (SUBSCRIBE with Expires: 0, RFC 6665 §4.4.3) of `presentity` from `ua`, waited for
 * until its terminated NOTIFY arrived: NOTIFYs the node owed `ua` for earlier requests about
 * that presentity were queued before it. A barrier for "nothing was sent": better than a fixed
 * window, which is too short on a loaded machine and misses what came before it started.
 */
export async function fetchBarrier(ua: TestUa, presentity: string, event = 'presence'): Promise<void> {
  const { res, dialog } = await subscribe(ua, presentity, { event, expires: 0 });
  if (res.status < 200 || res.status > 299) throw new Error(`fetch of ${presentity} (${event}) answered ${res.status} ${res.reason}`);
  await dialog.nextNotify(undefined, (r) => subState(r).startsWith('terminated'));
}

/**
 * The requests of `method` matching pred that `ua` received from index `mark` (a
 * `ua.received.length` taken before the action) on, once fetchBarrier(ua, presentity) is
 * through: a test asserts the list is empty to show that nothing was sent.
 */
export async function receivedSince(
  ua: TestUa,
  mark: number,
  method: string,
  pred: (r: SipRequest) => boolean,
  presentity: string,
  event = 'presence',
): Promise<SipRequest[]> {
  await fetchBarrier(ua, presentity, event);
  return ua.received
    .slice(mark)
    .filter((x) => x.message instanceof SipRequest)
    .map((x) => x.message as SipRequest)
    .filter((m) => m.method === method && pred(m));
}

/** A NOTIFY's CSeq number. */
export function cseqOf(r: SipRequest): number {
  return r.cseq.seq;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** SUBSCRIBE, require a 2xx, and return the dialog with its first (immediate) NOTIFY. */
export async function watch(
  ua: TestUa,
  presentity: string,
  o: { event?: string; expires?: number; headers?: Array<[string, string]> } = {},
): Promise<{ res: SipResponse; dialog: Dialog; first: SipRequest }> {
  const { res, dialog } = await subscribe(ua, presentity, { expires: 600, ...o });
  if (res.status < 200 || res.status > 299) throw new Error(`SUBSCRIBE to ${presentity} answered ${res.status} ${res.reason}`);
  const first = await dialog.nextNotify();
  return { res, dialog, first };
}

/**
 * The keys a stopped node left in its LMDB store (databases named in core/store/store.ts):
 * to check that ended subscriptions and gone publications leave no record behind.
 */
export async function storedKeys(dbUrl: string): Promise<{ subscriptions: string[]; cseqs: string[]; publications: string[][] }> {
  const { open } = await import('lmdb');
  const env = open({ path: dbUrl.replace(/^lmdb:/, ''), maxDbs: 16, readOnly: true });
  try {
    const keys = (name: string): unknown[] => [...env.openDB({ name, encoding: 'binary', readOnly: true } as never).getKeys({})];
    return {
      subscriptions: keys('subscription').map(String),
      cseqs: keys('cseq').map(String),
      publications: keys('publication') as string[][],
    };
  } finally {
    await env.close();
  }
}

/** Run `fn` with a fresh UA on the node, closed afterwards. */
export async function withUa<T>(n: { udpPort: number; tcpPort: number }, proto: 'udp' | 'tcp', fn: (ua: TestUa) => Promise<T>): Promise<T> {
  const ua = await openUa(n, proto);
  try {
    return await fn(ua);
  } finally {
    await ua.close();
  }
}

/** Run `fn` with `count` fresh UAs on the node, closed afterwards. */
export async function withUas<T>(
  n: { udpPort: number; tcpPort: number },
  proto: 'udp' | 'tcp',
  count: number,
  fn: (...uas: TestUa[]) => Promise<T>,
): Promise<T> {
  const uas = await Promise.all(Array.from({ length: count }, () => openUa(n, proto)));
  try {
    return await fn(...uas);
  } finally {
    await Promise.all(uas.map((u) => u.close()));
  }
}

// ───── watcher info (RFC 3858) ─────

export const WATCHERINFO_NS = 'urn:ietf:params:xml:ns:watcherinfo';

export interface WinfoWatcher {
  id: string;
  uri: string;
  status: string;
  event: string;
}

export interface WinfoDoc {
  version: number;
  state: string;
  watchers: WinfoWatcher[];
}

/** A watcherinfo document's version, state and <watcher> elements, in document order. */
export function parseWinfo(xml: string): WinfoDoc {
  return withXml(xml, (doc) => {
    const root = doc.root;
    const watchers = doc.find('/w:watcherinfo/w:watcher-list/w:watcher', { w: WATCHERINFO_NS }).map((n) => {
      const el = n as XmlElement;
      return {
        id: el.attr('id')?.value ?? '',
        uri: el.content.trim(),
        status: el.attr('status')?.value ?? '',
        event: el.attr('event')?.value ?? '',
      };
    });
    return { version: Number(root.attr('version')?.value), state: root.attr('state')?.value ?? '', watchers };
  });
}

/**
 * SUBSCRIBE to `presentity`'s presence.winfo with From `from` (the presentity itself for its
 * owner), from any UA: a restarted node listens elsewhere, but the owner stays the same.
 */
export async function subscribeWinfo(
  ua: TestUa,
  presentity: string,
  from: string,
  expires = 600,
): Promise<{ res: SipResponse; dialog: Dialog }> {
  const fromTag = Math.random().toString(36).slice(2);
  const callId = `${Math.random().toString(36).slice(2)}@winfo`;
  const res = await ua.request({
    method: 'SUBSCRIBE',
    uri: presentity,
    from: `<${from}>;tag=${fromTag}`,
    to: `<${presentity}>`,
    callId,
    headers: [
      ['event', 'presence.winfo'],
      ['accept', 'application/watcherinfo+xml'],
      ['expires', String(expires)],
    ],
  });
  return { res, dialog: new Dialog(ua, presentity, 'presence.winfo', callId, fromTag, res.toTag ?? '') };
}

// ───── pres-rules over the embedded XCAP server ─────

export interface RuleSpec {
  id: string;
  /** Children of <cr:identity>, e.g. `<cr:one id="sip:bob@example.com"/>`. */
  who: string;
  /** pr:sub-handling; none when absent. */
  handling?: string;
  /** presenced's wr:winfo-handling (README "XCAP"); none when absent. */
  winfo?: string;
  transformations?: string;
}

export const WINFO_RULES_NS = 'urn:presenced:params:xml:ns:winfo-rules';

/** A pres-rules document (RFC 5025) with one <cr:rule> per spec. */
export function rules(entries: RuleSpec[]): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?><cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" ' +
    `xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:wr="${WINFO_RULES_NS}">` +
    entries
      .map(
        (e) =>
          `<cr:rule id="${e.id}"><cr:conditions><cr:identity>${e.who}</cr:identity></cr:conditions><cr:actions>` +
          (e.handling ? `<pr:sub-handling>${e.handling}</pr:sub-handling>` : '') +
          (e.winfo ? `<wr:winfo-handling>${e.winfo}</wr:winfo-handling>` : '') +
          '</cr:actions>' +
          (e.transformations ? `<cr:transformations>${e.transformations}</cr:transformations>` : '') +
          '</cr:rule>',
      )
      .join('') +
    '</cr:ruleset>'
  );
}

/** PUT a presentity's pres-rules `index` document on a node's XCAP server; resolves with the status. */
export async function putRules(xcapPort: number, presentity: string, xml: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${xcapPort}/xcap-root/pres-rules/users/${encodeURIComponent(presentity)}/index`, {
    method: 'PUT',
    headers: { 'content-type': 'application/auth-policy+xml' },
    body: xml,
  });
  await r.text();
  return r.status;
}
