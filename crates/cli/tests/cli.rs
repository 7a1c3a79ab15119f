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

/// Asserts that the command exited 1 without a panic or a backtrace; its stderr.
fn failed_cleanly(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

/// `simulate --topology FILE`, which must fail cleanly; its stderr.
fn topology_error(file: &std::path::Path) -> String {
    failed_cleanly(
        &bin()
            .args(["simulate", "--topology"])
            .arg(file)
            .output()
            .unwrap(),
    )
}

/// A ruleset's error in `simulate` comes as `check` prints it (nft's form), not wrapped in a
/// second `Error: `; a name the topology lacks says which names it has.
#[test]
fn simulate_ruleset_errors_come_as_nft_prints_them() {
    let bad = tmpfile(
        "sim-typo.nft",
        "table inet t {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tip saddr @nosuchset drop\n\t}\n}\n",
    );
    let err = failed_cleanly(&bin().args(["simulate", "-f"]).arg(&bad).output().unwrap());
    assert_eq!(
        err,
        format!(
            "{}:4:12-21: Error: Set 'nosuchset' does not exist\n\t\tip saddr @nosuchset drop\n\t\t         ^^^^^^^^^^\n",
            bad.display()
        )
    );
    let iface = tmpfile(
        "sim-iface.nft",
        "table inet t {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tiif \"eth9\" accept\n\t}\n}\n",
    );
    let err = failed_cleanly(&bin().args(["simulate", "-f"]).arg(&iface).output().unwrap());
    assert!(
        err.starts_with(&format!(
            "{}:4:7-12: Error: Interface does not exist\n",
            iface.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("the topology's interfaces: br-lan, wan, lo"),
        "{err}"
    );
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "-f", "/nonexistent/rules.nft"])
            .output()
            .unwrap(),
    );
    assert!(!err.contains("Error: Error:"), "{err}");
    assert!(
        err.contains("/nonexistent/rules.nft: No such file"),
        "{err}"
    );
}

/// A bad topology is named by file, line and column, with the line and carets under the
/// value, in `simulate` and `gen` alike; a missing one says why it could not be read.
#[test]
fn topology_errors_name_file_line_and_column() {
    let home = include_str!("../../../examples/home.toml");
    let wan0 = home.replacen("dev = \"wan\"", "dev = \"wan0\"", 1);
    let line = wan0
        .lines()
        .position(|l| l == "dev = \"wan0\"")
        .expect("the edit took")
        + 1;
    let t = tmpfile("bad-dev.toml", &wan0);
    for cmd in [
        &["simulate", "--topology"][..],
        &["gen", "-o", "/dev/null", "--topology"],
    ] {
        let err = failed_cleanly(&bin().args(cmd).arg(&t).output().unwrap());
        assert_eq!(
            err,
            format!(
                "{}:{line}:7-12: Error: route ::/0: no interface \"wan0\"\ndev = \"wan0\"\n      ^^^^^^\n",
                t.display()
            ),
            "{cmd:?}"
        );
    }
    let typo = tmpfile(
        "bad-key.toml",
        &home.replacen(
            "addresses = [\"192.168.1.1/24\"",
            "adresses = [\"192.168.1.1/24\"",
            1,
        ),
    );
    let err = topology_error(&typo);
    assert!(
        err.starts_with(&format!(
            "{}:8:1-8: Error: unknown field `adresses`, expected one of",
            typo.display()
        )),
        "{err}"
    );
    assert!(err.contains("\nadresses = [\"192.168.1.1/24\""), "{err}");
    let mac = tmpfile(
        "bad-mac.toml",
        &home.replacen("mac = \"02:00:00:00:01:01\"", "mac = \"02:00:00:00:01\"", 1),
    );
    let err = topology_error(&mac);
    assert!(
        err.starts_with(&format!(
            "{}:7:7-22: Error: interface br-lan: bad MAC address \"02:00:00:00:01\"\nmac = \"02:00:00:00:01\"\n      ^^^^^^^^^^^^^^^^\n",
            mac.display()
        )),
        "{err}"
    );
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--topology", "/nonexistent/topo.toml"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        err,
        "Error: topology /nonexistent/topo.toml: No such file or directory (os error 2)\n"
    );
}

/// Captures a user gets wrong: not a capture, cut short, classic pcap without `--iface`, an
/// interface the topology lacks. Each is named, exits 1, and nothing panics.
#[test]
fn simulate_capture_errors_are_clear() {
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--pcap", "/nonexistent/in.pcapng"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        err,
        "Error: /nonexistent/in.pcapng: No such file or directory (os error 2)\n"
    );
    let junk = tmpfile("junk.pcapng", "not a capture at all\n");
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--pcap"])
            .arg(&junk)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(&format!("{}: not a pcap or pcapng capture", junk.display())),
        "{err}"
    );

    let good = tmpfile("whole.pcapng", "");
    succeeded(
        &bin()
            .args(["gen", "--flows", "10", "-o"])
            .arg(&good)
            .output()
            .unwrap(),
    );
    let bytes = std::fs::read(&good).unwrap();
    let cut = std::env::temp_dir()
        .join(format!("nft-offload-cli-{}", std::process::id()))
        .join("cut.pcapng");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--pcap"])
            .arg(&cut)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(&format!("{}: capture ends inside block ", cut.display()))
            && err.ends_with(": the file is cut short\n"),
        "{err}"
    );

    // classic pcap: one 60-byte frame, which names no interface
    let mut pcap = 0xa1b2c3d4u32.to_le_bytes().to_vec();
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    for w in [0u32, 0, 65535, 1, 1_700_000_000, 0, 60, 60] {
        pcap.extend_from_slice(&w.to_le_bytes());
    }
    pcap.extend_from_slice(&[0u8; 60]);
    let classic = cut.with_file_name("classic.pcap");
    std::fs::write(&classic, &pcap).unwrap();
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--pcap"])
            .arg(&classic)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("give --iface NAME, one of br-lan, wan"),
        "{err}"
    );
    let err = failed_cleanly(
        &bin()
            .args(["simulate", "--iface", "eth0", "--pcap"])
            .arg(&classic)
            .output()
            .unwrap(),
    );
    assert!(
        err.contains("interface \"eth0\", which the topology does not have (it has br-lan, wan"),
        "{err}"
    );
    let text = succeeded(
        &bin()
            .args(["simulate", "--iface", "wan", "--pcap"])
            .arg(&classic)
            .output()
            .unwrap(),
    );
    assert!(text.contains("packets: 1 in (60 bytes)"), "{text}");
}

/// `simulate -c N` stops after N packets: the generated connections are still open there, so
/// the flowtable lists flows and `conntrack -L` marks them `[OFFLOAD]`; at the end of the
/// whole traffic every TCP connection has closed and the flowtable is empty.
#[test]
fn simulate_count_shows_the_router_mid_traffic() {
    let listing = |extra: &[&str]| {
        let mut c = bin();
        c.args(["simulate", "--list-flows", "--list-conntrack"])
            .args(extra);
        succeeded(&c.output().unwrap())
    };
    let whole = listing(&[]);
    assert!(
        whole.contains("flowtable fw4 ft { devices = { br-lan, wan }; flows 0 }"),
        "{whole}"
    );
    assert!(!whole.contains("[OFFLOAD]"));
    let mid = listing(&["-c", "1500"]);
    assert!(
        mid.starts_with(
            "nft-offload simulate: generated traffic (200 flows, seed 1), its first 1500 packets\npackets: 1500 in ("
        ),
        "{mid}"
    );
    let flows: usize = mid
        .lines()
        .find_map(|l| {
            l.strip_prefix("flowtable fw4 ft { devices = { br-lan, wan }; flows ")?
                .strip_suffix(" }")?
                .parse()
                .ok()
        })
        .expect("a flowtable line");
    let flow_lines = mid.lines().filter(|l| l.starts_with("  flow ")).count();
    let offloaded = mid.lines().filter(|l| l.contains(" [OFFLOAD] ")).count();
    assert!(flows > 0, "{mid}");
    assert_eq!(flow_lines, flows, "{mid}");
    assert_eq!(offloaded, flows, "one [OFFLOAD] entry a flow\n{mid}");
    // the summary on stderr, as `conntrack -L` prints it
    let shown = mid.lines().filter(|l| l.contains(" use=")).count();
    assert!(shown > 0, "{mid}");
    assert!(!mid.contains("flow entries have been shown"), "{mid}");
    let out = bin()
        .args(["simulate", "--list-conntrack", "-c", "1500"])
        .output()
        .unwrap();
    succeeded(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("conntrack v1.4.8 (conntrack-tools): {shown} flow entries have been shown.\n")
    );
}

/// With `--json`, stdout stays one JSON object: the connection table is its `conntrack`
/// (always), `--list-flows` adds the flowtables' listing as `flowtables`, and no text listing
/// follows it.
#[test]
fn simulate_json_with_listings_is_one_object() {
    let out = bin()
        .args([
            "simulate",
            "--json",
            "--list-flows",
            "--list-conntrack",
            "-c",
            "1500",
        ])
        .output()
        .unwrap();
    let v = json(&out);
    let ct = v["conntrack"].as_array().unwrap();
    assert!(
        ct.iter()
            .any(|l| l.as_str().unwrap().contains(" [OFFLOAD] ")),
        "{v:#}"
    );
    let ft = v["flowtables"].as_array().unwrap();
    assert!(
        ft.iter().any(|l| l
            .as_str()
            .unwrap()
            .starts_with("flowtable fw4 ft { devices = { br-lan, wan }; flows ")),
        "{v:#}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Rule texts beside hit counts (top rules, traces) are stateless: the ruleset's
/// `counter packets 0 bytes 0` would contradict the hits.
#[test]
fn simulate_rule_texts_are_stateless() {
    let text = succeeded(&bin().args(["simulate"]).output().unwrap());
    assert!(!text.contains("counter packets"), "{text}");
    assert!(
        text.contains(
            "inet fw4 forward_lan: oifname \"wan\" counter accept comment \"LAN to Internet\""
        ),
        "{text}"
    );
    let trace = succeeded(
        &bin()
            .args(["simulate", "--trace", "--flows", "3"])
            .output()
            .unwrap(),
    );
    assert!(
        trace.contains(
            "inet fw4 forward_lan rule oifname \"wan\" counter accept comment \"LAN to Internet\" (verdict accept)"
        ),
        "{trace}"
    );
}

/// The control commands with no router behind the socket say so and exit 1.
#[test]
fn control_commands_without_a_router() {
    let sock =
        std::env::temp_dir().join(format!("nft-offload-cli-none-{}.sock", std::process::id()));
    let rules = tmpfile("ctl.nft", "table inet t {\n}\n");
    for args in [
        vec!["list", "ruleset"],
        vec!["stats", "--json"],
        vec!["load", "-f", rules.to_str().unwrap()],
    ] {
        let err = failed_cleanly(
            &bin()
                .args(&args)
                .arg("--control")
                .arg(&sock)
                .output()
                .unwrap(),
        );
        assert_eq!(
            err,
            format!(
                "Error: connecting to {} (is `nft-offload run` running? --control PATH): No such file or directory (os error 2)\n",
                sock.display()
            ),
            "{args:?}"
        );
    }
}

/// The control commands' socket is `/run/nft-offload.sock` unless `--control` says otherwise
/// (`run` serves it there, created mode 0600: `live_run.rs`).
#[test]
fn control_socket_defaults_to_run() {
    if std::path::Path::new("/run/nft-offload.sock").exists() {
        eprintln!("SKIPPED (a router serves /run/nft-offload.sock here)");
        return;
    }
    let err = failed_cleanly(&bin().args(["list", "ruleset"]).output().unwrap());
    assert!(
        err.starts_with(
            "Error: connecting to /run/nft-offload.sock (is `nft-offload run` running?"
        ),
        "{err}"
    );
    for cmd in ["run", "list", "load", "stats"] {
        let help = succeeded(&bin().args([cmd, "--help"]).output().unwrap());
        assert!(
            help.contains("[default: /run/nft-offload.sock]"),
            "{cmd} --help:\n{help}"
        );
    }
}

/// `--workers 0` is refused as clap refuses any bad value (exit 2, before anything is read),
/// not taken as one worker.
#[test]
fn run_refuses_zero_workers() {
    for bad in ["0", "1025", "-1"] {
        let out = bin()
            .args(["run", "-f", "/nonexistent.nft", "--interfaces", "lan=eth0"])
            .arg(format!("--workers={bad}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--workers {bad}: {err}");
        assert!(
            err.starts_with(&format!(
                "error: invalid value '{bad}' for '--workers <WORKERS>': "
            )),
            "{err}"
        );
        assert!(!err.contains("nonexistent"), "{err}");
    }
}

/// `list conntrack` prints the entries on stdout and `conntrack -L`'s summary line on stderr,
/// as `conntrack -L` does (a stand-in router answers on the control socket here).
#[test]
fn list_conntrack_prints_its_summary_on_stderr() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    let sock = std::env::temp_dir().join(format!("nft-offload-cli-ct-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).unwrap();
    let entries = "tcp      6 431999 ESTABLISHED src=198.18.1.2 dst=198.18.2.2 sport=40000 dport=80 packets=3 bytes=180 src=198.18.2.2 dst=198.18.2.1 sport=80 dport=40000 packets=2 bytes=120 [OFFLOAD] mark=0 use=2\nudp      17 29 src=198.18.1.2 dst=198.18.2.2 sport=5353 dport=53 packets=1 bytes=60 [UNREPLIED] src=198.18.2.2 dst=198.18.2.1 sport=53 dport=5353 packets=0 bytes=0 mark=0 use=1\n";
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&mut c).read_line(&mut line).unwrap();
        c.write_all(format!("ok\n{entries}").as_bytes()).unwrap();
        line
    });
    let out = bin()
        .args(["list", "conntrack", "--control"])
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(server.join().unwrap(), "list conntrack\n");
    let _ = std::fs::remove_file(&sock);
    assert_eq!(succeeded(&out), entries);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "conntrack v1.4.8 (conntrack-tools): 2 flow entries have been shown.\n"
    );
}

/// A frame dropped before any chain (malformed) gets a `drop REASON` line in the trace, so
/// every drop of the report but the rules' and policies' shows in it.
#[test]
fn simulate_trace_says_why_a_frame_was_dropped() {
    let trace = succeeded(
        &bin()
            .args(["simulate", "--trace", "--flows", "5"])
            .output()
            .unwrap(),
    );
    assert!(
        trace.contains(
            "trace id 00000003 packet: iif \"br-lan\" length 82\ntrace id 00000003 drop ipv6_payload_len\n"
        ),
        "{trace}"
    );
    let trace = succeeded(&bin().args(["simulate", "--trace"]).output().unwrap());
    let report = json(&bin().args(["simulate", "--json"]).output().unwrap());
    let mut want: Vec<(String, u64)> = report["drops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "rule_drop" && *k != "policy_drop")
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    want.sort();
    assert!(!want.is_empty());
    let mut got: std::collections::BTreeMap<String, u64> = Default::default();
    for l in trace.lines() {
        let reason = l
            .strip_prefix("trace id ")
            .and_then(|r| r.split_once(' '))
            .and_then(|(_, rest)| rest.strip_prefix("drop "));
        if let Some(reason) = reason {
            *got.entry(reason.to_string()).or_default() += 1;
        }
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), want);
}

/// A flowtable device the topology lacks (nft would refuse it on a host without it) is
/// loaded, with a warning naming it: nothing arriving there is offloaded.
#[test]
fn simulate_warns_of_a_flowtable_device_the_topology_lacks() {
    let f = tmpfile(
        "ft-dev.nft",
        "table inet t {\n\tflowtable ft {\n\t\thook ingress priority 0; devices = { \"br-lan\", \"eth7\" };\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n\t\tmeta l4proto { tcp, udp } flow add @ft\n\t}\n}\n",
    );
    let out = bin().args(["simulate", "-f"]).arg(&f).output().unwrap();
    succeeded(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "warning: {}: flowtable inet t ft: device \"eth7\" is not one of the router's interfaces (br-lan, wan); nothing arriving on it is offloaded\n",
            f.display()
        )
    );
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fw4-home.nft");
    let out = bin().args(["simulate", "-f"]).arg(&ex).output().unwrap();
    succeeded(&out);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A JSON ruleset's error, which has no line to point at, names its file.
#[test]
fn check_json_errors_name_the_file() {
    let f = tmpfile(
        "no-name.json",
        "{\"nftables\": [{\"add\": {\"table\": {\"family\": \"inet\", \"nam\": \"t\"}}}]}\n",
    );
    for cmd in ["check", "print"] {
        let err = failed_cleanly(&bin().arg(cmd).arg(&f).output().unwrap());
        assert_eq!(
            err,
            format!("{}: Error: table: missing property 'name'\n", f.display()),
            "{cmd}"
        );
    }
}

/// `run` without the rights it needs says so (as root, the test drops to nobody with
/// `setpriv`; without setpriv it is skipped). It gets no further than its first socket.
#[test]
fn run_without_root_says_it_needs_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("nft-offload-cli-noroot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.join("nft-offload");
    std::fs::copy(env!("CARGO_BIN_EXE_nft-offload"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rules = dir.join("empty.nft");
    std::fs::write(&rules, "").unwrap();
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut cmd = if root {
        let have = Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !have {
            eprintln!("SKIPPED (needs setpriv to drop root)");
            return;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("run")
        .arg("-f")
        .arg(&rules)
        .args(["--interfaces", "lo", "--control"])
        .arg(dir.join("ctl.sock"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("run without root did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = failed_cleanly(&out);
    assert!(
        err.starts_with("Error: `nft-offload run` needs root (CAP_NET_ADMIN and CAP_NET_RAW): "),
        "{err}"
    );
    assert_eq!(
        err.matches("Operation not permitted").count(),
        1,
        "the cause once: {err}"
    );
}

/// The text report says why `flow add` left connections in the slow path: on the default,
/// every request is either admitted or refused for a named reason.
#[test]
fn simulate_report_says_why_flows_were_refused() {
    let text = succeeded(&bin().args(["simulate"]).output().unwrap());
    let paths = text.lines().find(|l| l.starts_with("paths: ")).unwrap();
    let (requests, admitted): (u64, u64) = {
        let inner = paths.split_once('(').unwrap().1;
        let n: Vec<u64> = inner
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|x| x.parse().ok())
            .collect();
        (n[0], n[1])
    };
    let refused = text
        .lines()
        .find_map(|l| l.strip_prefix("flow add refused: "))
        .unwrap_or_else(|| panic!("no refusals line in\n{text}"));
    let mut sum = 0;
    for part in refused.split(", ") {
        let (reason, n) = part.rsplit_once(' ').unwrap();
        assert!(
            reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{refused}"
        );
        sum += n.parse::<u64>().unwrap();
    }
    assert!(refused.contains("udp_not_assured "), "{refused}");
    assert!(admitted > 0 && sum > 0);
    assert_eq!(sum + admitted, requests, "{paths}\n{refused}");
}

/// After non-ASCII text and a tab on the line, the column counts bytes and the carets are padded
/// one blank per byte, tabs kept, as nft does for a ruleset (`"é"` is two bytes).
#[test]
fn topology_error_columns_count_bytes_as_nft_does() {
    let t = tmpfile(
        "utf8.toml",
        "[[interface]]\nname = \"\u{e9}\"\tx\nmac = \"02:00:00:00:00:01\"\n",
    );
    let err = topology_error(&t);
    assert_eq!(
        err,
        format!(
            "{}:2:13-13: Error: expected newline, `#`\nname = \"\u{e9}\"\tx\n{}\t^\n",
            t.display(),
            " ".repeat(11)
        )
    );
}

/// A value missing at the end of the file is named as nft names it, at the place after `=`,
/// not with the TOML library's whole text.
#[test]
fn topology_error_at_the_end_of_the_file() {
    let t = tmpfile("eof.toml", "[[interface]]\nname = ");
    let err = topology_error(&t);
    assert_eq!(
        err,
        format!(
            "{}:2:8-8: Error: unexpected end of file\nname = \n       ^\n",
            t.display()
        )
    );
}

/// An interface defined twice is pointed at where it comes again; a missing key at its entry.
#[test]
fn topology_errors_point_at_the_entry() {
    let twice = tmpfile(
        "twice.toml",
        "[[interface]]\nname = \"a\"\nmac = \"02:00:00:00:00:01\"\n\n[[interface]]\nname = \"a\"\nmac = \"02:00:00:00:00:02\"\n",
    );
    let err = topology_error(&twice);
    assert_eq!(
        err,
        format!(
            "{}:6:1-10: Error: interface a: defined twice\nname = \"a\"\n^^^^^^^^^^\n",
            twice.display()
        )
    );
    let no_mac = tmpfile("no-mac.toml", "[[interface]]\nname = \"a\"\n");
    let err = topology_error(&no_mac);
    assert_eq!(
        err,
        format!(
            "{}:1:1-13: Error: missing field `mac`\n[[interface]]\n^^^^^^^^^^^^^\n",
            no_mac.display()
        )
    );
}
