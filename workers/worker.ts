/**
 * piscina entry point: one module per worker thread; `{ name, payload }` selects a task.
 */
import { workerData } from 'node:worker_threads';
import { configureWorker, releaseSnapshot, type WorkerSettings } from './context.js';
import { runTask, type TaskRequest } from './tasks.js';

configureWorker(workerData as WorkerSettings);

export default function run(req: TaskRequest): unknown {
  try {
    return runTask(req);
  } finally {
    releaseSnapshot();
  }
}
