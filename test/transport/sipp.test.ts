/**
 * SIPp (Debian sip-tester) runs test/sipp/options.xml against a real node over UDP (-t u1)
 * and TCP (-t t1); every call must succeed (exit code 0). A third, faster UDP run prints the
 * OPTIONS/s the node sustained, as a diagnostic only.
 *
 * SIPp runs in the foreground with -nostdin (CI has no terminal), -timeout/-timeout_error so
 * it cannot hang, and is killed by the test if it still does.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, type RunningNode } from '../support/node.js';
import { startSipp, explainSipp as explain, type SippRun } from '../support/sipp.js';

// dist/test/transport/sipp.test.js → <repo>/test/sipp/options.xml
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SCENARIO = join(REPO, 'test', 'sipp', 'options.xml');
const SUBSCRIBE_SCENARIO = join(REPO, 'test', 'sipp', 'subscribe.xml');
const PUBLISH_SCENARIO = join(REPO, 'test', 'sipp', 'publish.xml');

let node: RunningNode;
let work: string;
before(async () => {
  // T1 = 10 s: the node resends a NOTIFY only if SIPp has not answered it for 10 s. With the
  // default 500 ms, a loaded machine made it resend the immediate NOTIFY after the unsubscribe,
  // where subscribe.xml waits for the final one (SIPp then aborts the call): the scenarios test
  // the node's answers and NOTIFYs, not UDP retransmission (test/core/subscribe.test.ts does).
  node = await startNode({ sip_t1: 10_000, sip_t2: 10_000 });
  work = mkdtempSync(join(tmpdir(), 'presenced-sipp-'));
});
after(async () => {
  await node?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function runSipp(
  transport: 'u1' | 't1',
  port: number,
  calls: number,
  rate: number,
  timeoutMs = 30_000,
  scenario = SCENARIO,
): Promise<SippRun> {
  const args = [
    '-sf',
    scenario,
    '-t',
    transport,
    '-i',
    '127.0.0.1',
    '-p',
    '0',
    '-m',
    String(calls),
    '-r',
    String(rate),
    `127.0.0.1:${port}`,
  ];
  return startSipp(args, work, `${transport}-${calls}-${scenario.replace(/^.*\//, '')}`, { sippTimeoutS: 20, killAfterMs: timeoutMs }).done;
}

/** Cumulative counters from SIPp's final statistics screen. */
function stats(out: string): { successful: number; failed: number; cps: number; retrans: number } {
  const last = (re: RegExp): number => {
    const all = [...out.matchAll(re)];
    const m = all[all.length - 1];
    return m ? Number(m[1]) : NaN;
  };
  return {
    successful: last(/Successful call\s*\|\s*\d+\s*\|\s*(\d+)/g),
    failed: last(/Failed call\s*\|\s*\d+\s*\|\s*(\d+)/g),
    cps: last(/Call Rate\s*\|[^|]*\|\s*([\d.]+) cps/g),
    retrans: last(/OPTIONS -+>\s+\d+\s+(\d+)/g),
  };
}

// Each scenario over UDP and TCP; every call must succeed. SUBSCRIBE and PUBLISH put SIPp in
// the place of an independent subscriber and publisher: its parser reads our responses and
// NOTIFYs, ours reads its requests.
const SCENARIOS = [
  { file: SCENARIO, calls: 200, rate: 200, what: 'OPTIONS: 200 with Allow and a To tag' },
  { file: SUBSCRIBE_SCENARIO, calls: 50, rate: 25, what: 'SUBSCRIBE: subscribe, immediate NOTIFY, unsubscribe, final NOTIFY' },
  { file: PUBLISH_SCENARIO, calls: 50, rate: 25, what: 'PUBLISH: publish, refresh, stale SIP-If-Match → 412, remove' },
];

for (const sc of SCENARIOS) {
  for (const [transport, name] of [
    ['u1', 'UDP'],
    ['t1', 'TCP'],
  ] as const) {
    test(`sipp ${sc.what} — over ${name} (-t ${transport}), ${sc.calls} calls, all successful`, async () => {
      const port = transport === 'u1' ? node.udpPort : node.tcpPort;
      const run = await runSipp(transport, port, sc.calls, sc.rate, 30_000, sc.file);
      assert.equal(run.code, 0, explain(run));
      const s = stats(run.stdout);
      assert.equal(s.successful, sc.calls, explain(run));
      assert.equal(s.failed, 0, explain(run));
    });
  }
}

test('sipp OPTIONS throughput over UDP (diagnostic)', async () => {
  const calls = 10_000;
  const rate = 10_000;
  const run = await runSipp('u1', node.udpPort, calls, rate, 60_000);
  const s = stats(run.stdout);
  const wall = calls / (run.ms / 1000);
  console.log(
    `sipp OPTIONS over UDP: ${s.cps} calls/s (SIPp cumulative call rate), ${wall.toFixed(0)} calls/s by wall clock ` +
      `(${calls} calls in ${(run.ms / 1000).toFixed(2)} s, asked rate ${rate}/s), ${s.retrans} retransmissions, ` +
      `${s.successful} successful, ${s.failed} failed, sipp exit ${run.code}; ${cpus().length}x ${cpus()[0]?.model ?? 'cpu'}, ` +
      `node ${process.version}; command: sipp ${run.args.join(' ')}`,
  );
  // Not a performance assertion: only that the run happened and the node survived it.
  assert.ok(s.successful > 0, explain(run));
  const after = await runSipp('u1', node.udpPort, 20, 100);
  assert.equal(after.code, 0, explain(after));
});
