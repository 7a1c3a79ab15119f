//! Loader helpers shared by the programs: attaching with a mode fallback, and error messages
//! that keep the verifier's log.

use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::Ebpf;

use crate::offload::{Mode, ModeRequest};

/// An error and its source chain on one line (aya puts the verifier's log in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// How many times a program load is tried when the kernel answers EAGAIN.
const LOAD_TRIES: u32 = 5;

/// Loads `p` into the kernel, again when the kernel answers EAGAIN: the verifier stops with
/// EAGAIN whenever a signal is pending for the loading thread (`signal_pending` in its main
/// loop), which in a busy process (a child exiting, a timer) is a matter of chance, the longer
/// the program the likelier. libbpf retries the same way (5 attempts); aya does not.
pub fn load_retrying(p: &mut Xdp) -> Result<(), ProgramError> {
    let mut tries = 1;
    loop {
        match p.load() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < LOAD_TRIES =>
            {
                tries += 1;
            }
            r => return r,
        }
    }
}

/// Loads the XDP program `name` of `ebpf` into the kernel.
pub fn load_xdp(ebpf: &mut Ebpf, name: &str) -> Result<(), String> {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing"))?
        .try_into()
        .map_err(|e| error_chain(&e))?;
    load_retrying(p).map_err(|e| error_chain(&e))
}

/// Attaches the loaded XDP program `name` to `ifindex` (in the calling thread's network
/// namespace), trying the modes `req` allows in order: native, then generic. Returns the mode
/// it runs in, or why each mode failed.
pub fn attach_xdp(
    ebpf: &mut Ebpf,
    name: &str,
    ifindex: u32,
    req: ModeRequest,
) -> Result<(Mode, aya::programs::xdp::XdpLinkId), String> {
    let tries: &[Mode] = match req {
        ModeRequest::Auto => &[Mode::Native, Mode::Generic],
        ModeRequest::Native => &[Mode::Native],
        ModeRequest::Generic => &[Mode::Generic],
    };
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing"))?
        .try_into()
        .map_err(|e| error_chain(&e))?;
    let mut why = vec![];
    for &m in tries {
        let xm = match m {
            Mode::Native => XdpMode::Driver,
            Mode::Generic => XdpMode::Skb,
        };
        match p.attach_to_if_index(ifindex, xm) {
            Ok(link) => return Ok((m, link)),
            Err(e) => why.push(format!("{m}: {}", error_chain(&e))),
        }
    }
    Err(why.join("; "))
}
