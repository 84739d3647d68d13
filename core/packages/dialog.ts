/**
 * `dialog` (RFC 4235): the busy-lamp field. Every live publication's dialogs (pua_dialoginfo
 * PUBLISHes one document per call) are composed into one full dialog-info document, in a
 * worker (workers/dialog-info.ts); `version` counts per subscription (RFC 4235 §4.1).
 *
 * No stuck lamps: a dialog is notified in state terminated once, then leaves the document.
 * The package remembers which dialogs (id and call-id) it has composed as terminated (`gone`), per
 * presentity, for as long as a publication can live (max_expires + expires_offset); a copy
 * of such a dialog in any state (an 'early' PUBLISH that lost its race with the hang-up and
 * arrives after it, as a new publication or left over in an older one) stays out. Within
 * that window a terminated dialog cannot come back; past it, the publication that carried it
 * has expired too. The memory is the node's, not the store's: after a restart a terminated
 * dialog still published is notified once more (a lamp off, never on).
 *
 * Authorisation: none by default, as Kamailio's presence_dialoginfo; `dialog_authorization`
 * = 1 applies the presentity's pres-rules sub-handling to dialog watchers.
 */
import type { EventPackage, PackageContext } from './types.js';
import {
  VERSION_SLOT,
  allowEveryone,
  userdelReason,
  type AuthorizationRequest,
  type AuthorizationOutcome,
  type SubHandling,
} from './types.js';
import type { Config } from '../config.js';
import type { DialogFilter } from '../../workers/dialog-info.js';

export const DIALOG_INFO_NS = 'urn:ietf:params:xml:ns:dialog-info';

/** Terminated dialogs (id NUL call-id) per presentity, each kept until a deadline; pruned in arrival order. */
export class GoneDialogs {
  private readonly byPresentity = new Map<string, Map<string, number>>();
  /** [presentity, dialog id, deadline] in the order recorded (deadlines grow with it). */
  private readonly order: Array<[string, string, number]> = [];
  private head = 0;

  constructor(private readonly keepMs: number) {}

  record(presentityUri: string, ids: string[], now = Date.now()): void {
    this.prune(now);
    if (ids.length === 0) return;
    let m = this.byPresentity.get(presentityUri);
    if (!m) this.byPresentity.set(presentityUri, (m = new Map()));
    for (const id of ids) {
      if (m.has(id)) continue;
      const until = now + this.keepMs;
      m.set(id, until);
      this.order.push([presentityUri, id, until]);
    }
  }

  of(presentityUri: string, now = Date.now()): string[] {
    this.prune(now);
    const m = this.byPresentity.get(presentityUri);
    return m ? [...m.keys()] : [];
  }

  get size(): number {
    return this.order.length - this.head;
  }

  private prune(now: number): void {
    while (this.head < this.order.length && this.order[this.head]![2] <= now) {
      const [uri, id] = this.order[this.head++]!;
      const m = this.byPresentity.get(uri);
      if (m) {
        m.delete(id);
        if (m.size === 0) this.byPresentity.delete(uri);
      }
    }
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
  }
}

export function createDialogPackage(config: Config): EventPackage {
  const gone = new GoneDialogs((config.max_expires + config.expires_offset) * 1000);
  return {
    name: 'dialog',
    publishTypes: ['application/dialog-info+xml'],
    notifyType: 'application/dialog-info+xml',
    // dialog_authorization = 1: the presentity's pres-rules sub-handling decides, as for presence;
    // RFC 5025 transformations are of PIDF, so the whole document or nothing (no body key).
    consultsRules: config.dialog_authorization === 1,
    authorize:
      config.dialog_authorization === 1
        ? async (req: AuthorizationRequest): Promise<AuthorizationOutcome> => {
            if (req.config.force_active === 1) return { handling: 'allow', bodyKey: '' };
            if (!req.rules) return { handling: 'confirm', bodyKey: '' };
            return { handling: (await req.rules()).handling, bodyKey: '' };
          }
        : allowEveryone,
    // As presence: a watcher a rule now blocks is rejected (RFC 6665 §4.2.2), one whose rule is gone gets xcapauth_userdel_reason.
    revokedReason: (handling: SubHandling, cfg: Config) => (handling === 'block' ? 'rejected' : userdelReason(handling, cfg)),
    versioned: true,
    async validate(body: string, ctx: PackageContext) {
      const r = await ctx.pool.run('dialoginfo.validate', { xml: body });
      return r.ok ? undefined : r.reason;
    },
    // RFC 4235 §3.2: a subscription naming a dialog (call-id, and optionally its tags) sees only that dialog.
    viewOf(params: Map<string, string>) {
      const callId = params.get('call-id');
      if (callId === undefined || callId === '') return '';
      return JSON.stringify({ callId, fromTag: params.get('from-tag'), toTag: params.get('to-tag') });
    },
    async viewBody(presentityUri: string, body: string, view: string, ctx: PackageContext) {
      return ctx.pool.run('dialoginfo.view', {
        presentityUri,
        xml: body,
        versionSlot: VERSION_SLOT,
        filter: JSON.parse(view) as DialogFilter,
      });
    },
    // RFC 5025 §3.2.1 polite-block: a valid document that shows no dialog.
    substituteBody(handling: string, presentityUri: string) {
      if (handling !== 'polite-block') return undefined;
      return (
        `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" version="${VERSION_SLOT}" state="full" entity="` +
        presentityUri.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;') +
        '"></dialog-info>\n'
      );
    },
    async compose(presentityUri: string, ctx: PackageContext) {
      const r = await ctx.pool.run('dialoginfo.compose', {
        presentityUri,
        versionSlot: VERSION_SLOT,
        forceSingle: ctx.config.force_single_dialog === 1,
        forceDummy: ctx.config.force_dummy_dialog === 1,
        gone: gone.of(presentityUri),
      });
      // An operator's look (ctx.preview) shows what a watcher would get now and uses nothing up.
      if (ctx.preview) return r.body;
      gone.record(presentityUri, r.terminated);
      // This document shows a terminated dialog for the last time: the NOTIFYs of this change
      // share it (each took the body before it resolved), the next NOTIFY (a refresh, a new
      // watcher) gets a fresh one without it.
      if (r.terminated.length > 0) ctx.stale(presentityUri, 'dialog');
      return r.body;
    },
  };
}
