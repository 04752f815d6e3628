//! Packet capture (CaptureStart): what the workers copy and where the copies go.
//!
//! A captured frame is copied, wrapped in Ethernet + IPv6 + UDP (to [`CaptureConfig::sink`],
//! from the host's underlay address, with the configured ports) and sent out of an uplink, as
//! dpservice's capture does (see docs/architecture.md, "Capture"). The configuration is a small
//! `Copy` value in the snapshot: `None` there means capture is off, which the packet path checks
//! once per batch.

use std::net::Ipv6Addr;

use crate::PortId;

/// Most interfaces one capture may name (dpservice's `DP_CAPTURE_MAX_PORT_NUM`).
pub const CAPTURE_MAX_PORTS: usize = 16;

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
    /// The captured ports: the first `count` of `ports`.
    ports: [PortId; CAPTURE_MAX_PORTS],
    count: u8,
}

impl CaptureConfig {
    /// A capture of `ports` (at most [`CAPTURE_MAX_PORTS`]: the rest are ignored; duplicates are
    /// kept once).
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
            ports: [0; CAPTURE_MAX_PORTS],
            count: 0,
        };
        for p in ports {
            if c.captures(p) {
                continue;
            }
            if let Some(slot) = c.ports.get_mut(usize::from(c.count)) {
                *slot = p;
                c.count += 1;
            }
        }
        c
    }

    /// The captured ports, in the order given.
    #[inline]
    pub fn ports(&self) -> &[PortId] {
        self.ports
            .get(..usize::from(self.count))
            .unwrap_or(&self.ports)
    }

    /// Whether `port` is captured.
    #[inline]
    pub fn captures(&self, port: PortId) -> bool {
        self.ports().contains(&port)
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
        assert_eq!(c.ports(), &[3, 0, 5]);
        assert!(c.captures_rx(0) && c.captures_tx(5) && !c.captures(1));
        let many = CaptureConfig::new(
            Ipv6Addr::UNSPECIFIED,
            1,
            2,
            CaptureDirections {
                rx: true,
                tx: false,
            },
            0..40,
        );
        assert_eq!(many.ports().len(), CAPTURE_MAX_PORTS);
        assert!(many.captures_rx(15) && !many.captures_tx(15) && !many.captures(16));
    }
}
