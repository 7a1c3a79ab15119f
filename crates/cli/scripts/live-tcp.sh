#!/bin/bash
# TCP bulk through the router, one sitting: the kernel forwarding (fw4-like ruleset) against
# `nft-offload run` (fw4's flowtable: with flow offload; `--no-offload`: every packet through
# the slow path) on both I/O backends, and `flags offload` (the XDP offload) in front of
# AF_XDP. One iperf3 stream for --duration s per router, through livebench.sh (--test tcp),
# with TSO/GSO/GRO off on the four veths (MTU-sized segments: what our routers can forward)
# and TX checksum offload off at the client and server (AF_XDP frames carry no checksum state:
# see docs/live.md), for every router alike; the kernel is run once more with the veths'
# defaults (64 KB GSO/GRO segments) for reference, and so is `run --io af_packet` (`*-gso`:
# the veths' defaults, TSO/GSO and checksum offload on, so the client's 64 KB super-packets
# reach the router whole and leave whole, PACKET_VNET_HDR); `*-gro` as the MTU-sized runs with
# GRO on at the router's LAN (aggregates of the client's segments). Root.
# Prints one line per router: Gbit/s, retransmits, router CPU (CPU 1) and all CPU per KB and
# per MTU-sized packet (1448 bytes of payload).
# Usage: live-tcp.sh [--duration S] [--quiet-wait S] [--only NAME,...] [--tag T] [--run-args A]
# (NFT_OFFLOAD=BINARY picks the binary; --tag T is appended to each run's name; --run-args A
# to every `nft-offload run`, e.g. --run-args '--rx-ring-mib 4 --rx-budget-kib 0'.)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../../.." && pwd)
LB=${LIVEBENCH:-$HERE/../shared/livebench/livebench.sh}
dur=10 qwait=10 only= tag= rargs=
while [ $# -gt 0 ]; do
  case $1 in
    --duration) dur=$2; shift 2 ;;
    --quiet-wait) qwait=$2; shift 2 ;;
    --only) only=,$2,; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --run-args) rargs=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
cd "$HERE"
N=${NFT_OFFLOAD:-$HERE/target/release/nft-offload}
[ -x "$N" ] || cargo build --release -q -p nft-offload
S=$HERE/crates/xdp/scripts
J=$(mktemp -t live-tcp.XXXXXX.jsonl)
# The router command runs in the router namespace (lb<pid>-r); the client and server are its
# siblings: their TX checksum offload goes off, so every router gets complete checksums.
peers='P=$(ip netns identify); P=${P%-r}; ip netns exec $P-c ethtool -K c0 tx off >/dev/null; ip netns exec $P-s ethtool -K s0 tx off >/dev/null;'
kernel='sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1; nft -f "$RULESET"; exec sleep 100000'
# `*-gro`: MTU-sized segments from the client (as above), GRO on at the router's LAN, which
# aggregates them, and TSO/GSO on at its WAN, which takes the aggregates whole (`run` sends
# past the qdisc: an egress without TSO/GSO would drop them)
gro='ethtool -K $LAN_IF gro on >/dev/null; ethtool -K $WAN_IF tso on gso on >/dev/null;'
IFS_="--interfaces lan=\$LAN_IF,wan=\$WAN_IF --control /tmp/ltcp\$\$.sock $rargs"
runs=(
  "kernel-gso|--router|"
  "kernel|--router-cmd|$peers $kernel"
  "af_xdp|--router-cmd|$peers exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_xdp"
  "af_xdp-slow|--router-cmd|$peers exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_xdp --no-offload"
  "af_xdp-xdp-offload|--router-cmd|$peers exec $N run -f $S/fw4-offload.nft $IFS_ --io af_xdp"
  "af_packet|--router-cmd|$peers exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_packet"
  "af_packet-slow|--router-cmd|$peers exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_packet --no-offload"
  "af_packet-gso|--router-cmd|exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_packet"
  "kernel-gro|--router-cmd|$peers $gro $kernel"
  "af_packet-gro|--router-cmd|$peers $gro exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_packet"
  "af_packet-slow-gso|--router-cmd|exec $N run -f $S/fw4-flowtable.nft $IFS_ --io af_packet --no-offload"
)
for r in "${runs[@]}"; do
  IFS='|' read -r name how cmd <<<"$r"
  [ -z "$only" ] || [[ $only == *",$name,"* ]] || continue
  opts=(--test tcp --ruleset fw4 --duration "$dur" --quiet-wait "$qwait" --no-rtt --json "$J")
  [[ $name == *gso ]] || opts+=(--no-offload)
  if [ "$how" = --router ]; then
    "$LB" --router kernel --name "$name$tag" "${opts[@]}" >/dev/null 2>&1 || echo "$name: failed" >&2
  else
    "$LB" --router-cmd "$cmd" --name "$name$tag" "${opts[@]}" >/dev/null 2>&1 || echo "$name: failed" >&2
  fi
done
python3 - "$J" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    g = r["gbit_s"]
    if not g:
        print(f"{r['router']:20} {g:6.2f} Gbit/s retr {r['retransmits']:>5}  (nothing delivered)")
        continue
    kb = g * 125000  # KB (1000 bytes) per second
    rc = r["cpu"]["cpu1"]["busy"] / 100 * 1e9 / kb
    allc = r["cpu_ns_per_kb"]
    print(f"{r['router']:20} {g:6.2f} Gbit/s retr {r['retransmits']:>5}  router {rc:7.0f} ns/KB {rc*1.448:7.0f} ns/pkt"
          f"  all {allc:7.0f} ns/KB {allc*1.448:7.0f} ns/pkt  busy {r['cpu_busy_pct']['cpu0']}/{r['cpu_busy_pct']['cpu1']}"
          f"  foreign {r['foreign_cpu_pct']}%")
PY
echo "raw: $J" >&2
