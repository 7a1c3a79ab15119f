/* AF_XDP steering: the frames the user-space dataplane forwards go to the AF_XDP socket of the
 * receive queue (steer_xsks, one entry per queue); everything else goes to the kernel's stack:
 *   - not IP (ARP, LLDP, ...), IPv6 neighbour discovery (ICMPv6 133-137);
 *   - multicast and broadcast (unless STEER_F_FORWARD_MCAST), IPv6 link-local source or
 *     destination;
 *   - anything addressed to one of the router's own addresses (steer_local, per ingress
 *     ifindex or for any with ifindex 0), except the (address, protocol, port) keys in
 *     steer_owned, which the dataplane handles although they are addressed to the router
 *     (DNAT port forwards; address all zero: any local address);
 *   - frames too short or malformed to tell (the stack drops them and counts).
 * With STEER_F_LOCAL_NO_SOCKET, local TCP/UDP that no kernel socket would take (a socket
 * lookup, listeners included), ICMP echo replies and ICMP errors to the router go to the
 * socket too: replies to masqueraded connections are addressed to the router. Limits: an
 * IPv4 fragment addressed to the router goes to the stack (its ports are in the first fragment
 * only), and ICMP errors about the router's own connections (PMTU) go to the dataplane too.
 * Parses Ethernet, up to two 802.1Q/802.1ad tags, IPv4 and IPv6. With steer_config.enabled 0
 * every frame goes to the stack. A queue without a socket falls back to the stack too
 * (bpf_redirect_map's XDP_PASS default), counted as no_socket.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define STEER_MAX_QUEUES 64
#define STEER_MAX_LOCAL 1024
#define STEER_MAX_OWNED 4096
/* steer_bits: 4096 bits, 64 words. */
#define STEER_BITS_WORDS 64

#define STEER_F_FORWARD_MCAST 0x1
/* Local TCP/UDP without a kernel socket, ICMP echo replies and ICMP errors addressed to the
 * router are the dataplane's (replies to masqueraded connections, port forwards): what the
 * kernel would only answer with a reset or an unreachable. */
#define STEER_F_LOCAL_NO_SOCKET 0x2

/* Why a frame went where it went: the index in steer_reasons. Mirrored in steer.rs. */
enum {
	STEER_R_DISABLED,
	STEER_R_NOT_IP,
	STEER_R_ARP,
	STEER_R_ND,
	STEER_R_LOCAL,
	STEER_R_MULTICAST,
	STEER_R_LINK_LOCAL,
	STEER_R_MALFORMED,
	STEER_R_OWNED,
	STEER_R_FORWARD,
	STEER_R_NO_SOCKET,
	STEER_R_LOCAL_NO_SOCKET,
	STEER_R_COUNT,
};

struct steer_local_key {
	__u32 ifindex; /* 0: any */
	__u8 addr[16]; /* IPv4-mapped for IPv4 */
};

struct steer_owned_key {
	__u8 addr[16]; /* all zero: any local address */
	__be16 dport;
	__u8 proto;
	__u8 pad;
};

/* A prefilter in front of steer_local: the bit local_bit() picks for each of its addresses is
 * set (whatever the ifindex), so a clear bit means "not local" without a hash lookup. Kept a
 * superset of the map's addresses by steer.rs. */
struct steer_bits {
	__u64 w[STEER_BITS_WORDS];
};

struct steer_config {
	__u32 enabled;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, STEER_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} steer_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_LOCAL);
	__type(key, struct steer_local_key);
	__type(value, __u8);
} steer_local SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_bits);
} steer_bits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, STEER_MAX_OWNED);
	__type(key, struct steer_owned_key);
	__type(value, __u8);
} steer_owned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} steer_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_R_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} steer_reasons SEC(".maps");

#define ETH_P_QINQ 0x88a8
#define PROTO_ICMPV6 58

static __always_inline int count(__u32 reason, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&steer_reasons, &reason);
	if (n)
		*n += 1;
	return verdict;
}

static __always_inline __u16 rd16(const void *p)
{
	return bpf_ntohs(*(const __be16 *)p);
}

static __always_inline int to_socket(struct xdp_md *ctx, __u32 reason)
{
	int v = bpf_redirect_map(&steer_xsks, ctx->rx_queue_index, XDP_PASS);
	if (v == XDP_REDIRECT)
		return count(reason, v);
	return count(STEER_R_NO_SOCKET, XDP_PASS);
}

/* An address's bit in steer_bits: its four 32-bit words (native order) folded with xor, times
 * 0x9E3779B1, the top 12 bits. The twin of local_bit() in steer.rs: change both or neither. */
static __always_inline __u32 local_bit(const __u8 *addr16)
{
	__u32 w[4];
	__builtin_memcpy(w, addr16, 16);
	return ((w[0] ^ w[1] ^ w[2] ^ w[3]) * 0x9E3779B1u) >> 20;
}

static __always_inline int is_local(__u32 ifindex, const __u8 *addr16)
{
	__u32 zero = 0;
	struct steer_bits *bits = bpf_map_lookup_elem(&steer_bits, &zero);
	__u32 b = local_bit(addr16);
	if (bits && !(bits->w[b >> 6] & (1ULL << (b & 63))))
		return 0;
	struct steer_local_key k;
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.addr, addr16, 16);
	k.ifindex = ifindex;
	if (bpf_map_lookup_elem(&steer_local, &k))
		return 1;
	k.ifindex = 0;
	return bpf_map_lookup_elem(&steer_local, &k) != 0;
}

static __always_inline int is_owned(const __u8 *addr16, __u8 proto, __be16 dport)
{
	struct steer_owned_key k;
	__builtin_memset(&k, 0, sizeof(k));
	__builtin_memcpy(k.addr, addr16, 16);
	k.proto = proto;
	k.dport = dport;
	if (bpf_map_lookup_elem(&steer_owned, &k))
		return 1;
	__builtin_memset(k.addr, 0, 16);
	return bpf_map_lookup_elem(&steer_owned, &k) != 0;
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP ||
	       proto == IPPROTO_UDPLITE;
}

/* Whether a kernel socket (a listener, a connection, a bound UDP socket) takes this TCP or
 * UDP packet addressed to the router. */
static __always_inline int has_kernel_socket(struct xdp_md *ctx, int v6, const __u8 *l3,
					     const __u8 *l4, __u8 proto)
{
	struct bpf_sock_tuple t;
	__u32 len;
	__builtin_memset(&t, 0, sizeof(t));
	if (v6) {
		__builtin_memcpy(t.ipv6.saddr, l3 + 8, 16);
		__builtin_memcpy(t.ipv6.daddr, l3 + 24, 16);
		__builtin_memcpy(&t.ipv6.sport, l4, 2);
		__builtin_memcpy(&t.ipv6.dport, l4 + 2, 2);
		len = sizeof(t.ipv6);
	} else {
		__builtin_memcpy(&t.ipv4.saddr, l3 + 12, 4);
		__builtin_memcpy(&t.ipv4.daddr, l3 + 16, 4);
		__builtin_memcpy(&t.ipv4.sport, l4, 2);
		__builtin_memcpy(&t.ipv4.dport, l4 + 2, 2);
		len = sizeof(t.ipv4);
	}
	struct bpf_sock *sk;
	if (proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(ctx, &t, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &t, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

SEC("xdp")
int steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;

	__u32 zero = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&steer_config, &zero);
	if (!cfg || !cfg->enabled)
		return count(STEER_R_DISABLED, XDP_PASS);
	__u32 flags = cfg->flags;

	if ((void *)(eth + 14) > end)
		return count(STEER_R_MALFORMED, XDP_PASS);
	int l2_mcast = eth[0] & 1;
	__u16 et = rd16(eth + 12);
	__u32 at = 14;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (et != ETH_P_8021Q && et != ETH_P_QINQ)
			break;
		__u8 *t = data + at;
		if ((void *)(t + 4) > end)
			return count(STEER_R_MALFORMED, XDP_PASS);
		et = rd16(t + 2);
		at += 4;
	}
	if (et == ETH_P_ARP)
		return count(STEER_R_ARP, XDP_PASS);

	__u8 dst[16];
	__u8 proto;
	__u8 *l4;
	__builtin_memset(dst, 0, sizeof(dst));
	__u8 *l3 = data + at;
	if (et == ETH_P_IP) {
		if ((void *)(l3 + 20) > end || (l3[0] >> 4) != 4)
			return count(STEER_R_MALFORMED, XDP_PASS);
		__u32 hlen = (l3[0] & 0x0f) * 4;
		if (hlen < 20)
			return count(STEER_R_MALFORMED, XDP_PASS);
		int bcast = l3[16] == 255 && l3[17] == 255 && l3[18] == 255 && l3[19] == 255;
		int mc = (l3[16] & 0xf0) == 0xe0;
		if (bcast || mc || l2_mcast) {
			/* 224.0.0.0/24 is link-local: never forwarded. */
			int link = l3[16] == 224 && l3[17] == 0 && l3[18] == 0;
			if ((flags & STEER_F_FORWARD_MCAST) && mc && l2_mcast && !link)
				return to_socket(ctx, STEER_R_FORWARD);
			return count(STEER_R_MULTICAST, XDP_PASS);
		}
		dst[10] = 0xff;
		dst[11] = 0xff;
		__builtin_memcpy(&dst[12], l3 + 16, 4);
		if (!is_local(ctx->ingress_ifindex, dst))
			return to_socket(ctx, STEER_R_FORWARD);
		/* A fragment's ports are in its first piece only: the stack reassembles. */
		if (rd16(l3 + 6) & 0x3fff)
			return count(STEER_R_LOCAL, XDP_PASS);
		proto = l3[9];
		l4 = l3 + hlen;
	} else if (et == ETH_P_IPV6) {
		if ((void *)(l3 + 40) > end || (l3[0] >> 4) != 6)
			return count(STEER_R_MALFORMED, XDP_PASS);
		proto = l3[6];
		l4 = l3 + 40;
		if (proto == PROTO_ICMPV6) {
			if ((void *)(l4 + 1) > end)
				return count(STEER_R_MALFORMED, XDP_PASS);
			if (l4[0] >= 133 && l4[0] <= 137)
				return count(STEER_R_ND, XDP_PASS);
		}
		__builtin_memcpy(dst, l3 + 24, 16);
		if (dst[0] == 0xff || l2_mcast) {
			/* Scopes up to link-local (ffx1, ffx2) are never forwarded. */
			if ((flags & STEER_F_FORWARD_MCAST) && dst[0] == 0xff && l2_mcast &&
			    (dst[1] & 0x0f) > 2)
				return to_socket(ctx, STEER_R_FORWARD);
			return count(STEER_R_MULTICAST, XDP_PASS);
		}
		/* fe80::/10: never forwarded, from or to. */
		if ((dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) ||
		    (l3[8] == 0xfe && (l3[9] & 0xc0) == 0x80))
			return count(STEER_R_LINK_LOCAL, XDP_PASS);
		if (!is_local(ctx->ingress_ifindex, dst))
			return to_socket(ctx, STEER_R_FORWARD);
	} else {
		return count(STEER_R_NOT_IP, XDP_PASS);
	}

	/* Addressed to the router: the stack's, unless the dataplane owns the port. */
	int v6 = et == ETH_P_IPV6;
	if ((void *)(l4 + 4) > end)
		return count(STEER_R_LOCAL, XDP_PASS);
	if (has_ports(proto) && is_owned(dst, proto, *(__be16 *)(l4 + 2)))
		return to_socket(ctx, STEER_R_OWNED);
	if (!(flags & STEER_F_LOCAL_NO_SOCKET))
		return count(STEER_R_LOCAL, XDP_PASS);
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		if (has_kernel_socket(ctx, v6, l3, l4, proto))
			return count(STEER_R_LOCAL, XDP_PASS);
		return to_socket(ctx, STEER_R_LOCAL_NO_SOCKET);
	}
	/* ICMP: echo requests (and anything else) are the router's; echo replies and errors
	 * belong to connections the dataplane translated. */
	__u8 type = l4[0];
	if ((!v6 && proto == IPPROTO_ICMP && (type == 0 || type == 3 || type == 11 || type == 12)) ||
	    (v6 && proto == PROTO_ICMPV6 && (type == 129 || (type >= 1 && type <= 4))))
		return to_socket(ctx, STEER_R_LOCAL_NO_SOCKET);
	return count(STEER_R_LOCAL, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
