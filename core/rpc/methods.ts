/**
 * RPC methods, Kamailio names (presence, presence_xml, core) with presenced additions. Each
 * validates its params and throws RpcError(INVALID_PARAMS) with what it expected.
 */
import { RpcError, INVALID_PARAMS } from './errors.js';
import { VERSION } from '../version.js';
import { presentityOf, uriAor } from '../uris.js';
import { SipError } from '../errors.js';
import type { WorkerPool } from '../pool.js';
import type { StoreReader } from '../store/interfaces.js';
import type { Subscription } from '../store/records.js';
import type { Publications } from '../state/publications.js';
import type { Subscriptions } from '../state/subscriptions.js';
import type { WatcherInfo } from '../state/watcher-info.js';
import type { PackageRegistry } from '../packages/registry.js';
import { VERSION_SLOT, type PackageContext } from '../packages/types.js';
import type { Notifier } from '../notify/notifier.js';
import { lastNotifyState } from '../dialogs/subscription-dialog.js';
import type { Authorization } from '../authorization/index.js';

/** What the methods act on: the node's parts, handed over explicitly. */
export interface RpcDeps {
  packages: PackageRegistry;
  /** What the packages compose from: the notifier's own context (presence.presentity_state). */
  ctx: PackageContext;
  store: StoreReader;
  pool: WorkerPool;
  publications: Publications;
  subscriptions: Subscriptions;
  watcherInfo: WatcherInfo;
  notifier: Notifier;
  authorization: Authorization;
  /** When the node started (ms since epoch). */
  startedAt: number;
  /** The resource list server (RFC 4662), when it runs: list subscribers of a service URI, and the lists watching a resource. */
  lists?: {
    subscribersOf(serviceUri: string, event: string): Subscription[];
    backendWatchersOf(resourceUri: string, event: string): Array<{ watcherUri: string; service: string }>;
  };
}

export type RpcMethod = (params: unknown[]) => Promise<unknown> | unknown;

function str(params: unknown[], i: number, name: string, usage: string): string {
  const v = params[i];
  if (typeof v !== 'string' || v.length === 0)
    throw new RpcError(INVALID_PARAMS, `param ${i + 1} (${name}) must be a non-empty string; usage: ${usage}`);
  return v;
}

function arity(params: unknown[], min: number, max: number, usage: string): void {
  if (params.length < min || params.length > max)
    throw new RpcError(INVALID_PARAMS, `expected ${min === max ? min : `${min} to ${max}`} params; usage: ${usage}`);
}

/** Longest URI the node accepts anywhere (max_uri_length's upper bound): longer ones cannot be store keys. */
const MAX_URI_BYTES = 900;

function presentity(uri: string): string {
  if (Buffer.byteLength(uri) > MAX_URI_BYTES)
    throw new RpcError(
      INVALID_PARAMS,
      `a presentity URI of ${Buffer.byteLength(uri)} bytes is longer than any the node stores (${MAX_URI_BYTES})`,
    );
  try {
    return presentityOf(uri);
  } catch (err) {
    if (err instanceof SipError) throw new RpcError(INVALID_PARAMS, `"${uri}" is not a presentity URI (sip:user@domain)`);
    throw err;
  }
}

export function createMethods(node: RpcDeps): Map<string, RpcMethod> {
  const m = new Map<string, RpcMethod>();
  const eventOf = (name: string): string => {
    const pkg = node.packages.lookup(name);
    if (!pkg) throw new RpcError(INVALID_PARAMS, `unknown event "${name}"; enabled: ${node.packages.names().join(', ')}`);
    return pkg.name;
  };

  const refreshUsage = 'presence.refreshWatchers presentity_uri event [type]';
  m.set('presence.refreshWatchers', async (p) => {
    arity(p, 2, 3, refreshUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', refreshUsage));
    const event = eventOf(str(p, 1, 'event', refreshUsage));
    const type = p.length === 3 ? Number(p[2]) : 0;
    if (!Number.isInteger(type)) throw new RpcError(INVALID_PARAMS, `param 3 (type) must be an integer; usage: ${refreshUsage}`);
    if (type === 0) {
      // Rules changed: re-fetch them when they live elsewhere, re-evaluate, NOTIFY the changed.
      await node.authorization.refreshRules(uri);
      const changed = await node.authorization.reevaluateWatchers(uri, event);
      return { presentity: uri, event, reevaluated: changed };
    }
    node.notifier.presentityChanged(uri, event);
    return { presentity: uri, event, notified: [...node.subscriptions.watchersOf(uri, event)].length };
  });

  const updateUsage = 'presence.updateWatchers presentity_uri event';
  m.set('presence.updateWatchers', async (p) => {
    arity(p, 2, 2, updateUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', updateUsage));
    const event = eventOf(str(p, 1, 'event', updateUsage));
    await node.authorization.refreshRules(uri);
    return { presentity: uri, event, reevaluated: await node.authorization.reevaluateWatchers(uri, event) };
  });

  m.set('presence.cleanup', async (p) => {
    arity(p, 0, 0, 'presence.cleanup');
    return { publicationsRemoved: await node.publications.cleanup() };
  });

  m.set('presence.presentity_list', (p) => {
    arity(p, 0, 1, 'presence.presentity_list [mode]');
    return node.store.presentities().map((x) => ({ presentity_uri: x.presentityUri, event: x.event, publications: x.count }));
  });

  const showUsage = 'presence.presentity_show presentity_uri [event]';
  m.set('presence.presentity_show', (p) => {
    arity(p, 1, 2, showUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', showUsage));
    const events = p.length === 2 ? [eventOf(str(p, 1, 'event', showUsage))] : node.packages.names();
    return events.flatMap((ev) =>
      node.store.publicationsOf(uri, ev).map((x) => ({
        presentity_uri: x.presentityUri,
        event: x.event,
        etag: x.entityTag,
        expires: Math.max(0, Math.round((x.expiresAt - Date.now()) / 1000)),
        received_time: Math.round(x.receivedAt / 1000),
        content_type: x.contentType,
        sender: x.sender,
        body: Buffer.from(x.body).toString('utf8'),
      })),
    );
  });

  // presenced's own (issue 16): the body a fully authorised watcher would get now, composed by the
  // package as the notifier composes it (no pres-rules transformation, no polite-block substitute,
  // no RFC 4235 view). Composed as a preview: nothing the package remembers changes, no cached
  // NOTIFY body is dropped. A versioned body (dialog, reg, presence.winfo) shows version 0: each
  // subscription counts its own.
  const previewCtx: PackageContext = { ...node.ctx, preview: true, stale: () => undefined };
  const stateUsage = 'presence.presentity_state presentity_uri event';
  m.set('presence.presentity_state', async (p) => {
    arity(p, 2, 2, stateUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', stateUsage));
    const pkg = node.packages.get(eventOf(str(p, 1, 'event', stateUsage)))!;
    const body = await pkg.compose(uri, previewCtx);
    return {
      presentity_uri: uri,
      event: pkg.name,
      contentType: pkg.notifyType,
      // null: the NOTIFY would carry no body (nothing published, and no dummy configured)
      body: body === undefined ? null : pkg.versioned ? body.split(VERSION_SLOT).join('0') : body,
      versioned: pkg.versioned,
    };
  });

  const watcherUsage = 'presence.watcher_list presentity_uri [event]';
  m.set('presence.watcher_list', (p) => {
    arity(p, 1, 2, watcherUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', watcherUsage));
    const events = p.length === 2 ? [eventOf(str(p, 1, 'event', watcherUsage))] : node.packages.names();
    const now = Date.now();
    return events.flatMap((ev) => [
      ...[...node.subscriptions.watchersOf(uri, ev)].map((s) => ({
        watcher_uri: s.record.watcherUri,
        event: s.record.event,
        status: s.record.state,
        sub_handling: s.record.subHandling,
        expires: Math.max(0, Math.round((s.record.expiresAt - now) / 1000)),
        call_id: s.record.callId,
        contact: s.record.remoteTarget,
        transport: s.record.transport,
      })),
      // List subscribers of a service URI (RFC 4662), and the lists that watch this resource on a subscriber's behalf.
      ...(node.lists?.subscribersOf(uri, ev) ?? []).map((r) => ({
        watcher_uri: r.watcherUri,
        event: r.event,
        status: r.state,
        sub_handling: r.subHandling,
        expires: Math.max(0, Math.round((r.expiresAt - now) / 1000)),
        call_id: r.callId,
        contact: r.remoteTarget,
        transport: r.transport,
        list: true,
      })),
      ...(node.lists?.backendWatchersOf(uri, ev) ?? []).map((w) => ({
        watcher_uri: w.watcherUri,
        event: ev,
        status: 'active',
        sub_handling: '',
        expires: 0,
        call_id: '',
        contact: '',
        transport: '',
        via_list: w.service,
      })),
      // Watchers whose pending subscription ended (RFC 3857 §4.7.1): no dialog, kept until
      // winfo_waiting_period runs out ("expires").
      ...(ev === 'presence' ? node.watcherInfo.waitingOf(uri) : []).map((w) => ({
        watcher_uri: w.watcherUri,
        event: w.event,
        status: 'waiting',
        sub_handling: w.subHandling,
        expires: Math.max(0, Math.round(((w.waitingUntil ?? now) - now) / 1000)),
        call_id: '',
        contact: '',
        transport: '',
      })),
    ]);
  });

  // The users' XCAP documents this node holds (no bodies): what a cluster's add-node has to move.
  m.set('xcap.document_list', (p) => {
    arity(p, 0, 0, 'xcap.document_list');
    const out: Array<{ auid: string; xui: string; name: string; etag: string; content_type: string }> = [];
    for (const d of node.store.allXcapDocuments())
      if (d.xui) out.push({ auid: d.auid, xui: d.xui, name: d.name, etag: d.etag, content_type: d.contentType });
    return out;
  });

  // presenced's own: why a watcher sees what it sees (issue 16). Everything the node knows about
  // one watcher of one presentity and event, in the order an operator asks about it.
  const explainUsage = 'presence.explain presentity_uri event watcher_uri';
  m.set('presence.explain', async (p) => {
    arity(p, 3, 3, explainUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', explainUsage));
    const event = eventOf(str(p, 1, 'event', explainUsage));
    const watcherArg = str(p, 2, 'watcher_uri', explainUsage);
    let watcher: string;
    try {
      watcher = uriAor(watcherArg);
    } catch {
      throw new RpcError(INVALID_PARAMS, `"${watcherArg}" is not a watcher URI (sip:user@domain)`);
    }
    const pkg = node.packages.get(event)!;
    const now = Date.now();
    const secs = (ms: number): number => Math.max(0, Math.round((ms - now) / 1000));
    const subscriptions = [...node.subscriptions.watchersOf(uri, event)]
      .filter((s) => uriAor(s.record.watcherUri) === watcher)
      .map((s) => {
        const r = s.record;
        const last = s.lastNotify;
        return {
          state: r.state,
          sub_handling: r.subHandling,
          expires: secs(r.expiresAt),
          dialog: { call_id: r.callId, local_tag: r.localTag, remote_tag: r.remoteTag },
          contact: r.remoteTarget,
          route_set: r.routeSet,
          transport: r.transport,
          source: `${r.sourceAddress}:${r.sourcePort}`,
          notify_cseq: r.localCseq,
          rate: r.minInterval || r.maxInterval ? { min_interval: r.minInterval, max_interval: r.maxInterval } : undefined,
          last_notify: last
            ? {
                sent: new Date(performance.timeOrigin + last.at).toISOString(),
                seconds_ago: Math.round((now - (performance.timeOrigin + last.at)) / 1000),
                cseq: last.cseq,
                subscription_state: lastNotifyState(last),
                outcome:
                  last.status === 0
                    ? 'no final response yet'
                    : last.status >= 200 && last.status < 300
                      ? `${last.status} accepted`
                      : `${last.status} ${last.why}`,
                body: last.body ?? null,
              }
            : 'no NOTIFY sent in this dialog yet',
        };
      });
    const waiting = event === 'presence' ? node.watcherInfo.waitingOf(uri).filter((w) => uriAor(w.watcherUri) === watcher) : [];
    // The package's policy for this watcher now, and the pres-rules behind it (RFC 4745/5025).
    const policy = await node.authorization.evaluate(uri, watcher, pkg);
    const rulesDoc = node.store.getXcap('pres-rules', uri, 'index') ?? node.store.xcapDocumentsOf('pres-rules', uri)[0];
    let rules: unknown;
    if (!rulesDoc)
      rules = {
        document: null,
        verdict: 'no pres-rules document: no rule matches, so the watcher is confirm (pending), as presence_xml says',
      };
    else {
      const o = await node.pool.run('rules.evaluate', { presentityUri: uri, watcherUri: watcher });
      rules = {
        document: `pres-rules/users/${rulesDoc.xui}/${rulesDoc.name}`,
        etag: rulesDoc.etag,
        matched_rules: o.matchedRules,
        sub_handling: o.handling,
        transformations: o.transformations ?? null,
        winfo_handling: o.winfoHandling,
        verdict:
          o.matchedRules.length === 0
            ? 'no rule matches this watcher: confirm (pending), as presence_xml says'
            : `rules ${o.matchedRules.join(', ')} match: the highest sub-handling wins (RFC 5025 §3.2.1)`,
      };
    }
    return {
      presentity_uri: uri,
      event,
      watcher_uri: watcher,
      subscriptions: subscriptions.length > 0 ? subscriptions : 'no live subscription of this watcher',
      waiting: waiting.map((w) => ({ status: 'waiting', expires: secs(w.waitingUntil ?? now) })),
      authorization: { package_policy: policy.handling, transformed_body: policy.bodyKey !== '', rules },
      publications: node.publications.of(uri, event).map((x) => ({
        etag: x.entityTag,
        expires: secs(x.expiresAt),
        received_time: new Date(x.receivedAt).toISOString(),
        sender: x.sender,
        content_type: x.contentType,
        bytes: x.body.byteLength,
      })),
    };
  });

  const basicUsage = 'presence.check_basic presentity_uri status';
  m.set('presence.check_basic', async (p) => {
    arity(p, 2, 2, basicUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', basicUsage));
    return node.pool.run('pidf.checkBasic', { presentityUri: uri, status: str(p, 1, 'status', basicUsage) });
  });

  const actUsage = 'presence.check_activities presentity_uri activity';
  m.set('presence.check_activities', async (p) => {
    arity(p, 2, 2, actUsage);
    const uri = presentity(str(p, 0, 'presentity_uri', actUsage));
    return node.pool.run('pidf.checkActivities', { presentityUri: uri, activity: str(p, 1, 'activity', actUsage) });
  });

  m.set('core.version', () => `presenced ${VERSION} (node ${process.version})`);
  m.set('core.uptime', () => {
    const now = Math.floor(Date.now() / 1000);
    return { now, up_since: Math.floor(node.startedAt / 1000), uptime: now - Math.floor(node.startedAt / 1000) };
  });
  m.set('system.listMethods', () => [...m.keys()]);
  return m;
}
