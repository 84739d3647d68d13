/**
 * What a task needs besides its payload: XML limits and read access to the store. Set once
 * per thread (piscina workerData, or by the pool when tasks run on the main thread).
 */
import { Store } from '../core/store/store.js';
import { DEFAULT_XML_LIMITS, type XmlLimits } from './xml.js';

export interface WorkerSettings {
  dbPath: string;
  xcapTable: string;
  limits: XmlLimits;
}

let settings: WorkerSettings | undefined;
let store: Store | undefined;

export function configureWorker(s: WorkerSettings, existingStore?: Store): void {
  settings = s;
  if (existingStore) store = existingStore;
}

export function limits(): XmlLimits {
  return settings?.limits ?? DEFAULT_XML_LIMITS;
}

let ownStore = false;

/**
 * Read access to the node's LMDB environment (opened read-only in worker threads). A worker
 * thread renews its read snapshot on every call, so it sees what the main thread committed
 * before sending the task.
 */
export function readStore(): Store {
  if (!store) {
    if (!settings) throw new Error('worker not configured');
    store = Store.open(settings.dbPath, settings.xcapTable, { readOnly: true });
    ownStore = true;
  } else if (ownStore) store.env.resetReadTxn();
  return store;
}

/**
 * After a task: give the read snapshot back. An idle worker holding one would keep LMDB from
 * reusing any page written since (measured: the default pool cost ~6 KB more per subscription
 * than workers 0, the data file growing under a stale reader).
 */
export function releaseSnapshot(): void {
  if (ownStore && store) store.env.resetReadTxn();
}
