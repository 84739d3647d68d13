/**
 * Property tests of the SIP parser (issue 12), fast-check with a fixed seed (FUZZ_SEED to
 * replay another) and bounded runs:
 *
 * - whatever the bytes, parsing throws nothing but SipParseError, validateRequest throws
 *   nothing, and the header accessors throw nothing but SyntaxError;
 * - a valid request round-trips: parse → serialise → parse gives the same message, and
 *   serialising is stable; URIs round-trip, and the normalised AOR is one per RFC 3261
 *   §19.1.4 equivalence class;
 * - the TCP framer cuts any chunking of a stream of messages into the same messages;
 * - never superlinear: generated fragments repeated to 32 kB, in every part of a message, run
 *   in a child node that traces any regular expression over 8 backtracks per character.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseMessage, validateRequest, StreamFramer, SipParseError } from '../../transport/parser.js';
import { SipRequest } from '../../transport/message.js';
import { SipUri, normalizedAor, unescapeUnreserved } from '../../transport/uri.js';
import { check, FUZZ_SEED, mutatedRequest, requestSpec, requestText, uriSpec, uriText, userPart } from '../support/sip-arbitraries.js';
import { exerciseSip } from '../support/linear-cases.js';
import { runGuarded } from '../support/backtrack-guard.js';

test('fuzz: arbitrary bytes → SipParseError or a message; nothing else is ever thrown', () =>
  check(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, datagram) => {
      exerciseSip(Buffer.from(bytes).toString('latin1'));
      try {
        parseMessage(Buffer.from(bytes), datagram);
      } catch (err) {
        if (!(err instanceof SipParseError)) throw err;
      }
    }),
    3000,
  ));

test('fuzz: mutated valid requests → SipParseError or a message whose accessors throw only SyntaxError', () =>
  check(
    fc.property(mutatedRequest, (text) => {
      // exerciseSip lets SipParseError and SyntaxError through only where they belong.
      exerciseSip(text);
    }),
    3000,
  ));

test('fuzz: a valid request round-trips through parse and serialise, and is accepted', () =>
  check(
    fc.property(requestSpec, (spec) => {
      const text = requestText(spec);
      const first = parseMessage(Buffer.from(text, 'utf8'), true);
      assert.ok(first.message instanceof SipRequest);
      assert.deepEqual(first.problems, []);
      assert.equal(validateRequest(first.message, first.problems), undefined);
      assert.equal(first.message.method, spec.method);
      assert.equal(first.message.uri, spec.uri);
      assert.equal(first.message.fromTag, spec.fromTag);
      assert.equal(first.message.cseq.seq, spec.seq);
      assert.equal(first.message.body.toString('utf8'), spec.body);
      const bytes = first.message.toBuffer();
      const again = parseMessage(bytes, true).message as SipRequest;
      assert.deepEqual(again.headers.entries, first.message.headers.entries);
      assert.ok(again.body.equals(first.message.body));
      assert.ok(again.toBuffer().equals(bytes), 'serialising is stable');
    }),
    1500,
  ));

test('fuzz: SIP URIs round-trip; the normalised AOR is idempotent and the same for escaped and plain spellings', () =>
  check(
    fc.property(uriSpec, fc.array(fc.nat(), { maxLength: 4 }), (spec, escapeAt) => {
      const text = uriText(spec);
      const uri = SipUri.parse(text);
      assert.equal(uri.toString(), text);
      assert.equal(SipUri.parse(uri.toString()).toString(), text);
      const aor = normalizedAor(uri);
      assert.equal(normalizedAor(SipUri.parse(aor)), aor, 'idempotent');
      // Escape some unreserved characters of the user part, upper-case the host: same AOR.
      if (spec.user !== undefined) {
        let user = spec.user;
        for (const n of escapeAt) {
          const i = n % user.length;
          const c = user[i]!;
          if (/[A-Za-z0-9\-_.!~*'()]/.test(c) && user[i - 1] !== '%' && user[i - 2] !== '%') {
            user = user.slice(0, i) + '%' + c.charCodeAt(0).toString(16).padStart(2, '0') + user.slice(i + 1);
          }
        }
        const other = SipUri.parse(uriText({ ...spec, user, host: spec.host.toUpperCase() }));
        assert.equal(normalizedAor(other), aor);
      }
    }),
    2000,
  ));

test('unescapeUnreserved: escapes of unreserved characters are undone, the others upper-cased, broken ones kept', () => {
  assert.equal(unescapeUnreserved('%70res%2e%7E%41'), 'pres.~A');
  assert.equal(unescapeUnreserved('a%3ab%40c%20'), 'a%3Ab%40c%20');
  assert.equal(unescapeUnreserved('100%'), '100%');
  assert.equal(unescapeUnreserved('%4'), '%4');
  assert.equal(unescapeUnreserved('%zz%41'), '%zzA');
  assert.equal(normalizedAor(SipUri.parse('SIP:%70res@Example.COM:5060;transport=tcp')), 'sip:pres@example.com');
  assert.equal(normalizedAor(SipUri.parse('sip:Alice@example.com')), 'sip:Alice@example.com', 'the user part stays case-sensitive');
  assert.equal(normalizedAor(SipUri.parse('sip:alice@%65xample.com')), 'sip:alice@example.com');
  check(
    fc.property(userPart, (u) => {
      assert.equal(unescapeUnreserved(unescapeUnreserved(u)), unescapeUnreserved(u));
    }),
    2000,
  );
});

test('fuzz: the TCP framer cuts any chunking of a stream of messages into the same messages', () =>
  check(
    fc.property(
      fc.array(requestSpec, { minLength: 1, maxLength: 5 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 20 }),
      (specs, cuts) => {
        const messages = specs.map((s) => Buffer.from(requestText(s), 'utf8'));
        const stream = Buffer.concat(messages.flatMap((m) => [m, Buffer.from('\r\n')]));
        const framer = new StreamFramer({ maxMessageSize: 1 << 16 });
        const out: Buffer[] = [];
        for (let at = 0, i = 0; at < stream.length; i++) {
          const n = cuts[i % cuts.length]!;
          out.push(...framer.push(stream.subarray(at, at + n)).messages.map((m) => Buffer.from(m)));
          at += n;
        }
        assert.equal(out.length, messages.length);
        for (const [i, m] of out.entries()) assert.ok(m.equals(messages[i]!), `message ${i}`);
        assert.ok(framer.work <= 8 * stream.length, `framer work ${framer.work} for ${stream.length} bytes`);
      },
    ),
    1000,
  ));

test('fuzz: fragments repeated to 32 kB anywhere in a message: no regular expression backtracks more than linearly', async () => {
  const size = 32768;
  const runs = 400;
  const run = await runGuarded('linear-cases', ['fuzz-sip', String(size), String(FUZZ_SEED), String(runs)], 8 * size);
  assert.equal(run.code, 0, `seed ${FUZZ_SEED}: ${run.stderr.slice(0, 2000)}`);
  assert.deepEqual(run.excessive, [], `seed ${FUZZ_SEED}: regular expressions over the backtrack limit`);
  assert.deepEqual(run.out, [`case fuzz-sip ${runs}`, 'done']);
});
