//! What nft refuses before it reaches the kernel, with its error's place and words: `nft -c -f`
//! (nft 1.0.6) printed each expected first line here.

use nft_lang::ruleset::{load_str, LoadOpts};

/// The first line of the error `text` gives, or `None` when it loads.
fn first_error(text: &str) -> Option<String> {
    match load_str("f.nft", text, &LoadOpts::default()) {
        Ok(_) => None,
        Err(e) => Some(e.to_string().lines().next().unwrap_or("").to_string()),
    }
}

/// A table of `family` with one base chain holding `stmt` on line 4.
fn with_stmt(family: &str, stmt: &str) -> String {
    let hook = match family {
        "netdev" => "type filter hook ingress device lo priority 0;",
        _ => "type filter hook prerouting priority 0;",
    };
    format!("table {family} t {{\nchain c {{\n{hook}\n{stmt}\n}}\n}}\n")
}

fn chain_named(name: &str) -> String {
    format!("table inet t {{\nchain {name} {{\n}}\n}}\n")
}

#[test]
fn keyword_chain_names_are_refused() {
    assert_eq!(
        first_error(&chain_named("fwd")).as_deref(),
        Some("f.nft:2:7-9: Error: syntax error, unexpected fwd, expecting string")
    );
    assert_eq!(
        first_error(&chain_named("dup")).as_deref(),
        Some("f.nft:2:7-9: Error: syntax error, unexpected dup, expecting string")
    );
    for kw in [
        "counter", "ip", "tcp", "meta", "jump", "synproxy", "vlan", "set",
    ] {
        let e = first_error(&chain_named(kw)).unwrap_or_default();
        assert!(
            e.ends_with(&format!("unexpected {kw}, expecting string")),
            "chain {kw}: {e:?}"
        );
    }
    // the same in a command
    assert_eq!(
        first_error("add table ip t\nadd chain ip t fwd\n").as_deref(),
        Some("f.nft:2:16-18: Error: syntax error, unexpected fwd, expecting string")
    );
}

/// nft takes a chain name as a bare word only: 1.0.6 refuses a quoted one wherever a chain is
/// named, and 1.1.x does too (its grammar's `identifier` is still `STRING | LAST`), so there
/// is no newer listing to stay compatible with.
#[test]
fn quoted_chain_names_are_refused() {
    assert_eq!(
        first_error("table ip t {\n\tchain \"foo\" {\n\t}\n}\n").as_deref(),
        Some("f.nft:2:8-12: Error: syntax error, unexpected quoted string, expecting string")
    );
    assert_eq!(
        first_error("add table ip t\nadd chain ip t \"foo\"\n").as_deref(),
        Some("f.nft:2:16-20: Error: syntax error, unexpected quoted string, expecting string")
    );
    assert_eq!(
        first_error("add table ip t\nadd chain ip t foo\nflush chain ip t \"foo\"\n").as_deref(),
        Some("f.nft:3:18-22: Error: syntax error, unexpected quoted string, expecting string")
    );
    assert_eq!(
        first_error("add table ip t\nadd chain ip t foo\nrename chain ip t foo \"bar\"\n")
            .as_deref(),
        Some("f.nft:3:23-27: Error: syntax error, unexpected quoted string, expecting string")
    );
    assert_eq!(
        first_error("add table ip t\nadd chain ip t foo\nadd rule ip t \"foo\" accept\n")
            .as_deref(),
        Some("f.nft:3:15-19: Error: syntax error, unexpected quoted string, expecting string")
    );
    // after `jump`/`goto` nft expects an anonymous chain's brace
    let jump = |v: &str| {
        format!("table ip t {{\n\tchain foo {{\n\t}}\n\tchain bar {{\n\t\t{v}\n\t}}\n}}\n")
    };
    assert_eq!(
        first_error(&jump("goto \"foo\"")).as_deref(),
        Some("f.nft:5:8-12: Error: syntax error, unexpected quoted string, expecting '{'")
    );
    assert_eq!(
        first_error(&jump("jump counter")).as_deref(),
        Some("f.nft:5:8-14: Error: syntax error, unexpected counter, expecting '{'")
    );
    assert_eq!(
        first_error(
            "add table ip t\nadd chain ip t foo\nadd rule ip t foo ip saddr 1.1.1.1 jump \"foo\"\n"
        )
        .as_deref(),
        Some("f.nft:3:41-45: Error: syntax error, unexpected quoted string, expecting '{'")
    );
    assert_eq!(
        first_error(&jump("ip daddr vmap { 1.1.1.1 : jump \"foo\" }")).as_deref(),
        Some(
            "f.nft:5:34-38: Error: syntax error, unexpected quoted string, expecting string or '$'"
        )
    );
    // the same names bare load
    assert_eq!(first_error(&jump("goto foo")), None);
    assert_eq!(
        first_error(&jump("ip daddr vmap { 1.1.1.1 : jump foo }")),
        None
    );
}

#[test]
fn ordinary_chain_names_load() {
    // words nft does not reserve, though some name hooks or chain types
    for name in [
        "input",
        "forward",
        "output",
        "prerouting",
        "filter",
        "nat",
        "raw",
        "mangle",
        "srcnat",
        "dstnat",
        "route",
        "fwdx",
        "dupe",
        "saddr",
        "state",
    ] {
        assert_eq!(first_error(&chain_named(name)), None, "chain {name}");
    }
}

#[test]
fn dup_and_fwd_need_their_family() {
    // dup only in ip, ip6 and netdev; the error covers the whole statement, as nft's
    assert_eq!(
        first_error(&with_stmt("inet", "dup to 198.18.0.1 device \"lo\"")).as_deref(),
        Some("f.nft:4:1-29: Error: unsupported family")
    );
    assert_eq!(
        first_error(&with_stmt("inet", "dup to 2001:db8::1")).as_deref(),
        Some("f.nft:4:1-18: Error: unsupported family")
    );
    assert_eq!(
        first_error(&with_stmt(
            "inet",
            "ip daddr 198.18.0.9 dup to 198.18.0.1 device \"lo\""
        ))
        .as_deref(),
        Some("f.nft:4:21-49: Error: unsupported family")
    );
    assert_eq!(
        first_error(&with_stmt("netdev", "dup to 198.18.0.1 device \"lo\"")).as_deref(),
        Some("f.nft:4:1-29: Error: cannot specify device")
    );
    assert_eq!(
        first_error(&with_stmt("inet", "fwd to \"lo\"")).as_deref(),
        Some("f.nft:4:1-11: Error: unsupported family")
    );
    assert_eq!(
        first_error(&with_stmt("inet", "fwd ip to 198.18.0.1 device \"lo\"")).as_deref(),
        Some("f.nft:4:1-32: Error: unsupported family")
    );
    // accepted where nft accepts them
    assert_eq!(
        first_error(&with_stmt("ip", "dup to 198.18.0.1 device \"lo\"")),
        None
    );
    assert_eq!(first_error(&with_stmt("ip6", "dup to 2001:db8::1")), None);
    assert_eq!(
        first_error(&with_stmt(
            "ip",
            "ip daddr 198.18.0.9 dup to 198.18.0.1 device \"lo\""
        )),
        None
    );
}

/// A rule's comment comes last: a statement after it is a syntax error, in a block and in a
/// command.
#[test]
fn a_statement_after_a_rule_comment_is_refused() {
    assert_eq!(
        first_error(&with_stmt("inet", "meta mark 1 comment \"x\" tcp dport 22")).as_deref(),
        Some("f.nft:4:25-27: Error: syntax error, unexpected tcp, expecting newline or semicolon")
    );
    assert_eq!(
        first_error(&with_stmt("inet", "tcp dport 22 comment \"x\" comment \"y\"")).as_deref(),
        Some("f.nft:4:26-32: Error: syntax error, unexpected comment, expecting newline or semicolon")
    );
    assert_eq!(
        first_error("add table inet t\nadd chain inet t c\nadd rule inet t c meta mark 1 comment \"x\" tcp dport 22\n").as_deref(),
        Some("f.nft:3:43-45: Error: syntax error, unexpected tcp, expecting end of file or newline or semicolon")
    );
    assert_eq!(
        first_error(&with_stmt("inet", "tcp dport 22 comment \"x\"")),
        None
    );
    assert_eq!(
        first_error("table inet t { chain c { tcp dport 22 comment \"x\"; } }"),
        None
    );
}

/// nft's grammar has no set among a concatenation's values, in a set or on its own.
#[test]
fn a_set_inside_a_concatenation_is_refused() {
    assert_eq!(
        first_error(&with_stmt(
            "ip",
            "ip saddr . tcp dport { 198.18.0.1 . { 22 } }"
        ))
        .as_deref(),
        Some("f.nft:4:37-37: Error: syntax error, unexpected '{'")
    );
    assert_eq!(
        first_error(&with_stmt("ip", "ip saddr . tcp dport 198.18.0.1 . { 22 }")).as_deref(),
        Some("f.nft:4:35-35: Error: syntax error, unexpected '{'")
    );
    assert_eq!(
        first_error(&with_stmt("ip", "ip saddr . tcp dport { 198.18.0.1 . @s }")).as_deref(),
        Some("f.nft:4:37-37: Error: syntax error, unexpected @")
    );
    assert_eq!(
        first_error(&with_stmt("ip", "ip saddr . tcp dport { 198.18.0.1 . 22 }")),
        None
    );
    // nor a set joined to anything: a set in a set is a member by itself
    assert_eq!(
        first_error(&with_stmt(
            "ip",
            "ip saddr . tcp dport { { 198.18.0.1 } . 22 }"
        ))
        .as_deref(),
        Some("f.nft:4:39-39: Error: syntax error, unexpected ., expecting comma or '}'")
    );
    assert_eq!(
        first_error(&with_stmt("ip", "ip saddr { { 198.18.0.1 } : accept }")).as_deref(),
        Some("f.nft:4:27-27: Error: syntax error, unexpected colon, expecting comma or '}'")
    );
    // nft's names for the tokens
    assert_eq!(
        first_error(&with_stmt("ip", "ip saddr { 198.18.0.1 ; }")).as_deref(),
        Some("f.nft:4:23-23: Error: syntax error, unexpected semicolon, expecting comma or '}'")
    );
    // and a set in a set still merges
    assert_eq!(
        first_error(&with_stmt(
            "ip",
            "ip saddr { { 198.18.0.1, 198.18.0.2 }, 198.18.0.3 }"
        )),
        None
    );
}
