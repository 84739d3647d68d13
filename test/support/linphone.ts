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
 *
 * Network: liblinphone 5.1 decides by itself whether "the network" is up, at start and every
 * 5 s (GenericPlatformHelpers::monitorTimerExpired): it connects a UDP socket to 87.98.157.38
 * (bctoolbox's stand-in public address) and calls the network down when the source address
 * it gets is 127.0.0.1. Down, it drops its transports, registration, publication and
 * subscriptions ("SIP network reachability state is now [DOWN]"), whatever it talks to.
 * `auto_net_state_mon=0` does not help: the core then waits for the application to call
 * linphone_core_set_network_reachable(), and linphonec never does (no REGISTER at all).
 * So a host with only lo and no route out cannot run linphonec as a SIP client; start()
 * says so at once instead of letting the test time out. test/run-isolated.sh gives its
 * namespace such a route (over lo, to a second address on lo: nothing leaves the namespace).
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TracedClient, fillTemplate, spawnClient, parseTrace, type TraceMessage } from './traced-client.js';

export const LINPHONEC = process.env.LINPHONEC ?? 'linphonec';
const INSTALL_HINT = 'install Debian "linphone-cli" (apt-get install linphone-cli; .ci/run does) or set LINPHONEC to its path';

// belle-sip's trace lines; the console prompt may be printed just before one.
const TRACE_HEAD =
  /^(?:linphonec> )?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3} belle-sip-message-channel \[0x[0-9a-f]+\]: (?:message sent to \[(UDP|TCP|TLS):\/\/([^\]]+)\], size: \[\d+\] bytes|received \[\d+\] new bytes from \[(UDP|TCP|TLS):\/\/([^\]]+)\]:)\n/gm;

export class Linphonec extends TracedClient {
  private raw = '';
  /** The random UDP port liblinphone listens on. */
  sipPort = 0;
  /** What `linphonec -v` says, "5.1.65" for bookworm's. */
  version = '';

  private constructor(name: string, dir: string, child: ChildProcess) {
    super('linphonec', name, dir, child);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(`[linphonec ${name}] ${c}`);
      this.changed();
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      this.changed();
    });
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
    await requireRouteOut();
    // `timeout` would turn a missing linphonec into exit status 127; ask linphonec itself first.
    const probe = spawnSync(LINPHONEC, ['-v'], { encoding: 'utf8', timeout: 10_000 });
    if ((probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') throw new Error(`${LINPHONEC} not found: ${INSTALL_HINT}`);
    if (probe.error) throw probe.error;
    const version = /version:\s*(\S+)/i.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? '';
    const text = fillTemplate(o.templates, o.rc, o.vars);
    const dir = mkdtempSync(join(tmpdir(), `presenced-linphone-${o.name}-`));
    const rc = join(dir, 'linphonerc');
    writeFileSync(rc, text);
    // Its message, call-history and zrtp databases; without this directory the core does not start.
    mkdirSync(join(dir, '.local', 'share', 'linphone'), { recursive: true });
    // HOME (and XDG dirs under it) in the scratch directory: nothing lands in the real ~.
    const env = { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, '.config'), XDG_DATA_HOME: join(dir, '.local', 'share') };
    const args = ['-k', '2', String(o.quitAfterS), LINPHONEC, '-c', rc, '-d', '6'];
    const child = await spawnClient(
      'timeout',
      args,
      { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'], env },
      dir,
      'timeout (coreutils) not found',
    );
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

  protected trace(): TraceMessage[] {
    return parseTrace(this.log, TRACE_HEAD, (m) => {
      const sent = m[1] !== undefined;
      return { sent, transport: (sent ? m[1] : m[3])!, peer: (sent ? m[2] : m[4])! };
    });
  }

  /** The last part of the output, for failure messages. */
  tail(chars = 4000): string {
    return `--- linphonec ${this.name} output (tail) ---\n${this.log.slice(-chars)}`;
  }
}

/** The address liblinphone 5.1 (bctoolbox) probes to decide whether the network is up. */
const PROBE = '87.98.157.38';

/**
 * Fails unless a UDP socket connected to PROBE gets a source address other than loopback,
 * the condition liblinphone needs to consider the network up (see the top of this file).
 * Nothing is sent.
 */
async function requireRouteOut(): Promise<void> {
  const sock = dgram.createSocket('udp4');
  try {
    const source = await new Promise<string>((resolve) => {
      sock.once('error', (err) => resolve(`none (${err.message})`));
      // The callback gets the error of a connect that failed (ENETUNREACH without a route).
      sock.connect(5060, PROBE, (err?: Error) => resolve(err ? `none (${err.message})` : sock.address().address));
    });
    if (source.startsWith('127.') || source.startsWith('none') || source === '0.0.0.0') {
      throw new Error(
        `liblinphone 5.1 would see this host as offline: a UDP socket towards ${PROBE} gets source address ${source}, ` +
          'and liblinphone then drops its SIP transports within 5 s (linphonec cannot be told otherwise). ' +
          'Run the suite with test/run-isolated.sh (a namespace with only lo and a route over it), or give the host a route out.',
      );
    }
  } finally {
    sock.close();
  }
}
