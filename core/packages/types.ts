/**
 * The interface every event package implements (RFC 6665 §7): its name, what may be
 * PUBLISHed for it, what a NOTIFY carries, whether a watcher needs authorisation, and how the
 * state of a resource becomes a NOTIFY body.
 */
import { parseParams } from '../../transport/grammar.js';
import type { WorkerPool } from '../pool.js';
import type { Store } from '../store/store.js';
import type { Config } from '../config.js';

export interface PackageContext {
  pool: WorkerPool;
  store: Store;
  config: Config;
  /** Current watchers of a presentity (for presence.winfo), set once subscriptions exist. */
  watchers?: (presentityUri: string, event: string) => import('./winfo.js').WatcherEntry[];
  /** Drop a presentity's composed body once its NOTIFYs are built (set once the notifier exists): a `dialog` body with a terminated dialog serves one fan-out only. */
  invalidate?: (presentityUri: string, event: string) => void;
}

/** Placeholder a versioned body carries where each subscription's own version goes. */
export const VERSION_SLOT = '\u0000version\u0000';

export interface EventPackage {
  /** The Event / Allow-Events token, e.g. `presence`, `message-summary`, `dialog;sla`. */
  readonly name: string;
  /** Content types a PUBLISH may carry; empty when the package cannot be published. */
  readonly publishTypes: readonly string[];
  /** Content type of NOTIFY bodies (and the default Accept of a SUBSCRIBE). */
  readonly notifyType: string;
  /** Whether a watcher is subject to pres-rules authorisation. */
  readonly needsAuthorization: boolean;
  /** Bodies carry VERSION_SLOT, replaced by a per-subscription counter (RFC 4235 §4.1, RFC 3858 §4.1). */
  readonly versioned: boolean;
  /** Check a PUBLISH body; resolves with a reason phrase when it must be refused (400). */
  validate(body: string, ctx: PackageContext): Promise<string | undefined>;
  /** What a polite-blocked watcher sees (RFC 5025 §3.2.1), when not the presence one: a valid document that reveals nothing. */
  politeBlockBody?(presentityUri: string): string;
  /**
   * The part of the state a SUBSCRIBE's Event parameters ask for, as a key stored with the
   * subscription ('' = all of it), e.g. RFC 4235 §3.2's call-id/from-tag/to-tag for one dialog.
   */
  viewOf?(params: Map<string, string>): string;
  /** The composed body narrowed to a view (once per presentity change and view, not per watcher). */
  viewBody?(presentityUri: string, body: string, view: string, ctx: PackageContext): Promise<string>;
  /** The resource's current state as a NOTIFY body; undefined for a NOTIFY without body. */
  compose(presentityUri: string, ctx: PackageContext): Promise<string | undefined>;
}

export interface EventHeader {
  name: string;
  params: Map<string, string>;
  id: string | undefined;
}

export function parseEventHeader(value: string): EventHeader | undefined {
  const semi = value.indexOf(';');
  const name = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  if (!/^[a-z0-9\-.!%*_+`'~]+$/.test(name)) return undefined;
  const params = semi === -1 ? new Map<string, string>() : parseParams(value, semi);
  return { name, params, id: params.get('id') };
}
