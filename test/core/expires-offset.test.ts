/**
 * expires_offset (Kamailio presence module: a publication or subscription is kept that many
 * seconds past its expiry), over real sockets. Within the grace, a PUBLISH with SIP-If-Match
 * still finds its publication (RFC 3903 §6 step 3) and a SUBSCRIBE refresh its dialog, and a
 * restart keeps both; the grace ends them no earlier than expiry + expires_offset. Waits are for
 * the clock to pass an expiry, for log lines and NOTIFYs, never for a margin: the grace of the
 * first case is an hour, and the second only checks that removal came no earlier than due.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { openUa, publish, watch, pidf, uniqueUri, parseSubState } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';
import { rpcResult, presentityShow } from '../support/rpc.js';

const nodes: RunningNode[] = [];
const uas: TestUa[] = [];

after(async () => {
  await Promise.all(uas.map((u) => u.close()));
  await Promise.all(nodes.map((n) => n.kill()));
});

/** Resolves once the clock has passed `t` (ms since the epoch). */
async function past(t: number): Promise<void> {
  while (Date.now() <= t) await new Promise((r) => setTimeout(r, t + 1 - Date.now()));
}

const watcherCallIds = async (node: RunningNode, presentity: string): Promise<string[]> =>
  (await rpcResult<Array<{ call_id: string }>>(node.rpcPort, 'presence.watcher_list', [presentity, 'presence'])).map((w) => w.call_id);

test('within expires_offset: SIP-If-Match finds the expired publication, the subscription refreshes, and a restart keeps both', async () => {
  const node = await startNode({ force_active: 1, min_expires: 0, expires_offset: 3600 });
  nodes.push(node);
  const ua = await openUa(node, 'tcp');
  const watcherUa = await openUa(node, 'tcp');
  uas.push(ua, watcherUa);
  const presentity = uniqueUri('grace');
  const sent = Date.now();
  const first = await publish(ua, presentity, { body: pidf(presentity, 't', 'open', 'graced'), expires: 1 });
  assert.equal(first.status, 200);
  const other = uniqueUri('grace-live');
  const otherFirst = await publish(ua, other, { body: pidf(other, 't', 'open'), expires: 1 });
  assert.equal(otherFirst.status, 200);
  const { dialog } = await watch(watcherUa, presentity, { expires: 1 });
  // Expired (the node set expiry at receipt + 1 s, after `sent`), within the grace. (the node set expiry at receipt + 1 s, after `sent`), both within the grace.
  await past(Date.now() + 1000);
  assert.ok(Date.now() > sent + 1000);
  const live = await publish(ua, other, { etag: otherFirst.headers.get('sip-etag')!, expires: 600 });
  assert.equal(live.status, 200, `PUBLISH refresh within the grace: ${live.status} ${live.reason}`);

  // SIGKILL and restart: recovery keeps what is within its grace.
  await node.kill();
  const restarted = await startNode(node.config, { dataDir: node.dataDir });
  nodes.push(restarted);
  const shown = await presentityShow(restarted.rpcPort, presentity);
  assert.deepEqual(
    shown.map((p) => p.etag),
    [first.headers.get('sip-etag')],
    'the publication within its grace survived the restart',
  );
  assert.deepEqual(await watcherCallIds(restarted, presentity), [dialog.callId], 'the subscription within its grace resumed');

  // RFC 3903 §6 step 3: the entity-tag names a publication the node still keeps: 200, not 412.
  const ua2 = await openUa(restarted, 'tcp');
  uas.push(ua2);
  const refreshed = await publish(ua2, presentity, { etag: first.headers.get('sip-etag')!, expires: 600 });
  assert.equal(refreshed.status, 200, `PUBLISH refresh within the grace: ${refreshed.status} ${refreshed.reason}`);
  assert.equal(refreshed.headers.get('expires'), '600');
  await watcherUa.disconnect();
  watcherUa.serverPort = restarted.tcpPort;
  await watcherUa.connect();
  const sub = await dialog.request(600);
  assert.equal(sub.status, 200, `SUBSCRIBE refresh within the grace: ${sub.status}`);
  await restarted.stop();
});

test('expires_offset ends a publication and a subscription no earlier than expiry + grace', async () => {
  const GRACE_S = 2;
  const node = await startNode({ force_active: 1, min_expires: 0, expires_offset: GRACE_S });
  nodes.push(node);
  const ua = await openUa(node, 'tcp');
  const watcherUa = await openUa(node, 'tcp');
  uas.push(ua, watcherUa);
  const presentity = uniqueUri('grace-end');
  const watched = uniqueUri('grace-watched');
  const sent = Date.now();
  assert.equal((await publish(ua, presentity, { body: pidf(presentity, 't', 'open'), expires: 1 })).status, 200);
  const { dialog } = await watch(watcherUa, watched, { expires: 1 });
  const due = sent + 1000 + GRACE_S * 1000;

  const expired = await node.waitForLog((l) => l.msg === 'publication expired' && l.presentityUri === presentity);
  assert.ok(
    Date.parse(String(expired.time)) >= due,
    `publication removed at ${expired.time}, due no earlier than ${new Date(due).toISOString()}`,
  );
  const terminated = await dialog.nextNotify(60_000, (r) => parseSubState(r).state === 'terminated');
  assert.equal(parseSubState(terminated).reason, 'timeout');
  const ended = await node.waitForLog((l) => l.msg === 'subscription ended' && l.callId === dialog.callId);
  assert.ok(
    Date.parse(String(ended.time)) >= due,
    `subscription ended at ${ended.time}, due no earlier than ${new Date(due).toISOString()}`,
  );
  await node.stop();
});
