/**
 * The XML namespaces of the documents presenced reads and writes, in one place: the worker
 * modules and the XCAP server (core/xcap/auids.ts) name them from here.
 */
export const NS = {
  commonPolicy: 'urn:ietf:params:xml:ns:common-policy',
  presRules: 'urn:ietf:params:xml:ns:pres-rules',
  resourceLists: 'urn:ietf:params:xml:ns:resource-lists',
  rlsServices: 'urn:ietf:params:xml:ns:rls-services',
  pidf: 'urn:ietf:params:xml:ns:pidf',
  dataModel: 'urn:ietf:params:xml:ns:pidf:data-model',
  rpid: 'urn:ietf:params:xml:ns:pidf:rpid',
  xcapCaps: 'urn:ietf:params:xml:ns:xcap-caps',
  xcapError: 'urn:ietf:params:xml:ns:xcap-error',
  /** presenced's pres-rules action granting watcher info (README "XCAP"). */
  winfoRules: 'urn:presenced:params:xml:ns:winfo-rules',
} as const;
