/**
 * The resource list server end to end (RFC 4662 over RFC 4826), the lead's own cases: a list of
 * local resources over UDP, its first full-state NOTIFY and a partial one, the 421 without
 * eventlist, and the list's change through XCAP. (test/rls/ has the suite from the RFC's text.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { publish, pidf, subscribe, subState } from '../support/presence.js';
import { Xcap, CT, NS } from '../support/xcap-http.js';
import type { SipRequest } from '../../transport/message.js';

let node: RunningNode;
let xcap: Xcap;
before(async () => {
  node = await startNode({ force_active: 1, waitn_time: 0 });
  xcap = new Xcap(node.xcapPort);
});
after(async () => {
  await node.stop();
});

function rlsDoc(services: Record<string, string[]>): string {
  let x = `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rls}" xmlns:rl="${NS.rl}">\n`;
  for (const [uri, entries] of Object.entries(services)) {
    x += `<service uri="${uri}"><list name="l">${entries.map((e) => `<rl:entry uri="${e}"/>`).join('')}</list><packages><package>presence</package></packages></service>\n`;
  }
  return x + '</rls-services>\n';
}

interface Part {
  headers: Map<string, string>;
  body: string;
}

/** Split a multipart/related body by the boundary of its Content-Type (RFC 2046 §5.1.1). */
function parts(n: SipRequest): { start: string; parts: Part[] } {
  const ct = n.headers.get('content-type') ?? '';
  const boundary = /boundary="?([^";]+)"?/.exec(ct)?.[1];
  const start = /start="?<([^">]+)>"?/.exec(ct)?.[1] ?? '';
  assert.ok(boundary, `no boundary in ${ct}`);
  const text = n.body.toString('utf8');
  assert.ok(text.endsWith(`--${boundary}--\r\n`), 'closing delimiter');
  const chunks = text
    .slice(0, text.lastIndexOf(`\r\n--${boundary}--`))
    .split(`--${boundary}\r\n`)
    .slice(1);
  return {
    start,
    parts: chunks.map((c) => {
      const end = c.indexOf('\r\n\r\n');
      const headers = new Map<string, string>();
      for (const line of c.slice(0, end).split('\r\n')) {
        const i = line.indexOf(':');
        headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
      }
      return { headers, body: c.slice(end + 4).replace(/\r\n$/, '') };
    }),
  };
}

function rlmi(n: SipRequest): {
  version: number;
  fullState: boolean;
  resources: Array<{ uri: string; state?: string; cid?: string }>;
  parts: Part[];
} {
  const p = parts(n);
  const root = p.parts.find((x) => x.headers.get('content-id') === `<${p.start}>`);
  assert.ok(root, 'root part named by start');
  assert.match(root.headers.get('content-type') ?? '', /^application\/rlmi\+xml/);
  const list = /<list [^>]*>/.exec(root.body)![0];
  const resources = [...root.body.matchAll(/<resource uri="([^"]+)">([\s\S]*?)<\/resource>/g)].map((m) => {
    const inst = /<instance [^>]*>/.exec(m[2]!)?.[0] ?? '';
    return { uri: m[1]!, state: /state="([^"]+)"/.exec(inst)?.[1], cid: /cid="([^"]+)"/.exec(inst)?.[1] };
  });
  return {
    version: Number(/version="(\d+)"/.exec(list)![1]),
    fullState: /fullState="true"/.test(list),
    resources,
    parts: p.parts,
  };
}

test('a list of local resources: 200, full state with each resource, then partial state naming only what changed', async () => {
  const owner = 'sip:rls-owner@example.com';
  const service = 'sip:rls-buddies@example.com';
  const alice = 'sip:rls-alice@example.com';
  const bob = 'sip:rls-bob@example.com';
  const put = await xcap.put(`/rls-services/users/${owner}/index`, rlsDoc({ [service]: [alice, bob] }), CT.rlsServices);
  assert.equal(put.status, 201, put.text);
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    assert.equal((await publish(ua, alice, { body: pidf(alice, 'a1', 'open') })).status, 200);

    const no = await subscribe(ua, service, { expires: 300 });
    assert.equal(no.res.status, 421);
    assert.equal(no.res.headers.get('require'), 'eventlist');

    const s = await subscribe(ua, service, {
      expires: 300,
      headers: [
        ['supported', 'eventlist'],
        ['accept', 'application/pidf+xml, application/rlmi+xml, multipart/related'],
      ],
    });
    assert.equal(s.res.status, 200);
    const n0 = await s.dialog.nextNotify();
    assert.equal(n0.headers.get('require'), 'eventlist');
    assert.match(subState(n0), /^active/);
    const d0 = rlmi(n0);
    assert.equal(d0.version, 0);
    assert.equal(d0.fullState, true);
    assert.deepEqual(
      d0.resources.map((r) => r.uri),
      [alice, bob],
    );
    const a = d0.resources[0]!;
    assert.equal(a.state, 'active');
    const aPart = d0.parts.find((p) => p.headers.get('content-id') === `<${a.cid}>`);
    assert.ok(aPart, 'the cid names a part');
    assert.match(aPart.body, /<basic>open<\/basic>/);

    assert.equal((await publish(ua, bob, { body: pidf(bob, 'b1', 'closed') })).status, 200);
    const n1 = await s.dialog.nextNotify();
    const d1 = rlmi(n1);
    assert.equal(d1.version, 1);
    assert.equal(d1.fullState, false);
    assert.deepEqual(
      d1.resources.map((r) => r.uri),
      [bob],
    );

    // The list changes through XCAP: a full-state NOTIFY with the new member.
    const carol = 'sip:rls-carol@example.com';
    assert.equal(
      (await xcap.put(`/rls-services/users/${owner}/index`, rlsDoc({ [service]: [alice, bob, carol] }), CT.rlsServices)).status,
      200,
    );
    const n2 = await s.dialog.nextNotify();
    const d2 = rlmi(n2);
    assert.equal(d2.fullState, true);
    assert.equal(d2.version, 2);
    assert.deepEqual(
      d2.resources.map((r) => r.uri),
      [alice, bob, carol],
    );

    // Unsubscribe: 200 and a final NOTIFY.
    const un = await s.dialog.request(0);
    assert.equal(un.status, 200);
    const n3 = await s.dialog.nextNotify();
    assert.match(subState(n3), /^terminated/);
  } finally {
    await ua.close();
  }
});
