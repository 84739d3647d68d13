/**
 * Which of this host's addresses a wildcard listener (0.0.0.0, ::) stands for toward a peer.
 *
 * A listener bound to every address has no address of its own to put in Via and Contact, and
 * the loopback one sends a proxy on another host to itself. A TCP connection knows its local
 * address; a datagram does not (its destination address needs IP_PKTINFO, which Node's dgram
 * does not expose). So toward a peer we take the address the kernel would send from: a UDP
 * socket connect()ed to the peer is given it by the routing table, and reading it back with
 * address() sends nothing. For a peer that reached us, that is the address its datagram came
 * to, unless the host routes asymmetrically (then `advertise` in the listener says it). The
 * answer is cached per peer (bounded, refreshed after a while: routes change).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';

/** Peers remembered; the oldest is forgotten past this. */
const MAX_PEERS = 4096;
/** After this long an answer is used once more while it is looked up again. */
const REFRESH_MS = 60_000;

export function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/** `::ffff:192.0.2.1` (a v4 peer on a dual-stack socket) → `192.0.2.1`. */
function unmapped(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

export class LocalAddresses {
  private readonly known = new Map<string, { address: string; at: number }>();
  private readonly pending = new Map<string, Promise<string>>();

  /**
   * The local address toward `peer` if known; undefined when not (yet). Either way a missing or
   * stale answer is looked up in the background, for the next time.
   */
  toward(peer: string): string | undefined {
    const p = unmapped(peer);
    const k = this.known.get(p);
    if (k === undefined || Date.now() - k.at > REFRESH_MS) void this.lookup(p);
    return k?.address;
  }

  /** The local address toward `peer`: at once when known, else once looked up. */
  resolve(peer: string): string | Promise<string> {
    const p = unmapped(peer);
    return this.toward(p) ?? this.lookup(p);
  }

  /** An address seen on a connection (TCP: the socket says which). */
  learn(peer: string, local: string): void {
    const p = unmapped(peer);
    const l = unmapped(local);
    const k = this.known.get(p);
    if (k && k.address === l && Date.now() - k.at <= REFRESH_MS) return;
    this.remember(p, l);
  }

  private lookup(peer: string): Promise<string> {
    let p = this.pending.get(peer);
    if (p) return p;
    p = routeFrom(peer).then((address) => {
      this.pending.delete(peer);
      this.remember(peer, address);
      return address;
    });
    this.pending.set(peer, p);
    return p;
  }

  private remember(peer: string, address: string): void {
    this.known.delete(peer);
    this.known.set(peer, { address, at: Date.now() });
    if (this.known.size > MAX_PEERS) this.known.delete(this.known.keys().next().value!);
  }
}

/** The source address the routing table picks toward `peer`; a fallback when there is no route. */
function routeFrom(peer: string): Promise<string> {
  const v6 = net.isIPv6(peer);
  if (!v6 && !net.isIPv4(peer)) return Promise.resolve(fallbackAddress(false));
  return new Promise((resolve) => {
    const socket = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    const done = (address: string): void => {
      socket.close();
      resolve(address);
    };
    socket.once('error', () => done(fallbackAddress(v6)));
    // Port 9 (discard): connect() on UDP only picks the route and the source; nothing is sent.
    socket.connect(9, peer, () => done(unmapped(socket.address().address)));
  });
}

const fallbackMemo = new Map<boolean, { address: string; at: number }>();

/** The first non-internal address of the family, else loopback: what a peer without a route gets. */
export function fallbackAddress(v6: boolean): string {
  const m = fallbackMemo.get(v6);
  if (m && Date.now() - m.at <= REFRESH_MS) return m.address;
  const address = firstAddress(v6);
  fallbackMemo.set(v6, { address, at: Date.now() });
  return address;
}

function firstAddress(v6: boolean): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      if (!a.internal && (a.family === 'IPv6') === v6 && !(v6 && a.address.startsWith('fe80:'))) return a.address;
    }
  }
  return v6 ? '::1' : '127.0.0.1';
}
