#!/bin/bash
# Side by side on /work/shared/livebench (or $LIVEBENCH): the kernel forwarding with the fw4-like
# ruleset; `nft-offload run` with fw4's flowtable (its user-space fast path, AF_PACKET) and with
# `flags offload` (the XDP offload, generic mode on veth); and the XDP flow offload under the
# kernel as slow path (examples/offload_router: established UDP flows are pushed into the XDP
# map) in native and generic mode. `--no-run` leaves out the two `run` lines.
# The quiet wait stays under conntrack's 30 s UDP timeout, or the primed flows expire before the
# load and nothing is ever offloaded.
# Root. Usage: offload-livebench.sh [--router-cpu 1|off] [--duration S] [--flows N] [--reps N]
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
LB=${LIVEBENCH:-$HERE/../shared/livebench/livebench.sh}
[ -x "$LB" ] || LB=/work/shared/livebench/livebench.sh
rcpu=1 dur=10 flows=64 reps=1 qwait=10 run=1
while [ $# -gt 0 ]; do
  case $1 in
    --router-cpu) rcpu=$2; shift 2 ;;
    --duration) dur=$2; shift 2 ;;
    --flows) flows=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --quiet-wait) qwait=$2; shift 2 ;;
    --no-run) run=0; shift ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
cd "$HERE"
cargo build --release -q -p nft-xdp --example offload_router
R=$HERE/target/release/examples/offload_router
[ "$run" = 0 ] || cargo build --release -q -p nft-offload
N=$HERE/target/release/nft-offload
S=$HERE/crates/xdp/scripts
common=(--ruleset fw4 --flows "$flows" --duration "$dur" --reps "$reps" --router-cpu "$rcpu" --quiet-wait "$qwait" --no-rtt)
"$LB" --router kernel "${common[@]}"
if [ "$run" = 1 ]; then
  "$LB" --router-cmd "exec $N run -f $S/fw4-flowtable.nft --interfaces lan=\$LAN_IF,wan=\$WAN_IF --control /tmp/olb\$\$.sock" --name run-fastpath "${common[@]}"
  "$LB" --router-cmd "exec $N run -f $S/fw4-offload.nft --interfaces lan=\$LAN_IF,wan=\$WAN_IF --control /tmp/olb\$\$.sock" --name run-xdp-generic "${common[@]}"
fi
"$LB" --router-cmd "exec $R native" --name xdp-native "${common[@]}"
"$LB" --router-cmd "exec $R generic" --name xdp-generic "${common[@]}"
