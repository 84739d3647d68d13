/**
 * PIDF composition end to end (RFC 3863, RFC 4479, RFC 4480; issue 4): every live
 * publication of a presentity in one NOTIFY body, newest first, with RFC 4479 person and
 * device elements and RPID extensions kept in their namespaces; nothing false when nothing
 * is published, and the seed's dummy document with force_dummy_presence = 1.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import type { TestUa } from '../support/sip-ua.js';
import {
  pidfDoc,
  publish,
  watch,
  openUa,
  uniqueUri,
  tuplesOf,
  showsOpen,
  bodyOf,
  withXml,
  xpathTexts,
  XPATH_NS,
  DM_NS,
  RPID_NS,
  PIDF_NS,
  withUa,
} from '../support/presence.js';

let node: RunningNode;
let dummy: RunningNode;
before(async () => {
  [node, dummy] = await Promise.all([
    startNode({ force_active: 1, sip_t1: 50 }),
    startNode({ force_active: 1, force_dummy_presence: 1, sip_t1: 50 }),
  ]);
});
after(async () => {
  await Promise.all([node?.stop(), dummy?.stop()]);
});

async function publishBody(ua: TestUa, presentity: string, body: string, etag?: string): Promise<string> {
  const res = await publish(ua, presentity, { body, expires: 600, etag });
  assert.equal(res.status, 200, `PUBLISH: ${res.status} ${res.reason}`);
  return res.headers.get('sip-etag')!;
}

/** RFC 4479 §3 person + device, with an RFC 4480 activity, in their own prefixes. */
function richDoc(entity: string): string {
  return pidfDoc(
    entity,
    [{ id: 'pc', basic: 'open', note: 'laptop' }],
    `<dm:person id="me"><rp:activities><rp:meeting/></rp:activities><dm:note>in a meeting</dm:note></dm:person>` +
      `<dm:device id="dev1"><dm:deviceID>urn:uuid:d27459b7-8213-4395-aa77-ed859a3e5b3a</dm:deviceID></dm:device>`,
    { dm: DM_NS, rp: RPID_NS },
  );
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] two publishers → one NOTIFY body with both tuples, newest publication first`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const phone = await openUa(node, proto);
      try {
        await publishBody(ua, p, pidfDoc(p, [{ id: 'desk', basic: 'closed', note: 'desk phone' }]));
        await publishBody(phone, p, pidfDoc(p, [{ id: 'mobile', basic: 'open', note: 'mobile' }]));
        const { first } = await watch(ua, p);
        assert.equal(first.contentType, 'application/pidf+xml');
        const body = bodyOf(first);
        withXml(body, (doc) => {
          assert.equal(doc.root.name, 'presence');
          assert.equal(doc.root.namespaceUri, PIDF_NS);
          assert.equal(doc.root.attr('entity')?.value, p, 'entity is the presentity');
        });
        assert.deepEqual(
          tuplesOf(body),
          [
            { id: 'mobile', basic: 'open' },
            { id: 'desk', basic: 'closed' },
          ],
          `both tuples, newest publication first:\n${body}`,
        );
      } finally {
        await phone.close();
      }
    }));

  test(`[${proto}] a change to one publication keeps the other publisher's tuple in the NOTIFY`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const a = await publishBody(ua, p, pidfDoc(p, [{ id: 'a', basic: 'open' }]));
      await publishBody(ua, p, pidfDoc(p, [{ id: 'b', basic: 'open' }]));
      const { dialog } = await watch(ua, p);
      await publishBody(ua, p, pidfDoc(p, [{ id: 'a', basic: 'closed', note: 'changed' }]), a);
      const n = await dialog.nextNotify(3000, (r) => bodyOf(r).includes('changed'));
      assert.deepEqual(
        tuplesOf(bodyOf(n)),
        [
          { id: 'a', basic: 'closed' },
          { id: 'b', basic: 'open' },
        ],
        'the modified publication is now the newest; the other one is kept',
      );
    }));

  test(`[${proto}] RFC 4479 person/device and RPID activities are kept with their namespaces`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      await publishBody(ua, p, richDoc(p));
      const { first } = await watch(ua, p);
      const body = bodyOf(first);
      assert.deepEqual(xpathTexts(body, '/p:presence/p:tuple/@id'), ['pc']);
      assert.deepEqual(xpathTexts(body, '/p:presence/dm:person/@id'), ['me'], `person in ${DM_NS}:\n${body}`);
      assert.equal(
        xpathTexts(body, '/p:presence/dm:person/rpid:activities/rpid:meeting').length,
        1,
        'rpid:meeting kept in the RPID namespace',
      );
      assert.deepEqual(xpathTexts(body, '/p:presence/dm:person/dm:note'), ['in a meeting']);
      assert.deepEqual(xpathTexts(body, '/p:presence/dm:device/dm:deviceID'), ['urn:uuid:d27459b7-8213-4395-aa77-ed859a3e5b3a']);
      // Every element sits in a namespace the document declares (no stray or lost prefix).
      withXml(body, (doc) => {
        const unqualified = doc.find('//*[namespace-uri() = ""]', XPATH_NS);
        assert.equal(unqualified.length, 0, 'no element lost its namespace');
      });
    }));

  test(`[${proto}] two publishers with person elements: both composed, each in its namespace`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      await publishBody(ua, p, richDoc(p));
      await publishBody(
        ua,
        p,
        pidfDoc(
          p,
          [{ id: 'phone', basic: 'open' }],
          `<person xmlns="${DM_NS}" id="me2"><activities xmlns="${RPID_NS}"><on-the-phone/></activities></person>`,
        ),
      );
      const { first } = await watch(ua, p);
      const body = bodyOf(first);
      assert.deepEqual(xpathTexts(body, '/p:presence/p:tuple/@id'), ['phone', 'pc']);
      assert.deepEqual(xpathTexts(body, '/p:presence/dm:person/@id').sort(), ['me', 'me2']);
      assert.equal(xpathTexts(body, '//rpid:on-the-phone').length, 1);
      assert.equal(xpathTexts(body, '//rpid:meeting').length, 1);
    }));

  test(`[${proto}] nothing published → the NOTIFY says nothing open`, () =>
    withUa(node, proto, async (ua) => {
      const p = uniqueUri();
      const { first } = await watch(ua, p);
      const body = bodyOf(first);
      assert.doesNotMatch(body, /open/, `no "open" when nothing is published:\n${body}`);
      assert.equal(showsOpen(body), false);
    }));

  test(`[${proto}] force_dummy_presence = 1, nothing published → a body with basic open`, () =>
    withUa(dummy, proto, async (ua) => {
      const p = uniqueUri();
      const { first } = await watch(ua, p);
      const body = bodyOf(first);
      assert.equal(first.contentType, 'application/pidf+xml');
      assert.ok(
        tuplesOf(body).some((t) => t.basic === 'open'),
        `dummy document shows open:\n${body}`,
      );
      withXml(body, (doc) => assert.equal(doc.root.attr('entity')?.value, p));
      // Once something is published, the real state replaces the dummy.
      await publishBody(ua, p, pidfDoc(p, [{ id: 'real', basic: 'closed' }]));
      const { first: second } = await watch(ua, p);
      assert.deepEqual(tuplesOf(bodyOf(second)), [{ id: 'real', basic: 'closed' }]);
    }));
}
