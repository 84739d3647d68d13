/**
 * `presenced rpc METHOD [PARAM ...]` — a kamcmd-like client for the JSON-RPC admin port.
 * The port comes from --url, or from rpc_listen in --config FILE, or the default.
 * Params that parse as JSON numbers stay numbers; everything else is a string.
 * `--cluster FILE` sends the call to every node listed in FILE (lines `NAME URL` or `URL`, # comments)
 * and prints each node's answer with its name; presentity_show / watcher_list print only the nodes
 * that have data, which is the owner of that presentity.
 * Credentials for a port with rpc_auth: `--user NAME` with `--password-file FILE` (its first line),
 * or taken from rpc_auth_users in --config FILE (--user may be left out when it lists one user).
 * They are sent only when the port asks (401), never on the command line.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig, type Config } from './config.js';
import { clusterCall } from './rpc/cluster.js';
import { postRpc, type RpcCredentials, type RpcReply } from './rpc/client.js';

const USAGE =
  'usage: presenced rpc [--url http://127.0.0.1:8081/RPC | --config FILE | --cluster FILE] [--user NAME [--password-file FILE]] METHOD [PARAM ...]\n';

export async function rpcCommand(argv: string[]): Promise<number> {
  let url: string | undefined;
  let configPath: string | undefined;
  let clusterPath: string | undefined;
  let user: string | undefined;
  let passwordFile: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--url') url = argv[++i];
    else if (a === '--config' || a === '-c') configPath = argv[++i];
    else if (a === '--cluster') clusterPath = argv[++i];
    else if (a === '--user') user = argv[++i];
    else if (a === '--password-file') passwordFile = argv[++i];
    else rest.push(a);
  }
  const [method, ...params] = rest;
  if (!method) {
    process.stderr.write(USAGE);
    return 2;
  }
  const typed = params.map((p) => (/^-?\d+$/.test(p) ? Number(p) : p));
  const cfg = configPath !== undefined || !url ? await loadConfig(configPath, { readFiles: false }) : undefined;
  let credentials: RpcCredentials | undefined;
  try {
    credentials = await credentialsOf(user, passwordFile, configPath !== undefined ? cfg : undefined);
  } catch (err) {
    process.stderr.write(`presenced rpc: ${(err as Error).message}\n`);
    return 2;
  }
  if (clusterPath !== undefined) {
    let text: string;
    try {
      text = await readFile(clusterPath, 'utf8');
    } catch (err) {
      process.stderr.write(`presenced rpc: cannot read --cluster ${clusterPath}: ${(err as Error).message}\n`);
      return 2;
    }
    return clusterCall(text, method, typed, credentials);
  }
  if (!url) {
    const listen = cfg!.rpc_listen;
    url = `http://${listen.address.includes(':') ? `[${listen.address}]` : listen.address}:${listen.port}/RPC`;
  }
  let json: RpcReply;
  try {
    json = await postRpc(url, { method, params: typed }, credentials);
  } catch (err) {
    const e = err as Error;
    process.stderr.write(`presenced rpc: ${e.name === 'RpcHttpError' ? e.message : `cannot reach ${url}: ${e.cause ?? e.message}`}\n`);
    return 1;
  }
  if (json.error) {
    process.stderr.write(`error ${json.error.code}: ${json.error.message}\n`);
    return 1;
  }
  process.stdout.write(JSON.stringify(json.result, null, 2) + '\n');
  return 0;
}

/** The credentials to answer a 401 with: --user and --password-file, else rpc_auth_users of --config. */
async function credentialsOf(
  user: string | undefined,
  passwordFile: string | undefined,
  cfg: Config | undefined,
): Promise<RpcCredentials | undefined> {
  if (passwordFile !== undefined) {
    if (user === undefined) throw new Error('--password-file needs --user');
    let text: string;
    try {
      text = await readFile(passwordFile, 'utf8');
    } catch (err) {
      throw new Error(`cannot read --password-file ${passwordFile}: ${(err as Error).message}`);
    }
    return { user, password: text.split(/\r?\n/, 1)[0]! };
  }
  if (!cfg || cfg.rpc_auth === 'none') {
    if (user !== undefined) throw new Error(`--user ${user} needs --password-file, or --config with rpc_auth_users`);
    return undefined;
  }
  const users = Object.keys(cfg.rpc_auth_users);
  const name = user ?? (users.length === 1 ? users[0]! : undefined);
  if (name === undefined) throw new Error(`rpc_auth_users of --config lists ${users.length} users: say which with --user`);
  if (!Object.hasOwn(cfg.rpc_auth_users, name)) throw new Error(`--user ${name} is not in rpc_auth_users of --config`);
  return { user: name, password: cfg.rpc_auth_users[name]! };
}
