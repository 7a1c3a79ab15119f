/* A PPPoE session interface for scripts/difftest on kernels without PPP (rule pppoe-emulation).
 *
 * The router's interface (`pppoe-wan`) is a veth named like it, with the session's MTU (1492)
 * and no ARP (a PPP link has no neighbours), so the kernel's stack routes IP over it as over a
 * point-to-point device. Its peer, the wire to the access concentrator, carries PPPoE session
 * frames:
 *
 * - `egress`, on the router's veth: an IPv4 or IPv6 packet leaving gets the Ethernet + PPPoE
 *   session + PPP protocol header (22 bytes), to the concentrator's MAC, as pppoe_xmit builds
 *   it. Anything else (nothing, with NOARP) would not leave a PPP link: dropped.
 * - `wire`, on the peer's veth egress: a frame the concentrator sends is taken apart on its way
 *   to the router. Only a session frame (0x8864) of this session from the concentrator's MAC
 *   (pppoe_rcv's get_item matches session id and source MAC) whose PPP protocol is IPv4
 *   (0x0021) or IPv6 (0x0057) reaches the router, trimmed to its PPPoE length (pppoe_rcv's
 *   pskb_trim_rcsum), as a plain Ethernet frame; the rest (other sessions,
 *   discovery, LCP and other PPP control frames, which pppd would get, plain Ethernet) is
 *   dropped, as the kernel's IP stack would never see it.
 *
 * The strip runs at the peer's egress, not the router's ingress, for two reasons: a veth drops
 * a received frame longer than its MTU + 18 before tc sees it (is_skb_forwardable), which a
 * 1492-byte packet in PPPoE (1514) is; and bpf_skb_adjust_room shrinks only skbs whose
 * protocol is IPv4 or IPv6, which at the router's ingress is 0x8864. The harness sends each
 * PPPoE frame with the inner protocol as sll_protocol, so that the skb's protocol is IP here.
 *
 * Built by scripts/difftest with `clang -O2 -target bpf -DSESSION=0x1234
 * -DPEER_MAC=0x0200000002fe -DROUTER_MAC=0x020000000201` (MACs as 48-bit numbers).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#if !defined(SESSION) || !defined(PEER_MAC) || !defined(ROUTER_MAC)
#error "SESSION, PEER_MAC and ROUTER_MAC are required"
#endif

/* byte i of a MAC given as a 48-bit number (no arrays in .rodata: tc's loader may lack them) */
#define MAC_BYTE(m, i) ((__u8)(((__u64)(m) >> (8 * (5 - (i)))) & 0xff))
#define MAC_BYTES(m) MAC_BYTE(m, 0), MAC_BYTE(m, 1), MAC_BYTE(m, 2), MAC_BYTE(m, 3), MAC_BYTE(m, 4), MAC_BYTE(m, 5)

#define PPPOE_HLEN 8 /* PPPoE session header (6) + PPP protocol (2) */
#define PPP_IP 0x0021
#define PPP_IPV6 0x0057

SEC("egress")
int pppoe_egress(struct __sk_buff *skb)
{
	__u16 ppp;

	if (skb->protocol == bpf_htons(ETH_P_IP))
		ppp = PPP_IP;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		ppp = PPP_IPV6;
	else
		return TC_ACT_SHOT;
	if (skb->len < ETH_HLEN)
		return TC_ACT_SHOT;
	__u16 plen = skb->len - ETH_HLEN + 2;
	if (bpf_skb_adjust_room(skb, PPPOE_HLEN, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	__u8 h[ETH_HLEN + PPPOE_HLEN] = {
		MAC_BYTES(PEER_MAC), MAC_BYTES(ROUTER_MAC),
		0x88, 0x64, 0x11, 0x00, SESSION >> 8, SESSION & 0xff,
		plen >> 8, plen & 0xff, ppp >> 8, ppp & 0xff,
	};
	if (bpf_skb_store_bytes(skb, 0, h, sizeof(h), 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("wire")
int pppoe_wire(struct __sk_buff *skb)
{
	__u8 h[ETH_HLEN + PPPOE_HLEN];

	if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
		return TC_ACT_SHOT;
	/* pppoe_rcv looks at neither version/type nor code: neither does this */
	if (h[12] != 0x88 || h[13] != 0x64)
		return TC_ACT_SHOT;
	if (h[16] != (SESSION >> 8) || h[17] != (SESSION & 0xff))
		return TC_ACT_SHOT;
	__u64 src = 0;
	for (int i = 0; i < ETH_ALEN; i++)
		src = (src << 8) | h[ETH_ALEN + i];
	if (src != (__u64)(PEER_MAC))
		return TC_ACT_SHOT;
	__u16 plen = (h[18] << 8) | h[19];
	__u16 ppp = (h[20] << 8) | h[21];
	__u16 et;
	if (ppp == PPP_IP && skb->protocol == bpf_htons(ETH_P_IP))
		et = ETH_P_IP;
	else if (ppp == PPP_IPV6 && skb->protocol == bpf_htons(ETH_P_IPV6))
		et = ETH_P_IPV6;
	else
		return TC_ACT_SHOT;
	/* the PPPoE length counts the PPP protocol field and the packet */
	if (plen < 2 || ETH_HLEN + 6 + plen > skb->len)
		return TC_ACT_SHOT;
	if (ETH_HLEN + 6 + plen < skb->len && bpf_skb_change_tail(skb, ETH_HLEN + 6 + plen, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, -PPPOE_HLEN, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	__be16 etb = bpf_htons(et);
	if (bpf_skb_store_bytes(skb, 12, &etb, 2, 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
