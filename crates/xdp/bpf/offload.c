/* `flags offload`: the flowtable's flows forwarded inside the kernel, before any socket.
 *
 * Parses Ethernet, up to two VLAN tags (802.1Q/802.1ad) or a PPPoE session, IPv4 (no options,
 * no fragments) or IPv6 (no extension headers), TCP or UDP; looks the direction up by tuple and
 * ingress ifindex; applies the plan the software fast path applies (NAT with RFC 1624
 * incremental checksums, TTL/hop limit, DSCP, MACs, link header pop and push, link padding
 * dropped) and redirects through offload_tx. Anything else leaves unchanged, to the program in
 * offload_next for the ingress device (its AF_XDP steering, a tail call) when there is one,
 * else to the stack: misses, TCP segments
 * other than a plain ACK (SYN, FIN, RST: conntrack must see them), TTL <= 1, packets larger
 * than the egress MTU, frames addressed or encapsulated otherwise than the flow expects.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "offload_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFLOAD_MAX_FLOWS);
	__type(key, struct offload_key);
	__type(value, struct offload_value);
} offload_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFLOAD_MAX_FLOWS);
	__type(key, __u32);
	__type(value, struct offload_stats);
} offload_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFLOAD_R_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} offload_reasons SEC(".maps");

/* The devices flows leave through, keyed by ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} offload_tx SEC(".maps");

/* What runs on frames this program passes, per ingress device: offload_next_slot maps the
 * ingress ifindex to a slot of offload_next (each device has its own AF_XDP steering program,
 * with its own sockets). No slot, or an empty one: the stack. */
#define OFFLOAD_MAX_NEXT 256
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, OFFLOAD_MAX_NEXT);
	__type(key, __u32);
	__type(value, __u32);
} offload_next SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFLOAD_MAX_NEXT);
	__type(key, __u32);
	__type(value, __u32);
} offload_next_slot SEC(".maps");

#define ETH_P_QINQ 0x88a8
#define ETH_P_PPPOE_SES 0x8864
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057

/* Whether fewer than n bytes are left at p before the IP packet's limit (PPPoE length) or the
 * frame's end; the second test is the one the verifier needs to allow the access. */
#define SHORT(p, n) ((void *)(p) + (n) > lim || (void *)(p) + (n) > end)

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_URG 0x20

static __always_inline void count(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&offload_reasons, &reason);
	if (n)
		*n += 1;
}

static __always_inline int pass(struct xdp_md *ctx, __u32 reason)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slot;

	count(reason);
	slot = bpf_map_lookup_elem(&offload_next_slot, &ifindex);
	if (slot)
		bpf_tail_call(ctx, &offload_next, *slot);
	return XDP_PASS;
}

static __always_inline __u16 fold(__u64 acc)
{
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	acc = (acc & 0xffff) + (acc >> 16);
	return (__u16)acc;
}

/* RFC 1624 eqn. 3 with the sum of the changes precomputed: HC' = ~(~HC + delta). Host order. */
static __always_inline __u16 apply_delta(__u16 stored, __u16 delta)
{
	return (__u16)~fold((__u64)(__u16)~stored + delta);
}

static __always_inline __u16 rd16(const void *p)
{
	return bpf_ntohs(*(const __be16 *)p);
}

static __always_inline void wr16(void *p, __u16 v)
{
	*(__be16 *)p = bpf_htons(v);
}

/* No memcmp in BPF: the six bytes of a MAC, compared by hand. */
static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static __always_inline int offload_main(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;

	if ((void *)(eth + 14) > end)
		return pass(ctx, OFFLOAD_R_MALFORMED);

	__u16 et = rd16(eth + 12);
	__u32 at = 14;
	__u16 tags[2] = { 0, 0 };
	__u32 ntags = 0;
	__u8 encap = OFFLOAD_ENCAP_NONE;
	void *lim = end;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (et != ETH_P_8021Q && et != ETH_P_QINQ)
			break;
		__u8 *t = data + at;
		if ((void *)(t + 4) > end)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		tags[i] = rd16(t) & 0x0fff;
		et = rd16(t + 2);
		at += 4;
		ntags++;
	}
	if (et == ETH_P_8021Q || et == ETH_P_QINQ)
		return pass(ctx, OFFLOAD_R_MALFORMED);

	if (et == ETH_P_PPPOE_SES) {
		__u8 *p = data + at;
		if ((void *)(p + 8) > end || p[0] != 0x11 || p[1] != 0)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		__u16 plen = rd16(p + 4);
		if (plen < 2 || (void *)(p + 6) + plen > end)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		if (ntags)
			return pass(ctx, OFFLOAD_R_NOT_IP);
		lim = (void *)(p + 6) + plen;
		__u16 ppp = rd16(p + 6);
		if (ppp == PPP_IP)
			et = ETH_P_IP;
		else if (ppp == PPP_IPV6)
			et = ETH_P_IPV6;
		else
			return pass(ctx, OFFLOAD_R_NOT_IP);
		tags[0] = rd16(p + 2);
		encap = OFFLOAD_ENCAP_PPPOE;
		at += 8;
	} else if (ntags == 1) {
		encap = OFFLOAD_ENCAP_VLAN;
	} else if (ntags == 2) {
		encap = OFFLOAD_ENCAP_QINQ;
	}

	struct offload_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.ifindex = ctx->ingress_ifindex;

	__u8 *l3 = data + at;
	__u8 *l4;
	__u32 ip_len;
	__u8 ttl;
	if (et == ETH_P_IP) {
		if (SHORT(l3, 20) || (l3[0] >> 4) != 4)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		__u32 hlen = (l3[0] & 0x0f) * 4;
		if (hlen < 20)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		if (hlen > 20)
			return pass(ctx, OFFLOAD_R_IPV4_OPTIONS);
		__u64 sum = 0;
#pragma unroll
		for (int i = 0; i < 20; i += 2)
			sum += rd16(l3 + i);
		if (fold(sum) != 0xffff)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		ip_len = rd16(l3 + 2);
		if (ip_len < 20 || (void *)l3 + ip_len > lim)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		if (rd16(l3 + 6) & 0x3fff)
			return pass(ctx, OFFLOAD_R_FRAGMENT);
		key.proto = l3[9];
		key.src[10] = 0xff;
		key.src[11] = 0xff;
		key.dst[10] = 0xff;
		key.dst[11] = 0xff;
		__builtin_memcpy(&key.src[12], l3 + 12, 4);
		__builtin_memcpy(&key.dst[12], l3 + 16, 4);
		ttl = l3[8];
		l4 = l3 + 20;
	} else if (et == ETH_P_IPV6) {
		if (SHORT(l3, 40) || (l3[0] >> 4) != 6)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		ip_len = 40 + (__u32)rd16(l3 + 4);
		if ((void *)l3 + ip_len > lim)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		key.proto = l3[6];
		key.v6 = 1;
		__builtin_memcpy(key.src, l3 + 8, 16);
		__builtin_memcpy(key.dst, l3 + 24, 16);
		switch (key.proto) {
		case 0: case 43: case 44: case 50: case 51: case 60:
		case 135: case 139: case 140: case 253: case 254:
			return pass(ctx, OFFLOAD_R_IPV6_EXT);
		}
		ttl = l3[7];
		l4 = l3 + 40;
	} else {
		return pass(ctx, OFFLOAD_R_NOT_IP);
	}

	__u32 l4_len = ip_len - (__u32)(l4 - l3);
	__u8 tcp_flags = 0;
	if (key.proto == IPPROTO_TCP) {
		if (SHORT(l4, 20) || l4_len < 20)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		__u32 doff = (l4[12] >> 4) * 4;
		if (doff < 20 || doff > l4_len)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		tcp_flags = l4[13];
	} else if (key.proto == IPPROTO_UDP) {
		if (SHORT(l4, 8) || l4_len < 8)
			return pass(ctx, OFFLOAD_R_MALFORMED);
		__u16 ulen = rd16(l4 + 4);
		if (ulen < 8 || ulen > l4_len)
			return pass(ctx, OFFLOAD_R_MALFORMED);
	} else {
		return pass(ctx, OFFLOAD_R_NOT_TCP_UDP);
	}
	if (ttl <= 1)
		return pass(ctx, OFFLOAD_R_TTL);
	key.sport = *(__be16 *)l4;
	key.dport = *(__be16 *)(l4 + 2);

	struct offload_value *v = bpf_map_lookup_elem(&offload_flows, &key);
	if (!v)
		return pass(ctx, OFFLOAD_R_MISS);

	/* Only what leaves conntrack's state as it is: ACK or ACK|URG, PSH/ECE/CWR allowed. */
	if (key.proto == IPPROTO_TCP) {
		__u8 f = tcp_flags & 0x3f & ~TCP_PSH;
		if (f != TCP_ACK && f != (TCP_ACK | TCP_URG))
			return pass(ctx, OFFLOAD_R_TCP_CONTROL);
	}
	if (encap != v->in_encap || !mac_eq(eth, v->in_mac))
		return pass(ctx, OFFLOAD_R_L2_MISMATCH);
	if (encap != OFFLOAD_ENCAP_NONE && tags[0] != v->in_tag[0])
		return pass(ctx, OFFLOAD_R_L2_MISMATCH);
	if (encap == OFFLOAD_ENCAP_QINQ && tags[1] != v->in_tag[1])
		return pass(ctx, OFFLOAD_R_L2_MISMATCH);
	if (ip_len > v->mtu)
		return pass(ctx, OFFLOAD_R_TOO_BIG);
	__u32 out_if = v->out_ifindex;
	if (!bpf_map_lookup_elem(&offload_tx, &out_if))
		return pass(ctx, OFFLOAD_R_NO_TX_PORT);
	__u32 out_hl = v->out_hl;
	if (out_hl != 14 && out_hl != 18 && out_hl != 22)
		return pass(ctx, OFFLOAD_R_NO_TX_PORT);
	/* Bytes the frame is longer than its IP packet (link padding), dropped on the way out. */
	__u32 pad = (__u32)(end - (void *)l3) - ip_len;

	/* Checked again here: the verifier may not know which family this path parsed. */
	if (SHORT(l3, key.v6 ? 40 : 20) || SHORT(l4, 8))
		return pass(ctx, OFFLOAD_R_MALFORMED);

	/* L4: NAT and its checksum. */
	if (v->flags & OFFLOAD_F_NAT) {
		if (key.v6) {
			if (SHORT(l3, 40))
				return XDP_ABORTED;
			__builtin_memcpy(l3 + 8, v->new_src, 16);
			__builtin_memcpy(l3 + 24, v->new_dst, 16);
		} else {
			__builtin_memcpy(l3 + 12, &v->new_src[12], 4);
			__builtin_memcpy(l3 + 16, &v->new_dst[12], 4);
		}
		*(__be16 *)l4 = v->new_sport;
		*(__be16 *)(l4 + 2) = v->new_dport;
	}
	if (v->l4_delta) {
		__u8 *c = key.proto == IPPROTO_TCP ? l4 + 16 : l4 + 6;
		if (SHORT(c, 2))
			return XDP_ABORTED;
		__u16 old = rd16(c);
		/* Over IPv4 a zero UDP checksum means none, and stays so. */
		if (!(key.proto == IPPROTO_UDP && !key.v6 && old == 0)) {
			__u16 nw = apply_delta(old, v->l4_delta);
			if (key.proto == IPPROTO_UDP && nw == 0)
				nw = 0xffff;
			wr16(c, nw);
		}
	}
	/* L3: TTL or hop limit, DSCP, header checksum. */
	if (key.v6) {
		if (SHORT(l3, 40))
			return XDP_ABORTED;
		l3[7] -= 1;
		if (v->dscp != 0xff) {
			__u16 w = rd16(l3);
			__u8 tc = (__u8)(w >> 4);
			__u8 ntc = (__u8)(v->dscp << 2) | (tc & 3);
			wr16(l3, (w & 0xf00f) | ((__u16)ntc << 4));
		}
	} else {
		l3[8] -= 1;
		__u16 c = apply_delta(rd16(l3 + 10), v->ip_delta);
		if (v->dscp != 0xff) {
			__u16 old = rd16(l3);
			__u16 nw = (old & 0xff03) | ((__u16)v->dscp << 2);
			if (nw != old) {
				c = apply_delta(c, fold((__u64)(__u16)~old + nw));
				wr16(l3, nw);
			}
		}
		wr16(l3 + 10, c);
	}

	/* Counters, before the pointers go stale. */
	__u32 slot = v->stats_slot;
	struct offload_stats *st = bpf_map_lookup_elem(&offload_stats, &slot);
	if (st) {
		st->packets += 1;
		st->bytes += ip_len;
		st->last_used_ns = bpf_ktime_get_ns();
	}

	/* L2: the egress link header in place of the ingress one. */
	__u8 hdr[22];
	__builtin_memcpy(hdr, v->out_hdr, 22);
	if (v->out_encap == OFFLOAD_ENCAP_PPPOE)
		wr16(hdr + 18, (__u16)(ip_len + 2));
	if (bpf_xdp_adjust_head(ctx, (int)at - (int)out_hl))
		return pass(ctx, OFFLOAD_R_HEADROOM);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + 22 > end)
		return XDP_ABORTED;
	if (out_hl == 14)
		__builtin_memcpy(data, hdr, 14);
	else if (out_hl == 18)
		__builtin_memcpy(data, hdr, 18);
	else
		__builtin_memcpy(data, hdr, 22);
	if (pad && pad < 4096)
		bpf_xdp_adjust_tail(ctx, -(int)pad);

	count(OFFLOAD_R_FORWARDED);
	return bpf_redirect_map(&offload_tx, out_if, 0);
}

SEC("xdp")
int offload(struct xdp_md *ctx)
{
	return offload_main(ctx);
}

/* Measurement only (examples/offload_capacity.rs): the kernel's live-frames test mode reuses
 * its pages without writing the frame again, and both the stack and this program rewrite
 * frames in place, so each run first puts the template frame back (60 bytes), then passes
 * the frame to the stack (offload_bench_kernel) or offloads it (offload_bench). */
#define OFFLOAD_BENCH_LEN 60
struct offload_bench_frame {
	__u8 data[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offload_bench_frame);
} offload_bench_frame SEC(".maps");

static __always_inline int bench_reset(struct xdp_md *ctx)
{
	__u32 k = 0;
	struct offload_bench_frame *f = bpf_map_lookup_elem(&offload_bench_frame, &k);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (!f || data + OFFLOAD_BENCH_LEN > end)
		return -1;
	__builtin_memcpy(data, f->data, OFFLOAD_BENCH_LEN);
	return 0;
}

SEC("xdp")
int offload_bench_kernel(struct xdp_md *ctx)
{
	if (bench_reset(ctx))
		return XDP_ABORTED;
	return XDP_PASS;
}

SEC("xdp")
int offload_bench(struct xdp_md *ctx)
{
	if (bench_reset(ctx))
		return XDP_ABORTED;
	return offload_main(ctx);
}

/* For the far end of a veth the offload program redirects into: a veth only takes redirected
 * frames (ndo_xdp_xmit) when its peer has an XDP program (or GRO on). */
SEC("xdp")
int offload_peer(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
