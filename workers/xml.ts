/**
 * The one way to open an XML document (libxml2-wasm). Documents live in WebAssembly memory
 * and are freed in `finally`, so no code path can leak one. Before libxml2 sees the text:
 * a size limit, a nesting-depth limit, and no DTD at all (no internal or external entities,
 * so neither billion laughs nor XXE can happen); the parser also runs with NONET and NO_XXE.
 */
import { XmlDocument, ParseOption, XmlParseError, XmlElement, type XmlNode, type XmlTreeNode } from 'libxml2-wasm';

export { XmlDocument, XmlElement };

export interface XmlLimits {
  maxBytes: number;
  maxDepth: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = { maxBytes: 65536, maxDepth: 64 };

/** Why a document was refused; `kind` maps to RFC 4825 error elements and SIP reasons. */
export class XmlRejected extends Error {
  constructor(
    readonly kind: 'too-large' | 'too-deep' | 'dtd' | 'not-well-formed' | 'invalid',
    message: string,
  ) {
    super(message);
    this.name = 'XmlRejected';
  }
}

const PARSE_OPTIONS =
  ParseOption.XML_PARSE_NONET | ParseOption.XML_PARSE_NO_XXE | ParseOption.XML_PARSE_NOERROR | ParseOption.XML_PARSE_NOWARNING;

/** Cheap scan before parsing: size, DOCTYPE/ENTITY, and element nesting depth. */
export function precheck(xml: string, limits: XmlLimits): void {
  if (Buffer.byteLength(xml, 'utf8') > limits.maxBytes) throw new XmlRejected('too-large', `document larger than ${limits.maxBytes} bytes`);
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new XmlRejected('dtd', 'DTDs and entity declarations are not accepted');
  let depth = 0;
  let max = 0;
  const n = xml.length;
  for (let i = xml.indexOf('<'); i !== -1 && i < n; i = xml.indexOf('<', i + 1)) {
    const c = xml.charCodeAt(i + 1);
    if (c === 0x2f /* / */) depth--;
    else if (c === 0x21 /* ! */ || c === 0x3f /* ? */) continue;
    else {
      const close = xml.indexOf('>', i);
      if (close === -1) break;
      if (xml.charCodeAt(close - 1) !== 0x2f) {
        depth++;
        if (depth > max) max = depth;
        if (max > limits.maxDepth) throw new XmlRejected('too-deep', `elements nested deeper than ${limits.maxDepth}`);
      }
    }
  }
}

/** Parse, run `fn`, always dispose. Parse failures become XmlRejected('not-well-formed'). */
export function withDocument<T>(xml: string, limits: XmlLimits, fn: (doc: XmlDocument) => T): T {
  precheck(xml, limits);
  let doc: XmlDocument;
  try {
    doc = XmlDocument.fromString(xml, { option: PARSE_OPTIONS });
  } catch (err) {
    const detail = err instanceof XmlParseError ? (err.details?.[0]?.message ?? err.message) : (err as Error).message;
    throw new XmlRejected('not-well-formed', `not well-formed XML: ${String(detail).trim()}`);
  }
  try {
    return fn(doc);
  } finally {
    doc.dispose();
  }
}

/** Element children of an element (skips text, comments). */
export function elementChildren(el: XmlElement): XmlElement[] {
  const out: XmlElement[] = [];
  for (let c: XmlTreeNode | null = el.firstChild; c; c = c.next) if (isElement(c)) out.push(c);
  return out;
}

export function isElement(n: XmlNode): n is XmlElement {
  return n instanceof XmlElement;
}
