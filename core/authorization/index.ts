/**
 * Watcher authorisation. With force_active = 1, or for packages that need none, every watcher
 * is allowed. Otherwise the presentity's pres-rules document decides (RFC 4745/5025, see
 * pres-rules.ts); with no document or no matching rule the watcher is `confirm`: pending.
 *
 * presence.winfo (RFC 3857 §5.1): the presentity may always watch its own watchers; anyone
 * else needs a rule of the same document granting `<wr:winfo-handling>allow` (presenced's
 * extension, README "XCAP"), otherwise 403.
 */
import type { Authorizer, AuthorizationOutcome } from '../subscriptions.js';
import type { EventPackage } from '../packages/types.js';
import type { Config } from '../config.js';
import type { WinfoHandling } from '../../workers/pres-rules.js';

/** One evaluation of the rules for a watcher: its presence outcome and its watcher-info permission. */
export interface RulesDecision extends AuthorizationOutcome {
  winfoHandling: WinfoHandling;
}

export type RulesEvaluator = (presentityUri: string, watcherUri: string) => Promise<RulesDecision>;

export class PresenceAuthorizer implements Authorizer {
  constructor(
    private readonly config: Config,
    private readonly rules: RulesEvaluator | undefined,
  ) {}

  async evaluate(presentityUri: string, watcherUri: string, pkg: EventPackage): Promise<AuthorizationOutcome> {
    if (pkg.name === 'presence.winfo') {
      if (sameAor(watcherUri, presentityUri)) return { handling: 'allow', bodyKey: '' };
      if (!this.rules) return { handling: 'block', bodyKey: '' };
      const d = await this.rules(presentityUri, watcherUri);
      return { handling: d.winfoHandling === 'allow' ? 'allow' : 'block', bodyKey: '' };
    }
    if (!pkg.needsAuthorization || this.config.force_active === 1) return { handling: 'allow', bodyKey: '' };
    if (!this.rules) return { handling: 'confirm', bodyKey: '' };
    const d = await this.rules(presentityUri, watcherUri);
    // RFC 5025 transformations are of PIDF: other packages (dialog_authorization) take the sub-handling only.
    return { handling: d.handling, bodyKey: pkg.name === 'presence' ? d.bodyKey : '' };
  }
}

/** The same address of record whether it is written sip: or sips: (presentity URIs are kept as sip:). */
function sameAor(a: string, b: string): boolean {
  return a.replace(/^sips?:/i, '') === b.replace(/^sips?:/i, '');
}
