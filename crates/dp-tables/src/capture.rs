//! Packet capture (CaptureStart): what the workers copy and where the copies go.
//!
//! A captured frame is copied, wrapped in Ethernet + IPv6 + UDP (to [`CaptureConfig::sink`],
//! from the host's underlay address, with the configured ports) and sent out of an uplink, as
//! dpservice's capture does (see docs/architecture.md, "Capture"). The configuration is a small
//! `Copy` value in the snapshot: `None` there means capture is off, which the packet path checks
//! once per batch.

use std::net::Ipv6Addr;

use crate::PortId;

/// The port ids a capture can name: every port the daemon can have (2 uplinks and up to 256
/// VFs fit). dpservice allows 16 interfaces per capture (`DP_CAPTURE_MAX_PORT_NUM`, a limit of
/// its NIC's flow rules); ours has no limit but the port space. Larger requests are refused
/// (more interfaces than there can be ports).
pub const CAPTURE_MAX_PORTS: usize = 512;
const WORDS: usize = CAPTURE_MAX_PORTS / 64;

/// The directions of a captured port's traffic that are copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureDirections {
    /// Frames the port receives (what a VM sends; what the underlay sends us on an uplink).
    pub rx: bool,
    /// Frames transmitted out of the port (dpservice copies received frames only).
    pub tx: bool,
}

impl Default for CaptureDirections {
    fn default() -> Self {
        CaptureDirections { rx: true, tx: true }
    }
}

/// An active capture, as the packet path reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Where the copies go (outer IPv6 destination).
    pub sink: Ipv6Addr,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub directions: CaptureDirections,
    /// The captured ports, a bit per port id: one load and a test per batch and port.
    ports: [u64; WORDS],
}

impl CaptureConfig {
    /// A capture of `ports` (ids from [`CAPTURE_MAX_PORTS`] on are ignored; duplicates are kept
    /// once).
    pub fn new(
        sink: Ipv6Addr,
        udp_src_port: u16,
        udp_dst_port: u16,
        directions: CaptureDirections,
        ports: impl IntoIterator<Item = PortId>,
    ) -> Self {
        let mut c = CaptureConfig {
            sink,
            udp_src_port,
            udp_dst_port,
            directions,
            ports: [0; WORDS],
        };
        for p in ports {
            if let Some(w) = c.ports.get_mut(usize::from(p) / 64) {
                *w |= 1 << (p % 64);
            }
        }
        c
    }

    /// The captured ports, in port order.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        (0..CAPTURE_MAX_PORTS)
            .filter_map(|p| PortId::try_from(p).ok())
            .filter(|&p| self.captures(p))
    }

    /// Whether `port` is captured.
    #[inline]
    pub fn captures(&self, port: PortId) -> bool {
        self.ports
            .get(usize::from(port) / 64)
            .is_some_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// Whether what `port` receives is copied.
    #[inline]
    pub fn captures_rx(&self, port: PortId) -> bool {
        self.directions.rx && self.captures(port)
    }

    /// Whether what goes out of `port` is copied.
    #[inline]
    pub fn captures_tx(&self, port: PortId) -> bool {
        self.directions.tx && self.captures(port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_kept_once_and_bounded() {
        let c = CaptureConfig::new(
            "fc00::1".parse().unwrap(),
            1,
            2,
            CaptureDirections::default(),
            [3, 0, 3, 5],
        );
        assert_eq!(c.ports().collect::<Vec<_>>(), [0, 3, 5]);
        assert!(c.captures_rx(0) && c.captures_tx(5) && !c.captures(1));
        let many = CaptureConfig::new(
            Ipv6Addr::UNSPECIFIED,
            1,
            2,
            CaptureDirections {
                rx: true,
                tx: false,
            },
            (0..300).chain([600]),
        );
        // Far more than dpservice's 16; an id past the port space is ignored.
        assert_eq!(many.ports().count(), 300);
        assert!(many.captures_rx(257) && !many.captures_tx(15) && !many.captures(300));
        assert!(!many.captures(600));
    }
}
