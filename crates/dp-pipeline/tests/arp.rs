mod common;

use common::*;
use dp_pipeline::DropReason;

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    a
}

#[test]
fn request_for_gateway_is_answered_in_place() {
    let mut h = Harness::new();
    let req = eth(
        BROADCAST,
        vm_mac(VM1),
        ETH_ARP,
        &arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]),
    );
    let out = h.run1(VM1, req);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // who-has 169.254.0.1 → 169.254.0.1 is-at 22:22:22:22:22:02, to 66:66:66:66:66:02.
    let want = hex("666666666602 222222222202 0806
         0001 0800 06 04 0002
         222222222202 a9fe0001
         666666666602 0a640101");
    assert_frame(&out[0].1, &want);
    h.assert_conservation();
    assert_eq!(h.total_drops(), 0);
}

#[test]
fn padded_probe_from_unconfigured_sender_is_answered_without_padding() {
    // An RFC 5227 probe (sender 0.0.0.0), padded to the 60-byte minimum as a NIC sends it; dpservice's
    // own test sends exactly this and expects an answer.
    let mut h = Harness::new();
    let mut req = eth(
        BROADCAST,
        vm_mac(VM2),
        ETH_ARP,
        &arp(1, vm_mac(VM2), [0, 0, 0, 0], vm_mac(VM2), [169, 254, 0, 1]),
    );
    req.resize(60, 0xaa);
    let out = h.run1(VM2, req);
    let want = hex("666666666603 222222222203 0806
         0001 0800 06 04 0002
         222222222203 a9fe0001
         666666666603 00000000");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM2);
    assert_frame(&out[0].1, &want);
}

#[test]
fn other_arp_is_dropped() {
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "request for another VM",
            arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [10, 100, 1, 2]),
            DropReason::ArpNotForGateway,
        ),
        (
            "gratuitous request",
            arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [10, 100, 1, 1]),
            DropReason::ArpNotForGateway,
        ),
        (
            "gratuitous reply",
            arp(2, vm_mac(VM1), [10, 100, 1, 1], BROADCAST, [10, 100, 1, 1]),
            DropReason::ArpNotForGateway,
        ),
        (
            "reply about the gateway",
            arp(
                2,
                vm_mac(VM1),
                [169, 254, 0, 1],
                own_mac(VM1),
                [169, 254, 0, 1],
            ),
            DropReason::ArpNotForGateway,
        ),
        (
            "unknown operation",
            arp(3, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]),
            DropReason::ArpNotForGateway,
        ),
        (
            "multicast sender hardware address",
            arp(
                1,
                [1, 0, 0x5e, 0, 0, 1],
                [10, 100, 1, 1],
                [0; 6],
                [169, 254, 0, 1],
            ),
            DropReason::ArpMalformed,
        ),
        (
            "zero sender hardware address",
            arp(1, [0; 6], [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]),
            DropReason::ArpMalformed,
        ),
        (
            "IPv6 protocol type",
            {
                let mut a = arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]);
                a[2..4].copy_from_slice(&[0x86, 0xdd]);
                a
            },
            DropReason::ArpMalformed,
        ),
        (
            "hardware length 8",
            {
                let mut a = arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]);
                a[4] = 8;
                a
            },
            DropReason::ArpMalformed,
        ),
    ];
    for (what, payload, reason) in cases {
        let mut h = Harness::new();
        let out = h.run1(VM1, eth(BROADCAST, vm_mac(VM1), ETH_ARP, &payload));
        assert!(out.is_empty(), "{what}: sent {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
}

#[test]
fn truncated_arp_is_malformed_at_every_length() {
    let full = arp(1, vm_mac(VM1), [10, 100, 1, 1], [0; 6], [169, 254, 0, 1]);
    for len in 0..full.len() {
        let mut h = Harness::new();
        let out = h.run1(VM1, eth(BROADCAST, vm_mac(VM1), ETH_ARP, &full[..len]));
        assert!(out.is_empty(), "len {len}");
        assert_eq!(
            h.nonzero_drops(),
            vec![(DropReason::ArpMalformed, 1)],
            "len {len}"
        );
    }
}

#[test]
fn arp_on_port_without_interface_is_dropped() {
    let mut h = Harness::new();
    let out = h.run1(
        VF_UNBOUND,
        eth(
            BROADCAST,
            vm_mac(VF_UNBOUND),
            ETH_ARP,
            &arp(1, vm_mac(VF_UNBOUND), [0; 4], [0; 6], [169, 254, 0, 1]),
        ),
    );
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::NoInterface);
}

#[test]
fn arp_from_uplink_is_dropped() {
    let mut h = Harness::new();
    let out = h.run1(
        PF0,
        eth(
            BROADCAST,
            [0x52, 0x54, 0, 0, 0, 1],
            ETH_ARP,
            &arp(
                1,
                [0x52, 0x54, 0, 0, 0, 1],
                [192, 168, 0, 1],
                [0; 6],
                [169, 254, 0, 1],
            ),
        ),
    );
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::FromUplink);
}
