/**
 * rpc_auth: HTTP authentication of everything on the admin port (JSON-RPC, /metrics, the
 * console), over real sockets. Digest is checked with an independent client (curl --digest) as
 * well as with `presenced rpc`; every 401 is counted and logged like the port's other refusals.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startNode, runExpectingFailure, type RunningNode } from '../support/node.js';
import { buildConfig, ConfigError } from '../../core/config.js';
import { postRpc } from '../../core/rpc/client.js';
import { answerChallenge } from '../../core/http-auth.js';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('../../core/main.js', import.meta.url));
const ADMIN = { user: 'admin', password: 'correct horse' };

let digest: RunningNode;
let basic: RunningNode;
let dir: string;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'presenced-rpc-auth-'));
  [digest, basic] = await Promise.all([
    startNode({ rpc_auth: 'digest', rpc_auth_users: { [ADMIN.user]: ADMIN.password, ops: 'other' }, web_console: 1 }),
    startNode({ rpc_auth: 'basic', rpc_auth_users: { [ADMIN.user]: ADMIN.password }, rpc_auth_realm: 'ops', rpc_metrics_open: 1 }),
  ]);
});
after(async () => {
  await Promise.all([digest?.stop(), basic?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

const base = (n: RunningNode): string => `http://127.0.0.1:${n.rpcPort}`;
const CALL = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'core.version' });

/** presenced_rpc_calls_total{method="http",outcome="refused-401"}, read with credentials. */
async function refused401(n: RunningNode): Promise<number> {
  const text = await authedGet(n, '/metrics');
  return Number(/^presenced_rpc_calls_total\{method="http",outcome="refused-401",node="[^"]*"\} (\d+)$/m.exec(text)?.[1] ?? 0);
}

/** One challenge per node, answered with a growing nonce-count: reading /metrics adds no 401 of its own. */
const challenges = new Map<RunningNode, { challenge: string; nc: number }>();

/** GET with credentials (Digest or Basic, as the node's challenge asks). */
async function authedGet(n: RunningNode, path: string): Promise<string> {
  let c = challenges.get(n);
  if (!c) {
    const first = await fetch(base(n) + path);
    if (first.status === 200) return first.text();
    await first.arrayBuffer();
    c = { challenge: first.headers.get('www-authenticate')!, nc: 0 };
    challenges.set(n, c);
  }
  const authorization = answerChallenge(c.challenge, ADMIN, 'GET', path, ++c.nc)!;
  const res = await fetch(base(n) + path, { headers: { authorization } });
  assert.equal(res.status, 200, `GET ${path} with credentials`);
  return res.text();
}

test('digest: every path needs credentials, the 401 carries the challenge, and is counted and logged', async () => {
  const before401 = await refused401(digest);
  for (const [method, path] of [
    ['POST', '/RPC'],
    ['GET', '/metrics'],
    ['GET', '/console/'],
    ['GET', '/console/app.js'],
    ['GET', '/nothing-here'],
  ] as const) {
    const res = await fetch(base(digest) + path, { method, ...(method === 'POST' ? { body: CALL } : {}) });
    assert.equal(res.status, 401, `${method} ${path}`);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Digest realm="presenced", qop="auth", algorithm=MD5, nonce="[^"]+"$/);
    assert.doesNotMatch(await res.text(), /presenced \d/, 'nothing of the answer leaks');
  }
  await digest.waitForLog((l) => l.msg === 'RPC port: HTTP request refused' && l.status === 401 && l.target === '/console/app.js');
  assert.equal((await refused401(digest)) - before401, 5);
});

test('digest: curl --digest and presenced rpc get in; a wrong password, a replayed nonce-count and another realm do not', async () => {
  const curl = await run('curl', ['-s', '--digest', '-u', `${ADMIN.user}:${ADMIN.password}`, '-d', CALL, `${base(digest)}/RPC`]);
  assert.match(JSON.parse(curl.stdout).result, /^presenced /);
  const metrics = await run('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--digest',
    '-u',
    'ops:other',
    `${base(digest)}/metrics`,
  ]);
  assert.equal(metrics.stdout, '200');
  const wrong = await run('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--digest',
    '-u',
    `${ADMIN.user}:nope`,
    '-d',
    CALL,
    `${base(digest)}/RPC`,
  ]);
  assert.equal(wrong.stdout, '401');
  await digest.waitForLog((l) => l.msg === 'RPC port: HTTP request refused' && l.reason === 'wrong credentials');

  // The same Authorization twice: the second is a replay (RFC 7616 §3.4 nonce-count).
  const challenge = (await fetch(`${base(digest)}/RPC`, { method: 'POST', body: CALL })).headers.get('www-authenticate')!;
  const authorization = answerChallenge(challenge, ADMIN, 'POST', '/RPC')!;
  const once = await fetch(`${base(digest)}/RPC`, { method: 'POST', body: CALL, headers: { authorization } });
  assert.equal(once.status, 200);
  const twice = await fetch(`${base(digest)}/RPC`, { method: 'POST', body: CALL, headers: { authorization } });
  assert.equal(twice.status, 401);
  assert.equal(await twice.text(), 'authentication required\n', 'the answer does not say why');
  await digest.waitForLog((l) => l.msg === 'RPC port: HTTP request refused' && l.status === 401 && l.reason === 'nonce count replayed');
  // Counts may arrive out of order (a browser's parallel requests), each once.
  const nc3 = answerChallenge(challenge, ADMIN, 'POST', '/RPC', 3)!;
  const nc2 = answerChallenge(challenge, ADMIN, 'POST', '/RPC', 2)!;
  for (const [h, want] of [
    [nc3, 200],
    [nc2, 200],
    [nc2, 401],
  ] as const)
    assert.equal((await fetch(`${base(digest)}/RPC`, { method: 'POST', body: CALL, headers: { authorization: h } })).status, want);

  // The node's own client: with credentials it answers the challenge, without it says what is missing.
  const pw = join(dir, 'password');
  writeFileSync(pw, `${ADMIN.password}\n`);
  const ok = await run(process.execPath, [
    MAIN,
    'rpc',
    '--url',
    `${base(digest)}/RPC`,
    '--user',
    ADMIN.user,
    '--password-file',
    pw,
    'core.version',
  ]);
  assert.match(ok.stdout, /presenced/);
  await assert.rejects(
    run(process.execPath, [MAIN, 'rpc', '--url', `${base(digest)}/RPC`, 'core.version']),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /asks for credentials \(Digest\): give --user/);
      return true;
    },
  );
  writeFileSync(pw, 'not it\n');
  await assert.rejects(
    run(process.execPath, [MAIN, 'rpc', '--url', `${base(digest)}/RPC`, '--user', ADMIN.user, '--password-file', pw, 'core.version']),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /refused the credentials of "admin"/);
      return true;
    },
  );
  // From the node's configuration file: rpc_listen and the user (--user picks one of two).
  const cfg = join(dir, 'node.json');
  writeFileSync(cfg, JSON.stringify({ ...digest.config, rpc_listen: `127.0.0.1:${digest.rpcPort}` }));
  const fromConfig = await run(process.execPath, [MAIN, 'rpc', '--config', cfg, '--user', 'ops', 'core.uptime']);
  assert.match(fromConfig.stdout, /"uptime"/);
  await assert.rejects(run(process.execPath, [MAIN, 'rpc', '--config', cfg, 'core.uptime']), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr, /lists 2 users: say which with --user/);
    return true;
  });
  // --cluster: the same credentials for every node listed.
  const cluster = join(dir, 'cluster.rpc');
  writeFileSync(cluster, `n1 ${base(digest)}/RPC\n`);
  writeFileSync(pw, `${ADMIN.password}\n`);
  const all = await run(process.execPath, [MAIN, 'rpc', '--cluster', cluster, '--user', ADMIN.user, '--password-file', pw, 'core.version']);
  assert.match(JSON.parse(all.stdout)[0].result, /^presenced /);
  await assert.rejects(
    run(process.execPath, [MAIN, 'rpc', '--cluster', cluster, 'core.version']),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr, /n1: .*asks for credentials/);
      return true;
    },
  );
  // Authenticated calls are logged with the user.
  await digest.waitForLog((l) => l.msg === 'RPC call' && l.method === 'core.uptime' && l.user === 'ops');
});

test('basic: Basic challenge in its realm; /metrics open with rpc_metrics_open = 1; postRpc answers it', async () => {
  const m = await fetch(`${base(basic)}/metrics`);
  assert.equal(m.status, 200, 'rpc_metrics_open: scraped without credentials');
  const r = await fetch(`${base(basic)}/RPC`, { method: 'POST', body: CALL });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Basic realm="ops", charset="UTF-8"');
  const wrong = await fetch(`${base(basic)}/RPC`, {
    method: 'POST',
    body: CALL,
    headers: { authorization: `Basic ${Buffer.from('admin:guess').toString('base64')}` },
  });
  assert.equal(wrong.status, 401);
  const reply = await postRpc(`${base(basic)}/RPC`, { method: 'core.version', params: [] }, ADMIN);
  assert.match(String(reply.result), /^presenced /);
  const curl = await run('curl', ['-s', '-u', `${ADMIN.user}:${ADMIN.password}`, '-d', CALL, `${base(basic)}/RPC`]);
  assert.match(JSON.parse(curl.stdout).result, /^presenced /);
});

test('rpc_auth keys are checked at start: exit 2 naming the key', async () => {
  for (const [raw, key] of [
    [{ rpc_auth: 'ntlm' }, 'rpc_auth'],
    [{ rpc_auth: 'digest' }, 'rpc_auth_users'],
    [{ rpc_auth: 'basic', rpc_auth_users: { 'a:b': 'x' } }, 'rpc_auth_users'],
    [{ rpc_auth_users: ['admin'] }, 'rpc_auth_users'],
    [{ rpc_auth_realm: 'a"b' }, 'rpc_auth_realm'],
    [{ rpc_metrics_open: 2 }, 'rpc_metrics_open'],
  ] as Array<[Record<string, unknown>, string]>)
    assert.throws(
      () => buildConfig(raw),
      (err: unknown) => err instanceof ConfigError && err.message.startsWith(`${key}:`),
      JSON.stringify(raw),
    );
  assert.equal(buildConfig({}).rpc_auth, 'none', 'default: no authentication (npm start + POST /RPC keeps working)');
  const r = await runExpectingFailure({ rpc_auth: 'digest' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /rpc_auth_users: needs at least one user when rpc_auth is "digest"/);
});
