/**
 * Drives a real baresip process (Debian "baresip", 1.0) for the interop tests: writes its
 * configuration into a temporary directory from the templates in test/interop/baresip/,
 * types commands on its stdin (stdio module), and reads its SIP trace (`-s`) and log from
 * stdout and its command output from stderr.
 *
 * baresip runs with `-t <seconds>` so that it quits by itself even if the test process dies
 * (then its stdin reaches EOF, and baresip 1.0's stdio module polls it in a busy loop until
 * that deadline); the test kills it by PID (SIGKILL) in its `after` hook if it is still
 * running.
 * PRESENCED_TEST_LOGS=1 copies its stdout (log and SIP trace) to the test's stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const BARESIP = process.env.BARESIP ?? 'baresip';
export const BARESIP_MODULES = process.env.BARESIP_MODULES ?? '/usr/lib/baresip/modules';
const INSTALL_HINT = 'install Debian "baresip-core" (apt-get install baresip-core; .ci/run does) or set BARESIP to its path';

/** One SIP message of baresip's `-s` trace. */
export interface TraceMessage {
  /** Sent by baresip (false: received by it). */
  sent: boolean;
  transport: string;
  src: string;
  dst: string;
  startLine: string;
  method?: string;
  status?: number;
  /** Header name (lower case) → every value, in order. */
  headers: Map<string, string[]>;
  body: string;
  /** The message as traced, for failure messages. */
  text: string;
}

export interface TraceQuery {
  method?: string;
  status?: number;
  sent?: boolean;
  callId?: string;
  cseq?: string;
}

// SGR colour escapes baresip puts around traces and presence words.
const ANSI = /\x1b\[[0-9;]*m/g;
const TRACE_HEAD = /^#\n(UDP|TCP|TLS|WS|WSS) (\S+) -> (\S+)\n/gm;

export function header(m: TraceMessage, name: string): string | undefined {
  return m.headers.get(name.toLowerCase())?.[0];
}

export class Baresip {
  private raw = '';
  private rawUi = '';
  private readonly listeners = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly child: ChildProcess,
    /** The presenced port of the outbound proxy: a trace message to it was sent by baresip. */
    private readonly serverAddr: string,
  ) {
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(`[baresip ${name}] ${c.replace(ANSI, '')}`);
      this.changed();
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.rawUi += c;
      this.changed();
    });
    // A write after baresip exited must not crash the test process (EPIPE).
    child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve({ code, signal });
        this.changed();
      }),
    );
  }

  /**
   * Writes `config`, `accounts` and `contacts` from the templates (placeholders `{{NAME}}`
   * replaced from `vars`) and starts baresip; resolves once it printed "baresip is ready.".
   */
  static async start(o: {
    name: string;
    templates: string;
    accounts: string;
    contacts: string;
    vars: Record<string, string | number>;
    serverAddr: string;
    quitAfterS: number;
    timeoutMs?: number;
  }): Promise<Baresip> {
    if (!existsSync(join(BARESIP_MODULES, 'presence.so'))) {
      throw new Error(`${join(BARESIP_MODULES, 'presence.so')} not found: ${INSTALL_HINT} (or set BARESIP_MODULES)`);
    }
    const vars: Record<string, string | number> = { MODULE_PATH: BARESIP_MODULES, ...o.vars };
    const fill = (file: string): string =>
      readFileSync(join(o.templates, file), 'utf8').replace(/\{\{([A-Z_]+)\}\}/g, (m, k: string) => {
        if (!(k in vars)) throw new Error(`${file}: no value for ${m}`);
        return String(vars[k]);
      });
    const dir = mkdtempSync(join(tmpdir(), `presenced-baresip-${o.name}-`));
    writeFileSync(join(dir, 'config'), fill('config'));
    writeFileSync(join(dir, 'accounts'), fill(o.accounts));
    writeFileSync(join(dir, 'contacts'), fill(o.contacts));
    const args = ['-f', dir, '-s', '-t', String(o.quitAfterS)];
    // HOME points into the scratch directory too, so nothing lands in ~/.baresip.
    const child = spawn(BARESIP, args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HOME: dir } });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new Error(`${BARESIP} not found: ${INSTALL_HINT}`) : err),
      );
    });
    try {
      await spawned;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const ua = new Baresip(o.name, dir, child, o.serverAddr);
    try {
      await ua.waitFor('"baresip is ready."', () => (ua.log.includes('baresip is ready.') ? true : undefined), o.timeoutMs ?? 10_000);
    } catch (err) {
      await ua.kill();
      throw err;
    }
    return ua;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** stdout without colour escapes: log lines and the SIP trace. */
  get log(): string {
    return this.raw.replace(ANSI, '');
  }

  /** stderr without colour escapes: what commands print. */
  get ui(): string {
    return this.rawUi.replace(ANSI, '');
  }

  /** A long command, as typed on baresip's console: "/presence_online" + Enter. */
  command(cmd: string): void {
    this.child.stdin!.write(`/${cmd}\n`);
  }

  /** The "q" key: quit (baresip unpublishes and unsubscribes first). */
  quit(): void {
    this.child.stdin!.write('q');
  }

  /** SIGKILL if still running, wait for the exit, remove the scratch directory. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Every complete SIP message of the trace, in order. */
  messages(q: TraceQuery = {}): TraceMessage[] {
    const text = this.log;
    const out: TraceMessage[] = [];
    for (const m of text.matchAll(TRACE_HEAD)) {
      const start = m.index! + m[0].length;
      const end = text.indexOf('\r\n\r\n', start);
      if (end === -1) continue;
      const lines = text.slice(start, end).split('\r\n');
      const startLine = lines[0]!;
      const headers = new Map<string, string[]>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const list = headers.get(name) ?? [];
        list.push(line.slice(colon + 1).trim());
        headers.set(name, list);
      }
      const length = Number(headers.get('content-length')?.[0] ?? '0');
      if (end + 4 + length > text.length) continue;
      const body = text.slice(end + 4, end + 4 + length);
      const status = /^SIP\/2\.0 (\d{3}) /.exec(startLine);
      const msg: TraceMessage = {
        sent: m[3] === this.serverAddr,
        transport: m[1]!,
        src: m[2]!,
        dst: m[3]!,
        startLine,
        headers,
        body,
        text: text.slice(m.index!, end + 4 + length),
      };
      if (status) msg.status = Number(status[1]);
      else msg.method = startLine.split(' ')[0]!;
      out.push(msg);
    }
    return out.filter(
      (x) =>
        (q.method === undefined || x.method === q.method || (x.status !== undefined && header(x, 'cseq')?.endsWith(` ${q.method}`))) &&
        (q.status === undefined || x.status === q.status) &&
        (q.sent === undefined || x.sent === q.sent) &&
        (q.callId === undefined || header(x, 'call-id') === q.callId) &&
        (q.cseq === undefined || header(x, 'cseq') === q.cseq),
    );
  }

  /** Requests of `method` only (not their responses). */
  requests(method: string, sent: boolean): TraceMessage[] {
    return this.messages({ method, sent }).filter((m) => m.method === method);
  }

  /** The final response (in the opposite direction) to a traced request, if traced yet. */
  responseTo(req: TraceMessage): TraceMessage | undefined {
    return this.messages({ sent: !req.sent, callId: header(req, 'call-id'), cseq: header(req, 'cseq') }).find(
      (m) => m.status !== undefined && m.status >= 200,
    );
  }

  /** Wait until `probe` returns a value, re-checked whenever baresip prints or exits. */
  waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const check = (): void => {
        let v: T | undefined;
        try {
          v = probe();
        } catch (err) {
          finish();
          reject(err);
          return;
        }
        if (v !== undefined) {
          finish();
          resolve(v);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          finish();
          reject(new Error(`baresip ${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${what}\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for baresip ${this.name}: ${what}\n${this.tail()}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
    });
  }

  /** Wait for the next traced message matching `pred` after the first `after` messages. */
  nextMessage(what: string, pred: (m: TraceMessage) => boolean, after: number, timeoutMs = 5000): Promise<TraceMessage> {
    return this.waitFor(what, () => this.messages().slice(after).find(pred), timeoutMs);
  }

  /**
   * Runs the `contacts` command and returns the presence baresip shows for `uri`
   * ("Unknown", "Online", "Offline" or "Busy").
   */
  async contactStatus(uri: string, timeoutMs = 5000): Promise<string> {
    const from = this.ui.length;
    this.command('contacts');
    const line = new RegExp(`^[ >]\\s+(\\S+)\\s.*<${uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>\\s*$`, 'm');
    return this.waitFor(`the contacts list showing <${uri}>`, () => {
      const block = this.ui.slice(from);
      const list = block.indexOf('--- Contacts (');
      if (list === -1) return undefined;
      // The list ends with an empty line.
      const end = block.indexOf('\n\n', list);
      if (end === -1) return undefined;
      const m = line.exec(block.slice(list, end + 1));
      if (!m) throw new Error(`baresip ${this.name}: <${uri}> is not in the contacts list:\n${block.slice(list, end)}`);
      return m[1]!;
    }, timeoutMs);
  }

  /** The last part of both outputs, for failure messages. */
  tail(chars = 4000): string {
    return `--- baresip ${this.name} stdout (tail) ---\n${this.log.slice(-chars)}\n--- baresip ${this.name} stderr (tail) ---\n${this.ui.slice(-1000)}`;
  }

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }
}
