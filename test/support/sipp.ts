/**
 * Runs SIPp (Debian sip-tester) in the foreground for a test: -nostdin (CI has no terminal),
 * -timeout/-timeout_error so it cannot hang, killed by PID if it still does; its cwd is a
 * scratch directory so nothing it writes lands in the repository.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SIPP = process.env.SIPP ?? 'sipp';
/** dist/test/support/sipp.js → <repo>/test/sipp/ */
export const SIPP_SCENARIOS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'sipp');

export interface SippRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  errors: string;
  /** Wall-clock run time. */
  ms: number;
  args: string[];
}

export interface RunningSipp {
  pid: number;
  /** Resolves when SIPp exits. */
  done: Promise<SippRun>;
  kill(): void;
}

/**
 * Start SIPp with `args` (scenario, addresses...) plus the options that keep it from hanging:
 * its own -timeout (`sippTimeoutS`), and a SIGKILL `killAfterMs` after the start if it still runs.
 */
export function startSipp(
  args: string[],
  work: string,
  name: string,
  o: { sippTimeoutS?: number; killAfterMs?: number } = {},
): RunningSipp {
  const sippTimeoutS = o.sippTimeoutS ?? 30;
  const errorFile = join(work, `sipp-${name}-errors.log`);
  const all = [...args, '-nostdin', '-timeout', `${sippTimeoutS}s`, '-timeout_error', '-trace_err', '-error_file', errorFile];
  const t0 = performance.now();
  const child: ChildProcess = spawn(SIPP, all, { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.killAfterMs ?? sippTimeoutS * 1000 + 5000);
  const done = new Promise<SippRun>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code === 'ENOENT' ? new Error(`${SIPP} not found: install Debian "sip-tester" (.ci/run does) or set SIPP`) : err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const errors = existsSync(errorFile) ? readFileSync(errorFile, 'utf8') : '';
      resolve({ code, signal, stdout, stderr, errors, ms: performance.now() - t0, args: all });
    });
  });
  return {
    pid: child.pid ?? 0,
    done,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export const explainSipp = (r: SippRun): string =>
  `sipp ${r.args.join(' ')}\nexit ${r.code} signal ${r.signal}\n--- stderr ---\n${r.stderr.slice(-2000)}\n--- errors ---\n${r.errors.slice(-3000)}\n--- stdout (tail) ---\n${r.stdout.slice(-2000)}`;
