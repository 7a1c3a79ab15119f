//! What the rule tests share: one rule loaded into a fresh table and listed back.

use nft_lang::print::{self, ListOpts};
use nft_lang::ruleset::{load_str, LoadOpts};

/// Loads `rule` into a base chain of a `family` table and returns its listing with `opts`
/// (stateless), the chain's lines joined by spaces, or the load error.
pub fn rule_listing(family: &str, rule: &str, opts: ListOpts) -> Result<String, String> {
    let chain = match family {
        "netdev" => "type filter hook ingress device lo priority 0;",
        _ => "type filter hook input priority 0;",
    };
    let text = format!("add table {family} t\nadd chain {family} t c {{ {chain} }}\nadd rule {family} t c {rule}\n");
    let rs = load_str("test.nft", &text, &LoadOpts::default()).map_err(|e| e.to_string())?;
    let o = ListOpts {
        stateless: true,
        ..opts
    };
    let out = print::ruleset(&rs, &o);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("type "))
        .ok_or("no chain")?;
    Ok(lines[start + 1..]
        .iter()
        .take_while(|l| **l != "}")
        .copied()
        .collect::<Vec<_>>()
        .join(" "))
}
