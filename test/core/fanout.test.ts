/**
 * NOTIFY fan-out end to end (issue 4): 20 watchers of one presentity, spread over several
 * UAs, each get the NOTIFY for one PUBLISH, in their own dialog, with the same composed body.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa } from '../support/sip-ua.js';
import type { SipRequest } from '../../transport/message.js';
import { pidf, publish, watch, openUa, uniqueUri, bodyOf, cseqOf, type Dialog } from '../support/presence.js';

const WATCHERS = 20;
const UAS = 4;

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 1, sip_t1: 50 });
});
after(async () => {
  await node?.stop();
});

/** One PUBLISH; every dialog gets a NOTIFY carrying `note`; returns those NOTIFYs. */
async function publishAndCollect(
  publisher: TestUa,
  p: string,
  note: string,
  dialogs: Dialog[],
  etag?: string,
): Promise<{ etag: string; notifies: SipRequest[]; ms: number }> {
  const t0 = Date.now();
  const res = await publish(publisher, p, { body: pidf(p, 'fan', 'open', note), expires: 600, etag });
  assert.equal(res.status, 200, `PUBLISH: ${res.status} ${res.reason}`);
  const notifies = await Promise.all(dialogs.map((d) => d.nextNotify(5000, (r) => bodyOf(r).includes(`<note>${note}</note>`))));
  return { etag: res.headers.get('sip-etag')!, notifies, ms: Date.now() - t0 };
}

for (const mix of ['udp', 'tcp', 'udp+tcp'] as const) {
  test(`[${mix}] ${WATCHERS} watchers over ${UAS} UAs all get the NOTIFY for one PUBLISH`, async () => {
    const protos = Array.from({ length: UAS }, (_, i) => (mix === 'udp+tcp' ? (i % 2 ? 'tcp' : 'udp') : mix));
    const uas = await Promise.all(protos.map((proto) => openUa(node, proto)));
    const publisher = await openUa(node, 'udp');
    try {
      const p = uniqueUri('fan');
      const subs = await Promise.all(Array.from({ length: WATCHERS }, (_, i) => watch(uas[i % UAS]!, p)));
      const dialogs = subs.map((s) => s.dialog);
      assert.equal(new Set(dialogs.map((d) => d.toTag)).size, WATCHERS, 'one dialog per watcher');

      const first = await publishAndCollect(publisher, p, 'round-1', dialogs);
      assert.equal(first.notifies.length, WATCHERS);
      const bodies = new Set(first.notifies.map(bodyOf));
      assert.equal(bodies.size, 1, 'every watcher sees the same composed document');
      first.notifies.forEach((n, i) => {
        assert.equal(n.callId, dialogs[i]!.callId, 'each NOTIFY in its own dialog');
        assert.equal(n.fromTag, dialogs[i]!.toTag);
        assert.equal(n.toTag, dialogs[i]!.fromTag);
        assert.ok(cseqOf(n) > cseqOf(subs[i]!.first), 'after the immediate NOTIFY');
      });

      const second = await publishAndCollect(publisher, p, 'round-2', dialogs, first.etag);
      for (const [i, n] of second.notifies.entries()) assert.ok(cseqOf(n) > cseqOf(first.notifies[i]!), 'CSeq grows per dialog');
      // Milliseconds when nothing holds it up; a fan-out that waited on a timer or a retransmission
      // per watcher would take seconds each. The bound leaves room for a loaded machine.
      assert.ok(second.ms < 10_000, `fan-out to ${WATCHERS} took ${second.ms} ms`);
    } finally {
      await Promise.all([...uas, publisher].map((u) => u.close()));
    }
  });
}
