//! Packet buffers and the per-worker pool they come from.
//!
//! Buffers are allocated once, when the pool is made, and then move between ports, nodes and the
//! pool as one pointer (a [`PacketBuf`] is a `Box` of its [`BufSlot`]): nothing on the packet path
//! allocates, and handing a packet to the next node's batch copies 8 bytes, not the buffer's
//! 64 bytes of bookkeeping (that copy was ~20 % of the instructions of a forwarded packet).

use std::net::Ipv6Addr;

use dp_tables::PortId;

/// Bytes kept free in front of a received frame so a node can prepend headers (the 40-byte
/// outer IPv6 header of an encapsulation) without moving the frame.
pub const HEADROOM: usize = 128;

/// Default room for frame data after the headroom: a 1500-byte MTU frame and then some;
/// jumbo frames need a pool made with a larger size.
pub const DEFAULT_DATA_ROOM: usize = 2048;

/// Room of a pool's large buffers ([`BufferPool::with_large`]): a 64 KiB TCP superframe from a
/// TAP with segmentation offload (IP length at most 65535, plus the Ethernet header and slack).
pub const LARGE_DATA_ROOM: usize = 65536 + 64;

/// Metadata that travels with a packet through the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    /// The port the frame was received on.
    pub in_port: PortId,
    /// The port chosen for transmission, once a node has chosen one.
    pub out_port: PortId,
    /// Receive time in nanoseconds of the worker's clock.
    pub rx_time_ns: u64,
    /// The next hop on the underlay (outer destination) of a packet routed to another
    /// hypervisor, set by the lookup nodes for the encapsulation.
    pub underlay_dst: Ipv6Addr,
    /// The checksum/segmentation offload request that came with the frame (a TAP's virtio-net
    /// header), to pass on or to finish in software; see [`crate::offload`].
    pub offload: crate::offload::Offload,
    /// How often the packet went back to an earlier node of the graph (recirculation), which
    /// the graph bounds.
    pub hops: u8,
    /// Whether another worker handed the packet to this one (flow affinity): the hand-off node
    /// lets it go on instead of handing it again, and clears the mark.
    pub handed_off: bool,
    /// Set by the lookups: the route taken is a default route, which leaves the VNI's private
    /// space (what an interface's VIP or NAT translates; dpservice's "south-north" flows).
    pub route_public: bool,
    /// Set by the lookups and the decapsulation under `--conntrack stateful`: no stateful
    /// service can apply to the packet's connection (every interface of this host at its ends
    /// has none, and the packet uses their own addresses), so connection tracking sends it on
    /// without a flow. Assigned on every way into connection tracking, so never stale.
    pub stateless_ends: bool,
    /// Where the packet came from: a VM, or the underlay for one of our addresses (set by the
    /// decapsulation).
    pub origin: Origin,
    /// The virtual service the packet is for or from, plus one (0: none), set where it is
    /// recognised (`ipv4_lookup`, the `virtsvc` node); the hand-off node sends a handed-in
    /// packet with it back to the `virtsvc` node.
    pub virtsvc: u16,
}

/// Where a packet entered the dataplane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Origin {
    /// A VM's port.
    #[default]
    Vm,
    /// The underlay, for an interface's underlay address.
    Underlay,
    /// The underlay, for an interface's VIP.
    UnderlayVip,
    /// The underlay, for an interface's NAT.
    UnderlayNat,
    /// The underlay, for a load balancer.
    UnderlayLb,
}

impl Origin {
    /// Whether the packet was decapsulated.
    #[inline]
    pub fn is_underlay(self) -> bool {
        self != Origin::Vm
    }
}

/// The headers of a packet as validated once, by the pipeline's input (`classify` for a VM's
/// packets) and again after decapsulation (`ipip_decap`, for the inner packet): where they are,
/// how long the IP packet is and which VNI it travels in, for every later node — which then
/// reads fields at known offsets and never validates again.
///
/// The flow key and its hash are filled from the validated header by the first node that needs
/// them ([`PacketBuf::flow`], [`PacketBuf::flow_hash`]) and kept for the next: the stateless
/// paths (local forwarding, a drop) never pay for them. Filling the key at the input as well cost
/// 70 instructions per packet in callgrind, an eighth of an encapsulated packet.
///
/// Valid only once [`Parsed::l4_offset`] is non-zero: a buffer from the pool comes with it 0 and
/// the rest stale, and [`Parsed::set_validated`] writes every field but the key (which
/// `has_flow` marks). It sits next to [`PacketMeta`] in the buffer rather than inside it: the
/// pool stamps every received buffer with a whole `PacketMeta`, and copying the flow key along
/// cost 12 instructions per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Where the IP header starts in the frame (after the Ethernet header).
    pub l3_offset: u16,
    /// Where the L4 header starts in the frame (IPv4: after the options; IPv6: after the fixed
    /// header, extension headers not walked). 0 while nothing was validated.
    pub l4_offset: u16,
    /// The IP packet's length by its header (total length, or 40 + payload length), which may
    /// be shorter than the frame (Ethernet padding).
    pub l3_len: u32,
    /// The tenant network the packet travels in: the sending VM's, or the receiving VM's after
    /// decapsulation.
    pub vni: u32,
    /// Whether `flow` holds this packet's key yet.
    pub has_flow: bool,
    /// The flow's addresses, protocol and ports (see `has_flow`).
    pub flow: dp_packet::FlowKey,
    /// [`FlowKey::hash`](dp_packet::FlowKey::hash) of `flow`, once computed (0 = not yet).
    pub flow_hash: u64,
    /// The flow-table entry the packet belongs to: written by the stateful node for every
    /// packet it sees (found, made or [`FlowRef::NONE`]), read only by the nodes after it, so
    /// never cleared before.
    pub flow_ref: FlowRef,
}

impl Parsed {
    /// Records a validated IP header at `l3_offset` with its L4 header at `l4_offset`, the IP
    /// length and the packet's VNI; the flow key is not read yet.
    #[inline(always)]
    pub fn set_validated(&mut self, l3_offset: usize, l4_offset: usize, l3_len: usize, vni: u32) {
        // Offsets within a frame fit u16 (headroom plus a 64 KiB frame at most); an IP length
        // is at most 40 + 65535.
        self.l3_offset = l3_offset as u16;
        self.l4_offset = l4_offset as u16;
        self.l3_len = l3_len as u32;
        self.vni = vni;
        self.has_flow = false;
        self.flow_hash = 0;
    }
}

/// The key of a packet whose headers were not validated.
const NO_FLOW: dp_packet::FlowKey = dp_packet::FlowKey {
    src: 0,
    dst: 0,
    proto: dp_packet::IpProtocol(0),
    is_v6: false,
    src_port: 0,
    dst_port: 0,
};

/// A reference to a flow-table entry (an index into the worker's table) and the direction the
/// packet travels in, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowRef(pub u32);

impl FlowRef {
    /// No flow entry.
    pub const NONE: FlowRef = FlowRef(u32::MAX);

    /// Flow `id`, direction `dir`.
    #[inline]
    pub fn new(id: dp_tables::FlowId, dir: dp_tables::Direction) -> Self {
        FlowRef((id.0 << 1) | dir as u32)
    }

    /// The flow and direction, unless none.
    #[inline]
    pub fn get(self) -> Option<(dp_tables::FlowId, dp_tables::Direction)> {
        if self == FlowRef::NONE {
            return None;
        }
        let dir = if self.0 & 1 == 0 {
            dp_tables::Direction::Original
        } else {
            dp_tables::Direction::Reply
        };
        Some((dp_tables::FlowId(self.0 >> 1), dir))
    }
}

impl Default for FlowRef {
    fn default() -> Self {
        FlowRef::NONE
    }
}

impl Default for PacketMeta {
    fn default() -> Self {
        PacketMeta {
            in_port: 0,
            out_port: 0,
            rx_time_ns: 0,
            underlay_dst: Ipv6Addr::UNSPECIFIED,
            offload: crate::offload::Offload::NONE,
            hops: 0,
            handed_off: false,
            route_public: false,
            stateless_ends: false,
            origin: Origin::Vm,
            virtsvc: 0,
        }
    }
}

// The metadata the pool stamps on every received buffer: the virtual-service mark and the
// untracked mark fit in what was padding (48 bytes, as before them).
const _: () = assert!(std::mem::size_of::<PacketMeta>() <= 48);

/// One frame in a fixed-size buffer with headroom: a handle (one pointer) to its [`BufSlot`].
/// `pkt.meta` reaches the slot's metadata through `Deref`.
#[derive(Debug)]
pub struct PacketBuf {
    slot: Box<BufSlot>,
}

/// What a [`PacketBuf`] points to: the buffer's bytes, where the frame is in them, and the
/// packet's metadata.
///
/// Invariant: `start + len <= storage.len()`. Every method that moves `start` or `len` keeps it
/// (checking before it changes either), so [`PacketBuf::data`] needs no bounds check: that check
/// was a handful of instructions in every node, for every packet.
#[derive(Debug)]
pub struct BufSlot {
    storage: Box<[u8]>,
    start: usize,
    len: usize,
    pub meta: PacketMeta,
    /// The packet's validated headers (see [`Parsed`]).
    pub parsed: Parsed,
}

impl std::ops::Deref for PacketBuf {
    type Target = BufSlot;
    #[inline(always)]
    fn deref(&self) -> &BufSlot {
        &self.slot
    }
}

impl std::ops::DerefMut for PacketBuf {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut BufSlot {
        &mut self.slot
    }
}

impl PacketBuf {
    /// A fresh buffer able to hold `data_room` bytes after the headroom.
    pub fn new(data_room: usize) -> Self {
        PacketBuf {
            slot: Box::new(BufSlot {
                storage: vec![0u8; HEADROOM + data_room].into_boxed_slice(),
                start: HEADROOM,
                len: 0,
                meta: PacketMeta::default(),
                parsed: Parsed::default(),
            }),
        }
    }

    /// Makes the buffer empty with the standard headroom, as a port expects before a receive.
    #[inline]
    pub fn reset(&mut self) {
        self.reset_with(PacketMeta::default());
    }

    /// [`PacketBuf::reset`] with `meta` as the metadata.
    #[inline]
    fn reset_with(&mut self, meta: PacketMeta) {
        self.slot.start = HEADROOM;
        self.slot.len = 0;
        self.slot.meta = meta;
        self.slot.parsed.l4_offset = 0;
    }

    /// The frame.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let (start, end) = self.span();
        // SAFETY: `start <= end <= storage.len()`, the invariant of `BufSlot`.
        unsafe { self.slot.storage.get_unchecked(start..end) }
    }

    /// The frame, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (start, end) = self.span();
        // SAFETY: as in `data`.
        unsafe { self.slot.storage.get_unchecked_mut(start..end) }
    }

    /// The packet's flow key, read once from the header the input validated (see [`Parsed`]);
    /// the default key when nothing was validated.
    #[inline]
    pub fn flow(&mut self) -> &dp_packet::FlowKey {
        if self.slot.parsed.l4_offset == 0 {
            return &NO_FLOW;
        }
        if !self.slot.parsed.has_flow {
            self.read_flow();
        }
        &self.slot.parsed.flow
    }

    #[inline(never)]
    fn read_flow(&mut self) {
        let l3_offset = usize::from(self.slot.parsed.l3_offset);
        let flow = dp_packet::FlowKey::of_header(self.data().get(l3_offset..).unwrap_or_default());
        let parsed = &mut self.slot.parsed;
        parsed.flow = flow;
        parsed.has_flow = true;
    }

    /// The directional flow hash of [`PacketBuf::flow`] (uplink choice, outer flow label),
    /// computed by the first node that needs it and kept for the next.
    #[inline]
    pub fn flow_hash(&mut self) -> u64 {
        let parsed = &self.slot.parsed;
        if parsed.flow_hash == 0 {
            let hash = if parsed.has_flow || parsed.l4_offset == 0 {
                self.flow().hash()
            } else {
                let start = usize::from(parsed.l3_offset);
                let end = start + parsed.l3_len as usize;
                dp_packet::FlowKey::hash_of_header(self.data().get(start..end).unwrap_or_default())
            };
            self.slot.parsed.flow_hash = hash;
        }
        self.slot.parsed.flow_hash
    }

    /// Where the frame is in the storage.
    #[inline(always)]
    fn span(&self) -> (usize, usize) {
        let end = self.slot.start + self.slot.len;
        debug_assert!(end <= self.slot.storage.len());
        (self.slot.start, end)
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.slot.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// Bytes the buffer can hold after the headroom (its data room).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slot.storage.len().saturating_sub(HEADROOM)
    }

    /// Free bytes in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.slot.start
    }

    /// Free bytes after the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.slot.storage.len() - self.slot.start - self.slot.len
    }

    /// Everything from the frame start to the end of the buffer, for a port to receive into;
    /// follow with [`PacketBuf::set_len`].
    #[inline]
    pub fn receive_area(&mut self) -> &mut [u8] {
        self.slot
            .storage
            .get_mut(self.slot.start..)
            .unwrap_or(&mut [])
    }

    /// Sets the frame length; fails if it does not fit in the buffer.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), BufferError> {
        if len > self.slot.storage.len() - self.slot.start {
            return Err(BufferError::NoRoom);
        }
        self.slot.len = len;
        Ok(())
    }

    /// Grows the frame at the front by `n` bytes and returns them (uninitialised contents).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], BufferError> {
        if n > self.slot.start {
            return Err(BufferError::NoRoom);
        }
        self.slot.start -= n;
        self.slot.len += n;
        self.slot
            .storage
            .get_mut(self.slot.start..self.slot.start + n)
            .ok_or(BufferError::NoRoom)
    }

    /// Removes `n` bytes from the front of the frame (a stripped header).
    #[inline]
    pub fn strip_front(&mut self, n: usize) -> Result<(), BufferError> {
        if n > self.slot.len {
            return Err(BufferError::TooShort);
        }
        self.slot.start += n;
        self.slot.len -= n;
        Ok(())
    }

    /// Cuts the frame to `len` bytes (no-op when already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        self.slot.len = self.slot.len.min(len);
    }

    /// Replaces the frame with `bytes` (tests and slow-path replies).
    pub fn set_frame(&mut self, bytes: &[u8]) -> Result<(), BufferError> {
        let start = HEADROOM.min(self.slot.storage.len());
        let area = self
            .slot
            .storage
            .get_mut(start..start + bytes.len())
            .ok_or(BufferError::NoRoom)?;
        area.copy_from_slice(bytes);
        self.slot.start = start;
        self.slot.len = bytes.len();
        Ok(())
    }
}

/// Why a buffer operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferError {
    NoRoom,
    TooShort,
}

/// A worker's free buffers. Exhaustion is not an error: the port simply receives fewer frames.
///
/// Optionally a second, smaller set of large buffers ([`BufferPool::with_large`]) for the TCP
/// superframes of ports with segmentation offload; [`BufferPool::free`] sorts a buffer back into
/// its set by size.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<PacketBuf>,
    capacity: usize,
    data_room: usize,
    large: Vec<PacketBuf>,
    large_capacity: usize,
    large_room: usize,
    /// The metadata a buffer is handed out with ([`BufferPool::set_fresh_meta`]).
    fresh: PacketMeta,
}

impl BufferPool {
    /// Allocates `count` buffers of `data_room` bytes each, up front.
    pub fn new(count: usize, data_room: usize) -> Self {
        BufferPool {
            free: (0..count).map(|_| PacketBuf::new(data_room)).collect(),
            capacity: count,
            data_room,
            large: Vec::new(),
            large_capacity: 0,
            large_room: 0,
            fresh: PacketMeta::default(),
        }
    }

    /// [`BufferPool::new`] plus `large_count` buffers of `large_room` bytes (more than
    /// `data_room`), handed out only by [`BufferPool::alloc_large`]. Their memory is only touched
    /// (made resident) when a frame that large is received into them.
    pub fn with_large(
        count: usize,
        data_room: usize,
        large_count: usize,
        large_room: usize,
    ) -> Self {
        let mut pool = BufferPool::new(count, data_room);
        if large_room > data_room {
            pool.large = (0..large_count)
                .map(|_| PacketBuf::new(large_room))
                .collect();
            pool.large_capacity = large_count;
            pool.large_room = large_room;
        }
        pool
    }

    /// A reset large buffer, or `None` when the pool has none (left).
    #[inline]
    pub fn alloc_large(&mut self) -> Option<PacketBuf> {
        let mut buf = self.large.pop()?;
        buf.reset_with(self.fresh);
        Some(buf)
    }

    /// Sets the metadata every buffer is handed out with from now on (the default until set).
    /// A worker sets the receiving port and the time around a port's receive burst, so that the
    /// frames come out of the port already stamped (the write costs nothing: a reset writes
    /// the metadata anyway), and the default again after it.
    #[inline]
    pub fn set_fresh_meta(&mut self, meta: PacketMeta) {
        self.fresh = meta;
    }

    /// Room of the large buffers (0 without).
    pub fn large_room(&self) -> usize {
        self.large_room
    }

    pub fn large_available(&self) -> usize {
        self.large.len()
    }

    /// A reset buffer, or `None` when every buffer is in flight.
    #[inline]
    pub fn alloc(&mut self) -> Option<PacketBuf> {
        let mut buf = self.free.pop()?;
        buf.reset_with(self.fresh);
        Some(buf)
    }

    /// Returns a buffer to the pool. The free list never grows past the pool's capacity, so
    /// this never allocates.
    #[inline]
    pub fn free(&mut self, buf: PacketBuf) {
        if self.large_capacity != 0 && buf.capacity() > self.data_room {
            if self.large.len() < self.large_capacity {
                self.large.push(buf);
            }
        } else if self.free.len() < self.capacity {
            self.free.push(buf);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn data_room(&self) -> usize {
        self.data_room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow key and hash are read once, from the header the input validated, and the
    /// cached values serve the next node; a reused buffer never shows the last packet's flow.
    #[test]
    fn the_flow_is_read_once_from_the_validated_header() {
        let mut frame = vec![0u8; 14];
        frame.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x9c, 0x40, 0x13,
            0x88, 0, 8, 0, 0,
        ]);
        let mut pool = BufferPool::new(1, 256);
        let mut b = pool.alloc().unwrap();
        b.set_frame(&frame).unwrap();
        assert_eq!(
            *b.flow(),
            dp_packet::FlowKey::default(),
            "nothing validated yet"
        );
        b.parsed.set_validated(14, 34, 28, 7);
        let key = *b.flow();
        assert_eq!((key.src_port, key.dst_port), (40000, 5000));
        assert_eq!(key.dst_v4(), dp_packet::Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(b.flow_hash(), key.hash());
        // Cached: a change to the frame is not seen (the input's reading stands).
        b.data_mut()[14 + 12] = 99;
        assert_eq!(b.flow().src_v4(), dp_packet::Ipv4Addr::new(10, 0, 0, 1));
        // Back in the pool and out again: not parsed.
        pool.free(b);
        let mut b = pool.alloc().unwrap();
        assert_eq!(b.parsed.l4_offset, 0);
        b.set_frame(&frame).unwrap();
        b.parsed.set_validated(14, 34, 28, 7);
        assert_eq!(b.flow().src_v4(), dp_packet::Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn prepend_and_strip_keep_bytes() {
        let mut b = PacketBuf::new(64);
        b.set_frame(&[1, 2, 3, 4]).unwrap();
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3, 4]);
        b.strip_front(3).unwrap();
        assert_eq!(b.data(), &[2, 3, 4]);
        assert_eq!(b.strip_front(4), Err(BufferError::TooShort));
        assert_eq!(b.prepend(HEADROOM + 2).err(), Some(BufferError::NoRoom));
        assert_eq!(b.set_len(64 + HEADROOM), Err(BufferError::NoRoom));
        b.truncate(1);
        assert_eq!(b.data(), &[2]);
    }

    #[test]
    fn a_frame_that_does_not_fit_leaves_the_buffer_as_it_was() {
        let mut b = PacketBuf::new(64);
        b.set_frame(&[7; 64]).unwrap();
        b.prepend(HEADROOM).unwrap().fill(1);
        assert_eq!(b.set_frame(&[0; 65]), Err(BufferError::NoRoom));
        assert_eq!(b.len(), HEADROOM + 64);
        assert_eq!(b.headroom(), 0);
        assert!(b.data()[..HEADROOM].iter().all(|&x| x == 1));
        assert!(b.data()[HEADROOM..].iter().all(|&x| x == 7));
    }

    #[test]
    fn pool_recycles_without_growing() {
        let mut pool = BufferPool::new(2, 128);
        let a = pool.alloc().unwrap();
        let b = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        pool.free(a);
        pool.free(b);
        pool.free(PacketBuf::new(128)); // a stray buffer beyond capacity is dropped, not kept
        assert_eq!(pool.available(), 2);
        let c = pool.alloc().unwrap();
        assert_eq!(c.len(), 0);
        assert_eq!(c.headroom(), HEADROOM);
    }

    #[test]
    fn buffers_come_out_with_the_fresh_metadata() {
        let mut pool = BufferPool::with_large(2, 128, 1, 4096);
        let stamp = PacketMeta {
            in_port: 7,
            rx_time_ns: 42,
            ..PacketMeta::default()
        };
        pool.set_fresh_meta(stamp);
        let mut a = pool.alloc().unwrap();
        assert_eq!((a.meta, pool.alloc_large().unwrap().meta), (stamp, stamp));
        a.meta.out_port = 3;
        pool.free(a);
        pool.set_fresh_meta(PacketMeta::default());
        assert_eq!(pool.alloc().unwrap().meta, PacketMeta::default());
    }

    #[test]
    fn large_buffers_go_back_to_their_own_set() {
        let mut pool = BufferPool::with_large(2, 128, 1, 4096);
        let big = pool.alloc_large().unwrap();
        assert_eq!(big.capacity(), 4096);
        assert!(pool.alloc_large().is_none());
        let small = pool.alloc().unwrap();
        pool.free(big);
        pool.free(small);
        assert_eq!((pool.available(), pool.large_available()), (2, 1));
        assert_eq!(pool.alloc_large().unwrap().capacity(), 4096);
        assert_eq!(pool.alloc().unwrap().capacity(), 128);
    }
}
