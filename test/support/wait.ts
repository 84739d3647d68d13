/**
 * How long a test waits for an event (a response, a NOTIFY, a log line, a client's output)
 * before it fails. It is a backstop against a hang, never a margin a test depends on: a test
 * waits for the event itself, and on a loaded machine (two cores shared with other work) an
 * event may take seconds. Helpers take a caller's timeout as "at least this long": no caller
 * may rely on a wait timing out, so a short one given where the author expected the event
 * soon is lifted to this.
 */
export const EVENT_WAIT_MS = Number(process.env.PRESENCED_TEST_WAIT_MS ?? 60_000);

/** The time to wait for an event: the caller's timeout, at least EVENT_WAIT_MS. */
export function backstop(timeoutMs?: number): number {
  return Math.max(timeoutMs ?? 0, EVENT_WAIT_MS);
}
