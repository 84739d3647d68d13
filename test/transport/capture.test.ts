/**
 * SIP capture (siptrace's HEP mode): every SIP message the node receives and sends reaches a
 * capture server as HEPv3 over UDP, decoded here by sipcapture's own hep-js (not our encoder);
 * and the refusals an operator must see are counted in /metrics and logged with their reason.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { createRequire } from 'node:module';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { encodeHep3, callIdOf } from '../../transport/hep.js';

const require = createRequire(import.meta.url);
const HEPjs = require('hep-js') as { decapsulate(b: Buffer): false | { rcinfo: Record<string, unknown>; payload: string } };

interface Captured {
  rcinfo: Record<string, unknown>;
  payload: string;
}

let capture: dgram.Socket;
const captured: Captured[] = [];
const waiters: Array<{ pred: (c: Captured) => boolean; resolve: (c: Captured) => void }> = [];
let node: RunningNode;

function nextCapture(pred: (c: Captured) => boolean): Promise<Captured> {
  const found = captured.find(pred);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => waiters.push({ pred, resolve }));
}

before(async () => {
  capture = dgram.createSocket('udp4');
  capture.on('message', (data) => {
    const d = HEPjs.decapsulate(data);
    assert.ok(d, `capture server got a packet hep-js cannot decode: ${data.subarray(0, 16).toString('hex')}`);
    captured.push(d);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(d)) {
        waiters[i]!.resolve(d);
        waiters.splice(i, 1);
      }
    }
  });
  await new Promise<void>((r) => capture.bind(0, '127.0.0.1', () => r()));
  node = await startNode({
    trace_on: 1,
    duplicate_uri: `sip:127.0.0.1:${capture.address().port}`,
    hep_capture_id: 2001,
    auth_key: 'homer-secret',
  });
});

after(async () => {
  await node?.stop();
  capture?.close();
});

for (const proto of ['udp', 'tcp'] as const) {
  test(`HEPv3 copy of a request received and of its response sent, over ${proto}`, async () => {
    const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
    try {
      const callId = `capture-${proto}-${Date.now()}`;
      const res = await ua.request({ method: 'OPTIONS', uri: 'sip:127.0.0.1', callId });
      assert.equal(res.status, 200);
      const inCopy = await nextCapture((c) => c.rcinfo.correlation_id === callId && c.payload.startsWith('OPTIONS '));
      const outCopy = await nextCapture((c) => c.rcinfo.correlation_id === callId && c.payload.startsWith('SIP/2.0 200'));
      const nodePort = proto === 'udp' ? node.udpPort : node.tcpPort;
      const ipProto = proto === 'udp' ? 17 : 6;
      for (const c of [inCopy, outCopy]) {
        assert.equal(c.rcinfo.protocolFamily, 2, 'IPv4');
        assert.equal(c.rcinfo.protocol, ipProto);
        assert.equal(c.rcinfo.payloadType, 1, 'SIP');
        assert.equal(c.rcinfo.captureId, 2001);
        assert.equal(c.rcinfo.capturePass, 'homer-secret');
        assert.ok(Math.abs(Number(c.rcinfo.timeSeconds) - Date.now() / 1000) < 3600, 'a timestamp of today');
      }
      assert.equal(inCopy.rcinfo.dstPort, nodePort);
      assert.equal(inCopy.rcinfo.dstIp, '127.0.0.1');
      assert.equal(outCopy.rcinfo.srcPort, nodePort);
      assert.equal(outCopy.rcinfo.srcIp, '127.0.0.1');
      if (proto === 'udp') {
        assert.equal(inCopy.rcinfo.srcPort, ua.localPort);
        assert.equal(outCopy.rcinfo.dstPort, ua.localPort);
      } else {
        assert.equal(inCopy.rcinfo.srcPort, outCopy.rcinfo.dstPort, 'the same connection both ways');
      }
      assert.match(inCopy.payload, new RegExp(`Call-ID: ${callId}\\r\\n`, 'i'));
      assert.match(outCopy.payload, /\r\n\r\n$/, 'the whole response, up to its empty body');
    } finally {
      await ua.close();
    }
  });
}

test('a capture of a NOTIFY the node sends and of the 200 the subscriber returns', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const callId = `capture-notify-${Date.now()}`;
    const res = await ua.request({
      method: 'SUBSCRIBE',
      uri: 'sip:capture-bob@example.com',
      to: '<sip:capture-bob@example.com>',
      callId,
      headers: { Event: 'message-summary', Expires: '60', Accept: 'application/simple-message-summary' },
    });
    assert.equal(res.status, 200);
    const notify = await nextCapture((c) => c.rcinfo.correlation_id === callId && c.payload.startsWith('NOTIFY '));
    assert.equal(notify.rcinfo.dstPort, ua.localPort);
    await nextCapture(
      (c) => c.rcinfo.correlation_id === callId && c.payload.startsWith('SIP/2.0 200') && /CSeq: \d+ NOTIFY/i.test(c.payload),
    );
  } finally {
    await ua.close();
  }
});

test('NOTIFY outcomes are counted by kind: a 200, and a 481 that ends the subscription', async () => {
  const scrape = async (): Promise<Map<string, number>> => {
    const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^presenced_notify_outcomes_total\{outcome="([^"]+)",node="[^"]*"\} (\d+)$/gm))
      out.set(m[1]!, Number(m[2]));
    return out;
  };
  const before = await scrape();
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    // The first NOTIFY is answered 200, the second (the presentity's new state) 481.
    const subscribe = (callId: string) =>
      ua.request({
        method: 'SUBSCRIBE',
        uri: 'sip:outcome-carol@example.com',
        to: '<sip:outcome-carol@example.com>',
        callId,
        headers: { Event: 'message-summary', Expires: '60', Accept: 'application/simple-message-summary' },
      });
    assert.equal((await subscribe('outcome-200')).status, 200);
    await ua.nextRequest('NOTIFY', (r) => r.callId === 'outcome-200');
    ua.answer = (req) => (req.method === 'NOTIFY' ? 481 : 405);
    const pub = await ua.request({
      method: 'PUBLISH',
      uri: 'sip:outcome-carol@example.com',
      headers: { Event: 'message-summary', Expires: '60', 'Content-Type': 'application/simple-message-summary' },
      body: 'Messages-Waiting: yes\r\n',
    });
    assert.equal(pub.status, 200);
    await ua.nextRequest('NOTIFY', (r) => r.callId === 'outcome-200');
    // The 481 ends the subscription (RFC 6665 §4.2.2): wait for the node to say so.
    await node.waitForLog((l) => l.callId === 'outcome-200' && l.msg === 'NOTIFY not accepted');
    const after = await scrape();
    assert.ok((after.get('2xx') ?? 0) - (before.get('2xx') ?? 0) >= 1, 'the 200');
    assert.equal((after.get('481') ?? 0) - (before.get('481') ?? 0), 1, 'the 481');
    // The change (the PUBLISH) → its NOTIFY leaving, and the store's commits, as histograms.
    const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
    const count = (name: string): number => Number(new RegExp(`^${name}_count\\{node="[^"]*"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    assert.ok(count('presenced_notify_change_seconds') >= 1, 'change → NOTIFY timed');
    assert.ok(count('presenced_store_commit_seconds') >= 2, 'the SUBSCRIBE and the PUBLISH committed');
    assert.match(text, /^presenced_notify_change_seconds_bucket\{le="\+Inf",node="[^"]*"\} \d+$/m);
  } finally {
    await ua.close();
  }
});

test('refusals are counted by method and status in /metrics and logged with event and reason', async () => {
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
    // Every series carries the node's name (node_name); the assertions name the other labels.
    const value = (text: string, series: string): number => {
      const line = text
        .split('\n')
        .map((l) =>
          l
            .replace(/,node="[^"]*"/, '')
            .replace(/\{node="[^"]*",?/, '{')
            .replace('{}', ''),
        )
        .find((l) => l.startsWith(series + ' '));
      return line ? Number(line.slice(series.length + 1)) : 0;
    };
    const before = await scrape();
    const bad = await ua.request({
      method: 'SUBSCRIBE',
      uri: 'sip:capture-carol@example.com',
      callId: 'capture-489',
      headers: { Event: 'no-such-package', Expires: '60' },
    });
    assert.equal(bad.status, 489);
    const unknown = await ua.request({ method: 'FROBNICATE', uri: 'sip:capture-carol@example.com', callId: 'capture-501' });
    assert.equal(unknown.status, 501);
    const xcap = await fetch(`http://127.0.0.1:${node.xcapPort}/xcap-root/pres-rules/users/sip:nobody@example.com/index`);
    assert.equal(xcap.status, 404);
    const rpcCall = await fetch(`http://127.0.0.1:${node.rpcPort}/RPC`, {
      method: 'POST',
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'no.such' }),
    });
    assert.equal(((await rpcCall.json()) as { error: { code: number } }).error.code, -32601);
    const after = await scrape();
    const xcap404 = 'presenced_xcap_requests_total{auid="pres-rules",method="GET",status="404"}';
    assert.equal(value(after, xcap404) - value(before, xcap404), 1);
    const rpcUnknown = 'presenced_rpc_calls_total{method="unknown",outcome="error"}';
    assert.equal(value(after, rpcUnknown) - value(before, rpcUnknown), 1);
    await node.waitForLog((l) => l.msg === 'XCAP request refused' && l.status === 404);
    await node.waitForLog((l) => l.msg === 'RPC call refused' && l.method === 'no.such');
    const sub489 = 'presenced_sip_responses_total{method="SUBSCRIBE",status="489"}';
    assert.equal(value(after, sub489) - value(before, sub489), 1);
    const other501 = 'presenced_sip_responses_total{method="other",status="501"}';
    assert.equal(value(after, other501) - value(before, other501), 1, 'an invented method is counted as other, not by its name');
    assert.ok(!after.includes('FROBNICATE'), 'no label made of what a peer sent');
    const byEvent = 'presenced_sip_requests_by_event_total{method="SUBSCRIBE",event="other"}';
    assert.equal(value(after, byEvent) - value(before, byEvent), 1, 'a package the node does not serve is counted as other');
    assert.ok(!after.includes('no-such-package'), 'no label made of what a peer sent');
    const reqs = 'presenced_sip_requests_total{method="SUBSCRIBE"}';
    assert.ok(value(after, reqs) - value(before, reqs) >= 1);
    // Answer times: a histogram per method, cumulative buckets ending in +Inf = _count.
    assert.match(after, /^# TYPE presenced_sip_answer_seconds histogram$/m);
    const inf = value(after, 'presenced_sip_answer_seconds_bucket{method="SUBSCRIBE",le="+Inf"}');
    assert.ok(inf >= 1);
    assert.equal(inf, value(after, 'presenced_sip_answer_seconds_count{method="SUBSCRIBE"}'));
    assert.ok(
      value(after, 'presenced_sip_answer_seconds_bucket{method="SUBSCRIBE",le="0.0005"}') <=
        value(after, 'presenced_sip_answer_seconds_bucket{method="SUBSCRIBE",le="10"}'),
    );
    const line = await node.waitForLog((l) => l.msg === 'request refused' && l.callId === 'capture-489');
    assert.equal(line.status, 489);
    assert.equal(line.event, 'no-such-package');
    assert.equal(line.method, 'SUBSCRIBE');
    assert.equal(line.level, 'warn', 'warn: a peer asks for an event this node does not serve');
    assert.ok(typeof line.reason === 'string' && line.reason.length > 0);
  } finally {
    await ua.close();
  }
});

test('configuration: trace_on without duplicate_uri, or a duplicate_uri that is not sip:IP:PORT, stops the start', async () => {
  for (const [cfg, words] of [
    [{ trace_on: 1 }, /duplicate_uri: required when trace_on is 1/],
    [{ trace_on: 1, duplicate_uri: 'homer.example.com' }, /duplicate_uri: "homer.example.com" is not sip:IP:PORT/],
    [{ hep_version: 2 }, /hep_version/],
  ] as const) {
    await assert.rejects(startNode(cfg, { timeoutMs: 20_000 }), (err: Error) => {
      assert.match(err.message, words);
      return true;
    });
  }
});

test('encodeHep3: IPv6 endpoints and a payload larger than fits refused, Call-ID read in compact form', () => {
  const msg = Buffer.from('OPTIONS sip:a@[::1] SIP/2.0\r\ni: abc@h\r\nContent-Length: 0\r\n\r\n');
  assert.equal(callIdOf(msg), 'abc@h');
  const p = encodeHep3(msg, 'tcp', { address: '::1', port: 5060 }, { address: '2001:db8::7', port: 40000 }, 1_700_000_000_123_456, {
    hep: true,
    captureId: 7,
    authKey: '',
  });
  assert.equal(p.toString('latin1', 0, 4), 'HEP3');
  assert.equal(p.readUInt16BE(4), p.length);
  // Walk the chunks: family 10, the v6 source ::1 and destination 2001:db8::7, the payload last.
  const chunks = new Map<number, Buffer>();
  for (let at = 6; at < p.length; ) {
    const type = p.readUInt16BE(at + 2);
    const len = p.readUInt16BE(at + 4);
    chunks.set(type, p.subarray(at + 6, at + len));
    at += len;
  }
  assert.equal(chunks.get(1)![0], 10);
  assert.equal(chunks.get(5)!.toString('hex'), '00000000000000000000000000000001');
  assert.equal(chunks.get(6)!.toString('hex'), '20010db8000000000000000000000007');
  assert.equal(chunks.get(9)!.readUInt32BE(), 1_700_000_000);
  assert.equal(chunks.get(10)!.readUInt32BE(), 123_456);
  assert.deepEqual(chunks.get(15), msg);
  assert.throws(
    () =>
      encodeHep3(Buffer.alloc(65_500), 'udp', { address: '127.0.0.1', port: 1 }, { address: '127.0.0.1', port: 2 }, 0, {
        hep: true,
        captureId: 1,
        authKey: '',
      }),
    RangeError,
  );
});

test('the Grafana dashboard in deploy/ uses only series this node exports', async () => {
  const { readFileSync } = await import('node:fs');
  const path = new URL('../../../deploy/grafana/presenced-dashboard.json', import.meta.url);
  const dashboard = JSON.parse(readFileSync(path, 'utf8')) as { panels: Array<{ title: string; targets: Array<{ expr: string }> }> };
  const ua = await TestUa.open('udp', node.udpPort);
  try {
    assert.equal((await ua.request({ method: 'OPTIONS', uri: 'sip:127.0.0.1' })).status, 200);
  } finally {
    await ua.close();
  }
  const text = await (await fetch(`http://127.0.0.1:${node.rpcPort}/metrics`)).text();
  const exported = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!));
  const used = new Set<string>();
  for (const p of dashboard.panels) for (const t of p.targets) for (const m of t.expr.matchAll(/\bpresenced_[a-z0-9_]+/g)) used.add(m[0]);
  assert.ok(used.size >= 10, `the dashboard reads ${used.size} series`);
  for (const name of used) {
    const family = name.replace(/_(bucket|sum|count)$/, '');
    assert.ok(exported.has(name) || exported.has(family), `dashboard series ${name} is not exported by the node`);
  }
});
