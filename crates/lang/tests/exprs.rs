//! Matches and their listing: one rule loaded into a fresh table, listed back as
//! `nft -s -p list ruleset` prints it.

use nft_lang::print::{self, ListOpts};
use nft_lang::ruleset::{load_str, LoadOpts};

/// Loads `rule` into a base chain of a `family` table and returns its listing, or the error.
fn list(family: &str, rule: &str) -> Result<String, String> {
    let chain = match family {
        "netdev" => "type filter hook ingress device lo priority 0;",
        _ => "type filter hook input priority 0;",
    };
    let text = format!("add table {family} t\nadd chain {family} t c {{ {chain} }}\nadd rule {family} t c {rule}\n");
    let rs = load_str("test.nft", &text, &LoadOpts::default()).map_err(|e| e.to_string())?;
    let mut o = ListOpts { stateless: true, ..Default::default() };
    o.dt.numeric_proto = true;
    let out = print::ruleset(&rs, &o);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let start = lines.iter().position(|l| l.starts_with("type ")).ok_or("no chain")?;
    Ok(lines[start + 1..].iter().take_while(|l| **l != "}").copied().collect::<Vec<_>>().join(" "))
}

fn same(family: &str, rule: &str) {
    assert_eq!(list(family, rule).as_deref(), Ok(rule), "{family}: {rule}");
}

fn lists_as(family: &str, rule: &str, want: &str) {
    assert_eq!(list(family, rule).as_deref(), Ok(want), "{family}: {rule}");
}

fn rejected(family: &str, rule: &str) {
    assert!(list(family, rule).is_err(), "{family}: {rule} should be rejected, got {:?}", list(family, rule));
}

#[test]
fn inner_headers() {
    same("inet", "udp dport 4789 vxlan ip saddr . vxlan ip daddr { 1.2.3.4 . 4.3.2.1 }");
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
    lists_as("ip", "meta priority { bcad:dada, bcad:dadc, aaaa:bbbb }", "meta priority { aaaa:bbbb, bcad:dada, bcad:dadc }");
    same("ip", "meta priority set cafe:beef");
    // a colon followed by a word is still a mapping
    same("ip", "tcp dport vmap { 25 : accept, 28 : drop }");
    lists_as("ip", "tcp dport vmap { 25:accept, 28:drop }", "tcp dport vmap { 25 : accept, 28 : drop }");
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
    lists_as("ip", "ct mark set ip dscp & 0x0f << 2", "ct mark set ip dscp & 0x3c");
    lists_as("ip", "ct mark set ct mark | ip dscp | 0x200", "ct mark set ct mark | ip dscp | 0x00000200");
    same("ip", "meta mark set ct mark & 0xffff0000 | meta mark & 0x0000ffff");
    same("ip", "ct mark set jhash ip saddr . ip daddr mod 2 seed 0x0");
    same("ip", "ct mark set jhash ip saddr . ip daddr mod 2");
}

#[test]
fn flag_tests() {
    lists_as("ip", "tcp flags fin,syn / fin,syn", "tcp flags & (fin | syn) == fin | syn");
    lists_as("ip", "tcp flags & syn != 0", "tcp flags syn");
    lists_as("ip", "tcp flags & syn == 0", "tcp flags ! syn");
    lists_as("ip", "tcp flags & (syn | ack) != 0", "tcp flags syn,ack");
    lists_as("ip", "tcp flags & (fin | syn | rst | ack) syn", "tcp flags & (fin | syn | rst | ack) == syn");
    lists_as("ip", "tcp flags & (fin | syn | rst | psh | ack | urg | ecn | cwr) == fin | syn | rst | psh | ack | urg | ecn | cwr", "tcp flags == 0xff");
    same("ip", "tcp flags { syn, syn | ack }");
    same("ip", "tcp flags ! fin,rst");
    same("ip", "ct status ! dnat");
    same("ip", "ct state != established | related | new");
    lists_as("ip", "ct state 8", "ct state new");
    same("ip", "tcp flags == syn");
    lists_as("ip", "ct event set new | related | destroy | label", "ct event set new,related,destroy,label");
    same("ip", "ct event set new,destroy");
    rejected("ip", "tcp flags & (fin | syn | rst | ack) ! syn");
    rejected("ip", "ct mark set {0x11333, 0x11}");
}
