// Reference replies: tests/scapy/nd.py.
mod common;

use std::net::Ipv6Addr;

use common::*;
use dp_pipeline::DropReason;

const GW6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn gw_solicited() -> Ipv6Addr {
    "ff02::1:ff00:1".parse().unwrap()
}

fn lladdr_opt(ty: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![ty, 1];
    o.extend_from_slice(&mac);
    o
}

/// NS body after the checksum: reserved, target, options.
fn ns_body(target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    let mut b = vec![0; 4];
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(opts);
    b
}

fn nd_frame(
    p: u16,
    dst_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    icmp: &[u8],
) -> Vec<u8> {
    eth(dst_mac, vm_mac(p), ETH_IPV6, &ipv6(src, dst, 58, hop, icmp))
}

fn ns_frame(p: u16, target: Ipv6Addr) -> Vec<u8> {
    let src = vm_link_local(p);
    let body = ns_body(target, &lladdr_opt(1, vm_mac(p)));
    nd_frame(
        p,
        [0x33, 0x33, 0xff, 0, 0, 1],
        src,
        gw_solicited(),
        255,
        &icmpv6(src, gw_solicited(), 135, 0, &body),
    )
}

fn rs_frame(p: u16, src: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
    let mut body = vec![0; 4];
    body.extend_from_slice(opts);
    nd_frame(
        p,
        [0x33, 0x33, 0, 0, 0, 2],
        src,
        all_routers,
        255,
        &icmpv6(src, all_routers, 133, 0, &body),
    )
}

#[test]
fn builders_match_scapy() {
    // Cross-check of the test's own request builders against scapy.
    assert_frame(
        &ns_frame(VM1, GW6),
        &hex("3333ff00000166666666660286dd6000000000203afffe80000000000000646666fffe666602ff0200000000000000000001ff000001870019fd00000000fe8000000000000000000000000000010101666666666602"),
    );
    assert_frame(
        &rs_frame(VM1, vm_link_local(VM1), &lladdr_opt(1, vm_mac(VM1))),
        &hex("33330000000266666666660286dd6000000000103afffe80000000000000646666fffe666602ff02000000000000000000000000000285001990000000000101666666666602"),
    );
}

#[test]
fn neighbor_solicitation_for_gateway_gets_advertisement() {
    let mut h = Harness::new();
    let out = h.run1(VM1, ns_frame(VM1, GW6));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy: Ether/IPv6(src=fe80::1, dst=vm ll, hlim=255)/ICMPv6ND_NA(R=1,S=1,O=1,tgt=fe80::1)/
    //        ICMPv6NDOptDstLLAddr(22:22:22:22:22:02)
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220286dd6000000000203afffe800000000000000000000000000001fe80000000000000646666fffe66660288000409e0000000fe8000000000000000000000000000010201222222222202"),
    );
    h.assert_conservation();
}

#[test]
fn unicast_solicitation_without_option_is_answered() {
    // Neighbor unreachability detection: unicast to fe80::1, no source link-layer option.
    let mut h = Harness::new();
    let src = vm_link_local(VM1);
    let body = ns_body(GW6, &[]);
    let frame = nd_frame(
        VM1,
        own_mac(VM1),
        src,
        GW6,
        255,
        &icmpv6(src, GW6, 135, 0, &body),
    );
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1);
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220286dd6000000000203afffe800000000000000000000000000001fe80000000000000646666fffe66660288000409e0000000fe8000000000000000000000000000010201222222222202"),
    );
}

#[test]
fn duplicate_address_detection_for_gateway_is_defended_to_all_nodes() {
    let mut h = Harness::new();
    let src = Ipv6Addr::UNSPECIFIED;
    let body = ns_body(GW6, &[]);
    let frame = nd_frame(
        VM1,
        [0x33, 0x33, 0xff, 0, 0, 1],
        src,
        gw_solicited(),
        255,
        &icmpv6(src, gw_solicited(), 135, 0, &body),
    );
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1);
    // scapy: to ff02::1 / 33:33:00:00:00:01, NA(R=1,S=0,O=1).
    assert_frame(
        &out[0].1,
        &hex("33330000000122222222220286dd6000000000203afffe800000000000000000000000000001ff02000000000000000000000000000188007355a0000000fe8000000000000000000000000000010201222222222202"),
    );
}

#[test]
fn router_solicitation_gets_advertisement() {
    let mut h = Harness::new();
    let out = h.run1(
        VM1,
        rs_frame(VM1, vm_link_local(VM1), &lladdr_opt(1, vm_mac(VM1))),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, VM1);
    // scapy: ICMPv6ND_RA(chlim=255, M=1, O=1, routerlifetime=65535, reachabletime=0, retranstimer=0, prf=0)/
    //        ICMPv6NDOptSrcLLAddr(22:22:22:22:22:02)
    assert_frame(
        &out[0].1,
        &hex("66666666660222222222220286dd6000000000183afffe800000000000000000000000000001fe80000000000000646666fffe6666028600e5d2ffc0ffff00000000000000000101222222222202"),
    );
    h.assert_conservation();
}

#[test]
fn router_solicitation_from_unspecified_gets_multicast_advertisement() {
    let mut h = Harness::new();
    let out = h.run1(VM1, rs_frame(VM1, Ipv6Addr::UNSPECIFIED, &[]));
    assert_eq!(out.len(), 1);
    assert_frame(
        &out[0].1,
        &hex("33330000000122222222220286dd6000000000183afffe800000000000000000000000000001ff0200000000000000000000000000018600151fffc0ffff00000000000000000101222222222202"),
    );
}

#[test]
fn router_solicitation_with_unknown_option_is_answered() {
    // Unknown options are skipped (RFC 4861 §4.6): a nonce-like type 14 option of 8 bytes.
    let mut h = Harness::new();
    let mut opts = lladdr_opt(1, vm_mac(VM1));
    opts.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]);
    let out = h.run1(VM1, rs_frame(VM1, vm_link_local(VM1), &opts));
    assert_eq!(out.len(), 1);
}

fn with_hop(frame: &[u8], hop: u8) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[14 + 7] = hop;
    f
}

#[test]
fn malformed_and_unhandled_nd_is_dropped() {
    let ll = vm_link_local(VM1);
    let sn = gw_solicited();
    let good_ns = ns_frame(VM1, GW6);
    let ns_with = |src: Ipv6Addr, dst: Ipv6Addr, code: u8, body: &[u8]| {
        nd_frame(
            VM1,
            [0x33, 0x33, 0xff, 0, 0, 1],
            src,
            dst,
            255,
            &icmpv6(src, dst, 135, code, body),
        )
    };
    let mut bad_sum = good_ns.clone();
    let last = bad_sum.len() - 1;
    bad_sum[last] ^= 1;
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "NS with hop limit 64",
            with_hop(&good_ns, 64),
            DropReason::NdMalformed,
        ),
        (
            "NS with hop limit 254",
            with_hop(&good_ns, 254),
            DropReason::NdMalformed,
        ),
        (
            "RS with hop limit 1",
            with_hop(&rs_frame(VM1, ll, &[]), 1),
            DropReason::NdMalformed,
        ),
        ("NS with bad checksum", bad_sum, DropReason::L4BadChecksum),
        (
            "NS with code 1",
            ns_with(ll, sn, 1, &ns_body(GW6, &lladdr_opt(1, vm_mac(VM1)))),
            DropReason::NdMalformed,
        ),
        (
            "NS with zero-length option",
            ns_with(ll, sn, 0, &ns_body(GW6, &[1, 0, 0, 0, 0, 0, 0, 0])),
            DropReason::NdMalformed,
        ),
        (
            "NS with option running past the end",
            ns_with(ll, sn, 0, &ns_body(GW6, &[1, 2, 1, 2, 3, 4, 5, 6])),
            DropReason::NdMalformed,
        ),
        (
            "NS with multicast target",
            ns_with(ll, sn, 0, &ns_body("ff02::1".parse().unwrap(), &[])),
            DropReason::NdMalformed,
        ),
        (
            "NS truncated before the target",
            ns_with(ll, sn, 0, &[0; 12]),
            DropReason::NdMalformed,
        ),
        (
            "DAD NS with a source link-layer option",
            ns_with(
                Ipv6Addr::UNSPECIFIED,
                sn,
                0,
                &ns_body(GW6, &lladdr_opt(1, vm_mac(VM1))),
            ),
            DropReason::NdMalformed,
        ),
        (
            "DAD NS not to a solicited-node group",
            ns_with(
                Ipv6Addr::UNSPECIFIED,
                "ff02::1".parse().unwrap(),
                0,
                &ns_body(GW6, &[]),
            ),
            DropReason::NdMalformed,
        ),
        (
            "RS from unspecified with a source link-layer option",
            rs_frame(VM1, Ipv6Addr::UNSPECIFIED, &lladdr_opt(1, vm_mac(VM1))),
            DropReason::NdMalformed,
        ),
        (
            "NS for another address (DAD of the VM's own)",
            ns_with(
                Ipv6Addr::UNSPECIFIED,
                "ff02::1:ff00:1".parse().unwrap(),
                0,
                &ns_body(vm_ipv6(VM1), &[]),
            ),
            DropReason::NdNotForGateway,
        ),
        (
            "NS for another VM",
            ns_with(
                ll,
                "ff02::1:ff00:2".parse().unwrap(),
                0,
                &ns_body(vm_ipv6(VM2), &[]),
            ),
            DropReason::NdNotForGateway,
        ),
        (
            "NA from the VM",
            nd_frame(
                VM1,
                [0x33, 0x33, 0, 0, 0, 1],
                ll,
                "ff02::1".parse().unwrap(),
                255,
                &icmpv6(ll, "ff02::1".parse().unwrap(), 136, 0, &{
                    let mut b = vec![0x20, 0, 0, 0];
                    b.extend_from_slice(&ll.octets());
                    b
                }),
            ),
            DropReason::NdUnhandled,
        ),
        (
            "RA from the VM",
            nd_frame(
                VM1,
                [0x33, 0x33, 0, 0, 0, 1],
                ll,
                "ff02::1".parse().unwrap(),
                255,
                &icmpv6(
                    ll,
                    "ff02::1".parse().unwrap(),
                    134,
                    0,
                    &[64, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 0],
                ),
            ),
            DropReason::NdUnhandled,
        ),
        (
            "redirect from the VM",
            nd_frame(
                VM1,
                own_mac(VM1),
                ll,
                GW6,
                255,
                &icmpv6(ll, GW6, 137, 0, &[0; 36]),
            ),
            DropReason::NdUnhandled,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame);
        assert!(out.is_empty(), "{what}: sent {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
}

#[test]
fn nd_is_not_answered_without_ipv6_overlay() {
    let mut h = Harness::with(|_, c| c.ipv6_overlay = false);
    let out = h.run(&[
        (VM1, ns_frame(VM1, GW6)),
        (VM1, rs_frame(VM1, vm_link_local(VM1), &[])),
    ]);
    assert!(out.is_empty());
    assert_eq!(
        h.nonzero_drops(),
        vec![(DropReason::Ipv6OverlayDisabled, 2)]
    );
}

#[test]
fn truncated_nd_at_every_length() {
    let frame = ns_frame(VM1, GW6);
    for len in 14..frame.len() {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame[..len].to_vec());
        assert!(out.is_empty(), "len {len}");
        assert_eq!(h.total_drops(), 1, "len {len}");
        h.assert_conservation();
    }
}
