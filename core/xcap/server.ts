/**
 * Embedded XCAP server (RFC 4825) on uWebSockets.js. (Being written: see issue 5.)
 */
import type { Config } from '../config.js';
import type { Store } from '../store/store.js';
import type { WorkerPool } from '../pool.js';
import type { Logger } from '../log.js';
import type { XcapDocument } from '../store/records.js';

export interface XcapChange {
  auid: string;
  xui: string;
  name: string;
  /** The document after the change; undefined when it was deleted. */
  doc: XcapDocument | undefined;
}

export interface XcapServerDeps {
  config: Config;
  store: Store;
  pool: WorkerPool;
  log: Logger;
  /** Called after a committed change of any document (PUT, DELETE, node PUT/DELETE). */
  onDocumentChanged: (change: XcapChange) => void;
}

export class XcapServer {
  constructor(private readonly deps: XcapServerDeps) {}

  /** Listen on config.xcap_listen; resolves with the bound port. */
  async start(): Promise<number> {
    void this.deps;
    return 0;
  }

  async stop(): Promise<void> {}
}
