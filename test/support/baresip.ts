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
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TracedClient, fillTemplate, spawnClient, parseTrace, type TraceMessage } from './traced-client.js';

export const BARESIP = process.env.BARESIP ?? 'baresip';
export const BARESIP_MODULES = process.env.BARESIP_MODULES ?? '/usr/lib/baresip/modules';
const INSTALL_HINT = 'install Debian "baresip-core" (apt-get install baresip-core; .ci/run does) or set BARESIP to its path';

// SGR colour escapes baresip puts around traces and presence words.
const ANSI = /\x1b\[[0-9;]*m/g;
const TRACE_HEAD = /^#\n(UDP|TCP|TLS|WS|WSS) (\S+) -> (\S+)\n/gm;

export class Baresip extends TracedClient {
  private raw = '';
  private rawUi = '';

  private constructor(
    name: string,
    dir: string,
    child: ChildProcess,
    /** The presenced port of the outbound proxy: a trace message to it was sent by baresip. */
    private readonly serverAddr: string,
  ) {
    super('baresip', name, dir, child);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      this.raw += c;
      if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(`[baresip ${name}] ${c.replace(ANSI, '')}`);
      this.changed();
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      this.rawUi += c;
      this.changed();
    });
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
    const dir = mkdtempSync(join(tmpdir(), `presenced-baresip-${o.name}-`));
    writeFileSync(join(dir, 'config'), fillTemplate(o.templates, 'config', vars));
    writeFileSync(join(dir, 'accounts'), fillTemplate(o.templates, o.accounts, vars));
    writeFileSync(join(dir, 'contacts'), fillTemplate(o.templates, o.contacts, vars));
    const args = ['-f', dir, '-s', '-t', String(o.quitAfterS)];
    // HOME points into the scratch directory too, so nothing lands in ~/.baresip.
    const child = await spawnClient(
      BARESIP,
      args,
      { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, HOME: dir } },
      dir,
      `${BARESIP} not found: ${INSTALL_HINT}`,
    );
    const ua = new Baresip(o.name, dir, child, o.serverAddr);
    try {
      await ua.waitFor('"baresip is ready."', () => (ua.log.includes('baresip is ready.') ? true : undefined), o.timeoutMs ?? 10_000);
    } catch (err) {
      await ua.kill();
      throw err;
    }
    return ua;
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

  protected trace(): TraceMessage[] {
    return parseTrace(this.log, TRACE_HEAD, (m) => {
      const sent = m[3] === this.serverAddr;
      return { sent, transport: m[1]!, peer: (sent ? m[3] : m[2])! };
    });
  }

  /**
   * Runs the `contacts` command and returns the presence baresip shows for `uri`
   * ("Unknown", "Online", "Offline" or "Busy").
   */
  async contactStatus(uri: string, timeoutMs = 5000): Promise<string> {
    const from = this.ui.length;
    this.command('contacts');
    const line = new RegExp(`^[ >]\\s+(\\S+)\\s.*<${uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>\\s*$`, 'm');
    return this.waitFor(
      `the contacts list showing <${uri}>`,
      () => {
        const block = this.ui.slice(from);
        const list = block.indexOf('--- Contacts (');
        if (list === -1) return undefined;
        // The list ends with an empty line.
        const end = block.indexOf('\n\n', list);
        if (end === -1) return undefined;
        const m = line.exec(block.slice(list, end + 1));
        if (!m) throw new Error(`baresip ${this.name}: <${uri}> is not in the contacts list:\n${block.slice(list, end)}`);
        return m[1]!;
      },
      timeoutMs,
    );
  }

  /** The last part of both outputs, for failure messages. */
  tail(chars = 4000): string {
    return `--- baresip ${this.name} stdout (tail) ---\n${this.log.slice(-chars)}\n--- baresip ${this.name} stderr (tail) ---\n${this.ui.slice(-1000)}`;
  }
}
