/**
 * Overload control of the stack (issue 12, RFC 3261 §21.5.4), over real sockets: new requests
 * beyond overload_max_inflight or max_server_transactions get a stateless 503 with Retry-After
 * while what was accepted still gets its 2xx; a retransmission of an accepted request is
 * absorbed by its transaction, never shed; the node takes requests again as soon as the load is
 * gone; connections beyond max_connections are closed; each refusal is counted in /metrics by
 * limit and logged once per limit_log_interval. The event-loop lag detector is driven directly.
 *
 * Determinism: requests written to one TCP connection in one write are framed and handed to the
 * stack in one turn of the event loop, before the first PUBLISH can have its store commit; so
 * exactly the first of them is in flight when the others arrive.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { SipResponse, type SipRequest } from '../../transport/message.js';
import { OverloadGuard, Refusals, udpQueueOf, udpReceiveQueue } from '../../transport/overload.js';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa } from '../support/sip-ua.js';
import { fleet } from '../support/fleet.js';
import { backstop } from '../support/wait.js';
import { pidf, publish, uniqueUri } from '../support/presence.js';

const { node, ua } = fleet({ limit_log_interval: 86400 });

function buildPublish(u: TestUa): SipRequest {
  const p = uniqueUri('ov');
  return u.build({
    method: 'PUBLISH',
    uri: p,
    to: `<${p}>`,
    headers: [
      ['event', 'presence'],
      ['expires', '60'],
    ],
    body: pidf(p, 't1', 'open'),
    contentType: 'application/pidf+xml',
  });
}

function finalTo(u: TestUa, req: SipRequest): Promise<SipResponse> {
  const branch = req.topVia.branch;
  return u
    .waitFor(
      (r) => r.message instanceof SipResponse && r.message.status >= 200 && r.message.topVia.branch === branch,
      10_000,
      `response to ${req.method}`,
    )
    .then((r) => r.message as SipResponse);
}

/** Datagrams the kernel dropped at the UDP sockets bound to `ports` (the last column of /proc/net/udp). */
function udpDrops(ports: readonly number[]): number {
  let total = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 13 || !f[0]!.endsWith(':')) continue;
    if (ports.includes(parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16))) total += Number(f[f.length - 1]);
  }
  return total;
}

async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  const backstopMs = backstop();
  const deadline = performance.now() + backstopMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${backstopMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function metric(n: RunningNode, name: string, label: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${n.rpcPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{limit="${label}",node=`));
  return line ? Number(line.split(' ')[1]) : 0;
}

const limitLogs = (n: RunningNode, limit: string): number =>
  n.logs.filter((l) => l.limit === limit && l.msg === `limit reached: ${limit}; refusing`).length;

test('beyond overload_max_inflight new requests get 503 + Retry-After, the accepted one its 200, and the node recovers at once', async () => {
  const n = await node({ overload_max_inflight: 1, overload_max_loop_lag: 0, overload_retry_after: 7 });
  const u = await ua(n, 'tcp');
  const reqs = [0, 1, 2, 3].map(() => buildPublish(u));
  const answers = reqs.map((r) => finalTo(u, r));
  u.sendRaw(Buffer.concat(reqs.map((r) => r.toBuffer())));
  const res = await Promise.all(answers);
  assert.equal(res[0]!.status, 200, 'the request taken is answered');
  assert.ok(res[0]!.headers.get('sip-etag'));
  for (const r of res.slice(1)) {
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '7');
  }
  // The burst is over: a new request is taken at once.
  assert.equal((await publish(u, uniqueUri('ov'), { body: pidf('sip:x@example.com', 't', 'open') })).status, 200);
  assert.equal(await metric(n, 'presenced_limit_refusals_total', 'overload_max_inflight'), 3);
  assert.equal(limitLogs(n, 'overload_max_inflight'), 1, 'one log line for three refusals within limit_log_interval');
});

test('a retransmission of a request in progress is absorbed by its transaction, not shed', async () => {
  const n = await node({ overload_max_inflight: 1, overload_max_loop_lag: 0 });
  const u = await ua(n, 'tcp');
  const first = buildPublish(u);
  const other = buildPublish(u);
  const branch = first.topVia.branch;
  const answers = [finalTo(u, first), finalTo(u, other)];
  // first, first again (same branch: the same transaction), then a new request.
  u.sendRaw(Buffer.concat([first.toBuffer(), first.toBuffer(), other.toBuffer()]));
  const [a, b] = await Promise.all(answers);
  assert.equal(a!.status, 200);
  assert.equal(b!.status, 503);
  // A 503 to the retransmission would have been written before the 503 to `other` on this connection.
  const forFirst = u.received.filter((r) => r.message instanceof SipResponse && r.message.topVia.branch === branch);
  assert.deepEqual(
    forFirst.map((r) => (r.message as SipResponse).status),
    [200],
  );
});

test('ACK and CANCEL are never shed', async () => {
  const n = await node({ overload_max_inflight: 1, overload_max_loop_lag: 0 });
  const u = await ua(n, 'tcp');
  const busy = buildPublish(u);
  const cancel = u.build({ method: 'CANCEL', uri: 'sip:nobody@example.com' });
  const shed = buildPublish(u);
  const answers = [finalTo(u, busy), finalTo(u, cancel), finalTo(u, shed)];
  u.sendRaw(Buffer.concat([busy.toBuffer(), cancel.toBuffer(), shed.toBuffer()]));
  const [a, c, s] = await Promise.all(answers);
  assert.equal(a!.status, 200);
  assert.equal(c!.status, 481, 'CANCEL gets its usual answer while the node sheds');
  assert.equal(s!.status, 503);
});

test('max_server_transactions: completed transactions kept for Timer J count; beyond, 503 + Retry-After over UDP', async () => {
  // T1 = 10 s: Timer J (64*T1) keeps every completed UDP transaction for the whole test.
  const n = await node({ max_server_transactions: 2, overload_max_loop_lag: 0, sip_t1: 10_000, sip_t2: 10_000 });
  const u = await ua(n, 'udp');
  const opt = (): Promise<SipResponse> => u.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${n.udpPort}` });
  assert.equal((await opt()).status, 200);
  assert.equal((await opt()).status, 200);
  const refused = await opt();
  assert.equal(refused.status, 503);
  assert.equal(refused.headers.get('retry-after'), '2', 'overload_retry_after default');
  assert.equal(await metric(n, 'presenced_limit_refusals_total', 'max_server_transactions'), 1);
  assert.equal(limitLogs(n, 'max_server_transactions'), 1);
});

test('max_connections: a connection beyond the limit is closed at once, the open one keeps working', async () => {
  const n = await node({ max_connections: 1 });
  const u = await ua(n, 'tcp');
  assert.equal((await u.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${n.tcpPort}` })).status, 200);
  const extra = net.connect({ host: '127.0.0.1', port: n.tcpPort });
  extra.on('error', () => undefined);
  await new Promise<void>((resolve) => extra.once('close', () => resolve()));
  assert.equal((await u.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${n.tcpPort}` })).status, 200);
  assert.equal(await metric(n, 'presenced_limit_refusals_total', 'max_connections'), 1);
  assert.equal(limitLogs(n, 'max_connections'), 1);
});

test('the event-loop lag detector refuses while the loop lags, not for one stall, and takes requests again once the samples are on time', () => {
  const warnings: Array<Record<string, unknown>> = [];
  const log = {
    debug: () => undefined,
    info: () => undefined,
    warn: (o: object) => warnings.push(o as Record<string, unknown>),
    error: () => undefined,
  };
  const refusals = new Refusals(log, 60_000);
  const guard = new OverloadGuard(
    {
      maxInFlight: 0,
      maxLoopLagMs: 100,
      maxServerTransactions: 0,
      retryAfter: 1,
      names: { maxInFlight: 'a', maxLoopLagMs: 'lag', maxServerTransactions: 'b' },
    },
    refusals,
  );
  // The samples the 20 ms timer takes, taken here by hand after the loop was really blocked.
  const block = (ms: number): void => {
    const until = performance.now() + ms;
    while (performance.now() < until);
  };
  guard.sample();
  // One stall is not overload: the sample after a 400 ms block is late, and nothing is refused.
  block(400);
  guard.sample();
  assert.ok(guard.loopLagMs >= 380, `lag ${guard.loopLagMs} ms`);
  assert.equal(guard.refuse('PUBLISH', 0, 'c0'), undefined, 'a single late sample');
  // A second one within five samples is: requests are refused.
  block(400);
  guard.sample();
  assert.equal(guard.refuse('PUBLISH', 0, 'c1'), 'lag');
  assert.equal(guard.refuse('ACK', 0, 'c2'), undefined, 'ACK is never refused');
  assert.equal(guard.refuse('CANCEL', 0, 'c3'), undefined, 'CANCEL is never refused');
  assert.equal(guard.refuse('OPTIONS', 0, 'c4'), 'lag');
  // Samples on time again: one more leaves a single late one among the last five.
  for (let i = 0; i < 4; i++) guard.sample();
  assert.equal(guard.refuse('OPTIONS', 0, 'c5'), undefined);
  assert.equal(refusals.count('lag'), 2);
  assert.equal(warnings.length, 1, 'logged once per interval');
  assert.equal(warnings[0]!.limit, 'lag');
  assert.equal(warnings[0]!.callId, 'c1');
});

test('the UDP receive queue is read from the rx_queue column of /proc/net/udp for our ports only', async () => {
  const table = [
    '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
    ' 4835: 0100007F:13C4 00000000:0000 07 00000000:00100000 00:00000000 00000000     0        0 175569 2 00000000d3efc99e 0',
    ' 4836: 0100007F:13C5 00000000:0000 07 00000000:00000400 00:00000000 00000000     0        0 175570 2 00000000d3efc99f 12',
    ' 5921: 00000000000000000000000001000000:13C4 00000000000000000000000000000000:0000 07 00000000:00000A00 00:00000000 00000000     0        0 176579 2 000000005a55e06d 0',
  ].join('\n');
  assert.equal(udpQueueOf(table, new Set([0x13c4])), 0x100000 + 0xa00, 'IPv4 and IPv6 sockets on port 5060');
  assert.equal(udpQueueOf(table, new Set([0x13c5])), 0x400);
  assert.equal(udpQueueOf(table, new Set([9])), 0);
  assert.equal(typeof udpReceiveQueue(new Set([9])), 'number', 'reading the tables of this machine works (or gives 0 off Linux)');
});

test('a full UDP queue: the requests taken in flight shrink while it grows, hold while it drains, and grow back below the limit', () => {
  const log = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
  const guard = new OverloadGuard(
    {
      maxInFlight: 100,
      maxLoopLagMs: 0,
      maxServerTransactions: 0,
      maxUdpQueueBytes: 1000,
      minInFlight: 2,
      retryAfter: 1,
      names: { maxInFlight: 'a', maxLoopLagMs: 'lag', maxServerTransactions: 'b', maxUdpQueueBytes: 'queue' },
    },
    new Refusals(log, 60_000),
  );
  guard.inFlight = 50;
  assert.equal(guard.refuse('PUBLISH', 0, undefined), undefined, 'no signal: taken');
  guard.udpQueueBytes = 1500; // growing, over the limit
  guard.sample();
  assert.equal(guard.window, 35, '0.7 of what is in flight');
  assert.equal(guard.refuse('PUBLISH', 0, undefined), 'queue');
  guard.inFlight = 10;
  assert.equal(guard.refuse('PUBLISH', 0, undefined), undefined, 'fewer in flight than the window: taken');
  guard.udpQueueBytes = 1550; // grew by less than 1/8 of the limit: noise, the window holds
  guard.sample();
  assert.equal(guard.window, 35);
  guard.udpQueueBytes = 1900;
  guard.sample();
  assert.equal(guard.window, 7);
  assert.equal(guard.refuse('SUBSCRIBE', 0, undefined), 'queue');
  guard.udpQueueBytes = 1700; // draining, still over: the window holds
  guard.sample();
  assert.equal(guard.window, 7);
  for (let i = 0; i < 10; i++) {
    guard.udpQueueBytes = 4000; // far over the limit (4x), growing or not: never below minInFlight
    guard.sample();
  }
  assert.equal(guard.window, 2);
  guard.udpQueueBytes = 0; // under the limit: taken at once, and the window grows back
  assert.equal(guard.refuse('PUBLISH', 0, undefined), undefined);
  guard.sample();
  assert.equal(guard.window, 4);
  for (let i = 0; i < 30; i++) guard.sample();
  assert.equal(guard.window, 100, 'up to overload_max_inflight');
});

test('requests that waited in a full UDP receive queue: the excess gets 503 + Retry-After as soon as the node sees the queue, every request is answered, and the node recovers', async (t) => {
  const n = await node({ overload_max_udp_queue: 16384, overload_min_inflight: 0, overload_max_loop_lag: 0, overload_max_inflight: 0 });
  const u = await ua(n, 'udp');
  const state = (): string => {
    const stat = readFileSync(`/proc/${n.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  };
  const until = async (cond: () => boolean): Promise<void> => {
    while (!cond()) await new Promise((resolve) => setTimeout(resolve, 2));
  };
  const reqs = Array.from({ length: 300 }, () => u.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${n.udpPort}` }));
  // A datagram the kernel drops (the node's queue, or ours when 300 answers arrive while this
  // process waits for a busy core) is counted by the kernel; this UA does not retransmit, so the
  // count stands in for "the answer was lost on the way", and every other request must be answered.
  const dropsBefore = udpDrops([n.udpPort, u.localPort]);
  const branches = new Set<string | undefined>(reqs.map((r) => r.topVia.branch));
  const answered = (): SipResponse[] => {
    const byBranch = new Map<string | undefined, SipResponse>();
    for (const { message: m } of u.received) {
      if (m instanceof SipResponse && m.status >= 200 && branches.has(m.topVia.branch)) byBranch.set(m.topVia.branch, m);
    }
    return [...byBranch.values()];
  };
  // The node stops reading: everything sent now waits in its socket's receive queue.
  process.kill(n.pid, 'SIGSTOP');
  try {
    await until(() => state() === 'T');
    const stoppedAt = performance.now();
    for (const r of reqs) u.sendRaw(r.toBuffer());
    await until(() => udpReceiveQueue(new Set([n.udpPort])) >= 300 * 400);
    // Stopped longer than one 20 ms sampling period: its sampler is due when it runs again.
    await until(() => performance.now() - stoppedAt > 25);
  } finally {
    process.kill(n.pid, 'SIGCONT');
  }
  let dropped = 0;
  let res: SipResponse[] = [];
  await waitUntil(() => {
    dropped = udpDrops([n.udpPort, u.localPort]) - dropsBefore;
    res = answered();
    return res.length + dropped >= 300;
  }, 'every request answered or counted as dropped by the kernel');
  assert.equal(res.length + dropped, 300, `${res.length} answered, ${dropped} dropped by the kernel`);
  const statuses = res.map((r) => r.status);
  assert.ok(
    statuses.every((s) => s === 200 || s === 503),
    `only 200 and 503: ${[...new Set(statuses)].join(', ')}`,
  );
  const refused = res.filter((r) => r.status === 503);
  assert.ok(refused.length > 0, 'the excess is refused');
  assert.ok(refused.length < 300, 'what the node read before it saw the queue was served');
  for (const r of refused) assert.equal(r.headers.get('retry-after'), '2');
  // A refusal whose 503 the kernel dropped is still counted by the node.
  const counted = await metric(n, 'presenced_limit_refusals_total', 'overload_max_udp_queue');
  assert.ok(counted >= refused.length && counted <= refused.length + dropped, `${counted} refusals counted`);
  t.diagnostic(`${res.length - refused.length} served, ${refused.length} refused, ${dropped} dropped by the kernel`);
  // Once the node has seen its queue empty again, the next request is taken.
  const queueGauge = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${n.rpcPort}/metrics`)).text();
    return Number(/^presenced_sip_udp_receive_queue_bytes\{node="[^"]*"\} (\d+)/m.exec(text)?.[1] ?? NaN);
  };
  while ((await queueGauge()) !== 0) await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal((await u.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${n.udpPort}` })).status, 200);
});
