//! Nothing in the input may make the loader panic or hang: arbitrary bytes, and token soups
//! made of nft's own vocabulary (which get much further into the parser and evaluator).

use nft_lang::print::{self, ListOpts};
use nft_lang::ruleset::{load_str, LoadOpts};
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "table",
    "inet",
    "ip",
    "ip6",
    "netdev",
    "bridge",
    "arp",
    "t",
    "chain",
    "c",
    "set",
    "map",
    "s",
    "m",
    "flowtable",
    "ft",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    "\n",
    ",",
    ":",
    ".",
    "/",
    "-",
    "==",
    "!=",
    "<",
    ">",
    "&",
    "|",
    "^",
    "<<",
    ">>",
    "type",
    "filter",
    "nat",
    "route",
    "hook",
    "input",
    "forward",
    "prerouting",
    "postrouting",
    "ingress",
    "priority",
    "0",
    "-150",
    "srcnat",
    "+",
    "10",
    "policy",
    "drop",
    "accept",
    "jump",
    "goto",
    "return",
    "continue",
    "counter",
    "packets",
    "bytes",
    "limit",
    "rate",
    "400/minute",
    "burst",
    "quota",
    "over",
    "25",
    "mbytes",
    "log",
    "prefix",
    "\"x\"",
    "level",
    "reject",
    "with",
    "tcp",
    "reset",
    "icmp",
    "icmpx",
    "port-unreachable",
    "snat",
    "dnat",
    "to",
    "masquerade",
    "redirect",
    "1.2.3.4",
    "10.0.0.0/8",
    "::1",
    "fe80::/10",
    "00:11:22:33:44:55",
    "1.2.3.4:80",
    "tcp",
    "udp",
    "dport",
    "sport",
    "saddr",
    "daddr",
    "flags",
    "syn",
    "ack",
    "fin",
    "meta",
    "mark",
    "l4proto",
    "nfproto",
    "iifname",
    "oifname",
    "ct",
    "state",
    "established",
    "related",
    "new",
    "invalid",
    "status",
    "vmap",
    "@s",
    "@ft",
    "@nh,0,8",
    "flow",
    "add",
    "offload",
    "elements",
    "=",
    "interval",
    "timeout",
    "1h",
    "typeof",
    "ipv4_addr",
    "inet_service",
    "ether_addr",
    "define",
    "$v",
    "v",
    "include",
    "\"*.nft\"",
    "comment",
    "devices",
    "device",
    "\"lo\"",
    "fib",
    "oif",
    "rt",
    "mtu",
    "option",
    "maxseg",
    "size",
    "numgen",
    "inc",
    "mod",
    "2",
    "jhash",
    "symhash",
    "@th,16,16",
    "0x10",
    "ssh",
    "http",
    "insert",
    "rule",
    "delete",
    "flush",
    "ruleset",
    "element",
    "update",
    "*",
    "and",
    "or",
    "xor",
    "queue",
    "num",
    "notrack",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..80).prop_map(|v| v.join(" "))
}

fn exercise(text: &str) {
    if let Ok(rs) = load_str("fuzz.nft", text, &LoadOpts::default()) {
        let _ = print::ruleset(&rs, &ListOpts::default());
        let _ = nft_lang::json::ruleset_to_json(&rs, &ListOpts::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        exercise(&s);
    }

    #[test]
    fn vocabulary_soup_never_panics(s in soup()) {
        exercise(&s);
    }

    #[test]
    fn soup_inside_a_rule_never_panics(s in soup()) {
        exercise(&format!("table inet t {{\n\tset s {{ type ipv4_addr; }}\n\tflowtable ft {{ hook ingress priority 0; devices = {{ \"lo\" }}; }}\n\tchain c {{\n\t\t{s}\n\t}}\n}}\n"));
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let text = format!(
        "table ip t {{ chain c {{ meta mark {}1{} }} }}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    assert!(load_str("deep.nft", &text, &LoadOpts::default()).is_err());
    let text = format!(
        "table ip t {{ chain c {{ ip saddr {}1.1.1.1{} }} }}",
        "{ ".repeat(5000),
        " }".repeat(5000)
    );
    assert!(load_str("deep.nft", &text, &LoadOpts::default()).is_err());
}

#[test]
fn self_referencing_define_is_an_error() {
    let text = "define a = $b\ndefine b = $a\ntable ip t { chain c { ip saddr $a } }\n";
    assert!(load_str("loop.nft", text, &LoadOpts::default()).is_err());
}

/// A priority offset past any integer nft keeps: taken as nft 1.0.6 takes it (it loads, the
/// offset cut to 32 bits), never an overflow. `- 2^63` once overflowed negating it.
#[test]
fn a_priority_offset_out_of_range_does_not_overflow() {
    for off in [
        "- 9223372036854775808",
        "+ 18446744073709551615",
        "- 18446744073709551615",
        "+ 4294967296",
    ] {
        let text = format!(
            "table inet t {{\n chain c {{\n  type filter hook input priority filter {off};\n }}\n}}\n"
        );
        exercise(&text);
        assert!(
            load_str("f.nft", &text, &LoadOpts::default()).is_ok(),
            "priority filter {off}"
        );
    }
}

/// A standard priority's value plus an offset that leaves 32 bits wraps as in nft 1.0.6, whose
/// listings are quoted here.
#[test]
fn a_priority_past_32_bits_wraps_as_nft_lists_it() {
    for (off, listed) in [
        ("raw - 2147483648", "priority 2147483348;"),
        ("mangle + 2147483647", "priority 2147483497;"),
        ("security + 2147483647", "priority -2147483599;"),
        ("filter + 4294967296", "priority filter;"),
    ] {
        let text = format!(
            "table inet t {{\n chain c {{\n  type filter hook input priority {off};\n }}\n}}\n"
        );
        let rs = load_str("f.nft", &text, &LoadOpts::default())
            .unwrap_or_else(|e| panic!("priority {off}: {e}"));
        let out = print::ruleset(&rs, &ListOpts::default());
        assert!(out.contains(listed), "priority {off}:\n{out}");
    }
    // and in JSON, as `nft -j list ruleset` gives it
    let text =
        "table inet t {\n chain c {\n  type filter hook input priority raw - 2147483648;\n }\n}\n";
    let rs = load_str("f.nft", text, &LoadOpts::default()).unwrap();
    let json = nft_lang::json::ruleset_to_json(&rs, &ListOpts::default()).to_string();
    assert!(json.contains("\"prio\":2147483348"), "{json}");
}
