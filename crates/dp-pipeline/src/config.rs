//! Daemon-wide settings the nodes read (fixed at start-up).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The overlay gateway the VMs talk to.
pub const GATEWAY_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
pub const GATEWAY_IPV6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// Settings from the command line and configuration file that shape replies and forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpConfig {
    /// The host's underlay address (`--ipv6`).
    pub underlay_ipv6: Ipv6Addr,
    /// Interface MTU handed out by DHCP (`--dhcp-mtu`).
    pub dhcp_mtu: u16,
    /// DNS servers for DHCPv4 (`--dhcp-dns`).
    pub dhcp_dns: Vec<Ipv4Addr>,
    /// DNS servers for DHCPv6 (`--dhcpv6-dns`).
    pub dhcpv6_dns: Vec<Ipv6Addr>,
    /// Forward IPv6 between VMs (`--enable-ipv6-overlay`).
    pub ipv6_overlay: bool,
}

impl Default for DpConfig {
    fn default() -> Self {
        DpConfig {
            underlay_ipv6: Ipv6Addr::UNSPECIFIED,
            dhcp_mtu: 1500,
            dhcp_dns: Vec::new(),
            dhcpv6_dns: Vec::new(),
            ipv6_overlay: false,
        }
    }
}
