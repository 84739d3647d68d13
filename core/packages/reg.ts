/**
 * `reg` (RFC 3680): registration state, as Kamailio's pua_reginfo PUBLISHes it from usrloc and
 * presence_reginfo serves it. All live publications of the presentity are merged per address
 * of record into one full reginfo document (workers/reginfo.ts); `version` counts per
 * subscription (RFC 3680 §5.1). No authorisation, as presence_reginfo.
 */
import type { EventPackage, PackageContext } from './types.js';
import { VERSION_SLOT, allowEveryone, userdelReason } from './types.js';

export const REGINFO_NS = 'urn:ietf:params:xml:ns:reginfo';

export const regPackage: EventPackage = {
  name: 'reg',
  publishTypes: ['application/reginfo+xml'],
  notifyType: 'application/reginfo+xml',
  authorize: allowEveryone,
  revokedReason: userdelReason,
  versioned: true,
  async validate(body: string, ctx: PackageContext) {
    const r = await ctx.pool.run('xml.validateRoot', { xml: body, root: 'reginfo', ns: REGINFO_NS });
    return r.ok ? undefined : r.reason;
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    return ctx.pool.run('reginfo.compose', { presentityUri, versionSlot: VERSION_SLOT });
  },
};
