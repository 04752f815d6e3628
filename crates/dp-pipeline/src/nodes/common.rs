//! Small helpers the nodes share: finding the VM behind a port, the header lengths and the TTL of
//! the replies the dataplane builds in place (their headers are written with dp-packet's `Repr`s).

use dp_packet::{Ipv6Addr, MacAddr};
use dp_tables::{Iface, PortId};

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
