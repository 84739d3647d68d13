/**
 * NOTIFY serialisation for one watcher: the per-watcher work of a fan-out once the body is
 * composed. "template" is what the notifier does (core/dialogs/notify-wire.ts NotifyWire, built once per
 * dialog); "generic" is a SipRequest with every header appended and toBuffer(), the path the
 * notifier took before the template (bench/lib/notify-mirror.ts).
 */
import { composePidf } from '../../workers/pidf.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { NotifyWire, notifyTarget } from '../../core/dialogs/notify-wire.js';
import { sampleSubscription, genericNotify } from '../lib/notify-mirror.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const presentity = `sip:alice@${DOMAIN}`;
  const body = composePidf({ presentityUri: presentity, bodies: [pidfDocument(presentity, 5)], dummy: false }, DEFAULT_XML_LIMITS);
  const bodyBuf = Buffer.from(body, 'utf8');
  const subs = Array.from({ length: 1000 }, (_, i) => sampleSubscription(i, presentity, 40000 + (i % 4)));
  const contact = '<sip:presence@127.0.0.1:5070>';
  const templates = subs.map((s) => new NotifyWire(s, contact));
  let i = 0;
  let branch = 0;
  let sink = 0;
  const state = 'active;expires=3599';
  const via = (): string => `SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK5d2f1c0a9b8e${(branch++).toString(36)};rport`;
  const rows = await measure(
    'notify-serialise',
    [
      {
        name: `generic: SipRequest + Via + toBuffer (${body.length} B body)`,
        fn: () => {
          const rec = subs[i++ % subs.length]!;
          rec.localCseq++;
          sink += genericNotify(rec, state, bodyBuf, contact, via()).length;
        },
      },
      {
        name: 'generic + notifyTarget() (URI parse per NOTIFY)',
        fn: () => {
          const rec = subs[i++ % subs.length]!;
          rec.localCseq++;
          sink += notifyTarget(rec).port;
          sink += genericNotify(rec, state, bodyBuf, contact, via()).length;
        },
      },
      {
        name: 'template (notifier): per-dialog NotifyWire + shared body',
        fn: () => {
          const k = i++ % subs.length;
          const rec = subs[k]!;
          rec.localCseq++;
          sink += templates[k]!.request(rec.localCseq, state, bodyBuf, 'application/pidf+xml').serialize(via()).length;
        },
      },
      {
        name: 'template built anew (first NOTIFY of a dialog)',
        fn: () => {
          const rec = subs[i++ % subs.length]!;
          rec.localCseq++;
          sink += new NotifyWire(rec, contact).request(rec.localCseq, state, bodyBuf, 'application/pidf+xml').serialize(via()).length;
        },
      },
    ],
    o,
  );
  if (sink === -1) process.stdout.write('');
  return rows;
}

if (isMain(import.meta.url)) runStandalone(suite);
