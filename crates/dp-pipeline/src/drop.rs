//! Why a packet was dropped: every drop has a reason, and every reason a counter.

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The reason a packet left the graph without being sent.
        // Two bytes, as a node id and a port id: a `Verdict` is then one 32-bit word.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();

            /// The reason's name in metrics and stats (snake_case, stable).
            pub const fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }

            /// A one-line explanation for operators.
            pub const fn description(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $doc,)*
                }
            }

            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

drop_reasons! {
    EthTruncated => "eth_truncated", "frame shorter than an Ethernet header";
    EthNotForUs => "eth_not_for_us", "destination MAC neither ours, broadcast nor a multicast we serve";
    EthBadSource => "eth_bad_source", "source MAC is broadcast, or zero from a VM";
    UnknownEthertype => "unknown_ethertype", "ethertype not handled (VLAN tags included)";
    ArpMalformed => "arp_malformed", "ARP packet truncated or not Ethernet/IPv4";
    ArpNotForGateway => "arp_not_for_gateway", "ARP request for an address other than the gateway, or not a request";
    Ipv4Malformed => "ipv4_malformed", "IPv4 header truncated, bad version, IHL or total length";
    Ipv4BadChecksum => "ipv4_bad_checksum", "IPv4 header checksum wrong";
    Ipv4Fragment => "ipv4_fragment", "IPv4 fragment where a full datagram is needed";
    Ipv6Malformed => "ipv6_malformed", "IPv6 header truncated or payload length inconsistent";
    Ipv6OverlayDisabled => "ipv6_overlay_disabled", "IPv6 from a VM while --enable-ipv6-overlay is off";
    L4Malformed => "l4_malformed", "UDP/TCP/ICMP header truncated or length inconsistent";
    L4BadChecksum => "l4_bad_checksum", "UDP/TCP/ICMP checksum wrong";
    DhcpMalformed => "dhcp_malformed", "DHCPv4 message truncated or its options malformed";
    DhcpUnhandled => "dhcp_unhandled", "DHCPv4 message type we do not answer (release, decline, inform)";
    Dhcpv6Malformed => "dhcpv6_malformed", "DHCPv6 message truncated or its options malformed";
    Dhcpv6Unhandled => "dhcpv6_unhandled", "DHCPv6 message type we do not answer";
    NdMalformed => "nd_malformed", "neighbor discovery message malformed (hop limit, code, options)";
    NdUnhandled => "nd_unhandled", "ICMPv6/ND message we do not answer";
    NdNotForGateway => "nd_not_for_gateway", "neighbor solicitation for a target other than the gateway (DAD probes included)";
    DhcpNoAddress => "dhcp_no_address", "DHCPv4 request from an interface without an IPv4 address";
    IcmpUnhandled => "icmp_unhandled", "ICMP to the gateway that is not an echo request";
    GatewayNotIcmp => "gateway_not_icmp", "TCP, UDP or other non-ICMP packet addressed to the gateway";
    BadDestination => "bad_destination", "destination is multicast, broadcast or link-local (other than the gateway); for IPv6 also loopback or unspecified";
    TtlExceeded => "ttl_exceeded", "TTL or hop limit would reach zero";
    NoInterface => "no_interface", "packet from a VF port with no interface bound to it";
    Spoofed => "spoofed", "source address is not the VM's own address or one of its prefixes";
    NoVni => "no_vni", "the interface's VNI has no routing table";
    NoRoute => "no_route", "no route for the destination in the VNI";
    CrossVni => "cross_vni", "route points to an interface of another VNI";
    FromUplink => "from_uplink", "frame from an uplink that is not IPv6 (ARP, IPv4, VLAN-tagged, other ethertypes)";
    UnderlayMalformed => "underlay_malformed", "IPv6 packet from an uplink truncated, not version 6 or with an inconsistent payload length";
    UnderlayUnhandled => "underlay_unhandled", "IPv6 packet from an uplink that is neither IPv4/IPv6-in-IPv6 nor ICMPv6 (extension headers included)";
    UnderlayNotForUs => "underlay_not_for_us", "ICMPv6 on an uplink (solicitation, echo) for an address that is not ours";
    NdConsumed => "nd_consumed", "router or neighbor advertisement from the underlay: the router's MAC was learned or refreshed, nothing to send";
    DecapUnknownDst => "decap_unknown_dst", "encapsulated packet whose outer destination is none of our interfaces' underlay addresses";
    DecapInnerMalformed => "decap_inner_malformed", "decapsulated packet truncated, of the wrong IP version or longer than the outer payload";
    DecapInnerBadChecksum => "decap_inner_bad_checksum", "decapsulated IPv4 packet with a wrong header checksum";
    DecapInnerNotForTarget => "decap_inner_not_for_target", "decapsulated packet whose destination is not the target interface's address or one of its prefixes";
    DecapEcn => "decap_ecn", "outer header marked congestion (CE) while the inner packet is not ECN-capable (RFC 6040)";
    NoRouterMac => "no_router_mac", "no uplink to send on: the router's MAC is not known (yet) on any uplink whose link is up";
    UplinkDown => "uplink_down", "no uplink to send on: every uplink's link is down";
    TooBig => "too_big", "packet too large for the underlay MTU once encapsulated, about which no ICMP error may be sent";
    DstPortDown => "dst_port_down", "destination port has no interface or is down";
    NoPeerMac => "no_peer_mac", "destination VM's MAC address not known yet";
    NoRoom => "no_room", "reply does not fit in the packet buffer";
    QueueFull => "queue_full", "a node's input batch was full";
    GraphLoop => "graph_loop", "a node sent a packet backwards in the graph along an edge it did not declare (a bug)";
    RecircLimit => "recirculation_limit", "a packet went back to an earlier node more often than the recirculation limit allows";
    HandoffRingFull => "handoff_ring_full", "the ring to the worker that owns the packet's flow was full (or there is none): flow affinity drops rather than stalls";
    TxFailed => "tx_failed", "the port could not transmit the frame";
    NoBuffer => "no_buffer", "no free packet buffer";
    CaptureNoBuffer => "capture_no_buffer", "a capture copy not made: no free packet buffer, or too many copies waiting";
    OffloadInvalid => "offload_invalid", "a superframe whose offload request (virtio-net header) does not match its headers, so it cannot be segmented";
    ArpReplyConsumed => "arp_reply_consumed", "ARP reply from a VM to the gateway about the VM's own address (the answer to a probe): its MAC was learned, nothing to send";
    VmNaConsumed => "vm_na_consumed", "neighbor advertisement from a VM for its own address (the answer to a probe): its MAC was learned, nothing to send";
    FlowTableFull => "flow_table_full", "a new flow while the worker's flow table is full (live flows are never evicted)";
    FlowKeyInUse => "flow_key_in_use", "a new flow whose reply key belongs to another flow";
    NoFlow => "no_flow", "a packet that belongs to no flow and cannot start one (TCP RST, TCP without SYN to be translated)";
    IcmpErrorNoFlow => "icmp_error_no_flow", "an ICMP error quoting a packet of no known flow";
    FirewallDenied => "firewall_denied", "the flow is refused by the interface's firewall rules";
    NatNoFlow => "nat_no_flow", "a packet for a NAT address that is the reply of no flow here and of no neighbor NAT range";
    NatPortsExhausted => "nat_ports_exhausted", "no free port in the interface's NAT range for a new flow to this destination";
    NatUnsupported => "nat_unsupported", "a packet that cannot be translated: a fragment, IPv6 extension headers, or an ICMP message other than echo and errors";
    NatGone => "nat_gone", "a translated flow whose VIP or NAT was removed (the flow is closed)";
    LbNoBalancer => "lb_no_balancer", "a packet for a load balancer's underlay address whose inner destination is no balancer of its VNI";
    LbPortClosed => "lb_port_closed", "a new flow to a load balancer on a protocol/port it does not serve (or an ICMP message other than an echo request or an error)";
    LbNoTarget => "lb_no_target", "a new flow to a load balancer that has no target";
    MeterTotalExceeded => "meter_total_exceeded", "the VM sent more than its interface's total rate (metering_parameters.total_rate) allows";
    MeterPublicExceeded => "meter_public_exceeded", "the VM sent more over a public route (NAT, VIP) than its interface's public rate (metering_parameters.public_rate) allows";
    VirtsvcPortsExhausted => "virtsvc_ports_exhausted", "a new connection to a virtual service while every mapped port of the service (this worker's share) has a live connection";
    VirtsvcNoConnection => "virtsvc_no_connection", "a packet from a virtual service to a mapped port with no live connection (timed out, never made, or its VM interface is gone)";
    VirtsvcMalformed => "virtsvc_malformed", "a packet to or from a virtual service that cannot be translated: a fragment, a truncated TCP/UDP header or lengths that disagree";
}

impl From<dp_buffer::OffloadError> for DropReason {
    fn from(e: dp_buffer::OffloadError) -> Self {
        use dp_buffer::OffloadError as E;
        match e {
            E::TooBig => DropReason::TooBig,
            E::BadChecksum => DropReason::L4BadChecksum,
            E::Invalid => DropReason::OffloadInvalid,
            E::NoRoom => DropReason::NoRoom,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_indexed_in_order() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.description().is_empty());
        }
    }
}
