/**
 * `npm run bench`: the micro-benchmarks (bench/micro/*.bench.ts), then the end-to-end pass
 * (bench/load/) against the targets asked for — by default the null server (the generator
 * ceiling) and presenced started here with worker_threads 0 and default. Prints tables with
 * units, the machine and the command; writes everything as JSON under bench/results/.
 *
 *   npm run bench -- --quick                      < 2 min on 2 cores
 *   npm run bench -- --sip 127.0.0.1:5070 [--xcap URL] [--rpc URL] [--pid PID]
 *   npm run bench -- --kamailio                   Kamailio from bench/kamailio/kamailio.cfg
 *   npm run bench -- --help
 */
import { readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs, type BenchArgs } from './lib/args.js';
import { machine, machineLine, table, writeResults, fmt, type Cell } from './lib/report.js';
import { microTable, type MicroRow, type MicroSuite } from './micro/harness.js';
import { runLoad, FILL_WATCHERS_PER_PRESENTITY, BLF_WATCHERS, type LoadFigures } from './load/suite.js';
import { startPresenced, startNullServer, startKamailio, externalTarget, freeUdpPort, type RunningTarget } from './load/targets.js';
import { profileTable, selfTimes } from './load/profile.js';
import { rlsPlan } from './load/rls.js';
import { startKamailioRls, runRls, rlsTable, type RlsFigures } from './load/rls-suite.js';

const out = (s = ''): void => void process.stdout.write(s + '\n');

async function runMicro(args: BenchArgs): Promise<MicroRow[]> {
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'micro');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.bench.js'))
    .sort();
  const rows: MicroRow[] = [];
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(dir, f)).href)) as { default: MicroSuite };
    const t0 = performance.now();
    const r = await mod.default({ time: args.microTime, filter: args.filter });
    if (args.verbose) out(`  ${f}: ${r.length} tasks in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    rows.push(...r);
  }
  return rows;
}

interface Started {
  target: RunningTarget;
  profile?: () => string | undefined;
}

const running = new Set<RunningTarget>();

async function start(kind: string, args: BenchArgs, workers: number): Promise<Started> {
  if (kind === 'ceiling') return { target: await startNullServer() };
  if (kind === 'kamailio') return { target: await startKamailio({ children: args.kamailioChildren, label: 'kamailio' }) };
  if (kind === 'external') return { target: externalTarget({ sip: args.sip!, xcap: args.xcap, rpc: args.rpc, pid: args.pid }) };
  const t = await startPresenced({
    workerThreads: workers,
    cpuProf: args.cpuProf,
    rules: args.rules,
    label: `presenced-w${workers}`,
    extra: args.nodeConfig,
  });
  return { target: t, profile: () => t.profileDir };
}

async function rpcVersion(url: string | undefined): Promise<string | undefined> {
  if (!url) return undefined;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'core.version', id: 1 }),
      signal: AbortSignal.timeout(2000),
    });
    const j = (await res.json()) as { result?: unknown };
    return j.result !== undefined ? String(j.result) : undefined;
  } catch {
    return undefined;
  }
}

function loadTables(figs: LoadFigures[], args: BenchArgs): string {
  const cols = figs.map((f) => f.target);
  const row = (figure: string, unit: string, get: (f: LoadFigures) => number | undefined): Cell[] => [
    figure,
    unit,
    ...figs.map((f) => get(f)),
  ];
  const rows: Cell[][] = [['figure', 'unit', ...cols]];
  rows.push(row('PUBLISH mix sustained (2xx)', 'req/s', (f) => f.publish?.perSecond));
  rows.push(row('  failures (non-2xx + timeouts)', '%', (f) => f.publish?.failurePct));
  rows.push(row('  latency p50', 'ms', (f) => f.publish?.latencyMs.p50));
  rows.push(row('  latency p99', 'ms', (f) => f.publish?.latencyMs.p99));
  rows.push(row('  target CPU', '% of a core', (f) => f.publish?.cpu.targetPct));
  rows.push(row('  driver CPU', '% of a core', (f) => f.publish?.cpu.driverPct));
  if (figs.some((f) => f.overload)) {
    rows.push(row('Overload: PUBLISH offered (open loop)', 'req/s', (f) => f.overload?.offeredPerSecond));
    rows.push(row('  accepted (2xx)', 'req/s', (f) => f.overload?.acceptedPerSecond));
    rows.push(row('  accepted latency p50', 'ms', (f) => f.overload?.acceptedLatencyMs.p50));
    rows.push(row('  accepted latency p99', 'ms', (f) => f.overload?.acceptedLatencyMs.p99));
    rows.push(row('  refused 503', 'req/s', (f) => f.overload?.refusedPerSecond));
    rows.push(row('  503 latency p99', 'ms', (f) => f.overload?.refusedLatencyMs.p99));
    rows.push(row('  other non-2xx', 'count', (f) => f.overload?.otherFailures));
    rows.push(row('  unanswered', 'count', (f) => f.overload?.unanswered));
    rows.push(
      row('  unanswered', '% of sent', (f) => (f.overload ? (100 * f.overload.unanswered) / Math.max(1, f.overload.sent) : undefined)),
    );
    rows.push(row('  next PUBLISH after the burst', 'status', (f) => f.overload?.after.status));
    rows.push(row('  its latency', 'ms', (f) => f.overload?.after.latencyMs));
    rows.push(row('  RSS before', 'MiB', (f) => (f.overload?.rssBefore !== undefined ? f.overload.rssBefore / 2 ** 20 : undefined)));
    rows.push(row('  RSS after', 'MiB', (f) => (f.overload?.rssAfter !== undefined ? f.overload.rssAfter / 2 ** 20 : undefined)));
    rows.push(row('  target CPU', '% of a core', (f) => f.overload?.cpu.targetPct));
    rows.push(row('  driver CPU', '% of a core', (f) => f.overload?.cpu.driverPct));
  }
  rows.push(row('SUBSCRIBE, initial NOTIFY answered', 'subs/s', (f) => f.subscribe?.perSecond));
  rows.push(row('  over the first 10 % of them', 'subs/s', (f) => f.subscribe?.firstTenthPerSecond));
  rows.push(row('  over the last 10 % of them', 'subs/s', (f) => f.subscribe?.lastTenthPerSecond));
  rows.push(row('  failures', '%', (f) => f.subscribe?.failurePct));
  rows.push(row('  SUBSCRIBE→NOTIFY answered p50', 'ms', (f) => f.subscribe?.latencyMs.p50));
  rows.push(row('  SUBSCRIBE→NOTIFY answered p99', 'ms', (f) => f.subscribe?.latencyMs.p99));
  rows.push(row('  target CPU', '% of a core', (f) => f.subscribe?.cpu.targetPct));
  rows.push(row('  driver CPU', '% of a core', (f) => f.subscribe?.cpu.driverPct));
  for (let i = 0; i < args.watchers.length; i++) {
    const w = args.watchers[i]!;
    rows.push(
      row(
        `NOTIFY fan-out, ${w.toLocaleString('en-US')} watchers × ${args.fanoutPresentities}`,
        'NOTIFY/s',
        (f) => f.fanout[i]?.notifiesPerSecond,
      ),
    );
    rows.push(row('  changes published', 'count', (f) => f.fanout[i]?.cycles));
    rows.push(row('  changes not fully delivered', 'count', (f) => f.fanout[i]?.incompleteCycles));
    rows.push(row('  change → last NOTIFY p50 (under load)', 'ms', (f) => f.fanout[i]?.cycleMs.p50));
    rows.push(row('  target CPU', '% of a core', (f) => f.fanout[i]?.cpu.targetPct));
    rows.push(row('  driver CPU', '% of a core', (f) => f.fanout[i]?.cpu.driverPct));
  }
  rows.push(
    row(`PUBLISH→last NOTIFY, ${figs.find((f) => f.latency)?.latency?.watchers ?? 1000} watchers, p50`, 'ms', (f) => f.latency?.p50Ms),
  );
  rows.push(row('  p99 (nearest rank of the samples)', 'ms', (f) => f.latency?.p99Ms));
  rows.push(row('  samples', 'count', (f) => f.latency?.samples));
  rows.push(row('BLF: dialog PUBLISH sustained (2xx; early, confirmed, terminated, removal)', 'req/s', (f) => f.blf?.publish?.perSecond));
  rows.push(row('  failures (non-2xx + timeouts)', '%', (f) => f.blf?.publish?.failurePct));
  rows.push(row('  latency p50', 'ms', (f) => f.blf?.publish?.latencyMs.p50));
  rows.push(row('  latency p99', 'ms', (f) => f.blf?.publish?.latencyMs.p99));
  rows.push(row('  target CPU', '% of a core', (f) => f.blf?.publish?.cpu.targetPct));
  rows.push(
    row(`BLF: call state change → last of ${BLF_WATCHERS.toLocaleString('en-US')} dialog NOTIFYs, p50`, 'ms', (f) => f.blf?.latency?.p50Ms),
  );
  rows.push(row('  p99 (nearest rank of the samples)', 'ms', (f) => f.blf?.latency?.p99Ms));
  rows.push(row('  samples', 'count', (f) => f.blf?.latency?.samples));
  rows.push(row('  changes not fully delivered', 'count', (f) => f.blf?.latency?.incomplete));
  rows.push(row('  dialog watchers subscribed', 'count', (f) => f.blf?.subscribe?.subscriptions));
  rows.push(row('Memory per live subscription (PSS, process tree)', 'bytes', (f) => f.memory?.pssBytesPerSubscription));
  rows.push(row('  (RSS of the main process)', 'bytes', (f) => f.memory?.bytesPerSubscription));
  rows.push(row('  live subscriptions', 'count', (f) => f.memory?.subscriptions));
  rows.push(row('  PSS with them', 'MiB', (f) => (f.memory ? f.memory.after.pss / 2 ** 20 : undefined)));
  const settle = figs.find((f) => f.memory?.settled)?.memory?.settled?.seconds;
  if (settle !== undefined) {
    rows.push(row(`  settled: ${settle} s after the last SUBSCRIBE (PSS)`, 'bytes', (f) => f.memory?.settled?.pssBytesPerSubscription));
  }
  const idle = figs.find((f) => f.memory?.idle)?.memory?.idle?.seconds;
  if (idle !== undefined) {
    rows.push(row(`  idle: ${idle} s after the last SUBSCRIBE (PSS)`, 'bytes', (f) => f.memory?.idle?.pssBytesPerSubscription));
  }
  // Ratios: each presenced column against Kamailio where both ran.
  const kam = figs.find((f) => f.target === 'kamailio');
  let ratio = '';
  if (kam) {
    const lines: Cell[][] = [
      [
        'figure (higher is better for presenced)',
        ...figs.filter((f) => f.target.startsWith('presenced')).map((f) => `${f.target} ÷ kamailio`),
      ],
    ];
    const r = (name: string, get: (f: LoadFigures) => number | undefined, invert = false): void => {
      lines.push([
        name,
        ...figs
          .filter((f) => f.target.startsWith('presenced'))
          .map((f) => {
            const a = get(f);
            const b = get(kam);
            return a !== undefined && b !== undefined && a > 0 && b > 0 ? `${fmt(invert ? b / a : a / b)}×` : '';
          }),
      ]);
    };
    r('PUBLISH/s', (f) => f.publish?.perSecond);
    r('SUBSCRIBE/s', (f) => f.subscribe?.perSecond);
    for (const [i, w] of args.watchers.entries()) r(`fan-out NOTIFY/s, ${w} watchers`, (f) => f.fanout[i]?.notifiesPerSecond);
    r('latency p50 (kamailio ÷ presenced)', (f) => f.latency?.p50Ms, true);
    r('BLF dialog PUBLISH/s', (f) => f.blf?.publish?.perSecond);
    r('BLF change → last of 1,000 NOTIFYs p50 (kamailio ÷ presenced)', (f) => f.blf?.latency?.p50Ms, true);
    r('memory/subscription (kamailio ÷ presenced)', (f) => f.memory?.pssBytesPerSubscription, true);
    if (settle !== undefined)
      r('memory/subscription settled (kamailio ÷ presenced)', (f) => f.memory?.settled?.pssBytesPerSubscription, true);
    if (idle !== undefined) r('memory/subscription idle (kamailio ÷ presenced)', (f) => f.memory?.idle?.pssBytesPerSubscription, true);
    ratio = '\n\n' + table(lines);
  }
  return table(rows) + ratio;
}

/** Issue 14: the list server on fresh targets (presenced per --workers value, Kamailio rls), the same driver. */
async function rlsPass(plan: Array<{ kind: string; workers: number }>, args: BenchArgs): Promise<RlsFigures[]> {
  out(
    `\n── resource list server (issue 14): ${args.rlsSubscribers.toLocaleString('en-US')} list subscribers × ${args.rlsResources} resources, ` +
      `waitn_time ${args.waitn} s on both, UDP, ${args.rlsConcurrency} list SUBSCRIBEs in flight ──`,
  );
  const figs: RlsFigures[] = [];
  const passes: Array<{ kind: 'presenced' | 'kamailio'; workers: number; backends: 'local' | 'sip' }> = [];
  for (const p of plan) {
    if (p.kind === 'kamailio') passes.push({ kind: 'kamailio', workers: 0, backends: 'sip' });
    if (p.kind === 'presenced') for (const b of args.rlsBackends) passes.push({ kind: 'presenced', workers: p.workers, backends: b });
  }
  for (const p of passes) {
    // One subscriber more than asked for: the first warms the path before the memory baseline.
    const rp = rlsPlan(args.rlsResources, args.rlsSubscribers + 1);
    let target: RunningTarget;
    if (p.kind === 'kamailio') {
      target = await startKamailioRls({ children: args.kamailioChildren, label: 'kamailio-rls', plan: rp, waitn: args.waitn });
    } else {
      const port = await freeUdpPort();
      // sip: every resource's domain is another node's, and that node is this one (outbound_proxy).
      // Its UDP queue limit off: the node's own back-end SUBSCRIBEs and NOTIFYs share the socket with the
      // lists', and at the default (1 MB) the node 503'd its own back-end SUBSCRIBEs (lists never complete).
      const sip =
        p.backends === 'sip'
          ? { outbound_proxy: `sip:127.0.0.1:${port}`, rls_local_domains: ['backend.invalid'], overload_max_udp_queue: 0 }
          : {};
      target = await startPresenced({
        workerThreads: p.workers,
        cpuProf: args.cpuProf,
        rules: false,
        label: `presenced-w${p.workers}-${p.backends}`,
        extra: { waitn_time: args.waitn, ...sip, ...args.nodeConfig },
        sipPort: port,
      });
    }
    running.add(target);
    out(`\n${target.label}: ${target.description}`);
    try {
      figs.push(await runRls(target, p.kind, rp, args, out));
    } finally {
      await target.stop();
      running.delete(target);
    }
    const f = figs[figs.length - 1]!;
    if (f.unknownNotifies || f.terminatedNotifies)
      out(
        `  note: ${f.unknownNotifies} NOTIFYs for unknown dialogs, ${f.terminatedNotifies} terminated (before the unsubscribe: none expected)`,
      );
  }
  out('\n── resource list server figures ──');
  out(rlsTable(figs, args));
  return figs;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const args = parseArgs(argv);
  const m = machine();
  const command = `npm run bench${argv.length ? ' -- ' + argv.join(' ') : ''}`;
  const startedAt = new Date().toISOString();
  out(`presenced benchmark — ${startedAt}`);
  out(`machine: ${machineLine(m)}`);
  out(`command: ${command}`);
  out('Figures from a shared or busy machine are noisy: compare runs made on the same quiet machine only.');
  const results: Record<string, unknown> = {
    startedAt,
    machine: m,
    command,
    args: { ...args, phases: [...args.phases], filter: args.filter?.source },
    micro: [],
    load: [],
  };

  if (args.micro) {
    out(`\n── micro-benchmarks (tinybench, ${args.microTime} ms per task) ──`);
    const rows = await runMicro(args);
    results.micro = rows;
    out(microTable(rows));
  }

  const figs: LoadFigures[] = [];
  const profiles: Array<{ target: string; file: string; top: ReturnType<typeof selfTimes>['rows'] }> = [];
  if (args.load) {
    out('\n── end-to-end (UDP on loopback, Node driver: bench/load/) ──');
    const classic = [...args.phases].some((ph) => ph !== 'rls');
    if (classic)
      out(
        `phases: ${[...args.phases].join(', ')}; PUBLISH mix: initial + ${args.refreshes} refreshes + removal per cycle, ${args.concurrency} in flight; ` +
          `${args.duration} s per timed phase after ${args.warmup} s warm-up; memory with ${args.subs.toLocaleString('en-US')} subscriptions ` +
          `(fan-out watchers + ${FILL_WATCHERS_PER_PRESENTITY} per other presentity)${args.quick ? ' — quick mode: fewer subscriptions and shorter phases than the full run' : ''}; ` +
          `driver: ${args.sockets} UDP sockets, no retransmission, ${args.timeoutMs} ms timeout.`,
      );
    const plan: Array<{ kind: string; workers: number }> = [];
    for (const t of args.targets) {
      if (t === 'presenced') for (const w of args.workers) plan.push({ kind: t, workers: w });
      else plan.push({ kind: t, workers: 0 });
    }
    for (const p of classic ? plan : []) {
      const s = await start(p.kind, args, p.workers);
      running.add(s.target);
      out(`\n${s.target.label}: ${s.target.description}`);
      out(`  authorisation: ${s.target.authorisation}`);
      const v = await rpcVersion(s.target.rpc);
      if (v) out(`  core.version: ${v}`);
      let fig: LoadFigures;
      try {
        fig = await runLoad(s.target, args, out, p.kind === 'external');
      } finally {
        await s.target.stop();
        running.delete(s.target);
      }
      figs.push(fig);
      for (const n of fig.notes) out(`  note: ${n}`);
      if (fig.driver.timeouts || fig.unknownNotifies || fig.repeatedNotifies) {
        out(
          `  driver: ${fig.driver.timeouts} request timeouts, ${fig.repeatedNotifies} NOTIFY retransmissions received, ${fig.unknownNotifies} NOTIFYs for unknown dialogs`,
        );
      }
      const prof = s.profile?.();
      if (prof) {
        out('\n' + profileTable(prof, 25));
        profiles.push({ target: fig.target, file: prof, top: selfTimes(prof, 40).rows });
      }
    }
    results.load = figs;
    results.profiles = profiles;
    if (classic) {
      out('\n── end-to-end figures ──');
      out(loadTables(figs, args));
    }
    if (args.phases.has('rls')) results.rls = await rlsPass(plan, args);
    if (figs.some((f) => f.target.startsWith('ceiling'))) {
      out('\nThe ceiling column is the driver against bench/load/null-server.ts (no store, no XML): what the generator can');
      out('send and receive on this machine. A target figure near it is limited by the generator, not by the target.');
    }
  }
  const file = writeResults(args.load && !args.micro ? 'load' : args.micro && !args.load ? 'micro' : 'bench', results);
  out(`\nresults: ${file}`);
}

async function stopAll(): Promise<void> {
  await Promise.all([...running].map((t) => t.stop().catch(() => undefined)));
}

process.on('SIGINT', () => {
  stopAll().finally(() => process.exit(130));
});

main()
  .then(() => process.exit(0))
  .catch(async (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    await stopAll();
    process.exit(1);
  });
