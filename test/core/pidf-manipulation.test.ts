/**
 * pidf-manipulation (RFC 4827): hard state a presentity sets over XCAP is part of its composed
 * presence, beside what it PUBLISHes, and a change to the document NOTIFYs its watchers. End to
 * end: embedded XCAP server, SIP over UDP, JSON-RPC.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { rpc } from '../support/rpc.js';
import { pidf, publish, watch, tuplesOf, bodyOf } from '../support/presence.js';
import { Xcap, CT } from '../support/xcap-http.js';

let node: RunningNode;
let xcap: Xcap;
before(async () => {
  node = await startNode({ force_active: 1 });
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node?.stop();
});

test('the pidf-manipulation document is composed with the publications; PUT and DELETE of it NOTIFY the watchers', async () => {
  const p = 'sip:hard-state@example.com';
  const path = `/pidf-manipulation/users/${p}/index`;
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    assert.equal((await xcap.put(path, pidf(p, 'hard', 'open', 'set over XCAP'), CT.pidf)).status, 201);
    const w = await watch(ua, p, { expires: 600 });
    assert.deepEqual(tuplesOf(bodyOf(w.first)), [{ id: 'hard', basic: 'open' }], 'the first NOTIFY has the hard state');
    assert.equal((await rpc(node.rpcPort, 'presence.check_basic', [p, 'open'])).result, 1);

    assert.equal((await publish(ua, p, { body: pidf(p, 'soft', 'closed', 'published'), expires: 600 })).status, 200);
    const both = await w.dialog.nextNotify(3000, (r) => bodyOf(r).includes('soft'));
    assert.deepEqual(
      tuplesOf(bodyOf(both))
        .map((t) => t.id)
        .sort(),
      ['hard', 'soft'],
    );

    assert.equal((await xcap.put(path, pidf(p, 'hard', 'closed', 'changed'), CT.pidf)).status, 200);
    const changed = await w.dialog.nextNotify(3000, (r) => bodyOf(r).includes('changed'));
    assert.deepEqual(
      tuplesOf(bodyOf(changed)).find((t) => t.id === 'hard'),
      { id: 'hard', basic: 'closed' },
    );

    assert.equal((await xcap.delete(path)).status, 200);
    const gone = await w.dialog.nextNotify(3000, (r) => !bodyOf(r).includes('"hard"'));
    assert.deepEqual(
      tuplesOf(bodyOf(gone)).map((t) => t.id),
      ['soft'],
    );
  } finally {
    await ua.close();
  }
});
