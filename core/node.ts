/**
 * A presence node: the configuration turned into running parts (SIP stack, store, worker
 * pool, event packages, publications, subscriptions, notifier, XCAP and RPC servers) and the
 * order in which they start and stop.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { SipStack } from '../transport/stack.js';
import { Dispatcher } from './dispatcher.js';
import { PackageRegistry } from './packages/registry.js';
import type { EventPackage, PackageContext } from './packages/types.js';
import { presencePackage } from './packages/presence.js';
import { messageSummaryPackage } from './packages/message-summary.js';
import { dialogSlaPackage } from './packages/dialog-sla.js';
import { SERVER_HEADER } from './version.js';
import { Store } from './store/store.js';
import { WorkerPool } from './pool.js';
import { XcapServer, type XcapChange } from './xcap/server.js';
import { XcapClient } from './xcap/client.js';
import { Publications } from './publications.js';
import { Subscriptions } from './subscriptions.js';
import { Notifier } from './notifier.js';
import { PresenceAuthorizer, type RulesDecision } from './authorization/index.js';
import { winfoPackage } from './packages/winfo.js';
import { WatcherInfo } from './watchers.js';
import { RpcServer } from './rpc/server.js';
import { createMethods } from './rpc/methods.js';
import { createMetrics } from './metrics.js';
import type { Transformations } from '../workers/pres-rules.js';

/** The packages the configuration enables (presence_xml disable_* flags; presence_mwi always). */
export function enabledPackages(config: Config): EventPackage[] {
  const out: EventPackage[] = [];
  if (!config.disable_presence) out.push(presencePackage);
  out.push(messageSummaryPackage);
  if (!config.disable_bla) out.push(dialogSlaPackage);
  if (!config.disable_presence && !config.disable_winfo) out.push(winfoPackage);
  return out;
}

export class PresenceNode {
  readonly stack: SipStack;
  readonly dispatcher: Dispatcher;
  readonly packages: PackageRegistry;
  readonly startedAt = Date.now();
  readonly store: Store;
  readonly pool: WorkerPool;
  readonly xcap: XcapServer | undefined;
  readonly publications: Publications;
  readonly subscriptions: Subscriptions;
  readonly notifier: Notifier;
  readonly ctx: PackageContext;
  readonly watcherInfo: WatcherInfo;
  readonly authorizer: PresenceAuthorizer;
  readonly rpc: RpcServer;
  private sweeper: NodeJS.Timeout | undefined;
  /** xcap_client mode (integrated_xcap_server = 0): rules fetched from the xcap_server URLs. */
  readonly xcapClient: XcapClient | undefined;
  private readonly rulesFetched = new Set<string>();

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.store = Store.open(config.db_path, config.xcap_table, { mapSize: config.db_map_size, log });
    this.pool = new WorkerPool(
      { dbPath: config.db_path, xcapTable: config.xcap_table, limits: { maxBytes: config.max_xml_size, maxDepth: config.max_xml_depth } },
      config.worker_threads,
      this.store,
      config.worker_inline_max_bytes,
    );
    this.ctx = { pool: this.pool, store: this.store, config };
    this.packages = new PackageRegistry(config.passive_mode ? [] : enabledPackages(config));
    this.stack = new SipStack({
      listen: config.listen,
      maxMessageSize: config.max_message_size,
      tcpIdleTimeout: config.tcp_connection_lifetime * 1000,
      tcpPartialTimeout: config.tcp_partial_timeout * 1000,
      udpMtu: config.udp_mtu,
      udpMtuTryProto: config.udp_mtu_try_proto,
      tls: config.tls,
      timers: { t1: config.sip_t1, t2: config.sip_t2, t4: config.sip_t4 },
      userAgent: SERVER_HEADER,
      log,
    });
    this.authorizer = new PresenceAuthorizer(config, (presentityUri, watcherUri) => this.evaluateRules(presentityUri, watcherUri));
    this.subscriptions = new Subscriptions({
      config,
      store: this.store,
      packages: this.packages,
      log,
      authorizer: this.authorizer,
    });
    this.watcherInfo = new WatcherInfo({
      config,
      store: this.store,
      notifier: () => this.notifier,
      winfoWatchers: (uri) => this.subscriptions.watchersOf(uri, 'presence.winfo'),
      presenceWatchers: (uri) => this.subscriptions.watchersOf(uri, 'presence'),
      presenceHandling: async (uri, watcherAor) => (await this.authorizer.evaluate(uri, watcherAor, presencePackage)).handling,
      log,
    });
    this.ctx.watchers = (uri) => this.watcherInfo.list(uri);
    this.subscriptions.onEvent = this.watcherInfo.onSubscriptionEvent;
    this.subscriptions.winfoIdFor = this.watcherInfo.winfoIdFor;
    this.notifier = new Notifier({
      config,
      stack: this.stack,
      store: this.store,
      packages: this.packages,
      ctx: this.ctx,
      log,
      watchersOf: (uri, event) => this.subscriptions.watchersOf(uri, event),
      forget: (sub, why) => this.subscriptions.forget(sub, why),
      transform: (sub, body) => this.pool.run('rules.transform', { xml: body, transformations: JSON.parse(sub.bodyKey) as Transformations }),
    });
    this.subscriptions.notifier = this.notifier;
    this.publications = new Publications({
      config,
      store: this.store,
      packages: this.packages,
      ctx: this.ctx,
      log,
      onChange: (uri, event) => this.notifier.presentityChanged(uri, event),
    });
    this.dispatcher = new Dispatcher(this.packages, log);
    if (!config.passive_mode) {
      this.dispatcher.register('PUBLISH', this.publications.handle);
      this.dispatcher.register('SUBSCRIBE', this.subscriptions.handle);
    }
    this.stack.onRequest(this.dispatcher.handle);
    if (config.integrated_xcap_server && !config.passive_mode) {
      this.xcap = new XcapServer({
        config,
        store: this.store,
        pool: this.pool,
        log,
        onDocumentChanged: (change) => this.onXcapChange(change),
      });
    }
    if (!config.integrated_xcap_server && !config.passive_mode && config.xcap_server.length > 0) {
      this.xcapClient = new XcapClient({ config, store: this.store, log, onDocumentChanged: (change) => this.onXcapChange(change) });
    }
    this.rpc = new RpcServer({
      address: config.rpc_listen.address,
      port: config.rpc_listen.port,
      methods: createMethods(this),
      metrics: createMetrics(this),
      log,
    });
  }

  /** pres-rules outcome for a watcher; the transformations become the key of the body it sees. */
  private async evaluateRules(presentityUri: string, watcherUri: string): Promise<RulesDecision> {
    // xcap_client: the first evaluation for a presentity fetches its rules; the periodic query
    // and presence.refreshWatchers keep them current afterwards.
    if (this.xcapClient && !this.rulesFetched.has(presentityUri)) await this.refreshRules(presentityUri);
    const r = await this.pool.run('rules.evaluate', { presentityUri, watcherUri }, this.rulesSize(presentityUri));
    return { handling: r.handling, bodyKey: r.transformations ? JSON.stringify(r.transformations) : '', winfoHandling: r.winfoHandling };
  }

  /**
   * How much XML a rules evaluation reads, for the pool's inline boundary: the pres-rules
   * document's size (0 without one; rules are compiled once per version, so a small document
   * costs less here than a worker round trip), or Infinity when a sphere condition makes the
   * evaluation compose the presentity's PIDF.
   */
  private rulesSize(presentityUri: string): number {
    const doc = this.store.getXcap('pres-rules', presentityUri, 'index') ?? this.store.xcapDocumentsOf('pres-rules', presentityUri)[0];
    if (!doc) return 0;
    const body = Buffer.from(doc.body.buffer, doc.body.byteOffset, doc.body.byteLength);
    return body.includes('sphere') ? Infinity : body.length;
  }

  /**
   * A presentity's rules changed: re-evaluate the watchers of `event`. The pres-rules document
   * also decides who may see the watcher info and which waiting watchers are rejected, so for
   * `presence` its presence.winfo subscribers and waiting entries are re-evaluated too.
   * Resolves with how many changed.
   */
  async reevaluateWatchers(presentityUri: string, event: string): Promise<number> {
    let changed = await this.subscriptions.reevaluate(presentityUri, event);
    if (event === 'presence') {
      changed += await this.subscriptions.reevaluate(presentityUri, 'presence.winfo');
      changed += await this.watcherInfo.reevaluate(presentityUri);
    }
    return changed;
  }

  /** Rules of a presentity may have changed outside (xcap_client mode): fetch them again. */
  async refreshRules(presentityUri: string): Promise<void> {
    if (!this.xcapClient) return;
    this.rulesFetched.add(presentityUri);
    try {
      await this.xcapClient.fetch('pres-rules', presentityUri, 'index');
    } catch (err) {
      this.log.warn({ err, presentityUri }, 'fetching pres-rules from xcap_server failed; using the cached copy');
    }
  }

  /** A committed XCAP change: pres-rules re-evaluate the presentity's watchers (integrated_xcap_server). */
  private onXcapChange(change: XcapChange): void {
    this.log.info({ auid: change.auid, xui: change.xui, name: change.name, deleted: change.doc === undefined }, 'XCAP document changed');
    if (!change.xui) return;
    if (change.auid === 'pres-rules') {
      this.reevaluateWatchers(change.xui, 'presence').catch((err) => this.log.error({ err, presentityUri: change.xui }, 're-evaluating watchers failed'));
    } else if (change.auid === 'pidf-manipulation') {
      this.notifier.presentityChanged(change.xui, 'presence');
    }
  }

  async start(): Promise<void> {
    if (this.xcap) {
      const port = await this.xcap.start();
      const { address } = this.config.xcap_listen;
      this.log.info({ listener: `http://${address}:${port}${this.config.xcap_root}`, address, port }, 'XCAP listener ready');
    }
    this.xcapClient?.start();
    await this.stack.start();
    // Listeners first: recovered subscriptions may need to send their terminated NOTIFY.
    const pubs = await this.publications.recover();
    // Waiting watchers before subscriptions (a recovered one may replace or join them); their
    // giveup timers once every winfo subscriber is back to hear of it.
    const waiting = this.watcherInfo.load();
    const subs = await this.subscriptions.recover();
    this.watcherInfo.start();
    this.publications.notifyRecovered();
    this.log.info(
      { publications: pubs.live, publicationsExpired: pubs.expired, subscriptions: subs.live, subscriptionsExpired: subs.expired, waitingWatchers: waiting },
      'store recovered',
    );
    // presence clean_period: a sweep behind the per-record timers (e.g. after a clock jump).
    this.sweeper = setInterval(() => {
      this.publications.cleanup().catch((err) => this.log.error({ err }, 'cleanup failed'));
    }, this.config.clean_period * 1000);
    this.sweeper.unref();
    const rpcPort = await this.rpc.start();
    const r = this.config.rpc_listen;
    this.log.info({ listener: `http://${r.address}:${rpcPort}/RPC`, address: r.address, port: rpcPort }, 'RPC listener ready');
    for (const l of this.stack.listeners()) {
      this.log.info({ listener: `${l.proto}:${l.address}:${l.port}`, proto: l.proto, address: l.address, port: l.port }, 'SIP listener ready');
    }
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.publications.stop();
    await this.subscriptions.stop();
    this.watcherInfo.stop();
    await this.stack.stop();
    await this.rpc.stop();
    await this.xcap?.stop();
    await this.xcapClient?.stop();
    await this.pool.close();
    await this.store.close();
  }
}
