/**
 * Drives a real linphonec process (Debian "linphone-cli", liblinphone 5.1) for the interop
 * tests: writes its configuration into a temporary HOME from the templates in
 * test/interop/linphone/, types console commands on its stdin, and reads its SIP trace and
 * what it prints from stdout (`-d 6` without `-l` logs everything there, belle-sip's
 * "message sent to" / "received [n] new bytes from" lines with each message).
 *
 * Headless: linphonec 5.1 needs no terminal (readline reads the pipe; its event hook runs
 * linphone_core_iterate while it waits for a line), no sound card (none is opened without a
 * call; a machine without one only logs "Could not find a suitable soundcard"), no video (off
 * unless -V/-C/-D). It needs a writable ~/.local/share/linphone: without it the core never
 * starts (no listening point, no REGISTER, no SUBSCRIBE), silently apart from one "Unable to
 * open linphone database" line. `--pipe` is not used: it listens on the fixed
 * /tmp/linphonec-<uid> and hangs at quit (its reader thread stays in accept()).
 *
 * linphonec has no deadline option and does not quit at the end of its stdin (readline keeps
 * calling the event hook), so it runs under coreutils `timeout -k 2 <deadline>`: it gets
 * SIGTERM at the deadline (linphonec_finish: it unpublishes and unsubscribes, then exits) and
 * SIGKILL 2 s later, even if the test process dies. `kill()` sends SIGTERM to that wrapper (the
 * process the test started, by its PID), which passes it on and arms the same SIGKILL; the
 * wrapper gets SIGKILL itself only if it is still there 5 s later.
 * PRESENCED_TEST_LOGS=1 copies its output to the test's stderr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const LINPHONEC = process.env.LINPHONEC ?? 'linphonec';
const INSTALL_HINT = 'install Debian "linphone-cli" (apt-get install linphone-cli; .ci/run does) or set LINPHONEC to its path';

/** One SIP message of linphonec's trace. */
export interface TraceMessage {
  /** Sent by linphonec (false: received by it). */
  sent: boolean;
  transport: string;
  /** The other end, host:port. */
  peer: string;
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

// belle-sip's trace lines; the console prompt may be printed just before one.
const TRACE_HEAD =
  /^(?:linphonec> )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} belle-sip-message-channel \[0x[0-9a-f]+\]: (?:message sent to \[(UDP|TCP|TLS):\/\/([^\]]+)\], size: \[\d+\] bytes|received \[\d+\] new bytes from \[(UDP|TCP|TLS):\/\/([^\]]+)\]:)\n/gm;

export function header(m: TraceMessage, name: string): string | undefined {
  return m.headers.get(name.toLowerCase())?.[0];
}

export class Linphonec {
  private raw = '';
  private readonly listeners = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The random UDP port liblinphone listens on. */
  sipPort = 0;
  /** What `linphonec -v` says, "5.1.65" for bookworm's. */
  version = '';

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly child: ChildProcess,
  ) {
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(`[linphonec ${name}] ${c}`);
      this.changed();
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      this.changed();
    });
    // A write after linphonec exited must not crash the test process (EPIPE).
    child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve({ code, signal });
        this.changed();
      }),
    );
  }

  /**
   * Writes `linphonerc` from the template `rc` (placeholders `{{NAME}}` replaced from `vars`)
   * into a fresh HOME, starts linphonec, and resolves once its core listens and its console
   * prompt is up.
   */
  static async start(o: {
    name: string;
    templates: string;
    rc: string;
    vars: Record<string, string | number>;
    /** The hard deadline: linphonec gets SIGTERM after this many seconds, SIGKILL 2 s later. */
    quitAfterS: number;
    timeoutMs?: number;
  }): Promise<Linphonec> {
    // `timeout` would turn a missing linphonec into exit status 127; ask linphonec itself first.
    const probe = spawnSync(LINPHONEC, ['-v'], { encoding: 'utf8', timeout: 10_000 });
    if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw new Error(`${LINPHONEC} not found: ${INSTALL_HINT}`);
    if (probe.error) throw probe.error;
    const version = /version:\s*(\S+)/i.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? '';
    const text = readFileSync(join(o.templates, o.rc), 'utf8').replace(/\{\{([A-Z_]+)\}\}/g, (m, k: string) => {
      if (!(k in o.vars)) throw new Error(`${o.rc}: no value for ${m}`);
      return String(o.vars[k]);
    });
    const dir = mkdtempSync(join(tmpdir(), `presenced-linphone-${o.name}-`));
    const rc = join(dir, 'linphonerc');
    writeFileSync(rc, text);
    // Its message, call-history and zrtp databases; without this directory the core does not start.
    mkdirSync(join(dir, '.local', 'share', 'linphone'), { recursive: true });
    // HOME (and XDG dirs under it) in the scratch directory: nothing lands in the real ~.
    const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, '.config'), XDG_DATA_HOME: join(dir, '.local', 'share') };
    const child = spawn('timeout', ['-k', '2', String(o.quitAfterS), LINPHONEC, '-c', rc, '-d', '6'], {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new Error(`timeout (coreutils) not found: ${err.message}`) : err),
      );
    });
    try {
      await spawned;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const ua = new Linphonec(o.name, dir, child);
    ua.version = version;
    try {
      ua.sipPort = await ua.waitFor(
        'its listening point',
        () => {
          const m = /Random port for listening point \[0x[0-9a-f]+\] is (\d+)/.exec(ua.log);
          return m && ua.log.includes('linphonec> ') ? Number(m[1]) : undefined;
        },
        o.timeoutMs ?? 10_000,
      );
    } catch (err) {
      await ua.kill();
      throw err;
    }
    return ua;
  }

  /** The PID of the `timeout` wrapper, the process the test started; linphonec is its child. */
  get pid(): number {
    return this.child.pid!;
  }

  /** stdout and stderr: the log with the SIP trace, and what commands and callbacks print. */
  get log(): string {
    return this.raw;
  }

  /** A console command, as typed: "friend add Alice sip:alice@example.com" + Enter. */
  command(cmd: string): void {
    this.child.stdin!.write(`${cmd}\n`);
  }

  /** The `quit` command: linphonec unpublishes, unregisters and unsubscribes, then exits. */
  quit(): void {
    this.command('quit');
  }

  /**
   * If still running: SIGTERM to the wrapper (linphonec gets it, and SIGKILL 2 s later if it
   * is still there), SIGKILL to the wrapper after 5 s. Then remove the scratch directory.
   */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 5000)));
      try {
        if ((await Promise.race([this.exited, late])) === 'late') this.child.kill('SIGKILL');
      } finally {
        clearTimeout(timer);
      }
    }
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * What linphonec printed for each presence NOTIFY (its notify_presence_received callback:
   * `Friend "Alice" <sip:alice@example.com> is Online`), in order: the status words.
   */
  statuses(uri: string): string[] {
    const esc = uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return [...this.log.matchAll(new RegExp(`^(?:linphonec> )?Friend (?:"[^"]*" )?<?${esc}>? is (.+)$`, 'gm'))].map((m) => m[1]!);
  }

  /** Wait for the n-th (1-based) status line about `uri`; resolves with its status word. */
  nthStatus(uri: string, n: number, timeoutMs = 5000): Promise<string> {
    return this.waitFor(`status line #${n} about <${uri}>`, () => this.statuses(uri)[n - 1], timeoutMs);
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
      const sent = m[1] !== undefined;
      const msg: TraceMessage = {
        sent,
        transport: (sent ? m[1] : m[3])!,
        peer: (sent ? m[2] : m[4])!,
        startLine,
        headers,
        body,
        text: text.slice(start, end + 4 + length),
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

  /** Requests of `method` only (not their responses); a UDP retransmission counts once. */
  requests(method: string, sent: boolean): TraceMessage[] {
    const seen = new Set<string>();
    return this.messages({ method, sent }).filter((m) => {
      if (m.method !== method) return false;
      const key = `${header(m, 'via')}|${header(m, 'cseq')}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  /** The final response (in the opposite direction) to a traced request, if traced yet. */
  responseTo(req: TraceMessage): TraceMessage | undefined {
    return this.messages({ sent: !req.sent, callId: header(req, 'call-id'), cseq: header(req, 'cseq') }).find(
      (m) => m.status !== undefined && m.status >= 200,
    );
  }

  /** Wait until `probe` returns a value, re-checked whenever linphonec prints or exits. */
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
          reject(new Error(`linphonec ${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${what}\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for linphonec ${this.name}: ${what}\n${this.tail()}`));
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

  /** The last part of the output, for failure messages. */
  tail(chars = 4000): string {
    return `--- linphonec ${this.name} output (tail) ---\n${this.log.slice(-chars)}`;
  }

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }
}
