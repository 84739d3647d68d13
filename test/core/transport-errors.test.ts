/**
 * What the notifier does when a NOTIFY cannot be sent at all (RFC 3261 §8.1.3.1: a transport
 * error is a 503 to the transaction user; RFC 6665 §4.2.2: the subscription is removed), and
 * how in-dialog CSeq order is judged (RFC 3261 §12.2.2).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { rpc } from '../support/rpc.js';
import { pidf, publish, watch, uniqueUri, withUas, collectFor, bodyOf } from '../support/presence.js';

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 1, max_message_size: 200_000, max_xml_size: 200_000 });
});
after(async () => {
  await node.stop();
});

async function watchers(presentity: string): Promise<unknown[]> {
  const r = await rpc(node.rpcPort, 'presence.watcher_list', [presentity]);
  return r.result as unknown[];
}

/** Poll until the presentity has no watcher left (or fail after `ms`). */
async function untilNoWatchers(presentity: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await watchers(presentity)).length === 0) return;
    await sleep(50);
  }
  assert.fail(`${presentity} still has watchers: ${JSON.stringify(await watchers(presentity))}`);
}

test('a NOTIFY too large for UDP ends the subscription at once (transport error), not after 32 s of retransmissions', async () => {
  const p = uniqueUri('big');
  const watcher = await TestUa.open('udp', node.udpPort);
  const publisher = await TestUa.open('tcp', node.tcpPort);
  try {
    await watch(watcher, p);
    assert.equal((await watchers(p)).length, 1);
    const res = await publish(publisher, p, { body: pidf(p, 't1', 'open', 'x'.repeat(70_000)), expires: 600 });
    assert.equal(res.status, 200, `${res.status} ${res.reason}`);
    await untilNoWatchers(p, 16_000); // "at once" next to 32 s (64 × T1) of retransmissions
    const got = await collectFor(watcher, 'NOTIFY', (r) => bodyOf(r).includes('xxxx'), 300);
    assert.deepEqual(got, [], 'nothing of the oversized NOTIFY arrived');
  } finally {
    await watcher.close();
    await publisher.close();
  }
});

test('a Contact with port 0 cannot be reached: the subscription ends with its first NOTIFY', () =>
  withUas(node, 'udp', 1, async (ua) => {
    const p = uniqueUri('port0');
    const res = await ua.request({
      method: 'SUBSCRIBE',
      uri: p,
      headers: [
        ['max-forwards', '70'],
        ['event', 'presence'],
        ['expires', '600'],
        ['contact', '<sip:nobody@127.0.0.1:0>'],
      ],
      bare: true,
    });
    assert.equal(res.status, 200);
    await untilNoWatchers(p, 16_000); // "at once" next to 32 s (64 × T1) of retransmissions
  }));

test('in-dialog CSeq: the same CSeq again is a refresh (200), a lower one is out of order (500)', () =>
  withUas(node, 'udp', 1, async (ua) => {
    const p = uniqueUri('cseq');
    const { dialog } = await watch(ua, p);
    assert.equal((await dialog.request(600)).status, 200);
    dialog.cseq--; // the same CSeq again, in a new transaction
    assert.equal((await dialog.request(600)).status, 200, 'RFC 3261 §12.2.2 rejects only a lower CSeq');
    dialog.cseq -= 2;
    const lower = await dialog.request(600);
    assert.equal(lower.status, 500, `${lower.status} ${lower.reason}`);
  }));
