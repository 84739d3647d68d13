/**
 * What a wildcard listener advertises (Contact of 200s and NOTIFYs, Via of NOTIFYs), across
 * network namespaces this test creates: the node runs in one namespace with two links, a UA in
 * each of two others. Each UA must be told the address of the node on its own link (the one
 * its requests arrived on), never loopback, and its in-dialog request sent to that Contact must
 * reach the node. With `advertise`, the configured address is said instead.
 *
 *   ns A 198.51.100.2 ── 198.51.100.1 ┐
 *                                      ├ ns N (node, listen udp:0.0.0.0 / tcp:0.0.0.0)
 *   ns B 192.0.2.2 ───── 192.0.2.1 ───┘
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, runExpectingFailure, type RunningNode } from '../support/node.js';
import { uniqueUri } from '../support/presence.js';
import type { NetnsUaReport, NetnsUaTask } from '../support/netns-ua.js';

const UA_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'netns-ua.js');
const tag = `pd${process.pid}`;
const NS = { node: `${tag}n`, a: `${tag}a`, b: `${tag}b` };
const LINKS = [
  { ns: NS.a, nodeIf: `${tag}na`, uaIf: `${tag}an`, node: '198.51.100.1', ua: '198.51.100.2' },
  { ns: NS.b, nodeIf: `${tag}nb`, uaIf: `${tag}bn`, node: '192.0.2.1', ua: '192.0.2.2' },
];

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
};

const nodes: RunningNode[] = [];

before(() => {
  for (const ns of Object.values(NS)) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  for (const l of LINKS) {
    ip('link', 'add', l.nodeIf, 'netns', NS.node, 'type', 'veth', 'peer', 'name', l.uaIf, 'netns', l.ns);
    ip('-n', NS.node, 'addr', 'add', `${l.node}/24`, 'dev', l.nodeIf);
    ip('-n', l.ns, 'addr', 'add', `${l.ua}/24`, 'dev', l.uaIf);
    ip('-n', NS.node, 'link', 'set', l.nodeIf, 'up');
    ip('-n', l.ns, 'link', 'set', l.uaIf, 'up');
  }
});

after(async () => {
  for (const n of nodes) await n.stop();
  // Deleting a namespace removes the veth pairs in it.
  for (const ns of Object.values(NS)) {
    try {
      ip('netns', 'del', ns);
    } catch {
      // Not created (a failure in before()): nothing to remove.
    }
  }
});

async function nodeInNamespace(listen: string[]): Promise<RunningNode> {
  const n = await startNode({ listen }, { wrapper: ['ip', 'netns', 'exec', NS.node] });
  nodes.push(n);
  return n;
}

/** Run the UA in its namespace; resolves with what it saw. */
function runUa(ns: string, task: NetnsUaTask): Promise<NetnsUaReport> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, UA_SCRIPT, JSON.stringify(task)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as NetnsUaReport);
      else reject(new Error(`UA in ${ns} exited with ${code}: ${err}`));
    });
  });
}

const contactHostPort = (h: string): string => /sip:[^@]+@([^;>]+)/.exec(h)?.[1] ?? `(no host in ${h})`;
const viaSentBy = (h: string): string => /^SIP\/2\.0\/[A-Z]+ ([^;]+)/.exec(h)?.[1] ?? `(no sent-by in ${h})`;

for (const proto of ['udp', 'tcp'] as const) {
  test(`${proto}:0.0.0.0 advertises to each peer the address its requests arrived on`, async () => {
    const node = await nodeInNamespace([`${proto}:0.0.0.0:0`]);
    const port = proto === 'udp' ? node.udpPort : node.tcpPort;
    for (const l of LINKS) {
      const r = await runUa(l.ns, { proto, server: l.node, serverPort: port, local: l.ua, presentity: uniqueUri('adv'), refresh: true });
      assert.equal(r.status, 200);
      const expected = `${l.node}:${port}`;
      assert.equal(contactHostPort(r.contact), expected, `200 Contact toward ${l.ua}`);
      assert.equal(contactHostPort(r.notifyContact), expected, `NOTIFY Contact toward ${l.ua}`);
      assert.equal(viaSentBy(r.notifyVia), expected, `NOTIFY Via toward ${l.ua}`);
      // The in-dialog request a proxy would send to that Contact reaches the node (no 408).
      assert.equal(r.refreshStatus, 200);
    }
    await node.stop();
    nodes.splice(nodes.indexOf(node), 1);
  });
}

test('advertise replaces the address and port in Contact and Via', async () => {
  const node = await nodeInNamespace(['udp:0.0.0.0:0 advertise 203.0.113.5:5999', 'tcp:0.0.0.0:0 advertise sip.example.net']);
  const l = LINKS[0]!;
  const r = await runUa(l.ns, { proto: 'udp', server: l.node, serverPort: node.udpPort, local: l.ua, presentity: uniqueUri('adv'), refresh: false });
  assert.equal(r.status, 200);
  assert.equal(contactHostPort(r.contact), '203.0.113.5:5999');
  assert.equal(contactHostPort(r.notifyContact), '203.0.113.5:5999');
  assert.equal(viaSentBy(r.notifyVia), '203.0.113.5:5999');
  // Without a port, the listener's own.
  const t = await runUa(l.ns, { proto: 'tcp', server: l.node, serverPort: node.tcpPort, local: l.ua, presentity: uniqueUri('adv'), refresh: false });
  assert.equal(contactHostPort(t.contact), `sip.example.net:${node.tcpPort}`);
});

test('a bad advertise stops the start with exit 2 naming the listener', async () => {
  for (const [listen, message] of [
    ['udp:0.0.0.0:5060 advertise', 'listen[0]: "udp:0.0.0.0:5060 advertise" must be proto:address:port, optionally followed by "advertise host[:port]" (e.g. "udp:0.0.0.0:5060 advertise 203.0.113.5:5060")'],
    ['udp:0.0.0.0:5060 advertize 203.0.113.5', 'listen[0]: "udp:0.0.0.0:5060 advertize 203.0.113.5" must be proto:address:port, optionally followed by "advertise host[:port]" (e.g. "udp:0.0.0.0:5060 advertise 203.0.113.5:5060")'],
    ['udp:0.0.0.0:5060 advertise 203.0.113:5060', 'listen[0]: advertise "203.0.113:5060" is not host[:port] with an IP address or a DNS name as host'],
    ['udp:0.0.0.0:5060 advertise sip_proxy.example.com', 'listen[0]: advertise "sip_proxy.example.com" is not host[:port] with an IP address or a DNS name as host'],
    ['udp:0.0.0.0:5060 advertise 203.0.113.5:70000', 'listen[0]: advertise port must be from 1 to 65535 (got 70000)'],
    ['udp:0.0.0.0:5060 advertise 203.0.113.5:0', 'listen[0]: advertise port must be from 1 to 65535 (got 0)'],
  ]) {
    const r = await runExpectingFailure({ listen: [listen] });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `presenced: configuration error: ${message}\n`);
  }
});
