import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { rpc, rpcRaw } from '../support/rpc.js';
import { publish, subscribe } from '../support/presence.js';

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 1, min_expires: 0 });
});
after(async () => {
  await node.stop();
});

test('core.version and core.uptime answer', async () => {
  const v = await rpc(node.rpcPort, 'core.version');
  assert.match(String(v.result), /^presenced \d+\.\d+\.\d+/);
  const u = (await rpc(node.rpcPort, 'core.uptime')).result as { uptime: number; up_since: number };
  assert.ok(u.uptime >= 0 && u.up_since > 1_600_000_000);
});

test('malformed JSON → -32700, not an object → -32600, unknown method → -32601, bad params → -32602', async () => {
  const parse = await rpcRaw(node.rpcPort, '{"jsonrpc": "2.0", "method": ');
  assert.equal((parse.json as { error: { code: number } }).error.code, -32700);
  const notObj = await rpcRaw(node.rpcPort, '42');
  assert.equal((notObj.json as { error: { code: number } }).error.code, -32600);
  const noVersion = await rpcRaw(node.rpcPort, '{"method":"core.version","id":1}');
  assert.equal((noVersion.json as { error: { code: number } }).error.code, -32600);
  assert.equal((await rpc(node.rpcPort, 'presence.nope')).error?.code, -32601);
  assert.equal((await rpc(node.rpcPort, 'presence.refreshWatchers', ['sip:a@example.com'])).error?.code, -32602);
  assert.equal((await rpc(node.rpcPort, 'presence.refreshWatchers', ['not a uri', 'presence'])).error?.code, -32602);
  assert.equal((await rpc(node.rpcPort, 'presence.refreshWatchers', ['sip:a@example.com', 'no-such-event'])).error?.code, -32602);
  assert.equal((await rpc(node.rpcPort, 'presence.check_basic', [1, 2])).error?.code, -32602);
  // The node is still up and answering.
  assert.match(String((await rpc(node.rpcPort, 'core.version')).result), /presenced/);
});

test('a batch gets one response per call, in a list', async () => {
  const { json } = await rpcRaw(
    node.rpcPort,
    JSON.stringify([
      { jsonrpc: '2.0', id: 'a', method: 'core.version' },
      { jsonrpc: '2.0', id: 'b', method: 'nope' },
      { jsonrpc: '2.0', method: 'core.uptime' },
    ]),
  );
  const arr = json as Array<{ id: string; result?: unknown; error?: { code: number } }>;
  assert.equal(arr.length, 2, 'the notification gets no response');
  assert.ok(arr.find((r) => r.id === 'a')?.result);
  assert.equal(arr.find((r) => r.id === 'b')?.error?.code, -32601);
});

test('GET on /RPC → 405; GET /metrics → Prometheus text', async () => {
  const r = await fetch(`http://127.0.0.1:${node.rpcPort}/RPC`);
  assert.equal(r.status, 405);
  const m = await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`);
  assert.equal(m.status, 200);
  const text = await m.text();
  assert.match(text, /^# HELP presenced_subscriptions /m);
  // Every series carries the node label (config node_name; a cluster's nodes are told apart by it).
  assert.match(text, /^presenced_subscriptions\{node="[^"]+"\} \d+/m);
  // Counts since start are counters named *_total (Prometheus naming), not gauges.
  for (const c of ['presenced_notify_sent_total', 'presenced_notify_failed_total', 'presenced_watchers_removed_total']) {
    assert.match(text, new RegExp(`^# TYPE ${c} counter$`, 'm'));
    assert.match(text, new RegExp(`^${c}\\{node="[^"]+"\\} \\d+`, 'm'));
  }
});

test('/metrics presenced_presentities follows publications: created, a second one, removed, expired', async () => {
  const scrape = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
    return Number(/^presenced_presentities\{node="[^"]+"\} (\d+)/m.exec(text)?.[1]);
  };
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const base = await scrape();
    const p = 'sip:metrics-carol@example.com';
    const doc = (id: string) =>
      `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="${id}"><status><basic>open</basic></status></tuple></presence>`;
    const a = await publish(ua, p, { body: doc('a'), expires: 60 });
    assert.equal(a.status, 200);
    assert.equal(await scrape(), base + 1);
    const b = await publish(ua, p, { body: doc('b'), expires: 600 });
    assert.equal(b.status, 200);
    assert.equal(await scrape(), base + 1, 'two publications, one presentity');
    const refreshed = await publish(ua, p, { etag: a.headers.get('sip-etag')!, expires: 60 });
    assert.equal(refreshed.status, 200);
    assert.equal(await scrape(), base + 1, 'a refresh changes nothing');
    assert.equal((await publish(ua, p, { etag: refreshed.headers.get('sip-etag')!, expires: 0 })).status, 200);
    assert.equal(await scrape(), base + 1, 'the other publication is still there');
    // Refreshed to 1 s: the gauge follows its expiry, whenever the node gets to it.
    const brief = await publish(ua, p, { etag: b.headers.get('sip-etag')!, expires: 1 });
    assert.equal(brief.status, 200);
    await node.waitForLog((l) => l.msg === 'publication expired' && l.entityTag === brief.headers.get('sip-etag'));
    assert.equal(await scrape(), base, 'the last one expired');
  } finally {
    await ua.close();
  }
});

test('check_basic / check_activities return the seed codes; presentity_show and watcher_list list state', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const pres = 'sip:rpc-alice@example.com';
    assert.equal((await rpc(node.rpcPort, 'presence.check_basic', [pres, 'open'])).result, -1);
    // Nothing published: "not found", -1, as Kamailio's presxml_check_activities answers.
    assert.equal((await rpc(node.rpcPort, 'presence.check_activities', [pres, 'busy'])).result, -1);
    // Published, but no person/activities: -2 (the seed).
    const bare = 'sip:rpc-bare@example.com';
    const bareBody = `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${bare}"><tuple id="t"><status><basic>open</basic></status></tuple></presence>`;
    assert.equal((await publish(ua, bare, { body: bareBody, expires: 60 })).status, 200);
    assert.equal((await rpc(node.rpcPort, 'presence.check_activities', [bare, 'busy'])).result, -2);
    const body =
      `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" ` +
      `xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="${pres}"><tuple id="t"><status><basic>open</basic></status></tuple>` +
      `<dm:person id="p"><rpid:activities><rpid:busy/></rpid:activities></dm:person></presence>`;
    const res = await publish(ua, pres, { body, expires: 60 });
    assert.equal(res.status, 200);
    assert.equal((await rpc(node.rpcPort, 'presence.check_basic', [pres, 'open'])).result, 1);
    assert.equal((await rpc(node.rpcPort, 'presence.check_basic', [pres, 'closed'])).result, -1);
    assert.equal((await rpc(node.rpcPort, 'presence.check_activities', [pres, 'busy'])).result, 1);
    assert.equal((await rpc(node.rpcPort, 'presence.check_activities', [pres, 'away'])).result, -1);

    const shown = (await rpc(node.rpcPort, 'presence.presentity_show', [pres])).result as Array<{ etag: string; event: string }>;
    assert.equal(shown.length, 1);
    assert.equal(shown[0]!.etag, res.headers.get('sip-etag'));
    const list = (await rpc(node.rpcPort, 'presence.presentity_list')).result as Array<{ presentity_uri: string }>;
    assert.ok(list.some((x) => x.presentity_uri === pres));

    const { dialog } = await subscribe(ua, pres, { expires: 60 });
    await dialog.nextNotify();
    const watchers = (await rpc(node.rpcPort, 'presence.watcher_list', [pres, 'presence'])).result as Array<{ status: string }>;
    assert.equal(watchers.length, 1);
    assert.equal(watchers[0]!.status, 'active');

    // refreshWatchers with a type other than 0 re-sends the state to the watchers.
    const r = await rpc(node.rpcPort, 'presence.refreshWatchers', [pres, 'presence', 1]);
    assert.equal(r.error, undefined);
    const again = await dialog.nextNotify();
    assert.match(again.body.toString(), /<basic>open<\/basic>/);
    const r0 = await rpc(node.rpcPort, 'presence.refreshWatchers', [pres, 'presence']);
    assert.equal(r0.error, undefined);
  } finally {
    await ua.close();
  }
});

test('`presenced rpc METHOD` calls the admin port and prints the result; errors exit non-zero', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const { fileURLToPath } = await import('node:url');
  const main = fileURLToPath(new URL('../../core/main.js', import.meta.url));
  const url = `http://127.0.0.1:${node.rpcPort}/RPC`;
  const ok = await promisify(execFile)(process.execPath, [main, 'rpc', '--url', url, 'core.version']);
  assert.match(ok.stdout, /presenced/);
  await assert.rejects(
    promisify(execFile)(process.execPath, [main, 'rpc', '--url', url, 'presence.nope']),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /-32601/);
      return true;
    },
  );
});

test('a presentity URI longer than any the node stores gets invalid params (-32602), not an internal error', async () => {
  const long = `sip:${'a'.repeat(3000)}@example.com`;
  for (const method of ['presence.presentity_show', 'presence.watcher_list']) {
    const r = await rpc(node.rpcPort, method, [long]);
    assert.equal(r.error?.code, -32602, method);
    assert.match(r.error?.message ?? '', /longer than any the node stores/);
  }
});
