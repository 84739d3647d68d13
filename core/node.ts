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
import { Publications } from './publications.js';
import { Subscriptions } from './subscriptions.js';
import { Notifier } from './notifier.js';
import { PresenceAuthorizer } from './authorization/index.js';

/** The packages the configuration enables (presence_xml disable_* flags; presence_mwi always). */
export function enabledPackages(config: Config): EventPackage[] {
  const out: EventPackage[] = [];
  if (!config.disable_presence) out.push(presencePackage);
  out.push(messageSummaryPackage);
  if (!config.disable_bla) out.push(dialogSlaPackage);
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

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.store = Store.open(config.db_path, config.xcap_table);
    this.pool = new WorkerPool(
      { dbPath: config.db_path, xcapTable: config.xcap_table, limits: { maxBytes: config.max_xml_size, maxDepth: config.max_xml_depth } },
      config.worker_threads,
      this.store,
    );
    this.ctx = { pool: this.pool, store: this.store, config };
    this.packages = new PackageRegistry(config.passive_mode ? [] : enabledPackages(config));
    this.stack = new SipStack({
      listen: config.listen.filter((l) => l.proto === 'udp' || l.proto === 'tcp'),
      maxMessageSize: config.max_message_size,
      tcpIdleTimeout: config.tcp_connection_lifetime * 1000,
      tcpPartialTimeout: config.tcp_partial_timeout * 1000,
      timers: { t1: config.sip_t1, t2: config.sip_t2, t4: config.sip_t4 },
      userAgent: SERVER_HEADER,
      log,
    });
    this.subscriptions = new Subscriptions({
      config,
      store: this.store,
      packages: this.packages,
      log,
      authorizer: new PresenceAuthorizer(config, undefined),
    });
    this.notifier = new Notifier({
      config,
      stack: this.stack,
      store: this.store,
      packages: this.packages,
      ctx: this.ctx,
      log,
      watchersOf: (uri, event) => this.subscriptions.watchersOf(uri, event),
      forget: (sub, why) => this.subscriptions.forget(sub, why),
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
  }

  private onXcapChange(change: XcapChange): void {
    this.log.debug({ auid: change.auid, xui: change.xui, name: change.name }, 'XCAP document changed');
  }

  async start(): Promise<void> {
    if (this.xcap) {
      const port = await this.xcap.start();
      const { address } = this.config.xcap_listen;
      this.log.info({ listener: `http://${address}:${port}${this.config.xcap_root}`, address, port }, 'XCAP listener ready');
    }
    await this.stack.start();
    // Listeners first: recovered subscriptions may need to send their terminated NOTIFY.
    const pubs = await this.publications.recover();
    const subs = await this.subscriptions.recover();
    this.log.info(
      { publications: pubs.live, publicationsExpired: pubs.expired, subscriptions: subs.live, subscriptionsExpired: subs.expired },
      'store recovered',
    );
    for (const l of this.stack.listeners()) {
      this.log.info({ listener: `${l.proto}:${l.address}:${l.port}`, proto: l.proto, address: l.address, port: l.port }, 'SIP listener ready');
    }
  }

  async stop(): Promise<void> {
    this.publications.stop();
    this.subscriptions.stop();
    await this.stack.stop();
    await this.xcap?.stop();
    await this.pool.close();
    await this.store.close();
  }
}
