/**
 * Command-line options of `npm run bench`. Every run length is an option, so a developer on a
 * busy machine runs seconds (`--quick`) and the release run uses the full figures.
 */

export type Target = 'ceiling' | 'presenced' | 'kamailio' | 'external';
const TARGETS: readonly Target[] = ['ceiling', 'presenced', 'kamailio', 'external'];

export type Phase = 'publish' | 'subscribe' | 'fanout' | 'memory' | 'blf' | 'overload' | 'rls';
export const PHASES: readonly Phase[] = ['publish', 'subscribe', 'fanout', 'memory', 'blf', 'overload', 'rls'];
/** The phases run without --phases (overload only when asked for: it leaves the server loaded). */
const DEFAULT_PHASES: readonly Phase[] = ['publish', 'subscribe', 'fanout', 'memory', 'blf'];

export interface BenchArgs {
  quick: boolean;
  micro: boolean;
  load: boolean;
  /** Regular expression selecting micro-benchmark files / tasks. */
  filter: RegExp | undefined;
  /** tinybench time budget per task, ms. */
  microTime: number;
  /** Seconds of each timed end-to-end phase (PUBLISH mix, fan-out throughput). */
  duration: number;
  /** Warm-up seconds before a timed phase starts counting. */
  warmup: number;
  /** External target `HOST:PORT` (no node is started). */
  sip: string | undefined;
  /** The driver's own address (default 127.0.0.1; a network namespace's address to reach a cluster edge). */
  bind: string;
  xcap: string | undefined;
  rpc: string | undefined;
  /** PID of an external target, for its memory figure. */
  pid: number | undefined;
  /** What the load half measures, in order: ceiling, presenced (one per --workers value), kamailio, external. */
  targets: Target[];
  /** presenced with force_active 0 and allow-all pres-rules PUT through its XCAP server. */
  rules: boolean;
  /** Worker pool sizes to run presenced with (0 = everything on the main thread, -1 = default). */
  workers: number[];
  /** Watchers per presentity for the fan-out figures. */
  watchers: number[];
  /** Presentities published concurrently in the fan-out throughput phase. */
  fanoutPresentities: number;
  /** PUBLISH→last NOTIFY cycles for the latency figure (1,000-watcher presentity). */
  latencyCycles: number;
  /** Live subscriptions for the memory figure (fan-out watchers included). */
  subs: number;
  /** Seconds after the last SUBSCRIBE for the settled memory reading (0 = none). */
  settle: number;
  /** Seconds after the last SUBSCRIBE for the idle memory reading, after the settled one (0 = none). */
  idle: number;
  /** Requests in flight in the PUBLISH / SUBSCRIBE phases. */
  concurrency: number;
  /** UDP sockets the driver multiplexes its watchers over. */
  sockets: number;
  /** Refreshes per initial PUBLISH in the PUBLISH mix. */
  refreshes: number;
  /** Transaction timeout of the driver, ms (no retransmission on loopback: a loss is a failure). */
  timeoutMs: number;
  /** PUBLISH/s offered in the overload phase (0 = twice the PUBLISH phase's sustained rate). */
  overloadRate: number;
  /** Configuration keys added to the presenced target's (JSON object), e.g. to turn load shedding off. */
  nodeConfig: Record<string, unknown> | undefined;
  /** Run the node under `node --cpu-prof` and summarise the profile. */
  cpuProf: boolean;
  phases: Set<Phase>;
  /** Kamailio UDP children (kamailio -n). */
  kamailioChildren: number;
  /** rls phase: resources in the list, list subscribers, PUBLISH/s of the change phases, lists in flight, waitn_time. */
  rlsResources: number;
  rlsSubscribers: number;
  rlsRates: number[];
  rlsConcurrency: number;
  waitn: number;
  /** presenced's back-ends in the rls phase: local (resources it serves, no SIP) and/or sip (SUBSCRIBEs to itself, as Kamailio). */
  rlsBackends: Array<'local' | 'sip'>;
  verbose: boolean;
  argv: string[];
}

const USAGE = `usage: npm run bench -- [options]

  --quick                 short run (< 2 min): micro 150 ms/task, 3 s phases, 20,000 subscriptions
  --only micro|load       run one half only (also --no-micro, --no-load)
  --filter REGEX          micro-benchmarks whose file or task name matches
  --micro-time MS         tinybench time per task (default 1000, quick 150)
  --duration S            seconds per timed end-to-end phase (default 15, quick 3)
  --warmup S              seconds of warm-up before counting (default 2, quick 0.5)
  --subs N                live subscriptions for the memory figure (default 100000, quick 20000)
  --settle S              also measure memory S seconds after the last SUBSCRIBE, once finished
                          transactions are gone (Timer J: 32 s) (default 35, quick 0 = skip)
  --idle S                and once more S seconds after the last SUBSCRIBE, the server idle meanwhile: by
                          then a garbage-collected server has had its idle-time collection (V8's memory
                          reducer), which the settled reading is too early for (default 120, quick 0 = skip)
  --watchers LIST         watchers per presentity for fan-out (default 1000,10000)
  --fanout-presentities N presentities published at once in the fan-out phase (default 2, quick 1)
  --latency-cycles N      PUBLISH→last-NOTIFY samples on the 1,000-watcher presentity (default 100, quick 15)
  --concurrency N         PUBLISH/SUBSCRIBE transactions in flight (default 64)
  --refreshes N           refresh PUBLISHes per initial one (default 3; each cycle ends with a removal)
  --sockets N             driver UDP sockets (default 16: their receive buffers absorb a 10,000-NOTIFY burst)
  --timeout MS            driver transaction timeout (default 8000)
  --workers LIST          presenced worker_threads values to run (default 0,-1)
  --phases LIST           publish,subscribe,fanout,memory,blf,overload (default all but overload; fanout needs subscribe;
                          blf: dialog PUBLISH/s and a call's change → last of 1,000 dialog watchers' NOTIFYs;
                          overload offers PUBLISH open loop at 2x the publish phase's rate, or --overload-rate N)
  --overload-rate N       PUBLISH/s offered in the overload phase (default 2x the publish phase's sustained rate)
  --node-config JSON      more configuration keys for presenced, e.g. '{"overload_max_inflight":0,"overload_max_loop_lag":0}'
  --no-ceiling            skip the generator-to-generator ceiling (driver ↔ null server)
  --cpu-prof              run presenced under node --cpu-prof; prints the top self-time functions
  --sip HOST:PORT         measure another server instead of starting presenced
  --bind ADDR             the driver's address (default 127.0.0.1), e.g. in a cluster's client namespace
  --xcap URL              XCAP root of that server: an allow-all pres-rules doc is PUT per presentity
  --rpc URL               its JSON-RPC endpoint (recorded; core.version asked when it answers)
  --pid PID               its PID, for the memory figure (PSS of the process tree)
  --kamailio              start Kamailio (bench/kamailio/kamailio.cfg) on udp:127.0.0.1:5070 and measure it
                          (same as --targets ceiling,kamailio)
  --targets LIST          ceiling,presenced,kamailio,external in any combination (default ceiling,presenced;
                          with --sip: ceiling,external); e.g. --targets presenced,kamailio for the comparison
  --rules                 presenced with force_active 0: allow-all pres-rules PUT through its own XCAP server
  --kamailio-children N   kamailio UDP worker processes (default 4)
  --phases rls            the resource list server (issue 14) on fresh targets, presenced and/or kamailio
                          (bench/kamailio/rls.cfg): list SUBSCRIBE → first / complete NOTIFY, memory per list
                          and per back-end subscription, list NOTIFYs/s while resources change at --rls-rate
  --rls-resources N       resources in the list (default 100, quick 20)
  --rls-subscribers N     list subscribers, each its own dialog (default 1000, quick 100)
  --rls-rate LIST         PUBLISH/s of the resources while the lists are subscribed (default 100, quick 20)
  --rls-concurrency N     list SUBSCRIBEs in flight (default 16)
  --rls-backends LIST     presenced's back-ends: local (served here, no SIP) and/or sip (outbound_proxy = itself and
                          rls_local_domains naming another domain, so each resource is a SIP SUBSCRIBE to itself
                          per subscriber, as Kamailio's rls does) (default local,sip)
  --waitn S               waitn_time of both list servers, seconds (default 1: Kamailio's minimum)
  --verbose               progress lines
`;

function num(v: string | undefined, name: string): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n)) throw new Error(`${name}: expected a number (got ${v ?? 'nothing'})`);
  return n;
}

function list(v: string | undefined, name: string): number[] {
  if (v === undefined) throw new Error(`${name}: expected a comma-separated list`);
  return v.split(',').map((x) => num(x.trim(), name));
}

export function parseArgs(argv: string[]): BenchArgs {
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    const eq = a.indexOf('=');
    if (eq !== -1) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) flags.set(a.slice(2), argv[++i]!);
    else flags.set(a.slice(2), true);
  }
  if (flags.has('help') || flags.has('h')) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const known = new Set([
    'quick',
    'only',
    'no-micro',
    'no-load',
    'filter',
    'micro-time',
    'duration',
    'warmup',
    'subs',
    'settle',
    'idle',
    'watchers',
    'fanout-presentities',
    'latency-cycles',
    'concurrency',
    'refreshes',
    'sockets',
    'timeout',
    'workers',
    'phases',
    'overload-rate',
    'node-config',
    'no-ceiling',
    'cpu-prof',
    'sip',
    'bind',
    'xcap',
    'rpc',
    'pid',
    'kamailio',
    'kamailio-children',
    'verbose',
    'targets',
    'rules',
    'rls-resources',
    'rls-subscribers',
    'rls-rate',
    'rls-concurrency',
    'waitn',
    'rls-backends',
  ]);
  for (const k of flags.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}\n${USAGE}`);
  const s = (k: string): string | undefined => {
    const v = flags.get(k);
    return v === true ? undefined : v;
  };
  const quick = flags.has('quick');
  const only = s('only');
  if (only !== undefined && only !== 'micro' && only !== 'load') throw new Error('--only: micro or load');
  const phases = new Set<Phase>();
  for (const p of (s('phases') ?? DEFAULT_PHASES.join(',')).split(',')) {
    if (!PHASES.includes(p as Phase)) throw new Error(`--phases: unknown phase ${p} (${PHASES.join(', ')})`);
    phases.add(p as Phase);
  }
  // Fan-out and memory figures need the watchers the SUBSCRIBE phase creates.
  if (phases.has('fanout') || phases.has('memory')) phases.add('subscribe');
  let targets: Target[] =
    s('sip') !== undefined ? ['ceiling', 'external'] : flags.has('kamailio') ? ['ceiling', 'kamailio'] : ['ceiling', 'presenced'];
  if (s('targets') !== undefined) {
    targets = s('targets')!
      .split(',')
      .map((t) => {
        if (!TARGETS.includes(t as Target)) throw new Error(`--targets: unknown target ${t} (${TARGETS.join(', ')})`);
        return t as Target;
      });
  }
  if (flags.has('no-ceiling')) targets = targets.filter((t) => t !== 'ceiling');
  if (targets.includes('external') && s('sip') === undefined) throw new Error('--targets external needs --sip HOST:PORT');
  const external = !targets.includes('presenced');
  const args: BenchArgs = {
    quick,
    micro: only !== 'load' && !flags.has('no-micro') && !external,
    load: only !== 'micro' && !flags.has('no-load'),
    filter: s('filter') !== undefined ? new RegExp(s('filter')!, 'i') : undefined,
    microTime: flags.has('micro-time') ? num(s('micro-time'), '--micro-time') : quick ? 150 : 1000,
    duration: flags.has('duration') ? num(s('duration'), '--duration') : quick ? 3 : 15,
    warmup: flags.has('warmup') ? num(s('warmup'), '--warmup') : quick ? 0.5 : 2,
    sip: s('sip'),
    bind: s('bind') ?? '127.0.0.1',
    xcap: s('xcap'),
    rpc: s('rpc'),
    pid: flags.has('pid') ? num(s('pid'), '--pid') : undefined,
    targets,
    rules: flags.has('rules'),
    workers: flags.has('workers') ? list(s('workers'), '--workers') : [0, -1],
    watchers: flags.has('watchers') ? list(s('watchers'), '--watchers') : [1000, 10000],
    fanoutPresentities: flags.has('fanout-presentities') ? num(s('fanout-presentities'), '--fanout-presentities') : quick ? 1 : 2,
    latencyCycles: flags.has('latency-cycles') ? num(s('latency-cycles'), '--latency-cycles') : quick ? 15 : 100,
    subs: flags.has('subs') ? num(s('subs'), '--subs') : quick ? 20_000 : 100_000,
    settle: flags.has('settle') ? num(s('settle'), '--settle') : quick ? 0 : 35,
    idle: flags.has('idle') ? num(s('idle'), '--idle') : quick ? 0 : 120,
    concurrency: flags.has('concurrency') ? num(s('concurrency'), '--concurrency') : 64,
    sockets: flags.has('sockets') ? num(s('sockets'), '--sockets') : 16,
    refreshes: flags.has('refreshes') ? num(s('refreshes'), '--refreshes') : 3,
    timeoutMs: flags.has('timeout') ? num(s('timeout'), '--timeout') : 8000,
    overloadRate: flags.has('overload-rate') ? num(s('overload-rate'), '--overload-rate') : 0,
    nodeConfig: s('node-config') !== undefined ? (JSON.parse(s('node-config')!) as Record<string, unknown>) : undefined,
    cpuProf: flags.has('cpu-prof'),
    phases,
    kamailioChildren: flags.has('kamailio-children') ? num(s('kamailio-children'), '--kamailio-children') : 4,
    rlsResources: flags.has('rls-resources') ? num(s('rls-resources'), '--rls-resources') : quick ? 20 : 100,
    rlsSubscribers: flags.has('rls-subscribers') ? num(s('rls-subscribers'), '--rls-subscribers') : quick ? 100 : 1000,
    rlsRates: flags.has('rls-rate') ? list(s('rls-rate'), '--rls-rate') : [quick ? 20 : 100],
    rlsConcurrency: flags.has('rls-concurrency') ? num(s('rls-concurrency'), '--rls-concurrency') : 16,
    waitn: flags.has('waitn') ? num(s('waitn'), '--waitn') : 1,
    rlsBackends: (s('rls-backends') ?? 'local,sip').split(',').map((b) => {
      if (b !== 'local' && b !== 'sip') throw new Error(`--rls-backends: local or sip (got ${b})`);
      return b;
    }),
    verbose: flags.has('verbose'),
    argv,
  };
  if (args.sip !== undefined && !/^[^:]+:\d+$/.test(args.sip)) throw new Error('--sip: HOST:PORT');
  return args;
}
