//! Probing silent VMs: the tick asks a VM whose MAC is unknown for it (ARP, or ND for an IPv6-only
//! interface), at a bounded rate with back-off; the answer teaches the MAC, and traffic to the VM
//! is delivered from then on.
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use common::*;
use dp_packet::MacAddr;
use dp_pipeline::{
    BufferPool, Ctx, DpConfig, DropReason, Graph, GraphCounters, PacketBuf, PortEntry, PortKind,
    PortTable, TxSink, WorkerCtx,
};
use dp_tables::PortId;

/// The MAC the silent VM really has (not `vm_mac`, so it can only be learned from its answer).
const SILENT_MAC: [u8; 6] = [0x02, 0x5e, 0x1e, 0x17, 0x00, 0x01];

/// The frames that went out of VF ports (the uplinks get router probes of their own).
fn vf_frames(out: Vec<(PortId, Vec<u8>)>) -> Vec<(PortId, Vec<u8>)> {
    out.into_iter().filter(|(p, _)| *p >= VM1).collect()
}

/// The standard harness with the MAC of VM `p` forgotten (as after a restart).
fn silent(p: PortId) -> Harness {
    let h = Harness::new();
    h.ports.get(p).unwrap().forget_peer();
    h
}

fn peer(h: &Harness, p: PortId) -> Option<MacAddr> {
    h.ports.get(p).unwrap().peer_mac()
}

fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// The ARP request the gateway sends on port `p` for `target`.
fn arp_probe(p: PortId, target: Ipv4Addr) -> Vec<u8> {
    eth(
        BROADCAST,
        own_mac(p),
        ETH_ARP,
        &arp(1, own_mac(p), GW4, [0; 6], target),
    )
}

/// The VM's answer to it.
fn arp_answer(p: PortId, mac: [u8; 6], addr: Ipv4Addr) -> Vec<u8> {
    eth(
        own_mac(p),
        mac,
        ETH_ARP,
        &arp(2, mac, addr, own_mac(p), GW4),
    )
}

fn solicited(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The neighbor solicitation the gateway sends on port `p` for `target`.
fn ns_probe(p: PortId, target: Ipv6Addr) -> Vec<u8> {
    let group = solicited(target);
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&own_mac(p));
    let m = icmpv6(GW6, group, 135, 0, &body);
    let o = group.octets();
    eth(
        [0x33, 0x33, o[12], o[13], o[14], o[15]],
        own_mac(p),
        ETH_IPV6,
        &ipv6(GW6, group, 58, 255, &m),
    )
}

/// The VM's answer: solicited, override, for its address, with its MAC.
fn na_answer(p: PortId, mac: [u8; 6], addr: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![0x60, 0, 0, 0];
    body.extend_from_slice(&addr.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac);
    let m = icmpv6(addr, GW6, 136, 0, &body);
    eth(own_mac(p), mac, ETH_IPV6, &ipv6(addr, GW6, 58, 255, &m))
}

/// VM1 without an IPv4 address (IPv6 only).
fn ipv6_only_vm1() -> Harness {
    let h = Harness::with(|ifaces, _| ifaces[0].ipv4 = Ipv4Addr::UNSPECIFIED);
    h.ports.get(VM1).unwrap().forget_peer();
    h
}

/// Ticks every 100 ms from now until `until_ms` and returns when (ms) each probe went out of
/// port `p`, checking each is `want`.
fn probe_times(h: &mut Harness, p: PortId, until_ms: u64, want: &[u8]) -> Vec<u64> {
    let mut times = Vec::new();
    loop {
        for (port, frame) in vf_frames(h.tick()) {
            assert_eq!(port, p, "probe on an unexpected port");
            assert_frame(&frame, want);
            times.push(h.now_ns / 1_000_000);
        }
        if h.now_ns / 1_000_000 >= until_ms {
            return times;
        }
        h.now_ns += 100_000_000;
    }
}

// ---------------------------------------------------------------------------------------------
// What goes out.

#[test]
fn silent_vm_gets_an_arp_request_from_the_gateway() {
    let mut h = silent(VM1);
    let out = vf_frames(h.tick());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    // who-has 10.100.1.1 tell 169.254.0.1, from our MAC on vf0, broadcast, unpadded.
    let want = hex("ffffffffffff 222222222202 0806
         0001 0800 06 04 0001
         222222222202 a9fe0001
         000000000000 0a640101");
    assert_frame(&out[0].1, &want);
    assert_frame(&want, &arp_probe(VM1, vm_ipv4(VM1)));
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);
}

#[test]
fn silent_ipv6_only_vm_gets_a_neighbor_solicitation() {
    let mut h = ipv6_only_vm1();
    let out = vf_frames(h.tick());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, VM1);
    // fe80::1 > ff02::1:ff00:1: who has 2000:100:1::1, source link-layer address our MAC;
    // hop limit 255.
    let want = hex("3333ff000001 222222222202 86dd
         60000000 0020 3a ff
         fe800000000000000000000000000001
         ff0200000000000000000001ff000001
         8700 f3d3 00000000
         20000100000100000000000000000001
         0101 222222222202");
    assert_frame(&out[0].1, &want);
    assert_frame(&want, &ns_probe(VM1, vm_ipv6(VM1)));
    h.assert_conservation();
}

// ---------------------------------------------------------------------------------------------
// What is not probed.

#[test]
fn no_probe_when_the_mac_is_known_or_there_is_no_interface() {
    // VM1..VM4 known; vf4 and vf5 (ports 6, 7) have no interface and no MAC.
    let mut h = Harness::new();
    assert_eq!(peer(&h, VF_UNBOUND), None);
    let times = probe_times(&mut h, VM1, 5_000, &[]);
    assert!(times.is_empty(), "{times:?}");
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);
}

#[test]
fn no_probe_while_the_link_is_down_and_one_at_once_when_it_returns() {
    let mut h = silent(VM1);
    h.ports.get(VM1).unwrap().set_link_up(false);
    let want = arp_probe(VM1, vm_ipv4(VM1));
    assert!(probe_times(&mut h, VM1, 5_000, &want).is_empty());
    h.ports.get(VM1).unwrap().set_link_up(true);
    h.now_ns += 100_000_000;
    assert_eq!(
        probe_times(&mut h, VM1, 7_100, &want),
        [5_100, 6_100, 7_100]
    );
    h.assert_conservation();
}

#[test]
fn no_probe_without_an_address_to_ask_for() {
    // IPv6-only while the IPv6 overlay is off; and an interface with no address at all.
    let mut h = Harness::with(|ifaces, config| {
        ifaces[0].ipv4 = Ipv4Addr::UNSPECIFIED;
        config.ipv6_overlay = false;
        ifaces[3].ipv4 = Ipv4Addr::UNSPECIFIED; // VM4 has no IPv6 either
    });
    h.ports.get(VM1).unwrap().forget_peer();
    h.ports.get(VM4).unwrap().forget_peer();
    assert!(probe_times(&mut h, VM1, 3_000, &[]).is_empty());
    h.assert_conservation();
}

// ---------------------------------------------------------------------------------------------
// How often.

#[test]
fn three_probes_a_second_apart_then_back_off_to_30_s() {
    let mut h = silent(VM1);
    let want = arp_probe(VM1, vm_ipv4(VM1));
    let times = probe_times(&mut h, VM1, 130_000, &want);
    assert_eq!(
        times,
        [0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 62_000, 92_000, 122_000]
    );
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);
}

#[test]
fn back_off_starts_over_when_the_address_changes_or_the_mac_is_lost_again() {
    let mut h = silent(VM1);
    let old = arp_probe(VM1, vm_ipv4(VM1));
    assert_eq!(probe_times(&mut h, VM1, 20_000, &old).len(), 6); // last at 16 s, next at 32 s
                                                                 // The interface is recreated with another address: probed at once, a second apart again.
    let new_addr = Ipv4Addr::new(10, 100, 1, 99);
    h.ifaces[0].ipv4 = new_addr;
    h.republish();
    h.now_ns += 100_000_000;
    let new = arp_probe(VM1, new_addr);
    assert_eq!(
        probe_times(&mut h, VM1, 23_000, &new),
        [20_100, 21_100, 22_100]
    );
    // The VM answers; no more probes.
    h.run1(VM1, arp_answer(VM1, SILENT_MAC, new_addr));
    h.now_ns += 100_000_000;
    assert!(probe_times(&mut h, VM1, 60_000, &new).is_empty());
    // Its MAC is lost again: probed at once.
    h.ports.get(VM1).unwrap().forget_peer();
    h.now_ns += 100_000_000;
    assert_eq!(probe_times(&mut h, VM1, 60_100, &new), [60_100]);
    h.assert_conservation();
}

#[test]
fn at_most_32_probes_per_tick_ports_taken_in_turn() {
    // 40 silent VMs (no uplinks needed: the tick only probes).
    const VMS: usize = 40;
    let ports = PortTable::new(
        (0..VMS)
            .map(|i| PortEntry::new(PortKind::Vf, format!("vf{i}"), MacAddr(own_mac(i as u16))))
            .collect(),
    );
    let ifaces: Vec<_> = (0..VMS as u16)
        .map(|p| dp_tables::Iface {
            ipv4: Ipv4Addr::new(10, 0, 0, p as u8 + 1),
            ipv6: Ipv6Addr::UNSPECIFIED,
            ..iface_on(p)
        })
        .collect();
    let snapshot = snapshot_of(&ifaces, VMS);
    let config = DpConfig::default();
    let counters = Arc::new(GraphCounters::default());
    let mut graph = Graph::new(VMS, Arc::clone(&counters));
    let mut pool = BufferPool::new(64, 2048);
    let mut tick = |now_ms: u64| -> Vec<PortId> {
        let ctx = Ctx {
            tables: &snapshot,
            config: &config,
            ports: &ports,
            now_ns: now_ms * 1_000_000,
        };
        graph.tick(&ctx, &mut WorkerCtx::single(), &mut pool, &mut NoFlush);
        let mut sent = Vec::new();
        for p in 0..VMS as PortId {
            for buf in graph.tx_batch(p).unwrap().drain(..) {
                assert_eq!(buf.data().len(), 42);
                sent.push(p);
                pool.free(buf);
            }
        }
        sent
    };
    let all: Vec<PortId> = (0..VMS as PortId).collect();
    assert_eq!(tick(0), all[..32]);
    assert_eq!(tick(100), all[32..]);
    assert!(tick(200).is_empty());
    assert_eq!(tick(1_000), all[..32]);
    assert_eq!(tick(1_100), all[32..]);
    // Ports are taken in turn: with the last 8 overdue, they go first, then the first 24; the
    // other 8 at the next tick.
    assert_eq!(tick(2_000), all[..32]);
    assert_eq!(tick(4_100), [&all[..24], &all[32..]].concat());
    assert_eq!(tick(4_200), all[24..32]);
    assert_eq!(counters.originated(), 152);
    assert_eq!(counters.total_drops(), 0);
    assert_eq!(pool.available(), pool.capacity());
}

/// An interface on port `p` (any port number, unlike `common::iface`).
fn iface_on(p: PortId) -> dp_tables::Iface {
    dp_tables::Iface {
        id: format!("if{p}"),
        port: p,
        underlay_ipv6: format!("fc00:1::{p:x}").parse().unwrap(),
        ..iface(VM1)
    }
}

#[test]
fn no_buffer_no_probe_and_it_goes_out_at_the_next_tick() {
    let mut h = silent(VM1);
    let mut held = Vec::new();
    while let Some(b) = h.pool.alloc() {
        held.push(b);
    }
    assert!(vf_frames(h.tick()).is_empty());
    for b in held {
        h.pool.free(b);
    }
    h.now_ns += 100_000_000;
    let out = vf_frames(h.tick());
    assert_eq!(out.len(), 1);
    assert_frame(&out[0].1, &arp_probe(VM1, vm_ipv4(VM1)));
    h.assert_conservation();
}

// ---------------------------------------------------------------------------------------------
// The answer.

#[test]
fn arp_reply_teaches_the_mac_and_the_vm_becomes_reachable() {
    let mut h = silent(VM2);
    let to_vm2 = || vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"hello vm2");
    // Before: dropped for want of the MAC.
    assert!(h.run1(VM1, to_vm2()).is_empty());
    assert_eq!(h.drops(DropReason::NoPeerMac), 1);
    // The probe, and the VM's answer: consumed, counted as such, nothing sent.
    let out = vf_frames(h.tick());
    assert_eq!(out, [(VM2, arp_probe(VM2, vm_ipv4(VM2)))]);
    let out = h.run1(VM2, arp_answer(VM2, SILENT_MAC, vm_ipv4(VM2)));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.drops(DropReason::ArpReplyConsumed), 1);
    assert_eq!(peer(&h, VM2), Some(MacAddr(SILENT_MAC)));
    // After: delivered to the learned MAC.
    let out = h.run1(VM1, to_vm2());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM2);
    assert_eq!(&out[0].1[0..6], &SILENT_MAC);
    assert_eq!(&out[0].1[6..12], &own_mac(VM2));
    // And it is not asked again.
    for _ in 0..50 {
        assert!(vf_frames(h.tick_after_ms(100)).is_empty());
    }
    assert_eq!(
        h.nonzero_drops(),
        vec![
            (DropReason::NoPeerMac, 1),
            (DropReason::ArpReplyConsumed, 1)
        ]
    );
    h.assert_conservation();
}

#[test]
fn neighbor_advertisement_teaches_the_mac_of_an_ipv6_only_vm() {
    let mut h = ipv6_only_vm1();
    let to_vm1 = || vm_udp6(VM2, vm_ipv6(VM2), vm_ipv6(VM1), 64, b"hello vm1");
    assert!(h.run1(VM2, to_vm1()).is_empty());
    assert_eq!(h.drops(DropReason::NoPeerMac), 1);
    assert_eq!(vf_frames(h.tick()), [(VM1, ns_probe(VM1, vm_ipv6(VM1)))]);
    let out = h.run1(VM1, na_answer(VM1, SILENT_MAC, vm_ipv6(VM1)));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.drops(DropReason::VmNaConsumed), 1);
    assert_eq!(peer(&h, VM1), Some(MacAddr(SILENT_MAC)));
    let out = h.run1(VM2, to_vm1());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    assert_eq!(&out[0].1[0..6], &SILENT_MAC);
    assert!(vf_frames(h.tick_after_ms(1_000)).is_empty());
    h.assert_conservation();
}

#[test]
fn only_an_answer_about_the_vms_own_address_counts_as_one() {
    let cases = [
        (
            "ARP reply about another address",
            arp_answer(VM1, vm_mac(VM1), Ipv4Addr::new(10, 100, 1, 77)),
            DropReason::ArpNotForGateway,
        ),
        (
            "ARP reply to another address",
            eth(
                own_mac(VM1),
                vm_mac(VM1),
                ETH_ARP,
                &arp(2, vm_mac(VM1), vm_ipv4(VM1), own_mac(VM1), vm_ipv4(VM2)),
            ),
            DropReason::ArpNotForGateway,
        ),
        (
            "NA for another address",
            na_answer(VM1, vm_mac(VM1), vm_ipv6(VM2)),
            DropReason::NdUnhandled,
        ),
        (
            "NA for the VM's address",
            na_answer(VM1, vm_mac(VM1), vm_ipv6(VM1)),
            DropReason::VmNaConsumed,
        ),
        (
            "ARP reply about the VM's address",
            arp_answer(VM1, vm_mac(VM1), vm_ipv4(VM1)),
            DropReason::ArpReplyConsumed,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        assert!(h.run1(VM1, frame).is_empty(), "{what}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
}

/// A transmit path that must not be needed: the probes of a tick fit the batches.
struct NoFlush;

impl TxSink for NoFlush {
    fn flush(
        &mut self,
        port: PortId,
        _: &mut Vec<PacketBuf>,
        _: &mut BufferPool,
        _: &GraphCounters,
    ) {
        panic!("port {port}: a transmit batch filled up during a tick");
    }
}
