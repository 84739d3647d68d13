/**
 * `presence` (RFC 3856) with PIDF bodies (RFC 3863): every live publication of the
 * presentity composed into one document, in a worker (workers/pidf.ts).
 */
import type { EventPackage, PackageContext } from './types.js';

export const presencePackage: EventPackage = {
  name: 'presence',
  publishTypes: ['application/pidf+xml'],
  notifyType: 'application/pidf+xml',
  needsAuthorization: true,
  versioned: false,
  async validate(body: string, ctx: PackageContext) {
    const r = await ctx.pool.run('pidf.validate', { xml: body });
    return r.ok ? undefined : r.reason;
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    return ctx.pool.run('pidf.compose', { presentityUri, event: 'presence', dummy: ctx.config.force_dummy_presence === 1 });
  },
};
