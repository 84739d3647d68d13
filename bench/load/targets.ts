/**
 * The servers the load driver is pointed at, started and stopped by PID on loopback only:
 * presenced (dist/core/main.js with a temporary store), the null server (the ceiling), and
 * Kamailio (bench/kamailio/kamailio.cfg). Also the memory and CPU of a process tree, read
 * from /proc, so a multi-process server (Kamailio) and a threaded one (presenced) compare.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import net from 'node:net';
import {
  mkdtempSync,
  writeFileSync,
  rmSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  existsSync,
  copyFileSync,
  mkdirSync,
  renameSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, RESULTS_DIR } from '../lib/report.js';
import type { Endpoint } from './driver.js';

export interface RunningTarget {
  label: string;
  sip: Endpoint;
  pid: number | undefined;
  xcap: string | undefined;
  rpc: string | undefined;
  /** What the figures depend on (configuration, version). */
  description: string;
  /** Where authorisation comes from: force_active or PUT pres-rules. */
  authorisation: string;
  stop(): Promise<void>;
}

// ───────────────────────────── /proc ─────────────────────────────

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The PID and all its descendants. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...childrenOf(all[i]!));
  return all;
}

export interface Memory {
  /** Proportional set size summed over the process tree (shared pages split among sharers), bytes. */
  pss: number;
  /** Resident set size of the top process, bytes. */
  rss: number;
  processes: number;
}

export function memoryOf(pid: number): Memory | undefined {
  const tree = processTree(pid);
  let pss = 0;
  let rss = 0;
  let ok = false;
  for (const p of tree) {
    try {
      const rollup = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
      pss += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
      if (p === pid) rss = Number(/^Rss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
      ok = true;
    } catch {
      // gone, or not Linux
    }
  }
  return ok ? { pss, rss, processes: tree.length } : undefined;
}

/** CPU seconds (user + system) used so far by the process tree (threads included). */
export function cpuSecondsOf(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch {
      // gone
    }
  }
  return ticks / 100; // USER_HZ is 100 on Linux
}

// ───────────────────────────── helpers ─────────────────────────────

export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function freeTcpPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** OPTIONS until a 200 comes back (the server is ready), or throw after `timeoutMs`. */
export async function waitForSip(target: Endpoint, timeoutMs: number, exited?: () => boolean): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  s.on('error', () => undefined);
  const deadline = Date.now() + timeoutMs;
  try {
    for (let n = 0; Date.now() < deadline; n++) {
      if (exited?.()) throw new Error('the server exited while starting');
      const got = new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 200);
        s.once('message', (m) => {
          clearTimeout(t);
          resolve(m.toString('latin1', 0, 12).startsWith('SIP/2.0 200'));
        });
      });
      s.send(
        `OPTIONS sip:ping@${target.host}:${target.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-ready${n};rport\r\n` +
          `Max-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=r${n}\r\nTo: <sip:ping@${target.host}>\r\nCall-ID: ready-${n}@bench\r\n` +
          `CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`,
        target.port,
        target.host,
      );
      if (await got) return;
    }
    throw new Error(`no 200 to OPTIONS from ${target.host}:${target.port} within ${timeoutMs} ms`);
  } finally {
    s.close();
  }
}

/** SIGTERM the child (by PID), wait, SIGKILL it and any descendant still there after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const tree = processTree(child.pid);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = new Promise<boolean>((r) => setTimeout(() => r(false), graceMs));
  const clean = await Promise.race([exited.then(() => true), timer]);
  if (!clean) child.kill('SIGKILL');
  await exited;
  // Children of a multi-process server that outlived their parent: only PIDs this run started.
  for (const p of tree.slice(1)) {
    try {
      process.kill(p, 0);
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

// ───────────────────────────── presenced ─────────────────────────────

export interface PresencedOptions {
  workerThreads: number;
  cpuProf: boolean;
  /** force_active = 0 and the embedded XCAP server: the driver PUTs allow-all rules. */
  rules: boolean;
  label: string;
  /** More configuration keys for the node (--node-config), over the bench's own. */
  extra?: Record<string, unknown>;
  /** The UDP port to listen on (default: one free now), for a configuration that names the node's own address. */
  sipPort?: number;
}

export async function startPresenced(o: PresencedOptions): Promise<RunningTarget & { profileDir: string | undefined }> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-bench-'));
  const sipPort = o.sipPort ?? (await freeUdpPort());
  const xcapPort = await freeTcpPort();
  const rpcPort = await freeTcpPort();
  const config = {
    listen: [`udp:127.0.0.1:${sipPort}`],
    xcap_listen: `127.0.0.1:${xcapPort}`,
    rpc_listen: `127.0.0.1:${rpcPort}`,
    db_url: `lmdb:${join(dir, 'db')}`,
    force_active: o.rules ? 0 : 1,
    worker_threads: o.workerThreads,
    log_level: 'warn',
    max_expires: 3600,
    ...o.extra,
  };
  const cfgPath = join(dir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify(config, null, 2));
  mkdirSync(RESULTS_DIR, { recursive: true });
  const logPath = join(RESULTS_DIR, `${o.label}.log`);
  const logFd = openSync(logPath, 'w');
  const profileDir = o.cpuProf ? join(dir, 'prof') : undefined;
  const nodeArgs = profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [];
  const main = join(REPO_ROOT, 'dist', 'core', 'main.js');
  const child = spawn(process.execPath, [...nodeArgs, main, '--config', cfgPath], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const sip = { host: '127.0.0.1', port: sipPort };
  try {
    await waitForSip(sip, 30_000, () => child.exitCode !== null);
  } catch (err) {
    await stopChild(child, 2000);
    throw new Error(`presenced did not start (${(err as Error).message}); log: ${logPath}\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
  }
  let keptProfile: string | undefined;
  return {
    label: o.label,
    sip,
    pid: child.pid,
    xcap: `http://127.0.0.1:${xcapPort}/xcap-root`,
    rpc: `http://127.0.0.1:${rpcPort}/RPC`,
    description: `presenced (${main}), worker_threads ${o.workerThreads}, force_active ${config.force_active}, LMDB in ${tmpdir()}${o.extra ? `, ${JSON.stringify(o.extra)}` : ''}`,
    authorisation: o.rules ? 'force_active 0: allow-all pres-rules PUT over XCAP per presentity' : 'force_active 1 (no pres-rules)',
    get profileDir() {
      return keptProfile;
    },
    async stop() {
      await stopChild(child, 15_000);
      if (profileDir && existsSync(profileDir)) {
        const prof = readdirSync(profileDir).find((f) => f.endsWith('.cpuprofile'));
        if (prof) {
          keptProfile = join(RESULTS_DIR, `${o.label}.cpuprofile`);
          renameSync(join(profileDir, prof), keptProfile);
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ───────────────────────────── null server ─────────────────────────────

export async function startNullServer(): Promise<RunningTarget> {
  const script = join(REPO_ROOT, 'dist', 'bench', 'load', 'null-server.js');
  const child = spawn(process.execPath, [script, '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl !== -1) resolve((JSON.parse(buf.slice(0, nl)) as { port: number }).port);
    });
    child.once('exit', (code) => reject(new Error(`null server exited with ${code}`)));
  });
  return {
    label: 'ceiling (null server)',
    sip: { host: '127.0.0.1', port },
    pid: child.pid,
    xcap: undefined,
    rpc: undefined,
    description: 'bench/load/null-server.ts: answers PUBLISH/SUBSCRIBE and blasts NOTIFYs from precomputed text, no store, no XML',
    authorisation: 'none',
    stop: () => stopChild(child, 5000),
  };
}

// ───────────────────────────── Kamailio ─────────────────────────────

export const KAMAILIO_BIN = '/usr/sbin/kamailio';
const KAMAILIO_TABLES = '/usr/share/kamailio/dbtext/kamailio';

/** db_text tables copied from Kamailio's templates; db_text holds them in shared memory (db_mode 1 in the cfg). */
export function kamailioDatabase(dir: string, moreTables: string[] = []): { db: string; defines: string[]; what: string } {
  const db = join(dir, 'db');
  mkdirSync(db);
  for (const t of ['version', 'presentity', 'active_watchers', 'watchers', 'xcap', 'pua', ...moreTables])
    copyFileSync(join(KAMAILIO_TABLES, t), join(db, t));
  return { db, defines: ['-A', `DBURL="text://${db}"`], what: `db_text in ${db} (tables in shared memory)` };
}

/**
 * Start Kamailio on a configuration in the foreground (-DD; the PID we hold is the main process,
 * its log in bench/results/LABEL.log) and wait for it to answer on udp:127.0.0.1:5070; on failure
 * it is stopped, `dir` removed, and the error carries the log's tail.
 */
export async function launchKamailio(o: {
  label: string;
  cfg: string;
  dir: string;
  run: string;
  children: number;
  pkgMb: number;
  defines: string[];
}): Promise<{ child: ChildProcess; sip: { host: string; port: number } }> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const logPath = join(RESULTS_DIR, `${o.label}.log`);
  const logFd = openSync(logPath, 'w');
  // -E: log to stderr.
  const args = ['-f', o.cfg, '-DD', '-E', '-n', String(o.children), '-m', '4096', '-M', String(o.pkgMb), '-Y', o.run, ...o.defines];
  const child = spawn(KAMAILIO_BIN, args, { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const sip = { host: '127.0.0.1', port: 5070 };
  try {
    await waitForSip(sip, 20_000, () => child.exitCode !== null);
  } catch (err) {
    await stopChild(child, 2000);
    rmSync(o.dir, { recursive: true, force: true });
    throw new Error(`kamailio did not start (${(err as Error).message}); log: ${logPath}\n${readFileSync(logPath, 'utf8').slice(-2000)}`);
  }
  return { child, sip };
}

export async function startKamailio(o: { children: number; label: string }): Promise<RunningTarget> {
  if (!existsSync(KAMAILIO_BIN)) {
    throw new Error(
      `${KAMAILIO_BIN} not found: apt-get install kamailio kamailio-presence-modules (Debian), or point --sip at a running server`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'kamailio-bench-'));
  const run = join(dir, 'run');
  mkdirSync(run);
  const database = kamailioDatabase(dir);
  const cfg = join(REPO_ROOT, 'bench', 'kamailio', 'kamailio.cfg');
  const { child, sip } = await launchKamailio({
    label: o.label,
    cfg,
    dir,
    run,
    children: o.children,
    pkgMb: 32,
    defines: database.defines,
  });
  let version = 'kamailio';
  try {
    version = (await runText(KAMAILIO_BIN, ['-v'])).split('\n')[0]!.trim();
  } catch {
    // keep the name
  }
  return {
    label: o.label,
    sip,
    pid: child.pid,
    xcap: undefined,
    rpc: undefined,
    description: `${version}, ${cfg}, ${o.children} UDP children, shm 4096 MB, ${database.what}`,
    authorisation: 'presence_xml force_active 1 (no pres-rules)',
    async stop() {
      await stopChild(child, 10_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runText(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'ignore'] });
    if (input !== undefined) c.stdin!.end(input);
    let out = '';
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (d: string) => (out += d));
    c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}`))));
    c.once('error', reject);
  });
}

/** A server the bench did not start. */
export function externalTarget(o: {
  sip: string;
  xcap?: string | undefined;
  rpc?: string | undefined;
  pid?: number | undefined;
}): RunningTarget {
  const [host, port] = o.sip.split(':') as [string, string];
  return {
    label: `external ${o.sip}`,
    sip: { host, port: Number(port) },
    pid: o.pid,
    xcap: o.xcap,
    rpc: o.rpc,
    description: `server at udp:${o.sip}${o.pid ? ` (PID ${o.pid})` : ''}`,
    authorisation: o.xcap
      ? 'allow-all pres-rules PUT over XCAP per presentity'
      : 'none from the bench: the server must run with force_active=1',
    stop: async () => undefined,
  };
}
