/**
 * The subscriber side of an RFC 6665 dialog (core/dialogs/subscriber-dialog.ts), against the
 * fake transport: the requests it builds, the dialog the first 2xx or NOTIFY makes, and what it
 * answers each NOTIFY.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SubscriberDialog, type SubscribeParams } from '../../../core/dialogs/subscriber-dialog.js';
import type { SipRequest, SipResponse } from '../../../transport/message.js';
import { FakeSender, respond, sipMessage } from '../../support/fake-sip.js';

const PARAMS: SubscribeParams = {
  resourceUri: 'sip:bob@example.com',
  localUri: 'sip:rls@example.net',
  contact: '<sip:rls@192.0.2.1:5060>',
  event: 'presence',
  expires: 600,
  accept: ['application/pidf+xml'],
  callId: 'back-end-1@example.net',
  localTag: 'rls1',
};

function ok(lines: string[]): SipResponse {
  return sipMessage(['SIP/2.0 200 OK', 'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx', 'CSeq: 1 SUBSCRIBE', ...lines]) as SipResponse;
}

function notify(cseq: number, state: string, extra: string[] = [], body = '', from = 'n1', event = 'presence'): SipRequest {
  return sipMessage(
    [
      'NOTIFY sip:rls@192.0.2.1:5060 SIP/2.0',
      'Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKn' + cseq,
      `From: <sip:bob@example.com>;tag=${from}`,
      `To: <sip:rls@example.net>;tag=${PARAMS.localTag}`,
      `Call-ID: ${PARAMS.callId}`,
      `CSeq: ${cseq} NOTIFY`,
      `Event: ${event}`,
      ...(state ? [`Subscription-State: ${state}`] : []),
      ...extra,
    ],
    body,
  ) as SipRequest;
}

test('the initial SUBSCRIBE: resource as Request-URI and To (no tag), our From tag, Event, Expires, Contact, Accept', () => {
  const d = new SubscriberDialog(PARAMS);
  const req = d.initialRequest();
  assert.equal(req.method, 'SUBSCRIBE');
  assert.equal(req.uri, 'sip:bob@example.com');
  assert.equal(req.headers.get('to'), '<sip:bob@example.com>');
  assert.equal(req.headers.get('from'), '<sip:rls@example.net>;tag=rls1');
  assert.equal(req.headers.get('call-id'), PARAMS.callId);
  assert.equal(req.headers.get('cseq'), '1 SUBSCRIBE');
  assert.equal(req.headers.get('event'), 'presence');
  assert.equal(req.headers.get('expires'), '600');
  assert.equal(req.headers.get('contact'), '<sip:rls@192.0.2.1:5060>');
  assert.equal(req.headers.get('accept'), 'application/pidf+xml');
  assert.equal(d.state, 'init');
  assert.throws(() => d.refreshRequest(), /no dialog yet/);
});

test('a 2xx makes the dialog: its To tag, the Record-Route reversed, its Contact, the Expires granted', () => {
  const d = new SubscriberDialog(PARAMS);
  d.initialRequest(1_000_000);
  d.onResponse(
    ok([
      'To: <sip:bob@example.com>;tag=n1',
      'Record-Route: <sip:p2.example.com;lr>',
      'Record-Route: <sip:p1.example.net;lr>',
      'Contact: <sip:bob@203.0.113.5:5062>',
      'Expires: 300',
    ]),
    1_000_100,
  );
  assert.equal(d.remoteTag, 'n1');
  assert.deepEqual(d.routeSet, ['<sip:p1.example.net;lr>', '<sip:p2.example.com;lr>']);
  assert.equal(d.remoteTarget, 'sip:bob@203.0.113.5:5062');
  assert.equal(d.expiresAt, 1_000_000 + 300_000, 'the duration granted counts from when the SUBSCRIBE left');
  assert.equal(d.state, 'pending', 'pending until a NOTIFY says otherwise');

  // The refresh: in the dialog, CSeq + 1, through the route set to the first route.
  const refresh = d.refreshRequest();
  assert.equal(refresh.uri, 'sip:bob@203.0.113.5:5062');
  assert.deepEqual(refresh.headers.getAll('route'), ['<sip:p1.example.net;lr>', '<sip:p2.example.com;lr>']);
  assert.equal(refresh.headers.get('to'), '<sip:bob@example.com>;tag=n1');
  assert.equal(refresh.headers.get('cseq'), '2 SUBSCRIBE');
  assert.equal(refresh.headers.get('call-id'), PARAMS.callId);
  assert.deepEqual(d.target(), { proto: 'udp', host: 'p1.example.net', port: 5060 });
});

test('a 2xx never grants more than was asked for; a strict router gets the Request-URI (RFC 3261 §12.2.1.1)', () => {
  const d = new SubscriberDialog(PARAMS);
  d.initialRequest(0);
  d.onResponse(
    ok(['To: <sip:bob@example.com>;tag=n1', 'Record-Route: <sip:strict.example.com>', 'Contact: <sip:bob@203.0.113.5>', 'Expires: 7200']),
    0,
  );
  assert.equal(d.expiresAt, 600_000);
  const refresh = d.refreshRequest();
  assert.equal(refresh.uri, 'sip:strict.example.com');
  assert.deepEqual(refresh.headers.getAll('route'), ['<sip:bob@203.0.113.5>']);
});

test('NOTIFYs: active with expires, CSeq order (lower → 500), target refresh; terminated with reason and retry-after', () => {
  const d = new SubscriberDialog(PARAMS);
  d.initialRequest(0);
  d.onResponse(ok(['To: <sip:bob@example.com>;tag=n1', 'Contact: <sip:bob@203.0.113.5>', 'Expires: 600']), 0);

  const first = d.receiveNotify(notify(5, 'active;expires=599', ['Content-Type: application/pidf+xml'], '<presence/>'), 10_000);
  assert.equal(first.status, 200);
  assert.ok(first.status === 200 && first.state === 'active' && first.contentType === 'application/pidf+xml');
  assert.equal(first.status === 200 && first.body.toString(), '<presence/>');
  assert.equal(d.state, 'active');
  assert.equal(d.expiresAt, 10_000 + 599_000);

  assert.deepEqual(d.receiveNotify(notify(4, 'active;expires=500'), 11_000), { status: 500, reason: 'CSeq Out Of Order' });
  assert.equal(d.expiresAt, 10_000 + 599_000, 'a refused NOTIFY changes nothing');

  const moved = d.receiveNotify(notify(6, 'active;expires=400', ['Contact: <sip:bob@203.0.113.9:5080>']), 12_000);
  assert.equal(moved.status, 200);
  assert.equal(d.remoteTarget, 'sip:bob@203.0.113.9:5080', 'NOTIFY is a target refresh request');

  const last = d.receiveNotify(notify(7, 'terminated;reason=deactivated;retry-after=30'), 13_000);
  assert.deepEqual(last.status === 200 ? [last.state, last.reason, last.retryAfter] : last, ['terminated', 'deactivated', 30]);
  assert.equal(d.state, 'terminated');
  assert.equal(d.retryAfter, 30);
  assert.equal(d.receiveNotify(notify(8, 'active'), 14_000).status, 481, 'nothing after the end');
  assert.equal(d.refreshDue(1e15), false);
});

test('NOTIFYs that are not ours, or broken: 481 for another dialog or event id, 400 without Subscription-State', () => {
  const d = new SubscriberDialog({ ...PARAMS, eventId: '7' });
  d.initialRequest(0);
  d.onResponse(ok(['To: <sip:bob@example.com>;tag=n1', 'Expires: 600']), 0);
  assert.equal(d.receiveNotify(notify(1, 'active', [], '', 'other-tag', 'presence;id=7')).status, 481, 'another From tag');
  assert.equal(d.receiveNotify(notify(1, 'active', [], '', 'n1', 'presence;id=8')).status, 481, 'another event id');
  assert.equal(d.receiveNotify(notify(1, 'active', [], '', 'n1', 'presence')).status, 481, 'no event id');
  assert.equal(d.receiveNotify(notify(1, 'active', [], '', 'n1', 'dialog;id=7')).status, 481, 'another package');
  assert.deepEqual(d.receiveNotify(notify(1, '', [], '', 'n1', 'presence;id=7')), { status: 400, reason: 'Missing Subscription-State' });
  assert.equal(d.receiveNotify(notify(1, 'active;expires=soon', [], '', 'n1', 'presence;id=7')).status, 400);
  assert.equal(d.state, 'pending', 'none of them changed the subscription');
  assert.equal(d.receiveNotify(notify(1, 'pending;expires=60', [], '', 'n1', 'presence;id=7')).status, 200);
});

test('a NOTIFY before the 2xx makes the dialog (RFC 6665 §4.1.2.4): its From tag, its Record-Route in order', () => {
  const d = new SubscriberDialog(PARAMS);
  d.initialRequest(0);
  const v = d.receiveNotify(
    notify(1, 'pending;expires=600', [
      'Record-Route: <sip:p1.example.net;lr>',
      'Record-Route: <sip:p2.example.com;lr>',
      'Contact: <sip:bob@203.0.113.5>',
    ]),
    0,
  );
  assert.equal(v.status, 200);
  assert.equal(d.remoteTag, 'n1');
  assert.deepEqual(d.routeSet, ['<sip:p1.example.net;lr>', '<sip:p2.example.com;lr>']);
  // The 2xx that follows keeps that dialog.
  d.onResponse(
    ok([
      'To: <sip:bob@example.com>;tag=n1',
      'Record-Route: <sip:p2.example.com;lr>',
      'Record-Route: <sip:p1.example.net;lr>',
      'Expires: 600',
    ]),
    0,
  );
  assert.deepEqual(d.routeSet, ['<sip:p1.example.net;lr>', '<sip:p2.example.com;lr>']);
  assert.equal(d.state, 'pending');
});

test('through a sender: refresh when due, a refresh answered 481 ends it; a failed initial SUBSCRIBE ends it too', async () => {
  const sender = new FakeSender((req) =>
    req.headers.get('cseq') === '2 SUBSCRIBE'
      ? 481
      : respond(200, [
          ['to', '<sip:bob@example.com>;tag=n1'],
          ['expires', '3'],
          ['contact', '<sip:bob@203.0.113.5>'],
        ]),
  );
  const d = new SubscriberDialog({ ...PARAMS, expires: 3 });
  const now = Date.now();
  await d.send(sender, d.initialRequest(now));
  assert.equal(sender.sent[0]!.target.host, 'example.com');
  assert.equal(d.state, 'pending');
  assert.equal(d.refreshDue(now), false);
  assert.equal(d.refreshDue(now + 2_000), true, 'a third of the duration before it ends');
  await d.send(sender, d.refreshRequest());
  assert.equal(sender.sent[1]!.target.host, '203.0.113.5', 'in the dialog: to the remote target');
  assert.equal(d.state, 'terminated');
  assert.equal(d.reason, '481');

  const refused = new SubscriberDialog(PARAMS);
  await refused.send(new FakeSender(() => 403), refused.initialRequest());
  assert.equal(refused.state, 'terminated');
  assert.equal(refused.reason, '403');
  const lost = new SubscriberDialog(PARAMS);
  await lost.send(new FakeSender(() => ({ kind: 'timeout' })), lost.initialRequest());
  assert.equal(lost.reason, '408');
});

test('unsubscribe: Expires 0 in the dialog; the 2xx leaves it to the final NOTIFY, which ends it', async () => {
  const d = new SubscriberDialog(PARAMS);
  d.initialRequest(0);
  d.onResponse(ok(['To: <sip:bob@example.com>;tag=n1', 'Expires: 600']), 0);
  d.receiveNotify(notify(1, 'active;expires=600'), 0);
  const sender = new FakeSender();
  await d.send(sender, d.unsubscribeRequest());
  assert.equal(sender.sent[0]!.request.headers.get('expires'), '0');
  assert.equal(d.state, 'active', 'still there until the final NOTIFY');
  assert.equal(d.refreshDue(1e15), false, 'no refresh after an unsubscribe');
  const fin = d.receiveNotify(notify(2, 'terminated;reason=timeout'));
  assert.ok(fin.status === 200 && fin.state === 'terminated' && fin.reason === 'timeout');
});
