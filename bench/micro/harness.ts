/**
 * The shape every bench/micro/*.bench.ts shares: a default export that runs its tasks with
 * tinybench and returns one row per task (ops/s, mean and p99 per op). A file can also be run
 * on its own: `node dist/bench/micro/parse.bench.js [--micro-time MS]`.
 */
import { Bench } from 'tinybench';
import { pathToFileURL } from 'node:url';
import { table, machine, machineLine } from '../lib/report.js';

export interface MicroOptions {
  /** tinybench time budget per task, ms. */
  time: number;
  filter: RegExp | undefined;
}

export interface MicroRow {
  group: string;
  task: string;
  opsPerSec: number;
  meanUs: number;
  p99Us: number;
  samples: number;
  /** Operations per tinybench iteration (batched tasks report per operation). */
  batch: number;
  note?: string;
}

export interface MicroTask {
  name: string;
  fn: () => unknown;
  /** Operations one call performs (e.g. 64 concurrent worker tasks). */
  batch?: number;
  note?: string;
}

export type MicroSuite = (o: MicroOptions) => Promise<MicroRow[]>;

export async function measure(group: string, tasks: MicroTask[], o: MicroOptions): Promise<MicroRow[]> {
  const selected = tasks.filter((t) => !o.filter || o.filter.test(group) || o.filter.test(t.name));
  if (selected.length === 0) return [];
  const bench = new Bench({
    name: group,
    time: o.time,
    warmupTime: Math.min(200, Math.max(20, o.time / 5)),
    warmupIterations: 8,
    iterations: 16,
    throws: true,
  });
  for (const t of selected) bench.add(t.name, t.fn);
  await bench.run();
  const rows: MicroRow[] = [];
  for (const t of selected) {
    const task = bench.getTask(t.name);
    const r = task?.result;
    if (!r || (r.state !== 'completed' && r.state !== 'aborted-with-statistics')) {
      throw new Error(`${group} / ${t.name}: ${r && r.state === 'errored' ? r.error.message : (r?.state ?? 'no result')}`);
    }
    const batch = t.batch ?? 1;
    const row: MicroRow = {
      group,
      task: t.name,
      opsPerSec: (batch * 1000) / r.latency.mean,
      meanUs: (r.latency.mean * 1000) / batch,
      p99Us: (r.latency.p99 * 1000) / batch,
      samples: r.latency.samplesCount ?? 0,
      batch,
    };
    if (t.note) row.note = t.note;
    rows.push(row);
  }
  return rows;
}

export function microTable(rows: MicroRow[]): string {
  return table([
    ['benchmark', 'task', 'ops/s', 'mean µs/op', 'p99 µs/op', 'samples', 'note'],
    ...rows.map((r) => [
      r.group,
      r.task,
      r.opsPerSec,
      r.meanUs,
      r.p99Us,
      r.samples,
      r.note ?? (r.batch > 1 ? `per op, ${r.batch} per iteration` : ''),
    ]),
  ]);
}

/** `if (isMain(import.meta.url)) runStandalone(suite)` at the bottom of a bench file. */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;
}

export function runStandalone(suite: MicroSuite): void {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--micro-time');
  const f = argv.indexOf('--filter');
  const o: MicroOptions = {
    time: i !== -1 ? Number(argv[i + 1]) : 500,
    filter: f !== -1 ? new RegExp(argv[f + 1]!, 'i') : undefined,
  };
  suite(o)
    .then((rows) => {
      process.stdout.write(`${machineLine(machine())}\n\n${microTable(rows)}\n`);
      process.exit(0);
    })
    .catch((err) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
}
