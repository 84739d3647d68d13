/**
 * One end-to-end pass against one target, on a fresh server: SUBSCRIBE (which creates every
 * watcher the later phases use), memory with all subscriptions live, fan-out throughput per
 * watcher count, PUBLISH→last-NOTIFY latency, and last the PUBLISH mix (on presentities
 * without watchers, with every subscription still live). CPU of the target and of the driver is recorded per
 * phase, so a figure limited by the generator shows as such.
 */
import { SipDriver, type DriverStats } from './driver.js';
import {
  PresenceLoad,
  publishMix,
  subscribeAll,
  fanout,
  fanoutLatency,
  unsubscribeAll,
  DIALOG_EVENT,
  overloadBurst,
  type OverloadResult,
  type PublishResult,
  type SubscribeResult,
  type FanoutResult,
  type LatencyResult,
  type Presentity,
  type Watcher,
  type Publisher,
} from './scenarios.js';
import { dialogPublish, type DialogPublishResult } from './blf.js';
import { memoryOf, cpuSecondsOf, type Memory, type RunningTarget } from './targets.js';
import { ALLOW_ALL_RULES } from '../fixtures/rules.js';
import type { BenchArgs } from '../lib/args.js';

/** Watchers per presentity of the subscriptions that only fill memory. */
export const FILL_WATCHERS_PER_PRESENTITY = 50;

export interface Cpu {
  /** Target CPU over the phase, % of one core (can exceed 100 with threads or processes). */
  targetPct: number | undefined;
  /** The driver's own CPU, % of one core. */
  driverPct: number;
}

/** A memory reading some seconds after the last SUBSCRIBE. */
export interface Reading {
  seconds: number;
  after: Memory;
  pssBytesPerSubscription: number;
}

export interface LoadFigures {
  target: string;
  description: string;
  authorisation: string;
  publish?: PublishResult & { cpu: Cpu };
  subscribe?: SubscribeResult & { cpu: Cpu };
  memory?: {
    subscriptions: number;
    before: Memory;
    after: Memory;
    bytesPerSubscription: number;
    pssBytesPerSubscription: number;
    /** The same, `settleSeconds` after the last SUBSCRIBE (finished transactions gone). */
    settled?: Reading;
    /** The same once more, `seconds` after the last SUBSCRIBE, the server idle meanwhile (--idle). */
    idle?: Reading;
  };
  fanout: Array<FanoutResult & { cpu: Cpu }>;
  latency?: LatencyResult & { cpu: Cpu };
  /** Issue 13: `dialog` PUBLISH/s, and a call's state change → last of the dialog watchers' NOTIFYs. */
  blf?: { publish?: DialogPublishResult & { cpu: Cpu }; latency?: LatencyResult & { cpu: Cpu }; subscribe?: SubscribeResult };
  /** PUBLISH offered open loop beyond what the server sustains; RSS of the main process before and after. */
  overload?: OverloadResult & { cpu: Cpu; rssBefore: number | undefined; rssAfter: number | undefined };
  unknownNotifies: number;
  repeatedNotifies: number;
  driver: DriverStats;
  notes: string[];
}

function cpuMeter(pid: number | undefined): () => Cpu {
  const t0 = performance.now();
  const target0 = pid !== undefined ? cpuSecondsOf(pid) : 0;
  const drv0 = process.cpuUsage();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const drv = process.cpuUsage(drv0);
    return {
      targetPct: pid !== undefined ? (100 * (cpuSecondsOf(pid) - target0)) / wall : undefined,
      driverPct: (100 * (drv.user + drv.system)) / 1e6 / wall,
    };
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runLoad(target: RunningTarget, args: BenchArgs, log: (s: string) => void, cleanup: boolean): Promise<LoadFigures> {
  const driver = await SipDriver.open(target.sip, args.sockets, args.timeoutMs, args.bind);
  const load = new PresenceLoad(driver, {
    expires: 3600,
    xcap: target.xcap && target.authorisation.includes('PUT') ? target.xcap : undefined,
  });
  const fig: LoadFigures = {
    target: target.label,
    description: target.description,
    authorisation: target.authorisation,
    fanout: [],
    unknownNotifies: 0,
    repeatedNotifies: 0,
    driver: driver.stats,
    notes: [],
  };
  const phases = args.phases;
  const all: Watcher[] = [];
  try {
    const fan = new Map<number, Presentity[]>();
    if (phases.has('subscribe')) {
      let index = 0;
      for (const w of phases.has('fanout') ? args.watchers : []) {
        const ps: Presentity[] = [];
        for (let i = 0; i < args.fanoutPresentities; i++) {
          const p = load.presentity(`fan${w}x${i}`);
          all.push(...load.addWatchers(p, w, index));
          index += w;
          ps.push(p);
        }
        fan.set(w, ps);
      }
      // The SUBSCRIBE figure alone (no fan-out, no memory phase) still needs watchers: --subs of them.
      const wanted = phases.has('memory') || all.length === 0 ? Math.max(args.subs, all.length) : all.length;
      for (let k = 0; all.length < wanted; k++) {
        const p = load.presentity(`fill${k}`);
        const n = Math.min(FILL_WATCHERS_PER_PRESENTITY, wanted - all.length);
        all.push(...load.addWatchers(p, n, index));
        index += n;
      }
      if (load.opts.xcap) {
        const uris = [...new Set(all.map((w) => w.presentity.uri))];
        log(`  PUT allow-all pres-rules for ${uris.length} presentities (${load.opts.xcap})`);
        let bad = 0;
        for (let i = 0; i < uris.length; i += 16) {
          const st = await Promise.all(uris.slice(i, i + 16).map((u) => load.putRules(u, ALLOW_ALL_RULES).catch(() => 0)));
          bad += st.filter((s) => s < 200 || s >= 300).length;
        }
        if (bad) fig.notes.push(`${bad} of ${uris.length} pres-rules PUTs failed`);
      }
      await sleep(1000);
      const before = target.pid !== undefined ? memoryOf(target.pid) : undefined;
      log(
        `  SUBSCRIBE: ${all.length} watchers on ${new Set(all.map((w) => w.presentity)).size} presentities, ${args.concurrency} in flight`,
      );
      const m = cpuMeter(target.pid);
      const r = await subscribeAll(load, all, {
        concurrency: args.concurrency,
        timeoutMs: args.timeoutMs,
        progress: args.verbose ? (n) => log(`    ${n} subscribed`) : undefined,
      });
      fig.subscribe = { ...r, cpu: m() };
      if (phases.has('memory') && before) {
        await sleep(2000);
        const after = target.pid !== undefined ? memoryOf(target.pid) : undefined;
        if (after) {
          fig.memory = {
            subscriptions: r.subscriptions,
            before,
            after,
            bytesPerSubscription: (after.rss - before.rss) / Math.max(1, r.subscriptions),
            pssBytesPerSubscription: (after.pss - before.pss) / Math.max(1, r.subscriptions),
          };
          // Later readings, `seconds` after the last SUBSCRIBE (the first was 2 s after).
          let waited = 2;
          const readingAt = async (seconds: number, why: string): Promise<Reading | undefined> => {
            log(`  memory: waiting until ${seconds} s after the last SUBSCRIBE (${why})`);
            await sleep((seconds - waited) * 1000);
            waited = seconds;
            const m = memoryOf(target.pid!);
            return m && { seconds, after: m, pssBytesPerSubscription: (m.pss - before.pss) / Math.max(1, r.subscriptions) };
          };
          if (args.settle > waited) fig.memory.settled = await readingAt(args.settle, 'finished transactions gone');
          if (args.idle > waited) fig.memory.idle = await readingAt(args.idle, 'the server idle');
        }
      } else if (phases.has('memory')) fig.notes.push('memory: no PID for the target (--pid), not measured');
    }

    if (phases.has('fanout')) {
      const publishers = new Map<string, Publisher>();
      for (const w of args.watchers) {
        const ps = fan.get(w) ?? [];
        const timeoutMs = Math.max(10_000, w * 2);
        log(`  fan-out: ${ps.length} × ${w} watchers, ${args.warmup} s warm-up + ${args.duration} s`);
        const m = cpuMeter(target.pid);
        const r = await fanout(load, ps, { durationS: args.duration, warmupS: args.warmup, timeoutMs, publishers });
        fig.fanout.push({ ...r, cpu: m() });
      }
      const lw = args.watchers.includes(1000) ? 1000 : Math.min(...args.watchers);
      const p = fan.get(lw)?.[0];
      if (p && args.latencyCycles > 0) {
        log(`  latency: PUBLISH → last of ${lw} NOTIFYs, ${args.latencyCycles} changes one at a time`);
        const m = cpuMeter(target.pid);
        const r = await fanoutLatency(load, p, { cycles: args.latencyCycles, timeoutMs: Math.max(10_000, lw * 2), publishers });
        fig.latency = { ...r, cpu: m() };
      }
    }

    if (phases.has('blf')) await runBlf(target, args, log, fig);

    // Last: its garbage (and Kamailio's finished transactions) must not count as subscription memory.
    if (phases.has('publish')) {
      log(`  PUBLISH mix: ${args.concurrency} in flight, ${args.warmup} s warm-up + ${args.duration} s`);
      const m = cpuMeter(target.pid);
      const r = await publishMix(load, {
        durationS: args.duration,
        warmupS: args.warmup,
        concurrency: args.concurrency,
        refreshes: args.refreshes,
      });
      fig.publish = { ...r, cpu: m() };
    }

    if (phases.has('overload')) {
      const rate = args.overloadRate > 0 ? args.overloadRate : fig.publish ? Math.round(2 * fig.publish.perSecond) : 0;
      if (rate === 0) fig.notes.push('overload: no rate to offer (run the publish phase first, or give --overload-rate N)');
      else {
        log(`  overload: PUBLISH offered at ${rate}/s open loop for ${args.duration} s (no retransmission), then one more PUBLISH`);
        const rssBefore = target.pid !== undefined ? memoryOf(target.pid)?.rss : undefined;
        const m = cpuMeter(target.pid);
        const r = await overloadBurst(load, { rate, durationS: args.duration, refreshes: args.refreshes });
        fig.overload = { ...r, cpu: m(), rssBefore, rssAfter: target.pid !== undefined ? memoryOf(target.pid)?.rss : undefined };
      }
    }

    if (cleanup && all.length > 0) {
      log(`  unsubscribing ${all.length} watchers (a server the bench did not start)`);
      await unsubscribeAll(load, all, args.concurrency);
    }
  } finally {
    fig.unknownNotifies = load.unknownNotifies;
    fig.repeatedNotifies = load.repeatedNotifies;
    fig.driver = { ...driver.stats };
    await driver.close();
  }
  return fig;
}

/** BLF watchers on one extension: the latency figure's size (the issue asks for 1,000). */
export const BLF_WATCHERS = 1000;

/**
 * The BLF figures (bench/load/blf.ts) on their own driver: BLF_WATCHERS `dialog` watchers of one
 * extension, a call's state change → the last of their NOTIFYs (latency-cycles samples), then
 * the dialog PUBLISH rate. The watchers are unsubscribed afterwards.
 */
async function runBlf(target: RunningTarget, args: BenchArgs, log: (s: string) => void, fig: LoadFigures): Promise<void> {
  const driver = await SipDriver.open(target.sip, args.sockets, args.timeoutMs);
  const load = new PresenceLoad(driver, { expires: 3600, event: DIALOG_EVENT });
  try {
    fig.blf = {};
    const ext = load.presentity('blf');
    const watchers = load.addWatchers(ext, BLF_WATCHERS, 0);
    log(`  BLF: ${BLF_WATCHERS} dialog watchers of one extension`);
    fig.blf.subscribe = await subscribeAll(load, watchers, { concurrency: args.concurrency, timeoutMs: args.timeoutMs });
    if (args.latencyCycles > 0) {
      log(`  BLF latency: a call's state change → last of ${BLF_WATCHERS} dialog NOTIFYs, ${args.latencyCycles} changes one at a time`);
      const m = cpuMeter(target.pid);
      const r = await fanoutLatency(load, ext, {
        cycles: args.latencyCycles,
        timeoutMs: Math.max(10_000, BLF_WATCHERS * 2),
        publishers: new Map(),
      });
      fig.blf.latency = { ...r, cpu: m() };
    }
    log(
      `  dialog PUBLISH: ${args.concurrency} calls in flight (early, confirmed, terminated, removal), ${args.warmup} s warm-up + ${args.duration} s`,
    );
    const m = cpuMeter(target.pid);
    const r = await dialogPublish(load, { durationS: args.duration, warmupS: args.warmup, concurrency: args.concurrency });
    fig.blf.publish = { ...r, cpu: m() };
    await unsubscribeAll(load, watchers, args.concurrency);
  } finally {
    await driver.close();
  }
}
