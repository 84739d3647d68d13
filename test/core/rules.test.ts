import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { pidf, publish, subscribe, subState, rules, putRules } from '../support/presence.js';

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 0 });
});
after(async () => {
  await node.stop();
});

test('no rules → pending without body; a rules PUT re-evaluates by itself: allow → active with state; block → terminated/rejected; rule gone → xcapauth_userdel_reason', async () => {
  const pres = 'sip:rules-alice@example.com';
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    assert.equal((await publish(ua, pres, { body: pidf(pres, 't1', 'open', 'hello'), expires: 120 })).status, 200);
    const { res, dialog } = await subscribe(ua, pres, { expires: 120 });
    assert.equal(res.status, 200);
    const n0 = await dialog.nextNotify();
    assert.match(subState(n0), /^pending/);
    assert.equal(n0.body.length, 0, 'a pending watcher gets no state');

    assert.ok(
      [200, 201].includes(await putRules(node.xcapPort, pres, rules([{ id: 'a', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]))),
    );
    const n1 = await dialog.nextNotify();
    assert.match(subState(n1), /^active/);
    assert.match(n1.body.toString(), /<basic>open<\/basic>/);
    assert.match(n1.body.toString(), /hello/, 'no transformations: the whole document');

    // A rule that now blocks: RFC 6665 §4.2.2 "rejected" (Kamailio's xcap_auth says the same).
    assert.equal(await putRules(node.xcapPort, pres, rules([{ id: 'a', who: `<cr:one id="${ua.aor}"/>`, handling: 'block' }])), 200);
    const n2 = await dialog.nextNotify();
    assert.equal(subState(n2), 'terminated;reason=rejected');

    // An allowed watcher whose rule is no longer there: the seed's xcapauth_userdel_reason (probation).
    assert.equal(await putRules(node.xcapPort, pres, rules([{ id: 'a', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }])), 200);
    const again = await subscribe(ua, pres, { expires: 120 });
    assert.match(subState(await again.dialog.nextNotify()), /^active/);
    assert.equal(
      await putRules(node.xcapPort, pres, rules([{ id: 'b', who: '<cr:one id="sip:someone-else@example.com"/>', handling: 'allow' }])),
      200,
    );
    assert.equal(subState(await again.dialog.nextNotify()), 'terminated;reason=probation');
  } finally {
    await ua.close();
  }
});

test('polite-block: active, with a document that shows nothing real; transformations hide a note; many domain=', async () => {
  const pres = 'sip:rules-bob@example.com';
  const ua = await TestUa.open('udp', node.udpPort);
  const other = await TestUa.open('tcp', node.tcpPort);
  try {
    assert.equal((await publish(ua, pres, { body: pidf(pres, 'real', 'open', 'secret note'), expires: 120 })).status, 200);
    await putRules(
      node.xcapPort,
      pres,
      rules([
        { id: 'polite', who: `<cr:one id="${ua.aor}"/>`, handling: 'polite-block' },
        {
          id: 'domain',
          who: '<cr:many domain="example.com"/>',
          handling: 'allow',
          transformations: '<pr:provide-services><pr:all-services/></pr:provide-services>',
        },
      ]),
    );
    // ua matches both rules: allow wins (maximum), with the transformation → no note.
    const viaBoth = await subscribe(ua, pres, { expires: 60 });
    const b0 = await viaBoth.dialog.nextNotify();
    assert.match(subState(b0), /^active/);
    assert.match(b0.body.toString(), /id="real"/);
    assert.doesNotMatch(b0.body.toString(), /secret note/);

    // Only the polite-block rule for a watcher outside example.com.
    await putRules(node.xcapPort, pres, rules([{ id: 'polite', who: '<cr:many domain="other.org"/>', handling: 'polite-block' }]));
    const res = await other.request({
      method: 'SUBSCRIBE',
      uri: pres,
      from: `<sip:eve@other.org>;tag=pb1`,
      to: `<${pres}>`,
      callId: 'polite@test',
      headers: [
        ['event', 'presence'],
        ['expires', '60'],
      ],
    });
    assert.equal(res.status, 200);
    const p0 = await other.nextRequest('NOTIFY', (r) => r.callId === 'polite@test');
    assert.match(subState(p0), /^active/);
    assert.doesNotMatch(p0.body.toString(), /id="real"|<basic>open/, 'nothing real is shown');
    assert.match(p0.body.toString(), /<basic>closed<\/basic>/);
  } finally {
    await ua.close();
    await other.close();
  }
});

test('xcap_client mode: a node with integrated_xcap_server 0 takes its rules from another node’s XCAP server', async () => {
  const pres = 'sip:rules-carol@example.com';
  const client = await startNode({
    force_active: 0,
    integrated_xcap_server: 0,
    xcap_server: [`http://127.0.0.1:${node.xcapPort}/xcap-root`],
  });
  const ua = await TestUa.open('udp', client.udpPort);
  try {
    assert.equal(client.xcapPort, 0, 'the embedded XCAP server is off');
    await putRules(node.xcapPort, pres, rules([{ id: 'a', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }]));
    const { dialog } = await subscribe(ua, pres, { expires: 60 });
    const n0 = await dialog.nextNotify();
    assert.match(subState(n0), /^active/, 'rules fetched from the xcap_server');
  } finally {
    await ua.close();
    await client.stop();
  }
});
