#!/bin/bash
# Issue 7's four paths in one sitting, with the XDP live-frames generator (examples/livegen,
# through livebench-gen.sh): the kernel forwarding with the fw4-like ruleset; `nft-offload run`
# with fw4's flowtable (the user-space fast path, --io af_xdp); and with `flags offload` (the XDP
# offload) in generic and in native mode. Root.
# Usage: offload-livegen.sh [--duration S] [--flows N] [--reps N] [--rate PPS] [--quiet-wait S]
#        [--sink xdp|nft] [--napi-threads on|off]   (livebench-gen.sh's; defaults xdp, off)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
dur=10 flows=64 reps=1 qwait=10 rate=0 sink=xdp napit=off
while [ $# -gt 0 ]; do
  case $1 in
    --duration) dur=$2; shift 2 ;;
    --flows) flows=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --quiet-wait) qwait=$2; shift 2 ;;
    --sink) sink=$2; shift 2 ;;
    --napi-threads) napit=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
cd "$HERE"
cargo build --release -q -p nft-offload
cargo build --release -q -p nft-xdp --example livegen
LB=$HERE/crates/xdp/scripts/livebench-gen.sh
N=$HERE/target/release/nft-offload
S=$HERE/crates/xdp/scripts
IFS_=(--interfaces 'lan=$LAN_IF,wan=$WAN_IF' --control '/tmp/olg$$.sock')
common=(--ruleset fw4 --flows "$flows" --duration "$dur" --reps "$reps" --router-cpu 1 --quiet-wait "$qwait" --no-rtt --rate "$rate" --sink "$sink" --napi-threads "$napit")
"$LB" --router kernel "${common[@]}"
"$LB" --router-cmd "exec $N run -f $S/fw4-flowtable.nft ${IFS_[*]} --io af_xdp" --name run-userspace "${common[@]}"
"$LB" --router-cmd "exec $N run -f $S/fw4-offload.nft ${IFS_[*]} --xdp-mode generic" --name run-xdp-generic "${common[@]}"
"$LB" --router-cmd "exec $N run -f $S/fw4-offload.nft ${IFS_[*]} --xdp-mode native" --name run-xdp-native "${common[@]}"
