/**
 * notify/notifier.ts against a fake transport and an in-memory store: one composition per
 * change for N watchers, one NOTIFY in flight per dialog with the newest state queued, what a
 * failed NOTIFY does, the final NOTIFY a subscription's end asks for, and a package's
 * substitute body (polite-block). The state it hears of comes through the event hub.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Notifier } from '../../../core/notify/notifier.js';
import { notifyWatcherChanges } from '../../../core/notify/winfo-partials.js';
import { Subscriptions, LiveSubscription } from '../../../core/state/subscriptions.js';
import { PackageRegistry } from '../../../core/packages/registry.js';
import { allowEveryone, userdelReason, type EventPackage, type PackageContext } from '../../../core/packages/types.js';
import {
  FakeSender,
  MemoryStore,
  recordingHub,
  quietLog,
  testConfig,
  subscriptionRecord,
  respond,
  type Responder,
} from '../../support/fake-sip.js';

const ALICE = 'sip:alice@example.com';

function setup(responder?: Responder, config = testConfig()) {
  let composed = 0;
  let state = 'one';
  const pkg: EventPackage = {
    name: 'presence',
    publishTypes: ['application/pidf+xml'],
    notifyType: 'application/pidf+xml',
    versioned: false,
    async validate() {
      return undefined;
    },
    async compose(uri) {
      composed++;
      return `<presence entity="${uri}" state="${state}"/>`;
    },
    authorize: allowEveryone,
    revokedReason: userdelReason,
    substituteBody: (handling, uri) => (handling === 'polite-block' ? `<presence entity="${uri}" blocked="politely"/>` : undefined),
  };
  const store = new MemoryStore();
  const { hub, events } = recordingHub();
  const subscriptions = new Subscriptions({ config, store, log: quietLog(), hub });
  const sender = new FakeSender(responder);
  const notifier = new Notifier({
    config,
    sender,
    store,
    packages: new PackageRegistry([pkg]),
    ctx: {} as PackageContext,
    log: quietLog(),
    hub,
    subscriptions,
  });
  const watch = (overrides = {}): LiveSubscription => {
    const sub = new LiveSubscription(subscriptionRecord(ALICE, overrides));
    void store.putSubscription(sub.record);
    subscriptions.add(sub);
    return sub;
  };
  return {
    store,
    hub,
    events,
    subscriptions,
    sender,
    notifier,
    watch,
    composed: () => composed,
    setState: (s: string) => (state = s),
  };
}

test('a change: composed once, one NOTIFY per active watcher in its own dialog; pending watchers get none', async () => {
  const t = setup();
  const watchers = [t.watch(), t.watch(), t.watch()];
  t.watch({ state: 'pending', subHandling: 'confirm' });
  t.hub.emit('presentity.changed', { presentityUri: ALICE, event: 'presence' });
  await t.sender.count(3);
  assert.equal(t.composed(), 1);
  assert.equal(t.sender.sent.length, 3);
  for (const [i, sub] of watchers.entries()) {
    const n = t.sender.sent[i]!.request;
    assert.equal(n.callId, sub.record.callId);
    assert.equal(n.headers.get('to'), `<${sub.record.watcherUri}>;tag=${sub.record.remoteTag}`);
    assert.equal(n.headers.get('cseq'), '1 NOTIFY');
    assert.match(n.headers.get('subscription-state')!, /^active;expires=\d+$/);
    assert.equal(n.body.toString(), `<presence entity="${ALICE}" state="one"/>`);
    assert.equal(t.sender.sent[i]!.target.host, '198.51.100.7');
  }
  // The CSeq is reserved in the store before the first NOTIFY leaves (notify_cseq_reserve ahead).
  assert.equal(t.store.cseqs.get(watchers[0]!.id), 64);
  t.subscriptions.stop();
});

test('one NOTIFY in flight per dialog: changes meanwhile become one NOTIFY with the newest state', async () => {
  const t = setup(() => 'hold');
  const sub = t.watch();
  t.notifier.schedule(sub, { kind: 'state', immediate: true });
  await t.sender.count(1);
  t.setState('two');
  t.hub.emit('presentity.changed', { presentityUri: ALICE, event: 'presence' });
  t.setState('three');
  t.hub.emit('presentity.changed', { presentityUri: ALICE, event: 'presence' });
  assert.equal(t.sender.sent.length, 1, 'nothing leaves while the first is unanswered');
  t.sender.sent[0]!.settle(respond(200));
  await t.sender.count(2);
  const second = t.sender.sent[1]!.request;
  assert.equal(second.headers.get('cseq'), '2 NOTIFY');
  assert.equal(second.body.toString(), `<presence entity="${ALICE}" state="three"/>`);
  t.sender.sent[1]!.settle(respond(200));
  assert.equal(t.notifier.stats.sent, 1);
  t.subscriptions.stop();
});

test('a NOTIFY answered 481 ends the subscription (RFC 6665 §4.2.2): forgotten in memory and store, nothing more to it', async () => {
  const t = setup((req) => (req.headers.get('cseq') === '1 NOTIFY' ? 481 : 200));
  const sub = t.watch();
  const ended = new Promise((resolve) => t.hub.on('subscription.ended', resolve));
  t.notifier.schedule(sub, { kind: 'state' });
  assert.deepEqual(await ended, { sub, why: 'watcher answered 481' });
  assert.equal(t.subscriptions.count, 0);
  assert.equal(t.store.subscriptions.size, 0);
  assert.equal(sub.ended, true);
  assert.equal(t.notifier.stats.removedByFailure, 1);
  t.notifier.schedule(sub, { kind: 'state' });
  assert.equal(t.sender.sent.length, 1, 'no NOTIFY after the end');
  t.subscriptions.stop();
});

test('a subscription that ends with a final NOTIFY due: terminated with its reason, the state in it for timeout', async () => {
  const t = setup();
  const a = t.watch();
  const b = t.watch();
  await t.subscriptions.terminate(a, 'timeout');
  await t.subscriptions.terminate(b, 'rejected');
  await t.sender.count(2);
  const [na, nb] = [t.sender.sent[0]!.request, t.sender.sent[1]!.request];
  assert.equal(na.headers.get('subscription-state'), 'terminated;reason=timeout');
  assert.equal(
    na.body.toString(),
    `<presence entity="${ALICE}" state="one"/>`,
    'RFC 6665 §4.4.3: the final NOTIFY after expiry carries the state',
  );
  assert.equal(nb.headers.get('subscription-state'), 'terminated;reason=rejected');
  assert.equal(nb.body.length, 0);
  assert.equal(t.store.cseqs.size, 0, 'a final NOTIFY writes nothing');
  t.subscriptions.stop();
});

test("the package's substitute body for an outcome (presence polite-block) instead of the composed state", async () => {
  const t = setup();
  const polite = t.watch({ subHandling: 'polite-block' });
  t.notifier.schedule(polite, { kind: 'state' });
  await t.sender.count(1);
  assert.equal(t.sender.sent[0]!.request.body.toString(), `<presence entity="${ALICE}" blocked="politely"/>`);
  assert.equal(t.composed(), 0, 'nothing composed for it');
  t.subscriptions.stop();
});

test('a clean stop stores the exact CSeq of each dialog', async () => {
  const t = setup();
  const sub = t.watch();
  t.notifier.schedule(sub, { kind: 'state' });
  await t.sender.count(1);
  assert.equal(t.store.cseqs.get(sub.id), 64, 'reserved before the NOTIFY left');
  await t.notifier.stop();
  assert.equal(t.store.cseqs.get(sub.id), 1);
  t.subscriptions.stop();
});

test('watcher-info partials: a watcher change reaches the presence.winfo subscribers past their first NOTIFY', async () => {
  const t = setup();
  const first = t.watch({ event: 'presence.winfo', winfoVersion: 1 });
  t.watch({ event: 'presence.winfo', winfoVersion: 0 }); // its full first NOTIFY is still to come
  notifyWatcherChanges(t.hub, t.subscriptions, t.notifier);
  t.hub.emit('watcherinfo.changed', {
    presentityUri: ALICE,
    entry: { id: 'w1', uri: 'sip:bob@example.org', displayName: '', status: 'active', event: 'approved', durationSubscribed: 3 },
  });
  await t.sender.count(1);
  const n = t.sender.sent[0]!.request;
  assert.equal(n.callId, first.record.callId);
  assert.match(n.body.toString(), /state="partial"/);
  assert.match(
    n.body.toString(),
    /<watcher id="w1" status="active" event="approved" duration-subscribed="3">sip:bob@example.org<\/watcher>/,
  );
  t.subscriptions.stop();
});
