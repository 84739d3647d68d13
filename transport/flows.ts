/**
 * Where a message came from and where one goes: the transport-neutral addressing that the
 * stack, the listeners and the transaction layer share.
 */

export type Protocol = 'udp' | 'tcp' | 'ws' | 'tls' | 'wss';

/** A connection-oriented transport channel (a TCP connection, a WebSocket). */
export interface Flow {
  readonly id: string;
  readonly proto: Protocol;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** Writes a whole message; false when the flow is already closed. */
  send(data: Buffer): boolean;
  readonly closed: boolean;
  close(): void;
}

/** The source of a received message. */
export interface Source {
  proto: Protocol;
  address: string;
  port: number;
  localAddress: string;
  localPort: number;
  /** Present for connection-oriented transports: responses go back on it (RFC 3261 §18.2.2). */
  flow?: Flow;
}

/** Where to send a request. */
export interface Target {
  proto: Protocol;
  host: string;
  port: number;
  /** Preferred existing flow (e.g. the connection a SUBSCRIBE arrived on, RFC 5626 / RFC 7118). */
  flowId?: string;
}

/** Minimal structured logger (pino-compatible) so transport/ depends on no logging library. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const isReliable = (p: Protocol): boolean => p !== 'udp';

/** `[::1]` → `::1` for the socket APIs. */
export function bareHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** `::1` → `[::1]` for Via and URIs. */
export function uriHost(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}
