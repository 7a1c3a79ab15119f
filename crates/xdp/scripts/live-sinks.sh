#!/bin/bash
# One sitting of `run` against the kernel on livebench-gen (livegen, fw4's flowtable, 64 flows,
# router CPU 1), with both sinks: for each of nft and xdp, the kernel, `run --io af_packet`,
# `run --io af_xdp` (each with the flowtable, then with `--no-offload`: the slow path for every
# packet; af_packet also with `--rx-ring v3`), the kernel again. JSON lines are appended to OUT.
#   sudo crates/xdp/scripts/live-sinks.sh [BIN] [OUT]   (default: target/release/nft-offload, live-sinks.json)
set -eu
OUT=$(realpath -m "${2:-live-sinks.json}")
cd "$(dirname "$0")/../../.."
BIN=$(realpath "${1:-target/release/nft-offload}")
LB=crates/xdp/scripts/livebench-gen.sh
RS=$PWD/crates/xdp/scripts/fw4-flowtable.nft
common=(--ruleset fw4 --flows 64 --duration 10 --router-cpu 1 --quiet-wait 20 --no-rtt --json "$OUT")
for SINK in nft xdp; do
    $LB --router kernel --sink $SINK --name kernel-$SINK "${common[@]}"
    for IO in af_packet af_xdp; do
        modes=("" --no-offload)
        [ $IO = af_packet ] && modes+=("--rx-ring v3")
        for MODE in "${modes[@]}"; do
            case $MODE in --no-offload) tag=-slow ;; "--rx-ring v3") tag=-v3 ;; *) tag= ;; esac
            $LB --router-cmd "exec $BIN run -f $RS --interfaces lan=\$LAN_IF,wan=\$WAN_IF --io $IO $MODE --control /tmp/nft-offload-bench-\$\$.sock" \
                --sink $SINK --name $IO$tag-$SINK "${common[@]}"
        done
    done
    $LB --router kernel --sink $SINK --name kernel-$SINK "${common[@]}"
done
