#!/usr/bin/env bash
# presenced cluster on one machine: N nodes, the Kamailio SIP edge and the HAProxy XCAP router,
# each in its own network namespace, joined by veth pairs to a bridge inside a hub namespace.
# Nothing is configured in the root namespace: its only trace is the namespaces themselves.
#
#   cluster.sh up [--nodes N] [--name P] [--subnet A.B.C] [--dir DIR] [--ping-interval S] [--node-json '{...}']
#   cluster.sh down [--name P] [--dir DIR]           everything of cluster P: processes (by PID), namespaces, links
#   cluster.sh kill-node I [--name P] [--dir DIR]    SIGKILL node I (its namespace and store stay)
#   cluster.sh start-node I [--name P] [--dir DIR]   start node I again on its own store
#   cluster.sh add-node [--name P] [--dir DIR]       node N+1, edge and HAProxy restarted over N+1 nodes
#   cluster.sh status [--name P] [--dir DIR]
#
# Addresses (A.B.C.x/24, default 198.51.100.0/24, TEST-NET-2, used only inside the namespaces):
#   .2 edge (SIP udp+tcp :5060)   .3 xcap (HTTP :8080)   .4 client (nothing runs there)
#   .1I node I (SIP :5060, XCAP :8080, RPC :8081)
# DIR (default /tmp/presenced-cluster-P) holds every configuration, log, PID file and store, and
# cluster.rpc (the list for `presenced rpc --cluster`). Needs root, iproute2, kamailio, haproxy, node
# (NODE_BIN, default node from PATH; PRESENCED_MAIN, default dist/core/main.js of this checkout).
# The edge runs EDGE_CHILDREN (default 4) UDP workers with EDGE_SHM_MB (default 256) of shared memory:
# every NOTIFY of a fan-out is a transaction there until its Timer F/wait timer ends.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NODE_MAIN=${PRESENCED_MAIN:-$REPO/dist/core/main.js}

cmd=${1:-}
[ $# -gt 0 ] && shift
arg=""
case "$cmd" in kill-node | start-node) arg=${1:?"$cmd needs a node number"}; shift ;; esac
NODES=3 NAME=pcl SUBNET=198.51.100 DIR="" PING=5 NODE_JSON='{}'
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --ping-interval) PING=$2; shift 2 ;;
    --node-json) NODE_JSON=$2; shift 2 ;;
    *) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
DIR=${DIR:-/tmp/presenced-cluster-$NAME}
[[ "$NAME" =~ ^[a-z][a-z0-9]{0,5}$ ]] || { echo "cluster.sh: --name must be 1-6 lower-case letters/digits (interface names are short)" >&2; exit 2; }
[[ "$NODES" =~ ^[1-9][0-9]?$ && "$NODES" -le 80 ]] || { echo "cluster.sh: --nodes must be 1..80" >&2; exit 2; }
[[ "$SUBNET" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "cluster.sh: --subnet must be A.B.C (a /24)" >&2; exit 2; }

ns() { echo "$NAME-$1"; }
node_ip() { echo "$SUBNET.$((10 + $1))"; }
EDGE_IP=$SUBNET.2 XCAP_IP=$SUBNET.3 CLIENT_IP=$SUBNET.4

# Host namespace $1 gets eth0 = $2/24, the other end of its veth on the hub's bridge.
add_host() {
  local host=$1 ip=$2 n
  n=$(ns "$host")
  ip netns add "$n"
  ip -n "$n" link set lo up
  ip link add "$NAME-h-$host" type veth peer name "$NAME-c-$host"
  ip link set "$NAME-h-$host" netns "$(ns hub)"
  ip link set "$NAME-c-$host" netns "$n"
  ip -n "$n" link set "$NAME-c-$host" name eth0
  ip -n "$n" addr add "$ip/24" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$(ns hub)" link set "$NAME-h-$host" master br0 up
}

# Run "$@" in namespace $1 in the background, output to $2, PID to $3.
spawn_in() {
  local n=$1 log=$2 pidfile=$3
  shift 3
  ip netns exec "$n" "$@" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

wait_for() { # what, seconds, command... (the command's status 2 = give up now)
  local what=$1 secs=$2 i rc
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    rc=0
    "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 0 ] && return 0
    [ "$rc" = 2 ] && { echo "cluster.sh: $what exited while starting" >&2; return 1; }
    sleep 0.1
  done
  echo "cluster.sh: $what not ready after ${secs}s" >&2
  return 1
}

listening() { # namespace, ss filter args (e.g. -lun), port
  [ -n "$(ip netns exec "$1" ss -H "$2" "sport = :$3")" ]
}

node_ready() {
  alive "$DIR/n$1/pid" || { echo "cluster.sh: node n$1 exited" >&2; return 2; }
  listening "$(ns "n$1")" -ltn 8081
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_node_config() {
  local i=$1 ip extra
  ip=$(node_ip "$i")
  mkdir -p "$DIR/n$i"
  extra=$(printf '%s' "$NODE_JSON" | sed -e 's/^[[:space:]]*{//' -e 's/}[[:space:]]*$//')
  cat >"$DIR/n$i/config.json" <<JSON
{
  "node_name": "n$i",
  "listen": ["udp:$ip:5060", "tcp:$ip:5060"],
  "xcap_listen": "$ip:8080",
  "rpc_listen": "$ip:8081",
  "db_url": "lmdb:$DIR/n$i/db"${extra:+,$extra}
}
JSON
}

start_node() {
  local i=$1
  alive "$DIR/n$i/pid" && { echo "cluster.sh: node $i is already running" >&2; return 1; }
  spawn_in "$(ns "n$i")" "$DIR/n$i/log" "$DIR/n$i/pid" "${NODE_BIN:-node}" "$NODE_MAIN" --config "$DIR/n$i/config.json"
  # The RPC port opens once the store is recovered (whatever log_level says).
  wait_for "node n$i" 30 node_ready "$i" || { tail -20 "$DIR/n$i/log" >&2; return 1; }
}

# The edge's dispatcher list, HAProxy's backends and the RPC list for nodes 1..$1.
write_routing() {
  local n=$1 any="" i
  : >"$DIR/edge/dispatcher.list"
  : >"$DIR/xcap/nodes.cfg"
  : >"$DIR/cluster.rpc"
  : >"$DIR/cluster.xcap"
  for ((i = 1; i <= n; i++)); do
    # One dispatcher set per node: set i holds node i only (see edge/kamailio.cfg, route[OWNER]).
    echo "$i sip:$(node_ip "$i"):5060 0 0 name=n$i" >>"$DIR/edge/dispatcher.list"
    printf 'backend node%d\n    option httpchk\n    http-check send meth GET uri /xcap-root/xcap-caps/global/index ver HTTP/1.1 hdr Host presenced\n    server n%d %s:8080 check inter %ds fall 1 rise 1\n\n' \
      "$i" "$i" "$(node_ip "$i")" "$PING" >>"$DIR/xcap/nodes.cfg"
    any+="    server n$i $(node_ip "$i"):8080 check inter ${PING}s fall 1 rise 1"$'\n'
    echo "n$i http://$(node_ip "$i"):8081/RPC" >>"$DIR/cluster.rpc"
    echo "n$i http://$(node_ip "$i"):8080/xcap-root" >>"$DIR/cluster.xcap"
  done
  printf 'backend anynode\n    balance roundrobin\n    option httpchk\n    http-check send meth GET uri /xcap-root/xcap-caps/global/index ver HTTP/1.1 hdr Host presenced\n%s' "$any" >>"$DIR/xcap/nodes.cfg"
  echo "$n" >"$DIR/nodes"
  echo "$PING" >"$DIR/ping-interval"
}

start_routers() {
  local n
  n=$(cat "$DIR/nodes")
  spawn_in "$(ns edge)" "$DIR/edge/log" "$DIR/edge/pid" \
    kamailio -f "$HERE/edge/kamailio.cfg" -DD -E -n "${EDGE_CHILDREN:-4}" -m "${EDGE_SHM_MB:-256}" -M 8 -Y "$DIR/edge" \
    -l "udp:$EDGE_IP:5060" -l "tcp:$EDGE_IP:5060" \
    -A "NODES=$n" -A "DS_LIST=\"$DIR/edge/dispatcher.list\"" -A "PING_INTERVAL=$PING"
  spawn_in "$(ns xcap)" "$DIR/xcap/log" "$DIR/xcap/pid" \
    env PRESENCED_NODES="$n" XCAP_BIND="$XCAP_IP:8080" PRESENCED_LUA="$HERE/haproxy/presentity-slot.lua" \
    haproxy -db -f "$HERE/haproxy/haproxy.cfg" -f "$DIR/xcap/nodes.cfg"
  wait_for "edge" 20 listening "$(ns edge)" -lun 5060 || { cat "$DIR/edge/log" >&2; exit 1; }
  wait_for "haproxy" 20 listening "$(ns xcap)" -ltn 8080 || { cat "$DIR/xcap/log" >&2; exit 1; }
}

stop_pid() { # pidfile: SIGTERM, wait up to 5 s, SIGKILL
  local f=$1 pid t
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((t = 0; t < 50; t++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

up() {
  [ -d "$DIR" ] && [ -n "$(ls "$DIR"/*/pid 2>/dev/null)" ] && { echo "cluster.sh: $DIR holds a running cluster; run down first" >&2; exit 1; }
  [ -f "$NODE_MAIN" ] || { echo "cluster.sh: $NODE_MAIN missing (npm run build)" >&2; exit 1; }
  mkdir -p "$DIR/edge" "$DIR/xcap"
  printf '%s' "$NODE_JSON" >"$DIR/node-json"
  echo "$SUBNET" >"$DIR/subnet"
  ip netns add "$(ns hub)"
  ip -n "$(ns hub)" link add br0 type bridge
  ip -n "$(ns hub)" link set br0 up
  add_host edge "$EDGE_IP"
  add_host xcap "$XCAP_IP"
  add_host client "$CLIENT_IP"
  for ((i = 1; i <= NODES; i++)); do
    add_host "n$i" "$(node_ip "$i")"
    write_node_config "$i"
  done
  write_routing "$NODES"
  for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
  start_routers
  echo "cluster $NAME up: edge sip:$EDGE_IP:5060, xcap http://$XCAP_IP:8080/xcap-root, $NODES nodes ($(node_ip 1)..), client namespace $(ns client) ($CLIENT_IP), state in $DIR"
}

# Node N+1: its namespace, configuration and process, then the edge and HAProxy restarted with the
# new node count (Kamailio takes NODES at start), then the XCAP documents moved to their new owners.
# The mapping is modulo the node count: most presentities change owner (README "Running a cluster",
# "Adding a node" says what that means for publications and subscriptions).
add_node() {
  local n i
  [ -f "$DIR/nodes" ] || { echo "cluster.sh: no cluster in $DIR" >&2; exit 1; }
  n=$(cat "$DIR/nodes")
  PING=$(cat "$DIR/ping-interval")
  SUBNET=$(cat "$DIR/subnet") EDGE_IP=$(cat "$DIR/subnet").2 XCAP_IP=$(cat "$DIR/subnet").3
  i=$((n + 1))
  add_host "n$i" "$(node_ip "$i")"
  NODE_JSON=$(cat "$DIR/node-json" 2>/dev/null || echo '{}')
  write_node_config "$i"
  start_node "$i"
  stop_pid "$DIR/edge/pid"
  stop_pid "$DIR/xcap/pid"
  write_routing "$i"
  start_routers
  echo "cluster $NAME: node n$i added ($(node_ip "$i")), edge and HAProxy now map over $i nodes"
  # XCAP documents do not move by themselves: copy each to its new owner (move-documents.mjs).
  ip netns exec "$(ns client)" "${NODE_BIN:-node}" "$HERE/move-documents.mjs" "$DIR/cluster.rpc" "$DIR/cluster.xcap" "http://$XCAP_IP:8080/xcap-root"
}

down() {
  local f pid
  for f in "$DIR"/*/pid; do
    [ -f "$f" ] || continue
    kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$DIR"/*/pid; do stop_pid "$f"; done
  # Anything else still running in our namespaces (children of a process that lost its PID file).
  for n in $(ip netns list | awk '{print $1}' | grep -E "^$NAME-" || true); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  # veth ends still in the root namespace (an up that failed half-way).
  for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$NAME-[hc]-" || true); do
    ip link del "$l" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

kill_node() {
  alive "$DIR/n$1/pid" || { echo "cluster.sh: node $1 is not running" >&2; exit 1; }
  local pid
  pid=$(cat "$DIR/n$1/pid")
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$DIR/n$1/pid"
}

status() {
  for f in "$DIR"/*/pid; do
    [ -f "$f" ] || continue
    printf '%s pid %s %s\n' "$(basename "$(dirname "$f")")" "$(cat "$f")" "$(alive "$f" && echo running || echo gone)"
  done
}

case "$cmd" in
  up) up ;;
  add-node) add_node ;;
  down) down ;;
  kill-node) kill_node "$arg" ;;
  start-node)
    [[ "$arg" =~ ^[0-9]+$ && -f "$DIR/n$arg/config.json" ]] || { echo "cluster.sh: no node $arg in $DIR" >&2; exit 1; }
    : >"$DIR/n$arg/log.new"; cat "$DIR/n$arg/log" >>"$DIR/n$arg/log.old" 2>/dev/null || true; mv "$DIR/n$arg/log.new" "$DIR/n$arg/log"
    start_node "$arg" ;;
  status) status ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
