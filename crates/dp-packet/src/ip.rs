//! Things IPv4 and IPv6 share: protocol numbers (IANA "Assigned Internet Protocol Numbers", RFC 5237).

wire_enum! {
    /// IPv4 `protocol` / IPv6 `next header` value. Unknown numbers are kept.
    pub struct IpProtocol(u8) {
        /// IPv6 hop-by-hop options (RFC 8200).
        HOPOPT = 0,
        /// ICMP for IPv4 (RFC 792).
        ICMP = 1,
        /// IPv4 encapsulated in IP (RFC 2003), used for IPv4-in-IPv6 overlay traffic.
        IPV4_IN_IP = 4,
        /// TCP (RFC 9293).
        TCP = 6,
        /// UDP (RFC 768).
        UDP = 17,
        /// IPv6 encapsulated in IP (RFC 2473), used for IPv6-in-IPv6 overlay traffic.
        IPV6_IN_IP = 41,
        /// IPv6 routing header.
        IPV6_ROUTE = 43,
        /// IPv6 fragment header.
        IPV6_FRAG = 44,
        /// ICMP for IPv6 (RFC 4443).
        ICMPV6 = 58,
        /// IPv6 "no next header".
        IPV6_NO_NXT = 59,
        /// IPv6 destination options.
        IPV6_OPTS = 60,
    }
}

/// The IP version nibble of a packet (4 or 6 for the packets we handle), or `None` for an empty buffer.
///
/// Used after decapsulation or on a tunnel payload, where no EtherType tells the version.
pub fn version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_known_and_keeps_unknown() {
        assert_eq!(format!("{:?}", IpProtocol::UDP), "IpProtocol::UDP");
        assert_eq!(format!("{:?}", IpProtocol(200)), "IpProtocol(0xc8)");
        assert_eq!(IpProtocol::from(41), IpProtocol::IPV6_IN_IP);
        assert_eq!(u8::from(IpProtocol::ICMPV6), 58);
    }

    #[test]
    fn version_nibble() {
        assert_eq!(version(&[0x45, 0]), Some(4));
        assert_eq!(version(&[0x60]), Some(6));
        assert_eq!(version(&[]), None);
    }
}
