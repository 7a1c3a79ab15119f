//! Rules checked against the real nft: how they list back, or that they are refused.

mod common;

use nft_lang::print::ListOpts;

/// Loads `rule` into a base chain of a `family` table and returns its listing, or the error.
fn list(family: &str, rule: &str) -> Result<String, String> {
    common::rule_listing(family, rule, ListOpts::default())
}

fn lists_as(family: &str, rule: &str, want: &str) {
    assert_eq!(list(family, rule).as_deref(), Ok(want), "{family}: {rule}");
}

fn refused(family: &str, rule: &str) {
    assert!(
        list(family, rule).is_err(),
        "{family}: {rule} should be refused"
    );
}

#[test]
fn extension_header_presence() {
    lists_as("ip6", "exthdr hbh exists", "exthdr hbh exists");
    lists_as("ip6", "exthdr rt == exists", "exthdr rt exists");
    lists_as("ip6", "exthdr hbh != missing", "exthdr hbh != missing");
    lists_as("ip6", "exthdr frag 1", "exthdr frag exists");
    lists_as("ip6", "exthdr dst 0", "exthdr dst missing");
    lists_as("inet", "exthdr mh exists", "exthdr mh exists");
    refused("ip", "exthdr hbh exists");
}

#[test]
fn address_lists_of_extension_headers() {
    lists_as("ip6", "srh sid[1] dead::beef", "srh sid[1] dead::beef");
    lists_as("ip6", "srh sid[2] dead::beef", "srh sid[2] dead::beef");
    refused("ip6", "srh sid[0] dead::beef");
}

#[test]
fn tcp_options_by_number_and_raw() {
    lists_as("inet", "tcp option 2 exists", "tcp option maxseg exists");
    lists_as("inet", "tcp option 254 missing", "tcp option 254 missing");
    refused("inet", "tcp option 256 exists");
    refused("inet", "tcp option meh exists");
    lists_as("inet", "tcp option @255,8,8 255", "tcp option @255,8,8 255");
    refused("inet", "tcp option @255,8,8 256");
    lists_as(
        "inet",
        "tcp option mptcp subtype 1",
        "tcp option mptcp subtype mp-join",
    );
    lists_as(
        "inet",
        "tcp option mptcp subtype { mp-capable, mp-join }",
        "tcp option mptcp subtype { mp-capable, mp-join }",
    );
}

#[test]
fn reset_tcp_option() {
    lists_as("ip", "reset tcp option mptcp", "reset tcp option mptcp");
    lists_as("ip", "reset tcp option 2", "reset tcp option maxseg");
    lists_as("ip", "reset tcp option 123", "reset tcp option 123");
    refused("ip", "reset tcp option meh");
    refused("ip", "reset tcp option 256");
}

#[test]
fn fib_flags_and_route_checks() {
    refused("ip", "fib saddr . daddr oif lo");
    refused("ip", "fib iif . oif . daddr oif lo");
    refused("ip", "fib mark oif lo");
    refused("ip", "fib daddr . oif type local");
    lists_as(
        "ip",
        "fib daddr . iif type local",
        "fib daddr . iif type local",
    );
    lists_as("ip", "fib daddr check missing", "fib daddr check missing");
    lists_as("ip", "fib daddr oif exists", "fib daddr check exists");
    lists_as(
        "ip6",
        "fib saddr . iif check missing drop",
        "fib saddr . iif check missing drop",
    );
}

#[test]
fn addresses_without_family_take_the_rule_context() {
    lists_as(
        "inet",
        "meta nfproto ipv4 ct original saddr 1.2.3.4",
        "ct original ip saddr 1.2.3.4",
    );
    lists_as(
        "ip",
        "ct original saddr 1.2.3.4",
        "ct original ip saddr 1.2.3.4",
    );
    lists_as(
        "inet",
        "meta nfproto ipv4 rt nexthop 192.168.0.1",
        "meta nfproto ipv4 rt ip nexthop 192.168.0.1",
    );
    lists_as("ip6", "rt nexthop fd00::1", "rt ip6 nexthop fd00::1");
    refused("inet", "ct original saddr ::1");
    refused(
        "ip",
        "ct original saddr . meta mark { 1.1.1.1 . 0x00000014 }",
    );
    refused(
        "ip",
        "meta mark set ct original daddr map { 1.1.1.1 : 0x00000011 }",
    );
}

#[test]
fn protocol_conflicts_across_statements() {
    refused(
        "inet",
        "ip protocol { tcp, udp } tcp dport 20 dnat to 1.1.1.1:80",
    );
    refused(
        "netdev",
        "meta protocol ip6 ip protocol icmp reject with icmp host-unreachable",
    );
    refused("ip", "tcp dport 1 counter udp dport 2");
    lists_as("ip6", "icmp type echo-request", "icmp type echo-request");
    lists_as(
        "ip",
        "icmpv6 type nd-router-advert",
        "icmpv6 type nd-router-advert",
    );
}

#[test]
fn network_dependencies_of_icmp_protocols_and_conntrack_addresses() {
    lists_as(
        "inet",
        "meta nfproto ipv6 meta l4proto ipv6-icmp counter",
        "meta l4proto ipv6-icmp counter",
    );
    lists_as(
        "inet",
        "meta nfproto ipv6 meta l4proto tcp",
        "meta nfproto ipv6 meta l4proto tcp",
    );
    lists_as(
        "bridge",
        "meta protocol ip meta l4proto icmp",
        "meta l4proto icmp",
    );
    lists_as(
        "inet",
        "meta nfproto ipv4 ct original ip saddr 1.2.3.4",
        "ct original ip saddr 1.2.3.4",
    );
    lists_as(
        "inet",
        "meta nfproto ipv4 ct mark 0x00000001",
        "meta nfproto ipv4 ct mark 0x00000001",
    );
}

#[test]
fn prefixes_keep_the_network_part_and_ranges_list_numbers() {
    lists_as("ip", "ip saddr 192.168.2.1/24", "ip saddr 192.168.2.0/24");
    lists_as("ip", "ip saddr 192.168.2.0/0", "ip saddr 0.0.0.0/0");
    lists_as("ip6", "ip6 saddr ::1/64", "ip6 saddr ::/64");
    lists_as("ip", "meta iifgroup 0-5", "iifgroup 0-5");
}

#[test]
fn shifts_within_width_and_concatenated_ranges_checked() {
    refused("ip", "ct mark set meta mark << 32");
    lists_as(
        "ip",
        "ct mark set meta mark >> 31",
        "ct mark set meta mark >> 31",
    );
    lists_as(
        "ip",
        "meta mark set ip dscp << 26 | 0x10",
        "meta mark set ip dscp << 26 | 0x10",
    );
    refused(
        "ip",
        "meta mark . tcp dport { 0x0000000a-0x00000014 . 80-90, 0x00100000-0x00100123 . 201-120 }",
    );
}
