/**
 * XcapClient (integrated_xcap_server = 0) against a second node's embedded XCAP server.
 */
import { test, before, after } from 'node:test';
import { EVENT_WAIT_MS } from '../support/wait.js';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import { pino } from 'pino';
import { buildConfig, type Config } from '../../core/config.js';
import { Store } from '../../core/store/store.js';
import { XcapClient } from '../../core/xcap/client.js';
import type { XcapChange } from '../../core/xcap/server.js';
import { startNode, type RunningNode } from '../support/node.js';
import { Xcap, CT, presRules } from '../support/xcap-http.js';

let node: RunningNode;
let xcap: Xcap;
let dir: string;
let store: Store;
let deadUrl: string;
let dead: Server;
/** Every request the client makes: [url, status]. */
const seen: Array<[string, number]> = [];
const realFetch = globalThis.fetch;

before(async () => {
  node = await startNode();
  xcap = new Xcap(node.xcapPort);
  dir = mkdtempSync(join(tmpdir(), 'presenced-xcapc-'));
  store = Store.open(join(dir, 'db'), 'xcap');
  // An "XCAP server" that fails every request, to list before the real one.
  dead = createServer((_req, res) => res.writeHead(503).end());
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  deadUrl = `http://127.0.0.1:${(dead.address() as { port: number }).port}/xcap-root`;
  globalThis.fetch = async (input, init) => {
    const res = await realFetch(input, init);
    seen.push([String(input), res.status]);
    return res;
  };
});
after(async () => {
  globalThis.fetch = realFetch;
  await node.stop();
  await store.close();
  dead.close();
  rmSync(dir, { recursive: true, force: true });
});

function clientConfig(servers: string[], extra: Record<string, unknown> = {}): Config {
  return buildConfig({ integrated_xcap_server: 0, xcap_server: servers, db_url: `lmdb:${join(dir, 'db')}`, ...extra });
}

test('fetch: GET, cache with ETag and source, If-None-Match → 304, 404 removes the copy', async () => {
  const url = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const xui = 'sip:alice@example.com';
  const changes: XcapChange[] = [];
  const client = new XcapClient({
    config: clientConfig([url]),
    store,
    log: pino({ level: 'silent' }),
    onDocumentChanged: (c) => changes.push(c),
  });

  assert.equal(await client.fetch('pres-rules', xui, 'index'), undefined, 'nothing there yet');
  assert.equal(changes.length, 0);

  const doc = presRules([{ id: 'a', identity: 'sip:bob@example.com' }]);
  const put = await xcap.put(`/pres-rules/users/${xui}/index`, doc, CT.presRules);
  const got = await client.fetch('pres-rules', xui, 'index');
  assert.ok(got);
  assert.equal(Buffer.from(got.body).toString(), doc);
  assert.equal(`"${got.etag}"`, put.etag);
  assert.equal(got.source, url);
  assert.equal(got.contentType, CT.presRules);
  const cached = store.getXcap('pres-rules', xui, 'index');
  assert.equal(cached?.etag, got.etag, 'cached in LMDB');
  assert.equal(changes.length, 1);

  seen.length = 0;
  const again = await client.fetch('pres-rules', xui, 'index');
  assert.deepEqual(
    seen.map(([, s]) => s),
    [304],
    'a refetch of an unchanged document costs a 304',
  );
  assert.equal(again?.etag, got.etag);
  assert.equal(changes.length, 1, 'no change reported');

  await xcap.delete(`/pres-rules/users/${xui}/index`);
  assert.equal(await client.fetch('pres-rules', xui, 'index'), undefined);
  assert.equal(store.getXcap('pres-rules', xui, 'index'), undefined, 'the cached copy is gone');
  assert.equal(changes.length, 2);
  assert.equal(changes[1]!.doc, undefined);
});

test('servers are tried in order; a failing one is skipped; the copy records where it came from', async () => {
  const url = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const xui = 'sip:carol@example.com';
  await xcap.put(`/pres-rules/users/${xui}/index`, presRules([{ id: 'c' }]), CT.presRules);
  const client = new XcapClient({ config: clientConfig([deadUrl, url]), store, log: pino({ level: 'silent' }) });
  seen.length = 0;
  const got = await client.fetch('pres-rules', xui);
  assert.equal(got?.source, url);
  assert.deepEqual(
    seen.map(([u, s]) => [u.startsWith(deadUrl), s]),
    [
      [true, 503],
      [false, 200],
    ],
  );
  assert.match(seen[1]![0], /\/xcap-root\/pres-rules\/users\/sip:carol@example\.com\/index$/);

  // Only the failing server left: the cached copy is kept and served.
  const offline = new XcapClient({ config: clientConfig([deadUrl]), store, log: pino({ level: 'silent' }) });
  assert.equal((await offline.fetch('pres-rules', xui))?.etag, got?.etag);
  assert.ok(store.getXcap('pres-rules', xui, 'index'));
});

test('periodic refresh (periodical_query, query_period) reports a changed document', async () => {
  const url = `http://127.0.0.1:${node.xcapPort}/xcap-root`;
  const xui = 'sip:dave@example.com';
  await xcap.put(`/pres-rules/users/${xui}/index`, presRules([{ id: 'v1' }]), CT.presRules);
  const changes: XcapChange[] = [];
  const client = new XcapClient({
    config: clientConfig([url], { periodical_query: 1, query_period: 1 }),
    store,
    log: pino({ level: 'silent' }),
  });
  client.onDocumentChanged = (c) => changes.push(c);
  await client.fetch('pres-rules', xui);
  changes.length = 0;
  client.start();
  try {
    const put = await xcap.put(`/pres-rules/users/${xui}/index`, presRules([{ id: 'v2' }]), CT.presRules);
    const deadline = Date.now() + EVENT_WAIT_MS;
    while (changes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(changes.length, 1, 'one change, found by the periodic query');
    assert.equal(`"${changes[0]!.doc!.etag}"`, put.etag);
    assert.match(Buffer.from(store.getXcap('pres-rules', xui, 'index')!.body).toString(), /id="v2"/);
  } finally {
    await client.stop();
  }

  // periodical_query = 0: no timer.
  const quiet = new XcapClient({
    config: clientConfig([url], { periodical_query: 0, query_period: 1 }),
    store,
    log: pino({ level: 'silent' }),
  });
  const quietChanges: XcapChange[] = [];
  quiet.onDocumentChanged = (c) => quietChanges.push(c);
  await quiet.fetch('pres-rules', xui);
  quiet.start();
  await xcap.put(`/pres-rules/users/${xui}/index`, presRules([{ id: 'v3' }]), CT.presRules);
  await new Promise((r) => setTimeout(r, 1500));
  await quiet.stop();
  assert.equal(quietChanges.length, 0);
});
