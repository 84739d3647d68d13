/**
 * Overload control for the SIP stack (RFC 3261 §21.5.4, RFC 6357 §4): the stack sees its own
 * overload and answers the excess of new requests with a stateless 503 + Retry-After before
 * they reach the transaction user, so that what it accepts is still answered within its normal
 * latency. It knows nothing of presence: the signals are the stack's own (server transactions
 * awaiting their final response, event-loop lag) plus any the transaction user adds as a probe
 * (e.g. writes waiting for a store commit).
 *
 * Also here: the bookkeeping of refusals by any limit of the node (`Refusals`), so that each
 * refusal is counted by limit name for /metrics and logged at most once per interval per limit.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from './flows.js';

/** A load signal of the transaction user: refuse new requests while `read()` >= `limit`. */
export interface OverloadProbe {
  /** The configuration key of the limit, reported in logs and metrics. */
  name: string;
  limit: number;
  read: () => number;
}

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
   * (×0.7 from what is in flight) while the loop lags or the queue grows, up (×1.25) once both
   * are under their limits. 0 = it may go down to shedding all.
   */
  minInFlight?: number;
  /** Seconds in the Retry-After of a 503 (RFC 3261 §20.33). */
  retryAfter: number;
  /** Configuration key names of the three limits above, for logs and metrics. */
  names?: { maxInFlight: string; maxLoopLagMs: string; maxServerTransactions: string; maxUdpQueueBytes?: string };
  probes?: OverloadProbe[];
}

export const OVERLOAD_OFF: OverloadSettings = { maxInFlight: 0, maxLoopLagMs: 0, maxServerTransactions: 0, retryAfter: 1 };

/** Refusals by limit name: a count for /metrics, and one log line per limit and interval. */
export class Refusals {
  readonly counts = new Map<string, number>();
  private readonly lastLogged = new Map<string, number>();
  private readonly suppressed = new Map<string, number>();

  constructor(
    private readonly log: Logger,
    /** At most one log line per limit in this many ms. */
    private readonly intervalMs: number,
  ) {}

  /** Count one refusal by `limit` (its configuration key); `detail` goes into the log line. */
  refuse(limit: string, detail: Record<string, unknown>): void {
    this.counts.set(limit, (this.counts.get(limit) ?? 0) + 1);
    const now = performance.now();
    const last = this.lastLogged.get(limit);
    if (last !== undefined && now - last < this.intervalMs) {
      this.suppressed.set(limit, (this.suppressed.get(limit) ?? 0) + 1);
      return;
    }
    this.lastLogged.set(limit, now);
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
  private udpPorts: ReadonlySet<number> = new Set();
  private reading = false;
  private sampler: NodeJS.Timeout | undefined;
  private expected = 0;
  readonly retryAfter: string;
  private readonly names: NonNullable<OverloadSettings['names']>;

  constructor(
    private readonly settings: OverloadSettings,
    private readonly refusals: Refusals,
  ) {
    this.retryAfter = String(settings.retryAfter);
    this.names = settings.names ?? { maxInFlight: 'maxInFlight', maxLoopLagMs: 'maxLoopLagMs', maxServerTransactions: 'maxServerTransactions' };
    this.window = this.windowCap;
  }

  private get windowCap(): number {
    return this.settings.maxInFlight > 0 ? this.settings.maxInFlight : 4096;
  }

  private get lagging(): boolean {
    return this.settings.maxLoopLagMs > 0 && this.loopLagMs >= this.settings.maxLoopLagMs;
  }

  private get queued(): boolean {
    return !!this.settings.maxUdpQueueBytes && this.udpQueueBytes >= this.settings.maxUdpQueueBytes;
  }

  /** One sample's say on the window: `lagNow` is this sample's lag alone. */
  private adapt(lagNow: number): void {
    const s = this.settings;
    const floor = s.minInFlight ?? 0;
    const lagged = s.maxLoopLagMs > 0 && lagNow >= s.maxLoopLagMs;
    if (lagged || (this.queued && this.udpQueueBytes > this.lastQueueBytes)) {
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
  start(udpPorts: ReadonlySet<number> = new Set()): void {
    this.udpPorts = udpPorts;
    if (udpPorts.size === 0 || !this.settings.maxUdpQueueBytes) this.udpPorts = new Set();
    if ((this.settings.maxLoopLagMs <= 0 && this.udpPorts.size === 0) || this.sampler) return;
    this.expected = performance.now() + LAG_SAMPLE_MS;
    this.sampler = setInterval(this.sample, LAG_SAMPLE_MS);
    this.sampler.unref();
  }

  stop(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = undefined;
    this.inFlight = 0;
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
    if (this.udpPorts.size > 0 && !this.reading) {
      this.reading = true;
      udpReceiveQueue(this.udpPorts)
        .then((bytes) => (this.udpQueueBytes = bytes))
        .finally(() => (this.reading = false));
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
    let limit: string | undefined;
    let detail: Record<string, unknown> | undefined;
    if (s.maxServerTransactions > 0 && serverTransactions >= s.maxServerTransactions) {
      limit = this.names.maxServerTransactions;
      detail = { serverTransactions, max: s.maxServerTransactions };
    } else if (s.maxInFlight > 0 && this.inFlight >= s.maxInFlight) {
      limit = this.names.maxInFlight;
      detail = { inFlight: this.inFlight, max: s.maxInFlight };
    } else if ((this.lagging || this.queued) && this.inFlight >= this.window) {
      if (this.lagging) {
        limit = this.names.maxLoopLagMs;
        detail = { loopLagMs: Math.round(this.loopLagMs), max: s.maxLoopLagMs, inFlight: this.inFlight, window: this.window };
      } else {
        limit = this.names.maxUdpQueueBytes ?? 'maxUdpQueueBytes';
        detail = { udpQueueBytes: this.udpQueueBytes, max: s.maxUdpQueueBytes, inFlight: this.inFlight, window: this.window };
      }
    } else if (s.probes) {
      for (const p of s.probes) {
        if (p.limit <= 0) continue;
        const v = p.read();
        if (v >= p.limit) {
          limit = p.name;
          detail = { value: v, max: p.limit };
          break;
        }
      }
    }
    if (limit === undefined) return undefined;
    this.refusals.refuse(limit, { ...detail, method, callId });
    return limit;
  }
}

/**
 * Bytes waiting in the receive queues of the UDP sockets bound to `ports` (the rx_queue column of
 * Linux's /proc/net/udp and udp6, hexadecimal). 0 where those files do not exist.
 */
export async function udpReceiveQueue(ports: ReadonlySet<number>): Promise<number> {
  let total = 0;
  for (const file of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = await readFile(file, 'latin1');
    } catch {
      continue;
    }
    total += udpQueueOf(text, ports);
  }
  return total;
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
