//! Which frames change a VM's MAC: as dpservice, an ARP reply about its own address, a DHCP
//! request that gets an ACK and a neighbor solicitation for the gateway; any frame only while the
//! MAC is unknown.

mod common;

use std::net::Ipv4Addr;

use common::*;
use dp_tables::PortId;

const NEW_MAC: [u8; 6] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc];

/// Where VM1's next packet to VM2 is sent (its Ethernet destination).
fn vm2_mac_seen(h: &mut Harness) -> [u8; 6] {
    let out = h.run1(
        VM1,
        vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"payload"),
    );
    assert_eq!(out.len(), 1, "{:?}", h.nonzero_drops());
    assert_eq!(out[0].0, VM2);
    out[0].1[0..6].try_into().unwrap()
}

fn dhcp(p: PortId, src_mac: [u8; 6], msg_type: u8) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0, 1, 2, 3, 4, 0, 0, 0, 0];
    b.extend_from_slice(&[0; 16]);
    b.extend_from_slice(&vm_mac(p));
    b.extend_from_slice(&[0; 10 + 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63, 53, 1, msg_type, 255]);
    let u = udp_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &b);
    eth(
        BROADCAST,
        src_mac,
        ETH_IPV4,
        &ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, 64, &u),
    )
}

fn arp(p: PortId, src_mac: [u8; 6], op: u8, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, op];
    a.extend_from_slice(&src_mac);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&own_mac(p));
    a.extend_from_slice(&target.octets());
    eth(own_mac(p), src_mac, ETH_ARP, &a)
}

fn nd(p: PortId, src_mac: [u8; 6], icmp_type: u8) -> Vec<u8> {
    let src = vm_link_local(p);
    let (dst, dst_mac): (std::net::Ipv6Addr, _) = match icmp_type {
        135 => (
            "ff02::1:ff00:1".parse().unwrap(),
            [0x33, 0x33, 0xff, 0, 0, 1],
        ),
        _ => ("ff02::2".parse().unwrap(), [0x33, 0x33, 0, 0, 0, 2]),
    };
    let mut body = vec![0; 4];
    if icmp_type == 135 {
        body.extend_from_slice(&GW6.octets());
    }
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src_mac);
    let m = icmpv6(src, dst, icmp_type, 0, &body);
    eth(dst_mac, src_mac, ETH_IPV6, &ipv6(src, dst, 58, 255, &m))
}

#[test]
fn an_ordinary_frame_does_not_change_a_known_mac() {
    let mut h = Harness::new();
    let mut hello = vm_udp4(VM2, vm_ipv4(VM2), vm_ipv4(VM1), 64, b"hi");
    hello[6..12].copy_from_slice(&NEW_MAC);
    assert_eq!(h.run1(VM2, hello).len(), 1);
    // A router solicitation (a TAP's kernel side sends them) does not either.
    h.run1(VM2, nd(VM2, NEW_MAC, 133));
    assert_eq!(vm2_mac_seen(&mut h), vm_mac(VM2));
}

#[test]
fn an_unknown_mac_is_learned_from_the_first_frame() {
    let mut h = Harness::new();
    h.ports.get(VM2).unwrap().forget_peer();
    let mut hello = vm_udp4(VM2, vm_ipv4(VM2), vm_ipv4(VM1), 64, b"hi");
    hello[6..12].copy_from_slice(&NEW_MAC);
    h.run1(VM2, hello.clone());
    hello[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    h.run1(VM2, hello);
    assert_eq!(vm2_mac_seen(&mut h), NEW_MAC);
}

#[test]
fn a_dhcp_request_changes_the_mac_a_discover_does_not() {
    let mut h = Harness::new();
    assert_eq!(h.run1(VM2, dhcp(VM2, NEW_MAC, 1)).len(), 1); // OFFER
    assert_eq!(vm2_mac_seen(&mut h), vm_mac(VM2));
    let ack = h.run1(VM2, dhcp(VM2, NEW_MAC, 3));
    assert_eq!(ack.len(), 1);
    assert_eq!(&ack[0].1[0..6], &NEW_MAC);
    assert_eq!(vm2_mac_seen(&mut h), NEW_MAC);
}

#[test]
fn an_arp_reply_about_its_own_address_changes_the_mac_a_request_does_not() {
    let mut h = Harness::new();
    let mut request = tmpl_arp(VM2);
    request[6..12].copy_from_slice(&NEW_MAC);
    request[22..28].copy_from_slice(&NEW_MAC);
    assert_eq!(h.run1(VM2, request).len(), 1);
    // A reply about another address does not count.
    h.run1(VM2, arp(VM2, NEW_MAC, 2, Ipv4Addr::new(10, 9, 9, 9), GW4));
    assert_eq!(vm2_mac_seen(&mut h), vm_mac(VM2));
    assert!(h
        .run1(VM2, arp(VM2, NEW_MAC, 2, vm_ipv4(VM2), GW4))
        .is_empty());
    assert_eq!(vm2_mac_seen(&mut h), NEW_MAC);
}

#[test]
fn a_solicitation_for_the_gateway_changes_the_mac() {
    let mut h = Harness::new();
    let na = h.run1(VM2, nd(VM2, NEW_MAC, 135));
    assert_eq!(na.len(), 1);
    assert_eq!(vm2_mac_seen(&mut h), NEW_MAC);
}

#[test]
fn a_dhcp_client_with_a_multicast_mac_gets_it() {
    // dpservice checks no source MAC; a guest may use one with the group bit set.
    let mut h = Harness::new();
    let mac = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
    let ack = h.run1(VM2, dhcp(VM2, mac, 3));
    assert_eq!(ack.len(), 1, "{:?}", h.nonzero_drops());
    assert_eq!(&ack[0].1[0..6], &mac);
    assert_eq!(vm2_mac_seen(&mut h), mac);
}
