/**
 * What the interop tests share about a real SIP client process (baresip, linphonec): its
 * configuration written from templates, its start, its SIP trace parsed into messages, and
 * waiting for something to show in its output. Each client's module says how to start it, how
 * its trace lines look and what its console commands are.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { backstop } from './wait.js';

/** One SIP message of a client's trace. */
export interface TraceMessage {
  /** Sent by the client (false: received by it). */
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

export function header(m: TraceMessage, name: string): string | undefined {
  return m.headers.get(name.toLowerCase())?.[0];
}

/** The first <basic> value of a PIDF body (what these clients read as their contact's status). */
export function basicOf(body: string): string | undefined {
  return /<basic>\s*([^<\s]+)\s*<\/basic>/.exec(body)?.[1];
}

/** Poll an asynchronous `probe` every 50 ms until it returns a value. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  timeoutMs = backstop(timeoutMs);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A template from `dir` with its `{{NAME}}` placeholders replaced from `vars` (a missing one is an error). */
export function fillTemplate(dir: string, file: string, vars: Record<string, string | number>): string {
  return readFileSync(join(dir, file), 'utf8').replace(/\{\{([A-Z_]+)\}\}/g, (m, k: string) => {
    if (!(k in vars)) throw new Error(`${file}: no value for ${m}`);
    return String(vars[k]);
  });
}

/** Spawn `cmd`; a missing binary rejects with `missing`, and `scratch` is removed if it does not start. */
export async function spawnClient(
  cmd: string,
  args: string[],
  options: SpawnOptions,
  scratch: string,
  missing: string,
): Promise<ChildProcess> {
  const child = spawn(cmd, args, options);
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new Error(missing) : err));
    });
  } catch (err) {
    rmSync(scratch, { recursive: true, force: true });
    throw err;
  }
  return child;
}

/** Where a trace head puts the direction, transport and other end of the message after it. */
export type TraceHead = (m: RegExpMatchArray) => { sent: boolean; transport: string; peer: string };

/** Every complete message after a line matching `head` (a global, multiline regular expression). */
export function parseTrace(text: string, head: RegExp, describe: TraceHead): TraceMessage[] {
  const out: TraceMessage[] = [];
  for (const m of text.matchAll(head)) {
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
    const status = /^SIP\/2\.0 (\d{3}) /.exec(startLine);
    const msg: TraceMessage = {
      ...describe(m),
      startLine,
      headers,
      body: text.slice(end + 4, end + 4 + length),
      text: text.slice(m.index!, end + 4 + length),
    };
    if (status) msg.status = Number(status[1]);
    else msg.method = startLine.split(' ')[0]!;
    out.push(msg);
  }
  return out;
}

/** A running client: its output, its exit, its trace, and waiting for what it prints. */
export abstract class TracedClient {
  private readonly listeners = new Set<() => void>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  protected constructor(
    /** "baresip", "linphonec": in failure messages. */
    readonly program: string,
    readonly name: string,
    readonly dir: string,
    readonly child: ChildProcess,
  ) {
    // A write after the client exited must not crash the test process (EPIPE).
    child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        resolve({ code, signal });
        this.changed();
      }),
    );
  }

  /** Everything it printed that holds the SIP trace. */
  abstract get log(): string;
  /** The last part of its output, for failure messages. */
  abstract tail(): string;
  /** Its whole trace, in order. */
  protected abstract trace(): TraceMessage[];

  get pid(): number {
    return this.child.pid!;
  }

  /** Every complete SIP message of the trace matching `q`, in order. */
  messages(q: TraceQuery = {}): TraceMessage[] {
    return this.trace().filter(
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

  /** Wait until `probe` returns a value, re-checked whenever the client prints or exits. */
  waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
    timeoutMs = backstop(timeoutMs);
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    const who = `${this.program} ${this.name}`;
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
          reject(new Error(`${who} exited (${this.child.exitCode ?? this.child.signalCode}) while waiting for ${what}\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${who}: ${what}\n${this.tail()}`));
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

  /** The next request matching `pred` after the first `after` messages, and the final response to it. */
  async nextExchange(
    what: string,
    pred: (m: TraceMessage) => boolean,
    after: number,
    timeoutMs = 5000,
  ): Promise<{ req: TraceMessage; res: TraceMessage }> {
    const req = await this.nextMessage(what, (m) => m.method !== undefined && pred(m), after, timeoutMs);
    const res = await this.waitFor(`the response to ${what}`, () => this.responseTo(req), 5000);
    return { req, res };
  }

  /** How it exited, or 'still running' after `ms`. */
  async exitWithin(ms = 5000): Promise<{ code: number | null; signal: NodeJS.Signals | null } | 'still running'> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'still running'>((r) => (timer = setTimeout(() => r('still running'), backstop(ms))));
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** It printed something (or exited): waiters look again. */
  protected changed(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** A traced message for a failure message. */
export const show = (m: TraceMessage | undefined): string => (m ? m.text : '(none)');

/** The client's next PUBLISH (sent) after `after` traced messages matching `pred`, and the final response it got. */
export function nextPublish(
  ua: TracedClient,
  after: number,
  pred: (m: TraceMessage) => boolean,
  what: string,
  timeoutMs = 5000,
): Promise<{ req: TraceMessage; res: TraceMessage }> {
  return ua.nextExchange(what, (m) => m.sent && m.method === 'PUBLISH' && pred(m), after, timeoutMs);
}

/** The client's next NOTIFY (received) after `after` traced messages, and its response, which must be 200. */
export async function nextNotify(
  ua: TracedClient,
  after: number,
  what: string,
  pred: (m: TraceMessage) => boolean = () => true,
): Promise<{ req: TraceMessage; res: TraceMessage }> {
  const { req, res } = await ua.nextExchange(what, (m) => !m.sent && m.method === 'NOTIFY' && pred(m), after);
  assert.equal(res.status, 200, `${ua.program} did not accept the NOTIFY:\n${req.text}\n${res.text}`);
  return { req, res };
}
