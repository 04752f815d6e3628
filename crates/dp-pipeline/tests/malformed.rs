//! Malformed, truncated and hostile frames from a VM: each is dropped for the expected reason,
//! counted once, and nothing is transmitted.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use dp_pipeline::DropReason;

#[track_caller]
fn assert_drop(frame: Vec<u8>, reason: DropReason, what: &str) {
    let mut h = Harness::new();
    let out = h.run1(VM1, frame);
    assert!(out.is_empty(), "{what}: transmitted {out:?}");
    assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
    h.assert_conservation();
}

#[test]
fn every_template_is_accepted_whole() {
    // The baseline for the tables below: unmodified, each template produces exactly one frame.
    for (name, frame) in templates(VM1) {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame);
        assert_eq!(out.len(), 1, "{name}: {:?}", h.nonzero_drops());
        assert_eq!(h.total_drops(), 0, "{name}");
    }
}

#[test]
fn every_header_cut_short_at_every_length() {
    for (name, frame) in templates(VM1) {
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        for len in 0..frame.len() {
            let expected = if len < 14 {
                DropReason::EthTruncated
            } else {
                match ethertype {
                    ETH_ARP => DropReason::ArpMalformed,
                    ETH_IPV4 => DropReason::Ipv4Malformed,
                    _ => DropReason::Ipv6Malformed,
                }
            };
            assert_drop(
                frame[..len].to_vec(),
                expected,
                &format!("{name} cut to {len}"),
            );
        }
    }
}

/// Rebuilds an IPv4 frame's header checksum after a test changed header bytes.
fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let end = (14 + ihl).min(frame.len());
    frame[24] = 0;
    frame[25] = 0;
    let c = inet_checksum(&[&frame[14..end]]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

fn patched(frame: &[u8], at: usize, bytes: &[u8], fix: bool) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[at..at + bytes.len()].copy_from_slice(bytes);
    if fix {
        fix_ipv4_checksum(&mut f);
    }
    f
}

#[test]
fn bad_ipv4_headers() {
    for (name, frame) in [
        ("udp4", tmpl_udp4(VM1)),
        ("echo4", tmpl_echo4(VM1)),
        ("dhcp", tmpl_dhcp(VM1)),
    ] {
        let total = frame.len() - 14;
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            (
                "IHL 4",
                patched(&frame, 14, &[0x44], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "IHL 0",
                patched(&frame, 14, &[0x40], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "version 6",
                patched(&frame, 14, &[0x65], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "version 0",
                patched(&frame, 14, &[0x05], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "total length 19",
                patched(&frame, 16, &19u16.to_be_bytes(), true),
                DropReason::Ipv4Malformed,
            ),
            (
                "total length 0",
                patched(&frame, 16, &[0, 0], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "total length beyond the frame",
                patched(&frame, 16, &((total + 1) as u16).to_be_bytes(), true),
                DropReason::Ipv4Malformed,
            ),
            (
                "total length 65535",
                patched(&frame, 16, &[0xff, 0xff], true),
                DropReason::Ipv4Malformed,
            ),
            (
                "bad header checksum",
                patched(&frame, 24, &[0xde, 0xad], false),
                DropReason::Ipv4BadChecksum,
            ),
            (
                "TTL changed without checksum",
                patched(&frame, 22, &[0x07], false),
                DropReason::Ipv4BadChecksum,
            ),
        ];
        for (what, f, reason) in cases {
            assert_drop(f, reason, &format!("{name}: {what}"));
        }
    }
    // IHL 15 (60 bytes) on a 40-byte datagram.
    let f = patched(&tmpl_udp4(VM1), 14, &[0x4f], true);
    assert_drop(f, DropReason::Ipv4Malformed, "IHL beyond total length");
}

#[test]
fn bad_ipv6_headers() {
    for (name, frame) in [
        ("udp6", tmpl_udp6(VM1)),
        ("echo6", tmpl_echo6(VM1)),
        ("dhcpv6", tmpl_dhcpv6(VM1)),
        ("ns", tmpl_ns(VM1)),
    ] {
        let payload = frame.len() - 54;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("version 4", patched(&frame, 14, &[0x40], false)),
            ("version 7", patched(&frame, 14, &[0x70], false)),
            (
                "payload length beyond the frame",
                patched(&frame, 18, &((payload + 1) as u16).to_be_bytes(), false),
            ),
            (
                "payload length 65535",
                patched(&frame, 18, &[0xff, 0xff], false),
            ),
        ];
        for (what, f) in cases {
            assert_drop(f, DropReason::Ipv6Malformed, &format!("{name}: {what}"));
        }
    }
}

#[test]
fn bad_transport_checksums_and_lengths() {
    let last = |f: &[u8]| f.len() - 1;
    let flip_last = |f: Vec<u8>| {
        let mut f = f;
        let n = last(&f);
        f[n] ^= 0x01;
        f
    };
    assert_drop(
        flip_last(tmpl_echo4(VM1)),
        DropReason::L4BadChecksum,
        "ICMP checksum",
    );
    assert_drop(
        flip_last(tmpl_echo6(VM1)),
        DropReason::L4BadChecksum,
        "ICMPv6 checksum",
    );
    assert_drop(
        flip_last(tmpl_ns(VM1)),
        DropReason::L4BadChecksum,
        "NS checksum",
    );
    assert_drop(
        flip_last(tmpl_rs(VM1)),
        DropReason::L4BadChecksum,
        "RS checksum",
    );
    assert_drop(
        flip_last(tmpl_dhcp(VM1)),
        DropReason::L4BadChecksum,
        "DHCP UDP checksum",
    );
    assert_drop(
        flip_last(tmpl_dhcpv6(VM1)),
        DropReason::L4BadChecksum,
        "DHCPv6 UDP checksum",
    );

    // UDP length field disagreeing with the IP payload.
    let dhcp = tmpl_dhcp(VM1);
    let udp_len = dhcp.len() - 34;
    assert_drop(
        patched(&dhcp, 38, &((udp_len + 1) as u16).to_be_bytes(), false),
        DropReason::L4Malformed,
        "UDP length too long",
    );
    assert_drop(
        patched(&dhcp, 38, &7u16.to_be_bytes(), false),
        DropReason::L4Malformed,
        "UDP length 7",
    );
    let v6 = tmpl_dhcpv6(VM1);
    let udp6_len = v6.len() - 54;
    assert_drop(
        patched(&v6, 58, &((udp6_len + 1) as u16).to_be_bytes(), false),
        DropReason::L4Malformed,
        "UDPv6 length too long",
    );
    assert_drop(
        patched(&v6, 58, &0u16.to_be_bytes(), false),
        DropReason::L4Malformed,
        "UDPv6 length 0",
    );

    // An IPv4 datagram whose UDP header is cut by a consistent total length.
    let mut short = dhcp[..34 + 6].to_vec();
    short[16..18].copy_from_slice(&26u16.to_be_bytes());
    fix_ipv4_checksum(&mut short);
    assert_drop(
        short,
        DropReason::L4Malformed,
        "UDP header cut by total length",
    );

    // An ICMP echo to the gateway shorter than the ICMP header.
    let m = [8u8, 0, 0xf7, 0xff, 0, 0];
    let f = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(vm_ipv4(VM1), GW4, 1, 64, &m),
    );
    assert_drop(f, DropReason::L4Malformed, "ICMP header cut");
    let f = eth(
        own_mac(VM1),
        vm_mac(VM1),
        ETH_IPV6,
        &ipv6(vm_ipv6(VM1), GW6, 58, 64, &[128, 0, 0]),
    );
    assert_drop(f, DropReason::L4Malformed, "ICMPv6 header cut");
}

#[test]
fn ethernet_level_garbage() {
    let good = tmpl_udp4(VM1);
    let with_src = |mac: [u8; 6]| patched(&good, 6, &mac, false);
    let with_type = |t: u16| patched(&good, 12, &t.to_be_bytes(), false);
    assert_drop(
        with_src([0xff; 6]),
        DropReason::EthBadSource,
        "broadcast source MAC",
    );
    assert_drop(
        with_src([0; 6]),
        DropReason::EthBadSource,
        "zero source MAC",
    );
    // A VM's port is promiscuous, as dpservice's VF ports are (`rte_eth_promiscuous_enable`):
    // a frame to another unicast MAC is still the VM's (dpservice's test/local suite sends its
    // VM frames to pf0's MAC).
    let mut h = Harness::new();
    let out = h.run1(VM1, patched(&good, 0, &[0x02, 0, 0, 0, 0, 9], false));
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    h.assert_conservation();
    // A multicast source from a VM is its MAC all the same (dpservice checks none).
    let out = h.run1(VM1, with_src([0x01, 0x02, 0x03, 0x04, 0x05, 0x06]));
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    for t in [0x8100u16, 0x88a8, 0x9100] {
        // A VLAN tag in front of the IPv4 header.
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&t.to_be_bytes());
        tagged.extend_from_slice(&[0, 100, 0x08, 0x00]);
        tagged.extend_from_slice(&good[14..]);
        assert_drop(
            tagged,
            DropReason::UnknownEthertype,
            &format!("VLAN tag {t:#06x}"),
        );
    }
    for t in [0x0000u16, 0x05dc, 0x88cc, 0x8847, 0x8035, 0x88e5, 0xffff] {
        assert_drop(
            with_type(t),
            DropReason::UnknownEthertype,
            &format!("ethertype {t:#06x}"),
        );
    }
}

#[test]
fn dhcp_garbage() {
    let dhcp = tmpl_dhcp(VM1);
    let bootp_at = 14 + 20 + 8;
    // Rebuild the UDP checksum after editing the BOOTP payload.
    let fix_udp = |mut f: Vec<u8>| {
        let (src, dst) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST);
        let payload = f[bootp_at..].to_vec();
        let u = udp_v4(src, dst, 68, 67, &payload);
        f[34..].copy_from_slice(&u);
        f
    };
    assert_drop(
        fix_udp(patched(
            &dhcp,
            bootp_at + 236,
            &[0x63, 0x82, 0x53, 0x64],
            false,
        )),
        DropReason::DhcpMalformed,
        "bad magic",
    );
    // The message type option's length byte claims more than there is.
    let mut opts_cut = dhcp.clone();
    let n = opts_cut.len();
    opts_cut[n - 6] = 9; // option 77's length (was 4): runs past the end
    assert_drop(
        fix_udp(opts_cut),
        DropReason::DhcpMalformed,
        "option past the end",
    );
    // No END and a dangling option code.
    let mut dangling = dhcp.clone();
    let n = dangling.len();
    dangling[n - 1] = 12;
    assert_drop(
        fix_udp(dangling),
        DropReason::DhcpMalformed,
        "dangling option code",
    );
    // Only the BOOTP header, no magic cookie.
    let b = dhcp[bootp_at..bootp_at + 236].to_vec();
    let u = udp_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &b);
    let f = eth(
        BROADCAST,
        vm_mac(VM1),
        ETH_IPV4,
        &ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, 64, &u),
    );
    assert_drop(f, DropReason::DhcpMalformed, "BOOTP without cookie");
    // Fragmented DHCP.
    let frag = patched(&dhcp, 20, &[0x20, 0x00], true);
    assert_drop(frag, DropReason::Ipv4Fragment, "DHCP first fragment");
}

#[test]
fn nd_garbage() {
    let ns = tmpl_ns(VM1);
    let rs = tmpl_rs(VM1);
    assert_drop(
        patched(&ns, 21, &[64], false),
        DropReason::NdMalformed,
        "NS hop limit 64",
    );
    assert_drop(
        patched(&rs, 21, &[64], false),
        DropReason::NdMalformed,
        "RS hop limit 64",
    );
    assert_drop(
        patched(&ns, 21, &[1], false),
        DropReason::NdMalformed,
        "NS hop limit 1",
    );
    // Code 1 with a correct checksum.
    let src = vm_link_local(VM1);
    let dst: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let mut body = vec![0; 4];
    body.extend_from_slice(&GW6.octets());
    let m = icmpv6(src, dst, 135, 1, &body);
    let f = eth(
        [0x33, 0x33, 0xff, 0, 0, 1],
        vm_mac(VM1),
        ETH_IPV6,
        &ipv6(src, dst, 58, 255, &m),
    );
    assert_drop(f, DropReason::NdMalformed, "NS code 1");
    // An option of length zero would loop forever in a naive parser.
    let mut body = vec![0; 4];
    body.extend_from_slice(&GW6.octets());
    body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    let m = icmpv6(src, dst, 135, 0, &body);
    let f = eth(
        [0x33, 0x33, 0xff, 0, 0, 1],
        vm_mac(VM1),
        ETH_IPV6,
        &ipv6(src, dst, 58, 255, &m),
    );
    assert_drop(f, DropReason::NdMalformed, "zero-length ND option");
}

#[test]
fn short_frames() {
    for len in 0..14 {
        assert_drop(
            vec![0x22; len],
            DropReason::EthTruncated,
            &format!("{len} bytes"),
        );
    }
}
