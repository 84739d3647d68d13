/**
 * The worker boundary (DESIGN.md: "a task that costs less than its message round trip stays
 * on the main thread"): the same task through the piscina pool (core/pool.ts, 1 thread, as
 * worker_threads = -1 gives on 2 cores) and on the main thread (runHere), one at a time and
 * 32 in flight. The pool wins only where the work outweighs the round trip or runs in parallel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool } from '../../core/pool.js';
import { Store } from '../../core/store/store.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { pidfDocument, DOMAIN } from '../fixtures/messages.js';
import { measure, isMain, runStandalone, type MicroOptions, type MicroRow, type MicroTask } from './harness.js';

export default async function suite(o: MicroOptions): Promise<MicroRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-bench-pool-'));
  const store = Store.open(join(dir, 'db'), 'xcap');
  const threads = 1;
  const pool = new WorkerPool({ dbPath: join(dir, 'db'), xcapTable: 'xcap', limits: DEFAULT_XML_LIMITS }, threads, store);
  const presentity = `sip:alice@${DOMAIN}`;
  const tiny = '<a xmlns="urn:x"/>';
  const five = pidfDocument(presentity, 5);
  const bodies5 = Array.from({ length: 5 }, (_, k) => pidfDocument(presentity, 1, `d${k}`, `p${k}`));
  const BATCH = 32;
  let sink = 0;
  try {
    // Let the thread start and load libxml2-wasm before timing.
    await Promise.all(Array.from({ length: 4 }, () => pool.run('xml.validateRoot', { xml: tiny, root: 'a', ns: 'urn:x' })));
    const pair = (label: string, name: 'xml.validateRoot' | 'pidf.validate' | 'pidf.composeBodies', payload: () => never): MicroTask[] => [
      { name: `${label}: worker, 1 in flight`, fn: async () => void (sink += JSON.stringify(await pool.run(name, payload())).length) },
      { name: `${label}: main thread`, fn: () => void (sink += JSON.stringify(pool.runHere(name, payload())).length) },
      {
        name: `${label}: worker, ${BATCH} in flight`,
        batch: BATCH,
        fn: async () => {
          const rs = await Promise.all(Array.from({ length: BATCH }, () => pool.run(name, payload())));
          sink += rs.length;
        },
      },
    ];
    const rows = await measure(
      `worker-boundary (${threads} thread)`,
      [
        ...pair('round trip (validateRoot of 18 B)', 'xml.validateRoot', () => ({ xml: tiny, root: 'a', ns: 'urn:x' }) as never),
        ...pair('pidf.validate (5 tuples)', 'pidf.validate', () => ({ xml: five }) as never),
        ...pair(
          'pidf.composeBodies (5 pubs)',
          'pidf.composeBodies',
          () => ({ presentityUri: presentity, bodies: bodies5, dummy: false }) as never,
        ),
      ],
      o,
    );
    if (sink === -1) process.stdout.write('');
    return rows;
  } finally {
    await pool.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) runStandalone(suite);
