/**
 * LMDB put + commit (core/store/store.ts): what a PUBLISH and a SUBSCRIBE wait for before their
 * 2xx, and the CSeq record every NOTIFY commits before it leaves. "1 in flight" is the latency
 * one request sees; "N in flight" shows lmdb-js batching N puts into one commit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../core/store/store.js';
import type { Publication } from '../../core/store/records.js';
import { sampleSubscription } from '../lib/notify-mirror.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-bench-store-'));
  const store = Store.open(join(dir, 'db'), 'xcap');
  const body = Buffer.from(pidfDocument(`sip:alice@${DOMAIN}`, 2));
  let n = 0;
  const publication = (): Publication => ({
    presentityUri: `sip:u${n % 5000}@${DOMAIN}`,
    event: 'presence',
    entityTag: `etag${n++}`,
    expiresAt: Date.now() + 3_600_000,
    receivedAt: Date.now(),
    contentType: 'application/pidf+xml',
    body,
    sender: `sip:alice@${DOMAIN}`,
    callId: `c${n}@bench`,
  });
  const subscription = () => sampleSubscription(n++ % 20000, `sip:alice@${DOMAIN}`, 40000);
  const BATCH = 100;
  try {
    return await measure(
      'lmdb',
      [
        { name: `putPublication + commit (${body.length} B body), 1 in flight`, fn: () => store.putPublication(publication()) },
        {
          name: `putPublication + commit, ${BATCH} in flight`,
          batch: BATCH,
          fn: () => Promise.all(Array.from({ length: BATCH }, () => store.putPublication(publication()))),
        },
        { name: 'putSubscription + commit, 1 in flight', fn: () => store.putSubscription(subscription()) },
        {
          name: `putSubscription + commit, ${BATCH} in flight`,
          batch: BATCH,
          fn: () => Promise.all(Array.from({ length: BATCH }, () => store.putSubscription(subscription()))),
        },
        { name: 'putCseq + commit (per NOTIFY), 1 in flight', fn: () => store.putCseq(`s${n++ % 20000}`, n) },
        {
          name: `putCseq + commit, ${BATCH} in flight`,
          batch: BATCH,
          fn: () => Promise.all(Array.from({ length: BATCH }, () => store.putCseq(`s${n++ % 20000}`, n))),
        },
      ],
      o,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) runStandalone(suite);
