/**
 * `presenced rpc METHOD [PARAM ...]` — a kamcmd-like client for the JSON-RPC admin port.
 * The port comes from --url, or from rpc_listen in --config FILE, or the default.
 * Params that parse as JSON numbers stay numbers; everything else is a string.
 * `--cluster FILE` sends the call to every node listed in FILE (lines `NAME URL` or `URL`, # comments)
 * and prints each node's answer with its name; presentity_show / watcher_list print only the nodes
 * that have data, which is the owner of that presentity.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig } from './config.js';
import { clusterCall } from './rpc/cluster.js';

export async function rpcCommand(argv: string[]): Promise<number> {
  let url: string | undefined;
  let configPath: string | undefined;
  let clusterPath: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--url') url = argv[++i];
    else if (a === '--config' || a === '-c') configPath = argv[++i];
    else if (a === '--cluster') clusterPath = argv[++i];
    else rest.push(a);
  }
  const [method, ...params] = rest;
  if (!method) {
    process.stderr.write('usage: presenced rpc [--url http://127.0.0.1:8081/RPC | --config FILE | --cluster FILE] METHOD [PARAM ...]\n');
    return 2;
  }
  const typed = params.map((p) => (/^-?\d+$/.test(p) ? Number(p) : p));
  if (clusterPath !== undefined) {
    let text: string;
    try {
      text = await readFile(clusterPath, 'utf8');
    } catch (err) {
      process.stderr.write(`presenced rpc: cannot read --cluster ${clusterPath}: ${(err as Error).message}\n`);
      return 2;
    }
    return clusterCall(text, method, typed);
  }
  if (!url) {
    const cfg = await loadConfig(configPath, { readFiles: false });
    url = `http://${cfg.rpc_listen.address.includes(':') ? `[${cfg.rpc_listen.address}]` : cfg.rpc_listen.address}:${cfg.rpc_listen.port}/RPC`;
  }
  const body = {
    jsonrpc: '2.0',
    id: 1,
    method,
    params: typed,
  };
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  } catch (err) {
    process.stderr.write(`presenced rpc: cannot reach ${url}: ${(err as Error).cause ?? (err as Error).message}\n`);
    return 1;
  }
  const json = (await res.json()) as { result?: unknown; error?: { code: number; message: string } };
  if (json.error) {
    process.stderr.write(`error ${json.error.code}: ${json.error.message}\n`);
    return 1;
  }
  process.stdout.write(JSON.stringify(json.result, null, 2) + '\n');
  return 0;
}
