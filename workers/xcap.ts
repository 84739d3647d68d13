/**
 * XCAP document work (RFC 4825), run in the piscina pool: the checks of a PUT document per
 * application usage (§5.3 data validation against the usage's XML schema, xsd.ts; §5.4
 * uniqueness the schema cannot express), and node selectors (§6.3) for GET, PUT and DELETE of
 * elements, attributes and namespace bindings. The main thread parses the request URI; what
 * arrives here is the parsed selector, the application usage's rules and the document text
 * whose ETag the server has just checked, so the worker edits exactly that version (no race
 * with its own read transaction).
 *
 * Every expected failure is a result object (errors lose their fields crossing threads);
 * `kind` names the RFC 4825 §11 error element the server answers with.
 */
import { randomBytes } from 'node:crypto';
import { XmlComment, type XmlAttribute, type XmlTreeNode } from 'libxml2-wasm';
import { limits } from './context.js';
import { withDocument, elementChildren, XmlRejected, XmlElement, type XmlDocument, type XmlLimits } from './xml.js';
import { schemaErrors, type SchemaName } from './xsd.js';
import { NS } from './namespaces.js';

export type { SchemaName };

// ───── message types (shared with core/xcap) ─────

/** An element name test. `ns` null = unprefixed (RFC 4825 §6.3: the default document namespace). */
export interface NameTest {
  ns: string | null;
  /** Local name, or '*' for any element. */
  local: string;
}

/** `[@name="value"]`; unprefixed attribute names have no namespace (ns ''). */
export interface AttrTest {
  ns: string;
  local: string;
  value: string;
}

/** One location step of an element selector (by-name, by-pos, by-attr, by-pos-attr). */
export interface SelectorStep {
  name: NameTest;
  position?: number;
  attr?: AttrTest;
  /** The step as written (decoded), to build ancestor URIs for <no-parent>. */
  source: string;
}

export type TerminalSelector = { kind: 'attribute'; ns: string; local: string } | { kind: 'namespace' };

export interface NodeSelector {
  steps: SelectorStep[];
  terminal?: TerminalSelector;
}

export interface QualifiedName {
  ns: string;
  local: string;
}

/** What an application usage demands of its documents (RFC 4825 §5.3, §5.4). */
export interface UsageRules {
  /** The root element: the schema set also declares other global elements (pres-rules' actions, ...). */
  root: QualifiedName;
  /** The XML schema set (workers/schemas/{schema}.xsd) documents must be valid against. */
  schema: SchemaName;
  /** Namespaces an unprefixed element name in a node selector matches. */
  defaultNamespaces: string[];
  /** Attribute values that must be unique, in the whole document or among siblings (what XSD cannot say). */
  unique?: Array<QualifiedName & { attr: string; scope: 'document' | 'siblings' }>;
}

export type XcapFailureKind =
  | 'too-large'
  | 'too-deep'
  | 'dtd'
  | 'not-well-formed'
  | 'not-xml-frag'
  | 'not-xml-att-value'
  | 'schema'
  | 'uniqueness'
  | 'not-found'
  | 'no-parent'
  | 'cannot-insert'
  | 'cannot-delete';

export interface XcapFailure {
  ok: false;
  kind: XcapFailureKind;
  reason: string;
  /** no-parent: how many leading steps still select exactly one element (the closest ancestor). */
  ancestorSteps?: number;
  /** uniqueness: where the duplicate value is, as a node selector. */
  field?: string;
}

export type Checked = { ok: true } | XcapFailure;
export type Selected = { ok: true; contentType: string; body: string } | XcapFailure;
export type Edited = { ok: true; xml: string; created: boolean } | XcapFailure;

export const XCAP_EL = 'application/xcap-el+xml';
export const XCAP_ATT = 'application/xcap-att+xml';
export const XCAP_NS = 'application/xcap-ns+xml';

// ───── helpers ─────

function fail(kind: XcapFailureKind, reason: string, extra: Partial<XcapFailure> = {}): XcapFailure {
  return { ok: false, kind, reason, ...extra };
}

/** Thrown inside a parse callback to leave it with a failure; caught right outside. */
class Failed extends Error {
  constructor(readonly failure: XcapFailure) {
    super(failure.reason);
  }
}

function guard<T extends { ok: boolean }>(fn: () => T, rejectedKind?: (k: XmlRejected['kind']) => XcapFailureKind): T | XcapFailure {
  try {
    return fn();
  } catch (err) {
    if (err instanceof Failed) return err.failure;
    if (err instanceof XmlRejected) {
      const kind = rejectedKind ? rejectedKind(err.kind) : rejectedToKind(err.kind);
      return fail(kind, err.message);
    }
    throw err;
  }
}

function rejectedToKind(k: XmlRejected['kind']): XcapFailureKind {
  return k === 'invalid' ? 'schema' : k;
}

function qname(prefix: string, local: string): string {
  return prefix ? `${prefix}:${local}` : local;
}

export function escapeAttValue(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
}

const PREDEFINED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** An application/xcap-att+xml body (XML 1.0 AttValue without its quotes) → the value, or undefined. */
export function decodeAttValue(text: string): string | undefined {
  if (text.includes('<')) return undefined;
  let bad = false;
  const value = text.replace(/&([^;&]*);?/g, (m, ref: string) => {
    if (!m.endsWith(';')) {
      bad = true;
      return '';
    }
    if (ref in PREDEFINED) return PREDEFINED[ref]!;
    const cp = /^#x([0-9a-fA-F]{1,6})$/.exec(ref)
      ? parseInt(ref.slice(2), 16)
      : /^#([0-9]{1,7})$/.test(ref)
        ? parseInt(ref.slice(1), 10)
        : NaN;
    if (!isXmlChar(cp)) {
      bad = true;
      return '';
    }
    return String.fromCodePoint(cp);
  });
  if (bad) return undefined;
  for (const ch of value) if (!isXmlChar(ch.codePointAt(0)!)) return undefined;
  return value;
}

function isXmlChar(cp: number): boolean {
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

/**
 * Namespaces in XML 1.0 well-formedness: libxml2 reports an undeclared prefix only as a
 * namespace error and keeps "p:name" as a plain name, so look for such names.
 */
function checkNamespaces(el: XmlElement): void {
  const stack: XmlElement[] = [el];
  while (stack.length) {
    const e = stack.pop()!;
    if (e.name.includes(':')) throw new Failed(fail('not-well-formed', `undeclared namespace prefix in <${e.name}>`));
    for (const a of e.attrs) {
      if (a.name.includes(':')) throw new Failed(fail('not-well-formed', `undeclared namespace prefix in attribute ${a.name}`));
    }
    for (const c of elementChildren(e)) stack.push(c);
  }
}

function is(el: XmlElement, q: QualifiedName): boolean {
  return el.name === q.local && el.namespaceUri === q.ns;
}

function attrOf(el: XmlElement, ns: string, local: string): XmlAttribute | undefined {
  for (const a of el.attrs) if (a.name === local && (a.namespaceUri ?? '') === ns) return a;
  return undefined;
}

/** A positional path to an element (for <uniqueness-failure field="...">). */
function pathOf(el: XmlElement): string {
  const parts: string[] = [];
  for (let e: XmlElement | null = el; e; e = e.parent) {
    const p = e.parent;
    if (!p) {
      parts.unshift(e.name);
      break;
    }
    const same = elementChildren(p).filter((c) => c.name === e!.name && c.namespaceUri === e!.namespaceUri);
    parts.unshift(same.length > 1 ? `${e.name}[${same.findIndex((c) => c.isSameNode(e!)) + 1}]` : e.name);
  }
  return '/' + parts.join('/');
}

/**
 * RFC 4825 §8.2.5 for one usage, in the RFC's order: namespace well-formedness, the root
 * element, the schema (<schema-validation-error>), then the uniqueness constraints of the
 * application usage (<uniqueness-failure>). `whole` = the client sent this document itself, so
 * a schema error can point at its line.
 */
function checkRules(doc: XmlDocument, rules: UsageRules, whole = false): void {
  const root = doc.root;
  checkNamespaces(root);
  if (!is(root, rules.root)) {
    throw new Failed(
      fail(
        'schema',
        `root element must be <${rules.root.local}> in ${rules.root.ns}, not <${root.name}> in ${root.namespaceUri || 'no namespace'}`,
      ),
    );
  }
  const invalid = schemaErrors(doc, rules.schema, whole);
  if (invalid !== undefined) throw new Failed(fail('schema', whole ? invalid : `the result would not be valid: ${invalid}`));
  if (!rules.unique?.length) return;
  // One walk, each name read once (every libxml2-wasm accessor crosses into WebAssembly);
  // an element's path is built only for the duplicate that is reported.
  const elements: Array<{ el: XmlElement; name: string; ns: string; parent: number }> = [];
  const stack: Array<[XmlElement, number]> = [[root, -1]];
  while (stack.length) {
    const [el, parent] = stack.pop()!;
    const index = elements.length;
    elements.push({ el, name: el.name, ns: el.namespaceUri, parent });
    const kids = elementChildren(el);
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i]!, index]);
  }
  for (const u of rules.unique) {
    const seen = new Map<number, Set<string>>();
    for (const e of elements) {
      if (e.name !== u.local || e.ns !== u.ns) continue;
      const v = attrOf(e.el, '', u.attr)?.value;
      if (v === undefined) continue;
      const scope = u.scope === 'document' ? -1 : e.parent;
      let values = seen.get(scope);
      if (!values) seen.set(scope, (values = new Set()));
      if (values.has(v)) {
        throw new Failed(fail('uniqueness', `${u.attr}="${v}" of <${e.name}> is not unique`, { field: `${pathOf(e.el)}/@${u.attr}` }));
      }
      values.add(v);
    }
  }
}

// ───── node selectors (RFC 4825 §6.3) ─────

function nameMatches(el: XmlElement, test: NameTest, rules: UsageRules): boolean {
  if (test.local !== '*' && el.name !== test.local) return false;
  if (test.ns === null) return test.local === '*' || rules.defaultNamespaces.includes(el.namespaceUri);
  return el.namespaceUri === test.ns;
}

function attrMatches(el: XmlElement, t: AttrTest): boolean {
  return attrOf(el, t.ns, t.local)?.value === t.value;
}

/** One step from a set of parents (undefined parent = the document node, whose child is the root). */
function applyStep(doc: XmlDocument, parents: Array<XmlElement | undefined>, step: SelectorStep, rules: UsageRules): XmlElement[] {
  const out: XmlElement[] = [];
  for (const p of parents) {
    let c = (p ? elementChildren(p) : [doc.root]).filter((e) => nameMatches(e, step.name, rules));
    if (step.position !== undefined) c = c.length >= step.position ? [c[step.position - 1]!] : [];
    if (step.attr) c = c.filter((e) => attrMatches(e, step.attr!));
    out.push(...c);
  }
  return out;
}

function evaluate(doc: XmlDocument, steps: SelectorStep[], rules: UsageRules): XmlElement[] {
  let set: Array<XmlElement | undefined> = [undefined];
  for (const step of steps) {
    set = applyStep(doc, set, step, rules);
    if (set.length === 0) return [];
  }
  return set as XmlElement[];
}

/** How many leading steps select exactly one element: the closest existing ancestor. */
function closestAncestor(doc: XmlDocument, steps: SelectorStep[], rules: UsageRules): number {
  let k = 0;
  let set: Array<XmlElement | undefined> = [undefined];
  for (const step of steps) {
    set = applyStep(doc, set, step, rules);
    if (set.length !== 1) break;
    k++;
  }
  return k;
}

/** The element with every in-scope namespace declared on it, so the fragment stands alone. */
function serializeInScope(el: XmlElement): string {
  const text = el.toString({ format: false });
  const local = el.nsDeclarations;
  let decls = '';
  for (const [prefix, uri] of Object.entries(el.namespaces)) {
    if (prefix in local) continue;
    decls += prefix === '' ? ` xmlns="${escapeAttValue(uri)}"` : ` xmlns:${prefix}="${escapeAttValue(uri)}"`;
  }
  if (!decls) return text;
  const nameEnd = 1 + qname(el.prefix, el.name).length; // text starts with "<name"
  return text.slice(0, nameEnd) + decls + text.slice(nameEnd);
}

function serializeDoc(doc: XmlDocument): string {
  return doc.toString({ format: false });
}

// ───── tasks ─────

/** Whole-document PUT (RFC 4825 §8.2.2, §8.2.5): well-formed, fits the application usage. */
export function checkDocument(p: { xml: string; usage: UsageRules }): Checked {
  return guard(() => withDocument(p.xml, limits(), (doc) => (checkRules(doc, p.usage, true), { ok: true as const })));
}

/** GET of an element, attribute or namespace bindings (RFC 4825 §8.3, §10). */
export function selectNode(p: { xml: string; selector: NodeSelector; usage: UsageRules }): Selected {
  return guard(() =>
    withDocument(p.xml, limits(), (doc): Selected => {
      const found = evaluate(doc, p.selector.steps, p.usage);
      if (found.length !== 1)
        return fail('not-found', found.length ? 'the node selector selects more than one element' : 'no such element');
      const el = found[0]!;
      const t = p.selector.terminal;
      if (!t) return { ok: true, contentType: XCAP_EL, body: serializeInScope(el) };
      if (t.kind === 'attribute') {
        const a = attrOf(el, t.ns, t.local);
        if (!a) return fail('not-found', `no attribute ${t.local}`);
        return { ok: true, contentType: XCAP_ATT, body: escapeAttValue(a.value) };
      }
      let decls = '';
      for (const [prefix, uri] of Object.entries(el.namespaces))
        decls += ` ${prefix ? `xmlns:${prefix}` : 'xmlns'}="${escapeAttValue(uri)}"`;
      return { ok: true, contentType: XCAP_NS, body: `<${qname(el.prefix, el.name)}${decls}/>` };
    }),
  );
}

/**
 * PUT of an element (body application/xcap-el+xml) or an attribute (application/xcap-att+xml),
 * RFC 4825 §8.2: locate the parent (§8.2.1), check the body (§8.2.2), create (§8.2.3) or
 * replace (§8.2.4), then validate (§8.2.5): the result fits the usage, and the same selector
 * now selects what was put.
 */
export function putNode(p: { xml: string; selector: NodeSelector; body: string; usage: UsageRules }): Edited {
  const lim = limits();
  return guard(() =>
    p.selector.terminal?.kind === 'attribute'
      ? putAttribute(p, lim)
      : p.selector.terminal
        ? fail('cannot-insert', 'namespace bindings cannot be written')
        : putElement(p, lim),
  );
}

function putAttribute(p: { xml: string; selector: NodeSelector; body: string; usage: UsageRules }, lim: XmlLimits): Edited {
  const t = p.selector.terminal as { kind: 'attribute'; ns: string; local: string };
  const value = decodeAttValue(p.body);
  if (value === undefined) return fail('not-xml-att-value', 'the body is not a valid XML attribute value');
  const xml = withDocument(p.xml, lim, (doc): Edited => {
    const found = evaluate(doc, p.selector.steps, p.usage);
    if (found.length !== 1) {
      return fail('no-parent', 'the element of the attribute does not exist', {
        ancestorSteps: closestAncestor(doc, p.selector.steps, p.usage),
      });
    }
    const el = found[0]!;
    const existing = attrOf(el, t.ns, t.local);
    if (existing) {
      // libxml2-wasm's setAttr would add a second attribute of that name, and the value
      // setter reads entity references (xmlNodeSetContent), hence the escaped "&".
      existing.value = value.replace(/&/g, '&amp;');
      if (existing.value !== value) return fail('not-xml-att-value', 'the value could not be stored as it is');
    } else if (t.ns === '') el.setAttr(t.local, value);
    else {
      const prefix = Object.entries(el.namespaces).find(([pre, uri]) => pre !== '' && uri === t.ns)?.[0];
      if (prefix === undefined) return fail('cannot-insert', `no namespace prefix is declared for ${t.ns} in the document`);
      el.setAttr(t.local, value, prefix);
    }
    return { ok: true, xml: serializeDoc(doc), created: !existing };
  });
  if (!xml.ok) return xml;
  return withDocument(xml.xml, lim, (doc): Edited => {
    // RFC 4825 §7.4 / §8.2.5: the same URI must select what was put (a new value of an
    // attribute that the selector's own predicate tests would not).
    const again = evaluate(doc, p.selector.steps, p.usage);
    if (again.length !== 1 || attrOf(again[0]!, t.ns, t.local)?.value !== value) {
      return fail('cannot-insert', 'after the PUT the node selector would not select the attribute in the body');
    }
    checkRules(doc, p.usage);
    return xml;
  });
}

function putElement(p: { xml: string; selector: NodeSelector; body: string; usage: UsageRules }, lim: XmlLimits): Edited {
  const steps = p.selector.steps;
  const last = steps[steps.length - 1]!;
  const fragment = p.body.replace(/^\uFEFF?\s*(<\?xml[^>]*\?>)?\s*/, '').replace(/\s+$/, '');
  const marker = `xcap-${randomBytes(12).toString('hex')}`;
  let created = false;

  // 1. Locate the parent (§8.2.1), check the fragment in its namespace context (§8.2.2), and
  //    mark where the new element goes: in place of the selected one (§8.2.4), or after its
  //    last like-named sibling / as the last child (§8.2.3).
  const marked = withDocument(p.xml, lim, (doc): string | XcapFailure => {
    let parent: XmlElement | undefined;
    if (steps.length > 1) {
      const parents = evaluate(doc, steps.slice(0, -1), p.usage);
      if (parents.length !== 1) {
        return fail('no-parent', 'the parent of the element does not exist', {
          ancestorSteps: closestAncestor(doc, steps.slice(0, -1), p.usage),
        });
      }
      parent = parents[0]!;
    }
    const inScope = parent ? parent.namespaces : {};
    const fragCheck = checkFragment(fragment, inScope, lim);
    if (fragCheck) return fragCheck;

    const existing = applyStep(doc, [parent], last, p.usage);
    if (existing.length > 1) return fail('cannot-insert', 'the node selector selects more than one element');
    if (existing.length === 1) {
      if (!parent) return 'ROOT';
      const el = existing[0]!;
      el.prependComment(marker);
      el.remove();
      return serializeDoc(doc);
    }
    if (!parent) return fail('cannot-insert', 'a document has exactly one root element');
    created = true;
    const siblings = elementChildren(parent).filter((e) => nameMatches(e, last.name, p.usage));
    if (last.position !== undefined) {
      if (last.position !== siblings.length + 1) {
        return fail('cannot-insert', `cannot insert at position ${last.position} among ${siblings.length} such elements`);
      }
      if (siblings.length) siblings[siblings.length - 1]!.appendComment(marker);
      else parent.addComment(marker);
    } else {
      parent.addComment(marker);
    }
    return serializeDoc(doc);
  });
  if (typeof marked !== 'string') return marked;

  // 2. Splice, re-parse the result, and check it: usage rules, and the selector selects the new element.
  const comment = `<!--${marker}-->`;
  const candidate = marked === 'ROOT' ? comment + fragment : marked.replace(comment, () => comment + fragment);
  return withDocument(candidate, lim, (doc): Edited => {
    checkNamespaces(doc.root);
    const found = evaluate(doc, steps, p.usage);
    const prev = found.length === 1 ? previousNode(found[0]!, doc) : undefined;
    if (!(prev instanceof XmlComment) || prev.content !== marker) {
      return fail('cannot-insert', 'after the PUT the node selector would not select the element in the body');
    }
    checkRules(doc, p.usage);
    return { ok: true, xml: candidate.replace(comment, ''), created };
  });
}

function previousNode(el: XmlElement, doc: XmlDocument): XmlTreeNode | undefined {
  if (el.prev) return el.prev;
  // The root's previous sibling is a top-level comment; libxml2-wasm walks it from the document.
  if (el.parent === null) {
    const top = doc.find('/comment()');
    return (top[0] as XmlTreeNode | undefined) ?? undefined;
  }
  return undefined;
}

/** The body of an element PUT must be one element (RFC 4825 §8.2.2 <not-xml-frag>). */
function checkFragment(fragment: string, inScope: Record<string, string>, lim: XmlLimits): XcapFailure | undefined {
  let decls = '';
  for (const [prefix, uri] of Object.entries(inScope)) decls += ` ${prefix ? `xmlns:${prefix}` : 'xmlns'}="${escapeAttValue(uri)}"`;
  const wrapped = `<xcap-fragment${decls}>${fragment}</xcap-fragment>`;
  const r = guard(
    () =>
      withDocument(wrapped, { maxBytes: lim.maxBytes + wrapped.length - fragment.length, maxDepth: lim.maxDepth }, (doc): Checked => {
        const root = doc.root;
        const kids = elementChildren(root);
        let other = false;
        for (let n: XmlTreeNode | null = root.firstChild; n; n = n.next) {
          if (!(n instanceof XmlElement) && (n.content.trim() !== '' || n instanceof XmlComment)) other = true;
        }
        if (kids.length !== 1 || other) return fail('not-xml-frag', 'the body must be exactly one XML element');
        checkNamespaces(kids[0]!);
        return { ok: true };
      }),
    (k) => (k === 'not-well-formed' ? 'not-xml-frag' : rejectedToKind(k)),
  );
  if (r.ok) return undefined;
  // An undeclared prefix inside the fragment is a fragment error too.
  return r.kind === 'not-well-formed' ? { ...r, kind: 'not-xml-frag' } : r;
}

/** DELETE of an element or attribute (RFC 4825 §8.4). */
export function deleteNode(p: { xml: string; selector: NodeSelector; usage: UsageRules }): Edited {
  const lim = limits();
  return guard(() => {
    const edited = withDocument(p.xml, lim, (doc): Edited => {
      const found = evaluate(doc, p.selector.steps, p.usage);
      if (found.length !== 1)
        return fail('not-found', found.length ? 'the node selector selects more than one element' : 'no such element');
      const el = found[0]!;
      const t = p.selector.terminal;
      if (t?.kind === 'namespace') return fail('cannot-delete', 'namespace bindings cannot be deleted');
      if (t?.kind === 'attribute') {
        const a = attrOf(el, t.ns, t.local);
        if (!a) return fail('not-found', `no attribute ${t.local}`);
        a.remove();
      } else {
        if (el.parent === null) return fail('cannot-delete', 'the root element cannot be deleted; DELETE the document');
        el.remove();
      }
      return { ok: true, xml: serializeDoc(doc), created: false };
    });
    if (!edited.ok) return edited;
    return withDocument(edited.xml, lim, (doc): Edited => {
      checkRules(doc, p.usage);
      // §8.4: a later GET of the same URI must give 404, else the DELETE is refused.
      const t = p.selector.terminal;
      const still = evaluate(doc, p.selector.steps, p.usage);
      const selectsAgain =
        t?.kind === 'attribute' ? still.length === 1 && attrOf(still[0]!, t.ns, t.local) !== undefined : still.length === 1;
      if (selectsAgain) return fail('cannot-delete', 'after the DELETE the node selector would select another element');
      return edited;
    });
  });
}

// ───── rls-services (RFC 4826 §4.4) ─────

const RLS_NS = NS.rlsServices;

export interface RlsService {
  uri: string;
  /** The <service> element with its in-scope namespace declarations, to stand alone. */
  xml: string;
}

/**
 * The <service> elements of rls-services documents, in document order, for the global index
 * and the cross-user uniqueness of service URIs (RFC 4826 §4.4.5, §4.4.8). Null for a
 * document that does not parse (a stored document is not re-validated here).
 */
export function rlsServices(p: { docs: string[] }): Array<RlsService[] | null> {
  const lim = limits();
  return p.docs.map((xml) => {
    try {
      return withDocument(xml, lim, (doc) => {
        const out: RlsService[] = [];
        if (doc.root.name !== 'rls-services' || doc.root.namespaceUri !== RLS_NS) return out;
        for (const el of elementChildren(doc.root)) {
          const uri = el.name === 'service' && el.namespaceUri === RLS_NS ? attrOf(el, '', 'uri')?.value : undefined;
          if (uri !== undefined) out.push({ uri, xml: serializeInScope(el) });
        }
        return out;
      });
    } catch (err) {
      if (err instanceof XmlRejected) return null;
      throw err;
    }
  });
}

export const xcapTasks = {
  'xcap.checkDocument': checkDocument,
  'xcap.select': selectNode,
  'xcap.put': putNode,
  'xcap.delete': deleteNode,
  'xcap.rlsServices': rlsServices,
};
