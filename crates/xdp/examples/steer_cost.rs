//! The AF_XDP steering program's own cost per frame (root): `BPF_PROG_TEST_RUN` repeats it on
//! one frame and the kernel reports the mean duration of a run. The program is loaded, not
//! attached, with the router's two addresses (198.18.0.1, 2001:db8::1) local and no socket,
//! so a transit frame takes the whole path (parse, local check, redirect to the missing
//! socket, counted as `no_socket`).
//!
//! ```sh
//! cargo build --release -p nft-xdp --example steer_cost
//! taskset -c 1 target/release/examples/steer_cost [--repeat N] [--rounds R]
//! ```
//!
//! One line per round: ns per run for a transit IPv4 frame, a local IPv4 frame and a transit
//! IPv6 frame (UDP, 60 and 80 bytes).

use etherparse::PacketBuilder;
use nft_xdp::{Steer, SteerConfig};

const R_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const P_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn v4(dst: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(P_MAC, R_MAC)
        .ipv4([198, 18, 0, 2], dst, 64)
        .udp(40000, 9)
        .write(&mut f, &[0u8; 18])
        .expect("IPv4 frame");
    f
}

fn v6(dst: &str) -> Vec<u8> {
    let src: std::net::Ipv6Addr = "2001:db8::2".parse().expect("address");
    let dst: std::net::Ipv6Addr = dst.parse().expect("address");
    let mut f = Vec::new();
    PacketBuilder::ethernet2(P_MAC, R_MAC)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(40000, 9)
        .write(&mut f, &[0u8; 18])
        .expect("IPv6 frame");
    f
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut repeat, mut rounds) = (2_000_000u32, 1usize);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--repeat" => repeat = num().unwrap_or(repeat),
            "--rounds" => rounds = num().map_or(rounds, |n: u32| n as usize),
            other => {
                eprintln!("unknown argument {other}; usage: steer_cost [--repeat N] [--rounds R]");
                std::process::exit(2);
            }
        }
    }
    let mut steer = match Steer::load("lo", &SteerConfig::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("steer_cost: {e}");
            std::process::exit(1);
        }
    };
    for a in ["198.18.0.1", "2001:db8::1"] {
        steer
            .add_local(None, a.parse().expect("address"))
            .expect("local address");
    }
    let frames = [
        ("transit4", v4([198, 19, 0, 5]), "no_socket"),
        ("local4", v4([198, 18, 0, 1]), "local"),
        ("transit6", v6("2001:db8:1::5"), "no_socket"),
    ];
    for _ in 0..rounds {
        let mut line = Vec::new();
        for (name, f, reason) in &frames {
            let before = steer.counter(reason);
            let (verdict, ns) = steer.test_run(f, repeat).expect("test run");
            // Every run went where it should: to the kernel, counted under `reason`.
            assert_eq!(verdict, 2, "{name}: verdict {verdict}");
            assert_eq!(steer.counter(reason) - before, u64::from(repeat), "{name}");
            line.push(format!("{name} {ns}"));
        }
        println!("{}", line.join(" "));
    }
}
