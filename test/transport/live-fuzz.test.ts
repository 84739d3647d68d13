/**
 * A live node under fuzzed SIP (issue 12): 2,000 generated messages over UDP and 2,000 over
 * TCP (mutated valid requests and fragments repeated to several kB, fast-check with a fixed
 * seed, FUZZ_SEED to replay another). Every 50 messages, and at the end, the node must answer
 * OPTIONS (a stall would leave that wait hanging); no message may get a 500 or log an error;
 * and its resident set may not have grown past a bound.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { SipResponse } from '../../transport/message.js';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { FUZZ_SEED, mutatedRequest, amplifiedRequest } from '../support/sip-arbitraries.js';

const COUNT = 2000;
const BATCH = 50;
/** A stalled node would leave an OPTIONS unanswered: no tight bound, a correct node answers at once. */
const PATIENT = 60_000;

let node: RunningNode;
before(async () => {
  node = await startNode({ tcp_partial_timeout: 1 });
});
after(async () => {
  await node?.stop();
});

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS readable');
  return Number(m[1]);
}

/** The generated messages, their Vias pointed at `port` (responses stay on loopback). */
function messages(port: number, proto: 'UDP' | 'TCP', seedOffset: number): Buffer[] {
  const arb = fc.oneof(
    { weight: 4, arbitrary: mutatedRequest },
    { weight: 1, arbitrary: fc.integer({ min: 1024, max: 16384 }).chain((n) => amplifiedRequest(n)) },
  );
  return fc
    .sample(arb, { seed: FUZZ_SEED + seedOffset, numRuns: COUNT })
    .map((text) =>
      Buffer.from(
        text
          .replace('SIP/2.0/UDP 192.0.2.1:5060;branch=', `SIP/2.0/${proto} 127.0.0.1:${port};rport;branch=`)
          .replace('SIP/2.0/UDP 192.0.2.1;branch=', `SIP/2.0/${proto} 127.0.0.1:${port};rport;branch=`),
        'utf8',
      ),
    );
}

async function answersOptions(ua: TestUa, what: string): Promise<void> {
  const res = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${ua.serverPort}` }, PATIENT);
  assert.equal(res.status, 200, `OPTIONS ${what} (seed ${FUZZ_SEED})`);
}

test(`live fuzz: ${COUNT} messages over UDP and ${COUNT} over TCP; OPTIONS answered throughout, no 500, no error logged, RSS bounded`, async (t) => {
  const udp = await TestUa.open('udp', node.udpPort);
  const tcp = await TestUa.open('tcp', node.tcpPort);
  try {
    // Warm up (JIT, pools, first store writes) before the baseline.
    for (let i = 0; i < 20; i++) await answersOptions(udp, 'warm-up');
    const before = rssKiB(node.pid);

    const viaUdp = messages(udp.localPort, 'UDP', 0);
    for (let i = 0; i < viaUdp.length; i++) {
      udp.sendRaw(viaUdp[i]!);
      if ((i + 1) % BATCH === 0) await answersOptions(udp, `after UDP message ${i + 1}`);
    }

    const viaTcp = messages(tcp.localPort, 'TCP', 1);
    for (let i = 0; i < viaTcp.length; i += BATCH) {
      // One connection per batch: a message that cannot be framed closes it, as it should.
      const sock = net.connect({ host: '127.0.0.1', port: node.tcpPort });
      sock.on('error', () => undefined);
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      for (const m of viaTcp.slice(i, i + BATCH)) if (!sock.destroyed) sock.write(m);
      await new Promise<void>((resolve) => sock.end(() => resolve()));
      await answersOptions(tcp, `after TCP message ${i + BATCH}`);
    }
    await answersOptions(udp, 'at the end over UDP');
    await answersOptions(tcp, 'at the end over TCP');

    const after = rssKiB(node.pid);
    const answered = [...udp.received, ...tcp.received].filter((r) => r.message instanceof SipResponse).length;
    t.diagnostic(`seed ${FUZZ_SEED}: RSS ${before} kB before, ${after} kB after; ${answered} responses received`);
    assert.ok(after < before + 150 * 1024, `RSS ${before} kB → ${after} kB (seed ${FUZZ_SEED})`);
    const fives = [...udp.received, ...tcp.received].filter((r) => r.message instanceof SipResponse && r.message.status === 500);
    assert.deepEqual(
      fives.map((r) => r.raw.toString('utf8').slice(0, 300)),
      [],
      `500s (seed ${FUZZ_SEED})`,
    );
    const errors = node.logs.filter((l) => Number(l.level) >= 50);
    assert.deepEqual(
      errors.map((l) => JSON.stringify(l).slice(0, 500)),
      [],
      `errors logged (seed ${FUZZ_SEED})`,
    );
    assert.equal(node.stderr.join(''), '');
  } finally {
    await udp.close();
    await tcp.close();
  }
});
