/**
 * The one configuration object, loaded from JSON and validated once at start. Keys keep the
 * Kamailio module parameter names and defaults (presence, presence_xml, presence_mwi,
 * xcap_server); nothing else in the code reads the file or process.env.
 */
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import type { ListenSpec, TlsSettings } from '../transport/stack.js';
import type { Protocol } from '../transport/flows.js';
import { SipUri } from '../transport/uri.js';

export interface Config {
  // operator's contract
  listen: ListenSpec[];
  xcap_listen: { address: string; port: number };
  xcap_root: string;
  rpc_listen: { address: string; port: number };
  db_url: string;
  /** Filesystem path from db_url. */
  db_path: string;
  /** LMDB map size in bytes to start with; lmdb-js grows the map when the data needs more (only the disk limits it). */
  db_map_size: number;
  xcap_table: string;
  log_level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** This node's name in a cluster: the `node` label of every metric. */
  node_name: string;
  // presence_xml
  disable_presence: number;
  disable_winfo: number;
  disable_bla: number;
  force_active: number;
  integrated_xcap_server: number;
  xcap_server: string[];
  passive_mode: number;
  xcapauth_userdel_reason: string;
  force_dummy_presence: number;
  // presence_dialoginfo
  force_single_dialog: number;
  force_dummy_dialog: number;
  /** presenced's: 1 = pres-rules authorise `dialog` watchers (Kamailio: never). */
  dialog_authorization: number;
  disable_dialog: number;
  disable_reg: number;
  // presence
  min_expires: number;
  max_expires: number;
  default_expires: number;
  min_expires_action: number;
  expires_offset: number;
  clean_period: number;
  server_address: string;
  to_tag_pref: string;
  timeout_rm_subs: number;
  // presence_mwi has no parameters of its own.
  // xcap_client
  periodical_query: number;
  query_period: number;
  // presenced's own
  winfo_waiting_period: number;
  notify_min_interval: number;
  notify_cseq_reserve: number;
  max_message_size: number;
  max_uri_length: number;
  udp_mtu: number;
  udp_mtu_try_proto: 'udp' | 'tcp' | 'tls';
  tcp_connection_lifetime: number;
  tcp_partial_timeout: number;
  sip_t1: number;
  sip_t2: number;
  sip_t4: number;
  worker_threads: number;
  worker_inline_max_bytes: number;
  // siptrace (Kamailio's names): a copy of every SIP message to a capture server
  trace_on: number;
  duplicate_uri: string;
  /** host and port of duplicate_uri, filled in by buildConfig. */
  duplicate_to: { host: string; port: number } | undefined;
  hep_mode_on: number;
  hep_version: number;
  hep_capture_id: number;
  auth_key: string;
  /** The web console on rpc_listen (GET /console/). */
  web_console: number;
  /** HTTP authentication of everything on rpc_listen: JSON-RPC, /metrics, the console. */
  rpc_auth: 'none' | 'digest' | 'basic';
  rpc_auth_users: Record<string, string>;
  rpc_auth_realm: string;
  /** 1 = GET /metrics answered without credentials even with rpc_auth (a scraper that cannot authenticate). */
  rpc_metrics_open: number;
  max_xml_size: number;
  max_xml_depth: number;
  xcap_auth: 'none' | 'digest';
  xcap_auth_users: Record<string, string>;
  xcap_auth_realm: string;
  // overload control and state limits (issue 12; 0 = no limit)
  overload_max_inflight: number;
  overload_max_loop_lag: number;
  overload_retry_after: number;
  overload_max_udp_queue: number;
  overload_min_inflight: number;
  max_server_transactions: number;
  max_connections: number;
  max_dns_lookups: number;
  max_subscriptions: number;
  max_subscriptions_per_watcher: number;
  max_publications: number;
  max_publications_per_presentity: number;
  limit_log_interval: number;
  // rls (Kamailio rls module parameter names; the ones presence has too carry an rls_ prefix)
  disable_rls: number;
  rls_event: string[];
  waitn_time: number;
  rls_max_expires: number;
  outbound_proxy: string;
  rls_server_address: string;
  max_notify_body_length: number;
  to_presence_code: number;
  max_backend_subs: number;
  rls_list_subscribers: 'owner' | 'any';
  rls_local_domains: string[];
  cluster_nodes: number;
  cluster_index: number;
  /** outbound_proxy parsed: where back-end SUBSCRIBEs for resources served elsewhere go. */
  outbound_proxy_target?: { proto: Protocol; host: string; port: number };
  // tls (Kamailio tls module parameter names)
  tls_certificate: string;
  tls_private_key: string;
  tls_ca_list: string;
  tls_verify_certificate: number;
  /** The PEM files above, read once by loadConfig (undefined when no file is configured). */
  tls?: TlsSettings;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Check = (value: unknown, key: string) => unknown;

const flag: Check = (v, key) => {
  if (v === 0 || v === 1 || v === true || v === false) return Number(v);
  throw new ConfigError(`${key}: must be 0 or 1 (got ${JSON.stringify(v)})`);
};

const int =
  (min: number, max: number): Check =>
  (v, key) => {
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    throw new ConfigError(`${key}: must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`);
  };

const str: Check = (v, key) => {
  if (typeof v === 'string') return v;
  throw new ConfigError(`${key}: must be a string (got ${JSON.stringify(v)})`);
};

const oneOf =
  (...allowed: string[]): Check =>
  (v, key) => {
    if (typeof v === 'string' && allowed.includes(v)) return v;
    throw new ConfigError(`${key}: must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
  };

const PROTOCOLS: Protocol[] = ['udp', 'tcp', 'ws', 'tls', 'wss'];

function parseHostPort(text: string, key: string): { address: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new ConfigError(`${key}: "${text}" is not address:port (e.g. 127.0.0.1:8080)`);
  const a = m[1]!;
  return { address: a.startsWith('[') ? a.slice(1, -1) : a, port };
}

/** An IPv4 or bracketed IPv6 literal, or a DNS name (RFC 1123 labels). */
function isHost(h: string): boolean {
  if (h.startsWith('[') && h.endsWith(']')) return isIP(h.slice(1, -1)) === 6;
  if (isIP(h) !== 0) return isIP(h) === 4;
  return h.length <= 253 && h.split('.').every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) && !/^[0-9.]+$/.test(h);
}

/** "advertise HOST[:PORT]" after a listener: what Via and Contact say instead of the listener's address. */
function parseAdvertise(text: string, words: string[], key: string): { host: string; port?: number } {
  const usage = `${key}: "${text}" must be proto:address:port, optionally followed by "advertise host[:port]" (e.g. "udp:0.0.0.0:5060 advertise 203.0.113.5:5060")`;
  if (words.length !== 2 || words[0]!.toLowerCase() !== 'advertise') throw new ConfigError(usage);
  const m = /^(\[[^\]]+\]|[^:\[\]]+)(?::(\d{1,5}))?$/.exec(words[1]!);
  if (!m || !isHost(m[1]!))
    throw new ConfigError(`${key}: advertise "${words[1]}" is not host[:port] with an IP address or a DNS name as host`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
  if (m[2] === undefined) return { host };
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new ConfigError(`${key}: advertise port must be from 1 to 65535 (got ${m[2]})`);
  return { host, port };
}

const hostPort: Check = (v, key) => parseHostPort(str(v, key) as string, key);

const listenList: Check = (v, key) => {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(`${key}: must be a non-empty list of "proto:address:port"`);
  return v.map((item, i) => {
    const text = str(item, `${key}[${i}]`) as string;
    // Kamailio's form: "udp:0.0.0.0:5060 advertise 203.0.113.5:5060".
    const [s = '', ...rest] = text.trim().split(/\s+/);
    const c = s.indexOf(':');
    const proto = s.slice(0, c).toLowerCase() as Protocol;
    if (c === -1 || !PROTOCOLS.includes(proto)) {
      throw new ConfigError(`${key}[${i}]: "${text}" must be proto:address:port with proto one of ${PROTOCOLS.join(', ')}`);
    }
    const hp = parseHostPort(s.slice(c + 1), `${key}[${i}]`);
    const spec: ListenSpec = { proto, address: hp.address, port: hp.port };
    if (rest.length > 0) spec.advertise = parseAdvertise(text, rest, `${key}[${i}]`);
    return spec;
  });
};

const stringList: Check = (v, key) => {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  throw new ConfigError(`${key}: must be a string or a list of strings`);
};

const dbUrl: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!s.startsWith('lmdb:') || s.length <= 5) throw new ConfigError(`${key}: must be lmdb:PATH (got ${JSON.stringify(s)})`);
  return s;
};

const userdelReason: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!/^(deactivated|probation|rejected|timeout|giveup|noresource|invariant)(;retry-after=\d+)?$/.test(s)) {
    throw new ConfigError(
      `${key}: must be an RFC 6665 reason (deactivated, probation, rejected, timeout, giveup, noresource, invariant), optionally ;retry-after=N (got ${JSON.stringify(s)})`,
    );
  }
  return s;
};

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

const nodeName: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!NODE_NAME.test(s)) throw new ConfigError(`${key}: must be 1-63 letters, digits, '.', '_' or '-' (got ${JSON.stringify(s)})`);
  return s;
};

const xcapRoot: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!/^\/[A-Za-z0-9\-._~/]*[^/]$/.test(s))
    throw new ConfigError(`${key}: must be an absolute path without a trailing slash, e.g. /xcap-root`);
  return s;
};

const userMap: Check = (v, key) => {
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string')) return v;
  throw new ConfigError(`${key}: must be an object mapping XUI (sip:user@domain) to password`);
};

/** user name → password; a user name has no ':' (Basic splits on the first one, RFC 7617 §2) and no control characters. */
const passwordMap: Check = (v, key) => {
  if (!v || typeof v !== 'object' || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string'))
    throw new ConfigError(`${key}: must be an object mapping user name to password`);
  for (const user of Object.keys(v))
    if (user === '' || /[:\u0000-\u001f\u007f"]/.test(user))
      throw new ConfigError(`${key}: user name ${JSON.stringify(user)} must be non-empty, without ':', '"' or control characters`);
  return v;
};

/** A realm goes between quotes in WWW-Authenticate: printable, no quote or backslash. */
const realm: Check = (v, key) => {
  const s = str(v, key) as string;
  if (!/^[\x20-\x7e]{1,100}$/.test(s) || /["\\]/.test(s))
    throw new ConfigError(`${key}: must be 1-100 printable ASCII characters without '"' or '\\' (got ${JSON.stringify(s)})`);
  return s;
};

/** key → [default, check]. The order here is the order of the README table. */
const SCHEMA: Record<keyof Omit<Config, 'db_path' | 'tls' | 'duplicate_to' | 'outbound_proxy_target'>, [unknown, Check]> = {
  listen: [['udp:127.0.0.1:5060', 'tcp:127.0.0.1:5060'], listenList],
  xcap_listen: ['127.0.0.1:8080', hostPort],
  xcap_root: ['/xcap-root', xcapRoot],
  rpc_listen: ['127.0.0.1:8081', hostPort],
  db_url: ['lmdb:./data', dbUrl],
  db_map_size: [2 * 1024 * 1024 * 1024, int(1 << 20, Number.MAX_SAFE_INTEGER)],
  xcap_table: ['xcap', str],
  log_level: ['info', oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent')],
  node_name: [NODE_NAME.test(hostname()) ? hostname() : 'presenced', nodeName],
  disable_presence: [0, flag],
  disable_winfo: [0, flag],
  disable_bla: [1, flag],
  force_active: [0, flag],
  integrated_xcap_server: [1, flag],
  xcap_server: [[], stringList],
  passive_mode: [0, flag],
  xcapauth_userdel_reason: ['probation', userdelReason],
  force_dummy_presence: [0, flag],
  force_single_dialog: [0, flag],
  force_dummy_dialog: [0, flag],
  dialog_authorization: [0, flag],
  disable_dialog: [0, flag],
  disable_reg: [0, flag],
  min_expires: [0, int(0, 86400 * 365)],
  max_expires: [3600, int(1, 86400 * 365)],
  default_expires: [3600, int(1, 86400 * 365)],
  min_expires_action: [1, int(1, 2)],
  expires_offset: [0, int(0, 3600)],
  clean_period: [100, int(1, 86400)],
  server_address: ['', str],
  to_tag_pref: ['10', str],
  timeout_rm_subs: [1, flag],
  periodical_query: [1, flag],
  query_period: [100, int(1, 86400)],
  winfo_waiting_period: [3600, int(0, 86400 * 365)],
  notify_min_interval: [1, int(1, 86400)],
  notify_cseq_reserve: [64, int(1, 1_000_000)],
  max_message_size: [65535, int(1024, 1 << 20)],
  // A store key holds up to two URIs (watcher: [presentity, event, watcher]) and LMDB keys end at 1978 bytes.
  max_uri_length: [512, int(64, 900)],
  udp_mtu: [0, int(0, 65535)],
  udp_mtu_try_proto: ['udp', (v, key) => oneOf('udp', 'tcp', 'tls')(typeof v === 'string' ? v.toLowerCase() : v, key)],
  tcp_connection_lifetime: [120, int(1, 86400 * 7)],
  tcp_partial_timeout: [10, int(1, 3600)],
  sip_t1: [500, int(10, 10_000)],
  sip_t2: [4000, int(10, 60_000)],
  sip_t4: [5000, int(10, 60_000)],
  tls_certificate: ['', str],
  tls_private_key: ['', str],
  tls_ca_list: ['', str],
  tls_verify_certificate: [1, flag],
  trace_on: [0, flag],
  duplicate_uri: ['', str],
  hep_mode_on: [1, flag],
  hep_version: [3, int(3, 3)],
  hep_capture_id: [1, int(0, 0xffffffff)],
  auth_key: ['', str],
  web_console: [0, flag],
  rpc_auth: ['none', oneOf('none', 'digest', 'basic')],
  rpc_auth_users: [{}, passwordMap],
  rpc_auth_realm: ['presenced', realm],
  rpc_metrics_open: [0, flag],
  worker_threads: [-1, int(-1, 64)],
  worker_inline_max_bytes: [1536, int(0, 1 << 20)],
  max_xml_size: [65536, int(1024, 16 << 20)],
  max_xml_depth: [64, int(4, 1024)],
  xcap_auth: ['none', oneOf('none', 'digest')],
  xcap_auth_users: [{}, userMap],
  xcap_auth_realm: ['presenced', str],
  overload_max_inflight: [1000, int(0, 1_000_000)],
  overload_max_loop_lag: [250, int(0, 60_000)],
  overload_retry_after: [2, int(1, 3600)],
  overload_max_udp_queue: [1 << 20, int(0, 1 << 30)],
  overload_min_inflight: [8, int(0, 1_000_000)],
  max_server_transactions: [1_000_000, int(0, 100_000_000)],
  max_connections: [10_000, int(0, 10_000_000)],
  max_dns_lookups: [256, int(0, 1_000_000)],
  max_subscriptions: [200_000, int(0, 100_000_000)],
  max_subscriptions_per_watcher: [1_000, int(0, 100_000_000)],
  max_publications: [200_000, int(0, 100_000_000)],
  max_publications_per_presentity: [64, int(0, 100_000_000)],
  limit_log_interval: [10, int(1, 86400)],
  disable_rls: [0, flag],
  rls_event: [['presence'], stringList],
  waitn_time: [5, int(0, 3600)],
  rls_max_expires: [7200, int(1, 86400 * 365)],
  outbound_proxy: ['', str],
  rls_server_address: ['', str],
  max_notify_body_length: [0, int(0, 1 << 30)],
  to_presence_code: [1, int(0, 699)],
  max_backend_subs: [0, int(0, 100_000_000)],
  rls_list_subscribers: ['owner', oneOf('owner', 'any')],
  rls_local_domains: [[], stringList],
  cluster_nodes: [1, int(1, 1024)],
  cluster_index: [0, int(0, 1023)],
};

export const CONFIG_KEYS = Object.keys(SCHEMA);

export function defaultsOf(): Record<string, unknown> {
  return Object.fromEntries(Object.entries(SCHEMA).map(([k, [d]]) => [k, d]));
}

/** Validate a parsed JSON object; throws ConfigError naming the key and what is allowed. */
export function buildConfig(raw: unknown): Config {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('configuration must be a JSON object');
  const input = raw as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (!(key in SCHEMA)) {
      const near = CONFIG_KEYS.filter((k) => k.includes(key) || key.includes(k) || levenshtein(k, key) <= 3);
      throw new ConfigError(`unknown configuration key "${key}"${near.length ? ` (did you mean ${near.join(', ')}?)` : ''}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, [def, check]] of Object.entries(SCHEMA)) out[key] = check(key in input ? input[key] : def, key);
  const cfg = out as unknown as Config;
  cfg.db_path = cfg.db_url.slice('lmdb:'.length);
  if (cfg.min_expires > cfg.max_expires)
    throw new ConfigError(`min_expires (${cfg.min_expires}) must not exceed max_expires (${cfg.max_expires})`);
  if (cfg.default_expires > cfg.max_expires) {
    throw new ConfigError(`default_expires (${cfg.default_expires}) must not exceed max_expires (${cfg.max_expires})`);
  }
  if (cfg.sip_t2 < cfg.sip_t1) throw new ConfigError(`sip_t2 (${cfg.sip_t2}) must not be below sip_t1 (${cfg.sip_t1})`);
  if (!cfg.integrated_xcap_server && cfg.xcap_server.length === 0 && !cfg.force_active && !cfg.passive_mode) {
    throw new ConfigError(
      'xcap_server: at least one XCAP server URL is required when integrated_xcap_server is 0 (or set force_active to 1)',
    );
  }
  for (const [i, u] of cfg.xcap_server.entries()) {
    if (!/^https?:\/\/[^/\s]+(\/\S*)?$/.test(u)) throw new ConfigError(`xcap_server[${i}]: "${u}" is not an http(s) URL of an XCAP root`);
  }
  if (cfg.rpc_auth !== 'none' && Object.keys(cfg.rpc_auth_users).length === 0) {
    throw new ConfigError(`rpc_auth_users: needs at least one user when rpc_auth is "${cfg.rpc_auth}"`);
  }
  if (cfg.xcap_auth === 'digest' && Object.keys(cfg.xcap_auth_users).length === 0) {
    throw new ConfigError('xcap_auth_users: needs at least one user when xcap_auth is "digest"');
  }
  const secure = cfg.listen.findIndex((l) => l.proto === 'tls' || l.proto === 'wss');
  if (secure !== -1) {
    const l = cfg.listen[secure]!;
    for (const key of ['tls_certificate', 'tls_private_key'] as const) {
      if (cfg[key] === '') {
        throw new ConfigError(
          `${key}: required by listen[${secure}] (${l.proto}:${l.address}:${l.port}); set it to the path of a PEM file`,
        );
      }
    }
  }
  if (cfg.udp_mtu > 0 && cfg.udp_mtu_try_proto !== 'udp' && !cfg.listen.some((l) => l.proto === cfg.udp_mtu_try_proto)) {
    throw new ConfigError(
      `udp_mtu_try_proto: ${cfg.udp_mtu_try_proto} needs a ${cfg.udp_mtu_try_proto} listener in listen (or set udp_mtu to 0)`,
    );
  }
  if (cfg.cluster_index >= cfg.cluster_nodes)
    throw new ConfigError(
      `cluster_index (${cfg.cluster_index}) must be below cluster_nodes (${cfg.cluster_nodes}): nodes are numbered from 0`,
    );
  cfg.rls_event = cfg.rls_event.map((e) => e.trim().toLowerCase());
  if (cfg.outbound_proxy !== '') cfg.outbound_proxy_target = proxyTarget(cfg.outbound_proxy);
  cfg.duplicate_to = cfg.duplicate_uri === '' ? undefined : captureAddress(cfg.duplicate_uri);
  if (cfg.trace_on && !cfg.duplicate_to) {
    throw new ConfigError(
      'duplicate_uri: required when trace_on is 1; the capture server as sip:HOST:PORT (Homer listens on sip:127.0.0.1:9060 by default)',
    );
  }
  if ((cfg.tls_certificate === '') !== (cfg.tls_private_key === '')) {
    const missing = cfg.tls_certificate === '' ? 'tls_certificate' : 'tls_private_key';
    throw new ConfigError(`${missing}: must be set together with ${missing === 'tls_certificate' ? 'tls_private_key' : 'tls_certificate'}`);
  }
  return cfg;
}

/** rls outbound_proxy: a SIP URI naming the next hop (host, port, transport). */
function proxyTarget(uri: string): { proto: Protocol; host: string; port: number } {
  let u: SipUri;
  try {
    u = SipUri.parse(uri);
  } catch {
    throw new ConfigError(`outbound_proxy: "${uri}" is not a SIP URI (e.g. sip:proxy.example.com:5060;transport=udp)`);
  }
  const proto = u.transport as Protocol;
  if (!PROTOCOLS.includes(proto)) throw new ConfigError(`outbound_proxy: transport ${proto} is not one of ${PROTOCOLS.join(', ')}`);
  return { proto, host: u.host, port: u.port ?? (proto === 'tls' || proto === 'wss' ? 5061 : 5060) };
}

/** siptrace duplicate_uri: `sip:ADDRESS:PORT` (or `udp:`), an IP literal, as Kamailio takes it. */
function captureAddress(uri: string): { host: string; port: number } {
  const m = /^(?:sip|udp):(\[[0-9A-Fa-f:.]+\]|[0-9.]+)(?::(\d{1,5}))?(?:;transport=udp)?$/i.exec(uri);
  const host = m?.[1]?.replace(/^\[|\]$/g, '');
  const port = m?.[2] === undefined ? 9060 : Number(m[2]);
  if (!m || !host || isIP(host) === 0 || port < 1 || port > 65535) {
    throw new ConfigError(
      `duplicate_uri: "${uri}" is not sip:IP:PORT (the capture server's address and UDP port, e.g. sip:127.0.0.1:9060)`,
    );
  }
  return { host, port };
}

async function readPem(key: string, path: string): Promise<Buffer> {
  let pem: Buffer;
  try {
    pem = await readFile(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN ')) throw new ConfigError(`${key}: ${path} is not a PEM file (no -----BEGIN line)`);
  return pem;
}

/** Every CERTIFICATE block of a PEM file must parse, and there must be one (TLS ignores other blocks silently). */
function checkCertificates(key: string, path: string, pem: Buffer): void {
  const blocks = pem.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${key}: ${path} holds no certificate (no -----BEGIN CERTIFICATE----- block)`);
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (err) {
      throw new ConfigError(`${key}: certificate ${i + 1} of ${path} cannot be parsed: ${(err as Error).message}`);
    }
  }
}

/**
 * Read the TLS files once, at start, and check they make a usable context: a certificate, the
 * private key that belongs to it, and CAs that parse. An operator learns it now, not at the
 * first handshake.
 */
async function loadTls(cfg: Config): Promise<void> {
  if (cfg.tls_certificate === '' && cfg.tls_ca_list === '') return;
  const tls: TlsSettings = { rejectUnauthorized: cfg.tls_verify_certificate === 1 };
  if (cfg.tls_certificate !== '') {
    const cert = await readPem('tls_certificate', cfg.tls_certificate);
    const key = await readPem('tls_private_key', cfg.tls_private_key);
    checkCertificates('tls_certificate', cfg.tls_certificate, cert);
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new ConfigError(
        `tls_private_key: ${cfg.tls_private_key} is not the unencrypted private key of ${cfg.tls_certificate}: ${(err as Error).message}`,
      );
    }
    Object.assign(tls, { cert, key, certificateFile: cfg.tls_certificate, privateKeyFile: cfg.tls_private_key });
  }
  if (cfg.tls_ca_list !== '') {
    const ca = await readPem('tls_ca_list', cfg.tls_ca_list);
    checkCertificates('tls_ca_list', cfg.tls_ca_list, ca);
    tls.ca = ca;
  }
  cfg.tls = tls;
}

/**
 * Load and validate the configuration file. `readFiles` = false leaves the TLS files unread
 * (the `presenced rpc` command needs only rpc_listen, and may run as a user who cannot read the key).
 */
export async function loadConfig(path: string | undefined, { readFiles = true } = {}): Promise<Config> {
  if (path === undefined) return buildConfig({});
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read configuration file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`configuration file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const cfg = buildConfig(raw);
  if (readFiles) await loadTls(cfg);
  return cfg;
}

function levenshtein(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}
