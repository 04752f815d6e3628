//! The connection-tracking table of one worker: flows keyed on (VNI, 5-tuple), each findable from
//! both directions with one lookup.
//!
//! A flow holds two keys, as dpservice's `flow_value` does: the *original* one (the first
//! packet's addresses, protocol and ports) and the *reply* one (what a reply looks like when it
//! arrives — the original reversed, or, for a translated flow, the reversed translation: the
//! NAT address and port instead of the VM's). Both keys are in the index, so a packet of either
//! direction finds its flow and learns the direction.
//!
//! # Layout (why not a `HashMap`)
//!
//! * The **flows** are a slab sized once (`Vec::with_capacity`; the memory is only touched as
//!   flows are made), indexed by [`FlowId`], with a free list.
//! * The **index** is open addressing with linear probing over 8-byte slots — a 32-bit hash tag
//!   and the flow id with the direction — at most half full (two keys per flow). Deletion shifts
//!   the following slots back (no tombstones), so the table never needs a rehash: a general hash
//!   map's tombstone clean-up is a stall of the worker proportional to the table, and growing it
//!   would allocate on the packet path. Probing 8-byte slots touches one cache line for several
//!   candidates; the key itself is compared in the flow, which the caller reads anyway.
//! * The index is placed by a **keyed hash** ([`FlowTable::hash`]): every table draws its own
//!   random seeds, so a VM cannot choose 5-tuples that pile up in one probe sequence (with
//!   fixed seeds, which anyone can read here, a few thousand such flows would make every lookup
//!   near them walk thousands of slots). [`ConnKey::hash`] stays fixed: it is what the same
//!   flow must hash to on every host (Maglev, the first NAT port candidate).
//! * [`FlowTable::prefetch`] lets a node start the index and flow loads of a whole batch before
//!   it looks any of them up (a lookup in a table of a million flows misses every cache).
//!
//! A full table refuses a new flow ([`FlowTable::insert`] → [`Full`]); it never evicts a live
//! one. Expired flows are reclaimed by [`FlowTable::sweep`], a bounded scan per call.
//!
//! # NAT ports in use
//!
//! The table counts, per VM port, its live flows that hold a NAT port ([`Flow::holds_nat_port`]:
//! translation `SnatNat` or `Nat64`, counted for the flow's source port `ports[0]`) — what the
//! telemetry and metrics report as an interface's used NAT ports. [`FlowTable::insert`] and
//! [`FlowTable::remove`] are the only places flows come and go (close, sweep and clear go
//! through remove), so the count is kept there: it reads the stored flow on removal, and a
//! flow's translation and source port are never changed once it is inserted (conntrack and the
//! load balancer set them before the insert; after it only the TCP state, expiry, firewall
//! verdict and balancer stamp change).

use dp_packet::{FlowKey, IpProtocol};

use crate::{PortId, Vni};

/// The most flows a table may hold (the index is sized for twice as many keys at half load).
pub const MAX_FLOW_CAPACITY: usize = 1 << 28;

/// VM ports whose NAT ports in use a table counts (ports `0..NAT_COUNTED_PORTS`; the daemon
/// has far fewer: at most 256 VFs and two uplinks).
pub const NAT_COUNTED_PORTS: usize = 1024;

/// What identifies one direction of a flow: the VNI and the 5-tuple (IPv4 addresses in the low
/// 32 bits, as in [`FlowKey`]; ICMP echo: the identifier in both ports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src: u128,
    pub dst: u128,
    pub vni: Vni,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: IpProtocol,
    pub is_v6: bool,
}

/// The seeds of a [`ConnKey`] hash ([`ConnKey::hash_with`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashSeeds {
    a: u64,
    b: u64,
    /// Odd: the last multiplier.
    c: u64,
}

impl HashSeeds {
    /// The seeds of [`ConnKey::hash`]: arbitrary odd constants, the same in every process.
    pub const FIXED: HashSeeds = HashSeeds {
        a: 0x9e37_79b9_7f4a_7c15,
        b: 0xc2b2_ae3d_27d4_eb4f,
        c: 0x1656_67b1_9e37_79f9,
    };

    /// Seeds no one outside this process can know (from the standard library's per-process
    /// random hasher keys; every call gives others).
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let word = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.finish()
        };
        HashSeeds {
            a: word(1),
            b: word(2),
            c: word(3) | 1,
        }
    }
}

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn fold(a: u128) -> u64 {
    ((a >> 64) as u64) ^ (a as u64)
}

impl ConnKey {
    /// The key of a packet with flow key `key` in `vni`.
    #[inline]
    pub fn new(vni: Vni, key: &FlowKey) -> Self {
        ConnKey {
            src: key.src,
            dst: key.dst,
            vni,
            src_port: key.src_port,
            dst_port: key.dst_port,
            proto: key.proto,
            is_v6: key.is_v6,
        }
    }

    /// Reads the key of the validated IP packet `l3` (cut to its length) in `vni` into `self`
    /// and returns its [`hash`](ConnKey::hash): the same key as
    /// `ConnKey::new(vni, &FlowKey::of_header(l3))` (a test checks it on random headers),
    /// written in place. The conntrack node's hot path: building the `FlowKey` and converting
    /// it, returned by value, cost 123 instructions per packet in callgrind.
    #[inline(always)]
    pub fn read_into(&mut self, vni: Vni, l3: &[u8], seeds: &HashSeeds) -> u64 {
        let (src, dst, proto, is_v6, l4, ports_allowed) = match l3.first().map(|b| b >> 4) {
            Some(6) => {
                let Some(h) = l3.first_chunk::<40>() else {
                    *self = ConnKey::new(vni, &FlowKey::default());
                    return self.hash_with(seeds);
                };
                let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
                let l4 = l3.get(40..40 + payload).unwrap_or_default();
                let mut a = [0u8; 16];
                a.copy_from_slice(&h[8..24]);
                let mut b = [0u8; 16];
                b.copy_from_slice(&h[24..40]);
                (
                    u128::from_be_bytes(a),
                    u128::from_be_bytes(b),
                    h[6],
                    true,
                    l4,
                    true,
                )
            }
            _ => {
                let Some(h) = l3.first_chunk::<20>() else {
                    *self = ConnKey::new(vni, &FlowKey::default());
                    return self.hash_with(seeds);
                };
                let header_len = usize::from(h[0] & 0x0f) * 4;
                let total_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
                let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
                let l4 = l3.get(header_len..total_len).unwrap_or_default();
                let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
                let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
                (u128::from(src), u128::from(dst), h[9], false, l4, !fragment)
            }
        };
        let proto = IpProtocol(proto);
        let (src_port, dst_port) = if !ports_allowed {
            (0, 0)
        } else if dp_packet::flow::has_ports(proto) {
            match l4.first_chunk::<4>() {
                Some(w) => (
                    u16::from_be_bytes([w[0], w[1]]),
                    u16::from_be_bytes([w[2], w[3]]),
                ),
                None => (0, 0),
            }
        } else {
            let (icmp, echo) = if is_v6 {
                (IpProtocol::ICMPV6, [128, 129])
            } else {
                (IpProtocol::ICMP, [8, 0])
            };
            match l4.first_chunk::<6>() {
                Some(m) if proto == icmp && echo.contains(&m[0]) => {
                    let id = u16::from_be_bytes([m[4], m[5]]);
                    (id, id)
                }
                _ => (0, 0),
            }
        };
        *self = ConnKey {
            src,
            dst,
            vni,
            src_port,
            dst_port,
            proto,
            is_v6,
        };
        self.hash_with(seeds)
    }

    /// The same flow seen from the other end.
    #[inline]
    pub fn reversed(&self) -> Self {
        ConnKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The flow key part (without the VNI).
    #[inline]
    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            is_v6: self.is_v6,
            src_port: self.src_port,
            dst_port: self.dst_port,
        }
    }

    /// The key's hash with the [fixed seeds](HashSeeds::FIXED): the same for a flow on every
    /// host and in every process (a flow table places keys by its own seeds instead:
    /// [`FlowTable::hash`]).
    #[inline]
    pub fn hash(&self) -> u64 {
        self.hash_with(&HashSeeds::FIXED)
    }

    /// The key's hash with `seeds`: every field counts (ICMP identifiers included, unlike the
    /// uplink hash). Two folded multiplies for the addresses, one for the rest.
    #[inline(always)]
    pub fn hash_with(&self, seeds: &HashSeeds) -> u64 {
        let addrs = fold_mul(fold(self.src) ^ seeds.a, fold(self.dst) ^ seeds.b);
        let rest = (u64::from(self.vni) << 32)
            | (u64::from(self.src_port) << 16)
            | u64::from(self.dst_port);
        let proto = (u64::from(self.proto.0) << 1) | u64::from(self.is_v6);
        fold_mul(addrs ^ rest, seeds.c ^ (proto << 56))
    }
}

/// Which of its two keys a packet matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// The direction of the packet that made the flow.
    Original = 0,
    /// The other one.
    Reply = 1,
}

impl Direction {
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A flow's index in its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub u32);

/// TCP connection state, as far as a middlebox can tell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    /// Not TCP, or TCP picked up without a handshake seen.
    #[default]
    None,
    /// The original direction sent SYN.
    SynSent,
    /// The reply direction answered SYN-ACK.
    SynReceived,
    /// The handshake completed (or data flowed both ways).
    Established,
    /// One side sent FIN.
    FinWait,
    /// Both sides sent FIN, or a RST was seen: the flow lingers briefly for stray segments.
    Closed,
}

/// The TCP flags the state machine looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpState {
    /// The state after a segment with `flags` in direction `dir`.
    #[must_use]
    pub fn next(self, dir: Direction, flags: TcpSegment) -> TcpState {
        use TcpState::*;
        if flags.rst {
            return Closed;
        }
        match (self, dir) {
            // A new handshake on the tuple of a closed connection (the port reused while the
            // flow lingers) opens it again, as dpservice's RST_FIN state does on a lone SYN;
            // left Closed, the new connection would age out after tcp_closed_ns.
            (Closed, Direction::Original) if flags.syn && !flags.ack && !flags.fin => SynSent,
            (Closed, _) => Closed,
            (_, _) if flags.fin => match self {
                FinWait => Closed,
                _ => FinWait,
            },
            (None, Direction::Original) if flags.syn && !flags.ack => SynSent,
            (SynSent, Direction::Reply) if flags.syn && flags.ack => SynReceived,
            (SynReceived, Direction::Original) if flags.ack && !flags.syn => Established,
            // A picked-up flow (no handshake seen) is established once the reply flows.
            (None, Direction::Reply) => Established,
            (s, _) => s,
        }
    }
}

/// How long a flow lives without packets, per state (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Every flow but an established TCP one (dpservice's `--flow-timeout`, 30 s).
    pub default_ns: u64,
    /// Established TCP (dpservice: 24 h).
    pub tcp_established_ns: u64,
    /// TCP after RST or both FINs (at most `default_ns`).
    pub tcp_closed_ns: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::with_default_secs(30)
    }
}

impl Timeouts {
    /// dpservice's timeouts with `--flow-timeout` = `secs`.
    pub fn with_default_secs(secs: u64) -> Self {
        let default_ns = secs.saturating_mul(1_000_000_000);
        Timeouts {
            default_ns,
            tcp_established_ns: 24 * 3600 * 1_000_000_000,
            tcp_closed_ns: default_ns.min(10_000_000_000),
        }
    }

    /// The timeout of a flow of protocol `proto` in TCP state `state`.
    #[inline]
    pub fn of(&self, proto: IpProtocol, state: TcpState) -> u64 {
        if proto != IpProtocol::TCP {
            return self.default_ns;
        }
        match state {
            TcpState::Established => self.tcp_established_ns,
            TcpState::Closed => self.tcp_closed_ns,
            _ => self.default_ns,
        }
    }
}

/// No port number: the flow's end is not a VM on this host.
pub const NO_PORT: PortId = PortId::MAX;

/// The firewall generation after `generation`: never `u32::MAX`, the verdict of a flow not
/// yet decided.
pub fn next_firewall_generation(generation: u32) -> u32 {
    match generation.wrapping_add(1) {
        u32::MAX => 0,
        next => next,
    }
}

/// The firewall's decision for a flow, made once and kept.
///
/// Packed (5 bytes): with the flow's expiry, TCP state and translation it shares the cache
/// line of the original key (see [`Flow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct FirewallVerdict {
    /// The snapshot's firewall generation the decision was made under (`u32::MAX`: never
    /// decided; see `Snapshot::firewall_generation`).
    pub generation: u32,
    /// Whether the flow may pass (both directions).
    pub accept: bool,
}

impl FirewallVerdict {
    /// A verdict no snapshot's firewall generation equals: the flow still has to be decided.
    pub const UNDECIDED: FirewallVerdict = FirewallVerdict {
        generation: u32::MAX,
        accept: false,
    };

    /// Whether the firewall has decided the flow (under some generation).
    pub fn is_decided(&self) -> bool {
        self.generation != u32::MAX
    }
}

/// What kind of translation a flow has (the keys say what exactly).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Translation {
    #[default]
    None,
    /// Source NAT by the interface's VIP (address only).
    SnatVip,
    /// Source NAT by the interface's NAT (address and port).
    SnatNat,
    /// Destination NAT of a VIP to its interface.
    DnatVip,
    /// IPv6 to IPv4 through the interface's NAT (NAT64).
    Nat64,
    /// Sent on to a load balancer's target, whose underlay address the reply key holds
    /// ([`crate::lb::lb_reply_key`]); the packet itself is not changed.
    Lb,
}

/// One tracked connection: exactly two cache lines (laid out in this order and aligned to 64
/// bytes). The first holds all that a packet of the original direction of an untranslated
/// flow reads — its key, the expiry, the firewall's verdict, the TCP state and the
/// translation — so that such a lookup loads one line; the reply key and the rest are on the
/// second, loaded for replies and translated flows (the index slot says which,
/// [`FlowTable::prefetch_flow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Flow {
    /// The key of the packet that made the flow.
    pub original: ConnKey,
    /// When the flow expires unless a packet refreshes it (worker clock, ns).
    pub expires_ns: u64,
    pub firewall: FirewallVerdict,
    pub tcp: TcpState,
    pub translation: Translation,
    /// Whether the slot holds a flow.
    pub live: bool,
    /// The key replies carry (the original reversed, unless the flow is translated).
    pub reply: ConnKey,
    /// The VM ports at its ends as the original packet saw them: `[source, destination]`
    /// ([`NO_PORT`] for an end beyond the underlay).
    pub ports: [PortId; 2],
    /// A load-balanced flow: the low bits of the snapshot's `lb_generation` when its target was
    /// last confirmed.
    pub lb_stamp: u8,
}

impl Flow {
    /// A new flow from `original` to `reply`, expiring at `expires_ns`.
    pub fn new(original: ConnKey, reply: ConnKey, expires_ns: u64) -> Self {
        Flow {
            original,
            reply,
            expires_ns,
            live: true,
            ports: [NO_PORT; 2],
            ..Flow::default()
        }
    }

    #[inline]
    pub fn key(&self, dir: Direction) -> &ConnKey {
        match dir {
            Direction::Original => &self.original,
            Direction::Reply => &self.reply,
        }
    }

    /// Whether the reply key is the original reversed (no translation of the 5-tuple).
    #[inline]
    pub fn is_translated(&self) -> bool {
        self.reply != self.original.reversed()
    }

    /// Whether the flow holds a NAT port of its source interface (NAT or NAT64).
    #[inline]
    pub fn holds_nat_port(&self) -> bool {
        matches!(self.translation, Translation::SnatNat | Translation::Nat64)
    }
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Flow>() == 128);
    // What an original-direction lookup of an untranslated flow reads is on the first line.
    assert!(offset_of!(Flow, live) < 64);
    assert!(offset_of!(Flow, reply) == 64);
};

/// The table is full: the new flow is refused (a counted drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Why a flow could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// Every flow slot is in use.
    Full,
    /// One of the keys belongs to another flow already.
    KeyInUse,
}

/// Counters of a table (monotonic, except `live`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub live: u64,
    pub created: u64,
    pub expired: u64,
    /// Removed before expiry (closed by a control-plane change, or by the caller).
    pub removed: u64,
    pub refused_full: u64,
}

/// A slot of the index: `tag << 32 | (flow id + 1) << 2 | wide << 1 | direction`; 0 is
/// empty. Flow ids stay below [`MAX_FLOW_CAPACITY`] (2^28), so they fit in the 30 bits.
type Slot = u64;

#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// An index slot for flow `id`'s key in direction `dir`; `wide`: a lookup of this key reads
/// the flow's second line too (a reply, or a translated flow).
#[inline(always)]
fn slot(tag: u32, id: u32, dir: Direction, wide: bool) -> Slot {
    (u64::from(tag) << 32) | (u64::from(id + 1) << 2) | (u64::from(wide) << 1) | dir as u64
}

#[inline(always)]
fn slot_flow(s: Slot) -> (u32, Direction) {
    let low = s as u32;
    let dir = if low & 1 == 0 {
        Direction::Original
    } else {
        Direction::Reply
    };
    ((low >> 2).wrapping_sub(1), dir)
}

/// Whether a lookup through slot `s` reads its flow's second line.
#[inline(always)]
fn slot_is_wide(s: Slot) -> bool {
    s & 2 != 0
}

/// What one index slot holds for a probed key.
enum Probe {
    Found((FlowId, Direction)),
    /// The end of the probe: the key is not in the table.
    Empty,
    /// Another key: probe on.
    Other,
}

/// One worker's flows; see the module docs.
#[derive(Debug)]
pub struct FlowTable {
    index: Vec<Slot>,
    /// `index.len() - 1` (a power of two minus one).
    mask: usize,
    flows: Vec<Flow>,
    free: Vec<u32>,
    capacity: usize,
    /// Where the next [`FlowTable::sweep`] starts.
    cursor: usize,
    stats: FlowStats,
    /// Per VM port: its live flows holding a NAT port (see the module docs).
    nat_ports: Box<[u32]>,
    /// Where keys go in the index (see the module docs).
    seeds: HashSeeds,
}

impl FlowTable {
    /// A table for up to `capacity` flows (at least 1, at most [`MAX_FLOW_CAPACITY`]), its
    /// keys placed by [random seeds](HashSeeds::random).
    pub fn new(capacity: usize) -> Self {
        Self::with_seeds(capacity, HashSeeds::random())
    }

    /// [`FlowTable::new`] with given seeds (tests that need one layout).
    pub fn with_seeds(capacity: usize, seeds: HashSeeds) -> Self {
        let capacity = capacity.clamp(1, MAX_FLOW_CAPACITY);
        // Two keys per flow at no more than half load.
        let slots = (capacity * 4).next_power_of_two();
        FlowTable {
            index: vec![0; slots],
            mask: slots - 1,
            flows: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
            cursor: 0,
            stats: FlowStats::default(),
            nat_ports: vec![0; NAT_COUNTED_PORTS].into_boxed_slice(),
            seeds,
        }
    }

    /// The seeds this table places keys by (for [`ConnKey::read_into`]).
    #[inline(always)]
    pub fn seeds(&self) -> &HashSeeds {
        &self.seeds
    }

    /// The hash by which this table places and finds `key` (what [`FlowTable::find`] and the
    /// prefetches take).
    #[inline(always)]
    pub fn hash(&self, key: &ConnKey) -> u64 {
        key.hash_with(&self.seeds)
    }

    /// Per VM port (index: its [`PortId`], up to [`NAT_COUNTED_PORTS`]): the live flows that
    /// hold one of its NAT ports.
    pub fn nat_ports_in_use(&self) -> &[u32] {
        &self.nat_ports
    }

    /// Counts a flow holding a NAT port in (`add`) or out.
    #[inline]
    fn count_nat_port(&mut self, flow: &Flow, add: bool) {
        if !flow.holds_nat_port() {
            return;
        }
        if let Some(c) = self.nat_ports.get_mut(usize::from(flow.ports[0])) {
            *c = if add { *c + 1 } else { c.saturating_sub(1) };
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.stats.live as usize
    }

    pub fn is_empty(&self) -> bool {
        self.stats.live == 0
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Starts loading what a lookup of `hash` will read (its index slot), so that a batch's
    /// lookups overlap their cache misses.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        let home = tag_of(hash) as usize & self.mask;
        if let Some(s) = self.index.get(home) {
            prefetch_read(s);
        }
    }

    /// Starts loading the flow a lookup of `hash` will most likely find (the first slot of its
    /// probe with the hash's tag), once its index slot is in cache.
    ///
    /// The probe is followed past a slot of another key: at `dpservice-bench`'s load (a fifth
    /// to a quarter of the slots), prefetching whatever the home slot holds missed the flow of
    /// 9.5 % of the lookups, looking at the tag misses 1.7 % (the test
    /// `the_flow_prefetched_is_the_flow_found`), for 7 instructions per packet.
    #[inline(always)]
    pub fn prefetch_flow(&self, hash: u64) {
        if let Some((f, wide)) = self.flow_to_prefetch(hash) {
            prefetch_read(f);
            if wide {
                // The reply key and what translated flows need are on the second line.
                prefetch_read(&f.reply);
            }
        }
    }

    /// The flow [`FlowTable::prefetch_flow`] loads for `hash`: the flow of the home slot if
    /// it has the hash's tag, else of the next slot (a longer probe is rare at the index's
    /// load).
    #[inline(always)]
    fn flow_to_prefetch(&self, hash: u64) -> Option<(&Flow, bool)> {
        let tag = tag_of(hash);
        let home = tag as usize & self.mask;
        let first = *self.index.get(home)?;
        let s = if first == 0 || (first >> 32) as u32 == tag {
            first
        } else {
            self.index.get((home + 1) & self.mask).copied().unwrap_or(0)
        };
        if s == 0 {
            return None;
        }
        let flow = self.flows.get(slot_flow(s).0 as usize)?;
        Some((flow, slot_is_wide(s)))
    }

    /// The flow `key` (with `hash` = [`self.hash(key)`](FlowTable::hash)) belongs to, and the
    /// direction it matched.
    ///
    /// The first slot of the probe is looked at inline, the rest out of line: most lookups
    /// end there (an empty slot or the key), and a loop here made the compiler hoist the key's
    /// fields into stack slots before it (22 instructions per lookup in callgrind).
    #[inline]
    pub fn find(&self, key: &ConnKey, hash: u64) -> Option<(FlowId, Direction)> {
        let tag = tag_of(hash);
        let home = tag as usize & self.mask;
        match self.probe(key, tag, home) {
            Probe::Found(found) => Some(found),
            Probe::Empty => None,
            Probe::Other => self.find_further(key, tag, home),
        }
    }

    /// [`FlowTable::find`] past the first slot of the probe.
    #[inline(never)]
    fn find_further(&self, key: &ConnKey, tag: u32, home: usize) -> Option<(FlowId, Direction)> {
        let mut i = home;
        // At most half full: an empty slot is always reached; the bound is a guard.
        for _ in 0..self.mask {
            i = (i + 1) & self.mask;
            match self.probe(key, tag, i) {
                Probe::Found(found) => return Some(found),
                Probe::Empty => return None,
                Probe::Other => {}
            }
        }
        None
    }

    /// What index slot `i` holds for `key` (hash tag `tag`).
    #[inline(always)]
    fn probe(&self, key: &ConnKey, tag: u32, i: usize) -> Probe {
        let Some(&s) = self.index.get(i) else {
            return Probe::Empty;
        };
        if s == 0 {
            return Probe::Empty;
        }
        if (s >> 32) as u32 == tag {
            let (id, dir) = slot_flow(s);
            if self
                .flows
                .get(id as usize)
                .is_some_and(|f| f.key(dir) == key)
            {
                return Probe::Found((FlowId(id), dir));
            }
        }
        Probe::Other
    }

    /// [`FlowTable::find`], with the flow to update.
    #[inline]
    pub fn find_mut(&mut self, key: &ConnKey, hash: u64) -> Option<(FlowId, Direction, &mut Flow)> {
        let (id, dir) = self.find(key, hash)?;
        let flow = self.flows.get_mut(id.0 as usize)?;
        Some((id, dir, flow))
    }

    /// Whether some flow has `key`.
    #[inline]
    pub fn contains(&self, key: &ConnKey) -> bool {
        self.find(key, self.hash(key)).is_some()
    }

    #[inline]
    pub fn get(&self, id: FlowId) -> Option<&Flow> {
        self.flows.get(id.0 as usize).filter(|f| f.live)
    }

    #[inline]
    pub fn get_mut(&mut self, id: FlowId) -> Option<&mut Flow> {
        self.flows.get_mut(id.0 as usize).filter(|f| f.live)
    }

    /// Makes `flow` findable by both its keys (one, if the reply key is the original itself).
    pub fn insert(&mut self, flow: Flow) -> Result<FlowId, InsertError> {
        if self.len() >= self.capacity {
            self.stats.refused_full += 1;
            return Err(InsertError::Full);
        }
        let (orig, reply) = (flow.original, flow.reply);
        let (h0, h1) = (self.hash(&orig), self.hash(&reply));
        if self.find(&orig, h0).is_some() || self.find(&reply, h1).is_some() {
            return Err(InsertError::KeyInUse);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = self.flows.len() as u32;
                // Within the capacity reserved at construction: never reallocates.
                self.flows.push(Flow::default());
                id
            }
        };
        let Some(entry) = self.flows.get_mut(id as usize) else {
            return Err(InsertError::Full);
        };
        *entry = Flow { live: true, ..flow };
        let translated = flow.translation != Translation::None || flow.is_translated();
        self.place(slot(tag_of(h0), id, Direction::Original, translated));
        if reply != orig {
            self.place(slot(tag_of(h1), id, Direction::Reply, true));
        }
        self.stats.live += 1;
        self.stats.created += 1;
        self.count_nat_port(&flow, true);
        Ok(FlowId(id))
    }

    /// Puts a slot at the first empty place of its probe sequence.
    fn place(&mut self, s: Slot) {
        let mut i = (s >> 32) as usize & self.mask;
        for _ in 0..=self.mask {
            match self.index.get_mut(i) {
                Some(cell) if *cell == 0 => {
                    *cell = s;
                    return;
                }
                Some(_) => i = (i + 1) & self.mask,
                None => return,
            }
        }
    }

    /// Removes the index slot of `key` that points at flow `id`, shifting later slots back.
    fn unplace(&mut self, key: &ConnKey, id: u32) {
        let tag = tag_of(self.hash(key));
        let mut i = tag as usize & self.mask;
        let mut found = None;
        for _ in 0..=self.mask {
            let s = self.index.get(i).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            if (s >> 32) as u32 == tag && slot_flow(s).0 == id {
                found = Some(i);
                break;
            }
            i = (i + 1) & self.mask;
        }
        let Some(mut hole) = found else { return };
        // Backward-shift deletion: move every later slot of the cluster that may live in the
        // hole (its home is not cyclically inside (hole, j]) into it.
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index.get(j).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & self.mask;
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                if let Some(cell) = self.index.get_mut(hole) {
                    *cell = s;
                }
                hole = j;
            }
        }
        if let Some(cell) = self.index.get_mut(hole) {
            *cell = 0;
        }
    }

    /// Removes a flow (both keys); returns it.
    pub fn remove(&mut self, id: FlowId) -> Option<Flow> {
        let flow = *self.get(id)?;
        self.unplace(&flow.original, id.0);
        if flow.reply != flow.original {
            self.unplace(&flow.reply, id.0);
        }
        if let Some(f) = self.flows.get_mut(id.0 as usize) {
            f.live = false;
        }
        self.free.push(id.0);
        self.stats.live = self.stats.live.saturating_sub(1);
        self.count_nat_port(&flow, false);
        Some(flow)
    }

    /// Closes a flow before it expires (counted as removed).
    pub fn close(&mut self, id: FlowId) -> Option<Flow> {
        let flow = self.remove(id)?;
        self.stats.removed += 1;
        Some(flow)
    }

    /// Looks at up to `budget` flow slots from where the last sweep stopped and removes the
    /// flows that expired by `now_ns` or that `is_stale` condemns; returns how many it removed.
    /// Bounded work per call: a full pass over a table of `n` slots takes `n / budget` calls.
    pub fn sweep(
        &mut self,
        now_ns: u64,
        budget: usize,
        mut is_stale: impl FnMut(&Flow) -> bool,
    ) -> usize {
        let n = self.flows.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            if self.cursor >= n {
                self.cursor = 0;
            }
            let id = self.cursor as u32;
            self.cursor += 1;
            let Some(flow) = self.flows.get(id as usize) else {
                continue;
            };
            if !flow.live {
                continue;
            }
            if flow.expires_ns <= now_ns {
                self.remove(FlowId(id));
                self.stats.expired += 1;
                removed += 1;
            } else if is_stale(flow) {
                self.close(FlowId(id));
                removed += 1;
            }
        }
        removed
    }

    /// How many slots the table has (live or free): [`FlowTable::live_from`]'s range.
    pub fn slot_count(&self) -> usize {
        self.flows.len()
    }

    /// The live flows in slots `from..`, in slot order (diagnostics: a dump in bounded steps).
    pub fn live_from(&self, from: usize) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.flows
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, f)| f.live)
            .map(|(i, f)| (FlowId(i as u32), f))
    }

    /// Every live flow (tests, diagnostics).
    pub fn iter(&self) -> impl Iterator<Item = (FlowId, &Flow)> {
        self.flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.live)
            .map(|(i, f)| (FlowId(i as u32), f))
    }

    /// Removes every flow.
    pub fn clear(&mut self) {
        let ids: Vec<u32> = self.iter().map(|(id, _)| id.0).collect();
        for id in ids {
            self.close(FlowId(id));
        }
    }
}

/// A hint to start loading `value`'s cache line; no effect on other targets.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_read<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint: it never faults, reads nothing into the program and
        // writes nothing; the pointer comes from a reference anyway. SSE is baseline on x86_64.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> ConnKey {
        ConnKey {
            src: u128::from(0x0a00_0000 | i),
            dst: u128::from(0x0a01_0000u32),
            vni: 100,
            src_port: (i % 50_000) as u16 + 1024,
            dst_port: 80,
            proto: IpProtocol::TCP,
            is_v6: false,
        }
    }

    /// `read_into` is `FlowKey::of_header` then `new`, on random headers of every kind.
    #[test]
    fn reading_in_place_gives_the_flow_keys_key() {
        let mut x: u64 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let v6 = round % 3 == 0;
            let len = if v6 {
                40 + (next() % 24) as usize
            } else {
                20 + (next() % 24) as usize
            };
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if v6 {
                p[0] = 0x60;
                let payload = (len - 40) as u16;
                p[4..6].copy_from_slice(&payload.to_be_bytes());
                p[6] = [6, 17, 58, 132, 44, 1][(next() % 6) as usize];
                if let Some(t) = p.get_mut(40) {
                    *t = [128, 129, 1, 0][(next() % 4) as usize];
                }
            } else {
                p[0] = 0x45;
                p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                p[9] = [6, 17, 1, 136, 47][(next() % 5) as usize];
                if next() % 2 == 0 {
                    p[6] = 0;
                    p[7] = 0;
                }
                if let Some(t) = p.get_mut(20) {
                    *t = [8, 0, 3, 11][(next() % 4) as usize];
                }
            }
            let mut k = ConnKey::default();
            let seeds = HashSeeds::random();
            let h = k.read_into(77, &p, &seeds);
            let want = ConnKey::new(77, &FlowKey::of_header(&p));
            assert_eq!(k, want, "header {p:02x?}");
            assert_eq!(h, want.hash_with(&seeds));
        }
    }

    #[test]
    fn nat_ports_in_use_follow_inserts_and_removals() {
        let mut t = FlowTable::new(16);
        let nat = |i: u32, port: PortId, translation: Translation| {
            let k = key(i);
            let mut reply = k.reversed();
            reply.dst = 0x0505_0505;
            reply.dst_port = 1000 + i as u16;
            let mut f = Flow::new(k, reply, 10);
            f.translation = translation;
            f.ports[0] = port;
            f
        };
        let a = t.insert(nat(1, 3, Translation::SnatNat)).unwrap();
        let b = t.insert(nat(2, 3, Translation::Nat64)).unwrap();
        t.insert(nat(3, 4, Translation::SnatNat)).unwrap();
        // Not holding a NAT port: a VIP's flow, a plain one.
        t.insert(nat(4, 3, Translation::SnatVip)).unwrap();
        t.insert(Flow::new(key(5), key(5).reversed(), 10)).unwrap();
        assert_eq!(t.nat_ports_in_use()[3], 2);
        assert_eq!(t.nat_ports_in_use()[4], 1);
        t.close(a).unwrap();
        assert_eq!(t.nat_ports_in_use()[3], 1);
        // Removing twice counts once.
        assert!(t.remove(a).is_none());
        assert_eq!(t.nat_ports_in_use()[3], 1);
        t.remove(b).unwrap();
        assert_eq!(t.nat_ports_in_use()[3], 0);
        // Expiry (the sweep) and clear go through remove too.
        t.sweep(100, 16, |_| false);
        assert_eq!(t.nat_ports_in_use()[4], 0);
        t.insert(nat(6, 4, Translation::SnatNat)).unwrap();
        t.clear();
        assert!(t.nat_ports_in_use().iter().all(|&n| n == 0));
    }

    #[test]
    fn both_directions_find_the_flow() {
        let mut t = FlowTable::new(16);
        let k = key(1);
        let id = t.insert(Flow::new(k, k.reversed(), 100)).unwrap();
        assert_eq!(t.find(&k, t.hash(&k)), Some((id, Direction::Original)));
        let r = k.reversed();
        assert_eq!(t.find(&r, t.hash(&r)), Some((id, Direction::Reply)));
        let mut other = k;
        other.vni = 101;
        assert_eq!(
            t.find(&other, t.hash(&other)),
            None,
            "the VNI is part of the key"
        );
        assert_eq!(t.len(), 1);
        assert!(!t.get(id).unwrap().is_translated());
    }

    #[test]
    fn the_flow_prefetched_is_the_flow_found() {
        // dpservice-bench's load: a table of twice the flows, both keys of each in the index
        // (a quarter of the slots in use).
        let flows = 50_000;
        let mut t = FlowTable::new(flows * 2);
        let keys: Vec<ConnKey> = (0..flows as u32)
            .map(|i| ConnKey {
                src: 0x0a00_0001,
                dst: u128::from(0x0a01_0000 | (i & 0xffff)),
                vni: 100,
                src_port: 1000 + (i >> 16) as u16,
                dst_port: 4789,
                proto: IpProtocol::UDP,
                is_v6: false,
            })
            .collect();
        for k in &keys {
            t.insert(Flow::new(*k, k.reversed(), 1)).unwrap();
        }
        let (mut home_rule, mut this_rule) = (0, 0);
        for k in keys.iter().flat_map(|k| [*k, k.reversed()]) {
            let hash = t.hash(&k);
            let (id, _) = t.find(&k, hash).unwrap();
            let found = t.get(id).unwrap() as *const Flow;
            // The rule before: whatever flow the home slot holds.
            let home = t.index[tag_of(hash) as usize & t.mask];
            if home != 0 && std::ptr::eq(&t.flows[slot_flow(home).0 as usize], found) {
                home_rule += 1;
            }
            if t.flow_to_prefetch(hash)
                .is_some_and(|(f, _)| std::ptr::eq(f, found))
            {
                this_rule += 1;
            }
        }
        let lookups = 2 * flows;
        println!("right flow prefetched: home slot {home_rule}, tag {this_rule} of {lookups}");
        // Measured: 90.5 % by the home slot, 98.3 % by the tag.
        assert!(this_rule > home_rule, "{this_rule} against {home_rule}");
        assert!(this_rule > lookups * 97 / 100, "{this_rule} of {lookups}");
    }

    #[test]
    fn only_replies_and_translated_flows_prefetch_the_second_line() {
        let mut t = FlowTable::new(16);
        let key = |port: u16| ConnKey {
            src: 0x0a00_0001,
            dst: 0x0a00_0002,
            vni: 7,
            src_port: port,
            dst_port: 80,
            proto: IpProtocol::TCP,
            is_v6: false,
        };
        let plain = key(1000);
        t.insert(Flow::new(plain, plain.reversed(), 1)).unwrap();
        let nat = key(2000);
        let mut natted_reply = nat.reversed();
        natted_reply.dst = 0xc633_6401;
        t.insert(Flow {
            translation: Translation::SnatNat,
            ..Flow::new(nat, natted_reply, 1)
        })
        .unwrap();
        let wide = |k: &ConnKey| t.flow_to_prefetch(t.hash(k)).map(|(_, wide)| wide);
        assert_eq!(
            wide(&plain),
            Some(false),
            "original, untranslated: one line"
        );
        assert_eq!(
            wide(&plain.reversed()),
            Some(true),
            "a reply reads the reply key"
        );
        assert_eq!(
            wide(&nat),
            Some(true),
            "a translated flow's packets read its reply key"
        );
        assert_eq!(wide(&natted_reply), Some(true));
    }

    #[test]
    fn the_firewall_generation_never_becomes_the_undecided_mark() {
        assert_eq!(next_firewall_generation(0), 1);
        assert_eq!(next_firewall_generation(u32::MAX - 1), 0);
        assert_eq!(next_firewall_generation(u32::MAX), 0);
    }

    /// The longest way any index slot sits from its home slot.
    fn longest_probe(t: &FlowTable) -> usize {
        t.index
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != 0)
            .map(|(i, &s)| (i.wrapping_sub((s >> 32) as usize)) & t.mask)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn keys_crafted_against_known_seeds_do_not_pile_up_in_a_table_with_its_own() {
        // A VM that knows the seeds picks ports whose keys share one home slot (here: against
        // the fixed seeds, which anyone can read).
        let capacity = 4096;
        let known = FlowTable::with_seeds(capacity, HashSeeds::FIXED);
        let target_home = |k: &ConnKey| tag_of(known.hash(k)) as usize & known.mask;
        let mut crafted = Vec::new();
        let mut probe = key(0);
        let home = target_home(&probe);
        for n in 0u32.. {
            probe.src_port = n as u16;
            probe.dst_port = (n >> 16) as u16;
            if target_home(&probe) == home {
                crafted.push(probe);
                if crafted.len() == 64 {
                    break;
                }
            }
        }
        let mut fixed = FlowTable::with_seeds(capacity, HashSeeds::FIXED);
        let mut own = FlowTable::new(capacity);
        for k in &crafted {
            fixed.insert(Flow::new(*k, k.reversed(), 100)).unwrap();
            own.insert(Flow::new(*k, k.reversed(), 100)).unwrap();
        }
        assert!(
            longest_probe(&fixed) >= 63,
            "the attack works on known seeds"
        );
        assert!(longest_probe(&own) <= 8, "{}", longest_probe(&own));
        for k in &crafted {
            assert!(own.find(k, own.hash(k)).is_some());
        }
        assert_ne!(
            HashSeeds::random(),
            HashSeeds::random(),
            "every table its own"
        );
        assert_ne!(own.seeds(), &HashSeeds::FIXED);
    }

    #[test]
    fn full_table_refuses_and_keeps_live_flows() {
        let mut t = FlowTable::new(3);
        for i in 0..3 {
            t.insert(Flow::new(key(i), key(i).reversed(), 100)).unwrap();
        }
        assert_eq!(
            t.insert(Flow::new(key(9), key(9).reversed(), 100)),
            Err(InsertError::Full)
        );
        assert_eq!(t.stats().refused_full, 1);
        for i in 0..3 {
            assert!(t.contains(&key(i)));
        }
        assert_eq!(
            t.insert(Flow::new(key(0), key(7), 100)),
            Err(InsertError::Full)
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let mut t = FlowTable::new(8);
        t.insert(Flow::new(key(1), key(1).reversed(), 100)).unwrap();
        assert_eq!(
            t.insert(Flow::new(key(2), key(1).reversed(), 100)),
            Err(InsertError::KeyInUse)
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sweep_is_bounded_and_reclaims_expired_flows() {
        let mut t = FlowTable::new(1000);
        for i in 0..1000 {
            let expires = if i % 2 == 0 { 10 } else { 1000 };
            t.insert(Flow::new(key(i), key(i).reversed(), expires))
                .unwrap();
        }
        assert_eq!(t.sweep(50, 100, |_| false), 50, "100 slots looked at");
        let mut total = 50;
        for _ in 0..9 {
            total += t.sweep(50, 100, |_| false);
        }
        assert_eq!(total, 500);
        assert_eq!(t.len(), 500);
        for i in 0..1000 {
            assert_eq!(t.contains(&key(i)), i % 2 == 1, "flow {i}");
            assert_eq!(t.contains(&key(i).reversed()), i % 2 == 1);
        }
        // Freed slots are reused, not appended.
        for i in 1000..1500 {
            t.insert(Flow::new(key(i), key(i).reversed(), 2000))
                .unwrap();
        }
        assert_eq!(t.flows.len(), 1000);
        // Stale flows go too, counted as removed.
        let removed = t.sweep(50, 1000, |f| f.expires_ns == 2000);
        assert_eq!(removed, 500);
        assert_eq!(t.stats().removed, 500);
    }

    /// Random inserts and removals against a model: every present key is found with its flow,
    /// every absent one is not (backward-shift deletion keeps probe chains intact).
    #[test]
    fn index_matches_a_model_under_churn() {
        use std::collections::HashMap;
        let mut t = FlowTable::new(512);
        let mut model: HashMap<u32, FlowId> = HashMap::new();
        let mut x: u64 = 0x1234_5678;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % 700) as u32;
            if let Some(id) = model.remove(&i) {
                assert!(t.remove(id).is_some());
            } else if let Ok(id) = t.insert(Flow::new(key(i), key(i).reversed(), 1)) {
                model.insert(i, id);
            } else {
                assert_eq!(t.len(), 512, "refused only when full (step {step})");
            }
            if step % 97 == 0 {
                for j in 0..700 {
                    let found = t.find(&key(j), t.hash(&key(j))).map(|(id, _)| id);
                    assert_eq!(found, model.get(&j).copied(), "key {j} at step {step}");
                    let back = t.find(&key(j).reversed(), t.hash(&key(j).reversed()));
                    assert_eq!(back.map(|(id, _)| id), model.get(&j).copied());
                }
            }
        }
        assert_eq!(t.len(), model.len());
    }

    #[test]
    fn tcp_states() {
        use Direction::*;
        let syn = TcpSegment {
            syn: true,
            ..Default::default()
        };
        let synack = TcpSegment {
            syn: true,
            ack: true,
            ..Default::default()
        };
        let ack = TcpSegment {
            ack: true,
            ..Default::default()
        };
        let fin = TcpSegment {
            fin: true,
            ack: true,
            ..Default::default()
        };
        let rst = TcpSegment {
            rst: true,
            ..Default::default()
        };
        let s = TcpState::None.next(Original, syn);
        assert_eq!(s, TcpState::SynSent);
        let s = s.next(Reply, synack);
        assert_eq!(s, TcpState::SynReceived);
        let s = s.next(Original, ack);
        assert_eq!(s, TcpState::Established);
        let s = s.next(Reply, fin);
        assert_eq!(s, TcpState::FinWait);
        assert_eq!(s.next(Original, fin), TcpState::Closed);
        assert_eq!(TcpState::Established.next(Reply, rst), TcpState::Closed);
        assert_eq!(TcpState::None.next(Reply, ack), TcpState::Established);
        assert_eq!(TcpState::Closed.next(Original, syn), TcpState::SynSent);
        assert_eq!(TcpState::Closed.next(Reply, synack), TcpState::Closed);
        assert_eq!(TcpState::Closed.next(Original, ack), TcpState::Closed);
        let t = Timeouts::default();
        assert_eq!(t.of(IpProtocol::UDP, TcpState::None), 30_000_000_000);
        assert_eq!(
            t.of(IpProtocol::TCP, TcpState::Established),
            86_400_000_000_000
        );
        assert_eq!(t.of(IpProtocol::TCP, TcpState::Closed), 10_000_000_000);
        assert_eq!(Timeouts::with_default_secs(5).tcp_closed_ns, 5_000_000_000);
    }
}
