/**
 * `presence` (RFC 3856) with PIDF bodies (RFC 3863): every live publication of the
 * presentity composed into one document (workers/pidf.ts), authorised by pres-rules
 * (RFC 5025), with the presentity's pidf-manipulation document (RFC 4827) as hard state.
 */
import type { EventPackage, PackageContext, AuthorizationRequest, AuthorizationOutcome, SubHandling } from './types.js';
import type { Config } from '../config.js';

/** Body a polite-blocked watcher sees (RFC 5025 §3.2.1): a valid document that reveals nothing. */
function politeBlockBody(presentityUri: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="' +
    presentityUri.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;') +
    '"><tuple id="polite-block"><status><basic>closed</basic></status></tuple></presence>\n'
  );
}

export const presencePackage: EventPackage = {
  name: 'presence',
  publishTypes: ['application/pidf+xml'],
  notifyType: 'application/pidf+xml',
  versioned: false,
  stateDocuments: ['pidf-manipulation'],
  async validate(body: string, ctx: PackageContext) {
    const r = await ctx.pool.run('pidf.validate', { xml: body });
    return r.ok ? undefined : r.reason;
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    const dummy = ctx.config.force_dummy_presence === 1;
    if (ctx.pool.threads === 0) {
      // On the main thread: the publications held in memory, no store read and decode.
      const hard =
        ctx.store.getXcap('pidf-manipulation', presentityUri, 'index') ?? ctx.store.xcapDocumentsOf('pidf-manipulation', presentityUri)[0];
      const bodies = ctx
        .publications(presentityUri, 'presence')
        .map((p) => Buffer.from(p.body.buffer, p.body.byteOffset, p.body.byteLength).toString('utf8'));
      if (hard) bodies.push(Buffer.from(hard.body).toString('utf8'));
      return ctx.pool.runHere('pidf.composeBodies', { presentityUri, bodies, dummy });
    }
    return ctx.pool.run('pidf.compose', { presentityUri, event: 'presence', dummy });
  },
  // force_active = 1: every watcher allowed; else pres-rules decide (no matching rule: confirm, pending).
  async authorize(req: AuthorizationRequest): Promise<AuthorizationOutcome> {
    if (req.config.force_active === 1) return { handling: 'allow', bodyKey: '' };
    if (!req.rules) return { handling: 'confirm', bodyKey: '' };
    const d = await req.rules();
    return { handling: d.handling, bodyKey: d.bodyKey };
  },
  // A rule that now blocks the watcher: "rejected" (RFC 6665 §4.2.2, a change in authorisation
  // policy; Kamailio's xcap_auth does the same). An allowed watcher whose rule is gone:
  // xcapauth_userdel_reason (the seed's case, "a rule is no longer found").
  revokedReason(handling: SubHandling, config: Config) {
    return handling === 'block' ? 'rejected' : config.xcapauth_userdel_reason;
  },
  substituteBody(handling: string, presentityUri: string) {
    return handling === 'polite-block' ? politeBlockBody(presentityUri) : undefined;
  },
};
