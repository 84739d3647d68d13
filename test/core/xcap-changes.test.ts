/**
 * XcapServer in this process (real HTTP, real LMDB, a real worker thread): onDocumentChanged
 * is called once per committed change, after the commit, and never for a refused request.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildConfig } from '../../core/config.js';
import { Store } from '../../core/store/store.js';
import { WorkerPool } from '../../core/pool.js';
import { XcapServer, type XcapChange } from '../../core/xcap/server.js';
import { Xcap, CT, presRules, sel } from '../support/xcap-http.js';

const dir = mkdtempSync(join(tmpdir(), 'presenced-xcap-'));
const config = buildConfig({ xcap_listen: '127.0.0.1:0', db_url: `lmdb:${join(dir, 'db')}`, log_level: 'silent', worker_threads: 1 });
const store = Store.open(config.db_path, config.xcap_table);
const pool = new WorkerPool(
  { dbPath: config.db_path, xcapTable: config.xcap_table, limits: { maxBytes: config.max_xml_size, maxDepth: config.max_xml_depth } },
  1,
  store,
);
const changes: Array<XcapChange & { storedEtag: string | undefined }> = [];
const server = new XcapServer({
  config,
  store,
  pool,
  log: pino({ level: 'silent' }),
  onDocumentChanged: (c) => changes.push({ ...c, storedEtag: store.getXcap(c.auid, c.xui, c.name)?.etag }),
});
let xcap: Xcap;

before(async () => {
  xcap = new Xcap(await server.start());
});
after(async () => {
  await server.stop();
  await pool.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('each committed change is reported after the commit; refused requests report nothing', async () => {
  const xui = 'sip:alice@example.com';
  const path = `/pres-rules/users/${xui}/index`;

  const put = await xcap.put(path, presRules([{ id: 'a' }]), CT.presRules);
  assert.equal(put.status, 201);
  assert.equal(changes.length, 1);
  const c1 = changes[0]!;
  assert.deepEqual([c1.auid, c1.xui, c1.name], ['pres-rules', xui, 'index']);
  assert.equal(`"${c1.doc!.etag}"`, put.etag);
  assert.equal(c1.storedEtag, c1.doc!.etag, 'the store already holds the document when the callback runs');
  assert.equal(c1.doc!.source, 'embedded');
  assert.equal(c1.doc!.contentType, CT.presRules);

  // Refused: not well-formed, wrong precondition, wrong type, missing node.
  assert.equal((await xcap.put(path, '<ruleset', CT.presRules)).status, 409);
  assert.equal((await xcap.put(path, presRules([{ id: 'b' }]), CT.presRules, { headers: { 'If-Match': '"x"' } })).status, 412);
  assert.equal((await xcap.put(path, presRules([{ id: 'b' }]), 'text/plain')).status, 415);
  assert.equal((await xcap.delete(path + sel('ruleset/rule[@id="zz"]'))).status, 404);
  assert.equal(changes.length, 1);

  const node = await xcap.put(path + sel('ruleset/rule[@id="b"]'), '<cr:rule id="b"/>', CT.el);
  assert.equal(node.status, 201);
  assert.equal(changes.length, 2);
  assert.equal(`"${changes[1]!.doc!.etag}"`, node.etag);
  assert.match(Buffer.from(changes[1]!.doc!.body).toString(), /<cr:rule id="b"\/>/);

  assert.equal((await xcap.delete(path)).status, 200);
  assert.equal(changes.length, 3);
  assert.equal(changes[2]!.doc, undefined);
  assert.equal(changes[2]!.storedEtag, undefined, 'gone from the store before the callback');
  assert.equal(store.getXcap('pres-rules', xui, 'index'), undefined);
});

test('concurrent conditional PUTs of one document: exactly one wins', async () => {
  const path = '/pres-rules/users/sip:race@example.com/index';
  const replies = await Promise.all(
    Array.from({ length: 8 }, (_, i) => xcap.put(path, presRules([{ id: `r${i}` }]), CT.presRules, { headers: { 'If-None-Match': '*' } })),
  );
  const statuses = replies.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 412, 412, 412, 412, 412, 412, 412]);
  const winner = replies.find((r) => r.status === 201)!;
  assert.equal((await xcap.get(path)).etag, winner.etag);

  // Node edits racing on one document all land (they are serialised), each with its own ETag.
  const edits = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      xcap.put(path + sel(`ruleset/rule[@id="n${i}"]`), `<rule xmlns="urn:ietf:params:xml:ns:common-policy" id="n${i}"/>`, CT.el),
    ),
  );
  assert.deepEqual(
    edits.map((e) => e.status),
    [201, 201, 201, 201, 201, 201],
  );
  assert.equal(new Set(edits.map((e) => e.etag)).size, 6);
  const doc = (await xcap.get(path)).text;
  for (let i = 0; i < 6; i++) assert.match(doc, new RegExp(`id="n${i}"`));
});

test('stop() closes the listener', async () => {
  const extra = new XcapServer({ config, store, pool, log: pino({ level: 'silent' }), onDocumentChanged: () => undefined });
  const port = await extra.start();
  assert.equal((await fetch(`http://127.0.0.1:${port}/xcap-root/xcap-caps/global/index`)).status, 200);
  await extra.stop();
  await assert.rejects(fetch(`http://127.0.0.1:${port}/xcap-root/xcap-caps/global/index`, { headers: { Connection: 'close' } }));
});
