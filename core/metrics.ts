/**
 * Prometheus metrics (prom-client) for GET /metrics on the admin port. Gauges are read at
 * scrape time from the live objects, so nothing on the SIP path pays for them.
 */
import { Registry, Gauge, Counter, collectDefaultMetrics } from 'prom-client';
import type { PresenceNode } from './node.js';
import { LATENCY_BUCKETS } from '../transport/sip-stats.js';

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
  gauge('presenced_presentities', 'Presentity and event package pairs with at least one live publication (a presentity publishing presence and dialog counts twice).', () => node.publications.presentityCount);
  counter('presenced_notify_sent_total', 'NOTIFY requests answered with 2xx.', () => node.notifier.stats.sent);
  counter('presenced_notify_failed_total', 'NOTIFY requests that failed (non-2xx, timeout, transport).', () => node.notifier.stats.failed);
  counter('presenced_watchers_removed_total', 'Subscriptions removed because their NOTIFY failed.', () => node.notifier.stats.removedByFailure);
  gauge('presenced_sip_client_transactions', 'Client transactions (NOTIFY) in progress.', () => node.stack.pendingClientTransactions);
  gauge('presenced_sip_connections', 'Open SIP connections (TCP, TLS, WebSocket).', () => node.stack.tcpConnections);
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
  const flat = (m: Map<string, number>): Array<[string[], number]> => [...m].map(([k, n]) => [[k], n]);
  const byStatus = (m: Map<string, Map<number, number>>): Array<[string[], number]> =>
    [...m].flatMap(([method, statuses]) => [...statuses].map(([status, n]): [string[], number] => [[method, String(status)], n]));
  const sip = node.stack.stats;
  labelled('presenced_sip_requests_total', 'SIP requests received, by method (other = a method the node does not know).', ['method'], () => flat(sip.requestsReceived));
  labelled(
    'presenced_sip_requests_by_event_total',
    'PUBLISH, SUBSCRIBE and NOTIFY received, by method and event package (other = a package this node does not serve, none = no Event header).',
    ['method', 'event'],
    () => [...sip.requestsByEvent].flatMap(([method, events]) => [...events].map(([event, n]): [string[], number] => [[method, event], n])),
  );
  labelled('presenced_sip_responses_total', 'SIP responses sent, by request method and status code.', ['method', 'status'], () => byStatus(sip.responsesSent));
  labelled(
    'presenced_sip_responses_received_total',
    'Responses to the requests the node sends (NOTIFY), by method and status code.',
    ['method', 'status'],
    () => byStatus(sip.responsesReceived),
  );
  labelled('presenced_sip_dropped_total', 'SIP messages dropped without an answer, by reason (unparseable, no-via, stray-response).', ['reason'], () => flat(sip.dropped));
  // Request arrival → final response, by method (PUBLISH → 200 includes the store commit; RFC 3903 §6).
  // Filled by the stack without allocation; turned into Prometheus' cumulative buckets here.
  const answerName = 'presenced_sip_answer_seconds';
  const answerHelp = 'Time from a request arriving to its final response being sent, by method.';
  const answerMetric = {
    name: answerName,
    help: answerHelp,
    type: 'histogram',
    aggregator: 'sum',
    reset: () => undefined,
    get: async () => ({
      name: answerName,
      help: answerHelp,
      type: 'histogram',
      aggregator: 'sum',
      values: [...sip.answerTime].flatMap(([method, h]) => {
        let cumulative = 0;
        const buckets = [...LATENCY_BUCKETS.map(String), '+Inf'].map((le, i) => {
          cumulative += h.counts[i]!;
          return { metricName: `${answerName}_bucket`, labels: { method, le }, value: cumulative };
        });
        return [
          ...buckets,
          { metricName: `${answerName}_sum`, labels: { method }, value: h.sum },
          { metricName: `${answerName}_count`, labels: { method }, value: h.count },
        ];
      }),
    }),
  };
  registry.registerMetric(answerMetric as unknown as Parameters<Registry['registerMetric']>[0]);
  const split = (m: Map<string, number>): Array<[string[], number]> => [...m].map(([k, n]) => [k.split(' '), n]);
  const xcap = node.xcap;
  if (xcap) labelled('presenced_xcap_requests_total', 'XCAP requests answered, by auid (other = none of the five), method and status.', ['auid', 'method', 'status'], () => split(xcap.stats));
  labelled('presenced_rpc_calls_total', 'JSON-RPC calls, by method (unknown = not served) and outcome (ok, error).', ['method', 'outcome'], () => split(node.rpc.calls));
  if (node.capture) {
    const cap = node.capture;
    counter('presenced_capture_sent_total', 'SIP capture (HEP) copies sent to duplicate_uri.', () => cap.sent);
    counter('presenced_capture_failed_total', 'SIP capture (HEP) copies that could not be sent.', () => cap.failed);
  }
  gauge('presenced_worker_threads', 'XML worker threads (0 = all on the main thread).', () => node.pool.threads);
  return async () => ({ contentType: registry.contentType, body: await registry.metrics() });
}
