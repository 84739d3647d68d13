/**
 * The `rls` phase (issue 14) against one target: Kamailio's rls module started here from
 * bench/kamailio/rls.cfg with its xcap table filled from the plan, or presenced started by
 * run.ts (each subscriber's rls-services document PUT through its XCAP server). The figures come from
 * bench/load/rls.ts; this file starts Kamailio, provisions the list, reads memory and the
 * back-end subscription count, and prints the table.
 */
import { mkdtempSync, rmSync, readFileSync, existsSync, mkdirSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, table, fmt, type Cell } from '../lib/report.js';
import type { BenchArgs } from '../lib/args.js';
import { SipDriver } from './driver.js';
import { RlsLoad, rlsDocument, type RlsPlan, type RlsSubscribeResult, type RlsNotifyResult } from './rls.js';
import {
  KAMAILIO_BIN,
  memoryOf,
  cpuSecondsOf,
  stopChild,
  kamailioDatabase,
  launchKamailio,
  type Memory,
  type RunningTarget,
} from './targets.js';
import { DOMAIN } from '../fixtures/messages.js';

/** Kamailio's doc_type of an rls-services document in the xcap table (xcap_client's RLS_SERVICE, 1 << 3). */
const XCAP_RLS_SERVICES = 8;

/** db_text escapes ':' (the column separator), '\\' and line ends in string values. */
function dbtext(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
}

/**
 * Kamailio with rls (bench/kamailio/rls.cfg) on udp:127.0.0.1:5070. rls reads the rls-services
 * document of the *subscriber* (xcap row username/domain = the From user): one row per list
 * subscriber, its own document.
 */
export async function startKamailioRls(o: { children: number; label: string; plan: RlsPlan; waitn: number }): Promise<RunningTarget> {
  if (!existsSync(KAMAILIO_BIN)) throw new Error(`${KAMAILIO_BIN} not found: apt-get install kamailio kamailio-presence-modules`);
  const dir = mkdtempSync(join(tmpdir(), 'kamailio-rls-bench-'));
  const run = join(dir, 'run');
  mkdirSync(run);
  const { db } = kamailioDatabase(dir, ['rls_watchers', 'rls_presentity']);
  // id(int,auto) username domain doc doc_type etag source doc_uri port
  let rows = '';
  o.plan.subscribers.forEach((user, i) => {
    const uri = `sip:${user}@${DOMAIN}`;
    rows += `${i + 1}:${dbtext(user)}:${DOMAIN}:${dbtext(rlsDocument(o.plan, i))}:${XCAP_RLS_SERVICES}:e${i}:0:${dbtext(`rls-services/users/${uri}/index`)}:0\n`;
  });
  appendFileSync(join(db, 'xcap'), rows);
  const cfg = join(REPO_ROOT, 'bench', 'kamailio', 'rls.cfg');
  const defines = ['-A', `DBURL="text://${db}"`, '-A', `WAITN=${o.waitn}`];
  const { child, sip } = await launchKamailio({ label: o.label, cfg, dir, run, children: o.children, pkgMb: 64, defines });
  return {
    label: o.label,
    sip,
    pid: child.pid,
    xcap: undefined,
    rpc: undefined,
    description: `Kamailio rls + pua + presence (${cfg}), ${o.children} UDP children, shm 4096 MB, pkg 64 MB, waitn_time ${o.waitn} s, db_text in ${db} (tables in shared memory), ${o.plan.subscribers.length} xcap rows`,
    authorisation: 'presence_xml force_active 1 (no pres-rules)',
    async stop() {
      await stopChild(child, 10_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** presenced: each subscriber's document PUT under that subscriber (8 at a time). */
async function provisionPresenced(target: RunningTarget, plan: RlsPlan): Promise<void> {
  if (!target.xcap) throw new Error('rls: presenced target without an XCAP root');
  const root = target.xcap.replace(/\/$/, '');
  let next = 0;
  const put = async (): Promise<void> => {
    while (next < plan.subscribers.length) {
      const i = next++;
      const url = `${root}/rls-services/users/sip:${plan.subscribers[i]}@${DOMAIN}/index`;
      const res = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/rls-services+xml' },
        body: rlsDocument(plan, i),
      });
      const text = await res.text();
      if (res.status < 200 || res.status >= 300) throw new Error(`rls: PUT ${url} answered ${res.status}: ${text.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, () => put()));
}

/** Sum of presenced_rls_backend_subscriptions (every kind) from the node's /metrics, or undefined. */
async function presencedBackends(target: RunningTarget): Promise<number | undefined> {
  if (!target.rpc) return undefined;
  try {
    const res = await fetch(target.rpc.replace(/\/RPC$/, '/metrics'), { signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    let sum = 0;
    let seen = false;
    for (const m of text.matchAll(/^presenced_rls_backend_subscriptions(?:\{[^}]*\})?\s+([0-9.e+]+)$/gm)) {
      sum += Number(m[1]);
      seen = true;
    }
    return seen ? sum : undefined;
  } catch {
    return undefined;
  }
}

export interface RlsFigures {
  target: string;
  description: string;
  plan: { resources: number; lists: number; waitn: number };
  provision: { publishFailures: number };
  subscribe?: RlsSubscribeResult & { cpuPct: number | undefined };
  memory?: {
    before: Memory;
    after: Memory;
    lists: number;
    backends: number | undefined;
    backendsHow: string;
    pssPerList: number;
    pssPerBackend: number | undefined;
    settled?: { seconds: number; after: Memory; pssPerList: number; pssPerBackend: number | undefined };
  };
  notify: Array<RlsNotifyResult & { cpuPct: number | undefined }>;
  unsubscribed: number;
  unknownNotifies: number;
  repeatedNotifies: number;
  terminatedNotifies: number;
  timeouts: number;
  /** UDP datagrams the host dropped for full receive buffers during the pass (any socket: driver, target, others). */
  udpDrops: number | undefined;
}

/** The host's UDP datagrams dropped for a full receive buffer so far (/proc/net/snmp Udp RcvbufErrors; every socket). */
function udpRcvbufErrors(): number | undefined {
  try {
    const lines = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    const names = lines[0]!.split(/\s+/);
    const values = lines[1]!.split(/\s+/);
    const i = names.indexOf('RcvbufErrors');
    return i === -1 ? undefined : Number(values[i]);
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuMeter(pid: number | undefined): () => number | undefined {
  const t0 = performance.now();
  const c0 = pid !== undefined ? cpuSecondsOf(pid) : 0;
  return () => (pid !== undefined ? (100 * (cpuSecondsOf(pid) - c0)) / ((performance.now() - t0) / 1000) : undefined);
}

/**
 * One rls pass: publish every resource, subscribe list 0 (warms the path: Kamailio loads its
 * tables into shared memory on first use), read memory, subscribe the others (the figures),
 * read memory again (and after --settle), then the change phases, one per --rls-rate value.
 */
export async function runRls(
  target: RunningTarget,
  kind: 'presenced' | 'kamailio',
  plan: RlsPlan,
  args: BenchArgs,
  log: (s: string) => void,
): Promise<RlsFigures> {
  const driver = await SipDriver.open(target.sip, args.sockets, args.timeoutMs, args.bind);
  const load = new RlsLoad(driver, plan, 3600);
  const lists = plan.subscribers.length - 1;
  const fig: RlsFigures = {
    target: target.label,
    description: target.description,
    plan: { resources: plan.resources.length, lists, waitn: args.waitn },
    provision: { publishFailures: 0 },
    notify: [],
    unsubscribed: 0,
    unknownNotifies: 0,
    repeatedNotifies: 0,
    terminatedNotifies: 0,
    timeouts: 0,
    udpDrops: undefined,
  };
  const drops0 = udpRcvbufErrors();
  const timeoutMs = Math.max(args.timeoutMs, 30_000);
  try {
    if (kind === 'presenced') {
      const t0 = performance.now();
      await provisionPresenced(target, plan);
      log(`  rls: ${plan.subscribers.length} rls-services documents PUT in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    fig.provision.publishFailures = await load.publishAll(16);
    log(`  rls: ${plan.resources.length} resources published (${fig.provision.publishFailures} failed); one list subscription to warm up`);
    const warm = await load.subscribeLists({ from: 0, to: 1, concurrency: 1, timeoutMs });
    if (warm.lists !== 1) throw new Error(`rls: the warm-up list SUBSCRIBE failed (${JSON.stringify(warm.byStatus)})`);
    await sleep(2000);
    const backends0 = kind === 'presenced' ? await presencedBackends(target) : undefined;
    const before = target.pid !== undefined ? memoryOf(target.pid) : undefined;
    log(`  rls: SUBSCRIBE ${lists} lists × ${plan.resources.length} resources, ${args.rlsConcurrency} in flight`);
    const m = cpuMeter(target.pid);
    const r = await load.subscribeLists({ from: 1, to: plan.subscribers.length, concurrency: args.rlsConcurrency, timeoutMs });
    fig.subscribe = { ...r, cpuPct: m() };
    await sleep(2000);
    const after = target.pid !== undefined ? memoryOf(target.pid) : undefined;
    let backends: number | undefined;
    let how: string;
    if (kind === 'presenced') {
      const b1 = await presencedBackends(target);
      backends = b1 !== undefined && backends0 !== undefined ? b1 - backends0 : undefined;
      how = 'presenced_rls_backend_subscriptions (/metrics), difference across the phase';
    } else {
      backends = r.lists * plan.resources.length;
      how = 'lists × resources (rls sends one back-end SUBSCRIBE per resource per list subscription)';
    }
    if (before && after) {
      const delta = after.pss - before.pss;
      fig.memory = {
        before,
        after,
        lists: r.lists,
        backends,
        backendsHow: how,
        pssPerList: delta / Math.max(1, r.lists),
        pssPerBackend: backends ? delta / backends : undefined,
      };
      if (args.settle > 2) {
        log(`  rls: waiting ${args.settle} s for finished transactions to go`);
        await sleep(args.settle * 1000 - 2000);
        const later = memoryOf(target.pid!);
        if (later) {
          const d = later.pss - before.pss;
          fig.memory.settled = {
            seconds: args.settle,
            after: later,
            pssPerList: d / Math.max(1, r.lists),
            pssPerBackend: backends ? d / backends : undefined,
          };
        }
      }
    }
    for (const rate of args.rlsRates) {
      log(`  rls: resources change at ${rate} PUBLISH/s, ${args.warmup} s warm-up + ${args.duration} s`);
      const mc = cpuMeter(target.pid);
      const n = await load.changes({ rate, durationS: args.duration, warmupS: args.warmup, drainS: Math.max(10, 3 * args.waitn) });
      fig.notify.push({ ...n, cpuPct: mc() });
    }
    fig.terminatedNotifies = load.terminatedNotifies;
    fig.unsubscribed = await load.unsubscribeAll(args.rlsConcurrency);
  } finally {
    fig.unknownNotifies = load.unknownNotifies;
    fig.repeatedNotifies = load.repeatedNotifies;
    fig.timeouts = driver.stats.timeouts;
    const drops1 = udpRcvbufErrors();
    fig.udpDrops = drops0 !== undefined && drops1 !== undefined ? drops1 - drops0 : undefined;
    await driver.close();
  }
  return fig;
}

export function rlsTable(figs: RlsFigures[], args: BenchArgs): string {
  const rows: Cell[][] = [['figure', 'unit', ...figs.map((f) => f.target)]];
  const row = (name: string, unit: string, get: (f: RlsFigures) => Cell): void => {
    rows.push([name, unit, ...figs.map(get)]);
  };
  const p = figs[0]?.plan;
  row(
    `List SUBSCRIBE (${p?.lists ?? '?'} lists × ${p?.resources ?? '?'} resources) → first NOTIFY`,
    'lists/s',
    (f) => f.subscribe?.perSecond,
  );
  row('  failures', '%', (f) => f.subscribe?.failurePct);
  row('  SUBSCRIBE → first NOTIFY p50', 'ms', (f) => f.subscribe?.firstNotifyMs.p50);
  row('  SUBSCRIBE → first NOTIFY p99', 'ms', (f) => f.subscribe?.firstNotifyMs.p99);
  row('  first NOTIFYs multipart RLMI fullState', 'count', (f) => f.subscribe?.firstFullState);
  row('  resource states in the first NOTIFY (mean)', 'count', (f) => f.subscribe?.statesInFirstNotify);
  row('  SUBSCRIBE → every resource state held p50', 'ms', (f) => f.subscribe?.completeMs.p50);
  row('  SUBSCRIBE → every resource state held p99', 'ms', (f) => f.subscribe?.completeMs.p99);
  row('  lists never complete', 'count', (f) => f.subscribe?.incomplete);
  row('  target CPU', '% of a core', (f) => f.subscribe?.cpuPct);
  row('Memory per list subscription (PSS, process tree)', 'bytes', (f) => f.memory?.pssPerList);
  row('  per back-end subscription', 'bytes', (f) => f.memory?.pssPerBackend);
  row('  back-end subscriptions made', 'count', (f) => f.memory?.backends);
  row('  PSS with them', 'MiB', (f) => (f.memory ? f.memory.after.pss / 2 ** 20 : undefined));
  const settle = figs.find((f) => f.memory?.settled)?.memory?.settled?.seconds;
  if (settle !== undefined) {
    row(`  settled (${settle} s): per list subscription`, 'bytes', (f) => f.memory?.settled?.pssPerList);
    row(`  settled (${settle} s): per back-end subscription`, 'bytes', (f) => f.memory?.settled?.pssPerBackend);
  }
  for (const [i, rate] of args.rlsRates.entries()) {
    row(`Resource changes at ${rate} PUBLISH/s: list NOTIFYs`, 'NOTIFY/s', (f) => f.notify[i]?.notifiesPerSecond);
    row('  resource states delivered', 'states/s', (f) => f.notify[i]?.statesPerSecond);
    row('  mean NOTIFY size', 'bytes', (f) => f.notify[i]?.meanNotifyBytes);
    row('  change → last list subscriber p50', 'ms', (f) => f.notify[i]?.changeToAllMs.p50);
    row('  change → last list subscriber p99', 'ms', (f) => f.notify[i]?.changeToAllMs.p99);
    row('  changes not delivered everywhere', 'count', (f) => f.notify[i]?.changesIncomplete);
    row('  PUBLISH failures', 'count', (f) => f.notify[i]?.publishFailures);
    row('  target CPU', '% of a core', (f) => f.notify[i]?.cpuPct);
  }
  row('driver: request timeouts', 'count', (f) => f.timeouts);
  row('driver: NOTIFY retransmissions received', 'count', (f) => f.repeatedNotifies);
  row('host: UDP datagrams dropped, receive buffer full', 'count', (f) => f.udpDrops);
  let out = table(rows);
  const kam = figs.find((f) => f.target.startsWith('kamailio'));
  const ours = figs.filter((f) => f.target.startsWith('presenced'));
  if (kam && ours.length) {
    const lines: Cell[][] = [['figure (higher is better for presenced)', ...ours.map((f) => `${f.target} ÷ kamailio`)]];
    const r = (name: string, get: (f: RlsFigures) => number | undefined, invert = false): void => {
      lines.push([
        name,
        ...ours.map((f) => {
          const a = get(f);
          const b = get(kam);
          return a !== undefined && b !== undefined && a > 0 && b > 0 ? `${fmt(invert ? b / a : a / b)}×` : '';
        }),
      ]);
    };
    r('list SUBSCRIBE/s', (f) => f.subscribe?.perSecond);
    r('first NOTIFY p50 (kamailio ÷ presenced)', (f) => f.subscribe?.firstNotifyMs.p50, true);
    r('every state held p50 (kamailio ÷ presenced)', (f) => f.subscribe?.completeMs.p50, true);
    for (const [i, rate] of args.rlsRates.entries()) {
      r(`list NOTIFY/s at ${rate} PUBLISH/s`, (f) => f.notify[i]?.notifiesPerSecond);
      r(`states delivered/s at ${rate} PUBLISH/s`, (f) => f.notify[i]?.statesPerSecond);
    }
    r('memory per list subscription (kamailio ÷ presenced)', (f) => f.memory?.settled?.pssPerList ?? f.memory?.pssPerList, true);
    out += '\n\n' + table(lines);
  }
  return out;
}
