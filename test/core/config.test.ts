import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildConfig, ConfigError } from '../../core/config.js';
import { runExpectingFailure, startNode } from '../support/node.js';

test('defaults follow the operator contract and the seeds', () => {
  const c = buildConfig({});
  assert.deepEqual(
    c.listen.map((l) => `${l.proto}:${l.address}:${l.port}`),
    ['udp:127.0.0.1:5060', 'tcp:127.0.0.1:5060'],
  );
  assert.equal(c.db_url, 'lmdb:./data');
  assert.equal(c.xcap_root, '/xcap-root');
  assert.deepEqual(c.xcap_listen, { address: '127.0.0.1', port: 8080 });
  assert.deepEqual(c.rpc_listen, { address: '127.0.0.1', port: 8081 });
  assert.equal(c.disable_bla, 1);
  assert.equal(c.force_active, 0);
  assert.equal(c.xcapauth_userdel_reason, 'probation');
  assert.equal(c.xcap_table, 'xcap');
  assert.equal(c.winfo_waiting_period, 3600);
  assert.equal(c.worker_inline_max_bytes, 1536);
});

for (const [raw, key] of [
  [{ force_actve: 1 }, 'force_actve'],
  [{ min_expires: 'ten' }, 'min_expires'],
  [{ listen: ['sctp:127.0.0.1:5060'] }, 'listen[0]'],
  [{ listen: ['udp:127.0.0.1'] }, 'listen[0]'],
  [{ db_url: 'mysql://kamailio@localhost/kamailio' }, 'db_url'],
  [{ xcapauth_userdel_reason: 'because' }, 'xcapauth_userdel_reason'],
  [{ min_expires: 7200, max_expires: 3600 }, 'min_expires'],
  [{ integrated_xcap_server: 0 }, 'xcap_server'],
  [{ xcap_server: ['ftp://x'], integrated_xcap_server: 0 }, 'xcap_server[0]'],
  [{ force_active: 2 }, 'force_active'],
  [{ winfo_waiting_period: 'an hour' }, 'winfo_waiting_period'],
  [{ winfo_waiting_period: -1 }, 'winfo_waiting_period'],
  [{ winfo_waiting_period: 1.5 }, 'winfo_waiting_period'],
  [{ worker_inline_max_bytes: -1 }, 'worker_inline_max_bytes'],
] as Array<[Record<string, unknown>, string]>) {
  test(`invalid configuration ${JSON.stringify(raw)} names ${key}`, () => {
    assert.throws(
      () => buildConfig(raw),
      (err: unknown) => err instanceof ConfigError && err.message.startsWith(key) === true || (err as Error).message.includes(`"${key}"`),
    );
  });
}

test('the node refuses to start on a bad key, exit 2 with a message naming it', async () => {
  const r = await runExpectingFailure({ max_expires: -5 });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /max_expires: must be an integer/);
  const w = await runExpectingFailure({ winfo_waiting_period: 'an hour' });
  assert.equal(w.code, 2);
  assert.match(w.stderr, /winfo_waiting_period: must be an integer from 0 to 31536000 \(got "an hour"\)/);
  const j = await runExpectingFailure('{ not json');
  assert.equal(j.code, 2);
  assert.match(j.stderr, /not valid JSON/);
});

test('SIGTERM stops the node cleanly (exit 0) and logs it', async () => {
  const node = await startNode();
  const code = await node.stop();
  assert.equal(code, 0);
  assert.ok(node.logs.some((l) => l.msg === 'stopped'));
});
