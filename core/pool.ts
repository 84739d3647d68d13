/**
 * The XML worker pool (piscina). With `worker_threads` = 0 every task runs on the main
 * thread through the same functions, so the thread boundary can be measured both ways
 * (bench/) and switched off where a round trip costs more than the work.
 *
 * DESIGN.md: a task that costs less than its message round trip stays on the main thread.
 * Sending a task to a worker costs the main thread 35-50 µs (structured clone, message,
 * promise); parsing a document costs about 40 µs per KB. So a task runs here when the XML it
 * handles is shorter than `worker_inline_max_bytes`, and in a worker otherwise: the size of the
 * document it carries (`xml`), or the caller's `sizeHint` for a task that reads its document
 * from the store (the payload carries keys only); without either, in a worker.
 */
import { Piscina } from 'piscina';
import { availableParallelism } from 'node:os';
import { configureWorker, type WorkerSettings } from '../workers/context.js';
import { runTask, type TaskName, type TaskPayload, type TaskResult } from '../workers/tasks.js';

export class WorkerPool {
  private readonly piscina: Piscina | undefined;
  readonly threads: number;

  constructor(
    settings: WorkerSettings,
    threads: number,
    /** The node's open store, which tasks on the main thread read (workers open their own). */
    store: Parameters<typeof configureWorker>[1],
    /** Tasks whose `xml` payload is shorter than this run on the main thread. */
    private readonly inlineBelow = 0,
  ) {
    // -1 = automatic: one thread per core beside the transport thread, at least one.
    this.threads = threads < 0 ? Math.max(1, Math.min(4, availableParallelism() - 1)) : threads;
    configureWorker(settings, store);
    if (this.threads > 0) {
      this.piscina = new Piscina({
        filename: new URL('../workers/worker.js', import.meta.url).href,
        minThreads: this.threads,
        maxThreads: this.threads,
        workerData: settings,
        idleTimeout: 0,
      });
    }
  }

  /**
   * Run a task here or in a worker (see above). `sizeHint`: the bytes of XML the task will read
   * from the store, when the caller knows it (the payload carries keys only).
   */
  run<N extends TaskName>(name: N, payload: TaskPayload<N>, sizeHint?: number): Promise<TaskResult<N>> {
    if (!this.piscina || (sizeHint ?? inlineSize(payload)) < this.inlineBelow) {
      try {
        return Promise.resolve(runTask({ name, payload }) as TaskResult<N>);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.piscina.run({ name, payload });
  }

  /** Run on the main thread regardless of pool size (for tasks measured cheaper than a round trip). */
  runHere<N extends TaskName>(name: N, payload: TaskPayload<N>): TaskResult<N> {
    return runTask({ name, payload }) as TaskResult<N>;
  }

  async close(): Promise<void> {
    await this.piscina?.destroy();
  }
}

/**
 * The size that decides where a task runs: its documents' length in bytes (`xml`, plus `body`
 * for an XCAP node PUT), or unknown (Infinity) for tasks that read theirs from the store.
 */
function inlineSize(payload: unknown): number {
  const { xml, body } = payload as { xml?: unknown; body?: unknown };
  if (typeof xml !== 'string') return Infinity;
  return Buffer.byteLength(xml, 'utf8') + (typeof body === 'string' ? Buffer.byteLength(body, 'utf8') : 0);
}
