/**
 * presenced behind the Kamailio front proxy of deploy/kamailio/kamailio.cfg (Debian kamailio
 * 5.6 + kamailio-presence-modules), with real peers:
 *
 * - BLF: a call between two SIPp UAs (test/sipp/blf-uac.xml → blf-uas.xml) through the proxy
 *   rings, is answered and hung up; the proxy's dialog + pua_dialoginfo PUBLISH its states to
 *   presenced, and a `dialog` watcher subscribed through the proxy sees early, confirmed,
 *   terminated and then no dialog, in that order, the version counting up by one.
 * - reg: a UA registering at the proxy (pua_reginfo PUBLISHes usrloc's state) makes a `reg`
 *   watcher see the registration, then its expiry.
 * - presence: a PUBLISH routed through the proxy reaches the watcher, whose SUBSCRIBE refresh
 *   follows the proxy's Record-Route (loose routing) and whose NOTIFYs come back through it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNode, type RunningNode } from '../support/node.js';
import { startKamailio, freePort, type RunningKamailio } from '../support/kamailio.js';
import { startSipp, explainSipp, SIPP_SCENARIOS } from '../support/sipp.js';
import { TestUa } from '../support/sip-ua.js';
import {
  publish,
  subscribe,
  pidf,
  bodyOf,
  parseSubState,
  withXml,
  xpathTexts,
  showsOpen,
  DIALOG_INFO_NS,
  type Dialog,
} from '../support/presence.js';
import type { SipRequest, SipResponse } from '../../transport/message.js';

let node: RunningNode;
let kam: RunningKamailio;
let work: string;
before(async () => {
  node = await startNode({ force_active: 1, sip_t1: 100 });
  kam = await startKamailio({ presencedPort: node.udpPort });
  work = mkdtempSync(join(tmpdir(), 'presenced-kamailio-blf-'));
});
after(async () => {
  await kam?.stop();
  await node?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const proxyLog = (): string => kam.log.join('').slice(-4000);

/** A NOTIFY came through the proxy: its top Via is the proxy's. */
function viaProxy(n: SipRequest): boolean {
  return n.topVia.port === kam.port;
}

interface Watch {
  dialog: Dialog;
  /** An in-dialog SUBSCRIBE as RFC 3261 §12.2.1.1 has it: to the remote target, with the route set (or, `routed` false, without it). */
  refresh(expires: number, routed?: boolean): Promise<SipResponse>;
}

/** SUBSCRIBE through the proxy; the dialog's in-dialog requests carry the route set the proxy Record-Routed. */
async function watchThroughProxy(ua: TestUa, presentity: string, event: string, expires = 300): Promise<Watch> {
  const { res, dialog } = await subscribe(ua, presentity, { event, expires });
  assert.equal(res.status, 200, `${res.status} ${res.reason}\n${proxyLog()}`);
  const routes = res.headers.getAll('record-route');
  assert.ok(routes.length > 0, 'the proxy Record-Routes the SUBSCRIBE');
  assert.match(routes[0]!, new RegExp(`127\\.0\\.0\\.1:${kam.port}.*;lr`));
  const target = /<([^>]+)>/.exec(res.headers.get('contact') ?? '')?.[1];
  assert.ok(target, 'presenced answered with a Contact');
  const refresh = (exp: number, routed = true): Promise<SipResponse> => {
    dialog.cseq++;
    return ua.request({
      method: 'SUBSCRIBE',
      uri: target,
      from: `<${ua.aor}>;tag=${dialog.fromTag}`,
      to: `<${presentity}>;tag=${dialog.toTag}`,
      callId: dialog.callId,
      cseq: dialog.cseq,
      headers: [['event', event], ['expires', String(exp)], ...(routed ? routes.map((r) => ['route', r] as [string, string]) : [])],
    });
  };
  return { dialog, refresh };
}

interface DialogView {
  version: number;
  dialogs: Array<{ id: string; state: string }>;
}

function dialogView(body: string): DialogView {
  const version = withXml(body, (doc) => {
    assert.equal(doc.root.namespaceUri, DIALOG_INFO_NS);
    return Number(doc.root.attr('version')?.value);
  });
  const ids = xpathTexts(body, '/d:dialog-info/d:dialog/@id');
  const states = xpathTexts(body, '/d:dialog-info/d:dialog/d:state');
  return { version, dialogs: ids.map((id, i) => ({ id, state: states[i] ?? '' })) };
}

test('BLF: a SIPp call through Kamailio (dialog + pua_dialoginfo) lights the callee lamp early, confirmed, terminated, then dark; version +1 per NOTIFY', async (t) => {
  const callee = 'bob';
  const uasPort = await freePort();
  const ua = await TestUa.open('udp', kam.port);
  try {
    // The SIPp callee registers its own address with the proxy (the test UA sends the REGISTER for it).
    const reg = await ua.request({
      method: 'REGISTER',
      uri: `sip:${kam.domain}`,
      from: `<sip:${callee}@${kam.domain}>;tag=r${uasPort}`,
      to: `<sip:${callee}@${kam.domain}>`,
      headers: [
        ['contact', `<sip:${callee}@127.0.0.1:${uasPort}>`],
        ['expires', '300'],
      ],
      bare: true,
    });
    assert.equal(reg.status, 200, `REGISTER: ${reg.status} ${reg.reason}\n${proxyLog()}`);

    const { dialog, refresh } = await watchThroughProxy(ua, `sip:${callee}@${kam.domain}`, 'dialog');
    const first = await dialog.nextNotify(5000);
    assert.ok(viaProxy(first), 'the NOTIFY came back through the proxy');
    // The caller's lamp too (pua_dialoginfo PUBLISHes both ends; caller_confirmed = 1 shows it confirmed while ringing).
    const callerLamp = await watchThroughProxy(ua, `sip:alice@${kam.domain}`, 'dialog');
    await callerLamp.dialog.nextNotify(5000);
    const seen: DialogView[] = [dialogView(bodyOf(first))];
    const cseqs = new Set([first.cseq.seq]);

    const uas = startSipp(['-sf', join(SIPP_SCENARIOS, 'blf-uas.xml'), '-i', '127.0.0.1', '-p', String(uasPort), '-m', '1'], work, 'uas');
    const uac = startSipp(
      ['-sf', join(SIPP_SCENARIOS, 'blf-uac.xml'), '-s', callee, '-i', '127.0.0.1', '-p', '0', '-m', '1', `127.0.0.1:${kam.port}`],
      work,
      'uac',
    );
    try {
      // Every NOTIFY until the lamp has gone from terminated to dark.
      for (;;) {
        const n = await dialog.nextNotify(15_000);
        assert.ok(viaProxy(n));
        if (cseqs.has(n.cseq.seq)) continue; // a retransmission over UDP
        cseqs.add(n.cseq.seq);
        const v = dialogView(bodyOf(n));
        seen.push(v);
        if (v.dialogs.length === 0 && seen.some((s) => s.dialogs.some((d) => d.state === 'terminated'))) break;
        // pua_dialoginfo may keep its terminated publication; a refresh then shows the state without it.
        if (v.dialogs.some((d) => d.state === 'terminated')) {
          const r = await refresh(300);
          assert.equal(r.status, 200, `refresh routed by Record-Route: ${r.status}\n${proxyLog()}`);
        }
      }
      const [uacRun, uasRun] = await Promise.all([uac.done, uas.done]);
      assert.equal(uacRun.code, 0, explainSipp(uacRun));
      assert.equal(uasRun.code, 0, explainSipp(uasRun));
    } finally {
      uac.kill();
      uas.kill();
    }

    const states = seen.map((s) => (s.dialogs.length === 0 ? 'none' : s.dialogs.map((d) => d.state).join('+')));
    // Collapse repeats (a refresh or a second PUBLISH of the same state), then the order must be the call's.
    const order = states.filter((s, i) => i === 0 || s !== states[i - 1]);
    const trace = `states seen: ${states.join(' → ')}\n${proxyLog()}`;
    t.diagnostic(`callee lamp, one NOTIFY each: ${states.join(' → ')}`);
    const at = (s: string): number => order.indexOf(s);
    assert.equal(order[0], 'none', trace);
    assert.ok(at('early') > 0, trace);
    assert.ok(at('confirmed') > at('early'), trace);
    assert.ok(at('terminated') > at('confirmed'), trace);
    assert.equal(order[order.length - 1], 'none', trace);
    assert.equal(order.lastIndexOf('early'), at('early'), `the lamp never rings again: ${trace}`);
    for (const [i, s] of seen.entries()) assert.equal(s.version, i, `version of NOTIFY ${i}: ${trace}`);

    // Waited for: the caller's hang-up NOTIFY may come after the callee's.
    await callerLamp.dialog.nextNotify(15_000, (n) => dialogView(bodyOf(n)).dialogs.some((d) => d.state === 'terminated'));
    const caller = callerLamp.dialog
      .notifies()
      .slice(1)
      .map(
        (n) =>
          dialogView(bodyOf(n))
            .dialogs.map((d) => d.state)
            .join('+') || 'none',
      );
    t.diagnostic(`caller lamp: ${caller.join(' → ')}`);
    assert.ok(
      caller.includes('confirmed') && caller.indexOf('terminated') > caller.indexOf('confirmed'),
      `caller lamp: ${caller.join(' → ')}`,
    );
    assert.ok(!caller.includes('early'), 'caller_confirmed: the caller is never shown ringing');
    assert.equal((await callerLamp.refresh(0)).status, 200);
  } finally {
    await ua.close();
  }
});

test('reg: a UA registering at the proxy (pua_reginfo) makes a reg watcher see the registration, then its expiry', async () => {
  const user = 'carol';
  const aor = `sip:${user}@${kam.domain}`;
  const ua = await TestUa.open('udp', kam.port);
  try {
    const { dialog, refresh } = await watchThroughProxy(ua, aor, 'reg');
    const first = await dialog.nextNotify(5000);
    assert.ok(viaProxy(first));
    assert.equal(parseSubState(first).state, 'active');
    const contactStates = (body: string): string[] =>
      withXml(body, (doc) =>
        doc.find('/r:reginfo/r:registration/r:contact/@state', { r: 'urn:ietf:params:xml:ns:reginfo' }).map((n) => n.content),
      );
    const registrationStates = (body: string): string[] =>
      withXml(body, (doc) => doc.find('/r:reginfo/r:registration/@state', { r: 'urn:ietf:params:xml:ns:reginfo' }).map((n) => n.content));
    const version = (body: string): number => withXml(body, (doc) => Number(doc.root.attr('version')?.value));
    assert.deepEqual(contactStates(bodyOf(first)), []);

    const contactPort = await freePort();
    const reg = await ua.request({
      method: 'REGISTER',
      uri: `sip:${kam.domain}`,
      from: `<${aor}>;tag=r${contactPort}`,
      to: `<${aor}>`,
      headers: [
        ['contact', `<sip:${user}@127.0.0.1:${contactPort}>`],
        ['expires', '2'],
      ],
      bare: true,
    });
    assert.equal(reg.status, 200, `REGISTER: ${reg.status} ${reg.reason}\n${proxyLog()}`);
    const active = await dialog.nextNotify(10_000, (n) => contactStates(bodyOf(n)).includes('active'));
    assert.match(bodyOf(active), new RegExp(`127\\.0\\.0\\.1:${contactPort}`), 'the registered contact');
    // usrloc expires the binding (timer_interval 1 s) and pua_reginfo PUBLISHes the registration
    // terminated (its contacts gone): waited for, not slept.
    const expired = await dialog
      .nextNotify(15_000, (n) => registrationStates(bodyOf(n)).includes('terminated') && !contactStates(bodyOf(n)).includes('active'))
      .catch((err: Error) => {
        throw new Error(`${err.message}; NOTIFYs:\n${dialog.notifies().map(bodyOf).join('\n')}\n${proxyLog()}`);
      });
    assert.ok(version(bodyOf(expired)) > version(bodyOf(active)), 'the version counts up');
    assert.equal((await refresh(0)).status, 200);
  } finally {
    await ua.close();
  }
});

test('presence: a PUBLISH routed through the proxy reaches the watcher through it; the refresh follows the Record-Route', async () => {
  const presentity = `sip:dave@${kam.domain}`;
  const watcher = await TestUa.open('udp', kam.port);
  const publisher = await TestUa.open('tcp', kam.port);
  try {
    const { dialog, refresh } = await watchThroughProxy(watcher, presentity, 'presence');
    const first = await dialog.nextNotify(5000);
    assert.ok(viaProxy(first));
    const res = await publish(publisher, presentity, { body: pidf(presentity, 'desk', 'open', 'through Kamailio'), expires: 120 });
    assert.equal(res.status, 200, `${res.status} ${res.reason}\n${proxyLog()}`);
    assert.ok(res.headers.get('sip-etag'), 'presenced answered (SIP-ETag) through the proxy');
    const n = await dialog.nextNotify(5000, (r) => bodyOf(r).includes('through Kamailio'));
    assert.ok(viaProxy(n));
    assert.ok(showsOpen(bodyOf(n)));

    // The refresh carries the route set: the proxy relays it only by loose routing (else 404).
    const refreshed = await refresh(300);
    assert.equal(refreshed.status, 200, `${refreshed.status} ${refreshed.reason}\n${proxyLog()}`);
    const after = await dialog.nextNotify(5000);
    assert.ok(viaProxy(after));
    assert.ok(showsOpen(bodyOf(after)));
    const without = await refresh(300, false);
    assert.equal(without.status, 404, 'an in-dialog request without the route set is not relayed');
    assert.equal((await refresh(0)).status, 200);
  } finally {
    await Promise.all([watcher.close(), publisher.close()]);
  }
});
