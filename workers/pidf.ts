/**
 * PIDF (RFC 3863) work: validating a PUBLISHed document, composing every live publication of
 * a presentity into one document (RFC 3863 + RFC 4479 elements kept with their namespaces),
 * and the seed's pres_check_basic / pres_check_activities.
 */
import { withDocument, elementChildren, XmlRejected, type XmlLimits, XmlElement } from './xml.js';
import { NS } from './namespaces.js';
import { schemaErrors } from './xsd.js';

export const PIDF_NS = NS.pidf;
export const DM_NS = NS.dataModel;
export const RPID_NS = NS.rpid;

export type Checked = { ok: true } | { ok: false; kind: XmlRejected['kind']; reason: string };

function rejected(err: unknown): Checked {
  if (err instanceof XmlRejected) return { ok: false, kind: err.kind, reason: err.message };
  throw err;
}

/**
 * RFC 3863 §4.4's schema (workers/schemas/pidf-publish.xsd): root <presence> in the PIDF
 * namespace with an entity, tuples with a unique id and a <status>, <basic> open or closed, the
 * order of a tuple's children, contact priorities, timestamps (the order of <presence>'s own
 * children is free: phones put <dm:person> first, see the schema). Elements of other namespaces (RFC 4479 data
 * model, RFC 4480 RPID, RFC 4482 CIPID, ...) are processContents="lax": checked by no schema
 * here, accepted as they are (a watcher ignores what it does not know). The schema decides; the
 * checks after it only word the commonest faults the way a client author reads them best.
 */
export function validatePidf(xml: string, limits: XmlLimits): Checked {
  try {
    return withDocument(xml, limits, (doc) => {
      const invalid = schemaErrors(doc, 'pidf-publish', false);
      if (invalid === undefined) return { ok: true } as Checked;
      const root = doc.root;
      if (root.name !== 'presence' || root.namespaceUri !== PIDF_NS) {
        throw new XmlRejected('invalid', `root element must be <presence> in ${PIDF_NS}`);
      }
      if (!root.attr('entity')) throw new XmlRejected('invalid', '<presence> has no entity attribute');
      for (const child of elementChildren(root)) {
        if (child.namespaceUri !== PIDF_NS || child.name !== 'tuple') continue;
        if (!child.attr('id')) throw new XmlRejected('invalid', '<tuple> without an id attribute');
        const hasStatus = elementChildren(child).some((c) => c.name === 'status' && c.namespaceUri === PIDF_NS);
        if (!hasStatus) throw new XmlRejected('invalid', `<tuple id="${child.attr('id')!.value}"> has no <status>`);
      }
      throw new XmlRejected('invalid', invalid);
    });
  } catch (err) {
    return rejected(err);
  }
}

/** Generic well-formedness + root check for the other XML packages (dialog-info, watcherinfo). */
export function validateRoot(xml: string, limits: XmlLimits, rootName: string, ns: string): Checked {
  try {
    return withDocument(xml, limits, (doc) => {
      if (doc.root.name !== rootName || doc.root.namespaceUri !== ns) {
        throw new XmlRejected('invalid', `root element must be <${rootName}> in ${ns}`);
      }
      return { ok: true } as Checked;
    });
  } catch (err) {
    return rejected(err);
  }
}

/** Serialise an element so it stands alone: namespaces declared on its ancestors are declared on it. */
export function standalone(el: XmlElement, inherited: Record<string, string>): string {
  const text = el.toString();
  const gt = firstTagEnd(text);
  const tag = text.slice(0, gt);
  let decls = '';
  for (const [prefix, uri] of Object.entries(inherited)) {
    const attr = prefix === '' ? 'xmlns' : `xmlns:${prefix}`;
    if (!new RegExp(`\\s${attr.replace(':', '\\:')}\\s*=`).test(tag)) decls += ` ${attr}="${escapeAttr(uri)}"`;
  }
  if (decls === '') return text;
  const selfClose = tag.endsWith('/');
  return (selfClose ? tag.slice(0, -1) : tag) + decls + (selfClose ? '/' : '') + text.slice(gt);
}

function firstTagEnd(text: string): number {
  let quote = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (quote) {
      if (c === quote) quote = 0;
    } else if (c === 0x22 || c === 0x27) quote = c;
    else if (c === 0x3e) return i;
  }
  return text.length;
}

export function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
}

export interface ComposeInput {
  presentityUri: string;
  /** Publication bodies, newest first. */
  bodies: string[];
  /** force_dummy_presence: with no publication, show basic open. */
  dummy: boolean;
}

/**
 * One PIDF document from all publications: tuples first (newest publication first, a tuple
 * id seen in a newer publication hides older ones), then notes, then the other elements
 * (RFC 4479 person/device and extensions), as the PIDF schema orders them.
 */
export function composePidf(input: ComposeInput, limits: XmlLimits): string {
  const tuples: string[] = [];
  const notes: string[] = [];
  const others: string[] = [];
  const seen = new Set<string>();
  for (const body of input.bodies) {
    try {
      withDocument(body, limits, (doc) => {
        const root = doc.root;
        const inherited = { ...root.namespaces };
        for (const child of elementChildren(root)) {
          const id = child.attr('id')?.value;
          const key = id !== undefined ? `${child.namespaceUri} ${child.name} ${id}` : undefined;
          if (key !== undefined) {
            if (seen.has(key)) continue;
            seen.add(key);
          }
          const text = standalone(child, inherited);
          if (child.namespaceUri === PIDF_NS && child.name === 'tuple') tuples.push(text);
          else if (child.namespaceUri === PIDF_NS && child.name === 'note') notes.push(text);
          else others.push(text);
        }
      });
    } catch (err) {
      // A stored body was validated on PUBLISH; if it no longer parses, leave it out rather than fail every watcher.
      if (!(err instanceof XmlRejected)) throw err;
    }
  }
  if (tuples.length === 0 && others.length === 0 && input.dummy) return dummyPidf(input.presentityUri);
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${PIDF_NS}" entity="${escapeAttr(input.presentityUri)}">` +
    tuples.join('') +
    notes.join('') +
    others.join('') +
    '</presence>\n'
  );
}

/** presence_xml force_dummy_presence: a basic "open" document when nothing is published. */
export function dummyPidf(presentityUri: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="${PIDF_NS}" entity="${escapeAttr(presentityUri)}">` +
    '<tuple id="dummy"><status><basic>open</basic></status></tuple></presence>\n'
  );
}

/** pres_check_basic: 1 when some /presence/tuple/status/basic equals `status`, else -1. */
export function checkBasic(bodies: string[], status: string, limits: XmlLimits): number {
  for (const body of bodies) {
    const found = withDocument(body, limits, (doc) => {
      const nodes = doc.find('/p:presence/p:tuple/p:status/p:basic', { p: PIDF_NS });
      return nodes.some((n) => n.content.trim() === status);
    });
    if (found) return 1;
  }
  return -1;
}

/**
 * pres_check_activities: 1 when /presence/person/activities/<activity> exists, -2 when no
 * person or no activities element exists at all, -1 otherwise, and -1 when the presentity has
 * published nothing (Kamailio's presxml_check_activities: no presentity is "not found").
 */
export function checkActivities(bodies: string[], activity: string, limits: XmlLimits): number {
  if (bodies.length === 0) return -1;
  let sawActivities = false;
  for (const body of bodies) {
    const r = withDocument(body, limits, (doc) => {
      const acts = doc.find('/p:presence/dm:person/rpid:activities', { p: PIDF_NS, dm: DM_NS, rpid: RPID_NS });
      if (acts.length === 0) return 0;
      for (const a of acts) {
        if (a instanceof XmlElement && elementChildren(a).some((c) => c.name === activity)) return 1;
      }
      return -1;
    });
    if (r === 1) return 1;
    if (r === -1) sawActivities = true;
  }
  return sawActivities ? -1 : -2;
}
