/**
 * Binding listening sockets so that a port in use stops the start with a clear message.
 *
 * uWebSockets.js binds with SO_REUSEPORT by default: a second process asking for the same
 * address:port gets it too and the kernel splits connections between the two, silently. Every
 * uWS listener here binds with LIBUS_LISTEN_EXCLUSIVE_PORT instead (no SO_REUSEPORT), so the
 * second bind fails like any other. uWS reports a failed listen as `false`, without the reason:
 * the reason is then learnt by binding the same address with node:net (exclusive), which gives
 * the errno (EADDRINUSE, EADDRNOTAVAIL, EACCES).
 */
import net from 'node:net';
import uWS from 'uWebSockets.js';
import { uriHost } from './flows.js';

/** uWS exports it as a number; its typings only as the ListenOptions enum. */
const EXCLUSIVE_PORT = (uWS as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT?: number }).LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1;

/** A listener that could not be bound; `setting` is the configuration key it came from. */
export class ListenError extends Error {
  constructor(
    readonly setting: string,
    readonly listener: string,
    readonly code: string | undefined,
    detail?: string,
  ) {
    super(
      code === 'EADDRINUSE'
        ? `${listener} is already in use`
        : code === 'EADDRNOTAVAIL'
          ? `${listener}: the address is not one of this host's`
          : code === 'EACCES'
            ? `${listener}: permission denied (a port below 1024 needs privileges)`
            : `cannot listen on ${listener}${detail ? `: ${detail}` : ''}`,
    );
    this.name = 'ListenError';
  }
}

/** `address:port` as written in the configuration (IPv6 in brackets). */
export function hostPort(address: string, port: number): string {
  return `${uriHost(address)}:${port}`;
}

/** The errno of binding address:port with node:net right now (undefined: it binds). */
function bindError(address: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    probe.listen({ host: address, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

/**
 * Listen with uWS on address:port without SO_REUSEPORT; resolves with the listen socket, rejects
 * with a ListenError naming `setting` and the reason.
 */
export function listenExclusive(
  app: uWS.TemplatedApp,
  setting: string,
  address: string,
  port: number,
  label = hostPort(address, port),
): Promise<uWS.us_listen_socket> {
  return new Promise((resolve, reject) => {
    // The host, port, options, callback form is in the native binding, not in its typings.
    const listen = app.listen as unknown as (
      host: string,
      port: number,
      options: number,
      cb: (s: uWS.us_listen_socket | false) => void,
    ) => void;
    listen.call(app, address, port, EXCLUSIVE_PORT, (socket) => {
      if (socket) {
        resolve(socket);
        return;
      }
      bindError(address, port).then((err) =>
        reject(new ListenError(setting, label, err?.code, err?.message ?? 'refused by uWebSockets.js')),
      );
    });
  });
}
