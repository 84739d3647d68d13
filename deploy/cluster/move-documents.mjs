#!/usr/bin/env node
// After the node count changed (cluster.sh add-node): move every user's XCAP document that now
// belongs to another node. For each node of CLUSTER_RPC, its documents (RPC xcap.document_list);
// for each, the router (HAProxy, ROUTER_XCAP_ROOT) says who owns it now (X-Presenced-Node); a
// document on a node that no longer owns it is read from that node (NODES_XCAP: "NAME XCAP-ROOT"
// per line), PUT through the router with If-None-Match: * (a document the user already PUT on the
// new owner wins) and then deleted from the old node. Prints one line per document moved and a
// summary; exit status 1 if any document could not be moved (it is left where it was).
//
//   node move-documents.mjs CLUSTER_RPC NODES_XCAP ROUTER_XCAP_ROOT
import { readFileSync } from 'node:fs';

const [rpcFile, xcapFile, router] = process.argv.slice(2);
if (!router) {
  process.stderr.write('usage: move-documents.mjs CLUSTER_RPC NODES_XCAP ROUTER_XCAP_ROOT\n');
  process.exit(2);
}
const pairs = (file) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((l) => l.split(/\s+/));
const rpcOf = new Map(pairs(rpcFile));
const xcapOf = new Map(pairs(xcapFile));

async function rpc(url, method, params = []) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const json = await res.json();
  if (json.error) throw new Error(`${method} at ${url}: ${json.error.message}`);
  return json.result;
}

let moved = 0, kept = 0, stayed = 0, failed = 0;
for (const [node, rpcUrl] of rpcOf) {
  const nodeXcap = xcapOf.get(node);
  if (!nodeXcap) throw new Error(`${xcapFile}: no XCAP root for node ${node}`);
  for (const d of await rpc(rpcUrl, 'xcap.document_list')) {
    const path = `/${d.auid}/users/${encodeURIComponent(d.xui)}/${d.name.split('/').map(encodeURIComponent).join('/')}`;
    const probe = await fetch(router + path);
    await probe.arrayBuffer();
    const owner = probe.headers.get('x-presenced-node');
    if (owner === node) {
      stayed++;
      continue;
    }
    try {
      if (!owner) throw new Error(`the router answered ${probe.status} without naming an owner`);
      const src = await fetch(nodeXcap + path);
      if (src.status !== 200) throw new Error(`GET on ${node}: ${src.status}`);
      const body = Buffer.from(await src.arrayBuffer());
      const put = await fetch(router + path, { method: 'PUT', headers: { 'content-type': d.content_type, 'if-none-match': '*' }, body });
      await put.arrayBuffer();
      if (put.status === 412) kept++;
      else if (put.status === 200 || put.status === 201) moved++;
      else throw new Error(`PUT through the router: ${put.status}`);
      const del = await fetch(nodeXcap + path, { method: 'DELETE' });
      await del.arrayBuffer();
      if (del.status !== 200) throw new Error(`DELETE on ${node}: ${del.status}`);
      process.stdout.write(`${d.auid} ${d.xui} ${d.name}: ${node} -> ${owner}${put.status === 412 ? ' (the new owner had one already; kept it)' : ''}\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`${d.auid} ${d.xui} ${d.name} on ${node}: not moved: ${err.message}\n`);
    }
  }
}
process.stdout.write(`documents: ${moved} moved, ${kept} already on their new owner, ${stayed} stayed, ${failed} failed\n`);
process.exitCode = failed > 0 ? 1 : 0;
