/**
 * SIP over WebSocket (RFC 7118) end to end, with a real SIP client library: JsSIP 3.13.8 in
 * Node on the `ws` package (test/support/ws-client.ts). A JsSIP watcher SUBSCRIBEs to a
 * presentity over a WebSocket, a second JsSIP UA PUBLISHes over another WebSocket, and the
 * NOTIFYs must reach the watcher on its own WebSocket, as text frames (the node cannot open a
 * connection towards a WebSocket client). Then: the "sip" subprotocol is required, and a
 * watcher whose WebSocket died is dropped at the next NOTIFY without harming the node.
 */
import { EVENT_WAIT_MS } from '../support/wait.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Subscriber } from 'jssip/lib/Subscriber.js';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { rpc, metric, untilMetric } from '../support/rpc.js';
import { pidf, publish, showsOpen, tuplesOf, xpathTexts, sleep } from '../support/presence.js';
import { JsSipClient, SubscriberEvents, WebSocket, WS_OPEN, type WsSocket } from '../support/ws-client.js';
import { SipResponse, type SipRequest } from '../../transport/message.js';

const ALICE = 'sip:alice@example.com';
const PIDF = 'application/pidf+xml';

let node: RunningNode;
before(async () => {
  node = await startNode({ listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'], force_active: 1 });
  assert.ok(node.wsPort > 0, 'the node logged a ws listener');
});
after(async () => {
  assert.equal(await node.stop(), 0, `the node exits cleanly; stderr: ${node.stderr.join('')}`);
});

interface Watcher {
  watcher_uri: string;
  status: string;
  transport: string;
  call_id: string;
  contact: string;
}
async function watchers(presentity = ALICE): Promise<Watcher[]> {
  const r = await rpc(node.rpcPort, 'presence.watcher_list', [presentity, 'presence']);
  assert.equal(r.error, undefined, `presence.watcher_list: ${JSON.stringify(r.error)}`);
  return r.result as Watcher[];
}

/** Open a raw WebSocket offering `protocols`; resolves with the open socket or the handshake error. */
function tryUpgrade(
  protocols: string | string[] | undefined,
): Promise<{ ws: WsSocket; error?: undefined } | { ws?: undefined; error: Error }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${node.wsPort}/`, protocols);
    ws.once('open', () => resolve({ ws }));
    ws.once('error', (error) => resolve({ error }));
  });
}

/** Subscribe with JsSIP and wait for the 2xx and the first NOTIFY. */
async function jssipWatch(client: JsSipClient, expires = 120): Promise<{ sub: Subscriber; ev: SubscriberEvents; first: SipRequest }> {
  const sub = client.subscriber(ALICE, 'presence', PIDF, expires);
  const ev = new SubscriberEvents(sub);
  sub.subscribe();
  await ev.next('accepted');
  const first = await client.nextRequest('NOTIFY');
  await ev.nextNotify();
  return { sub, ev, first };
}

const subState = (r: SipRequest): string => (r.headers.get('subscription-state') ?? '').split(';')[0]!.trim().toLowerCase();

test('a WebSocket upgrade without the "sip" subprotocol is refused; one offering it gets "sip"', async () => {
  for (const offered of [undefined, 'xmpp', ['chat', 'sip-not']]) {
    const r = await tryUpgrade(offered);
    r.ws?.terminate();
    assert.ok(r.error, `an upgrade offering ${JSON.stringify(offered ?? 'no subprotocol')} must be refused, it was accepted`);
    assert.match(
      r.error.message,
      /Unexpected server response: 4\d\d/,
      `offered ${JSON.stringify(offered) ?? 'nothing'}: ${r.error.message}`,
    );
  }
  const ok = await tryUpgrade(['xmpp', 'sip']);
  assert.ok(ok.ws, `an upgrade offering "sip" must succeed: ${ok.error?.message}`);
  try {
    assert.equal(ok.ws.protocol, 'sip', 'RFC 7118 §4.1: the server selects "sip"');
    assert.equal(ok.ws.readyState, WS_OPEN);
  } finally {
    ok.ws.close();
  }
});

test('JsSIP over WebSocket: SUBSCRIBE, NOTIFYs for PUBLISH open → modify → remove, then unsubscribe', async () => {
  const a = await JsSipClient.connect(node.wsPort, 'sip:watcher-a@example.com');
  const b = await JsSipClient.connect(node.wsPort, ALICE);
  try {
    // A subscribes over its WebSocket: 2xx, then the initial NOTIFY (active, nobody published yet).
    const { sub, ev, first } = await jssipWatch(a);
    assert.equal(subState(first), 'active', `Subscription-State: ${first.headers.get('subscription-state')}`);
    assert.equal(showsOpen(first.body.toString()), false, 'no publication yet: nothing open');
    const callId = first.callId;
    const subscribeOks = a.frames.filter((f) => f.message instanceof SipResponse && f.message.cseq.method === 'SUBSCRIBE');
    assert.equal(subscribeOks.length, 1, 'the 2xx to SUBSCRIBE came back on the WebSocket');
    assert.equal((subscribeOks[0]!.message as SipResponse).status, 200);
    assert.match(
      (subscribeOks[0]!.message as SipResponse).headers.get('contact') ?? '',
      new RegExp(`^<sip:presence@127\\.0\\.0\\.1:${node.wsPort};transport=ws>$`),
      'Contact names the WebSocket listener (RFC 7118 §5)',
    );
    assert.match(first.headers.get('contact') ?? '', /;transport=ws>$/);

    const listed = await watchers();
    assert.equal(listed.length, 1, JSON.stringify(listed));
    assert.equal(listed[0]!.watcher_uri, 'sip:watcher-a@example.com');
    assert.equal(listed[0]!.status, 'active');
    assert.equal(listed[0]!.transport, 'ws');
    assert.equal(listed[0]!.call_id, callId);

    // B publishes "open" over its own WebSocket: A gets a NOTIFY with it.
    const opened = await b.publish(ALICE, { body: pidf(ALICE, 'ws-b', 'open', 'on the web'), expires: 60 });
    assert.equal(opened.status, 200, `PUBLISH → ${opened.status} ${opened.reason}`);
    assert.ok(opened.etag, 'the 2xx to PUBLISH carries SIP-ETag');
    const n1 = await ev.nextNotify((body) => showsOpen(body));
    assert.equal(n1.isFinal, false);
    assert.match(n1.subscriptionState, /^active;expires=\d+/);
    assert.match(n1.contentType, /^application\/pidf\+xml/);
    assert.deepEqual(tuplesOf(n1.body), [{ id: 'ws-b', basic: 'open' }]);
    assert.deepEqual(xpathTexts(n1.body, '/p:presence/p:tuple/p:note'), ['on the web']);

    // B modifies its publication (SIP-If-Match): A sees "closed".
    const modified = await b.publish(ALICE, { body: pidf(ALICE, 'ws-b', 'closed', 'away'), etag: opened.etag, expires: 60 });
    assert.equal(modified.status, 200, `modify → ${modified.status} ${modified.reason}`);
    assert.ok(modified.etag && modified.etag !== opened.etag, 'a modified publication gets a new entity-tag');
    const n2 = await ev.nextNotify((body) => tuplesOf(body).some((t) => t.basic === 'closed'));
    assert.deepEqual(tuplesOf(n2.body), [{ id: 'ws-b', basic: 'closed' }]);
    assert.deepEqual(xpathTexts(n2.body, '/p:presence/p:tuple/p:note'), ['away']);

    // B removes it (Expires: 0): A's document no longer has the tuple.
    const removed = await b.publish(ALICE, { etag: modified.etag, expires: 0 });
    assert.equal(removed.status, 200, `remove → ${removed.status} ${removed.reason}`);
    const n3 = await a.nextRequest('NOTIFY', (r) => r.callId === callId && !r.body.toString().includes('ws-b'));
    assert.equal(subState(n3), 'active');
    assert.equal(showsOpen(n3.body.toString()), false, `after removal nothing is open:\n${n3.body.toString()}`);

    // A unsubscribes: the 2xx and a terminated NOTIFY come over the WebSocket; JsSIP ends the subscription.
    sub.terminate();
    const [code] = await ev.next('terminated');
    assert.equal(code, sub.C.FINAL_NOTIFY_RECEIVED, `JsSIP ended the subscription with code ${String(code)}, not on a final NOTIFY`);
    const final = await a.nextRequest('NOTIFY', (r) => r.callId === callId && subState(r) === 'terminated');
    assert.match(final.headers.get('subscription-state') ?? '', /^terminated(;|$)/);
    assert.deepEqual(await watchers(), [], 'the unsubscribed watcher is gone');

    // Everything the node sent A travelled as text frames on A's WebSocket (RFC 7118 §5);
    // the NOTIFYs of the dialog carry a WS Via and consecutive CSeqs, one per state change.
    assert.ok(a.frames.length > 0);
    for (const f of a.frames) {
      assert.equal(f.binary, false, `a binary frame: ${f.text.slice(0, 80)}`);
      assert.ok(f.message, `a frame that is not a SIP message: ${f.text.slice(0, 80)}`);
    }
    const notifies = a.requests('NOTIFY').filter((r) => r.callId === callId);
    assert.deepEqual(
      notifies.map(subState),
      ['active', 'active', 'active', 'active', 'terminated'],
      'one NOTIFY each: initial, open, closed, removed, unsubscribed',
    );
    for (const r of notifies) assert.equal(r.topVia.protocol, 'WS', `NOTIFY Via: ${r.headers.get('via')}`);
    const cseqs = notifies.map((r) => r.cseq.seq);
    for (let i = 1; i < cseqs.length; i++) assert.equal(cseqs[i], cseqs[0]! + i, `NOTIFY CSeqs ${cseqs.join(',')}`);
    // B's PUBLISH responses came back on B's WebSocket; B got no request from the node.
    assert.equal(b.frames.filter((f) => f.message instanceof SipResponse).length, 3);
    assert.equal(b.requests('NOTIFY').length, 0);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

test('watchers whose WebSocket closed or died are dropped at the next NOTIFY; the node keeps serving', async () => {
  const udp = await TestUa.open('udp', node.udpPort);
  const killed = await JsSipClient.connect(node.wsPort, 'sip:watcher-killed@example.com');
  const closed = await JsSipClient.connect(node.wsPort, 'sip:watcher-closed@example.com');
  const subs: Subscriber[] = [];
  let fresh: JsSipClient | undefined;
  try {
    const k = await jssipWatch(killed);
    const c = await jssipWatch(closed);
    subs.push(k.sub, c.sub);
    assert.deepEqual((await watchers()).map((w) => w.watcher_uri).sort(), [
      'sip:watcher-closed@example.com',
      'sip:watcher-killed@example.com',
    ]);

    // One connection is destroyed with no close frame (a crashed tab), the other closed cleanly;
    // neither watcher unsubscribed.
    const open = await metric(node.rpcPort, 'presenced_sip_connections');
    await killed.kill();
    await closed.stop();
    await untilMetric(node.rpcPort, 'presenced_sip_connections', (n) => n <= open - 2, 'the node to see both connections go');

    // A PUBLISH now has NOTIFYs for two watchers with no way to reach them.
    const res = await publish(udp, ALICE, { body: pidf(ALICE, 'udp-b', 'open'), expires: 60 });
    assert.equal(res.status, 200, `PUBLISH over UDP → ${res.status} ${res.reason}`);
    const deadline = Date.now() + EVENT_WAIT_MS;
    let left = await watchers();
    while (left.length > 0 && Date.now() < deadline) {
      await sleep(100);
      left = await watchers();
    }
    assert.deepEqual(
      left.map((w) => w.watcher_uri),
      [],
      `dead WebSocket watchers must be removed once their NOTIFY cannot be sent; node log: ${JSON.stringify(node.logs.filter((l) => /NOTIFY/.test(String(l.msg))).slice(-4))}`,
    );
    assert.equal(killed.requests('NOTIFY').length, 1, 'nothing reached the killed socket after it died');
    assert.equal(closed.requests('NOTIFY').length, 1, 'nothing reached the closed socket after it closed');

    // The node is alive: it answers OPTIONS over UDP, and a new WebSocket watcher gets the state.
    const options = await udp.request({ method: 'OPTIONS', uri: 'sip:127.0.0.1' });
    assert.equal(options.status, 200);
    fresh = await JsSipClient.connect(node.wsPort, 'sip:watcher-fresh@example.com');
    const f = await jssipWatch(fresh);
    subs.push(f.sub);
    assert.deepEqual(tuplesOf(f.first.body.toString()), [{ id: 'udp-b', basic: 'open' }]);
    assert.deepEqual(
      (await watchers()).map((w) => w.watcher_uri),
      ['sip:watcher-fresh@example.com'],
    );
    f.sub.terminate();
    await f.ev.next('terminated');
    assert.deepEqual(await watchers(), []);
    assert.equal((await publish(udp, ALICE, { etag: res.headers.get('sip-etag')!, expires: 0 })).status, 200);
  } finally {
    // The Subscribers of stopped UAs still hold a re-SUBSCRIBE timer: terminate() fails locally and clears it.
    for (const s of subs) s.terminate();
    await Promise.all([killed.stop(), closed.stop(), fresh?.stop()]);
    await udp.close();
  }
});
