/**
 * `message-summary` (RFC 3842, Kamailio presence_mwi): the newest published summary is the
 * state. Bodies are short text, checked on the main thread (cheaper than a worker round trip).
 */
import { allowEveryone, userdelReason, type EventPackage, type PackageContext } from './types.js';

const MESSAGES_WAITING = /^Messages-Waiting[ \t]*:[ \t]*(yes|no)[ \t]*$/im;

export const messageSummaryPackage: EventPackage = {
  name: 'message-summary',
  publishTypes: ['application/simple-message-summary'],
  notifyType: 'application/simple-message-summary',
  authorize: allowEveryone,
  revokedReason: userdelReason,
  versioned: false,
  async validate(body: string) {
    // RFC 3842 §5.2: the first line is the mandatory Messages-Waiting status.
    const first = body.replace(/^\s+/, '').split(/\r?\n/, 1)[0] ?? '';
    if (!MESSAGES_WAITING.test(first)) return 'Body must start with "Messages-Waiting: yes|no" (RFC 3842)';
    return undefined;
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    const pubs = ctx.publications(presentityUri, 'message-summary');
    if (pubs.length === 0) return undefined;
    let newest = pubs[0]!;
    for (const p of pubs) if (p.receivedAt > newest.receivedAt) newest = p;
    return Buffer.from(newest.body).toString('utf8');
  },
};
