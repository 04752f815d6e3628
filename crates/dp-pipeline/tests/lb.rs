//! Load balancing through the whole graph: packets from the underlay for a balancer go, unchanged
//! inside, to the target Maglev gives their flow — encapsulated towards a remote target or
//! delivered to a local one through its firewall — and stay there; removing a target moves only
//! its flows; echo requests are answered; ICMP errors follow the flow they quote; what a balancer
//! does not serve is a counted drop.
mod common;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use common::*;
use dp_packet::IpProtocol;
use dp_pipeline::DropReason;
use dp_tables::lb::lb_key;
use dp_tables::{
    FirewallAction, FirewallRule, IpNet, LbPort, LoadBalancer, PortRange, ProtocolFilter,
    RouteTarget, TrafficDirection, UnderlayTarget,
};

const VNI: u32 = 100;
const LB_IP: Ipv4Addr = Ipv4Addr::new(10, 20, 30, 40);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn lb_ip6() -> Ipv6Addr {
    "2001:db8:1b::40".parse().unwrap()
}

fn client6() -> Ipv6Addr {
    "2001:db8:c1::7".parse().unwrap()
}

fn lb_underlay() -> Ipv6Addr {
    "fc00:1::300:1".parse().unwrap()
}

fn lb6_underlay() -> Ipv6Addr {
    "fc00:1::300:2".parse().unwrap()
}

fn router_underlay() -> Ipv6Addr {
    "fc00::ffff:1".parse().unwrap()
}

fn remote_target(i: u16) -> Ipv6Addr {
    format!("fc00:2::d000:{i}:0:1").parse().unwrap()
}

/// VM1's target prefix underlay address (a target on this host).
fn local_target() -> Ipv6Addr {
    "fc00:1::400:2".parse().unwrap()
}

fn tcp80() -> LbPort {
    LbPort {
        proto: IpProtocol::TCP,
        port: 80,
    }
}

/// Publishes (or replaces) a balancer of VNI 100 at `ip` with `targets`, as the control plane
/// does: its underlay address, and a new balancers' generation.
fn set_lb(h: &mut Harness, ip: IpAddr, underlay: Ipv6Addr, ports: &[LbPort], targets: &[Ipv6Addr]) {
    let mut lb = LoadBalancer::new("lb".into(), VNI, ip, ports.to_vec(), underlay);
    lb.set_targets(targets.to_vec());
    Arc::make_mut(&mut h.snapshot.load_balancers).insert(lb_key(VNI, ip), Arc::new(lb));
    h.snapshot
        .set_underlay(underlay, UnderlayTarget::LoadBalancer { vni: VNI, ip });
    h.snapshot.lb_generation += 1;
}

fn harness() -> Harness {
    let mut h = Harness::new().with_routers();
    let public = RouteTarget::Remote {
        vni: VNI,
        underlay: router_underlay(),
        public: true,
    };
    h.add_route_v4(VNI, Ipv4Addr::UNSPECIFIED, 0, public);
    h
}

fn syn(sport: u16) -> Vec<u8> {
    ipv4(
        CLIENT,
        LB_IP,
        6,
        57,
        &tcp_v4(CLIENT, LB_IP, sport, 80, TCP_SYN, b""),
    )
}

fn ack(sport: u16) -> Vec<u8> {
    ipv4(
        CLIENT,
        LB_IP,
        6,
        57,
        &tcp_v4(CLIENT, LB_IP, sport, 80, TCP_ACK, b"GET /"),
    )
}

fn to_lb(inner: &[u8]) -> Vec<u8> {
    from_underlay(PF0, router_underlay(), lb_underlay(), 4, inner)
}

/// The one frame sent: out of an uplink, its outer destination and inner packet.
#[track_caller]
fn one_out(out: &[(u16, Vec<u8>)]) -> (Ipv6Addr, Vec<u8>) {
    assert_eq!(out.len(), 1, "one frame out: {out:?}");
    let (port, frame) = &out[0];
    assert!(*port == PF0 || *port == PF1, "out of an uplink: {port}");
    let dst: [u8; 16] = frame[14 + 24..14 + 40].try_into().unwrap();
    (Ipv6Addr::from(dst), inner_of(frame).to_vec())
}

#[test]
fn flows_go_unchanged_to_a_maglev_target_and_stay_there() {
    let mut h = harness();
    let targets = [remote_target(1), remote_target(2)];
    set_lb(&mut h, LB_IP.into(), lb_underlay(), &[tcp80()], &targets);
    let mut per_target: HashMap<Ipv6Addr, u32> = HashMap::new();
    for sport in 40_000..40_200u16 {
        let (target, inner) = one_out(&h.run1(PF0, to_lb(&syn(sport))));
        // Unchanged inside: addresses, ports, TTL and checksums as the client sent them.
        assert_eq!(inner, syn(sport));
        assert!(targets.contains(&target), "{target}");
        // The flow's next packets follow it.
        let (again, inner) = one_out(&h.run1(PF0, to_lb(&ack(sport))));
        assert_eq!((again, inner), (target, ack(sport)));
        *per_target.entry(target).or_default() += 1;
    }
    // 200 flows over two targets: each gets a fair share.
    assert_eq!(per_target.len(), 2);
    assert!(per_target.values().all(|&n| n >= 70), "{per_target:?}");
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn ipv6_flows_are_balanced_too() {
    let mut h = harness();
    set_lb(
        &mut h,
        lb_ip6().into(),
        lb6_underlay(),
        &[LbPort {
            proto: IpProtocol::UDP,
            port: 8080,
        }],
        &[remote_target(7)],
    );
    let q = ipv6(
        client6(),
        lb_ip6(),
        17,
        50,
        &udp_v6(client6(), lb_ip6(), 5000, 8080, b"ping"),
    );
    let out = h.run1(
        PF1,
        from_underlay(PF1, router_underlay(), lb6_underlay(), 41, &q),
    );
    let (target, inner) = one_out(&out);
    assert_eq!((target, inner), (remote_target(7), q));
    h.assert_conservation();
}

#[test]
fn removing_a_target_moves_only_its_flows() {
    let mut h = harness();
    let targets: Vec<_> = (1..=4).map(remote_target).collect();
    set_lb(&mut h, LB_IP.into(), lb_underlay(), &[tcp80()], &targets);
    let flows: Vec<u16> = (20_000..20_400).collect();
    let before: HashMap<u16, Ipv6Addr> = flows
        .iter()
        .map(|&p| (p, one_out(&h.run1(PF0, to_lb(&syn(p)))).0))
        .collect();
    let removed = remote_target(3);
    let remaining: Vec<_> = targets.iter().copied().filter(|&t| t != removed).collect();
    set_lb(&mut h, LB_IP.into(), lb_underlay(), &[tcp80()], &remaining);
    let mut moved = 0;
    for &p in &flows {
        let (after, inner) = one_out(&h.run1(PF0, to_lb(&ack(p))));
        assert_eq!(inner, ack(p));
        if before[&p] == removed {
            assert_ne!(after, removed);
            moved += 1;
        } else {
            assert_eq!(after, before[&p], "flow {p} kept its target");
        }
    }
    assert!(moved > 40, "the removed target had its share: {moved}");
    // The moved flows stay on their new target.
    for &p in &flows {
        let (again, _) = one_out(&h.run1(PF0, to_lb(&ack(p))));
        assert_ne!(again, removed);
    }
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn echo_requests_to_a_balancer_are_answered() {
    let mut h = harness();
    set_lb(&mut h, LB_IP.into(), lb_underlay(), &[tcp80()], &[]);
    let request = ipv4(
        CLIENT,
        LB_IP,
        1,
        60,
        &icmpv4(8, 0, [0x12, 0x34, 0, 1], b"abc"),
    );
    let (dst, inner) = one_out(&h.run1(PF0, to_lb(&request)));
    assert_eq!(dst, router_underlay(), "back to the request's outer source");
    assert_frame(
        &inner,
        &ipv4(
            LB_IP,
            CLIENT,
            1,
            60,
            &icmpv4(0, 0, [0x12, 0x34, 0, 1], b"abc"),
        ),
    );
    // ICMPv6 to an IPv6 balancer.
    set_lb(&mut h, lb_ip6().into(), lb6_underlay(), &[tcp80()], &[]);
    let request = ipv6(
        client6(),
        lb_ip6(),
        58,
        60,
        &icmpv6(client6(), lb_ip6(), 128, 0, &[0, 7, 0, 1, b'x']),
    );
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), lb6_underlay(), 41, &request),
    );
    let (dst, inner) = one_out(&out);
    assert_eq!(dst, router_underlay());
    assert_frame(
        &inner,
        &ipv6(
            lb_ip6(),
            client6(),
            58,
            60,
            &icmpv6(lb_ip6(), client6(), 129, 0, &[0, 7, 0, 1, b'x']),
        ),
    );
    // Other ICMP starts nothing.
    let reply = ipv4(
        CLIENT,
        LB_IP,
        1,
        60,
        &icmpv4(0, 0, [0x12, 0x34, 0, 1], b"abc"),
    );
    assert!(h.run1(PF0, to_lb(&reply)).is_empty());
    h.assert_single_drop(DropReason::LbPortClosed);
    h.assert_conservation();
}

#[test]
fn icmp_errors_reach_the_target_of_the_flow_they_quote() {
    let mut h = harness();
    let targets: Vec<_> = (1..=8).map(remote_target).collect();
    set_lb(
        &mut h,
        LB_IP.into(),
        lb_underlay(),
        &[LbPort {
            proto: IpProtocol::TCP,
            port: 8080,
        }],
        &targets,
    );
    for sport in 8900..8940u16 {
        // "Fragmentation needed" about the target's answer (LB_IP:8080 → client), for a flow
        // this host never saw.
        let quoted = ipv4(
            LB_IP,
            CLIENT,
            6,
            64,
            &tcp_v4(LB_IP, CLIENT, 8080, sport, TCP_SYN | TCP_ACK, b""),
        );
        let error = ipv4(
            CLIENT,
            LB_IP,
            1,
            60,
            &icmpv4(3, 4, [0, 0, 0x05, 0xdc], &quoted[..28]),
        );
        let (error_target, inner) = one_out(&h.run1(PF0, to_lb(&error)));
        assert_eq!(inner, error);
        // The flow itself goes to the same target.
        let syn = ipv4(
            CLIENT,
            LB_IP,
            6,
            57,
            &tcp_v4(CLIENT, LB_IP, sport, 8080, TCP_SYN, b""),
        );
        let (flow_target, _) = one_out(&h.run1(PF0, to_lb(&syn)));
        assert_eq!(error_target, flow_target);
        // And once the flow is known, its errors follow the flow.
        let (again, _) = one_out(&h.run1(PF0, to_lb(&error)));
        assert_eq!(again, flow_target);
    }
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn what_a_balancer_does_not_serve_is_dropped_and_counted() {
    let mut h = harness();
    set_lb(&mut h, LB_IP.into(), lb_underlay(), &[tcp80()], &[]);
    // No target yet.
    assert!(h.run1(PF0, to_lb(&syn(1000))).is_empty());
    assert_eq!(h.drops(DropReason::LbNoTarget), 1);
    set_lb(
        &mut h,
        LB_IP.into(),
        lb_underlay(),
        &[tcp80()],
        &[remote_target(1)],
    );
    // A port it does not serve, and UDP on the TCP port.
    let other = ipv4(
        CLIENT,
        LB_IP,
        6,
        57,
        &tcp_v4(CLIENT, LB_IP, 1001, 81, TCP_SYN, b""),
    );
    let udp = ipv4(
        CLIENT,
        LB_IP,
        17,
        57,
        &udp_v4(CLIENT, LB_IP, 1002, 80, b"x"),
    );
    assert!(h
        .run(&[(PF0, to_lb(&other)), (PF0, to_lb(&udp))])
        .is_empty());
    assert_eq!(h.drops(DropReason::LbPortClosed), 2);
    // An inner destination that is no balancer of the VNI.
    let elsewhere = ipv4(
        CLIENT,
        Ipv4Addr::new(10, 20, 30, 41),
        6,
        57,
        &tcp_v4(
            CLIENT,
            Ipv4Addr::new(10, 20, 30, 41),
            1003,
            80,
            TCP_SYN,
            b"",
        ),
    );
    assert!(h.run1(PF0, to_lb(&elsewhere)).is_empty());
    assert_eq!(h.drops(DropReason::DecapInnerNotForTarget), 1);
    // A truncated inner packet.
    let mut short = syn(1004);
    short.truncate(30);
    assert!(h.run1(PF0, to_lb(&short)).is_empty());
    assert_eq!(h.total_drops(), 5);
    h.assert_conservation();
}

/// VM1 as a target on this host: its target prefix (the balancer's address) and the prefix's
/// underlay address, as the control plane publishes them; VM1 also has a NAT.
fn make_vm1_a_local_target(h: &mut Harness) {
    let mut vm1 = h.ifaces[0].clone();
    vm1.prefixes_v4.push((LB_IP, 32));
    // Its NAT must not touch the answers of balanced flows.
    vm1.services.nat = Some(dp_tables::NatRange {
        ip: Ipv4Addr::new(203, 0, 113, 1),
        min_port: 1000,
        max_port: 1100,
    });
    h.ifaces[0] = vm1.clone();
    h.snapshot.set_iface(VM1, Some(Arc::new(vm1)));
    h.snapshot.set_underlay(
        local_target(),
        UnderlayTarget::Iface {
            port: VM1,
            vni: VNI,
        },
    );
}

fn ingress_tcp(port: u16) -> FirewallRule {
    let any = IpNet {
        addr: 0,
        len: 0,
        is_v6: false,
    };
    FirewallRule {
        id: format!("tcp{port}"),
        direction: TrafficDirection::Ingress,
        action: FirewallAction::Accept,
        priority: 100,
        src: any,
        dst: any,
        filter: ProtocolFilter::Tcp {
            src: PortRange::ANY,
            dst: PortRange { lo: port, hi: port },
        },
    }
}

#[test]
fn a_local_target_gets_its_flows_directly_through_its_firewall() {
    let mut h = harness();
    make_vm1_a_local_target(&mut h);
    set_lb(
        &mut h,
        LB_IP.into(),
        lb_underlay(),
        &[tcp80()],
        &[local_target()],
    );
    h.set_firewall(VM1, vec![ingress_tcp(80)]);
    let out = h.run1(PF0, to_lb(&syn(5555)));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    assert_frame(
        &out[0].1,
        &eth(vm_mac(VM1), own_mac(VM1), ETH_IPV4, &syn(5555)),
    );
    // The VM answers its client from the balancer's address (its target prefix), routed out.
    let synack = ipv4(
        LB_IP,
        CLIENT,
        6,
        64,
        &tcp_v4(LB_IP, CLIENT, 80, 5555, TCP_SYN | TCP_ACK, b""),
    );
    let out = h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &synack));
    let (dst, inner) = one_out(&out);
    assert_eq!(dst, router_underlay());
    // Routed (TTL decremented), not translated.
    let want = ipv4(
        LB_IP,
        CLIENT,
        6,
        63,
        &tcp_v4(LB_IP, CLIENT, 80, 5555, TCP_SYN | TCP_ACK, b""),
    );
    assert_frame(&inner, &want);
    assert_eq!(h.total_drops(), 0);
    // A firewall that does not let port 80 in refuses the balanced flow.
    h.set_firewall(VM1, vec![ingress_tcp(443)]);
    assert!(h.run1(PF0, to_lb(&syn(5556))).is_empty());
    h.assert_single_drop(DropReason::FirewallDenied);
    h.assert_conservation();
}

#[test]
fn the_sweep_removes_flows_of_a_removed_balancer() {
    let mut h = harness();
    set_lb(
        &mut h,
        LB_IP.into(),
        lb_underlay(),
        &[tcp80()],
        &[remote_target(1)],
    );
    let mut seen = HashSet::new();
    for p in 0..50u16 {
        seen.insert(one_out(&h.run1(PF0, to_lb(&syn(30_000 + p)))).0);
    }
    assert_eq!(seen.len(), 1);
    assert_eq!(h.worker.flows.len(), 50);
    Arc::make_mut(&mut h.snapshot.load_balancers).clear();
    h.snapshot.lb_generation += 1;
    h.tick_after_ms(200);
    assert_eq!(h.worker.flows.len(), 0, "the balancer's flows are gone");
}

#[test]
fn a_nated_client_of_this_host_reaches_a_local_target_through_the_router() {
    // dpservice's test_nat_to_lb_nat: VM2 (NAT) → balancer → router → back to the balancer
    // → VM1 (a target on this host); VM1's answer is VM2's flow's reply.
    // Both VMs share VM1's NAT address (other ports), as in dpservice's test.
    let nat_ip = Ipv4Addr::new(203, 0, 113, 1);
    let mut h = harness();
    make_vm1_a_local_target(&mut h);
    h.set_firewall(VM1, vec![ingress_tcp(80)]);
    let mut vm2 = h.ifaces[1].clone();
    vm2.services.nat = Some(dp_tables::NatRange {
        ip: nat_ip,
        min_port: 400,
        max_port: 402,
    });
    h.snapshot.set_iface(VM2, Some(Arc::new(vm2)));
    h.snapshot.set_underlay(
        nat_underlay(VM2),
        UnderlayTarget::Nat {
            port: VM2,
            vni: VNI,
        },
    );
    set_lb(
        &mut h,
        LB_IP.into(),
        lb_underlay(),
        &[tcp80()],
        &[local_target()],
    );
    let vm2_ip = vm_ipv4(VM2);
    let syn = ipv4(
        vm2_ip,
        LB_IP,
        6,
        64,
        &tcp_v4(vm2_ip, LB_IP, 2400, 80, TCP_SYN, b""),
    );
    let (dst, natted) = one_out(&h.run1(VM2, eth(own_mac(VM2), vm_mac(VM2), ETH_IPV4, &syn)));
    assert_eq!(dst, router_underlay());
    let nat_port = u16::from_be_bytes([natted[20], natted[21]]);
    assert!((400..402).contains(&nat_port));
    // The router sends it back to the balancer; VM1 gets it as the router sent it.
    let out = h.run1(PF0, to_lb(&natted));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    assert_eq!(&out[0].1[14..], &natted[..]);
    // VM1 answers the NAT address: routed to the router (not taken for VM2's flow's reply
    // on this host), which sends it to the NAT's underlay address: VM2's reply, translated.
    let synack = ipv4(
        LB_IP,
        nat_ip,
        6,
        64,
        &tcp_v4(LB_IP, nat_ip, 80, nat_port, TCP_SYN | TCP_ACK, b""),
    );
    let (dst, routed) = one_out(&h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV4, &synack)));
    assert_eq!(dst, router_underlay());
    let mut want = synack.clone();
    want[8] = 63;
    assert_eq!(&routed[12..], &want[12..], "routed untranslated");
    let out = h.run1(
        PF0,
        from_underlay(PF0, router_underlay(), nat_underlay(VM2), 4, &routed),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM2);
    let want = ipv4(
        LB_IP,
        vm2_ip,
        6,
        63,
        &tcp_v4(LB_IP, vm2_ip, 80, 2400, TCP_SYN | TCP_ACK, b""),
    );
    assert_frame(&out[0].1, &eth(vm_mac(VM2), own_mac(VM2), ETH_IPV4, &want));
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}
