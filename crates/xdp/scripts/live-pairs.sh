#!/bin/bash
# Kernel and `run --io af_xdp` alternating on livebench-gen (livegen, fw4's flowtable, 64 flows,
# router CPU 1, nft sink), N pairs: each pair's delivered packets/s and router CPU a packet,
# their ratios, and the median ratio. Ratios of runs minutes apart on this shared machine say
# more than any single run (docs/live.md, "af_xdp's run-to-run spread").
#   sudo crates/xdp/scripts/live-pairs.sh [--pairs N] [--duration S] [--sink nft|xdp] [BIN] [OUT]
#   (defaults: 5 pairs of 10 s, nft sink, target/release/nft-offload, live-pairs.json)
set -eu
pairs=5 dur=10 sink=nft
while [ $# -gt 0 ]; do
  case $1 in
    --pairs) pairs=$2; shift 2 ;;
    --duration) dur=$2; shift 2 ;;
    --sink) sink=$2; shift 2 ;;
    *) break ;;
  esac
done
OUT=$(realpath -m "${2:-live-pairs.json}")
cd "$(dirname "$0")/../../.."
BIN=$(realpath "${1:-target/release/nft-offload}")
LB=crates/xdp/scripts/livebench-gen.sh
RS=$PWD/crates/xdp/scripts/fw4-flowtable.nft
common=(--ruleset fw4 --flows 64 --duration "$dur" --router-cpu 1 --quiet-wait 5 --no-rtt --sink "$sink")
field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
ratios=()
for p in $(seq "$pairs"); do
  k=$($LB --router kernel --name kernel "${common[@]}" --json "$OUT" 2>&1 | grep "^livebench: router=")
  x=$($LB --router-cmd "exec $BIN run -f $RS --interfaces lan=\$LAN_IF,wan=\$WAN_IF --io af_xdp --control /tmp/nft-offload-pairs-\$\$.sock" \
    --name af_xdp "${common[@]}" --json "$OUT" 2>&1 | grep "^livebench: router=")
  kd=$(echo "$k" | field pps_delivered) kn=$(echo "$k" | field router_ns_per_pkt)
  xd=$(echo "$x" | field pps_delivered) xn=$(echo "$x" | field router_ns_per_pkt)
  r=$(python3 -c "print(f'{$xd / $kd:.2f}')")
  ratios+=("$r")
  echo "pair $p: kernel $kd pps at $kn ns, af_xdp $xd pps at $xn ns: ${r}x the packets/s at $(python3 -c "print(f'{$xn / $kn:.2f}')")x the CPU a packet"
done
python3 -c "import statistics, sys; r = sorted(map(float, sys.argv[1:])); print(f'median {statistics.median(r):.2f}x; at least 1.5x in {sum(x >= 1.5 for x in r)} of {len(r)} pairs; sorted: {r}')" "${ratios[@]}"
