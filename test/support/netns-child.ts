/**
 * Runs inside a network namespace (`ip netns exec NS node netns-child.js`, with an IPC channel) and
 * hands sockets it opens there to its parent: a UDP socket bound to an address of the namespace, or
 * a TCP connection made from it. A socket keeps its namespace when it changes process, so the test
 * process (root namespace) talks from the namespace's address. See test/support/netns.ts.
 */
import dgram from 'node:dgram';
import net from 'node:net';

type Ask = { id: number; op: 'udp'; host: string } | { id: number; op: 'tcp'; host: string; port: number };

process.on('message', (m: Ask) => {
  if (m.op === 'udp') {
    const s = dgram.createSocket('udp4');
    s.once('error', (err) => process.send!({ id: m.id, error: err.message }));
    // Our copy is closed once sent: two processes reading one socket would share its datagrams.
    s.bind(0, m.host, () => process.send!({ id: m.id }, s, () => s.close()));
  } else {
    const c = net.connect({ host: m.host, port: m.port });
    c.once('connect', () => process.send!({ id: m.id }, c));
    c.once('error', (err) => process.send!({ id: m.id, error: err.message }));
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
