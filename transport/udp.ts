/**
 * UDP listener (RFC 3261 §18): one datagram is one message.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dns from 'node:dns';
import type { Logger, Source } from './flows.js';

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
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, this.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    this.boundPort = socket.address().port;
    // Sends go without a callback (a callback costs a closure and a nextTick per datagram), so a
    // failed send is reported here, as the socket's error event.
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

  send(data: Buffer, host: string, port: number): void {
    const socket = this.socket;
    if (!socket) return;
    socket.send(data, port, host);
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
