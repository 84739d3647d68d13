/**
 * Embedded XCAP server (RFC 4825) on uWebSockets.js.
 *
 * What happens to a request, in order: the URI is split (uri.ts) and its node selector parsed
 * (selectors.ts) on this thread; Digest authentication and the per-user tree check (auth.ts);
 * then GET, PUT or DELETE. The ETag preconditions are evaluated against the stored document;
 * every piece of XML work (well-formedness, the application usage's schema, node selectors)
 * runs in the worker pool; a write is answered only once LMDB has committed it, and
 * `onDocumentChanged` is called after that. Writes to one document are serialised, so a
 * precondition is never checked against a version about to be replaced; writes to any
 * rls-services document are serialised together, since service URIs are unique across all
 * of them (rls-services.ts, which also composes that auid's global index).
 */
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp, type us_listen_socket } from 'uWebSockets.js';
import { createHash, randomBytes } from 'node:crypto';
import type { Config } from '../config.js';
import { Store, StoreWriteError, STORE_RETRY_AFTER } from '../store/store.js';
import type { WorkerPool } from '../pool.js';
import type { Logger } from '../log.js';
import type { XcapDocument } from '../store/records.js';
import type { NodeSelector, XcapFailure, RlsService } from '../../workers/xcap.js';
import { USAGE_BY_AUID, xcapCapsDocument, XCAP_EL_TYPE, XCAP_ATT_TYPE, type AppUsage } from './auids.js';
import { XcapError, xcapErrors, failureToError, STATUS_TEXT } from './errors.js';
import { parseXcapUri, type XcapUri } from './uri.js';
import { parseNodeSelector, parseNamespaceBindings } from './selectors.js';
import { evaluatePreconditions, quoteEtag } from './conditional.js';
import { DigestAuth } from './auth.js';
import { RlsServicesDirectory, RLS_AUID } from './rls-services.js';

export interface XcapChange {
  auid: string;
  xui: string;
  name: string;
  /** The document after the change; undefined when it was deleted. */
  doc: XcapDocument | undefined;
}

export interface XcapServerDeps {
  config: Config;
  store: Store;
  pool: WorkerPool;
  log: Logger;
  /** Called after a committed change of any document (PUT, DELETE, node PUT/DELETE). */
  onDocumentChanged: (change: XcapChange) => void;
}

/** What the handler read from uWS's stack-allocated request before any await. */
interface Request {
  method: string;
  path: string;
  query: string;
  host: string;
  contentType: string;
  contentLength: number | undefined;
  ifMatch: string | undefined;
  ifNoneMatch: string | undefined;
  authorization: string;
}

interface Exchange {
  res: HttpResponse;
  head: boolean;
  aborted: boolean;
  done: boolean;
  onAbort?: () => void;
}

interface Reply {
  status: number;
  headers: Array<[string, string]>;
  body?: string | Uint8Array;
  close?: boolean;
}

const ALLOW_DOCUMENT = 'GET, HEAD, PUT, DELETE';
const ALLOW_READ_ONLY = 'GET, HEAD';
/** Put/replace attempts when a writer outside this server changed the document meanwhile. */
const COMMIT_ATTEMPTS = 3;
/** Bodies up to this many times max_xml_size are read to the end (and dropped) before the 413. */
const DRAIN_FACTOR = 16;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function mediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

function newEtag(): string {
  return randomBytes(12).toString('base64url');
}

/** XUIs compare with the scheme dropped and the host part case-insensitive. */
function sameXui(a: string, b: string): boolean {
  const norm = (x: string): string => {
    const s = x.replace(/^sip:/i, '');
    const at = s.lastIndexOf('@');
    return at < 0 ? s : s.slice(0, at) + '@' + s.slice(at + 1).toLowerCase();
  };
  return norm(a) === norm(b);
}

export class XcapServer {
  private app: TemplatedApp | undefined;
  private listenSocket: us_listen_socket | undefined;
  private readonly digest: DigestAuth | undefined;
  private readonly caps: { body: string; etag: string };
  private readonly locks = new Map<string, Promise<void>>();
  private readonly rls: RlsServicesDirectory;
  private inflight = 0;
  private idle: (() => void) | undefined;

  constructor(private readonly deps: XcapServerDeps) {
    const { config } = deps;
    if (config.xcap_auth === 'digest') this.digest = new DigestAuth(config.xcap_auth_realm, config.xcap_auth_users);
    this.rls = new RlsServicesDirectory(deps.store, deps.pool, deps.log);
    const body = xcapCapsDocument();
    this.caps = { body, etag: createHash('sha1').update(body).digest('base64url').slice(0, 16) };
  }

  /** Listen on config.xcap_listen; resolves with the bound port. */
  start(): Promise<number> {
    const { address, port } = this.deps.config.xcap_listen;
    const app = uWS.App();
    app.any('/*', (res, req) => this.onRequest(res, req));
    this.app = app;
    return new Promise((resolve, reject) => {
      app.listen(address, port, (socket) => {
        if (!socket) {
          reject(new Error(`XCAP server cannot listen on ${address}:${port}`));
          return;
        }
        this.listenSocket = socket;
        resolve(uWS.us_socket_local_port(socket));
      });
    });
  }

  /** Stop accepting, wait (a few seconds at most) for requests being served, close connections. */
  async stop(): Promise<void> {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = undefined;
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        this.idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // Kept-alive connections would hold the event loop; App.close() (untyped in 20.30) ends them.
    (this.app as unknown as { close?: () => void } | undefined)?.close?.();
    this.app = undefined;
  }

  // ───── HTTP plumbing ─────

  private onRequest(res: HttpResponse, req: HttpRequest): void {
    const length = req.getHeader('content-length');
    const request: Request = {
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: req.getQuery() ?? '',
      host: req.getHeader('host'),
      contentType: req.getHeader('content-type'),
      contentLength: length === '' ? undefined : Number(length),
      ifMatch: req.getHeader('if-match') || undefined,
      ifNoneMatch: req.getHeader('if-none-match') || undefined,
      authorization: req.getHeader('authorization'),
    };
    const ex: Exchange = { res, head: request.method === 'HEAD', aborted: false, done: false };
    res.onAborted(() => {
      ex.aborted = true;
      ex.onAbort?.();
    });
    this.inflight++;
    this.serve(ex, request)
      .catch((err: unknown) => this.errorReply(err, request))
      .then((reply) => {
        this.send(ex, reply);
        this.deps.log.debug({ method: request.method, url: request.path, status: reply.status }, 'XCAP request');
      })
      .finally(() => {
        if (--this.inflight === 0) this.idle?.();
      });
  }

  private errorReply(err: unknown, request: Request): Reply {
    if (err instanceof XcapError) {
      const headers: Array<[string, string]> = [...err.headers];
      if (err.contentType) headers.push(['Content-Type', err.contentType]);
      return { status: err.status, headers, body: err.body, close: err.closeConnection };
    }
    // The store could not commit (disk full): nothing was written, try again later (RFC 7231 §6.6.4).
    if (err instanceof StoreWriteError) return { status: 503, headers: [['Retry-After', String(STORE_RETRY_AFTER)]], body: '' };
    this.deps.log.error({ err, method: request.method, url: request.path }, 'XCAP request failed');
    return { status: 500, headers: [], body: '' };
  }

  private send(ex: Exchange, reply: Reply): void {
    if (ex.aborted || ex.done) return;
    ex.done = true;
    const { res } = ex;
    res.cork(() => {
      res.writeStatus(`${reply.status} ${STATUS_TEXT[reply.status] ?? ''}`);
      for (const [k, v] of reply.headers) res.writeHeader(k, v);
      const body = reply.body ?? '';
      const length = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      // A 304 carries no Content-Length (RFC 9110 §8.6 allows only the 200's, which a node
      // selector's would need computing): endWithoutBody() without arguments writes none.
      if (reply.status === 304) res.endWithoutBody();
      else if (ex.head) res.endWithoutBody(length, reply.close);
      else res.end(body, reply.close);
    });
  }

  /**
   * Read the body, keeping at most max_xml_size bytes. A larger body gets a 413; up to
   * DRAIN_FACTOR times the limit it is read to its end and dropped first (HTTP clients often
   * cannot read a response while they are still sending), past that the connection is closed.
   */
  private readBody(ex: Exchange, request: Request): Promise<Buffer> {
    const limit = this.deps.config.max_xml_size;
    const drainLimit = limit * DRAIN_FACTOR;
    if (request.contentLength !== undefined && !(request.contentLength <= drainLimit)) return Promise.reject(xcapErrors.tooLarge(limit, true));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      ex.onAbort = () => reject(new Error('request aborted'));
      ex.res.onData((chunk, isLast) => {
        if (settled) return;
        size += chunk.byteLength;
        if (size > drainLimit) {
          settled = true;
          reject(xcapErrors.tooLarge(limit, true));
          return;
        }
        if (size <= limit) chunks.push(Buffer.from(chunk.slice(0)));
        if (!isLast) return;
        settled = true;
        if (size > limit) reject(xcapErrors.tooLarge(limit));
        else resolve(Buffer.concat(chunks, size));
      });
    });
  }

  /** Run `fn` after every earlier write to the same document has finished. */
  private async exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key);
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.locks.set(key, mine);
    if (prev) await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(key) === mine) this.locks.delete(key);
    }
  }

  // ───── XCAP ─────

  private async serve(ex: Exchange, request: Request): Promise<Reply> {
    const { config } = this.deps;
    const uri = parseXcapUri(config.xcap_root, request.path);
    if (!uri) throw xcapErrors.notFound(`not under the XCAP root ${config.xcap_root}`);
    const usage = USAGE_BY_AUID.get(uri.auid);
    if (!usage) throw xcapErrors.notFound(`no application usage "${uri.auid}"`);
    if (this.digest) this.authorize(request, uri);
    if (uri.xui && !usage.userTrees) throw xcapErrors.notFound(`${uri.auid} has no users' trees`);
    const selector = uri.nodeSelector === undefined ? undefined : parseNodeSelector(uri.nodeSelector, parseNamespaceBindings(request.query));

    if (usage.readOnly) {
      if (request.method !== 'GET' && request.method !== 'HEAD') throw xcapErrors.methodNotAllowed(ALLOW_READ_ONLY);
      return this.getCaps(request, uri, usage, selector);
    }
    if (usage.composedGlobalIndex && !uri.xui) {
      // RFC 4826 §4.4.7: the server keeps the global tree; clients read it.
      if (request.method !== 'GET' && request.method !== 'HEAD') throw xcapErrors.methodNotAllowed(ALLOW_READ_ONLY);
      return this.getGlobalIndex(request, uri, usage, selector);
    }
    const lock = usage.composedGlobalIndex ? RLS_AUID : Store.xcapKey(uri.auid, uri.xui, uri.name);
    switch (request.method) {
      case 'GET':
      case 'HEAD':
        return this.get(request, uri, usage, selector);
      case 'PUT': {
        const body = await this.readBody(ex, request);
        return this.exclusive(lock, () => this.put(request, uri, usage, selector, body));
      }
      case 'DELETE':
        return this.exclusive(lock, () => this.delete(request, uri, usage, selector));
      default:
        throw xcapErrors.methodNotAllowed(ALLOW_DOCUMENT);
    }
  }

  /** Digest credentials (401), then the tree: a user's own users/{XUI}, and reading global documents (403). */
  private authorize(request: Request, uri: XcapUri): void {
    const digest = this.digest!;
    const target = request.query ? `${request.path}?${request.query}` : request.path;
    const result = request.authorization ? digest.verify(request.authorization, request.method, target) : undefined;
    if (!result || !result.ok) {
      throw new XcapError(401, result?.reason ?? 'authentication required', undefined, [['WWW-Authenticate', digest.challenge(result?.stale ?? false)]]);
    }
    if (uri.xui ? !sameXui(uri.xui, result.xui) : request.method !== 'GET' && request.method !== 'HEAD') {
      throw new XcapError(403, `${result.xui} may not ${request.method} this document`);
    }
  }

  private ancestorUri(request: Request, uri: XcapUri, selector: NodeSelector | undefined, steps: number): string {
    const base = `http://${request.host || 'localhost'}`;
    if (!selector || steps === 0) return base + uri.documentPath;
    const path = selector.steps
      .slice(0, steps)
      .map((s) => encodeURIComponent(s.source).replace(/%3A/gi, ':').replace(/%40/g, '@'))
      .join('/');
    return `${base}${uri.documentPath}/~~/${path}`;
  }

  private failure(f: XcapFailure, request: Request, uri: XcapUri, selector: NodeSelector | undefined): XcapError {
    return failureToError(f, (k) => this.ancestorUri(request, uri, selector, k), this.deps.config.max_xml_size);
  }

  private preconditions(request: Request, etag: string | undefined): Reply | undefined {
    const outcome = evaluatePreconditions(request.method, etag, request.ifMatch, request.ifNoneMatch);
    if (outcome === undefined) return undefined;
    return { status: outcome, headers: etag !== undefined ? [['ETag', quoteEtag(etag)]] : [] };
  }

  private async getCaps(request: Request, uri: XcapUri, usage: AppUsage, selector: NodeSelector | undefined): Promise<Reply> {
    if (uri.xui || uri.name !== 'index') throw xcapErrors.notFound('xcap-caps has one document: global/index');
    return this.respondWith(request, uri, usage, selector, this.caps.etag, usage.mimeType, this.caps.body);
  }

  private async getGlobalIndex(request: Request, uri: XcapUri, usage: AppUsage, selector: NodeSelector | undefined): Promise<Reply> {
    if (uri.name !== 'index') throw xcapErrors.notFound(`the global tree of ${uri.auid} has one document: index`);
    const { etag, body } = await this.rls.globalIndex();
    return this.respondWith(request, uri, usage, selector, etag, usage.mimeType, body);
  }

  private async get(request: Request, uri: XcapUri, usage: AppUsage, selector: NodeSelector | undefined): Promise<Reply> {
    const doc = this.deps.store.getXcap(uri.auid, uri.xui, uri.name);
    if (!doc) throw xcapErrors.notFound('no such document');
    return this.respondWith(request, uri, usage, selector, doc.etag, doc.contentType, doc.body);
  }

  private async respondWith(
    request: Request,
    uri: XcapUri,
    usage: AppUsage,
    selector: NodeSelector | undefined,
    etag: string,
    contentType: string,
    body: string | Uint8Array,
  ): Promise<Reply> {
    const pre = this.preconditions(request, etag);
    if (pre) return pre;
    const headers: Array<[string, string]> = [['ETag', quoteEtag(etag)]];
    if (!selector) return { status: 200, headers: [...headers, ['Content-Type', contentType]], body };
    const xml = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
    const r = await this.deps.pool.run('xcap.select', { xml, selector, usage: usage.rules });
    if (!r.ok) throw this.failure(r, request, uri, selector);
    return { status: 200, headers: [...headers, ['Content-Type', r.contentType]], body: r.body };
  }

  private async put(request: Request, uri: XcapUri, usage: AppUsage, selector: NodeSelector | undefined, raw: Buffer): Promise<Reply> {
    const { store, pool, config } = this.deps;
    const ct = mediaType(request.contentType);
    const expected = !selector ? usage.mimeType : selector.terminal?.kind === 'attribute' ? XCAP_ATT_TYPE : XCAP_EL_TYPE;
    if (selector?.terminal?.kind === 'namespace') throw xcapErrors.methodNotAllowed('GET, HEAD');
    if (ct !== expected) throw xcapErrors.unsupportedType(expected);
    let text: string;
    try {
      text = utf8.decode(raw);
    } catch {
      throw xcapErrors.notUtf8('the body is not UTF-8');
    }

    for (let attempt = 1; ; attempt++) {
      const current = store.getXcap(uri.auid, uri.xui, uri.name);
      const pre = this.preconditions(request, current?.etag);
      if (pre) return pre;
      let body: Uint8Array;
      let xml: string;
      let created: boolean;
      if (!selector) {
        // A whole document (RFC 4825 §7.1), stored byte for byte as the client sent it.
        const r = await pool.run('xcap.checkDocument', { xml: text, usage: usage.rules });
        if (!r.ok) throw this.failure(r, request, uri, selector);
        body = raw;
        xml = text;
        created = current === undefined;
      } else {
        if (!current) throw xcapErrors.noParent('the document does not exist', `http://${request.host || 'localhost'}${uri.documentPath.slice(0, uri.documentPath.lastIndexOf('/'))}`);
        const r = await pool.run('xcap.put', { xml: Buffer.from(current.body).toString('utf8'), selector, body: text, usage: usage.rules });
        if (!r.ok) throw this.failure(r, request, uri, selector);
        if (Buffer.byteLength(r.xml) > config.max_xml_size) throw xcapErrors.constraint(`the document would be larger than max_xml_size (${config.max_xml_size} bytes)`);
        xml = r.xml;
        body = Buffer.from(r.xml, 'utf8');
        created = r.created;
      }
      const services = usage.composedGlobalIndex ? await this.uniqueServices(uri, xml) : undefined;
      const doc: XcapDocument = {
        auid: uri.auid,
        xui: uri.xui,
        name: uri.name,
        etag: newEtag(),
        contentType: usage.mimeType,
        body,
        updatedAt: Date.now(),
        source: 'embedded',
      };
      if (await store.putXcapIf(doc, current ? current.etag : undefined)) {
        if (services) this.rls.committed(Store.xcapKey(doc.auid, doc.xui, doc.name), doc.etag, services);
        this.changed(doc.auid, doc.xui, doc.name, doc);
        return { status: created ? 201 : 200, headers: [['ETag', quoteEtag(doc.etag)]] };
      }
      if (attempt >= COMMIT_ATTEMPTS) throw new XcapError(503, 'the document keeps changing', undefined, [['Retry-After', '1']]);
    }
  }

  /**
   * RFC 4826 §4.4.5: every service URI of the new document is free in all other documents of
   * all users; else 409 <uniqueness-failure> with a free URI as <alt-value>. Runs under the
   * rls-services lock, so nothing else is written between this check and the commit.
   */
  private async uniqueServices(uri: XcapUri, xml: string): Promise<RlsService[]> {
    const services = await this.rls.servicesOf(xml);
    const clash = await this.rls.conflict(Store.xcapKey(uri.auid, uri.xui, uri.name), services);
    if (clash) {
      const field = clash.count > 1 ? `/rls-services/service[${clash.index}]/@uri` : '/rls-services/service/@uri';
      throw xcapErrors.uniqueness(`service uri "${clash.uri}" is already used by another rls-services document`, field, clash.altValues);
    }
    return services;
  }

  private async delete(request: Request, uri: XcapUri, usage: AppUsage, selector: NodeSelector | undefined): Promise<Reply> {
    const { store, pool } = this.deps;
    if (selector?.terminal?.kind === 'namespace') throw xcapErrors.methodNotAllowed('GET, HEAD');
    for (let attempt = 1; ; attempt++) {
      const current = store.getXcap(uri.auid, uri.xui, uri.name);
      if (!current) throw xcapErrors.notFound('no such document');
      const pre = this.preconditions(request, current.etag);
      if (pre) return pre;
      if (!selector) {
        // RFC 4825 §8.4: the precondition was checked in this same turn, so nothing came between.
        await store.removeXcap(uri.auid, uri.xui, uri.name);
        this.changed(uri.auid, uri.xui, uri.name, undefined);
        return { status: 200, headers: [] };
      }
      const r = await pool.run('xcap.delete', { xml: Buffer.from(current.body).toString('utf8'), selector, usage: usage.rules });
      if (!r.ok) throw this.failure(r, request, uri, selector);
      const doc: XcapDocument = { ...current, etag: newEtag(), body: Buffer.from(r.xml, 'utf8'), updatedAt: Date.now(), source: 'embedded' };
      if (await store.putXcapIf(doc, current.etag)) {
        this.changed(doc.auid, doc.xui, doc.name, doc);
        return { status: 200, headers: [['ETag', quoteEtag(doc.etag)]] };
      }
      if (attempt >= COMMIT_ATTEMPTS) throw new XcapError(503, 'the document keeps changing', undefined, [['Retry-After', '1']]);
    }
  }

  private changed(auid: string, xui: string, name: string, doc: XcapDocument | undefined): void {
    try {
      this.deps.onDocumentChanged({ auid, xui, name, doc });
    } catch (err) {
      this.deps.log.error({ err, auid, xui, name }, 'onDocumentChanged failed');
    }
  }
}
