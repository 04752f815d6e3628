//! A VM interface as the packet path sees it.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{PortId, Vni};

/// PXE boot parameters handed out by DHCP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PxeConfig {
    /// DHCP `siaddr` (next server).
    pub next_server: Option<Ipv4Addr>,
    /// The IPv6 PXE server of an interface with IPv6 (dpservice's rule): the host of the DHCPv6
    /// boot file URL (option 59).
    pub next_server_v6: Option<Ipv6Addr>,
    /// Boot file name sent to iPXE clients (user class "iPXE").
    pub boot_filename: String,
}

/// One VM interface bound to a VF port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// The control plane's interface id.
    pub id: String,
    pub vni: Vni,
    pub port: PortId,
    pub ipv4: Ipv4Addr,
    /// The VM's overlay IPv6 address (`::` when it has none).
    pub ipv6: Ipv6Addr,
    /// Outer address of packets to and from this VM on the underlay.
    pub underlay_ipv6: Ipv6Addr,
    pub hostname: Option<String>,
    pub pxe: Option<PxeConfig>,
    /// Alias prefixes routed to this VM (CreatePrefix): also valid source addresses.
    pub prefixes_v4: Vec<(Ipv4Addr, u8)>,
    pub prefixes_v6: Vec<(Ipv6Addr, u8)>,
    /// VIP, NAT and firewall rules.
    pub services: crate::IfaceServices,
    /// Rate limits of what the VM sends (CreateInterface's metering parameters).
    pub meter: crate::MeterConfig,
}

impl Iface {
    /// Whether none of this interface's traffic needs connection state: it has no VIP, no NAT
    /// and no firewall rule (what `--conntrack stateful` forwards untracked between such
    /// interfaces).
    #[inline]
    pub fn is_stateless(&self) -> bool {
        self.services.vip.is_none()
            && self.services.nat.is_none()
            && self.services.firewall.is_empty()
    }

    /// Whether the VM may send with this IPv4 source address (anti-spoofing).
    #[inline]
    pub fn owns_source_v4(&self, src: Ipv4Addr) -> bool {
        src == self.ipv4
            || self
                .prefixes_v4
                .iter()
                .any(|&(net, len)| crate::lpm::prefix_contains_v4(net, len, src))
    }

    /// Whether the VM may send with this IPv6 source address (anti-spoofing).
    #[inline]
    pub fn owns_source_v6(&self, src: Ipv6Addr) -> bool {
        (!self.ipv6.is_unspecified() && src == self.ipv6)
            || self
                .prefixes_v6
                .iter()
                .any(|&(net, len)| crate::lpm::prefix_contains_v6(net, len, src))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface() -> Iface {
        Iface {
            id: "vm1".into(),
            vni: 100,
            port: 2,
            ipv4: Ipv4Addr::new(10, 100, 1, 1),
            ipv6: "2000:100:1::1".parse().unwrap(),
            underlay_ipv6: "fc00:1::1:0:0:1".parse().unwrap(),
            hostname: None,
            pxe: None,
            prefixes_v4: vec![(Ipv4Addr::new(192, 168, 7, 0), 24)],
            prefixes_v6: vec![],
            services: Default::default(),
            meter: Default::default(),
        }
    }

    #[test]
    fn source_ownership() {
        let i = iface();
        assert!(i.owns_source_v4(Ipv4Addr::new(10, 100, 1, 1)));
        assert!(i.owns_source_v4(Ipv4Addr::new(192, 168, 7, 200)));
        assert!(!i.owns_source_v4(Ipv4Addr::new(10, 100, 1, 2)));
        assert!(!i.owns_source_v4(Ipv4Addr::new(192, 168, 8, 1)));
        assert!(i.owns_source_v6("2000:100:1::1".parse().unwrap()));
        assert!(!i.owns_source_v6("2000:100:1::2".parse().unwrap()));
        let mut no_v6 = iface();
        no_v6.ipv6 = Ipv6Addr::UNSPECIFIED;
        assert!(!no_v6.owns_source_v6(Ipv6Addr::UNSPECIFIED));
    }
}
