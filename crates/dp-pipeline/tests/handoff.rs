//! Flow affinity in the graph: the hand-off node, its verdict and the rings' accounting.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dp_pipeline::affinity::{self, Rings};
use dp_pipeline::{DropReason, NodeId, WorkerCtx};
use dp_tables::RouteTarget;

fn remote() -> RouteTarget {
    RouteTarget::Remote {
        vni: 100,
        underlay: remote_underlay(),
        public: false,
    }
}

/// Worker `index` of two with `rings`, the routers known and 10.100.2.0/24 remote in VNI 100.
fn harness(rings: Rings) -> Harness {
    let mut h = Harness::new().with_routers();
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote());
    h.worker = WorkerCtx::with_rings(rings);
    h
}

/// Both sides of a two-worker mesh with `capacity` slots per ring.
fn pair(capacity: usize) -> (Harness, Harness) {
    let mut rings = affinity::mesh(2, capacity, vec![]);
    let b = rings.pop().unwrap();
    let a = rings.pop().unwrap();
    (harness(a), harness(b))
}

/// VM1 sends UDP `sport` → 10.100.2.1:5000.
fn flow(sport: u16) -> (u16, Vec<u8>) {
    let (src, dst) = (vm_ipv4(VM1), Ipv4Addr::new(10, 100, 2, 1));
    let udp = udp_v4(src, dst, sport, 5000, b"flow");
    (
        VM1,
        eth(
            own_mac(VM1),
            vm_mac(VM1),
            ETH_IPV4,
            &ipv4(src, dst, 17, 64, &udp),
        ),
    )
}

/// The encapsulated UDP frame's inner source port (outer Ethernet, IPv6, inner IPv4, UDP).
fn inner_sport(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[14 + 40 + 20], frame[14 + 40 + 21]])
}

#[test]
fn packets_of_the_other_workers_flows_cross_and_go_out_there() {
    let (mut a, mut b) = pair(affinity::RING_CAPACITY);
    let frames: Vec<_> = (0..64u16).map(|i| flow(40000 + i)).collect();
    let out_a = a.run(&frames);
    let handed = a.counters.handed_off();
    assert!(handed > 10 && handed < 54, "about half: {handed}");
    assert_eq!(out_a.len() as u64 + handed, 64);
    assert!(out_a.iter().all(|(p, _)| *p == PF0 || *p == PF1));
    let out_b = b.run_handed_in();
    assert_eq!(out_b.len() as u64, handed);
    assert_eq!(b.counters.handed_in(), handed);
    assert_eq!(
        b.counters.handed_off(),
        0,
        "a handed-in packet is not handed again"
    );
    // Each flow left from one worker only.
    let mut sports: Vec<u16> = out_a
        .iter()
        .chain(&out_b)
        .map(|(_, f)| inner_sport(f))
        .collect();
    sports.sort_unstable();
    assert_eq!(sports, (40000..40064).collect::<Vec<_>>());
    // A's buffers come back at its next round; then both balance.
    a.run_handed_in();
    a.assert_conservation();
    b.assert_conservation();
    assert_eq!(a.nonzero_drops(), vec![]);
}

#[test]
fn a_full_ring_drops_as_handoff_ring_full() {
    let (mut a, mut b) = pair(1);
    let frames: Vec<_> = (0..64u16).map(|i| flow(40000 + i)).collect();
    let out_a = a.run(&frames);
    let others = 64 - out_a.len() as u64;
    assert!(others > 1);
    assert_eq!(a.counters.handed_off(), 1, "one fits");
    assert_eq!(a.drops(DropReason::HandoffRingFull), others - 1);
    assert_eq!(
        a.counters
            .node_drops(Some(NodeId::Handoff), DropReason::HandoffRingFull),
        others - 1
    );
    assert_eq!(b.run_handed_in().len(), 1);
    a.run_handed_in();
    a.assert_conservation();
    b.assert_conservation();
}

#[test]
fn a_handed_in_packet_is_not_handed_again() {
    // B hands A a packet of a flow A owns. Taken out of A's ring and given back to B (as if
    // B had been its owner's choice), B does not own it, yet sends it on: it was handed once.
    let (mut a, mut b) = pair(8);
    let mut owned_by_a = None;
    for i in 0..64u16 {
        let (port, frame) = flow(41000 + i);
        let out = b.run1(port, frame);
        if out.is_empty() {
            owned_by_a = Some(41000 + i);
            break;
        }
    }
    let sport = owned_by_a.expect("a flow of worker 0");
    assert_eq!(b.counters.handed_off(), 1);
    let mut crossed = Vec::new();
    let rings = a.worker.rings_mut().unwrap();
    assert_eq!(rings.receive(&mut crossed, 64, &a.pool), 1);
    rings.settle(&mut a.pool);
    let pkt = crossed.pop().unwrap();
    assert!(pkt.meta.handed_off);
    b.graph.handoff_batch().unwrap().push(pkt);
    b.counters
        .handed_in
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = b.run_handed_in();
    assert_eq!(out.len(), 1, "sent on, not handed to A again");
    assert_eq!(inner_sport(&out[0].1), sport);
    assert_eq!(b.counters.handed_off(), 1);
    b.assert_conservation();
}

#[test]
fn a_single_worker_never_takes_the_handoff_node() {
    let mut h = Harness::new().with_routers();
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote());
    let mut frames: Vec<_> = (0..32u16).map(|i| flow(40000 + i)).collect();
    // Local (VM1 → VM2) and decapsulated (for VM2) packets too.
    frames.push((VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"local")));
    let inner = ipv4(
        Ipv4Addr::new(10, 100, 2, 1),
        vm_ipv4(VM2),
        17,
        63,
        &udp_v4(
            Ipv4Addr::new(10, 100, 2, 1),
            vm_ipv4(VM2),
            5000,
            40000,
            b"in",
        ),
    );
    frames.push((
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM2), 4, &inner),
    ));
    let out = h.run(&frames);
    assert_eq!(out.len(), 34);
    assert_eq!(h.counters.node_packets(NodeId::Handoff), 0);
    assert_eq!(h.counters.handed_off(), 0);
    h.assert_conservation();
}

#[test]
fn ipv6_packets_are_handed_off_too() {
    let (mut a, mut b) = pair(affinity::RING_CAPACITY);
    for h in [&mut a, &mut b] {
        h.add_route_v6(100, "2000:100:2::".parse().unwrap(), 64, remote());
    }
    let dst: std::net::Ipv6Addr = "2000:100:2::1".parse().unwrap();
    let frames: Vec<_> = (0..64u16)
        .map(|i| {
            let udp = udp_v6(vm_ipv6(VM1), dst, 40000 + i, 5000, b"six");
            (
                VM1,
                eth(
                    own_mac(VM1),
                    vm_mac(VM1),
                    ETH_IPV6,
                    &ipv6(vm_ipv6(VM1), dst, 17, 64, &udp),
                ),
            )
        })
        .collect();
    let out_a = a.run(&frames);
    let handed = a.counters.handed_off();
    assert!(handed > 10 && handed < 54, "about half: {handed}");
    assert_eq!(b.run_handed_in().len() as u64, handed);
    assert_eq!(out_a.len() as u64 + handed, 64);
    a.run_handed_in();
    a.assert_conservation();
    b.assert_conservation();
}
