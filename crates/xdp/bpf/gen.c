/* A traffic generator for live benchmarks: run with BPF_PROG_TEST_RUN in the kernel's
 * live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES), it writes the 60-byte Ethernet/IPv4/UDP
 * template of gen_cfg into each frame (the test mode recycles its pages, and whoever received
 * a frame may have rewritten it: a router rewrites MACs, TTL, addresses in place), gives it the
 * next source port of `flows` (its UDP checksum updated) and redirects it out of
 * gen_cfg.ifindex. On a veth the frames go straight into the peer's
 * receive ring (ndo_xdp_xmit): no socket, no skb, no qdisc on the sending side, which is what
 * makes it faster than an AF_PACKET or copy-mode AF_XDP sender. The peer must have NAPI on
 * (an XDP program, or GRO) or veth drops them.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GEN_LEN 60

struct gen_cfg {
	__u32 ifindex;
	__u16 flows;
	__u16 sport;
	__u8 frame[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} gen_cfg SEC(".maps");

/* Frames handed out, per CPU (the next source port). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_seq SEC(".maps");

SEC("xdp")
int gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_cfg *cfg = bpf_map_lookup_elem(&gen_cfg, &zero);
	__u64 *seq = bpf_map_lookup_elem(&gen_seq, &zero);

	if (!cfg || !seq || data + GEN_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->frame, GEN_LEN);
	__u8 *l4 = data + 14 + 20;
	__u16 flows = cfg->flows ? cfg->flows : 1;
	__u16 port = cfg->sport + (__u16)(*seq % flows);
	*seq += 1;
	/* the template's checksum is for port cfg->sport: RFC 1624 for the new one */
	__u32 sum = (__u16)~bpf_ntohs(*(__be16 *)(l4 + 6));
	sum += (__u16)~cfg->sport;
	sum += port;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	__u16 c = (__u16)~sum;
	*(__be16 *)l4 = bpf_htons(port);
	*(__be16 *)(l4 + 6) = bpf_htons(c ? c : 0xffff);
	return bpf_redirect(cfg->ifindex, 0);
}

char _license[] SEC("license") = "GPL";
