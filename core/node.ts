/**
 * A presence node, the composition root: the configuration turned into running parts, built in
 * dependency order (DESIGN.md, core/ layers: store, state, packages, notifier, authorisation,
 * SIP handlers, XCAP, RPC), each given what it needs at construction; nothing is wired
 * afterwards and nothing imports this file but main.ts. Also the order in which they start and stop.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { SipStack, type IncomingRequest } from '../transport/stack.js';
import type { SipResponse } from '../transport/message.js';
import { createEventHub } from './events.js';
import { SERVER_HEADER } from './version.js';
import { Store } from './store/store.js';
import { WorkerPool } from './pool.js';
import { createMetrics } from './metrics.js';
import { Publications } from './state/publications.js';
import { Subscriptions } from './state/subscriptions.js';
import { WatcherInfo, type StateEvents } from './state/watcher-info.js';
import { ListWatchers } from './state/list-watchers.js';
import { PackageRegistry } from './packages/registry.js';
import type { EventPackage, PackageContext } from './packages/types.js';
import { presencePackage } from './packages/presence.js';
import { messageSummaryPackage } from './packages/message-summary.js';
import { dialogSlaPackage } from './packages/dialog-sla.js';
import { createDialogPackage } from './packages/dialog.js';
import { regPackage } from './packages/reg.js';
import { winfoPackage } from './packages/winfo.js';
import { Notifier } from './notify/notifier.js';
import { notifyWatcherChanges } from './notify/winfo-partials.js';
import { Authorization } from './authorization/index.js';
import { Dispatcher } from './sip/dispatcher.js';
import { PublishUas } from './sip/publish-uas.js';
import { SubscribeUas } from './sip/subscribe-uas.js';
import { XcapServer, type XcapChange } from './xcap/server.js';
import { XcapClient } from './xcap/client.js';
import { RlsServicesDirectory } from './xcap/rls-services.js';
import { XcapReferences } from './xcap/reference.js';
import { ListServer } from './rls/list-server.js';
import { ServiceLists } from './rls/lists.js';
import { RpcServer } from './rpc/server.js';
import { createMethods } from './rpc/methods.js';
import type { Transformations } from '../workers/pres-rules.js';
import { HepSender, callIdOf } from '../transport/hep.js';
import { loadConsoleAssets } from './console/assets.js';
import { overloadSettings, StateLimits } from './limits.js';

/** The packages the configuration enables (presence_xml disable_* flags; presence_mwi always). */
export function enabledPackages(config: Config): EventPackage[] {
  const out: EventPackage[] = [];
  if (!config.disable_presence) out.push(presencePackage);
  out.push(messageSummaryPackage);
  if (!config.disable_bla) out.push(dialogSlaPackage);
  if (!config.disable_dialog) out.push(createDialogPackage(config));
  if (!config.disable_reg) out.push(regPackage);
  if (!config.disable_presence && !config.disable_winfo) out.push(winfoPackage);
  return out;
}

export class PresenceNode {
  readonly startedAt = Date.now();
  private readonly store: Store;
  private readonly pool: WorkerPool;
  private readonly stack: SipStack;
  private readonly publications: Publications;
  private readonly subscriptions: Subscriptions;
  private readonly watcherInfo: WatcherInfo;
  private readonly subscribeUas: SubscribeUas;
  /** Answers 503 until the store is recovered (a cluster edge keeps the node out of rotation meanwhile). */
  private readonly dispatcher: Dispatcher;
  private readonly notifier: Notifier;
  private readonly authorization: Authorization;
  private readonly xcap: XcapServer | undefined;
  /** xcap_client mode (integrated_xcap_server = 0): rules fetched from the xcap_server URLs. */
  private readonly xcapClient: XcapClient | undefined;
  private readonly rpc: RpcServer;
  /** The resource list server (RFC 4662); undefined with disable_rls or passive_mode. */
  private readonly lists: ListServer | undefined;
  /** siptrace: copies of every SIP message to the capture server (trace_on). */
  private readonly capture: HepSender | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    // Base: store, XML pool, the event hub state reports through.
    const store = (this.store = Store.open(config.db_path, config.xcap_table, { mapSize: config.db_map_size, log }));
    const pool = (this.pool = new WorkerPool(
      { dbPath: config.db_path, xcapTable: config.xcap_table, limits: { maxBytes: config.max_xml_size, maxDepth: config.max_xml_depth } },
      config.worker_threads,
      store,
      config.worker_inline_max_bytes,
    ));
    const hub = createEventHub<StateEvents>();
    hub.on('document.changed', (c) => log.info({ auid: c.auid, xui: c.xui, name: c.name }, 'XCAP document changed'));
    const packages = new PackageRegistry(config.passive_mode ? [] : enabledPackages(config));
    const to = config.duplicate_to;
    const capture = (this.capture =
      config.trace_on && to
        ? new HepSender(
            to.host,
            to.port,
            { hep: config.hep_mode_on === 1, captureId: config.hep_capture_id, authKey: config.auth_key, correlationOf: callIdOf },
            log,
          )
        : undefined);
    const stack = (this.stack = new SipStack({
      tap: capture,
      eventLabels: packages.names(),
      listen: config.listen,
      maxMessageSize: config.max_message_size,
      tcpIdleTimeout: config.tcp_connection_lifetime * 1000,
      tcpPartialTimeout: config.tcp_partial_timeout * 1000,
      udpMtu: config.udp_mtu,
      udpMtuTryProto: config.udp_mtu_try_proto,
      tls: config.tls,
      timers: { t1: config.sip_t1, t2: config.sip_t2, t4: config.sip_t4 },
      overload: overloadSettings(config),
      maxConnections: config.max_connections,
      maxDnsLookups: config.max_dns_lookups,
      refusalLogIntervalMs: config.limit_log_interval * 1000,
      userAgent: SERVER_HEADER,
      log,
    }));

    // State.
    const publications = (this.publications = new Publications({ config, store, log, hub }));
    // Limits on what strangers can make the node hold (issue 12), counted with the stack's refusals.
    const limits = new StateLimits(config, stack.refusals);
    const subscriptions = (this.subscriptions = new Subscriptions({ config, store, log, hub, limits }));
    const watcherInfo = (this.watcherInfo = new WatcherInfo({ config, store, hub, subscriptions, log }));
    const listWatchers = new ListWatchers(hub);

    // Event packages, and what they compose from.
    const ctx: PackageContext = {
      pool,
      store,
      config,
      publications: (uri, event) => publications.of(uri, event),
      // Direct watchers, and the ones that reach the presentity only through a list served here.
      watchers: (uri) => {
        const direct = watcherInfo.list(uri);
        const viaLists = listWatchers.list(uri);
        if (viaLists.length === 0) return direct;
        const seen = new Set(direct.map((w) => w.uri));
        return [...direct, ...viaLists.filter((w) => !seen.has(w.uri))];
      },
      stale: (presentityUri, event) => hub.emit('body.stale', { presentityUri, event }),
    };

    // NOTIFY.
    const notifier = (this.notifier = new Notifier({
      config,
      sender: stack,
      store,
      packages,
      ctx,
      log,
      hub,
      subscriptions,
      transform: (sub, body) => pool.run('rules.transform', { xml: body, transformations: JSON.parse(sub.bodyKey) as Transformations }),
    }));
    notifyWatcherChanges(hub, subscriptions, notifier);

    // Authorisation (rules from the embedded XCAP server, or fetched: xcap_client mode).
    const onDocumentChanged = (c: XcapChange): void => hub.emit('document.changed', { auid: c.auid, xui: c.xui, name: c.name });
    if (!config.integrated_xcap_server && !config.passive_mode && config.xcap_server.length > 0) {
      this.xcapClient = new XcapClient({ config, store, log, onDocumentChanged });
    }
    const xcapClient = this.xcapClient;
    const authorization = new Authorization({
      config,
      store,
      pool,
      packages,
      subscriptions,
      watcherInfo,
      notifier,
      hub,
      log,
      ...(xcapClient ? { fetchRules: async (uri: string) => void (await xcapClient.fetch('pres-rules', uri, 'index')) } : {}),
    });

    // SIP: the UAS of each method, behind the dispatcher.
    const dispatcher = (this.dispatcher = new Dispatcher(packages, log, config.max_uri_length));
    this.subscribeUas = new SubscribeUas({ config, store, packages, log, subscriptions, watcherInfo, notifier, authorization, limits });
    // The list server: services from the rls-services documents, back-ends inside the node or through outbound_proxy.
    // One reading of the users' rls-services documents, for the XCAP server's global index and uniqueness and for the list server.
    const rlsServices = new RlsServicesDirectory(store, pool, log);
    if (!config.passive_mode && !config.disable_rls) {
      const references = new XcapReferences(store, pool, config.xcap_root);
      this.lists = new ListServer({
        config,
        store,
        log,
        hub,
        packages,
        ctx,
        sender: stack,
        lists: new ServiceLists(
          {
            services: () => rlsServices.all(),
            select: (ref, owner) => references.select(ref, owner),
            parse: (xml, as) => pool.run('rls.parse', { xml, as }),
          },
          log,
        ),
        authorize: (resourceUri, watcherAor, pkg) => authorization.evaluate(resourceUri, watcherAor, pkg),
        transform: (bodyKey, body) => pool.run('rules.transform', { xml: body, transformations: JSON.parse(bodyKey) as Transformations }),
        contact: notifier.contact,
        limits,
        subscriptionCount: () => subscriptions.count,
        watchers: listWatchers,
      });
    }
    const lists = this.lists;
    if (!config.passive_mode) {
      dispatcher.register('PUBLISH', new PublishUas({ config, packages, ctx, log, publications, limits }).handle);
      const subscribe = this.subscribeUas.handle;
      // A SUBSCRIBE to a service URI, or in one of its dialogs, is the list server's; any other, the presence server's.
      const listOrPresence = async (incoming: IncomingRequest): Promise<SipResponse | undefined> => {
        const claimed = lists!.claims(incoming.request);
        if (claimed === false) return (await subscribe(incoming)) ?? undefined;
        return (claimed === true || (await claimed) ? await lists!.handle(incoming) : await subscribe(incoming)) ?? undefined;
      };
      dispatcher.register('SUBSCRIBE', lists ? listOrPresence : subscribe);
      if (lists) dispatcher.register('NOTIFY', lists.handleNotify);
    }
    stack.onRequest(dispatcher.handle);

    // XCAP and RPC.
    if (config.integrated_xcap_server && !config.passive_mode) {
      this.xcap = new XcapServer({ config, store, pool, log, onDocumentChanged, rlsServices });
    }
    const xcap = this.xcap;
    const rpcCalls = new Map<string, number>();
    const rpcErrors = new Map<string, number>();
    this.rpc = new RpcServer({
      calls: rpcCalls,
      errorCodes: rpcErrors,
      ...(config.rpc_auth !== 'none'
        ? {
            auth: {
              scheme: config.rpc_auth,
              realm: config.rpc_auth_realm,
              users: config.rpc_auth_users,
              metricsOpen: config.rpc_metrics_open === 1,
            },
          }
        : {}),
      ...(config.web_console ? { console: loadConsoleAssets } : {}),
      address: config.rpc_listen.address,
      port: config.rpc_listen.port,
      methods: createMethods({
        packages,
        ctx,
        store,
        pool,
        publications,
        subscriptions,
        watcherInfo,
        notifier,
        authorization,
        startedAt: this.startedAt,
        ...(lists ? { lists } : {}),
      }),
      metrics: createMetrics(
        {
          get subscriptions() {
            return subscriptions.count;
          },
          get presentities() {
            return publications.presentityCount;
          },
          get notifySent() {
            return notifier.stats.sent;
          },
          notifyOutcomes: notifier.stats.outcomes,
          changeToNotify: notifier.stats.changeToNotify,
          storeCommit: store.commitTime,
          get notifyFailed() {
            return notifier.stats.failed;
          },
          get watchersRemovedByFailure() {
            return notifier.stats.removedByFailure;
          },
          get clientTransactions() {
            return stack.pendingClientTransactions;
          },
          get connections() {
            return stack.tcpConnections;
          },
          get workerThreads() {
            return pool.threads;
          },
          events: packages.names(),
          subscriptionsOf: (event) => subscriptions.countOf(event),
          presentitiesOf: (event) => publications.presentityCountOf(event),
          get serverTransactions() {
            return stack.serverTransactions;
          },
          get requestsInFlight() {
            return stack.overload.inFlight;
          },
          get udpQueueBytes() {
            return stack.overload.udpQueueBytes;
          },
          get loopLagMs() {
            return stack.overload.loopLagMs;
          },
          limitRefusals: stack.refusals.counts,
          storeUsage: () => store.usage(),
          get storeWritable() {
            return store.writeHealth.writable;
          },
          get storeWriteFailures() {
            return store.writeHealth.failures;
          },
          sip: stack.stats,
          rpcCalls,
          rpcErrors,
          ...(xcap ? { xcapRequests: xcap.stats } : {}),
          ...(capture ? { capture } : {}),
          ...(lists
            ? {
                rls: {
                  get lists() {
                    return lists.listCount;
                  },
                  get backends() {
                    return lists.backendCounts;
                  },
                  get notifies() {
                    return lists.stats.notifies;
                  },
                  get failed() {
                    return lists.stats.failed;
                  },
                },
              }
            : {}),
        },
        config.node_name,
      ),
      log,
    });
    this.authorization = authorization;
  }

  async start(): Promise<void> {
    if (this.xcap) {
      const port = await this.xcap.start();
      const { address } = this.config.xcap_listen;
      this.log.info({ listener: `http://${address}:${port}${this.config.xcap_root}`, address, port }, 'XCAP listener ready');
    }
    this.xcapClient?.start();
    this.capture?.start();
    await this.stack.start();
    // Listeners first: recovered subscriptions may need to send their terminated NOTIFY.
    const pubs = await this.publications.recover();
    // Waiting watchers before subscriptions (a recovered one may replace or join them); their
    // giveup timers once every winfo subscriber is back to hear of it.
    const waiting = this.watcherInfo.load();
    const subs = await this.subscriptions.recover(this.authorization.recoveredBodyKey);
    this.watcherInfo.start();
    const lists = this.lists ? await this.lists.recover() : undefined;
    this.publications.notifyRecovered();
    this.dispatcher.ready = true;
    this.log.info(
      {
        publications: pubs.live,
        publicationsExpired: pubs.expired,
        subscriptions: subs.live,
        subscriptionsExpired: subs.expired,
        waitingWatchers: waiting,
        ...(lists ? { listSubscriptions: lists.live, listSubscriptionsExpired: lists.expired } : {}),
      },
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
      this.log.info(
        { listener: `${l.proto}:${l.address}:${l.port}`, proto: l.proto, address: l.address, port: l.port },
        'SIP listener ready',
      );
    }
  }

  async stop(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.publications.stop();
    this.subscribeUas.stop();
    this.lists?.stop();
    this.subscriptions.stop();
    await this.notifier.stop();
    this.watcherInfo.stop();
    await this.stack.stop();
    this.capture?.close();
    await this.rpc.stop();
    await this.xcap?.stop();
    await this.xcapClient?.stop();
    await this.pool.close();
    await this.store.close();
  }
}
