/**
 * Watcher authorisation. With force_active = 1, or for packages that need none, every watcher
 * is allowed. Otherwise the presentity's pres-rules document decides (RFC 4745/5025, see
 * pres-rules.ts); with no document or no matching rule the watcher is `confirm`: pending.
 */
import type { Authorizer, AuthorizationOutcome } from '../subscriptions.js';
import type { EventPackage } from '../packages/types.js';
import type { Config } from '../config.js';

export type RulesEvaluator = (presentityUri: string, watcherUri: string) => Promise<AuthorizationOutcome>;

export class PresenceAuthorizer implements Authorizer {
  constructor(
    private readonly config: Config,
    private readonly rules: RulesEvaluator | undefined,
  ) {}

  async evaluate(presentityUri: string, watcherUri: string, pkg: EventPackage): Promise<AuthorizationOutcome> {
    // RFC 3857 §5.1: a presentity may always watch its own watchers; others are refused.
    if (pkg.name === 'presence.winfo') return { handling: watcherUri === presentityUri ? 'allow' : 'block', bodyKey: '' };
    if (!pkg.needsAuthorization || this.config.force_active === 1) return { handling: 'allow', bodyKey: '' };
    if (!this.rules) return { handling: 'confirm', bodyKey: '' };
    return this.rules(presentityUri, watcherUri);
  }
}
