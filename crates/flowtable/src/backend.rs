//! Hardware offload (`flags offload`): the flowtable mirrors its flows into a backend (the XDP
//! program's map, later) asynchronously, as the kernel's `nf_flow_offload_work` queue does.
//! The first packets of a flow stay in software; a failed push leaves it in software; stats
//! come back with a last-used time that keeps the flow alive.

use crate::flow::{Egress, Mangles};
use core::time::Duration;
use nft_conntrack::Tuple;

/// A flow's handle, stable while it is in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

impl FlowId {
    /// The flow's number in the table (the `flow N` of listings).
    pub fn index(&self) -> u32 {
        self.idx
    }
}

/// Everything a backend needs to forward one direction by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirSpec {
    /// What the direction's packets carry when they arrive, ingress port included.
    pub tuple: Tuple,
    pub ingress: crate::Port,
    /// What they leave with (the inverse of the other direction's tuple).
    pub rewritten: Tuple,
    pub egress: Egress,
    pub mangles: Mangles,
}

/// A flow as pushed to a backend, indexed by conntrack direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec {
    pub dirs: [DirSpec; 2],
}

/// What a backend reports back, from [`OffloadBackend::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendEvent {
    /// The flow is in the hardware: `[HW_OFFLOAD]` from now on.
    Added(FlowId),
    /// The push failed; the flow stays in software.
    Failed(FlowId),
    /// Packets and bytes forwarded by the hardware since the last report, per direction, and
    /// when it last forwarded one.
    Stats {
        id: FlowId,
        packets: [u64; 2],
        bytes: [u64; 2],
        last_used: Duration,
    },
}

/// A hardware (or kernel) forwarding backend. Requests return at once; results come back
/// through `poll`, which the flowtable calls from its GC.
pub trait OffloadBackend {
    /// Queues a flow for the hardware.
    fn add(&mut self, id: FlowId, flow: &FlowSpec);
    /// Queues a flow's removal (teardown, GC, route change).
    fn remove(&mut self, id: FlowId);
    /// Appends the results and stats since the last call.
    fn poll(&mut self, events: &mut Vec<BackendEvent>);
}

/// No hardware: every flow stays in software, nothing is ever reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftwareOnly;

impl OffloadBackend for SoftwareOnly {
    fn add(&mut self, _id: FlowId, _flow: &FlowSpec) {}
    fn remove(&mut self, _id: FlowId) {}
    fn poll(&mut self, _events: &mut Vec<BackendEvent>) {}
}

/// A boxed backend, so that a router can choose one at run time
/// (`Flowtable<Box<dyn OffloadBackend>>`: software only, or the XDP program of `nft-xdp`).
impl<B: OffloadBackend + ?Sized> OffloadBackend for Box<B> {
    fn add(&mut self, id: FlowId, flow: &FlowSpec) {
        (**self).add(id, flow)
    }
    fn remove(&mut self, id: FlowId) {
        (**self).remove(id)
    }
    fn poll(&mut self, events: &mut Vec<BackendEvent>) {
        (**self).poll(events)
    }
}
