/**
 * Watcher authorisation: the presentity's pres-rules (RFC 4745/5025, workers/pres-rules.ts)
 * evaluated for a watcher, each package's policy applied to the decision (packages/*.ts:
 * presence, presence.winfo, none), and re-evaluation of the watchers when the rules change
 * (an XCAP change, or presence.refreshWatchers). A rules change evaluates each watcher once and
 * uses that one decision for its presence subscription, its presence.winfo subscription and its
 * waiting entry alike.
 */
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { WorkerPool } from '../pool.js';
import type { EventHub, BaseEvents } from '../events.js';
import type { StoreReader } from '../store/interfaces.js';
import type { Subscription } from '../store/records.js';
import type { Subscriptions } from '../state/subscriptions.js';
import type { WatcherInfo } from '../state/watcher-info.js';
import type { PackageRegistry } from '../packages/registry.js';
import type { AuthorizationOutcome, EventPackage, RulesDecision } from '../packages/types.js';
import type { Notifier } from '../notify/notifier.js';
import { uriAor } from '../uris.js';

export interface AuthorizationDeps {
  config: Config;
  store: StoreReader;
  pool: WorkerPool;
  packages: PackageRegistry;
  subscriptions: Subscriptions;
  watcherInfo: WatcherInfo;
  notifier: Notifier;
  hub: EventHub<BaseEvents>;
  log: Logger;
  /** xcap_client mode (integrated_xcap_server = 0): fetch a presentity's rules from xcap_server. */
  fetchRules?: (presentityUri: string) => Promise<void>;
}

/** pres-rules decisions of one presentity by watcher AOR, evaluated on demand, each at most once. */
type Decisions = (watcherAor: string) => Promise<RulesDecision>;

export class Authorization {
  private readonly rulesFetched = new Set<string>();

  constructor(private readonly deps: AuthorizationDeps) {
    deps.hub.on('document.changed', (c) => {
      if (c.auid !== 'pres-rules' || !c.xui) return;
      this.reevaluateWatchers(c.xui, 'presence').catch((err) =>
        deps.log.error({ err, presentityUri: c.xui }, 're-evaluating watchers failed'),
      );
    });
  }

  /** The outcome for a watcher of a presentity under a package's policy. */
  evaluate(
    presentityUri: string,
    watcherAor: string,
    pkg: EventPackage,
    decisions?: Decisions,
  ): Promise<AuthorizationOutcome> | AuthorizationOutcome {
    const rules = decisions ?? this.decisions(presentityUri);
    return pkg.authorize({ presentityUri, watcherAor, config: this.deps.config, rules: () => rules(watcherAor) });
  }

  /** A recovered subscription's body key (its outcome's transformations). */
  recoveredBodyKey = async (rec: Subscription): Promise<string> => {
    const pkg = this.deps.packages.get(rec.event);
    return pkg ? (await this.evaluate(rec.presentityUri, uriAor(rec.watcherUri), pkg)).bodyKey : '';
  };

  /**
   * The pres-rules decisions of a presentity, each watcher's evaluated once (the size of its
   * rules, which decides where the evaluation runs, is read once too).
   */
  private decisions(presentityUri: string): Decisions {
    const memo = new Map<string, Promise<RulesDecision>>();
    let size: number | undefined;
    return (watcherAor) => {
      let d = memo.get(watcherAor);
      if (!d) {
        d = this.evaluateRules(presentityUri, watcherAor, () => (size ??= this.rulesSize(presentityUri)));
        memo.set(watcherAor, d);
      }
      return d;
    };
  }

  /** pres-rules outcome for a watcher; the transformations become the key of the body it sees. */
  private async evaluateRules(presentityUri: string, watcherUri: string, size: () => number): Promise<RulesDecision> {
    // xcap_client: the first evaluation for a presentity fetches its rules; the periodic query
    // and presence.refreshWatchers keep them current afterwards.
    if (this.deps.fetchRules && !this.rulesFetched.has(presentityUri)) await this.refreshRules(presentityUri);
    const r = await this.deps.pool.run('rules.evaluate', { presentityUri, watcherUri }, size());
    return { handling: r.handling, bodyKey: r.transformations ? JSON.stringify(r.transformations) : '', winfoHandling: r.winfoHandling };
  }

  /**
   * How much XML a rules evaluation reads, for the pool's inline boundary: the pres-rules
   * document's size (0 without one; rules are compiled once per version, so a small document
   * costs less here than a worker round trip), or Infinity when a sphere condition makes the
   * evaluation compose the presentity's PIDF.
   */
  private rulesSize(presentityUri: string): number {
    const { store } = this.deps;
    const doc = store.getXcap('pres-rules', presentityUri, 'index') ?? store.xcapDocumentsOf('pres-rules', presentityUri)[0];
    if (!doc) return 0;
    const body = Buffer.from(doc.body.buffer, doc.body.byteOffset, doc.body.byteLength);
    return body.includes('sphere') ? Infinity : body.length;
  }

  /** Rules of a presentity may have changed outside (xcap_client mode): fetch them again. */
  async refreshRules(presentityUri: string): Promise<void> {
    const fetch = this.deps.fetchRules;
    if (!fetch) return;
    this.rulesFetched.add(presentityUri);
    try {
      await fetch(presentityUri);
    } catch (err) {
      this.deps.log.warn({ err, presentityUri }, 'fetching pres-rules from xcap_server failed; using the cached copy');
    }
  }

  /**
   * A presentity's rules changed: re-evaluate the watchers of `event`. The pres-rules document
   * also decides who may see the watcher info and which waiting watchers are rejected, so for
   * `presence` its presence.winfo subscribers and waiting entries are re-evaluated too, from the
   * same decisions. Resolves with how many changed.
   */
  async reevaluateWatchers(presentityUri: string, event: string): Promise<number> {
    const decisions = this.decisions(presentityUri);
    let changed = await this.reevaluate(presentityUri, event, decisions);
    if (event === 'presence') {
      changed += await this.reevaluate(presentityUri, 'presence.winfo', decisions);
      // Other packages the same document authorises (dialog with dialog_authorization = 1).
      for (const pkg of this.deps.packages.all())
        if (pkg.consultsRules && pkg.name !== event) changed += await this.reevaluate(presentityUri, pkg.name, decisions);
      const presence = this.deps.packages.get('presence');
      if (presence)
        changed += await this.deps.watcherInfo.reevaluate(
          presentityUri,
          async (aor) => (await this.evaluate(presentityUri, aor, presence, decisions)).handling,
        );
    }
    return changed;
  }

  /** Re-run authorisation for a presentity's watchers of one package and NOTIFY those whose state changed. */
  private async reevaluate(presentityUri: string, event: string, decisions: Decisions): Promise<number> {
    const { packages, subscriptions, notifier, config } = this.deps;
    const pkg = packages.get(event);
    if (!pkg) return 0;
    let changed = 0;
    for (const sub of [...subscriptions.watchersOf(presentityUri, event)]) {
      const rec = sub.record;
      const auth = await this.evaluate(presentityUri, uriAor(rec.watcherUri), pkg, decisions);
      if (auth.handling === rec.subHandling && auth.bodyKey === sub.bodyKey) continue;
      changed++;
      if (auth.handling === 'block' || (auth.handling === 'confirm' && rec.state === 'active')) {
        rec.subHandling = auth.handling;
        await subscriptions.terminate(sub, pkg.revokedReason(auth.handling, config));
        continue;
      }
      await subscriptions.authorize(sub, auth.handling, auth.bodyKey);
      notifier.schedule(sub, { kind: 'state' });
    }
    return changed;
  }
}
