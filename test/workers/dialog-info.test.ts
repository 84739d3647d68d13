/**
 * composeDialogDocument (`dialog`, RFC 4235) and composeReginfo (`reg`, RFC 3680): the pure
 * composition functions behind the two packages, on hand-made publications.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { composeDialogDocument, type DialogComposeOptions } from '../../workers/dialog-info.js';
import { composeReginfo } from '../../workers/reginfo.js';
import { DEFAULT_XML_LIMITS } from '../../workers/xml.js';
import { xpathTexts, withXml } from '../support/presence.js';

const D = 'urn:ietf:params:xml:ns:dialog-info';
const ENTITY = 'sip:ext100@example.com';
const SLOT = '\u0000v\u0000';
const OPTS: DialogComposeOptions = { forceSingle: false, forceDummy: false, gone: [] };

function dialogs(id: string, state: string, version: number, extra = ''): string {
  return `<dialog-info xmlns="${D}" version="${version}" state="full" entity="${ENTITY}"><dialog id="${id}" call-id="c-${id}" local-tag="l-${id}" remote-tag="r-${id}"${extra}><state>${state}</state></dialog></dialog-info>`;
}

/** The document with the version slot filled, and its dialogs as id:state. */
function shown(body: string): string[] {
  const doc = body.split(SLOT).join('7');
  const ids = xpathTexts(doc, '/d:dialog-info/d:dialog/@id');
  const states = xpathTexts(doc, '/d:dialog-info/d:dialog/d:state');
  return ids.map((id, i) => `${id}:${states[i]}`);
}

test('an empty full document for no publication; entity escaped; the version slot where the version goes', () => {
  const r = composeDialogDocument('sip:a&b@example.com', [], SLOT, OPTS, DEFAULT_XML_LIMITS);
  assert.match(r.body, new RegExp(`version="${SLOT}" state="full" entity="sip:a&amp;b@example.com"`));
  assert.deepEqual(shown(r.body), []);
  assert.deepEqual(r.terminated, []);
});

test('terminated is final whatever the arrival order; otherwise the higher dialog-info version wins', () => {
  const late = composeDialogDocument(
    ENTITY,
    [
      { body: dialogs('x', 'terminated', 3), receivedAt: 1 },
      { body: dialogs('x', 'early', 1), receivedAt: 2 },
    ],
    SLOT,
    OPTS,
    DEFAULT_XML_LIMITS,
  );
  assert.deepEqual(shown(late.body), ['x:terminated']);
  assert.deepEqual(late.terminated, ['x\u0000c-x']);
  const stale = composeDialogDocument(
    ENTITY,
    [
      { body: dialogs('y', 'confirmed', 5), receivedAt: 1 },
      { body: dialogs('y', 'early', 4), receivedAt: 2 },
    ],
    SLOT,
    OPTS,
    DEFAULT_XML_LIMITS,
  );
  assert.deepEqual(shown(stale.body), ['y:confirmed']);
});

test('a dialog already notified as terminated (gone) stays out, in any state a publication still shows', () => {
  const pubs = [
    { body: dialogs('g', 'early', 1), receivedAt: 5 },
    { body: dialogs('h', 'confirmed', 1), receivedAt: 4 },
  ];
  const r = composeDialogDocument(ENTITY, pubs, SLOT, { ...OPTS, gone: ['g\u0000c-g'] }, DEFAULT_XML_LIMITS);
  assert.deepEqual(shown(r.body), ['h:confirmed']);
});

test('a phone that numbers its dialogs again: the same id with a new call-id is a new dialog, never hidden by the old one', () => {
  const again = (callId: string, state: string): string =>
    `<dialog-info xmlns="${D}" version="1" state="full" entity="${ENTITY}"><dialog id="1" call-id="${callId}"><state>${state}</state></dialog></dialog-info>`;
  const pubs = [
    { body: again('second-call', 'early'), receivedAt: 2 },
    { body: again('first-call', 'terminated'), receivedAt: 1 },
  ];
  const both = composeDialogDocument(ENTITY, pubs, SLOT, OPTS, DEFAULT_XML_LIMITS);
  assert.deepEqual(shown(both.body).sort(), ['1:early', '1:terminated']);
  assert.deepEqual(both.terminated, ['1\u0000first-call']);
  const later = composeDialogDocument(ENTITY, pubs, SLOT, { ...OPTS, gone: both.terminated }, DEFAULT_XML_LIMITS);
  assert.deepEqual(shown(later.body), ['1:early'], 'the first call is gone, the second rings');
});

test('force_single_dialog ranks as presence_dialoginfo: early, confirmed, proceeding, trying, terminated', () => {
  const order = ['terminated', 'trying', 'proceeding', 'confirmed', 'early'];
  for (let best = 0; best < order.length; best++) {
    const pubs = order.slice(0, best + 1).map((state, i) => ({ body: dialogs(`d${i}`, state, 1), receivedAt: i }));
    const r = composeDialogDocument(ENTITY, pubs, SLOT, { ...OPTS, forceSingle: true }, DEFAULT_XML_LIMITS);
    assert.deepEqual(shown(r.body), [`d${best}:${order[best]}`]);
  }
});

test('force_dummy_dialog: one terminated dialog when there is none to show', () => {
  const r = composeDialogDocument(ENTITY, [], SLOT, { ...OPTS, forceDummy: true }, DEFAULT_XML_LIMITS);
  const s = shown(r.body);
  assert.equal(s.length, 1);
  assert.match(s[0]!, /:terminated$/);
  assert.deepEqual(r.terminated, [], 'the dummy is not a dialog to remember');
});

test('RFC 4235 §3.2 filter: call-id, and tags matched against either end', () => {
  const pubs = [
    { body: dialogs('a', 'early', 1), receivedAt: 1 },
    { body: dialogs('b', 'confirmed', 1), receivedAt: 2 },
  ];
  const one = (filter: DialogComposeOptions['filter']): string[] =>
    shown(composeDialogDocument(ENTITY, pubs, SLOT, { ...OPTS, filter }, DEFAULT_XML_LIMITS).body);
  assert.deepEqual(one({ callId: 'c-a' }), ['a:early']);
  assert.deepEqual(one({ callId: 'c-a', fromTag: 'r-a', toTag: 'l-a' }), ['a:early']);
  assert.deepEqual(one({ callId: 'c-a', fromTag: 'l-b' }), []);
  assert.deepEqual(one({ callId: 'c-z' }), []);
});

test('dialogs keep their namespaces and children; an unreadable publication contributes nothing', () => {
  const sa = `<dialog-info xmlns="${D}" xmlns:sa="urn:ietf:params:xml:ns:sa-dialog-info" version="1" state="full" entity="${ENTITY}"><dialog id="s"><sa:appearance>2</sa:appearance><state>confirmed</state></dialog></dialog-info>`;
  const r = composeDialogDocument(
    ENTITY,
    [
      { body: sa, receivedAt: 1 },
      { body: '<dialog-info', receivedAt: 2 },
    ],
    SLOT,
    OPTS,
    DEFAULT_XML_LIMITS,
  );
  const body = r.body.split(SLOT).join('0');
  assert.deepEqual(
    withXml(body, (doc) => doc.find('//sa:appearance', { sa: 'urn:ietf:params:xml:ns:sa-dialog-info' }).map((n) => n.content)),
    ['2'],
  );
});

const R = 'urn:ietf:params:xml:ns:reginfo';
const reg = (aor: string, contacts: string): string =>
  `<reginfo xmlns="${R}" version="3" state="full"><registration aor="${aor}" id="r1" state="active">${contacts}</registration></reginfo>`;
const contact = (id: string, state: string, uri: string): string =>
  `<contact id="${id}" state="${state}" event="registered"><uri>${uri}</uri></contact>`;

test('reginfo: registrations of several publications merged per aor, contacts by id newest first, active while one is', () => {
  const body = composeReginfo(
    [
      { body: reg('sip:a@example.com', contact('1', 'terminated', 'sip:a@192.0.2.1')), receivedAt: 3 },
      {
        body: reg('sip:a@example.com', contact('1', 'active', 'sip:a@192.0.2.1') + contact('2', 'active', 'sip:a@192.0.2.2')),
        receivedAt: 2,
      },
      {
        body: reg('sip:b@example.com', contact('9', 'terminated', 'sip:b@192.0.2.9')).replace('state="active"', 'state="terminated"'),
        receivedAt: 1,
      },
    ],
    SLOT,
    DEFAULT_XML_LIMITS,
  )
    .split(SLOT)
    .join('0');
  const ns = { r: R };
  const q = (x: string): string[] => withXml(body, (doc) => doc.find(x, ns).map((n) => n.content));
  assert.deepEqual(q('/r:reginfo/r:registration/@aor'), ['sip:a@example.com', 'sip:b@example.com']);
  assert.deepEqual(q("/r:reginfo/r:registration[@aor='sip:a@example.com']/r:contact/@state"), ['terminated', 'active']);
  assert.deepEqual(q("/r:reginfo/r:registration[@aor='sip:a@example.com']/@state"), ['active']);
  assert.deepEqual(q("/r:reginfo/r:registration[@aor='sip:b@example.com']/@state"), ['terminated']);
  assert.deepEqual(q('/r:reginfo/@state'), ['full']);
  const ended = composeReginfo(
    [{ body: reg('sip:c@example.com', contact('5', 'terminated', 'sip:c@192.0.2.5')), receivedAt: 1 }],
    SLOT,
    DEFAULT_XML_LIMITS,
  )
    .split(SLOT)
    .join('0');
  assert.deepEqual(
    withXml(ended, (doc) => doc.find('/r:reginfo/r:registration/@state', ns).map((n) => n.content)),
    ['terminated'],
    'no contact active: terminated, whatever the document said',
  );
});
