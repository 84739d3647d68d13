/**
 * Nodes and test UAs a test file starts as it needs them, all closed and stopped after the file:
 * `defaults` go into every node's configuration (a test passes only what it is about).
 */
import { after } from 'node:test';
import { startNode, type RunningNode } from './node.js';
import { TestUa } from './sip-ua.js';

export function fleet(defaults: Record<string, unknown> = {}): {
  node: (config?: Record<string, unknown>) => Promise<RunningNode>;
  ua: (n: RunningNode, proto?: 'udp' | 'tcp') => Promise<TestUa>;
} {
  const nodes: RunningNode[] = [];
  const uas: TestUa[] = [];
  after(async () => {
    for (const u of uas) await u.close();
    for (const n of nodes) await n.stop();
  });
  return {
    async node(config = {}) {
      const n = await startNode({ ...defaults, ...config });
      nodes.push(n);
      return n;
    },
    async ua(n, proto = 'udp') {
      const u = await TestUa.open(proto, proto === 'udp' ? n.udpPort : n.tcpPort);
      uas.push(u);
      return u;
    },
  };
}
