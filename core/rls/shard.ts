/**
 * Which node of a cluster serves a presentity: the cluster edge's mapping (deploy/cluster/edge/
 * kamailio.cfg, DESIGN.md "Scale-out"), slot = core_hash(user "@" lower(host)) & 1023, node =
 * slot mod nodes (0-based here, as cluster_index counts). The list server asks it to tell the
 * resources it serves itself from the ones it subscribes to through the edge.
 */

/** Kamailio's core_hash (src/core/hashes.h) of a string's bytes, chars signed as on x86, unsigned 32-bit. */
export function coreHash(text: string): number {
  const b = Buffer.from(text, 'utf8');
  const c = (i: number): number => (b[i]! >= 128 ? b[i]! - 256 : b[i]!);
  let h = 0;
  let i = 0;
  let v: number;
  for (; i + 4 <= b.length; i += 4) {
    v = ((c(i) << 24) + (c(i + 1) << 16) + (c(i + 2) << 8) + c(i + 3)) >>> 0;
    h = (h + (v ^ (v >>> 3))) >>> 0;
  }
  v = 0;
  for (; i < b.length; i++) v = ((v << 8) + c(i)) >>> 0;
  h = (h + ((v ^ (v >>> 3)) >>> 0)) >>> 0;
  return (h + (h >>> 11) + (h >>> 13) + (h >>> 23)) >>> 0;
}

/** The node (0-based) that serves `scheme:user@host` among `nodes`; undefined for a URI without user@host. */
export function shardOf(presentity: string, nodes: number): number | undefined {
  const m = /^[a-z]+:(.*)@([^@;?]+)$/i.exec(presentity);
  if (!m) return undefined;
  return (coreHash(`${m[1]}@${m[2]!.toLowerCase()}`) & 1023) % nodes;
}
