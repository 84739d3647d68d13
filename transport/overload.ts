/**
 * Overload control for the SIP stack (RFC 3261 §21.5.4, RFC 6357 §4): the stack sees its own
 * overload and answers the excess of new requests with a stateless 503 + Retry-After before
 * they reach the transaction user, so that what it accepts is still answered within its normal
 * latency. It knows nothing of presence: the signals are the stack's own (server transactions
 * awaiting their final response — a PUBLISH or SUBSCRIBE waiting for its store commit among
 * them —, event-loop lag, bytes waiting in the UDP receive queues, server transactions held).
 *
 * Also here: the bookkeeping of refusals by any limit of the node (`Refusals`), so that each
 * refusal is counted by limit name for /metrics and logged at most once per interval per limit.
 */
import { openSync, readSync, closeSync } from 'node:fs';
import type { Logger } from './flows.js';

export interface OverloadSettings {
  /** New requests get 503 while this many server transactions await their final response; 0 = no limit. */
  maxInFlight: number;
  /** New requests get 503 while the event loop lags by this many ms; 0 = not watched. */
  maxLoopLagMs: number;
  /** New requests get 503 while this many server transactions exist (completed ones kept for Timer J included); 0 = no limit. */
  maxServerTransactions: number;
  /**
   * New requests get 503 while the receive queues of our UDP sockets hold this many bytes (as
   * the kernel counts them, buffer overhead included; Linux /proc/net/udp); 0 = not watched.
   * Requests that wait there are invisible to the other signals: a 4 MB queue at 6,000
   * PUBLISH/s is seconds of latency before the stack reads them.
   */
  maxUdpQueueBytes?: number;
  /**
   * While the loop lags or the UDP queue is over its limit, new requests are still taken as long
   * as fewer than `window` are in flight: shedding everything would leave the node idle behind a
   * full queue (the requests read now have waited there already; what shedding buys is a shorter
   * wait for the next ones). The window adapts every sample, between this and maxInFlight: down
   * (×0.7 from what is in flight) while the loop lags, or the queue grows by more than 1/8 of its
   * limit in a sample or holds more than 4 times it; up (×1.25) once both are under their
   * limits; otherwise it holds. 0 = it may go down to shedding all.
   */
  minInFlight?: number;
  /** Seconds in the Retry-After of a 503 (RFC 3261 §20.33). */
  retryAfter: number;
  /** Configuration key names of the three limits above, for logs and metrics. */
  names?: { maxInFlight: string; maxLoopLagMs: string; maxServerTransactions: string; maxUdpQueueBytes?: string };
}

export const OVERLOAD_OFF: OverloadSettings = { maxInFlight: 0, maxLoopLagMs: 0, maxServerTransactions: 0, retryAfter: 1 };

/** Refusals by limit name: a count for /metrics, and one log line per limit and interval. */
export class Refusals {
  readonly counts = new Map<string, number>();
  private readonly lastLogged = new Map<string, number>();
  private readonly suppressed = new Map<string, number>();

  constructor(
    readonly log: Logger,
    /** At most one log line per limit in this many ms. */
    private readonly intervalMs: number,
  ) {}

  /** Count one refusal by `limit` (its configuration key); `detail` goes into the log line. */
  refuse(limit: string, detail: Record<string, unknown>): void {
    if (this.counted(limit)) this.logged(limit, detail);
  }

  /**
   * Count one refusal; true when it is to be logged (the first of its interval): then the caller
   * builds its details and calls logged(). A shed request costs no log object otherwise.
   */
  counted(limit: string): boolean {
    this.counts.set(limit, (this.counts.get(limit) ?? 0) + 1);
    const now = performance.now();
    const last = this.lastLogged.get(limit);
    if (last !== undefined && now - last < this.intervalMs) {
      this.suppressed.set(limit, (this.suppressed.get(limit) ?? 0) + 1);
      return false;
    }
    this.lastLogged.set(limit, now);
    return true;
  }

  logged(limit: string, detail: Record<string, unknown>): void {
    const since = this.suppressed.get(limit) ?? 0;
    this.suppressed.delete(limit);
    this.log.warn({ limit, ...detail, refusedSinceLastLog: since }, `limit reached: ${limit}; refusing`);
  }

  count(limit: string): number {
    return this.counts.get(limit) ?? 0;
  }
}

const LAG_SAMPLE_MS = 20;
/** The lag in use is the largest of the last few samples: one late timer is seen for 100 ms, not 20. */
const LAG_WINDOW = 5;

export class OverloadGuard {
  /** Server transactions whose final response has not been sent. */
  inFlight = 0;
  /** Event-loop lag: the largest of the last LAG_WINDOW samples (ms). */
  loopLagMs = 0;
  private readonly lagSamples = new Float64Array(LAG_WINDOW);
  private lagIndex = 0;
  /** Bytes in our UDP sockets' receive queues at the last sample. */
  udpQueueBytes = 0;
  private lastQueueBytes = 0;
  /** Requests taken in flight while the loop lags or the UDP queue is over its limit (adapts each sample). */
  window: number;
  private udpQueue: UdpQueueReader | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private expected = 0;
  readonly retryAfter: string;
  private readonly names: NonNullable<OverloadSettings['names']>;

  constructor(
    private readonly settings: OverloadSettings,
    private readonly refusals: Refusals,
  ) {
    this.retryAfter = String(settings.retryAfter);
    this.names = settings.names ?? {
      maxInFlight: 'maxInFlight',
      maxLoopLagMs: 'maxLoopLagMs',
      maxServerTransactions: 'maxServerTransactions',
    };
    this.window = this.windowCap;
    this.maxUdpQueueBytes = settings.maxUdpQueueBytes ?? 0;
    this.expected = performance.now() + LAG_SAMPLE_MS;
  }

  private get windowCap(): number {
    return this.settings.maxInFlight > 0 ? this.settings.maxInFlight : 4096;
  }

  /**
   * The loop lags when two of the last five samples were late by the limit or more: one stall
   * (a compile, a major GC) is not overload, and is over by the time it is seen.
   */
  private get lagging(): boolean {
    const max = this.settings.maxLoopLagMs;
    if (max <= 0 || this.loopLagMs < max) return false;
    let late = 0;
    for (const v of this.lagSamples) if (v >= max) late++;
    return late >= 2;
  }

  /** overload_max_udp_queue, or half the receive buffer the kernel granted when that is less. */
  maxUdpQueueBytes: number;

  private get queued(): boolean {
    return this.maxUdpQueueBytes > 0 && this.udpQueueBytes >= this.maxUdpQueueBytes;
  }

  /** One sample's say on the window: `lagNow` is this sample's lag alone. */
  private adapt(lagNow: number): void {
    const s = this.settings;
    const floor = s.minInFlight ?? 0;
    const lagged = s.maxLoopLagMs > 0 && lagNow >= s.maxLoopLagMs && this.lagging;
    const max = this.maxUdpQueueBytes;
    // The queue grows (by more than noise) or is far over its limit: fewer in flight.
    const growing = this.queued && (this.udpQueueBytes > this.lastQueueBytes + max / 8 || this.udpQueueBytes >= 4 * max);
    if (lagged || growing) {
      this.window = Math.max(floor, Math.floor(Math.min(this.window, Math.max(this.inFlight, floor)) * 0.7));
    } else if (!this.queued && !lagged) {
      this.window = Math.min(this.windowCap, Math.ceil(this.window * 1.25) + 1);
    }
    this.lastQueueBytes = this.udpQueueBytes;
  }

  /**
   * Start watching the event loop (a timer every 20 ms whose lateness is the lag) and the
   * receive queues of the UDP sockets bound to `udpPorts`.
   */
  start(udpPorts: ReadonlySet<number> = new Set(), udpBufferBytes = Infinity): void {
    if (this.sampler) return;
    // A queue limit the buffer cannot reach would never be seen (net.core.rmem_max is 208 KB by default).
    if (this.settings.maxUdpQueueBytes) this.maxUdpQueueBytes = Math.min(this.settings.maxUdpQueueBytes, Math.floor(udpBufferBytes / 2));
    if (udpPorts.size > 0 && this.settings.maxUdpQueueBytes) this.udpQueue = new UdpQueueReader(udpPorts);
    if (this.settings.maxLoopLagMs <= 0 && !this.udpQueue) return;
    this.expected = performance.now() + LAG_SAMPLE_MS;
    this.sampler = setInterval(this.sample, LAG_SAMPLE_MS);
    this.sampler.unref();
  }

  stop(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = undefined;
    this.inFlight = 0;
    this.udpQueue?.close();
    this.udpQueue = undefined;
  }

  /** One sample of the signals: run by the timer every 20 ms (a test may run one itself). */
  readonly sample = (): void => {
    const now = performance.now();
    const lagNow = Math.max(0, now - this.expected);
    this.lagSamples[this.lagIndex] = lagNow;
    this.lagIndex = (this.lagIndex + 1) % LAG_WINDOW;
    this.expected = now + LAG_SAMPLE_MS;
    let max = 0;
    for (const v of this.lagSamples) if (v > max) max = v;
    this.loopLagMs = max;
    this.adapt(lagNow);
    if (this.udpQueue) {
      try {
        this.udpQueueBytes = this.udpQueue.read();
      } catch (err) {
        // A table that cannot be read: the signal is off from now on.
        this.refusals.log.warn({ err }, 'cannot read /proc/net/udp: overload_max_udp_queue is not watched');
        this.udpQueue.close();
        this.udpQueue = undefined;
        this.udpQueueBytes = 0;
      }
    }
  };

  /**
   * May a new request (one that matched no transaction: retransmissions never come here) start
   * a server transaction? Returns the name of the limit that refuses it, or undefined. ACK and
   * CANCEL are never refused: they end work, they do not make any.
   */
  refuse(method: string, serverTransactions: number, callId: string | undefined): string | undefined {
    if (method === 'ACK' || method === 'CANCEL') return undefined;
    const s = this.settings;
    const n = this.names;
    let limit: string;
    if (s.maxServerTransactions > 0 && serverTransactions >= s.maxServerTransactions) limit = n.maxServerTransactions;
    else if (s.maxInFlight > 0 && this.inFlight >= s.maxInFlight) limit = n.maxInFlight;
    else if (this.inFlight >= this.window && this.lagging) limit = n.maxLoopLagMs;
    else if (this.inFlight >= this.window && this.queued) limit = n.maxUdpQueueBytes ?? 'maxUdpQueueBytes';
    else return undefined;
    if (this.refusals.counted(limit)) {
      this.refusals.logged(limit, {
        method,
        callId,
        serverTransactions,
        inFlight: this.inFlight,
        window: this.window,
        loopLagMs: Math.round(this.loopLagMs),
        udpQueueBytes: this.udpQueueBytes,
        max:
          limit === n.maxServerTransactions
            ? s.maxServerTransactions
            : limit === n.maxInFlight
              ? s.maxInFlight
              : limit === n.maxLoopLagMs
                ? s.maxLoopLagMs
                : this.maxUdpQueueBytes,
      });
    }
    return limit;
  }
}

const UDP_TABLES = ['/proc/net/udp', '/proc/net/udp6'];

/**
 * Bytes waiting in the receive queues of the UDP sockets bound to `ports` (the rx_queue column of
 * Linux's /proc/net/udp and udp6, hexadecimal); 0 where those files do not exist. The files stay
 * open and are read again from offset 0, synchronously: a /proc table is made in memory by the
 * kernel (tens of µs), while an asynchronous read would queue in libuv's thread pool behind
 * getaddrinfo calls (host names in Contacts are the peers' choice) and the signal would go stale.
 */
export class UdpQueueReader {
  private fds: Array<number | undefined> | undefined;
  private buf = Buffer.allocUnsafeSlow(16 * 1024);

  constructor(private readonly ports: ReadonlySet<number>) {}

  read(): number {
    this.fds ??= UDP_TABLES.map((f) => {
      try {
        return openSync(f, 'r');
      } catch {
        return undefined; // no such table (not Linux, or no IPv6): nothing queued there
      }
    });
    let total = 0;
    for (const fd of this.fds) {
      if (fd === undefined) continue;
      let length = 0;
      for (;;) {
        if (length === this.buf.length) {
          const bigger = Buffer.allocUnsafeSlow(this.buf.length * 2);
          this.buf.copy(bigger);
          this.buf = bigger;
        }
        const n = readSync(fd, this.buf, length, this.buf.length - length, length);
        if (n === 0) break;
        length += n;
      }
      total += udpQueueOf(this.buf.toString('latin1', 0, length), this.ports);
    }
    return total;
  }

  close(): void {
    const fds = this.fds;
    this.fds = undefined;
    if (fds) for (const fd of fds) if (fd !== undefined) closeSync(fd);
  }
}

/** One reading of the UDP receive queues of `ports` (see UdpQueueReader). */
export function udpReceiveQueue(ports: ReadonlySet<number>): number {
  const reader = new UdpQueueReader(ports);
  try {
    return reader.read();
  } finally {
    reader.close();
  }
}

/** The rx_queue bytes of the sockets of a /proc/net/udp table whose local port is in `ports`. */
export function udpQueueOf(table: string, ports: ReadonlySet<number>): number {
  let total = 0;
  for (const line of table.split('\n')) {
    // "  sl  local_address rem_address   st tx_queue:rx_queue ..." → [sl:, local, remote, st, queues, ...]
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !f[0]!.endsWith(':')) continue;
    const port = parseInt(f[1]!.slice(f[1]!.lastIndexOf(':') + 1), 16);
    if (!ports.has(port)) continue;
    const rx = parseInt(f[4]!.slice(f[4]!.indexOf(':') + 1), 16);
    if (Number.isFinite(rx)) total += rx;
  }
  return total;
}
