/**
 * Runs the front proxy of deploy/kamailio/kamailio.cfg (Debian kamailio 5.6 with
 * kamailio-presence-modules) beside a test node with the README's command, deploy/kamailio/run:
 * its own process (kamailio -DD in the foreground, exec'd by the script, so the PID is the one
 * spawned and stopping it is one signal to it), its runtime
 * and db_text directories under a temp dir, UDP and TCP on a loopback port the test picks free,
 * ready once it answers an OPTIONS probe. Its log (stderr, -E) is kept for the assertions'
 * messages and printed with PRESENCED_TEST_LOGS set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import dgram from 'node:dgram';
import net from 'node:net';
import { TestUa } from './sip-ua.js';
import { SipResponse } from '../../transport/message.js';

export const KAMAILIO = process.env.KAMAILIO ?? 'kamailio';
/** dist/test/support/kamailio.js → <repo>/deploy/kamailio/kamailio.cfg */
export const KAMAILIO_RUN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'deploy', 'kamailio', 'run');
const DBTEXT_SCHEMA = process.env.KAMAILIO_DBTEXT ?? '/usr/share/kamailio/dbtext/kamailio';

export interface RunningKamailio {
  pid: number;
  port: number;
  domain: string;
  log: string[];
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 for both UDP and TCP at the time of asking. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    const port = await new Promise<number>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, '127.0.0.1', () => resolve(udp.address().port));
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    await new Promise<void>((r) => udp.close(() => r()));
    if (tcpFree) return port;
  }
  throw new Error('no port free for both UDP and TCP on 127.0.0.1');
}

export interface KamailioOptions {
  /** presenced's UDP port: PUBLISH/SUBSCRIBE are relayed there and pua PUBLISHes go there. */
  presencedPort: number;
  domain?: string;
  timeoutMs?: number;
}

export async function startKamailio(o: KamailioOptions): Promise<RunningKamailio> {
  const dir = mkdtempSync(join(tmpdir(), 'presenced-kamailio-'));
  if (!existsSync(join(DBTEXT_SCHEMA, 'pua'))) throw new Error(`${DBTEXT_SCHEMA}/pua missing: install Debian "kamailio" (.ci/run does)`);
  const domain = o.domain ?? 'example.com';
  const port = await freePort();
  // The README's command: deploy/kamailio/run execs Kamailio, so the PID spawned is Kamailio's.
  const child: ChildProcess = spawn(KAMAILIO_RUN, [`127.0.0.1:${port}`, `127.0.0.1:${o.presencedPort}`, domain], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, KAMAILIO_STATE: dir, KAMAILIO: KAMAILIO, KAMAILIO_DBTEXT: DBTEXT_SCHEMA },
  });
  const log: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    log.push(c);
    if (process.env.PRESENCED_TEST_LOGS) process.stderr.write(c);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.once('error', () => undefined); // reported through `exited` below
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };

  // Ready when it answers OPTIONS: one probe, resent every 250 ms (as a UDP client retransmits)
  // until Kamailio answers it, or exits. Nothing here waits for a timeout to pass.
  const ua = await TestUa.open('udp', port);
  let resend: NodeJS.Timeout | undefined;
  try {
    const probe = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${port}`, callId: `kamailio-ready-${port}-${Date.now()}` });
    const branch = probe.topVia.branch;
    const answered = ua.waitFor(
      (r) => r.message instanceof SipResponse && r.message.status >= 200 && r.message.topVia.branch === branch,
      o.timeoutMs ?? 60_000,
      'Kamailio answering OPTIONS',
    );
    const raw = probe.toBuffer();
    ua.sendRaw(raw);
    resend = setInterval(() => ua.sendRaw(raw), 250);
    const outcome = await Promise.race([answered.then(() => 'ready' as const), exited.then(() => 'exited' as const)]).catch(
      (err: Error) => err,
    );
    if (outcome === 'exited') throw new Error(`kamailio exited before it was ready:\n${log.join('').slice(-3000)}`);
    if (outcome instanceof Error)
      throw new Error(`kamailio did not answer OPTIONS on ${port} (${outcome.message}):\n${log.join('').slice(-3000)}`);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    if (resend) clearInterval(resend);
    await ua.close();
  }
  return { pid: child.pid!, port, domain, log, stop };
}
