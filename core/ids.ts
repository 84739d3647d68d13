/**
 * Identifiers the node mints: dialog tags and entity-tags. Entity-tags must be unguessable
 * (RFC 3903 §4.1 lets any client that knows one modify the publication), so they come from
 * the CSPRNG; tags only need to be unique, so they come from a cheaper pool.
 */
import { randomBytes } from 'node:crypto';

let pool = randomBytes(4096);
let offset = 0;

function take(n: number): Buffer {
  if (offset + n > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const b = pool.subarray(offset, offset + n);
  offset += n;
  return b;
}

/** 128-bit random entity-tag (RFC 3903 §4.1), base64url. */
export function newEntityTag(): string {
  return take(16).toString('base64url');
}

/** Dialog tag (RFC 3261 §19.3: at least 32 bits of randomness). */
export function newTag(prefix = ''): string {
  return prefix + take(8).toString('hex');
}

/** Call-ID for requests the node originates. */
export function newCallId(host: string): string {
  return `${take(12).toString('hex')}@${host}`;
}
