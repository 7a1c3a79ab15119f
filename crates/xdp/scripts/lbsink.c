/* The live bench's sink at the server's end (s0): drops the generator's UDP datagrams (port
 * 9) in XDP, natively, and passes everything else (ARP, the priming, pings). veth counts the
 * drops itself (`ethtool -S s0`: rx_queue_0_xdp_drops), so no map is read. Cheaper per frame
 * than the nft netdev counter it replaces (no skb), so that the server's end does not take CPU
 * time from the generator it shares a CPU with; and an XDP program gives s0 the NAPI that
 * native-XDP redirects into it need. Built by livebench-gen.sh with clang.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
SEC("xdp")
int sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	return udp->dest == bpf_htons(9) ? XDP_DROP : XDP_PASS;
}
char _license[] SEC("license") = "GPL";
