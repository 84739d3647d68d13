/**
 * Embedded XCAP server (RFC 4825) on node:http.
 *
 * node:http rather than uWebSockets.js (which serves SIP over WebSocket): uWS 20.30 never
 * answers an HTTP/1.0 request nor an absolute-form target (RFC 9112 §3.2.2), reads a request
 * with two Content-Lengths by the first, so that its body runs as a second request, and closes
 * without a word on Content-Length with Transfer-Encoding. llhttp refuses every framing
 * ambiguity with 400 and a close (RFC 9112 §6.3) before the handler runs, and XCAP is not the
 * hot path.
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
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
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
import { sameXui } from '../uris.js';
import { parseNodeSelector, parseNamespaceBindings } from './selectors.js';
import { evaluatePreconditions, quoteEtag } from './conditional.js';
import { DigestAuth } from './auth.js';
import { RlsServicesDirectory, RLS_AUID } from './rls-services.js';
import { listenHttp, requestTarget, refuseLargeBeforeContinue, answerClientErrors } from '../http.js';

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
  /** The rls-services directory (global index, uniqueness), shared with the list server; one of its own otherwise. */
  rlsServices?: RlsServicesDirectory;
}

/** What the handler uses of a request. */
interface Request {
  method: string;
  /** The request-target as sent (Digest's uri compares with it). */
  target: string;
  path: string;
  query: string;
  /** The authority of an absolute-form target (RFC 9112 §3.2.2), else the Host header. */
  host: string;
  contentType: string;
  contentLength: number | undefined;
  ifMatch: string | undefined;
  ifNoneMatch: string | undefined;
  authorization: string;
}

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
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
  /** Why it was refused, for the log line only (a 401 tells the client nothing of it). */
  why?: string;
}

const ALLOW_DOCUMENT = 'GET, HEAD, PUT, DELETE';
const ALLOW_READ_ONLY = 'GET, HEAD';
/** Put/replace attempts when a writer outside this server changed the document meanwhile. */
const COMMIT_ATTEMPTS = 3;
/** Bodies up to this many times max_xml_size are read to the end (and dropped) before the 413. */
const DRAIN_FACTOR = 16;

/** A client has this long to send the request head, and the whole request (node:http timers). */
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function mediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

function newEtag(): string {
  return randomBytes(12).toString('base64url');
}

/**
 * A "." or ".." segment in the document part of a path, raw or percent-encoded. Refused, never
 * resolved: RFC 3986 §5.2.4 would turn users/a/x/../index into users/a/index, and taking them
 * as names made odd documents. The node selector (after "~~") is left to its own parser, where a
 * ".." is no step and a "/" may sit inside a quoted predicate value.
 */
function hasDotSegment(path: string): boolean {
  const sep = path.indexOf('/~~/');
  const docPart = sep === -1 ? path : path.slice(0, sep);
  for (const seg of docPart.split('/')) {
    if (seg.length === 0 || seg.length > 6) continue;
    const s = seg.replace(/%2e/gi, '.');
    if (s === '.' || s === '..') return true;
  }
  return false;
}

export class XcapServer {
  private server: http.Server | undefined;
  private readonly digest: DigestAuth | undefined;
  private readonly caps: { body: string; etag: string };
  private readonly locks = new Map<string, Promise<void>>();
  private readonly rls: RlsServicesDirectory;
  private inflight = 0;
  private idle: (() => void) | undefined;

  constructor(private readonly deps: XcapServerDeps) {
    const { config } = deps;
    if (config.xcap_auth === 'digest') this.digest = new DigestAuth(config.xcap_auth_realm, config.xcap_auth_users);
    this.rls = deps.rlsServices ?? new RlsServicesDirectory(deps.store, deps.pool, deps.log);
    const body = xcapCapsDocument();
    this.caps = { body, etag: createHash('sha1').update(body).digest('base64url').slice(0, 16) };
  }

  /** Listen on config.xcap_listen; resolves with the bound port. */
  async start(): Promise<number> {
    const { address, port } = this.deps.config.xcap_listen;
    const server = http.createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) =>
      this.onRequest(req, res),
    );
    refuseLargeBeforeContinue(
      server,
      this.deps.config.max_xml_size,
      (req, res) => this.onRequest(req, res),
      (req, status, reason) =>
        this.counted({ method: (req.method ?? '').toUpperCase(), path: requestTarget(req)?.path ?? '', target: req.url ?? '' } as Request, {
          status,
          headers: [],
          body: `Expect: 100-continue refused: ${reason}`,
        }),
    );
    answerClientErrors(server, (status, reason) =>
      this.counted({ method: 'other', path: '', target: '' } as Request, {
        status,
        headers: [],
        body: `HTTP request refused by the parser: ${reason}`,
      }),
    );
    this.server = server;
    return listenHttp(server, 'xcap_listen', address, port);
  }

  /** Stop accepting, wait (a few seconds at most) for requests being served, close connections. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.close();
    server.closeIdleConnections();
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 5000);
        this.idle = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    server.closeAllConnections();
  }

  // ───── HTTP plumbing ─────

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const method = (req.method ?? '').toUpperCase();
    const ex: Exchange = { req, res, head: method === 'HEAD', aborted: false, done: false };
    res.on('close', () => {
      if (res.writableFinished) return;
      ex.aborted = true;
      ex.onAbort?.();
    });
    const target = requestTarget(req);
    if (!target) {
      const reply = { status: 400, headers: [], body: 'the request-target must be a path or an http URL (RFC 9112 §3.2)\n', close: true };
      this.send(ex, reply);
      this.counted({ method, path: '', target: req.url ?? '' } as Request, reply);
      return;
    }
    const h = (name: string): string => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : (v ?? '');
    };
    const length = h('content-length');
    const request: Request = {
      method,
      target: req.url ?? '',
      path: target.path,
      query: target.query,
      host: target.authority ?? h('host'),
      contentType: h('content-type'),
      contentLength: length === '' ? undefined : Number(length),
      ifMatch: h('if-match') || undefined,
      ifNoneMatch: h('if-none-match') || undefined,
      authorization: h('authorization'),
    };
    this.inflight++;
    this.serve(ex, request)
      .catch((err: unknown) => this.errorReply(err, request))
      .then((reply) => {
        this.send(ex, reply);
        this.counted(request, reply);
      })
      .finally(() => {
        if (--this.inflight === 0) this.idle?.();
      });
  }

  /** XCAP requests by auid, method and status (label values from fixed sets only), for /metrics. */
  readonly stats = new Map<string, number>();
  private refusalsLogged = { windowStart: 0, n: 0 };

  private counted(request: Request, reply: Reply): void {
    const root = this.deps.config.xcap_root.replace(/\/+$/, '');
    const rest = request.path.startsWith(root + '/') ? request.path.slice(root.length + 1) : '';
    const first = rest.slice(0, rest.indexOf('/') === -1 ? rest.length : rest.indexOf('/'));
    const auid = USAGE_BY_AUID.has(first) ? first : 'other';
    const method = ['GET', 'PUT', 'DELETE', 'HEAD'].includes(request.method) ? request.method : 'other';
    const key = `${auid} ${method} ${reply.status}`;
    this.stats.set(key, (this.stats.get(key) ?? 0) + 1);
    if (reply.status < 400) {
      this.deps.log.debug({ method: request.method, url: request.path, status: reply.status }, 'XCAP request');
      return;
    }
    // A refusal is worth an info line, 50 a second at most (a flood cannot fill the disk).
    const now = Date.now();
    if (now - this.refusalsLogged.windowStart >= 1000) this.refusalsLogged = { windowStart: now, n: 0 };
    if (this.refusalsLogged.n++ >= 50) return;
    const body = typeof reply.body === 'string' ? reply.body : '';
    this.deps.log.info(
      { method: request.method, url: request.path.slice(0, 300), status: reply.status, reason: reply.why ?? body.slice(0, 300) },
      'XCAP request refused',
    );
  }

  private errorReply(err: unknown, request: Request): Reply {
    if (err instanceof XcapError) {
      const headers: Array<[string, string]> = [...err.headers];
      if (err.contentType) headers.push(['Content-Type', err.contentType]);
      return { status: err.status, headers, body: err.body, close: err.closeConnection, ...(err.why ? { why: err.why } : {}) };
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
    res.statusCode = reply.status;
    res.statusMessage = STATUS_TEXT[reply.status] ?? '';
    for (const [k, v] of reply.headers) res.appendHeader(k, v);
    if (reply.close) res.setHeader('Connection', 'close');
    // A 304 carries no Content-Length (RFC 9110 §8.6 allows only the 200's, which a node
    // selector's would need computing).
    if (reply.status === 304) {
      res.end();
      return;
    }
    const body = reply.body ?? '';
    res.setHeader('Content-Length', typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength);
    // node:http sends no body in answer to HEAD by itself.
    res.end(body);
  }

  /**
   * Read the body, keeping at most max_xml_size bytes. A larger body gets a 413; up to
   * DRAIN_FACTOR times the limit it is read to its end and dropped first (HTTP clients often
   * cannot read a response while they are still sending), past that the connection is closed.
   */
  private readBody(ex: Exchange, request: Request): Promise<Buffer> {
    const limit = this.deps.config.max_xml_size;
    const drainLimit = limit * DRAIN_FACTOR;
    if (request.contentLength !== undefined && !(request.contentLength <= drainLimit))
      return Promise.reject(xcapErrors.tooLarge(limit, true));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const { req } = ex;
      ex.onAbort = () => {
        if (settled) return;
        settled = true;
        reject(new Error('request aborted'));
      };
      req.on('data', (chunk: Buffer) => {
        if (settled) return;
        size += chunk.byteLength;
        if (size > drainLimit) {
          settled = true;
          req.pause();
          reject(xcapErrors.tooLarge(limit, true));
          return;
        }
        if (size <= limit) chunks.push(chunk);
      });
      req.on('end', () => {
        if (settled) return;
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
    if (hasDotSegment(request.path))
      throw xcapErrors.badRequest('"." and ".." path segments are not allowed in an XCAP URI (RFC 3986 §3.3): name the document itself');
    const uri = parseXcapUri(config.xcap_root, request.path, config.max_uri_length);
    if (!uri) throw xcapErrors.notFound(`not under the XCAP root ${config.xcap_root}`);
    const usage = USAGE_BY_AUID.get(uri.auid);
    if (!usage) throw xcapErrors.notFound(`no application usage "${uri.auid}"`);
    if (this.digest) this.authorize(request, uri);
    if (uri.xui && !usage.userTrees) throw xcapErrors.notFound(`${uri.auid} has no users' trees`);
    const selector =
      uri.nodeSelector === undefined ? undefined : parseNodeSelector(uri.nodeSelector, parseNamespaceBindings(request.query));

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
    const result = request.authorization ? digest.verify(request.authorization, request.method, request.target) : undefined;
    if (!result || !result.ok) {
      // Which check failed (unknown user, wrong password, ...) goes to the log, not to the client:
      // a guesser must not learn which user names exist.
      const refused = new XcapError(401, 'authentication required', undefined, [
        ['WWW-Authenticate', digest.challenge(result?.stale ?? false)],
      ]);
      refused.why = result?.reason ?? 'no credentials';
      throw refused;
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
        if (!current)
          throw xcapErrors.noParent(
            'the document does not exist',
            `http://${request.host || 'localhost'}${uri.documentPath.slice(0, uri.documentPath.lastIndexOf('/'))}`,
          );
        const r = await pool.run('xcap.put', { xml: Buffer.from(current.body).toString('utf8'), selector, body: text, usage: usage.rules });
        if (!r.ok) throw this.failure(r, request, uri, selector);
        if (Buffer.byteLength(r.xml) > config.max_xml_size)
          throw xcapErrors.constraint(`the document would be larger than max_xml_size (${config.max_xml_size} bytes)`);
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
        if (services) this.rls.committed(Store.xcapKey(doc.auid, doc.xui, doc.name), doc.etag, services, doc.xui);
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
      const doc: XcapDocument = {
        ...current,
        etag: newEtag(),
        body: Buffer.from(r.xml, 'utf8'),
        updatedAt: Date.now(),
        source: 'embedded',
      };
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
