import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode, type RunningNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';

let node: RunningNode;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node.stop();
});

for (const proto of ['udp', 'tcp'] as const) {
  test(`OPTIONS over ${proto} → 200 with Allow, Accept, Allow-Events, Supported and a To tag`, async () => {
    const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
    try {
      const res = await ua.request({ method: 'OPTIONS', uri: 'sip:127.0.0.1' });
      assert.equal(res.status, 200);
      for (const h of ['allow', 'accept', 'allow-events', 'supported']) assert.ok(res.headers.has(h), `missing ${h}`);
      assert.match(res.headers.get('allow')!, /\bOPTIONS\b/);
      assert.ok(res.toTag, 'a UAS response must carry a To tag (RFC 3261 §8.2.6.2)');
      const via = res.topVia;
      assert.equal(via.params.get('received'), '127.0.0.1');
      if (proto === 'udp') assert.equal(via.params.get('rport'), String(ua.localPort), 'rport filled with the source port (RFC 3581)');
      else assert.match(via.params.get('rport') ?? '', /^\d+$/, 'rport filled with the connection source port');
    } finally {
      await ua.close();
    }
  });

  test(`a method the node does not serve over ${proto} → 405 with Allow`, async () => {
    const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
    try {
      const res = await ua.request({ method: 'MESSAGE', uri: 'sip:bob@example.com', body: 'hi', contentType: 'text/plain' });
      assert.equal(res.status, 405);
      assert.match(res.headers.get('allow') ?? '', /OPTIONS/);
    } finally {
      await ua.close();
    }
  });

  test(`a method no SIP registry knows over ${proto} → 501 (RFC 3261 §21.5.2), with Allow`, async () => {
    const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
    try {
      const res = await ua.request({ method: 'FOO', uri: 'sip:bob@example.com' });
      assert.equal(res.status, 501, `${res.status} ${res.reason}`);
      assert.match(res.headers.get('allow') ?? '', /SUBSCRIBE/);
    } finally {
      await ua.close();
    }
  });

  // Over TCP there are no retransmissions (RFC 3261 §17.2.2: Timer J is zero on reliable transports).
  if (proto === 'udp')
    test(`a retransmitted request over ${proto} gets the same response from the transaction`, async () => {
      const ua = await TestUa.open(proto, proto === 'udp' ? node.udpPort : node.tcpPort);
      try {
        const req = ua.build({ method: 'OPTIONS', uri: 'sip:127.0.0.1' });
        const first = await ua.request(req);
        const branch = req.topVia.branch;
        const again = ua.waitFor((r) => r.message.topVia.branch === branch && r !== undefined && r.raw !== undefined, 3000);
        const count = ua.received.length;
        ua.sendRaw(req.toBuffer());
        const second = await again;
        assert.ok(ua.received.length > count);
        assert.equal(second.message.toTag, first.toTag, 'the retransmission is answered from the transaction, same To tag');
        assert.equal(second.raw.toString(), first.toString());
      } finally {
        await ua.close();
      }
    });
}
