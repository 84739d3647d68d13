#!/usr/bin/env bash
# The whole test suite (`npm test`) inside a fresh network namespace whose only interface is lo:
# it shows that no test needs a LAN interface or address, and nothing the suite does can reach
# or disturb the host's network. Needs root (ip netns); .ci/run uses it.
#
# The namespace's lo carries 127.0.0.1 and one more address, 198.18.0.1 (RFC 2544's benchmark
# range), with the default route over lo from that address: liblinphone 5.1 calls the network
# down when a UDP socket towards a public address gets a loopback source, and then drops every
# SIP transport (test/support/linphone.ts). Packets on that route go nowhere but lo.
#
#   test/run-isolated.sh                 # npm test
#   test/run-isolated.sh node --test dist/test/interop/baresip.test.js
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "run-isolated: needs root (ip netns add); run 'npm test' instead" >&2
  exit 2
fi

ns="presenced-test-$$"
ip netns add "$ns"
trap 'ip netns delete "$ns"' EXIT
ip -n "$ns" link set lo up
ip -n "$ns" addr add 198.18.0.1/32 dev lo
ip -n "$ns" route add default dev lo src 198.18.0.1
echo "run-isolated: network namespace $ns: $(ip -n "$ns" -br link | awk '{print $1}' | paste -sd' ')"

if [ $# -eq 0 ]; then set -- npm test; fi
ip netns exec "$ns" "$@"
