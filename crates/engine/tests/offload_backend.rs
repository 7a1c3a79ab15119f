//! `flags offload` through the router with a recording backend in place of the XDP program:
//! what is pushed, when, and with which plan.

mod common;
use common::*;
use nft_engine::Port;
use nft_flowtable::{BackendEvent, FlowId, FlowSpec, OffloadBackend};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Log {
    added: Vec<(FlowId, FlowSpec)>,
    removed: Vec<FlowId>,
    /// Added, not reported yet: every push succeeds at the next poll.
    pending: Vec<FlowId>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Log>>);

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.0.lock().unwrap()
    }
}

impl OffloadBackend for Recorder {
    fn add(&mut self, id: FlowId, flow: &FlowSpec) {
        let mut l = self.log();
        l.added.push((id, *flow));
        l.pending.push(id);
    }
    fn remove(&mut self, id: FlowId) {
        let mut l = self.log();
        l.pending.retain(|p| *p != id);
        l.removed.push(id);
    }
    fn poll(&mut self, events: &mut Vec<BackendEvent>) {
        events.extend(self.log().pending.drain(..).map(BackendEvent::Added));
    }
}

fn hw_router() -> (nft_engine::Router, Recorder) {
    let rules = RULES.replace(
        "devices = { \"lan\", \"wan\" }; }",
        "devices = { \"lan\", \"wan\" }; flags offload; }",
    );
    assert_ne!(rules, RULES);
    let mut r = router_with(TOPOLOGY, &rules, nft_engine::Config::default());
    let rec = Recorder::default();
    assert!(r.offload_mut().set_backend(0, Box::new(rec.clone())));
    (r, rec)
}

/// Request, answer, and a request two seconds later: the flow is admitted at `t + 3`.
fn assured_udp(r: &mut nft_engine::Router, t: u64) -> u16 {
    let out = one(
        r,
        LAN,
        udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q1"),
        secs(t),
        Port::Iface(WAN),
    );
    let sport = check(&out).ports.unwrap().0;
    one(
        r,
        WAN,
        udp4(GW_MAC, WAN_MAC, REMOTE, ROUTER_WAN, 53, sport, 60, b"a1"),
        secs(t),
        Port::Iface(LAN),
    );
    one(
        r,
        LAN,
        udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q2"),
        secs(t + 3),
        Port::Iface(WAN),
    );
    sport
}

fn flow_line(r: &nft_engine::Router, t: u64) -> String {
    let l = r.list_flows(secs(t));
    assert_eq!(l.len(), 2, "{l:?}");
    l[1].clone()
}

#[test]
fn a_rerouted_hardware_flow_is_pushed_again_with_its_new_plan() {
    let (mut r, rec) = hw_router();
    let sport = assured_udp(&mut r, 1);
    // pushed once at admission, with the WAN's MAC as the original direction's source
    {
        let l = rec.log();
        assert_eq!(l.added.len(), 1);
        let spec = &l.added[0].1;
        assert_eq!(spec.dirs[0].egress.src_mac, WAN_MAC);
        assert_eq!(spec.dirs[0].egress.dst_mac, GW_MAC);
        assert_eq!(spec.dirs[1].egress.src_mac, LAN_MAC);
        assert_eq!(spec.dirs[0].rewritten.sport, sport);
    }
    assert!(
        flow_line(&r, 4).contains("[hw-pending]"),
        "{:?}",
        r.list_flows(secs(4))
    );
    // the next GC takes the backend's answer: in the hardware
    r.sync_offload(secs(6));
    let line = flow_line(&r, 6);
    assert!(line.contains("[hw]"), "{line}");
    let id = rec.log().added[0].0;

    // the WAN interface takes another MAC: the next burst re-routes the flow, which is taken
    // out of the backend and pushed again with the new MAC, and forwarded in software
    // meanwhile
    let new_mac = [2, 0, 0, 0, 9, 9];
    assert!(r.set_link_params(WAN, new_mac, 1500));
    let fast = r.report(secs(7)).fast_path_packets;
    let out = one(
        &mut r,
        LAN,
        udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, b"q3"),
        secs(7),
        Port::Iface(WAN),
    );
    assert_eq!(&out[6..12], &new_mac);
    assert_eq!(r.report(secs(7)).fast_path_packets, fast + 1);
    {
        let l = rec.log();
        assert_eq!(l.removed, vec![id]);
        assert_eq!(l.added.len(), 2, "pushed again");
        let (again, spec) = &l.added[1];
        assert_eq!(*again, id);
        assert_eq!(spec.dirs[0].egress.src_mac, new_mac);
        assert_eq!(spec.dirs[0].egress.dst_mac, GW_MAC);
        assert_eq!(spec.dirs[0].egress.mtu, 1500);
        // the rest of the plan is the one it had
        assert_eq!(spec.dirs[1], l.added[0].1.dirs[1]);
        assert_eq!(spec.dirs[0].tuple, l.added[0].1.dirs[0].tuple);
        assert_eq!(spec.dirs[0].rewritten, l.added[0].1.dirs[0].rewritten);
    }
    assert_eq!(r.offload().flowtables()[0].ft.stats().hw_repushed, 1);
    // the same burst's GC (a second after the last) took the backend's answer
    assert!(flow_line(&r, 7).contains("[hw]"));
    assert_eq!(r.offload().flowtables()[0].ft.stats().hw_added, 2);

    // an MTU change re-routes it again: pushed once more, with the new MTU
    let n = rec.log().added.len();
    assert!(r.set_link_params(WAN, new_mac, 1400));
    send(
        &mut r,
        WAN,
        udp4(GW_MAC, new_mac, REMOTE, ROUTER_WAN, 53, sport, 60, b"a2"),
        secs(9),
    );
    let l = rec.log();
    assert_eq!(l.added.len(), n + 1);
    assert_eq!(l.added[n].1.dirs[0].egress.mtu, 1400);
}

fn conn_line(r: &nft_engine::Router, now: std::time::Duration) -> String {
    let l = r.conntrack().list(now);
    assert_eq!(l.len(), 1, "{l:?}");
    l[0].clone()
}

#[test]
fn a_rerouted_hardware_flow_shows_software_offload_until_it_is_pushed_again() {
    let (mut r, rec) = hw_router();
    let sport = assured_udp(&mut r, 1);
    r.sync_offload(secs(6));
    assert!(flow_line(&r, 6).contains("[hw]"));
    let line = conn_line(&r, secs(6));
    assert!(line.contains("[HW_OFFLOAD]"), "{line}");
    // a burst at 6 s runs the timers: the next GC is at 7 s
    let q = |t: &[u8]| udp4(CLIENT_MAC, LAN_MAC, CLIENT, REMOTE, 5000, 53, 64, t);
    one(&mut r, LAN, q(b"q3"), secs(6), Port::Iface(WAN));
    // the WAN's MAC changes; the burst at 6.5 s re-routes the flow, which leaves the
    // backend: from then until the backend has it again, it is in software only
    let new_mac = [2, 0, 0, 0, 9, 9];
    assert!(r.set_link_params(WAN, new_mac, 1500));
    let mid = std::time::Duration::from_millis(6500);
    let out = one(&mut r, LAN, q(b"q4"), mid, Port::Iface(WAN));
    assert_eq!(&out[6..12], &new_mac);
    assert_eq!(rec.log().removed.len(), 1);
    assert_eq!(
        rec.log().pending.len(),
        1,
        "pushed again, not confirmed yet"
    );
    let l = r.list_flows(mid);
    assert!(l[1].contains("[hw-pending]"), "{l:?}");
    let line = conn_line(&r, mid);
    assert!(line.contains("[OFFLOAD]"), "{line}");
    assert!(!line.contains("[HW_OFFLOAD]"), "{line}");
    // the answer, in software too
    one(
        &mut r,
        WAN,
        udp4(GW_MAC, new_mac, REMOTE, ROUTER_WAN, 53, sport, 60, b"a3"),
        std::time::Duration::from_millis(6600),
        Port::Iface(LAN),
    );
    assert!(!conn_line(&r, mid).contains("[HW_OFFLOAD]"));
    // the GC at 7 s takes the backend's answer: in the hardware again
    one(&mut r, LAN, q(b"q5"), secs(7), Port::Iface(WAN));
    assert!(flow_line(&r, 7).contains("[hw]"));
    let line = conn_line(&r, secs(7));
    assert!(line.contains("[HW_OFFLOAD]"), "{line}");
    assert_eq!(r.offload().flowtables()[0].ft.stats().hw_repushed, 1);
}
