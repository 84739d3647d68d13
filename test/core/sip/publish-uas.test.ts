/**
 * sip/publish-uas.ts over the state layer, without sockets: the order RFC 3903 §6 and DESIGN.md
 * ask for (the 2xx once the store committed, and before the watchers are told), a refresh as
 * one store write, and presence composed on the main thread from the publications held in
 * memory (no store read).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PublishUas } from '../../../core/sip/publish-uas.js';
import { Publications } from '../../../core/state/publications.js';
import { PackageRegistry } from '../../../core/packages/registry.js';
import { presencePackage } from '../../../core/packages/presence.js';
import type { PackageContext } from '../../../core/packages/types.js';
import { WorkerPool } from '../../../core/pool.js';
import { MemoryStore, recordingHub, quietLog, testConfig, incomingRequest } from '../../support/fake-sip.js';

const ALICE = 'sip:alice@example.com';
const pidf = (id: string, basic: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${ALICE}"><tuple id="${id}"><status><basic>${basic}</basic></status></tuple></presence>`;

function publishRequest(cseq: number, extra: string[], body: string): ReturnType<typeof incomingRequest> {
  return incomingRequest(
    [
      `PUBLISH ${ALICE} SIP/2.0`,
      `Via: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKp${cseq}`,
      `From: <${ALICE}>;tag=pub1`,
      `To: <${ALICE}>`,
      'Call-ID: publish-1@198.51.100.7',
      `CSeq: ${cseq} PUBLISH`,
      'Event: presence',
      ...extra,
      ...(body ? ['Content-Type: application/pidf+xml'] : []),
    ],
    body,
  );
}

function setup() {
  const config = testConfig({ worker_threads: 0 });
  const store = new MemoryStore();
  const { hub } = recordingHub();
  const pool = new WorkerPool(
    { dbPath: '', xcapTable: 'xcap', limits: { maxBytes: config.max_xml_size, maxDepth: config.max_xml_depth } },
    0,
    store as never,
    0,
  );
  const publications = new Publications({ config, store, log: quietLog(), hub });
  const ctx: PackageContext = {
    pool,
    store,
    config,
    publications: (uri, event) => publications.of(uri, event),
    watchers: () => [],
    stale: () => undefined,
  };
  const uas = new PublishUas({ config, packages: new PackageRegistry([presencePackage]), ctx, log: quietLog(), publications });
  return { store, hub, publications, uas, ctx };
}

test('the 200 leaves once the store committed, and before the watchers are told (RFC 3903 §6 step 6)', async () => {
  const t = setup();
  const order: string[] = [];
  const put = t.store.putPublication.bind(t.store);
  t.store.putPublication = async (p) => {
    const ok = await put(p);
    order.push('committed');
    return ok;
  };
  const { incoming, responses } = publishRequest(1, ['Expires: 60'], pidf('t1', 'open'));
  const respond = incoming.respond;
  incoming.respond = (res) => {
    order.push(`${res.status} sent`);
    respond(res);
  };
  t.hub.on('presentity.changed', (c) => order.push(`changed ${c.presentityUri}`));
  await t.uas.handle(incoming);
  assert.deepEqual(order, ['committed', '200 sent', `changed ${ALICE}`]);
  assert.equal(responses[0]!.headers.get('expires'), '60');
  assert.ok(responses[0]!.headers.get('sip-etag'));
  t.publications.stop();
});

test('a refresh is one write of the same record; the old entity-tag then gets 412', async () => {
  const t = setup();
  const first = publishRequest(1, ['Expires: 60'], pidf('t1', 'open'));
  await t.uas.handle(first.incoming);
  const etag = first.responses[0]!.headers.get('sip-etag')!;
  let writes = 0;
  let removals = 0;
  const put = t.store.putPublication.bind(t.store);
  const remove = t.store.removePublication.bind(t.store);
  t.store.putPublication = (p) => (writes++, put(p));
  t.store.removePublication = (...a) => (removals++, remove(...a));
  const refresh = publishRequest(2, ['Expires: 60', `SIP-If-Match: ${etag}`], '');
  await t.uas.handle(refresh.incoming);
  assert.equal(refresh.responses[0]!.status, 200);
  const etag2 = refresh.responses[0]!.headers.get('sip-etag')!;
  assert.notEqual(etag2, etag);
  assert.deepEqual([writes, removals], [1, 0]);
  assert.equal(t.store.publications.size, 1);
  assert.equal([...t.store.publications.values()][0]!.entityTag, etag2);
  const stale = publishRequest(3, ['Expires: 60', `SIP-If-Match: ${etag}`], '');
  await assert.rejects(t.uas.handle(stale.incoming), (err: { status?: number }) => err.status === 412);
  t.publications.stop();
});

test('with no worker threads, presence is composed from the publications in memory, without a store read', async () => {
  const t = setup();
  await t.uas.handle(publishRequest(1, ['Expires: 60'], pidf('phone', 'closed')).incoming);
  await t.uas.handle(publishRequest(2, ['Expires: 60'], pidf('laptop', 'open')).incoming);
  t.store.publicationsOf = () => assert.fail('composition read the store');
  t.store.allPublications = () => assert.fail('composition read the store');
  const body = await presencePackage.compose(ALICE, t.ctx);
  assert.match(body!, /<tuple id="phone"[^>]*>\s*<status>\s*<basic>closed<\/basic>/);
  assert.match(body!, /<tuple id="laptop"[^>]*>\s*<status>\s*<basic>open<\/basic>/);
  t.publications.stop();
});
