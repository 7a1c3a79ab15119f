//! Builds every `bpf/*.c` into a BPF object with clang (`-target bpf`).
//!
//! A machine without clang (or without libbpf's headers) still builds the crate: the build
//! warns, `cfg(xdp_built)` stays unset, and [`crate::object`] returns `None` at run time, so the
//! callers fall back to software.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(xdp_built)");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let mut sources: Vec<PathBuf> = fs::read_dir("bpf")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "c"))
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    let multiarch = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "x86_64-linux-gnu".into());
    let mut failed = Vec::new();
    for src in &sources {
        println!("cargo:rerun-if-changed={}", src.display());
        let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("prog");
        let obj = out.join(format!("{stem}.o"));
        if let Err(e) = compile(&clang, &multiarch, src, &obj) {
            failed.push(format!("{}: {e}", src.display()));
        }
    }
    if failed.is_empty() {
        println!("cargo:rustc-cfg=xdp_built");
    } else {
        for f in failed {
            println!("cargo:warning=XDP program not built ({f}); `flags offload` and AF_XDP steering will fall back to software. Install clang and libbpf-dev to build it.");
        }
    }
}

fn compile(clang: &str, multiarch: &str, src: &Path, obj: &Path) -> Result<(), String> {
    let output = Command::new(clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .output()
        .map_err(|e| format!("cannot run {clang}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&output.stderr);
        Err(err.lines().take(5).collect::<Vec<_>>().join(" / "))
    }
}
