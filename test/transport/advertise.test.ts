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
import type { NetnsUaReport, NetnsUaTask, NetnsNotifyReport } from '../support/netns-ua.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const UA_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'support', 'netns-ua.js');
const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'core', 'main.js');
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

async function nodeInNamespace(listen: string[], config: Record<string, unknown> = {}, dataDir?: string): Promise<RunningNode> {
  const n = await startNode({ listen, ...config }, { wrapper: ['ip', 'netns', 'exec', NS.node], ...(dataDir ? { dataDir } : {}) });
  nodes.push(n);
  return n;
}

/** A UA process in a namespace, read line by line (one JSON object a line). */
function startUa(ns: string, task: NetnsUaTask): { next<T>(): Promise<T>; exited: Promise<number | null> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, UA_SCRIPT, JSON.stringify(task)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiting: Array<() => void> = [];
  let buf = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiting.splice(0)) w();
  });
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let gone = false;
  void exited.then(() => {
    gone = true;
    for (const w of waiting.splice(0)) w();
  });
  return {
    async next<T>(): Promise<T> {
      while (lines.length === 0 && !gone) await new Promise<void>((r) => waiting.push(r));
      const line = lines.shift();
      if (line === undefined) throw new Error(`UA in ${ns} exited with ${await exited}: ${err}`);
      return JSON.parse(line) as T;
    },
    exited,
  };
}

/** Run the UA in its namespace; resolves with what it saw. */
async function runUa(ns: string, task: NetnsUaTask): Promise<NetnsUaReport> {
  const ua = startUa(ns, task);
  const report = await ua.next<NetnsUaReport>();
  assert.equal(await ua.exited, 0);
  return report;
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
  const r = await runUa(l.ns, {
    proto: 'udp',
    server: l.node,
    serverPort: node.udpPort,
    local: l.ua,
    presentity: uniqueUri('adv'),
    refresh: false,
  });
  assert.equal(r.status, 200);
  assert.equal(contactHostPort(r.contact), '203.0.113.5:5999');
  assert.equal(contactHostPort(r.notifyContact), '203.0.113.5:5999');
  assert.equal(viaSentBy(r.notifyVia), '203.0.113.5:5999');
  // Without a port, the listener's own.
  const t = await runUa(l.ns, {
    proto: 'tcp',
    server: l.node,
    serverPort: node.tcpPort,
    local: l.ua,
    presentity: uniqueUri('adv'),
    refresh: false,
  });
  assert.equal(contactHostPort(t.contact), `sip.example.net:${node.tcpPort}`);
});

test('a bad advertise stops the start with exit 2 naming the listener', async () => {
  for (const [listen, message] of [
    [
      'udp:0.0.0.0:5060 advertise',
      'listen[0]: "udp:0.0.0.0:5060 advertise" must be proto:address:port, optionally followed by "advertise host[:port]" (e.g. "udp:0.0.0.0:5060 advertise 203.0.113.5:5060")',
    ],
    [
      'udp:0.0.0.0:5060 advertize 203.0.113.5',
      'listen[0]: "udp:0.0.0.0:5060 advertize 203.0.113.5" must be proto:address:port, optionally followed by "advertise host[:port]" (e.g. "udp:0.0.0.0:5060 advertise 203.0.113.5:5060")',
    ],
    [
      'udp:0.0.0.0:5060 advertise 203.0.113:5060',
      'listen[0]: advertise "203.0.113:5060" is not host[:port] with an IP address or a DNS name as host',
    ],
    [
      'udp:0.0.0.0:5060 advertise sip_proxy.example.com',
      'listen[0]: advertise "sip_proxy.example.com" is not host[:port] with an IP address or a DNS name as host',
    ],
    ['udp:0.0.0.0:5060 advertise 203.0.113.5:70000', 'listen[0]: advertise port must be from 1 to 65535 (got 70000)'],
    ['udp:0.0.0.0:5060 advertise 203.0.113.5:0', 'listen[0]: advertise port must be from 1 to 65535 (got 0)'],
  ]) {
    const r = await runExpectingFailure({ listen: [listen] });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `presenced: configuration error: ${message}\n`);
  }
});

test('after a restart, the first NOTIFY to a subscriber not heard from since names our address toward it', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'presenced-advertise-'));
  try {
    const config = { force_active: 1 };
    const first = await nodeInNamespace(['udp:0.0.0.0:0'], config, dataDir);
    // Link B: not the node's first interface, so no default address would be right by chance.
    const l = LINKS[1]!;
    const presentity = uniqueUri('restart');
    const ua = startUa(l.ns, {
      proto: 'udp',
      server: l.node,
      serverPort: first.udpPort,
      local: l.ua,
      presentity,
      refresh: false,
      moreNotifies: 1,
    });
    const before = await ua.next<NetnsUaReport>();
    assert.equal(contactHostPort(before.contact), `${l.node}:${first.udpPort}`);
    await first.stop();
    nodes.splice(nodes.indexOf(first), 1);

    const second = await nodeInNamespace(['udp:0.0.0.0:0'], config, dataDir);
    // The current state re-sent to the watchers (RPC): nothing from the subscriber reached the new node.
    execFileSync(
      'ip',
      [
        'netns',
        'exec',
        NS.node,
        process.execPath,
        MAIN,
        'rpc',
        '--url',
        `http://127.0.0.1:${second.rpcPort}/RPC`,
        'presence.refreshWatchers',
        presentity,
        'presence',
        '1',
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    const after = await ua.next<NetnsNotifyReport>();
    assert.match(after.subscriptionState, /^active/);
    assert.equal(contactHostPort(after.contact), `${l.node}:${second.udpPort}`, 'NOTIFY Contact after the restart');
    assert.equal(viaSentBy(after.via), `${l.node}:${second.udpPort}`, 'NOTIFY Via after the restart');
    assert.equal(await ua.exited, 0);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
