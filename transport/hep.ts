/**
 * SIP capture to a Homer server: a copy of every SIP message received and sent, as HEPv3 over
 * UDP (the HEP/EEP v3 chunk format Homer, Kamailio's siptrace and sipcapture speak). The copy
 * is best effort by design: a capture server that is down or slow never delays, fails or
 * changes SIP processing, and send errors are only counted and logged now and then.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Logger, Protocol } from './flows.js';

/** Where a message went or came from, as the capture records it. */
export interface Endpoint {
  address: string;
  port: number;
}

/** Sees every SIP message the stack receives or sends, as bytes on the wire. */
export interface MessageTap {
  message(data: Buffer, proto: Protocol, src: Endpoint, dst: Endpoint): void;
}

// HEPv3 chunk types (vendor 0, generic), from the HEP/EEP v3 specification.
const CHUNK = {
  ipFamily: 1,
  ipProto: 2,
  ipv4Src: 3,
  ipv4Dst: 4,
  ipv6Src: 5,
  ipv6Dst: 6,
  srcPort: 7,
  dstPort: 8,
  timeSec: 9,
  timeUsec: 10,
  protoType: 11,
  captureId: 12,
  authKey: 14,
  payload: 15,
  correlationId: 17,
} as const;

const AF_INET = 2;
const AF_INET6 = 10;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const PROTO_SIP = 1;
const CHUNK_HEAD = 6;

export interface HepOptions {
  /** false: plain SIP copies, the message alone in a datagram (siptrace hep_mode_on = 0). */
  hep: boolean;
  captureId: number;
  /** HEP authentication key (chunk 14), '' for none. */
  authKey: string;
  /** Correlation id (chunk 17) for the message: the Call-ID, so Homer groups a dialog. */
  correlationOf?: (data: Buffer) => string | undefined;
}

/**
 * One HEPv3 packet for a SIP message. `now` in microseconds since the epoch. Addresses that are
 * not IP literals of one family (never the case for what a socket reports) are sent as the
 * unspecified address of the source's family.
 */
export function encodeHep3(data: Buffer, proto: Protocol, src: Endpoint, dst: Endpoint, nowUs: number, options: HepOptions): Buffer {
  const v6 = net.isIPv6(src.address) || net.isIPv6(dst.address);
  const addrLen = v6 ? 16 : 4;
  const auth = options.authKey ? Buffer.from(options.authKey, 'utf8') : undefined;
  const corr = options.correlationOf?.(data);
  const corrBuf = corr ? Buffer.from(corr, 'utf8') : undefined;
  const size =
    6 + // "HEP3" + total length
    (CHUNK_HEAD + 1) * 2 + // family, ip protocol
    (CHUNK_HEAD + addrLen) * 2 +
    (CHUNK_HEAD + 2) * 2 + // ports
    (CHUNK_HEAD + 4) * 2 + // time
    (CHUNK_HEAD + 1) + // protocol type
    (CHUNK_HEAD + 4) + // capture id
    (auth ? CHUNK_HEAD + auth.length : 0) +
    (corrBuf ? CHUNK_HEAD + corrBuf.length : 0) +
    CHUNK_HEAD +
    data.length;
  if (size > 0xffff) throw new RangeError(`HEP packet of ${size} bytes is over the 65,535 a HEPv3 length can say`);
  const out = Buffer.allocUnsafe(size);
  out.write('HEP3', 0, 'latin1');
  out.writeUInt16BE(size, 4);
  let at = 6;
  const head = (type: number, len: number): void => {
    out.writeUInt16BE(0, at);
    out.writeUInt16BE(type, at + 2);
    out.writeUInt16BE(CHUNK_HEAD + len, at + 4);
    at += CHUNK_HEAD;
  };
  const u8 = (type: number, v: number): void => {
    head(type, 1);
    out.writeUInt8(v, at);
    at += 1;
  };
  const u16 = (type: number, v: number): void => {
    head(type, 2);
    out.writeUInt16BE(v, at);
    at += 2;
  };
  const u32 = (type: number, v: number): void => {
    head(type, 4);
    out.writeUInt32BE(v >>> 0, at);
    at += 4;
  };
  const bytes = (type: number, b: Buffer): void => {
    head(type, b.length);
    b.copy(out, at);
    at += b.length;
  };
  u8(CHUNK.ipFamily, v6 ? AF_INET6 : AF_INET);
  u8(CHUNK.ipProto, proto === 'udp' ? IPPROTO_UDP : IPPROTO_TCP);
  bytes(v6 ? CHUNK.ipv6Src : CHUNK.ipv4Src, addressBytes(src.address, v6));
  bytes(v6 ? CHUNK.ipv6Dst : CHUNK.ipv4Dst, addressBytes(dst.address, v6));
  u16(CHUNK.srcPort, src.port);
  u16(CHUNK.dstPort, dst.port);
  u32(CHUNK.timeSec, Math.floor(nowUs / 1e6));
  u32(CHUNK.timeUsec, nowUs % 1e6);
  u8(CHUNK.protoType, PROTO_SIP);
  u32(CHUNK.captureId, options.captureId);
  if (auth) bytes(CHUNK.authKey, auth);
  if (corrBuf) bytes(CHUNK.correlationId, corrBuf);
  bytes(CHUNK.payload, data);
  return out;
}

/** The 4 or 16 bytes of an IP literal; an IPv4 address in a v6 packet is v4-mapped. */
function addressBytes(address: string, v6: boolean): Buffer {
  const kind = net.isIP(address);
  if (!v6) return kind === 4 ? Buffer.from(address.split('.').map(Number)) : Buffer.alloc(4);
  if (kind === 4)
    return Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), Buffer.from(address.split('.').map(Number))]);
  if (kind !== 6) return Buffer.alloc(16);
  return ipv6Bytes(address);
}

function ipv6Bytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  let text = address;
  const pct = text.indexOf('%');
  if (pct !== -1) text = text.slice(0, pct); // zone id
  // A trailing dotted quad (::ffff:1.2.3.4) is two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left, right] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined];
  const l = left ? left.split(':') : [];
  const r = right ? right.split(':') : [];
  const groups = [...l, ...new Array<string>(8 - l.length - r.length).fill('0'), ...r];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16) & 0xffff, i * 2);
  return out;
}

/** The Call-ID of a SIP message, read from its head without parsing it (compact form `i` too). */
export function callIdOf(data: Buffer): string | undefined {
  const end = data.indexOf('\r\n\r\n');
  const head = data.toString('latin1', 0, end === -1 ? Math.min(data.length, 8192) : end);
  let at = 0;
  while (at < head.length) {
    let eol = head.indexOf('\r\n', at);
    if (eol === -1) eol = head.length;
    const c = head.charCodeAt(at);
    if (c === 0x43 || c === 0x63 || c === 0x49 || c === 0x69) {
      const colon = head.indexOf(':', at);
      if (colon !== -1 && colon < eol) {
        const name = head.slice(at, colon).trim().toLowerCase();
        if (name === 'call-id' || name === 'i') return head.slice(colon + 1, eol).trim() || undefined;
      }
    }
    at = eol + 2;
  }
  return undefined;
}

/** Sends HEPv3 copies to one capture server over UDP. */
export class HepSender implements MessageTap {
  private socket: dgram.Socket | undefined;
  sent = 0;
  failed = 0;
  private lastWarn = 0;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly options: HepOptions,
    private readonly log: Logger,
  ) {}

  start(): void {
    const socket = dgram.createSocket(net.isIPv6(this.host) ? 'udp6' : 'udp4');
    socket.on('error', (err) => this.failure(err));
    socket.unref();
    this.socket = socket;
  }

  message(data: Buffer, proto: Protocol, src: Endpoint, dst: Endpoint): void {
    const socket = this.socket;
    if (!socket) return;
    let packet: Buffer = data;
    if (this.options.hep) {
      try {
        const nowUs = Math.round((performance.timeOrigin + performance.now()) * 1000);
        packet = encodeHep3(data, proto, src, dst, nowUs, this.options);
      } catch (err) {
        this.failure(err as Error);
        return;
      }
    }
    socket.send(packet, this.port, this.host, (err) => {
      if (err) this.failure(err);
      else this.sent++;
    });
  }

  private failure(err: Error): void {
    this.failed++;
    const now = Date.now();
    if (now - this.lastWarn < 60_000) return;
    this.lastWarn = now;
    this.log.warn(
      { err, capture: `${this.host}:${this.port}`, failed: this.failed },
      'SIP capture (HEP) copy not sent; SIP traffic is not affected (this warning repeats at most once a minute)',
    );
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
