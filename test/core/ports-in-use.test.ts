/**
 * A port in use stops the start (exit 2, the key named), for the uWebSockets.js listeners
 * (XCAP, RPC, WebSocket: uWS binds with SO_REUSEPORT unless told not to, which let a second
 * node share the port and take half the requests) and for the SIP listeners alike.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import uWS from 'uWebSockets.js';
import { startNode, runExpectingFailure, TEST_DEFAULTS, type RunningNode } from '../support/node.js';

const first: RunningNode = await startNode({ listen: ['udp:127.0.0.1:0', 'tcp:127.0.0.1:0', 'ws:127.0.0.1:0'] });
const dir = mkdtempSync(join(tmpdir(), 'presenced-ports-'));
after(async () => {
  await first.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A second node's configuration: everything ephemeral but what the case sets. */
function second(overrides: Record<string, unknown>): Record<string, unknown> {
  return { ...TEST_DEFAULTS, db_url: `lmdb:${join(dir, 'db')}`, ...overrides };
}

for (const [key, value, expected] of [
  ['xcap_listen', () => `127.0.0.1:${first.xcapPort}`, () => `xcap_listen: 127.0.0.1:${first.xcapPort} is already in use`],
  ['rpc_listen', () => `127.0.0.1:${first.rpcPort}`, () => `rpc_listen: 127.0.0.1:${first.rpcPort} is already in use`],
  ['listen', () => [`tcp:127.0.0.1:${first.tcpPort}`], () => `listen: tcp:127.0.0.1:${first.tcpPort} is already in use`],
  ['listen', () => [`udp:127.0.0.1:${first.udpPort}`], () => `listen: udp:127.0.0.1:${first.udpPort} is already in use`],
  ['listen', () => ['udp:127.0.0.1:0', `ws:127.0.0.1:${first.wsPort}`], () => `listen: ws:127.0.0.1:${first.wsPort} is already in use`],
] as Array<[string, () => unknown, () => string]>) {
  test(`a second node on the first one's ${key} ${JSON.stringify(value())} exits 2 naming the key`, async () => {
    const r = await runExpectingFailure(second({ [key]: value() }));
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `presenced: configuration error: ${expected()}\n`);
  });
}

test('a port held by another uWebSockets.js server with SO_REUSEPORT is not shared', async () => {
  const app = uWS.App();
  app.any('/*', (res) => {
    res.end('not presenced');
  });
  const socket = await new Promise<uWS.us_listen_socket>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen failed')))),
  );
  const port = uWS.us_socket_local_port(socket);
  try {
    const r = await runExpectingFailure(second({ xcap_listen: `127.0.0.1:${port}` }));
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `presenced: configuration error: xcap_listen: 127.0.0.1:${port} is already in use\n`);
  } finally {
    uWS.us_listen_socket_close(socket);
  }
});

test('a port held by a plain node:net server stops the RPC listener too', async () => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const r = await runExpectingFailure(second({ rpc_listen: `127.0.0.1:${port}` }));
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `presenced: configuration error: rpc_listen: 127.0.0.1:${port} is already in use\n`);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("an address that is not this host's is named with its key", async () => {
  // 192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface of a test machine.
  const r = await runExpectingFailure(second({ xcap_listen: '192.0.2.1:0' }));
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `presenced: configuration error: xcap_listen: 192.0.2.1:0: the address is not one of this host's\n`);
});
