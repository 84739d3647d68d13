/**
 * What the rls-services application usage needs beyond one document (RFC 4826 §4.4):
 *
 * - §4.4.5: a service URI is unique across every document of every user. A write that
 *   would repeat one held elsewhere is refused with <uniqueness-failure>, with an unused
 *   URI as <alt-value> (RFC 4825 §8.2.5).
 * - §4.4.7/§4.4.8: the global document `rls-services/global/index` is the union of the
 *   <service> elements of all users' documents, kept by the server (clients only read it).
 *
 * The store is the truth: each call lists the users' rls-services documents with their ETags
 * and parses (in the worker pool) only the documents whose ETag it has not seen, so writers
 * other than this server are picked up too. The global index's ETag is a digest of those
 * (document, ETag) pairs: it changes whenever any user's document does.
 */
import { createHash } from 'node:crypto';
import { Store } from '../store/store.js';
import type { WorkerPool } from '../pool.js';
import type { Logger } from '../log.js';
import type { RlsService } from '../../workers/xcap.js';
import { NS } from './auids.js';

export const RLS_AUID = 'rls-services';

interface Parsed {
  etag: string;
  services: RlsService[];
  /** The XUI whose document it is. */
  owner: string;
}

export interface ServiceConflict {
  /** The clashing URI as written in the new document. */
  uri: string;
  /** Its position among the new document's services (1-based) and how many there are. */
  index: number;
  count: number;
  /** URIs that are free right now. */
  altValues: string[];
}

/** Service URIs compare with the scheme and host part case-insensitive (RFC 3261 §19.1.4). */
export function serviceUriKey(uri: string): string {
  const u = uri.trim();
  const colon = u.indexOf(':');
  if (colon < 0) return u;
  const scheme = u.slice(0, colon).toLowerCase();
  const rest = u.slice(colon + 1);
  const at = rest.lastIndexOf('@');
  if (at < 0) return `${scheme}:${rest}`;
  const hostEnd = rest.slice(at).search(/[;?]/);
  const host = hostEnd < 0 ? rest.slice(at) : rest.slice(at, at + hostEnd);
  const tail = hostEnd < 0 ? '' : rest.slice(at + hostEnd);
  return `${scheme}:${rest.slice(0, at)}${host.toLowerCase()}${tail}`;
}

/** `sip:friends@example.com` → `sip:friends-2@example.com`, `-3`, ... (or a suffix at the end). */
function candidate(uri: string, n: number): string {
  const m = /^([a-zA-Z][\w+.-]*:)([^@;?]+)(@.*)$/.exec(uri);
  return m ? `${m[1]}${m[2]}-${n}${m[3]}` : `${uri}-${n}`;
}

export class RlsServicesDirectory {
  /** Store key of each user's document → its ETag and services, as last parsed. */
  private readonly parsed = new Map<string, Parsed>();
  private composed: { etag: string; body: string } | undefined;
  /** Syncs run one after another, so each sees the store as of its own start. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly pool: WorkerPool,
    private readonly log: Logger,
  ) {}

  /** Bring the parsed copies in line with the store; resolves with the global index's ETag. */
  sync(): Promise<string> {
    const run = this.chain.then(() => this.syncNow());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async syncNow(): Promise<string> {
    const seen = new Set<string>();
    const stale: Array<{ key: string; etag: string; xml: string; owner: string }> = [];
    const digest = createHash('sha1');
    for (const doc of this.store.xcapUsersDocuments(RLS_AUID)) {
      const key = Store.xcapKey(doc.auid, doc.xui, doc.name);
      seen.add(key);
      digest.update(key).update('\0').update(doc.etag).update('\n');
      if (this.parsed.get(key)?.etag !== doc.etag)
        stale.push({ key, etag: doc.etag, xml: Buffer.from(doc.body).toString('utf8'), owner: doc.xui });
    }
    for (const key of this.parsed.keys()) if (!seen.has(key)) this.parsed.delete(key);
    if (stale.length) {
      const results = await this.pool.run('xcap.rlsServices', { docs: stale.map((s) => s.xml) });
      stale.forEach((s, i) => {
        const services = results[i];
        if (!services) this.log.warn({ key: s.key }, 'stored rls-services document does not parse; left out of the global index');
        this.parsed.set(s.key, { etag: s.etag, services: services ?? [], owner: s.owner });
      });
    }
    return digest.digest('base64url').slice(0, 22);
  }

  /** The global index (RFC 4826 §4.4.7): the current ETag and body, composed once per ETag. */
  async globalIndex(): Promise<{ etag: string; body: string }> {
    const etag = await this.sync();
    if (this.composed?.etag === etag) return this.composed;
    const keys = [...this.parsed.keys()].sort();
    let body = `<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="${NS.rlsServices}">\n`;
    for (const key of keys) for (const s of this.parsed.get(key)!.services) body += `  ${s.xml}\n`;
    body += '</rls-services>\n';
    this.composed = { etag, body };
    return this.composed;
  }

  /** Every service of every user's document, after bringing the parsed copies in line with the store (the list server reads them). */
  async all(): Promise<Array<RlsService & { owner: string }>> {
    await this.sync();
    const out: Array<RlsService & { owner: string }> = [];
    for (const key of [...this.parsed.keys()].sort()) {
      const p = this.parsed.get(key)!;
      for (const s of p.services) out.push({ ...s, owner: p.owner });
    }
    return out;
  }

  /** The services of a document about to be written (parsed in the worker pool). */
  async servicesOf(xml: string): Promise<RlsService[]> {
    const [services] = await this.pool.run('xcap.rlsServices', { docs: [xml] });
    return services ?? [];
  }

  /**
   * The first service URI of `services` (the new content of the document at `key`) that
   * another document already holds, with free alternatives; undefined when all are unique.
   * Call with writes to rls-services serialised, so nothing is written in between.
   */
  async conflict(key: string, services: RlsService[]): Promise<ServiceConflict | undefined> {
    await this.sync();
    const taken = new Map<string, string>();
    for (const [k, p] of this.parsed) {
      if (k === key) continue;
      for (const s of p.services) taken.set(serviceUriKey(s.uri), k);
    }
    const own = new Set(services.map((s) => serviceUriKey(s.uri)));
    for (let i = 0; i < services.length; i++) {
      const uri = services[i]!.uri;
      if (!taken.has(serviceUriKey(uri))) continue;
      const altValues: string[] = [];
      for (let n = 2; altValues.length < 1 && n < 1000; n++) {
        const alt = candidate(uri, n);
        if (!taken.has(serviceUriKey(alt)) && !own.has(serviceUriKey(alt))) altValues.push(alt);
      }
      return { uri, index: i + 1, count: services.length, altValues };
    }
    return undefined;
  }

  /** Record what was just committed, so the next sync need not parse it again. */
  committed(key: string, etag: string, services: RlsService[], owner: string): void {
    this.parsed.set(key, { etag, services, owner });
  }
}
