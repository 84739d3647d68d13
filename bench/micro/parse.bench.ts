/**
 * SIP parsing on the receive path: a PUBLISH with a PIDF body (what every publisher sends)
 * and the 200 a watcher returns for each NOTIFY (one per watcher per change: the fan-out's
 * receive side). The "as the stack does" variants add what SipStack.receive does next.
 */
import { parseMessage, validateRequest } from '../../transport/parser.js';
import type { SipRequest, SipResponse } from '../../transport/message.js';
import { pidfDocument, publishRequest, NOTIFY_200, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const publish = publishRequest(pidfDocument(`sip:alice@${DOMAIN}`, 2));
  let sink = 0;
  const rows = await measure(
    'sip-parse',
    [
      {
        name: `PUBLISH (${publish.length} B, PIDF body)`,
        fn: () => {
          sink += parseMessage(publish, true).message.headers.entries.length;
        },
      },
      {
        name: 'PUBLISH + validateRequest + topVia',
        fn: () => {
          const p = parseMessage(publish, true);
          const req = p.message as SipRequest;
          if (validateRequest(req, p.problems) === undefined) sink += req.topVia.port ?? 0;
        },
      },
      {
        name: `200 to NOTIFY (${NOTIFY_200.length} B)`,
        fn: () => {
          sink += parseMessage(NOTIFY_200, true).message.headers.entries.length;
        },
      },
      {
        name: '200 to NOTIFY + topVia + cseq (stack.receiveResponse)',
        fn: () => {
          const res = parseMessage(NOTIFY_200, true).message as SipResponse;
          sink += (res.topVia.branch?.length ?? 0) + res.cseq.seq;
        },
      },
    ],
    o,
  );
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
