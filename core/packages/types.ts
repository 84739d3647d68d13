/**
 * The interface every event package implements (RFC 6665 §7): its name, what may be
 * PUBLISHed for it, what a NOTIFY carries, its authorisation policy, and how the state of a
 * resource becomes a NOTIFY body. Everything package-specific lives behind it, so generic code
 * (notifier, SUBSCRIBE handler, authorisation) never asks for a package by name.
 */
import { parseParams } from '../../transport/grammar.js';
import type { WorkerPool } from '../pool.js';
import type { StoreReader } from '../store/interfaces.js';
import type { Publication } from '../store/records.js';
import type { Config } from '../config.js';
import type { WatcherEntry } from '../state/watcher-info.js';
import type { WinfoHandling } from '../../workers/pres-rules.js';

/** What the packages read to compose a body (given at construction, nothing set later). */
export interface PackageContext {
  pool: WorkerPool;
  store: StoreReader;
  config: Config;
  /** A presentity's live publications of an event, from memory (state/publications.ts), newest first. */
  publications: (presentityUri: string, event: string) => Publication[];
  /** Current watchers of a presentity's presence (for presence.winfo). */
  watchers: (presentityUri: string) => WatcherEntry[];
  /** The body just composed serves the NOTIFYs of this change only (the hub's body.stale). */
  stale: (presentityUri: string, event: string) => void;
  /** Composing for a look (RPC presence.presentity_state), not for NOTIFYs: a package changes nothing it remembers. */
  preview?: boolean;
}

/** RFC 5025 §3.2.1 sub-handling, the outcome of authorising a watcher. */
export type SubHandling = 'block' | 'confirm' | 'polite-block' | 'allow';

export interface AuthorizationOutcome {
  handling: SubHandling;
  /** Which transformed body the watcher gets ('' = the whole composed state). */
  bodyKey: string;
}

/** One evaluation of a presentity's pres-rules for a watcher: its presence outcome and its watcher-info permission. */
export interface RulesDecision extends AuthorizationOutcome {
  winfoHandling: WinfoHandling;
}

/** What a package's authorisation policy is given: the watcher, and the presentity's rules for it (evaluated once, on demand). */
export interface AuthorizationRequest {
  presentityUri: string;
  watcherAor: string;
  config: Config;
  /** The pres-rules decision for this watcher; undefined when no rules are consulted at all. */
  rules: (() => Promise<RulesDecision>) | undefined;
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
  /** Authorisation policy: the outcome for a watcher (RFC 6665 §4.2.1.2, RFC 5025). */
  authorize(req: AuthorizationRequest): Promise<AuthorizationOutcome> | AuthorizationOutcome;
  /**
   * The Subscription-State reason when a rules change takes a watcher's permission away
   * (`handling` is the new outcome: block, or confirm for a watcher that was active).
   */
  revokedReason(handling: SubHandling, config: Config): string;
  /** A body an outcome sees instead of the composed state (presence polite-block), or undefined. */
  substituteBody?(handling: string, presentityUri: string): string | undefined;
  /** Whether `authorize` consults the presentity's pres-rules: a rules change re-evaluates this package's watchers too. */
  readonly consultsRules?: boolean;
  /** XCAP auids whose documents are part of the composed state (a change NOTIFYs the watchers). */
  readonly stateDocuments?: readonly string[];
  /** Bodies carry VERSION_SLOT, replaced by a per-subscription counter (RFC 4235 §4.1, RFC 3858 §4.1). */
  readonly versioned: boolean;
  /** Check a PUBLISH body; resolves with a reason phrase when it must be refused (400). */
  validate(body: string, ctx: PackageContext): Promise<string | undefined>;
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

/** The policy of packages without authorisation (RFC 3842, BLA): every watcher is allowed. */
export function allowEveryone(): AuthorizationOutcome {
  return { handling: 'allow', bodyKey: '' };
}

/** Kamailio's choice for a watcher whose permission is taken away: xcapauth_userdel_reason. */
export function userdelReason(_handling: SubHandling, config: Config): string {
  return config.xcapauth_userdel_reason;
}
