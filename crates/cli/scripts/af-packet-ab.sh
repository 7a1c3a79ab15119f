#!/bin/bash
# 64-byte forwarding through `run --io af_packet`, binaries (or options) against each other,
# alternating, with the router's counters kept: livebench-gen.sh (livegen, fw4 with the
# flowtable, 64 flows, 10 s, router CPU 1, RTT probes idle and under load) per variant per
# round; `stats --json` of the router written every second to STATS_DIR/NAME-ROUND.json (the
# last write before the kill survives: `rx_ring_full`, `rx_truncated`, `rx_copied`).
# Root; wrap it in `flock /tmp/nft-measure.lock`.
#   af-packet-ab.sh [--rounds N] [--sink xdp|nft] [--rate PPS] [--quiet-wait S] NAME=BIN[:RUN-ARGS] ...
# e.g. af-packet-ab.sh old=/tmp/nft-old new=target/release/nft-offload v3=target/release/nft-offload:'--rx-ring v3'
# JSON lines to $OUT (default af-packet-ab.jsonl).
set -euo pipefail
rounds=2 sink=xdp rate= qwait=20
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --sink) sink=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --quiet-wait) qwait=$2; shift 2 ;;
    --router) # internal: BIN OUT RUN-ARGS..., run in the router namespace
      shift; BIN=$1 ST=$2; shift 2
      SOCK=/tmp/af-packet-ab-$$.sock
      "$BIN" run "$@" --control "$SOCK" &
      pid=$!
      trap 'kill $pid 2>/dev/null; exit 0' TERM INT
      while kill -0 $pid 2>/dev/null; do
        sleep 1
        "$BIN" stats --json --control "$SOCK" >"$ST.tmp" 2>/dev/null && mv "$ST.tmp" "$ST"
      done
      exit 0 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [options] NAME=BIN[:RUN-ARGS] ..." >&2; exit 1; }
SELF=$(realpath "$0")
OUT=$(realpath -m "${OUT:-af-packet-ab.jsonl}")
STATS_DIR=$(realpath -m "${STATS_DIR:-af-packet-ab-stats}")
mkdir -p "$STATS_DIR"
cd "$(dirname "$0")/../../.."
LB=crates/xdp/scripts/livebench-gen.sh
RS=$PWD/crates/xdp/scripts/fw4-flowtable.nft
common=(--ruleset fw4 --flows 64 --duration 10 --router-cpu 1 --quiet-wait "$qwait" --sink "$sink" --json "$OUT")
[ -z "$rate" ] || common+=(--rate "$rate")
for round in $(seq "$rounds"); do
  for v in "$@"; do
    name=${v%%=*} spec=${v#*=}
    bin=$(realpath "${spec%%:*}") args=
    [[ $spec == *:* ]] && args=${spec#*:}
    $LB --router-cmd "exec $SELF --router $bin $STATS_DIR/$name-$round.json -f $RS --interfaces lan=\$LAN_IF,wan=\$WAN_IF --io af_packet $args" \
      --name "af_packet-$name-$sink" "${common[@]}"
  done
done
