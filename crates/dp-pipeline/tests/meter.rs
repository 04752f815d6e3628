//! Metering through the whole graph (CreateInterface's `metering_parameters`): an unmetered
//! dataplane never visits the meter; a metered VM gets exactly its bucket's bytes, then counted
//! drops; the public rate only applies to traffic over public routes; the clock is the one the
//! graph is given.
mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::*;
use dp_pipeline::{DropReason, NodeId};
use dp_tables::meter::{burst_bytes, BYTES_PER_MBIT};
use dp_tables::{MeterConfig, RouteTarget};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// IP length of the test packets (20 + 8 + 972).
const L3_LEN: u64 = 1_000;
const MS: u64 = 1_000_000;

fn router_underlay() -> std::net::Ipv6Addr {
    "fc00::ffff:1".parse().unwrap()
}

fn other_host() -> std::net::Ipv6Addr {
    "fc00:2::1".parse().unwrap()
}

/// VM1 metered as given; a public default route (to the router) and a private route to
/// another hypervisor (10.100.2.0/24) in VNI 100.
fn harness(meter: MeterConfig) -> Harness {
    let mut h = Harness::with(|ifaces, _| ifaces[0].meter = meter).with_routers();
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
    h.add_route_v4(
        100,
        Ipv4Addr::new(10, 100, 2, 0),
        24,
        RouteTarget::Remote {
            vni: 100,
            underlay: other_host(),
            public: false,
        },
    );
    h
}

/// `n` UDP packets of [`L3_LEN`] bytes from VM `p` to `dst`, each its own source port.
fn packets(p: u16, dst: Ipv4Addr, n: usize) -> Vec<(u16, Vec<u8>)> {
    let payload = [0x5a; (L3_LEN - 28) as usize];
    (0..n)
        .map(|i| {
            let sport = 10_000 + (i % 50_000) as u16;
            let u = udp_v4(vm_ipv4(p), dst, sport, 5000, &payload);
            let frame = eth(
                own_mac(p),
                vm_mac(p),
                ETH_IPV4,
                &ipv4(vm_ipv4(p), dst, 17, 64, &u),
            );
            (p, frame)
        })
        .collect()
}

/// The bucket's burst at `mbps`, in bytes.
fn burst(mbps: u64) -> u64 {
    burst_bytes(mbps * BYTES_PER_MBIT)
}

fn sent_to(out: &[(u16, Vec<u8>)], port: u16) -> usize {
    out.iter().filter(|(p, _)| *p == port).count()
}

#[test]
fn unmetered_ports_pass_everything_and_never_visit_the_meter() {
    let mut h = harness(MeterConfig::default());
    let out = h.run(&packets(VM1, vm_ipv4(VM2), 1_000));
    assert_eq!(sent_to(&out, VM2), 1_000);
    let out = h.run(&packets(VM1, SERVER, 300));
    assert_eq!(out.len(), 300);
    assert_eq!(h.counters.node_packets(NodeId::Meter), 0);
    assert_eq!(h.total_drops(), 0);
    h.assert_conservation();
}

#[test]
fn a_metered_port_admits_exactly_its_bucket_then_drops_counted() {
    let mut h = harness(MeterConfig {
        total_mbps: 100,
        public_mbps: 0,
    });
    h.now_ns = 5_000 * MS;
    // A full bucket at first: the burst, in whole packets.
    let burst = burst(100);
    let fit = (burst / L3_LEN) as usize;
    let out = h.run(&packets(VM1, vm_ipv4(VM2), fit + 100));
    assert_eq!(sent_to(&out, VM2), fit);
    assert_eq!(
        h.nonzero_drops(),
        vec![(DropReason::MeterTotalExceeded, 100)]
    );
    assert_eq!(
        h.counters
            .node_drops(Some(NodeId::Meter), DropReason::MeterTotalExceeded),
        100
    );
    // Another VM is not limited by VM1's meter (it passes the node, untouched).
    let out = h.run(&packets(VM2, vm_ipv4(VM1), 200));
    assert_eq!(sent_to(&out, VM1), 200);
    // 1 ms later: 12,500 bytes more at 100 Mbit/s, plus what was left.
    let left = burst - fit as u64 * L3_LEN;
    h.now_ns += MS;
    let fit = ((left + 100 * BYTES_PER_MBIT / 1_000) / L3_LEN) as usize;
    assert_eq!(fit, 12);
    let out = h.run(&packets(VM1, vm_ipv4(VM2), 20));
    assert_eq!(sent_to(&out, VM2), fit);
    // Over a second at a steady 200 Mbit/s offered: what passes is the rate, exactly.
    let mut passed = 0;
    for _ in 0..1_000 {
        h.now_ns += MS;
        passed += h.run(&packets(VM1, vm_ipv4(VM2), 25)).len() as u64;
    }
    let rate_per_s = 100 * BYTES_PER_MBIT / L3_LEN; // 12,500 packets
    assert!(
        passed.abs_diff(rate_per_s) <= 1,
        "{passed} packets in a second"
    );
    assert_eq!(h.drops(DropReason::MeterPublicExceeded), 0);
    h.assert_conservation();
}

#[test]
fn the_public_meter_only_hits_public_routes() {
    let mut h = harness(MeterConfig {
        total_mbps: 100,
        public_mbps: 10,
    });
    let fit = (burst(10) / L3_LEN) as usize;
    // Public (default route): the public bucket's burst passes, the rest is a public drop.
    let out = h.run(&packets(VM1, SERVER, fit + 50));
    assert_eq!(out.len(), fit);
    assert!(out.iter().all(|(p, _)| *p == PF0 || *p == PF1));
    assert_eq!(
        h.nonzero_drops(),
        vec![(DropReason::MeterPublicExceeded, 50)]
    );
    // Private, local and remote: only the total rate applies.
    let out = h.run(&packets(VM1, vm_ipv4(VM2), 200));
    assert_eq!(sent_to(&out, VM2), 200);
    let out = h.run(&packets(VM1, Ipv4Addr::new(10, 100, 2, 7), 100));
    assert_eq!(out.len(), 100);
    // The total bucket also counted what went out publicly (not what the public meter refused).
    let left = (burst(100) - (fit as u64 + 300) * L3_LEN) / L3_LEN;
    let out = h.run(&packets(VM1, vm_ipv4(VM2), left as usize + 50));
    assert_eq!(sent_to(&out, VM2) as u64, left);
    assert_eq!(h.drops(DropReason::MeterTotalExceeded), 50);
    h.assert_conservation();
}

#[test]
fn a_changed_meter_starts_over_and_removing_it_stops_metering() {
    let mut h = harness(MeterConfig {
        total_mbps: 100,
        public_mbps: 0,
    });
    let fit = (burst(100) / L3_LEN) as usize;
    assert_eq!(h.run(&packets(VM1, vm_ipv4(VM2), fit + 10)).len(), fit);
    assert_eq!(h.run(&packets(VM1, vm_ipv4(VM2), 10)).len(), 0);
    // A new rate: a new, full bucket (same clock).
    set_meter(&mut h, 200);
    let fit = (burst(200) / L3_LEN) as usize;
    assert_eq!(h.run(&packets(VM1, vm_ipv4(VM2), fit + 10)).len(), fit);
    // No meter: everything, and the node is no longer visited.
    set_meter(&mut h, 0);
    let visits = h.counters.node_packets(NodeId::Meter);
    assert_eq!(h.run(&packets(VM1, vm_ipv4(VM2), 300)).len(), 300);
    assert_eq!(h.counters.node_packets(NodeId::Meter), visits);
    h.assert_conservation();
}

/// Publishes VM1's interface with a new total rate (a new snapshot generation, as the control
/// plane does), keeping the routes.
fn set_meter(h: &mut Harness, total_mbps: u64) {
    let mut iface = h.snapshot.iface(VM1).unwrap().clone();
    iface.meter.total_mbps = total_mbps;
    h.snapshot.set_iface(VM1, Some(Arc::new(iface)));
    h.snapshot.generation += 1;
}
