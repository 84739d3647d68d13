/**
 * Every parsing step is linear in the message (issue 12: a Request-Line of a method and a run
 * of spaces kept the node's one thread busy for seconds to minutes). Nothing here measures
 * time, so nothing can flake on a busy machine:
 *
 * - the worst-case inputs of test/support/linear-cases.ts, each as large as max_message_size,
 *   go through every SIP and XCAP parsing step in a child node that traces any regular
 *   expression execution over 8 backtracks per input character (V8 counts them exactly);
 * - the TCP framer's own work counter stays a small multiple of the bytes fed, however they are
 *   chunked, and grows 4x (not 16x) when the input does;
 * - a real node answers each pathological message (or drops it) and then an OPTIONS, over UDP
 *   and TCP; a stall would hit the wait, which has no tight bound.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseRequestLine, StreamFramer } from '../../transport/parser.js';
import { SipResponse } from '../../transport/message.js';
import { runGuarded } from '../support/backtrack-guard.js';
import { sipCases, frame } from '../support/linear-cases.js';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa, type UaProto } from '../support/sip-ua.js';

const MAX = 65535;

test('no regular expression backtracks more than linearly on any worst-case SIP message of max_message_size', async () => {
  const run = await runGuarded('linear-cases', ['sip', String(MAX)], 8 * MAX);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.excessive, [], 'regular expressions over the backtrack limit');
  const cases = run.out.filter((l) => l.startsWith('case ')).map((l) => l.slice(5));
  assert.deepEqual(
    cases,
    sipCases(MAX).map(([name]) => name),
    'every case ran',
  );
  assert.equal(run.out.at(-1), 'done');
  // The framer, fed each case in 7-byte chunks, does a bounded amount of work per byte.
  for (const l of run.out.filter((x) => x.startsWith('work '))) {
    const [name, work, bytes] = l.slice(5).split('\t');
    assert.ok(Number(work) <= 6 * Number(bytes), `${name}: framer work ${work} for ${bytes} bytes`);
  }
});

test('the guard is not blind: it sees the Request-Line pattern of before issue 12 at 4 KB', async () => {
  const run = await runGuarded('linear-cases', ['control', '4096'], 8 * 4096);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.excessive.length, 1, 'the cubic pattern went over the limit');
  assert.match(run.excessive[0]!, /SIP/);
});

test('StreamFramer: work on a message trickled byte by byte grows with its size, not its square', () => {
  const msg = (n: number): string => `OPTIONS sip:a@b SIP/2.0\r\nX: ${'a'.repeat(n)}\r\n\r\n`;
  const small = frame(msg(8000), 1, 1 << 20);
  const large = frame(msg(32000), 1, 1 << 20);
  assert.ok(small.work <= 8 * small.bytes, `work ${small.work} for ${small.bytes} bytes`);
  assert.ok(large.work <= 8 * large.bytes, `work ${large.work} for ${large.bytes} bytes`);
  assert.ok(large.work / small.work < 5, `4x the input, ${(large.work / small.work).toFixed(1)}x the work`);
});

test('StreamFramer: thousands of pipelined messages in one chunk, CRLF or bare LF, cost work linear in the bytes', () => {
  for (const eol of ['\r\n', '\n']) {
    const one = Buffer.from(['OPTIONS sip:a@b SIP/2.0', 'Call-ID: 1', 'l: 2', '', 'ok'].join(eol));
    for (const count of [500, 2000]) {
      const stream = Buffer.concat(Array.from({ length: count }, () => one));
      const f = new StreamFramer({ maxMessageSize: 1024 });
      const { messages } = f.push(stream);
      assert.equal(messages.length, count);
      assert.ok(f.work <= 3 * stream.length, `${JSON.stringify(eol)} x ${count}: work ${f.work} for ${stream.length} bytes`);
    }
  }
});

test('StreamFramer: a message split anywhere, even inside its blank line, comes out whole and once', () => {
  const a = Buffer.from('OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 4\r\n\r\nbody');
  for (let cut = 1; cut < a.length; cut++) {
    const f = new StreamFramer({ maxMessageSize: 1024 });
    const out = [...f.push(a.subarray(0, cut)).messages, ...f.push(Buffer.concat([a.subarray(cut), a])).messages];
    assert.equal(out.length, 2, `cut at ${cut}`);
    for (const m of out) assert.ok(m.equals(a), `cut at ${cut}`);
    assert.equal(f.pending, 0);
  }
});

test('parseRequestLine: strict, loose and not a Request-Line', () => {
  assert.deepEqual(parseRequestLine('OPTIONS sip:a@b SIP/2.0'), { method: 'OPTIONS', uri: 'sip:a@b', version: '2.0', strict: true });
  assert.deepEqual(parseRequestLine('OPTIONS  sip:a@b\tSIP/2.0 '), { method: 'OPTIONS', uri: 'sip:a@b', version: '2.0', strict: false });
  assert.deepEqual(parseRequestLine('OPTIONS sip:a@b SIP/7.0'), { method: 'OPTIONS', uri: 'sip:a@b', version: '7.0', strict: true });
  // RFC 4475 §3.1.2.10 (lwsruri style): a URI with a space inside is loose.
  assert.equal(parseRequestLine('OPTIONS sip:a@b x SIP/2.0')?.strict, false);
  for (const bad of [
    '',
    'OPTIONS',
    'OPTIONS ' + ' '.repeat(10000),
    'OPTIONS SIP/2.0',
    'OPTIONS sip:a@b SIP/2',
    'OPTIONS sip:a@b SIP/.0',
    'OPTIONS sip:a@bSIP/2.0',
    ' OPTIONS sip:a@b SIP/2.0',
    'SIP/2.0 200 OK',
  ]) {
    assert.equal(parseRequestLine(bad), undefined, JSON.stringify(bad.slice(0, 30)));
  }
});

// ───────────────────────────── a real node ─────────────────────────────

let node: RunningNode;
before(async () => {
  node = await startNode({ max_message_size: MAX });
});
after(async () => {
  await node?.stop();
});

/** The case made routable to `ua` (our Via with rport) and with a Call-ID of its own. */
function routable(text: string, ua: TestUa, callId: string): Buffer {
  return Buffer.from(
    text
      .replace(
        'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKlinear',
        `Via: SIP/2.0/${ua.proto.toUpperCase()} 127.0.0.1:${ua.localPort};branch=z9hG4bK${callId};rport`,
      )
      .replace('Call-ID: linear@example.com', `Call-ID: ${callId}`)
      .replace(/\r\n\r\n$/, ua.proto === 'udp' ? '\r\n\r\n' : '\r\nContent-Length: 0\r\n\r\n'),
  );
}

/** A stalled node would leave this waiting (no tight bound: a correct node answers at once). */
const PATIENT = 60_000;

for (const proto of ['udp', 'tcp'] as UaProto[]) {
  // Under the largest UDP payload; a TCP message is as large as the limit allows.
  const size = proto === 'udp' ? 60_000 : MAX - 100;
  test(`[${proto}] the node answers each worst-case message of ~${size} bytes (or drops it), then an OPTIONS`, async () => {
    const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
    try {
      // A Content-Length of 60 kB digits cannot be framed on a stream: the framer's own test covers it.
      const cases = sipCases(size).filter(([name]) => proto === 'udp' || !name.startsWith('Content-Length'));
      for (const [name, text] of cases) {
        const callId = randomBytes(6).toString('hex');
        const answered = ua.received.length;
        ua.sendRaw(routable(text, ua, callId));
        const res = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` }, PATIENT);
        assert.equal(res.status, 200, `OPTIONS after ${name}`);
        for (const r of ua.received.slice(answered)) {
          if (r.message instanceof SipResponse && r.message.callId === callId) {
            assert.ok(r.message.status < 500, `${name}: ${r.message.status} ${r.message.reason}`);
          }
        }
      }
    } finally {
      await ua.close();
    }
  });
}

test('[udp] the same worst-case headers in a SUBSCRIBE and a PUBLISH reach core/: answered (never 5xx), then an OPTIONS', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    // The Via cases replace the Via that routes the answer back here: the OPTIONS test has them.
    // 30 kB: a 2xx copies Record-Route, and a response cannot grow past a datagram.
    const cases = sipCases(30_000).filter(
      ([name, text]) => text.startsWith('OPTIONS sip:alice@example.com SIP/2.0\r\n') && !name.startsWith('Via:'),
    );
    for (const method of ['SUBSCRIBE', 'PUBLISH']) {
      for (const [name, text] of cases) {
        const callId = randomBytes(6).toString('hex');
        const extra = [
          /\r\nEvent:/i.test(text) ? '' : 'Event: presence\r\n',
          /\r\nContact:/i.test(text) ? '' : `Contact: <sip:w@127.0.0.1:${ua.localPort}>\r\n`,
        ].join('');
        const asMethod = text
          .replace('OPTIONS sip:alice@example.com SIP/2.0', `${method} sip:alice@example.com SIP/2.0`)
          .replace('CSeq: 1 OPTIONS', `CSeq: 1 ${method}`)
          .replace(/\r\n\r\n$/, `\r\n${extra}\r\n`);
        const answer = ua.waitFor(
          (r) => r.message instanceof SipResponse && r.message.callId === callId,
          PATIENT,
          `the answer to ${method} with ${name}`,
        );
        ua.sendRaw(routable(asMethod, ua, callId));
        const res = (await answer).message as SipResponse;
        assert.ok(res.status < 500, `${method} with ${name}: ${res.status} ${res.reason}`);
        assert.equal((await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` }, PATIENT)).status, 200);
      }
    }
  } finally {
    await ua.close();
  }
});

test('issue 12 as reported, at 30 kB: OPTIONS + spaces (bare, and folded before the URI) in one datagram; then OPTIONS is answered', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    // 8 kB took the old pattern 10-15 s, so 30 kB (time cubic in it) would hold the node far
    // past any wait here.
    const spaces = ' '.repeat(30_000);
    // Neither first line is a Request-Line (RFC 3261 §7.3.1 folds header fields, not the start
    // line): both are dropped as unparseable.
    for (const line of [`OPTIONS${spaces}`, `OPTIONS${spaces}\r\n\t${spaces}sip:a@example.com SIP/2.0`]) {
      const callId = randomBytes(6).toString('hex');
      const via = `Via: SIP/2.0/UDP 127.0.0.1:${ua.localPort};branch=z9hG4bK${callId};rport`;
      ua.sendRaw(
        `${line}\r\n${via}\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\n\r\n`,
      );
      const res = await ua.request({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.udpPort}` }, PATIENT);
      assert.equal(res.status, 200);
    }
    // With the URI on the same line it is a Request-Line with extra spaces: a 400 (RFC 4475 §3.1.2.8).
    const callId = randomBytes(6).toString('hex');
    const answer = ua.waitFor((r) => r.message instanceof SipResponse && r.message.callId === callId, PATIENT, 'the 400');
    ua.sendRaw(
      `OPTIONS${spaces}sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:${ua.localPort};branch=z9hG4bK${callId};rport\r\n` +
        `From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\n\r\n`,
    );
    const r = (await answer).message as SipResponse;
    assert.equal(r.status, 400);
    assert.match(r.reason, /Request-Line/);
  } finally {
    await ua.close();
  }
});
