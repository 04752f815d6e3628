//! Small helpers the nodes share: finding the VM behind a port, the header lengths and the TTL of
//! the replies the dataplane builds in place (their headers are written with dp-packet's `Repr`s),
//! the echo replies of the NAT addresses and load balancers.

use dp_packet::{checksum, Ipv6Addr, MacAddr};
use dp_tables::{Iface, PortId};

use crate::buffer::PacketBuf;
use crate::drop::DropReason;
use crate::node::Ctx;
use crate::port_table::PortEntry;

pub(crate) const ETH_HEADER_LEN: usize = dp_packet::ethernet::HEADER_LEN;
pub(crate) const IPV4_HEADER_LEN: usize = dp_packet::ipv4::HEADER_LEN;
pub(crate) const IPV6_HEADER_LEN: usize = dp_packet::ipv6::HEADER_LEN;
pub(crate) const UDP_HEADER_LEN: usize = dp_packet::udp::HEADER_LEN;

/// TTL / hop limit of the packets the gateway originates (replies, errors).
pub(crate) const REPLY_TTL: u8 = 64;

/// What encapsulation adds in front of an overlay packet: the outer IPv6 header (the Ethernet
/// header is replaced, not added).
pub const OUTER_HEADER_LEN: usize = IPV6_HEADER_LEN;

/// Our IPv6 link-local address on a port: fe80::/64 with the modified EUI-64 of our MAC there
/// (RFC 4291 appendix A), as Linux would derive it for the same MAC.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The port a packet came in on and the VM interface bound to it.
#[inline]
pub(crate) fn vm_port<'a>(
    ctx: &Ctx<'a>,
    port: PortId,
) -> Result<(&'a PortEntry, &'a Iface), DropReason> {
    let entry = ctx.ports.get(port).ok_or(DropReason::NoInterface)?;
    let iface = ctx.tables.iface(port).ok_or(DropReason::NoInterface)?;
    Ok((entry, iface))
}

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// Turns an ICMP or ICMPv6 echo request (validated by the input) into its reply in place: the
/// addresses swapped, the type changed and the checksum patched for it (swapping the addresses
/// changes neither the IPv4 header checksum nor the ICMPv6 pseudo-header sum), TTL / hop limit
/// kept. False (untouched) for any other message.
#[cold]
pub(crate) fn answer_echo(pkt: &mut PacketBuf) -> bool {
    let l3 = usize::from(pkt.parsed.l3_offset);
    let l4 = usize::from(pkt.parsed.l4_offset);
    let frame = pkt.data_mut();
    let Some(&mut [ty, code, c0, c1]) = frame.get_mut(l4..l4 + 4) else {
        return false;
    };
    let (addrs, reply) = match (frame.get(l3).map(|v| v >> 4), ty) {
        (Some(4), ICMP_ECHO_REQUEST) => (l3 + 12..l3 + 20, ICMP_ECHO_REPLY),
        (Some(6), ICMPV6_ECHO_REQUEST) => (l3 + 8..l3 + 40, ICMPV6_ECHO_REPLY),
        _ => return false,
    };
    let Some(addrs) = frame.get_mut(addrs) else {
        return false;
    };
    let half = addrs.len() / 2;
    addrs.rotate_left(half);
    let check = checksum::update_u16(
        u16::from_be_bytes([c0, c1]),
        u16::from_be_bytes([ty, code]),
        u16::from_be_bytes([reply, code]),
    );
    let [c0, c1] = check.to_be_bytes();
    if let Some(icmp) = frame.get_mut(l4..l4 + 4) {
        icmp.copy_from_slice(&[reply, code, c0, c1]);
    }
    true
}
