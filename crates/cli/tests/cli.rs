//! The CLI contract: `check` exits 0/1, `print` lists, errors come as nft prints them.

use std::io::Write;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nft-offload"))
}

fn tmpfile(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nft-offload-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
    p
}

#[test]
fn check_accepts_and_rejects() {
    let ok = tmpfile("ok.nft", "table inet t {\n\tchain c {\n\t\ttcp dport ssh accept\n\t}\n}\n");
    let st = bin().arg("check").arg(&ok).status().unwrap();
    assert_eq!(st.code(), Some(0));

    let bad = tmpfile("bad.nft", "table inet t {\n\tchain c {\n\t\ttcp dport sshhhh accept\n\t}\n}\n");
    let out = bin().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap();
    assert!(first.starts_with(&format!("{}:3:13-18: Error: ", bad.display())), "{err}");
    assert_eq!(err.lines().nth(1), Some("\t\ttcp dport sshhhh accept"));
    assert_eq!(err.lines().nth(2), Some("\t\t          ^^^^^^"));
}

#[test]
fn print_lists_like_nft() {
    let f = tmpfile(
        "p.nft",
        "add table ip filter\nadd chain ip filter input { type filter hook input priority 0; policy drop; }\nadd rule ip filter input meta l4proto tcp tcp dport { 22, 80 } counter accept\n",
    );
    let out = bin().arg("print").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "table ip filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport { 22, 80 } counter packets 0 bytes 0 accept\n\t}\n}\n"
    );
    let out = bin().args(["print", "-s", "-p"]).arg(&f).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\t\ttcp dport { 22, 80 } counter accept\n"));
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = bin().args(["check", "/nonexistent/x.nft"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such file"));
}

#[test]
fn example_ruleset_is_a_fixed_point() {
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fw4-home.nft");
    let once = bin().arg("print").arg(&ex).output().unwrap();
    assert_eq!(once.status.code(), Some(0), "{}", String::from_utf8_lossy(&once.stderr));
    let f = tmpfile("once.nft", &String::from_utf8_lossy(&once.stdout));
    let twice = bin().arg("print").arg(&f).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&once.stdout), String::from_utf8_lossy(&twice.stdout));
    assert!(String::from_utf8_lossy(&once.stdout).contains("flow add @ft"));
}

#[test]
fn gen_is_seeded_and_parses() {
    let dir = std::env::temp_dir().join(format!("nft-offload-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |seed: &str, name: &str| {
        let p = dir.join(name);
        let out = bin().args(["gen", "--flows", "50", "--seed", seed, "-o"]).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
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
    assert!(frames.iter().all(|f| f.iface == "br-lan" || f.iface == "wan"), "interfaces");
    let bad = frames.iter().filter(|f| nft_wire::parse_frame(&f.data).is_err()).count();
    assert!(bad > 0 && bad < frames.len() / 4, "{bad} malformed of {}", frames.len());
}

#[test]
fn gen_rejects_a_bad_topology() {
    let t = tmpfile("bad.toml", "[[interface]]\nname = \"x\"\nmac = \"nope\"\n");
    let out = bin().args(["gen", "-o", "/dev/null", "--topology"]).arg(&t).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad MAC address"), "{}", String::from_utf8_lossy(&out.stderr));
}
