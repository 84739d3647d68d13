/**
 * The node's side of a cluster, without namespaces: a node recovering its store refuses requests
 * (OPTIONS included, so the edge's probe keeps it out), node_name labels every metric, and
 * `presenced rpc --cluster FILE` asks every node and prints the owner's answer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Dispatcher } from '../../core/sip/dispatcher.js';
import { PackageRegistry } from '../../core/packages/registry.js';
import { createLogger } from '../../core/log.js';
import { buildConfig, ConfigError } from '../../core/config.js';
import { parseMessage } from '../../transport/parser.js';
import { createResponse, type SipRequest, type SipResponse } from '../../transport/message.js';
import type { IncomingRequest } from '../../transport/stack.js';
import { startNode } from '../support/node.js';
import { TestUa } from '../support/sip-ua.js';
import { publish, pidf } from '../support/presence.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'core', 'main.js');

function options(): { incoming: IncomingRequest; sent: SipResponse[] } {
  const raw =
    'OPTIONS sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKprobe1\r\nFrom: <sip:edge@presenced.invalid>;tag=1\r\n' +
    'To: <sip:192.0.2.1>\r\nCall-ID: probe@edge\r\nCSeq: 10 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n';
  const request = parseMessage(Buffer.from(raw), true).message as SipRequest;
  const sent: SipResponse[] = [];
  const incoming = {
    request,
    source: { proto: 'udp', address: '127.0.0.1', port: 5999 },
    respond: (r: SipResponse) => sent.push(r),
    reply: (status: number, reason?: string, toTag?: string) => createResponse(request, status, reason, toTag),
  } as unknown as IncomingRequest;
  return { incoming, sent };
}

test('until the store is recovered the node answers OPTIONS 503 with Retry-After, then 200', async () => {
  const d = new Dispatcher(new PackageRegistry([]), createLogger('silent'));
  const before = options();
  await d.handle(before.incoming);
  assert.equal(before.sent[0]?.status, 503);
  assert.match(before.sent[0]!.headers.get('retry-after') ?? '', /^\d+$/);
  d.ready = true;
  const afterReady = options();
  await d.handle(afterReady.incoming);
  assert.equal(afterReady.sent[0]?.status, 200);
});

test('the shipped node configurations of deploy/cluster/nodes/ are valid and name their node', () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'deploy', 'cluster', 'nodes');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.deepEqual(files.sort(), ['n1.json', 'n2.json', 'n3.json']);
  for (const f of files) assert.equal(buildConfig(JSON.parse(readFileSync(join(dir, f), 'utf8'))).node_name, f.slice(0, -5));
});

test('node_name: checked at start; default the host name', () => {
  assert.throws(
    () => buildConfig({ node_name: 'a b' }),
    (e: unknown) => e instanceof ConfigError && /node_name/.test(e.message),
  );
  assert.throws(() => buildConfig({ node_name: '' }), ConfigError);
  assert.equal(buildConfig({ node_name: 'n7' }).node_name, 'n7');
  assert.ok(buildConfig({}).node_name.length > 0);
});

function rpcCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'rpc', ...args], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test('/metrics carries the node label; presenced rpc --cluster prints the owner only', async () => {
  const a = await startNode({ node_name: 'alpha' });
  const b = await startNode({ node_name: 'beta' });
  const dir = mkdtempSync(join(tmpdir(), 'presenced-cluster-rpc-'));
  const ua = await TestUa.open('udp', b.udpPort);
  try {
    const metrics = await (await fetch(`http://127.0.0.1:${a.rpcPort}/metrics`)).text();
    assert.match(metrics, /^presenced_subscriptions\{node="alpha"\} 0$/m);
    assert.match(metrics, /^presenced_process_cpu_user_seconds_total\{node="alpha"\} /m, 'default metrics carry it too');

    const p = 'sip:owned@example.com';
    assert.equal((await publish(ua, p, { body: pidf(p, 't', 'open'), expires: 60 })).status, 200);
    const file = join(dir, 'cluster.rpc');
    writeFileSync(file, `# two nodes\nalpha http://127.0.0.1:${a.rpcPort}/RPC\n\nhttp://127.0.0.1:${b.rpcPort}/RPC\n`);
    const show = await rpcCli(['--cluster', file, 'presence.presentity_show', p, 'presence']);
    assert.equal(show.code, 0, show.stderr);
    const answers = JSON.parse(show.stdout) as Array<{ node: string; result: Array<{ body: string }> }>;
    assert.deepEqual(
      answers.map((x) => x.node),
      [`http://127.0.0.1:${b.rpcPort}/RPC`],
    );
    assert.match(answers[0]!.result[0]!.body, /open/);
    const version = await rpcCli(['--cluster', file, 'core.version']);
    assert.deepEqual(
      (JSON.parse(version.stdout) as Array<{ node: string }>).map((x) => x.node),
      ['alpha', `http://127.0.0.1:${b.rpcPort}/RPC`],
      'other methods: every node answers',
    );

    await b.stop();
    const partial = await rpcCli(['--cluster', file, 'core.version']);
    assert.equal(partial.code, 1, 'a node that cannot be reached makes the exit status 1');
    assert.match(partial.stderr, /cannot reach/);
    assert.equal((JSON.parse(partial.stdout) as Array<{ node: string; error?: string }>).filter((x) => x.error === undefined).length, 1);

    writeFileSync(file, 'alpha not-a-url\n');
    const bad = await rpcCli(['--cluster', file, 'core.version']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /line 1: expected "NAME URL"/);
  } finally {
    await ua.close();
    await a.stop();
    await b.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
