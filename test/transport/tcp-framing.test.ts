/**
 * Content-Length framing on a TCP stream against a real node (RFC 3261 §18.3): several
 * messages in one chunk, one message across many chunks, and the RFC 5626 §4.4.1 double-CRLF
 * keep-alive ping answered with a single-CRLF pong.
 */
import { backstop } from '../support/wait.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SipRequest, SipResponse } from '../../transport/message.js';
import { StreamFramer } from '../../transport/parser.js';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';

let node: RunningNode;
let ua: TestUa;
before(async () => {
  node = await startNode();
  ua = await TestUa.open('tcp', node.tcpPort);
});
after(async () => {
  await ua?.close();
  await node?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One more OPTIONS on the UA's connection, answered: the node reads the stream in order, so
 * anything it sent for what came before is in before this answer.
 */
async function barrier(): Promise<string> {
  const req = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}` });
  assert.equal((await ua.request(req)).status, 200);
  return req.callId!;
}

function finalResponseTo(req: SipRequest, timeoutMs = 3000): Promise<SipResponse> {
  const branch = req.topVia.branch;
  return ua
    .waitFor(
      (r) => {
        if (!(r.message instanceof SipResponse) || r.message.status < 200) return false;
        try {
          return r.message.topVia.branch === branch;
        } catch {
          return false;
        }
      },
      timeoutMs,
      `response to ${req.callId}`,
    )
    .then((r) => r.message as SipResponse);
}

/** A raw connection whose received bytes are collected as they come. */
async function rawTcp(): Promise<{ sock: net.Socket; bytes: () => Buffer; closed: () => boolean }> {
  const sock = net.connect({ host: '127.0.0.1', port: node.tcpPort, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const chunks: Buffer[] = [];
  let closed = false;
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('close', () => (closed = true));
  sock.on('error', () => undefined);
  return { sock, bytes: () => Buffer.concat(chunks), closed: () => closed };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + backstop(timeoutMs);
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('several messages in one TCP chunk are all answered', async () => {
  const reqs: SipRequest[] = [];
  for (let i = 0; i < 6; i++) {
    const r = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}`, cseq: i + 1 });
    if (i % 2 === 1) {
      r.body = Buffer.from(`body ${i}\r\n\r\nwith a blank line inside`);
      r.headers.append('content-type', 'text/plain');
    }
    reqs.push(r);
  }
  // A 405 in the middle: a different response for a different method, same chunk.
  reqs.push(ua.build({ method: 'MESSAGE', uri: 'sip:bob@example.com', body: 'hi', contentType: 'text/plain' }));
  const waits = reqs.map((r) => finalResponseTo(r));
  const chunk = Buffer.concat(reqs.flatMap((r, i) => (i === 2 ? [r.toBuffer(), Buffer.from('\r\n')] : [r.toBuffer()])));
  const from = ua.received.length;
  ua.sendRaw(chunk);
  const responses = await Promise.all(waits);
  assert.deepEqual(
    responses.map((r) => r.status),
    [200, 200, 200, 200, 200, 200, 405],
  );
  for (const [i, res] of responses.entries()) assert.equal(res.callId, reqs[i]!.callId);
  const last = await barrier();
  const answered = ua.received
    .slice(from)
    .map((r) => r.message.callId)
    .filter((id) => id !== last);
  assert.deepEqual([...answered].sort(), reqs.map((r) => r.callId).sort(), 'each answered exactly once');
});

test('one message split across many chunks (byte by byte, with delays) is answered once', async () => {
  const req = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}`, body: 'split\r\n\r\nbody', contentType: 'text/plain' });
  const bytes = req.toBuffer();
  const wait = finalResponseTo(req, 10_000);
  const from = ua.received.length;
  let answeredEarly = false;
  for (let i = 0; i < bytes.length; i++) {
    ua.sendRaw(bytes.subarray(i, i + 1));
    // Every few bytes give the node time to read what it has, so it really sees the pieces.
    if (i % 8 === 7) {
      await sleep(1);
      if (ua.received.length > from) answeredEarly = true;
    }
  }
  const res = await wait;
  assert.equal(answeredEarly, false, 'nothing answered before the last byte');
  assert.equal(res.status, 200);
  await barrier();
  assert.equal(ua.received.slice(from).filter((r) => r.message.callId === req.callId).length, 1);
});

test('a message split at awkward places (inside CRLFCRLF, inside the body) across two writes', async () => {
  const req = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}`, body: '0123456789', contentType: 'text/plain' });
  const bytes = req.toBuffer();
  const headerEnd = bytes.indexOf('\r\n\r\n');
  for (const cut of [headerEnd + 1, headerEnd + 2, headerEnd + 3, headerEnd + 4, bytes.length - 5, bytes.length - 1]) {
    const r = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}`, body: '0123456789', contentType: 'text/plain' });
    const b = r.toBuffer();
    const wait = finalResponseTo(r);
    ua.sendRaw(b.subarray(0, cut));
    await sleep(15);
    ua.sendRaw(b.subarray(cut));
    assert.equal((await wait).status, 200, `cut at ${cut}`);
  }
});

test('a second message starting in the chunk that ends the first', async () => {
  const a = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}`, body: 'aaaa', contentType: 'text/plain' });
  const b = ua.build({ method: 'OPTIONS', uri: `sip:127.0.0.1:${node.tcpPort}` });
  const both = Buffer.concat([a.toBuffer(), b.toBuffer()]);
  const cut = a.toBuffer().length + 20;
  const wa = finalResponseTo(a);
  const wb = finalResponseTo(b);
  ua.sendRaw(both.subarray(0, a.toBuffer().length - 2));
  await sleep(10);
  ua.sendRaw(both.subarray(a.toBuffer().length - 2, cut));
  assert.equal((await wa).status, 200);
  await sleep(10);
  ua.sendRaw(both.subarray(cut));
  assert.equal((await wb).status, 200);
});

test('double-CRLF keep-alive ping → single CRLF pong (RFC 5626 §4.4.1); the connection stays usable', async () => {
  const c = await rawTcp();
  c.sock.write('\r\n\r\n');
  await until(() => c.bytes().length >= 2, 2000, 'the pong');
  await sleep(50);
  assert.equal(c.bytes().toString('latin1'), '\r\n', 'exactly one CRLF');

  // A ping sent in two halves is still a ping.
  c.sock.write('\r\n');
  await sleep(20);
  c.sock.write('\r\n');
  await until(() => c.bytes().length >= 4, 2000, 'the pong to a split ping');
  await sleep(50);
  assert.equal(c.bytes().toString('latin1'), '\r\n\r\n');

  // Then a request on the same connection, followed by a ping in the same write.
  const req = new TestUaRequest(c.sock.localPort!).build();
  c.sock.write(Buffer.concat([req, Buffer.from('\r\n\r\n')]));
  const framed = (): Buffer[] => new StreamFramer({ maxMessageSize: 65535 }).push(Buffer.from(c.bytes().subarray(4))).messages;
  await until(() => framed().length === 1, 2000, 'the response');
  const [response] = framed();
  assert.match(response!.toString(), /^SIP\/2\.0 200 /);
  // The response and one CRLF pong, in either order.
  await until(() => c.bytes().length >= 4 + response!.length + 2, 2000, 'the pong besides the response');
  await sleep(50);
  assert.equal(c.bytes().length, 4 + response!.length + 2, 'one pong besides the response');
  assert.equal(c.closed(), false);
  c.sock.destroy();
});

test('a single CRLF (RFC 3261 §7.5 keep-alive) gets no pong and does not count as half a message', async () => {
  const c = await rawTcp();
  c.sock.write('\r\n');
  await sleep(150); // a read of its own (not a wait for anything)
  assert.equal(c.bytes().length, 0);
  c.sock.write(new TestUaRequest(c.sock.localPort!).build());
  await until(() => c.bytes().includes('\r\n\r\n'), 2000, 'the response');
  // The node reads the stream in order: a pong for the CRLF would come before the response.
  assert.match(c.bytes().toString(), /^SIP\/2\.0 200 /, 'no pong, and the CRLF did not spoil the request after it');
  c.sock.destroy();
});

/** An OPTIONS for a raw socket, with the connection's own port in the Via. */
class TestUaRequest {
  constructor(private readonly localPort: number) {}
  build(): Buffer {
    const req = new SipRequest('OPTIONS', `sip:127.0.0.1:${node.tcpPort}`);
    const id = Math.random().toString(36).slice(2);
    req.headers.append('via', `SIP/2.0/TCP 127.0.0.1:${this.localPort};branch=z9hG4bK${id};rport`);
    req.headers.append('from', `<sip:raw@example.com>;tag=${id}`);
    req.headers.append('to', `<sip:127.0.0.1:${node.tcpPort}>`);
    req.headers.append('call-id', `${id}@raw`);
    req.headers.append('cseq', '1 OPTIONS');
    req.headers.append('max-forwards', '70');
    return req.toBuffer();
  }
}
