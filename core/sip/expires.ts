/**
 * The Expires rules PUBLISH and SUBSCRIBE share (RFC 3903 §6 step 4, RFC 6665 §4.2.1.1),
 * with the presence module's min_expires / max_expires / default_expires / min_expires_action.
 */
import type { SipRequest } from '../../transport/message.js';
import type { Config } from '../config.js';
import { SipError } from '../errors.js';

/** The granted lifetime in seconds (0 = remove/unsubscribe); throws 423 or 400. */
export function grantedExpires(req: SipRequest, config: Config): number {
  let requested: number | undefined;
  try {
    requested = req.intHeader('expires');
  } catch {
    throw new SipError(400, 'Malformed Expires header');
  }
  if (requested === undefined) return config.default_expires;
  if (requested === 0) return 0;
  if (requested < config.min_expires) {
    if (config.min_expires_action === 1) throw new SipError(423, 'Interval Too Brief', [['min-expires', String(config.min_expires)]]);
    return config.min_expires;
  }
  return Math.min(requested, config.max_expires);
}
