//! Virtual services in the graph: a VM's IPv4 TCP/UDP to a virtual endpoint leaves as plain IPv6
//! to the service (exact bytes and checksums), the replies come back as IPv4; port mapping,
//! reuse, exhaustion and timeouts with the harness's clock; two workers.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use common::*;
use dp_packet::IpProtocol;
use dp_pipeline::affinity::{self, Rings};
use dp_pipeline::{DropReason, NodeId, WorkerCtx};
use dp_tables::{virtsvc_underlay, VirtsvcTcpState, VirtualService, VirtualServices};

const UDP_VIP: Ipv4Addr = Ipv4Addr::new(1, 2, 3, 4);
const UDP_VPORT: u16 = 5353;
const UDP_SPORT: u16 = 53;
const TCP_VIP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 8);
const TCP_VPORT: u16 = 4443;
const TCP_SPORT: u16 = 443;
const SECOND: u64 = 1_000_000_000;

fn udp_svc() -> Ipv6Addr {
    "2a00:da8:fff6::1".parse().unwrap()
}
fn tcp_svc() -> Ipv6Addr {
    "2a00:da8:fff6::2".parse().unwrap()
}
/// Our addresses towards the services: dpservice's, under the host's /64.
fn ul(i: u32) -> Ipv6Addr {
    virtsvc_underlay(host_underlay(), i)
}

fn services() -> VirtualServices {
    VirtualServices::new(vec![
        VirtualService {
            proto: IpProtocol::UDP,
            virtual_addr: UDP_VIP,
            virtual_port: UDP_VPORT,
            service_addr: udp_svc(),
            service_port: UDP_SPORT,
            underlay_addr: ul(0),
        },
        VirtualService {
            proto: IpProtocol::TCP,
            virtual_addr: TCP_VIP,
            virtual_port: TCP_VPORT,
            service_addr: tcp_svc(),
            service_port: TCP_SPORT,
            underlay_addr: ul(1),
        },
    ])
    .unwrap()
}

/// Worker `index` of `count` (single: 0 of 1) with the two services, routers known.
fn harness_as(worker: WorkerCtx) -> Harness {
    let svcs = Arc::new(services());
    let mut h = Harness::with(|_, c| c.virtual_services = Arc::clone(&svcs)).with_routers();
    h.worker = worker.with_virtual_services(&svcs);
    h
}

fn harness() -> Harness {
    harness_as(WorkerCtx::single())
}

/// An IPv4 packet with identification `id` (DF clear) and TOS `tos`.
fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    id: u16,
    tos: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4(src, dst, proto, ttl, payload);
    p[1] = tos;
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = inet_checksum(&[&p[..20]]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

/// VM `p` sends UDP `sport` → the UDP virtual endpoint.
fn vm_udp(p: u16, sport: u16, payload: &[u8]) -> Vec<u8> {
    let src = vm_ipv4(p);
    let udp = udp_v4(src, UDP_VIP, sport, UDP_VPORT, payload);
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV4,
        &ipv4(src, UDP_VIP, 17, 64, &udp),
    )
}

/// What leaves pf0 for the UDP service from mapped port `mapped`.
fn to_udp_service(mapped: u16, hop: u8, payload: &[u8]) -> Vec<u8> {
    let udp = udp_v6(ul(0), udp_svc(), mapped, UDP_SPORT, payload);
    eth(
        ROUTER_MAC0,
        own_mac(PF0),
        ETH_IPV6,
        &ipv6(ul(0), udp_svc(), 17, hop, &udp),
    )
}

/// The UDP service's reply to mapped port `mapped`, as the router delivers it on pf0.
fn udp_reply(mapped: u16, payload: &[u8]) -> Vec<u8> {
    let udp = udp_v6(udp_svc(), ul(0), UDP_SPORT, mapped, payload);
    eth(
        own_mac(PF0),
        ROUTER_MAC0,
        ETH_IPV6,
        &ipv6(udp_svc(), ul(0), 17, 61, &udp),
    )
}

fn vm_tcp(p: u16, sport: u16, flags: u8) -> Vec<u8> {
    let src = vm_ipv4(p);
    let tcp = tcp_v4(src, TCP_VIP, sport, TCP_VPORT, flags, b"");
    eth(
        own_mac(p),
        vm_mac(p),
        ETH_IPV4,
        &ipv4(src, TCP_VIP, 6, 64, &tcp),
    )
}

fn tcp_reply(mapped: u16, flags: u8) -> Vec<u8> {
    let tcp = tcp_v6(tcp_svc(), ul(1), TCP_SPORT, mapped, flags, b"");
    eth(
        own_mac(PF0),
        ROUTER_MAC0,
        ETH_IPV6,
        &ipv6(tcp_svc(), ul(1), 6, 61, &tcp),
    )
}

/// The mapped source port of a frame sent to a service.
fn mapped_port(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[54], frame[55]])
}

#[test]
fn udp_request_and_reply_are_translated_with_exact_checksums() {
    let mut h = harness();
    let out = h.run1(VM1, vm_udp(VM1, 12345, b"query"));
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    assert_eq!(out[0].0, PF0);
    // dpservice's first port is 1025; the TTL is carried as the hop limit.
    assert_frame(&out[0].1, &to_udp_service(1025, 64, b"query"));

    let out = h.run1(PF0, udp_reply(1025, b"answer!"));
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    assert_eq!(out[0].0, VM1);
    let udp = udp_v4(UDP_VIP, vm_ipv4(VM1), UDP_VPORT, 12345, b"answer!");
    let want = eth(
        vm_mac(VM1),
        own_mac(VM1),
        ETH_IPV4,
        &ipv4_with(UDP_VIP, vm_ipv4(VM1), 17, 61, 0, 0, &udp),
    );
    assert_frame(&out[0].1, &want);
    assert_eq!(h.counters.node_packets(NodeId::Virtsvc), 2);
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn tcp_handshake_both_directions_and_the_state_it_leaves() {
    let mut h = harness();
    let out = h.run1(VM1, vm_tcp(VM1, 40000, TCP_SYN));
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    let tcp = tcp_v6(ul(1), tcp_svc(), 1025, TCP_SPORT, TCP_SYN, b"");
    let want = eth(
        ROUTER_MAC0,
        own_mac(PF0),
        ETH_IPV6,
        &ipv6(ul(1), tcp_svc(), 6, 64, &tcp),
    );
    assert_frame(&out[0].1, &want);

    let out = h.run1(PF0, tcp_reply(1025, TCP_SYN | TCP_ACK));
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    let tcp = tcp_v4(
        TCP_VIP,
        vm_ipv4(VM1),
        TCP_VPORT,
        40000,
        TCP_SYN | TCP_ACK,
        b"",
    );
    let want = eth(
        vm_mac(VM1),
        own_mac(VM1),
        ETH_IPV4,
        &ipv4_with(TCP_VIP, vm_ipv4(VM1), 6, 61, 0, 0, &tcp),
    );
    assert_frame(&out[0].1, &want);
    let state = |h: &Harness| {
        let map = h.worker.virtsvc.get(1).unwrap();
        map.conn(map.slot_of(1025).unwrap()).unwrap().state
    };
    assert_eq!(state(&h), VirtsvcTcpState::SynAck);
    assert_eq!(h.run1(VM1, vm_tcp(VM1, 40000, TCP_ACK)).len(), 1);
    assert_eq!(state(&h), VirtsvcTcpState::Established);

    // Established: the mapping outlives the short timeout (an hour later a reply still passes).
    h.now_ns += 3600 * SECOND;
    assert_eq!(h.run1(PF0, tcp_reply(1025, TCP_ACK)).len(), 1);
    // A FIN from either side drops back to the short timeout at once.
    assert_eq!(h.run1(PF0, tcp_reply(1025, TCP_FIN | TCP_ACK)).len(), 1);
    assert_eq!(state(&h), VirtsvcTcpState::Transient);
    h.now_ns += 31 * SECOND;
    assert!(h.run1(PF0, tcp_reply(1025, TCP_ACK)).is_empty());
    assert_eq!(h.drops(DropReason::VirtsvcNoConnection), 1);
    h.assert_conservation();
}

#[test]
fn a_tcp_mapping_without_handshake_times_out_after_30s() {
    let mut h = harness();
    assert_eq!(h.run1(VM1, vm_tcp(VM1, 40001, TCP_SYN)).len(), 1);
    h.now_ns += 29 * SECOND;
    assert_eq!(h.run1(PF0, tcp_reply(1025, TCP_SYN | TCP_ACK)).len(), 1);
    // The reply refreshed it; 31 s after that it is gone.
    h.now_ns += 31 * SECOND;
    assert!(h.run1(PF0, tcp_reply(1025, TCP_ACK)).is_empty());
    // An RST drops an established connection back too.
    let mut h = harness();
    h.run1(VM1, vm_tcp(VM1, 40002, TCP_SYN));
    h.run1(PF0, tcp_reply(1025, TCP_SYN | TCP_ACK));
    h.run1(VM1, vm_tcp(VM1, 40002, TCP_ACK));
    h.run1(VM1, vm_tcp(VM1, 40002, TCP_RST));
    h.now_ns += 31 * SECOND;
    assert!(h.run1(PF0, tcp_reply(1025, TCP_ACK)).is_empty());
    assert_eq!(h.drops(DropReason::VirtsvcNoConnection), 1);
    h.assert_conservation();
}

#[test]
fn an_endpoint_keeps_its_port_and_others_get_the_next() {
    let mut h = harness();
    let ports: Vec<u16> = [
        (VM1, 1000),
        (VM1, 1001),
        (VM1, 1000),
        (VM2, 1000),
        (VM1, 1001),
    ]
    .iter()
    .map(|&(vm, sport)| {
        let out = h.run1(vm, vm_udp(vm, sport, b"x"));
        mapped_port(&out[0].1)
    })
    .collect();
    assert_eq!(ports, [1025, 1026, 1025, 1027, 1026]);
    // Replies go to the right VM endpoint.
    let out = h.run1(PF0, udp_reply(1027, b"y"));
    assert_eq!(out[0].0, VM2);
    assert_eq!(u16::from_be_bytes([out[0].1[36], out[0].1[37]]), 1000);
    // The services' tables are separate: the TCP service starts at 1025 too.
    let out = h.run1(VM1, vm_tcp(VM1, 1000, TCP_SYN));
    assert_eq!(mapped_port(&out[0].1), 1025);
    h.assert_conservation();
}

#[test]
fn exhausted_ports_are_a_counted_drop_until_connections_time_out() {
    let mut h = harness();
    let n = dp_tables::virtsvc::VIRTSVC_PORT_COUNT;
    // 64,512 endpoints (source ports of VM1 and VM2) take every port.
    let frames: Vec<_> = (0..n)
        .map(|i| {
            let vm = if i < 60000 { VM1 } else { VM2 };
            (vm, vm_udp(vm, (i % 60000) as u16 + 1, b""))
        })
        .collect();
    let out = h.run(&frames);
    assert_eq!(out.len(), n, "{:?}", h.nonzero_drops());
    let mut seen: Vec<u16> = out.iter().map(|(_, f)| mapped_port(f)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1024..=65535).collect::<Vec<u16>>());
    // One more: refused and counted, many times, without a panic.
    for _ in 0..3 {
        assert!(h.run1(VM2, vm_udp(VM2, 9999, b"")).is_empty());
    }
    assert_eq!(h.drops(DropReason::VirtsvcPortsExhausted), 3);
    // An endpoint seen again is no new connection: it keeps its port (1025), refreshed.
    h.now_ns += 10 * SECOND;
    let out = h.run1(VM1, vm_udp(VM1, 1, b""));
    assert_eq!(mapped_port(&out[0].1), 1025);
    // After the timeout the ports are reused, from where the search left off (1024 was the
    // last given) — skipping 1025, refreshed 21 s ago.
    h.now_ns += 21 * SECOND;
    let out = h.run1(VM2, vm_udp(VM2, 9999, b""));
    assert_eq!(mapped_port(&out[0].1), 1026);
    let stats = h.worker.virtsvc.get(0).unwrap().stats();
    assert_eq!((stats.exhausted, stats.reused), (3, 1));
    // The old connection's replies no longer reach its VM: they go to the new one.
    let out = h.run1(PF0, udp_reply(1026, b"z"));
    assert_eq!(out[0].0, VM2);
    assert_eq!(u16::from_be_bytes([out[0].1[36], out[0].1[37]]), 9999);
    h.assert_conservation();
}

#[test]
fn a_udp_datagram_without_checksum_gets_one_and_tos_and_ttl_are_carried() {
    let mut h = harness();
    let src = vm_ipv4(VM1);
    let mut udp = udp_v4(src, UDP_VIP, 7000, UDP_VPORT, b"nocsum");
    udp[6..8].copy_from_slice(&[0, 0]);
    let frame = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4_with(src, UDP_VIP, 17, 9, 1, 0xb8, &udp),
    );
    let out = h.run1(VM1, frame);
    let mut want = to_udp_service(1025, 9, b"nocsum");
    // Traffic class 0xb8 (EF).
    want[14] = 0x6b;
    want[15] = 0x80;
    assert_frame(&out[0].1, &want);
    // A reply without checksum stays without (IPv4 allows it); ids count up per worker.
    let mut reply = udp_reply(1025, b"r");
    reply[14 + 40 + 6..14 + 40 + 8].fill(0);
    let out = h.run1(PF0, reply);
    let mut udp = udp_v4(UDP_VIP, src, UDP_VPORT, 7000, b"r");
    udp[6..8].fill(0);
    let want = eth(
        vm_mac(VM1),
        own_mac(VM1),
        ETH_IPV4,
        &ipv4_with(UDP_VIP, src, 17, 61, 0, 0, &udp),
    );
    assert_frame(&out[0].1, &want);
    let out = h.run1(PF0, udp_reply(1025, b"r2"));
    assert_eq!(&out[0].1[18..20], &[0, 1]);
    h.assert_conservation();
}

#[test]
fn what_is_not_a_service_packet_is_handled_as_before_or_dropped_counted() {
    let mut h = harness();
    h.run1(VM1, vm_udp(VM1, 5000, b"x"));
    // A reply from the service to a port that has no connection.
    assert!(h.run1(PF0, udp_reply(2000, b"x")).is_empty());
    assert!(h.run1(PF0, udp_reply(80, b"x")).is_empty());
    assert_eq!(h.drops(DropReason::VirtsvcNoConnection), 2);
    // From another source port, or to the other service's underlay address: no service's.
    let mut wrong_port = udp_reply(1025, b"x");
    wrong_port[54..56].copy_from_slice(&54u16.to_be_bytes());
    let udp = udp_v6(udp_svc(), ul(1), UDP_SPORT, 1025, b"x");
    let wrong_dst = eth(
        own_mac(PF0),
        ROUTER_MAC0,
        ETH_IPV6,
        &ipv6(udp_svc(), ul(1), 17, 61, &udp),
    );
    assert!(h.run1(PF0, wrong_port).is_empty());
    assert!(h.run1(PF0, wrong_dst).is_empty());
    assert_eq!(h.drops(DropReason::UnderlayUnhandled), 2);
    // Malformed: UDP length disagreeing with the IP length, truncated TCP, a fragment.
    let src = vm_ipv4(VM1);
    let mut udp = udp_v4(src, UDP_VIP, 5001, UDP_VPORT, b"abcd");
    udp[4..6].copy_from_slice(&100u16.to_be_bytes());
    let bad_len = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(src, UDP_VIP, 17, 64, &udp),
    );
    let tcp = tcp_v4(src, TCP_VIP, 5002, TCP_VPORT, TCP_SYN, b"");
    let short_tcp = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(src, TCP_VIP, 6, 64, &tcp[..12]),
    );
    let udp = udp_v4(src, UDP_VIP, 5003, UDP_VPORT, b"abcd");
    let mut frag = ipv4(src, UDP_VIP, 17, 64, &udp);
    frag[6] = 0x20; // more fragments
    frag[10..12].fill(0);
    let c = inet_checksum(&[&frag[..20]]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    let frag = eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &frag);
    for f in [bad_len, short_tcp, frag] {
        assert!(h.run1(VM1, f).is_empty());
    }
    assert_eq!(h.drops(DropReason::VirtsvcMalformed), 3);
    // A truncated reply: the IPv6 payload length beyond the frame.
    let mut cut = udp_reply(1025, b"xyz");
    cut.truncate(cut.len() - 2);
    assert!(h.run1(PF0, cut).is_empty());
    assert_eq!(h.drops(DropReason::UnderlayMalformed), 1);
    // Other ports of the virtual address are routed as any packet (no route here).
    assert!(h
        .run1(VM1, {
            let udp = udp_v4(src, UDP_VIP, 5004, 9, b"");
            eth(
                own_mac(VM1),
                vm_mac(VM1),
                ETH_IPV4,
                &ipv4(src, UDP_VIP, 17, 64, &udp),
            )
        })
        .is_empty());
    assert_eq!(h.drops(DropReason::NoRoute), 1);
    h.assert_conservation();
}

#[test]
fn without_services_plain_udp_from_an_uplink_is_dropped_by_classify() {
    let mut h = Harness::new().with_routers();
    assert!(h.run1(PF0, udp_reply(1025, b"x")).is_empty());
    assert_eq!(
        h.counters
            .node_drops(Some(NodeId::Classify), DropReason::UnderlayUnhandled),
        1
    );
    h.assert_conservation();
}

#[test]
fn a_reply_for_a_vm_whose_interface_is_gone_frees_the_port() {
    let mut h = harness();
    h.run1(VM1, vm_udp(VM1, 5000, b"x"));
    h.ifaces.retain(|i| i.port != VM1);
    h.republish();
    assert!(h.run1(PF0, udp_reply(1025, b"x")).is_empty());
    assert_eq!(h.drops(DropReason::VirtsvcNoConnection), 1);
    let map = h.worker.virtsvc.get(0).unwrap();
    assert!(!map.conn(map.slot_of(1025).unwrap()).unwrap().in_use);
    h.assert_conservation();
}

/// Both sides of a two-worker mesh.
fn pair() -> (Harness, Harness) {
    let mut rings = affinity::mesh(2, affinity::RING_CAPACITY, vec![]);
    let b: Rings = rings.pop().unwrap();
    let a: Rings = rings.pop().unwrap();
    (
        harness_as(WorkerCtx::with_rings(a)),
        harness_as(WorkerCtx::with_rings(b)),
    )
}

#[test]
fn with_two_workers_each_connection_lives_on_one_and_replies_meet_it() {
    let (mut a, mut b) = pair();
    // Requests of 64 endpoints into worker 0; those of worker 1 cross.
    let frames: Vec<_> = (0..64u16)
        .map(|i| (VM1, vm_udp(VM1, 20000 + i, b"q")))
        .collect();
    let out_a = a.run(&frames);
    let out_b = b.run_handed_in();
    let handed = a.counters.handed_off();
    assert!(handed > 10 && handed < 54, "about half: {handed}");
    assert_eq!(out_a.len() + out_b.len(), 64);
    // Each worker maps only ports it owns.
    for (w, out) in [(0, &out_a), (1, &out_b)] {
        for (_, f) in out.iter() {
            assert_eq!(usize::from(mapped_port(f)) % 2, w);
        }
    }
    // Every reply arrives at worker 1; worker 0's go back to it and reach the VM.
    let replies: Vec<_> = out_a
        .iter()
        .chain(out_b.iter())
        .map(|(_, f)| (PF0, udp_reply(mapped_port(f), b"a")))
        .collect();
    let to_vm_b = b.run(&replies);
    let to_vm_a = a.run_handed_in();
    assert_eq!(to_vm_a.len() + to_vm_b.len(), 64);
    let mut dports: Vec<u16> = to_vm_a
        .iter()
        .chain(to_vm_b.iter())
        .map(|(p, f)| {
            assert_eq!(*p, VM1);
            u16::from_be_bytes([f[36], f[37]])
        })
        .collect();
    dports.sort_unstable();
    assert_eq!(dports, (20000..20064).collect::<Vec<_>>());
    assert_eq!(a.total_drops() + b.total_drops(), 0);
    // The buffers owed for what crossed come back at each side's next round.
    b.run_handed_in();
    a.run_handed_in();
    a.assert_conservation();
    b.assert_conservation();
}

#[test]
fn neighbor_solicitations_for_a_services_underlay_address_are_answered() {
    let mut h = harness();
    for (i, p) in [(0u32, PF0), (1, PF1)] {
        let target = ul(i);
        let o = target.octets();
        let group: Ipv6Addr = format!("ff02::1:ff{:02x}:{:02x}{:02x}", o[13], o[14], o[15])
            .parse()
            .unwrap();
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&o);
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&router_mac(p));
        let icmp = icmpv6(router_ll(), group, 135, 0, &body);
        let dst_mac = [0x33, 0x33, 0xff, o[13], o[14], o[15]];
        let ns = eth(
            dst_mac,
            router_mac(p),
            ETH_IPV6,
            &ipv6(router_ll(), group, 58, 255, &icmp),
        );
        let out = h.run1(p, ns);
        assert_eq!(out.len(), 1, "{target}: {:?}", h.nonzero_drops());
        let f = &out[0].1;
        assert_eq!(f[54], 136, "a neighbor advertisement");
        assert_eq!(&f[62..78], &o, "for {target}");
    }
    h.assert_conservation();
}

/// A DHCPDISCOVER from VM `p` (broadcast, from 0.0.0.0:68).
fn discover(p: u16) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0];
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(&vm_mac(p));
    b.extend_from_slice(&[0; 10 + 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, 1, 255]);
    let u = udp_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &b);
    eth(
        BROADCAST,
        vm_mac(p),
        ETH_IPV4,
        &ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, 64, &u),
    )
}

#[test]
fn dhcp_routes_the_link_local_virtual_services_via_the_gateway() {
    // As dpservice built with virtual services: 169.254.1.0/24 via the gateway after the
    // on-link /16 and the default route.
    let routes: &[u8] = &[
        121, 20, 16, 169, 254, 0, 0, 0, 0, 0, 169, 254, 0, 1, 24, 169, 254, 1, 169, 254, 0, 1,
    ];
    let mut h = harness();
    let out = h.run1(VM1, discover(VM1));
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    assert!(out[0].1.windows(routes.len()).any(|w| w == routes));
    // Without services the option is dpservice's plain one.
    let plain: &[u8] = &[121, 12, 16, 169, 254, 0, 0, 0, 0, 0, 169, 254, 0, 1, 1];
    let mut h = Harness::new();
    let out = h.run1(VM1, discover(VM1));
    assert!(out[0].1.windows(plain.len()).any(|w| w == plain));
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Valid service frames of both directions (mapped port 1025 exists once the first request
    /// went through), mutated, truncated or extended.
    fn frame() -> impl Strategy<Value = (u16, Vec<u8>)> {
        let templates: Vec<(u16, Vec<u8>)> = vec![
            (VM1, vm_udp(VM1, 1000, b"query")),
            (VM1, vm_tcp(VM1, 1001, TCP_SYN)),
            (PF0, udp_reply(1025, b"answer")),
            (PF0, tcp_reply(1025, TCP_SYN | TCP_ACK)),
            (PF1, udp_reply(1026, b"x")),
        ];
        let n = templates.len();
        (
            0..n,
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            prop_oneof![Just(None), (0usize..200).prop_map(Some)],
        )
            .prop_map(move |(which, edits, resize)| {
                let (port, mut f) = templates[which].clone();
                for (at, value) in edits {
                    let i = at.index(f.len());
                    f[i] = value;
                }
                if let Some(len) = resize {
                    f.resize(len, 0);
                }
                (port, f)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever arrives, nothing panics, every frame is sent or counted, and what leaves is
        /// well-formed: IPv6 to the router with an exact payload length and a TCP/UDP checksum
        /// that verifies when the input's did, or IPv4 to a VM with a valid header.
        #[test]
        fn hostile_service_frames_are_sent_well_formed_or_counted(
            batch in proptest::collection::vec(frame(), 1..8),
        ) {
            let mut h = harness();
            let mut all = vec![(VM1, vm_udp(VM1, 1000, b"query")), (VM1, vm_tcp(VM1, 1001, TCP_SYN))];
            all.extend(batch);
            let out = h.run(&all);
            h.assert_conservation();
            for (port, f) in &out {
                prop_assert_eq!(&f[6..12], &own_mac(*port)[..]);
                if *port == PF0 || *port == PF1 {
                    prop_assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETH_IPV6);
                    prop_assert_eq!(&f[0..6], &router_mac(*port)[..]);
                    prop_assert_eq!(usize::from(u16::from_be_bytes([f[18], f[19]])), f.len() - 54);
                    prop_assert!(f[20] == 6 || f[20] == 17);
                } else {
                    prop_assert_eq!(u16::from_be_bytes([f[12], f[13]]), ETH_IPV4);
                    prop_assert_eq!(inet_checksum(&[&f[14..34]]), 0);
                    prop_assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), f.len() - 14);
                }
            }
        }
    }
}
