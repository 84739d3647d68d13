/**
 * The application usages this XCAP server serves (RFC 4825 §5): for each auid its MIME type,
 * its default document namespace (§5.2), the XML schema set its documents are validated
 * against in the worker (workers/schemas/, §5.3) with the root element it must have, and the
 * uniqueness constraints no schema expresses (§5.4).
 */
import type { UsageRules } from '../../workers/xcap.js';

import { NS } from '../../workers/namespaces.js';

export { NS };

/** Bodies of element and attribute requests (RFC 4825 §7.4, §7.7). */
export const XCAP_EL_TYPE = 'application/xcap-el+xml';
export const XCAP_ATT_TYPE = 'application/xcap-att+xml';

export interface AppUsage {
  auid: string;
  mimeType: string;
  /** Default document namespace (RFC 4825 §5.2). */
  defaultNamespace: string;
  rules: UsageRules;
  /** The namespaces the usage's schema set validates (listed in xcap-caps). */
  namespaces: string[];
  /** Server-generated, read-only (xcap-caps). */
  readOnly: boolean;
  /** Whether users' trees exist (xcap-caps has only a global tree). */
  userTrees: boolean;
  /** The global tree is one document, `index`, that the server composes from users' documents (rls-services). */
  composedGlobalIndex: boolean;
}

function usage(
  auid: string,
  mimeType: string,
  defaultNamespace: string,
  namespaces: string[],
  rules: Omit<UsageRules, 'defaultNamespaces'>,
  opts: { readOnly?: boolean; userTrees?: boolean; composedGlobalIndex?: boolean } = {},
): AppUsage {
  // An unprefixed name in a node selector means the default document namespace (RFC 4825
  // §6.3); like Kamailio's xcap_server, it also matches the namespace of the document's root,
  // so `/ruleset/rule[@id="a"]` works on a pres-rules document without an xmlns() binding.
  const defaultNamespaces = [...new Set([defaultNamespace, rules.root.ns])];
  return {
    auid,
    mimeType,
    defaultNamespace,
    namespaces,
    rules: { ...rules, defaultNamespaces },
    readOnly: opts.readOnly ?? false,
    userTrees: opts.userTrees ?? true,
    composedGlobalIndex: opts.composedGlobalIndex ?? false,
  };
}

/** In the order xcap-caps lists them. */
export const APP_USAGES: AppUsage[] = [
  usage(
    'xcap-caps',
    'application/xcap-caps+xml',
    NS.xcapCaps,
    [NS.xcapCaps],
    { root: { ns: NS.xcapCaps, local: 'xcap-caps' }, schema: 'xcap-caps' },
    { readOnly: true, userTrees: false },
  ),
  // RFC 5025 §4 (imports RFC 4745 §13): root <ruleset>; rule ids are xs:ID, so the schema
  // itself refuses a duplicate.
  usage('pres-rules', 'application/auth-policy+xml', NS.presRules, [NS.commonPolicy, NS.presRules], {
    root: { ns: NS.commonPolicy, local: 'ruleset' },
    schema: 'pres-rules',
  }),
  // RFC 4826 §3.2 schema; §3.4.5: list names, entry URIs, entry-ref refs and external anchors
  // unique among siblings.
  usage('resource-lists', 'application/resource-lists+xml', NS.resourceLists, [NS.resourceLists], {
    root: { ns: NS.resourceLists, local: 'resource-lists' },
    schema: 'resource-lists',
    unique: [
      { ns: NS.resourceLists, local: 'list', attr: 'name', scope: 'siblings' },
      { ns: NS.resourceLists, local: 'entry', attr: 'uri', scope: 'siblings' },
      { ns: NS.resourceLists, local: 'entry-ref', attr: 'ref', scope: 'siblings' },
      { ns: NS.resourceLists, local: 'external', attr: 'anchor', scope: 'siblings' },
    ],
  }),
  // RFC 4826 §4.2 schema; §4.4.5: service URIs unique in the document here, and across every
  // user's documents in the server (core/xcap/rls-services.ts); §4.4.7: the global index.
  usage(
    'rls-services',
    'application/rls-services+xml',
    NS.rlsServices,
    [NS.rlsServices, NS.resourceLists],
    {
      root: { ns: NS.rlsServices, local: 'rls-services' },
      schema: 'rls-services',
      unique: [{ ns: NS.rlsServices, local: 'service', attr: 'uri', scope: 'document' }],
    },
    { composedGlobalIndex: true },
  ),
  // RFC 4827: a PIDF document (RFC 3863 §4.4 schema; tuple ids are xs:ID).
  usage('pidf-manipulation', 'application/pidf+xml', NS.pidf, [NS.pidf], {
    root: { ns: NS.pidf, local: 'presence' },
    schema: 'pidf',
  }),
];

export const USAGE_BY_AUID: ReadonlyMap<string, AppUsage> = new Map(APP_USAGES.map((u) => [u.auid, u]));

/**
 * The xcap-caps document (RFC 4825 §12): the auids served, no extensions, and the namespaces
 * this server understands: those of the schemas it validates against, and xcap-error.
 */
export function xcapCapsDocument(): string {
  // What the schemas define, plus presenced's winfo-rules extension of pres-rules (README "XCAP").
  const namespaces = [...new Set([NS.xcapCaps, NS.xcapError, ...APP_USAGES.flatMap((u) => u.namespaces), NS.winfoRules])];
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<xcap-caps xmlns="${NS.xcapCaps}">\n` +
    '  <auids>\n' +
    APP_USAGES.map((u) => `    <auid>${u.auid}</auid>\n`).join('') +
    '  </auids>\n' +
    '  <extensions/>\n' +
    '  <namespaces>\n' +
    namespaces.map((n) => `    <namespace>${n}</namespace>\n`).join('') +
    '  </namespaces>\n' +
    '</xcap-caps>\n'
  );
}
