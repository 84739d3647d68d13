/**
 * The worker pool and the store: a worker thread gives its LMDB read snapshot back after each
 * task, so an idle worker never keeps the writer from reusing pages (the data file, and the
 * node's memory, grew with every write under a stale reader).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool } from '../../core/pool.js';
import { Store } from '../../core/store/store.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';

test('after a task that read the store, the worker holds no read snapshot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-pool-'));
  const store = Store.open(join(dir, 'db'), 'xcap');
  const pool = new WorkerPool({ dbPath: join(dir, 'db'), xcapTable: 'xcap', limits: DEFAULT_XML_LIMITS }, 1, store);
  try {
    const uri = 'sip:snapshot@example.com';
    await store.putPublication({
      presentityUri: uri,
      event: 'presence',
      entityTag: 'e1',
      expiresAt: Date.now() + 600_000,
      receivedAt: Date.now(),
      contentType: 'application/pidf+xml',
      body: Buffer.from(
        `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${uri}"><tuple id="t"><status><basic>open</basic></status></tuple></presence>`,
      ),
      sender: '',
      callId: '',
    });
    // pidf.checkBasic reads the publication in the worker thread (1 = the tuple is open).
    assert.equal(await pool.run('pidf.checkBasic', { presentityUri: uri, status: 'open' }), 1);
    for (let i = 0; i < 20; i++) await store.putCseq(`s${i}`, i);
    // LMDB's reader table: one row per reader slot, its snapshot's txnid or '-' when idle.
    const rows = store.env
      .readerList()
      .split('\n')
      .slice(1)
      .map((l) => l.trim())
      .filter(Boolean);
    const held = rows.filter((r) => !/\s-$/.test(r));
    assert.deepEqual(held, [], `readers still holding a snapshot:\n${store.env.readerList()}`);
  } finally {
    await pool.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
