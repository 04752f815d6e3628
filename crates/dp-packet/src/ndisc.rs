//! IPv6 Neighbor Discovery (RFC 4861): router solicitation/advertisement and neighbor
//! solicitation/advertisement views over an ICMPv6 message, the TLV option iterator, and emitters for
//! the options the dataplane sends (link-layer address, MTU, prefix information).
//!
//! The views wrap the *whole* ICMPv6 message (type, code and checksum included), so field offsets match
//! the RFC's figures; use [`Icmpv6Packet`] on the same bytes for the checksum.

use core::net::Ipv6Addr;

use crate::bytes::{
    array, set_bytes, set_u16, set_u32, set_u8, slice_from, slice_from_mut, u16_at, u32_at, u8_at,
};
use crate::ethernet::MacAddr;
use crate::icmpv6::{Icmpv6Packet, Icmpv6Type};
use crate::{Error, Result};

wire_enum! {
    /// Neighbor Discovery option type. Unknown values are kept (and must be skipped, RFC 4861 §4.6).
    pub struct NdiscOptionType(u8) {
        /// Source link-layer address.
        SOURCE_LLADDR = 1,
        /// Target link-layer address.
        TARGET_LLADDR = 2,
        /// Prefix information.
        PREFIX_INFO = 3,
        /// Redirected header.
        REDIRECTED_HEADER = 4,
        /// MTU.
        MTU = 5,
        /// Recursive DNS server (RFC 8106).
        RDNSS = 25,
        /// DNS search list (RFC 8106).
        DNSSL = 31,
    }
}

/// One option as found in a message: its type and the bytes after the type/length pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdiscOption<'a> {
    /// Option type.
    pub option_type: NdiscOptionType,
    /// Option contents after the 2-byte type/length header (length × 8 − 2 bytes).
    pub data: &'a [u8],
}

impl NdiscOption<'_> {
    /// The Ethernet address of a source/target link-layer address option.
    pub fn link_layer_addr(&self) -> Option<MacAddr> {
        match self.option_type {
            NdiscOptionType::SOURCE_LLADDR | NdiscOptionType::TARGET_LLADDR => {
                MacAddr::from_bytes(self.data)
            }
            _ => None,
        }
    }

    /// The value of an MTU option.
    pub fn mtu(&self) -> Option<u32> {
        (self.option_type == NdiscOptionType::MTU && self.data.len() >= 6)
            .then(|| u32_at(self.data, 2..6))
    }

    /// The contents of a prefix information option.
    pub fn prefix_info(&self) -> Option<PrefixInfo> {
        if self.option_type != NdiscOptionType::PREFIX_INFO || self.data.len() < 30 {
            return None;
        }
        let flags = u8_at(self.data, 1);
        Some(PrefixInfo {
            prefix_len: u8_at(self.data, 0),
            on_link: flags & PrefixInfo::FLAG_ON_LINK != 0,
            autonomous: flags & PrefixInfo::FLAG_AUTONOMOUS != 0,
            valid_lifetime: u32_at(self.data, 2..6),
            preferred_lifetime: u32_at(self.data, 6..10),
            prefix: Ipv6Addr::from(array::<16>(self.data, 14..30)),
        })
    }
}

/// Iterator over the options of a Neighbor Discovery message.
///
/// Yields `Err(Malformed)` once, then stops, for an option with length 0 (RFC 4861 §4.6 says to drop
/// the packet) or one running past the end of the message.
#[derive(Debug, Clone)]
pub struct NdiscOptions<'a> {
    rest: &'a [u8],
}

impl<'a> NdiscOptions<'a> {
    /// Iterates over the options in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        NdiscOptions { rest: bytes }
    }

    /// Checks that every option is well formed.
    pub fn validate(&self) -> Result<()> {
        self.clone().try_for_each(|opt| opt.map(|_| ()))
    }

    /// The first option of type `option_type`, ignoring malformed tails.
    pub fn find(&self, option_type: NdiscOptionType) -> Option<NdiscOption<'a>> {
        self.clone()
            .map_while(|opt| opt.ok())
            .find(|opt| opt.option_type == option_type)
    }
}

impl<'a> Iterator for NdiscOptions<'a> {
    type Item = Result<NdiscOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        let units = after_kind.first().copied().unwrap_or(0);
        let len = usize::from(units) * 8;
        let Some((option, rest)) = (len != 0)
            .then(|| self.rest.split_at_checked(len))
            .flatten()
        else {
            self.rest = &[];
            return Some(Err(Error::Malformed));
        };
        self.rest = rest;
        Some(Ok(NdiscOption {
            option_type: NdiscOptionType(kind),
            data: slice_from(option, 2),
        }))
    }
}

/// Contents of a prefix information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixInfo {
    /// Prefix length in bits.
    pub prefix_len: u8,
    /// L flag: the prefix is on-link.
    pub on_link: bool,
    /// A flag: usable for stateless address autoconfiguration.
    pub autonomous: bool,
    /// Valid lifetime in seconds (0xffffffff = infinity).
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds.
    pub preferred_lifetime: u32,
    /// The prefix.
    pub prefix: Ipv6Addr,
}

impl PrefixInfo {
    const FLAG_ON_LINK: u8 = 0x80;
    const FLAG_AUTONOMOUS: u8 = 0x40;
}

/// Length of a link-layer address option for Ethernet.
pub const LLADDR_OPTION_LEN: usize = 8;
/// Length of an MTU option.
pub const MTU_OPTION_LEN: usize = 8;
/// Length of a prefix information option.
pub const PREFIX_INFO_OPTION_LEN: usize = 32;

fn option_slot(buf: &mut [u8], kind: NdiscOptionType, len: usize) -> Result<&mut [u8]> {
    let slot = buf.get_mut(..len).ok_or(Error::Truncated)?;
    slot.fill(0);
    set_u8(slot, 0, kind.0);
    set_u8(slot, 1, (len / 8) as u8);
    Ok(slot)
}

/// Writes a source link-layer address option; returns its length (8).
pub fn emit_source_lladdr(buf: &mut [u8], mac: MacAddr) -> Result<usize> {
    let slot = option_slot(buf, NdiscOptionType::SOURCE_LLADDR, LLADDR_OPTION_LEN)?;
    set_bytes(slot, 2..8, &mac.0);
    Ok(LLADDR_OPTION_LEN)
}

/// Writes a target link-layer address option; returns its length (8).
pub fn emit_target_lladdr(buf: &mut [u8], mac: MacAddr) -> Result<usize> {
    let slot = option_slot(buf, NdiscOptionType::TARGET_LLADDR, LLADDR_OPTION_LEN)?;
    set_bytes(slot, 2..8, &mac.0);
    Ok(LLADDR_OPTION_LEN)
}

/// Writes an MTU option; returns its length (8).
pub fn emit_mtu(buf: &mut [u8], mtu: u32) -> Result<usize> {
    let slot = option_slot(buf, NdiscOptionType::MTU, MTU_OPTION_LEN)?;
    set_u32(slot, 4..8, mtu);
    Ok(MTU_OPTION_LEN)
}

/// Writes a prefix information option; returns its length (32).
pub fn emit_prefix_info(buf: &mut [u8], info: &PrefixInfo) -> Result<usize> {
    let slot = option_slot(buf, NdiscOptionType::PREFIX_INFO, PREFIX_INFO_OPTION_LEN)?;
    let mut flags = 0;
    if info.on_link {
        flags |= PrefixInfo::FLAG_ON_LINK;
    }
    if info.autonomous {
        flags |= PrefixInfo::FLAG_AUTONOMOUS;
    }
    set_u8(slot, 2, info.prefix_len);
    set_u8(slot, 3, flags);
    set_u32(slot, 4..8, info.valid_lifetime);
    set_u32(slot, 8..12, info.preferred_lifetime);
    set_bytes(slot, 16..32, &info.prefix.octets());
    Ok(PREFIX_INFO_OPTION_LEN)
}

/// Generates the common part of a Neighbor Discovery message view.
macro_rules! ndisc_view {
    ($(#[$meta:meta])* $name:ident, $options_at:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Length of the fixed part; options follow.
            pub const HEADER_LEN: usize = $options_at;

            /// Wraps an ICMPv6 message without checking it.
            pub const fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wraps an ICMPv6 message after checking that the fixed part fits.
            pub fn new_checked(buffer: T) -> Result<Self> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// `Truncated` unless the fixed part fits.
            pub fn check_len(&self) -> Result<()> {
                if self.buffer.as_ref().len() < Self::HEADER_LEN {
                    return Err(Error::Truncated);
                }
                Ok(())
            }

            /// Gives the buffer back.
            pub fn into_inner(self) -> T {
                self.buffer
            }

        }

        slice_accessors!($name {
            /// The options after the fixed part.
            pub fn options(&self) -> NdiscOptions<'a> {
                NdiscOptions::new(slice_from(self.buffer.as_ref(), Self::HEADER_LEN))
            }
        });

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Mutable option area, for the `emit_*` option writers.
            pub fn options_mut(&mut self) -> &mut [u8] {
                slice_from_mut(self.buffer.as_mut(), Self::HEADER_LEN)
            }

            /// Same as [`options_mut`](Self::options_mut), named like the other views.
            pub fn payload_mut(&mut self) -> &mut [u8] {
                self.options_mut()
            }
        }

        impl<T: AsRef<[u8]>> AsRef<[u8]> for $name<T> {
            fn as_ref(&self) -> &[u8] {
                self.buffer.as_ref()
            }
        }
    };
}

mod field {
    use core::ops::Range;
    // Router advertisement.
    pub const CUR_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const ROUTER_LIFETIME: Range<usize> = 6..8;
    pub const REACHABLE_TIME: Range<usize> = 8..12;
    pub const RETRANS_TIMER: Range<usize> = 12..16;
    // Neighbor solicitation/advertisement.
    pub const NA_FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
}

const RA_MANAGED: u8 = 0x80;
const RA_OTHER: u8 = 0x40;
const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

ndisc_view!(
    /// A router solicitation (type 133): reserved word, then options.
    RouterSolicit,
    8
);

ndisc_view!(
    /// A router advertisement (type 134).
    RouterAdvert,
    16
);

ndisc_view!(
    /// A neighbor solicitation (type 135): target address, then options.
    NeighborSolicit,
    24
);

ndisc_view!(
    /// A neighbor advertisement (type 136): flags, target address, then options.
    NeighborAdvert,
    24
);

impl<T: AsRef<[u8]>> RouterAdvert<T> {
    /// Hop limit hosts should use (0 = unspecified).
    pub fn cur_hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CUR_HOP_LIMIT)
    }

    /// M flag: addresses are available by DHCPv6.
    pub fn managed_flag(&self) -> bool {
        u8_at(self.buffer.as_ref(), field::RA_FLAGS) & RA_MANAGED != 0
    }

    /// O flag: other configuration is available by DHCPv6.
    pub fn other_flag(&self) -> bool {
        u8_at(self.buffer.as_ref(), field::RA_FLAGS) & RA_OTHER != 0
    }

    /// Router lifetime in seconds (0 = not a default router).
    pub fn router_lifetime(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ROUTER_LIFETIME)
    }

    /// Reachable time in milliseconds.
    pub fn reachable_time(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::REACHABLE_TIME)
    }

    /// Retransmission timer in milliseconds.
    pub fn retrans_timer(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::RETRANS_TIMER)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RouterAdvert<T> {
    /// Sets the current hop limit.
    pub fn set_cur_hop_limit(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::CUR_HOP_LIMIT, value);
    }

    /// Sets the M and O flags (other bits cleared).
    pub fn set_flags(&mut self, managed: bool, other: bool) {
        let flags = if managed { RA_MANAGED } else { 0 } | if other { RA_OTHER } else { 0 };
        set_u8(self.buffer.as_mut(), field::RA_FLAGS, flags);
    }

    /// Sets the router lifetime.
    pub fn set_router_lifetime(&mut self, seconds: u16) {
        set_u16(self.buffer.as_mut(), field::ROUTER_LIFETIME, seconds);
    }

    /// Sets the reachable time.
    pub fn set_reachable_time(&mut self, millis: u32) {
        set_u32(self.buffer.as_mut(), field::REACHABLE_TIME, millis);
    }

    /// Sets the retransmission timer.
    pub fn set_retrans_timer(&mut self, millis: u32) {
        set_u32(self.buffer.as_mut(), field::RETRANS_TIMER, millis);
    }
}

impl<T: AsRef<[u8]>> NeighborSolicit<T> {
    /// The address whose link-layer address is asked for.
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::TARGET))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NeighborSolicit<T> {
    /// Sets the target address.
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::TARGET, &addr.octets());
    }
}

impl<T: AsRef<[u8]>> NeighborAdvert<T> {
    /// R flag: the sender is a router.
    pub fn router_flag(&self) -> bool {
        u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_ROUTER != 0
    }

    /// S flag: sent in answer to a solicitation.
    pub fn solicited_flag(&self) -> bool {
        u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_SOLICITED != 0
    }

    /// O flag: override an existing cache entry.
    pub fn override_flag(&self) -> bool {
        u8_at(self.buffer.as_ref(), field::NA_FLAGS) & NA_OVERRIDE != 0
    }

    /// The address being advertised.
    pub fn target_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array::<16>(self.buffer.as_ref(), field::TARGET))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NeighborAdvert<T> {
    /// Sets the R, S and O flags (other bits cleared).
    pub fn set_flags(&mut self, router: bool, solicited: bool, override_: bool) {
        let flags = if router { NA_ROUTER } else { 0 }
            | if solicited { NA_SOLICITED } else { 0 }
            | if override_ { NA_OVERRIDE } else { 0 };
        set_u8(self.buffer.as_mut(), field::NA_FLAGS, flags);
    }

    /// Sets the target address.
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::TARGET, &addr.octets());
    }
}

/// A Neighbor Discovery message with the options the dataplane uses.
///
/// Parsing keeps the first option of each known kind and skips unknown ones; emitting writes the
/// options that are `Some`, in the order of the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NdiscRepr {
    /// Router solicitation.
    RouterSolicit {
        /// Source link-layer address option.
        source_lladdr: Option<MacAddr>,
    },
    /// Router advertisement.
    RouterAdvert {
        /// Current hop limit.
        cur_hop_limit: u8,
        /// M flag.
        managed: bool,
        /// O flag.
        other: bool,
        /// Router lifetime in seconds.
        router_lifetime: u16,
        /// Reachable time in milliseconds.
        reachable_time: u32,
        /// Retransmission timer in milliseconds.
        retrans_timer: u32,
        /// Source link-layer address option.
        source_lladdr: Option<MacAddr>,
        /// MTU option.
        mtu: Option<u32>,
        /// Prefix information option.
        prefix_info: Option<PrefixInfo>,
    },
    /// Neighbor solicitation.
    NeighborSolicit {
        /// Target address.
        target_addr: Ipv6Addr,
        /// Source link-layer address option (absent in duplicate address detection).
        source_lladdr: Option<MacAddr>,
    },
    /// Neighbor advertisement.
    NeighborAdvert {
        /// R flag.
        router: bool,
        /// S flag.
        solicited: bool,
        /// O flag.
        override_: bool,
        /// Target address.
        target_addr: Ipv6Addr,
        /// Target link-layer address option.
        target_lladdr: Option<MacAddr>,
    },
}

/// Option values found in a message.
#[derive(Default)]
struct FoundOptions {
    source_lladdr: Option<MacAddr>,
    target_lladdr: Option<MacAddr>,
    mtu: Option<u32>,
    prefix_info: Option<PrefixInfo>,
}

fn collect_options(options: NdiscOptions<'_>) -> Result<FoundOptions> {
    let mut found = FoundOptions::default();
    for option in options {
        let option = option?;
        match option.option_type {
            NdiscOptionType::SOURCE_LLADDR => {
                found.source_lladdr = found.source_lladdr.or(option.link_layer_addr())
            }
            NdiscOptionType::TARGET_LLADDR => {
                found.target_lladdr = found.target_lladdr.or(option.link_layer_addr())
            }
            NdiscOptionType::MTU => found.mtu = found.mtu.or(option.mtu()),
            NdiscOptionType::PREFIX_INFO => {
                found.prefix_info = found.prefix_info.or(option.prefix_info())
            }
            _ => {}
        }
    }
    Ok(found)
}

impl NdiscRepr {
    /// Reads a router/neighbor solicitation/advertisement. The checksum is not verified here (use
    /// [`Icmpv6Packet::verify_checksum`] or [`crate::Icmpv6Repr::parse`]); code must be 0, the fixed part
    /// must fit and all options must be well formed.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Icmpv6Packet<&T>) -> Result<NdiscRepr> {
        let bytes: &[u8] = packet.as_ref();
        if packet.msg_code() != 0 {
            return Err(Error::Malformed);
        }
        match packet.msg_type() {
            Icmpv6Type::ROUTER_SOLICIT => {
                let view = RouterSolicit::new_checked(bytes)?;
                let found = collect_options(view.options())?;
                Ok(NdiscRepr::RouterSolicit {
                    source_lladdr: found.source_lladdr,
                })
            }
            Icmpv6Type::ROUTER_ADVERT => {
                let view = RouterAdvert::new_checked(bytes)?;
                let found = collect_options(view.options())?;
                Ok(NdiscRepr::RouterAdvert {
                    cur_hop_limit: view.cur_hop_limit(),
                    managed: view.managed_flag(),
                    other: view.other_flag(),
                    router_lifetime: view.router_lifetime(),
                    reachable_time: view.reachable_time(),
                    retrans_timer: view.retrans_timer(),
                    source_lladdr: found.source_lladdr,
                    mtu: found.mtu,
                    prefix_info: found.prefix_info,
                })
            }
            Icmpv6Type::NEIGHBOR_SOLICIT => {
                let view = NeighborSolicit::new_checked(bytes)?;
                let found = collect_options(view.options())?;
                if view.target_addr().is_multicast() {
                    return Err(Error::Malformed);
                }
                Ok(NdiscRepr::NeighborSolicit {
                    target_addr: view.target_addr(),
                    source_lladdr: found.source_lladdr,
                })
            }
            Icmpv6Type::NEIGHBOR_ADVERT => {
                let view = NeighborAdvert::new_checked(bytes)?;
                let found = collect_options(view.options())?;
                if view.target_addr().is_multicast() {
                    return Err(Error::Malformed);
                }
                Ok(NdiscRepr::NeighborAdvert {
                    router: view.router_flag(),
                    solicited: view.solicited_flag(),
                    override_: view.override_flag(),
                    target_addr: view.target_addr(),
                    target_lladdr: found.target_lladdr,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    fn lladdr_len(mac: Option<MacAddr>) -> usize {
        mac.map_or(0, |_| LLADDR_OPTION_LEN)
    }

    /// Length of the whole ICMPv6 message.
    pub fn buffer_len(&self) -> usize {
        match *self {
            NdiscRepr::RouterSolicit { source_lladdr } => {
                RouterSolicit::<&[u8]>::HEADER_LEN + Self::lladdr_len(source_lladdr)
            }
            NdiscRepr::RouterAdvert {
                source_lladdr,
                mtu,
                prefix_info,
                ..
            } => {
                RouterAdvert::<&[u8]>::HEADER_LEN
                    + Self::lladdr_len(source_lladdr)
                    + mtu.map_or(0, |_| MTU_OPTION_LEN)
                    + prefix_info.map_or(0, |_| PREFIX_INFO_OPTION_LEN)
            }
            NdiscRepr::NeighborSolicit { source_lladdr, .. } => {
                NeighborSolicit::<&[u8]>::HEADER_LEN + Self::lladdr_len(source_lladdr)
            }
            NdiscRepr::NeighborAdvert { target_lladdr, .. } => {
                NeighborAdvert::<&[u8]>::HEADER_LEN + Self::lladdr_len(target_lladdr)
            }
        }
    }

    /// Writes the whole ICMPv6 message, checksum (for `src` → `dst`) included, at the start of `buf`;
    /// returns its length.
    pub fn emit_into(&self, buf: &mut [u8], src: &Ipv6Addr, dst: &Ipv6Addr) -> Result<usize> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(Error::Truncated)?;
        buf.fill(0);
        let msg_type = match *self {
            NdiscRepr::RouterSolicit { source_lladdr } => {
                let mut view = RouterSolicit::new_unchecked(&mut *buf);
                if let Some(mac) = source_lladdr {
                    emit_source_lladdr(view.options_mut(), mac)?;
                }
                Icmpv6Type::ROUTER_SOLICIT
            }
            NdiscRepr::RouterAdvert {
                cur_hop_limit,
                managed,
                other,
                router_lifetime,
                reachable_time,
                retrans_timer,
                source_lladdr,
                mtu,
                prefix_info,
            } => {
                let mut view = RouterAdvert::new_unchecked(&mut *buf);
                view.set_cur_hop_limit(cur_hop_limit);
                view.set_flags(managed, other);
                view.set_router_lifetime(router_lifetime);
                view.set_reachable_time(reachable_time);
                view.set_retrans_timer(retrans_timer);
                let mut at = 0;
                if let Some(mac) = source_lladdr {
                    at += emit_source_lladdr(slice_from_mut(view.options_mut(), at), mac)?;
                }
                if let Some(mtu) = mtu {
                    at += emit_mtu(slice_from_mut(view.options_mut(), at), mtu)?;
                }
                if let Some(info) = prefix_info {
                    emit_prefix_info(slice_from_mut(view.options_mut(), at), &info)?;
                }
                Icmpv6Type::ROUTER_ADVERT
            }
            NdiscRepr::NeighborSolicit {
                target_addr,
                source_lladdr,
            } => {
                let mut view = NeighborSolicit::new_unchecked(&mut *buf);
                view.set_target_addr(target_addr);
                if let Some(mac) = source_lladdr {
                    emit_source_lladdr(view.options_mut(), mac)?;
                }
                Icmpv6Type::NEIGHBOR_SOLICIT
            }
            NdiscRepr::NeighborAdvert {
                router,
                solicited,
                override_,
                target_addr,
                target_lladdr,
            } => {
                let mut view = NeighborAdvert::new_unchecked(&mut *buf);
                view.set_flags(router, solicited, override_);
                view.set_target_addr(target_addr);
                if let Some(mac) = target_lladdr {
                    emit_target_lladdr(view.options_mut(), mac)?;
                }
                Icmpv6Type::NEIGHBOR_ADVERT
            }
        };
        let mut packet = Icmpv6Packet::new_unchecked(buf);
        packet.set_msg_type(msg_type);
        packet.set_msg_code(0);
        packet.fill_checksum(src, dst);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icmpv6::Icmpv6Repr;
    use crate::ipv6::solicited_node;

    const VM: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0xff, 0xfe12, 0x3456);
    const GW: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const VM_MAC: MacAddr = MacAddr::new(0x52, 0x54, 0, 0x12, 0x34, 0x56);
    const GW_MAC: MacAddr = MacAddr::new(0x02, 0, 0, 0, 0, 0x01);

    // scapy: IPv6(src=VM, dst=ff02::1:ff00:1)/ICMPv6ND_NS(tgt='fe80::1')/ICMPv6NDOptSrcLLAddr(lladdr=VM_MAC)
    const NS: [u8; 32] = [
        0x87, 0x00, 0x72, 0x22, 0, 0, 0, 0, // type, code, checksum, reserved
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // target
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // SLLA
    ];
    // scapy: IPv6(src='fe80::1', dst=VM)/ICMPv6ND_NA(tgt='fe80::1', R=1, S=1, O=1)/
    //        ICMPv6NDOptDstLLAddr(lladdr=GW_MAC)
    const NA: [u8; 32] = [
        0x88, 0x00, 0x14, 0x61, 0xe0, 0, 0, 0, //
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    ];
    // scapy: IPv6(src='fe80::1', dst='ff02::1')/ICMPv6ND_RA(chlim=255, M=0, O=1, prf=0, routerlifetime=1800,
    //        reachabletime=0, retranstimer=0)/ICMPv6NDOptSrcLLAddr(lladdr=GW_MAC)/ICMPv6NDOptMTU(mtu=1500)/
    //        ICMPv6NDOptPrefixInfo(prefixlen=64, L=1, A=1, validlifetime=0xffffffff,
    //        preferredlifetime=0xffffffff, prefix='2000:1:2::')
    const RA: [u8; 64] = [
        0x86, 0x00, 0x04, 0x10, 0xff, 0x40, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, //
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA
        0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05, 0xdc, // MTU
        0x03, 0x04, 0x40, 0xc0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, //
        0x20, 0x00, 0x00, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn neighbor_solicit_to_advert() {
        let dst = solicited_node(&GW);
        let packet = Icmpv6Packet::new_checked(&NS[..]).unwrap();
        assert!(packet.verify_checksum(&VM, &dst));
        let view = NeighborSolicit::new_checked(&NS[..]).unwrap();
        assert_eq!(view.target_addr(), GW);
        let options: Vec<_> = view.options().collect();
        assert_eq!(options.len(), 1);
        assert_eq!(options[0].unwrap().link_layer_addr(), Some(VM_MAC));
        let repr = Icmpv6Repr::parse(&VM, &dst, &packet).unwrap();
        assert_eq!(
            repr,
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborSolicit {
                target_addr: GW,
                source_lladdr: Some(VM_MAC)
            })
        );
        let answer = NdiscRepr::NeighborAdvert {
            router: true,
            solicited: true,
            override_: true,
            target_addr: GW,
            target_lladdr: Some(GW_MAC),
        };
        let mut buf = [0xaau8; 40];
        assert_eq!(answer.emit_into(&mut buf, &GW, &VM), Ok(32));
        assert_eq!(buf[..32], NA);
        let view = NeighborAdvert::new_checked(&buf[..32]).unwrap();
        assert!(view.router_flag() && view.solicited_flag() && view.override_flag());
        assert_eq!(
            answer.emit_into(&mut buf[..31], &GW, &VM),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn router_advert_exact_bytes() {
        let prefix = PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: true,
            valid_lifetime: u32::MAX,
            preferred_lifetime: u32::MAX,
            prefix: "2000:1:2::".parse().unwrap(),
        };
        let repr = NdiscRepr::RouterAdvert {
            cur_hop_limit: 255,
            managed: false,
            other: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            source_lladdr: Some(GW_MAC),
            mtu: Some(1500),
            prefix_info: Some(prefix),
        };
        let all_nodes = crate::ipv6::ALL_NODES;
        let mut buf = [0u8; 64];
        assert_eq!(repr.emit_into(&mut buf, &GW, &all_nodes), Ok(64));
        assert_eq!(buf, RA);
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&GW, &all_nodes, &packet),
            Ok(Icmpv6Repr::Ndisc(repr))
        );
        let view = RouterAdvert::new_checked(&buf[..]).unwrap();
        assert!(view.other_flag() && !view.managed_flag());
        assert_eq!(
            view.options()
                .find(NdiscOptionType::MTU)
                .and_then(|o| o.mtu()),
            Some(1500)
        );
    }

    #[test]
    fn router_solicit_roundtrip() {
        let repr = NdiscRepr::RouterSolicit {
            source_lladdr: Some(VM_MAC),
        };
        let mut buf = [0u8; 16];
        let all_routers = crate::ipv6::ALL_ROUTERS;
        assert_eq!(repr.emit_into(&mut buf, &VM, &all_routers), Ok(16));
        assert_eq!(buf[..8], RS[..8]);
        assert_eq!(buf, RS);
        let packet = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(
            Icmpv6Repr::parse(&VM, &all_routers, &packet),
            Ok(Icmpv6Repr::Ndisc(repr))
        );
        let without = NdiscRepr::RouterSolicit {
            source_lladdr: None,
        };
        assert_eq!(without.emit_into(&mut buf, &VM, &all_routers), Ok(8));
    }

    // scapy: IPv6(src=VM, dst='ff02::2')/ICMPv6ND_RS()/ICMPv6NDOptSrcLLAddr(lladdr=VM_MAC)
    const RS: [u8; 16] = [
        0x85, 0x00, 0x71, 0xb5, 0, 0, 0, 0, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    #[test]
    fn truncated_prefixes_of_every_view() {
        for len in 0..8 {
            assert_eq!(
                RouterSolicit::new_checked(&RS[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        for len in 0..16 {
            assert_eq!(
                RouterAdvert::new_checked(&RA[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        for len in 0..24 {
            assert_eq!(
                NeighborAdvert::new_checked(&NA[..len]).unwrap_err(),
                Error::Truncated
            );
            assert_eq!(
                NeighborSolicit::new_checked(&NS[..len]).unwrap_err(),
                Error::Truncated
            );
        }
        // A prefix that cuts an option in the middle is caught by the option walk.
        let view = RouterAdvert::new_checked(&RA[..60]).unwrap();
        assert_eq!(view.options().validate(), Err(Error::Malformed));
        let packet = Icmpv6Packet::new_checked(&RA[..60]).unwrap();
        assert_eq!(NdiscRepr::parse(&packet), Err(Error::Malformed));
    }

    #[test]
    fn option_emitters_refuse_short_buffers() {
        let mut buf = [0u8; 31];
        assert_eq!(
            emit_source_lladdr(&mut buf[..7], VM_MAC),
            Err(Error::Truncated)
        );
        assert_eq!(
            emit_target_lladdr(&mut buf[..7], VM_MAC),
            Err(Error::Truncated)
        );
        assert_eq!(emit_mtu(&mut buf[..7], 1500), Err(Error::Truncated));
        let info = PrefixInfo {
            prefix_len: 64,
            on_link: true,
            autonomous: false,
            valid_lifetime: 1,
            preferred_lifetime: 1,
            prefix: Ipv6Addr::UNSPECIFIED,
        };
        assert_eq!(emit_prefix_info(&mut buf, &info), Err(Error::Truncated));
        assert_eq!(emit_mtu(&mut buf, 9000), Ok(8));
        assert_eq!(buf[..8], [5, 1, 0, 0, 0, 0, 0x23, 0x28]);
    }

    #[test]
    fn option_iterator_rejects_zero_and_overlong() {
        let zero = [0x01, 0x00, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0, 0, 0, 0, 0, 0];
        let mut it = NdiscOptions::new(&zero);
        assert_eq!(it.next(), Some(Err(Error::Malformed)));
        assert_eq!(it.next(), None);
        let overlong = [0x01, 0x02, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            NdiscOptions::new(&overlong).validate(),
            Err(Error::Malformed)
        );
        let lonely_type = [0x01];
        assert_eq!(
            NdiscOptions::new(&lonely_type).validate(),
            Err(Error::Malformed)
        );
        // Unknown options are kept and skipped.
        let unknown = [0xc8, 0x01, 1, 2, 3, 4, 5, 6];
        let opts: Vec<_> = NdiscOptions::new(&unknown).collect();
        assert_eq!(
            opts,
            vec![Ok(NdiscOption {
                option_type: NdiscOptionType(0xc8),
                data: &[1, 2, 3, 4, 5, 6]
            })]
        );
    }

    #[test]
    fn malformed_messages() {
        let dst = solicited_node(&GW);
        // Zero-length option.
        let mut bytes = NS;
        bytes[25] = 0;
        let mut packet = Icmpv6Packet::new_unchecked(&mut bytes[..]);
        packet.fill_checksum(&VM, &dst);
        let packet = Icmpv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(NdiscRepr::parse(&packet), Err(Error::Malformed));
        // Multicast target.
        let mut bytes = NS;
        bytes[8] = 0xff;
        assert_eq!(
            NdiscRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Non-zero code.
        let mut bytes = NS;
        bytes[1] = 1;
        assert_eq!(
            NdiscRepr::parse(&Icmpv6Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error::Malformed)
        );
        // Truncated fixed part.
        for len in 8..24 {
            assert_eq!(
                NdiscRepr::parse(&Icmpv6Packet::new_checked(&NS[..len]).unwrap()),
                Err(Error::Truncated)
            );
            assert_eq!(
                NeighborSolicit::new_checked(&NS[..len]).unwrap_err(),
                Error::Truncated
            );
        }
    }
}
