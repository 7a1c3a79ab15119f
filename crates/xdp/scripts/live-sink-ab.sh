#!/bin/bash
# The bench's sink against two builds of `run --io af_xdp` and the kernel: livebench-gen.sh
# with --sink nft (s0's receive by RPS on the generator's CPU) and --sink xdp (s0's XDP sink,
# run where r1 transmits: the router's CPU), two rounds. Root.
# Usage: OLD=/path/nft-offload NEW=/path/nft-offload live-sink-ab.sh   (QW: quiet wait, s)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$HERE"
LB=crates/xdp/scripts/livebench-gen.sh RS=$PWD/crates/xdp/scripts/fw4-flowtable.nft
: "${OLD:?OLD=binary}" "${NEW:?NEW=binary}"
J=${JSON:-/tmp/live-sink-ab.json}
O="--ruleset fw4 --flows 64 --duration 10 --router-cpu 1 --quiet-wait ${QW:-20} --no-rtt --json $J"
for round in 1 2; do
  for sink in nft xdp; do
    $LB --router kernel --name kernel-$sink --sink $sink $O
    for B in $NEW $OLD; do
      $LB --router-cmd "exec $B run -f $RS --interfaces lan=\$LAN_IF,wan=\$WAN_IF --io af_xdp --control /tmp/x\$\$.sock" \
        --name "afxdp-$(basename "$B")-$sink" --sink $sink $O
    done
  done
done
