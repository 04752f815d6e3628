//! Daemon-wide settings the nodes read (fixed at start-up).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The overlay gateway the VMs talk to.
pub const GATEWAY_IPV4: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);
pub const GATEWAY_IPV6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// The default `--underlay-mtu`: a plain Ethernet underlay.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;
/// The smallest `--underlay-mtu`: an encapsulated IPv6 packet of the IPv6 minimum MTU (1280) must fit.
pub const MIN_UNDERLAY_MTU: u16 = 1280 + dp_packet::ipv6::HEADER_LEN as u16;

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
    /// Largest IPv6 packet (outer header included) an uplink may send (`--underlay-mtu`); an
    /// overlay packet may be at most 40 bytes shorter.
    pub underlay_mtu: u16,
    /// Share of flows, in percent, sent out of pf0 when pf1 exists too (`--wcmp`); the rest go
    /// out of pf1. 100 (dpservice's default): everything on pf0, pf1 only when pf0 is unusable.
    pub wcmp_percent: u8,
    /// The underlay router's address on every uplink link (`--router`), resolved by neighbor
    /// discovery; without it, the router is whoever sends router advertisements.
    pub router: Option<Ipv6Addr>,
    /// How long flows live without packets (`--flow-timeout` and dpservice's fixed ones).
    pub flow_timeouts: dp_tables::Timeouts,
    /// Which packets connection tracking keeps state for (`--conntrack`): every routed one (as
    /// dpservice), or only those a stateful service needs (see
    /// [`Conntrack`](crate::nodes::Conntrack)).
    pub conntrack: ConntrackMode,
    /// The uplinks' next-hop MAC comes from the kernel's IPv6 neighbour table, as dpservice
    /// takes it (TAP uplinks without `--router`): the daemon reads it and writes it into the
    /// [`PortTable`](crate::PortTable); the pipeline neither solicits nor learns it, and an
    /// uplink whose link is up is used even while the table has no router entry, with the
    /// all-zero MAC dpservice sends to then (see [`UnderlayNd`](crate::nodes::UnderlayNd)).
    pub router_mac_from_kernel: bool,
    /// The virtual services (`--udp-virtsvc`, `--tcp-virtsvc`), fixed for the daemon's life;
    /// each worker's port maps for them are in [`WorkerCtx::virtsvc`](crate::WorkerCtx).
    pub virtual_services: std::sync::Arc<dp_tables::VirtualServices>,
}

/// Which packets connection tracking keeps state for (`--conntrack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConntrackMode {
    /// Every routed packet belongs to a flow in the flow table (dpservice's behaviour).
    #[default]
    All,
    /// Only packets a stateful service needs: a packet between interfaces that have no
    /// firewall rule, no VIP and no NAT (and, from a VM, sent from its own address to no VIP)
    /// is forwarded without a flow.
    Stateful,
}

impl DpConfig {
    /// The longest overlay (inner) packet that fits in the underlay MTU once encapsulated.
    #[inline]
    pub fn overlay_mtu(&self) -> usize {
        usize::from(self.underlay_mtu).saturating_sub(crate::nodes::OUTER_HEADER_LEN)
    }
}

impl Default for DpConfig {
    fn default() -> Self {
        DpConfig {
            underlay_ipv6: Ipv6Addr::UNSPECIFIED,
            dhcp_mtu: 1500,
            dhcp_dns: Vec::new(),
            dhcpv6_dns: Vec::new(),
            ipv6_overlay: false,
            underlay_mtu: DEFAULT_UNDERLAY_MTU,
            wcmp_percent: 100,
            router: None,
            flow_timeouts: dp_tables::Timeouts::default(),
            conntrack: ConntrackMode::All,
            router_mac_from_kernel: false,
            virtual_services: std::sync::Arc::default(),
        }
    }
}
