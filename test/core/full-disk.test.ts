/**
 * A full disk under the store (issue 12, 4): the node stays up. Writes (PUBLISH, SUBSCRIBE that
 * stores a dialog, XCAP PUT/DELETE) get 503 with Retry-After; reads, fetches, NOTIFYs and OPTIONS
 * are served; once space is freed, writes are accepted again; and after a SIGKILL and a restart
 * every write that was acknowledged is there. The node sees the filesystem fall below its reserve
 * and says so (the log line the test waits for) before LMDB itself meets ENOSPC. The store lives on a small tmpfs the test mounts
 * (root, as in CI). The second case starts LMDB with a map far smaller than the data (db_map_size):
 * lmdb-js grows the map while the disk has room, and a map that cannot grow is the same 503.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fill, mountTmpfs, unmountTmpfs } from '../support/disk.js';
import { startNode, type RunningNode } from '../support/node.js';
import { openUa, publish, subscribe, watch, pidf, uniqueUri, bodyOf, parseSubState } from '../support/presence.js';
import type { TestUa } from '../support/sip-ua.js';
import type { SipResponse } from '../../transport/message.js';
import { Xcap, presRules, CT } from '../support/xcap-http.js';
import { rpcResult, presentityShow } from '../support/rpc.js';

const TMPFS_SIZE = '24m';
const BIG_NOTE = 'n'.repeat(16_000);

async function metric(node: RunningNode, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
  // The series carries the node's name (node_name) as its one label.
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{node='));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

function assertRefused(r: SipResponse, what: string): void {
  assert.equal(r.status, 503, `${what}: ${r.status} ${r.reason}`);
  assert.match(r.headers.get('retry-after') ?? '', /^\d+$/, `${what}: Retry-After`);
}

interface Acked {
  publications: Map<string, string>; // presentity → entity-tag
  xcap: Map<string, string>; // XCAP path → ETag
}

describe('a full disk under the store', () => {
  let mnt: string;
  const nodes: RunningNode[] = [];
  const uas: TestUa[] = [];

  before(() => {
    mnt = mountTmpfs(TMPFS_SIZE);
  });

  after(async () => {
    await Promise.all(uas.map((u) => u.close()));
    await Promise.all(nodes.map((n) => n.kill()));
    unmountTmpfs(mnt);
  });

  for (const variant of [
    { name: 'default map', dir: 'a', config: {}, before: 0 },
    // 1 MiB of map, 2 MiB of data before the disk fills: the map has grown twice over by then.
    { name: 'db_map_size 1 MiB', dir: 'b', config: { db_map_size: 1 << 20 }, before: 130 },
  ]) {
    test(`[${variant.name}] writes get 503 + Retry-After, the rest is served, writes come back with space, nothing acknowledged is lost`, async () => {
      rmSync(join(mnt, variant.dir), { recursive: true, force: true });
      const config = { force_active: 1, min_expires: 0, db_url: `lmdb:${join(mnt, variant.dir, 'db')}`, ...variant.config };
      const node = await startNode(config);
      nodes.push(node);
      const ua = await openUa(node, 'tcp');
      const watcherUa = await openUa(node, 'tcp');
      uas.push(ua, watcherUa);
      const xcap = new Xcap(node.xcapPort);
      const acked: Acked = { publications: new Map(), xcap: new Map() };

      const publishNew = async (note: string): Promise<SipResponse> => {
        const p = uniqueUri('full');
        const r = await publish(ua, p, { body: pidf(p, 't', 'open', note), expires: 3600 });
        if (r.status === 200) acked.publications.set(p, r.headers.get('sip-etag')!);
        return r;
      };
      const putRulesDoc = async (who: string): Promise<number> => {
        const path = `/pres-rules/users/${encodeURIComponent(who)}/index`;
        const r = await xcap.put(path, presRules([{ id: 'a', handling: 'allow' }]), CT.presRules);
        if (r.status === 200 || r.status === 201) acked.xcap.set(path, r.etag!);
        return r.status;
      };

      // Before the disk fills: a watched presentity, a rules document, and for the small map more data than the map holds.
      const watched = uniqueUri('watched');
      const first = await publish(ua, watched, { body: pidf(watched, 't', 'open', 'watched'), expires: 3600 });
      assert.equal(first.status, 200);
      acked.publications.set(watched, first.headers.get('sip-etag')!);
      const { dialog } = await watch(watcherUa, watched, { expires: 3600 });
      const rulesOwner = uniqueUri('rules');
      assert.equal(await putRulesDoc(rulesOwner), 201);
      for (let i = 0; i < variant.before; i++) assert.equal((await publishNew(BIG_NOTE)).status, 200);
      if (variant.before > 0)
        assert.ok((await metric(node, 'presenced_store_file_bytes')) > 1 << 20, 'the data file outgrew the 1 MiB map');

      const free = fill(mnt);
      // The node watches the free space and refuses writes below its reserve, before LMDB meets ENOSPC.
      await node.waitForLog((l) => typeof l.msg === 'string' && l.msg.startsWith('store full'));

      // Every write is refused now, at once.
      assertRefused(await publishNew('small'), 'initial PUBLISH');
      assertRefused(await publish(ua, watched, { etag: acked.publications.get(watched)!, expires: 3600 }), 'PUBLISH refresh');
      const sub = await subscribe(watcherUa, uniqueUri('nosub'), { expires: 600 });
      assertRefused(sub.res, 'initial SUBSCRIBE');
      const rulesPath = `/pres-rules/users/${encodeURIComponent(rulesOwner)}/index`;
      const put = await xcap.put(
        `/pres-rules/users/${encodeURIComponent(uniqueUri('norules'))}/index`,
        presRules([{ id: 'a' }]),
        CT.presRules,
      );
      assert.equal(put.status, 503, 'XCAP PUT');
      assert.match(put.headers.get('retry-after') ?? '', /^\d+$/);
      const del = await xcap.delete(rulesPath);
      assert.equal(del.status, 503, 'XCAP DELETE');

      // Reads, fetches, NOTIFYs and OPTIONS are served.
      const got = await xcap.get(rulesPath);
      assert.equal(got.status, 200, 'XCAP GET');
      assert.equal(got.etag, acked.xcap.get(rulesPath));
      const options = await ua.request({ method: 'OPTIONS', uri: 'sip:presenced@127.0.0.1' });
      assert.equal(options.status, 200, 'OPTIONS');
      const fetched = await subscribe(watcherUa, watched, { expires: 0 });
      assert.equal(fetched.res.status, 200, 'fetch SUBSCRIBE (Expires 0) stores nothing');
      const fetchNotify = await fetched.dialog.nextNotify();
      assert.equal(parseSubState(fetchNotify).state, 'terminated');
      assert.match(bodyOf(fetchNotify), /watched/);
      const resend = dialog.nextNotify();
      await rpcResult(node.rpcPort, 'presence.refreshWatchers', [watched, 'presence', 1]);
      assert.match(bodyOf(await resend), /watched/, 'NOTIFY to an existing watcher');

      // Counted and logged once (with what to do).
      assert.equal(await metric(node, 'presenced_store_writable'), 0);
      assert.ok((await metric(node, 'presenced_store_write_failures_total')) >= 5);
      const logged = node.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('store full'));
      assert.equal(logged.length, 1, 'one log line for the condition');
      assert.match(String(logged[0]!.msg), /Free space/);

      // Space freed: writes are accepted again.
      free();
      await node.waitForLog((l) => l.msg === 'store writable again');
      assert.equal((await publishNew('after')).status, 200, 'PUBLISH after space was freed');
      const again = await subscribe(watcherUa, uniqueUri('again'), { expires: 600 });
      assert.equal(again.res.status, 200, 'SUBSCRIBE after space was freed');
      assert.equal(await putRulesDoc(uniqueUri('rules-after')), 201, 'XCAP PUT after space was freed');
      assert.equal(await metric(node, 'presenced_store_writable'), 1);
      // lmdb-js prints the write errors on stderr itself; a rejection left unhandled would have ended the node.
      assert.doesNotMatch(node.stderr.join(''), /unhandled|uncaught/i);

      // SIGKILL and restart on the same store: every acknowledged write is there.
      await node.kill();
      const restarted = await startNode(config);
      nodes.push(restarted);
      for (const [p, etag] of acked.publications) {
        const shown = await presentityShow(restarted.rpcPort, p);
        assert.deepEqual(
          shown.map((x) => x.etag),
          [etag],
          `publication of ${p} after the restart`,
        );
      }
      const xcap2 = new Xcap(restarted.xcapPort);
      for (const [path, etag] of acked.xcap) assert.equal((await xcap2.get(path)).etag, etag, `${path} after the restart`);
      await restarted.stop();
    });
  }
});
