/**
 * XCAP URIs (RFC 4825 §6): XCAP root, auid, "global" or "users/{XUI}", document path, and an
 * optional node selector after the "~~" separator. Each path segment is percent-decoded on its
 * own (an XUI such as sip%3Aalice%40example.com becomes sip:alice@example.com); the node
 * selector is decoded as a whole (§6.3) and parsed by selectors.ts.
 */
import { xcapErrors, XcapError } from './errors.js';
import { SipUri, normalizedAor } from '../../transport/uri.js';

export interface XcapUri {
  auid: string;
  /** The XUI for users' trees; '' for the global tree. */
  xui: string;
  /** Document path inside the tree (usually "index"); segments joined with "/". */
  name: string;
  /** The request path up to and including the document (still percent-encoded). */
  documentPath: string;
  /** The percent-decoded node selector, when the URI has one. */
  nodeSelector?: string;
  /** The node selector exactly as it was in the request path. */
  nodeSelectorRaw?: string;
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw xcapErrors.badRequest(`"${segment}" is not properly percent-encoded`);
  }
}

/**
 * A XUI that is a plain SIP address of record, in the spelling presentities are keyed by
 * (normalizedAor, RFC 3261 §19.1.4: host lower-cased, unreserved characters unescaped), so
 * that rules PUT for sip:Alice@Example.COM are found for the presentity sip:Alice@example.com.
 * Anything else (parameters, a port, another scheme) is kept as written.
 */
function normalizedXui(xui: string): string {
  if (!/^sips?:/i.test(xui)) return xui;
  let uri: SipUri;
  try {
    uri = SipUri.parse(xui);
  } catch {
    return xui; // not a SIP URI after all: a XUI is any string (RFC 4825 §4)
  }
  if (uri.user === undefined || uri.port !== undefined || uri.password !== undefined || uri.params.size > 0 || uri.headers !== undefined)
    return xui;
  return normalizedAor(uri);
}

/**
 * Parse a raw request path (no query). Undefined when the path is not under the XCAP root;
 * an XcapError 404/400 when it is but names nothing this server could hold, 414 when its XUI
 * or document name is longer than `maxUriLength` bytes (the document's store key could not
 * hold it, issue 12).
 */
export function parseXcapUri(root: string, rawPath: string, maxUriLength = Infinity): XcapUri | undefined {
  if (!rawPath.startsWith(root + '/')) return undefined;
  let docPart = rawPath.slice(root.length + 1);
  let nodeSelectorRaw: string | undefined;
  const sep = docPart.indexOf('/~~/');
  if (sep !== -1) {
    nodeSelectorRaw = docPart.slice(sep + 4);
    docPart = docPart.slice(0, sep);
  } else if (docPart.endsWith('/~~')) {
    throw xcapErrors.badRequest('empty node selector');
  }
  const segs = docPart.split('/');
  const auid = decode(segs[0] ?? '');
  let xui = '';
  let nameSegs: string[];
  if (segs[1] === 'global') nameSegs = segs.slice(2);
  else if (segs[1] === 'users') {
    xui = normalizedXui(decode(segs[2] ?? ''));
    // A "/" inside an XUI would make the document key ambiguous.
    if (xui === '' || xui.includes('/')) throw xcapErrors.notFound('no such user tree');
    nameSegs = segs.slice(3);
  } else throw xcapErrors.notFound('an XCAP URI continues with /global/ or /users/{XUI}/ after the auid');
  if (nameSegs.length === 0 || nameSegs.some((s) => s === '')) throw xcapErrors.notFound('no document named in the URI');
  const name = nameSegs.map(decode).join('/');
  if (Buffer.byteLength(xui) > maxUriLength || Buffer.byteLength(name) > maxUriLength || Buffer.byteLength(auid) > maxUriLength) {
    throw new XcapError(414, `the XUI and the document name are limited to max_uri_length (${maxUriLength} bytes)`);
  }
  const out: XcapUri = { auid, xui, name, documentPath: root + '/' + docPart };
  if (nodeSelectorRaw !== undefined) {
    out.nodeSelectorRaw = nodeSelectorRaw;
    out.nodeSelector = decode(nodeSelectorRaw);
  }
  return out;
}

/** Percent-encode an XUI as a path segment, keeping ":" and "@" (RFC 3986 pchar). */
export function encodeXui(xui: string): string {
  return encodeURIComponent(xui).replace(/%3A/gi, ':').replace(/%40/g, '@');
}

/** The path of a document: `${root}/${auid}/users/${xui}/${name}` or the global form. */
export function documentPathOf(root: string, auid: string, xui: string, name: string): string {
  const doc = name.split('/').map(encodeURIComponent).join('/');
  return xui ? `${root}/${auid}/users/${encodeXui(xui)}/${doc}` : `${root}/${auid}/global/${doc}`;
}
