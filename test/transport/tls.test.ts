/**
 * SIP over TLS (RFC 3261 §26.2, framed as TCP per §18) against a real node with a throwaway
 * certificate: PUBLISH and SUBSCRIBE over TLS, responses and NOTIFYs on the subscriber's own
 * connection with a TLS Via and a Contact reachable over TLS; once the subscriber's connection
 * is gone, the next NOTIFY opens a new TLS connection to its Contact, verifying the certificate
 * (tls_ca_list), and a node that cannot verify it does not deliver.
 */
import { backstop } from '../support/wait.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { makeTestCertificate, type TestCertificate } from '../support/tls-cert.js';
import { pidf, publish, showsOpen, watch, bodyOf, uniqueUri, sleep } from '../support/presence.js';
import { rpc, metric, untilMetric } from '../support/rpc.js';

let cert: TestCertificate;
let node: RunningNode;
const uas: TestUa[] = [];

before(async () => {
  cert = await makeTestCertificate();
  node = await startNode({
    listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'tls:127.0.0.1:0'],
    force_active: 1,
    tls_certificate: cert.certFile,
    tls_private_key: cert.keyFile,
    tls_ca_list: cert.certFile,
  });
  assert.ok(node.tlsPort > 0, 'the node logged a tls listener');
});
after(async () => {
  for (const ua of uas) await ua.close();
  try {
    if (node) assert.equal(await node.stop(), 0, `the node exits cleanly; stderr: ${node.stderr.join('')}`);
  } finally {
    cert?.remove();
  }
});

async function tlsUa(port = node.tlsPort): Promise<TestUa> {
  const ua = await TestUa.open('tls', port, { ca: cert.cert, cert: cert.cert, key: cert.key });
  uas.push(ua);
  return ua;
}

const viaOf = (m: { headers: { get(n: string): string | undefined } }): string => m.headers.get('via') ?? '';

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  timeoutMs = backstop(timeoutMs);
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

test('PUBLISH and SUBSCRIBE over TLS get 200; NOTIFYs come back on the same TLS connection with a TLS Via', async () => {
  const presentity = uniqueUri('tls');
  const publisher = await tlsUa();
  const watcher = await tlsUa();

  const p = await publish(publisher, presentity, { body: pidf(presentity, 't1', 'open') });
  assert.equal(p.status, 200, `PUBLISH over TLS: ${p.status} ${p.reason}`);
  assert.ok(p.headers.get('sip-etag'), 'the 200 to PUBLISH carries SIP-ETag');

  const { res, first } = await watch(watcher, presentity);
  assert.equal(res.status, 200, `SUBSCRIBE over TLS: ${res.status} ${res.reason}`);
  const contact = `<sip:presence@127.0.0.1:${node.tlsPort};transport=tls>`;
  assert.equal(res.headers.get('contact'), contact, 'the 200 names a Contact reachable over TLS');
  assert.match(viaOf(first), /^SIP\/2\.0\/TLS 127\.0\.0\.1:\d+;/, `the NOTIFY's Via: ${viaOf(first)}`);
  assert.equal(first.headers.get('contact'), contact, 'the NOTIFY names a Contact reachable over TLS');
  assert.ok(showsOpen(bodyOf(first)), `the first NOTIFY shows the published state: ${bodyOf(first)}`);

  const p2 = await publish(publisher, presentity, { etag: p.headers.get('sip-etag')!, body: pidf(presentity, 't1', 'closed') });
  assert.equal(p2.status, 200, `the refreshing PUBLISH: ${p2.status} ${p2.reason}`);
  const change = await watcher.nextRequest('NOTIFY', (r) => r.callId === first.callId && !showsOpen(bodyOf(r)));
  assert.match(viaOf(change), /^SIP\/2\.0\/TLS /, `the NOTIFY's Via: ${viaOf(change)}`);
  assert.equal(watcher.inboundCount, 0, 'every NOTIFY came on the connection the watcher opened (the node opened none)');

  const listed = await rpc(node.rpcPort, 'presence.watcher_list', [presentity, 'presence']);
  const w = (listed.result as Array<{ transport: string }>)[0];
  assert.equal(w?.transport, 'tls', `presence.watcher_list: ${JSON.stringify(listed)}`);
});

test("when the watcher's TLS connection is closed, the next NOTIFY opens a new TLS connection to its Contact and reuses it", async () => {
  const presentity = uniqueUri('tls-reopen');
  const publisher = await tlsUa();
  const watcher = await tlsUa();
  const p = await publish(publisher, presentity, { body: pidf(presentity, 't1', 'open') });
  assert.equal(p.status, 200);
  const { first } = await watch(watcher, presentity);

  // The node forgets the connection when it sees it close: wait until it has.
  const open = await metric(node.rpcPort, 'presenced_sip_connections');
  await watcher.disconnect();
  await untilMetric(node.rpcPort, 'presenced_sip_connections', (n) => n < open, 'the node to see the connection close');

  const p2 = await publish(publisher, presentity, { etag: p.headers.get('sip-etag')!, body: pidf(presentity, 't1', 'closed', 'away') });
  assert.equal(p2.status, 200);
  const notify = await watcher.nextRequest('NOTIFY', (r) => r.callId === first.callId && bodyOf(r).includes('away'));
  assert.equal(watcher.inboundCount, 1, 'the node opened one TLS connection to the Contact (its certificate verified with tls_ca_list)');
  assert.match(viaOf(notify), /^SIP\/2\.0\/TLS /, `the NOTIFY's Via: ${viaOf(notify)}`);

  // The watcher answered 200 on that connection: the subscription lives on, and the next NOTIFY reuses it.
  const p3 = await publish(publisher, presentity, { etag: p2.headers.get('sip-etag')!, body: pidf(presentity, 't1', 'open', 'back') });
  assert.equal(p3.status, 200);
  await watcher.nextRequest('NOTIFY', (r) => r.callId === first.callId && bodyOf(r).includes('back'));
  assert.equal(watcher.inboundCount, 1, 'the second NOTIFY went on the connection the node opened');
  await until(() => watcher.inbound.size === 1, 1000, 'the connection to stay open');
});

test('a node that cannot verify the watcher certificate delivers no NOTIFY over a new connection and drops the subscription', async () => {
  // Same certificate for the listener, but peers are checked against Node's default CAs only.
  const strict = await startNode({
    listen: ['udp:127.0.0.1:0', 'tls:127.0.0.1:0'],
    force_active: 1,
    tls_certificate: cert.certFile,
    tls_private_key: cert.keyFile,
  });
  try {
    const presentity = uniqueUri('tls-verify');
    const publisher = await tlsUa(strict.tlsPort);
    const watcher = await tlsUa(strict.tlsPort);
    const p = await publish(publisher, presentity, { body: pidf(presentity, 't1', 'open') });
    assert.equal(p.status, 200);
    const { first } = await watch(watcher, presentity);
    const open = await metric(strict.rpcPort, 'presenced_sip_connections');
    await watcher.disconnect();
    await untilMetric(strict.rpcPort, 'presenced_sip_connections', (n) => n < open, 'the node to see the connection close');
    const p2 = await publish(publisher, presentity, { etag: p.headers.get('sip-etag')!, body: pidf(presentity, 't1', 'closed') });
    assert.equal(p2.status, 200);
    const failed = await strict.waitForLog((l) => l.msg === 'NOTIFY not accepted' && l.callId === first.callId, 5000);
    assert.match(String(failed.why), /self.signed|certificate/i, `why the NOTIFY failed: ${JSON.stringify(failed)}`);
    assert.equal(watcher.requests('NOTIFY').filter((r) => r.callId === first.callId).length, 1, 'only the first NOTIFY arrived');
    const listed = await rpc(strict.rpcPort, 'presence.watcher_list', [presentity, 'presence']);
    assert.deepEqual(listed.result, [], 'the subscription was removed (RFC 6665 §4.2.2: transport failure)');
  } finally {
    assert.equal(await strict.stop(), 0, `the strict node exits cleanly; stderr: ${strict.stderr.join('')}`);
  }
});
