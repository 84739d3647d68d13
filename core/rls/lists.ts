/**
 * Which resources a service URI stands for (RFC 4826 §4.3): the <service> of the rls-services
 * documents (their global index, §4.4.7) whose uri matches, its list flattened in document
 * order with every reference followed (<entry-ref>, <external>, <resource-list>: §3.2, §4.2),
 * each resource once (the first occurrence wins, §4.3), display names kept for RLMI <name>.
 *
 * Resolved services are cached until an rls-services or resource-lists document changes
 * (invalidate(), called by the list server on the hub's document.changed).
 */
import type { Logger } from '../log.js';
import { presentityOf } from '../uris.js';

import type { ListItem, ParsedService } from '../../workers/rls.js';

export interface ListResource {
  /** The resource as the list names it (RLMI <resource uri>). */
  uri: string;
  /** Its presentity key (the normalised AOR the node stores state under). */
  key: string;
  /** <display-name>, '' when none. */
  name: string;
}

export interface ResolvedService {
  uri: string;
  /** The XUI whose rls-services document defines it. */
  owner: string;
  /** The events the service serves (<packages>); null: every event of rls_event. */
  packages: string[] | null;
  /** The list's own <display-name>. */
  name: string;
  resources: ListResource[];
}

/** What resolution reads: the services, references into the XCAP documents, and the worker that parses. */
export interface ListSources {
  /** Every <service> of every user's rls-services document: uri and standalone XML. */
  services(): Promise<Array<{ uri: string; xml: string; owner: string }>>;
  /** The element an XCAP reference selects (core/xcap/reference.ts). */
  /** The element an XCAP reference selects, read as `owner` may (its own tree and the global ones: RFC 4825 §5.7). */
  select(ref: string, owner: string): Promise<{ ok: true; xml: string } | { ok: false; why: string }>;
  parse(xml: string, as: 'service' | 'item'): Promise<ParsedService | ListItem | null>;
}

/** References followed inside one service at most (nesting and count): a loop or a huge tree ends here. */
const MAX_REFERENCES = 64;
/** Resources of one list at most; the rest are left out, with a warning. */
export const MAX_LIST_RESOURCES = 1000;

/** Service URIs compare with scheme and host case-insensitive (RFC 3261 §19.1.4), as the XCAP server's uniqueness check does. */
export function serviceKey(uri: string): string {
  try {
    return presentityOf(uri);
  } catch {
    return uri.trim();
  }
}

/**
 * One copy of each resource's key across every list (the same contacts are in many users'
 * lists: 1,000 lists of 100 resources hold 100,000 references to a few thousand strings).
 * Bounded: past the bound, keys are kept per list as they come.
 */
const interned = new Map<string, string>();
const INTERN_MAX = 200_000;
function intern(key: string): string {
  const k = interned.get(key);
  if (k !== undefined) return k;
  if (interned.size < INTERN_MAX) interned.set(key, key);
  return key;
}

export class ServiceLists {
  private index: Promise<Map<string, { uri: string; xml: string; owner: string }>> | undefined;
  /** The index once loaded (until the next invalidate): lets isService answer without a promise. */
  private loaded: Map<string, { uri: string; xml: string; owner: string }> | undefined;
  private readonly resolved = new Map<string, Promise<ResolvedService | undefined>>();

  constructor(
    private readonly sources: ListSources,
    private readonly log: Logger,
  ) {}

  /** A document changed: everything is read again on next use. */
  invalidate(): void {
    this.index = undefined;
    this.loaded = undefined;
    this.resolved.clear();
  }

  /**
   * The XUI whose document defines the service `uri` (undefined: not a service): at once while
   * the index is loaded (every SUBSCRIBE asks), else after loading it.
   */
  ownerOf(uri: string): string | undefined | Promise<string | undefined> {
    if (this.loaded) return this.loaded.size === 0 ? undefined : this.loaded.get(serviceKey(uri))?.owner;
    return this.services().then((m) => m.get(serviceKey(uri))?.owner);
  }

  async lookup(uri: string): Promise<ResolvedService | undefined> {
    const key = serviceKey(uri);
    let r = this.resolved.get(key);
    if (!r) {
      r = this.resolve(key);
      this.resolved.set(key, r);
      r.catch(() => this.resolved.delete(key));
    }
    return r;
  }

  private services(): Promise<Map<string, { uri: string; xml: string; owner: string }>> {
    if (!this.index) {
      const p = this.sources.services().then((all) => {
        const m = new Map<string, { uri: string; xml: string; owner: string }>();
        for (const s of all) if (!m.has(serviceKey(s.uri))) m.set(serviceKey(s.uri), s);
        if (this.index === p) this.loaded = m;
        return m;
      });
      this.index = p;
      p.catch(() => {
        if (this.index === p) this.index = undefined;
      });
    }
    return this.index;
  }

  private async resolve(key: string): Promise<ResolvedService | undefined> {
    const service = (await this.services()).get(key);
    if (!service) return undefined;
    const parsed = (await this.sources.parse(service.xml, 'service')) as ParsedService | null;
    if (!parsed) {
      this.log.warn({ service: service.uri }, 'rls-services <service> does not parse: list not served');
      return undefined;
    }
    const out: ResolvedService = { uri: parsed.uri, owner: service.owner, packages: parsed.packages, name: '', resources: [] };
    const seen = new Set<string>();
    const budget = { references: MAX_REFERENCES, truncated: false };
    const ctx = { service: service.uri, owner: service.owner };
    let root: ListItem | undefined = parsed.list;
    if (!root && parsed.resourceList) root = await this.follow(parsed.resourceList, ctx, budget);
    if (root?.kind === 'list') {
      out.name = root.name;
      await this.flatten(root, out, seen, budget, ctx);
    }
    if (budget.truncated)
      this.log.warn({ service: service.uri, max: MAX_LIST_RESOURCES }, 'list longer than the list server serves: the rest is left out');
    return out;
  }

  private async follow(
    ref: string,
    ctx: { service: string; owner: string },
    budget: { references: number },
  ): Promise<ListItem | undefined> {
    const service = ctx.service;
    if (--budget.references < 0) {
      this.log.warn({ service, ref }, 'too many references in one list (a loop?): left out');
      return undefined;
    }
    const r = await this.sources.select(ref, ctx.owner);
    if (!r.ok) {
      this.log.info({ service, ref, why: r.why }, 'list reference does not resolve: left out');
      return undefined;
    }
    const item = (await this.sources.parse(r.xml, 'item')) as ListItem | null;
    return item ?? undefined;
  }

  private async flatten(
    list: Extract<ListItem, { kind: 'list' }>,
    out: ResolvedService,
    seen: Set<string>,
    budget: { references: number; truncated: boolean },
    ctx: { service: string; owner: string },
  ): Promise<void> {
    const service = ctx.service;
    for (const item of list.items) {
      if (out.resources.length >= MAX_LIST_RESOURCES) {
        budget.truncated = true;
        return;
      }
      let it: ListItem | undefined = item;
      let name = '';
      if (it.kind === 'entry-ref' || it.kind === 'external') {
        name = it.name;
        it = await this.follow(it.kind === 'entry-ref' ? it.ref : it.anchor, ctx, budget);
        if (!it) continue;
      }
      if (it.kind === 'list') {
        await this.flatten(it, out, seen, budget, ctx);
        continue;
      }
      if (it.kind !== 'entry') continue; // a reference to a reference is not followed further
      let key: string;
      try {
        key = presentityOf(it.uri);
      } catch {
        this.log.info({ service, uri: it.uri }, 'list entry is not a SIP URI: left out');
        continue;
      }
      if (seen.has(key)) continue;
      seen.add(key);
      key = intern(key);
      out.resources.push({ uri: it.uri === key ? key : it.uri, key, name: it.name || name });
    }
  }
}
