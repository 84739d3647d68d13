/**
 * RFC 3261 §18.1.1 with udp_mtu / udp_mtu_try_proto (Kamailio's core parameters): a NOTIFY that
 * would go over UDP and is larger than udp_mtu goes over TCP to the same address, with the top
 * Via saying TCP; when nothing listens there (connection refused) it goes over UDP after all.
 * Small NOTIFYs stay on UDP. Real sockets: the watcher subscribes over UDP and, for the first
 * case, also listens for TCP on the same port number.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { pidf, publish, watch, uniqueUri, bodyOf, fetchBarrier } from '../support/presence.js';
import { EVENT_WAIT_MS } from '../support/wait.js';
import { StreamFramer } from '../../transport/parser.js';
import { parseMessage } from '../../transport/parser.js';
import { SipRequest, createResponse } from '../../transport/message.js';

const MTU = 1300;
let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 1, udp_mtu: MTU, udp_mtu_try_proto: 'tcp', sip_t1: 50 });
});
after(async () => {
  await node?.stop();
});

/** A TCP listener on the watcher's own port: collects the requests it gets and answers each 200. */
async function tcpBeside(port: number): Promise<{ requests: Array<{ req: SipRequest; size: number }>; close: () => Promise<void> }> {
  const requests: Array<{ req: SipRequest; size: number }> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    const framer = new StreamFramer({ maxMessageSize: 1 << 20 });
    sock.on('data', (chunk: Buffer) => {
      for (const raw of framer.push(chunk).messages) {
        const { message } = parseMessage(raw, false);
        if (!(message instanceof SipRequest)) continue;
        requests.push({ req: message, size: raw.length });
        sock.write(createResponse(message, 200).toBuffer());
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A document over the MTU: a tuple with a long note. */
function bigPidf(presentity: string, tag: string): string {
  return pidf(presentity, 't1', 'open', `${tag} ${'n'.repeat(MTU + 200)}`);
}

test('a NOTIFY larger than udp_mtu to a UDP watcher goes over TCP with a TCP Via; a small one stays on UDP', async () => {
  const publisher = await TestUa.open('udp', node.udpPort);
  const watcher = await TestUa.open('udp', node.udpPort);
  const tcp = await tcpBeside(watcher.localPort);
  try {
    const p = uniqueUri('mtu');
    assert.equal((await publish(publisher, p, { body: pidf(p, 't1', 'open', 'small'), expires: 600 })).status, 200);
    const w = await watch(watcher, p, { expires: 600 });
    assert.match(bodyOf(w.first), /small/, 'the first NOTIFY, under the MTU, came over UDP');
    assert.match(w.first.headers.get('via') ?? '', /^SIP\/2\.0\/UDP /);

    const big = await publish(publisher, p, { body: bigPidf(p, 'large'), expires: 600 });
    assert.equal(big.status, 200);
    const deadline = Date.now() + EVENT_WAIT_MS;
    while (tcp.requests.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(tcp.requests.length, 1, 'the large NOTIFY arrived over TCP');
    const { req, size } = tcp.requests[0]!;
    assert.ok(size > MTU, `${size} bytes`);
    assert.equal(req.method, 'NOTIFY');
    assert.equal(req.callId, w.dialog.callId, 'in the UDP dialog');
    assert.match(
      req.headers.get('via') ?? '',
      /^SIP\/2\.0\/TCP 127\.0\.0\.1:\d+;branch=z9hG4bK/,
      'RFC 3261 §18.1.1: the top Via names the transport used',
    );
    assert.match(bodyOf(req), /large/);
    // A NOTIFY of another presentity to the same UDP watcher, sent after the large one: its arrival
    // is the barrier (a fetch of p itself would bring a second large NOTIFY).
    await fetchBarrier(watcher, uniqueUri('barrier'));
    const udpLarge = watcher.received.filter(
      (r) => r.message instanceof SipRequest && r.message.method === 'NOTIFY' && bodyOf(r.message as SipRequest).includes('large'),
    );
    assert.equal(udpLarge.length, 0, 'not also over UDP');
  } finally {
    await tcp.close();
    await publisher.close();
    await watcher.close();
  }
});

test('when TCP is refused at the watcher, a NOTIFY larger than udp_mtu goes over UDP after all', async () => {
  const publisher = await TestUa.open('udp', node.udpPort);
  const watcher = await TestUa.open('udp', node.udpPort); // nothing listens for TCP on its port
  try {
    const p = uniqueUri('mtu-refused');
    assert.equal((await publish(publisher, p, { body: pidf(p, 't1', 'open', 'small'), expires: 600 })).status, 200);
    const w = await watch(watcher, p, { expires: 600 });
    assert.equal((await publish(publisher, p, { body: bigPidf(p, 'fallback'), expires: 600 })).status, 200);
    const n = await w.dialog.nextNotify(5000, (r) => bodyOf(r).includes('fallback'));
    assert.match(n.headers.get('via') ?? '', /^SIP\/2\.0\/UDP /);
    assert.ok(n.toBuffer().length > MTU);
  } finally {
    await publisher.close();
    await watcher.close();
  }
});
