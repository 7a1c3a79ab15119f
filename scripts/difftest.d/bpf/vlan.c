/* A VLAN sub-interface for scripts/difftest on kernels without 802.1Q (rule vlan-emulation).
 *
 * Attached with tc (clsact) to a router-side veth named like the VLAN interface (`wan.10`):
 * ingress takes the frame's tag(s) off, egress puts them on, so the kernel's stack sees untagged
 * frames on an interface of that name while the wire to the peer carries the tags, as a real
 * VLAN device over a parent port would. A frame without exactly these tags is dropped, as a
 * real VLAN device would not receive it.
 *
 * Built by scripts/difftest with `clang -O2 -target bpf -DTAG0_PROTO=0x8100 -DTAG0_VID=10`
 * (outermost tag), plus -DTAG1_PROTO/-DTAG1_VID for the inner tag of QinQ.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#if !defined(TAG0_PROTO) || !defined(TAG0_VID)
#error "TAG0_PROTO and TAG0_VID are required"
#endif

/* The receive path moved the outermost tag into skb->vlan_tci before tc runs; each pop moves
 * the next tag there, so every tag is checked the same way. */
static __always_inline int take_tag(struct __sk_buff *skb, __u16 proto, __u16 vid)
{
	if (!skb->vlan_present || skb->vlan_proto != bpf_htons(proto) || (skb->vlan_tci & 0xfff) != vid)
		return -1;
	return bpf_skb_vlan_pop(skb) ? -1 : 0;
}

SEC("ingress")
int vlan_ingress(struct __sk_buff *skb)
{
	if (take_tag(skb, TAG0_PROTO, TAG0_VID))
		return TC_ACT_SHOT;
#ifdef TAG1_VID
	if (take_tag(skb, TAG1_PROTO, TAG1_VID))
		return TC_ACT_SHOT;
#endif
	/* a further tag would reach no interface */
	return skb->vlan_present ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("egress")
int vlan_egress(struct __sk_buff *skb)
{
	/* innermost first: a push moves the tag already there into the frame */
#ifdef TAG1_VID
	if (bpf_skb_vlan_push(skb, bpf_htons(TAG1_PROTO), TAG1_VID))
		return TC_ACT_SHOT;
#endif
	if (bpf_skb_vlan_push(skb, bpf_htons(TAG0_PROTO), TAG0_VID))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
