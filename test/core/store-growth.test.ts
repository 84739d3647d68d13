/**
 * The store file stays bounded by its live data (issue 12, 11). LMDB never shrinks its file and
 * reuses a freed page only once no read transaction can still see it: a reader that keeps an old
 * snapshot (a range scan that awaits between records, as presence.cleanup and the restart
 * recovery do) makes every write after it take new pages, and the file grows with the traffic
 * instead of with the data. Churned here through the store API, deterministically: a bounded
 * number of short-lived 20 KB publications, a fixed number live at any time, and a scan of the
 * whole table running across the churn; the file is compared with the live pages afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../core/store/store.js';
import type { Publication } from '../../core/store/records.js';

/** Small publications that stay (the table a scan walks), and the churning 20 KB ones live at a time. */
const RESIDENT = 400;
const LIVE = 20;
const BODY = Buffer.alloc(20 * 1024, 0x61);
const SMALL = Buffer.alloc(200, 0x62);

function publication(n: number, body = BODY): Publication {
  return {
    presentityUri: `sip:churn${n}@example.com`,
    event: 'presence',
    entityTag: `e${n}`,
    expiresAt: Date.now() + 1000,
    receivedAt: Date.now(),
    contentType: 'application/pidf+xml',
    body,
    sender: `sip:churn${n}@example.com`,
    callId: `c${n}`,
  };
}

test('churning short-lived 20 KB publications while a scan walks the table keeps the file within 3x the live pages', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-growth-'));
  const store = Store.open(join(dir, 'db'), 'xcap');
  try {
    const live: Publication[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: RESIDENT }, () => store.putPublication(publication(next++, SMALL))));
    for (let i = 0; i < LIVE; i++) {
      const p = publication(next++);
      await store.putPublication(p);
      live.push(p);
    }
    // One step of churn: a new publication in, the oldest out (the store's own writes, committed).
    const churn = async (): Promise<void> => {
      const p = publication(next++);
      const old = live.shift()!;
      live.push(p);
      await Promise.all([store.putPublication(p), store.removePublication(old.presentityUri, old.event, old.entityTag)]);
    };
    // Scans that await a commit between records, as presence.cleanup does when it expires them:
    // 2 x RESIDENT 20 KB publications churned, against RESIDENT small + LIVE 20 KB live.
    // (A scan without a snapshot also meets the publications written after it began: bounded by count.)
    let churned = 0;
    while (churned < 2 * RESIDENT) {
      for (const _ of store.allPublications()) {
        await churn();
        if (++churned >= 2 * RESIDENT) break;
      }
    }
    const u = await store.usage();
    const liveBytes = LIVE * BODY.length + RESIDENT * SMALL.length;
    assert.ok(u.usedBytes >= liveBytes, `used ${u.usedBytes} B holds the ${liveBytes} B live`);
    assert.ok(
      u.fileBytes <= 3 * u.usedBytes,
      `data file ${u.fileBytes} B for ${u.usedBytes} B of live pages after ${churned} publications of ${BODY.length} B churned`,
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
