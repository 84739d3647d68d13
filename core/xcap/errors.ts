/**
 * XcapError: an HTTP status, and for 409 the RFC 4825 §11 error element that goes in an
 * application/xcap-error+xml body. Handlers throw it; the server turns it into a response in
 * one place.
 */
import type { XcapFailure } from '../../workers/xcap.js';
import { NS } from './auids.js';

export const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const XCAP_ERROR_TYPE = 'application/xcap-error+xml';

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export class XcapError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** The error element (e.g. `<not-well-formed/>`) for a 409 body. */
    readonly element?: string,
    readonly headers: Array<[string, string]> = [],
    /** Close the connection after answering (a body we stopped reading). */
    readonly closeConnection = false,
  ) {
    super(message);
    this.name = 'XcapError';
  }

  /** Why, for the log line only, when the client is told less (a 401). */
  why: string | undefined;

  get contentType(): string | undefined {
    return this.element ? XCAP_ERROR_TYPE : undefined;
  }

  get body(): string {
    if (!this.element) return '';
    return `<?xml version="1.0" encoding="UTF-8"?>\n<xcap-error xmlns="${NS.xcapError}">${this.element}</xcap-error>\n`;
  }
}

function conflict(tag: string, phrase: string, inner = ''): XcapError {
  const el = inner ? `<${tag} phrase="${escapeXml(phrase)}">${inner}</${tag}>` : `<${tag} phrase="${escapeXml(phrase)}"/>`;
  return new XcapError(409, phrase, el);
}

/** The RFC 4825 §11 conditions, one constructor each. */
export const xcapErrors = {
  notWellFormed: (phrase: string) => conflict('not-well-formed', phrase),
  notXmlFrag: (phrase: string) => conflict('not-xml-frag', phrase),
  notXmlAttValue: (phrase: string) => conflict('not-xml-att-value', phrase),
  notUtf8: (phrase: string) => conflict('not-utf-8', phrase),
  schemaValidation: (phrase: string) => conflict('schema-validation-error', phrase),
  noParent: (phrase: string, ancestor: string) => conflict('no-parent', phrase, `<ancestor>${escapeXml(ancestor)}</ancestor>`),
  cannotInsert: (phrase: string) => conflict('cannot-insert', phrase),
  cannotDelete: (phrase: string) => conflict('cannot-delete', phrase),
  /** `altValues`: values that would be unique at the time of the answer (RFC 4825 §8.2.5). */
  uniqueness: (phrase: string, field: string, altValues: string[] = []) =>
    conflict(
      'uniqueness-failure',
      phrase,
      altValues.length
        ? `<exists field="${escapeXml(field)}">${altValues.map((v) => `<alt-value>${escapeXml(v)}</alt-value>`).join('')}</exists>`
        : `<exists field="${escapeXml(field)}"/>`,
    ),
  constraint: (phrase: string) => conflict('constraint-failure', phrase),
  notFound: (message = 'no such document or node') => new XcapError(404, message),
  badRequest: (message: string) => new XcapError(400, message),
  tooLarge: (limit: number, close = false) =>
    new XcapError(413, `the body is larger than max_xml_size (${limit} bytes)`, undefined, [], close),
  unsupportedType: (expected: string) => new XcapError(415, `Content-Type must be ${expected}`, undefined, [['Accept', expected]]),
  methodNotAllowed: (allow: string) => new XcapError(405, 'method not allowed', undefined, [['Allow', allow]]),
};

/** A worker's failure as the response RFC 4825 gives it. `ancestor` builds <no-parent>'s URI. */
export function failureToError(f: XcapFailure, ancestor: (steps: number) => string, maxBytes: number): XcapError {
  switch (f.kind) {
    case 'too-large':
      return xcapErrors.tooLarge(maxBytes);
    case 'too-deep':
      return xcapErrors.constraint(f.reason);
    case 'dtd':
      // Legal XML, but no XCAP schema has a DTD and the parser will not expand one (entity bombs, XXE).
      return xcapErrors.constraint(f.reason);
    case 'not-well-formed':
      return xcapErrors.notWellFormed(f.reason);
    case 'not-xml-frag':
      return xcapErrors.notXmlFrag(f.reason);
    case 'not-xml-att-value':
      return xcapErrors.notXmlAttValue(f.reason);
    case 'schema':
      return xcapErrors.schemaValidation(f.reason);
    case 'uniqueness':
      return xcapErrors.uniqueness(f.reason, f.field ?? '');
    case 'not-found':
      return xcapErrors.notFound(f.reason);
    case 'no-parent':
      return xcapErrors.noParent(f.reason, ancestor(f.ancestorSteps ?? 0));
    case 'cannot-insert':
      return xcapErrors.cannotInsert(f.reason);
    case 'cannot-delete':
      return xcapErrors.cannotDelete(f.reason);
  }
}
