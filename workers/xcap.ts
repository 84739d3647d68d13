/**
 * XCAP document work (RFC 4825): checks of PUT bodies per auid and node selectors. Filled in
 * by the XCAP server work; the table is merged into workers/tasks.ts.
 */
export const xcapTasks = {};
