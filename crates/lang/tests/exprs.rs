//! Matches and their listing: one rule loaded into a fresh table, listed back as
//! `nft -s -p list ruleset` prints it.

mod common;

use nft_lang::print::ListOpts;

/// Loads `rule` into a base chain of a `family` table and returns its listing (protocols as
/// numbers), or the error.
fn list(family: &str, rule: &str) -> Result<String, String> {
    let mut o = ListOpts::default();
    o.dt.numeric_proto = true;
    common::rule_listing(family, rule, o)
}

fn same(family: &str, rule: &str) {
    assert_eq!(list(family, rule).as_deref(), Ok(rule), "{family}: {rule}");
}

fn lists_as(family: &str, rule: &str, want: &str) {
    assert_eq!(list(family, rule).as_deref(), Ok(want), "{family}: {rule}");
}

fn rejected(family: &str, rule: &str) {
    assert!(
        list(family, rule).is_err(),
        "{family}: {rule} should be rejected, got {:?}",
        list(family, rule)
    );
}

#[test]
fn inner_headers() {
    same(
        "inet",
        "udp dport 4789 vxlan ip saddr . vxlan ip daddr { 1.2.3.4 . 4.3.2.1 }",
    );
    same("ip", "udp dport 6081 geneve ether saddr 62:87:4d:d6:19:05");
    same("netdev", "gretap vlan id 10");
    same("ip6", "gre ip protocol 1");
    rejected("inet", "vxlan vni 10");
    rejected("inet", "geneve vni 10");
    rejected("inet", "gre ether saddr 62:87:4d:d6:19:05");
    rejected("inet", "udp dport 4789 vxlan ip saddr set 1.2.3.4");
}

#[test]
fn class_ids() {
    same("ip", "meta priority bcad:dadc");
    same("ip", "meta priority != bcad:dada-bcad:dadc");
    lists_as(
        "ip",
        "meta priority { bcad:dada, bcad:dadc, aaaa:bbbb }",
        "meta priority { aaaa:bbbb, bcad:dada, bcad:dadc }",
    );
    same("ip", "meta priority set cafe:beef");
    // a colon followed by a word is still a mapping
    same("ip", "tcp dport vmap { 25 : accept, 28 : drop }");
    lists_as(
        "ip",
        "tcp dport vmap { 25:accept, 28:drop }",
        "tcp dport vmap { 25 : accept, 28 : drop }",
    );
    same("ip6", "ip6 saddr 1:2:3:4:5:6:7:8");
}

#[test]
fn hex_integers_and_arithmetic() {
    same("ip", "ip frag-off & 0x1fff != 0x0");
    lists_as("ip", "ip frag-off { 33, 55 }", "ip frag-off { 0x21, 0x37 }");
    same("ip", "@ll,0,128 0xfedcba987654321001234567890abcde");
    same("inet", "@nh,8,16 0x0");
    // arithmetic takes the type of its left operand; a shift makes a hex integer
    same("ip", "ct mark set ip dscp << 2 | 0x10");
    same("ip", "ct mark set ip dscp & af33");
    lists_as(
        "ip",
        "ct mark set ip dscp & 0x0f << 2",
        "ct mark set ip dscp & 0x3c",
    );
    lists_as(
        "ip",
        "ct mark set ct mark | ip dscp | 0x200",
        "ct mark set ct mark | ip dscp | 0x00000200",
    );
    same(
        "ip",
        "meta mark set ct mark & 0xffff0000 | meta mark & 0x0000ffff",
    );
    same("ip", "ct mark set jhash ip saddr . ip daddr mod 2 seed 0x0");
    same("ip", "ct mark set jhash ip saddr . ip daddr mod 2");
}

#[test]
fn flag_tests() {
    lists_as(
        "ip",
        "tcp flags fin,syn / fin,syn",
        "tcp flags & (fin | syn) == fin | syn",
    );
    lists_as("ip", "tcp flags & syn != 0", "tcp flags syn");
    lists_as("ip", "tcp flags & syn == 0", "tcp flags ! syn");
    lists_as("ip", "tcp flags & (syn | ack) != 0", "tcp flags syn,ack");
    lists_as(
        "ip",
        "tcp flags & (fin | syn | rst | ack) syn",
        "tcp flags & (fin | syn | rst | ack) == syn",
    );
    lists_as("ip", "tcp flags & (fin | syn | rst | psh | ack | urg | ecn | cwr) == fin | syn | rst | psh | ack | urg | ecn | cwr", "tcp flags == 0xff");
    same("ip", "tcp flags { syn, syn | ack }");
    same("ip", "tcp flags ! fin,rst");
    same("ip", "ct status ! dnat");
    same("ip", "ct state != established | related | new");
    lists_as("ip", "ct state 8", "ct state new");
    same("ip", "tcp flags == syn");
    lists_as(
        "ip",
        "ct event set new | related | destroy | label",
        "ct event set new,related,destroy,label",
    );
    same("ip", "ct event set new,destroy");
    rejected("ip", "tcp flags & (fin | syn | rst | ack) ! syn");
    rejected("ip", "ct mark set {0x11333, 0x11}");
}

#[test]
fn icmp_message_types() {
    lists_as(
        "ip",
        "icmp id 22",
        "icmp type { echo-reply, echo-request } icmp id 22",
    );
    lists_as(
        "ip",
        "icmp id 1 icmp sequence 2",
        "icmp type { echo-reply, echo-request } icmp id 1 icmp sequence 2",
    );
    same("ip", "icmp type echo-reply icmp id 1");
    same("ip", "icmp mtu 33");
    lists_as(
        "ip6",
        "icmpv6 type packet-too-big icmpv6 mtu 1280",
        "icmpv6 mtu 1280",
    );
    lists_as(
        "ip6",
        "icmpv6 type nd-redirect icmpv6 daddr 2001:db8::133",
        "icmpv6 daddr 2001:db8::133",
    );
    same(
        "ip6",
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } icmpv6 taddr 2001:db8::133",
    );
    rejected("ip", "icmp code != 1 icmp type 2 icmp mtu 5");
}

#[test]
fn merged_payload_matches_list_in_header_order() {
    lists_as("ip", "icmp code 1 icmp type 2", "icmp type 2 icmp code 1");
    lists_as(
        "ip",
        "tcp dport 22 tcp sport 1024",
        "tcp sport 1024 tcp dport 22",
    );
    // more than 32 bits of a network header are not merged
    same("ip", "tcp sequence 0 tcp sport 1024 tcp dport 22");
    lists_as(
        "arp",
        "arp daddr ether fe:ed:00:c0:ff:ee arp saddr ip 192.168.1.1",
        "arp saddr ip 192.168.1.1 arp daddr ether fe:ed:00:c0:ff:ee",
    );
    // a statement in between ends the run
    same("ip", "tcp dport 22 counter tcp sport 1024");
}

#[test]
fn implied_dependencies_are_left_out() {
    lists_as("ip", "ip protocol tcp tcp dport 22", "tcp dport 22");
    lists_as(
        "ip",
        "ip protocol tcp meta mark set 1 tcp dport 22",
        "ip protocol 6 meta mark set 0x00000001 tcp dport 22",
    );
    lists_as(
        "inet",
        "ip protocol tcp tcp dport 22",
        "ip protocol 6 tcp dport 22",
    );
    lists_as(
        "inet",
        "meta nfproto ipv4 ip saddr 1.2.3.4",
        "ip saddr 1.2.3.4",
    );
    same("inet", "meta nfproto ipv4 counter ip saddr 1.2.3.4");
    lists_as(
        "inet",
        "meta nfproto ipv4 icmp type echo-request",
        "icmp type echo-request",
    );
    same("inet", "meta nfproto ipv6 icmp type echo-request");
    lists_as("ip", "meta protocol ip udp dport 67", "udp dport 67");
    same("ip", "meta protocol ip");
    lists_as("bridge", "ether type vlan vlan id 4094", "vlan id 4094");
    same(
        "bridge",
        "ether type 8021ad vlan id 1 vlan type 8021q vlan id 2 vlan type ip counter",
    );
    rejected("bridge", "ether type ip vlan id 1");
    lists_as(
        "bridge",
        "vlan id 4094 vlan cfi 1",
        "vlan id 4094 vlan dei 1",
    );
    lists_as(
        "inet",
        "meta l4proto tcp @th,16,16 { 22, 23, 80 }",
        "tcp dport { 22, 23, 80 }",
    );
    same(
        "inet",
        "meta l4proto { 6, 17, 132 } th dport { 22, 23, 80 }",
    );
    same("inet", "meta l4proto 91 @th,0,16 0x0 accept");
}

#[test]
fn value_checks_and_forms() {
    lists_as(
        "ip",
        "ip saddr & 0xff == 1",
        "ip saddr & 0.0.0.255 == 0.0.0.1",
    );
    lists_as(
        "ip",
        "ip saddr & 0xffff0000 == 0xffff0000",
        "ip saddr 255.255.0.0/16",
    );
    lists_as("ip", "ct expiration 1m-1h", "ct expiration 60s-3600s");
    same("ip", "meta hour \"21:00\"-\"02:00\" drop");
    lists_as("ip", "rt nexthop 192.168.0.1", "rt ip nexthop 192.168.0.1");
    lists_as("ip6", "rt nexthop fd00::1", "rt ip6 nexthop fd00::1");
    lists_as("ip", "tcp option sack0 left 1", "tcp option sack left 1");
    same("inet", "ipsec in ip6 daddr dead::beef");
    lists_as("inet", "meta secpath missing", "meta ipsec missing");
    rejected("ip", "rt ip6 nexthop fd00::1");
    rejected("inet", "rt nexthop 192.168.0.1");
    rejected("ip", "meta iifname \"\"");
    rejected("ip", "ct helper \"12345678901234567\"");
    rejected("ip", "meta day 7 drop");
    rejected("inet", "meta ibrname \"br0\"");
    rejected("inet", "osf ttl nottl name \"Linux\"");
    rejected("inet", "ipsec in spnum 256 reqid 1");
}
