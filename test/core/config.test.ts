import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { buildConfig, ConfigError } from '../../core/config.js';
import { runExpectingFailure, startNode } from '../support/node.js';
import { makeTestCertificate } from '../support/tls-cert.js';

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
  // presence_dialoginfo defaults; dialog and reg served, no authorisation for dialog (Kamailio).
  assert.equal(c.force_single_dialog, 0);
  assert.equal(c.force_dummy_dialog, 0);
  assert.equal(c.dialog_authorization, 0);
  assert.equal(c.disable_dialog, 0);
  assert.equal(c.disable_reg, 0);
  assert.equal(c.force_active, 0);
  assert.equal(c.xcapauth_userdel_reason, 'probation');
  assert.equal(c.xcap_table, 'xcap');
  assert.equal(c.winfo_waiting_period, 3600);
  assert.equal(c.worker_inline_max_bytes, 1536);
  assert.equal(c.notify_cseq_reserve, 64);
  assert.equal(c.udp_mtu, 0, 'Kamailio default: off');
  assert.equal(c.udp_mtu_try_proto, 'udp');
  assert.equal(buildConfig({ udp_mtu: 1300, udp_mtu_try_proto: 'TCP' }).udp_mtu_try_proto, 'tcp', 'Kamailio spells it TCP');
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
  [{ listen: ['tls:127.0.0.1:5061'] }, 'tls_certificate'],
  [{ listen: ['udp:127.0.0.1:5060', 'wss:127.0.0.1:8443'], tls_certificate: '/etc/presenced/cert.pem' }, 'tls_private_key'],
  [{ tls_private_key: '/etc/presenced/key.pem' }, 'tls_certificate'],
  [{ tls_verify_certificate: 2 }, 'tls_verify_certificate'],
  [{ udp_mtu: -1 }, 'udp_mtu'],
  [{ udp_mtu_try_proto: 'sctp' }, 'udp_mtu_try_proto'],
  [{ udp_mtu: 1300, udp_mtu_try_proto: 'tls' }, 'udp_mtu_try_proto'],
  [{ notify_cseq_reserve: 0 }, 'notify_cseq_reserve'],
  [{ force_single_dialog: 2 }, 'force_single_dialog'],
  [{ force_dummy_dialog: 'yes' }, 'force_dummy_dialog'],
  [{ dialog_authorization: -1 }, 'dialog_authorization'],
  [{ disable_reg: 3 }, 'disable_reg'],
] as Array<[Record<string, unknown>, string]>) {
  test(`invalid configuration ${JSON.stringify(raw)} names ${key}`, () => {
    assert.throws(
      () => buildConfig(raw),
      (err: unknown) => (err instanceof ConfigError && err.message.startsWith(key) === true) || (err as Error).message.includes(`"${key}"`),
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

test('tls and wss listeners are accepted with a certificate and a key; TLS keys default to Kamailio tls module behaviour', () => {
  const c = buildConfig({
    listen: ['tls:127.0.0.1:5061', 'wss:127.0.0.1:8443'],
    tls_certificate: '/etc/presenced/cert.pem',
    tls_private_key: '/etc/presenced/key.pem',
  });
  assert.deepEqual(
    c.listen.map((l) => `${l.proto}:${l.address}:${l.port}`),
    ['tls:127.0.0.1:5061', 'wss:127.0.0.1:8443'],
  );
  const d = buildConfig({});
  assert.equal(d.tls_verify_certificate, 1, 'server certificates are verified unless told otherwise');
  assert.equal(d.tls_ca_list, '', "Node's default CAs");
  assert.equal(d.tls, undefined, 'no TLS files configured, none read');
});

test('a tls listener without a usable certificate or key: exit 2 with a message naming the key and the file problem', async () => {
  const cert = await makeTestCertificate();
  try {
    const none = await runExpectingFailure({ listen: ['tls:127.0.0.1:0'] });
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /tls_certificate: required by listen\[0\] \(tls:127\.0\.0\.1:0\); set it to the path of a PEM file/);

    const missing = join(cert.dir, 'no-such-key.pem');
    const unreadable = await runExpectingFailure({ listen: ['tls:127.0.0.1:0'], tls_certificate: cert.certFile, tls_private_key: missing });
    assert.equal(unreadable.code, 2, unreadable.stderr);
    assert.match(unreadable.stderr, new RegExp(`tls_private_key: cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));

    const directory = await runExpectingFailure({ listen: ['wss:127.0.0.1:0'], tls_certificate: cert.certFile, tls_private_key: cert.dir });
    assert.equal(directory.code, 2, directory.stderr);
    assert.match(directory.stderr, /tls_private_key: cannot read .*EISDIR/);

    const notAKey = await runExpectingFailure({
      listen: ['tls:127.0.0.1:0'],
      tls_certificate: cert.certFile,
      tls_private_key: cert.certFile,
    });
    assert.equal(notAKey.code, 2, notAKey.stderr);
    assert.match(notAKey.stderr, /tls_private_key: .* is not the unencrypted private key of /);

    const keyAsCert = await runExpectingFailure({
      listen: ['tls:127.0.0.1:0'],
      tls_certificate: cert.keyFile,
      tls_private_key: cert.keyFile,
    });
    assert.equal(keyAsCert.code, 2, keyAsCert.stderr);
    assert.match(keyAsCert.stderr, /tls_certificate: .* holds no certificate/);

    // (A port of its own: were the check missing, the node would start rather than bind the default 5060.)
    const badCa = await runExpectingFailure({
      listen: ['udp:127.0.0.1:0'],
      xcap_listen: '127.0.0.1:0',
      rpc_listen: '127.0.0.1:0',
      db_url: `lmdb:${join(cert.dir, 'db')}`,
      tls_ca_list: cert.keyFile,
    });
    assert.equal(badCa.code, 2, badCa.stderr);
    assert.match(badCa.stderr, /tls_ca_list: .* holds no certificate/);
  } finally {
    cert.remove();
  }
});
