/**
 * A response too large for a UDP datagram (RFC 3261 §18.2.2: a response goes back over the
 * transport its request came on, and no datagram holds more than 65,507 bytes), over real UDP.
 * A SUBSCRIBE through many Record-Routing proxies would get a 2xx carrying each Record-Route
 * (RFC 3261 §12.1.1) that no datagram holds: it gets 513 and nothing is created, where it used to
 * create a subscription whose 2xx was lost (the client never heard of it). Any other response
 * that does not fit (an OPTIONS 200 to a request with a long Via stack) is answered 513 by the
 * stack instead of being dropped. Over TCP the same requests pass.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { openUa, uniqueUri } from '../support/presence.js';
import type { TestUa, RequestOptions } from '../support/sip-ua.js';
import { rpcResult } from '../support/rpc.js';

const DATAGRAM = 65_507;
let node: RunningNode;
const uas: TestUa[] = [];

before(async () => {
  node = await startNode({ force_active: 1 });
});
after(async () => {
  await Promise.all(uas.map((u) => u.close()));
  await node.stop();
});

/**
 * `base` with `name` headers of about 200 bytes each, the last one trimmed so the request is
 * `size` bytes (the largest datagram the client can send is DATAGRAM).
 */
function padded(ua: TestUa, base: RequestOptions, name: string, value: (i: number) => string, size: number): RequestOptions {
  const headers: Array<[string, string]> = [...((base.headers as Array<[string, string]>) ?? [])];
  const o = { ...base, headers };
  const len = (): number => ua.build(o).toBuffer().length;
  for (let i = 0; len() < size - 400; i++) headers.push([name, value(i)]);
  const last = value(headers.length);
  const room = size - len() - name.length - 4;
  headers.push([name, last.slice(0, last.length - 1) + 'x'.repeat(Math.max(0, room - last.length)) + last.slice(-1)]);
  assert.equal(len(), size, 'the request is exactly the size asked for');
  return o;
}

const recordRoute = (i: number): string => `<sip:proxy${i}.example.net;lr;ftag=${'f'.repeat(120)};x=>`;
const via = (i: number): string => `SIP/2.0/UDP proxy${i}.example.net:5060;branch=z9hG4bK${'b'.repeat(150)}${i};x=`;

async function watcherCount(presentity: string): Promise<number> {
  return (await rpcResult<unknown[]>(node.rpcPort, 'presence.watcher_list', [presentity, 'presence'])).length;
}

test('a SUBSCRIBE over UDP whose 2xx no datagram holds (many Record-Routes) gets 513 and creates nothing; over TCP it gets its 200', async () => {
  const udp = await openUa(node, 'udp');
  const tcp = await openUa(node, 'tcp');
  uas.push(udp, tcp);
  const presentity = uniqueUri('rr');
  const base: RequestOptions = {
    method: 'SUBSCRIBE',
    uri: presentity,
    headers: [
      ['event', 'presence'],
      ['expires', '600'],
    ],
  };
  // As large as a datagram can be: the 2xx adds a To tag, Contact, Allow-Events and Server.
  const req = padded(udp, base, 'record-route', recordRoute, DATAGRAM - 40);

  const res = await udp.request(req);
  assert.equal(res.status, 513, `${res.status} ${res.reason}`);
  assert.equal(res.headers.count('record-route'), 0, 'the refusal carries no Record-Route');
  assert.equal(await watcherCount(presentity), 0, 'no subscription was created');
  const refused = await node.waitForLog((l) => l.callId === res.callId && l.status === 513);
  assert.equal(refused.status, 513);

  // The same SUBSCRIBE over TCP: its 200 carries every Record-Route, larger than any datagram.
  const overTcp = padded(tcp, base, 'record-route', recordRoute, DATAGRAM - 40);
  const ok = await tcp.request(overTcp);
  assert.equal(ok.status, 200, `${ok.status} ${ok.reason}`);
  assert.ok(ok.toBuffer().length > DATAGRAM, `the 200 is ${ok.toBuffer().length} bytes`);
  assert.equal(ok.headers.getAll('record-route').length, tcp.build(overTcp).headers.getAll('record-route').length);
  assert.equal(await watcherCount(presentity), 1);
});

test('any other response no datagram holds (an OPTIONS 200 copying a long Via stack) is answered 513 over UDP, not lost', async () => {
  const udp = await openUa(node, 'udp');
  uas.push(udp);
  const base: RequestOptions = { method: 'OPTIONS', uri: 'sip:presenced@127.0.0.1' };
  // Large enough that the 200 (about 300 bytes of Allow, Accept, Allow-Events... more) does not fit, small enough for the
  // 513, which carries the same Vias, to fit.
  const req = padded(udp, base, 'via', via, DATAGRAM - 150);
  const res = await udp.request(req);
  assert.equal(res.status, 513, `${res.status} ${res.reason}`);
  await node.waitForLog((l) => l.msg === 'response too large for UDP: answered 513 instead' && l.callId === res.callId);
  // A small one is answered as before.
  assert.equal((await udp.request(base)).status, 200);
});

test('a 420 lists each unsupported option tag once, and a bounded number of them: never larger than the request', async () => {
  const udp = await openUa(node, 'udp');
  uas.push(udp);
  const repeated = await udp.request({
    method: 'OPTIONS',
    uri: 'sip:presenced@127.0.0.1',
    headers: [['require', Array(20_000).fill('a').join(',')]],
  });
  assert.equal(repeated.status, 420);
  assert.equal(repeated.headers.get('unsupported'), 'a');
  const distinct = Array.from({ length: 5_000 }, (_, i) => `tag${i}`);
  const many = await udp.request({ method: 'OPTIONS', uri: 'sip:presenced@127.0.0.1', headers: [['require', distinct.join(',')]] });
  assert.equal(many.status, 420);
  const listed = many.headers.getAll('unsupported');
  assert.ok(listed.length > 0 && listed.join(', ').length <= 1024, `${listed.length} tags listed`);
  assert.deepEqual(listed, distinct.slice(0, listed.length));
});
