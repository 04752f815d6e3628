//! Property tests: no parser, getter, setter or iterator panics on arbitrary bytes, and emitted
//! representations parse back to themselves.
//!
//! Random bytes rarely get past a version/length check, so most inputs are first "fixed up" to have
//! consistent length fields (when the `fix` flag is set), which drives them into the deeper code.

use dp_packet::checksum;
use dp_packet::dhcpv4::{self, DhcpOptions};
use dp_packet::dhcpv6::{self, Dhcpv6Options};
use dp_packet::ndisc::{self, NdiscOptions};
use dp_packet::*;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1600)
}

fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    if let Some(dst) = buf.get_mut(at..at + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
}

fn clamp_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn exercise_ethernet(buf: &[u8]) {
    let frame = EthernetFrame::new_unchecked(buf);
    let _ = (
        frame.dst_addr(),
        frame.src_addr(),
        frame.ethertype(),
        frame.payload(),
    );
    if let Ok(frame) = EthernetFrame::new_checked(buf) {
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(repr.ethertype, frame.ethertype());
        assert_eq!(frame.payload().len(), buf.len() - 14);
    } else {
        assert!(buf.len() < 14);
    }
}

fn exercise_arp(buf: &[u8]) {
    let view = ArpPacket::new_unchecked(buf);
    let _ = (
        view.hardware_type(),
        view.protocol_type(),
        view.operation(),
        view.total_len(),
    );
    let _ = (view.source_hardware_addr(), view.target_protocol_addr());
    if let Ok(packet) = ArpPacket::new_checked(buf) {
        assert!(packet.total_len() <= buf.len());
        assert_eq!(
            packet.source_hardware_addr().len(),
            usize::from(packet.hardware_len())
        );
        assert_eq!(
            packet.target_protocol_addr().len(),
            usize::from(packet.protocol_len())
        );
        let _ = ArpRepr::parse(&packet);
    }
}

fn exercise_ipv4(buf: &[u8]) {
    let view = Ipv4Packet::new_unchecked(buf);
    let _ = (
        view.version(),
        view.header_len(),
        view.total_len(),
        view.payload(),
        view.options(),
    );
    let _ = view.verify_checksum();
    if let Ok(packet) = Ipv4Packet::new_checked(buf) {
        let _ = (
            packet.dscp(),
            packet.ecn(),
            packet.ident(),
            packet.dont_frag(),
            packet.more_frags(),
        );
        let _ = (
            packet.frag_offset(),
            packet.is_fragment(),
            packet.ttl(),
            packet.protocol(),
        );
        let _ = (
            packet.src_addr(),
            packet.dst_addr(),
            packet.checksum(),
            packet.header(),
        );
        assert_eq!(
            packet.payload().len(),
            usize::from(packet.total_len()) - packet.header_len()
        );
        let _ = Ipv4Repr::parse(&packet);
    }
    let mut copy = buf.to_vec();
    let mut view = Ipv4Packet::new_unchecked(&mut copy[..]);
    view.decrement_ttl();
    view.set_src_addr_incremental(Ipv4Addr::new(1, 2, 3, 4));
    view.fill_checksum();
    view.set_frag_offset(0xffff);
    let _ = (view.payload_mut().len(), view.options_mut().len());
}

fn exercise_ipv6(buf: &[u8]) {
    let view = Ipv6Packet::new_unchecked(buf);
    let _ = (
        view.version(),
        view.traffic_class(),
        view.flow_label(),
        view.payload(),
        view.packet(),
    );
    if let Ok(packet) = Ipv6Packet::new_checked(buf) {
        assert_eq!(packet.payload().len(), usize::from(packet.payload_len()));
        let repr = Ipv6Repr::parse(&packet).unwrap();
        let mut out = [0u8; 40];
        repr.emit_into(&mut out).unwrap();
        assert_eq!(&out[..], &buf[..40]);
    }
    let mut copy = buf.to_vec();
    let mut view = Ipv6Packet::new_unchecked(&mut copy[..]);
    view.set_flow_label(u32::MAX);
    view.set_traffic_class(0xff);
    let _ = view.payload_mut().len();
}

fn exercise_udp(buf: &[u8]) {
    let src4 = Ipv4Addr::new(10, 0, 0, 1);
    let src6 = Ipv6Addr::LOCALHOST;
    let view = UdpPacket::new_unchecked(buf);
    let _ = (
        view.src_port(),
        view.dst_port(),
        view.len(),
        view.payload(),
        view.datagram(),
    );
    let _ = (
        view.verify_checksum_v4(&src4, &src4),
        view.verify_checksum_v6(&src6, &src6),
    );
    if let Ok(packet) = UdpPacket::new_checked(buf) {
        assert_eq!(packet.payload().len() + 8, usize::from(packet.len()));
        let _ = UdpRepr::parse(&packet).unwrap();
        let mut copy = buf.to_vec();
        let mut packet = UdpPacket::new_checked(&mut copy[..]).unwrap();
        packet.fill_checksum_v4(&src4, &src4);
        assert!(packet.verify_checksum_v4(&src4, &src4));
        packet.fill_checksum_v6(&src6, &src6);
        assert!(packet.verify_checksum_v6(&src6, &src6));
    }
    let mut copy = buf.to_vec();
    let mut view = UdpPacket::new_unchecked(&mut copy[..]);
    view.fill_checksum_v4(&src4, &src4);
    let _ = view.payload_mut().len();
}

fn exercise_tcp(buf: &[u8]) {
    let src = Ipv4Addr::new(10, 0, 0, 1);
    let src6 = Ipv6Addr::LOCALHOST;
    let view = TcpPacket::new_unchecked(buf);
    let _ = (
        view.src_port(),
        view.dst_port(),
        view.seq_number(),
        view.ack_number(),
        view.flags(),
    );
    let _ = (
        view.header_len(),
        view.window(),
        view.urgent_pointer(),
        view.options(),
        view.payload(),
    );
    let _ = (
        view.verify_checksum_v4(&src, &src),
        view.verify_checksum_v6(&src6, &src6),
    );
    if let Ok(packet) = TcpPacket::new_checked(buf) {
        assert_eq!(packet.options().len() + 20, packet.header_len());
        let _ = TcpRepr::parse(&packet).unwrap();
        let mut copy = buf.to_vec();
        let mut packet = TcpPacket::new_checked(&mut copy[..]).unwrap();
        packet.fill_checksum_v4(&src, &src);
        packet.set_src_port_incremental(1);
        packet.set_dst_port_incremental(2);
        assert!(packet.verify_checksum_v4(&src, &src));
    }
    let mut copy = buf.to_vec();
    let mut view = TcpPacket::new_unchecked(&mut copy[..]);
    view.set_flags(TcpFlags(0xffff));
    view.set_header_len(usize::MAX);
    let _ = (view.options_mut().len(), view.payload_mut().len());
}

fn exercise_icmpv4(buf: &[u8]) {
    let view = Icmpv4Packet::new_unchecked(buf);
    let _ = (
        view.msg_type(),
        view.msg_code(),
        view.echo_ident(),
        view.echo_seq_no(),
    );
    let _ = (
        view.next_hop_mtu(),
        view.rest_of_header(),
        view.data(),
        view.verify_checksum(),
    );
    if let Ok(packet) = Icmpv4Packet::new_checked(buf) {
        if let Ok(repr) = Icmpv4Repr::parse(&packet) {
            let mut out = vec![0u8; repr.buffer_len()];
            assert_eq!(repr.emit_into(&mut out), Ok(buf.len()));
            let reparsed = Icmpv4Packet::new_checked(&out[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&reparsed), Ok(repr));
        }
    }
}

fn exercise_icmpv6(buf: &[u8]) {
    let (src, dst) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    let view = Icmpv6Packet::new_unchecked(buf);
    let _ = (
        view.msg_type(),
        view.msg_code(),
        view.echo_ident(),
        view.mtu(),
        view.body(),
    );
    let _ = (
        view.data(),
        view.verify_checksum(&src, &dst),
        view.msg_type().is_error(),
    );
    if let Ok(packet) = Icmpv6Packet::new_checked(buf) {
        let _ = Icmpv6Repr::parse(&src, &dst, &packet);
        // Make the checksum right so parsing goes past it.
        let mut copy = buf.to_vec();
        Icmpv6Packet::new_unchecked(&mut copy[..]).fill_checksum(&src, &dst);
        let packet = Icmpv6Packet::new_checked(&copy[..]).unwrap();
        if let Ok(repr) = Icmpv6Repr::parse(&src, &dst, &packet) {
            let mut out = vec![0u8; repr.buffer_len()];
            let len = repr.emit_into(&mut out, &src, &dst).unwrap();
            let reparsed = Icmpv6Packet::new_checked(&out[..len]).unwrap();
            assert_eq!(Icmpv6Repr::parse(&src, &dst, &reparsed), Ok(repr));
        }
        let _ = NdiscRepr::parse(&packet);
    }
    exercise_ndisc_views(buf);
}

fn exercise_ndisc_views(buf: &[u8]) {
    let walk = |options: NdiscOptions<'_>| {
        let mut errors = 0;
        for option in options {
            match option {
                Ok(o) => {
                    let _ = (o.link_layer_addr(), o.mtu(), o.prefix_info());
                }
                Err(_) => errors += 1,
            }
        }
        assert!(errors <= 1);
    };
    let rs = ndisc::RouterSolicit::new_unchecked(buf);
    walk(rs.options());
    let ra = ndisc::RouterAdvert::new_unchecked(buf);
    let _ = (
        ra.cur_hop_limit(),
        ra.managed_flag(),
        ra.other_flag(),
        ra.router_lifetime(),
    );
    let _ = (ra.reachable_time(), ra.retrans_timer());
    walk(ra.options());
    let ns = ndisc::NeighborSolicit::new_unchecked(buf);
    let _ = ns.target_addr();
    walk(ns.options());
    let na = ndisc::NeighborAdvert::new_unchecked(buf);
    let _ = (
        na.router_flag(),
        na.solicited_flag(),
        na.override_flag(),
        na.target_addr(),
    );
    walk(na.options());
    walk(NdiscOptions::new(buf));
    let _ = NdiscOptions::new(buf).validate();
}

fn exercise_dhcpv4(buf: &[u8]) {
    let view = DhcpPacket::new_unchecked(buf);
    let _ = (
        view.op(),
        view.xid(),
        view.flags(),
        view.broadcast(),
        view.ciaddr(),
        view.chaddr(),
    );
    let _ = (
        view.sname(),
        view.file(),
        view.magic_cookie(),
        view.client_mac(),
    );
    let _ = (
        view.message_type(),
        view.requested_ip(),
        view.server_identifier(),
    );
    let _ = (
        view.parameter_request_list(),
        view.user_class(),
        view.client_identifier(),
    );
    let _ = (view.hostname(), view.max_message_size());
    let errors = view.options().filter(|o| o.is_err()).count();
    assert!(errors <= 1);
    let errors = DhcpOptions::new(buf).filter(|o| o.is_err()).count();
    assert!(errors <= 1);
    if let Ok(packet) = DhcpPacket::new_checked(buf) {
        let mut out = [0u8; 240];
        dhcpv4::emit_reply_header(&packet, Ipv4Addr::BROADCAST, Ipv4Addr::LOCALHOST, &mut out)
            .unwrap();
        let reply = DhcpPacket::new_checked(&out[..]).unwrap();
        assert_eq!(
            (reply.xid(), reply.chaddr()),
            (packet.xid(), packet.chaddr())
        );
    }
}

fn exercise_dhcpv6(buf: &[u8]) {
    let view = Dhcpv6Packet::new_unchecked(buf);
    let _ = (
        view.msg_type(),
        view.is_relay(),
        view.transaction_id(),
        view.options_bytes(),
    );
    let _ = (
        view.client_id(),
        view.server_id(),
        view.elapsed_time(),
        view.rapid_commit(),
    );
    let _ = view.requested_options().count();
    if let Some(ia) = view.ia_na() {
        let _ = (ia.iaid(), ia.t1(), ia.t2());
        for (code, data) in ia.options().map_while(|o| o.ok()) {
            if code == dhcpv6::option::IAADDR {
                if let Ok(addr) = IaAddr::new_checked(data) {
                    let _ = (
                        addr.addr(),
                        addr.preferred_lifetime(),
                        addr.valid_lifetime(),
                    );
                    let _ = addr.options().count();
                }
            }
            if code == dhcpv6::option::STATUS_CODE {
                let _ = dhcpv6::parse_status_code(data);
            }
        }
        let _ = ia.address();
    }
    let errors = view.options().filter(|o| o.is_err()).count();
    assert!(errors <= 1);
    let errors = Dhcpv6Options::new(buf).filter(|o| o.is_err()).count();
    assert!(errors <= 1);
    let _ = Dhcpv6Packet::new_checked(buf);
}

fn exercise_all(buf: &[u8]) {
    exercise_ethernet(buf);
    exercise_arp(buf);
    exercise_ipv4(buf);
    exercise_ipv6(buf);
    exercise_udp(buf);
    exercise_tcp(buf);
    exercise_icmpv4(buf);
    exercise_icmpv6(buf);
    exercise_dhcpv4(buf);
    exercise_dhcpv6(buf);
    let _ = ip::version(buf);
    let _ = checksum::data(buf);
    let mut copy = buf.to_vec();
    let _ = checksum::finish_partial(&mut copy, 3, 5);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn raw_bytes_never_panic(buf in bytes()) {
        exercise_all(&buf);
    }

    #[test]
    fn ipv4_with_consistent_lengths(mut buf in bytes(), ihl in 5u8..16, slack in 0usize..8) {
        if let Some(b) = buf.get_mut(0) {
            *b = 0x40 | ihl;
        }
        let total = buf.len().saturating_sub(slack);
        set_u16(&mut buf, 2, clamp_u16(total));
        exercise_ipv4(&buf);
        if let Ok(packet) = Ipv4Packet::new_checked(&buf[..]) {
            // Layers above get the bounded payload, as the pipeline would pass it.
            exercise_all(packet.payload());
        }
    }

    #[test]
    fn ipv6_with_consistent_lengths(mut buf in bytes(), slack in 0usize..8) {
        if let Some(b) = buf.get_mut(0) {
            *b = 0x60 | (*b & 0x0f);
        }
        let payload = buf.len().saturating_sub(40 + slack);
        set_u16(&mut buf, 4, clamp_u16(payload));
        exercise_ipv6(&buf);
        if let Ok(packet) = Ipv6Packet::new_checked(&buf[..]) {
            exercise_all(packet.payload());
        }
    }

    #[test]
    fn udp_and_tcp_with_consistent_lengths(mut buf in bytes(), offset in 0u8..16) {
        let len = clamp_u16(buf.len());
        let mut udp = buf.clone();
        set_u16(&mut udp, 4, len);
        exercise_udp(&udp);
        if let Some(b) = buf.get_mut(12) {
            *b = (offset << 4) | (*b & 0x0f);
        }
        exercise_tcp(&buf);
    }

    #[test]
    fn arp_with_ethernet_ipv4_header(mut buf in proptest::collection::vec(any::<u8>(), 0..64)) {
        for (i, b) in [0u8, 1, 8, 0, 6, 4].iter().enumerate() {
            if let Some(slot) = buf.get_mut(i) {
                *slot = *b;
            }
        }
        exercise_arp(&buf);
        if let Ok(packet) = ArpPacket::new_checked(&buf[..]) {
            let repr = ArpRepr::parse(&packet).unwrap();
            let mut out = [0u8; 28];
            repr.emit_into(&mut out).unwrap();
            prop_assert_eq!(&out[..], &buf[..28]);
        }
    }

    #[test]
    fn icmpv6_ndisc_shaped(kind in 133u8..137, mut buf in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Some(b) = buf.get_mut(0) {
            *b = kind;
        }
        if let Some(b) = buf.get_mut(1) {
            *b = 0;
        }
        exercise_icmpv6(&buf);
    }

    #[test]
    fn dhcpv4_with_cookie(mut buf in bytes()) {
        if let Some(cookie) = buf.get_mut(236..240) {
            cookie.copy_from_slice(&dhcpv4::MAGIC_COOKIE.to_be_bytes());
        }
        exercise_dhcpv4(&buf);
    }

    #[test]
    fn dhcpv4_options_roundtrip(
        options in proptest::collection::vec((1u8..255, proptest::collection::vec(any::<u8>(), 0..255)), 0..8)
    ) {
        let mut buf = [0u8; 2200];
        let mut writer = DhcpOptionWriter::new(&mut buf);
        for (code, data) in &options {
            writer.put(*code, data).unwrap();
        }
        let len = writer.finish().unwrap();
        let parsed: Vec<(u8, Vec<u8>)> =
            DhcpOptions::new(&buf[..len]).map(|o| o.map(|(c, d)| (c, d.to_vec()))).collect::<Result<_>>().unwrap();
        prop_assert_eq!(parsed, options);
    }

    #[test]
    fn dhcpv6_options_roundtrip(
        options in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..6),
        nest in any::<bool>(),
    ) {
        let mut buf = vec![0u8; 4000];
        let mut writer = Dhcpv6OptionWriter::new(&mut buf);
        let marker = if nest { Some(writer.begin_ia_na(1, 2, 3).unwrap()) } else { None };
        for (code, data) in &options {
            writer.put(*code, data).unwrap();
        }
        if let Some(marker) = marker {
            writer.end(marker).unwrap();
        }
        let len = writer.finish();
        let area = if nest {
            let (code, data) = Dhcpv6Options::new(&buf[..len]).next().unwrap().unwrap();
            prop_assert_eq!(code, dhcpv6::option::IA_NA);
            prop_assert_eq!(data.len(), len - 4);
            IaNa::new_checked(data).unwrap().options()
        } else {
            Dhcpv6Options::new(&buf[..len])
        };
        let parsed: Vec<(u16, Vec<u8>)> =
            area.map(|o| o.map(|(c, d)| (c, d.to_vec()))).collect::<Result<_>>().unwrap();
        prop_assert_eq!(parsed, options);
    }

    #[test]
    fn ipv4_repr_roundtrip(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
        payload_len in 0usize..65515, ttl in any::<u8>(), dscp_ecn in any::<u8>(), ident in any::<u16>(),
        dont_frag in any::<bool>(), more_frags in any::<bool>(), frag_units in 0u16..0x2000,
    ) {
        let repr = Ipv4Repr {
            src_addr: src.into(), dst_addr: dst.into(), protocol: IpProtocol(protocol), payload_len,
            ttl, dscp_ecn, ident, dont_frag, more_frags, frag_offset: frag_units * 8,
        };
        let mut buf = vec![0u8; 20 + payload_len];
        prop_assert_eq!(repr.emit_into(&mut buf), Ok(20));
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&packet), Ok(repr));
    }

    #[test]
    fn tcp_udp_repr_roundtrip(
        src_port in any::<u16>(), dst_port in any::<u16>(), seq_number in any::<u32>(),
        ack_number in any::<u32>(), flags in 0u16..0x200, window in any::<u16>(), payload_len in 0usize..100,
    ) {
        let tcp = TcpRepr { src_port, dst_port, seq_number, ack_number, flags: TcpFlags(flags), window };
        let mut buf = vec![0u8; 20 + payload_len];
        tcp.emit_into(&mut buf).unwrap();
        prop_assert_eq!(TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap()), Ok(tcp));
        let udp = UdpRepr { src_port, dst_port, payload_len };
        udp.emit_into(&mut buf).unwrap();
        prop_assert_eq!(UdpRepr::parse(&UdpPacket::new_checked(&buf[..8 + payload_len]).unwrap()), Ok(udp));
    }

    #[test]
    fn ndisc_repr_roundtrip(
        target in any::<[u8; 16]>(), mac in proptest::option::of(any::<[u8; 6]>()),
        flags in any::<[bool; 3]>(), mtu in proptest::option::of(any::<u32>()), lifetime in any::<u16>(),
        prefix in proptest::option::of((0u8..=128, any::<[u8; 16]>(), any::<u32>())),
    ) {
        let target = Ipv6Addr::from(target);
        prop_assume!(!target.is_multicast());
        let mac = mac.map(MacAddr);
        let reprs = [
            NdiscRepr::RouterSolicit { source_lladdr: mac },
            NdiscRepr::NeighborSolicit { target_addr: target, source_lladdr: mac },
            NdiscRepr::NeighborAdvert {
                router: flags[0], solicited: flags[1], override_: flags[2], target_addr: target, target_lladdr: mac,
            },
            NdiscRepr::RouterAdvert {
                cur_hop_limit: 64, managed: flags[0], other: flags[1], router_lifetime: lifetime,
                reachable_time: 1, retrans_timer: 2, source_lladdr: mac, mtu,
                prefix_info: prefix.map(|(len, addr, life)| PrefixInfo {
                    prefix_len: len, on_link: flags[2], autonomous: !flags[2],
                    valid_lifetime: life, preferred_lifetime: life / 2, prefix: Ipv6Addr::from(addr),
                }),
            },
        ];
        let (src, dst) = (Ipv6Addr::LOCALHOST, ipv6::ALL_NODES);
        for repr in reprs {
            let mut buf = [0u8; 80];
            let len = repr.emit_into(&mut buf, &src, &dst).unwrap();
            prop_assert_eq!(len, repr.buffer_len());
            let packet = Icmpv6Packet::new_checked(&buf[..len]).unwrap();
            prop_assert_eq!(Icmpv6Repr::parse(&src, &dst, &packet), Ok(Icmpv6Repr::Ndisc(repr)));
            // Every shorter buffer is refused without writing past it.
            for short in 0..len {
                prop_assert_eq!(repr.emit_into(&mut buf[..short], &src, &dst), Err(Error::Truncated));
            }
        }
    }

    #[test]
    fn mac_addr_text_roundtrip(octets in any::<[u8; 6]>()) {
        let mac = MacAddr(octets);
        prop_assert_eq!(mac.to_string().parse::<MacAddr>(), Ok(mac));
    }

    #[test]
    fn mac_addr_parse_never_panics(text in "\\PC{0,24}") {
        let _ = text.parse::<MacAddr>();
    }
}
