/**
 * The body of a list NOTIFY (RFC 4662 §5): multipart/related (RFC 2387) whose root part, named
 * by `start`, is the RLMI document (application/rlmi+xml), followed by one part per resource
 * instance that has state to show, each named by the instance's cid (RFC 2392 Content-ID).
 * Parts use CRLF line ends, Content-Transfer-Encoding binary, and the closing delimiter
 * `--boundary--` (RFC 2046 §5.1.1); the boundary is checked not to occur inside any part.
 *
 * A body longer than max_notify_body_length is split (splitNotify): the first NOTIFY carries the
 * RLMI of every resource it was asked to show and as many resource parts as fit; the parts that
 * did not fit follow in partial-state NOTIFYs, each naming only the resources it carries.
 */
import { randomBytes } from 'node:crypto';

export const RLMI_NS = 'urn:ietf:params:xml:ns:rlmi';
export const RLMI_TYPE = 'application/rlmi+xml';

export type InstanceState = 'active' | 'pending' | 'terminated';

export interface ResourceInstance {
  id: string;
  state: InstanceState;
  /** terminated: why (RFC 4662 §5.2: rejected, noresource, deactivated, ...). */
  reason?: string;
  /** The instance's state document, when it has one to show. */
  body?: { type: string; data: string };
}

export interface ResourceEntry {
  uri: string;
  name: string;
  /** Undefined: no instance yet (a back-end subscription that has not been answered). */
  instance?: ResourceInstance;
}

export interface ListNotify {
  contentType: string;
  body: string;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;'));
}

function rlmiDocument(
  uri: string,
  version: number,
  fullState: boolean,
  name: string,
  resources: ResourceEntry[],
  cidOf: (i: number) => string,
): string {
  let x = `<?xml version="1.0" encoding="UTF-8"?>\r\n<list xmlns="${RLMI_NS}" uri="${esc(uri)}" version="${version}" fullState="${fullState}">\r\n`;
  if (name) x += `  <name>${esc(name)}</name>\r\n`;
  resources.forEach((r, i) => {
    x += `  <resource uri="${esc(r.uri)}">\r\n`;
    if (r.name) x += `    <name>${esc(r.name)}</name>\r\n`;
    const inst = r.instance;
    if (inst) {
      x += `    <instance id="${esc(inst.id)}" state="${inst.state}"`;
      if (inst.state === 'terminated' && inst.reason) x += ` reason="${esc(inst.reason)}"`;
      if (inst.body) x += ` cid="${esc(cidOf(i))}"`;
      x += '/>\r\n';
    }
    x += '  </resource>\r\n';
  });
  return x + '</list>\r\n';
}

function part(cid: string, type: string, data: string): string {
  return `Content-Transfer-Encoding: binary\r\nContent-ID: <${cid}>\r\nContent-Type: ${type}\r\n\r\n${data}`;
}

export interface ComposeInput {
  uri: string;
  version: number;
  fullState: boolean;
  name: string;
  resources: ResourceEntry[];
  /** Makes Content-IDs unique to this subscription (its local tag). */
  tag: string;
  /** The domain part of Content-IDs. */
  host: string;
}

/** One list NOTIFY body. */
export function composeListNotify(p: ComposeInput): ListNotify {
  const prefix = `${p.version}.${p.tag}`;
  const cidOf = (i: number): string => `r${i}.${prefix}@${p.host}`;
  const rootCid = `list.${prefix}@${p.host}`;
  const parts = [part(rootCid, `${RLMI_TYPE};charset="UTF-8"`, rlmiDocument(p.uri, p.version, p.fullState, p.name, p.resources, cidOf))];
  p.resources.forEach((r, i) => {
    const b = r.instance?.body;
    if (b) parts.push(part(cidOf(i), b.type, b.data));
  });
  let boundary = `rls-${randomBytes(12).toString('hex')}`;
  while (parts.some((x) => x.includes(boundary))) boundary = `rls-${randomBytes(12).toString('hex')}`;
  let body = '';
  for (const x of parts) body += `--${boundary}\r\n${x}\r\n`;
  body += `--${boundary}--\r\n`;
  return { contentType: `multipart/related;type="${RLMI_TYPE}";start="<${rootCid}>";boundary="${boundary}"`, body };
}

/**
 * The NOTIFY bodies for one change, each at most `max` bytes where that can be done (0 = no
 * limit). The first is `p` with as many resource bodies as fit (the others' instances shown
 * without cid); each further one is partial state naming the resources whose bodies it carries.
 * A single resource whose body alone is over the limit still goes, alone.
 */
export function splitNotify(p: ComposeInput, max: number): ListNotify[] {
  const whole = composeListNotify(p);
  if (max <= 0 || Buffer.byteLength(whole.body) <= max) return [whole];
  // What one resource's body adds to a NOTIFY: its part, its delimiter line and its cid attribute
  // (the boundary is "rls-" and 24 hex digits; Content-IDs are at most as long as the longest here).
  const cidMax = `r${p.resources.length}.${p.version + p.resources.length + 1}.${p.tag}@${p.host}`.length;
  const cost = (r: ResourceEntry): number =>
    Buffer.byteLength(part('x'.repeat(cidMax), r.instance!.body!.type, r.instance!.body!.data)) + 32 + 2 + 2 + cidMax + 7;
  // First NOTIFY: every resource's RLMI entry, bodies added while they fit.
  const first = p.resources.map((r) => (r.instance?.body ? { ...r, instance: { ...r.instance, body: undefined } } : r));
  let size = Buffer.byteLength(composeListNotify({ ...p, resources: first }).body);
  const left: number[] = [];
  p.resources.forEach((r, i) => {
    if (!r.instance?.body) return;
    const c = cost(r);
    if (size + c <= max) {
      first[i] = r;
      size += c;
    } else left.push(i);
  });
  const out = [composeListNotify({ ...p, resources: first })];
  // The rest, in partial-state NOTIFYs: each the RLMI of its own resources and their bodies.
  let version = p.version + 1;
  let batch: ResourceEntry[] = [];
  let batchSize = 0;
  const empty = (v: number): number => Buffer.byteLength(composeListNotify({ ...p, version: v, fullState: false, resources: [] }).body);
  for (const i of left) {
    const r = p.resources[i]!;
    const c = cost(r) + Buffer.byteLength(rlmiDocument(p.uri, 0, false, '', [r], () => 'x'.repeat(cidMax))) - 60;
    if (batch.length > 0 && batchSize + c > max) {
      out.push(composeListNotify({ ...p, version, fullState: false, resources: batch }));
      version++;
      batch = [];
    }
    if (batch.length === 0) batchSize = empty(version);
    batch.push(r);
    batchSize += c;
  }
  if (batch.length > 0) out.push(composeListNotify({ ...p, version, fullState: false, resources: batch }));
  return out;
}
