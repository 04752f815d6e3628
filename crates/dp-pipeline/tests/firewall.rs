//! The firewall through the whole graph: enforcing per direction once a direction has rules,
//! decided per flow (replies of an accepted flow pass whatever the other direction's rules),
//! priorities and drop rules, ICMP and prefix filters, established flows cut (and let through
//! again) by a rule change, both VMs' rules on local traffic, and ingress rules seeing a VIP'd
//! flow after its destination NAT.
mod common;

use std::net::Ipv4Addr;

use common::*;
use dp_pipeline::DropReason;
use dp_tables::{
    FirewallAction, FirewallRule, IpNet, PortRange, ProtocolFilter, RouteTarget, TrafficDirection,
};

use FirewallAction::{Accept, Drop};
use TrafficDirection::{Egress, Ingress};

const VIP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);

fn router_underlay() -> std::net::Ipv6Addr {
    "fc00::ffff:1".parse().unwrap()
}

fn any4() -> IpNet {
    IpNet {
        addr: 0,
        len: 0,
        is_v6: false,
    }
}

fn net4(a: Ipv4Addr, len: u8) -> IpNet {
    IpNet {
        addr: u128::from(u32::from(a)),
        len,
        is_v6: false,
    }
}

fn ports(lo: u16, hi: u16) -> PortRange {
    PortRange { lo, hi }
}

fn tcp_dst(port: u16) -> ProtocolFilter {
    ProtocolFilter::Tcp {
        src: PortRange::ANY,
        dst: ports(port, port),
    }
}

/// A rule from any IPv4 address to any.
fn rule(
    id: &str,
    direction: TrafficDirection,
    action: FirewallAction,
    priority: u32,
    filter: ProtocolFilter,
) -> FirewallRule {
    FirewallRule {
        id: id.into(),
        direction,
        action,
        priority,
        src: any4(),
        dst: any4(),
        filter,
    }
}

fn udp4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, ttl: u8) -> Vec<u8> {
    common::udp4(src, dst, sport, dport, ttl, b"fw")
}

/// A TCP segment between two VMs: whether it arrived intact.
#[track_caller]
fn tcp_passes(h: &mut Harness, from: u16, to: u16, sport: u16, dport: u16, flags: u8) -> bool {
    let (src, dst) = (vm_ipv4(from), vm_ipv4(to));
    delivers(
        h,
        from,
        to,
        &tcp4(src, dst, sport, dport, flags, 64),
        &tcp4(src, dst, sport, dport, flags, 63),
    )
}

#[test]
fn no_rules_accept_everything_and_one_ingress_rule_enforces() {
    let mut h = Harness::new();
    assert!(tcp_passes(&mut h, VM1, VM2, 40000, 80, TCP_SYN));
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 53));
    assert!(udp_passes(&mut h, VM2, VM1, 40000, 53));
    assert_eq!(h.total_drops(), 0);
    // VM2 accepts SSH only.
    h.set_firewall(VM2, vec![rule("ssh", Ingress, Accept, 100, tcp_dst(22))]);
    assert!(!tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_SYN));
    assert!(!udp_passes(&mut h, VM1, VM2, 40001, 22));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    assert!(tcp_passes(&mut h, VM1, VM2, 40002, 22, TCP_SYN));
    // VM2's replies to the accepted flow pass: egress has no rules, and the verdict is the
    // flow's anyway.
    assert!(tcp_passes(&mut h, VM2, VM1, 22, 40002, TCP_SYN | TCP_ACK));
    assert!(tcp_passes(&mut h, VM1, VM2, 40002, 22, TCP_ACK));
    // VM2 starting a flow of its own is not ingress: accepted.
    assert!(udp_passes(&mut h, VM2, VM1, 40003, 53));
    // An egress rule set on VM2 that would not accept the reply's tuple (only UDP to port 53
    // goes out): the SSH flow's replies still pass, the verdict is per flow.
    h.set_firewall(
        VM2,
        vec![
            rule("ssh", Ingress, Accept, 100, tcp_dst(22)),
            rule(
                "dns-out",
                Egress,
                Accept,
                100,
                ProtocolFilter::Udp {
                    src: PortRange::ANY,
                    dst: ports(53, 53),
                },
            ),
        ],
    );
    assert!(tcp_passes(&mut h, VM2, VM1, 22, 40002, TCP_ACK));
    assert!(tcp_passes(&mut h, VM1, VM2, 40002, 22, TCP_ACK));
    // But a new flow VM2 starts is held to its egress rules now.
    assert!(!tcp_passes(&mut h, VM2, VM1, 40004, 22, TCP_SYN));
    assert!(udp_passes(&mut h, VM2, VM1, 40005, 53));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 3)]);
    h.assert_conservation();
}

#[test]
fn priority_decides_and_drop_rules_drop() {
    let mut h = Harness::new();
    let any_tcp = ProtocolFilter::Tcp {
        src: PortRange::ANY,
        dst: PortRange::ANY,
    };
    // A drop at 10 beats an accept at 20.
    h.set_firewall(
        VM2,
        vec![
            rule("all-tcp", Ingress, Accept, 20, any_tcp),
            rule("no-web", Ingress, Drop, 10, tcp_dst(80)),
        ],
    );
    assert!(!tcp_passes(&mut h, VM1, VM2, 40000, 80, TCP_SYN));
    assert!(tcp_passes(&mut h, VM1, VM2, 40000, 81, TCP_SYN));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 1)]);
    // An accept at 5 beats the drop at 10: the refused flow is decided again and passes.
    h.set_firewall(
        VM2,
        vec![
            rule("all-tcp", Ingress, Accept, 20, any_tcp),
            rule("no-web", Ingress, Drop, 10, tcp_dst(80)),
            rule("web-first", Ingress, Accept, 5, tcp_dst(80)),
        ],
    );
    assert!(tcp_passes(&mut h, VM1, VM2, 40000, 80, TCP_SYN));
    assert!(tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_SYN));
    // The same priority: the drop rule is tried first, whatever the ids.
    h.set_firewall(
        VM2,
        vec![
            rule("a-accept", Ingress, Accept, 7, tcp_dst(443)),
            rule("z-drop", Ingress, Drop, 7, tcp_dst(443)),
        ],
    );
    assert!(!tcp_passes(&mut h, VM1, VM2, 40000, 443, TCP_SYN));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    h.assert_conservation();
}

/// An ICMP message between two VMs (rest of header `rest`): whether it arrived intact.
#[track_caller]
fn icmp_passes(h: &mut Harness, from: u16, to: u16, ty: u8, code: u8, rest: [u8; 4]) -> bool {
    let (src, dst) = (vm_ipv4(from), vm_ipv4(to));
    let m = icmpv4(ty, code, rest, b"icmp");
    delivers(
        h,
        from,
        to,
        &ipv4(src, dst, 1, 64, &m),
        &ipv4(src, dst, 1, 63, &m),
    )
}

#[test]
fn icmp_type_and_code_filters() {
    let mut h = Harness::new();
    h.set_firewall(
        VM2,
        vec![rule(
            "ping",
            Ingress,
            Accept,
            1,
            ProtocolFilter::Icmp {
                icmp_type: Some(8),
                icmp_code: Some(0),
            },
        )],
    );
    // An echo request passes, and its reply (the verdict of the flow).
    assert!(icmp_passes(&mut h, VM1, VM2, 8, 0, [0, 7, 0, 1]));
    assert!(icmp_passes(&mut h, VM2, VM1, 0, 0, [0, 7, 0, 1]));
    // Another code, another type: refused.
    assert!(!icmp_passes(&mut h, VM1, VM2, 8, 1, [0, 8, 0, 1]));
    assert!(!icmp_passes(&mut h, VM1, VM2, 13, 0, [0, 9, 0, 1]));
    // ICMP rules do not accept other protocols.
    assert!(!udp_passes(&mut h, VM1, VM2, 40000, 53));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 3)]);
    // A wildcard type accepts every ICMP message.
    h.set_firewall(
        VM2,
        vec![rule(
            "icmp",
            Ingress,
            Accept,
            1,
            ProtocolFilter::Icmp {
                icmp_type: None,
                icmp_code: None,
            },
        )],
    );
    assert!(icmp_passes(&mut h, VM1, VM2, 13, 0, [0, 10, 0, 1]));
    assert!(icmp_passes(&mut h, VM1, VM2, 8, 1, [0, 11, 0, 1]));
    h.assert_conservation();
}

#[test]
fn prefix_filters() {
    let mut h = Harness::new();
    let mut from_vm1 = rule("vm1", Ingress, Accept, 1, ProtocolFilter::Any);
    from_vm1.src = net4(vm_ipv4(VM1), 32);
    h.set_firewall(VM2, vec![from_vm1.clone()]);
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 53));
    assert!(
        !udp_passes(&mut h, VM4, VM2, 40000, 53),
        "10.100.1.4 is not in 10.100.1.1/32"
    );
    // A /24 source and a /32 destination that is VM2's own address.
    let mut subnet = rule("subnet", Ingress, Accept, 1, ProtocolFilter::Any);
    subnet.src = net4(Ipv4Addr::new(10, 100, 1, 0), 24);
    subnet.dst = net4(vm_ipv4(VM2), 32);
    h.set_firewall(VM2, vec![subnet]);
    assert!(udp_passes(&mut h, VM4, VM2, 40001, 53));
    // A destination prefix VM2 is not in accepts nothing.
    let mut elsewhere = rule("elsewhere", Ingress, Accept, 1, ProtocolFilter::Any);
    elsewhere.dst = net4(Ipv4Addr::new(10, 100, 9, 0), 24);
    h.set_firewall(VM2, vec![elsewhere]);
    assert!(!udp_passes(&mut h, VM1, VM2, 40002, 53));
    // Length 0 is any address (whatever the address bits say).
    let mut any = rule("any", Ingress, Accept, 1, ProtocolFilter::Any);
    any.src = net4(Ipv4Addr::new(1, 2, 3, 4), 0);
    any.dst = net4(Ipv4Addr::new(5, 6, 7, 8), 0);
    h.set_firewall(VM2, vec![any]);
    assert!(udp_passes(&mut h, VM1, VM2, 40003, 53));
    assert!(udp_passes(&mut h, VM4, VM2, 40004, 53));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    h.assert_conservation();
}

#[test]
fn a_new_rule_cuts_an_established_flow_and_removing_it_restores_it() {
    let mut h = Harness::new();
    // Two established flows into VM2: UDP, and TCP (24 h timeout).
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    assert!(tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_SYN));
    assert!(tcp_passes(&mut h, VM2, VM1, 80, 40001, TCP_SYN | TCP_ACK));
    assert!(tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_ACK));
    let generation = h.snapshot.firewall_generation;
    h.set_firewall(VM2, vec![rule("ssh", Ingress, Accept, 1, tcp_dst(22))]);
    assert_ne!(h.snapshot.firewall_generation, generation);
    // The next packet of either direction is dropped: the reply first (decided again) ...
    assert!(!udp_passes(&mut h, VM2, VM1, 5000, 40000));
    assert!(!udp_passes(&mut h, VM1, VM2, 40000, 5000));
    // ... the forward direction first.
    assert!(!tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_ACK));
    assert!(!tcp_passes(&mut h, VM2, VM1, 80, 40001, TCP_ACK));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 4)]);
    assert_eq!(h.worker.flows.len(), 2, "refused flows are kept");
    // The rules removed (a new generation): both flows pass again, both ways.
    h.set_firewall(VM2, vec![]);
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    assert!(tcp_passes(&mut h, VM2, VM1, 80, 40001, TCP_ACK));
    assert!(tcp_passes(&mut h, VM1, VM2, 40001, 80, TCP_ACK));
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 4)]);
    assert_eq!(h.worker.flows.len(), 2);
    h.assert_conservation();
}

#[test]
fn local_traffic_needs_the_senders_egress_and_the_receivers_ingress() {
    let mut h = Harness::new();
    h.set_firewall(
        VM1,
        vec![rule(
            "out-5000",
            Egress,
            Accept,
            1,
            ProtocolFilter::Udp {
                src: PortRange::ANY,
                dst: ports(5000, 5000),
            },
        )],
    );
    h.set_firewall(
        VM2,
        vec![rule(
            "in-from-40000",
            Ingress,
            Accept,
            1,
            ProtocolFilter::Udp {
                src: ports(40000, 40000),
                dst: PortRange::ANY,
            },
        )],
    );
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000), "both accept");
    assert!(
        !udp_passes(&mut h, VM1, VM2, 40001, 5000),
        "VM2's ingress refuses"
    );
    assert!(
        !udp_passes(&mut h, VM1, VM2, 40000, 5001),
        "VM1's egress refuses"
    );
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    // The accepted flow's reply needs neither VM1's ingress nor VM2's egress rules.
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    // VM4 (no rules) to VM2 is held to VM2's ingress only.
    assert!(udp_passes(&mut h, VM4, VM2, 40000, 7));
    h.assert_conservation();
}

#[test]
fn ingress_rules_see_a_vip_flow_after_its_destination_nat() {
    let mut h = Harness::with(|ifaces, _| ifaces[1].services.vip = Some(VIP2)).with_routers();
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
    let vm2 = vm_ipv4(VM2);
    let mut ssh = rule("ssh", Ingress, Accept, 1, tcp_dst(22));
    ssh.dst = net4(vm2, 32);
    h.set_firewall(VM2, vec![ssh]);
    let syn_to_vip = |dport: u16, sport: u16| {
        let syn = tcp4(CLIENT, VIP2, sport, dport, TCP_SYN, 60);
        from_underlay(PF0, router_underlay(), vip_underlay(VM2), 4, &syn)
    };
    // SSH to the VIP matches the rule on VM2's private address and arrives translated.
    let out = h.run1(PF0, syn_to_vip(22, 33333));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM2);
    assert_frame(
        &out[0].1,
        &to_vm4(VM2, &tcp4(CLIENT, vm2, 33333, 22, TCP_SYN, 60)),
    );
    // Another port is refused.
    assert!(h.run1(PF0, syn_to_vip(23, 33334)).is_empty());
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 1)]);
    // A rule naming the VIP itself matches nothing: ingress sees the private address.
    let mut on_vip = rule("vip", Ingress, Accept, 1, tcp_dst(22));
    on_vip.dst = net4(VIP2, 32);
    h.set_firewall(VM2, vec![on_vip]);
    assert!(h.run1(PF0, syn_to_vip(22, 33335)).is_empty());
    assert_eq!(h.nonzero_drops(), vec![(DropReason::FirewallDenied, 2)]);
    h.assert_conservation();
}

#[test]
fn a_flow_to_a_vm_moved_to_another_host_follows_it_on_its_next_packet() {
    let mut h = Harness::new().with_routers();
    // An established UDP flow between VM1 and VM2.
    assert!(udp_passes(&mut h, VM1, VM2, 40000, 5000));
    assert!(udp_passes(&mut h, VM2, VM1, 5000, 40000));
    // VM2 migrates: its interface is deleted (a new firewall generation) and its address
    // routed to the hypervisor it moved to, as metalnet does.
    let generation = h.snapshot.firewall_generation;
    h.ifaces.retain(|i| i.port != VM2);
    h.republish();
    h.snapshot.firewall_generation = generation + 1;
    let moved_to = RouteTarget::Remote {
        vni: vm_vni(VM2),
        underlay: remote_underlay(),
        public: false,
    };
    h.add_route_v4(vm_vni(VM2), vm_ipv4(VM2), 32, moved_to);
    // The flow's next packet is encapsulated towards the new host, not refused.
    let (src, dst) = (vm_ipv4(VM1), vm_ipv4(VM2));
    let out = h.run1(VM1, from_vm4(VM1, &udp4(src, dst, 40000, 5000, 64)));
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    assert!(matches!(out[0].0, PF0 | PF1), "sent to port {}", out[0].0);
    assert_eq!(&out[0].1[14 + 24..14 + 40], &remote_underlay().octets());
    assert_eq!(inner_of(&out[0].1), &udp4(src, dst, 40000, 5000, 63)[..]);
    // The old flow was closed and one new flow made.
    assert_eq!(h.worker.flows.len(), 1);
    assert_eq!(h.worker.flows.stats().removed, 1);
    // Its replies from the new host pass back to VM1.
    let reply = udp4(dst, src, 5000, 40000, 64);
    let out = h.run1(
        PF0,
        from_underlay(PF0, remote_underlay(), vm_underlay(VM1), 4, &reply),
    );
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    assert_eq!(out[0].0, VM1);
    assert_eq!(h.nonzero_drops(), vec![]);
    h.assert_conservation();
}
