/**
 * `presenced rpc --cluster FILE`: one JSON-RPC call sent to every node of a cluster at once. The
 * presentity methods find the owning node by asking them all: a presentity lives on exactly one
 * node, so the nodes with data are printed (each with its name) and the empty answers are not.
 */

import { postRpc, RpcHttpError, type RpcCredentials } from './client.js';

/** Methods whose answer is a list about one presentity: an empty list means "not on this node". */
const OWNER_METHODS = new Set(['presence.presentity_show', 'presence.watcher_list']);

export interface ClusterNode {
  name: string;
  url: string;
}

/** Lines `NAME URL` or `URL`; blank lines and # comments skipped. Throws on a line that is neither. */
export function parseClusterFile(text: string): ClusterNode[] {
  const nodes: ClusterNode[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') continue;
    const parts = line.split(/\s+/);
    const url = parts[parts.length - 1]!;
    if (parts.length > 2 || !/^https?:\/\/\S+$/.test(url))
      throw new Error(`line ${i + 1}: expected "NAME URL" or "URL" (http://host:port/RPC), got "${line}"`);
    nodes.push({ name: parts.length === 2 ? parts[0]! : url, url });
  }
  if (nodes.length === 0) throw new Error('no nodes listed');
  return nodes;
}

type Answer = { node: string; result?: unknown; error?: string };

async function callOne(node: ClusterNode, method: string, params: unknown[], credentials: RpcCredentials | undefined): Promise<Answer> {
  try {
    const json = await postRpc(node.url, { method, params }, credentials, AbortSignal.timeout(5000));
    if (json.error) return { node: node.name, error: `error ${json.error.code}: ${json.error.message}` };
    return { node: node.name, result: json.result };
  } catch (err) {
    if (err instanceof RpcHttpError) return { node: node.name, error: err.message };
    return { node: node.name, error: `cannot reach ${node.url}: ${String((err as Error).cause ?? (err as Error).message)}` };
  }
}

/**
 * Prints a JSON list of `{node, result}` (and `{node, error}` for nodes that failed). Exit status 0
 * when every node answered, 1 otherwise (the answers of the others are still printed).
 */
export async function clusterCall(fileText: string, method: string, params: unknown[], credentials?: RpcCredentials): Promise<number> {
  let nodes: ClusterNode[];
  try {
    nodes = parseClusterFile(fileText);
  } catch (err) {
    process.stderr.write(`presenced rpc: --cluster file: ${(err as Error).message}\n`);
    return 2;
  }
  const answers = await Promise.all(nodes.map((n) => callOne(n, method, params, credentials)));
  const shown = OWNER_METHODS.has(method)
    ? answers.filter((a) => a.error !== undefined || (Array.isArray(a.result) && a.result.length > 0))
    : answers;
  for (const a of answers) if (a.error !== undefined) process.stderr.write(`presenced rpc: ${a.node}: ${a.error}\n`);
  process.stdout.write(JSON.stringify(shown, null, 2) + '\n');
  return answers.some((a) => a.error !== undefined) ? 1 : 0;
}
