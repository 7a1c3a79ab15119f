//! `nft-offload`: the command-line front end.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod control;
mod defaults;
mod netlink;
mod run;
mod run_afxdp;
mod simulate;
use nft_lang::print::ListOpts;
use nft_lang::ruleset::{load_file, LoadOpts};

#[derive(Parser)]
#[command(
    name = "nft-offload",
    version,
    about = "A router dataplane with nftables flow offload"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check a ruleset: exit 0 if `nft -f FILE` would accept it, 1 with the error otherwise.
    Check {
        /// The file is libnftables JSON.
        #[arg(short = 'j', long = "json")]
        json: bool,
        /// Directory searched for relative includes (repeatable).
        #[arg(short = 'I', long = "includepath", value_name = "DIR")]
        include: Vec<PathBuf>,
        /// The ruleset (nft syntax, or libnftables JSON).
        file: PathBuf,
    },
    /// Print the listing `nft list ruleset` would show after loading FILE into an empty ruleset.
    Print {
        /// Stateless: omit counter values and quota usage.
        #[arg(short = 's', long = "stateless")]
        stateless: bool,
        /// Numeric protocols (`meta l4proto 6`).
        #[arg(short = 'p', long = "numeric-protocol")]
        numeric_proto: bool,
        /// Service names for ports.
        #[arg(short = 'S', long = "services")]
        services: bool,
        /// Print libnftables JSON.
        #[arg(short = 'j', long = "json")]
        json: bool,
        /// Directory searched for relative includes (repeatable).
        #[arg(short = 'I', long = "includepath", value_name = "DIR")]
        include: Vec<PathBuf>,
        /// The ruleset (nft syntax, or libnftables JSON).
        file: PathBuf,
    },
    /// Replay a capture (or generated traffic) through a ruleset and a topology and report
    /// what the router did: packets per interface, drops by reason, NAT, connections, rule hits.
    Simulate(simulate::Args),
    /// In-memory throughput on one core with 64-byte packets: the slow path (new
    /// connections/s with conntrack and NAT, packets/s on established flows) and the fast
    /// path on the same flows offloaded.
    Bench(bench::Args),
    /// The live router between kernel interfaces (needs root): reads the interfaces, routes
    /// and neighbours over rtnetlink and follows their changes; serves `list`, `load` and
    /// `stats` on a control socket; SIGINT/SIGTERM stop it cleanly.
    Run(run::Args),
    /// Ask a running router: `list ruleset|flowtables|conntrack`.
    List {
        /// ruleset, flowtables or conntrack
        #[arg(value_parser = ["ruleset", "flowtables", "conntrack"])]
        what: String,
        /// The running router's control socket (`run --control`).
        #[arg(long, value_name = "PATH", default_value = control::DEFAULT_PATH)]
        control: PathBuf,
    },
    /// Swap the running router's ruleset atomically; a bad file changes nothing.
    Load {
        /// The new ruleset (nft syntax); checked whole before anything changes.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// The running router's control socket (`run --control`).
        #[arg(long, value_name = "PATH", default_value = control::DEFAULT_PATH)]
        control: PathBuf,
    },
    /// The running router's counters: per interface, per path, drops by reason, flows, CPU.
    Stats {
        /// One JSON object.
        #[arg(long)]
        json: bool,
        /// Prometheus text exposition format.
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
        /// The running router's control socket (`run --control`).
        #[arg(long, value_name = "PATH", default_value = control::DEFAULT_PATH)]
        control: PathBuf,
    },
    /// Write a seeded, realistic capture for a topology: LAN clients to Internet servers and
    /// back (TCP, DNS- and QUIC-like UDP, ICMP echo, IPv4 and IPv6), inbound connections to port
    /// forwards, and some malformed frames.
    Gen {
        /// Topology (TOML); the embedded home router by default.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Number of flows (a malformed frame counts as one).
        #[arg(long, default_value_t = 200)]
        flows: usize,
        /// Seed of the generator: the same seed gives the same capture.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A port forward to send inbound connections to: `tcp:8080=192.168.1.100:80`
        /// (repeatable; the default topology's forward when none is given).
        #[arg(long = "forward", value_name = "PROTO:PORT=ADDR:PORT")]
        forwards: Vec<String>,
        /// Output capture (pcapng).
        #[arg(short = 'o', long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // `simulate | head` closing the pipe is not an error
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// `Error: msg` on stderr, or `msg` alone when it is already as nft prints a file's error
/// (`FILE:LINE:COL: Error: ...`, the line and carets).
fn print_error(msg: &str) {
    if msg.starts_with("Error: ") || msg.lines().next().is_some_and(|l| l.contains(": Error: ")) {
        eprintln!("{msg}");
    } else {
        eprintln!("Error: {msg}");
    }
}

/// The error and its causes, `: `-separated as anyhow's `{:#}` prints them, without a cause
/// the message before it already quotes (library errors often print their source too).
fn error_chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if c.is_empty() || s.ends_with(&c) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&c);
    }
    s
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Bench(args) => {
            bench::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate(args) => match simulate::run(args) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) if e.downcast_ref::<simulate::InputError>().is_some() => {
                print_error(&e.to_string());
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e),
        },
        Cmd::Gen {
            topology,
            flows,
            seed,
            forwards,
            output,
        } => {
            let topo = defaults::load_topology(topology.as_deref())?;
            let fwd = if forwards.is_empty() && topology.is_none() {
                defaults::default_forwards()
            } else {
                forwards
                    .iter()
                    .map(|f| defaults::parse_forward(f))
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            let cfg = defaults::gen_config(&topo, seed, flows, fwd)?;
            let g = nft_io::generate(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
            let f = std::fs::File::create(&output)
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
            g.write_pcapng(std::io::BufWriter::new(f))
                .map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
            eprint!("{}", g.summary);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run(args) => run::run(args).map_err(|e| {
            let denied = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            });
            if denied {
                e.context("`nft-offload run` needs root (CAP_NET_ADMIN and CAP_NET_RAW)")
            } else {
                e
            }
        }),
        Cmd::List { what, control } if what == "conntrack" => control::list_conntrack(&control),
        Cmd::List { what, control } => control::client(&control, &format!("list {what}")),
        Cmd::Load { file, control } => {
            let abs = std::path::absolute(&file).unwrap_or(file);
            control::client(&control, &format!("load {}", abs.display()))
        }
        Cmd::Stats {
            json,
            prometheus,
            control,
        } => control::client(
            &control,
            if json {
                "stats json"
            } else if prometheus {
                "stats prometheus"
            } else {
                "stats"
            },
        ),
        Cmd::Check {
            json,
            include,
            file,
        } => match load_ruleset(&file, json, include) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprint!("{}", load_error(&file, &e.rendered));
                Ok(ExitCode::from(1))
            }
        },
        Cmd::Print {
            stateless,
            numeric_proto,
            services,
            json,
            include,
            file,
        } => {
            // `--json` here is the output's form; the input's is recognised
            let rs = match load_ruleset(&file, false, include) {
                Ok(rs) => rs,
                Err(e) => {
                    eprint!("{}", load_error(&file, &e.rendered));
                    return Ok(ExitCode::from(1));
                }
            };
            let mut lo = ListOpts {
                stateless,
                ..Default::default()
            };
            lo.dt.numeric_proto = numeric_proto;
            lo.dt.services = services;
            if json {
                writeln!(
                    std::io::stdout(),
                    "{}",
                    nft_lang::json::ruleset_to_json(&rs, &lo)
                )?;
            } else {
                write!(std::io::stdout(), "{}", nft_lang::print::ruleset(&rs, &lo))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A load error as nft prints it; one without a place (a JSON document's, say) is told which
/// file it is about.
fn load_error(file: &std::path::Path, rendered: &str) -> String {
    let name = file.display().to_string();
    if rendered.starts_with("Error: ") && !rendered.contains(&name) {
        format!("{name}: {rendered}")
    } else {
        rendered.to_string()
    }
}

/// FILE as libnftables JSON (`json`, or when it looks like JSON) or in nft syntax, relative
/// includes searched in `include`.
fn load_ruleset(
    file: &std::path::Path,
    json: bool,
    include: Vec<PathBuf>,
) -> Result<nft_lang::ast::Ruleset, nft_lang::ruleset::LoadError> {
    if json || looks_like_json(file) {
        return nft_lang::json::load_json_file(file);
    }
    let opts = LoadOpts {
        include_dirs: include,
        ..Default::default()
    };
    load_file(file, &opts)
}

/// JSON input is recognised by its first non-blank character, so `print` takes either form.
fn looks_like_json(file: &std::path::Path) -> bool {
    match std::fs::read(file) {
        Ok(b) => nft_lang::json::is_json_text(&String::from_utf8_lossy(&b)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    /// An error that prints its source in its own message, as `#[error("{call} failed:
    /// {source}")]` does.
    #[derive(Debug)]
    struct Call(std::io::Error);

    impl std::fmt::Display for Call {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "socket(AF_PACKET) failed: {}", self.0)
        }
    }

    impl std::error::Error for Call {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = anyhow::Error::new(Call(io)).context("opening AF_PACKET on lan0");
        assert_eq!(
            error_chain(&e),
            "opening AF_PACKET on lan0: socket(AF_PACKET) failed: permission denied"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }
}
