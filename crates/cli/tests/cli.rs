//! The CLI contract: `check` exits 0/1, `print` lists, errors come as nft prints them.

use std::io::Write;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nft-offload"))
}

fn tmpfile(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nft-offload-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

/// Asserts that the command exited 0, showing its stderr if not; its stdout.
fn succeeded(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts that the command exited 0; its stdout as JSON.
fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&succeeded(out)).unwrap()
}

/// Asserts that the command exited 1 with `needle` in its stderr.
fn fails_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn check_accepts_and_rejects() {
    let ok = tmpfile(
        "ok.nft",
        "table inet t {\n\tchain c {\n\t\ttcp dport ssh accept\n\t}\n}\n",
    );
    let st = bin().arg("check").arg(&ok).status().unwrap();
    assert_eq!(st.code(), Some(0));

    let bad = tmpfile(
        "bad.nft",
        "table inet t {\n\tchain c {\n\t\ttcp dport sshhhh accept\n\t}\n}\n",
    );
    let out = bin().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("{}:3:13-18: Error: ", bad.display())),
        "{err}"
    );
    assert_eq!(err.lines().nth(1), Some("\t\ttcp dport sshhhh accept"));
    assert_eq!(err.lines().nth(2), Some("\t\t          ^^^^^^"));
}

/// `run`'s options with a fixed set of values are checked by clap before anything else (no
/// root needed, no ruleset read): a bad value exits 2 with clap's message listing the values.
#[test]
fn run_refuses_a_bad_value_and_lists_the_good_ones() {
    for (opt, bad, values) in [
        ("--rx-ring", "v4", "[possible values: v2, v3]"),
        ("--io", "dpdk", "[possible values: af_packet, af_xdp]"),
        (
            "--napi",
            "softirq",
            "[possible values: auto, threads, kernel]",
        ),
        (
            "--xdp-mode",
            "hw",
            "[possible values: auto, native, generic]",
        ),
    ] {
        let out = bin()
            .args(["run", "-f", "/nonexistent.nft", "--interfaces", "lan=eth0"])
            .args([opt, bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{opt} {bad}: {err}");
        let value_name = opt[2..].replace('-', "_").to_uppercase();
        let first = format!("error: invalid value '{bad}' for '{opt} <{value_name}>'");
        assert_eq!(err.lines().next(), Some(first.as_str()), "{err}");
        assert_eq!(err.lines().nth(1).map(str::trim), Some(values), "{err}");
    }
}

#[test]
fn print_lists_like_nft() {
    let f = tmpfile(
        "p.nft",
        "add table ip filter\nadd chain ip filter input { type filter hook input priority 0; policy drop; }\nadd rule ip filter input meta l4proto tcp tcp dport { 22, 80 } counter accept\n",
    );
    let out = bin().arg("print").arg(&f).output().unwrap();
    assert_eq!(
        succeeded(&out),
        "table ip filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport { 22, 80 } counter packets 0 bytes 0 accept\n\t}\n}\n"
    );
    let out = bin().args(["print", "-s", "-p"]).arg(&f).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\t\ttcp dport { 22, 80 } counter accept\n")
    );
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = bin()
        .args(["check", "/nonexistent/x.nft"])
        .output()
        .unwrap();
    fails_with(&out, "No such file");
}

#[test]
fn example_ruleset_is_a_fixed_point() {
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fw4-home.nft");
    let once = succeeded(&bin().arg("print").arg(&ex).output().unwrap());
    let f = tmpfile("once.nft", &once);
    let twice = bin().arg("print").arg(&f).output().unwrap();
    assert_eq!(once, String::from_utf8_lossy(&twice.stdout));
    assert!(once.contains("flow add @ft"));
}

#[test]
fn gen_is_seeded_and_parses() {
    let dir = std::env::temp_dir().join(format!("nft-offload-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |seed: &str, name: &str| {
        let p = dir.join(name);
        let out = bin()
            .args(["gen", "--flows", "50", "--seed", seed, "-o"])
            .arg(&p)
            .output()
            .unwrap();
        succeeded(&out);
        std::fs::read(&p).unwrap()
    };
    let a = run("7", "a.pcapng");
    let b = run("7", "b.pcapng");
    let c = run("8", "c.pcapng");
    assert_eq!(a, b, "same seed, same capture");
    assert_ne!(a, c, "another seed, another capture");
    // every frame reads back, on the topology's interfaces
    let frames = nft_io::read_capture(dir.join("a.pcapng"), "x").unwrap();
    assert!(frames.len() > 50);
    assert!(
        frames
            .iter()
            .all(|f| f.iface == "br-lan" || f.iface == "wan"),
        "interfaces"
    );
    let bad = frames
        .iter()
        .filter(|f| nft_wire::parse_frame(&f.data).is_err())
        .count();
    assert!(
        bad > 0 && bad < frames.len() / 4,
        "{bad} malformed of {}",
        frames.len()
    );
}

#[test]
fn gen_rejects_a_bad_topology() {
    let t = tmpfile("bad.toml", "[[interface]]\nname = \"x\"\nmac = \"nope\"\n");
    let out = bin()
        .args(["gen", "-o", "/dev/null", "--topology"])
        .arg(&t)
        .output()
        .unwrap();
    fails_with(&out, "bad MAC address");
}

#[test]
fn error_explanations_follow_the_caret_line() {
    let f = tmpfile(
        "jump.nft",
        "table inet t {\n\tchain c {\n\t\tjump nowhere\n\t}\n}\n",
    );
    let out = bin().arg("check").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{}:3:3-14: Error: Could not process rule: No such file or directory",
            f.display()
        )
    );
    assert_eq!(lines[1], "\t\tjump nowhere");
    assert_eq!(lines[2], "\t\t^^^^^^^^^^^^");
    assert_eq!(lines[3], "chain 'nowhere' does not exist");
}

#[test]
fn a_bad_file_changes_nothing_and_names_the_include() {
    let dir = std::env::temp_dir().join(format!("nft-offload-inc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(
        dir.join("conf.d/a.nft"),
        "add rule inet t c tcp dport 22 accept\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("conf.d/b.nft"),
        "add rule inet t c tcp dport nosuchport accept\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("main.nft"),
        "table inet t { chain c { } }\ninclude \"conf.d/*.nft\"\ninclude \"none/*.nft\"\n",
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg(dir.join("main.nft"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}:1:29-38: Error: ",
            dir.join("conf.d/b.nft").display()
        )),
        "{err}"
    );
    std::fs::write(
        dir.join("conf.d/b.nft"),
        "add rule inet t c udp dport 53 accept\n",
    )
    .unwrap();
    let out = bin()
        .arg("print")
        .arg(dir.join("main.nft"))
        .output()
        .unwrap();
    assert_eq!(
        succeeded(&out),
        "table inet t {\n\tchain c {\n\t\ttcp dport 22 accept\n\t\tudp dport 53 accept\n\t}\n}\n"
    );
}

#[test]
fn simulate_default_reports_and_writes_a_capture() {
    let dir = std::env::temp_dir().join(format!("nft-offload-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = || {
        let out = bin()
            .args(["simulate", "--json", "--flows", "120", "--seed", "3", "-o"])
            .arg(dir.join("out.pcapng"))
            .output()
            .unwrap();
        json(&out)
    };
    let r = run();
    assert_eq!(r, run(), "a simulation is a pure function of its inputs");
    let pin = r["packets_in"].as_u64().unwrap();
    let pout = r["packets_out"].as_u64().unwrap();
    let drops: u64 = r["drops"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(pin > 500 && pout > 0, "{r}");
    // every packet is forwarded, delivered or dropped under a named reason
    assert!(drops > 0 && drops < pin / 5, "{r}");
    // the default ruleset offloads established connections into its flowtable
    assert!(r["fast_path_packets"].as_u64().unwrap() > 0, "{r}");
    assert!(r["flows_offloaded"].as_u64().unwrap() > 0, "{r}");
    assert!(r["slow_path_packets"].as_u64().unwrap() > 0);
    assert!(
        r["nat_bindings"].as_u64().unwrap() > 0,
        "masquerade bound connections: {r}"
    );
    let frames = nft_io::read_capture(dir.join("out.pcapng"), "x").unwrap();
    assert_eq!(
        frames.len() as u64,
        pout + r["host_packets"].as_u64().unwrap_or(0)
    );
    assert!(frames
        .iter()
        .all(|f| f.iface == "br-lan" || f.iface == "wan" || f.iface == "host"));
    // forwarded packets leave with valid checksums and a decremented TTL
    for f in frames.iter().filter(|f| f.iface == "wan").take(50) {
        let m = nft_wire::parse_frame(&f.data).expect("output frames parse");
        assert_eq!(m.ttl, 63, "the generator sends with TTL 64");
    }
}

#[test]
fn simulate_text_report_and_errors() {
    let out = bin().args(["simulate", "--flows", "40"]).output().unwrap();
    let text = succeeded(&out);
    for want in [
        "packets:",
        "interfaces:",
        "drops:",
        "NAT:",
        "connections:",
        "top rules by hits:",
        "flow add @ft",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = bin()
        .args(["simulate", "--pcap", "/nonexistent.pcapng"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let bad = tmpfile(
        "bad-rules.nft",
        "table ip t { chain c { tcp dport nope accept } }\n",
    );
    let out = bin().args(["simulate", "-f"]).arg(&bad).output().unwrap();
    fails_with(&out, "Error: ");
}

#[test]
fn bench_json_has_the_contract_keys() {
    let out = bin()
        .args(["bench", "--json", "--packets", "2000"])
        .output()
        .unwrap();
    let v = json(&out);
    assert!(v["slow_path_pps"].as_f64().unwrap() > 0.0);
    assert!(v["new_connections_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(
        v["first_pass_forwarded"].as_u64(),
        Some(2000),
        "every first packet is forwarded: {v}"
    );
    for k in ["10", "1000", "10000"] {
        assert!(
            v["fast_path_pps_by_rules"][k].as_f64().unwrap() > 0.0,
            "{v}"
        );
    }
    let b = v["bytes_per_offloaded_connection"].as_u64().unwrap();
    assert!(b > 100 && b < 4096, "{v}");
}

/// Issue 4, the proof at the CLI: the output capture and the final `conntrack -L` with and
/// without `--no-offload` are the same (expiry times and `[OFFLOAD]` aside).
#[test]
fn simulate_no_offload_gives_the_same_capture_and_conntrack() {
    let dir = std::env::temp_dir().join(format!("nft-offload-transp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |extra: &[&str], name: &str| {
        let path = dir.join(name);
        let out = bin()
            .args([
                "simulate",
                "--flows",
                "150",
                "--seed",
                "7",
                "--list-conntrack",
                "--list-flows",
                "-o",
            ])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        (std::fs::read(&path).unwrap(), succeeded(&out))
    };
    let (on, on_txt) = run(&[], "on.pcapng");
    let (off, off_txt) = run(&["--no-offload"], "off.pcapng");
    assert!(on_txt.contains("flowtable fw4 ft"), "{on_txt}");
    assert!(!on_txt.contains(" 0 fast path"), "{on_txt}");
    assert!(off_txt.contains(" 0 fast path"), "{off_txt}");
    assert!(on == off, "output captures differ with and without offload");
    let ct = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("tcp ") || l.starts_with("udp ") || l.starts_with("icmp"))
            .map(|l| {
                // drop the expiry column, and the offload marks that stand in for [ASSURED]
                let w: Vec<&str> = l.split_whitespace().collect();
                let mut v: Vec<&str> = w[..2].to_vec();
                v.extend(&w[3..]);
                v.join(" ")
                    .replace("[OFFLOAD]", "[ASSURED]")
                    .replace("use=2", "use=1")
            })
            .collect()
    };
    assert!(!ct(&on_txt).is_empty());
    assert_eq!(ct(&on_txt), ct(&off_txt));
}

#[test]
fn simulate_resolves_interface_names_against_the_topology() {
    // `iif`/`oif` name interfaces of the simulated router, which this machine does not have
    let rules = tmpfile(
        "iif.nft",
        "table inet t {\n\tchain fw {\n\t\ttype filter hook forward priority 0; policy drop;\n\t\tiif \"br-lan\" oif \"wan\" accept\n\t\tiif \"wan\" ct state established,related accept\n\t}\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toif \"wan\" masquerade\n\t}\n}\n",
    );
    let out = bin()
        .args(["simulate", "--json", "--flows", "60", "-f"])
        .arg(&rules)
        .output()
        .unwrap();
    let r = json(&out);
    assert!(
        r["nat_bindings"].as_u64().unwrap() > 0,
        "oif \"wan\" matched: {r}"
    );
    let wan_tx = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "wan")
        .unwrap()["tx_packets"]
        .as_u64()
        .unwrap();
    assert!(wan_tx > 0, "{r}");
}

/// `simulate --conntrack-max N`: the table never holds more than N connections; the rest are
/// refused (`ct_table_full`) or make room by early drop. The default table takes them all.
#[test]
fn simulate_conntrack_max_limits_the_table() {
    let run = |extra: &[&str]| {
        let out = bin()
            .args(["simulate", "--json", "--flows", "200"])
            .args(extra)
            .output()
            .unwrap();
        json(&out)
    };
    let full = run(&[]);
    let small = run(&["--conntrack-max", "8"]);
    let live = |v: &serde_json::Value| v["conntrack"].as_array().unwrap().len();
    let refused = |v: &serde_json::Value| v["drops"]["ct_table_full"].as_u64().unwrap_or(0);
    assert!(
        live(&full) > 8,
        "the default run has {} connections",
        live(&full)
    );
    assert_eq!(refused(&full), 0);
    assert!(
        live(&small) <= 8,
        "{} connections in a table of 8",
        live(&small)
    );
    assert!(refused(&small) > 0, "nothing refused: {}", small["drops"]);
    // GC's evictions near the limit are reported beside early drops (none in a default run)
    assert_eq!(full["conntrack_evicted"].as_u64(), Some(0), "{full}");
    assert!(small["conntrack_evicted"].as_u64().is_some(), "{small}");
    for bad in ["0", "-1", "many"] {
        let out = bin()
            .args(["simulate", "--conntrack-max", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--conntrack-max {bad}");
    }
}
