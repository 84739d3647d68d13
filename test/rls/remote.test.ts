/**
 * Resources served elsewhere (contract: outbound_proxy, rls_local_domains): the list server
 * ("list node") SUBSCRIBEs over SIP for a resource of a domain it does not serve, here a second
 * presenced ("other node"), reached straight or through the front proxy stand-in
 * (test/support/front-proxy.ts). The back-end SUBSCRIBE carries the list subscriber's URI as
 * From, so the resource's own pres-rules on the other node decide; a PUBLISH there shows up in
 * the list's NOTIFYs; ending the list subscription ends the back-end one (Expires: 0).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap } from '../support/xcap-http.js';
import { FrontProxy } from '../support/front-proxy.js';
import { pidf, publish, putRules, rules, tuplesOf } from '../support/presence.js';
import { watcherList } from '../support/rpc.js';
import { EVENT_WAIT_MS } from '../support/wait.js';
import { ListView, entry, putServices, refreshList, rlsServices, subscribeList, type ResourceView } from '../support/rls.js';

let other: RunningNode;
let proxy: FrontProxy;
const listNodes: RunningNode[] = [];

before(async () => {
  other = await startNode({});
  proxy = await FrontProxy.start(other.udpPort);
});
after(async () => {
  for (const n of listNodes) assert.equal(await n.stop(), 0, `list node exits cleanly; stderr: ${n.stderr.join('')}`);
  await proxy.close();
  assert.equal(await other.stop(), 0, `other node exits cleanly; stderr: ${other.stderr.join('')}`);
});

const rand = (): string => Math.random().toString(36).slice(2, 10);
const basicOf = (v: ResourceView | undefined): string | undefined => (v?.body ? tuplesOf(v.body.body)[0]?.basic : undefined);

/** A labelled sample of /metrics, e.g. presenced_rls_backend_subscriptions{kind="sip"}; undefined when absent. */
async function labelled(port: number, name: string, label: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)/.exec(line);
    if (m && m[1] === name && m[2]!.split(',').includes(label)) return Number(m[3]);
  }
  return undefined;
}

/** Poll an RPC read until `ok` (the backstop: the test wait); resolves with the last value. */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const end = Date.now() + EVENT_WAIT_MS;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const via of ['direct', 'front proxy'] as const) {
  test(`a remote resource (${via}): back-end SUBSCRIBE with the subscriber as From, its state and changes in the list, ended with the list`, async () => {
    const next = via === 'direct' ? other.udpPort : proxy.port;
    const list = await startNode({ waitn_time: 0, outbound_proxy: `sip:127.0.0.1:${next}`, rls_local_domains: ['local.test'] });
    listNodes.push(list);
    const ua = await TestUa.open('udp', list.udpPort);
    const uaOther = await TestUa.open('udp', other.udpPort);
    try {
      const owner = ua.aor;
      const service = `sip:list-${rand()}@local.test`;
      const a = `sip:a-${rand()}@local.test`;
      const x = `sip:x-${rand()}@remote.test`;
      const allow = rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]);
      assert.equal(await putRules(list.xcapPort, a, allow), 201);
      assert.equal(await putRules(other.xcapPort, x, allow), 201, 'x’s rules live on the other node');
      assert.equal((await publish(ua, a, { body: pidf(a, 'ta', 'open'), expires: 600 })).status, 200);
      assert.equal((await publish(uaOther, x, { body: pidf(x, 'tx', 'open', 'remote'), expires: 600 })).status, 200);
      await putServices(new Xcap(list.xcapPort), owner, rlsServices([{ uri: service, list: entry(a) + entry(x) }]));

      const { res, dialog } = await subscribeList(ua, service, { expires: 600 });
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      const view = new ListView();
      view.apply(await dialog.nextNotify());
      assert.equal(view.notifies[0]!.parsed.list.fullState, true);
      assert.deepEqual(view.order, [a, x], 'the remote resource is in the list from the first NOTIFY on');
      await view.until(dialog, (v) => v.resources.get(x)?.state === 'active' && basicOf(v.resources.get(x)) === 'open');
      assert.match(view.resources.get(x)!.body!.body, new RegExp(`entity="${x}"`));

      // The other node holds one subscription for x whose watcher is the list subscriber.
      const ws = await until(
        () => watcherList(other.rpcPort, x),
        (w) => w.length > 0,
        'the back-end subscription on the other node',
      );
      assert.equal(ws.length, 1, JSON.stringify(ws));
      assert.equal(ws[0]!.watcher_uri, ua.aor, 'From of the back-end SUBSCRIBE is the list subscriber (its rules decide)');
      assert.equal(ws[0]!.status, 'active');
      assert.ok(((await labelled(list.rpcPort, 'presenced_rls_backend_subscriptions', 'kind="sip"')) ?? 0) >= 1, 'metric kind="sip"');
      assert.ok(((await labelled(list.rpcPort, 'presenced_rls_backend_subscriptions', 'kind="local"')) ?? 0) >= 1, 'metric kind="local"');
      const listed = await watcherList(list.rpcPort, service);
      assert.deepEqual(
        listed.map((w) => w.watcher_uri),
        [ua.aor],
        'presence.watcher_list [service] lists the list subscriber',
      );

      // A PUBLISH on the other node reaches the list as a partial NOTIFY naming x.
      assert.equal((await publish(uaOther, x, { body: pidf(x, 'tx', 'closed'), expires: 600 })).status, 200);
      await view.until(dialog, (v) => basicOf(v.resources.get(x)) === 'closed');
      const last = view.notifies.at(-1)!.parsed;
      assert.equal(last.list.fullState, false);
      assert.deepEqual(
        last.list.resources.map((r) => r.uri),
        [x],
      );

      // Ending the list subscription ends the back-end one.
      assert.equal((await refreshList(dialog, 0)).status, 200);
      await until(
        () => watcherList(other.rpcPort, x),
        (w) => w.length === 0,
        'the back-end subscription ended (Expires: 0)',
      );
      if (via === 'front proxy')
        assert.ok(
          proxy.relayed.some((r) => r.direction === 'up' && r.startLine.startsWith('SUBSCRIBE ')),
          'the back-end SUBSCRIBE went through the proxy',
        );
    } finally {
      await ua.close();
      await uaOther.close();
    }
  });
}

test('a remote resource without a rule for the subscriber is pending, then active once allowed there; after SIGKILL of the list node, remote changes still reach the list', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-rls-remote-'));
  const config = { waitn_time: 0, outbound_proxy: `sip:127.0.0.1:${other.udpPort}`, rls_local_domains: ['local.test'] };
  let list = await startNode(config, { dataDir });
  const ua = await TestUa.open('udp', list.udpPort);
  const uaOther = await TestUa.open('udp', other.udpPort);
  try {
    const service = `sip:list-${rand()}@local.test`;
    const x = `sip:x-${rand()}@remote.test`;
    assert.equal((await publish(uaOther, x, { body: pidf(x, 'tx', 'open'), expires: 3600 })).status, 200);
    await putServices(new Xcap(list.xcapPort), ua.aor, rlsServices([{ uri: service, list: entry(x) }]));
    const { res, dialog } = await subscribeList(ua, service, { expires: 3600 });
    assert.equal(res.status, 200);
    const view = new ListView();
    await view.until(dialog, (v) => v.resources.get(x)?.state === 'pending');
    assert.ok(!view.resources.get(x)!.body || !/<basic>open/.test(view.resources.get(x)!.body!.body), 'pending shows no state');

    const allow = rules([{ id: 'w', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]);
    assert.equal(await putRules(other.xcapPort, x, allow), 201);
    await view.until(dialog, (v) => v.resources.get(x)?.state === 'active' && basicOf(v.resources.get(x)) === 'open');

    // SIGKILL, restart on the same store and port: the other node's next NOTIFY for x finds the list again.
    const lastCseq = Math.max(...view.notifies.map((n) => n.req.cseq.seq));
    const port = list.udpPort;
    await list.kill();
    list = await startNode({ ...config, listen: [`udp:127.0.0.1:${port}`, 'tcp:127.0.0.1:0'] }, { dataDir });
    assert.equal((await publish(uaOther, x, { body: pidf(x, 'tx', 'closed'), expires: 3600 })).status, 200);
    await view.until(dialog, (v) => basicOf(v.resources.get(x)) === 'closed');
    assert.ok(view.notifies.at(-1)!.req.cseq.seq > lastCseq, 'same dialog, CSeq goes on');
    ua.serverPort = list.udpPort;
    assert.equal((await refreshList(dialog, 0)).status, 200);
    await until(
      () => watcherList(other.rpcPort, x),
      (w) => w.length === 0,
      'the back-end subscription ended with the list',
    );
  } finally {
    await ua.close();
    await uaOther.close();
    await list.kill();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
