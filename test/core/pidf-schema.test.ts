/**
 * PUBLISHed PIDF is validated against RFC 3863 §4.4's schema (issue 12, 8): `<basic>unknown</basic>`
 * was stored and NOTIFYed, and linphonec answered that NOTIFY 488. Now the PUBLISH gets 400 with
 * the schema's message in the reason phrase, and watchers never see the document.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from '../support/node.js';
import { openUa, publish, watch, pidf, uniqueUri, bodyOf } from '../support/presence.js';

test('a PUBLISH whose PIDF breaks the schema gets 400 with the reason, and no NOTIFY carries it', async () => {
  const node = await startNode({ force_active: 1 });
  const publisher = await openUa(node, 'udp');
  const watcher = await openUa(node, 'udp');
  try {
    const p = uniqueUri('schema');
    assert.equal((await publish(publisher, p, { body: pidf(p, 't1', 'open', 'first'), expires: 600 })).status, 200);
    const { dialog } = await watch(watcher, p);

    const bad = pidf(p, 't1', 'open', 'bad').replace('<basic>open</basic>', '<basic>unknown</basic>');
    const refused = await publish(publisher, p, { body: bad, expires: 600 });
    assert.equal(refused.status, 400);
    assert.match(refused.reason, /basic.*'unknown' is not an element of the set \{'open', 'closed'\}/);
    const misordered = pidf(p, 't2', 'closed').replace('<status>', '<note>early</note><status>');
    const refused2 = await publish(publisher, p, { body: misordered, expires: 600 });
    assert.equal(refused2.status, 400);
    assert.match(refused2.reason, /note.*not expected/);

    // The next NOTIFY is for the next valid document: the refused ones changed nothing.
    const next = dialog.nextNotify();
    assert.equal((await publish(publisher, p, { body: pidf(p, 't3', 'closed', 'valid again'), expires: 600 })).status, 200);
    const body = bodyOf(await next);
    assert.match(body, /valid again/);
    assert.doesNotMatch(body, /unknown|early/);
  } finally {
    await publisher.close();
    await watcher.close();
    await node.stop();
  }
});
