/**
 * The list server benchmark's driver (bench/load/rls.ts) reads what a list NOTIFY says: a
 * server socket here sends it RFC 4662 NOTIFYs over UDP and the test checks the 200 it answers,
 * the versions it records per resource, the full-state flag of the first NOTIFY, a list being
 * complete once every published state is held, and a change counted delivered only when every
 * subscriber holds it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { SipDriver } from '../../bench/load/driver.js';
import { RlsLoad, rlsPlan, resourcePidf } from '../../bench/load/rls.js';
import { backstop } from '../support/wait.js';

const BOUNDARY = 'b0und';

function listNotify(o: { callId: string; cseq: number; full: boolean; parts: Array<[string, number]>; service: string }): string {
  let rlmi = `<?xml version="1.0" encoding="UTF-8"?>\n<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="${o.service}" version="${o.cseq}" fullState="${o.full}">`;
  let body = '';
  o.parts.forEach(([uri], i) => {
    rlmi += `<resource uri="${uri}"><instance id="i${i}" state="active" cid="c${i}@x"/></resource>`;
  });
  rlmi += '</list>';
  body += `--${BOUNDARY}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <root@x>\r\nContent-Type: application/rlmi+xml\r\n\r\n${rlmi}\r\n`;
  o.parts.forEach(([uri, v], i) => {
    body += `--${BOUNDARY}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <c${i}@x>\r\nContent-Type: application/pidf+xml\r\n\r\n${resourcePidf(uri, v)}\r\n`;
  });
  body += `--${BOUNDARY}--\r\n`;
  return (
    `NOTIFY sip:l@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK-n${o.cseq}\r\nFrom: <${o.service}>;tag=srv\r\n` +
    `To: <sip:l@example.com>;tag=lf0\r\nCall-ID: ${o.callId}\r\nCSeq: ${o.cseq} NOTIFY\r\nEvent: presence\r\n` +
    `Subscription-State: active;expires=3600\r\nRequire: eventlist\r\n` +
    `Content-Type: multipart/related;type="application/rlmi+xml";start="<root@x>";boundary="${BOUNDARY}"\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

test('the rls driver reads resource versions out of multipart list NOTIFYs and answers each 200', async () => {
  const server = dgram.createSocket('udp4');
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  const driver = await SipDriver.open({ host: '127.0.0.1', port: server.address().port }, 1, 5000);
  const plan = rlsPlan(3, 2);
  const load = new RlsLoad(driver, plan, 3600);
  const answers: string[] = [];
  const waiters: Array<() => void> = [];
  server.on('message', (m) => {
    const text = m.toString('latin1');
    if (text.startsWith('SIP/2.0')) {
      answers.push(text);
      waiters.shift()?.();
    }
  });
  /** Send a NOTIFY to the driver; resolves once its answer is back (the driver reads the NOTIFY before answering returns). */
  const send = (text: string): Promise<void> => {
    const got = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer from the driver')), backstop());
      waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
    server.send(text, driver.ports[0]!, '127.0.0.1');
    return got;
  };
  try {
    const [r0, r1, r2] = plan.resources as [string, string, string];
    const a = load.subs[0]!;
    const b = load.subs[1]!;
    // Both lists subscribed (as the SUBSCRIBE phase leaves them), every resource published once (version 1).
    a.toTag = 'srv';
    b.toTag = 'srv';
    for (let r = 0; r < 3; r++) load.published[r] = 1;
    (load as unknown as { wanted: Int32Array }).wanted = Int32Array.from([1, 1, 1]);
    a.missing = 3;
    b.missing = 3;
    let completed = 0;
    a.onComplete = () => completed++;

    await send(listNotify({ callId: a.callId, cseq: 1, full: true, parts: [[r0, 1]], service: plan.serviceUris[0]! }));
    assert.match(answers[0]!, /^SIP\/2\.0 200 OK\r\n/);
    assert.match(answers[0]!, new RegExp(`Call-ID: ${a.callId.replace(/[.]/g, '\\.')}`));
    assert.equal(a.firstFullState, true);
    assert.equal(a.firstMultipart, true);
    assert.deepEqual([...a.versions], [1, 0, 0]);
    assert.equal(a.missing, 2);
    assert.equal(completed, 0);

    // Out of CSeq order is read (a list server may send two at once); a CSeq seen before is a retransmission.
    await send(listNotify({ callId: a.callId, cseq: 3, full: false, parts: [[r2, 1]], service: plan.serviceUris[0]! }));
    await send(listNotify({ callId: a.callId, cseq: 2, full: false, parts: [[r1, 1]], service: plan.serviceUris[0]! }));
    await send(listNotify({ callId: a.callId, cseq: 2, full: false, parts: [[r1, 1]], service: plan.serviceUris[0]! }));
    assert.deepEqual([...a.versions], [1, 1, 1]);
    assert.equal(a.missing, 0);
    assert.equal(completed, 1);
    assert.equal(load.repeatedNotifies, 1);
    assert.equal(load.notifies, 3);

    // A change of r1 to version 2 is delivered when both lists hold it (b gets a later one at once).
    const pub = (load as unknown as { pending: Array<Array<{ version: number; at: number; missing: number }>> }).pending;
    load.published[1] = 2;
    pub[1]!.push({ version: 2, at: performance.now(), missing: 2 });
    await send(listNotify({ callId: a.callId, cseq: 4, full: false, parts: [[r1, 2]], service: plan.serviceUris[0]! }));
    assert.equal(pub[1]!.length, 1, 'one list still lacks the change');
    await send(
      listNotify({
        callId: b.callId,
        cseq: 1,
        full: true,
        parts: [
          [r0, 1],
          [r1, 3],
          [r2, 1],
        ],
        service: plan.serviceUris[0]!,
      }),
    );
    assert.equal(pub[1]!.length, 0, 'every list holds it');
    assert.deepEqual([...b.versions], [1, 3, 1]);
    assert.equal(load.statesDelivered, 3 + 1 + 3);
    assert.equal(load.unknownNotifies, 0);

    await send(listNotify({ callId: 'nobody@bench', cseq: 1, full: true, parts: [[r0, 9]], service: plan.serviceUris[0]! }));
    assert.equal(load.unknownNotifies, 1);
  } finally {
    await driver.close();
    server.close();
  }
});
