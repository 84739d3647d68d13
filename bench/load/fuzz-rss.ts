/**
 * A presenced node under a great many fuzzed SIP messages over UDP, and what its memory does
 * (issue 12: "1 million fuzzed messages: RSS before/after"). The messages are the live fuzz
 * test's (test/support/sip-arbitraries.ts: mutated valid requests, one in five a fragment
 * repeated to 1-16 kB; fast-check with a fixed seed, FUZZ_SEED to replay another), generated
 * in chunks so the driver holds only one chunk; their Vias point at the driver, which counts
 * the responses without keeping them. Every BATCH messages an OPTIONS must be answered (sent
 * again every 500 ms: junk may fill the socket buffer), so the node is never more than a batch
 * behind. RSS of the node, and its V8 heap used after a full garbage collection (through the
 * inspector it opens on an ephemeral loopback port for this run): after a warm-up, right after
 * the last message, and once Timer J (32 s over UDP) has released every finished server
 * transaction (--settle seconds). Right after, the heap holds the transactions of the last 32 s.
 *
 *   node dist/bench/load/fuzz-rss.js               1,000,000 messages, settle 35 s
 *   node dist/bench/load/fuzz-rss.js --quick       100,000 messages
 *   node dist/bench/load/fuzz-rss.js --count N --settle S
 */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { FUZZ_SEED, mutatedRequest, amplifiedRequest } from '../../test/support/sip-arbitraries.js';
import { startPresenced, memoryOf } from './targets.js';
import { machine, machineLine, table, writeResults, RESULTS_DIR } from '../lib/report.js';

const CHUNK = 10_000;
const BATCH = 200;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

const quick = process.argv.includes('--quick');
const count = option('count', quick ? 100_000 : 1_000_000);
const settleS = option('settle', 35);
const out = (s = ''): void => void process.stdout.write(s + '\n');

const arb = fc.oneof(
  { weight: 4, arbitrary: mutatedRequest },
  { weight: 1, arbitrary: fc.integer({ min: 1024, max: 16384 }).chain((n) => amplifiedRequest(n)) },
);

function chunk(i: number, port: number, n: number): Buffer[] {
  return fc
    .sample(arb, { seed: FUZZ_SEED + i, numRuns: n })
    .map((text) =>
      Buffer.from(
        text
          .replace('SIP/2.0/UDP 192.0.2.1:5060;branch=', `SIP/2.0/UDP 127.0.0.1:${port};rport;branch=`)
          .replace('SIP/2.0/UDP 192.0.2.1;branch=', `SIP/2.0/UDP 127.0.0.1:${port};rport;branch=`),
        'utf8',
      ),
    );
}

interface Inspector {
  send(data: string): void;
  close(): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
  once(event: 'open' | 'error', listener: (err?: Error) => void): void;
}
const WebSocket = createRequire(import.meta.url)('ws') as new (url: string) => Inspector;

/**
 * A full garbage collection in the node, through its inspector (HeapProfiler.collectGarbage): the
 * heap used after it is what the node retains, where a plain reading also counts garbage V8 has
 * not collected yet (it grows the heap lazily on a machine with memory to spare).
 */
async function collectGarbage(url: string): Promise<void> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', (err) => reject(err));
  });
  await new Promise<void>((resolve) => {
    ws.on('message', (data) => {
      if ((JSON.parse(data.toString()) as { id?: number }).id === 1) resolve();
    });
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
  });
  ws.close();
}

async function main(): Promise<void> {
  const m = machine();
  const label = 'presenced-fuzz-rss';
  // The node (only) listens for an inspector on an ephemeral loopback port, named in its log.
  const options = process.env.NODE_OPTIONS;
  process.env.NODE_OPTIONS = `${options ?? ''} --inspect=127.0.0.1:0`.trim();
  const node = await startPresenced({ workerThreads: 0, cpuProf: false, rules: false, label });
  if (options === undefined) delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = options;
  const inspectorUrl = /Debugger listening on (ws:\/\/\S+)/.exec(readFileSync(join(RESULTS_DIR, `${label}.log`), 'utf8'))?.[1];
  if (!inspectorUrl) throw new Error('the node did not open its inspector');
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  const port = sock.address().port;
  let responses = 0;
  const waiting = new Map<string, () => void>();
  sock.on('message', (data) => {
    responses++;
    if (waiting.size === 0) return;
    const text = data.toString('latin1', 0, Math.min(data.length, 600));
    for (const [branch, done] of waiting) if (text.includes(branch)) done();
  });
  let barrierNo = 0;
  const barrier = async (): Promise<void> => {
    const branch = `z9hG4bKbarrier${++barrierNo}x${Date.now()}`;
    const req = Buffer.from(
      `OPTIONS sip:${node.sip.host}:${node.sip.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${port};rport;branch=${branch}\r\n` +
        `From: <sip:bench@127.0.0.1>;tag=b${barrierNo}\r\nTo: <sip:${node.sip.host}>\r\nCall-ID: barrier-${barrierNo}@bench\r\n` +
        'CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n',
    );
    await new Promise<void>((resolve, reject) => {
      const started = Date.now();
      const again = setInterval(() => {
        if (Date.now() - started > 60_000) {
          clearInterval(again);
          waiting.delete(branch);
          reject(new Error('the node did not answer OPTIONS for 60 s'));
          return;
        }
        sock.send(req, node.sip.port, node.sip.host);
      }, 500);
      waiting.set(branch, () => {
        clearInterval(again);
        waiting.delete(branch);
        resolve();
      });
      sock.send(req, node.sip.port, node.sip.host);
    });
  };
  const rssMiB = (): number => (memoryOf(node.pid!)?.rss ?? 0) / 2 ** 20;
  const metricsUrl = node.rpc!.replace(/\/RPC$/, '/metrics');
  /** A series of the node's /metrics, summed over its labels. */
  const metric = async (name: string): Promise<number> =>
    (await (await fetch(metricsUrl)).text())
      .split('\n')
      .filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '))
      .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  /** V8 heap used after a full collection. */
  const heapMiB = async (): Promise<number> => {
    await collectGarbage(inspectorUrl);
    return (await metric('presenced_nodejs_heap_size_used_bytes')) / 2 ** 20;
  };
  try {
    for (let i = 0; i < 200; i++) await barrier(); // warm-up: JIT, pools
    const before = rssMiB();
    const heapBefore = await heapMiB();
    const t0 = performance.now();
    let sent = 0;
    let bytes = 0;
    let peak = before;
    for (let c = 0; sent < count; c++) {
      const msgs = chunk(c, port, Math.min(CHUNK, count - sent));
      for (let i = 0; i < msgs.length; i++) {
        sock.send(msgs[i]!, node.sip.port, node.sip.host);
        bytes += msgs[i]!.length;
        if ((i + 1) % BATCH === 0) await barrier();
      }
      sent += msgs.length;
      await barrier();
      peak = Math.max(peak, rssMiB());
      if (c % 10 === 9) out(`  ${sent} sent, RSS ${rssMiB().toFixed(1)} MiB`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const after = rssMiB();
    const heapAfter = await heapMiB();
    await new Promise((r) => setTimeout(r, settleS * 1000));
    await barrier();
    const settled = rssMiB();
    const heapSettled = await heapMiB();
    const figures = {
      count,
      seed: FUZZ_SEED,
      megabytesSent: Math.round(bytes / 2 ** 20),
      seconds: Math.round(seconds),
      messagesPerSecond: Math.round(count / seconds),
      responsesReceived: responses,
      nodeRequests: await metric('presenced_sip_requests_total'),
      nodeDropped: await metric('presenced_sip_dropped_total'),
      serverTransactions: await metric('presenced_sip_server_transactions'),
      heapUsedMiB: { before: heapBefore, after: heapAfter, settled: heapSettled },
      rssBeforeMiB: before,
      rssPeakMiB: peak,
      rssAfterMiB: after,
      rssSettledMiB: settled,
      settleSeconds: settleS,
    };
    out(`presenced under ${count} fuzzed SIP messages over UDP (seed ${FUZZ_SEED}); ${machineLine(m)}`);
    out(`command: node ${process.argv.slice(1).join(' ')}`);
    out(
      table([
        ['figure', 'value', 'unit'],
        ['messages sent', count, 'messages'],
        ['bytes sent', figures.megabytesSent, 'MiB'],
        ['send time (with a barrier every 200)', figures.seconds, 's'],
        ['rate', figures.messagesPerSecond, 'messages/s'],
        ['requests the node counted', figures.nodeRequests, 'requests'],
        ['messages the node dropped (unparseable, stray)', figures.nodeDropped, 'messages'],
        ['responses received', responses, 'responses'],
        ['RSS before (after warm-up)', Number(before.toFixed(1)), 'MiB'],
        ['RSS peak (sampled per 10,000)', Number(peak.toFixed(1)), 'MiB'],
        ['RSS right after', Number(after.toFixed(1)), 'MiB'],
        [`RSS ${settleS} s later`, Number(settled.toFixed(1)), 'MiB'],
        [
          'V8 heap used after a full GC: before / right after / later',
          `${heapBefore.toFixed(1)} / ${heapAfter.toFixed(1)} / ${heapSettled.toFixed(1)}`,
          'MiB',
        ],
        ['server transactions held at the end', figures.serverTransactions, 'transactions'],
      ]),
    );
    out(`results: ${writeResults('fuzz-rss', { machine: m, figures })}`);
  } finally {
    sock.close();
    await node.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
