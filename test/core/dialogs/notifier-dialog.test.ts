/**
 * The notifier side of a subscription dialog (core/dialogs/subscription-dialog.ts): one NOTIFY
 * at a time with the newest state queued, the end, CSeq, the NOTIFY template and RFC 6446 rate
 * control; and the NOTIFY wire form (notify-wire.ts) as a fake transport receives it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NotifierDialog } from '../../../core/dialogs/subscription-dialog.js';
import { RateControl } from '../../../core/dialogs/rate-control.js';
import { FakeSender, subscriptionRecord } from '../../support/fake-sip.js';

const contact = (): string => '<sip:presence@192.0.2.1:5060>';

test('one NOTIFY at a time: what comes meanwhile waits, coalesced into the newest full state; a final one wins', () => {
  const d = new NotifierDialog(subscriptionRecord('sip:alice@example.com'));
  assert.equal(d.admit({ kind: 'state' }), true);
  d.occupy();
  assert.equal(d.admit({ kind: 'state', body: 'partial 1' }), false);
  assert.equal(d.admit({ kind: 'state', body: 'partial 2' }), false);
  assert.deepEqual(d.queued, { kind: 'state' }, 'two partial bodies cannot be merged: the whole state instead');
  assert.equal(d.admit({ kind: 'state', immediate: true }), false);
  assert.deepEqual(d.queued, { kind: 'state', immediate: true });
  assert.equal(d.admit({ kind: 'terminate', reason: 'timeout' }), false);
  assert.equal(d.admit({ kind: 'state' }), false);
  assert.deepEqual(d.queued, { kind: 'terminate', reason: 'timeout' }, 'nothing replaces a final NOTIFY');
  assert.deepEqual(d.settle(), { kind: 'terminate', reason: 'timeout' });
  assert.equal(d.inFlight, false);
  assert.equal(d.queued, undefined);
  assert.equal(d.settle(), undefined);
});

test('end() and fail(): no rate timer stays; fail() also drops what was queued', () => {
  const d = new NotifierDialog(subscriptionRecord('sip:alice@example.com', { minInterval: 5, maxInterval: 60 }));
  d.applyRate(() => assert.fail('no NOTIFY is due after the end'));
  assert.ok(d.rate instanceof RateControl);
  assert.equal(d.rate!.stateParams, ';min-interval=5;max-interval=60');
  d.occupy();
  d.admit({ kind: 'state' });
  d.fail();
  assert.equal(d.ended, true);
  assert.equal(d.rate, undefined);
  assert.equal(d.queued, undefined);
  d.applyRate(() => undefined);
  assert.equal(d.rate, undefined, 'an ended dialog gets no rate control');
});

test('CSeq: each NOTIFY the next number; covered while at or under what the store holds', () => {
  const d = new NotifierDialog(subscriptionRecord('sip:alice@example.com', { localCseq: 7 }));
  assert.equal(d.cseqCovered, false);
  d.cseqReserved = 9;
  assert.equal(d.nextCseq(), 8);
  assert.equal(d.cseqCovered, true);
  assert.equal(d.nextCseq(), 9);
  assert.equal(d.cseqCovered, true);
  assert.equal(d.nextCseq(), 10);
  assert.equal(d.cseqCovered, false);
});

test('Subscription-State of a state NOTIFY: the state, seconds left, the RFC 6446 parameters in use', () => {
  const d = new NotifierDialog(subscriptionRecord('sip:alice@example.com', { expiresAt: Date.now() + 120_400, minInterval: 2 }));
  assert.match(d.activeState(), /^active;expires=12[01]$/);
  d.applyRate(() => undefined);
  assert.match(d.activeState(), /^active;expires=12[01];min-interval=2$/);
  d.endRate();
});

test('min-interval: a state NOTIFY right after the last one is held, coalesced, and released by the timer', async () => {
  const d = new NotifierDialog(subscriptionRecord('sip:alice@example.com', { minInterval: 1 }));
  let release: (p: unknown) => void = () => undefined;
  const due = new Promise((resolve) => (release = resolve));
  d.applyRate(release);
  const rate = d.rate!;
  rate.sent();
  assert.equal(rate.hold({ kind: 'state', immediate: true }), false, 'the NOTIFY a SUBSCRIBE calls for is never held');
  assert.equal(rate.hold({ kind: 'state', body: 'a' }), true);
  assert.equal(rate.hold({ kind: 'state', body: 'b' }), true);
  assert.deepEqual(rate.held, { kind: 'state' });
  assert.ok(rate.timerAt <= rate.lastSentAt + 1000, 'the timer is armed for the end of min-interval');
  rate.lastSentAt -= 1000; // as if the interval had passed: re-armed, the timer fires at once
  rate.arm();
  assert.deepEqual(await due, { kind: 'state' });
  d.endRate();
});

test('the NOTIFY template: built once, rebuilt after a target refresh; what goes on the wire', async () => {
  const rec = subscriptionRecord('sip:alice@example.com', {
    routeSet: ['<sip:edge.example.net;lr>'],
    eventId: '3',
    remoteTarget: 'sip:bob@198.51.100.7:5070',
  });
  const d = new NotifierDialog(rec);
  const w1 = d.template(contact);
  assert.equal(d.template(contact), w1);
  const sender = new FakeSender();
  await sender.sendRequest(w1.request(d.nextCseq(), 'active;expires=60', Buffer.from('<x/>'), 'application/pidf+xml'), w1.target);
  const sent = sender.sent[0]!;
  assert.deepEqual(sent.target, { proto: 'udp', host: 'edge.example.net', port: 5060 }, 'to the first route');
  const n = sent.request;
  assert.equal(n.method, 'NOTIFY');
  assert.equal(n.uri, 'sip:bob@198.51.100.7:5070');
  assert.equal(n.headers.get('route'), '<sip:edge.example.net;lr>');
  assert.equal(n.headers.get('from'), `<sip:alice@example.com>;tag=${rec.localTag}`);
  assert.equal(n.headers.get('to'), `<${rec.watcherUri}>;tag=${rec.remoteTag}`);
  assert.equal(n.headers.get('call-id'), rec.callId);
  assert.equal(n.headers.get('cseq'), '1 NOTIFY');
  assert.equal(n.headers.get('event'), 'presence;id=3');
  assert.equal(n.headers.get('subscription-state'), 'active;expires=60');
  assert.equal(n.headers.get('contact'), '<sip:presence@192.0.2.1:5060>');
  assert.equal(n.body.toString(), '<x/>');

  rec.remoteTarget = 'sip:bob@198.51.100.8:5071';
  const w2 = d.template(contact);
  assert.notEqual(w2, w1, 'a target refresh rebuilds the template');
  assert.equal(w2.remoteTarget, 'sip:bob@198.51.100.8:5071');
});
