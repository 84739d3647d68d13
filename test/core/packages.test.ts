/**
 * The other event packages end to end (issue 4): message-summary (RFC 3842, presence_mwi),
 * dialog;sla (draft-anil-sipping-bla over RFC 4235 dialog-info) with disable_bla = 0, and
 * presence switched off with disable_presence = 1 (489).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import {
  pidf,
  publish,
  subscribe,
  watch,
  uniqueUri,
  parseSubState,
  bodyOf,
  cseqOf,
  withXml,
  xpathTexts,
  DIALOG_INFO_NS,
  withUa,
} from '../support/presence.js';

/** force_active 0: these packages need no authorisation, so watchers are active anyway. */
const PACKAGES = { force_active: 0, disable_bla: 0, sip_t1: 50 };
const NO_PRESENCE = { disable_presence: 1, sip_t1: 50 };

let node: RunningNode;
let off: RunningNode;
before(async () => {
  [node, off] = await Promise.all([startNode(PACKAGES), startNode(NO_PRESENCE)]);
});
after(async () => {
  await Promise.all([node?.stop(), off?.stop()]);
});

const MWI = 'application/simple-message-summary';
const DIALOG_INFO = 'application/dialog-info+xml';
const SA_NS = 'urn:ietf:params:xml:ns:sa-dialog-info';

function summary(waiting: 'yes' | 'no', voice: string): string {
  return `Messages-Waiting: ${waiting}\r\nMessage-Account: sip:vm@example.com\r\nVoice-Message: ${voice}\r\n`;
}

/** One line appearance of a shared line (draft-anil-sipping-bla §5.2). */
function dialogInfo(line: string, dialogId: string, appearance: number, state: string): string {
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" xmlns:sa="${SA_NS}" version="0" state="partial" entity="${line}">` +
    `<dialog id="${dialogId}" call-id="c-${dialogId}" local-tag="lt-${dialogId}" direction="initiator">` +
    `<sa:appearance>${appearance}</sa:appearance><state>${state}</state></dialog></dialog-info>`
  );
}

for (const proto of ['udp', 'tcp'] as const) {
  test(`[${proto}] message-summary: PUBLISH and SUBSCRIBE, watchers get the latest summary`, () =>
    withUa(node, proto, async (ua) => {
      const box = uniqueUri('mwi');
      const first = await publish(ua, box, { event: 'message-summary', body: summary('yes', '2/8 (0/2)'), contentType: MWI, expires: 600 });
      assert.equal(first.status, 200, `${first.status} ${first.reason}`);
      const { res, dialog, first: n1 } = await watch(ua, box, { event: 'message-summary' });
      assert.equal(res.status, 200);
      assert.equal(parseSubState(n1).state, 'active', 'no authorisation for message-summary (force_active 0 here)');
      assert.match(n1.headers.get('event') ?? '', /^message-summary\b/);
      assert.equal(n1.contentType, MWI);
      assert.match(bodyOf(n1), /^Messages-Waiting: yes/);
      assert.match(bodyOf(n1), /Voice-Message: 2\/8 \(0\/2\)/);

      const etag = first.headers.get('sip-etag')!;
      const second = await publish(ua, box, {
        event: 'message-summary',
        etag,
        body: summary('no', '0/10 (0/0)'),
        contentType: MWI,
        expires: 600,
      });
      assert.equal(second.status, 200);
      const n2 = await dialog.nextNotify(3000, (r) => bodyOf(r).includes('Messages-Waiting: no'));
      assert.ok(cseqOf(n2) > cseqOf(n1));
      assert.doesNotMatch(bodyOf(n2), /2\/8/, 'only the latest summary');

      // Another publisher for the same box: the newest summary wins.
      const other = await publish(ua, box, {
        event: 'message-summary',
        body: summary('yes', '1/11 (0/0)'),
        contentType: MWI,
        expires: 600,
      });
      assert.equal(other.status, 200);
      const n3 = await dialog.nextNotify(3000, (r) => bodyOf(r).includes('1/11'));
      assert.match(bodyOf(n3), /^Messages-Waiting: yes/);
    }));

  test(`[${proto}] message-summary: a body that is not a summary → 400; wrong type → 415 with Accept`, () =>
    withUa(node, proto, async (ua) => {
      const box = uniqueUri('mwi');
      const bad = await publish(ua, box, { event: 'message-summary', body: 'Voice-Message: 1/1\r\n', contentType: MWI, expires: 600 });
      assert.equal(bad.status, 400);
      const wrong = await publish(ua, box, { event: 'message-summary', body: pidf(box, 't', 'open'), expires: 600 });
      assert.equal(wrong.status, 415);
      assert.match(wrong.headers.get('accept') ?? '', /application\/simple-message-summary/);
    }));

  test(`[${proto}] dialog;sla (disable_bla 0): line appearances composed into one dialog-info, version per subscription`, () =>
    withUa(node, proto, async (ua) => {
      const line = uniqueUri('line');
      const phoneA = await publish(ua, line, {
        event: 'dialog;sla',
        body: dialogInfo(line, 'd1', 1, 'confirmed'),
        contentType: DIALOG_INFO,
        expires: 600,
      });
      assert.equal(phoneA.status, 200, `${phoneA.status} ${phoneA.reason}`);
      const phoneB = await publish(ua, line, {
        event: 'dialog;sla',
        body: dialogInfo(line, 'd2', 2, 'early'),
        contentType: DIALOG_INFO,
        expires: 600,
      });
      assert.equal(phoneB.status, 200);

      const { dialog, first } = await watch(ua, line, { event: 'dialog;sla' });
      assert.equal(parseSubState(first).state, 'active');
      assert.match(first.headers.get('event') ?? '', /^dialog\s*;\s*sla\b/);
      assert.equal(first.contentType, DIALOG_INFO);
      const body = bodyOf(first);
      withXml(body, (doc) => {
        assert.equal(doc.root.name, 'dialog-info');
        assert.equal(doc.root.namespaceUri, DIALOG_INFO_NS);
        assert.equal(doc.root.attr('state')?.value, 'full', 'NOTIFYs carry full state');
        assert.equal(doc.root.attr('entity')?.value, line);
      });
      const ids = xpathTexts(body, '/d:dialog-info/d:dialog/@id').sort();
      assert.deepEqual(ids, ['d1', 'd2'], `both line appearances:\n${body}`);
      const appearances = withXml(body, (doc) =>
        doc
          .find('//sa:appearance', { sa: SA_NS })
          .map((n) => n.content.trim())
          .sort(),
      );
      assert.deepEqual(appearances, ['1', '2'], 'the BLA appearance elements keep their namespace');
      const v1 = Number(xpathTexts(body, '/d:dialog-info/@version')[0]);
      assert.ok(Number.isInteger(v1) && v1 >= 0, `version is a number (got ${v1})`);

      const change = await publish(ua, line, {
        event: 'dialog;sla',
        etag: phoneB.headers.get('sip-etag')!,
        body: dialogInfo(line, 'd2', 2, 'terminated'),
        contentType: DIALOG_INFO,
        expires: 600,
      });
      assert.equal(change.status, 200);
      const n2 = await dialog.nextNotify(3000, (r) => bodyOf(r).includes('terminated'));
      const v2 = Number(xpathTexts(bodyOf(n2), '/d:dialog-info/@version')[0]);
      assert.equal(v2, v1 + 1, 'version increases by one per NOTIFY of the subscription (RFC 4235 §4.1)');
      assert.deepEqual(xpathTexts(bodyOf(n2), "/d:dialog-info/d:dialog[@id='d2']/d:state"), ['terminated']);
      assert.deepEqual(xpathTexts(bodyOf(n2), "/d:dialog-info/d:dialog[@id='d1']/d:state"), ['confirmed']);

      // A second watcher starts its own version sequence.
      const other = await watch(ua, line, { event: 'dialog;sla' });
      assert.equal(Number(xpathTexts(bodyOf(other.first), '/d:dialog-info/@version')[0]), v1, 'versions are per subscription');
    }));

  test(`[${proto}] dialog;sla: a body that is not dialog-info → 400`, () =>
    withUa(node, proto, async (ua) => {
      const line = uniqueUri('line');
      const res = await publish(ua, line, { event: 'dialog;sla', body: pidf(line, 't', 'open'), contentType: DIALOG_INFO, expires: 600 });
      assert.equal(res.status, 400);
      const broken = await publish(ua, line, { event: 'dialog;sla', body: '<dialog-info', contentType: DIALOG_INFO, expires: 600 });
      assert.equal(broken.status, 400);
    }));

  test(`[${proto}] disable_presence 1: presence PUBLISH and SUBSCRIBE → 489; message-summary still served`, () =>
    withUa(off, proto, async (ua) => {
      const p = uniqueUri();
      const pub = await publish(ua, p, { body: pidf(p, 't', 'open'), expires: 600 });
      assert.equal(pub.status, 489);
      assert.doesNotMatch(pub.headers.get('allow-events') ?? '', /(^|[\s,])presence([\s,;]|$)/, 'presence not offered');
      const { res } = await subscribe(ua, p, { expires: 600 });
      assert.equal(res.status, 489);
      const allow = res.headers.get('allow-events') ?? '';
      assert.doesNotMatch(allow, /(^|[\s,])presence([\s,;]|$)/);
      assert.match(allow, /message-summary/);
      const sla = await subscribe(ua, p, { event: 'dialog;sla', expires: 600 });
      assert.equal(sla.res.status, 489, 'dialog;sla is off by default (disable_bla 1)');
      const mwi = await subscribe(ua, p, { event: 'message-summary', expires: 600 });
      assert.equal(mwi.res.status, 200, 'message-summary is not affected');
    }));
}
