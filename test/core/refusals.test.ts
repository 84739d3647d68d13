/**
 * Every refusal the node makes is counted in /metrics and logged (issue 16): one request of each
 * kind over real sockets — SIP (each 4xx/5xx path of transport/ and core/sip/, parser refusals,
 * messages and stream input dropped without an answer), XCAP (every refusing status, node:http's
 * own refusals included), the admin port (JSON-RPC errors by code, HTTP refusals) — and for each
 * the counter that must move by one and the log line that must name it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import dgram from 'node:dgram';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { Xcap, CT } from '../support/xcap-http.js';
import { rawExchange } from '../support/raw-http.js';
import { WebSocket, type WsSocket } from '../support/ws-client.js';
import { SipResponse } from '../../transport/message.js';
import { pidf, uniqueUri } from '../support/presence.js';

let node: RunningNode;
let tcp: TestUa;
let udp: TestUa;
const ALICE = { username: 'sip:alice@example.com', password: 'alice-pw' };

before(async () => {
  node = await startNode({
    listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'],
    max_message_size: 1500,
    min_expires: 60,
    tcp_partial_timeout: 1,
    max_xml_size: 1024,
    xcap_auth: 'digest',
    xcap_auth_users: { [ALICE.username]: ALICE.password, 'sip:bob@example.com': 'bob-pw' },
  });
  tcp = await TestUa.open('tcp', node.tcpPort);
  udp = await TestUa.open('udp', node.udpPort);
});
after(async () => {
  await tcp?.close();
  await udp?.close();
  await node?.stop();
});

/** /metrics as series → value, the node label left out: `name{a="x",b="y"}` with labels sorted. */
async function scrape(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)]
      .filter((l) => l[1] !== 'node')
      .map((l) => `${l[1]}="${l[2]}"`)
      .sort();
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}

function series(name: string, labels: Record<string, string>): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  return `${name}{${l.join(',')}}`;
}

type Log = Record<string, unknown>;

/**
 * Do `act`, wait for the log line `logged` names, and assert `counter` moved by exactly `by`
 * (the counter is bumped before the line is written, so it has moved once the line is there).
 */
async function refusal(what: string, counter: string, logged: (l: Log) => boolean, act: () => Promise<unknown>, by = 1): Promise<void> {
  const before = (await scrape()).get(counter) ?? 0;
  const mark = node.logs.length;
  await act();
  await node.waitForLog((l) => node.logs.indexOf(l) >= mark && logged(l));
  const after = (await scrape()).get(counter) ?? 0;
  assert.equal(after - before, by, `${what}: ${counter} moved by ${after - before}`);
}

// ───── SIP ─────

/** A request built by the UA, edited as text, sent on its connection; resolves with the final response. */
async function sendEdited(ua: TestUa, o: Parameters<TestUa['build']>[0], edit: (text: string) => string = (t) => t): Promise<SipResponse> {
  const req = ua.build(o);
  const branch = req.topVia.branch;
  const got = ua.waitFor((r) => r.message instanceof SipResponse && r.message.status >= 200 && r.message.topVia.branch === branch);
  let text = edit(req.toBuffer().toString('latin1'));
  // Keep Content-Length true to the edited body.
  const split = text.indexOf('\r\n\r\n');
  const body = Buffer.byteLength(text.slice(split + 4), 'latin1');
  text = text.replace(/\r\nContent-Length: *\d+/i, `\r\nContent-Length: ${body}`);
  ua.sendRaw(Buffer.from(text, 'latin1'));
  return (await got).message as SipResponse;
}

const refusedLog =
  (status: number, callId?: string, reason?: RegExp) =>
  (l: Log): boolean =>
    l.msg === 'request refused' &&
    l.status === status &&
    (callId === undefined || l.callId === callId) &&
    (!reason || reason.test(String(l.reason)));

const SIP_CASES: Array<{
  what: string;
  method: string;
  status: number;
  o: Parameters<TestUa['build']>[0];
  edit?: (t: string) => string;
  reason?: RegExp;
}> = [
  {
    what: 'parser: CSeq method not the request method',
    method: 'OPTIONS',
    status: 400,
    o: { method: 'OPTIONS', uri: 'sip:x@example.com' },
    edit: (t) => t.replace(/CSeq: 1 OPTIONS/i, 'CSeq: 1 PUBLISH'),
    reason: /CSeq method/,
  },
  {
    what: 'parser: another SIP version',
    method: 'OPTIONS',
    status: 505,
    o: { method: 'OPTIONS', uri: 'sip:x@example.com' },
    edit: (t) => t.replace(/ SIP\/2\.0\r\n/, ' SIP/7.0\r\n'),
  },
  { what: 'a method not served', method: 'MESSAGE', status: 405, o: { method: 'MESSAGE', uri: 'sip:x@example.com' } },
  { what: 'an unknown method', method: 'other', status: 501, o: { method: 'FROB', uri: 'sip:x@example.com' } },
  { what: 'a URI scheme not served', method: 'OPTIONS', status: 416, o: { method: 'OPTIONS', uri: 'tel:+15550100' } },
  {
    what: 'Require: an extension not supported',
    method: 'OPTIONS',
    status: 420,
    o: { method: 'OPTIONS', uri: 'sip:x@example.com', headers: [['require', 'frobnication']] },
  },
  {
    what: 'Max-Forwards 0',
    method: 'PUBLISH',
    status: 483,
    o: {
      method: 'PUBLISH',
      uri: 'sip:x@example.com',
      bare: true,
      headers: [
        ['max-forwards', '0'],
        ['event', 'presence'],
      ],
    },
  },
  {
    what: 'a Request-URI over max_uri_length',
    method: 'OPTIONS',
    status: 414,
    o: { method: 'OPTIONS', uri: `sip:${'u'.repeat(600)}@example.com` },
  },
  {
    what: 'PUBLISH of an event not served',
    method: 'PUBLISH',
    status: 489,
    o: { method: 'PUBLISH', uri: 'sip:x@example.com', headers: [['event', 'frobs']], body: 'x', contentType: 'text/plain' },
  },
  {
    what: 'PUBLISH without a body',
    method: 'PUBLISH',
    status: 400,
    o: { method: 'PUBLISH', uri: 'sip:x@example.com', headers: [['event', 'presence']] },
  },
  {
    what: 'PUBLISH of a type the event does not take',
    method: 'PUBLISH',
    status: 415,
    o: { method: 'PUBLISH', uri: 'sip:x@example.com', headers: [['event', 'presence']], body: 'hello', contentType: 'text/plain' },
  },
  {
    what: 'PUBLISH refreshing an unknown entity-tag',
    method: 'PUBLISH',
    status: 412,
    o: {
      method: 'PUBLISH',
      uri: 'sip:x@example.com',
      headers: [
        ['event', 'presence'],
        ['sip-if-match', 'no-such-etag'],
      ],
    },
  },
  {
    what: 'PUBLISH with a body that is no PIDF',
    method: 'PUBLISH',
    status: 400,
    o: {
      method: 'PUBLISH',
      uri: 'sip:x@example.com',
      headers: [['event', 'presence']],
      body: '<nope/>',
      contentType: 'application/pidf+xml',
    },
  },
  {
    what: 'SUBSCRIBE below min_expires',
    method: 'SUBSCRIBE',
    status: 423,
    o: {
      method: 'SUBSCRIBE',
      uri: 'sip:x@example.com',
      headers: [
        ['event', 'presence'],
        ['expires', '5'],
      ],
    },
  },
  {
    what: "presence.winfo of someone else's presentity",
    method: 'SUBSCRIBE',
    status: 403,
    o: { method: 'SUBSCRIBE', uri: 'sip:someone-else@example.com', headers: [['event', 'presence.winfo']] },
  },
  {
    what: 'a refresh of a dialog the node does not know',
    method: 'SUBSCRIBE',
    status: 481,
    o: { method: 'SUBSCRIBE', uri: 'sip:x@example.com', to: '<sip:x@example.com>;tag=no-such-dialog', headers: [['event', 'presence']] },
  },
  { what: 'CANCEL of nothing', method: 'CANCEL', status: 481, o: { method: 'CANCEL', uri: 'sip:x@example.com' } },
];

for (const c of SIP_CASES) {
  test(`SIP ${c.status} (${c.what}): presenced_sip_responses_total and "request refused"`, async () => {
    const callId = `refusal-${Math.random().toString(36).slice(2)}@test`;
    await refusal(
      c.what,
      series('presenced_sip_responses_total', { method: c.method, status: String(c.status) }),
      refusedLog(c.status, callId, c.reason),
      async () => {
        const res = await sendEdited(tcp, { ...c.o, callId }, c.edit);
        assert.equal(res.status, c.status, `${c.what}: ${res.status} ${res.reason}`);
      },
    );
  });
}

test('SIP 513: a datagram over max_message_size', async () => {
  const callId = `refusal-513-${Math.random().toString(36).slice(2)}@test`;
  await refusal('513', series('presenced_sip_responses_total', { method: 'OPTIONS', status: '513' }), refusedLog(513, callId), async () => {
    const res = await sendEdited(udp, {
      method: 'OPTIONS',
      uri: 'sip:x@example.com',
      callId,
      body: 'x'.repeat(1600),
      contentType: 'text/plain',
    });
    assert.equal(res.status, 513);
  });
});

/** A UDP socket of the test's own for datagrams no UA would send; closed after `fn`. */
async function datagram(data: string): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => s.send(data, node.udpPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  s.close();
}

test('SIP dropped without an answer: unparseable datagram, request without a usable Via, response without a usable CSeq', async () => {
  const dropped = (reason: string): string => series('presenced_sip_dropped_total', { reason });
  await refusal(
    'unparseable',
    dropped('unparseable'),
    (l) => l.msg === 'dropped unparseable message' && l.bytes === 23,
    () => datagram('this is not SIP at all\n'),
  );
  await refusal(
    'no Via',
    dropped('no-via'),
    (l) => l.msg === 'dropped request without a usable Via' && l.callId === 'no-via@test',
    () =>
      datagram(
        'OPTIONS sip:x@example.com SIP/2.0\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: no-via@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n',
      ),
  );
  await refusal(
    'a response without a usable CSeq',
    dropped('unparseable'),
    (l) => l.msg === 'dropped unparseable message' && l.callId === 'bad-response@test',
    () =>
      datagram(
        'SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnot-ours\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>;tag=2\r\nCall-ID: bad-response@test\r\nCSeq: one NOTIFY\r\nContent-Length: 0\r\n\r\n',
      ),
  );
});

test('SIP over TCP: unframeable input and half a message held past tcp_partial_timeout close the connection, counted', async () => {
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect(node.tcpPort, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
  const closed = (s: net.Socket): Promise<void> => new Promise((resolve) => s.once('close', () => resolve()));
  await refusal(
    'unframeable',
    series('presenced_sip_dropped_total', { reason: 'unframeable' }),
    (l) => l.msg === 'closing TCP connection: unframeable input',
    async () => {
      const s = await open();
      const gone = closed(s);
      s.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await gone;
    },
  );
  await refusal(
    'partial',
    series('presenced_sip_dropped_total', { reason: 'partial-timeout' }),
    (l) => l.msg === 'closing TCP connection: incomplete message timed out',
    async () => {
      const s = await open();
      const gone = closed(s);
      s.write('OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKhalf\r\n');
      await gone;
    },
  );
});

test('SIP over WebSocket: an upgrade without the "sip" subprotocol and a frame over max_message_size, counted and logged', async () => {
  const url = `ws://127.0.0.1:${node.wsPort}/`;
  await refusal(
    'no sip subprotocol',
    series('presenced_sip_dropped_total', { reason: 'ws-no-sip-subprotocol' }),
    (l) => l.msg === 'ws upgrade refused: no "sip" subprotocol' && l.offered === 'chat',
    () =>
      new Promise<void>((resolve) => {
        const ws: WsSocket = new WebSocket(url, 'chat');
        ws.on('error', () => resolve());
        ws.on('open', () => resolve());
      }),
  );
  await refusal(
    'frame too large',
    series('presenced_sip_dropped_total', { reason: 'ws-frame-too-large' }),
    (l) => l.msg === 'ws connection closed: a frame over max_message_size',
    () =>
      new Promise<void>((resolve, reject) => {
        const ws: WsSocket = new WebSocket(url, 'sip');
        ws.on('error', reject);
        ws.on('open', () => ws.send(Buffer.alloc(1501, 0x41)));
        ws.on('close', () => resolve());
      }),
  );
});

// ───── XCAP ─────

const xcapCounter = (auid: string, method: string, status: number): string =>
  series('presenced_xcap_requests_total', { auid, method, status: String(status) });
const xcapLog =
  (status: number, url?: string) =>
  (l: Log): boolean =>
    l.msg === 'XCAP request refused' && l.status === status && (url === undefined || l.url === url);

test('XCAP: 401, 403 (twice), 404, 405, 409, 412, 413, 400 each counted by auid, method and status, and logged', async () => {
  const x = new Xcap(node.xcapPort);
  const doc = (user: string): string => `/pres-rules/users/${user}/index`;
  const rules =
    '<?xml version="1.0" encoding="UTF-8"?>\n<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule id="a"><cr:conditions/><cr:actions/></cr:rule></cr:ruleset>';
  const digest = { digest: ALICE };
  const cases: Array<[string, string, string, number, () => Promise<{ status: number }>]> = [
    ['no credentials', 'pres-rules', 'GET', 401, () => x.get(doc(ALICE.username))],
    ["someone else's tree", 'pres-rules', 'GET', 403, () => x.get(doc('sip:bob@example.com'), digest)],
    ['no such document', 'pres-rules', 'GET', 404, () => x.get(doc(ALICE.username), digest)],
    [
      'PUT in the global rls-services tree (a user writes only their own)',
      'rls-services',
      'PUT',
      403,
      () => x.put('/rls-services/global/index', rules, CT.rlsServices, digest),
    ],
    ['POST to a document', 'pres-rules', 'other', 405, () => x.request('POST', doc(ALICE.username), digest)],
    ['not well-formed', 'pres-rules', 'PUT', 409, () => x.put(doc(ALICE.username), '<cr:ruleset', CT.presRules, digest)],
    [
      'If-Match of another version',
      'pres-rules',
      'PUT',
      412,
      () => x.put(doc(ALICE.username), rules, CT.presRules, { ...digest, headers: { 'If-Match': '"not-it"' } }),
    ],
    [
      'a body over max_xml_size',
      'pres-rules',
      'PUT',
      413,
      () => x.put(doc(ALICE.username), rules + ' '.repeat(2000), CT.presRules, digest),
    ],
    [
      'a dot segment (sent raw: fetch would resolve it)',
      'pres-rules',
      'GET',
      400,
      async () => {
        const r = await rawExchange(
          node.xcapPort,
          `GET /xcap-root/pres-rules/users/${ALICE.username}/%2e%2e/index HTTP/1.1\r\nHost: x\r\n\r\n`,
        );
        r.conn.destroy();
        return { status: r.responses[0]?.status ?? 0 };
      },
    ],
  ];
  for (const [what, auid, method, status, act] of cases)
    await refusal(what, xcapCounter(auid, method, status), xcapLog(status), async () => {
      const r = await act();
      assert.equal(r.status, status, what);
    });
});

test("XCAP and the admin port: node:http's refusals, a request-target that is no path, a 413 before 100 Continue", async () => {
  for (const [port, counter, logged] of [
    [node.xcapPort, xcapCounter('other', 'other', 400), (l: Log) => l.msg === 'XCAP request refused' && l.status === 400],
    [
      node.rpcPort,
      series('presenced_rpc_calls_total', { method: 'http', outcome: 'refused-400' }),
      (l: Log) => l.msg === 'RPC port: HTTP request refused by the parser' && l.status === 400,
    ],
  ] as const) {
    await refusal('two Content-Lengths', counter, logged, async () => {
      const r = await rawExchange(port, 'POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab');
      assert.equal(r.responses[0]?.status, 400);
      r.conn.destroy();
    });
  }
  await refusal(
    'OPTIONS * at the XCAP port',
    xcapCounter('other', 'other', 400),
    (l) => l.msg === 'XCAP request refused' && l.status === 400 && l.method === 'OPTIONS',
    async () => {
      const r = await rawExchange(node.xcapPort, 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(r.responses[0]?.status, 400);
      r.conn.destroy();
    },
  );
  await refusal(
    'Expect: 100-continue with a body over max_xml_size',
    xcapCounter('pres-rules', 'PUT', 413),
    (l) => l.msg === 'XCAP request refused' && l.status === 413 && /100-continue/.test(String(l.reason)),
    async () => {
      const r = await rawExchange(
        node.xcapPort,
        `PUT /xcap-root/pres-rules/users/${ALICE.username}/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n`,
      );
      assert.equal(r.responses[0]?.status, 413);
      r.conn.destroy();
    },
  );
  await refusal(
    'Expect: 100-continue with a JSON-RPC body over 1 MiB',
    series('presenced_rpc_calls_total', { method: 'http', outcome: 'refused-413' }),
    (l) => l.msg === 'RPC port: HTTP request refused' && l.status === 413 && l.target === '/RPC',
    async () => {
      const r = await rawExchange(node.rpcPort, 'POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n');
      assert.equal(r.responses[0]?.status, 413);
      r.conn.destroy();
    },
  );
});

// ───── the admin port ─────

test('RPC: each JSON-RPC error code counted (presenced_rpc_errors_total) and logged as "RPC call refused"', async () => {
  const post = (body: string): Promise<Response> => fetch(`http://127.0.0.1:${node.rpcPort}/RPC`, { method: 'POST', body });
  for (const [code, body] of [
    [-32700, '{"jsonrpc": "2.0", "method": '],
    [-32600, '{"jsonrpc": "1.0", "method": "core.version", "id": 1}'],
    [-32601, '{"jsonrpc": "2.0", "method": "presence.no_such_method", "id": 1}'],
    [-32602, '{"jsonrpc": "2.0", "method": "presence.presentity_state", "params": ["not a uri", "presence"], "id": 1}'],
  ] as const)
    await refusal(
      `code ${code}`,
      series('presenced_rpc_errors_total', { code: String(code) }),
      (l) => l.msg === 'RPC call refused' && l.code === code,
      async () => {
        const json = (await (await post(body)).json()) as { error: { code: number } };
        assert.equal(json.error.code, code);
      },
    );
});

test('RPC port: 404, 405, 400 and 413 counted as method "http", outcome refused-STATUS, and logged', async () => {
  const base = `http://127.0.0.1:${node.rpcPort}`;
  const httpCounter = (status: number): string => series('presenced_rpc_calls_total', { method: 'http', outcome: `refused-${status}` });
  const logged = (status: number, target: string) => (l: Log) =>
    l.msg === 'RPC port: HTTP request refused' && l.status === status && l.target === target;
  await refusal('404', httpCounter(404), logged(404, '/nowhere'), async () => assert.equal((await fetch(`${base}/nowhere`)).status, 404));
  await refusal('405', httpCounter(405), logged(405, '/RPC'), async () => assert.equal((await fetch(`${base}/RPC`)).status, 405));
  await refusal('400', httpCounter(400), logged(400, '*'), async () => {
    const r = await rawExchange(node.rpcPort, 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(r.responses[0]?.status, 400);
    r.conn.destroy();
  });
  await refusal('413', httpCounter(413), logged(413, '/RPC'), async () => {
    const r = await fetch(`${base}/RPC`, { method: 'POST', body: 'x'.repeat((1 << 20) + 10) });
    assert.equal(r.status, 413);
  });
});

test('the node still answers after all of it', async () => {
  const uri = uniqueUri('after-refusals');
  const res = await tcp.request({
    method: 'PUBLISH',
    uri,
    to: `<${uri}>`,
    from: `<${uri}>;tag=1`,
    headers: [['event', 'presence']],
    body: pidf(uri, 't', 'open'),
    contentType: 'application/pidf+xml',
  });
  assert.equal(res.status, 200);
});
