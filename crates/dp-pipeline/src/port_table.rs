//! What the packet path knows about each port: its role, our MAC on it, the MAC of the machine on
//! the other side and the link state — shared by the workers and lock-free (atomics).
//!
//! The peer is the VM on a VF (its MAC learned from its frames) and the underlay router on an
//! uplink (its MAC learned by neighbor discovery, with the time it was last confirmed so that a
//! router that stopped answering is forgotten: see [`UnderlayNd`](crate::nodes::UnderlayNd)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dp_packet::MacAddr;
use dp_tables::PortId;

/// A port's role in the dataplane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// An uplink towards the underlay (pf0, pf1).
    Uplink,
    /// A VM's port (a VF).
    Vf,
}

/// One port's entry.
#[derive(Debug)]
pub struct PortEntry {
    pub kind: PortKind,
    pub name: String,
    /// Our MAC on this port: the gateway MAC the VM learns by ARP/ND.
    pub own_mac: MacAddr,
    /// The peer's MAC (the VM's on a VF, the router's on an uplink) packed into the low 48 bits;
    /// 0 while unknown.
    peer_mac: AtomicU64,
    /// When the peer's MAC was last confirmed (worker clock, ns); meaningful while it is known.
    peer_confirmed_ns: AtomicU64,
    link_up: AtomicBool,
}

impl PortEntry {
    pub fn new(kind: PortKind, name: impl Into<String>, own_mac: MacAddr) -> Self {
        PortEntry {
            kind,
            name: name.into(),
            own_mac,
            peer_mac: AtomicU64::new(0),
            peer_confirmed_ns: AtomicU64::new(0),
            link_up: AtomicBool::new(true),
        }
    }

    /// The peer's MAC, if known.
    #[inline]
    pub fn peer_mac(&self) -> Option<MacAddr> {
        match self.peer_mac.load(Ordering::Relaxed) {
            0 => None,
            packed => Some(unpack_mac(packed)),
        }
    }

    /// Records the peer's MAC; a store only when it changed, so the cache line stays shared.
    #[inline]
    pub fn learn_peer_mac(&self, mac: MacAddr) {
        self.learn_packed_peer_mac(pack_mac(mac));
    }

    /// [`Self::learn_peer_mac`] for a MAC already in [`pack_mac`]'s form (the low 48 bits of a
    /// big-endian u64), as the hot path reads it.
    #[inline]
    pub(crate) fn learn_packed_peer_mac(&self, packed: u64) {
        if self.peer_mac.load(Ordering::Relaxed) != packed {
            self.peer_mac.store(packed, Ordering::Relaxed);
        }
    }

    /// [`Self::learn_packed_peer_mac`] only while the peer's MAC is unknown: a VM's first frame
    /// names it (an existing-interface VF has no guess); later frames do not change it, as in
    /// dpservice only ARP, DHCP and neighbor discovery do.
    #[inline]
    pub(crate) fn learn_packed_peer_mac_if_unknown(&self, packed: u64) {
        if self.peer_mac.load(Ordering::Relaxed) == 0 {
            self.peer_mac.store(packed, Ordering::Relaxed);
        }
    }

    /// Records the peer's MAC as confirmed at `now_ns` (a neighbor or router advertisement).
    #[inline]
    pub fn confirm_peer(&self, mac: MacAddr, now_ns: u64) {
        self.peer_confirmed_ns.store(now_ns, Ordering::Relaxed);
        self.learn_peer_mac(mac);
    }

    /// When the peer's MAC was last confirmed (only meaningful while it is known).
    #[inline]
    pub fn peer_confirmed_ns(&self) -> u64 {
        self.peer_confirmed_ns.load(Ordering::Relaxed)
    }

    /// Forgets the peer's MAC: nothing is sent to the peer until it is learned again.
    pub fn forget_peer(&self) {
        self.peer_mac.store(0, Ordering::Relaxed);
    }

    #[inline]
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Relaxed)
    }

    /// Records the link state; returns the previous one.
    pub fn set_link_up(&self, up: bool) -> bool {
        self.link_up.swap(up, Ordering::Relaxed)
    }
}

/// A MAC as the low 48 bits of a u64 (first byte highest); 0 is "none".
pub(crate) fn pack_mac(mac: MacAddr) -> u64 {
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&mac.0);
    u64::from_be_bytes(b)
}

fn unpack_mac(packed: u64) -> MacAddr {
    let b = packed.to_be_bytes();
    MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// All ports, indexed by [`PortId`]. Built at start-up; its entries are updated atomically.
#[derive(Debug, Default)]
pub struct PortTable {
    entries: Vec<PortEntry>,
}

impl PortTable {
    pub fn new(entries: Vec<PortEntry>) -> Self {
        PortTable { entries }
    }

    #[inline]
    pub fn get(&self, port: PortId) -> Option<&PortEntry> {
        self.entries.get(usize::from(port))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (PortId, &PortEntry)> {
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| (PortId::try_from(i).unwrap_or(PortId::MAX), e))
    }

    /// The port whose name is `name`.
    pub fn find(&self, name: &str) -> Option<PortId> {
        self.iter().find(|(_, e)| e.name == name).map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_mac_learning() {
        let e = PortEntry::new(PortKind::Vf, "vf0", MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.peer_mac(), None);
        let m = MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x01]);
        e.learn_peer_mac(m);
        assert_eq!(e.peer_mac(), Some(m));
        let t = PortTable::new(vec![e]);
        assert_eq!(t.find("vf0"), Some(0));
        assert_eq!(t.find("vf1"), None);
    }

    #[test]
    fn router_confirmation_and_link_state() {
        let e = PortEntry::new(PortKind::Uplink, "pf0", MacAddr([2, 0, 0, 0, 0, 1]));
        let r = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
        e.confirm_peer(r, 7);
        assert_eq!((e.peer_mac(), e.peer_confirmed_ns()), (Some(r), 7));
        e.forget_peer();
        assert_eq!(e.peer_mac(), None);
        assert!(e.link_up());
        assert!(e.set_link_up(false));
        assert!(!e.set_link_up(true));
        assert!(e.link_up());
    }
}
