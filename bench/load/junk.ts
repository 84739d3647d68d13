/**
 * What unauthenticated junk makes a node hold (issue 12): sends N datagrams over UDP, a mix of
 * random bytes, valid OPTIONS, PUBLISH and SUBSCRIBE to random presentities (SUBSCRIBEs with a
 * reachable Contact or one whose host name does not resolve), INVITEs, other methods with
 * random headers, and PUBLISHes with bytes flipped. Prints what was sent and answered, and the
 * node's RSS before and after when --pid is given. With `node --heapsnapshot-signal=SIGUSR2` on
 * the node, `kill -USR2 PID` afterwards writes a heap snapshot to look into.
 *
 *   node dist/bench/load/junk.js --port 5060 [--host 127.0.0.1] [--count 50000] [--rate 20000] [--pid PID]
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    count: { type: 'string', default: '50000' },
    rate: { type: 'string', default: '20000' },
    pid: { type: 'string' },
  },
});
if (!values.port) {
  process.stderr.write('usage: node dist/bench/load/junk.js --port PORT [--host H] [--count N] [--rate PER_S] [--pid PID]\n');
  process.exit(2);
}
const host = values.host!;
const port = Number(values.port);
const total = Number(values.count);
const rate = Number(values.rate);

const rssOf = (pid: string | undefined): number | undefined => {
  if (!pid) return undefined;
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : undefined;
};

const socket = dgram.createSocket('udp4');
await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
const localPort = socket.address().port;
let answered = 0;
socket.on('message', () => answered++);

const hex = (n = 6): string => randomBytes(n).toString('hex');
const pick = <T>(a: T[]): T => a[Math.floor(Math.random() * a.length)]!;

function request(method: string, uri: string, extra: string[] = [], body = ''): Buffer {
  const lines = [
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${localPort};branch=z9hG4bK${hex()};rport`,
    `From: <sip:${hex(4)}@example.com>;tag=${hex()}`,
    `To: <${uri}>`,
    `Call-ID: ${hex(10)}@junk`,
    `CSeq: 1 ${method}`,
    'Max-Forwards: 70',
    ...extra,
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ];
  return Buffer.from(lines.join('\r\n'));
}

const pidf = (uri: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${uri}">` +
  `<tuple id="t${hex(3)}"><status><basic>open</basic></status><note>${hex(40)}</note></tuple></presence>`;

function junk(): Buffer {
  const k = Math.random();
  const uri = `sip:${hex(5)}@example.com`;
  if (k < 0.15) return randomBytes(50 + Math.floor(Math.random() * 800));
  if (k < 0.3) return request('OPTIONS', uri);
  if (k < 0.45) return request('PUBLISH', uri, ['Event: presence', 'Content-Type: application/pidf+xml', 'Expires: 3600'], pidf(uri));
  if (k < 0.6) return request('SUBSCRIBE', uri, ['Event: presence', `Contact: <sip:w@127.0.0.1:${localPort}>`, 'Expires: 3600']);
  if (k < 0.7) return request('INVITE', uri, [`Contact: <sip:w@127.0.0.1:${localPort}>`]);
  if (k < 0.8) return request(pick(['FOO', 'MESSAGE', 'REGISTER', 'BYE', 'NOTIFY']), uri, [`X-${hex(3)}: ${hex(20)}`]);
  if (k < 0.9) return request('SUBSCRIBE', uri, ['Event: presence', `Contact: <sip:w@host${hex(3)}.invalid>`]);
  const b = request('PUBLISH', uri, ['Event: presence', 'Content-Type: application/pidf+xml'], pidf(uri));
  for (let i = 0; i < 5; i++) b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
  return b;
}

const before = rssOf(values.pid);
const start = performance.now();
let sent = 0;
while (sent < total) {
  const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
  for (; sent < due; sent++) socket.send(junk(), port, host);
  await new Promise((r) => setTimeout(r, 5));
}
// Answers still on their way: wait until none came for a second.
for (let last = -1; last !== answered; ) {
  last = answered;
  await new Promise((r) => setTimeout(r, 1000));
}
const after = rssOf(values.pid);
const mib = (b: number | undefined): string => (b === undefined ? '-' : `${(b / 2 ** 20).toFixed(1)} MiB`);
process.stdout.write(
  `sent ${sent} datagrams in ${((performance.now() - start) / 1000).toFixed(1)} s, ${answered} answers; node RSS ${mib(before)} -> ${mib(after)}\n`,
);
socket.close();
