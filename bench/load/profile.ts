/**
 * Where the time goes: the top self-time functions of a V8 .cpuprofile (node --cpu-prof).
 *
 *   node dist/bench/load/profile.js bench/results/presenced-w0.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { table, REPO_ROOT } from '../lib/report.js';
import { isMain } from '../micro/harness.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  selfMs: number;
  selfPct: number;
}

function where(url: string, line: number): string {
  if (!url) return '';
  let path = url;
  if (url.startsWith('file://')) {
    try {
      path = relative(REPO_ROOT, fileURLToPath(url));
    } catch {
      // keep the URL
    }
  }
  return `${path}:${line + 1}`;
}

export function selfTimes(file: string, top = 25): { rows: SelfTime[]; totalMs: number; idlePct: number } {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  if (prof.samples && prof.timeDeltas) {
    for (let i = 0; i < prof.samples.length; i++) {
      const id = prof.samples[i]!;
      // timeDeltas[i] is the time before sample i; the interval after it is a better owner, but the sum is the same.
      selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i + 1] ?? 0));
    }
  }
  const agg = new Map<string, SelfTime>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const cf = n.callFrame;
    total += us;
    if (cf.functionName === '(idle)') idle += us;
    const key = `${cf.functionName}|${cf.url}|${cf.lineNumber}`;
    const e = agg.get(key) ?? { name: cf.functionName || '(anonymous)', where: where(cf.url, cf.lineNumber), selfMs: 0, selfPct: 0 };
    e.selfMs += us / 1000;
    agg.set(key, e);
  }
  const busy = total - idle;
  const rows = [...agg.values()]
    .filter((r) => r.name !== '(idle)')
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top)
    .map((r) => ({ ...r, selfPct: busy > 0 ? (100 * r.selfMs) / (busy / 1000) : 0 }));
  return { rows, totalMs: total / 1000, idlePct: total > 0 ? (100 * idle) / total : 0 };
}

export function profileTable(file: string, top = 25): string {
  const { rows, totalMs, idlePct } = selfTimes(file, top);
  return (
    `${file}: ${(totalMs / 1000).toFixed(1)} s sampled, ${idlePct.toFixed(0)} % idle; share of busy time:\n` +
    table([['function', 'self ms', '% busy', 'where'], ...rows.map((r) => [r.name, r.selfMs, r.selfPct, r.where])])
  );
}

if (isMain(import.meta.url)) {
  const argv = process.argv.slice(2);
  const t = argv.indexOf('--top');
  const top = t !== -1 ? Number(argv[t + 1]) : 25;
  const files = argv.filter((a, i) => !a.startsWith('--') && (t === -1 || i !== t + 1));
  for (const f of files) process.stdout.write(profileTable(f, top) + '\n\n');
}
