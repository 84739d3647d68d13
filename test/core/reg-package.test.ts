/**
 * `Event: reg` (RFC 3680) end to end over UDP, TCP and WebSocket: reginfo documents as
 * Kamailio's pua_reginfo PUBLISHes them, full-state NOTIFYs with a per-subscription version,
 * the registrations of several publications merged per address of record.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { JsSipClient, SubscriberEvents } from '../support/ws-client.js';
import { publish, watch, uniqueUri, parseSubState, bodyOf, withXml, withUa } from '../support/presence.js';
import { presentityShow, watcherList } from '../support/rpc.js';
import type { SipResponse } from '../../transport/message.js';

const REGINFO = 'application/reginfo+xml';
const REGINFO_NS = 'urn:ietf:params:xml:ns:reginfo';

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 0, sip_t1: 50, listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'] });
});
after(async () => {
  await node?.stop();
});

/** The shape of pua_reginfo's PUBLISH body: one registration, its contacts. */
function reginfo(
  aor: string,
  version: number,
  contacts: Array<{ id: string; uri: string; state: 'active' | 'terminated'; event: string }>,
): string {
  const regState = contacts.some((c) => c.state === 'active') ? 'active' : 'terminated';
  return (
    `<?xml version="1.0"?>\n<reginfo xmlns="${REGINFO_NS}" version="${version}" state="full">` +
    `<registration aor="${aor}" id="reg-${aor.length}" state="${regState}">` +
    contacts
      .map(
        (c) =>
          `<contact id="${c.id}" state="${c.state}" event="${c.event}" expires="${c.state === 'active' ? 600 : 0}"><uri>${c.uri}</uri></contact>`,
      )
      .join('') +
    `</registration></reginfo>`
  );
}

interface RegView {
  version: number;
  state: string;
  registrations: Array<{ aor: string; state: string; contacts: string[] }>;
}

function view(body: string): RegView {
  const root = withXml(body, (doc) => {
    assert.equal(doc.root.name, 'reginfo');
    assert.equal(doc.root.namespaceUri, REGINFO_NS);
    return { version: Number(doc.root.attr('version')?.value), state: doc.root.attr('state')?.value ?? '' };
  });
  const ns = { r: REGINFO_NS };
  const aors = withXml(body, (doc) => doc.find('/r:reginfo/r:registration/@aor', ns).map((n) => n.content));
  const registrations = aors.map((aor) => ({
    aor,
    state: withXml(body, (doc) => doc.find(`/r:reginfo/r:registration[@aor='${aor}']/@state`, ns)[0]?.content ?? ''),
    contacts: withXml(body, (doc) =>
      doc.find(`/r:reginfo/r:registration[@aor='${aor}']/r:contact`, ns).map((c) => {
        const uri = (c as unknown as { find(x: string, n: object): Array<{ content: string }> }).find('r:uri', ns)[0]?.content ?? '';
        const state = (c as unknown as { attr(n: string): { value: string } | null }).attr('state')?.value ?? '';
        return `${uri.trim()}:${state}`;
      }),
    ).sort(),
  }));
  return { ...root, registrations };
}

async function ok(p: Promise<SipResponse>): Promise<string> {
  const r = await p;
  assert.equal(r.status, 200, `${r.status} ${r.reason}`);
  return r.headers.get('sip-etag')!;
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] a registration, a second device, then expiry: full-state reginfo NOTIFYs, version +1 each, merged per aor`, () =>
    withUa(node, proto, async (ua) => {
      const aor = uniqueUri('reg');
      const { res, dialog, first } = await watch(ua, aor, { event: 'reg' });
      assert.equal(res.status, 200);
      assert.equal(parseSubState(first).state, 'active', 'no authorisation, as presence_reginfo');
      assert.equal(first.contentType, REGINFO);
      assert.match(first.headers.get('event') ?? '', /^reg\s*$/);
      assert.deepEqual(view(bodyOf(first)), { version: 0, state: 'full', registrations: [] });

      const deskTag = await ok(
        publish(ua, aor, {
          event: 'reg',
          contentType: REGINFO,
          expires: 600,
          body: reginfo(aor, 0, [{ id: 'c1', uri: 'sip:desk@192.0.2.1', state: 'active', event: 'registered' }]),
        }),
      );
      const n1 = view(bodyOf(await dialog.nextNotify()));
      assert.equal(n1.version, 1);
      assert.deepEqual(n1.registrations, [{ aor, state: 'active', contacts: ['sip:desk@192.0.2.1:active'] }]);

      // A second publisher (another registrar node, another pua_reginfo record) for the same aor.
      await ok(
        publish(ua, aor, {
          event: 'reg',
          contentType: REGINFO,
          expires: 600,
          body: reginfo(aor, 0, [{ id: 'c2', uri: 'sip:mobile@192.0.2.2', state: 'active', event: 'registered' }]),
        }),
      );
      const n2 = view(bodyOf(await dialog.nextNotify()));
      assert.equal(n2.version, 2);
      assert.deepEqual(
        n2.registrations,
        [{ aor, state: 'active', contacts: ['sip:desk@192.0.2.1:active', 'sip:mobile@192.0.2.2:active'] }],
        'one <registration> per aor',
      );

      // The desk phone's contact expires (pua_reginfo: state terminated, event expired).
      await ok(
        publish(ua, aor, {
          event: 'reg',
          etag: deskTag,
          contentType: REGINFO,
          expires: 600,
          body: reginfo(aor, 1, [{ id: 'c1', uri: 'sip:desk@192.0.2.1', state: 'terminated', event: 'expired' }]),
        }),
      );
      const n3 = view(bodyOf(await dialog.nextNotify()));
      assert.equal(n3.version, 3);
      assert.deepEqual(n3.registrations[0]!.contacts, ['sip:desk@192.0.2.1:terminated', 'sip:mobile@192.0.2.2:active']);
      assert.equal(n3.registrations[0]!.state, 'active', 'active while a contact is');

      const other = await watch(ua, aor, { event: 'reg' });
      assert.equal(view(bodyOf(other.first)).version, 0, 'versions count per subscription');

      assert.equal((await presentityShow(node.rpcPort, aor, 'reg')).length, 2);
      assert.equal((await watcherList(node.rpcPort, aor, 'reg')).length, 2);
    }));

  test(`[${proto}] a PUBLISH whose body is not reginfo → 400`, () =>
    withUa(node, proto, async (ua) => {
      const aor = uniqueUri('reg');
      const bad = await publish(ua, aor, {
        event: 'reg',
        contentType: REGINFO,
        body: `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"/>`,
      });
      assert.equal(bad.status, 400);
    }));
}

test('[ws] a JsSIP watcher over WebSocket sees a registration published over WebSocket', async () => {
  const aor = uniqueUri('reg');
  const watcher = await JsSipClient.connect(node.wsPort, 'sip:reg-ws@example.com');
  const registrar = await JsSipClient.connect(node.wsPort, aor);
  try {
    const sub = watcher.subscriber(aor, 'reg', REGINFO, 600);
    const ev = new SubscriberEvents(sub);
    sub.subscribe();
    const n0 = await ev.nextNotify();
    assert.deepEqual(view(n0.body).registrations, []);
    const r = await registrar.publish(aor, {
      event: 'reg',
      contentType: REGINFO,
      expires: 60,
      body: reginfo(aor, 0, [{ id: 'w', uri: 'sip:web@192.0.2.3', state: 'active', event: 'registered' }]),
    });
    assert.equal(r.status, 200);
    const n1 = await ev.nextNotify((b) => b.includes('web@'));
    assert.equal(view(n1.body).version, 1);
    assert.deepEqual(view(n1.body).registrations[0]!.contacts, ['sip:web@192.0.2.3:active']);
    sub.terminate();
    await ev.next('terminated');
  } finally {
    await Promise.all([watcher.stop(), registrar.stop()]);
  }
});
