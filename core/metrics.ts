/**
 * Prometheus metrics (prom-client) for GET /metrics on the admin port. Gauges are read at
 * scrape time from the live objects, so nothing on the SIP path pays for them.
 */
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import type { PresenceNode } from './node.js';

export function createMetrics(node: PresenceNode): () => Promise<{ contentType: string; body: string }> {
  const registry = new Registry();
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
  gauge('presenced_subscriptions', 'Live subscriptions (all event packages).', () => node.subscriptions.count);
  // Counted in memory: a store scan per scrape would stall the SIP thread on a large store.
  gauge('presenced_presentities', 'Presentities (per event package) with at least one live publication.', () => node.publications.presentityCount);
  counter('presenced_notify_sent_total', 'NOTIFY requests answered with 2xx.', () => node.notifier.stats.sent);
  counter('presenced_notify_failed_total', 'NOTIFY requests that failed (non-2xx, timeout, transport).', () => node.notifier.stats.failed);
  counter('presenced_watchers_removed_total', 'Subscriptions removed because their NOTIFY failed.', () => node.notifier.stats.removedByFailure);
  gauge('presenced_sip_client_transactions', 'Client transactions (NOTIFY) in progress.', () => node.stack.pendingClientTransactions);
  gauge('presenced_sip_connections', 'Open SIP connections (TCP, TLS, WebSocket).', () => node.stack.tcpConnections);
  gauge('presenced_sip_server_transactions', 'Server transactions held (awaiting the answer, or completed and kept for Timer J).', () => node.stack.serverTransactions);
  gauge('presenced_sip_requests_in_flight', 'Server transactions awaiting their final response (overload_max_inflight).', () => node.stack.overload.inFlight);
  gauge('presenced_sip_udp_receive_queue_bytes', 'Bytes in the receive queues of the SIP UDP sockets at the last sample (overload_max_udp_queue).', () => node.stack.overload.udpQueueBytes);
  gauge('presenced_event_loop_lag_seconds', 'Event-loop lag of the last sample (overload_max_loop_lag).', () => node.stack.overload.loopLagMs / 1000);
  const reported = new Map<string, number>();
  new Counter({
    name: 'presenced_limit_refusals_total',
    help: 'Requests, connections and DNS lookups refused by a limit (label: its configuration key), load shedding (overload_*) included.',
    labelNames: ['limit'],
    registers: [registry],
    collect() {
      for (const [limit, n] of node.stack.refusals.counts) {
        const before = reported.get(limit) ?? 0;
        if (n > before) this.inc({ limit }, n - before);
        reported.set(limit, n);
      }
    },
  });
  gauge('presenced_worker_threads', 'XML worker threads (0 = all on the main thread).', () => node.pool.threads);
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}
