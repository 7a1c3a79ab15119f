#!/bin/bash
# livebench-gen: ../shared/livebench/livebench.sh (copied, its helpers used from there), with
# another generator: --gen PATH (lbgen's command line; examples/livegen by default, the XDP
# live-frames sender, which redirects frames into c0's peer). Because that sender needs NAPI on
# the peer, GRO is turned on at r0 (after the router command started: `run` turns it off) and,
# for every router alike, at c0 and s0 (the receivers of native-XDP redirects).
#
# Two more things, the same for every router, so that the router's CPU is the bottleneck:
#   --sink xdp|nft       xdp (default): the server's sink is lbsink.c, an XDP program on s0
#                        that drops the generator's datagrams (counted by veth: ethtool -S s0
#                        rx_queue_0_xdp_drops); nft: livebench's netdev ingress counter
#   --napi-threads on|off on (default off): r0's and s0's NAPI run as kernel threads (sysfs
#                        `threaded`), r0's pinned to the router CPU and s0's to the generator
#                        CPU. A veth's NAPI otherwise runs in the softirq of the CPU that sent
#                        into it: r0's on the generator's CPU (the live-frames sender), so that
#                        r0's receive work (the skb made for the kernel, native XDP) was done
#                        for the router by the generator's CPU.
#
# livebench: live forwarding benchmark of a router in a network namespace.
#
#   [client ns] c0 ==veth== r0 [router ns] r1 ==veth== s0 [server ns]
#         198.18.1.2    198.18.1.1     198.19.0.1    198.19.0.2
#
# Usage: livebench.sh [--router kernel | --router-cmd 'CMD'] [options]
#   --router kernel      the kernel forwards (ip_forward=1, the ruleset loaded with nft -f)
#   --router-cmd CMD     CMD, run with sh -c in the router ns, is the router (ip_forward=0).
#                        Its environment: RULESET (a file), LAN_IF=r0, WAN_IF=r1, ROUTER_CPU.
#                        It must forward within 10 s; it is killed (its process group) at the end.
#   --name NAME          the router's name in the output (default: kernel, or CMD's first word)
#   --ruleset fw4|none|FILE  fw4 = fw4-like.nft beside this script (default)
#   --test udp|tcp       udp: lbgen's 64-byte frames (default); tcp: one iperf3 stream
#   --no-offload         TSO/GSO/GRO off on all four veths, so every TCP segment crosses the router
#                        as its own MTU-sized packet (as with a router that attaches XDP to
#                        r0/r1: veth then stops GSO on the peer); default: 64 KB GSO packets
#   --flows N            UDP flows, i.e. source ports 10000.. (default 1)
#   --duration S         seconds of load per run (default 10)
#   --reps N             runs; with N > 1 a median line follows (default 1)
#   --router-cpu N|off   N (default 1): RPS steers r0/r1 receive work to CPU N and c0/s0's to the
#                        generator CPU, so the router has a CPU of its own and the client and server
#                        share the other. off: veth's default, where a packet's whole path through
#                        the router and server runs on the CPU that sent it.
#   --gen-cpu N          CPU of the generator, the RTT probe and iperf3 (default 0)
#   --gen-mode ring|mmsg lbgen send path: TPACKET_V2 TX ring (default) or sendmmsg
#   --rate PPS           pace the generator (default: as fast as it can), e.g. to take the RTT
#                        at a load below saturation
#   --no-prime           skip sending one reply per UDP flow from the server first (and a second
#                        packet per flow 2.3 s later, which makes it assured); without it
#                        conntrack calls every packet "new" and it walks the whole ruleset
#   --no-rtt             skip the RTT probes (lbprobe.py: ICMP echo at 100/s, idle and under load)
#   --json FILE          append each run's JSON object (one line) to FILE
#   --quiet-wait S       before each run, wait up to S s (default 60) for an idle machine;
#                        foreign_cpu_pct in the output is what other processes used meanwhile
# Prints per run: livebench: router=… flows=… pps_sent=… pps_delivered=… cpu_ns_per_pkt=… rtt_p50_us=… …
set -euo pipefail
HERE=${LIVEBENCH_DIR:-$(cd "$(dirname "$0")/../../../.." && pwd)/shared/livebench}
genbin=$(cd "$(dirname "$0")/../../.." && pwd)/target/release/examples/livegen
router=kernel cmd= ruleset=fw4 test=udp flows=1 dur=10 reps=1 rcpu=1 gcpu=0 gmode=ring prime=1 rtt=1 json= qwait=60 rate=0 offload=1 name= sink=xdp napit=off
die() { echo "livebench: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
    --router) [ "${2:-}" = kernel ] || die "--router takes only 'kernel'"; shift 2 ;;
    --router-cmd) router=cmd cmd=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --ruleset) ruleset=$2; shift 2 ;;
    --test) test=$2; shift 2 ;;
    --flows) flows=$2; shift 2 ;;
    --duration) dur=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --router-cpu) rcpu=$2; shift 2 ;;
    --gen-cpu) gcpu=$2; shift 2 ;;
    --gen-mode) gmode=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --no-prime) prime=0; shift ;;
    --no-rtt) rtt=0; shift ;;
    --no-offload) offload=0; shift ;;
    --json) json=$2; shift 2 ;;
    --quiet-wait) qwait=$2; shift 2 ;;
    --gen) genbin=$2; shift 2 ;;
    --sink) sink=$2; shift 2 ;;
    --napi-threads) napit=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case $ruleset in
  fw4) ruleset=$HERE/fw4-like.nft rsname=fw4-like ;;
  none) rsname=none ;;
  *) [ -r "$ruleset" ] || die "no ruleset file $ruleset"; rsname=$(basename "$ruleset" .nft) ;;
esac
[[ $test =~ ^(udp|tcp)$ && $flows =~ ^[0-9]+$ && $dur =~ ^[0-9]+$ && $dur -ge 3 ]] || die "bad --test/--flows/--duration"
[ "$router" = kernel ] && rname=kernel || { rname=${cmd#exec }; rname=${rname%% *}; rname=${rname##*/}; }
rname=${name:-$rname}

SCR=${LIVEBENCH_SCRATCH:-$(mktemp -d -t livebench.XXXXXX)}
mkdir -p "$SCR"
W=$(mktemp -d "$SCR/run.XXXXXX")
P=lb$$
C=$P-c R=$P-r S=$P-s
bg= load= pp= rpid=  # our background jobs, and the router command's process group
cleanup() {
  set +e
  for p in $bg $load $pp; do kill "$p" 2>/dev/null; done
  if [ -n "$rpid" ] && kill -- -"$rpid" 2>/dev/null; then
    sleep 0.3; kill -9 -- -"$rpid" 2>/dev/null
  fi
  for n in $C $R $S; do ip netns del "$n" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ns() { ip netns exec "$@"; }

[ -x "$genbin" ] || die "no generator $genbin (cargo build --release -p nft-xdp --example livegen)"

# The topology: the same addresses as tools/livelib.sh.
for n in $C $R $S; do ip netns add $n; ip -n $n link set lo up; done
ip link add c0 netns $C type veth peer name r0 netns $R
ip link add s0 netns $S type veth peer name r1 netns $R
ip -n $C addr add 198.18.1.2/24 dev c0; ip -n $C -6 addr add 2001:db8:1::2/64 dev c0 nodad
ip -n $R addr add 198.18.1.1/24 dev r0; ip -n $R -6 addr add 2001:db8:1::1/64 dev r0 nodad
ip -n $R addr add 198.19.0.1/24 dev r1; ip -n $R -6 addr add 2001:db8:2::1/64 dev r1 nodad
ip -n $S addr add 198.19.0.2/24 dev s0; ip -n $S -6 addr add 2001:db8:2::2/64 dev s0 nodad
for l in "$C c0" "$R r0" "$R r1" "$S s0"; do set -- $l; ip -n $1 link set $2 up; done
ip -n $C route add default via 198.18.1.1; ip -n $C -6 route add default via 2001:db8:1::1
ip -n $S route add 198.18.0.0/16 via 198.19.0.1; ip -n $S -6 route add 2001:db8:1::/64 via 2001:db8:2::1
if [ "$offload" = 0 ]; then
  for l in "$C c0" "$R r0" "$R r1" "$S s0"; do set -- $l; ns $1 ethtool -K $2 tso off gso off gro off; done
fi
rps() {  # ns dev cpu (0 with a 4th argument "off": RPS off)
  local mask=0
  [ "${4:-}" = off ] || mask=$(printf %x $((1 << $3)))
  ns "$1" sh -c "echo $mask >/sys/class/net/$2/queues/rx-0/rps_cpus"
}
if [ "$rcpu" != off ]; then
  rps $R r0 "$rcpu"; rps $R r1 "$rcpu"; rps $C c0 "$gcpu"; rps $S s0 "$gcpu"
fi

# The router under test.
if [ "$router" = kernel ]; then
  ns $R sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  [ "$ruleset" = none ] || ns $R nft -f "$ruleset"
else
  ns $R sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
  rs=$ruleset; [ "$rs" = none ] && { rs=$W/empty.nft; : >"$rs"; }
  pin=; [ "$rcpu" = off ] || pin="taskset -c $rcpu"
  setsid ip netns exec $R env RULESET="$rs" LAN_IF=r0 WAN_IF=r1 ROUTER_CPU="$rcpu" \
    $pin sh -c "$cmd" >"$W/router.log" 2>&1 &
  rpid=$!
fi
# the live-frames generator redirects into c0: its peer r0 needs NAPI (GRO on); c0 and s0
# take native-XDP redirects from the router
ns $C ethtool -K c0 gro on >/dev/null; ns $S ethtool -K s0 gro on >/dev/null
for i in $(seq 50); do
  ns $R ethtool -K r0 gro on >/dev/null 2>&1 || true
  ns $C ping -c1 -W0.2 198.19.0.2 >/dev/null 2>&1 && break
  [ -z "$rpid" ] || kill -0 "$rpid" 2>/dev/null || { tail -5 "$W/router.log" >&2; die "the router command exited"; }
  [ "$i" = 50 ] && die "no ping through the router after 10 s"
  sleep 0.2
done

# Our processes (this session and the router command's) are not "foreign" CPU users.
sessions=$(ps -o sid= -p $$ | tr -d ' ')${rpid:+,$rpid}
CMAC=$(ns $C cat /sys/class/net/c0/address) RMAC=$(ns $R cat /sys/class/net/r0/address)
ns $R ethtool -K r0 gro on >/dev/null
gen=(ip netns exec $C "$genbin" -i c0 -s "$CMAC" -d "$RMAC" -S 198.18.1.2 -D 198.19.0.2 -f "$flows" -c "$gcpu" -m "$gmode")

# Make every UDP flow two-way (conntrack: established), as real traffic is: the server answers
# the first packet of each flow, whatever address and port the router gave it.
quiet() {  # wait up to $qwait s for a second in which the CPUs are 90% idle
  local t a b
  for ((t = 0; t < qwait; t += 2)); do
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))  # jiffies: 100 per CPU-second
    (( b[4] + b[5] - a[4] - a[5] >= 90 * $(nproc) )) && return 0
    sleep 1
  done
  echo "livebench: warning: the machine is busy with other work; measuring anyway" >&2
}
# The wait for a quiet machine comes before the priming: UDP conntrack entries that saw a
# reply but are not assured yet expire after 30 s, and a longer wait between the two (a busy
# machine) left every flow unprimed (every packet `new`, no flow offloaded).
quiet
if [ "$test" = udp ] && [ "$prime" = 1 ]; then
  ns $S python3 - "$flows" >"$W/prime.out" <<'PY' &
import socket, sys, time
n, seen, end = int(sys.argv[1]), set(), time.time() + 5
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9)); s.settimeout(0.1)
while len(seen) < n and time.time() < end:
    try:
        _, addr = s.recvfrom(2048)
    except socket.timeout:
        continue
    if addr not in seen:
        seen.add(addr); s.sendto(b"livebench-prime", addr)
print(len(seen), flush=True)
# take the flows' second packets (below) without an answer
end = time.time() + 4
while time.time() < end:
    try:
        s.recvfrom(2048)
    except socket.timeout:
        pass
PY
  bg=$!
  sleep 0.3
  # (the clock restarts at each send: a flow first seen in a later round starts there)
  for i in 1 2 3 4 5; do
    first=$(date +%s%N); "${gen[@]}" -n "$flows" >/dev/null; sleep 0.3; [ -s "$W/prime.out" ] && break
  done
  # A second packet of each flow more than 2 s after its first: conntrack makes a replied UDP
  # flow that is still active after 2 s a stream (ASSURED), and `run` offloads UDP only then,
  # so without it the first seconds of the measured load would take the slow path.
  sleep "$(python3 -c "print(max(0, 2.3 - ($(date +%s%N) - $first) / 1e9))")"
  "${gen[@]}" -n "$flows" >/dev/null
  wait $bg; bg=
  read -r primed <"$W/prime.out"
  [ "$primed" = "$flows" ] || echo "livebench: warning: only $primed of $flows flows answered" >&2
fi
# The server's sink: count and drop the generator's packets at s0.
if [ "$sink" = xdp ]; then
  clang -O2 -g -Wall -target bpf -I/usr/include/$(gcc -dumpmachine) \
    -c "$(dirname "$0")/lbsink.c" -o "$W/lbsink.o" || die "cannot build lbsink.c"
  ns $S ip link set dev s0 xdpdrv obj "$W/lbsink.o" sec xdp || die "cannot attach lbsink to s0"
else
  ns $S nft -f - <<'EOF'
table netdev lbsink {
	counter rx { }
	chain in {
		type filter hook ingress device "s0" priority -500;
		udp dport 9 counter name "rx" drop
	}
}
EOF
fi
sink_count() {
  if [ "$sink" = xdp ]; then
    ns $S ethtool -S s0 | awk '/rx_queue_0_xdp_drops:/ {print $2}'
  else
    ns $S nft list counter netdev lbsink rx | awk '/packets/ {print $2}'
  fi
}
# Threaded NAPI: r0's on the router CPU, s0's on the generator CPU. The threads are those
# that appear when `threaded` is written (their names, napi/DEV-ID, do not say the namespace).
napi_pids=
napi_thread() {  # ns dev cpu
  local before p
  before=" $(pgrep "^napi/$2-" | tr "\n" " " || true) "
  ns "$1" sh -c "echo 1 >/sys/class/net/$2/threaded" || die "cannot make $2's NAPI threaded"
  sleep 0.2
  for p in $(pgrep "^napi/$2-" || true); do
    case $before in *" $p "*) ;; *) taskset -pc "$3" "$p" >/dev/null; napi_pids+=" $p:$3" ;; esac
  done
}
if [ "$napit" = on ]; then
  [ "$rcpu" != off ] || die "--napi-threads on needs --router-cpu N"
  napi_thread $R r0 "$rcpu"
  napi_thread $S s0 "$gcpu"
  # RPS would only queue each frame to a backlog on the same CPU, after its skb was made,
  # where it can be dropped (softnet backlog) after that work: off, the NAPI thread forwards
  # each frame to the end (or the sender's ring drops it, before any work on it)
  rps $R r0 0 off; rps $R r1 0 off
  echo "livebench: threaded NAPI (pid:cpu):$napi_pids" >&2
fi

snap() {  # $1 $2: run folder, 0 (before) or 1 (after)
  date +%s.%N >"$1/t$2"
  cat /proc/stat >"$1/stat$2"
  cat /proc/net/softnet_stat >"$1/softnet$2"
  cat /proc/[0-9]*/stat >"$1/procs$2" 2>/dev/null || true
  sink_count >"$1/rx.$2"
  ns $C cat /sys/class/net/c0/statistics/tx_packets /sys/class/net/c0/statistics/tx_dropped >"$1/c0.$2"
}
probe=(ip netns exec $C taskset -c "$gcpu" python3 "$HERE/lbprobe.py" 198.19.0.2)  # + seconds

for rep in $(seq "$reps"); do
  D=$W/$rep
  mkdir "$D"
  [ "$rep" = 1 ] || quiet
  [ "$rtt" = 0 ] || "${probe[@]}" 2 >"$D/rtt_idle.txt" 2>&1 || die "lbprobe: $(tail -1 "$D/rtt_idle.txt")"
  if [ "$test" = tcp ]; then
    ns $S taskset -c "$gcpu" iperf3 -s -1 -p 5201 >"$D/iperf_server.txt" 2>&1 &
    bg=$!
    sleep 0.3
  fi
  snap "$D" 0
  if [ "$test" = udp ]; then
    "${gen[@]}" -t "$dur" -r "$rate" >"$D/gen.out" &
  else
    ns $C iperf3 -c 198.19.0.2 -p 5201 -t "$dur" -A "$gcpu" -J >"$D/iperf.json" &
  fi
  load=$!
  if [ "$rtt" = 1 ]; then sleep 0.5; "${probe[@]}" $((dur - 1)) >"$D/rtt_load.txt" 2>&1 & pp=$!; fi
  wait $load || die "the load generator failed: $(tail -3 "$D"/gen.out "$D"/iperf.json 2>/dev/null)"
  load=
  [ -z "$bg" ] || { wait "$bg" || true; bg=; }
  sleep 0.2  # let queues drain
  snap "$D" 1
  [ -z "$pp" ] || { wait "$pp" || true; pp=; }
  python3 "$HERE/lbsum.py" run "$D" router="$rname" ruleset=$rsname test=$test flows="$flows" \
    router_cpu="$rcpu" prime=$prime gen_mode="$gmode" rate="$rate" offload=$offload duration="$dur" sessions="$sessions" 2>"$D/run.json"
  cat "$D/run.json" >>"$W/runs.jsonl"
  [ -z "$json" ] || cat "$D/run.json" >>"$json"
  [ -z "$rpid" ] || kill -0 "$rpid" 2>/dev/null || die "the router command died during run $rep"
done
[ "$reps" -gt 1 ] && python3 "$HERE/lbsum.py" median "$W/runs.jsonl"
echo "livebench: raw files in $W (generator $genbin)" >&2
