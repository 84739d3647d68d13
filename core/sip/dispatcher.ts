/**
 * Where every SIP request enters the presence server: generic checks (URI scheme, Require,
 * Max-Forwards), OPTIONS, 405 for methods the node does not serve (501 for unknown ones), and hand-off to the
 * PUBLISH / SUBSCRIBE handlers. A thrown SipError becomes its response here and only here.
 */
import type { IncomingRequest } from '../../transport/stack.js';
import type { SipResponse } from '../../transport/message.js';
import { SIP_METHODS } from '../../transport/grammar.js';
import type { Logger } from '../log.js';
import { SipError } from '../errors.js';
import { newTag } from '../ids.js';
import type { PackageRegistry } from '../packages/registry.js';

export type MethodHandler = (incoming: IncomingRequest) => Promise<SipResponse | void> | SipResponse | void;

export class Dispatcher {
  private readonly handlers = new Map<string, MethodHandler>();
  /**
   * False while the node recovers its store: every request (OPTIONS included, so a cluster edge's
   * probe keeps the node out of rotation) gets 503 with Retry-After until the node sets it.
   */
  ready = false;

  constructor(
    private readonly packages: PackageRegistry,
    private readonly log: Logger,
    /** Longest URI accepted, in bytes (max_uri_length): longer ones could not be store keys (issue 12). */
    private readonly maxUriLength = 512,
  ) {
    this.handlers.set('OPTIONS', (incoming) => this.options(incoming));
  }

  register(method: string, handler: MethodHandler): void {
    this.handlers.set(method, handler);
  }

  get allow(): string {
    return [...this.handlers.keys()].join(', ');
  }

  handle = async (incoming: IncomingRequest): Promise<void> => {
    const req = incoming.request;
    let response: SipResponse | void;
    try {
      if (!this.ready) throw new SipError(503, 'Service Unavailable', [['retry-after', '5']]);
      this.precheck(incoming);
      const handler = this.handlers.get(req.method);
      if (!handler) {
        // RFC 3261 §8.2.1: a method recognised but not served is a 405; §21.5.2: one not recognised at all, a 501.
        if (SIP_METHODS.has(req.method)) throw new SipError(405, 'Method Not Allowed', [['allow', this.allow]]);
        throw new SipError(501, 'Not Implemented', [['allow', this.allow]]);
      }
      response = await handler(incoming);
    } catch (err) {
      if (!(err instanceof SipError)) throw err; // the stack answers 500 and logs it with the Call-ID
      this.log.debug({ callId: req.callId, method: req.method, status: err.status, reason: err.reason }, 'request rejected');
      response = incoming.reply(err.status, err.reason, newTag());
      for (const [name, value] of err.extraHeaders) response.headers.append(name, value);
    }
    if (response) incoming.respond(response);
  };

  private precheck(incoming: IncomingRequest): void {
    const req = incoming.request;
    if (Buffer.byteLength(req.uri) > this.maxUriLength) throw new SipError(414, 'Request-URI Too Long');
    for (const h of ['from', 'to'] as const) {
      if (Buffer.byteLength(req[h].uri.toString()) > this.maxUriLength)
        throw new SipError(400, `${h === 'from' ? 'From' : 'To'} URI too long`);
    }
    const scheme = req.uri.slice(0, req.uri.indexOf(':')).toLowerCase();
    if (scheme !== 'sip' && scheme !== 'sips' && scheme !== 'pres') throw new SipError(416, 'Unsupported URI Scheme');
    const require = req.headers.getAll('require');
    if (require.length > 0) throw new SipError(420, 'Bad Extension', [['unsupported', unsupportedList(require)]]);
    const mf = req.headers.get('max-forwards');
    if (mf !== undefined && Number(mf) === 0 && req.method !== 'OPTIONS') throw new SipError(483, 'Too Many Hops');
  }

  /** RFC 3261 §11.2: what this node can do. */
  private options(incoming: IncomingRequest): SipResponse {
    const res = incoming.reply(200, 'OK');
    res.headers.append('allow', this.allow);
    res.headers.append('accept', this.packages.acceptedTypes().join(', '));
    res.headers.append('allow-events', this.packages.names().join(', '));
    res.headers.append('supported', '');
    res.headers.append('accept-encoding', 'identity');
    res.headers.append('accept-language', 'en');
    return res;
  }
}

/** Characters of option tags an Unsupported header lists at most (past the first tag). */
const UNSUPPORTED_MAX = 1024;

/**
 * RFC 3261 §8.2.2.3: the Unsupported header of a 420 lists the option tags not supported; each
 * once, and no more than UNSUPPORTED_MAX characters of them. A Require of thousands of tags would
 * otherwise get a 420 larger than the request: one no UDP datagram holds (answered 513 instead),
 * and an amplifier towards a forged source address. The client learns tags it must drop.
 */
function unsupportedList(tags: string[]): string {
  let list = '';
  for (const tag of new Set(tags)) {
    if (list.length > 0 && list.length + 2 + tag.length > UNSUPPORTED_MAX) break;
    list = list.length === 0 ? tag : `${list}, ${tag}`;
  }
  return list;
}
