/**
 * SIP over secure WebSocket (RFC 7118 wss, on uWebSockets.js SSLApp) with a throwaway
 * certificate: JsSIP clients on `ws` trusting the test CA subscribe and publish over wss, the
 * NOTIFYs reach the watcher on its own connection with a WSS Via, the "sip" subprotocol is
 * required as on ws, and a client that does not trust the certificate cannot connect.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { makeTestCertificate, type TestCertificate } from '../support/tls-cert.js';
import { pidf, showsOpen, tuplesOf } from '../support/presence.js';
import { rpc } from '../support/rpc.js';
import { JsSipClient, SubscriberEvents, WebSocket, type WsSocket, type WsClientOptions } from '../support/ws-client.js';
import { SipResponse } from '../../transport/message.js';

const ALICE = 'sip:alice-wss@example.com';
const PIDF = 'application/pidf+xml';

let cert: TestCertificate;
let node: RunningNode;
let trust: WsClientOptions;

before(async () => {
  cert = await makeTestCertificate();
  trust = { ca: cert.cert };
  node = await startNode({
    listen: ['udp:127.0.0.1:0', 'wss:127.0.0.1:0'],
    force_active: 1,
    tls_certificate: cert.certFile,
    tls_private_key: cert.keyFile,
  });
  assert.ok(node.wssPort > 0, 'the node logged a wss listener');
});
after(async () => {
  try {
    if (node) assert.equal(await node.stop(), 0, `the node exits cleanly; stderr: ${node.stderr.join('')}`);
  } finally {
    cert?.remove();
  }
});

/** Open a raw wss WebSocket; resolves with the open socket or the handshake error. */
function tryOpen(protocols: string | string[] | undefined, options: WsClientOptions): Promise<{ ws?: WsSocket; error?: Error }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${node.wssPort}/`, protocols, options);
    ws.once('open', () => resolve({ ws }));
    ws.once('error', (error) => resolve({ error }));
  });
}

test('wss: the "sip" subprotocol is required, and a client that does not trust the certificate cannot connect', async () => {
  const refused = await tryOpen('xmpp', trust);
  refused.ws?.terminate();
  assert.ok(refused.error, 'an upgrade without "sip" must be refused');
  assert.match(refused.error.message, /Unexpected server response: 4\d\d/);

  const untrusted = await tryOpen('sip', {});
  untrusted.ws?.terminate();
  assert.ok(untrusted.error, 'a client checking against the default CAs must refuse the self-signed certificate');
  assert.match(untrusted.error.message, /self.signed|certificate/i);

  const ok = await tryOpen('sip', trust);
  assert.ok(ok.ws, `a trusting client offering "sip" connects: ${ok.error?.message}`);
  assert.equal(ok.ws.protocol, 'sip');
  ok.ws.close();
});

test('JsSIP over wss: SUBSCRIBE gets 200 and NOTIFYs with a WSS Via, a PUBLISH over wss reaches the watcher', async () => {
  const a = await JsSipClient.connect(node.wssPort, 'sip:watcher-wss@example.com', 5000, trust);
  const b = await JsSipClient.connect(node.wssPort, ALICE, 5000, trust);
  try {
    const sub = a.subscriber(ALICE, 'presence', PIDF, 120);
    const ev = new SubscriberEvents(sub);
    sub.subscribe();
    await ev.next('accepted');
    const first = await a.nextRequest('NOTIFY');
    const ok = a.frames.map((f) => f.message).find((m): m is SipResponse => m instanceof SipResponse && m.cseq.method === 'SUBSCRIBE');
    assert.equal(ok?.status, 200, 'the 2xx to SUBSCRIBE came back on the secure WebSocket');
    assert.equal(first.topVia.protocol, 'WSS', `NOTIFY Via: ${first.headers.get('via')}`);

    const listed = await rpc(node.rpcPort, 'presence.watcher_list', [ALICE, 'presence']);
    assert.equal((listed.result as Array<{ transport: string }>)[0]?.transport, 'wss', JSON.stringify(listed));

    const opened = await b.publish(ALICE, { body: pidf(ALICE, 'wss-b', 'open'), expires: 60 });
    assert.equal(opened.status, 200, `PUBLISH over wss → ${opened.status} ${opened.reason}`);
    const n = await ev.nextNotify((body) => showsOpen(body));
    assert.deepEqual(tuplesOf(n.body), [{ id: 'wss-b', basic: 'open' }]);
    const change = a.requests('NOTIFY').filter((r) => r.callId === first.callId);
    for (const r of change) assert.equal(r.topVia.protocol, 'WSS', `NOTIFY Via: ${r.headers.get('via')}`);
    for (const f of a.frames) assert.equal(f.binary, false, 'RFC 7118 §5: text frames');

    sub.terminate();
    await ev.next('terminated');
    assert.equal((await b.publish(ALICE, { etag: opened.etag, expires: 0 })).status, 200);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
