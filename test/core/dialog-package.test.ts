/**
 * `Event: dialog` (RFC 4235, the busy-lamp field) end to end over UDP, TCP and WebSocket:
 * full-state dialog-info NOTIFYs with a per-subscription version, every publication's dialogs
 * in one document, terminated dialogs notified once and then gone, PUBLISHes racing the
 * hang-up (pua_dialoginfo's early arriving after terminated) unable to light the lamp again,
 * presence_dialoginfo's force_single_dialog / force_dummy_dialog, dialog_authorization,
 * OPTIONS Allow-Events, presence.presentity_show / presence.watcher_list and /metrics.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { JsSipClient, SubscriberEvents } from '../support/ws-client.js';
import {
  publish,
  watch,
  subscribe,
  rules,
  putRules,
  uniqueUri,
  parseSubState,
  bodyOf,
  withXml,
  xpathTexts,
  withUa,
  DIALOG_INFO_NS,
  type Dialog,
} from '../support/presence.js';
import { presentityShow, watcherList } from '../support/rpc.js';
import { GoneDialogs } from '../../core/packages/dialog.js';
import type { SipRequest } from '../../transport/message.js';

const DIALOG_INFO = 'application/dialog-info+xml';

let node: RunningNode;
let single: RunningNode;
let authorised: RunningNode;
before(async () => {
  [node, single, authorised] = await Promise.all([
    startNode({ force_active: 0, sip_t1: 50, listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'] }),
    startNode({ force_single_dialog: 1, force_dummy_dialog: 1, disable_reg: 1, sip_t1: 50 }),
    startNode({ force_active: 0, dialog_authorization: 1, sip_t1: 50 }),
  ]);
});
after(async () => {
  await Promise.all([node?.stop(), single?.stop(), authorised?.stop()]);
});

/** What pua_dialoginfo PUBLISHes for one call: one dialog, the document version counting per dialog. */
function dialogDoc(entity: string, id: string, state: string, version: number, direction = 'recipient'): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" version="${version}" state="full" entity="${entity}">` +
    `<dialog id="${id}" call-id="call-${id}" local-tag="lt-${id}" remote-tag="rt-${id}" direction="${direction}"><state>${state}</state>` +
    `<remote><identity>sip:caller@example.com</identity></remote></dialog></dialog-info>`
  );
}

interface Shown {
  version: number;
  entity: string;
  state: string;
  dialogs: Array<{ id: string; state: string }>;
}

function shown(body: string): Shown {
  const root = withXml(body, (doc) => {
    assert.equal(doc.root.name, 'dialog-info');
    assert.equal(doc.root.namespaceUri, DIALOG_INFO_NS);
    return {
      version: Number(doc.root.attr('version')?.value),
      entity: doc.root.attr('entity')?.value ?? '',
      state: doc.root.attr('state')?.value ?? '',
    };
  });
  const ids = xpathTexts(body, '/d:dialog-info/d:dialog/@id');
  const states = xpathTexts(body, '/d:dialog-info/d:dialog/d:state');
  return { ...root, dialogs: ids.map((id, i) => ({ id, state: states[i] ?? '' })) };
}

const pub = (ua: TestUa, uri: string, body: string, o: { etag?: string; expires?: number } = {}) =>
  publish(ua, uri, { event: 'dialog', body, contentType: DIALOG_INFO, expires: o.expires ?? 600, etag: o.etag });

async function ok(p: Promise<import('../../transport/message.js').SipResponse>): Promise<string> {
  const r = await p;
  assert.equal(r.status, 200, `${r.status} ${r.reason}`);
  return r.headers.get('sip-etag')!;
}

/** The next NOTIFY of a dialog, parsed. */
async function next(d: Dialog): Promise<Shown & { raw: SipRequest }> {
  const n = await d.nextNotify(5000);
  assert.equal(n.contentType, DIALOG_INFO);
  assert.match(n.headers.get('event') ?? '', /^dialog\s*$/);
  return { ...shown(bodyOf(n)), raw: n };
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] an empty valid document first; a call rings, is answered and hangs up: early, confirmed, terminated, then no dialog, version +1 each`, () =>
    withUa(node, proto, async (ua) => {
      const ext = uniqueUri('ext');
      const { res, dialog, first } = await watch(ua, ext, { event: 'dialog' });
      assert.equal(res.status, 200);
      assert.equal(parseSubState(first).state, 'active', 'no authorisation by default, as presence_dialoginfo');
      const s0 = shown(bodyOf(first));
      assert.deepEqual(s0, { version: 0, entity: ext, state: 'full', dialogs: [] });

      const etag1 = await ok(pub(ua, ext, dialogDoc(ext, 'c1', 'early', 1)));
      const n1 = await next(dialog);
      assert.equal(n1.version, 1);
      assert.deepEqual(n1.dialogs, [{ id: 'c1', state: 'early' }]);
      const etag2 = await ok(pub(ua, ext, dialogDoc(ext, 'c1', 'confirmed', 2), { etag: etag1 }));
      const n2 = await next(dialog);
      assert.equal(n2.version, 2);
      assert.deepEqual(n2.dialogs, [{ id: 'c1', state: 'confirmed' }]);
      await ok(pub(ua, ext, dialogDoc(ext, 'c1', 'terminated', 3), { etag: etag2 }));
      const n3 = await next(dialog);
      assert.equal(n3.version, 3);
      assert.deepEqual(n3.dialogs, [{ id: 'c1', state: 'terminated' }], 'the hang-up is notified once');

      // The terminated dialog has left the state: a refresh shows no dialog, and so does a new watcher's first NOTIFY.
      assert.equal((await dialog.request(600)).status, 200);
      const n4 = await next(dialog);
      assert.equal(n4.version, 4);
      assert.deepEqual(n4.dialogs, [], 'no stuck lamp');
      const other = await watch(ua, ext, { event: 'dialog' });
      const o0 = shown(bodyOf(other.first));
      assert.equal(o0.version, 0, 'versions count per subscription');
      assert.deepEqual(o0.dialogs, []);
    }));

  test(`[${proto}] every live publication's dialogs in one document; a phone's second call beside the first`, () =>
    withUa(node, proto, async (ua) => {
      const ext = uniqueUri('ext');
      await ok(pub(ua, ext, dialogDoc(ext, 'a', 'confirmed', 2)));
      await ok(pub(ua, ext, dialogDoc(ext, 'b', 'early', 1, 'initiator')));
      const { first } = await watch(ua, ext, { event: 'dialog' });
      const s = shown(bodyOf(first));
      assert.deepEqual(s.dialogs.map((d) => `${d.id}:${d.state}`).sort(), ['a:confirmed', 'b:early']);
      const body = bodyOf(first);
      assert.deepEqual(
        xpathTexts(body, "/d:dialog-info/d:dialog[@id='a']/d:remote/d:identity"),
        ['sip:caller@example.com'],
        'the dialog elements are kept whole',
      );
    }));

  test(`[${proto}] racing PUBLISHes (pua_dialoginfo replayed): early arriving after terminated, or after the terminated publication is removed, never lights the lamp again`, () =>
    withUa(node, proto, async (ua) => {
      const ext = uniqueUri('ext');
      const { dialog } = await watch(ua, ext, { event: 'dialog' });
      // The call's PUBLISHes leave in order but the 'early' one is delayed past the hang-up: each
      // is an initial PUBLISH of its own (pua sends a new one when it has no entity-tag yet).
      await ok(pub(ua, ext, dialogDoc(ext, 'r1', 'confirmed', 2)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'r1', state: 'confirmed' }]);
      const termTag = await ok(pub(ua, ext, dialogDoc(ext, 'r1', 'terminated', 3)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'r1', state: 'terminated' }]);
      await ok(pub(ua, ext, dialogDoc(ext, 'r1', 'early', 1)));
      assert.deepEqual((await next(dialog)).dialogs, [], 'a late early of a terminated dialog is not shown');

      // Same race, the terminated publication removed (Expires 0) before the late one arrives.
      await ok(pub(ua, ext, dialogDoc(ext, 'r2', 'confirmed', 2)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'r2', state: 'confirmed' }]);
      const t2 = await ok(pub(ua, ext, dialogDoc(ext, 'r2', 'terminated', 3)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'r2', state: 'terminated' }]);
      await ok(publish(ua, ext, { event: 'dialog', etag: t2, expires: 0 }));
      await next(dialog);
      await ok(publish(ua, ext, { event: 'dialog', etag: termTag, expires: 0 }));
      await next(dialog);
      await ok(pub(ua, ext, dialogDoc(ext, 'r2', 'early', 1)));
      assert.deepEqual((await next(dialog)).dialogs, [], 'the node remembers r2 ended');

      // Two live copies of one dialog in other states: the higher dialog-info version wins, whatever the order.
      await ok(pub(ua, ext, dialogDoc(ext, 'r3', 'confirmed', 5)));
      await next(dialog);
      await ok(pub(ua, ext, dialogDoc(ext, 'r3', 'early', 4)));
      const n = await next(dialog);
      assert.deepEqual(
        n.dialogs.filter((d) => d.id === 'r3'),
        [{ id: 'r3', state: 'confirmed' }],
        'a stale early never replaces confirmed',
      );
    }));

  test(`[${proto}] Event parameters call-id/from-tag/to-tag (RFC 4235 §3.2): a subscription to one dialog gets only that dialog`, () =>
    withUa(node, proto, async (ua) => {
      const ext = uniqueUri('ext');
      await ok(pub(ua, ext, dialogDoc(ext, 'one', 'confirmed', 1)));
      const twoTag = await ok(pub(ua, ext, dialogDoc(ext, 'two', 'early', 1)));
      const all = await watch(ua, ext, { event: 'dialog' });
      assert.equal(shown(bodyOf(all.first)).dialogs.length, 2);
      const event = 'dialog;call-id=call-two;from-tag=rt-two;to-tag=lt-two;include-session-description';
      const narrow = await watch(ua, ext, { event, headers: [['event', event]] });
      const s0 = shown(bodyOf(narrow.first));
      assert.deepEqual(s0.dialogs, [{ id: 'two', state: 'early' }]);
      assert.equal(s0.version, 0);
      assert.equal(s0.entity, ext);
      const none = await watch(ua, ext, { headers: [['event', 'dialog;call-id=no-such-call']] });
      assert.deepEqual(shown(bodyOf(none.first)).dialogs, [], 'a dialog that does not exist: an empty document');

      await ok(pub(ua, ext, dialogDoc(ext, 'two', 'confirmed', 2), { etag: twoTag }));
      const n1 = await next(narrow.dialog);
      assert.deepEqual(n1.dialogs, [{ id: 'two', state: 'confirmed' }]);
      assert.equal(n1.version, 1);
      assert.equal((await next(all.dialog)).dialogs.length, 2, 'the unfiltered watcher still sees both');
    }));

  test(`[${proto}] a PUBLISH whose body is not dialog-info → 400; another type → 415`, () =>
    withUa(node, proto, async (ua) => {
      const ext = uniqueUri('ext');
      const bad = await publish(ua, ext, {
        event: 'dialog',
        body: '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="x"/>',
        contentType: DIALOG_INFO,
      });
      assert.equal(bad.status, 400);
      const broken = await publish(ua, ext, {
        event: 'dialog',
        body: '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"',
        contentType: DIALOG_INFO,
      });
      assert.equal(broken.status, 400);
      const noId = await publish(ua, ext, {
        event: 'dialog',
        body: dialogDoc(ext, 'x', 'early', 1).replace(' id="x"', ''),
        contentType: DIALOG_INFO,
      });
      assert.equal(noId.status, 400);
      assert.match(noId.reason, /without an id/);
      const badState = await publish(ua, ext, { event: 'dialog', body: dialogDoc(ext, 'x', 'ringing', 1), contentType: DIALOG_INFO });
      assert.equal(badState.status, 400);
      assert.match(badState.reason, /state/);
      const wrong = await publish(ua, ext, { event: 'dialog', body: dialogDoc(ext, 'x', 'early', 1), contentType: 'application/pidf+xml' });
      assert.equal(wrong.status, 415);
      assert.match(wrong.headers.get('accept') ?? '', /application\/dialog-info\+xml/);
    }));

  test(`[${proto}] force_single_dialog: only the most relevant dialog (early before confirmed); force_dummy_dialog: a terminated dummy when there is none`, () =>
    withUa(single, proto, async (ua) => {
      const ext = uniqueUri('ext');
      const { dialog, first } = await watch(ua, ext, { event: 'dialog' });
      const s0 = shown(bodyOf(first));
      assert.equal(s0.dialogs.length, 1, 'force_dummy_dialog');
      assert.equal(s0.dialogs[0]!.state, 'terminated');
      await ok(pub(ua, ext, dialogDoc(ext, 'talk', 'confirmed', 2)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'talk', state: 'confirmed' }]);
      await ok(pub(ua, ext, dialogDoc(ext, 'ring', 'early', 1)));
      assert.deepEqual((await next(dialog)).dialogs, [{ id: 'ring', state: 'early' }], 'presence_dialoginfo ranks early first');
    }));
}

test('dialog_authorization 1: a dialog watcher without a pres-rule is pending; a rule allowing it activates it, polite-block shows an empty dialog-info', () =>
  withUa(authorised, 'udp', async (ua) => {
    const ext = uniqueUri('ext');
    await ok(pub(ua, ext, dialogDoc(ext, 'secret', 'confirmed', 1)));
    const { res, dialog } = await subscribe(ua, ext, { event: 'dialog', expires: 600 });
    assert.equal(res.status, 200);
    const n = await dialog.nextNotify();
    assert.equal(parseSubState(n).state, 'pending');
    assert.equal(n.body.length, 0);

    // The presentity's pres-rules now allow this watcher: the rules change re-evaluates dialog watchers too.
    assert.ok(
      [200, 201].includes(
        await putRules(authorised.xcapPort, ext, rules([{ id: 'a', who: `<cr:one id="${ua.aor}"/>`, handling: 'allow' }])),
      ),
    );
    const active = await dialog.nextNotify(5000, (r) => parseSubState(r).state === 'active');
    assert.deepEqual(shown(bodyOf(active)).dialogs, [{ id: 'secret', state: 'confirmed' }]);

    // polite-block (RFC 5025 §3.2.1): active, a valid dialog-info document that reveals nothing.
    const other = await TestUa.open('udp', authorised.udpPort);
    try {
      assert.ok(
        [200, 201].includes(
          await putRules(authorised.xcapPort, ext, rules([{ id: 'p', who: `<cr:one id="${other.aor}"/>`, handling: 'polite-block' }])),
        ),
      );
      const blocked = await watch(other, ext, { event: 'dialog' });
      assert.equal(parseSubState(blocked.first).state, 'active');
      assert.deepEqual(shown(bodyOf(blocked.first)), { version: 0, entity: ext, state: 'full', dialogs: [] });
    } finally {
      await other.close();
    }
  }));

test('[ws] a JsSIP watcher over WebSocket sees a call ring and end; a JsSIP PUBLISH of dialog-info is accepted', async () => {
  const ext = uniqueUri('ext');
  const watcher = await JsSipClient.connect(node.wsPort, 'sip:blf-ws@example.com');
  const phone = await JsSipClient.connect(node.wsPort, ext);
  try {
    const sub = watcher.subscriber(ext, 'dialog', DIALOG_INFO, 600);
    const ev = new SubscriberEvents(sub);
    sub.subscribe();
    const n0 = await ev.nextNotify();
    assert.match(n0.subscriptionState, /^active/);
    assert.deepEqual(shown(n0.body).dialogs, []);
    const early = await phone.publish(ext, {
      event: 'dialog',
      body: dialogDoc(ext, 'w1', 'early', 1),
      contentType: DIALOG_INFO,
      expires: 60,
    });
    assert.equal(early.status, 200);
    const n1 = await ev.nextNotify((b) => b.includes('w1'));
    assert.deepEqual(shown(n1.body).dialogs, [{ id: 'w1', state: 'early' }]);
    assert.equal(shown(n1.body).version, 1);
    const ended = await phone.publish(ext, {
      event: 'dialog',
      etag: early.etag,
      body: dialogDoc(ext, 'w1', 'terminated', 2),
      contentType: DIALOG_INFO,
      expires: 60,
    });
    assert.equal(ended.status, 200);
    const n2 = await ev.nextNotify((b) => b.includes('terminated'));
    assert.equal(shown(n2.body).version, 2);
    sub.terminate();
    await ev.next('terminated');
  } finally {
    await Promise.all([watcher.stop(), phone.stop()]);
  }
});

test('OPTIONS Allow-Events names dialog and reg; presence.presentity_show, presence.watcher_list and /metrics know the dialog event', () =>
  withUa(node, 'udp', async (ua) => {
    const opt = await ua.request({ method: 'OPTIONS', uri: `sip:presenced@127.0.0.1:${node.udpPort}` });
    const events = (opt.headers.get('allow-events') ?? '').split(',').map((s) => s.trim());
    assert.ok(events.includes('dialog') && events.includes('reg'), `Allow-Events: ${events.join(', ')}`);
    assert.match(opt.headers.get('accept') ?? '', /application\/dialog-info\+xml/);
    assert.match(opt.headers.get('accept') ?? '', /application\/reginfo\+xml/);

    const ext = uniqueUri('ext');
    await ok(pub(ua, ext, dialogDoc(ext, 'm1', 'confirmed', 1)));
    const { dialog } = await watch(ua, ext, { event: 'dialog' });
    const pubs = await presentityShow(node.rpcPort, ext, 'dialog');
    assert.equal(pubs.length, 1);
    assert.match(JSON.stringify(pubs[0]), /m1/, 'the published document is shown');
    const ws = await watcherList(node.rpcPort, ext, 'dialog');
    assert.equal(ws.length, 1);
    assert.equal(ws[0]!.status, 'active');
    const metrics = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
    const subs = Number(/^presenced_event_subscriptions\{event="dialog",node="[^"]*"\} (\d+)$/m.exec(metrics)?.[1]);
    const presentities = Number(/^presenced_event_presentities\{event="dialog",node="[^"]*"\} (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(
      subs >= 1,
      `dialog subscriptions in /metrics:\n${metrics
        .split('\n')
        .filter((l) => l.includes('event='))
        .join('\n')}`,
    );
    assert.ok(presentities >= 1);
    assert.equal((await dialog.request(0)).status, 200);
  }));

test('GoneDialogs: terminated dialog ids kept per presentity until their deadline, then pruned', () => {
  const gone = new GoneDialogs(1000);
  gone.record('sip:a@x', ['d1', 'd2'], 0);
  gone.record('sip:b@x', ['d3'], 500);
  gone.record('sip:a@x', ['d1'], 600); // already known: the first deadline stands
  assert.deepEqual(gone.of('sip:a@x', 999).sort(), ['d1', 'd2']);
  assert.deepEqual(gone.of('sip:a@x', 1000), [], 'gone once max_expires (+ offset) has passed');
  assert.deepEqual(gone.of('sip:b@x', 1000), ['d3']);
  assert.equal(gone.size, 1);
  assert.deepEqual(gone.of('sip:b@x', 1500), []);
  assert.equal(gone.size, 0);
});

test('a restart keeps a dialog subscription with its RFC 4235 §3.2 view and its version count', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-blf-restart-'));
  let first: RunningNode | undefined;
  let second: RunningNode | undefined;
  try {
    first = await startNode({ sip_t1: 50 }, { dataDir });
    const toFirst = await TestUa.open('udp', first.udpPort);
    const ext = uniqueUri('ext');
    try {
      await ok(pub(toFirst, ext, dialogDoc(ext, 'keep', 'early', 1), { expires: 600 }));
      await ok(pub(toFirst, ext, dialogDoc(ext, 'other', 'confirmed', 1), { expires: 600 }));
      const event = 'dialog;call-id=call-keep';
      const w = await watch(toFirst, ext, { headers: [['event', event]] });
      assert.deepEqual(shown(bodyOf(w.first)).dialogs, [{ id: 'keep', state: 'early' }]);
      assert.equal(await first.stop(), 0);

      second = await startNode({ sip_t1: 50 }, { dataDir });
      const toSecond = await TestUa.open('udp', second.udpPort);
      try {
        await ok(pub(toSecond, ext, dialogDoc(ext, 'keep', 'confirmed', 2), { expires: 600 }));
        // The NOTIFY goes to the watcher's Contact (its UA, still listening).
        const n = await toFirst.nextRequest('NOTIFY', (r) => r.callId === w.dialog.callId && bodyOf(r).includes('confirmed'), 5000);
        const s = shown(bodyOf(n));
        assert.deepEqual(s.dialogs, [{ id: 'keep', state: 'confirmed' }], 'still only the dialog the Event header named');
        assert.equal(s.version, 1, 'the version continues after the restart');
      } finally {
        await toSecond.close();
      }
    } finally {
      await toFirst.close();
    }
  } finally {
    await first?.stop();
    await second?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('disable_reg 1: reg PUBLISH and SUBSCRIBE → 489, reg gone from Allow-Events; dialog still served', () =>
  withUa(single, 'udp', async (ua) => {
    const aor = uniqueUri('reg');
    const sub = await subscribe(ua, aor, { event: 'reg', expires: 60 });
    assert.equal(sub.res.status, 489);
    const events = (sub.res.headers.get('allow-events') ?? '').split(',').map((s) => s.trim());
    assert.ok(!events.includes('reg') && events.includes('dialog'), `Allow-Events: ${events.join(', ')}`);
    const p = await publish(ua, aor, {
      event: 'reg',
      body: '<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>',
      contentType: 'application/reginfo+xml',
    });
    assert.equal(p.status, 489);
  }));
