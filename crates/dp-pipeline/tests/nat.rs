//! Address translation through the whole graph: NAT (address and port), VIP (1:1), neighbor NAT
//! relay and NAT64 — exact translated headers and checksums in both directions, and the hostile
//! cases: replies of no flow, TCP without SYN, port exhaustion, ICMP errors quoting translated
//! packets, fragments.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;
use dp_tables::{NatRange, NeighborNat, RouteTarget};

const NAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const NAT_MIN: u16 = 1000;
const NAT_MAX: u16 = 1100;

fn router_underlay() -> Ipv6Addr {
    "fc00::ffff:1".parse().unwrap()
}

fn neighbor_underlay() -> Ipv6Addr {
    "fc00:3::200:9".parse().unwrap()
}

fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x64,
        0xff9b,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

/// VM1 has a NAT share (ports 1000–1099 of 203.0.113.1), VM2 the VIP 203.0.113.2; the VNI's
/// default routes (IPv4 and IPv6) lead to the router: public.
fn harness_with(range: (u16, u16)) -> Harness {
    let mut h = Harness::with(|ifaces, _| {
        ifaces[0].services.nat = Some(NatRange {
            ip: NAT_IP,
            min_port: range.0,
            max_port: range.1,
        });
        ifaces[1].services.vip = Some(VIP2);
    })
    .with_routers();
    let public = RouteTarget::Remote {
        vni: 100,
        underlay: router_underlay(),
        public: true,
    };
    h.add_route_v4(100, Ipv4Addr::UNSPECIFIED, 0, public);
    h.add_route_v6(100, Ipv6Addr::UNSPECIFIED, 0, public);
    h
}

fn harness() -> Harness {
    harness_with((NAT_MIN, NAT_MAX))
}

/// The single frame sent, encapsulated towards `underlay`; its inner packet.
#[track_caller]
fn one_encapsulated(out: &[(u16, Vec<u8>)], underlay: Ipv6Addr) -> Vec<u8> {
    assert_eq!(out.len(), 1, "one frame out: {out:?}");
    let (port, frame) = &out[0];
    assert!(*port == PF0 || *port == PF1, "sent out of an uplink");
    assert_eq!(
        &frame[14 + 24..14 + 40],
        &underlay.octets(),
        "outer destination"
    );
    inner_of(frame).to_vec()
}

/// VM1's TCP SYN to the server through its NAT; returns the NAT port it got.
fn open_tcp(h: &mut Harness, sport: u16) -> u16 {
    let vm1 = vm_ipv4(VM1);
    let syn = ipv4(
        vm1,
        SERVER,
        6,
        64,
        &tcp_v4(vm1, SERVER, sport, 80, TCP_SYN, b""),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &syn)), router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    assert!(
        (NAT_MIN..NAT_MAX).contains(&port),
        "port {port} in the range"
    );
    let want = ipv4(
        NAT_IP,
        SERVER,
        6,
        63,
        &tcp_v4(NAT_IP, SERVER, port, 80, TCP_SYN, b""),
    );
    assert_frame(&inner, &want);
    port
}

#[test]
fn nat_translates_tcp_both_ways_with_exact_checksums() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let port = open_tcp(&mut h, 40000);
    // The SYN-ACK arrives for the NAT's underlay route and reaches VM1, translated back.
    let synack = ipv4(
        SERVER,
        NAT_IP,
        6,
        60,
        &tcp_v4(SERVER, NAT_IP, 80, port, TCP_SYN | TCP_ACK, b""),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &synack),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    let want = ipv4(
        SERVER,
        vm1,
        6,
        60,
        &tcp_v4(SERVER, vm1, 80, 40000, TCP_SYN | TCP_ACK, b""),
    );
    assert_frame(&out[0].1, &to_vm4(VM1, &want));
    // The handshake's ACK and data go out with the same port.
    let ack = ipv4(
        vm1,
        SERVER,
        6,
        64,
        &tcp_v4(vm1, SERVER, 40000, 80, TCP_ACK, b"GET /"),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &ack)), router_underlay());
    let want = ipv4(
        NAT_IP,
        SERVER,
        6,
        63,
        &tcp_v4(NAT_IP, SERVER, port, 80, TCP_ACK, b"GET /"),
    );
    assert_frame(&inner, &want);
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}

/// A VM behind a TAP with checksum offload sends its SYN with a *partial* checksum (the field
/// holds the pseudo-header sum, `NEEDS_CSUM`): what leaves for the server carries the exact
/// complete checksum of the translated segment. (Found by tests/stateful.rs in dpservice: the
/// NAT's incremental update treated the partial sum as a complete checksum, and the server's
/// kernel dropped every SYN as TcpInCsumErrors.)
#[test]
fn nat_finishes_a_partial_checksum_from_an_offloading_vm() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let complete = tcp_v4(vm1, SERVER, 40000, 80, TCP_SYN, b"abc");
    let mut partial = complete.clone();
    // The pseudo-header sum, folded and not complemented, as Linux leaves it.
    let pseudo = !inet_checksum(&[&pseudo_v4(vm1, SERVER, 6, complete.len())]);
    partial[16..18].copy_from_slice(&pseudo.to_be_bytes());
    let offload = dp_pipeline::Offload {
        flags: dp_pipeline::Offload::NEEDS_CSUM,
        csum_start: 14 + 20,
        csum_offset: 16,
        ..dp_pipeline::Offload::NONE
    };
    let syn = ipv4(vm1, SERVER, 6, 64, &partial);
    let out = h.run1_offload(VM1, from_vm4(VM1, &syn), offload);
    let inner = one_encapsulated(&out, router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    assert!(
        (NAT_MIN..NAT_MAX).contains(&port),
        "port {port} in the range"
    );
    let want = ipv4(
        NAT_IP,
        SERVER,
        6,
        63,
        &tcp_v4(NAT_IP, SERVER, port, 80, TCP_SYN, b"abc"),
    );
    assert_frame(&inner, &want);
}

#[test]
fn nat_keeps_an_inside_endpoints_port_and_separates_destinations() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let first = open_tcp(&mut h, 40000);
    // The same inside endpoint to another destination: the same public port (stable hash).
    let other = Ipv4Addr::new(198, 51, 100, 11);
    let syn = ipv4(
        vm1,
        other,
        6,
        64,
        &tcp_v4(vm1, other, 40000, 80, TCP_SYN, b""),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &syn)), router_underlay());
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), first);
    // Another inside port to the first destination: another public port.
    let second = open_tcp(&mut h, 40001);
    assert_ne!(second, first);
    assert_eq!(h.worker.flows.len(), 3);
}

#[test]
fn nat_port_exhaustion_is_a_counted_drop() {
    let mut h = harness_with((NAT_MIN, NAT_MIN + 2));
    let vm1 = vm_ipv4(VM1);
    let mut ports = Vec::new();
    for sport in [40000, 40001] {
        let syn = ipv4(
            vm1,
            SERVER,
            6,
            64,
            &tcp_v4(vm1, SERVER, sport, 80, TCP_SYN, b""),
        );
        let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &syn)), router_underlay());
        ports.push(u16::from_be_bytes([inner[20], inner[21]]));
    }
    ports.sort_unstable();
    assert_eq!(ports, [NAT_MIN, NAT_MIN + 1]);
    let syn = ipv4(
        vm1,
        SERVER,
        6,
        64,
        &tcp_v4(vm1, SERVER, 40002, 80, TCP_SYN, b""),
    );
    assert!(h.run1(VM1, from_vm4(VM1, &syn)).is_empty());
    h.assert_single_drop(DropReason::NatPortsExhausted);
    // Another destination still has both ports.
    let other = Ipv4Addr::new(198, 51, 100, 11);
    let syn = ipv4(
        vm1,
        other,
        6,
        64,
        &tcp_v4(vm1, other, 40002, 80, TCP_SYN, b""),
    );
    assert_eq!(h.run1(VM1, from_vm4(VM1, &syn)).len(), 1);
    h.assert_conservation();
}

#[test]
fn nat_refuses_what_cannot_start_a_flow() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    // TCP without SYN from inside: no port is allocated for it.
    let ack = ipv4(
        vm1,
        SERVER,
        6,
        64,
        &tcp_v4(vm1, SERVER, 40000, 80, TCP_ACK, b"x"),
    );
    assert!(h.run1(VM1, from_vm4(VM1, &ack)).is_empty());
    h.assert_single_drop(DropReason::NoFlow);
    // Traffic from outside for the NAT address that is no flow's reply (a spoofed reply, a
    // scan): never delivered.
    let port = open_tcp(&mut h, 40000);
    let spoofed_src = Ipv4Addr::new(198, 51, 100, 66);
    for (src, dport) in [(spoofed_src, port), (SERVER, port + 1)] {
        let p = ipv4(
            src,
            NAT_IP,
            6,
            60,
            &tcp_v4(src, NAT_IP, 80, dport, TCP_SYN | TCP_ACK, b""),
        );
        let out = h.run1(
            PF0,
            from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &p),
        );
        assert!(out.is_empty(), "{out:?}");
    }
    assert_eq!(h.drops(DropReason::NatNoFlow), 2);
    // An RST never starts a flow.
    let rst = ipv4(
        vm1,
        vm_ipv4(VM2),
        6,
        64,
        &tcp_v4(vm1, vm_ipv4(VM2), 1, 2, TCP_RST, b""),
    );
    assert!(h.run1(VM1, from_vm4(VM1, &rst)).is_empty());
    assert_eq!(h.drops(DropReason::NoFlow), 2);
    h.assert_conservation();
}

#[test]
fn nat_translates_icmp_echo_identifiers() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let ping = ipv4(
        vm1,
        SERVER,
        1,
        64,
        &icmpv4(8, 0, [0x12, 0x34, 0, 1], b"ping"),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &ping)), router_underlay());
    let id = u16::from_be_bytes([inner[24], inner[25]]);
    assert!((NAT_MIN..NAT_MAX).contains(&id));
    let [a, b] = id.to_be_bytes();
    assert_frame(
        &inner,
        &ipv4(NAT_IP, SERVER, 1, 63, &icmpv4(8, 0, [a, b, 0, 1], b"ping")),
    );
    let pong = ipv4(SERVER, NAT_IP, 1, 60, &icmpv4(0, 0, [a, b, 0, 1], b"ping"));
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &pong),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let want = ipv4(
        SERVER,
        vm1,
        1,
        60,
        &icmpv4(0, 0, [0x12, 0x34, 0, 1], b"ping"),
    );
    assert_frame(&out[0].1, &to_vm4(VM1, &want));
    h.assert_conservation();
}

#[test]
fn icmp_errors_quoting_a_translated_packet_reach_the_inside_host() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let query = ipv4(
        vm1,
        SERVER,
        17,
        64,
        &udp_v4(vm1, SERVER, 40000, 53, b"query"),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &query)), router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    // A router answers "port unreachable", quoting the translated datagram.
    let error = ipv4(ROUTER4, NAT_IP, 1, 60, &icmpv4(3, 3, [0; 4], &inner));
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &error),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    // Outer destination and quoted source are the inside host's again, every checksum right.
    let quoted = ipv4(
        vm1,
        SERVER,
        17,
        63,
        &udp_v4(vm1, SERVER, 40000, 53, b"query"),
    );
    let want = ipv4(ROUTER4, vm1, 1, 60, &icmpv4(3, 3, [0; 4], &quoted));
    assert_frame(&out[0].1, &to_vm4(VM1, &want));
    // An error quoting a packet of no flow is dropped.
    let mut stray = inner.clone();
    stray[20..22].copy_from_slice(&(port + 1).to_be_bytes());
    let error = ipv4(ROUTER4, NAT_IP, 1, 60, &icmpv4(3, 3, [0; 4], &stray));
    assert!(h
        .run1(
            PF0,
            from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &error)
        )
        .is_empty());
    h.assert_single_drop(DropReason::IcmpErrorNoFlow);
}

#[test]
fn fragments_are_not_translated() {
    let mut h = harness();
    let vm1 = vm_ipv4(VM1);
    let mut frag = ipv4(
        vm1,
        SERVER,
        17,
        64,
        &udp_v4(vm1, SERVER, 40000, 53, b"first fragment"),
    );
    frag[6] = 0x20; // more fragments
    let c = inet_checksum(&[&{
        let mut h = frag[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert!(h.run1(VM1, from_vm4(VM1, &frag)).is_empty());
    h.assert_single_drop(DropReason::NatUnsupported);
}

#[test]
fn vip_translates_outbound_and_inbound_flows() {
    let mut h = harness();
    let vm2 = vm_ipv4(VM2);
    // Outbound: the VIP is the source.
    let q = ipv4(vm2, SERVER, 17, 64, &udp_v4(vm2, SERVER, 5353, 53, b"q"));
    let inner = one_encapsulated(&h.run1(VM2, from_vm4(VM2, &q)), router_underlay());
    assert_frame(
        &inner,
        &ipv4(VIP2, SERVER, 17, 63, &udp_v4(VIP2, SERVER, 5353, 53, b"q")),
    );
    let a = ipv4(SERVER, VIP2, 17, 60, &udp_v4(SERVER, VIP2, 53, 5353, b"a"));
    let out = h.run1(
        PF1,
        from_underlay(PF1, router_underlay(), vip_underlay(VM2), 4, &a),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let want = ipv4(SERVER, vm2, 17, 60, &udp_v4(SERVER, vm2, 53, 5353, b"a"));
    assert_frame(&out[0].1, &to_vm4(VM2, &want));
    // Inbound: a client connects to the VIP; the VM answers from the VIP.
    let client = Ipv4Addr::new(198, 51, 100, 77);
    let syn = ipv4(
        client,
        VIP2,
        6,
        60,
        &tcp_v4(client, VIP2, 33333, 22, TCP_SYN, b""),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), vip_underlay(VM2), 4, &syn),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let want = ipv4(
        client,
        vm2,
        6,
        60,
        &tcp_v4(client, vm2, 33333, 22, TCP_SYN, b""),
    );
    assert_frame(&out[0].1, &to_vm4(VM2, &want));
    let synack = ipv4(
        vm2,
        client,
        6,
        64,
        &tcp_v4(vm2, client, 22, 33333, TCP_SYN | TCP_ACK, b""),
    );
    let inner = one_encapsulated(&h.run1(VM2, from_vm4(VM2, &synack)), router_underlay());
    let want = ipv4(
        VIP2,
        client,
        6,
        63,
        &tcp_v4(VIP2, client, 22, 33333, TCP_SYN | TCP_ACK, b""),
    );
    assert_frame(&inner, &want);
    h.assert_conservation();
}

#[test]
fn a_vm_reaches_another_vms_vip_inside_the_vni() {
    let mut h = harness();
    let (vm1, vm2) = (vm_ipv4(VM1), vm_ipv4(VM2));
    // VM1 (which has a NAT) sends to VM2's VIP: destination NAT only, delivered locally.
    let q = ipv4(vm1, VIP2, 17, 64, &udp_v4(vm1, VIP2, 4000, 7, b"echo"));
    let out = h.run1(VM1, from_vm4(VM1, &q));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM2);
    let want = ipv4(vm1, vm2, 17, 63, &udp_v4(vm1, vm2, 4000, 7, b"echo"));
    assert_frame(&out[0].1, &to_vm4(VM2, &want));
    // VM2's answer comes from the VIP.
    let a = ipv4(vm2, vm1, 17, 64, &udp_v4(vm2, vm1, 7, 4000, b"echo"));
    let out = h.run1(VM2, from_vm4(VM2, &a));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    let want = ipv4(VIP2, vm1, 17, 63, &udp_v4(VIP2, vm1, 7, 4000, b"echo"));
    assert_frame(&out[0].1, &to_vm4(VM1, &want));
}

#[test]
fn removing_a_vip_closes_its_flows() {
    let mut h = harness();
    let vm2 = vm_ipv4(VM2);
    let q = ipv4(vm2, SERVER, 17, 64, &udp_v4(vm2, SERVER, 5353, 53, b"q"));
    assert_eq!(h.run1(VM2, from_vm4(VM2, &q)).len(), 1);
    h.ifaces[1].services.vip = None;
    h.republish();
    h.add_route_v4(
        100,
        Ipv4Addr::UNSPECIFIED,
        0,
        RouteTarget::Remote {
            vni: 100,
            underlay: router_underlay(),
            public: true,
        },
    );
    assert!(h.run1(VM2, from_vm4(VM2, &q)).is_empty());
    h.assert_single_drop(DropReason::NatGone);
    assert_eq!(h.worker.flows.len(), 0);
    // The next packet makes a new, untranslated flow.
    let inner = one_encapsulated(&h.run1(VM2, from_vm4(VM2, &q)), router_underlay());
    assert_frame(
        &inner,
        &ipv4(vm2, SERVER, 17, 63, &udp_v4(vm2, SERVER, 5353, 53, b"q")),
    );
}

#[test]
fn neighbor_nat_ranges_are_relayed_to_their_hypervisor() {
    let mut h = harness();
    std::sync::Arc::make_mut(&mut h.snapshot.neighbor_nats).insert(
        (100, u32::from(NAT_IP)),
        vec![NeighborNat {
            min_port: 2000,
            max_port: 3000,
            underlay: neighbor_underlay(),
        }],
    );
    let reply = ipv4(
        SERVER,
        NAT_IP,
        6,
        60,
        &tcp_v4(SERVER, NAT_IP, 80, 2500, TCP_ACK, b"data"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &reply),
    );
    let inner = one_encapsulated(&out, neighbor_underlay());
    assert_frame(&inner, &reply);
    let frame = &out[0].1;
    assert_eq!(
        &frame[14 + 8..14 + 24],
        &host_underlay().octets(),
        "outer source"
    );
    // Outside every range: dropped.
    let stray = ipv4(
        SERVER,
        NAT_IP,
        6,
        60,
        &tcp_v4(SERVER, NAT_IP, 80, 3000, TCP_ACK, b""),
    );
    assert!(h
        .run1(
            PF0,
            from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &stray)
        )
        .is_empty());
    h.assert_single_drop(DropReason::NatNoFlow);
    assert_eq!(h.worker.flows.len(), 0, "relaying keeps no state");
}

/// An IPv4 header as NAT64 writes it (RFC 7915: identification 0, DF set).
fn ipv4_df(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = ipv4(src, dst, proto, ttl, payload);
    p[4..8].copy_from_slice(&[0, 0, 0x40, 0]);
    p[10..12].copy_from_slice(&[0, 0]);
    let c = inet_checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn nat64_translates_an_ipv6_only_vms_flow_to_ipv4_and_back() {
    let mut h = harness();
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let syn = ipv6(
        vm1,
        dst,
        6,
        64,
        &tcp_v6(vm1, dst, 40000, 80, TCP_SYN, b"hello"),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &syn)), router_underlay());
    assert_eq!(inner[0] >> 4, 4, "IPv4 inside the tunnel");
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    assert!((NAT_MIN..NAT_MAX).contains(&port));
    let want = ipv4_df(
        NAT_IP,
        SERVER,
        6,
        63,
        &tcp_v4(NAT_IP, SERVER, port, 80, TCP_SYN, b"hello"),
    );
    assert_frame(&inner, &want);
    // The IPv4 answer becomes IPv6 from 64:ff9b::198.51.100.10 to the VM.
    let synack = ipv4(
        SERVER,
        NAT_IP,
        6,
        60,
        &tcp_v4(SERVER, NAT_IP, 80, port, TCP_SYN | TCP_ACK, b"hi"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &synack),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    let want = ipv6(
        dst,
        vm1,
        6,
        60,
        &tcp_v6(dst, vm1, 80, 40000, TCP_SYN | TCP_ACK, b"hi"),
    );
    assert_frame(&out[0].1, &to_vm6(VM1, &want));
    h.assert_conservation();
}

#[test]
fn nat64_translates_udp_and_echo() {
    let mut h = harness();
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let q = ipv6(vm1, dst, 17, 64, &udp_v6(vm1, dst, 5000, 53, b"q"));
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &q)), router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    assert_frame(
        &inner,
        &ipv4_df(
            NAT_IP,
            SERVER,
            17,
            63,
            &udp_v4(NAT_IP, SERVER, port, 53, b"q"),
        ),
    );
    let a = ipv4(
        SERVER,
        NAT_IP,
        17,
        60,
        &udp_v4(SERVER, NAT_IP, 53, port, b"a"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &a),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_frame(
        &out[0].1,
        &to_vm6(
            VM1,
            &ipv6(dst, vm1, 17, 60, &udp_v6(dst, vm1, 53, 5000, b"a")),
        ),
    );
    // Echo: ICMPv6 128 → ICMP 8 with a translated identifier, and back to 129.
    let ping = ipv6(
        vm1,
        dst,
        58,
        64,
        &icmpv6(vm1, dst, 128, 0, &[0x77, 0x77, 0, 1, b'p']),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &ping)), router_underlay());
    assert_eq!((inner[9], inner[20]), (1, 8), "ICMP echo request");
    let id = [inner[24], inner[25]];
    assert_frame(
        &inner,
        &ipv4_df(
            NAT_IP,
            SERVER,
            1,
            63,
            &icmpv4(8, 0, [id[0], id[1], 0, 1], b"p"),
        ),
    );
    let pong = ipv4(
        SERVER,
        NAT_IP,
        1,
        60,
        &icmpv4(0, 0, [id[0], id[1], 0, 1], b"p"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &pong),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    let want = ipv6(
        dst,
        vm1,
        58,
        60,
        &icmpv6(dst, vm1, 129, 0, &[0x77, 0x77, 0, 1, b'p']),
    );
    assert_frame(&out[0].1, &to_vm6(VM1, &want));
}

/// A TCPv6 superframe (segmentation offload) from an IPv6-only VM through NAT64: translated to
/// IPv4 with its offload request moved to the new TCP header, so the encapsulation passes it on
/// to be segmented (a request left 20 bytes off was refused and answered with "too big": bulk
/// TCP through NAT64 stalled).
#[test]
fn nat64_moves_a_superframes_offload_request() {
    let mut h = harness();
    // Overlay MTU 1280: the 1740-byte superframe must be segmented, not sent whole.
    h.config.underlay_mtu = 1320;
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let syn = ipv6(vm1, dst, 6, 64, &tcp_v6(vm1, dst, 40000, 80, TCP_SYN, b""));
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &syn)), router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    let data = vec![0x5a; 1700];
    let mut segment = tcp_v6(vm1, dst, 40000, 80, TCP_ACK, &data);
    let pseudo = !inet_checksum(&[&pseudo_v6(vm1, dst, 6, segment.len())]);
    segment[16..18].copy_from_slice(&pseudo.to_be_bytes());
    let offload = dp_pipeline::Offload {
        flags: dp_pipeline::Offload::NEEDS_CSUM,
        gso_type: dp_pipeline::Offload::GSO_TCPV6,
        gso_size: 1000,
        hdr_len: 14 + 40 + 20,
        csum_start: 14 + 40,
        csum_offset: 16,
    };
    let superframe = ipv6(vm1, dst, 6, 64, &segment);
    let out = h.run1_offload(VM1, from_vm6(VM1, &superframe), offload);
    let inner = one_encapsulated(&out, router_underlay());
    assert_eq!(
        inner.len(),
        20 + 20 + 1700,
        "passed on whole, to be segmented"
    );
    assert_eq!(inner[9], 6);
    assert_eq!(&inner[12..16], &NAT_IP.octets());
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), port);
    assert_eq!(h.total_drops(), 0, "{:?}", h.nonzero_drops());
}

/// The same with a 20 kB superframe in a large buffer, as a VM's TSO sends them.
#[test]
fn nat64_passes_a_large_superframe_on() {
    let mut h = harness();
    h.pool = dp_pipeline::BufferPool::with_large(64, 2048, 4, dp_pipeline::LARGE_DATA_ROOM);
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let syn = ipv6(vm1, dst, 6, 64, &tcp_v6(vm1, dst, 40000, 80, TCP_SYN, b""));
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &syn)), router_underlay());
    let port = u16::from_be_bytes([inner[20], inner[21]]);
    let data = vec![0x5a; 20_000];
    let mut segment = tcp_v6(vm1, dst, 40000, 80, TCP_ACK, &data);
    let pseudo = !inet_checksum(&[&pseudo_v6(vm1, dst, 6, segment.len())]);
    segment[16..18].copy_from_slice(&pseudo.to_be_bytes());
    let offload = dp_pipeline::Offload {
        flags: dp_pipeline::Offload::NEEDS_CSUM,
        gso_type: dp_pipeline::Offload::GSO_TCPV6,
        gso_size: 1348,
        hdr_len: 14 + 40 + 20,
        csum_start: 14 + 40,
        csum_offset: 16,
    };
    let frame = from_vm6(VM1, &ipv6(vm1, dst, 6, 64, &segment));
    let out = h.run1_large(VM1, frame, offload);
    assert_eq!(h.total_drops(), 0, "{:?}", h.nonzero_drops());
    let inner = one_encapsulated(&out, router_underlay());
    assert_eq!(inner.len(), 20 + 20 + 20_000);
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), port);
}

/// An IPv6 packet NAT64 would make too long for the underlay: ICMPv6 Packet Too Big to the VM
/// with the MTU that fits (an ICMPv4 error after the translation would not reach it).
#[test]
fn nat64_answers_packet_too_big_in_icmpv6() {
    let mut h = harness();
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let syn = ipv6(vm1, dst, 6, 64, &tcp_v6(vm1, dst, 40000, 80, TCP_SYN, b""));
    assert_eq!(h.run1(VM1, from_vm6(VM1, &syn)).len(), 1);
    // 1500 bytes of IPv6: 1480 of IPv4, more than the 1460 an encapsulated packet may have.
    let data = vec![7u8; 1500 - 40 - 20];
    let big = ipv6(
        vm1,
        dst,
        6,
        64,
        &tcp_v6(vm1, dst, 40000, 80, TCP_ACK, &data),
    );
    let out = h.run1(VM1, from_vm6(VM1, &big));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1, "back to the VM");
    let reply = &out[0].1;
    assert_eq!(&reply[12..14], &[0x86, 0xdd]);
    let icmp = &reply[14 + 40..];
    assert_eq!((icmp[0], icmp[1]), (2, 0), "Packet Too Big");
    assert_eq!(
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]),
        1460 + 20
    );
    assert_eq!(&reply[14 + 24..14 + 40], &vm1.octets(), "to the VM");
    // 1480 bytes of IPv6 fit (1460 of IPv4).
    let data = vec![7u8; 1480 - 40 - 20];
    let fits = ipv6(
        vm1,
        dst,
        6,
        64,
        &tcp_v6(vm1, dst, 40000, 80, TCP_ACK, &data),
    );
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &fits)), router_underlay());
    assert_eq!(inner.len(), 1460);
}

#[test]
fn an_echo_request_to_the_nat_address_is_answered() {
    // As dpservice's packet_relay: the reply goes back through the underlay to the sender.
    let mut h = harness();
    let request = ipv4(
        SERVER,
        NAT_IP,
        1,
        60,
        &icmpv4(8, 0, [0, 0x40, 0, 7], b"ping"),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &request),
    );
    let inner = one_encapsulated(&out, router_underlay());
    let want = ipv4(
        NAT_IP,
        SERVER,
        1,
        60,
        &icmpv4(0, 0, [0, 0x40, 0, 7], b"ping"),
    );
    assert_frame(&inner, &want);
    assert_eq!(
        &out[0].1[14 + 8..14 + 24],
        &host_underlay().octets(),
        "outer source"
    );
    // Other ICMP to the NAT address (an unsolicited echo reply) is not answered.
    let stray = ipv4(SERVER, NAT_IP, 1, 60, &icmpv4(0, 0, [0, 0x41, 0, 1], b""));
    assert!(h
        .run1(
            PF0,
            from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &stray)
        )
        .is_empty());
    h.assert_single_drop(DropReason::NatNoFlow);
    assert_eq!(h.worker.flows.len(), 0, "answering keeps no state");
}

#[test]
fn nat64_translates_an_echo_with_identifier_zero() {
    // scapy's ICMPv6EchoRequest() has identifier 0, which the flow key shares with non-echo
    // ICMPv6; the message type decides.
    let mut h = harness();
    let vm1 = vm_ipv6(VM1);
    let dst = nat64(SERVER);
    let ping = ipv6(vm1, dst, 58, 64, &icmpv6(vm1, dst, 128, 0, &[0, 0, 0, 1]));
    let inner = one_encapsulated(&h.run1(VM1, from_vm6(VM1, &ping)), router_underlay());
    let id = [inner[24], inner[25]];
    assert_frame(
        &inner,
        &ipv4_df(
            NAT_IP,
            SERVER,
            1,
            63,
            &icmpv4(8, 0, [id[0], id[1], 0, 1], b""),
        ),
    );
    let pong = ipv4(
        SERVER,
        NAT_IP,
        1,
        60,
        &icmpv4(0, 0, [id[0], id[1], 0, 1], b""),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM1), 4, &pong),
    );
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    let want = ipv6(dst, vm1, 58, 60, &icmpv6(dst, vm1, 129, 0, &[0, 0, 0, 1]));
    assert_frame(&out[0].1, &to_vm6(VM1, &want));
}
