/**
 * A list server in a cluster (contract: cluster_nodes / cluster_index, the edge's mapping
 * slot = core_hash(user@host) & 1023, node = slot mod N): of a list's resources, node 0 serves
 * its own shard itself and subscribes over SIP (outbound_proxy, here straight to node 1) for
 * the others; the subscriber sees every resource's state either way, and /metrics counts the
 * back-ends by kind.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { pidf, publish, putRules, rules, tuplesOf } from '../support/presence.js';
import { shardOf } from '../../core/rls/shard.js';
import { ListView, entry, putServices, refreshList, rlsServices, subscribeList, type ResourceView } from '../support/rls.js';

const nodes: RunningNode[] = [];
after(async () => {
  for (const n of nodes) assert.equal(await n.stop(), 0, `node exits cleanly; stderr: ${n.stderr.join('')}`);
});
const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);

async function labelled(port: number, name: string, label: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)/.exec(line);
    if (m && m[1] === name && m[2]!.split(',').includes(label)) return Number(m[3]);
  }
  return undefined;
}

test('cluster of 2: node 0 serves its shard itself and the other shard through node 1; the list shows all', async () => {
  const node1 = await startNode({ cluster_nodes: 2, cluster_index: 1 });
  nodes.push(node1);
  const node0 = await startNode({ waitn_time: 0, cluster_nodes: 2, cluster_index: 0, outbound_proxy: `sip:127.0.0.1:${node1.udpPort}` });
  nodes.push(node0);
  const ua = await TestUa.open('udp', node0.udpPort);
  const ua1 = await TestUa.open('udp', node1.udpPort);
  try {
    // Three resources of each shard.
    const mine: string[] = [];
    const theirs: string[] = [];
    for (let i = 0; mine.length < 3 || theirs.length < 3; i++) {
      const u = `sip:m${i}-${Math.random().toString(36).slice(2, 8)}@example.com`;
      const s = shardOf(u, 2);
      if (s === 0 && mine.length < 3) mine.push(u);
      else if (s === 1 && theirs.length < 3) theirs.push(u);
    }
    const allow = rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]);
    for (const u of mine) {
      assert.equal(await putRules(node0.xcapPort, u, allow), 201);
      assert.equal((await publish(ua, u, { body: pidf(u, 't', 'open'), expires: 600 })).status, 200);
    }
    for (const u of theirs) {
      assert.equal(await putRules(node1.xcapPort, u, allow), 201);
      assert.equal((await publish(ua1, u, { body: pidf(u, 't', 'open'), expires: 600 })).status, 200);
    }
    const all = [mine[0]!, theirs[0]!, mine[1]!, theirs[1]!, mine[2]!, theirs[2]!];
    const service = `sip:team-${Math.random().toString(36).slice(2, 8)}@example.com`;
    await putServices(new Xcap(node0.xcapPort), ua.aor, rlsServices([{ uri: service, list: all.map((u) => entry(u)).join('') }]));

    const { res, dialog } = await subscribeList(ua, service);
    assert.equal(res.status, 200, `${res.status} ${res.reason}`);
    const view = new ListView();
    await view.until(dialog, (v) => all.every((u) => v.resources.get(u)?.state === 'active' && basicOf(v.resources.get(u)) === 'open'));
    assert.deepEqual(view.order, all);
    assert.equal(await labelled(node0.rpcPort, 'presenced_rls_backend_subscriptions', 'kind="local"'), 3, 'its own shard served inside');
    assert.equal(await labelled(node0.rpcPort, 'presenced_rls_backend_subscriptions', 'kind="sip"'), 3, 'the other shard over SIP');

    // A change on node 1 reaches the list on node 0.
    assert.equal((await publish(ua1, theirs[1]!, { body: pidf(theirs[1]!, 't', 'closed'), expires: 600 })).status, 200);
    await view.until(dialog, (v) => basicOf(v.resources.get(theirs[1]!)) === 'closed');
    assert.equal((await refreshList(dialog, 0)).status, 200);
  } finally {
    await ua.close();
    await ua1.close();
  }
});
