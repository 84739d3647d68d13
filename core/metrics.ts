/**
 * Prometheus metrics (prom-client) for GET /metrics on the admin port. Gauges are read at
 * scrape time from the live objects, so nothing on the SIP path pays for them.
 */
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import type { PresenceNode } from './node.js';
import type { StoreUsage } from './store/store.js';

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
  // The store: its file against the pages in use (LMDB reuses freed pages, never shrinks the file), and writes refused.
  const storeGauge = (name: string, help: string, read: (u: StoreUsage) => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(read(await node.store.usage()));
      },
    });
  };
  storeGauge('presenced_store_file_bytes', 'Size of the LMDB data file (data.mdb).', (u) => u.fileBytes);
  storeGauge('presenced_store_used_bytes', 'Bytes of the LMDB pages that hold records (all databases and the free-page list).', (u) => u.usedBytes);
  gauge('presenced_store_writable', 'Whether the store accepts writes (0 = a commit failed, disk full: writes get 503 until the filesystem has room).', () => (node.store.writeHealth.writable ? 1 : 0));
  counter('presenced_store_write_failures_total', 'Store writes that failed to commit or were refused while the store was full.', () => node.store.writeHealth.failures);
  gauge('presenced_worker_threads', 'XML worker threads (0 = all on the main thread).', () => node.pool.threads);
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}
