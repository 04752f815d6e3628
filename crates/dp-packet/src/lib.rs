//! Zero-copy packet formats for the dataplane.
//!
//! Every protocol has a view `XxxPacket<T: AsRef<[u8]>>` over a borrowed (or owned) buffer with field
//! accessors, in the style of smoltcp's `wire` module:
//!
//! * `new_checked` validates lengths once (header fits, length fields agree with the buffer); after that
//!   every getter is a plain load.
//! * `new_unchecked` skips validation (used when emitting into a fresh buffer). Accessors still never
//!   panic: a getter reading past the end of a too-short buffer returns zero (or an empty slice) and a
//!   setter writing past it does nothing.
//! * Accessors returning parts of the buffer (`payload()`, `options()`, ...) exist for views over
//!   `&'a [u8]` — where the result lives for `'a`, so nested views can leave the function that made
//!   them — and over `&mut [u8]`. View an owned buffer as `&buf[..]` to use them.
//! * Where a protocol has a small set of meaningful values, a `XxxRepr` can be `parse`d from a view and
//!   `emit`ted into one; `emit_into(&mut [u8])` writes into a caller buffer and returns the length
//!   written, or [`Error::Truncated`] when it does not fit.
//!
//! Nothing in the parse and emit paths allocates. Errors are values ([`Error`]); unknown protocol numbers
//! are kept as newtypes ([`EtherType`], [`IpProtocol`], ...), never lost.
//!
//! Parsing layer by layer, with the views outliving the function:
//!
//! ```
//! use dp_packet::{EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Result, UdpPacket, Error};
//!
//! fn udp_of(frame: &[u8]) -> Result<(Ipv4Packet<&[u8]>, UdpPacket<&[u8]>)> {
//!     let eth = EthernetFrame::new_checked(frame)?;
//!     if eth.ethertype() != EtherType::IPV4 {
//!         return Err(Error::Unsupported);
//!     }
//!     let ip = Ipv4Packet::new_checked(eth.payload())?;
//!     if ip.protocol() != IpProtocol::UDP || ip.is_fragment() {
//!         return Err(Error::Unsupported);
//!     }
//!     let udp = UdpPacket::new_checked(ip.payload())?;
//!     if !udp.verify_checksum_v4(&ip.src_addr(), &ip.dst_addr()) {
//!         return Err(Error::Checksum);
//!     }
//!     Ok((ip, udp))
//! }
//! # let frame = [0u8; 14];
//! # assert_eq!(udp_of(&frame).unwrap_err(), Error::Unsupported);
//! ```
//!
//! Answering an ARP request into a transmit buffer:
//!
//! ```
//! use dp_packet::{ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Error, MacAddr, Result};
//!
//! fn answer_arp(rx: &[u8], our_mac: MacAddr, tx: &mut [u8]) -> Result<usize> {
//!     let eth = EthernetFrame::new_checked(rx)?;
//!     let request = ArpRepr::parse(&ArpPacket::new_checked(eth.payload())?)?;
//!     let eth_reply = EthernetRepr {
//!         src_addr: our_mac,
//!         dst_addr: request.source_hardware_addr,
//!         ethertype: EtherType::ARP,
//!     };
//!     let header = eth_reply.emit_into(tx)?;
//!     let body = request
//!         .reply(our_mac)
//!         .emit_into(tx.get_mut(header..).ok_or(Error::Truncated)?)?;
//!     Ok(header + body)
//! }
//! # let mut rx = [0u8; 42];
//! # rx[12..14].copy_from_slice(&[8, 6]);
//! # rx[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
//! # let mut tx = [0u8; 42];
//! # assert_eq!(answer_arp(&rx, MacAddr::new(2, 0, 0, 0, 0, 1), &mut tx), Ok(42));
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

#[macro_use]
mod macros;

pub mod arp;
pub mod bytes;
pub mod checksum;
pub mod dhcpv4;
pub mod dhcpv6;
pub mod ethernet;
pub mod flow;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod nat;
pub mod nat64;
pub mod ndisc;
pub mod tcp;
pub mod udp;

pub use core::net::{Ipv4Addr, Ipv6Addr};

pub use arp::{ArpHardware, ArpOperation, ArpPacket, ArpRepr};
pub use dhcpv4::{
    DhcpMessageType, DhcpOp, DhcpOptions, DhcpPacket, OptionWriter as DhcpOptionWriter,
};
pub use dhcpv6::{
    Dhcpv6MessageType, Dhcpv6Options, Dhcpv6Packet, IaAddr, IaNa,
    OptionWriter as Dhcpv6OptionWriter,
};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use flow::FlowKey;
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, Icmpv4Type};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, Icmpv6Type};
pub use ip::IpProtocol;
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use nat::{NatError, QuotedV4, QuotedV6};
pub use ndisc::{
    NdiscOption, NdiscOptionType, NdiscOptions, NdiscRepr, NeighborAdvert, NeighborSolicit,
    PrefixInfo, RouterAdvert, RouterSolicit,
};
pub use tcp::{TcpFlags, TcpPacket, TcpRepr};
pub use udp::{UdpPacket, UdpRepr};

/// Why a buffer could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header or than a length field says.
    Truncated,
    /// A field has a value the format forbids (bad version, length field too small, zero-length option).
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Well-formed, but a variant this crate does not represent (e.g. ARP for non-Ethernet hardware).
    Unsupported,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "checksum mismatch",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// Result of parsing or emitting.
pub type Result<T> = core::result::Result<T, Error>;

#[cfg(test)]
pub(crate) mod testutil {
    /// Decodes hex, ignoring whitespace (for captured packets kept as text).
    pub fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }
}
