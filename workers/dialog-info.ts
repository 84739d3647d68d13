/**
 * `dialog` (RFC 4235) composition: the dialogs of every live publication of a presentity in
 * one full-state dialog-info document, as Kamailio's presence_dialoginfo aggregates them, with
 * two rules that keep a busy lamp from sticking:
 *
 * - One dialog seen in several publications is shown once. A dialog is its `id` (RFC 4235
 *   §4.1.1) with its `call-id`: phones that number their dialogs 1, 2, ... use an id again
 *   for the next call, which has a Call-ID of its own.
 *   `terminated` is final (RFC 4235 §3.7.1, the state machine has no way out of it): if any
 *   live publication has the dialog terminated, it is terminated, whatever order the
 *   PUBLISHes arrived in. Otherwise the copy from the document with the highest dialog-info
 *   `version` wins (pua_dialoginfo counts it per dialog), the newest publication on a tie.
 * - A terminated dialog is notified once: the caller passes the ids of dialogs already shown
 *   terminated (`gone`), and they leave the document, as does any later copy of them in
 *   another state (a PUBLISH of the 'early' state that lost a race with the hang-up).
 */
import { withDocument, elementChildren, XmlRejected, type XmlElement, type XmlLimits } from './xml.js';
import { escapeAttr, standalone, type Checked } from './pidf.js';

export const DIALOG_INFO_NS = 'urn:ietf:params:xml:ns:dialog-info';

/** presence_dialoginfo's force_single_dialog choice, most relevant first (its notify_body.c: early, confirmed, proceeding, trying, terminated). */
const RELEVANCE: Record<string, number> = { early: 5, confirmed: 4, proceeding: 3, trying: 2, terminated: 1 };

const STATES = new Set(['trying', 'proceeding', 'early', 'confirmed', 'terminated']);

/**
 * A PUBLISHed dialog-info document (RFC 4235 §4.1): root <dialog-info> in its namespace, every
 * <dialog> with an id (§4.1.1, what aggregation keys on) and one <state> of the five (§4.1.2).
 */
export function validateDialogInfo(xml: string, limits: XmlLimits): Checked {
  try {
    return withDocument(xml, limits, (doc): Checked => {
      if (doc.root.name !== 'dialog-info' || doc.root.namespaceUri !== DIALOG_INFO_NS) {
        throw new XmlRejected('invalid', `root element must be <dialog-info> in ${DIALOG_INFO_NS}`);
      }
      for (const el of elementChildren(doc.root)) {
        if (el.name !== 'dialog' || el.namespaceUri !== DIALOG_INFO_NS) continue;
        const id = el.attr('id')?.value;
        if (id === undefined || id === '') throw new XmlRejected('invalid', '<dialog> without an id (RFC 4235 §4.1.1)');
        const state = stateOf(el);
        if (!STATES.has(state))
          throw new XmlRejected(
            'invalid',
            `<dialog id="${id.slice(0, 40)}"> needs a <state> of trying, proceeding, early, confirmed or terminated (RFC 4235 §4.1.2)`,
          );
      }
      return { ok: true };
    });
  } catch (err) {
    if (err instanceof XmlRejected) return { ok: false, kind: err.kind, reason: err.message };
    throw err;
  }
}

/** RFC 4235 §3.2 Event header parameters naming one dialog. */
export interface DialogFilter {
  callId: string;
  fromTag?: string;
  toTag?: string;
}

export interface DialogComposeOptions {
  /** presence_dialoginfo force_single_dialog: only the most relevant dialog. */
  forceSingle: boolean;
  /** presence_dialoginfo force_dummy_dialog: a terminated dialog when there is none. */
  forceDummy: boolean;
  /** Dialogs (keys: id NUL call-id) already notified as terminated: left out, whatever state a publication shows. */
  gone: string[];
  filter?: DialogFilter;
}

export interface DialogPublication {
  body: string;
  receivedAt: number;
}

export interface ComposedDialogInfo {
  body: string;
  /** Keys (id NUL call-id) of the dialogs this document shows as terminated (the caller records them as gone). */
  terminated: string[];
}

interface Candidate {
  /** The dialog's identity across publications: its id with its call-id (see key()). */
  key: string;
  id: string;
  xml: string;
  state: string;
  version: number;
  receivedAt: number;
  callId: string;
  localTag: string;
  remoteTag: string;
}

function stateOf(dialog: XmlElement): string {
  for (const c of elementChildren(dialog)) {
    if (c.name === 'state' && c.namespaceUri === DIALOG_INFO_NS) return c.content.trim().toLowerCase();
  }
  return '';
}

/** The `<dialog>` elements of one published document (an unreadable one contributes none). */
function candidatesOf(pub: DialogPublication, limits: XmlLimits, out: Candidate[]): void {
  try {
    withDocument(pub.body, limits, (doc) => {
      const inherited = { ...doc.root.namespaces };
      const v = Number(doc.root.attr('version')?.value ?? '0');
      const version = Number.isSafeInteger(v) && v >= 0 ? v : 0;
      for (const el of elementChildren(doc.root)) {
        if (el.name !== 'dialog' || el.namespaceUri !== DIALOG_INFO_NS) continue;
        const callId = el.attr('call-id')?.value ?? '';
        const localTag = el.attr('local-tag')?.value ?? '';
        const remoteTag = el.attr('remote-tag')?.value ?? '';
        const id = el.attr('id')?.value ?? `${callId};${localTag};${remoteTag}`;
        out.push({
          key: `${id}\u0000${callId}`,
          id,
          xml: standalone(el, inherited),
          state: stateOf(el),
          version,
          receivedAt: pub.receivedAt,
          callId,
          localTag,
          remoteTag,
        });
      }
    });
  } catch (err) {
    if (!(err instanceof XmlRejected)) throw err;
  }
}

/** Does a dialog match the RFC 4235 §3.2 parameters (tags compared with either end, the subscriber may be on either side)? */
function matches(c: Candidate, f: DialogFilter): boolean {
  if (c.callId !== f.callId) return false;
  const tags = [c.localTag, c.remoteTag];
  if (f.fromTag !== undefined && !tags.includes(f.fromTag)) return false;
  if (f.toTag !== undefined && !tags.includes(f.toTag)) return false;
  return true;
}

export function composeDialogDocument(
  presentityUri: string,
  pubs: DialogPublication[],
  versionSlot: string,
  opts: DialogComposeOptions,
  limits: XmlLimits,
): ComposedDialogInfo {
  const all: Candidate[] = [];
  // Newest first, so the first copy met wins a tie.
  const ordered = pubs.slice().sort((a, b) => b.receivedAt - a.receivedAt);
  for (const p of ordered) candidatesOf(p, limits, all);

  const gone = new Set(opts.gone);
  const chosen = new Map<string, Candidate>();
  for (const c of all) {
    if (gone.has(c.key)) continue;
    const cur = chosen.get(c.key);
    if (cur === undefined) chosen.set(c.key, c);
    else if (cur.state === 'terminated') continue;
    else if (c.state === 'terminated' || c.version > cur.version) chosen.set(c.key, c);
  }

  let shown = [...chosen.values()];
  if (opts.filter) {
    const f = opts.filter;
    shown = shown.filter((c) => matches(c, f));
  }
  if (opts.forceSingle && shown.length > 1) {
    let best = shown[0]!;
    for (const c of shown) if ((RELEVANCE[c.state] ?? 0) > (RELEVANCE[best.state] ?? 0)) best = c;
    shown = [best];
  }
  let dialogs = shown.map((c) => c.xml).join('');
  if (shown.length === 0 && opts.forceDummy && !opts.filter) {
    dialogs = `<dialog id="presenced-dummy" direction="recipient"><state>terminated</state></dialog>`;
  }
  return {
    body:
      `<?xml version="1.0" encoding="UTF-8"?>\n<dialog-info xmlns="${DIALOG_INFO_NS}" version="${versionSlot}" state="full" entity="${escapeAttr(presentityUri)}">` +
      dialogs +
      '</dialog-info>\n',
    // Every terminated dialog composed is recorded, shown or not (a filtered or single view
    // hid it): the next document has it gone for all views alike.
    terminated: [...chosen.values()].filter((c) => c.state === 'terminated').map((c) => c.key),
  };
}
