/**
 * Prometheus metrics (prom-client) for GET /metrics on the admin port. Gauges are read at
 * scrape time from the live objects, so nothing on the SIP path pays for them.
 */
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';

/** What /metrics reads at scrape time: counts the node's parts keep anyway. */
export interface NodeStats {
  /** Live subscriptions (all event packages). */
  readonly subscriptions: number;
  /** Presentities (per event package) with at least one live publication. */
  readonly presentities: number;
  readonly notifySent: number;
  readonly notifyFailed: number;
  readonly watchersRemovedByFailure: number;
  readonly clientTransactions: number;
  readonly connections: number;
  readonly workerThreads: number;
}

export function createMetrics(stats: NodeStats): () => Promise<{ contentType: string; body: string }> {
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
  gauge('presenced_subscriptions', 'Live subscriptions (all event packages).', () => stats.subscriptions);
  // Counted in memory: a store scan per scrape would stall the SIP thread on a large store.
  gauge('presenced_presentities', 'Presentities (per event package) with at least one live publication.', () => stats.presentities);
  counter('presenced_notify_sent_total', 'NOTIFY requests answered with 2xx.', () => stats.notifySent);
  counter('presenced_notify_failed_total', 'NOTIFY requests that failed (non-2xx, timeout, transport).', () => stats.notifyFailed);
  counter('presenced_watchers_removed_total', 'Subscriptions removed because their NOTIFY failed.', () => stats.watchersRemovedByFailure);
  gauge('presenced_sip_client_transactions', 'Client transactions (NOTIFY) in progress.', () => stats.clientTransactions);
  gauge('presenced_sip_connections', 'Open SIP connections (TCP, TLS, WebSocket).', () => stats.connections);
  gauge('presenced_worker_threads', 'XML worker threads (0 = all on the main thread).', () => stats.workerThreads);
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}
