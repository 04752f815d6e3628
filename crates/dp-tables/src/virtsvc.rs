//! Virtual services (dpservice's `--udp-virtsvc` / `--tcp-virtsvc`): a VM reaches an IPv6 service
//! outside through a virtual IPv4 endpoint; the dataplane swaps the IPv4 header for an IPv6 one
//! (no encapsulation) with a mapped source port, and back for the replies.
//!
//! Two parts:
//! * [`VirtualServices`]: the services, fixed for the daemon's life (from the command line), with
//!   the two look-ups the packet path needs — a VM's packet by (protocol, virtual IPv4, port), a
//!   reply from the underlay by (protocol, service IPv6, port, our per-service address) — as
//!   sorted arrays searched by bisection (at most 256 services: 8 steps).
//! * [`PortMap`]: one service's connection table on one worker: the mapped ports 1024..=65535
//!   this worker owns, a pre-allocated slot per port, and an open-addressing index from the VM's
//!   endpoint (port id, IPv4 address, L4 port) to its slot. Sized once; nothing allocates on the
//!   packet path; a slot is reused only once its connection timed out.
//!
//! Port assignment is dpservice's: incremental from the last port given out (RFC 6056's simple
//! algorithm), skipping ports whose connection is still live; a VM endpoint that has a mapping
//! keeps it. Timeouts as dpservice's: 30 s (`--flow-timeout`), 24 h once a TCP three-way
//! handshake was seen, back to the short one on the first FIN or RST of either side.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dp_packet::IpProtocol;

use crate::PortId;

/// Most virtual services (dpservice's `DP_VIRTSVC_MAX`).
pub const VIRTSVC_MAX: usize = 256;
/// The first mapped port (dpservice's `DP_NB_SYSTEM_PORTS`): ports below are never given out.
pub const VIRTSVC_FIRST_PORT: u16 = 1024;
/// Mapped ports per service (dpservice's `DP_VIRTSVC_PORTCOUNT`): 1024..=65535.
pub const VIRTSVC_PORT_COUNT: usize = 65536 - VIRTSVC_FIRST_PORT as usize;
/// How long an established TCP connection's mapping lives without packets (dpservice's
/// `DP_FLOW_TCP_EXTENDED_TIMEOUT`, one day).
pub const VIRTSVC_ESTABLISHED_TIMEOUT_NS: u64 = 24 * 3600 * 1_000_000_000;

/// One virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VirtualService {
    /// TCP or UDP.
    pub proto: IpProtocol,
    /// The endpoint the VMs send to.
    pub virtual_addr: Ipv4Addr,
    pub virtual_port: u16,
    /// The service itself.
    pub service_addr: Ipv6Addr,
    pub service_port: u16,
    /// Our address towards the service: the source of the translated requests and the
    /// destination of the replies ([`virtsvc_underlay`]).
    pub underlay_addr: Ipv6Addr,
}

/// The underlay address of service number `index`, as dpservice's `dp_generate_virtsvc_ul_ipv6`
/// makes it: the host's `--ipv6` /64, then the bytes `d0 ff 40 00` (underlay address type,
/// subtype 0xff so as never to clash with an interface's, the secondary-pool flag, no random
/// byte) and the index as dpservice stores it — in host byte order, which on x86 puts index 1
/// at `…:d0ff:4000:100:0`. Kept bit for bit so that a deployment's routes and captures match.
pub fn virtsvc_underlay(host: Ipv6Addr, index: u32) -> Ipv6Addr {
    let mut b = host.octets();
    b[8..12].copy_from_slice(&[0xd0, 0xff, 0x40, 0x00]);
    b[12..16].copy_from_slice(&index.to_le_bytes());
    Ipv6Addr::from(b)
}

/// The virtual services and their look-ups (see the module docs). Immutable once built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualServices {
    services: Vec<VirtualService>,
    /// (protocol, virtual address, virtual port) packed, sorted, with the service's index.
    by_virtual: Vec<(u64, u16)>,
    /// (service address, protocol and port packed, index), sorted.
    by_service: Vec<(u128, u32, u16)>,
    /// Per service: the ones' complement sum of its two IPv6 addresses (service and underlay),
    /// the part of the IPv6 pseudo header that is the same for every packet of both directions.
    address_sums: Vec<u16>,
}

/// Why a list of services was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtsvcError {
    TooMany,
    /// Neither TCP nor UDP.
    Protocol(IpProtocol),
    /// Two services of one protocol share their virtual endpoint.
    DuplicateVirtual(usize),
    /// Two services of one protocol share the service endpoint.
    DuplicateService(usize),
}

#[inline]
fn virtual_key(proto: IpProtocol, addr: Ipv4Addr, port: u16) -> u64 {
    u64::from(proto.0) << 48 | u64::from(u32::from(addr)) << 16 | u64::from(port)
}

#[inline]
fn service_key(proto: IpProtocol, port: u16) -> u32 {
    u32::from(proto.0) << 16 | u32::from(port)
}

impl VirtualServices {
    /// The services in the order given (service `i` gets the underlay address of index `i`).
    pub fn new(services: Vec<VirtualService>) -> Result<Self, VirtsvcError> {
        if services.len() > VIRTSVC_MAX {
            return Err(VirtsvcError::TooMany);
        }
        let mut by_virtual = Vec::with_capacity(services.len());
        let mut by_service = Vec::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            if !matches!(s.proto, IpProtocol::TCP | IpProtocol::UDP) {
                return Err(VirtsvcError::Protocol(s.proto));
            }
            let index = u16::try_from(i).map_err(|_| VirtsvcError::TooMany)?;
            by_virtual.push((virtual_key(s.proto, s.virtual_addr, s.virtual_port), index));
            by_service.push((
                u128::from(s.service_addr),
                service_key(s.proto, s.service_port),
                index,
            ));
        }
        by_virtual.sort_unstable();
        by_service.sort_unstable();
        if let Some(w) = by_virtual.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(VirtsvcError::DuplicateVirtual(usize::from(
                w[0].1.max(w[1].1),
            )));
        }
        if let Some(w) = by_service
            .windows(2)
            .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
        {
            return Err(VirtsvcError::DuplicateService(usize::from(
                w[0].2.max(w[1].2),
            )));
        }
        let address_sums = services
            .iter()
            .map(|s| {
                dp_packet::checksum::combine(&[
                    dp_packet::checksum::data(&s.service_addr.octets()),
                    dp_packet::checksum::data(&s.underlay_addr.octets()),
                ])
            })
            .collect();
        Ok(VirtualServices {
            services,
            by_virtual,
            by_service,
            address_sums,
        })
    }

    /// The sum of service `index`'s two IPv6 addresses (for checksum updates), 0 if none.
    #[inline]
    pub fn address_sum(&self, index: usize) -> u16 {
        self.address_sums.get(index).copied().unwrap_or(0)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.services.len()
    }

    #[inline]
    pub fn get(&self, index: usize) -> Option<&VirtualService> {
        self.services.get(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &VirtualService> {
        self.services.iter()
    }

    /// Whether `addr` is one of the services' underlay addresses (ours: neighbor discovery
    /// answers for them, as for an interface's).
    pub fn is_underlay(&self, addr: Ipv6Addr) -> bool {
        self.services.iter().any(|s| s.underlay_addr == addr)
    }

    /// The service a VM's packet to `dst`:`dst_port` (`proto`) is for.
    #[inline]
    pub fn find_virtual(&self, proto: IpProtocol, dst: Ipv4Addr, dst_port: u16) -> Option<usize> {
        let key = virtual_key(proto, dst, dst_port);
        self.by_virtual
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .and_then(|i| self.by_virtual.get(i))
            .map(|&(_, index)| usize::from(index))
    }

    /// The service a packet from the underlay comes from: from the service's address and port
    /// (`proto`), to the service's underlay address of ours.
    #[inline]
    pub fn find_service(
        &self,
        proto: IpProtocol,
        src: Ipv6Addr,
        src_port: u16,
        dst: Ipv6Addr,
    ) -> Option<usize> {
        let key = (u128::from(src), service_key(proto, src_port));
        let at = self
            .by_service
            .binary_search_by_key(&key, |&(a, p, _)| (a, p))
            .ok()?;
        let index = usize::from(self.by_service.get(at)?.2);
        (self.services.get(index)?.underlay_addr == dst).then_some(index)
    }
}

/// A mapping's TCP state as dpservice tracks it (`enum dp_virtsvc_conn_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum VirtsvcTcpState {
    /// Anything but an established connection (UDP always).
    #[default]
    Transient,
    /// A lone SYN was seen.
    Syn,
    /// Then a lone SYN-ACK.
    SynAck,
    /// Then a lone ACK: the three-way handshake; the long timeout applies.
    Established,
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

impl VirtsvcTcpState {
    /// The state after a segment with `flags` (either direction), as dpservice's
    /// `virtsvc_tcp_state_change`: FIN or RST drop back at once; otherwise the handshake
    /// advances on segments carrying exactly SYN, SYN+ACK, ACK (all eight flag bits compared).
    #[inline]
    pub fn next(self, flags: u8) -> Self {
        use VirtsvcTcpState::*;
        if flags & (TCP_FIN | TCP_RST) != 0 {
            return Transient;
        }
        match (self, flags) {
            (Transient, TCP_SYN) => Syn,
            (Syn, f) if f == TCP_SYN | TCP_ACK => SynAck,
            (SynAck, TCP_ACK) => Established,
            (s, _) => s,
        }
    }
}

/// One connection (a mapped port) of a [`PortMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtsvcConn {
    /// The VM endpoint: its port, IPv4 address and L4 port.
    pub vm_port: PortId,
    pub vm_addr: Ipv4Addr,
    pub vm_l4_port: u16,
    /// When the last packet of either direction passed (worker clock).
    pub last_ns: u64,
    pub state: VirtsvcTcpState,
    /// Whether the slot holds a connection (live or timed out, not yet reused).
    pub in_use: bool,
}

impl Default for VirtsvcConn {
    fn default() -> Self {
        VirtsvcConn {
            vm_port: 0,
            vm_addr: Ipv4Addr::UNSPECIFIED,
            vm_l4_port: 0,
            last_ns: 0,
            state: VirtsvcTcpState::Transient,
            in_use: false,
        }
    }
}

impl VirtsvcConn {
    #[inline]
    fn key(&self) -> u64 {
        endpoint_key(self.vm_port, self.vm_addr, self.vm_l4_port)
    }

    /// When the mapping times out.
    #[inline]
    pub fn expires_ns(&self, short_ns: u64) -> u64 {
        let timeout = if self.state == VirtsvcTcpState::Established {
            VIRTSVC_ESTABLISHED_TIMEOUT_NS
        } else {
            short_ns
        };
        self.last_ns.saturating_add(timeout)
    }

    #[inline]
    fn is_live(&self, now_ns: u64, short_ns: u64) -> bool {
        self.in_use && now_ns <= self.expires_ns(short_ns)
    }
}

#[inline]
fn endpoint_key(port: PortId, addr: Ipv4Addr, l4_port: u16) -> u64 {
    u64::from(port) << 48 | u64::from(u32::from(addr)) << 16 | u64::from(l4_port)
}

#[inline]
fn hash(key: u64) -> u64 {
    // A multiplicative mix (the upper bits are the best mixed; the index takes them).
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// Why no port was mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMapError {
    /// Every port of this worker's share has a live connection.
    Exhausted,
}

/// Counters of one [`PortMap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortMapStats {
    /// Mappings made (a new VM endpoint, or a timed-out one back).
    pub created: u64,
    /// Of those, the ones that took over a timed-out connection's port.
    pub reused: u64,
    /// New connections refused: every port in use.
    pub exhausted: u64,
}

/// One service's mapped ports on one worker (see the module docs).
///
/// With `workers` workers, worker `w` owns the ports `p` in 1024..=65535 with
/// `p % workers == w` (as the NAT's ports, `affinity::nat_port_owner`), so a reply, which names
/// only the mapped port, is steered to the worker holding its connection.
#[derive(Clone, Debug)]
pub struct PortMap {
    /// The lowest port of this worker's share and the step between its ports.
    first_port: u16,
    step: u16,
    conns: Vec<VirtsvcConn>,
    /// Open addressing, linear probing, at most half full: slot index + 1, 0 empty.
    index: Vec<u32>,
    mask: usize,
    /// The slot given out last (dpservice's `last_assigned_port`).
    last: usize,
    /// Every port was found live at the last search: no new connection before this time
    /// (the earliest expiry seen), so an exhausted table costs one compare per refused packet,
    /// not a walk over every port.
    full_until: u64,
    stats: PortMapStats,
}

impl PortMap {
    /// The table of worker `worker` of `workers` (at least 1), every slot free.
    pub fn new(worker: usize, workers: usize) -> Self {
        let workers = workers.clamp(1, usize::from(VIRTSVC_FIRST_PORT));
        let worker = worker.min(workers - 1);
        let first = usize::from(VIRTSVC_FIRST_PORT);
        // The smallest port >= 1024 congruent to `worker` modulo `workers`.
        let first_port = first + (worker + workers - first % workers) % workers;
        let count = (65_535 - first_port) / workers + 1;
        let size = (2 * count).next_power_of_two();
        PortMap {
            first_port: u16::try_from(first_port).unwrap_or(VIRTSVC_FIRST_PORT),
            step: u16::try_from(workers).unwrap_or(1),
            conns: vec![VirtsvcConn::default(); count],
            index: vec![0; size],
            mask: size - 1,
            last: 0,
            full_until: 0,
            stats: PortMapStats::default(),
        }
    }

    /// How many ports this table gives out.
    pub fn capacity(&self) -> usize {
        self.conns.len()
    }

    pub fn stats(&self) -> PortMapStats {
        self.stats
    }

    /// The mapped port of slot `slot`.
    #[inline]
    pub fn port_of(&self, slot: usize) -> u16 {
        let port = usize::from(self.first_port) + slot * usize::from(self.step);
        u16::try_from(port).unwrap_or(0)
    }

    /// The slot of mapped port `port`, if this table owns it.
    #[inline]
    pub fn slot_of(&self, port: u16) -> Option<usize> {
        let off = usize::from(port).checked_sub(usize::from(self.first_port))?;
        let step = usize::from(self.step);
        (off % step == 0)
            .then_some(off / step)
            .filter(|&s| s < self.conns.len())
    }

    #[inline]
    pub fn conn(&self, slot: usize) -> Option<&VirtsvcConn> {
        self.conns.get(slot)
    }

    #[inline]
    pub fn conn_mut(&mut self, slot: usize) -> Option<&mut VirtsvcConn> {
        self.conns.get_mut(slot)
    }

    /// Connections live at `now_ns` (a walk over every slot: for stats, not the packet path).
    pub fn live(&self, now_ns: u64, short_ns: u64) -> usize {
        self.live_in(0, self.conns.len(), now_ns, short_ns)
    }

    /// Connections live at `now_ns` among `len` slots from `first` (a bounded part of
    /// [`PortMap::live`]).
    pub fn live_in(&self, first: usize, len: usize, now_ns: u64, short_ns: u64) -> usize {
        self.conns
            .iter()
            .skip(first)
            .take(len)
            .filter(|c| c.is_live(now_ns, short_ns))
            .count()
    }

    /// The slot of the VM endpoint's mapping, if it has one (live or not yet reused).
    #[inline]
    pub fn find(&self, vm_port: PortId, vm_addr: Ipv4Addr, vm_l4_port: u16) -> Option<usize> {
        let key = endpoint_key(vm_port, vm_addr, vm_l4_port);
        let mut at = self.home(key);
        for _ in 0..self.index.len() {
            let slot = *self.index.get(at)? as usize;
            if slot == 0 {
                return None;
            }
            if self.conns.get(slot - 1).is_some_and(|c| c.key() == key) {
                return Some(slot - 1);
            }
            at = (at + 1) & self.mask;
        }
        None
    }

    /// The VM endpoint's mapping, made if it has none (a new port, see the module docs); its
    /// time and state are the caller's to update. `short_ns`: the timeout of a connection that
    /// is not established TCP. `restart`: search from the first port rather than after the
    /// last one given (dpservice does this when the flow timeout is not the default, so that
    /// its tests see ports reused).
    pub fn get_or_insert(
        &mut self,
        vm_port: PortId,
        vm_addr: Ipv4Addr,
        vm_l4_port: u16,
        now_ns: u64,
        short_ns: u64,
        restart: bool,
    ) -> Result<usize, PortMapError> {
        if let Some(slot) = self.find(vm_port, vm_addr, vm_l4_port) {
            return Ok(slot);
        }
        let slot = self.free_slot(now_ns, short_ns, restart)?;
        let Some(old) = self.conns.get(slot).copied() else {
            return Err(PortMapError::Exhausted);
        };
        if old.in_use {
            self.unindex(old.key());
            self.stats.reused += 1;
        }
        let conn = VirtsvcConn {
            vm_port,
            vm_addr,
            vm_l4_port,
            last_ns: now_ns,
            state: VirtsvcTcpState::Transient,
            in_use: true,
        };
        if let Some(c) = self.conns.get_mut(slot) {
            *c = conn;
        }
        self.insert_index(conn.key(), slot);
        self.stats.created += 1;
        Ok(slot)
    }

    /// Frees a slot at once (its VM interface went away).
    pub fn release(&mut self, slot: usize) {
        let Some(old) = self.conns.get(slot).copied() else {
            return;
        };
        if old.in_use {
            self.unindex(old.key());
            if let Some(c) = self.conns.get_mut(slot) {
                *c = VirtsvcConn::default();
            }
            self.full_until = 0;
        }
    }

    /// The next slot after the last one given out whose connection is free or timed out.
    fn free_slot(
        &mut self,
        now_ns: u64,
        short_ns: u64,
        restart: bool,
    ) -> Result<usize, PortMapError> {
        if now_ns < self.full_until {
            self.stats.exhausted += 1;
            return Err(PortMapError::Exhausted);
        }
        if restart {
            self.last = 0;
        }
        let n = self.conns.len();
        let mut earliest = u64::MAX;
        // dpservice starts after the last port given, slot 0 included only after a wrap: its
        // first connection gets port 1025.
        for i in 1..=n {
            let slot = (self.last + i) % n;
            let Some(c) = self.conns.get(slot) else {
                continue;
            };
            if !c.is_live(now_ns, short_ns) {
                self.last = slot;
                return Ok(slot);
            }
            earliest = earliest.min(c.expires_ns(short_ns));
        }
        self.full_until = earliest.saturating_add(1);
        self.stats.exhausted += 1;
        Err(PortMapError::Exhausted)
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (hash(key) >> 32) as usize & self.mask
    }

    fn insert_index(&mut self, key: u64, slot: usize) {
        let mut at = self.home(key);
        for _ in 0..self.index.len() {
            match self.index.get_mut(at) {
                Some(e) if *e == 0 => {
                    *e = u32::try_from(slot + 1).unwrap_or(0);
                    return;
                }
                Some(_) => at = (at + 1) & self.mask,
                None => return,
            }
        }
    }

    /// Removes `key` from the index, by backward shift (no tombstones).
    fn unindex(&mut self, key: u64) {
        let mut at = self.home(key);
        let mut found = None;
        for _ in 0..self.index.len() {
            let e = self.index.get(at).copied().unwrap_or(0) as usize;
            if e == 0 {
                break;
            }
            if self.conns.get(e - 1).is_some_and(|c| c.key() == key) {
                found = Some(at);
                break;
            }
            at = (at + 1) & self.mask;
        }
        let Some(mut hole) = found else {
            return;
        };
        let mut at = hole;
        loop {
            at = (at + 1) & self.mask;
            let e = self.index.get(at).copied().unwrap_or(0);
            if e == 0 {
                break;
            }
            let home = self
                .conns
                .get(e as usize - 1)
                .map_or(at, |c| self.home(c.key()));
            // Moves back when its home is not in (hole, at] (cyclically).
            let dist_home = at.wrapping_sub(home) & self.mask;
            let dist_hole = at.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = e;
                }
                hole = at;
            }
        }
        if let Some(h) = self.index.get_mut(hole) {
            *h = 0;
        }
    }
}

/// A worker's tables of every service: one [`PortMap`] per service, in the services' order.
///
/// It also counts each service's ports in use (live connections, as dpservice's telemetry
/// `/dp_service/virtsvc/used_port_count` does) for other threads to read: liveness is a
/// matter of time (a connection times out without being removed), so the ports are counted by
/// a walk over the slots, [`VirtsvcTables::count_used`], bounded per call and resumed where
/// it stopped; a service's count is published once its walk is complete.
#[derive(Clone, Debug, Default)]
pub struct VirtsvcTables {
    maps: Vec<PortMap>,
    /// Per service: its ports in use as of its last complete walk (relaxed atomics, written
    /// only by the owning worker).
    used: Arc<Vec<AtomicU64>>,
    /// The walk in progress: the service, its next slot and its live connections so far.
    walk: (usize, usize, u64),
}

impl VirtsvcTables {
    /// Worker `worker` of `workers`' tables for `services` (all memory allocated here).
    pub fn new(services: &VirtualServices, worker: usize, workers: usize) -> Self {
        VirtsvcTables {
            maps: (0..services.len())
                .map(|_| PortMap::new(worker, workers))
                .collect(),
            used: Arc::new((0..services.len()).map(|_| AtomicU64::new(0)).collect()),
            walk: (0, 0, 0),
        }
    }

    /// Per service (in the services' order), the ports in use as of its last complete walk:
    /// the handle other threads read (telemetry, metrics).
    pub fn used_ports(&self) -> Arc<Vec<AtomicU64>> {
        Arc::clone(&self.used)
    }

    /// Walks up to `budget` slots on from where the last call stopped, counting the live
    /// connections at `now_ns` (`short_ns`: the timeout of a connection that is not established
    /// TCP), and publishes a service's count when its walk is complete.
    pub fn count_used(&mut self, now_ns: u64, short_ns: u64, budget: usize) {
        let mut budget = budget;
        while budget > 0 && !self.maps.is_empty() {
            let (service, first, live) = self.walk;
            let Some(map) = self.maps.get(service) else {
                self.walk = (0, 0, 0);
                continue;
            };
            let len = budget.min(map.capacity().saturating_sub(first));
            let live = live + map.live_in(first, len, now_ns, short_ns) as u64;
            budget -= len;
            if first + len >= map.capacity() {
                if let Some(u) = self.used.get(service) {
                    u.store(live, Ordering::Relaxed);
                }
                self.walk = ((service + 1) % self.maps.len(), 0, 0);
                if len == 0 {
                    // An empty map: nothing to walk, but do not loop on it for ever.
                    budget = budget.saturating_sub(1);
                }
            } else {
                self.walk = (service, first + len, live);
            }
        }
    }

    #[inline]
    pub fn get(&self, service: usize) -> Option<&PortMap> {
        self.maps.get(service)
    }

    #[inline]
    pub fn get_mut(&mut self, service: usize) -> Option<&mut PortMap> {
        self.maps.get_mut(service)
    }

    pub fn len(&self) -> usize {
        self.maps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(proto: IpProtocol, v4: [u8; 4], vport: u16, v6: &str, sport: u16) -> VirtualService {
        VirtualService {
            proto,
            virtual_addr: Ipv4Addr::from(v4),
            virtual_port: vport,
            service_addr: v6.parse().unwrap(),
            service_port: sport,
            underlay_addr: Ipv6Addr::UNSPECIFIED,
        }
    }

    #[test]
    fn underlay_address_is_dpservices() {
        let host: Ipv6Addr = "fc00:1::1".parse().unwrap();
        assert_eq!(
            virtsvc_underlay(host, 0),
            "fc00:1::d0ff:4000:0:0".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            virtsvc_underlay(host, 1),
            "fc00:1::d0ff:4000:100:0".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn lookups_find_each_service_and_nothing_else() {
        let mut list = vec![
            svc(IpProtocol::UDP, [1, 2, 3, 4], 5353, "2a00:da8:fff6::1", 53),
            svc(IpProtocol::TCP, [5, 6, 7, 8], 4443, "2a00:da8:fff6::2", 443),
            svc(IpProtocol::TCP, [1, 2, 3, 4], 5353, "2a00:da8:fff6::1", 53),
        ];
        let host: Ipv6Addr = "fc00:1::1".parse().unwrap();
        for (i, s) in list.iter_mut().enumerate() {
            s.underlay_addr = virtsvc_underlay(host, i as u32);
        }
        let all = VirtualServices::new(list.clone()).unwrap();
        for (i, s) in list.iter().enumerate() {
            assert_eq!(
                all.find_virtual(s.proto, s.virtual_addr, s.virtual_port),
                Some(i)
            );
            assert_eq!(
                all.find_service(s.proto, s.service_addr, s.service_port, s.underlay_addr),
                Some(i)
            );
            // Another service's underlay address, another port, another protocol: none.
            let other = virtsvc_underlay(host, 7);
            assert_eq!(
                all.find_service(s.proto, s.service_addr, s.service_port, other),
                None
            );
            assert_eq!(
                all.find_virtual(s.proto, s.virtual_addr, s.virtual_port + 1),
                None
            );
            assert_eq!(
                all.find_virtual(IpProtocol::ICMP, s.virtual_addr, s.virtual_port),
                None
            );
        }
        let mut dup = list.clone();
        dup.push(svc(IpProtocol::UDP, [1, 2, 3, 4], 5353, "2a00::9", 9));
        assert_eq!(
            VirtualServices::new(dup),
            Err(VirtsvcError::DuplicateVirtual(3))
        );
        let mut dup = list;
        dup.push(svc(
            IpProtocol::UDP,
            [9, 9, 9, 9],
            1,
            "2a00:da8:fff6::1",
            53,
        ));
        assert_eq!(
            VirtualServices::new(dup),
            Err(VirtsvcError::DuplicateService(3))
        );
        let icmp = vec![svc(IpProtocol::ICMP, [1, 1, 1, 1], 1, "::1", 1)];
        assert!(VirtualServices::new(icmp).is_err());
        let many: Vec<_> = (0..=VIRTSVC_MAX as u16)
            .map(|i| svc(IpProtocol::UDP, [10, 0, 0, 1], i + 1, "::1", i + 1))
            .collect();
        assert_eq!(VirtualServices::new(many), Err(VirtsvcError::TooMany));
    }

    #[test]
    fn tcp_state_follows_dpservice() {
        use VirtsvcTcpState::*;
        let s = Transient.next(TCP_SYN);
        assert_eq!(s, Syn);
        assert_eq!(s.next(TCP_SYN | TCP_ACK), SynAck);
        assert_eq!(SynAck.next(TCP_ACK), Established);
        // Flags beyond the exact ones do not advance (PSH+ACK after SYN-ACK).
        assert_eq!(SynAck.next(TCP_ACK | 0x08), SynAck);
        assert_eq!(Established.next(TCP_ACK | 0x08), Established);
        assert_eq!(Established.next(TCP_FIN | TCP_ACK), Transient);
        assert_eq!(Established.next(TCP_RST), Transient);
        assert_eq!(Transient.next(TCP_ACK), Transient);
    }

    const SHORT: u64 = 30_000_000_000;

    #[test]
    fn used_ports_are_counted_in_bounded_walks() {
        let list = vec![
            svc(IpProtocol::UDP, [1, 2, 3, 4], 53, "2a00::1", 53),
            svc(IpProtocol::TCP, [1, 2, 3, 4], 443, "2a00::2", 443),
        ];
        let services = VirtualServices::new(list).unwrap();
        let mut t = VirtsvcTables::new(&services, 0, 1);
        let used = t.used_ports();
        let a = Ipv4Addr::new(10, 0, 0, 1);
        for l4 in 0..3 {
            t.get_mut(0)
                .unwrap()
                .get_or_insert(2, a, 5000 + l4, 0, SHORT, false)
                .unwrap();
        }
        t.get_mut(1)
            .unwrap()
            .get_or_insert(2, a, 6000, 0, SHORT, false)
            .unwrap();
        // Half of the first service's slots: nothing published yet.
        t.count_used(1, SHORT, VIRTSVC_PORT_COUNT / 2);
        assert_eq!(used[0].load(Ordering::Relaxed), 0);
        t.count_used(1, SHORT, VIRTSVC_PORT_COUNT);
        assert_eq!(used[0].load(Ordering::Relaxed), 3);
        t.count_used(1, SHORT, VIRTSVC_PORT_COUNT);
        assert_eq!(used[1].load(Ordering::Relaxed), 1);
        // Timed out: no longer in use, though the slots still hold them (a walk started
        // before counts what it saw then: two complete walks of each).
        t.count_used(SHORT + 10, SHORT, 4 * VIRTSVC_PORT_COUNT);
        assert_eq!(used[0].load(Ordering::Relaxed), 0);
        assert_eq!(used[1].load(Ordering::Relaxed), 0);
        // No services: nothing to do, and no endless loop.
        let mut none = VirtsvcTables::default();
        none.count_used(0, SHORT, 100);
        assert!(none.used_ports().is_empty());
    }

    #[test]
    fn ports_are_incremental_and_an_endpoint_keeps_its_own() {
        let mut m = PortMap::new(0, 1);
        assert_eq!(m.capacity(), VIRTSVC_PORT_COUNT);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let s1 = m.get_or_insert(2, a, 5000, 0, SHORT, false).unwrap();
        assert_eq!(m.port_of(s1), 1025);
        let s2 = m.get_or_insert(2, a, 5001, 0, SHORT, false).unwrap();
        assert_eq!(m.port_of(s2), 1026);
        // The same endpoint again: the same port; another VM port with the same address and
        // L4 port is another endpoint.
        assert_eq!(m.get_or_insert(2, a, 5000, 5, SHORT, false), Ok(s1));
        let s3 = m.get_or_insert(3, a, 5000, 5, SHORT, false).unwrap();
        assert_eq!(m.port_of(s3), 1027);
        assert_eq!(m.slot_of(1027), Some(s3));
        assert_eq!(m.slot_of(1023), None);
        assert_eq!(m.port_of(m.capacity() - 1), 65535);
        assert_eq!(m.stats().created, 3);
    }

    #[test]
    fn exhaustion_refuses_until_a_connection_times_out() {
        let mut m = PortMap::new(0, 1);
        let n = m.capacity();
        for i in 0..n {
            let addr = Ipv4Addr::from(0x0a00_0000 + (i as u32 >> 16));
            m.get_or_insert(2, addr, i as u16, 1_000, SHORT, false)
                .unwrap();
        }
        assert_eq!(m.live(1_000, SHORT), n);
        let new = Ipv4Addr::new(10, 9, 9, 9);
        assert_eq!(
            m.get_or_insert(2, new, 1, 2_000, SHORT, false),
            Err(PortMapError::Exhausted)
        );
        // Refused cheaply while nothing can have expired.
        assert_eq!(
            m.get_or_insert(2, new, 1, 3_000, SHORT, false),
            Err(PortMapError::Exhausted)
        );
        assert_eq!(m.stats().exhausted, 2);
        // Keep one connection alive; at the timeout the others free up.
        let keep = m.find(2, Ipv4Addr::from(0x0a00_0000), 1025).unwrap();
        m.conn_mut(keep).unwrap().last_ns = SHORT;
        let later = 1_000 + SHORT + 1;
        let s = m.get_or_insert(2, new, 1, later, SHORT, false).unwrap();
        assert_ne!(s, keep);
        assert_eq!(m.stats().reused, 1);
        // The endpoint whose port was taken lost its mapping; the new one has it.
        assert_eq!(m.find(2, new, 1), Some(s));
        let kept = (0..n)
            .filter(|&i| {
                let addr = Ipv4Addr::from(0x0a00_0000 + (i as u32 >> 16));
                m.find(2, addr, i as u16).is_some()
            })
            .count();
        assert_eq!(kept, n - 1);
        // An established connection outlives the short timeout.
        m.conn_mut(keep).unwrap().state = VirtsvcTcpState::Established;
        assert!(m.conn(keep).unwrap().is_live(SHORT * 10, SHORT));
    }

    #[test]
    fn workers_own_disjoint_port_shares() {
        for workers in 1..=5 {
            let mut seen = vec![false; 65536];
            for w in 0..workers {
                let m = PortMap::new(w, workers);
                for s in 0..m.capacity() {
                    let p = m.port_of(s);
                    assert_eq!(usize::from(p) % workers, w);
                    assert!(p >= 1024 && !seen[usize::from(p)]);
                    seen[usize::from(p)] = true;
                    assert_eq!(m.slot_of(p), Some(s));
                }
            }
            assert_eq!(seen.iter().filter(|&&s| s).count(), VIRTSVC_PORT_COUNT);
        }
    }

    #[test]
    fn release_and_reinsert_keep_the_index_consistent() {
        let mut m = PortMap::new(0, 1);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let slots: Vec<_> = (0..2000u16)
            .map(|p| m.get_or_insert(2, a, p, 0, SHORT, false).unwrap())
            .collect();
        for (p, &s) in slots.iter().enumerate().step_by(3) {
            m.release(s);
            assert_eq!(m.find(2, a, p as u16), None);
        }
        for (p, &s) in slots.iter().enumerate() {
            let found = m.find(2, a, p as u16);
            if p % 3 == 0 {
                assert_eq!(found, None);
            } else {
                assert_eq!(found, Some(s));
            }
        }
    }
}
