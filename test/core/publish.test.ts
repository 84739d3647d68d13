/**
 * PUBLISH end to end (RFC 3903 §6, issue 4), over UDP and TCP against a real node: event
 * package check, conditional requests, body checks, refresh / modify / remove, Expires
 * rules, and soft state that expires on its own.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { SipRequest } from '../../transport/message.js';
import type { TestUa } from '../support/sip-ua.js';
import {
  pidf,
  pidfDoc,
  publish,
  watch,
  uniqueUri,
  tuplesOf,
  showsOpen,
  bodyOf,
  xpathTexts,
  withUa,
  sleep,
  fetchBarrier,
} from '../support/presence.js';

const CONFIG = {
  force_active: 1,
  min_expires: 60,
  max_expires: 3600,
  default_expires: 1800,
  max_xml_size: 4096,
  sip_t1: 50,
};
/** Short soft state: publications of 2 s are allowed. */
const QUICK = { force_active: 1, min_expires: 0, sip_t1: 50 };

let node: RunningNode;
let quick: RunningNode;
before(async () => {
  [node, quick] = await Promise.all([startNode(CONFIG), startNode(QUICK)]);
});
after(async () => {
  await Promise.all([node?.stop(), quick?.stop()]);
});

/** Initial PUBLISH of one open tuple; returns its entity-tag. */
async function publishOpen(ua: TestUa, presentity: string, tupleId = 't1', note?: string, expires = 600): Promise<string> {
  const res = await publish(ua, presentity, { body: pidf(presentity, tupleId, 'open', note), expires });
  assert.equal(res.status, 200, `initial PUBLISH: ${res.status} ${res.reason}`);
  const etag = res.headers.get('sip-etag');
  assert.ok(etag, '2xx to PUBLISH carries SIP-ETag (RFC 3903 §6 step 8)');
  return etag;
}

/** The node answers and still accepts a valid PUBLISH. */
async function assertAlive(ua: TestUa, n: RunningNode): Promise<void> {
  const opt = await ua.request({ method: 'OPTIONS', uri: 'sip:127.0.0.1' });
  assert.equal(opt.status, 200, 'node still answers OPTIONS');
  const p = uniqueUri('alive');
  await publishOpen(ua, p);
  const exited = await Promise.race([n.exited.then(() => true), new Promise<boolean>((r) => setImmediate(() => r(false)))]);
  assert.equal(exited, false, 'node process still running');
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] PUBLISH with an unknown Event → 489 with Allow-Events`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const res = await publish(ua, p, { event: 'no-such-package', body: pidf(p, 't1', 'open'), expires: 600 });
      assert.equal(res.status, 489);
      const allow = res.headers.get('allow-events') ?? '';
      assert.match(allow, /\bpresence\b/, `Allow-Events lists presence (got "${allow}")`);
      const none = await publish(ua, p, { event: '', body: pidf(p, 't1', 'open'), expires: 600 });
      assert.equal(none.status, 489, 'an empty Event is no package either');
    }));

  test(`[${proto}] SIP-If-Match naming no publication → 412, whatever its format`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const other = uniqueUri();
      const otherTag = await publishOpen(ua, other);
      const ownTag = await publishOpen(ua, p);
      for (const etag of ['garbage!!', '12345', 'AAAAAAAAAAAAAAAAAAAAAA', ownTag + 'x', otherTag]) {
        const refresh = await publish(ua, p, { etag, expires: 600 });
        assert.equal(refresh.status, 412, `refresh with SIP-If-Match "${etag}" → ${refresh.status} ${refresh.reason}`);
        const modify = await publish(ua, p, { etag, expires: 600, body: pidf(p, 't1', 'closed') });
        assert.equal(modify.status, 412, `modify with SIP-If-Match "${etag}" → ${modify.status} ${modify.reason}`);
        const remove = await publish(ua, p, { etag, expires: 0 });
        assert.equal(remove.status, 412, `remove with SIP-If-Match "${etag}" → ${remove.status} ${remove.reason}`);
      }
    }));

  test(`[${proto}] SIP-If-Match with more than one entity-tag → 400, the publication untouched (RFC 3903 §6 step 3)`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const etag = await publishOpen(ua, p);
      const listed = await publish(ua, p, { etag: `${etag}, other`, expires: 600 });
      assert.equal(listed.status, 400, `a list in one header: ${listed.status} ${listed.reason}`);
      const rows = await publish(ua, p, { etag, expires: 600, headers: [['sip-if-match', 'other']] });
      assert.equal(rows.status, 400, `two header rows: ${rows.status} ${rows.reason}`);
      const refresh = await publish(ua, p, { etag, expires: 600 });
      assert.equal(refresh.status, 200, 'the entity-tag was not consumed by the invalid requests');
    }));

  test(`[${proto}] the Expires check (423) comes before the body check (400): RFC 3903 §6 steps 4 and 5`, () =>
    withUa(node, proto, async (ua) => {
      const res = await publish(ua, uniqueUri(), { expires: 5 });
      assert.equal(res.status, 423, `no body and Expires under min_expires: ${res.status} ${res.reason}`);
      assert.equal(res.headers.get('min-expires'), '60');
    }));

  test(`[${proto}] a body that is not valid UTF-8 → 400, nothing stored or rewritten (XML 1.0 §4.3.3)`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      for (const bad of [
        [0xff, 0xfe],
        [0xc3, 0x28],
        [0xed, 0xa0, 0x80],
      ]) {
        const [head, tail] = pidf(p, 't1', 'open', 'MARK').split('MARK') as [string, string];
        const req = ua.build({
          method: 'PUBLISH',
          uri: p,
          to: `<${p}>`,
          from: `<${p}>;tag=u8`,
          headers: [
            ['event', 'presence'],
            ['expires', '600'],
          ],
        });
        req.headers.append('content-type', 'application/pidf+xml');
        req.body = Buffer.concat([Buffer.from(head), Buffer.from(bad), Buffer.from(tail)]);
        const res = await ua.request(req);
        assert.equal(res.status, 400, `bytes ${bad.map((b) => b.toString(16)).join(' ')}: ${res.status} ${res.reason}`);
        assert.match(res.reason, /UTF-8/);
      }
      const { first } = await watch(ua, p);
      assert.equal(tuplesOf(bodyOf(first)).length, 0, 'nothing was stored');
    }));

  test(`[${proto}] initial PUBLISH without a body → 400`, () =>
    withUa(node, proto, async (ua) => {
      const res = await publish(ua, uniqueUri(), { expires: 600 });
      assert.equal(res.status, 400);
    }));

  test(`[${proto}] PUBLISH with a Content-Type the package does not take → 415 with Accept`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const res = await publish(ua, p, { body: 'I am here', contentType: 'text/plain', expires: 600 });
      assert.equal(res.status, 415);
      assert.match(res.headers.get('accept') ?? '', /application\/pidf\+xml/);
      const noType = await ua.request({
        method: 'PUBLISH',
        uri: p,
        to: `<${p}>`,
        from: `<${p}>;tag=nt`,
        headers: [
          ['event', 'presence'],
          ['expires', '600'],
        ],
        body: pidf(p, 't1', 'open'),
      });
      assert.equal(noType.status, 415, 'a body without Content-Type is not acceptable either');
    }));

  test(`[${proto}] malformed or invalid PIDF → 400 with a reason; the node stays up`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const deep = '<a>'.repeat(200) + '</a>'.repeat(200);
      const bodies: Record<string, string> = {
        'not well-formed': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a">`,
        'not XML at all': 'hello, world',
        'wrong root': `<?xml version="1.0"?><status xmlns="urn:ietf:params:xml:ns:pidf"><basic>open</basic></status>`,
        'wrong namespace': `<?xml version="1.0"?><presence xmlns="urn:example:not-pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`,
        'no namespace': `<?xml version="1.0"?><presence entity="${p}"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`,
        'no entity': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`,
        'tuple without id': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status></tuple><tuple><status><basic>open</basic></status></tuple></presence>`,
        'tuple without status': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status></tuple><tuple id="b"><note>x</note></tuple></presence>`,
        'status in another namespace': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><s:status xmlns:s="urn:example:x"><s:basic>open</s:basic></s:status></tuple></presence>`,
        'billion laughs (DTD)':
          '<?xml version="1.0"?>\n<!DOCTYPE presence [\n<!ENTITY lol "lol">\n' +
          Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`).join('\n') +
          `\n]>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status><note>&lol9;</note></tuple></presence>`,
        'external entity (XXE)':
          '<?xml version="1.0"?>\n<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n' +
          `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status><note>&xxe;</note></tuple></presence>`,
        'too deep': `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${p}"><tuple id="a"><status><basic>open</basic></status></tuple>${deep}</presence>`,
        'larger than max_xml_size': pidf(p, 'a', 'open', 'x'.repeat(5000)),
      };
      for (const [what, body] of Object.entries(bodies)) {
        const res = await publish(ua, p, { body, expires: 600 });
        assert.equal(res.status, 400, `${what}: ${res.status} ${res.reason}`);
        assert.ok(
          res.reason.trim().length > 0 && res.reason !== 'Bad Request',
          `${what}: the reason phrase says why (got "${res.reason}")`,
        );
        assert.doesNotMatch(res.reason, /[\r\n]/);
      }
      await assertAlive(ua, node);
      // Nothing of the refused bodies was stored: a watcher sees no open tuple.
      const { first } = await watch(ua, p);
      assert.equal(showsOpen(bodyOf(first)), false, 'refused publications leave no state');
    }));

  test(`[${proto}] refresh (SIP-If-Match, no body) → 200 with a new SIP-ETag; the old one → 412`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const first = await publishOpen(ua, p);
      const res = await publish(ua, p, { etag: first, expires: 600 });
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      const second = res.headers.get('sip-etag');
      assert.ok(second, 'refresh 2xx carries SIP-ETag');
      assert.notEqual(second, first, 'a refresh mints a new entity-tag (RFC 3903 §6 step 8)');
      assert.equal(res.headers.get('expires'), '600');
      assert.ok(second.length >= 16, `entity-tag should be unguessable, got "${second}"`);
      const stale = await publish(ua, p, { etag: first, expires: 600 });
      assert.equal(stale.status, 412, 'the replaced entity-tag is gone');
      const again = await publish(ua, p, { etag: second, expires: 600 });
      assert.equal(again.status, 200, 'the new entity-tag works');
    }));

  test(`[${proto}] modify with the very document already published → 200 with a new SIP-ETag, no NOTIFY (no state changed)`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const doc = pidf(p, 't1', 'open', 'same');
      const first = await publish(ua, p, { body: doc, expires: 600 });
      assert.equal(first.status, 200);
      const { dialog } = await watch(ua, p);
      const again = await publish(ua, p, { etag: first.headers.get('sip-etag')!, body: doc, expires: 600 });
      assert.equal(again.status, 200);
      assert.notEqual(again.headers.get('sip-etag'), first.headers.get('sip-etag'));
      await fetchBarrier(ua, p); // a NOTIFY the modify caused would be in before the fetch's
      // One CSeq: a UDP retransmission of the SUBSCRIBE's NOTIFY repeats it.
      const stray = new Set(
        ua.received
          .filter((r) => r.message instanceof SipRequest && r.message.method === 'NOTIFY' && r.message.callId === dialog.callId)
          .map((r) => (r.message as SipRequest).cseq.seq),
      );
      assert.equal(stray.size, 1, 'only the NOTIFY of the SUBSCRIBE');
      const changed = await publish(ua, p, { etag: again.headers.get('sip-etag')!, body: pidf(p, 't1', 'closed', 'same'), expires: 600 });
      assert.equal(changed.status, 200);
      await dialog.nextNotify(3000, (r) => /closed/.test(bodyOf(r)));
    }));

  test(`[${proto}] modify (SIP-If-Match + body) → watchers get the new state`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const etag = await publishOpen(ua, p, 't1', 'at my desk');
      const { dialog, first } = await watch(ua, p);
      assert.deepEqual(xpathTexts(bodyOf(first), '//p:note'), ['at my desk']);
      const res = await publish(ua, p, { etag, expires: 600, body: pidf(p, 't1', 'closed', 'gone home') });
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      const newTag = res.headers.get('sip-etag');
      assert.ok(newTag && newTag !== etag, 'modify mints a new entity-tag');
      const n = await dialog.nextNotify(3000, (r) => bodyOf(r).includes('gone home'));
      assert.deepEqual(tuplesOf(bodyOf(n)), [{ id: 't1', basic: 'closed' }], 'the modified tuple replaces the old one');
      assert.equal((await publish(ua, p, { etag, expires: 600 })).status, 412, 'the pre-modify tag is gone');
    }));

  test(`[${proto}] remove (Expires: 0 + SIP-If-Match) → 200, the tag → 412, watchers no longer see the tuple`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      await publishOpen(ua, p, 'stays');
      const gone = await publishOpen(ua, p, 'leaves');
      const { dialog, first } = await watch(ua, p);
      assert.deepEqual(
        tuplesOf(bodyOf(first))
          .map((t) => t.id)
          .sort(),
        ['leaves', 'stays'],
      );
      const res = await publish(ua, p, { etag: gone, expires: 0 });
      assert.equal(res.status, 200, `${res.status} ${res.reason}`);
      // §6 step 6: Expires and SIP-ETag in the 2xx; the tag is the one removed.
      assert.equal(res.headers.get('expires'), '0');
      assert.equal(res.headers.get('sip-etag'), gone);
      const n = await dialog.nextNotify(3000, (r) => !bodyOf(r).includes('leaves'));
      assert.deepEqual(tuplesOf(bodyOf(n)), [{ id: 'stays', basic: 'open' }]);
      assert.equal((await publish(ua, p, { etag: gone, expires: 600 })).status, 412, 'a removed entity-tag no longer exists');
      assert.equal((await publish(ua, p, { etag: gone, expires: 0 })).status, 412, 'removing it twice is 412 too');

      // The last publication removed: the watcher's document no longer shows the presentity open.
      const single = uniqueUri();
      const tag = await publishOpen(ua, single, 'only');
      const w = await watch(ua, single);
      assert.equal(showsOpen(bodyOf(w.first)), true);
      assert.equal((await publish(ua, single, { etag: tag, expires: 0 })).status, 200);
      const last = await w.dialog.nextNotify(3000);
      assert.equal(showsOpen(bodyOf(last)), false, `after removal the document shows nothing open:\n${bodyOf(last)}`);
      assert.doesNotMatch(bodyOf(last), /"only"/);
    }));

  test(`[${proto}] two PUBLISHes racing with the same SIP-If-Match: one wins, the other → 412`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const etag = await publishOpen(ua, p, 'orig');
      // Both sent before either is answered: the entity-tag names one publication, consumed by the first (RFC 3903 §6 step 3).
      const [a, b] = await Promise.all([
        publish(ua, p, { etag, expires: 600, body: pidf(p, 'from-a', 'open') }),
        publish(ua, p, { etag, expires: 600, body: pidf(p, 'from-b', 'open') }),
      ]);
      assert.deepEqual([a.status, b.status].sort(), [200, 412], `modify race: ${a.status} ${a.reason} / ${b.status} ${b.reason}`);
      const { first } = await watch(ua, p);
      assert.equal(tuplesOf(bodyOf(first)).length, 1, `one publication left, not two:\n${bodyOf(first)}`);

      const winner = (a.status === 200 ? a : b).headers.get('sip-etag')!;
      const [c, d] = await Promise.all([publish(ua, p, { etag: winner, expires: 600 }), publish(ua, p, { etag: winner, expires: 600 })]);
      assert.deepEqual([c.status, d.status].sort(), [200, 412], `refresh race: ${c.status} / ${d.status}`);
    }));

  test(`[${proto}] Expires below min_expires → 423 with Min-Expires`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const res = await publish(ua, p, { body: pidf(p, 't1', 'open'), expires: 30 });
      assert.equal(res.status, 423);
      assert.equal(res.headers.get('min-expires'), '60');
      const etag = await publishOpen(ua, p);
      const refresh = await publish(ua, p, { etag, expires: 1 });
      assert.equal(refresh.status, 423, 'a too brief refresh is refused too');
      assert.equal(refresh.headers.get('min-expires'), '60');
    }));

  test(`[${proto}] Expires over max_expires is shortened; missing Expires → default_expires`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const long = await publish(ua, p, { body: pidf(p, 't1', 'open'), expires: 100_000 });
      assert.equal(long.status, 200);
      assert.equal(long.headers.get('expires'), '3600', 'shortened to max_expires');
      const q = uniqueUri();
      const none = await publish(ua, q, { body: pidf(q, 't1', 'open') });
      assert.equal(none.status, 200);
      assert.equal(none.headers.get('expires'), '1800', 'default_expires');
      const refresh = await publish(ua, q, { etag: none.headers.get('sip-etag')! });
      assert.equal(refresh.status, 200);
      assert.equal(refresh.headers.get('expires'), '1800', 'a refresh without Expires gets default_expires too');
    }));
}

describe('publications expire on their own', { concurrency: true }, () => {
  for (const proto of ['udp', 'tcp'] as const) {
    test(`[${proto}] a publication of 2 s expires and watchers are notified`, () =>
      withUa(quick, proto, async (ua) => {
        const p = uniqueUri('soft');
        const res = await publish(ua, p, { body: pidfDoc(p, [{ id: 'brief', basic: 'open' }]), expires: 2 });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('expires'), '2');
        const etag = res.headers.get('sip-etag')!;
        const publishedAt = Date.now();
        const { dialog, first } = await watch(ua, p);
        assert.equal(showsOpen(bodyOf(first)), true, 'open while the publication lives');
        const n = await dialog.nextNotify(5000, (r) => !showsOpen(bodyOf(r)));
        const after = Date.now() - publishedAt;
        assert.ok(after >= 1500, `expired too early (${after} ms)`);
        assert.doesNotMatch(bodyOf(n), /"brief"/, 'the expired tuple is gone from the document');
        assert.equal((await publish(ua, p, { etag, expires: 60 })).status, 412, 'an expired entity-tag no longer exists');
      }));
  }
});
