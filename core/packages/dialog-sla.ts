/**
 * `dialog;sla` — Bridged Line Appearances (draft-anil-sipping-bla) over dialog-info (RFC 4235),
 * enabled by disable_bla = 0. Every line appearance published for the shared line is merged
 * into one full dialog-info document; the version attribute is per subscription.
 */
import type { EventPackage, PackageContext } from './types.js';
import { VERSION_SLOT, allowEveryone, userdelReason } from './types.js';

export const DIALOG_INFO_NS = 'urn:ietf:params:xml:ns:dialog-info';

export const dialogSlaPackage: EventPackage = {
  name: 'dialog;sla',
  publishTypes: ['application/dialog-info+xml'],
  notifyType: 'application/dialog-info+xml',
  authorize: allowEveryone,
  revokedReason: userdelReason,
  versioned: true,
  async validate(body: string, ctx: PackageContext) {
    const r = await ctx.pool.run('xml.validateRoot', { xml: body, root: 'dialog-info', ns: DIALOG_INFO_NS });
    return r.ok ? undefined : r.reason;
  },
  async compose(presentityUri: string, ctx: PackageContext) {
    return ctx.pool.run('dialog.compose', { presentityUri, event: 'dialog;sla', versionSlot: VERSION_SLOT });
  },
};
