/**
 * RPC methods, Kamailio names (presence, presence_xml, core) with presenced additions. Each
 * validates its params and throws RpcError(INVALID_PARAMS) with what it expected.
 */
import { RpcError, INVALID_PARAMS } from './errors.js';
import { VERSION } from '../version.js';
import { presentityOf } from '../uris.js';
import { SipError } from '../errors.js';
import type { WorkerPool } from '../pool.js';
import type { StoreReader } from '../store/interfaces.js';
import type { Publications } from '../state/publications.js';
import type { Subscriptions } from '../state/subscriptions.js';
import type { WatcherInfo } from '../state/watcher-info.js';
import type { PackageRegistry } from '../packages/registry.js';
import type { Notifier } from '../notify/notifier.js';
import type { Authorization } from '../authorization/index.js';

/** What the methods act on: the node's parts, handed over explicitly. */
export interface RpcDeps {
  packages: PackageRegistry;
  store: StoreReader;
  pool: WorkerPool;
  publications: Publications;
  subscriptions: Subscriptions;
  watcherInfo: WatcherInfo;
  notifier: Notifier;
  authorization: Authorization;
  /** When the node started (ms since epoch). */
  startedAt: number;
}

export type RpcMethod = (params: unknown[]) => Promise<unknown> | unknown;

function str(params: unknown[], i: number, name: string, usage: string): string {
  const v = params[i];
  if (typeof v !== 'string' || v.length === 0) throw new RpcError(INVALID_PARAMS, `param ${i + 1} (${name}) must be a non-empty string; usage: ${usage}`);
  return v;
}

function arity(params: unknown[], min: number, max: number, usage: string): void {
  if (params.length < min || params.length > max) throw new RpcError(INVALID_PARAMS, `expected ${min === max ? min : `${min} to ${max}`} params; usage: ${usage}`);
}

function presentity(uri: string): string {
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
    for (const d of node.store.allXcapDocuments()) if (d.xui) out.push({ auid: d.auid, xui: d.xui, name: d.name, etag: d.etag, content_type: d.contentType });
    return out;
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
