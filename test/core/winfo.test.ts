import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { subscribe, subState, parseWinfo, subscribeWinfo, withUas, rules, putRules, bodyOf } from '../support/presence.js';

let node: RunningNode;
before(async () => {
  node = await startNode({ force_active: 0 });
});
after(async () => {
  await node.stop();
});

test('presence.winfo: own subscription allowed with a full list, later changes partial, version +1 per NOTIFY', async () => {
  const alice = 'sip:winfo-alice@example.com';
  const owner = await TestUa.open('udp', node.udpPort);
  const bobUa = await TestUa.open('udp', node.udpPort);
  const carolUa = await TestUa.open('tcp', node.tcpPort);
  try {
    // bob watches alice first: no rules → pending.
    const bob = await subscribe(bobUa, alice, { expires: 120 });
    assert.equal(bob.res.status, 200);
    const bobFirst = await bob.dialog.nextNotify();
    assert.match(subState(bobFirst), /^pending/);

    // alice subscribes to her own watcher info (From is her own AOR).
    const res = await owner.request({
      method: 'SUBSCRIBE',
      uri: alice,
      from: `<${alice}>;tag=own1`,
      to: `<${alice}>`,
      callId: 'winfo-own@test',
      headers: [
        ['event', 'presence.winfo'],
        ['expires', '120'],
        ['accept', 'application/watcherinfo+xml'],
      ],
    });
    assert.equal(res.status, 200);
    const n0 = await owner.nextRequest('NOTIFY', (r) => r.callId === 'winfo-own@test');
    assert.equal(n0.headers.get('content-type'), 'application/watcherinfo+xml');
    assert.match(subState(n0), /^active/);
    const d0 = parseWinfo(n0.body.toString());
    assert.equal(d0.state, 'full');
    assert.equal(d0.version, 0);
    assert.equal(d0.watchers.length, 1);
    assert.equal(d0.watchers[0]!.uri, bobUa.aor);
    assert.equal(d0.watchers[0]!.status, 'pending');
    assert.equal(d0.watchers[0]!.event, 'subscribe');

    // carol arrives: a partial NOTIFY with only carol, version 1.
    const carol = await subscribe(carolUa, alice, { expires: 120 });
    assert.equal(carol.res.status, 200);
    const n1 = await owner.nextRequest('NOTIFY', (r) => r.callId === 'winfo-own@test');
    const d1 = parseWinfo(n1.body.toString());
    assert.equal(d1.state, 'partial');
    assert.equal(d1.version, 1);
    assert.deepEqual(
      d1.watchers.map((w) => [w.uri, w.status]),
      [[carolUa.aor, 'pending']],
    );

    // bob, still pending, unsubscribes: his subscription times out before any policy was
    // made (RFC 3857 §4.7.1 pending → timeout → waiting; an unsubscribe is a refresh with
    // Expires 0, RFC 6665 §4.1.2.3), so alice can still approve or block him.
    const un = await bob.dialog.request(0);
    assert.equal(un.status, 200);
    const n2 = await owner.nextRequest('NOTIFY', (r) => r.callId === 'winfo-own@test');
    const d2 = parseWinfo(n2.body.toString());
    assert.equal(d2.version, 2);
    assert.equal(d2.watchers[0]!.uri, bobUa.aor);
    assert.equal(d2.watchers[0]!.status, 'waiting');
    assert.equal(d2.watchers[0]!.event, 'timeout');
    assert.equal(d2.watchers[0]!.id, d0.watchers[0]!.id, 'the same <watcher> as before');
  } finally {
    await owner.close();
    await bobUa.close();
    await carolUa.close();
  }
});

test('presence.winfo of its own presentity from a sips: From is the owner too (200)', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const own = 'sip:winfo-sips-owner@example.com';
    const { res } = await subscribeWinfo(ua, own, 'sips:winfo-sips-owner@example.com', 60);
    assert.equal(res.status, 200, `${res.status} ${res.reason}`);
  } finally {
    await ua.close();
  }
});

test("presence.winfo of someone else's presentity → 403", async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const { res } = await subscribe(ua, 'sip:winfo-other@example.com', { event: 'presence.winfo', expires: 60 });
    assert.equal(res.status, 403);
  } finally {
    await ua.close();
  }
});

test('presence.winfo for someone else: 403 without a rule, 200 and the full list once a winfo-handling allow rule is PUT, ended with xcapauth_userdel_reason when the rule goes', async () => {
  const alice = 'sip:winfo-shared@example.com';
  await withUas(node, 'udp', 4, async (bobUa, eveUa, malloryUa, aliceUa) => {
    const bob = await subscribe(bobUa, alice, { expires: 120 });
    assert.equal(bob.res.status, 200, 'bob watches alice (pending: no rule for him)');
    assert.equal((await subscribe(eveUa, alice, { event: 'presence.winfo', expires: 120 })).res.status, 403, 'no rules at all');

    // Everyone in example.com: block; eve: allow. Combined by maximum, eve gets it, mallory not.
    const both = rules([
      { id: 'domain', who: '<cr:many domain="example.com"/>', winfo: 'block' },
      { id: 'eve', who: `<cr:one id="${eveUa.aor}"/>`, winfo: 'allow' },
    ]);
    assert.ok([200, 201].includes(await putRules(node.xcapPort, alice, both)));
    const eve = await subscribe(eveUa, alice, { event: 'presence.winfo', expires: 120 });
    assert.equal(eve.res.status, 200);
    const n0 = await eve.dialog.nextNotify();
    assert.match(subState(n0), /^active/);
    assert.equal(n0.headers.get('content-type'), 'application/watcherinfo+xml');
    const d0 = parseWinfo(bodyOf(n0));
    assert.equal(d0.state, 'full');
    assert.deepEqual(
      d0.watchers.map((w) => [w.uri, w.status, w.event]),
      [[bobUa.aor, 'pending', 'subscribe']],
    );
    assert.equal(
      (await subscribe(malloryUa, alice, { event: 'presence.winfo', expires: 120 })).res.status,
      403,
      'a block rule grants nothing',
    );
    // The owner is always allowed, even when a rule matching her says block.
    assert.equal((await subscribeWinfo(aliceUa, alice, alice, 120)).res.status, 200);

    // The winfo grant is not a presence grant: eve's presence subscription is pending, and eve,
    // as a winfo subscriber, hears of it in a partial document.
    const evePresence = await subscribe(eveUa, alice, { expires: 120 });
    assert.match(subState(await evePresence.dialog.nextNotify()), /^pending/);
    const n1 = await eve.dialog.nextNotify();
    const d1 = parseWinfo(bodyOf(n1));
    assert.equal(d1.state, 'partial');
    assert.deepEqual(
      d1.watchers.map((w) => [w.uri, w.status]),
      [[eveUa.aor, 'pending']],
    );

    // The rule granting eve goes: her active winfo subscription ends like an allowed presence
    // watcher whose rule goes (xcapauth_userdel_reason, default probation).
    assert.equal(
      await putRules(node.xcapPort, alice, rules([{ id: 'domain', who: '<cr:many domain="example.com"/>', winfo: 'block' }])),
      200,
    );
    const end = await eve.dialog.nextNotify(5000, (r) => subState(r).startsWith('terminated'));
    assert.equal(subState(end), 'terminated;reason=probation');
    assert.equal((await eve.dialog.request(120)).status, 481, 'the subscription is gone');
    assert.equal((await subscribe(eveUa, alice, { event: 'presence.winfo', expires: 120 })).res.status, 403);
  });
});

test('disable_winfo = 1 → presence.winfo is a bad event (489)', async () => {
  const n2 = await startNode({ disable_winfo: 1 });
  const ua = await TestUa.open('udp', n2.udpPort);
  try {
    const { res } = await subscribe(ua, ua.aor, { event: 'presence.winfo', expires: 60 });
    assert.equal(res.status, 489);
    assert.doesNotMatch(res.headers.get('allow-events') ?? '', /presence\.winfo/);
  } finally {
    await ua.close();
    await n2.stop();
  }
});
