/**
 * Property tests of the XCAP URI and node selector parsers (issue 12), fast-check with a fixed
 * seed (FUZZ_SEED to replay another) and bounded runs:
 *
 * - whatever the path, selector or query text, the parsers throw nothing but XcapError (the
 *   Digest Authorization parser nothing at all);
 * - documentPathOf and parseXcapUri round-trip auid, XUI and document name; a node selector
 *   written from steps parses back to those steps;
 * - never superlinear: the worst-case inputs of test/support/linear-cases.ts at 64 kB, and
 *   generated fragments repeated to 32 kB, run in a child node that traces any regular
 *   expression over 8 backtracks per character.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseXcapUri, documentPathOf } from '../../core/xcap/uri.js';
import { parseNodeSelector } from '../../core/xcap/selectors.js';
import { SipUri, normalizedAor } from '../../transport/uri.js';
import { check, FUZZ_SEED, xcapJunk, selectorStep, stepText, uriSpec, uriText } from '../support/sip-arbitraries.js';
import { exerciseXcap, xcapCases } from '../support/linear-cases.js';
import { runGuarded } from '../support/backtrack-guard.js';

const ROOT = '/xcap-root';
const BINDINGS = { a: 'urn:a', cr: 'urn:ietf:params:xml:ns:common-policy', pr: 'urn:ietf:params:xml:ns:pres-rules' };

test('fuzz: any path, node selector or query component → a result or an XcapError, nothing else', () =>
  check(
    fc.property(
      xcapJunk,
      xcapJunk,
      fc.constantFrom('pres-rules/users/sip:a@b/', 'resource-lists/global/', '', 'pres-rules/'),
      (a, b, mid) => {
        exerciseXcap('path', `${ROOT}/${mid}${a}`);
        exerciseXcap('path', `${ROOT}/${mid}index/~~/${a}`);
        exerciseXcap('selector', a + b);
        exerciseXcap('query', a);
        exerciseXcap('query', `xmlns(${a}=${b})`);
        exerciseXcap('digest', `Digest ${a}=${b}, ${b}="${a}"`);
      },
    ),
    3000,
  ));

const segment = fc.string({ minLength: 1, maxLength: 10 }).filter((s) => !s.includes('/') && s !== '~~' && s !== '.' && s !== '..');

test('fuzz: documentPathOf → parseXcapUri gives back the auid, the XUI and the document name', () =>
  check(
    fc.property(
      fc.constantFrom('pres-rules', 'resource-lists', 'rls-services', 'pidf-manipulation'),
      fc.option(
        uriSpec.filter((u) => !uriText(u).includes('/')),
        { nil: undefined },
      ),
      fc.array(segment, { minLength: 1, maxLength: 3 }),
      (auid, spec, segs) => {
        const name = segs.join('/');
        const xui = spec ? uriText(spec) : '';
        const path = documentPathOf(ROOT, auid, xui, name);
        const parsed = parseXcapUri(ROOT, path, 4096);
        assert.ok(parsed);
        assert.equal(parsed.auid, auid);
        // A plain address of record is keyed as presentities are (RFC 3261 §19.1.4); the rest as written.
        const plain = spec !== undefined && spec.user !== undefined && spec.port === undefined && spec.params.length === 0;
        assert.equal(parsed.xui, plain ? normalizedAor(SipUri.parse(xui)) : xui);
        assert.equal(parseXcapUri(ROOT, documentPathOf(ROOT, auid, parsed.xui, name))!.xui, parsed.xui, 'idempotent');
        assert.equal(parsed.name, name);
        assert.equal(parsed.documentPath, path);
        assert.equal(parsed.nodeSelector, undefined);
      },
    ),
    2000,
  ));

test('fuzz: a node selector written from steps parses back to them', () =>
  check(
    fc.property(fc.array(selectorStep, { minLength: 1, maxLength: 5 }), (steps) => {
      const text = steps.map(stepText).join('/');
      const sel = parseNodeSelector(text, BINDINGS);
      assert.equal(sel.steps.length, steps.length);
      sel.steps.forEach((got, i) => {
        const want = steps[i]!;
        assert.equal(got.source, stepText(want));
        assert.equal(got.name.local, want.name);
        assert.equal(got.name.ns, want.prefix !== undefined && want.name !== '*' ? BINDINGS[want.prefix as keyof typeof BINDINGS] : null);
        assert.equal(got.position, want.position);
        assert.equal(got.attr?.local, want.attr?.[0]);
        assert.equal(got.attr?.value, want.attr?.[1]);
      });
    }),
    2000,
  ));

test('no regular expression backtracks more than linearly on the worst-case XCAP inputs of 64 kB', async () => {
  const size = 65535;
  const run = await runGuarded('linear-cases', ['xcap', String(size)], 8 * size);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(run.excessive, []);
  assert.deepEqual(
    run.out.filter((l) => l.startsWith('case ')).map((l) => l.slice(5)),
    xcapCases(size).map(([name]) => name),
  );
  assert.equal(run.out.at(-1), 'done');
});

test('fuzz: XCAP fragments repeated to 32 kB in a path, a selector or a query: no regular expression backtracks more than linearly', async () => {
  const size = 32768;
  const runs = 400;
  const run = await runGuarded('linear-cases', ['fuzz-xcap', String(size), String(FUZZ_SEED), String(runs)], 8 * size);
  assert.equal(run.code, 0, `seed ${FUZZ_SEED}: ${run.stderr.slice(0, 2000)}`);
  assert.deepEqual(run.excessive, [], `seed ${FUZZ_SEED}`);
  assert.deepEqual(run.out, [`case fuzz-xcap ${runs}`, 'done']);
});
