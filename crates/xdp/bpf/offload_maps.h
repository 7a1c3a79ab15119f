/* The flow-offload program's maps and their key and value layouts.
 *
 * The Rust mirror is crates/xdp/src/offload_layout.rs; tests/offload_layout.rs compares both
 * against the BTF of the built object, so a change here without the same change there fails.
 */
#ifndef NFT_OFFLOAD_MAPS_H
#define NFT_OFFLOAD_MAPS_H

#include <linux/types.h>

/* Entries by default; the loader may set another size. */
#define OFFLOAD_MAX_FLOWS 65536

/* Link encapsulation of a direction, as it arrives (in_encap) and leaves (out_encap). */
#define OFFLOAD_ENCAP_NONE 0
#define OFFLOAD_ENCAP_VLAN 1
#define OFFLOAD_ENCAP_QINQ 2
#define OFFLOAD_ENCAP_PPPOE 3

/* value.flags */
#define OFFLOAD_F_NAT 0x01 /* addresses or ports change */
#define OFFLOAD_F_V6 0x02

/* Why a frame was passed on, or that it was forwarded: offload_reasons indexes. */
#define OFFLOAD_R_FORWARDED 0
#define OFFLOAD_R_MISS 1
#define OFFLOAD_R_NOT_IP 2
#define OFFLOAD_R_MALFORMED 3
#define OFFLOAD_R_FRAGMENT 4
#define OFFLOAD_R_IPV4_OPTIONS 5
#define OFFLOAD_R_IPV6_EXT 6
#define OFFLOAD_R_NOT_TCP_UDP 7
#define OFFLOAD_R_TTL 8
#define OFFLOAD_R_TCP_CONTROL 9
#define OFFLOAD_R_L2_MISMATCH 10
#define OFFLOAD_R_TOO_BIG 11
#define OFFLOAD_R_NO_TX_PORT 12
#define OFFLOAD_R_HEADROOM 13
#define OFFLOAD_R_COUNT 14

/* One direction of a flow as it arrives: the flowtable's key (tuple and ingress port). IPv4
 * addresses are IPv4-mapped (::ffff:a.b.c.d), as in the software flowtable. Ports in network
 * byte order. `pad` is zero. */
struct offload_key {
	__u8 src[16];
	__u8 dst[16];
	__be16 sport;
	__be16 dport;
	__u32 ifindex;
	__u8 proto;
	__u8 v6;
	__u8 pad[2];
};

/* The rewrite plan of one direction. */
struct offload_value {
	/* What the packet leaves with (IPv4: the last 4 bytes). */
	__u8 new_src[16];
	__u8 new_dst[16];
	__be16 new_sport;
	__be16 new_dport;
	/* RFC 1624 sums of the changes, folded, not complemented: the IPv4 header (addresses and
	 * the TTL decrement) and the TCP/UDP checksum (pseudo-header addresses and ports; 0: the
	 * checksum is left alone). */
	__u16 ip_delta;
	__u16 l4_delta;
	/* Egress device, a key of offload_tx. */
	__u32 out_ifindex;
	/* This direction's counters in offload_stats. */
	__u32 stats_slot;
	/* IP MTU of the egress: longer packets go to the stack. */
	__u16 mtu;
	__u8 flags;
	/* Six-bit DSCP to write, 0xff for none. */
	__u8 dscp;
	/* The frames must arrive addressed to this MAC with this encapsulation (the other
	 * direction's egress), or they are passed. */
	__u8 in_mac[6];
	__u8 in_encap;
	/* Bytes of out_hdr written in front of L3: 14, 18 or 22. */
	__u8 out_hl;
	/* VLAN ids (outer first) or the PPPoE session, host byte order. */
	__u16 in_tag[2];
	/* The egress link header ready to copy: MACs, tags or PPPoE and PPP, EtherType. The
	 * PPPoE length is patched per packet. */
	__u8 out_hdr[22];
	__u8 out_encap;
	__u8 pad;
};

/* Per CPU, per direction (offload_stats is indexed by stats_slot). */
struct offload_stats {
	__u64 packets;
	/* Of the IP packet. */
	__u64 bytes;
	/* bpf_ktime_get_ns() of the last packet. */
	__u64 last_used_ns;
};

#endif
