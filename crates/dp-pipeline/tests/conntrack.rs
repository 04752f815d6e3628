//! Connection tracking through the whole graph: one flow per connection, found from both
//! directions (local, encapsulated and decapsulated traffic), the TCP state machine and its
//! timeouts, bounded aging, a full table, a flood, ICMP errors matched to the flow they quote,
//! and what may or may not start a flow.
mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_packet::IpProtocol;
use dp_pipeline::nodes::SWEEP_PER_TICK;
use dp_pipeline::{DropReason, WorkerCtx};
use dp_tables::{ConnKey, Direction, Flow, RouteTarget, TcpState, Timeouts, Translation, NO_PORT};

const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(10, 100, 2, 1);
fn remote_v6() -> Ipv6Addr {
    "2000:100:2::1".parse().unwrap()
}

const SEC: u64 = 1_000_000_000;

fn remote(vni: u32) -> RouteTarget {
    RouteTarget::Remote {
        vni,
        underlay: remote_underlay(),
        public: false,
    }
}

/// The standard harness with both routers known and remote routes for 10.100.2.0/24 and
/// 2000:100:2::/64 in VNI 100.
fn with_remote(mut h: Harness) -> Harness {
    h = h.with_routers();
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote(100));
    h.add_route_v6(100, "2000:100:2::".parse().unwrap(), 64, remote(100));
    h
}

fn harness() -> Harness {
    with_remote(Harness::new())
}

/// The key of an IPv4 packet in VNI 100.
fn key4(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, sport: u16, dport: u16) -> ConnKey {
    ConnKey {
        src: u128::from(u32::from(src)),
        dst: u128::from(u32::from(dst)),
        vni: 100,
        src_port: sport,
        dst_port: dport,
        proto,
        is_v6: false,
    }
}

/// The only flow of the worker.
#[track_caller]
fn only_flow(h: &Harness) -> Flow {
    let flows: Vec<Flow> = h.worker.flows.iter().map(|(_, f)| *f).collect();
    assert_eq!(flows.len(), 1, "one flow: {flows:?}");
    flows[0]
}

/// The direction a key matches in the worker's table.
fn direction(h: &Harness, key: &ConnKey) -> Option<Direction> {
    h.worker
        .flows
        .find(key, h.worker.flows.hash(key))
        .map(|(_, d)| d)
}

/// The single frame sent, encapsulated towards the remote hypervisor; its inner packet.
#[track_caller]
fn one_encapsulated(out: &[(u16, Vec<u8>)]) -> Vec<u8> {
    assert_eq!(out.len(), 1, "one frame out: {out:?}");
    let (port, frame) = &out[0];
    assert!(*port == PF0 || *port == PF1, "sent out of an uplink");
    assert_eq!(
        &frame[14 + 24..14 + 40],
        &remote_underlay().octets(),
        "outer destination"
    );
    inner_of(frame).to_vec()
}

/// Asserts that exactly one frame went out, to VM `p`, equal to `want` (an IP packet).
#[track_caller]
fn assert_delivered4(out: &[(u16, Vec<u8>)], p: u16, want: &[u8]) {
    assert_eq!(out.len(), 1, "one frame out: {out:?}");
    assert_eq!(out[0].0, p, "to the VM on port {p}");
    assert_frame(&out[0].1, &to_vm4(p, want));
}

#[test]
fn a_local_udp_flow_is_one_flow_found_from_both_directions() {
    let mut h = Harness::new();
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let out = h.run1(
        VM1,
        from_vm4(VM1, &udp4(vm1, vm2, 40000, 5000, 64, b"ping")),
    );
    assert_delivered4(&out, VM2, &udp4(vm1, vm2, 40000, 5000, 63, b"ping"));
    let flow = only_flow(&h);
    let original = key4(vm1, vm2, IpProtocol::UDP, 40000, 5000);
    assert_eq!([flow.original, flow.reply], [original, original.reversed()]);
    assert_eq!(flow.ports, [VM1, VM2]);
    assert_eq!(flow.translation, Translation::None);
    assert_eq!(flow.tcp, TcpState::None);
    assert!(flow.firewall.accept);
    assert_eq!(flow.expires_ns, h.now_ns + 30 * SEC);
    assert_eq!(direction(&h, &original), Some(Direction::Original));
    // VM2's reply finds the flow in the reply direction; no second flow.
    h.now_ns += SEC;
    let out = h.run1(
        VM2,
        from_vm4(VM2, &udp4(vm2, vm1, 5000, 40000, 64, b"pong")),
    );
    assert_delivered4(&out, VM1, &udp4(vm2, vm1, 5000, 40000, 63, b"pong"));
    assert_eq!(
        direction(&h, &key4(vm2, vm1, IpProtocol::UDP, 5000, 40000)),
        Some(Direction::Reply)
    );
    let flow = only_flow(&h);
    assert_eq!(flow.expires_ns, 31 * SEC, "the reply refreshed the flow");
    assert_eq!(h.worker.flows.stats().created, 1);
    h.assert_conservation();
}

#[test]
fn an_encapsulated_flow_and_its_decapsulated_reply_are_one_flow() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let inner = one_encapsulated(&h.run1(
        VM1,
        from_vm4(VM1, &udp4(vm1, REMOTE_V4, 40000, 53, 64, b"q")),
    ));
    assert_frame(&inner, &udp4(vm1, REMOTE_V4, 40000, 53, 63, b"q"));
    let flow = only_flow(&h);
    assert_eq!(
        flow.original,
        key4(vm1, REMOTE_V4, IpProtocol::UDP, 40000, 53)
    );
    assert_eq!(
        flow.ports,
        [VM1, NO_PORT],
        "the far end is beyond the underlay"
    );
    // The reply, decapsulated, finds the flow.
    let reply = udp4(REMOTE_V4, vm1, 53, 40000, 63, b"a");
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &reply),
    );
    assert_delivered4(&out, VM1, &reply);
    assert_eq!(
        direction(&h, &key4(REMOTE_V4, vm1, IpProtocol::UDP, 53, 40000)),
        Some(Direction::Reply)
    );
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}

#[test]
fn a_decapsulated_flow_and_the_vms_encapsulated_reply_are_one_flow() {
    let mut h = harness();
    let vm2 = vm_ipv4(VM2);
    let first = udp4(REMOTE_V4, vm2, 7000, 8000, 63, b"hello");
    let out = h.run1(
        PF1,
        from_underlay(PF1, remote_underlay(), vm_underlay(VM2), 4, &first),
    );
    assert_delivered4(&out, VM2, &first);
    let flow = only_flow(&h);
    assert_eq!(
        flow.original,
        key4(REMOTE_V4, vm2, IpProtocol::UDP, 7000, 8000)
    );
    assert_eq!(flow.ports, [NO_PORT, VM2]);
    let inner = one_encapsulated(&h.run1(
        VM2,
        from_vm4(VM2, &udp4(vm2, REMOTE_V4, 8000, 7000, 64, b"back")),
    ));
    assert_frame(&inner, &udp4(vm2, REMOTE_V4, 8000, 7000, 63, b"back"));
    assert_eq!(
        direction(&h, &key4(vm2, REMOTE_V4, IpProtocol::UDP, 8000, 7000)),
        Some(Direction::Reply)
    );
    assert_eq!(h.worker.flows.len(), 1);
    // IPv6 likewise: one flow per connection, whichever side began.
    let v6 = vm_ipv6(VM2);
    let first = ipv6(
        remote_v6(),
        v6,
        17,
        63,
        &udp_v6(remote_v6(), v6, 7000, 8000, b"six"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM2), 41, &first),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_frame(&out[0].1, &to_vm6(VM2, &first));
    let back = ipv6(
        v6,
        remote_v6(),
        17,
        64,
        &udp_v6(v6, remote_v6(), 8000, 7000, b"6"),
    );
    let inner = one_encapsulated(&h.run1(VM2, from_vm6(VM2, &back)));
    let mut want = back.clone();
    want[7] = 63;
    assert_frame(&inner, &want);
    assert_eq!(h.worker.flows.len(), 2);
    h.assert_conservation();
}

/// VM1 → VM2 TCP segment from port 40000 to 22 (or back), and what VM2 (VM1) receives.
fn segment(h: &mut Harness, from_vm1: bool, flags: u8) {
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let (src, dst, sport, dport, from, to) = if from_vm1 {
        (vm1, vm2, 40000, 22, VM1, VM2)
    } else {
        (vm2, vm1, 22, 40000, VM2, VM1)
    };
    let out = h.run1(
        from,
        from_vm4(from, &tcp4(src, dst, sport, dport, flags, 64)),
    );
    assert_delivered4(&out, to, &tcp4(src, dst, sport, dport, flags, 63));
}

#[test]
fn tcp_handshake_and_fin_close_through_the_graph() {
    let mut h = Harness::new();
    segment(&mut h, true, TCP_SYN);
    assert_eq!(only_flow(&h).tcp, TcpState::SynSent);
    segment(&mut h, false, TCP_SYN | TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::SynReceived);
    segment(&mut h, true, TCP_ACK);
    let flow = only_flow(&h);
    assert_eq!(flow.tcp, TcpState::Established);
    assert_eq!(flow.expires_ns, 24 * 3600 * SEC, "established: 24 h");
    segment(&mut h, true, TCP_FIN | TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::FinWait);
    segment(&mut h, false, TCP_FIN | TCP_ACK);
    let flow = only_flow(&h);
    assert_eq!(flow.tcp, TcpState::Closed);
    assert_eq!(flow.expires_ns, 10 * SEC, "closed: tcp_closed_ns");
    // The last ACK still passes (the flow lingers).
    segment(&mut h, true, TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::Closed);
    h.assert_conservation();
}

#[test]
fn tcp_rst_closes_an_established_flow() {
    let mut h = Harness::new();
    segment(&mut h, true, TCP_SYN);
    segment(&mut h, false, TCP_SYN | TCP_ACK);
    segment(&mut h, true, TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::Established);
    segment(&mut h, false, TCP_RST | TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::Closed);
    // Stray segments leave it closed; a new SYN on the same tuple (the port reused) opens a
    // new handshake, as in dpservice.
    segment(&mut h, false, TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::Closed);
    segment(&mut h, true, TCP_SYN);
    assert_eq!(only_flow(&h).tcp, TcpState::SynSent);
    segment(&mut h, false, TCP_SYN | TCP_ACK);
    segment(&mut h, true, TCP_ACK);
    assert_eq!(only_flow(&h).tcp, TcpState::Established);
    h.assert_conservation();
}

#[test]
fn flows_age_by_state() {
    let mut h = Harness::new();
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    // A UDP flow, an established TCP flow (port 22) and a closed one (port 23).
    let out = h.run1(VM1, from_vm4(VM1, &udp4(vm1, vm2, 40000, 5000, 64, b"u")));
    assert_eq!(out.len(), 1);
    segment(&mut h, true, TCP_SYN);
    segment(&mut h, false, TCP_SYN | TCP_ACK);
    segment(&mut h, true, TCP_ACK);
    for (from, src, dst, sport, dport, flags) in [
        (VM1, vm1, vm2, 40001, 23, TCP_SYN),
        (VM2, vm2, vm1, 23, 40001, TCP_SYN | TCP_ACK),
        (VM1, vm1, vm2, 40001, 23, TCP_RST),
    ] {
        let out = h.run1(
            from,
            from_vm4(from, &tcp4(src, dst, sport, dport, flags, 64)),
        );
        assert_eq!(out.len(), 1, "{out:?}");
    }
    assert_eq!(h.worker.flows.len(), 3);
    let udp = key4(vm1, vm2, IpProtocol::UDP, 40000, 5000);
    let established = key4(vm1, vm2, IpProtocol::TCP, 40000, 22);
    let closed = key4(vm1, vm2, IpProtocol::TCP, 40001, 23);
    // 9 s later nothing has expired.
    h.tick_after_ms(9_000);
    assert_eq!(h.worker.flows.len(), 3);
    // Past tcp_closed_ns (10 s): the closed flow goes.
    h.tick_after_ms(1_001);
    assert!(!h.worker.flows.contains(&closed), "closed after 10 s");
    assert!(h.worker.flows.contains(&udp) && h.worker.flows.contains(&established));
    // Past default_ns (30 s): the UDP flow goes, the established TCP flow stays (24 h).
    h.tick_after_ms(20_000);
    assert!(!h.worker.flows.contains(&udp), "UDP after 30 s");
    assert!(!h.worker.flows.contains(&udp.reversed()));
    assert!(h.worker.flows.contains(&established));
    assert_eq!(h.worker.flows.len(), 1);
    assert_eq!(h.worker.flows.stats().expired, 2);
    // It still works, and so does a new UDP flow on the old tuple.
    segment(&mut h, false, TCP_ACK);
    let out = h.run1(VM1, from_vm4(VM1, &udp4(vm1, vm2, 40000, 5000, 64, b"u")));
    assert_eq!(out.len(), 1);
    assert_eq!(h.worker.flows.len(), 2);
    // And after 24 h the established flow goes too.
    h.tick_after_ms(24 * 3600 * 1000);
    assert!(h.worker.flows.is_empty());
    h.assert_conservation();
}

#[test]
fn the_default_timeout_is_configurable() {
    let mut h = Harness::with(|_, config| config.flow_timeouts = Timeouts::with_default_secs(1));
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let out = h.run1(VM1, from_vm4(VM1, &udp4(vm1, vm2, 40000, 5000, 64, b"u")));
    assert_eq!(out.len(), 1);
    assert_eq!(only_flow(&h).expires_ns, SEC);
    h.tick_after_ms(900);
    assert_eq!(h.worker.flows.len(), 1);
    // A packet refreshes it.
    let out = h.run1(VM2, from_vm4(VM2, &udp4(vm2, vm1, 5000, 40000, 64, b"r")));
    assert_eq!(out.len(), 1);
    h.tick_after_ms(900);
    assert_eq!(h.worker.flows.len(), 1, "refreshed at 0.9 s");
    h.tick_after_ms(200);
    assert!(h.worker.flows.is_empty(), "1 s after the last packet");
    // A handshake's flow (not established) times out with the default as well.
    segment(&mut h, true, TCP_SYN);
    h.tick_after_ms(1_100);
    assert!(h.worker.flows.is_empty());
    h.assert_conservation();
}

/// VM1 → VM2 UDP frames of `n` distinct flows, `first` on: source port and destination port
/// spread so that no two share a tuple.
fn udp_flood(first: u32, n: u32) -> Vec<(u16, Vec<u8>)> {
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    (first..first + n)
        .map(|i| {
            let sport = 1024 + (i % 60_000) as u16;
            let dport = 5000 + (i / 60_000) as u16;
            (VM1, from_vm4(VM1, &udp4(vm1, vm2, sport, dport, 64, b"f")))
        })
        .collect()
}

#[test]
fn aging_is_bounded_per_tick() {
    let flows = SWEEP_PER_TICK as u32 + 5000;
    let mut h = Harness::new();
    h.worker = WorkerCtx::single().with_flow_capacity(flows as usize);
    let out = h.run(&udp_flood(0, flows));
    assert_eq!(out.len(), flows as usize);
    assert_eq!(h.worker.flows.len(), flows as usize);
    // All expired; one tick looks at SWEEP_PER_TICK slots only.
    h.tick_after_ms(31_000);
    assert_eq!(
        h.worker.flows.len(),
        5000,
        "one tick reclaims a bounded share"
    );
    // A tick before the sweep interval does no sweep.
    h.tick();
    assert_eq!(h.worker.flows.len(), 5000);
    h.tick_after_ms(100);
    assert!(h.worker.flows.is_empty(), "the next tick the rest");
    assert_eq!(h.worker.flows.stats().expired, u64::from(flows));
    h.assert_conservation();
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_the_established_ones() {
    const N: u32 = 64;
    const K: u32 = 16;
    let mut h = Harness::new();
    h.worker = WorkerCtx::single().with_flow_capacity(N as usize);
    let out = h.run(&udp_flood(0, N + K));
    assert_eq!(out.len(), N as usize);
    assert_eq!(
        h.nonzero_drops(),
        vec![(DropReason::FlowTableFull, u64::from(K))]
    );
    assert_eq!(h.worker.flows.len(), N as usize);
    assert_eq!(h.worker.flows.stats().refused_full, u64::from(K));
    // The N flows work both ways; the refused ones stay refused.
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let replies: Vec<_> = (0..N + K)
        .map(|i| {
            let sport = 1024 + i as u16;
            (VM2, from_vm4(VM2, &udp4(vm2, vm1, 5000, sport, 64, b"r")))
        })
        .collect();
    let out = h.run(&replies);
    assert_eq!(out.len(), N as usize);
    for (i, (port, frame)) in out.iter().enumerate() {
        assert_eq!(*port, VM1);
        assert_frame(
            frame,
            &to_vm4(VM1, &udp4(vm2, vm1, 5000, 1024 + i as u16, 63, b"r")),
        );
    }
    assert_eq!(h.drops(DropReason::FlowTableFull), u64::from(2 * K));
    assert_eq!(h.run(&udp_flood(0, N)).len(), N as usize, "forward still");
    // Once they expire and a sweep ran, new flows are accepted again.
    h.tick_after_ms(31_000);
    assert!(h.worker.flows.is_empty());
    assert_eq!(h.run(&udp_flood(N, K)).len(), K as usize);
    assert_eq!(h.worker.flows.len(), K as usize);
    assert_eq!(h.drops(DropReason::FlowTableFull), u64::from(2 * K));
    h.assert_conservation();
}

#[test]
fn a_flood_of_random_flows_through_a_small_table_adds_up() {
    const TABLE: usize = 4096;
    let mut h = Harness::new();
    h.worker = WorkerCtx::single().with_flow_capacity(TABLE);
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // A model: a packet passes when its tuple has a flow, or starts one while there is room.
    let mut admitted = HashSet::new();
    let mut passed = 0;
    let mut frames = Vec::new();
    for _ in 0..10_000 {
        let r = next();
        // Destination ports above 32767: none is a service the gateway answers (DHCP).
        let (sport, dport) = (r as u16 | 1, (r >> 16) as u16 | 0x8000);
        if admitted.contains(&(sport, dport)) || admitted.len() < TABLE {
            admitted.insert((sport, dport));
            passed += 1;
        }
        frames.push((VM1, from_vm4(VM1, &udp4(vm1, vm2, sport, dport, 64, b"x"))));
    }
    let out = h.run(&frames);
    assert_eq!(out.len(), passed);
    assert!(out.iter().all(|(p, _)| *p == VM2));
    assert_eq!(h.worker.flows.len(), TABLE);
    assert_eq!(
        h.nonzero_drops(),
        vec![(DropReason::FlowTableFull, (10_000 - passed) as u64)]
    );
    h.assert_conservation();
}

#[test]
fn an_icmp_error_from_the_underlay_reaches_the_vm_of_the_flow_it_quotes() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let inner = one_encapsulated(&h.run1(
        VM1,
        from_vm4(VM1, &udp4(vm1, REMOTE_V4, 40000, 53, 64, b"query")),
    ));
    // The remote host answers "port unreachable", quoting the datagram as it arrived.
    let error = ipv4(REMOTE_V4, vm1, 1, 63, &icmpv4(3, 3, [0; 4], &inner));
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &error),
    );
    assert_delivered4(&out, VM1, &error);
    assert_eq!(h.worker.flows.len(), 1, "an error makes no flow");
    // One quoting an unknown flow (another source port) is dropped.
    let stray_quote = udp4(vm1, REMOTE_V4, 40001, 53, 63, b"query");
    let stray = ipv4(REMOTE_V4, vm1, 1, 63, &icmpv4(3, 3, [0; 4], &stray_quote));
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &stray),
    );
    assert!(out.is_empty(), "{out:?}");
    h.assert_single_drop(DropReason::IcmpErrorNoFlow);
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}

#[test]
fn an_icmpv6_packet_too_big_reaches_the_vm_of_the_flow_it_quotes() {
    let mut h = harness();
    let vm1 = vm_ipv6(VM1);
    let dgram = ipv6(
        vm1,
        remote_v6(),
        17,
        64,
        &udp_v6(vm1, remote_v6(), 40000, 53, b"big"),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &dgram)));
    let error_of = |quote: &[u8]| {
        let mut body = 1280u32.to_be_bytes().to_vec();
        body.extend_from_slice(quote);
        ipv6(
            remote_v6(),
            vm1,
            58,
            63,
            &icmpv6(remote_v6(), vm1, 2, 0, &body),
        )
    };
    let error = error_of(&inner);
    let out = h.run1(
        PF1,
        from_underlay(PF1, remote_underlay(), vm_underlay(VM1), 41, &error),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    assert_frame(&out[0].1, &to_vm6(VM1, &error));
    // Quoting a packet of no flow (another destination port): dropped.
    let mut stray_quote = inner.clone();
    stray_quote[40 + 2..40 + 4].copy_from_slice(&54u16.to_be_bytes());
    let out = h.run1(
        PF1,
        from_underlay(
            PF1,
            remote_underlay(),
            vm_underlay(VM1),
            41,
            &error_of(&stray_quote),
        ),
    );
    assert!(out.is_empty(), "{out:?}");
    h.assert_single_drop(DropReason::IcmpErrorNoFlow);
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}

#[test]
fn a_tcp_rst_of_no_flow_is_dropped() {
    let mut h = Harness::new();
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let out = h.run1(
        VM1,
        from_vm4(VM1, &tcp4(vm1, vm2, 40000, 22, TCP_RST | TCP_ACK, 64)),
    );
    assert!(out.is_empty(), "{out:?}");
    h.assert_single_drop(DropReason::NoFlow);
    assert!(h.worker.flows.is_empty());
    h.assert_conservation();
}

#[test]
fn mid_stream_tcp_between_vms_is_picked_up() {
    let mut h = Harness::new();
    // An ACK with data, no SYN seen (a flow older than the table, say): accepted, untracked
    // state, and established once the other side answers.
    segment(&mut h, true, TCP_ACK);
    let flow = only_flow(&h);
    assert_eq!(flow.tcp, TcpState::None);
    assert_eq!(
        flow.expires_ns,
        30 * SEC,
        "the default timeout until established"
    );
    segment(&mut h, false, TCP_ACK);
    let flow = only_flow(&h);
    assert_eq!(flow.tcp, TcpState::Established);
    assert_eq!(flow.expires_ns, 24 * 3600 * SEC);
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}
