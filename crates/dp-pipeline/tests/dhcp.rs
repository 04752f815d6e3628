mod common;

use std::net::Ipv4Addr;

use common::*;
use dp_pipeline::DropReason;
use dp_tables::PxeConfig;

// Reference replies, built with Debian's scapy 2.5 by tests/scapy/dhcp.py:
// Ether/IP(src=169.254.0.1, ttl=64, id=0)/UDP(67→68)/BOOTP(op=2, ...)/DHCP(options=[...]), padded to
// a 300-byte BOOTP message.
/// scapy-built reference (OFFER).
const OFFER: &str = "666666666602222222222202080045000148000000004011c441a9fe00010a6401010043004401347cb5020106001122334400000000000000000a640101a9fe0001a9fe000166666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501023304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a020539ff0000000000000000000000000000000000000000";
/// scapy-built reference (ACK).
const ACK: &str = "666666666602222222222202080045000148000000004011c441a9fe00010a64010100430044013479b5020106001122334400000000000000000a640101a9fe0001a9fe000166666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501053304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a020539ff0000000000000000000000000000000000000000";
/// scapy-built reference (ACK_RENEW).
const ACK_RENEW: &str = "666666666602222222222202080045000148000000004011c441a9fe00010a6401010043004401346e500201060011223344000000000a6401010a640101a9fe0001a9fe000166666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501053304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a020539ff0000000000000000000000000000000000000000";
/// scapy-built reference (OFFER_DNS_HOST).
const OFFER_DNS_HOST: &str = "66666666660222222222220208004500014b000000004011c43ea9fe00010a640101004300440137613b020106001122334400000000000000000a640101a9fe0001a9fe000166666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501023304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a020539060808080404080808080c0b766d312e6578616d706c65ff";
/// scapy-built reference (OFFER_PXE).
const OFFER_PXE: &str = "ffffffffffff222222222202080045000148000000004011cfa6a9fe0001ffffffff004300440134b719020106001122334400000000000000000a640101c0a86405a9fe00016666666666020000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000697078652f7838365f36342f697078652e6e6577000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501023304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a0205390304a9fe0001ff0000000000000000000000000000";
/// scapy-built reference (ACK_IPXE).
const ACK_IPXE: &str = "ffffffffffff222222222202080045000148000000004011cfa6a9fe0001ffffffff004300440134a171020106001122334400000000000000000a640101c0a86405a9fe00016666666666020000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000687474703a2f2f3139322e3136382e3130302e352f626f6f742e697078650000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501053304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a0205390304a9fe0001ff0000000000000000000000000000";
/// scapy-built reference (OFFER_BCAST).
const OFFER_BCAST: &str = "ffffffffffff222222222202080045000148000000004011cfa6a9fe0001ffffffff004300440134081a020106001122334400008000000000000a640101a9fe0001a9fe000166666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501023304ffffffff3604a9fe0001790c10a9fe0000000000a9fe00010104ffffffff1a020539ff0000000000000000000000000000000000000000";
/// scapy-built reference (NAK).
const NAK: &str = "ffffffffffff222222222202080045000148000000004011cfa6a9fe0001ffffffff004300440134dd030201060011223344000000000000000000000000000000000000000066666666660200000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000638253633501063604a9fe0001ff0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

const XID: u32 = 0x1122_3344;

/// A BOOTREQUEST from VM `p` with the given options (END appended).
fn bootp_request(p: u16, flags: u16, ciaddr: Ipv4Addr, options: &[u8]) -> Vec<u8> {
    let mut b = vec![1, 1, 6, 0];
    b.extend_from_slice(&XID.to_be_bytes());
    b.extend_from_slice(&[0, 3]); // secs
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&ciaddr.octets());
    b.extend_from_slice(&[0; 12]); // yiaddr, siaddr, giaddr
    b.extend_from_slice(&vm_mac(p));
    b.extend_from_slice(&[0; 10]);
    b.extend_from_slice(&[0; 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    b.extend_from_slice(options);
    b.push(255);
    b
}

/// The frame carrying a BOOTREQUEST: broadcast from 0.0.0.0:68 (or unicast from `ciaddr`).
fn dhcp_frame(p: u16, src: Ipv4Addr, dst: Ipv4Addr, bootp: &[u8]) -> Vec<u8> {
    let u = udp_v4(src, dst, 68, 67, bootp);
    let dst_mac = if dst.is_broadcast() {
        BROADCAST
    } else {
        own_mac(p)
    };
    eth(dst_mac, vm_mac(p), ETH_IPV4, &ipv4(src, dst, 17, 64, &u))
}

fn discover(p: u16, extra: &[u8]) -> Vec<u8> {
    let mut opts = vec![53, 1, 1, 55, 8, 1, 3, 6, 12, 15, 26, 28, 121, 61, 7, 1];
    opts.extend_from_slice(&vm_mac(p));
    opts.extend_from_slice(extra);
    dhcp_frame(
        p,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &bootp_request(p, 0, Ipv4Addr::UNSPECIFIED, &opts),
    )
}

fn request_selecting(p: u16, requested: Ipv4Addr, extra: &[u8]) -> Vec<u8> {
    let mut opts = vec![53, 1, 3, 50, 4];
    opts.extend_from_slice(&requested.octets());
    opts.extend_from_slice(&[54, 4, 169, 254, 0, 1]);
    opts.extend_from_slice(extra);
    dhcp_frame(
        p,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        &bootp_request(p, 0, Ipv4Addr::UNSPECIFIED, &opts),
    )
}

fn exchange(h: &mut Harness, frame: Vec<u8>) -> Vec<u8> {
    let out = h.run1(VM1, frame);
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    assert_eq!(out[0].0, VM1);
    out.into_iter().next().unwrap().1
}

#[test]
fn discover_gets_offer() {
    let mut h = Harness::new();
    let reply = exchange(&mut h, discover(VM1, &[]));
    assert_frame(&reply, &hex(OFFER));
    h.assert_conservation();
}

#[test]
fn request_gets_ack() {
    let mut h = Harness::new();
    let reply = exchange(&mut h, request_selecting(VM1, vm_ipv4(VM1), &[]));
    assert_frame(&reply, &hex(ACK));
}

#[test]
fn dpservice_style_request_without_address_gets_ack() {
    // dpservice's own test sends a REQUEST with nothing but the message type.
    let mut h = Harness::new();
    let bootp = bootp_request(VM1, 0, Ipv4Addr::UNSPECIFIED, &[53, 1, 3]);
    let reply = exchange(
        &mut h,
        dhcp_frame(VM1, vm_ipv4(VM1), Ipv4Addr::new(169, 254, 0, 1), &bootp),
    );
    assert_frame(&reply, &hex(ACK));
}

#[test]
fn renewal_gets_ack_with_ciaddr() {
    let mut h = Harness::new();
    let bootp = bootp_request(VM1, 0, vm_ipv4(VM1), &[53, 1, 3]);
    let reply = exchange(
        &mut h,
        dhcp_frame(VM1, vm_ipv4(VM1), Ipv4Addr::new(169, 254, 0, 1), &bootp),
    );
    assert_frame(&reply, &hex(ACK_RENEW));
}

#[test]
fn offer_with_dns_and_hostname() {
    let mut h = Harness::with(|ifaces, config| {
        ifaces[0].hostname = Some("vm1.example".into());
        config.dhcp_dns = vec![Ipv4Addr::new(8, 8, 4, 4), Ipv4Addr::new(8, 8, 8, 8)];
    });
    let reply = exchange(&mut h, discover(VM1, &[]));
    assert_frame(&reply, &hex(OFFER_DNS_HOST));
}

fn with_pxe(ifaces: &mut [dp_tables::Iface]) {
    ifaces[0].pxe = Some(PxeConfig {
        next_server: Some(Ipv4Addr::new(192, 168, 100, 5)),
        next_server_v6: None,
        boot_filename: "/boot.ipxe".into(),
    });
}

const PXE_VENDOR: &[u8] = b"PXEClient:Arch:00007:UNDI:003016";

#[test]
fn pxe_rom_gets_ipxe_loader_over_tftp() {
    let mut h = Harness::with(|ifaces, _| with_pxe(ifaces));
    let mut vendor = vec![60, PXE_VENDOR.len() as u8];
    vendor.extend_from_slice(PXE_VENDOR);
    let reply = exchange(&mut h, discover(VM1, &vendor));
    assert_frame(&reply, &hex(OFFER_PXE));
}

#[test]
fn ipxe_gets_http_boot_file() {
    let mut h = Harness::with(|ifaces, _| with_pxe(ifaces));
    let reply = exchange(
        &mut h,
        request_selecting(VM1, vm_ipv4(VM1), &[77, 4, b'i', b'P', b'X', b'E']),
    );
    assert_frame(&reply, &hex(ACK_IPXE));
}

#[test]
fn pxe_client_without_pxe_config_gets_a_plain_offer() {
    let mut h = Harness::new();
    let reply = exchange(&mut h, discover(VM1, &[77, 4, b'i', b'P', b'X', b'E']));
    assert_frame(&reply, &hex(OFFER));
}

#[test]
fn plain_client_on_pxe_interface_gets_a_plain_offer() {
    let mut h = Harness::with(|ifaces, _| with_pxe(ifaces));
    let reply = exchange(&mut h, discover(VM1, &[]));
    assert_frame(&reply, &hex(OFFER));
}

#[test]
fn broadcast_flag_is_honoured() {
    let mut h = Harness::new();
    let mut opts = vec![53, 1, 1, 55, 8, 1, 3, 6, 12, 15, 26, 28, 121, 61, 7, 1];
    opts.extend_from_slice(&vm_mac(VM1));
    let bootp = bootp_request(VM1, 0x8000, Ipv4Addr::UNSPECIFIED, &opts);
    let reply = exchange(
        &mut h,
        dhcp_frame(VM1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, &bootp),
    );
    assert_frame(&reply, &hex(OFFER_BCAST));
}

#[test]
fn request_for_another_address_gets_nak() {
    let mut h = Harness::new();
    let reply = exchange(
        &mut h,
        request_selecting(VM1, Ipv4Addr::new(10, 100, 1, 99), &[]),
    );
    assert_frame(&reply, &hex(NAK));
    // A renewal of another address too.
    let mut h = Harness::new();
    let bootp = bootp_request(VM1, 0, Ipv4Addr::new(10, 9, 9, 9), &[53, 1, 3]);
    let reply = exchange(
        &mut h,
        dhcp_frame(
            VM1,
            Ipv4Addr::new(10, 9, 9, 9),
            Ipv4Addr::new(169, 254, 0, 1),
            &bootp,
        ),
    );
    assert_frame(&reply, &hex(NAK));
}

#[test]
fn each_vm_gets_its_own_address() {
    let mut h = Harness::new();
    let out = h.run(&[(VM2, discover(VM2, &[])), (VM4, discover(VM4, &[]))]);
    assert_eq!(out.len(), 2);
    for (port, frame) in out {
        // yiaddr at Ethernet 14 + IP 20 + UDP 8 + 16
        assert_eq!(&frame[58..62], &vm_ipv4(port).octets());
        assert_eq!(&frame[0..6], &vm_mac(port));
        assert_eq!(&frame[6..12], &own_mac(port));
        assert_eq!(&frame[30..34], &vm_ipv4(port).octets());
    }
}

#[test]
fn reply_checksums_verify() {
    let mut h = Harness::with(|ifaces, config| {
        ifaces[0].hostname = Some("x".repeat(63));
        config.dhcp_dns = vec![Ipv4Addr::new(1, 1, 1, 1); 10];
    });
    let reply = exchange(&mut h, discover(VM1, &[]));
    assert_eq!(inet_checksum(&[&reply[14..34]]), 0);
    let udp = &reply[34..];
    let mut pseudo = vec![169, 254, 0, 1, 10, 100, 1, 1, 0, 17];
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    assert_eq!(inet_checksum(&[&pseudo, udp]), 0);
}

#[test]
fn unhandled_and_malformed_dhcp_is_dropped() {
    let base = |opts: &[u8]| bootp_request(VM1, 0, Ipv4Addr::UNSPECIFIED, opts);
    let bcast = |bootp: &[u8]| dhcp_frame(VM1, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, bootp);
    let mut bad_magic = base(&[53, 1, 1]);
    bad_magic[236] = 0x64;
    let mut reply_op = base(&[53, 1, 1]);
    reply_op[0] = 2;
    let mut htype = base(&[53, 1, 1]);
    htype[1] = 6;
    let mut hlen = base(&[53, 1, 1]);
    hlen[2] = 16;
    let mut bad_udp = bcast(&base(&[53, 1, 1]));
    let n = bad_udp.len();
    bad_udp[n - 1] ^= 0xff; // END becomes PAD-like garbage, checksum now wrong
    let mut no_udp_sum = {
        let bootp = base(&[53, 1, 1]);
        let mut u = udp_v4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &bootp);
        u[6] = 0;
        u[7] = 0;
        eth(
            BROADCAST,
            vm_mac(VM1),
            ETH_IPV4,
            &ipv4(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 17, 64, &u),
        )
    };
    no_udp_sum[0] = 0xff; // still broadcast; a zero UDP checksum means "none" and is accepted
    let cases: Vec<(&str, Vec<u8>, Option<DropReason>)> = vec![
        ("zero UDP checksum is accepted", no_udp_sum, None),
        (
            "release",
            bcast(&base(&[53, 1, 7])),
            Some(DropReason::DhcpUnhandled),
        ),
        (
            "decline",
            bcast(&base(&[53, 1, 4])),
            Some(DropReason::DhcpUnhandled),
        ),
        (
            "inform",
            bcast(&base(&[53, 1, 8])),
            Some(DropReason::DhcpUnhandled),
        ),
        (
            "unknown type",
            bcast(&base(&[53, 1, 42])),
            Some(DropReason::DhcpUnhandled),
        ),
        (
            "no message type",
            bcast(&base(&[12, 1, b'a'])),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "message type of length 2",
            bcast(&base(&[53, 2, 1, 1])),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "requested IP of length 3",
            bcast(&base(&[53, 1, 3, 50, 3, 10, 100, 1])),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "option running past the end",
            bcast(&base(&[53, 1, 1, 12, 200, b'a'])),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "bad magic cookie",
            bcast(&bad_magic),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "BOOTREPLY from a VM",
            bcast(&reply_op),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "non-Ethernet hardware type",
            bcast(&htype),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "hardware length 16",
            bcast(&hlen),
            Some(DropReason::DhcpMalformed),
        ),
        (
            "truncated BOOTP header",
            bcast(&base(&[])[..200]),
            Some(DropReason::DhcpMalformed),
        ),
        ("bad UDP checksum", bad_udp, Some(DropReason::L4BadChecksum)),
    ];
    for (what, frame, reason) in cases {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame);
        match reason {
            Some(reason) => {
                assert!(out.is_empty(), "{what}: sent {out:?}");
                assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
            }
            None => assert_eq!(out.len(), 1, "{what}: {:?}", h.nonzero_drops()),
        }
        h.assert_conservation();
    }
}

#[test]
fn dhcp_without_ipv4_address_is_dropped() {
    let mut h = Harness::with(|ifaces, _| ifaces[0].ipv4 = Ipv4Addr::UNSPECIFIED);
    let out = h.run1(VM1, discover(VM1, &[]));
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::DhcpNoAddress);
}

#[test]
fn truncated_dhcp_at_every_length() {
    let frame = discover(VM1, &[]);
    for len in 14..frame.len() {
        let mut h = Harness::new();
        let out = h.run1(VM1, frame[..len].to_vec());
        assert!(out.is_empty(), "len {len}");
        assert_eq!(h.total_drops(), 1, "len {len}");
        h.assert_conservation();
    }
}
