//! Packet capture: copies of what captured ports receive and transmit, wrapped in Ethernet +
//! IPv6 + UDP to the sink, out of pf0 — checked byte by byte.
mod common;

use std::net::Ipv6Addr;

use common::*;
use dp_pipeline::DropReason;
use dp_tables::{CaptureConfig, CaptureDirections, PortId};

const SRC_PORT: u16 = 3000;
const DST_PORT: u16 = 3010;

fn sink() -> Ipv6Addr {
    "fc00:9::1".parse().unwrap()
}

fn capture(h: &mut Harness, ports: &[PortId]) {
    h.snapshot.capture = Some(CaptureConfig::new(
        sink(),
        SRC_PORT,
        DST_PORT,
        CaptureDirections::default(),
        ports.iter().copied(),
    ));
}

/// The copy dpservice's format gives for `frame` (its first `carried` bytes), as we send it.
fn wrapped(frame: &[u8], carried: usize) -> Vec<u8> {
    let inner = &frame[..carried];
    let len = 8 + inner.len();
    let mut udp = Vec::new();
    udp.extend_from_slice(&SRC_PORT.to_be_bytes());
    udp.extend_from_slice(&DST_PORT.to_be_bytes());
    udp.extend_from_slice(&(len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(inner);
    let c = inet_checksum(&[&pseudo_v6(host_underlay(), sink(), 17, len), &udp]);
    let c = if c == 0 { 0xffff } else { c };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    eth(
        ROUTER_MAC0,
        own_mac(PF0),
        0x86dd,
        &ipv6(host_underlay(), sink(), 17, 64, &udp),
    )
}

fn copies(out: &[(PortId, Vec<u8>)]) -> Vec<Vec<u8>> {
    out.iter()
        .filter(|(p, f)| *p == PF0 && f.len() > 58 && f[56..58] == DST_PORT.to_be_bytes())
        .map(|(_, f)| f.clone())
        .collect()
}

fn delivered(out: &[(PortId, Vec<u8>)], port: PortId) -> Vec<Vec<u8>> {
    out.iter()
        .filter(|(p, _)| *p == port)
        .map(|(_, f)| f.clone())
        .collect()
}

#[test]
fn both_directions_of_a_captured_vm_are_copied_byte_for_byte() {
    let mut h = Harness::new().with_routers();
    capture(&mut h, &[VM1, VM2]);
    let sent = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"captured payload");
    let out = h.run1(VM1, sent.clone());
    let to_vm2 = delivered(&out, VM2);
    assert_eq!(to_vm2.len(), 1, "{out:?}");
    // VM1's frame as it came in, then VM2's as it went out (the rewritten one).
    let got = copies(&out);
    assert_eq!(got.len(), 2);
    assert_frame(&got[0], &wrapped(&sent, sent.len()));
    assert_frame(&got[1], &wrapped(&to_vm2[0], to_vm2[0].len()));
    assert_eq!(
        h.counters
            .capture
            .copies
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);

    // The reply: VM2 sends, VM1 receives; the same two copies.
    let reply = vm_udp4(VM2, vm_ipv4(VM2), vm_ipv4(VM1), 64, b"reply");
    let out = h.run1(VM2, reply.clone());
    let got = copies(&out);
    let to_vm1 = delivered(&out, VM1);
    assert_eq!(
        got,
        vec![
            wrapped(&reply, reply.len()),
            wrapped(&to_vm1[0], to_vm1[0].len())
        ]
    );
    h.assert_conservation();
}

#[test]
fn only_captured_ports_and_only_while_active() {
    let mut h = Harness::new().with_routers();
    // Off: nothing but the forwarded frame.
    let frame = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x");
    let out = h.run1(VM1, frame.clone());
    assert_eq!(out.len(), 1);
    // VM2 captured in transmit only (dpservice's direction would be receive only).
    h.snapshot.capture = Some(CaptureConfig::new(
        sink(),
        SRC_PORT,
        DST_PORT,
        CaptureDirections {
            rx: false,
            tx: true,
        },
        [VM2],
    ));
    let out = h.run1(VM1, frame.clone());
    let to_vm2 = delivered(&out, VM2);
    assert_eq!(copies(&out), vec![wrapped(&to_vm2[0], to_vm2[0].len())]);
    // Receive only: VM2 sends, VM1 (not captured) receives: one copy.
    h.snapshot.capture = Some(CaptureConfig::new(
        sink(),
        SRC_PORT,
        DST_PORT,
        CaptureDirections {
            rx: true,
            tx: false,
        },
        [VM2],
    ));
    let back = vm_udp4(VM2, vm_ipv4(VM2), vm_ipv4(VM1), 64, b"y");
    let out = h.run1(VM2, back.clone());
    assert_eq!(copies(&out), vec![wrapped(&back, back.len())]);
    // VM3 captured only: VM1 → VM2 is not copied.
    capture(&mut h, &[VM3]);
    assert_eq!(h.run1(VM1, frame.clone()).len(), 1);
    // Stopped.
    h.snapshot.capture = None;
    assert_eq!(h.run1(VM2, back).len(), 1);
    h.assert_conservation();
}

#[test]
fn uplink_frames_are_copied_as_received_but_our_own_copies_are_not() {
    let mut h = Harness::new().with_routers();
    capture(&mut h, &[PF0, PF1]);
    // An encapsulated packet for VM1 on pf1: copied as received (outer headers included).
    let inner = ipv4(
        vm_ipv4(VM3),
        vm_ipv4(VM1),
        17,
        64,
        &udp_v4(vm_ipv4(VM3), vm_ipv4(VM1), 1, 2, b"in"),
    );
    let from_pf1 = from_underlay(PF1, remote_underlay(), vm_underlay(VM1), 4, &inner);
    let out = h.run1(PF1, from_pf1.clone());
    assert_eq!(copies(&out), vec![wrapped(&from_pf1, from_pf1.len())]);
    // A copy of ours coming back on pf0 (a sink behind our own uplink): not copied again.
    let copy = wrapped(&from_pf1, from_pf1.len());
    let mut echo = copy.clone();
    echo[..6].copy_from_slice(&own_mac(PF0));
    echo[6..12].copy_from_slice(&ROUTER_MAC0);
    let out = h.run1(PF0, echo);
    assert!(copies(&out).is_empty(), "{out:?}");
    h.assert_conservation();
}

#[test]
fn copies_beyond_the_underlay_mtu_are_truncated() {
    let mut h = Harness::with(|_, c| c.underlay_mtu = 1400).with_routers();
    capture(&mut h, &[VM1]);
    let big = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, &[7u8; 1340]);
    let out = h.run1(VM1, big.clone());
    let got = copies(&out);
    assert_eq!(got.len(), 1);
    // IPv6 packet = 1400 bytes: 48 of headers, 1352 of the frame.
    assert_frame(&got[0], &wrapped(&big, 1400 - 48));
    assert_eq!(got[0].len(), 14 + 1400);
    assert_eq!(
        h.counters
            .capture
            .truncated
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.assert_conservation();
}

#[test]
fn no_buffer_or_no_uplink_is_a_counted_drop() {
    // Routers unknown: the copy cannot leave (as an encapsulated packet could not).
    let mut h = Harness::new();
    capture(&mut h, &[VM1]);
    let frame = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x");
    let out = h.run1(VM1, frame.clone());
    assert_eq!(out.len(), 1);
    assert_eq!(h.nonzero_drops().len(), 1, "{:?}", h.nonzero_drops());
    h.assert_conservation();

    // The pool empty but for the frames themselves.
    let mut h = Harness::new().with_routers();
    capture(&mut h, &[VM1]);
    let mut held = Vec::new();
    while h.pool.available() > 1 {
        held.push(h.pool.alloc().unwrap());
    }
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1);
    assert_eq!(h.drops(DropReason::CaptureNoBuffer), 1);
    for b in held {
        h.pool.free(b);
    }
    h.assert_conservation();
}

#[test]
fn superframes_are_skipped_and_partial_checksums_finished() {
    let mut h = Harness::new().with_routers();
    capture(&mut h, &[VM1]);
    let complete = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"partial");
    // The same frame with its UDP checksum left partial (the pseudo-header sum).
    let mut partial = complete.clone();
    let udp_len = complete.len() - 34;
    let pseudo = !inet_checksum(&[&pseudo_v4(vm_ipv4(VM1), vm_ipv4(VM2), 17, udp_len)]);
    partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
    let csum = dp_pipeline::Offload {
        flags: dp_pipeline::Offload::NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 6,
        ..dp_pipeline::Offload::NONE
    };
    let out = h.run1_offload(VM1, partial, csum);
    assert_eq!(copies(&out), vec![wrapped(&complete, complete.len())]);

    let gso = dp_pipeline::Offload {
        gso_type: dp_pipeline::Offload::GSO_TCPV4,
        gso_size: 100,
        ..csum
    };
    let out = h.run1_offload(VM1, complete, gso);
    assert!(copies(&out).is_empty());
    assert_eq!(
        h.counters
            .capture
            .skipped_offload
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
