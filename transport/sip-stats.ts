/**
 * What the stack received and answered, counted by method and status for /metrics, and the
 * log line an operator reads when a request was refused: who, what, which status and why. The
 * refusal log is rate-limited, so a flood of bad requests cannot fill the disk.
 */
import type { Logger } from './flows.js';
import { SIP_METHODS } from './grammar.js';

/**
 * Methods of the SIP registry are counted under their own name; anything else is `other`, so a
 * peer inventing methods cannot grow the label set (and the memory behind it) without bound.
 */
export function methodLabel(method: string): string {
  return SIP_METHODS.has(method) ? method : 'other';
}

/**
 * Why a message (or a connection's input) was dropped without a SIP answer: unparseable, no
 * usable Via, a response to nothing of ours; on a stream, input that cannot be framed or half a
 * message held past tcp_partial_timeout (the connection is closed); a WebSocket upgrade without
 * the "sip" subprotocol (HTTP 400) or a frame over max_message_size (the connection closed).
 */
export type DropReason =
  | 'unparseable'
  | 'no-via'
  | 'stray-response'
  | 'unframeable'
  | 'partial-timeout'
  | 'ws-no-sip-subprotocol'
  | 'ws-frame-too-large';

/** Counts by label values; each map stays small (bounded methods × statuses 100–699). */
export class SipCounters {
  /** Requests received, by method (after parsing; retransmissions absorbed by a transaction included). */
  readonly requestsReceived = new Map<string, number>();
  /** PUBLISH, SUBSCRIBE and NOTIFY received, by method then event package (other = one not served). */
  readonly requestsByEvent = new Map<string, Map<string, number>>();
  /** Final and provisional responses we sent, by method, then status. */
  readonly responsesSent = new Map<string, Map<number, number>>();
  /** Responses to our own requests (NOTIFY), by method, then status. */
  readonly responsesReceived = new Map<string, Map<number, number>>();
  /** Messages dropped before any response could be sent, by reason. */
  readonly dropped = new Map<string, number>();
  /** Time from a request's arrival to its final response, by method (PUBLISH → 200 includes the store commit). */
  readonly answerTime = new Map<string, LatencyHistogram>();

  /** Event packages counted under their own name (the packages the node serves). */
  constructor(private readonly eventLabels: ReadonlySet<string> = new Set()) {}

  /** A request received; its Event header is read only for the methods counted by event (no closure per request). */
  request(method: string, req?: { headers: { get(name: string): string | undefined | null } }): void {
    bump(this.requestsReceived, methodLabel(method));
    if (method !== 'PUBLISH' && method !== 'SUBSCRIBE' && method !== 'NOTIFY') return;
    const name = eventPackage(req?.headers.get('event') ?? undefined);
    const label = name === undefined ? 'none' : this.eventLabels.has(name) ? name : 'other';
    let byEvent = this.requestsByEvent.get(method);
    if (!byEvent) this.requestsByEvent.set(method, (byEvent = new Map()));
    bump(byEvent, label);
  }

  // No string is built per message: these run for every response on the NOTIFY fan-out.
  responseSent(method: string, status: number): void {
    bumpStatus(this.responsesSent, methodLabel(method), status);
  }

  responseReceived(method: string, status: number): void {
    bumpStatus(this.responsesReceived, methodLabel(method), status);
  }

  drop(reason: DropReason): void {
    bump(this.dropped, reason);
  }

  answered(method: string, ms: number): void {
    const label = methodLabel(method);
    let h = this.answerTime.get(label);
    if (!h) this.answerTime.set(label, (h = new LatencyHistogram()));
    h.observe(ms / 1000);
  }
}

/** Upper bounds in seconds (Prometheus `le`): 0.5 ms to 10 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** A histogram as Prometheus counts it (cumulative at export), filled without allocation. */
export class LatencyHistogram {
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1); // the last one is +Inf
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** The package of an Event header value (RFC 6665 §8.2.1: the token before any parameter), lower-cased. */
function eventPackage(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const semi = value.indexOf(';');
  const name = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  // dialog;sla is a package of its own here (draft-anil-sipping-bla): keep the sla parameter.
  if (name === 'dialog' && /;\s*sla\b/i.test(value)) return 'dialog;sla';
  return name === '' ? undefined : name;
}

function bump<K>(map: Map<K, number>, key: K): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function bumpStatus(map: Map<string, Map<number, number>>, method: string, status: number): void {
  let byStatus = map.get(method);
  if (!byStatus) map.set(method, (byStatus = new Map()));
  bump(byStatus, status);
}

export interface Refusal {
  callId: string | undefined;
  method: string;
  event: string | undefined;
  status: number;
  reason: string;
  remote: string;
}

/**
 * Logs each refused request (a final response of 400 or more) at info, or warn for statuses
 * that usually mean a peer is configured for something this node does not serve (489 Bad
 * Event, 405, 501) — at most `perSecond` lines a second; what is held back is summed up in
 * one line when logging resumes.
 */
export class RefusalLog {
  private windowStart = 0;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly perSecond = 50,
  ) {}

  refused(r: Refusal): void {
    if (!this.allow()) return;
    const line = { callId: r.callId, method: r.method, event: r.event, status: r.status, reason: r.reason, remote: r.remote };
    if (r.status === 489 || r.status === 405 || r.status === 501) this.log.warn(line, 'request refused');
    else this.log.info(line, 'request refused');
  }

  /** A message dropped without an answer (unparseable, no usable Via): info, under the same limit. */
  dropped(fields: object, msg: string): void {
    if (this.allow()) this.log.info(fields, msg);
  }

  private allow(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      if (this.suppressed > 0) {
        this.log.warn(
          { suppressed: this.suppressed },
          `${this.suppressed} refusal log lines were held back (over ${this.perSecond} a second)`,
        );
      }
      this.windowStart = now;
      this.inWindow = 0;
      this.suppressed = 0;
    }
    if (this.inWindow >= this.perSecond) {
      this.suppressed++;
      return false;
    }
    this.inWindow++;
    return true;
  }
}
