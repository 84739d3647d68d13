/**
 * UDP listener (RFC 3261 §18): one datagram is one message.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dns from 'node:dns';
import type { Logger, Source } from './flows.js';

/** The largest UDP payload over IPv4 (65,535 - 8 - 20). */
export const MAX_DATAGRAM = 65_507;

/** A message that no UDP datagram can carry: nothing was sent. */
export class DatagramTooLargeError extends Error {
  constructor(readonly size: number) {
    super(`message of ${size} bytes is too large for UDP (at most ${MAX_DATAGRAM})`);
    this.name = 'DatagramTooLargeError';
  }
}

export class UdpListener {
  private socket: dgram.Socket | undefined;
  boundPort = 0;

  constructor(
    readonly address: string,
    readonly port: number,
    private readonly onDatagram: (data: Buffer, source: Source) => void,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    const type = net.isIPv6(this.address) ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, recvBufferSize: 4 * 1024 * 1024, sendBufferSize: 4 * 1024 * 1024, lookup: lookupNow });
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => {
        socket.close(); // EADDRINUSE and the like: the caller reports it, nothing is left open
        reject(err);
      };
      socket.once('error', failed);
      socket.bind(this.port, this.address, () => {
        socket.off('error', failed);
        resolve();
      });
    });
    this.socket = socket;
    this.boundPort = socket.address().port;
    // Sends go without a callback (a callback costs a nextTick per datagram); what can fail at
    // once is checked in send() and thrown, the rest is reported here.
    socket.on('error', (err) => this.log.warn({ err, listener: `udp:${this.address}:${this.boundPort}` }, 'UDP send or socket error'));
    socket.on('message', (data, rinfo) => {
      this.onDatagram(data, {
        proto: 'udp',
        address: rinfo.address,
        port: rinfo.port,
        localAddress: this.address,
        localPort: this.boundPort,
      });
    });
  }

  /**
   * Send one datagram. Throws what can be known at once (too large for UDP, a bad port, a
   * closed socket), so the caller can fail its transaction instead of retransmitting into nothing.
   */
  send(data: Buffer, host: string, port: number): void {
    const socket = this.socket;
    if (!socket) throw new Error(`UDP listener ${this.address}:${this.boundPort} is closed`);
    if (data.length > MAX_DATAGRAM) throw new DatagramTooLargeError(data.length);
    socket.send(data, port, host);
  }

  /** The receive buffer the kernel granted (Linux doubles what was asked, up to net.core.rmem_max). */
  get recvBufferSize(): number {
    return this.socket?.getRecvBufferSize() ?? 0;
  }

  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
}

/**
 * dgram asks its lookup function for every datagram's destination, and dns.lookup answers even
 * an IP literal on the next tick. The stack sends only to IP literals (names are resolved
 * before), so those are answered at once: no tick and no closure per datagram.
 */
function lookupNow(
  address: string,
  options: dns.LookupOneOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const f = net.isIP(address);
  if (f !== 0) callback(null, address, f);
  else dns.lookup(address, options, callback);
}
