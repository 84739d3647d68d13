/**
 * A small filesystem a test can fill: a tmpfs mounted for the test (root, as in CI), and a filler
 * that takes every byte of it, so the node's store meets a full disk.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Mount a tmpfs of `size` (e.g. '24m') on a fresh directory; returns its path. */
export function mountTmpfs(size: string, prefix = 'presenced-fulldisk-'): string {
  const mnt = mkdtempSync(join(tmpdir(), prefix));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt]);
  return mnt;
}

export function unmountTmpfs(mnt: string): void {
  execFileSync('umount', [mnt]);
  rmSync(mnt, { recursive: true, force: true });
}

/** Fill the filesystem of `dir` until the kernel says ENOSPC; returns a function that frees it again. */
export function fill(dir: string): () => void {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 7);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  // What is left is below one chunk: fill that too, byte runs of decreasing size.
  const path2 = join(dir, 'filler2');
  const fd2 = openSync(path2, 'w');
  try {
    for (let n = 32 * 1024; n >= 1; n >>= 1) {
      try {
        for (;;) writeSync(fd2, chunk, 0, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    closeSync(fd2);
  }
  return () => {
    rmSync(path);
    rmSync(path2);
  };
}
