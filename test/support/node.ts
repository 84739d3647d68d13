/**
 * Starts a real presenced process (dist/core/main.js) on ephemeral loopback ports with a
 * temporary store, and reports the ports it bound from its own "listener ready" log lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backstop } from './wait.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'core', 'main.js');

export interface RunningNode {
  pid: number;
  udpPort: number;
  tcpPort: number;
  wsPort: number;
  tlsPort: number;
  wssPort: number;
  xcapPort: number;
  rpcPort: number;
  dataDir: string;
  config: Record<string, unknown>;
  logs: Array<Record<string, unknown>>;
  stderr: string[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
  /** Wait for a log line matching the predicate. */
  waitForLog(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
}

export interface StartOptions {
  /** Reuse a store directory (crash/restart tests); a fresh temp dir otherwise. */
  dataDir?: string;
  /** Keep the data dir after stop (default: removed unless dataDir was given). */
  keepData?: boolean;
  timeoutMs?: number;
  /** A command the node runs under, e.g. ['ip', 'netns', 'exec', 'ns1'] (it must exec the node, keeping the pid). */
  wrapper?: string[];
}

export const TEST_DEFAULTS: Record<string, unknown> = {
  listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0'],
  xcap_listen: '127.0.0.1:0',
  rpc_listen: '127.0.0.1:0',
  log_level: 'info',
};

export async function startNode(config: Record<string, unknown> = {}, opts: StartOptions = {}): Promise<RunningNode> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'presenced-test-'));
  const full = { ...TEST_DEFAULTS, db_url: `lmdb:${join(dataDir, 'db')}`, ...config };
  const cfgPath = join(dataDir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(full));
  const argv = [process.execPath, MAIN, '--config', cfgPath];
  const [command, ...args] = [...(opts.wrapper ?? []), ...argv];
  const child: ChildProcess = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const waiters: Array<{ pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        rec = { msg: line, unparsed: true };
      }
      logs.push(rec);
      if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(line + '\n');
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.pred(rec)) {
          waiters[i]!.resolve(rec);
          waiters.splice(i, 1);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => {
    stderr.push(c);
    if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(c);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const waitForLog = (pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>> => {
    timeoutMs = backstop(timeoutMs);
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for a log line; stderr: ${stderr.join('')}`)), timeoutMs);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
      exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`node exited with ${code} before the expected log line; stderr: ${stderr.join('')}`));
      });
    });
  };

  await waitForLog((l) => l.msg === 'presenced ready', opts.timeoutMs);
  const port = (msg: string, proto?: string): number => {
    const l = logs.find((x) => x.msg === msg && (proto === undefined || x.proto === proto));
    return l ? Number(l.port) : 0;
  };
  const cleanup = (): void => {
    if (!opts.dataDir && !opts.keepData) rmSync(dataDir, { recursive: true, force: true });
  };
  return {
    pid: child.pid!,
    udpPort: port('SIP listener ready', 'udp'),
    tcpPort: port('SIP listener ready', 'tcp'),
    wsPort: port('SIP listener ready', 'ws'),
    tlsPort: port('SIP listener ready', 'tls'),
    wssPort: port('SIP listener ready', 'wss'),
    xcapPort: port('XCAP listener ready'),
    rpcPort: port('RPC listener ready'),
    dataDir,
    config: full,
    logs,
    stderr,
    exited,
    waitForLog,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const code = await exited;
      cleanup();
      return code;
    },
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Run the node with a configuration expected to be rejected; resolves with exit code and stderr. */
export async function runExpectingFailure(config: unknown): Promise<{ code: number | null; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-cfg-'));
  const cfgPath = join(dir, 'config.json');
  writeFileSync(cfgPath, typeof config === 'string' ? config : JSON.stringify(config));
  const child = spawn(process.execPath, [MAIN, '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), backstop());
    child.once('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  rmSync(dir, { recursive: true, force: true });
  return { code, stderr };
}
