/**
 * fast-check arbitraries for SIP messages and XCAP URIs: valid ones (for round trips), the
 * same mutated (for "never throws anything but the parser's own error"), and fragments
 * repeated to a large size (for "never superlinear": the classic worst case of a backtracking
 * or rescanning parser is one short piece repeated).
 *
 * Every fuzz test runs with a fixed seed (FUZZ_SEED overrides it) and a bounded number of
 * runs, and names the seed when it fails, so a failure replays exactly.
 */
import fc from 'fast-check';

export const FUZZ_SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : 0x5e12;

/** fc.assert with the fixed seed and `numRuns`, the seed named in the failure. */
export function check<T>(property: fc.IProperty<T> | fc.IAsyncProperty<T>, numRuns: number): void | Promise<void> {
  const params = { seed: FUZZ_SEED, numRuns };
  const fail = (err: unknown): never => {
    throw new Error(`fuzz property failed with seed ${FUZZ_SEED} (replay: FUZZ_SEED=${FUZZ_SEED}): ${(err as Error).message}`);
  };
  try {
    const r = fc.assert(property as fc.IProperty<T>, params) as unknown;
    if (r instanceof Promise) return r.catch(fail);
  } catch (err) {
    fail(err);
  }
}

const chars = (s: string): fc.Arbitrary<string> => fc.constantFrom(...s.split(''));
const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const TOKEN = ALNUM + "-.!%*_+`'~";
/** RFC 3261 §25.1 user: unreserved / escaped / user-unreserved (without the escapes here). */
const USER = ALNUM + "-_.!~*'()&=+$,;?/";

export const token = (max = 12): fc.Arbitrary<string> => fc.string({ unit: chars(TOKEN), minLength: 1, maxLength: max });

const hexByte = fc.integer({ min: 0, max: 255 }).map((b) => '%' + b.toString(16).padStart(2, '0'));
const hexCased = fc.tuple(hexByte, fc.boolean()).map(([h, up]) => (up ? h.toUpperCase() : h));

/** A user part: unescaped characters and escapes of any byte. */
export const userPart = fc
  .array(fc.oneof({ weight: 4, arbitrary: chars(USER) }, { weight: 1, arbitrary: hexCased }), { minLength: 1, maxLength: 16 })
  .map((a) => a.join(''));

const label = fc.string({ unit: chars('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'), minLength: 1, maxLength: 10 });
export const hostname = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));

export interface UriSpec {
  scheme: 'sip' | 'sips';
  user: string | undefined;
  host: string;
  port: number | undefined;
  params: Array<[string, string]>;
}

export const uriSpec: fc.Arbitrary<UriSpec> = fc.record({
  scheme: fc.constantFrom('sip' as const, 'sips' as const),
  user: fc.option(userPart, { nil: undefined }),
  host: hostname,
  port: fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
  params: fc.array(
    fc.tuple(
      token(8).map((t) => t.toLowerCase()),
      fc.oneof(fc.constant(''), token(8)),
    ),
    { maxLength: 3 },
  ),
});

export function uriText(u: UriSpec): string {
  const seen = new Set<string>();
  let params = '';
  for (const [k, v] of u.params) {
    if (seen.has(k)) continue;
    seen.add(k);
    params += v === '' ? `;${k}` : `;${k}=${v}`;
  }
  return `${u.scheme}:${u.user !== undefined ? u.user + '@' : ''}${u.host}${u.port !== undefined ? ':' + u.port : ''}${params}`;
}

/** Printable header value text without CR/LF, with the characters SIP parsers trip over. */
const valueText = fc.string({
  unit: fc.oneof({ weight: 6, arbitrary: chars(ALNUM + ' ') }, { weight: 2, arbitrary: chars(';,<>"\\:=@/?%\t()[]') }),
  maxLength: 30,
});

export interface RequestSpec {
  method: string;
  uri: string;
  branch: string;
  from: string;
  fromTag: string;
  to: string;
  callId: string;
  seq: number;
  extra: Array<[string, string]>;
  body: string;
}

export const requestSpec: fc.Arbitrary<RequestSpec> = fc.record({
  method: fc.constantFrom('OPTIONS', 'PUBLISH', 'SUBSCRIBE', 'NOTIFY', 'MESSAGE', 'FOO'),
  uri: uriSpec.map(uriText),
  branch: token(16),
  from: uriSpec.map(uriText),
  fromTag: token(10),
  to: uriSpec.map(uriText),
  callId: token(20),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  extra: fc.array(
    fc.tuple(
      token(12).map((t) => 'X-' + t),
      valueText.map((v) => v.trim()).filter((v) => v.length > 0),
    ),
    { maxLength: 4 },
  ),
  body: fc.string({ maxLength: 40 }),
});

/** The request as a UA writes it (RFC 3261 §7, CRLF line ends, Content-Length of the body). */
export function requestText(r: RequestSpec): string {
  const body = Buffer.from(r.body, 'utf8');
  const lines = [
    `${r.method} ${r.uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK${r.branch}`,
    `From: <${r.from}>;tag=${r.fromTag}`,
    `To: <${r.to}>`,
    `Call-ID: ${r.callId}`,
    `CSeq: ${r.seq} ${r.method}`,
    'Max-Forwards: 70',
    ...r.extra.map(([k, v]) => `${k}: ${v}`),
    `Content-Length: ${body.length}`,
  ];
  return lines.join('\r\n') + '\r\n\r\n' + r.body;
}

/** Pieces that make parsers branch: separators, folding, quotes, escapes, line separators. */
export const NASTY = [
  ' ',
  '\t',
  '\r\n',
  '\r\n ',
  '\n',
  '\r',
  ':',
  ';',
  ',',
  '<',
  '>',
  '"',
  '\\',
  '%',
  '%4',
  '@',
  '/',
  '=',
  '[',
  ']',
  '\u2028',
  '\u00a0',
  '\ufeff',
  '\0',
  'SIP/2.0',
  'SIP/',
  ';tag=',
  'Via: ',
  'l: 99999',
  '\r\n\r\n',
  'sip:',
  '~~/',
  '&#x',
];

type Mutation = { at: number; kind: 'insert' | 'delete' | 'repeat'; text: string; len: number; times: number };

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('insert' as const, 'delete' as const, 'repeat' as const),
  text: fc.oneof(fc.constantFrom(...NASTY), fc.string({ maxLength: 6 })),
  len: fc.integer({ min: 1, max: 12 }),
  times: fc.integer({ min: 2, max: 40 }),
});

function mutate(s: string, ms: Mutation[]): string {
  for (const m of ms) {
    const at = s.length === 0 ? 0 : m.at % (s.length + 1);
    if (m.kind === 'insert') s = s.slice(0, at) + m.text + s.slice(at);
    else if (m.kind === 'delete') s = s.slice(0, at) + s.slice(at + m.len);
    else s = s.slice(0, at) + s.slice(at, at + m.len).repeat(m.times) + s.slice(at + m.len);
  }
  return s;
}

/** A valid request, then up to 6 insertions, deletions and repetitions. */
export const mutatedRequest: fc.Arbitrary<string> = fc
  .tuple(requestSpec, fc.array(mutation, { minLength: 1, maxLength: 6 }))
  .map(([r, ms]) => mutate(requestText(r), ms));

/** Where in a request a repeated fragment goes: the request line, a header value, a header name. */
const SLOTS = [
  (f: string) => `OPTIONS${f}sip:a@example.com SIP/2.0\r\n`,
  (f: string) => `OPTIONS sip:${f}@example.com SIP/2.0\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h${f}\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nFrom: ${f}\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nTo: <sip:a@b>${f}\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nCSeq: 1${f}\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nContact: ${f}\r\n`,
  (f: string) => `OPTIONS sip:a@example.com SIP/2.0\r\nX${f}: y\r\n`,
  (f: string) => `SIP/2.0 200${f}\r\n`,
];
const TAIL =
  'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKamp\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: amp\r\nCSeq: 1 OPTIONS\r\n\r\n';

/** A fragment (1 to 8 characters, NASTY pieces likely) repeated to about `size` characters in one slot of a request. */
export function amplifiedRequest(size: number): fc.Arbitrary<string> {
  const piece = fc.oneof(fc.constantFrom(...NASTY), fc.string({ minLength: 1, maxLength: 3 }));
  return fc.tuple(fc.array(piece, { minLength: 1, maxLength: 3 }), fc.nat(SLOTS.length - 1)).map(([parts, slot]) => {
    const f = parts.join('');
    return SLOTS[slot]!(f.repeat(Math.max(1, Math.floor(size / f.length)))) + TAIL;
  });
}

// ───── XCAP ─────

const XCAP_PIECES = [
  '/',
  '~~',
  '/~~/',
  '%',
  '%2',
  '%41',
  '%2F',
  '[',
  ']',
  '@',
  '"',
  "'",
  '=',
  ':',
  '*',
  'namespace::*',
  '&#x41;',
  '&amp;',
  ' ',
  '(',
  ')',
  'xmlns(',
  '+',
];

/** A node selector step: name, position, attribute test (RFC 4825 §6.3). */
export const selectorStep = fc.record({
  prefix: fc.option(fc.constantFrom('a', 'cr', 'pr'), { nil: undefined }),
  name: fc.oneof(fc.constant('*'), fc.string({ unit: chars('abcdefghijklmnopqrstuvwxyz'), minLength: 1, maxLength: 8 })),
  position: fc.option(fc.integer({ min: 1, max: 99 }), { nil: undefined }),
  attr: fc.option(
    fc.tuple(
      fc.string({ unit: chars('abcdefghijklmnopqrstuvwxyz'), minLength: 1, maxLength: 6 }),
      fc.string({ unit: chars(ALNUM + ' :/.-'), maxLength: 10 }),
    ),
    { nil: undefined },
  ),
});

export type StepSpec = typeof selectorStep extends fc.Arbitrary<infer T> ? T : never;

export function stepText(s: StepSpec): string {
  const name = s.prefix !== undefined && s.name !== '*' ? `${s.prefix}:${s.name}` : s.name;
  return name + (s.position !== undefined ? `[${s.position}]` : '') + (s.attr ? `[@${s.attr[0]}="${s.attr[1]}"]` : '');
}

/** Text made of XCAP-meaningful pieces and random characters. */
export const xcapJunk: fc.Arbitrary<string> = fc
  .array(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...XCAP_PIECES) }, { weight: 2, arbitrary: fc.string({ maxLength: 4 }) }), {
    maxLength: 20,
  })
  .map((a) => a.join(''));

/** An XCAP-meaningful fragment repeated to about `size` characters, in a path, a selector or a query. */
export function amplifiedXcap(size: number): fc.Arbitrary<['path' | 'selector' | 'query', string]> {
  const piece = fc.oneof(fc.constantFrom(...XCAP_PIECES), fc.string({ minLength: 1, maxLength: 3 }));
  return fc
    .tuple(fc.array(piece, { minLength: 1, maxLength: 3 }), fc.constantFrom('path' as const, 'selector' as const, 'query' as const))
    .map(([parts, kind]) => {
      const f = parts.join('');
      const body = f.repeat(Math.max(1, Math.floor(size / f.length)));
      if (kind === 'path') return [kind, `/xcap-root/pres-rules/users/sip:a@b/index/~~/${body}`];
      if (kind === 'selector') return [kind, `ruleset/${body}`];
      return [kind, `xmlns(a=${body})`];
    });
}
