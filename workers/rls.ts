/**
 * The resource list server's reading of RFC 4826 documents: a <service> of rls-services (§4.2,
 * §4.3: a <list> of its own, or a <resource-list> URI of a list elsewhere, and <packages>), and
 * the <list>, <entry>, <entry-ref> and <external> elements of resource-lists (§3.2) it names.
 * The result is a tree of plain objects; following the references (entry-ref, external,
 * resource-list) is the main thread's job (core/rls/lists.ts), which reads the store.
 */
import { limits } from './context.js';
import { withDocument, elementChildren, XmlRejected, type XmlElement } from './xml.js';

/** One member of a list, in document order (RFC 4826 §3.2). */
export type ListItem =
  | { kind: 'entry'; uri: string; name: string }
  | { kind: 'entry-ref'; ref: string; name: string }
  | { kind: 'external'; anchor: string; name: string }
  | { kind: 'list'; name: string; items: ListItem[] };

export interface ParsedService {
  uri: string;
  /** The events of <packages>; null when the service has none (every event the server serves). */
  packages: string[] | null;
  /** The service's own <list>, or the URI of <resource-list> (§4.2). */
  list?: Extract<ListItem, { kind: 'list' }>;
  resourceList?: string;
}

/** Items read per document at most: a document is bounded by max_xml_size already, this bounds the walk. */
const MAX_ITEMS = 10_000;

function attr(el: XmlElement, name: string): string | undefined {
  for (const a of el.attrs) if (a.name === name && !a.namespaceUri) return a.value;
  return undefined;
}

function displayName(el: XmlElement): string {
  for (const c of elementChildren(el)) if (c.name === 'display-name') return c.content.trim();
  return '';
}

function readList(el: XmlElement, budget: { left: number }, depth: number): Extract<ListItem, { kind: 'list' }> {
  const items: ListItem[] = [];
  if (depth > 32) return { kind: 'list', name: displayName(el), items };
  for (const c of elementChildren(el)) {
    if (--budget.left < 0) break;
    const item = readItem(c, budget, depth);
    if (item) items.push(item);
  }
  return { kind: 'list', name: displayName(el), items };
}

function readItem(c: XmlElement, budget: { left: number }, depth: number): ListItem | undefined {
  switch (c.name) {
    case 'entry': {
      const uri = attr(c, 'uri');
      return uri === undefined ? undefined : { kind: 'entry', uri: uri.trim(), name: displayName(c) };
    }
    case 'entry-ref': {
      const ref = attr(c, 'ref');
      return ref === undefined ? undefined : { kind: 'entry-ref', ref: ref.trim(), name: displayName(c) };
    }
    case 'external': {
      const anchor = attr(c, 'anchor');
      return anchor === undefined ? undefined : { kind: 'external', anchor: anchor.trim(), name: displayName(c) };
    }
    case 'list':
      return readList(c, budget, depth + 1);
    default:
      return undefined; // display-name, extensions
  }
}

/**
 * Parse a fragment: a <service> (as: 'service'), or an element a reference selected: a <list> or
 * an <entry> (as: 'item'). Null when it does not parse or is not what was asked for.
 */
export function parseRlsFragment(p: { xml: string; as: 'service' | 'item' }): ParsedService | ListItem | null {
  try {
    return withDocument(p.xml, limits(), (doc) => {
      const root = doc.root;
      const budget = { left: MAX_ITEMS };
      if (p.as === 'item') return readItem(root, budget, 0) ?? null;
      const uri = attr(root, 'uri');
      if (root.name !== 'service' || uri === undefined) return null;
      const out: ParsedService = { uri: uri.trim(), packages: null };
      for (const c of elementChildren(root)) {
        if (c.name === 'list') out.list = readList(c, budget, 0);
        else if (c.name === 'resource-list') out.resourceList = c.content.trim();
        else if (c.name === 'packages')
          out.packages = elementChildren(c)
            .filter((e) => e.name === 'package')
            .map((e) => e.content.trim().toLowerCase());
      }
      return out;
    });
  } catch (err) {
    if (err instanceof XmlRejected) return null;
    throw err;
  }
}
