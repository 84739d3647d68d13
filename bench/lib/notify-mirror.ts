/**
 * One NOTIFY for one watcher: the notifier's own per-dialog template (core/dialogs/notify-wire.ts
 * NotifyWire), next to the generic path every other request takes (SipRequest + toBuffer),
 * which is how NOTIFYs were built before the template.
 */
import { SipRequest } from '../../transport/message.js';
import type { Subscription } from '../../core/store/records.js';

export function sampleSubscription(i: number, presentityUri: string, port: number): Subscription {
  return {
    id: `10a1b2c3d4e5f6${i}`,
    presentityUri,
    event: 'presence',
    eventId: '',
    watcherUri: `sip:w${i}@example.com`,
    watcherDisplay: '',
    callId: `bench-${i}-1a2b3c@127.0.0.1`,
    localTag: `10a1b2c3d4e5f6${i}`,
    remoteTag: `bench-${i}`,
    remoteCseq: 1,
    localCseq: 41,
    routeSet: [],
    remoteTarget: `sip:w${i}@127.0.0.1:${port}`,
    transport: 'udp',
    flowId: '',
    sourceAddress: '127.0.0.1',
    sourcePort: port,
    expiresAt: Date.now() + 3_600_000,
    state: 'active',
    reason: '',
    localUri: presentityUri,
    accept: '',
    winfoVersion: 0,
    createdAt: Date.now(),
    subHandling: 'allow',
  };
}

/** The generic path: a SipRequest with every header appended, the Via prepended, then toBuffer(). */
export function genericNotify(rec: Subscription, state: string, body: Buffer | undefined, contact: string, via: string): Buffer {
  const req = new SipRequest('NOTIFY', rec.remoteTarget);
  const h = req.headers;
  h.append('max-forwards', '70');
  h.append('from', `<${rec.localUri}>;tag=${rec.localTag}`);
  h.append('to', `<${rec.watcherUri}>;tag=${rec.remoteTag}`);
  h.append('call-id', rec.callId);
  h.append('cseq', `${rec.localCseq} NOTIFY`);
  for (const r of rec.routeSet) h.append('route', r);
  h.append('contact', contact);
  h.append('event', rec.event);
  h.append('subscription-state', state);
  if (body !== undefined) {
    h.append('content-type', 'application/pidf+xml');
    req.body = body;
  }
  return req.serialize(via);
}
