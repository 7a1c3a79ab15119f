//! Whole-ruleset listings: each input is loaded and must list back exactly as nft does.

use nft_lang::print::{self, ListOpts};
use nft_lang::ruleset::{load_str, LoadOpts};

fn list(src: &str) -> String {
    let rs = load_str("test.nft", src, &LoadOpts::default())
        .unwrap_or_else(|e| panic!("load failed: {e}"));
    print::ruleset(&rs, &ListOpts::default())
}

/// The listing of `src` is `src` itself.
fn round_trip(src: &str) {
    assert_eq!(list(src), src);
}

#[test]
fn set_elements_five_a_line_for_ports_two_for_ipv4() {
    round_trip(
        "table ip t {\n\tset s {\n\t\ttype inet_service\n\t\telements = { 1, 2, 3, 4, 5,\n\t\t\t     6, 7 }\n\t}\n\n\tset a {\n\t\ttype ipv4_addr\n\t\telements = { 1.1.1.1, 2.2.2.2,\n\t\t\t     3.3.3.3 }\n\t}\n\n\tset c {\n\t\ttype ipv4_addr . inet_service\n\t\telements = { 1.1.1.1 . 80,\n\t\t\t     2.2.2.2 . 443 }\n\t}\n}\n",
    );
}

#[test]
fn set_elements_one_a_line_with_timeouts_or_statements() {
    round_trip("table ip t {\n\tset s {\n\t\ttype inet_service\n\t\ttimeout 1m\n\t\telements = { 1 timeout 10s, 2 }\n\t}\n}\n".replace("10s, 2", "10s,\n\t\t\t     2").as_str());
    round_trip("table ip t {\n\tset s {\n\t\ttype inet_service\n\t\tcounter\n\t\telements = { 1 counter packets 1 bytes 2,\n\t\t\t     2 counter packets 0 bytes 0 }\n\t}\n}\n");
}

#[test]
fn set_declaration_order_and_count() {
    round_trip("table ip x {\n\tset s {\n\t\ttype ipv4_addr\n\t\tsize 2\t# count 2\n\t\tflags dynamic,timeout\n\t\tcounter\n\t\ttimeout 1m\n\t\tcomment \"c\"\n\t}\n}\n".replace("\t# count 2", "").as_str());
    round_trip("table ip x {\n\tset s {\n\t\ttype ipv4_addr\n\t\tsize 2\t# count 1\n\t\telements = { 1.1.1.1 }\n\t}\n}\n");
}

#[test]
fn timeout_flag_implied_by_default_timeout() {
    assert_eq!(
        list("table ip x { set s { type ipv4_addr; flags timeout; timeout 1m; } }"),
        "table ip x {\n\tset s {\n\t\ttype ipv4_addr\n\t\ttimeout 1m\n\t}\n}\n"
    );
}

#[test]
fn chain_binding_listed_inline() {
    round_trip("table ip f {\n\tchain c {\n\t\ttcp dport 22 jump {\n\t\t\tip saddr 1.1.1.1 accept\n\t\t\tdrop\n\t\t}\n\t\taccept\n\t}\n}\n");
}

#[test]
fn set_update_with_timeout_and_stateless_counter() {
    round_trip("table ip t {\n\tset y {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n\n\tchain c {\n\t\tupdate @y { ip saddr timeout 30s counter }\n\t\tadd @y { ip saddr }\n\t}\n}\n");
    assert_eq!(
        list("table ip t { set y { type ipv4_addr; flags dynamic; }\nchain c { add @y { ip saddr counter packets 3 bytes 4 } } }"),
        "table ip t {\n\tset y {\n\t\ttype ipv4_addr\n\t\tflags dynamic\n\t}\n\n\tchain c {\n\t\tadd @y { ip saddr counter }\n\t}\n}\n"
    );
}

#[test]
fn set_update_with_constant_in_concatenation() {
    round_trip("table ip t {\n\tset y {\n\t\ttype ipv4_addr . inet_service\n\t\tflags dynamic,timeout\n\t\ttimeout 1m\n\t}\n\n\tchain c {\n\t\tadd @y { ip saddr . 10002 timeout 1s }\n\t}\n}\n");
}

#[test]
fn objects() {
    round_trip("table ip filter {\n\tlimit l {\n\t\tcomment \"x\"\n\t\trate 400/hour\n\t}\n\n\tsynproxy s {\n\t\tmss 1460\n\t\twscale 7\n\t\ttimestamp sack-perm\n\t}\n\n\tct timeout t {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { unreplied : 15s, replied : 12s }\n\t}\n}\n");
    assert_eq!(
        list("table ip t { ct timeout t { protocol udp; policy = { replied : 12s, unreplied : 30s } } }"),
        "table ip t {\n\tct timeout t {\n\t\tprotocol udp\n\t\tl3proto ip\n\t\tpolicy = { replied : 12s }\n\t}\n}\n"
    );
}

#[test]
fn table_flags_then_comment() {
    round_trip("table ip t {\n\tcomment \"hello\"\n\tchain c {\n\t}\n}\n");
    round_trip("table ip t {\n\tflags dormant\n\tcomment \"hello\"\n\n\tchain c {\n\t}\n}\n");
}

#[test]
fn nat_family_listed_for_interval_and_concat_maps() {
    round_trip("table ip x {\n\tchain y {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tsnat ip prefix to ip saddr map { 10.141.11.0/24 : 192.168.2.0/24 }\n\t\tsnat to ip saddr map { 1.1.1.1 : 2.2.2.2 }\n\t\tsnat ip to tcp dport map { 80 : 1.1.1.1 . 8001 }\n\t}\n}\n");
    assert_eq!(
        list("table ip x { chain y { type nat hook postrouting priority srcnat; snat ip to 1.1.1.1 } }"),
        "table ip x {\n\tchain y {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tsnat to 1.1.1.1\n\t}\n}\n"
    );
}

#[test]
fn map_with_interval_data() {
    round_trip("table ip nat {\n\tmap m {\n\t\ttype ipv4_addr : interval ipv4_addr . inet_service\n\t\tflags interval\n\t\telements = { 192.168.1.2 : 10.141.10.1-10.141.10.3 . 8888-8999 }\n\t}\n}\n");
}

#[test]
fn set_statements_several_and_connlimit() {
    round_trip("table ip x {\n\tset y {\n\t\ttype ipv4_addr\n\t\tlimit rate 1/second burst 5 packets counter\n\t\telements = { 1.1.1.1 limit rate 1/second burst 5 packets counter packets 0 bytes 0 }\n\t}\n\n\tset z {\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic\n\t\tct count over 20\n\t}\n\n\tset w {\n\t\ttype ipv4_addr\n\t\tct count over 2\n\t\telements = { 2.2.2.2 ct count over 5 }\n\t}\n}\n");
}

#[test]
fn last_without_use_lists_never() {
    round_trip("table ip x {\n\tset y {\n\t\ttype ipv4_addr\n\t\tlast\n\t\telements = { 2.2.2.3 last used never }\n\t}\n}\n");
}

#[test]
fn typeof_object_and_queue_maps() {
    round_trip("table inet filter {\n\tlimit b {\n\t\trate 1 kbytes/second\n\t}\n\n\tmap m {\n\t\ttypeof ip saddr : limit\n\t\telements = { 1.1.1.1 : \"b\" }\n\t}\n\n\tmap q {\n\t\ttypeof ip saddr . tcp dport : queue\n\t\telements = { 127.0.0.1 . 22 : 1 }\n\t}\n}\n");
}

#[test]
fn classid_is_one_token() {
    round_trip("table ip x {\n\tmap m {\n\t\ttype ipv4_addr : classid\n\t\telements = { 10.1.26.2 : 1:bbf8 }\n\t}\n\n\tchain c {\n\t\tmeta priority set 1:2\n\t}\n}\n");
}

#[test]
fn ranges_list_numerically_and_flag_elements_with_pipes() {
    round_trip("table inet t {\n\tset s3 {\n\t\ttype inet_proto\n\t\tflags interval\n\t\telements = { 10-20, 50-60 }\n\t}\n\n\tset f {\n\t\ttype tcp_flag\n\t\telements = { fin | ack, syn }\n\t}\n}\n");
}

#[test]
fn ipsec_xfrm_selector_in_typeof_and_constants_in_set_lookups() {
    round_trip("table ip t {\n\tset s {\n\t\ttypeof ipsec in reqid . iif\n\t\tsize 16\n\t\tflags interval\n\t}\n\n\tset s1 {\n\t\ttype ipv4_addr . ipv4_addr . inet_service\n\t}\n\n\tchain c2 {\n\t\tipsec in reqid . \"lo\" @s\n\t\tip saddr . 1.2.3.4 . 80 @s1\n\t}\n}\n");
}

#[test]
fn ip_option_value_is_sixteen_bits() {
    round_trip("table ip t {\n\tset s5 {\n\t\ttypeof ip option ra value\n\t\telements = { 1, 1024 }\n\t}\n}\n");
}

#[test]
fn tunnel_objects() {
    round_trip("table netdev x {\n\ttunnel g {\n\t\tid 10\n\t\tip saddr 192.168.2.10\n\t\tdport 10\n\t\tgeneve {\n\t\t\tclass 0x1 opt-type 0x1 data \"0x12345678\"\n\t\t}\n\t}\n\n\ttunnel e {\n\t\tid 40\n\t\terspan {\n\t\t\tversion 2\n\t\t\tdirection ingress\n\t\t\tid 10\n\t\t}\n\t}\n\n\tchain x {\n\t\ttunnel name ip saddr map { 10.141.10.123 : \"g\" }\n\t}\n}\n");
    // zero fields are not listed, options follow nft's order
    assert_eq!(
        list("table netdev x { tunnel v { vxlan { gbp 200 }; ttl 0; id 20; tos 10 } }"),
        "table netdev x {\n\ttunnel v {\n\t\tid 20\n\t\ttos 10\n\t\tvxlan {\n\t\t\tgbp 200\n\t\t}\n\t}\n}\n"
    );
}

/// An anonymous set of one element in a match lists as the element alone, as nft does; a
/// vmap, a concatenation and a set written with more elements
/// keep their braces. Expected: `nft list ruleset` after `nft -f` of the same input (nft 1.0.6).
#[test]
fn anonymous_set_of_one_element_lists_as_the_element() {
    let src = "table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
		tcp dport { 22 } accept
		ip saddr { 198.18.0.1 } accept
		ip saddr { 198.18.0.0/24 } accept
		ip6 saddr { 2001:db8::1 } accept
		ct state { established } accept
		ct state != { established } accept
		meta l4proto { tcp } accept
		meta l4proto { tcp } tcp dport 22 accept
		iifname { \"eth0\" } accept
		tcp dport != { 22 } accept
		tcp dport { 1-5 } accept
		tcp dport != { 1-5 } accept
		udp dport { 53 } counter drop
		tcp dport { 22 comment \"ssh\" } accept
		tcp dport vmap { 22 : accept }
		ip saddr . tcp dport { 198.18.0.1 . 22 } accept
		ip saddr . tcp dport vmap { 198.18.0.1 . 22 : drop }
		tcp dport { 22, 22 } accept
		ct state { established, related } accept
		meta mark & 0xff == { 0x1 } accept
	}
}
";
    let nft = "table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
		tcp dport 22 accept
		ip saddr 198.18.0.1 accept
		ip saddr 198.18.0.0/24 accept
		ip6 saddr 2001:db8::1 accept
		ct state established accept
		ct state != established accept
		meta l4proto tcp accept
		tcp dport 22 accept
		iifname \"eth0\" accept
		tcp dport != 22 accept
		tcp dport 1-5 accept
		tcp dport != 1-5 accept
		udp dport 53 counter packets 0 bytes 0 drop
		tcp dport 22 accept
		tcp dport vmap { 22 : accept }
		ip saddr . tcp dport { 198.18.0.1 . 22 } accept
		ip saddr . tcp dport vmap { 198.18.0.1 . 22 : drop }
		tcp dport { 22 } accept
		ct state { established, related } accept
		meta mark & 0x000000ff == 0x00000001 accept
	}
}
";
    assert_eq!(list(src), nft);
}

/// An element with a statement keeps its set, so the counter still counts (nft 1.0.8 and
/// later; 1.0.6 drops the counter with the braces).
#[test]
fn set_of_one_element_with_a_counter_stays_a_set() {
    assert_eq!(
        list("table ip t { chain c { meta mark { 0xa counter } accept; } }"),
        "table ip t {\n\tchain c {\n\t\tmeta mark { 0x0000000a counter packets 0 bytes 0 } accept\n\t}\n}\n"
    );
}

/// Elements that merge into one (a duplicate, two adjacent prefixes) still make a set, as
/// nft counts the elements written; loading that listing again drops the braces, as nft's
/// second load does.
#[test]
fn set_merged_to_one_element_keeps_its_braces_until_loaded_again() {
    let src = "table ip t {
	chain c {
		ip saddr { 198.18.0.1, 198.18.0.1 } accept
		ip saddr { 198.18.0.0/25, 198.18.0.128/25 } accept
	}
}
";
    let first = "table ip t {
	chain c {
		ip saddr { 198.18.0.1 } accept
		ip saddr { 198.18.0.0/24 } accept
	}
}
";
    let second = "table ip t {
	chain c {
		ip saddr 198.18.0.1 accept
		ip saddr 198.18.0.0/24 accept
	}
}
";
    assert_eq!(list(src), first);
    assert_eq!(list(first), second);
}

/// `tcp flags { syn }` is a lookup of the exact value, so without the set it is
/// `tcp flags == syn` (nft 1.0.9 and later); a bare `tcp flags syn` would test for any of
/// the flags. `ct state` holds one state at a time, so there the bare value stays.
#[test]
fn flag_set_of_one_element_is_an_exact_compare() {
    assert_eq!(
        list("table inet t { chain c { tcp flags { syn } accept; tcp flags != { syn } accept; tcp flags & (syn | ack) == { syn } accept; ct state { new } accept; } }"),
        "table inet t {\n\tchain c {\n\t\ttcp flags == syn accept\n\t\ttcp flags != syn accept\n\t\ttcp flags & (syn | ack) == syn accept\n\t\tct state new accept\n\t}\n}\n"
    );
}

/// The JSON listing drops the set too. Expected: `nft -j list ruleset` (nft 1.0.6), the
/// first statement of each rule.
#[test]
fn anonymous_set_of_one_element_in_json() {
    let rs = load_str(
        "t.nft",
        "table ip t {
	chain c {
		tcp dport { 22 } accept
		tcp dport != { 1-5 } accept
		ct state { established } accept
		ip saddr . tcp dport { 198.18.0.1 . 22 } accept
	}
}
",
        &LoadOpts::default(),
    )
    .unwrap_or_else(|e| panic!("load failed: {e}"));
    let json = nft_lang::json::ruleset_to_json(&rs, &ListOpts::default());
    let first: Vec<String> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| Some(o.get("rule")?["expr"][0].to_string()))
        .collect();
    let nft = [
        r#"{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":22}}"#,
        r#"{"match":{"op":"!=","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":{"range":[1,5]}}}"#,
        r#"{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"established"}}"#,
        r#"{"match":{"op":"==","left":{"concat":[{"payload":{"protocol":"ip","field":"saddr"}},{"payload":{"protocol":"tcp","field":"dport"}}]},"right":{"set":[{"concat":["198.18.0.1",22]}]}}}"#,
    ];
    assert_eq!(first, nft);
}

/// On a header's flag field a compared value of several flags, and the ends of a range, list
/// as numbers with their operator, so the listing reads back as the same compare.
/// Expected: `nft list ruleset` after `nft -f` of the same input (nft 1.0.6).
#[test]
fn several_flags_of_a_header_field_list_as_a_number() {
    assert_eq!(
        list("table inet t { chain c { tcp flags == syn | ack; tcp flags != syn | ack; tcp flags { syn | ack }; tcp flags 0x02-0x12; tcp flags syn | ack; } }"),
        "table inet t {\n\tchain c {\n\t\ttcp flags == 0x12\n\t\ttcp flags != 0x12\n\t\ttcp flags == 0x12\n\t\ttcp flags 0x2-0x12\n\t\ttcp flags syn,ack\n\t}\n}\n"
    );
}

/// nft lists the end of a flag range as a union of flags (`0x2-0x2 | 0x10` is `0x2-0x12`), and
/// reads `|` as binding tighter than the range's `-`, though `0x2-0x2` has no blank in it.
#[test]
fn flag_ranges_listed_as_unions_read_back() {
    let set =
        "table inet t {\n\tchain c {\n\t\ttcp flags { 0x2-0x2 | 0x10, 0x20-0x1 | 0x20 }\n\t}\n}\n";
    assert_eq!(
        list("table inet t { chain c { tcp flags { 0x02-0x12, 0x20-0x21 } } }"),
        set
    );
    round_trip(set);
    round_trip("table inet t {\n\tchain c {\n\t\ttcp flags & (syn | ack) == { 0x2 | 0x10-0x1 | 0x2 | 0x10, 0x20-0x1 | 0x20 }\n\t}\n}\n");
    // one element: the set folds to its range, as nft 1.0.6 lists it
    let one = |rhs: &str| {
        list(&format!("table ip t {{ chain c {{ tcp flags {rhs} }} }}"))
            .lines()
            .nth(2)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    assert_eq!(one("{ 0x2-0x2 | 0x10 }"), "tcp flags 0x2-0x12");
    assert_eq!(one("{ 0x2 - 0x2 | 0x10 }"), "tcp flags 0x2-0x12");
    assert_eq!(one("0x2 | 0x10-0x12"), "tcp flags 0x12-0x12");
    assert_eq!(
        one("{ 0x2 | 0x10-0x1 | 0x2 | 0x10 }"),
        "tcp flags 0x12-0x13"
    );
    // a range on its own is one word, as before
    assert_eq!(one("0x2-0x12"), "tcp flags 0x2-0x12");
}
