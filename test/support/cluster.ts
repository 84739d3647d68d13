/**
 * The deploy kit of deploy/cluster/ driven from a test (cluster.sh up/down/kill-node/start-node),
 * and the presentity -> node mapping written a third time, independently of the Kamailio edge and
 * the HAProxy Lua converter, so the test can check all three agree:
 *
 *     slot = core_hash(user "@" lower(host)) & 1023,  owner = (slot mod nodes) + 1
 */
import { execFile } from 'node:child_process';
import { coreHash } from '../../core/rls/shard.js';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'deploy', 'cluster', 'cluster.sh');

export { coreHash };

/** The owning node (1-based) of `sip:user@host` in a cluster of `nodes` nodes. */
export function ownerOf(presentity: string, nodes: number): number {
  const m = /^[a-z]+:(.*)@([^@]+)$/i.exec(presentity);
  if (!m) throw new Error(`not a presentity URI: ${presentity}`);
  const slot = coreHash(`${m[1]}@${m[2]!.toLowerCase()}`) & 1023;
  return (slot % nodes) + 1;
}

export interface ClusterOptions {
  name: string;
  nodes: number;
  subnet: string;
  pingInterval: number;
  nodeJson?: Record<string, unknown>;
}

export function clusterScript(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, ...args], { env: { ...process.env, NODE_BIN: process.execPath } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function must(args: string[]): Promise<string> {
  const r = await clusterScript(args);
  if (r.code !== 0) throw new Error(`cluster.sh ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export class Cluster {
  constructor(readonly o: ClusterOptions) {}

  get dir(): string {
    return `/tmp/presenced-cluster-${this.o.name}`;
  }
  get edge(): string {
    return `${this.o.subnet}.2`;
  }
  get xcap(): string {
    return `${this.o.subnet}.3`;
  }
  get client(): string {
    return `${this.o.subnet}.4`;
  }
  nodeIp(i: number): string {
    return `${this.o.subnet}.${10 + i}`;
  }
  namespace(host: string): string {
    return `${this.o.name}-${host}`;
  }

  up(): Promise<string> {
    const args = [
      'up',
      '--name',
      this.o.name,
      '--nodes',
      String(this.o.nodes),
      '--subnet',
      this.o.subnet,
      '--ping-interval',
      String(this.o.pingInterval),
    ];
    if (this.o.nodeJson) args.push('--node-json', JSON.stringify(this.o.nodeJson));
    return must(args);
  }
  down(): Promise<string> {
    return must(['down', '--name', this.o.name]);
  }
  killNode(i: number): Promise<string> {
    return must(['kill-node', String(i), '--name', this.o.name]);
  }
  startNode(i: number): Promise<string> {
    return must(['start-node', String(i), '--name', this.o.name]);
  }
  addNode(): Promise<string> {
    return must(['add-node', '--name', this.o.name]);
  }
}
