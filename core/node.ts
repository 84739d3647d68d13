/**
 * A presence node: the configuration turned into running parts (SIP stack, store, packages,
 * XCAP and RPC servers) and the order in which they start and stop.
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { SipStack } from '../transport/stack.js';
import { Dispatcher } from './dispatcher.js';
import { PackageRegistry } from './packages/registry.js';
import { SERVER_HEADER } from './version.js';

export class PresenceNode {
  readonly stack: SipStack;
  readonly dispatcher: Dispatcher;
  readonly packages: PackageRegistry;
  readonly startedAt = Date.now();

  constructor(
    readonly config: Config,
    readonly log: Logger,
  ) {
    this.packages = new PackageRegistry([]);
    this.stack = new SipStack({
      listen: config.listen.filter((l) => l.proto === 'udp' || l.proto === 'tcp'),
      maxMessageSize: config.max_message_size,
      tcpIdleTimeout: config.tcp_connection_lifetime * 1000,
      tcpPartialTimeout: config.tcp_partial_timeout * 1000,
      timers: { t1: config.sip_t1, t2: config.sip_t2, t4: config.sip_t4 },
      userAgent: SERVER_HEADER,
      log,
    });
    this.dispatcher = new Dispatcher(this.packages, log);
    this.stack.onRequest(this.dispatcher.handle);
  }

  async start(): Promise<void> {
    await this.stack.start();
    for (const l of this.stack.listeners()) {
      this.log.info({ listener: `${l.proto}:${l.address}:${l.port}`, proto: l.proto, address: l.address, port: l.port }, 'SIP listener ready');
    }
  }

  async stop(): Promise<void> {
    await this.stack.stop();
  }
}
