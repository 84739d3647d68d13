/**
 * The keys the node files state under: a presentity (RFC 3856 §6: the Request-URI's user@host),
 * presentity + event (one composed body, one set of watchers), a dialog (Call-ID and both tags,
 * RFC 3261 §12), and a watcher's address of record.
 */
import { SipUri, NameAddr, normalizedAor } from '../transport/uri.js';
import { SipError } from './errors.js';

/** The last Request-URI keyed and its key: a SUBSCRIBE is keyed by the list server's check and then by its UAS. */
let lastUri: string | undefined;
let lastKey = '';

/** `sip:alice@example.com` from a Request-URI: no port, no parameters, host lower-cased. */
export function presentityOf(uri: string): string {
  if (uri === lastUri) return lastKey;
  const key = keyOf(uri);
  lastUri = uri;
  lastKey = key;
  return key;
}

function keyOf(uri: string): string {
  let u: SipUri;
  try {
    u = SipUri.parse(uri);
  } catch {
    throw new SipError(400, 'Malformed Request-URI');
  }
  if (u.user === undefined) throw new SipError(404, 'Not Found'); // no presentity without a user part
  return normalizedAor(u, u.scheme === 'pres' || u.scheme === 'sips' ? 'sip' : u.scheme); // RFC 3261 §19.1.4 (issue 12)
}

export function presentityKey(presentityUri: string, event: string): string {
  return `${presentityUri}\u0000${event}`;
}

export function dialogKey(callId: string, localTag: string, remoteTag: string): string {
  return `${callId}\u0000${localTag}\u0000${remoteTag}`;
}

/** The address of record of a (name-addr or bare) URI; the text itself when it does not parse. */
export function uriAor(uri: string): string {
  try {
    const aor = NameAddr.parse(uri).uri.aor;
    return aor === uri ? uri : aor; // the caller's string when it is one already: no copy to keep
  } catch {
    return uri;
  }
}

/** XUIs compare with the scheme dropped and the host part case-insensitive (as the XCAP server compares them). */
export function sameXui(a: string, b: string): boolean {
  const norm = (x: string): string => {
    const s = x.replace(/^sips?:/i, '');
    const at = s.lastIndexOf('@');
    return at < 0 ? s : s.slice(0, at) + '@' + s.slice(at + 1).toLowerCase();
  };
  return norm(a) === norm(b);
}
