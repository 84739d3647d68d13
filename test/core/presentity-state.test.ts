/**
 * presence.presentity_state over HTTP (POST /RPC): the NOTIFY body a fully authorised watcher
 * gets now, composed by the event package as the notifier composes it. Each case compares the
 * RPC's answer with the body a real watcher's NOTIFY carries over SIP.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { rpc, rpcResult } from '../support/rpc.js';
import { publish, subscribe, pidf, bodyOf, uniqueUri, tuplesOf, DIALOG_INFO_NS, xpathTexts } from '../support/presence.js';
import { EVENT_WAIT_MS } from '../support/wait.js';

interface State {
  presentity_uri: string;
  event: string;
  contentType: string;
  body: string | null;
  versioned: boolean;
}

let node: RunningNode;
let ua: TestUa;
before(async () => {
  node = await startNode({ force_active: 1 });
  ua = await TestUa.open('udp', node.udpPort);
});
after(async () => {
  await ua?.close();
  await node?.stop();
});

const state = (uri: string, event: string): Promise<State> => rpcResult<State>(node.rpcPort, 'presence.presentity_state', [uri, event]);

test('presence: the composed PIDF of two publications, the same body an active watcher is NOTIFYed', async () => {
  const uri = uniqueUri('state-alice');
  assert.equal((await publish(ua, uri, { body: pidf(uri, 'phone', 'open', 'on the phone'), expires: 600 })).status, 200);
  assert.equal((await publish(ua, uri, { body: pidf(uri, 'pc', 'closed'), expires: 600 })).status, 200);
  const s = await state(uri, 'presence');
  assert.equal(s.event, 'presence');
  assert.equal(s.contentType, 'application/pidf+xml');
  assert.equal(s.versioned, false);
  assert.ok(s.body !== null);
  assert.deepEqual(
    tuplesOf(s.body)
      .map((t) => `${t.id}=${t.basic}`)
      .sort(),
    ['pc=closed', 'phone=open'],
  );
  // force_active: the watcher is allowed, so its NOTIFY carries the whole composed state.
  const watcher = await TestUa.open('udp', node.udpPort);
  try {
    const { res, dialog } = await subscribe(watcher, uri, { expires: 600 });
    assert.equal(res.status, 200);
    const n = await dialog.nextNotify(EVENT_WAIT_MS, (r) => r.body.length > 0);
    assert.equal(n.contentType, s.contentType);
    assert.equal(bodyOf(n), s.body, 'the RPC shows exactly what the notifier sends');
  } finally {
    await watcher.close();
  }
});

test('nothing published: presence, a document without tuples; message-summary, no body (null); then the newest publication', async () => {
  const uri = uniqueUri('state-nobody');
  const empty = await state(uri, 'presence');
  assert.ok(empty.body !== null);
  assert.deepEqual(tuplesOf(empty.body), []);
  assert.equal((await state(uri, 'message-summary')).body, null);
  const mwi = 'Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n';
  assert.equal(
    (await publish(ua, uri, { event: 'message-summary', body: mwi, contentType: 'application/simple-message-summary' })).status,
    200,
  );
  const s = await state(uri, 'message-summary');
  assert.equal(s.contentType, 'application/simple-message-summary');
  assert.equal(s.body, mwi);
});

test('dialog: a terminated dialog is shown, and looking at it does not use it up for the watchers', async () => {
  const uri = uniqueUri('state-ext');
  const doc =
    `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" version="1" state="full" entity="${uri}">` +
    '<dialog id="t1" call-id="call-t1" local-tag="a" remote-tag="b" direction="recipient"><state>terminated</state></dialog></dialog-info>';
  assert.equal(
    (await publish(ua, uri, { event: 'dialog', body: doc, contentType: 'application/dialog-info+xml', expires: 600 })).status,
    200,
  );
  for (let i = 0; i < 2; i++) {
    const s = await state(uri, 'dialog');
    assert.equal(s.versioned, true);
    assert.equal(s.contentType, 'application/dialog-info+xml');
    assert.deepEqual(xpathTexts(s.body!, '/d:dialog-info/d:dialog/@id'), ['t1'], `look ${i + 1}`);
    assert.deepEqual(xpathTexts(s.body!, '/d:dialog-info/@version'), ['0'], 'the per-subscription version shown as 0');
  }
  // A watcher subscribing now still gets the terminated dialog (the RPC consumed nothing).
  const watcher = await TestUa.open('udp', node.udpPort);
  try {
    const { res, dialog } = await subscribe(watcher, uri, { event: 'dialog', expires: 600 });
    assert.equal(res.status, 200);
    const n = await dialog.nextNotify(EVENT_WAIT_MS);
    assert.deepEqual(xpathTexts(bodyOf(n), '/d:dialog-info/d:dialog/d:state'), ['terminated']);
  } finally {
    await watcher.close();
  }
});

test('bad calls get -32602 with the usage, and the node keeps answering', async () => {
  for (const params of [[], ['sip:a@example.com'], ['not a uri', 'presence'], ['sip:a@example.com', 'no-such-event'], [1, 'presence']]) {
    const r = await rpc(node.rpcPort, 'presence.presentity_state', params);
    assert.equal(r.error?.code, -32602, JSON.stringify(params));
  }
  assert.match((await rpc(node.rpcPort, 'presence.presentity_state', [])).error!.message, /presentity_state presentity_uri event/);
  const methods = await rpcResult<string[]>(node.rpcPort, 'system.listMethods', []);
  assert.ok(methods.includes('presence.presentity_state'));
});
