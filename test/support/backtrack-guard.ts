/**
 * Runs a script in a child node whose regular expressions cannot backtrack without being seen:
 * V8 counts the backtracks of each regular expression execution and, past a limit, finishes it
 * on its linear-time engine and traces that (`Experimental execution ... of regexp ...`). The
 * count is deterministic, so a test that asserts "no regular expression went over 8 backtracks
 * per input character" cannot flake on a busy machine the way a timing would; a quadratic or
 * cubic pattern goes over it by orders of magnitude at the input sizes the scripts use.
 */
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

export interface GuardedRun {
  code: number | null;
  /** Lines the script printed (not the traces). */
  out: string[];
  /** The regular expressions that went over the limit, as V8 traced them. */
  excessive: string[];
  stderr: string;
}

/**
 * Run dist/test/support/<script>.js with `args`; a regular expression execution may do at most
 * `backtracks` backtracks (pass about 8 x the largest input's length).
 */
export function runGuarded(script: string, args: string[], backtracks: number): Promise<GuardedRun> {
  const child = spawn(
    process.execPath,
    [
      '--enable-experimental-regexp-engine-on-excessive-backtracks',
      `--regexp-backtracks-before-fallback=${backtracks}`,
      '--trace-experimental-regexp-engine',
      join(HERE, `${script}.js`),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const lines = stdout.split('\n').filter((l) => l.length > 0);
      resolve({
        code,
        out: lines.filter((l) => !l.startsWith('Experimental execution')),
        excessive: lines.filter((l) => l.startsWith('Experimental execution')).map((l) => l.slice(0, 300)),
        stderr,
      });
    });
  });
}
