/**
 * A strict reader of list NOTIFY bodies (RFC 4662 §5): multipart/related (RFC 2387) whose root
 * part is an RLMI document (application/rlmi+xml, §5.2), parts framed as RFC 2046 §5.1.1 says.
 * It throws, naming the rule, on anything a list subscriber could not rely on:
 *
 * - Content-Type multipart/related with a boundary, type="application/rlmi+xml" and a start
 *   parameter naming the root part's Content-ID (RFC 2387 §3.1/§3.2);
 * - every delimiter "--boundary" at the start of a line, lines ending in CRLF, the closing
 *   delimiter "--boundary--", every part with a Content-ID and a Content-Type, Content-IDs unique;
 * - the root part is application/rlmi+xml; every <instance cid> names a part of the body, and
 *   every other part is named by exactly one instance (§5.2: the cid attribute is the Content-ID
 *   of the part carrying that instance's state).
 */
import type { SipRequest } from '../../transport/message.js';
import { withXml } from './presence.js';
import type { XmlElement } from 'libxml2-wasm';

export const RLMI_NS = 'urn:ietf:params:xml:ns:rlmi';
export const RLMI_TYPE = 'application/rlmi+xml';

export interface MimePart {
  /** Header names lower-cased. */
  headers: Map<string, string>;
  contentId: string;
  contentType: string;
  body: string;
}

export interface RlmiInstance {
  id: string;
  state: string;
  reason?: string;
  cid?: string;
}

export interface RlmiResource {
  uri: string;
  names: string[];
  instances: RlmiInstance[];
}

export interface RlmiList {
  uri: string;
  version: number;
  fullState: boolean;
  names: string[];
  resources: RlmiResource[];
}

export interface ListNotify {
  boundary: string;
  start: string;
  root: MimePart;
  /** The non-root parts by Content-ID (without <>). */
  parts: Map<string, MimePart>;
  list: RlmiList;
}

/** Parameters of a header value like `multipart/related;type="a/b";start="<x>"` (names lower-cased, quotes removed). */
export function mediaParams(value: string): { type: string; params: Map<string, string> } {
  const semi = value.indexOf(';');
  const type = (semi < 0 ? value : value.slice(0, semi)).trim().toLowerCase();
  const params = new Map<string, string>();
  const re = /;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/g;
  const rest = semi < 0 ? '' : value.slice(semi);
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(rest)) !== null) {
    if (rest.slice(consumed, m.index).trim() !== '') throw new Error(`Content-Type: junk before parameter ${m[1]} in ${value}`);
    const name = m[1]!.toLowerCase();
    if (params.has(name)) throw new Error(`Content-Type: parameter ${name} twice in ${value}`);
    params.set(name, m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!);
    consumed = m.index + m[0].length;
  }
  if (rest.slice(consumed).trim() !== '') throw new Error(`Content-Type: cannot read parameters of ${value}`);
  return { type, params };
}

const stripAngles = (s: string): string => {
  const t = s.trim();
  if (!t.startsWith('<') || !t.endsWith('>')) throw new Error(`Content-ID / start must be <...> (RFC 2392): ${s}`);
  return t.slice(1, -1);
};

/** The parts of a multipart body framed by `boundary` (RFC 2046 §5.1.1), strictly CRLF. */
export function splitMultipart(body: string, boundary: string): MimePart[] {
  if (boundary.length < 1 || boundary.length > 70) throw new Error(`boundary must be 1..70 characters (RFC 2046): ${boundary.length}`);
  const delim = `--${boundary}`;
  // The first delimiter: at the very start of the body, or after a preamble ending in CRLF.
  let pos: number;
  if (body.startsWith(delim)) pos = 0;
  else {
    pos = body.indexOf(`\r\n${delim}`);
    if (pos < 0) throw new Error(`no delimiter --${boundary} in the body`);
    pos += 2;
  }
  const parts: MimePart[] = [];
  for (;;) {
    const after = pos + delim.length;
    if (body.startsWith('--', after)) {
      // The closing delimiter: only transport padding and CRLF (or the end) may follow on its line.
      const tail = body.slice(after + 2);
      if (!/^[ \t]*(\r\n[\s\S]*)?$/.test(tail)) throw new Error(`junk after the closing delimiter: ${JSON.stringify(tail.slice(0, 40))}`);
      break;
    }
    const lineEnd = body.indexOf('\r\n', after);
    if (lineEnd < 0 || body.slice(after, lineEnd).trim() !== '') throw new Error(`a delimiter line must end in CRLF at offset ${pos}`);
    const next = body.indexOf(`\r\n${delim}`, lineEnd);
    if (next < 0) throw new Error(`part at offset ${pos} has no following delimiter (missing closing --${boundary}--?)`);
    parts.push(readPart(body.slice(lineEnd + 2, next)));
    pos = next + 2;
  }
  if (parts.length === 0) throw new Error('multipart body without any part');
  return parts;
}

function readPart(text: string): MimePart {
  const sep = text.indexOf('\r\n\r\n');
  let head: string;
  let content: string;
  if (sep < 0) {
    // A part with no headers starts with the empty line (RFC 2046); ours must have headers.
    throw new Error(`part without a header/body separator (CRLF CRLF): ${JSON.stringify(text.slice(0, 80))}`);
  } else {
    head = text.slice(0, sep);
    content = text.slice(sep + 4);
  }
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n')) {
    if (line.includes('\n') || line.includes('\r')) throw new Error(`bare CR or LF in part headers: ${JSON.stringify(line)}`);
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`bad part header line ${JSON.stringify(line)}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    if (headers.has(name)) throw new Error(`part header ${name} twice`);
    headers.set(name, line.slice(colon + 1).trim());
  }
  const cid = headers.get('content-id');
  if (cid === undefined) throw new Error(`part without Content-ID: ${head}`);
  const type = headers.get('content-type');
  if (type === undefined) throw new Error(`part without Content-Type: ${head}`);
  return { headers, contentId: stripAngles(cid), contentType: type, body: content };
}

const bool = (v: string | undefined, what: string): boolean => {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new Error(`${what} must be an xs:boolean, got ${JSON.stringify(v)}`);
};

/** An RLMI document (RFC 4662 §5.2), checked against its required attributes. */
export function parseRlmi(xml: string): RlmiList {
  return withXml(xml, (doc) => {
    const root = doc.root;
    if (root.name !== 'list' || root.namespaceUri !== RLMI_NS) throw new Error(`RLMI root must be {${RLMI_NS}}list, got ${root.name}`);
    const ns = { r: RLMI_NS };
    const uri = root.attr('uri')?.value;
    const version = root.attr('version')?.value;
    if (!uri) throw new Error('<list> without uri');
    if (version === undefined || !/^\d+$/.test(version)) throw new Error(`<list> version must be an unsigned integer, got ${version}`);
    const names = (el: XmlElement): string[] => el.find('r:name', ns).map((n) => n.content.trim());
    const resources = root.find('r:resource', ns).map((n) => {
      const el = n as XmlElement;
      const ruri = el.attr('uri')?.value;
      if (!ruri) throw new Error('<resource> without uri');
      const instances = el.find('r:instance', ns).map((i) => {
        const ie = i as XmlElement;
        const id = ie.attr('id')?.value;
        const state = ie.attr('state')?.value;
        if (!id) throw new Error(`<instance> of ${ruri} without id`);
        if (state !== 'active' && state !== 'pending' && state !== 'terminated')
          throw new Error(`<instance> of ${ruri}: state must be active|pending|terminated, got ${state}`);
        const inst: RlmiInstance = { id, state };
        const reason = ie.attr('reason')?.value;
        const cid = ie.attr('cid')?.value;
        if (reason !== undefined) inst.reason = reason;
        if (cid !== undefined) inst.cid = cid;
        return inst;
      });
      return { uri: ruri, names: names(el), instances };
    });
    return {
      uri,
      version: Number(version),
      fullState: bool(root.attr('fullState')?.value, '<list> fullState'),
      names: names(root),
      resources,
    };
  });
}

/** Read a list NOTIFY's body strictly (see the module comment). */
export function parseListNotify(req: SipRequest): ListNotify {
  const ct = req.headers.get('content-type');
  if (!ct) throw new Error('list NOTIFY without Content-Type');
  const { type, params } = mediaParams(ct);
  if (type !== 'multipart/related') throw new Error(`list NOTIFY Content-Type must be multipart/related, got ${ct}`);
  const boundary = params.get('boundary');
  if (!boundary) throw new Error(`multipart/related without boundary: ${ct}`);
  if (params.get('type')?.toLowerCase() !== RLMI_TYPE) throw new Error(`multipart/related type must be ${RLMI_TYPE} (RFC 4662 §5): ${ct}`);
  const startParam = params.get('start');
  if (startParam === undefined) throw new Error(`multipart/related without start: ${ct}`);
  const start = stripAngles(startParam);
  const all = splitMultipart(req.body.toString('utf8'), boundary);
  const byId = new Map<string, MimePart>();
  for (const p of all) {
    if (byId.has(p.contentId)) throw new Error(`Content-ID <${p.contentId}> twice`);
    byId.set(p.contentId, p);
  }
  const root = byId.get(start);
  if (!root) throw new Error(`start="<${start}>" names no part (parts: ${[...byId.keys()].join(', ')})`);
  if (mediaParams(root.contentType).type !== RLMI_TYPE) throw new Error(`the root part must be ${RLMI_TYPE}, got ${root.contentType}`);
  const list = parseRlmi(root.body);
  byId.delete(start);
  const named = new Set<string>();
  for (const r of list.resources)
    for (const i of r.instances) {
      if (i.cid === undefined) continue;
      if (!byId.has(i.cid)) throw new Error(`instance ${i.id} of ${r.uri}: cid ${i.cid} names no part of the body`);
      if (named.has(i.cid)) throw new Error(`cid ${i.cid} named by two instances`);
      named.add(i.cid);
    }
  for (const id of byId.keys()) if (!named.has(id)) throw new Error(`part <${id}> is named by no instance cid`);
  return { boundary, start, root, parts: byId, list };
}

/** A resource of a parsed list NOTIFY by URI, with its first instance and that instance's body. */
export function resourceOf(n: ListNotify, uri: string): { resource: RlmiResource; instance?: RlmiInstance; body?: MimePart } | undefined {
  const resource = n.list.resources.find((r) => r.uri === uri);
  if (!resource) return undefined;
  const instance = resource.instances[0];
  const body = instance?.cid !== undefined ? n.parts.get(instance.cid) : undefined;
  return { resource, instance, body };
}

/** The resource URIs of a parsed list NOTIFY in document order. */
export const urisOf = (n: ListNotify): string[] => n.list.resources.map((r) => r.uri);
