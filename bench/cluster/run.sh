#!/usr/bin/env bash
# The cluster through its edge: PUBLISH/s and fan-out NOTIFY/s with the bench's load driver
# (bench/load/, run inside the cluster's client namespace, --bind to its address) against the
# Kamailio edge of deploy/cluster/, once with 1 node behind it and once with NODES (default 3).
# Same edge, same driver, same phases: the ratio says what the nodes add and where the edge caps it.
#
#   sudo bench/cluster/run.sh [NODES] [extra bench options, e.g. --duration 15 --watchers 1000,10000]
#   BENCH_RUNS="3" bench/cluster/run.sh 3     only the NODES run (default: "1 NODES")
#
# Needs root, a build (npm run build), kamailio and haproxy. Nodes run force_active=1 (the driver
# PUTs no rules), worker_threads 0, log_level warn. Results: bench/results/*-load.json per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${1:-3}
[ $# -gt 0 ] && shift
NAME=pbc
KIT=deploy/cluster/cluster.sh
trap '"$KIT" down --name "$NAME" >/dev/null 2>&1 || true' EXIT
for n in ${BENCH_RUNS:-1 $NODES}; do
  "$KIT" down --name "$NAME" >/dev/null
  "$KIT" up --name "$NAME" --nodes "$n" --node-json '{"force_active":1,"log_level":"warn","worker_threads":0}' >/dev/null
  echo "=== $n node(s) behind the edge ==="
  ip netns exec "$NAME-client" node dist/bench/run.js --only load --no-ceiling --targets external \
    --sip 198.51.100.2:5060 --bind 198.51.100.4 \
    --phases subscribe,fanout,publish --watchers 1000 --fanout-presentities "$NODES" --subs 1000 \
    --duration 5 --warmup 1 --latency-cycles 10 "$@" |
    sed -n '/── end-to-end figures ──/,/^results:/p'
  echo "edge log, ERROR lines by kind:"
  { grep 'ERROR' "/tmp/presenced-cluster-$NAME/edge/log" || true; } | sed 's/^[^E]*ERROR: //; s/\[[^]]*\]//' | sort | uniq -c | sort -rn | head -5
done
