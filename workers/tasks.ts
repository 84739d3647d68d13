/**
 * Every task a worker runs, by name. Payloads carry keys where the data is in the store
 * (the worker reads the same LMDB environment), and strings where it is not.
 */
import { limits, readStore } from './context.js';
import { validatePidf, validateRoot, composePidf, checkBasic, checkActivities, type Checked } from './pidf.js';
import { xcapTasks } from './xcap.js';
import { composeDialogInfo } from './dialog.js';
import { composeDialogDocument, validateDialogInfo, type ComposedDialogInfo, type DialogFilter } from './dialog-info.js';
import { composeReginfo } from './reginfo.js';
import { parseRlsFragment } from './rls.js';
import { evaluateRules, applyTransformations, spheresOf, type RulesOutcome, type Transformations } from './pres-rules.js';

/** A user's document of an auid: `index` (RFC 5025 §9.1, RFC 4827), else the first one in its tree. */
function userDocument(auid: string, xui: string): string | undefined {
  const store = readStore();
  const doc = store.getXcap(auid, xui, 'index') ?? store.xcapDocumentsOf(auid, xui)[0];
  return doc ? Buffer.from(doc.body).toString('utf8') : undefined;
}

const rulesDocument = (presentityUri: string): string | undefined => userDocument('pres-rules', presentityUri);

/**
 * The documents a presentity's state is composed from, newest publication first; for presence
 * its pidf-manipulation document (RFC 4827, hard state set over XCAP) comes last.
 */
function bodiesOf(presentityUri: string, event: string): string[] {
  const pubs = readStore().publicationsOf(presentityUri, event);
  pubs.sort((a, b) => b.receivedAt - a.receivedAt);
  const out = pubs.map((p) => Buffer.from(p.body).toString('utf8'));
  const hard = event === 'presence' ? userDocument('pidf-manipulation', presentityUri) : undefined;
  if (hard !== undefined) out.push(hard);
  return out;
}

/** A presentity's publications of an event as text with their arrival time. */
function publicationsOf(presentityUri: string, event: string): Array<{ body: string; receivedAt: number }> {
  return readStore()
    .publicationsOf(presentityUri, event)
    .map((p) => ({ body: Buffer.from(p.body).toString('utf8'), receivedAt: p.receivedAt }));
}

const coreTasks = {
  'pidf.validate': (p: { xml: string }): Checked => validatePidf(p.xml, limits()),
  'xml.validateRoot': (p: { xml: string; root: string; ns: string }): Checked => validateRoot(p.xml, limits(), p.root, p.ns),
  /** Compose the presentity's current PIDF from the store. */
  'pidf.compose': (p: { presentityUri: string; event: string; dummy: boolean }): string =>
    composePidf({ presentityUri: p.presentityUri, bodies: bodiesOf(p.presentityUri, p.event), dummy: p.dummy }, limits()),
  'pidf.composeBodies': (p: { presentityUri: string; bodies: string[]; dummy: boolean }): string => composePidf(p, limits()),
  'dialog.compose': (p: { presentityUri: string; event: string; versionSlot: string }): string =>
    composeDialogInfo(p.presentityUri, bodiesOf(p.presentityUri, p.event), p.versionSlot, limits()),
  'dialoginfo.validate': (p: { xml: string }): Checked => validateDialogInfo(p.xml, limits()),
  /** `dialog` (RFC 4235): every publication's dialogs, terminated ones once (see workers/dialog-info.ts). */
  'dialoginfo.compose': (p: {
    presentityUri: string;
    versionSlot: string;
    forceSingle: boolean;
    forceDummy: boolean;
    gone: string[];
  }): ComposedDialogInfo => composeDialogDocument(p.presentityUri, publicationsOf(p.presentityUri, 'dialog'), p.versionSlot, p, limits()),
  /** A composed `dialog` document narrowed to the dialog an RFC 4235 §3.2 subscription names. */
  'dialoginfo.view': (p: { presentityUri: string; xml: string; versionSlot: string; filter: DialogFilter }): string =>
    composeDialogDocument(
      p.presentityUri,
      [{ body: p.xml.split(p.versionSlot).join('0'), receivedAt: 0 }],
      p.versionSlot,
      { forceSingle: false, forceDummy: false, gone: [], filter: p.filter },
      limits(),
    ).body,
  /** `reg` (RFC 3680): registrations merged per address of record. */
  'reginfo.compose': (p: { presentityUri: string; versionSlot: string }): string =>
    composeReginfo(publicationsOf(p.presentityUri, 'reg'), p.versionSlot, limits()),
  'rules.evaluate': (p: { presentityUri: string; watcherUri: string }): RulesOutcome => {
    const rulesXml = rulesDocument(p.presentityUri);
    const spheres =
      rulesXml !== undefined && rulesXml.includes('sphere')
        ? spheresOf(
            composePidf({ presentityUri: p.presentityUri, bodies: bodiesOf(p.presentityUri, 'presence'), dummy: false }, limits()),
            limits(),
          )
        : [];
    return evaluateRules({ rulesXml, watcherUri: p.watcherUri, spheres, now: Date.now() }, limits());
  },
  'rules.transform': (p: { xml: string; transformations: Transformations }): string =>
    applyTransformations(p.xml, p.transformations, limits()),
  /** RFC 4826: a <service>, or a <list> / <entry> a reference selected (the list server follows references itself). */
  'rls.parse': parseRlsFragment,
  'pidf.checkBasic': (p: { presentityUri: string; status: string }): number =>
    checkBasic(bodiesOf(p.presentityUri, 'presence'), p.status, limits()),
  'pidf.checkActivities': (p: { presentityUri: string; activity: string }): number =>
    checkActivities(bodiesOf(p.presentityUri, 'presence'), p.activity, limits()),
};

const tasks = { ...coreTasks, ...xcapTasks };

type Tasks = typeof tasks;
export type TaskName = keyof Tasks;
export type TaskPayload<N extends TaskName> = Parameters<Tasks[N]>[0];
export type TaskResult<N extends TaskName> = ReturnType<Tasks[N]>;
export interface TaskRequest {
  name: string;
  payload: unknown;
}

export function runTask(req: TaskRequest): unknown {
  const fn = (tasks as Record<string, (p: unknown) => unknown>)[req.name];
  if (!fn) throw new Error(`unknown worker task ${req.name}`);
  return fn(req.payload);
}
