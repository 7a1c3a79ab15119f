//! Load (parse + evaluate) and list: the largest firewall4 ruleset of the public corpus (or the
//! bundled example when the corpus is absent), and a generated 10,000-rule ruleset.

use std::fmt::Write;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use nft_lang::print::{self, ListOpts};
use nft_lang::ruleset::{load_str, LoadOpts};

/// The largest fw4 ruleset in ../shared/corpus/firewall4, without its include lines.
fn largest_fw4() -> (String, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/firewall4");
    let mut best: Option<(u64, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if e.path().extension().is_some_and(|x| x == "nft")
                && best.as_ref().is_none_or(|(l, _)| len > *l)
            {
                best = Some((len, e.path()));
            }
        }
    }
    match best {
        Some((_, p)) => {
            let text = std::fs::read_to_string(&p).unwrap();
            let text: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("include "))
                .map(|l| format!("{l}\n"))
                .collect();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        }
        None => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/fw4-home.nft");
            ("fw4-home.nft".into(), std::fs::read_to_string(p).unwrap())
        }
    }
}

/// `n` rules of the kinds router rulesets use, over 100 chains.
pub fn generated(n: usize) -> String {
    let mut s =
        String::from("table inet gen {\n\tset allowed {\n\t\ttype ipv4_addr . inet_service\n\t}\n");
    let chains = 100;
    for c in 0..chains {
        let _ = writeln!(s, "\tchain c{c} {{");
        for r in 0..n / chains {
            let i = c * (n / chains) + r;
            let _ = match i % 5 {
                0 => writeln!(s, "\t\tip saddr 10.{}.{}.0/24 tcp dport {} counter accept", (i >> 8) & 255, i & 255, 1024 + i % 50000),
                1 => writeln!(s, "\t\tiifname \"eth{}\" ct state established,related accept", i % 8),
                2 => writeln!(s, "\t\tip6 daddr 2001:db8:{:x}::/48 udp dport {{ 53, 123, {} }} drop", i, 2000 + i % 1000),
                3 => writeln!(s, "\t\tmeta mark 0x{:x} limit rate {}/second burst 10 packets accept comment \"rule {i}\"", i, 1 + i % 100),
                _ => writeln!(s, "\t\tip saddr . tcp dport @allowed meta l4proto tcp counter accept"),
            };
        }
        s.push_str("\t}\n");
    }
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n");
    for c in 0..chains {
        let _ = writeln!(s, "\t\tmeta mark {c} jump c{c}");
    }
    s.push_str("\t}\n}\n");
    s
}

fn bench(c: &mut Criterion) {
    let (name, fw4) = largest_fw4();
    let gen = generated(10_000);
    let o = ListOpts::default();
    c.bench_function(&format!("load+print {name}"), |b| {
        b.iter(|| {
            let rs = load_str("fw4.nft", black_box(&fw4), &LoadOpts::default()).expect("fw4 loads");
            black_box(print::ruleset(&rs, &o))
        })
    });
    let mut g = c.benchmark_group("generated");
    g.sample_size(20);
    g.bench_function("load+print 10000 rules", |b| {
        b.iter(|| {
            let rs = load_str("gen.nft", black_box(&gen), &LoadOpts::default())
                .expect("generated ruleset loads");
            black_box(print::ruleset(&rs, &o))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
