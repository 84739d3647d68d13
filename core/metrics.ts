/**
 * Prometheus metrics (prom-client) for GET /metrics on the admin port. Gauges are read at
 * scrape time from the live objects, so nothing on the SIP path pays for them.
 */
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import { LATENCY_BUCKETS, type LatencyHistogram, type SipCounters } from '../transport/sip-stats.js';

/** What /metrics reads at scrape time: counts the node's parts keep anyway. */
export interface NodeStats {
  /** Live subscriptions (all event packages). */
  readonly subscriptions: number;
  /** Presentities (per event package) with at least one live publication. */
  readonly presentities: number;
  readonly notifySent: number;
  readonly notifyFailed: number;
  /** NOTIFYs by outcome (2xx, 481, timeout, transport-error, other). */
  readonly notifyOutcomes: ReadonlyMap<string, number>;
  readonly watchersRemovedByFailure: number;
  readonly clientTransactions: number;
  readonly connections: number;
  readonly workerThreads: number;
  /** The event packages served, and per package the live subscriptions and presentities with a publication. */
  readonly events: readonly string[];
  subscriptionsOf(event: string): number;
  presentitiesOf(event: string): number;
  /** Server transactions held, requests in flight, UDP receive queue and loop lag (overload detection). */
  readonly serverTransactions: number;
  readonly requestsInFlight: number;
  readonly udpQueueBytes: number;
  readonly loopLagMs: number;
  /** Refusals by every limit, by its configuration key. */
  readonly limitRefusals: ReadonlyMap<string, number>;
  /** The store's file and used pages (read at scrape time), whether it takes writes, and writes failed. */
  storeUsage(): Promise<{ fileBytes: number; usedBytes: number }>;
  readonly storeWritable: boolean;
  readonly storeWriteFailures: number;
  /** A presentity's change → each watcher's NOTIFY leaving, and store write → commit. */
  readonly changeToNotify: LatencyHistogram;
  readonly storeCommit: LatencyHistogram;
  /** The SIP stack's counters by method, status and event. */
  readonly sip: SipCounters;
  /** RPC calls by `method outcome`. */
  readonly rpcCalls: ReadonlyMap<string, number>;
  /** JSON-RPC error answers by code (-32700, -32600, -32601, -32602, -32603). */
  readonly rpcErrors?: ReadonlyMap<string, number>;
  /** XCAP requests by `auid method status` (embedded server only). */
  readonly xcapRequests?: ReadonlyMap<string, number>;
  /** The resource list server: list subscriptions, back-end subscriptions by kind, list NOTIFYs sent and failed. */
  readonly rls?: {
    readonly lists: number;
    readonly backends: { local: number; sip: number };
    readonly notifies: number;
    readonly failed: number;
  };
  /** SIP capture copies sent and failed (trace_on only). */
  readonly capture?: { readonly sent: number; readonly failed: number };
}

export function createMetrics(stats: NodeStats, nodeName: string): () => Promise<{ contentType: string; body: string }> {
  const registry = new Registry();
  // In a cluster every node's series carry its name (config node_name).
  registry.setDefaultLabels({ node: nodeName });
  collectDefaultMetrics({ register: registry, prefix: 'presenced_' });
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  /** A count since start that only grows: a Prometheus counter (name ending in _total), fed at scrape time. */
  const counter = (name: string, help: string, read: () => number): void => {
    let reported = 0;
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        const now = read();
        if (now > reported) this.inc(now - reported);
        reported = now;
      },
    });
  };
  gauge('presenced_subscriptions', 'Live subscriptions (all event packages).', () => stats.subscriptions);
  // Counted in memory: a store scan per scrape would stall the SIP thread on a large store.
  gauge(
    'presenced_presentities',
    'Presentity and event package pairs with at least one live publication (a presentity publishing presence and dialog counts twice).',
    () => stats.presentities,
  );
  // Per event package (presence, dialog, reg, ...): what a BLF platform watches first.
  new Gauge({
    name: 'presenced_event_subscriptions',
    help: 'Live subscriptions per event package.',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      for (const event of stats.events) this.set({ event }, stats.subscriptionsOf(event));
    },
  });
  new Gauge({
    name: 'presenced_event_presentities',
    help: 'Presentities with at least one live publication, per event package.',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      for (const event of stats.events) this.set({ event }, stats.presentitiesOf(event));
    },
  });
  const rls = stats.rls;
  if (rls) {
    gauge('presenced_rls_list_subscriptions', 'Live list subscriptions of the resource list server (RFC 4662).', () => rls.lists);
    new Gauge({
      name: 'presenced_rls_backend_subscriptions',
      help: 'Back-end subscriptions of the list server: local = resources served by this node (watched without SIP), sip = SUBSCRIBE dialogs through outbound_proxy.',
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        const b = rls.backends;
        this.set({ kind: 'local' }, b.local);
        this.set({ kind: 'sip' }, b.sip);
      },
    });
    counter('presenced_rls_notify_sent_total', 'List NOTIFY requests answered with 2xx.', () => rls.notifies);
    counter('presenced_rls_notify_failed_total', 'List NOTIFY requests that failed (non-2xx, timeout, transport).', () => rls.failed);
  }
  counter('presenced_notify_sent_total', 'NOTIFY requests answered with 2xx.', () => stats.notifySent);
  counter('presenced_notify_failed_total', 'NOTIFY requests that failed (non-2xx, timeout, transport).', () => stats.notifyFailed);
  counter('presenced_watchers_removed_total', 'Subscriptions removed because their NOTIFY failed.', () => stats.watchersRemovedByFailure);
  gauge('presenced_sip_client_transactions', 'Client transactions (NOTIFY) in progress.', () => stats.clientTransactions);
  gauge('presenced_sip_connections', 'Open SIP connections (TCP, TLS, WebSocket).', () => stats.connections);
  // Labelled counters of the SIP stack, read at scrape time (nothing on the SIP path but a Map bump).
  const labelled = (name: string, help: string, labels: string[], read: () => Iterable<[string[], number]>): void => {
    const reported = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames: labels,
      registers: [registry],
      collect() {
        for (const [values, now] of read()) {
          const key = values.join(' ');
          const before = reported.get(key) ?? 0;
          if (now <= before) continue;
          this.inc(Object.fromEntries(labels.map((l, i) => [l, values[i] ?? ''])), now - before);
          reported.set(key, now);
        }
      },
    });
  };
  const flat = (m: ReadonlyMap<string, number>): Array<[string[], number]> => [...m].map(([k, n]) => [[k], n]);
  const byStatus = (m: Map<string, Map<number, number>>): Array<[string[], number]> =>
    [...m].flatMap(([method, statuses]) => [...statuses].map(([status, n]): [string[], number] => [[method, String(status)], n]));
  const sip = stats.sip;
  labelled(
    'presenced_notify_outcomes_total',
    'NOTIFY requests by outcome: 2xx, 481 (the subscriber has no such dialog), timeout (Timer F or 408), transport-error, other (another final status).',
    ['outcome'],
    () => [...stats.notifyOutcomes].map(([k, n]): [string[], number] => [[k], n]),
  );
  labelled('presenced_sip_requests_total', 'SIP requests received, by method (other = a method the node does not know).', ['method'], () =>
    flat(sip.requestsReceived),
  );
  labelled(
    'presenced_sip_requests_by_event_total',
    'PUBLISH, SUBSCRIBE and NOTIFY received, by method and event package (other = a package this node does not serve, none = no Event header).',
    ['method', 'event'],
    () => [...sip.requestsByEvent].flatMap(([method, events]) => [...events].map(([event, n]): [string[], number] => [[method, event], n])),
  );
  labelled('presenced_sip_responses_total', 'SIP responses sent, by request method and status code.', ['method', 'status'], () =>
    byStatus(sip.responsesSent),
  );
  labelled(
    'presenced_sip_responses_received_total',
    'Responses to the requests the node sends (NOTIFY), by method and status code.',
    ['method', 'status'],
    () => byStatus(sip.responsesReceived),
  );
  labelled(
    'presenced_sip_dropped_total',
    'SIP messages dropped without an answer, by reason (unparseable, no-via, stray-response; unframeable and partial-timeout close a TCP/TLS connection; ws-no-sip-subprotocol, ws-frame-too-large).',
    ['reason'],
    () => flat(sip.dropped),
  );
  // Histograms filled by their owners without allocation (transport/sip-stats.ts LatencyHistogram),
  // turned into Prometheus' cumulative buckets at scrape time.
  const histogram = (name: string, help: string, read: () => Iterable<[Record<string, string>, LatencyHistogram]>): void => {
    const metric = {
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      reset: () => undefined,
      get: async () => ({
        name,
        help,
        type: 'histogram',
        aggregator: 'sum',
        values: [...read()].flatMap(([labels, h]) => {
          let cumulative = 0;
          const buckets = [...LATENCY_BUCKETS.map(String), '+Inf'].map((le, i) => {
            cumulative += h.counts[i]!;
            return { metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative };
          });
          return [...buckets, { metricName: `${name}_sum`, labels, value: h.sum }, { metricName: `${name}_count`, labels, value: h.count }];
        }),
      }),
    };
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  };
  // Request arrival → final response, by method (PUBLISH → 200 includes the store commit; RFC 3903 §6).
  histogram('presenced_sip_answer_seconds', 'Time from a request arriving to its final response being sent, by method.', () =>
    [...sip.answerTime].map(([method, h]): [Record<string, string>, LatencyHistogram] => [{ method }, h]),
  );
  histogram(
    'presenced_notify_change_seconds',
    "Time from a presentity's committed change to each watcher's NOTIFY of it leaving (composition, CSeq write, queueing behind NOTIFYs in flight).",
    () => [[{}, stats.changeToNotify]],
  );
  histogram('presenced_store_commit_seconds', 'Time from a store write being queued to its commit (LMDB, synced).', () => [
    [{}, stats.storeCommit],
  ]);
  const split = (m: ReadonlyMap<string, number>): Array<[string[], number]> => [...m].map(([k, n]) => [k.split(' '), n]);
  const xcap = stats.xcapRequests;
  if (xcap)
    labelled(
      'presenced_xcap_requests_total',
      'XCAP requests answered, by auid (other = none of the five), method and status.',
      ['auid', 'method', 'status'],
      () => split(xcap),
    );
  labelled(
    'presenced_rpc_calls_total',
    'JSON-RPC calls, by method (unknown = not served) and outcome (ok, error).',
    ['method', 'outcome'],
    () => split(stats.rpcCalls),
  );
  const rpcErrors = stats.rpcErrors;
  if (rpcErrors)
    labelled(
      'presenced_rpc_errors_total',
      'JSON-RPC error answers, by code (-32700 parse error, -32600 invalid request, -32601 no such method, -32602 invalid params, -32603 internal).',
      ['code'],
      () => [...rpcErrors].map(([k, n]): [string[], number] => [[k], n]),
    );
  if (stats.capture) {
    const cap = stats.capture;
    counter('presenced_capture_sent_total', 'SIP capture (HEP) copies sent to duplicate_uri.', () => cap.sent);
    counter('presenced_capture_failed_total', 'SIP capture (HEP) copies that could not be sent.', () => cap.failed);
  }
  gauge(
    'presenced_sip_server_transactions',
    'Server transactions held (awaiting the answer, or completed and kept for Timer J).',
    () => stats.serverTransactions,
  );
  gauge(
    'presenced_sip_requests_in_flight',
    'Server transactions awaiting their final response (overload_max_inflight).',
    () => stats.requestsInFlight,
  );
  gauge(
    'presenced_sip_udp_receive_queue_bytes',
    'Bytes in the receive queues of the SIP UDP sockets at the last sample (overload_max_udp_queue).',
    () => stats.udpQueueBytes,
  );
  gauge('presenced_event_loop_lag_seconds', 'Event-loop lag of the last sample (overload_max_loop_lag).', () => stats.loopLagMs / 1000);
  labelled(
    'presenced_limit_refusals_total',
    'Requests, connections and DNS lookups refused by a limit (label: its configuration key), load shedding (overload_*) included.',
    ['limit'],
    () => [...stats.limitRefusals].map(([k, n]): [string[], number] => [[k], n]),
  );
  // The store: its file against the pages in use (LMDB reuses freed pages, never shrinks the file), and writes refused.
  const storeGauge = (name: string, help: string, read: (u: { fileBytes: number; usedBytes: number }) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(read(await stats.storeUsage()));
      },
    });
  };
  storeGauge('presenced_store_file_bytes', 'Size of the LMDB data file (data.mdb).', (u) => u.fileBytes);
  storeGauge(
    'presenced_store_used_bytes',
    'Bytes of the LMDB pages that hold records (all databases and the free-page list).',
    (u) => u.usedBytes,
  );
  gauge(
    'presenced_store_writable',
    'Whether the store accepts writes (0 = a commit failed, disk full: writes get 503 until the filesystem has room).',
    () => (stats.storeWritable ? 1 : 0),
  );
  counter(
    'presenced_store_write_failures_total',
    'Store writes that failed to commit or were refused while the store was full.',
    () => stats.storeWriteFailures,
  );
  gauge('presenced_worker_threads', 'XML worker threads (0 = all on the main thread).', () => stats.workerThreads);
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}
