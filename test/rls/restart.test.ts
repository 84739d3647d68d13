/**
 * A list subscription survives SIGKILL (contract: acknowledged list subscriptions are durable):
 * after the restart on the same store, the subscriber's dialog goes on: the next NOTIFYs come
 * in the same dialog with CSeq above the last one before the kill, the RLMI version goes on
 * from where it was (RFC 4662 §5.2: +1 per NOTIFY of the subscription; a subscriber seeing a
 * gap or a step back must resubscribe, §4.6), a change after the restart reaches the list, and
 * the restarted node takes the dialog's refresh.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { pidf, publish, putRules, rules, uniqueUri, tuplesOf, parseSubState } from '../support/presence.js';
import { ListView, entry, putServices, refreshList, rlsServices, subscribeList, type ResourceView } from '../support/rls.js';

const CONFIG = { waitn_time: 0 };
const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);

test('SIGKILL and restart: the list subscription resumes in the same dialog, CSeq and version go on, changes and refresh work', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-rls-restart-'));
  const nodes: RunningNode[] = [];
  const first = await startNode(CONFIG, { dataDir });
  nodes.push(first);
  const ua = await TestUa.open('udp', first.udpPort);
  try {
    const owner = ua.aor;
    const service = uniqueUri('list');
    const [a, b] = [uniqueUri('a'), uniqueUri('b')];
    for (const u of [a, b]) {
      assert.equal(await putRules(first.xcapPort, u, rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }])), 201);
      assert.equal((await publish(ua, u, { body: pidf(u, 't', 'open'), expires: 3600 })).status, 200);
    }
    await putServices(new Xcap(first.xcapPort), owner, rlsServices([{ uri: service, list: entry(a) + entry(b) }]));

    const { res, dialog } = await subscribeList(ua, service, { expires: 3600 });
    assert.equal(res.status, 200);
    const view = new ListView();
    view.apply(await dialog.nextNotify());
    assert.equal((await publish(ua, a, { body: pidf(a, 't', 'closed'), expires: 3600 })).status, 200);
    await view.until(dialog, (v) => basicOf(v.resources.get(a)) === 'closed');
    const lastCseq = Math.max(...view.notifies.map((n) => n.req.cseq.seq));
    const beforeKill = ua.received.length;

    await first.kill();
    const second = await startNode(CONFIG, { dataDir });
    nodes.push(second);
    ua.serverPort = second.udpPort;

    // A change after the restart reaches the list in the same dialog.
    assert.equal((await publish(ua, b, { body: pidf(b, 't', 'closed'), expires: 3600 })).status, 200);
    await view.until(dialog, (v) => basicOf(v.resources.get(b)) === 'closed');
    const after = view.notifies.filter((n) => ua.received.findIndex((r) => r.message === n.req) >= beforeKill);
    assert.ok(after.length > 0, 'NOTIFYs came after the restart');
    for (const n of after) {
      assert.ok(n.req.cseq.seq > lastCseq, `CSeq ${n.req.cseq.seq} after the restart must be above ${lastCseq}`);
      assert.equal(parseSubState(n.req).state, 'active');
    }
    assert.equal(basicOf(view.resources.get(a)), 'closed', 'a’s state from before the kill is still known');

    // A barrier: a change of a, seen in the list, comes after every NOTIFY owed for earlier
    // changes (the one of b may come twice: in a full state sent on resuming, and on its own).
    assert.equal((await publish(ua, a, { body: pidf(a, 't', 'open'), expires: 3600 })).status, 200);
    await view.until(dialog, (v) => basicOf(v.resources.get(a)) === 'open');

    // The dialog's refresh reaches the restarted node: 200 and full state.
    const r = await refreshList(dialog, 600);
    assert.equal(r.status, 200, `refresh after restart → ${r.status} ${r.reason}`);
    // A partial NOTIFY that left before the refresh arrived may come first (a change just before
    // it); the refresh's own NOTIFY carries full state.
    let n = view.apply(await dialog.nextNotify());
    while (!n.list.fullState) n = view.apply(await dialog.nextNotify());
    assert.equal(n.list.fullState, true);
    assert.deepEqual(view.order, [a, b]);
    assert.equal((await refreshList(dialog, 0)).status, 200);
  } finally {
    await ua.close();
    for (const n of nodes) await n.kill();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
