/**
 * HTTP edges of the XCAP and RPC ports, on raw TCP connections: framing that could desync a
 * front proxy (RFC 9112 §6.3), HTTP/1.0 and absolute-form requests (RFC 9112 §2.6, §3.2.2),
 * oversized bodies, and dot segments in XCAP URIs.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from '../support/node.js';
import { Xcap, CT, presRules } from '../support/xcap-http.js';
import { RawHttp, rawExchange } from '../support/raw-http.js';

const node = await startNode();
after(() => node.stop());
const xcap = new Xcap(node.xcapPort);
const X = node.xcapPort;
const R = node.rpcPort;
const CAPS = '/xcap-root/xcap-caps/global/index';
const rules = presRules([{ id: 'r1', identity: 'sip:bob@example.com' }]);
const uptime = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'core.uptime' });

/** Exactly one response, a 400, and the connection closed: nothing after it is read as a request. */
async function refusedAndClosed(port: number, data: string): Promise<void> {
  const conn = await RawHttp.connect(port);
  conn.write(data);
  const ex = await conn.closed();
  assert.equal(
    ex.responses.length,
    1,
    `one response, got ${ex.responses.map((r) => r.status).join(', ')} + ${JSON.stringify(conn.leftover)}`,
  );
  assert.equal(ex.responses[0]!.status, 400);
  assert.equal(conn.leftover, '');
}

// ───── RFC 9112 §6.3: ambiguous framing is refused with 400 and the connection closed ─────

test('XCAP: two different Content-Lengths get 400 and a close; the body never runs as a second request', async () => {
  const smuggled = `GET ${CAPS} HTTP/1.1\r\nHost: x\r\n\r\n`;
  await refusedAndClosed(
    X,
    `GET ${CAPS} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
  );
});

test('RPC: two different Content-Lengths get 400 and a close; the body never runs as a second request', async () => {
  const smuggled = `GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n`;
  await refusedAndClosed(R, `POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
});

test('XCAP and RPC: Content-Length with Transfer-Encoding gets 400 and a close', async () => {
  const body = `0\r\n\r\nGET ${CAPS} HTTP/1.1\r\nHost: x\r\n\r\n`;
  await refusedAndClosed(
    X,
    `PUT /xcap-root/pres-rules/users/sip:te@example.com/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
  );
  await refusedAndClosed(R, `POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
});

test('XCAP and RPC: a non-numeric Content-Length gets 400 and a close', async () => {
  await refusedAndClosed(X, `GET ${CAPS} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n`);
  await refusedAndClosed(R, `POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n${uptime}`);
});

test('XCAP: a chunked PUT is read by its chunks, not as further requests', async () => {
  const half = Math.floor(rules.length / 2);
  const chunk = (s: string): string => `${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`;
  const { responses } = await rawExchange(
    X,
    `PUT /xcap-root/pres-rules/users/sip:chunked@example.com/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nTransfer-Encoding: chunked\r\n\r\n` +
      chunk(rules.slice(0, half)) +
      chunk(rules.slice(half)) +
      '0\r\n\r\n',
  );
  assert.equal(responses[0]?.status, 201);
  const r = await xcap.get('/pres-rules/users/sip:chunked@example.com/index');
  assert.equal(r.status, 200);
  assert.equal(r.text, rules);
});

// ───── HTTP/1.0 and absolute-form ─────

test('XCAP: an HTTP/1.0 request is answered in HTTP/1.1 and the connection closed after it', async () => {
  const conn = await RawHttp.connect(X);
  conn.write(`GET ${CAPS} HTTP/1.0\r\n\r\n`);
  const ex = await conn.closed();
  assert.equal(ex.responses.length, 1);
  const r = ex.responses[0]!;
  assert.equal(r.version, 'HTTP/1.1');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('connection'), 'close');
  assert.match(r.body, /<xcap-caps /);
});

test('RPC: an HTTP/1.0 POST gets its JSON-RPC answer in HTTP/1.1, then the close', async () => {
  const conn = await RawHttp.connect(R);
  conn.write(`POST /RPC HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${uptime.length}\r\n\r\n${uptime}`);
  const ex = await conn.closed();
  assert.equal(ex.responses.length, 1);
  const r = ex.responses[0]!;
  assert.equal(r.version, 'HTTP/1.1');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('connection'), 'close');
  const json = JSON.parse(r.body) as { id: number; result: unknown };
  assert.equal(json.id, 7);
  assert.equal(typeof json.result, 'object');
});

test('XCAP: an absolute-form target names the same document as the origin-form one (RFC 9112 §3.2.2)', async () => {
  const path = '/xcap-root/pres-rules/users/sip:absolute@example.com/index';
  const put = await rawExchange(
    X,
    `PUT http://xcap.example.com${path} HTTP/1.1\r\nHost: xcap.example.com\r\nContent-Type: ${CT.presRules}\r\nContent-Length: ${Buffer.byteLength(rules)}\r\n\r\n${rules}`,
  );
  assert.equal(put.responses[0]?.status, 201);
  put.conn.destroy();
  const viaOrigin = await xcap.get('/pres-rules/users/sip:absolute@example.com/index');
  assert.equal(viaOrigin.status, 200);
  assert.equal(viaOrigin.text, rules);
  const viaAbsolute = await rawExchange(X, `GET http://xcap.example.com${path} HTTP/1.1\r\nHost: xcap.example.com\r\n\r\n`);
  assert.equal(viaAbsolute.responses[0]?.status, 200);
  assert.equal(viaAbsolute.responses[0]?.body, rules);
  assert.equal(viaAbsolute.responses[0]?.headers.get('etag'), viaOrigin.etag);
  viaAbsolute.conn.destroy();
});

test('RPC: an absolute-form POST /RPC is served', async () => {
  const { responses, conn } = await rawExchange(
    R,
    `POST http://127.0.0.1:${R}/RPC HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${uptime.length}\r\n\r\n${uptime}`,
  );
  conn.destroy();
  assert.equal(responses[0]?.status, 200);
  assert.equal((JSON.parse(responses[0]!.body) as { id: number }).id, 7);
});

// ───── bodies too large ─────

test('XCAP and RPC: Content-Length 100000000 gets 413 at once, before any body is sent', async () => {
  for (const [port, head] of [
    [
      X,
      `PUT /xcap-root/pres-rules/users/sip:big@example.com/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nContent-Length: 100000000\r\n\r\n`,
    ],
    [R, `POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n`],
  ] as Array<[number, string]>) {
    const conn = await RawHttp.connect(port);
    conn.write(head);
    const ex = await conn.closed();
    assert.equal(ex.responses[0]?.status, 413, `port ${port}`);
  }
});

test('RPC: a 10 MB string parameter gets 413; a 512 KB one gets a JSON-RPC answer', async () => {
  const call = (param: string): string => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'presence.presentity_show', params: [param] });
  const big = await fetch(`http://127.0.0.1:${R}/RPC`, { method: 'POST', body: call('sip:' + 'x'.repeat(10 << 20) + '@example.com') });
  assert.equal(big.status, 413);
  await big.text();
  const fits = await fetch(`http://127.0.0.1:${R}/RPC`, { method: 'POST', body: call('sip:' + 'x'.repeat(512 << 10) + '@example.com') });
  assert.equal(fits.status, 200);
  const json = (await fits.json()) as { jsonrpc: string; id: number; result?: unknown; error?: unknown };
  assert.equal(json.jsonrpc, '2.0');
  assert.equal(json.id, 1);
  assert.ok('result' in json || 'error' in json);
});

// ───── dot segments ─────

for (const dots of ['x/..', '.', '%2e%2e', 'x/%2E%2e', '%2E', '.%2e']) {
  test(`XCAP: a "${dots}" segment is refused with 400 and no document is written`, async () => {
    const user = `sip:dots${encodeURIComponent(dots)}@example.com`;
    const conn = await RawHttp.connect(X);
    conn.write(
      `PUT /xcap-root/pres-rules/users/${user}/${dots}/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nContent-Length: ${Buffer.byteLength(rules)}\r\n\r\n${rules}`,
    );
    const ex = await conn.responsesOrClose(1);
    conn.destroy();
    assert.equal(ex.responses[0]?.status, 400);
    // Neither normalised into the user's index nor stored under an odd name.
    assert.equal((await xcap.get(`/pres-rules/users/${user}/index`)).status, 404);
    // (Raw again: fetch would resolve the dot segments itself, RFC 3986 §5.2.4.)
    const get = await rawExchange(X, `GET /xcap-root/pres-rules/users/${user}/${dots}/index HTTP/1.1\r\nHost: x\r\n\r\n`);
    get.conn.destroy();
    assert.equal(get.responses[0]?.status, 400);
  });
}

test('XCAP: dots inside a segment name are fine', async () => {
  const r = await xcap.put('/pres-rules/users/sip:first.last@example.com/my..rules', rules, CT.presRules);
  assert.equal(r.status, 201);
});

// ───── Expect: 100-continue (RFC 9110 §10.1.1) ─────

test('XCAP and RPC: with Expect: 100-continue a body declared too large gets 413 instead of the 100', async () => {
  for (const [port, head] of [
    [
      X,
      `PUT /xcap-root/pres-rules/users/sip:expect@example.com/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nExpect: 100-continue\r\nContent-Length: 200000\r\n\r\n`,
    ],
    [R, `POST /RPC HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n`],
  ] as Array<[number, string]>) {
    const conn = await RawHttp.connect(port);
    conn.write(head);
    const ex = await conn.closed();
    assert.deepEqual(
      ex.responses.map((r) => r.status),
      [413],
      `port ${port}`,
    );
  }
});

test('XCAP: with Expect: 100-continue a body within the limit gets its 100, then the answer', async () => {
  const conn = await RawHttp.connect(X);
  conn.write(
    `PUT /xcap-root/pres-rules/users/sip:expect-ok@example.com/index HTTP/1.1\r\nHost: x\r\nContent-Type: ${CT.presRules}\r\nExpect: 100-continue\r\nContent-Length: ${Buffer.byteLength(rules)}\r\n\r\n`,
  );
  const first = await conn.responsesOrClose(1);
  assert.equal(first.responses[0]?.status, 100);
  conn.write(rules);
  const both = await conn.responsesOrClose(2);
  conn.destroy();
  assert.equal(both.responses[1]?.status, 201);
});

test('XCAP: HEAD has the Content-Length of the GET and no body', async () => {
  const get = await xcap.get('/xcap-caps/global/index');
  const head = await fetch(xcap.url('/xcap-caps/global/index'), { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(get.text)));
  assert.equal(await head.text(), '');
});

test('requests the HTTP parser refuses are counted in /metrics and logged, on both ports', async () => {
  const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${R}/metrics`)).text();
  const value = (text: string, series: RegExp): number => Number(series.exec(text)?.[1] ?? 0);
  const xcapSeries = /^presenced_xcap_requests_total\{auid="other",method="other",status="400",node="[^"]*"\} (\d+)$/m;
  const rpcSeries = /^presenced_rpc_calls_total\{method="http",outcome="refused-400",node="[^"]*"\} (\d+)$/m;
  const before = await scrape();
  const smuggled = `GET ${CAPS} HTTP/1.1\r\nHost: x\r\n\r\n`;
  await refusedAndClosed(
    X,
    `GET ${CAPS} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
  );
  await refusedAndClosed(R, `POST /RPC HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
  const after = await scrape();
  assert.equal(value(after, xcapSeries) - value(before, xcapSeries), 1);
  assert.equal(value(after, rpcSeries) - value(before, rpcSeries), 1);
  await node.waitForLog((l) => l.msg === 'XCAP request refused' && l.status === 400);
  await node.waitForLog((l) => l.msg === 'RPC port: HTTP request refused by the parser' && l.status === 400);
});
