/**
 * A full disk under the store, the edge cases (issue 12): a request the store refuses changes
 * nothing, in memory as in the store. An unsubscribe (SUBSCRIBE Expires: 0) gets 503 + Retry-After
 * and the subscription stays live (RFC 6665 §4.1.2.2: a failed unsubscribe leaves it valid for the
 * subscriber too), instead of leaving memory while the store keeps it for the next restart to
 * resurrect; a refused SUBSCRIBE refresh, PUBLISH refresh, modify or removal leaves the previous
 * expiry, entity-tag and body; a refused XCAP PUT or DELETE (whole document or node selector)
 * leaves the document and its ETag. Then space comes back, the node is SIGKILLed and restarted on
 * the same store: it holds exactly what it held before the refusals. The store is on a tmpfs the
 * test mounts (root, as in CI) and fills.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import { openUa, publish, watch, pidf, uniqueUri, bodyOf, parseSubState } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';
import { Xcap, presRules, CT, sel } from '../support/xcap-http.js';
import { rpcResult, presentityShow } from '../support/rpc.js';
import { fill, mountTmpfs, unmountTmpfs } from '../support/disk.js';

let mnt: string;
const nodes: RunningNode[] = [];
const uas: TestUa[] = [];

before(() => {
  mnt = mountTmpfs('24m');
});

after(async () => {
  await Promise.all(uas.map((u) => u.close()));
  await Promise.all(nodes.map((n) => n.kill()));
  unmountTmpfs(mnt);
});

function assertRefused(r: { status: number; headers: { get(name: string): string | null | undefined } }, what: string): void {
  assert.equal(r.status, 503, `${what}: ${r.status}`);
  assert.match(r.headers.get('retry-after') ?? '', /^\d+$/, `${what}: Retry-After`);
}

const expiresOf = async (node: RunningNode, presentity: string, callId: string): Promise<number | undefined> =>
  (await rpcResult<Array<{ call_id: string; expires: number }>>(node.rpcPort, 'presence.watcher_list', [presentity, 'presence'])).find(
    (w) => w.call_id === callId,
  )?.expires;

test('a refresh, an unsubscribe, a PUBLISH or an XCAP write the store refuses changes nothing, in memory or in the store', async () => {
  const config = { force_active: 1, min_expires: 0, db_url: `lmdb:${join(mnt, 'db')}` };
  const node = await startNode(config);
  nodes.push(node);
  const ua = await openUa(node, 'tcp');
  const watcherUa = await openUa(node, 'tcp');
  uas.push(ua, watcherUa);
  const xcap = new Xcap(node.xcapPort);

  // Before the disk fills: a publication, two watchers of it (one to refresh, one to unsubscribe), a rules document.
  const presentity = uniqueUri('edge');
  const first = await publish(ua, presentity, { body: pidf(presentity, 't', 'open', 'before'), expires: 600 });
  assert.equal(first.status, 200);
  const etag = first.headers.get('sip-etag')!;
  const refreshed = await watch(watcherUa, presentity, { expires: 600 });
  const leaving = await watch(watcherUa, presentity, { expires: 600 });
  const rulesPath = `/pres-rules/users/${encodeURIComponent(uniqueUri('rules'))}/index`;
  const put = await xcap.put(rulesPath, presRules([{ id: 'a' }, { id: 'b' }]), CT.presRules);
  assert.equal(put.status, 201);
  const rulesBefore = await xcap.get(rulesPath);

  const free = fill(mnt);
  await node.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('store full'));

  // SUBSCRIBE refresh (asking for far more than the 600 s it holds): refused, the expiry stays.
  assertRefused(await refreshed.dialog.request(3000), 'SUBSCRIBE refresh');
  const kept = await expiresOf(node, presentity, refreshed.dialog.callId);
  assert.ok(kept !== undefined && kept <= 600, `the refused refresh left the expiry (${kept} s)`);

  // Unsubscribe: refused, and the subscription is still live: listed, and NOTIFYd.
  assertRefused(await leaving.dialog.request(0), 'unsubscribe');
  assert.notEqual(await expiresOf(node, presentity, leaving.dialog.callId), undefined, 'the refused unsubscribe left the subscription');
  const resent = leaving.dialog.nextNotify();
  await rpcResult(node.rpcPort, 'presence.refreshWatchers', [presentity, 'presence', 1]);
  const notify = await resent;
  assert.equal(parseSubState(notify).state, 'active');
  assert.match(bodyOf(notify), /before/);

  // PUBLISH refresh, modify and removal with the entity-tag: refused, the publication is as it was.
  assertRefused(await publish(ua, presentity, { etag, expires: 3000 }), 'PUBLISH refresh');
  assertRefused(await publish(ua, presentity, { etag, expires: 600, body: pidf(presentity, 't', 'closed', 'modified') }), 'PUBLISH modify');
  assertRefused(await publish(ua, presentity, { etag, expires: 0 }), 'PUBLISH removal');
  const shown = await presentityShow(node.rpcPort, presentity);
  assert.deepEqual(
    shown.map((p) => p.etag),
    [etag],
  );
  assert.ok(shown[0]!.expires <= 600);
  assert.match(shown[0]!.body, /before/);

  // XCAP: replace the document, put and delete a rule by node selector, delete the document: all refused, nothing changed.
  assertRefused(await xcap.put(rulesPath, presRules([{ id: 'c' }]), CT.presRules), 'XCAP PUT (replace)');
  assertRefused(await xcap.put(rulesPath + sel('ruleset/rule[@id="d"]'), '<cr:rule id="d"/>', CT.el), 'XCAP PUT (node selector)');
  assertRefused(await xcap.delete(rulesPath + sel('ruleset/rule[@id="b"]')), 'XCAP DELETE (node selector)');
  assertRefused(await xcap.delete(rulesPath), 'XCAP DELETE');
  const rulesDuring = await xcap.get(rulesPath);
  assert.equal(rulesDuring.etag, rulesBefore.etag);
  assert.equal(rulesDuring.text, rulesBefore.text);

  // Space back: the entity-tag still names the publication, the dialogs are still there.
  free();
  await node.waitForLog((l) => l.msg === 'store writable again');
  await node.kill();

  // The store holds what was acknowledged, and nothing of what was refused.
  const restarted = await startNode(config);
  nodes.push(restarted);
  const afterRestart = await presentityShow(restarted.rpcPort, presentity);
  assert.deepEqual(
    afterRestart.map((p) => p.etag),
    [etag],
  );
  assert.match(afterRestart[0]!.body, /before/);
  const keptAfter = await expiresOf(restarted, presentity, refreshed.dialog.callId);
  assert.ok(keptAfter !== undefined && keptAfter <= 600, `the refused refresh is not in the store (${keptAfter} s)`);
  assert.notEqual(await expiresOf(restarted, presentity, leaving.dialog.callId), undefined, 'the refused unsubscribe: still stored');
  const rulesAfter = await new Xcap(restarted.xcapPort).get(rulesPath);
  assert.equal(rulesAfter.etag, rulesBefore.etag);

  // The unsubscribe, sent again now that the store can write, ends the subscription (and it stays ended).
  const ua2 = await openUa(restarted, 'tcp');
  uas.push(ua2);
  const again = await publish(ua2, presentity, { etag, expires: 600 });
  assert.equal(again.status, 200, 'the entity-tag the refused requests named still works');
  await watcherUa.disconnect();
  watcherUa.serverPort = restarted.tcpPort;
  await watcherUa.connect();
  const retry = await leaving.dialog.request(0);
  assert.equal(retry.status, 200, `unsubscribe once space is back: ${retry.status}`);
  assert.equal(await expiresOf(restarted, presentity, leaving.dialog.callId), undefined);
  await restarted.kill();
  const third = await startNode(config);
  nodes.push(third);
  assert.equal(await expiresOf(third, presentity, leaving.dialog.callId), undefined, 'the unsubscribe acknowledged is in the store');
  assert.notEqual(await expiresOf(third, presentity, refreshed.dialog.callId), undefined);
  await third.stop();
});
