/**
 * How figures leave the benchmark: a plain-text table with units, the machine they were
 * measured on and the exact command, and the same as JSON under bench/results/.
 */
import os from 'node:os';
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (bench/lib → ../.. from dist/bench/lib as well as from the sources). */
export const REPO_ROOT = (() => {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.includes(`${join('dist', 'bench')}`) ? join(here, '..', '..', '..') : join(here, '..', '..');
})();

export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  v8: string;
  os: string;
  loadAverage: number[];
}

export function machine(): Machine {
  let cpu = os.cpus()[0]?.model?.trim() ?? 'unknown';
  try {
    // os.cpus() reports "AMD EPYC" on some hypervisors; /proc/cpuinfo may say more.
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const m = /^model name\s*:\s*(.+)$/m.exec(info);
    if (m && m[1]!.length > cpu.length) cpu = m[1]!.trim();
  } catch {
    // not Linux: keep os.cpus()
  }
  return {
    cpu,
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    v8: process.versions.v8,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export function machineLine(m: Machine): string {
  return `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node} (V8 ${m.v8}), ${m.os}, load average ${m.loadAverage.join(' ')} at start`;
}

export type Cell = string | number | undefined;

/** Right-aligns numbers, left-aligns text; first row is the header. */
export function table(rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => (c === undefined ? '' : typeof c === 'number' ? fmt(c) : c)));
  const widths: number[] = [];
  for (const r of text) for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  const numeric = rows[1]?.map((c) => typeof c === 'number') ?? [];
  const line = (r: string[]): string =>
    r
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(text[0]!), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of text.slice(1)) out.push(line(r));
  return out.join('\n');
}

/** Three significant digits, thousands separated. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (Number.isInteger(n) || abs >= 1000) return Math.round(n).toLocaleString('en-US');
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  if (abs === 0) return '0';
  return n.toPrecision(3);
}

export function writeResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = join(RESULTS_DIR, `${stamp}-${name}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

/** Percentile of an ascending-sorted array (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}
