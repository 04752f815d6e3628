//! `--conntrack stateful`: traffic between interfaces that have no firewall rule, no VIP and no
//! NAT is forwarded without a flow — locally, encapsulated and decapsulated, over IPv4 and IPv6
//! — and byte for byte as a tracked packet would be; whatever a stateful service could apply
//! to (a rule on either end, a VIP or a NAT on the sender, an alias source, a VIP as
//! destination) is still tracked, in a batch of both kinds too, and on a route reused from
//! another sender's packet; a rule added later decides an
//! untracked connection's next packet; and `--conntrack all` (the default) tracks everything.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::{ConntrackMode, DpConfig, DropReason};
use dp_tables::{
    FirewallAction, FirewallRule, IpNet, NatRange, PortRange, ProtocolFilter, RouteTarget,
    TrafficDirection,
};

const REMOTE_V4: Ipv4Addr = Ipv4Addr::new(10, 100, 2, 1);
const PUBLIC_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);

fn remote_v6() -> Ipv6Addr {
    "2000:100:2::1".parse().unwrap()
}

fn stateful(config: &mut DpConfig) {
    config.conntrack = ConntrackMode::Stateful;
}

/// A harness in `--conntrack stateful` after `tweak`, with routes to another hypervisor for
/// 10.100.2.0/24 and 2000:100:2::/64 and a public default route in VNI 100.
fn harness(tweak: impl FnOnce(&mut Vec<dp_tables::Iface>)) -> Harness {
    let mut h = Harness::with(|ifaces, config| {
        stateful(config);
        tweak(ifaces);
    })
    .with_routers();
    let remote = RouteTarget::Remote {
        vni: 100,
        underlay: remote_underlay(),
        public: false,
    };
    h.add_route_v4(100, Ipv4Addr::new(10, 100, 2, 0), 24, remote);
    h.add_route_v6(100, "2000:100:2::".parse().unwrap(), 64, remote);
    h.add_route_v4(
        100,
        Ipv4Addr::UNSPECIFIED,
        0,
        RouteTarget::Remote {
            vni: 100,
            underlay: remote_underlay(),
            public: true,
        },
    );
    h
}

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
    common::udp4(src, dst, sport, dport, ttl, b"untracked")
}

/// The single frame sent, out of an uplink; its inner packet.
#[track_caller]
fn one_encapsulated(out: &[(u16, Vec<u8>)]) -> Vec<u8> {
    assert_eq!(out.len(), 1, "one frame out: {out:?}");
    let (port, frame) = &out[0];
    assert!(*port == PF0 || *port == PF1, "sent out of an uplink");
    inner_of(frame).to_vec()
}

fn udp_rule(id: &str, direction: TrafficDirection, dst_port: u16) -> FirewallRule {
    FirewallRule {
        id: id.into(),
        direction,
        action: FirewallAction::Accept,
        priority: 1,
        src: IpNet {
            addr: 0,
            len: 0,
            is_v6: false,
        },
        dst: IpNet {
            addr: 0,
            len: 0,
            is_v6: false,
        },
        filter: ProtocolFilter::Udp {
            src: PortRange::ANY,
            dst: PortRange {
                lo: dst_port,
                hi: dst_port,
            },
        },
    }
}

#[test]
fn local_traffic_between_stateless_interfaces_leaves_no_flow() {
    let mut h = harness(|_| {});
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    // TCP without a handshake passes too: nothing here could refuse it.
    let (a, b) = (vm_ipv4(VM1), vm_ipv4(VM2));
    assert!(delivers(
        &mut h,
        VM1,
        VM2,
        &tcp4(a, b, 40001, 80, TCP_ACK, 64),
        &tcp4(a, b, 40001, 80, TCP_ACK, 63)
    ));
    assert_eq!(h.worker.flows.len(), 0);
    assert_eq!(h.worker.flows.stats().created, 0);
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn encapsulated_and_decapsulated_traffic_is_untracked_too() {
    let mut h = harness(|_| {});
    let vm1 = vm_ipv4(VM1);
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &udp4(vm1, REMOTE_V4, 40000, 53, 64))));
    assert_frame(&inner, &udp4(vm1, REMOTE_V4, 40000, 53, 63));
    let reply = udp4(REMOTE_V4, vm1, 53, 40000, 63);
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &reply),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    assert_frame(&out[0].1, &to_vm4(VM1, &reply));
    // IPv6 from the VM's own address.
    let v6 = vm_ipv6(VM1);
    let six = ipv6(
        v6,
        remote_v6(),
        17,
        64,
        &udp_v6(v6, remote_v6(), 8000, 7000, b"6"),
    );
    let inner = one_encapsulated(&h.run1(VM1, eth(own_mac(VM1), vm_mac(VM1), ETH_IPV6, &six)));
    let mut want = six.clone();
    want[7] = 63;
    assert_frame(&inner, &want);
    assert_eq!(h.worker.flows.len(), 0);
    h.assert_conservation();
}

#[test]
fn a_batch_of_tracked_and_untracked_packets_is_decided_packet_by_packet() {
    // VM2 has a rule (its traffic is tracked), VM4 none; a public route from VM1 (no NAT) needs
    // no flow either.
    let mut h = harness(|_| {});
    h.set_firewall(VM2, vec![udp_rule("dns", TrafficDirection::Ingress, 53)]);
    let vm1 = vm_ipv4(VM1);
    let dst_of = |i: u16| match i % 3 {
        0 => vm_ipv4(VM2),
        1 => vm_ipv4(VM4),
        _ => PUBLIC_V4,
    };
    let frames: Vec<(u16, Vec<u8>)> = (0..40u16)
        .map(|i| (VM1, from_vm4(VM1, &udp4(vm1, dst_of(i), 40000 + i, 53, 64))))
        .collect();
    let out = h.run(&frames);
    let count = |port: u16| out.iter().filter(|(p, _)| *p == port).count();
    assert_eq!(
        (count(VM2), count(VM4), count(PF0) + count(PF1)),
        (14, 13, 13)
    );
    // Every packet arrived as it was sent (in order, TTL 63).
    let at_vm4: Vec<&Vec<u8>> = out
        .iter()
        .filter(|(p, _)| *p == VM4)
        .map(|(_, f)| f)
        .collect();
    for (frame, i) in at_vm4.iter().zip((0..40u16).filter(|i| i % 3 == 1)) {
        assert_frame(
            frame,
            &to_vm4(VM4, &udp4(vm1, vm_ipv4(VM4), 40000 + i, 53, 63)),
        );
    }
    let at_vm2: Vec<&Vec<u8>> = out
        .iter()
        .filter(|(p, _)| *p == VM2)
        .map(|(_, f)| f)
        .collect();
    for (frame, i) in at_vm2.iter().zip((0..40u16).filter(|i| i % 3 == 0)) {
        assert_frame(
            frame,
            &to_vm4(VM2, &udp4(vm1, vm_ipv4(VM2), 40000 + i, 53, 63)),
        );
    }
    // Only the packets to VM2 made flows.
    assert_eq!(h.worker.flows.len(), 14);
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn a_route_reused_within_a_batch_is_decided_for_each_sender() {
    // VM1 has no rule, VM2 an egress rule. In one batch both send, in turns, to VM4 and to the
    // remote network: each packet takes the route of the one before it (the same destination)
    // from the other sender as often as from its own, and only VM2's packets make flows.
    let mut h = harness(|_| {});
    h.set_firewall(VM2, vec![udp_rule("dns", TrafficDirection::Egress, 53)]);
    let remote = Ipv4Addr::new(10, 100, 2, 7);
    let frames: Vec<(u16, Vec<u8>)> = (0..32u16)
        .map(|i| {
            let from = if matches!(i % 4, 0 | 3) { VM1 } else { VM2 };
            let dst = if (i / 4) % 2 == 0 {
                vm_ipv4(VM4)
            } else {
                remote
            };
            let frame = udp4(vm_ipv4(from), dst, 40000 + i, 53, 64);
            (from, from_vm4(from, &frame))
        })
        .collect();
    let out = h.run(&frames);
    let at_vm4 = out.iter().filter(|(p, _)| *p == VM4).count();
    let encapsulated = out.iter().filter(|(p, _)| *p == PF0 || *p == PF1).count();
    assert_eq!((at_vm4, encapsulated), (16, 16));
    assert_eq!(h.worker.flows.len(), 16, "one flow per packet of VM2");
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn what_a_stateful_service_could_apply_to_is_tracked() {
    // A rule on the receiver (even of the other direction) tracks local traffic to it.
    let mut h = harness(|_| {});
    h.set_firewall(VM2, vec![udp_rule("out", TrafficDirection::Egress, 9)]);
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert_eq!(h.worker.flows.len(), 1);
    // ... and so does one on the sender.
    let mut h = harness(|_| {});
    h.set_firewall(VM1, vec![udp_rule("in", TrafficDirection::Ingress, 9)]);
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert_eq!(h.worker.flows.len(), 1);
    // A VIP or a NAT on the sender (its replies may be translated flows).
    for nat in [false, true] {
        let mut h = harness(|ifaces| {
            if nat {
                ifaces[0].services.nat = Some(NatRange {
                    ip: Ipv4Addr::new(203, 0, 113, 1),
                    min_port: 1024,
                    max_port: 2048,
                });
            } else {
                ifaces[0].services.vip = Some(Ipv4Addr::new(203, 0, 113, 1));
            }
        });
        assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
        assert_eq!(h.worker.flows.len(), 1, "nat: {nat}");
    }
    // A public route from a VM with a NAT: source NAT.
    let mut h = harness(|ifaces| {
        ifaces[0].services.nat = Some(NatRange {
            ip: Ipv4Addr::new(203, 0, 113, 1),
            min_port: 1024,
            max_port: 2048,
        });
    });
    let vm1 = vm_ipv4(VM1);
    let inner = one_encapsulated(&h.run1(VM1, from_vm4(VM1, &udp4(vm1, PUBLIC_V4, 40000, 53, 64))));
    assert_eq!(&inner[12..16], &[203, 0, 113, 1], "translated source");
    assert_eq!(h.worker.flows.len(), 1);
    // A source that is an alias prefix of the VM, not its address.
    let mut h = harness(|ifaces| {
        ifaces[0].prefixes_v4 = vec![(Ipv4Addr::new(192, 168, 7, 0), 24)];
    });
    let alias = Ipv4Addr::new(192, 168, 7, 1);
    let b = vm_ipv4(VM2);
    assert!(delivers(
        &mut h,
        VM1,
        VM2,
        &udp4(alias, b, 40000, 5000, 64),
        &udp4(alias, b, 40000, 5000, 63)
    ));
    assert_eq!(h.worker.flows.len(), 1);
    // A VIP of the VNI as destination, on a route that is not public: destination NAT.
    let vip2 = Ipv4Addr::new(10, 100, 2, 77);
    let mut h = harness(|ifaces| ifaces[1].services.vip = Some(vip2));
    let out = h.run1(
        VM4,
        from_vm4(VM4, &udp4(vm_ipv4(VM4), vip2, 40000, 5000, 64)),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM2, "translated to VM2's own address");
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}

#[test]
fn a_rule_added_later_decides_the_next_packet_of_an_untracked_connection() {
    let mut h = harness(|_| {});
    for sport in [40000, 40001] {
        assert!(udp_passes(&mut h, VM1, VM2, sport, 5000));
        assert!(udp_passes(&mut h, VM2, VM1, 5000, sport));
    }
    assert_eq!(h.worker.flows.len(), 0);
    // VM2 now accepts only UDP to port 9. The connections left no flow, so each one's next
    // packet starts a flow, decided by the rules as a new one would be (a tracked flow's
    // reply would pass whatever VM2's ingress says):
    h.set_firewall(VM2, vec![udp_rule("only-9", TrafficDirection::Ingress, 9)]);
    // VM1 speaks first: VM2's ingress refuses it, and the refused flow drops both ways ...
    assert!(!udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(!udp_passes(&mut h, VM2, VM1, 5000, 40000));
    // ... VM2 speaks first: its egress has no rule, and VM1's answer is that flow's reply.
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40001));
    assert!(udp_passes(&mut h, VM1, VM2, 40001, 5000));
    assert!(udp_passes(&mut h, VM1, VM2, 40002, 9));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    assert_eq!(h.worker.flows.len(), 3);
    // The rule removed: new connections are untracked again.
    h.set_firewall(VM2, vec![]);
    let made = h.worker.flows.stats().created;
    assert!(udp_passes(&mut h, VM1, VM2, 40003, 5000));
    assert_eq!(h.worker.flows.stats().created, made);
    h.assert_conservation();
}

#[test]
fn conntrack_all_tracks_the_same_traffic() {
    let mut h = Harness::with(|_, config| assert_eq!(config.conntrack, ConntrackMode::All));
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    assert_eq!(h.worker.flows.len(), 1);
    h.assert_conservation();
}
