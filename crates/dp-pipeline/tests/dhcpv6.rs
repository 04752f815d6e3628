mod common;

use std::net::Ipv6Addr;

use common::*;
use dp_pipeline::DropReason;

// Reference frames built with Debian's scapy 2.5 (tests/scapy/dhcp6.py): Ether/IPv6(src=fe80::1, hlim=64)/UDP(547→546)/
// DHCP6_*(trid=0xabcdef)/DHCP6OptServerId(DUID_LL(22:22:22:22:22:xx))/DHCP6OptClientId(...)/
// DHCP6OptIA_NA(iaid=0x18702501, T1=T2=inf, [IAAddress(addr, inf, inf, [StatusCode(0)])])/...
// SOLICIT is scapy's rendering of the request the tests build (a cross-check of the builder).
const ADVERTISE: &str = "66666666660222222222220286dd60000000007e1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222007edaaf02abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000001700202001486048600000000000000000646420024861486100000000000000006464";
const ADVERTISE_NODNS: &str = "66666666660222222222220286dd60000000005a1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222005a057e02abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000";
const REPLY_RAPID: &str = "66666666660222222222220286dd6000000000821140fe800000000000000000000000000001fe80000000000000646666fffe666602022302220082d59907abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000000e0000001700202001486048600000000000000000646420024861486100000000000000006464";
const REPLY: &str = "66666666660222222222220286dd60000000007e1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222007ed5af07abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000001700202001486048600000000000000000646420024861486100000000000000006464";
const REPLY_CONFIRM: &str = "66666666660222222222220286dd6000000000201140fe800000000000000000000000000001fe80000000000000646666fffe666602022302220020929707abcdef0002000a00030001222222222202000d00020000";
const REPLY_NOTONLINK: &str = "66666666660222222222220286dd60000000002e1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222002e5f9907abcdef0002000a000300012222222222020001000a00030001666666666602000d00020004";
const REPLY_INFO: &str = "66666666660222222222220286dd60000000004c1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222004c34ea07abcdef0002000a000300012222222222020001000a00030001666666666602001700202001486048600000000000000000646420024861486100000000000000006464";
const REPLY_NOADDRS: &str = "66666666660522222222220586dd60000000002e1140fe800000000000000000000000000001fe80000000000000646666fffe66660502230222002e5f9207abcdef0002000a000300012222222222050001000a00030001666666666605000d00020002";
const SOLICIT: &str = "33330001000266666666660286dd6000000000361101fe80000000000000646666fffe666602ff0200000000000000000000000100020222022300368dc501abcdef0001000a000300016666666666020003000c187025010000000000000000000800020000000600020017";

const ADVERTISE_PXE: &str = "66666666660222222222220286dd6000000000ac1140fe800000000000000000000000000001fe80000000000000646666fffe6666020223022200ac362302abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000001700202001486048600000000000000000646420024861486100000000000000006464003b002a746674703a2f2f5b323030313a646564653a3a315d2f697078652f7838365f36342f697078652e6e6577";
const ADVERTISE_IPXE: &str = "66666666660222222222220286dd60000000009c1140fe800000000000000000000000000001fe80000000000000646666fffe66660202230222009cb31402abcdef0002000a000300012222222222020001000a000300016666666666020003002e18702501ffffffffffffffff0005001e20000100000100000000000000000001ffffffffffffffff000d00020000001700202001486048600000000000000000646420024861486100000000000000006464003b001a687474703a2f2f5b323030313a646564653a3a315d2f69707865";

const TRID: u32 = 0xabcdef;
const IAID: u32 = 0x1870_2501;

fn dns() -> Vec<Ipv6Addr> {
    vec![
        "2001:4860:4860::6464".parse().unwrap(),
        "2002:4861:4861::6464".parse().unwrap(),
    ]
}

fn opt(code: u16, data: &[u8]) -> Vec<u8> {
    let mut o = code.to_be_bytes().to_vec();
    o.extend_from_slice(&(data.len() as u16).to_be_bytes());
    o.extend_from_slice(data);
    o
}

fn client_id(p: u16) -> Vec<u8> {
    let mut duid = vec![0, 3, 0, 1];
    duid.extend_from_slice(&vm_mac(p));
    opt(1, &duid)
}

fn ia_na(iaid: u32, nested: &[u8]) -> Vec<u8> {
    let mut d = iaid.to_be_bytes().to_vec();
    d.extend_from_slice(&[0; 8]);
    d.extend_from_slice(nested);
    opt(3, &d)
}

fn ia_addr(addr: Ipv6Addr) -> Vec<u8> {
    let mut d = addr.octets().to_vec();
    d.extend_from_slice(&[0; 8]);
    opt(5, &d)
}

const ELAPSED: [u8; 6] = [0, 8, 0, 2, 0, 0];
const ORO_DNS: [u8; 6] = [0, 6, 0, 2, 0, 23];
const RAPID: [u8; 4] = [0, 14, 0, 0];

/// A client message (type + options) from VM `p`'s link-local address to ff02::1:2.
fn dhcp6_frame(p: u16, msg_type: u8, options: &[u8]) -> Vec<u8> {
    let src = vm_link_local(p);
    let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
    let mut msg = vec![msg_type];
    msg.extend_from_slice(&TRID.to_be_bytes()[1..]);
    msg.extend_from_slice(options);
    let u = udp_v6(src, dst, 546, 547, &msg);
    eth(
        [0x33, 0x33, 0, 1, 0, 2],
        vm_mac(p),
        ETH_IPV6,
        &ipv6(src, dst, 17, 1, &u),
    )
}

fn solicit(p: u16, extra: &[u8]) -> Vec<u8> {
    let mut o = client_id(p);
    o.extend(ia_na(IAID, &[]));
    o.extend_from_slice(&ELAPSED);
    o.extend_from_slice(&ORO_DNS);
    o.extend_from_slice(extra);
    dhcp6_frame(p, 1, &o)
}

fn with_dns() -> Harness {
    Harness::with(|_, c| c.dhcpv6_dns = dns())
}

fn exchange(h: &mut Harness, port: u16, frame: Vec<u8>) -> Vec<u8> {
    let out = h.run1(port, frame);
    assert_eq!(out.len(), 1, "drops: {:?}", h.nonzero_drops());
    assert_eq!(out[0].0, port);
    out.into_iter().next().unwrap().1
}

#[test]
fn builder_matches_scapy() {
    assert_frame(&solicit(VM1, &[]), &hex(SOLICIT));
}

#[test]
fn solicit_gets_advertise() {
    let mut h = with_dns();
    let reply = exchange(&mut h, VM1, solicit(VM1, &[]));
    assert_frame(&reply, &hex(ADVERTISE));
    h.assert_conservation();
}

#[test]
fn solicit_without_dns_configured_has_no_dns_option() {
    let mut h = Harness::new();
    let reply = exchange(&mut h, VM1, solicit(VM1, &[]));
    assert_frame(&reply, &hex(ADVERTISE_NODNS));
}

#[test]
fn rapid_commit_solicit_gets_reply() {
    let mut h = with_dns();
    let reply = exchange(&mut h, VM1, solicit(VM1, &RAPID));
    assert_frame(&reply, &hex(REPLY_RAPID));
}

#[test]
fn request_renew_rebind_get_reply() {
    for msg_type in [3u8, 5, 6] {
        let mut h = with_dns();
        let mut o = client_id(VM1);
        // The server id the client echoes (ours) and the address it was offered.
        o.extend(opt(2, &[0, 3, 0, 1, 0x22, 0x22, 0x22, 0x22, 0x22, 2]));
        o.extend(ia_na(IAID, &ia_addr(vm_ipv6(VM1))));
        o.extend_from_slice(&ELAPSED);
        o.extend_from_slice(&ORO_DNS);
        let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, msg_type, &o));
        assert_frame(&reply, &hex(REPLY));
    }
}

#[test]
fn confirm_gets_reply_with_status() {
    // dpservice's test: CONFIRM with just an elapsed-time option.
    let mut h = with_dns();
    let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, 4, &ELAPSED));
    assert_frame(&reply, &hex(REPLY_CONFIRM));
    // Confirming an address that is not the VM's: NotOnLink, the client starts over.
    let mut h = with_dns();
    let mut o = client_id(VM1);
    o.extend(ia_na(IAID, &ia_addr("2000:100:1::99".parse().unwrap())));
    let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, 4, &o));
    assert_frame(&reply, &hex(REPLY_NOTONLINK));
}

#[test]
fn information_request_gets_dns() {
    let mut h = with_dns();
    let mut o = client_id(VM1);
    o.extend_from_slice(&ELAPSED);
    o.extend_from_slice(&ORO_DNS);
    let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, 11, &o));
    assert_frame(&reply, &hex(REPLY_INFO));
}

#[test]
fn interface_without_ipv6_gets_no_addrs_avail() {
    for msg_type in [1u8, 3] {
        let mut h = with_dns();
        let mut o = client_id(VM4);
        o.extend(ia_na(0xbeef_0001, &[]));
        let reply = exchange(&mut h, VM4, dhcp6_frame(VM4, msg_type, &o));
        assert_frame(&reply, &hex(REPLY_NOADDRS));
    }
    // ... and everything else from it is dropped (dpservice: CONFIRM gets no answer).
    let mut h = with_dns();
    let out = h.run1(VM4, dhcp6_frame(VM4, 4, &ELAPSED));
    assert!(out.is_empty());
    h.assert_single_drop(DropReason::Dhcpv6Unhandled);
}

#[test]
fn dhcpv6_works_without_ipv6_overlay() {
    // As in dpservice, only forwarding and ND depend on --enable-ipv6-overlay.
    let mut h = Harness::with(|_, c| {
        c.ipv6_overlay = false;
        c.dhcpv6_dns = dns();
    });
    let reply = exchange(&mut h, VM1, solicit(VM1, &[]));
    assert_frame(&reply, &hex(ADVERTISE));
}

#[test]
fn long_client_id_is_echoed() {
    let mut h = Harness::new();
    let duid: Vec<u8> = (0..130).map(|i| i as u8).collect();
    let mut o = opt(1, &duid);
    o.extend(ia_na(IAID, &[]));
    let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, 1, &o));
    let cid = opt(1, &duid);
    let at = 14 + 40 + 8 + 4 + 14;
    assert_eq!(&reply[at..at + cid.len()], &cid[..]);
    let udp = &reply[54..];
    let mut pseudo = "fe80::1".parse::<Ipv6Addr>().unwrap().octets().to_vec();
    pseudo.extend_from_slice(&vm_link_local(VM1).octets());
    pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    assert_eq!(inet_checksum(&[&pseudo, udp]), 0);
}

#[test]
fn unhandled_and_malformed_dhcpv6_is_dropped() {
    let mut bad_sum = solicit(VM1, &[]);
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 1;
    let mut zero_sum = solicit(VM1, &[]);
    zero_sum[14 + 40 + 6] = 0;
    zero_sum[14 + 40 + 7] = 0;
    let from_unspecified = {
        let dst: Ipv6Addr = "ff02::1:2".parse().unwrap();
        let mut msg = vec![1, 0xab, 0xcd, 0xef];
        msg.extend(client_id(VM1));
        let u = udp_v6(Ipv6Addr::UNSPECIFIED, dst, 546, 547, &msg);
        eth(
            [0x33, 0x33, 0, 1, 0, 2],
            vm_mac(VM1),
            ETH_IPV6,
            &ipv6(Ipv6Addr::UNSPECIFIED, dst, 17, 1, &u),
        )
    };
    let mut o_long = opt(1, &[7; 131]);
    o_long.extend(ia_na(IAID, &[]));
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        (
            "decline",
            dhcp6_frame(VM1, 9, &client_id(VM1)),
            DropReason::Dhcpv6Unhandled,
        ),
        (
            "advertise from a client",
            dhcp6_frame(VM1, 2, &client_id(VM1)),
            DropReason::Dhcpv6Unhandled,
        ),
        (
            "reply from a client",
            dhcp6_frame(VM1, 7, &client_id(VM1)),
            DropReason::Dhcpv6Unhandled,
        ),
        (
            "relay-forward",
            dhcp6_frame(VM1, 12, &[0; 30]),
            DropReason::Dhcpv6Unhandled,
        ),
        (
            "unknown type",
            dhcp6_frame(VM1, 200, &[]),
            DropReason::Dhcpv6Unhandled,
        ),
        ("bad UDP checksum", bad_sum, DropReason::L4BadChecksum),
        ("zero UDP checksum", zero_sum, DropReason::L4BadChecksum),
        (
            "truncated option header",
            dhcp6_frame(VM1, 1, &[0, 1, 0]),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "option longer than message",
            dhcp6_frame(VM1, 1, &[0, 1, 0, 10, 1, 2]),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "empty client id",
            dhcp6_frame(VM1, 1, &opt(1, &[])),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "client id of 131 bytes",
            dhcp6_frame(VM1, 1, &o_long),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "short IA_NA",
            dhcp6_frame(VM1, 1, &opt(3, &[0; 11])),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "rapid commit with data",
            dhcp6_frame(VM1, 1, &opt(14, &[1])),
            DropReason::Dhcpv6Malformed,
        ),
        (
            "message shorter than its header",
            {
                let (src, dst) = (vm_link_local(VM1), "ff02::1:2".parse().unwrap());
                let u = udp_v6(src, dst, 546, 547, &[1, 0xab, 0xcd]);
                eth(
                    [0x33, 0x33, 0, 1, 0, 2],
                    vm_mac(VM1),
                    ETH_IPV6,
                    &ipv6(src, dst, 17, 1, &u),
                )
            },
            DropReason::Dhcpv6Malformed,
        ),
        (
            "unspecified source",
            from_unspecified,
            DropReason::Dhcpv6Malformed,
        ),
    ];
    for (what, frame, reason) in cases {
        let mut h = with_dns();
        let out = h.run1(VM1, frame);
        assert!(out.is_empty(), "{what}: sent {out:?}");
        assert_eq!(h.nonzero_drops(), vec![(reason, 1)], "{what}");
        h.assert_conservation();
    }
}

#[test]
fn truncated_dhcpv6_at_every_length() {
    let frame = solicit(VM1, &RAPID);
    for len in 14..frame.len() {
        let mut h = with_dns();
        let out = h.run1(VM1, frame[..len].to_vec());
        assert!(out.is_empty(), "len {len}");
        assert_eq!(h.total_drops(), 1, "len {len}");
        h.assert_conservation();
    }
}

// ---------------------------------------------------------------------------------------------
// PXE: the boot file URL (option 59), as dpservice's test/local test_dhcpv6 asks for it.

/// dpservice's suite: vendor class, enterprise 343, one string with the PXE ROM's class id.
fn pxe_vendor_class() -> Vec<u8> {
    let text = b"PXEClient:Arch:00007:UNDI:003016";
    let mut d = 343u32.to_be_bytes().to_vec();
    d.extend_from_slice(&(text.len() as u16).to_be_bytes());
    d.extend_from_slice(text);
    opt(16, &d)
}

/// dpservice's suite: user class with the one string `iPXE`.
fn ipxe_user_class() -> Vec<u8> {
    opt(15, &[0, 4, b'i', b'P', b'X', b'E'])
}

fn with_pxe(server: Option<&str>) -> Harness {
    let server = server.map(|s| s.parse().unwrap());
    Harness::with(move |ifaces, c| {
        c.dhcpv6_dns = dns();
        ifaces[0].pxe = Some(dp_tables::PxeConfig {
            next_server: None,
            next_server_v6: server,
            boot_filename: "ipxe".into(),
        });
    })
}

#[test]
fn a_pxe_rom_gets_the_ipxe_loader_url() {
    let mut h = with_pxe(Some("2001:dede::1"));
    let reply = exchange(&mut h, VM1, solicit(VM1, &pxe_vendor_class()));
    assert_frame(&reply, &hex(ADVERTISE_PXE));
    h.assert_conservation();
}

#[test]
fn ipxe_gets_the_interfaces_boot_file_url() {
    let mut h = with_pxe(Some("2001:dede::1"));
    let reply = exchange(&mut h, VM1, solicit(VM1, &ipxe_user_class()));
    assert_frame(&reply, &hex(ADVERTISE_IPXE));
    // Both classes: the later option decides (dpservice overwrites).
    let mut both = pxe_vendor_class();
    both.extend(ipxe_user_class());
    let reply = exchange(&mut h, VM1, solicit(VM1, &both));
    assert_frame(&reply, &hex(ADVERTISE_IPXE));
    // The REQUEST's REPLY carries it too.
    let mut o = client_id(VM1);
    o.extend(ia_na(IAID, &ia_addr(vm_ipv6(VM1))));
    o.extend(ipxe_user_class());
    let reply = exchange(&mut h, VM1, dhcp6_frame(VM1, 3, &o));
    let url = b"http://[2001:dede::1]/ipxe";
    assert_eq!(
        &reply[reply.len() - url.len() - 4..reply.len() - url.len()],
        &[0, 59, 0, 26]
    );
    assert_eq!(&reply[reply.len() - url.len()..], url);
}

#[test]
fn no_boot_file_url_without_a_pxe_client_or_an_ipv6_pxe_server() {
    // Not a PXE client: the plain ADVERTISE.
    let mut h = with_pxe(Some("2001:dede::1"));
    let reply = exchange(&mut h, VM1, solicit(VM1, &[]));
    assert_frame(&reply, &hex(ADVERTISE));
    // Classes that are not dpservice's: a short first string, another user class.
    let text = b"PXEClient:Arch:0000";
    let mut d = 343u32.to_be_bytes().to_vec();
    d.extend_from_slice(&(text.len() as u16).to_be_bytes());
    d.extend_from_slice(text);
    let reply = exchange(&mut h, VM1, solicit(VM1, &opt(16, &d)));
    assert_frame(&reply, &hex(ADVERTISE));
    let reply = exchange(
        &mut h,
        VM1,
        solicit(VM1, &opt(15, &[0, 5, b'i', b'P', b'X', b'E', b'2'])),
    );
    assert_frame(&reply, &hex(ADVERTISE));
    // No IPv6 PXE server: nothing to point at.
    let mut h = with_pxe(None);
    let reply = exchange(&mut h, VM1, solicit(VM1, &pxe_vendor_class()));
    assert_frame(&reply, &hex(ADVERTISE));
    h.assert_conservation();
}
