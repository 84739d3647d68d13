/**
 * NOTIFY serialisation for one watcher: the per-watcher work of a fan-out once the body is
 * composed. "as today" mirrors Notifier.build/target + SipStack.sendRequest's Via + toBuffer
 * (bench/lib/notify-mirror.ts); "template" is the precomputed per-dialog variant.
 */
import { composePidf } from '../../workers/pidf.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { sampleSubscription, buildNotifyAsToday, targetAsToday, NotifyTemplate } from '../lib/notify-mirror.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const presentity = `sip:alice@${DOMAIN}`;
  const body = composePidf({ presentityUri: presentity, bodies: [pidfDocument(presentity, 5)], dummy: false }, DEFAULT_XML_LIMITS);
  const bodyBuf = Buffer.from(body, 'utf8');
  const subs = Array.from({ length: 1000 }, (_, i) => sampleSubscription(i, presentity, 40000 + (i % 4)));
  const contact = '<sip:presence@127.0.0.1:5070>';
  const templates = subs.map((s) => new NotifyTemplate(s, contact));
  let i = 0;
  let branch = 0;
  let sink = 0;
  const state = 'active;expires=3599';
  const via = (): string => `SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK5d2f1c0a9b8e${(branch++).toString(36)};rport`;
  const rows = await measure(
    'notify-serialise',
    [
      {
        name: `as today: build + Via + toBuffer (${body.length} B body)`,
        fn: () => {
          const rec = subs[i++ % subs.length]!;
          rec.localCseq++;
          sink += buildNotifyAsToday(rec, state, bodyBuf, contact, via()).length;
        },
      },
      {
        name: 'as today + target() (SipUri.parse per NOTIFY)',
        fn: () => {
          const rec = subs[i++ % subs.length]!;
          rec.localCseq++;
          sink += targetAsToday(rec).port;
          sink += buildNotifyAsToday(rec, state, bodyBuf, contact, via()).length;
        },
      },
      {
        name: 'template: per-dialog prefix + shared body Buffer',
        fn: () => {
          const k = i++ % subs.length;
          const rec = subs[k]!;
          rec.localCseq++;
          sink += templates[k]!.build(via(), rec.localCseq, state, bodyBuf, 'application/pidf+xml').length;
        },
      },
    ],
    o,
  );
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
