//! The data path of a vhost-user port: frames out of the guest's transmit queue into our
//! buffers ([`receive`]) and our frames into the guest's receive queue ([`transmit`]), on a
//! split virtqueue in guest memory ([`SplitRing`]).
//!
//! Every frame is preceded by a `virtio_net_hdr_v1` (12 bytes: VERSION_1 and MRG_RXBUF are
//! always negotiated). A frame to the guest may span several receive chains (mergeable
//! buffers); the header's `num_buffers` says how many.
//!
//! The guest is not trusted: [`SplitRing`] checks descriptor addresses and lengths against its
//! memory map (a buffer must lie inside one region; a bad one fails the chain, nothing outside
//! the map is read or written), ends a loop in a chain after as many descriptors as the queue
//! has, and a chain that fails is still returned to the guest (used, length 0), so the queue
//! never stalls on it. Such chains are counted ([`RingStats::bad_chains`]).
//!
//! Nothing here allocates. The used elements of a burst are written as chains complete and
//! published (one `used.idx` store) at the end of each [`receive`] and [`transmit`]; why the
//! ring is hand-written rather than virtio-queue's is in [`super::split`]. Frames to the guest
//! that fit the first buffer of a chain, and frames of the guest whose header and frame share
//! one buffer — nearly all — go through chains of one descriptor taken in one pass
//! ([`SplitRing::take_direct`]): the chains first, then the copies, then the used elements.

use dp_buffer::offload::ChecksumPolicy;
use dp_buffer::{BufferPool, Offload, PacketBuf, VNET_HDR_LEN};

use super::dirty_log::DirtyLog;
use super::split::{Desc, Direct, SplitRing};

/// `struct virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset,
/// num_buffers.
pub const NET_HDR_LEN: usize = 12;
/// Where `num_buffers` is in the header.
const NUM_BUFFERS_AT: usize = 10;

/// Most receive chains one frame to the guest may take: a 64 KiB superframe in buffers of
/// 1 KiB or more (Linux posts mergeable buffers of 1.5 to 4 KiB).
pub const MAX_MERGED: usize = 64;

/// The most pieces the header of a frame to the guest may be written in (a receive buffer
/// across regions of guest memory ends its first region within the header's 12 bytes).
const HEADER_PIECES: usize = 4;

/// What a burst did, added to the port's counters by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub packets: u64,
    pub bytes: u64,
    /// Chains whose descriptors point outside guest memory, or whose frame is shorter than the
    /// header or longer than a buffer: returned to the guest unused, the frame dropped. Also
    /// a ring whose avail index is broken (counted once per burst: nothing can be returned).
    pub bad_chains: u64,
    /// The pool had no buffer: the burst stopped, the guest's frames wait in its queue.
    pub no_buffer: u64,
    /// Frames to the guest that found too few receive buffers: dropped.
    pub no_room: u64,
    /// Whether used entries were added (the guest may need a notification).
    pub used: bool,
}

/// What the port negotiated for the frames it receives and transmits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offloads {
    /// Checksum and TCP segmentation offload both ways (the guest acked CSUM, GUEST_CSUM,
    /// HOST/GUEST_TSO4/6 and HOST/GUEST_ECN): a guest's request goes into `meta.offload`
    /// unchanged, and ours into the header of each frame to the guest.
    PassOn,
    /// Not all of them: a partial checksum the guest left is finished here, a superframe it
    /// sends (it cannot, without HOST_TSO) is dropped, and frames go to it complete.
    None,
}

/// Copies up to `max` frames the guest queued on its transmit `ring` into buffers from
/// `pool`, appended to `out`; returns how many. A frame longer than a normal buffer (a TCP
/// superframe) moves into one of the pool's large buffers when it has them. The chains taken
/// are published used before it returns.
pub fn receive(
    ring: &mut SplitRing,
    pool: &mut BufferPool,
    out: &mut Vec<PacketBuf>,
    max: usize,
    stats: &mut RingStats,
    offloads: Offloads,
) -> usize {
    if !ring.has_available() {
        // An empty ring (an idle guest's every poll): nothing to set up.
        return 0;
    }
    let mut received = 0;
    let mut direct = [Direct::default(); DIRECT_BURST];
    let max_len = (NET_HDR_LEN + pool.data_room()) as u32;
    while received < max {
        // No more chains than free buffers: a direct chain taken always has one.
        let room = (max - received).min(DIRECT_BURST).min(pool.available());
        let taken = match direct.get_mut(..room) {
            Some(part) if room > 0 => {
                ring.take_direct(part, false, NET_HDR_LEN as u32 + 1, max_len)
            }
            _ => 0,
        };
        if let Some(chains) = direct.get(..taken) {
            received += copy_in(ring, chains, pool, out, stats, offloads);
        }
        if taken == room && room > 0 {
            continue;
        }
        // The chains seen are all taken: the burst ends without reading the guest's index again
        // (a load of a line its CPU writes), which the next poll does.
        if room > 0 && !ring.known_available() {
            break;
        }
        // The next chain needs the general walk, or no buffer is left (counted).
        if received < max {
            match receive_one(ring, pool, out, stats, offloads) {
                One::Got => received += 1,
                One::Dropped => {}
                One::Stop => break,
            }
        }
    }
    ring.publish();
    received
}

/// Chains taken at once by [`SplitRing::take_direct`]: a worker's burst.
const DIRECT_BURST: usize = 64;

/// Copies the frames of the direct transmit `chains` (header and frame in one buffer, the
/// frame no longer than a normal buffer: `take_direct` checked) into buffers of `pool`
/// appended to `out`, all in one short loop, then returns the chains used; returns how many
/// frames were appended. The pool has a buffer for each chain (the caller took no more).
fn copy_in(
    ring: &mut SplitRing,
    chains: &[Direct],
    pool: &mut BufferPool,
    out: &mut Vec<PacketBuf>,
    stats: &mut RingStats,
    offloads: Offloads,
) -> usize {
    let mut received = 0;
    for chain in chains {
        let Some(frame_len) = chain.len().checked_sub(NET_HDR_LEN) else {
            stats.bad_chains += 1;
            continue;
        };
        let Some(mut buf) = pool.alloc() else {
            stats.no_buffer += 1;
            continue;
        };
        let mut hdr = [0u8; NET_HDR_LEN];
        let Some(dst) = buf.receive_area().get_mut(..frame_len) else {
            stats.bad_chains += 1;
            pool.free(buf);
            continue;
        };
        // SAFETY: `take_direct` resolved the chain's buffer, `len` bytes inside one mapped
        // region of guest memory kept mapped by the ring we borrow; the header and the frame
        // are `NET_HDR_LEN + frame_len == len` bytes of it. Guest memory never overlaps our
        // buffers, and no reference to guest bytes is formed (the guest may change them while
        // we copy: we get some bytes, never UB here).
        unsafe {
            let src = chain.host().cast_const();
            std::ptr::copy_nonoverlapping(src, hdr.as_mut_ptr(), NET_HDR_LEN);
            std::ptr::copy_nonoverlapping(src.add(NET_HDR_LEN), dst.as_mut_ptr(), frame_len);
        }
        if buf.set_len(frame_len).is_err() {
            stats.bad_chains += 1;
            pool.free(buf);
            continue;
        }
        if let Some(buf) = finish_received(buf, &hdr, pool, stats, offloads) {
            out.push(buf);
            received += 1;
        }
    }
    for chain in chains {
        ring.add_used(chain.head, 0);
    }
    stats.used |= !chains.is_empty();
    received
}

/// A received frame's offload request (its virtio-net header `hdr`) applied: passed on, or its
/// checksum finished; `None` (counted, the buffer freed) when the guest sent a superframe it
/// may not send.
#[inline]
fn finish_received(
    mut buf: PacketBuf,
    hdr: &[u8; NET_HDR_LEN],
    pool: &mut BufferPool,
    stats: &mut RingStats,
    offloads: Offloads,
) -> Option<PacketBuf> {
    let request = Offload::parse_le(hdr.first_chunk().unwrap_or(&[0; VNET_HDR_LEN]));
    match offloads {
        Offloads::PassOn => buf.meta.offload = request,
        Offloads::None if request.is_gso() => {
            stats.bad_chains += 1;
            pool.free(buf);
            return None;
        }
        Offloads::None => {
            ChecksumPolicy::FinishRequested.on_rx(buf.data_mut(), Some(request));
        }
    }
    stats.packets += 1;
    stats.bytes += buf.len() as u64;
    Some(buf)
}

/// What [`receive_one`] did.
enum One {
    /// A frame appended to `out`.
    Got,
    /// A chain taken and returned, its frame dropped (counted).
    Dropped,
    /// Nothing more to take: no chain, no buffer (counted), or a broken ring (counted).
    Stop,
}

/// The guest's next chain in any layout (the header in its own descriptor or with the frame,
/// the frame across descriptors, a superframe into a large buffer).
fn receive_one(
    ring: &mut SplitRing,
    pool: &mut BufferPool,
    out: &mut Vec<PacketBuf>,
    stats: &mut RingStats,
    offloads: Offloads,
) -> One {
    let Some(mut buf) = pool.alloc() else {
        stats.no_buffer += 1;
        return One::Stop;
    };
    let mut chain = match ring.pop() {
        Ok(Some(chain)) => chain,
        Ok(None) => {
            pool.free(buf);
            return One::Stop;
        }
        Err(_) => {
            // The avail index is broken: nothing more can be taken.
            pool.free(buf);
            stats.bad_chains += 1;
            return One::Stop;
        }
    };
    // The frame follows the header, which may share a descriptor with it or not.
    let mut hdr = [0u8; NET_HDR_LEN];
    let mut skip = NET_HDR_LEN;
    let mut len = 0usize;
    let mut ok = true;
    loop {
        let desc = match ring.next_desc(&mut chain) {
            Ok(Some(desc)) => desc,
            Ok(None) => break,
            Err(_) => {
                ok = false;
                break;
            }
        };
        if desc.is_write_only() {
            continue;
        }
        // What of this descriptor is header (usually all of it is in the first one, with
        // the frame's start: Linux puts it in front of the frame), and what is frame.
        let h = skip.min(desc.len());
        let dlen = desc.len() - h;
        let at = NET_HDR_LEN - skip;
        skip -= h;
        if len + dlen > buf.receive_area().len() {
            // Longer than a normal buffer: a superframe goes on in a large one.
            match grow(pool, buf, len, len + dlen) {
                Ok(large) => buf = large,
                Err(normal) => {
                    buf = normal;
                    ok = false; // longer than any buffer
                    break;
                }
            }
        }
        let (Some(head), Some(dst)) = (
            hdr.get_mut(at..at + h),
            buf.receive_area().get_mut(len..len + dlen),
        ) else {
            ok = false;
            break;
        };
        if !(ring.read(&desc, 0, head) && ring.read(&desc, h, dst)) {
            ok = false;
            break;
        }
        len += dlen;
    }
    // Returned to the guest whatever it held: its buffer is free again.
    ring.add_used(chain.head(), 0);
    stats.used = true;
    if !ok || skip > 0 || len == 0 || buf.set_len(len).is_err() {
        stats.bad_chains += 1;
        pool.free(buf);
        return One::Dropped;
    }
    match finish_received(buf, &hdr, pool, stats, offloads) {
        Some(buf) => {
            out.push(buf);
            One::Got
        }
        None => One::Dropped,
    }
}

/// Moves the first `len` bytes of `buf` into a large buffer if `needed` fits one; else gives
/// `buf` back.
#[cold]
fn grow(
    pool: &mut BufferPool,
    mut buf: PacketBuf,
    len: usize,
    needed: usize,
) -> Result<PacketBuf, PacketBuf> {
    if needed > pool.large_room() {
        return Err(buf);
    }
    let Some(mut large) = pool.alloc_large() else {
        return Err(buf);
    };
    large.meta = buf.meta;
    if let (Some(dst), Some(src)) = (
        large.receive_area().get_mut(..len),
        buf.receive_area().get(..len),
    ) {
        dst.copy_from_slice(src);
    }
    pool.free(buf);
    Ok(large)
}

/// One receive chain taken for a frame: its head and how much of the frame went into it.
#[derive(Clone, Copy, Default)]
struct Taken {
    head: u16,
    written: u32,
}

/// Copies every frame of `pkts` into the guest's receive `ring` (leaving `pkts` empty, the
/// buffers back in `pool`); returns how many went in. With a `log` (a migration runs), every
/// page written is marked in it (the used ring is the caller's to mark). The chains used are
/// published before it returns.
pub fn transmit(
    ring: &mut SplitRing,
    pkts: &mut Vec<PacketBuf>,
    pool: &mut BufferPool,
    stats: &mut RingStats,
    offloads: Offloads,
    log: Option<&DirtyLog>,
) -> usize {
    let mut sent = 0;
    // The chains of one frame; once per burst (zeroing it per frame was a measurable cost).
    let mut taken = [Taken::default(); MAX_MERGED];
    let mut direct = [Direct::default(); DIRECT_BURST];
    let mut i = 0;
    while let Some(rest) = pkts.get(i..).filter(|rest| !rest.is_empty()) {
        // Frames that fit the direct chains the guest has (header and frame in the first
        // buffer) go in one short loop; not while a migration runs (the general path marks
        // the pages it writes).
        if log.is_none() {
            let want = rest.len().min(DIRECT_BURST);
            let got = match direct.get_mut(..want) {
                Some(part) => ring.take_direct(part, true, NET_HDR_LEN as u32 + 1, u32::MAX),
                None => 0,
            };
            let chains = direct.get(..got).unwrap_or_default();
            let fit = copy_out(ring, chains, rest, offloads, stats);
            // The chains past a frame that did not fit go back, in order, for the general path.
            ring.undo((got - fit) as u16);
            sent += fit;
            i += fit;
            if fit == want {
                continue;
            }
            // Out of receive chains, even after reading the guest's index once more: the rest
            // of the burst is dropped (counted) without asking again for each frame.
            if fit == got && !ring.has_available() {
                stats.no_room += (pkts.len() - i) as u64;
                break;
            }
        }
        // The next frame needs mergeable buffers, a chain that is not direct, or finds none.
        let Some(pkt) = pkts.get(i) else {
            break;
        };
        i += 1;
        let mut header = net_header(pkt, offloads);
        match put_frame(ring, &mut taken, &mut header, pkt.data(), log) {
            Put::Done(n) => {
                sent += 1;
                stats.packets += 1;
                stats.bytes += pkt.len() as u64;
                stats.used |= n > 0;
            }
            Put::NoRoom => stats.no_room += 1,
            Put::Bad => {
                stats.bad_chains += 1;
                stats.used = true;
            }
        }
    }
    for pkt in pkts.drain(..) {
        pool.free(pkt);
    }
    ring.publish();
    sent
}

/// Writes the first frames of `pkts` into the direct receive `chains`, one each, while each
/// fits (the header and the whole frame in the chain's buffer), all in one short loop, then
/// returns those chains used; returns how many frames went in.
///
/// Why the copies together: the stores into the guest's buffers wait for their cache lines
/// (the guest's CPU had them). Interleaved with taking chains and the bookkeeping of each
/// frame, few of those waits overlap; in one loop of copies, many do (DPDK's vhost library
/// batches its small copies for the same reason).
fn copy_out(
    ring: &mut SplitRing,
    chains: &[Direct],
    pkts: &[PacketBuf],
    offloads: Offloads,
    stats: &mut RingStats,
) -> usize {
    let n = chains.len().min(pkts.len());
    let (chains, pkts) = (
        chains.get(..n).unwrap_or_default(),
        pkts.get(..n).unwrap_or_default(),
    );
    let mut fit = 0;
    for (chain, pkt) in chains.iter().zip(pkts) {
        let frame = pkt.data();
        if NET_HDR_LEN + frame.len() > chain.len() {
            break;
        }
        let mut header = net_header(pkt, offloads);
        if let Some(n) = header.get_mut(NUM_BUFFERS_AT..NUM_BUFFERS_AT + 2) {
            n.copy_from_slice(&1u16.to_le_bytes());
        }
        // SAFETY: `take_direct` resolved the chain's buffer, `len` bytes inside one mapped
        // region of guest memory kept mapped by the ring we borrow, and the header and this
        // frame fit it (just checked); guest memory never overlaps our buffers. No reference
        // to guest bytes is formed.
        unsafe {
            let dst = chain.host();
            std::ptr::copy_nonoverlapping(header.as_ptr(), dst, NET_HDR_LEN);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), dst.add(NET_HDR_LEN), frame.len());
        }
        fit += 1;
    }
    for (chain, pkt) in chains.iter().zip(pkts).take(fit) {
        let len = pkt.len();
        ring.add_used(chain.head, (NET_HDR_LEN + len) as u32);
        stats.packets += 1;
        stats.bytes += len as u64;
    }
    stats.used |= fit > 0;
    fit
}

/// The virtio-net header of a frame to the guest (`num_buffers` still 0): its offload request
/// when the guest takes them.
#[inline(always)]
fn net_header(pkt: &PacketBuf, offloads: Offloads) -> [u8; NET_HDR_LEN] {
    let mut header = [0u8; NET_HDR_LEN];
    if offloads == Offloads::PassOn && pkt.meta.offload.is_set() {
        let mut off = pkt.meta.offload;
        off.hdr_len = off
            .hdr_len
            .min(u16::try_from(pkt.len()).unwrap_or(u16::MAX));
        if let Some(h) = header.first_chunk_mut::<VNET_HDR_LEN>() {
            *h = off.emit_le();
        }
    }
    header
}

enum Put {
    /// Into this many chains.
    Done(usize),
    /// Not enough receive buffers: nothing taken.
    NoRoom,
    /// A chain was unusable: it was returned (used, length 0) and the frame dropped.
    Bad,
}

/// The frame into as many receive chains as it takes, then the header (with `num_buffers`)
/// in front of it in the first.
#[inline]
fn put_frame(
    ring: &mut SplitRing,
    taken: &mut [Taken; MAX_MERGED],
    header: &mut [u8; NET_HDR_LEN],
    frame: &[u8],
    log: Option<&DirtyLog>,
) -> Put {
    let mut count = 0;
    // Where the header goes: the first writable descriptor, or the first pieces of the first
    // chain when that buffer runs across regions of guest memory (see `split::Rest`).
    let mut header_at: [Option<Desc>; HEADER_PIECES] = [None; HEADER_PIECES];
    let mut header_left = NET_HDR_LEN;
    // Bytes of the frame written.
    let mut done = 0usize;
    while count == 0 || done < frame.len() {
        let Some(slot) = taken.get_mut(count) else {
            return undo(ring, count, Put::NoRoom);
        };
        let mut chain = match ring.pop() {
            Ok(Some(chain)) => chain,
            Ok(None) => return undo(ring, count, Put::NoRoom),
            Err(_) => return bad(ring, taken, count),
        };
        slot.head = chain.head();
        count += 1;
        let mut written = 0usize;
        loop {
            let desc = match ring.next_desc(&mut chain) {
                Ok(Some(desc)) => desc,
                Ok(None) => break,
                Err(_) => return bad(ring, taken, count),
            };
            if !desc.is_write_only() {
                continue;
            }
            let mut at = 0;
            if header_left > 0 {
                // The header goes at the start of the first chain (num_buffers is written
                // there once the frame is in): room is kept for it now.
                let Some(part) = header_at.iter_mut().find(|p| p.is_none()) else {
                    return bad(ring, taken, count);
                };
                *part = Some(desc);
                at = header_left.min(desc.len());
                header_left -= at;
                written += at;
            }
            let n = (desc.len() - at).min(frame.len() - done);
            if n > 0 {
                let src = frame.get(done..done + n).unwrap_or_default();
                if !ring.write(&desc, at, src) {
                    return bad(ring, taken, count);
                }
                if let Some(log) = log {
                    log.mark(desc.addr() + at as u64, n);
                }
                done += n;
                written += n;
            }
            if done >= frame.len() {
                break;
            }
        }
        if written == 0 || header_left > 0 {
            // A chain with no writable byte, or a first one too short for the header: unusable.
            return bad(ring, taken, count);
        }
        if let Some(slot) = taken.get_mut(count - 1) {
            slot.written = written as u32;
        }
    }
    if let Some(n) = header.get_mut(NUM_BUFFERS_AT..NUM_BUFFERS_AT + 2) {
        n.copy_from_slice(&(count as u16).to_le_bytes());
    }
    let mut at = 0;
    for part in header_at.iter().flatten() {
        let n = part.len().min(NET_HDR_LEN - at);
        if !ring.write(part, 0, header.get(at..at + n).unwrap_or_default()) {
            return bad(ring, taken, count);
        }
        if let Some(log) = log {
            log.mark(part.addr(), n);
        }
        at += n;
    }
    for t in taken.iter().take(count) {
        ring.add_used(t.head, t.written);
    }
    Put::Done(count)
}

/// Gives back the chains taken for a frame that does not fit (the guest keeps them for the next).
fn undo(ring: &mut SplitRing, count: usize, result: Put) -> Put {
    ring.undo(count as u16);
    result
}

/// Returns the chains taken so far to the guest, unused: one of them was bad.
fn bad(ring: &mut SplitRing, taken: &[Taken], count: usize) -> Put {
    for t in taken.iter().take(count) {
        ring.add_used(t.head, 0);
    }
    Put::Bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_buffer::{Offload, VNET_HDR_LEN};
    use std::sync::Arc;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{
        Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestUsize,
    };

    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;

    fn memory() -> Arc<GuestMemoryMmap> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap())
    }

    /// Our half of the mock driver's queue.
    fn split(mem: &Arc<GuestMemoryMmap>, vq: &MockSplitQueue<GuestMemoryMmap>) -> SplitRing {
        let (desc, avail, used) = (vq.desc_table_addr().0, vq.avail_addr().0, vq.used_addr().0);
        // The mock lays the rings out back to back: the table is 16 bytes per entry.
        let size = u16::try_from((avail - desc) / 16).unwrap();
        SplitRing::new(Arc::clone(mem), size, desc, avail, used, 0, false).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    /// Posts `count` receive chains of one writable buffer of `len` bytes each, 4 KiB apart
    /// from 0x10_0000.
    fn add_receive_chains(vq: &MockSplitQueue<GuestMemoryMmap>, count: u64, len: u32) {
        let descs: Vec<_> = (0..count)
            .map(|i| desc(0x10_0000 + i * 0x1000, len, F_WRITE, 0))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
    }

    /// Sends `frames` to the guest's receive queue (no offloads, no dirty log); returns how
    /// many went in.
    fn send(
        q: &mut SplitRing,
        pool: &mut BufferPool,
        frames: &[&[u8]],
        stats: &mut RingStats,
    ) -> usize {
        let mut pkts: Vec<PacketBuf> = frames
            .iter()
            .map(|f| {
                let mut p = pool.alloc().unwrap();
                p.set_frame(f).unwrap();
                p
            })
            .collect();
        let sent = transmit(q, &mut pkts, pool, stats, Offloads::None, None);
        assert!(pkts.is_empty(), "what does not go in is dropped, not kept");
        sent
    }

    /// Takes up to 8 frames from the guest's transmit queue `vq` into buffers of `pool`.
    fn receive_from(
        mem: &Arc<GuestMemoryMmap>,
        vq: &MockSplitQueue<GuestMemoryMmap>,
        pool: &mut BufferPool,
        offloads: Offloads,
    ) -> (Vec<PacketBuf>, RingStats) {
        let mut q = split(mem, vq);
        let mut out = Vec::with_capacity(8);
        let mut stats = RingStats::default();
        let n = receive(&mut q, pool, &mut out, 8, &mut stats, offloads);
        assert_eq!(n, out.len());
        (out, stats)
    }

    fn used_entries(
        mem: &GuestMemoryMmap,
        vq: &MockSplitQueue<GuestMemoryMmap>,
    ) -> Vec<(u32, u32)> {
        let used = vq.used_addr();
        let idx: u16 = mem.read_obj(used.unchecked_add(2)).unwrap();
        (0..u64::from(idx))
            .map(|i| {
                let at = used.unchecked_add(4 + 8 * i);
                (
                    mem.read_obj(at).unwrap(),
                    mem.read_obj(at.unchecked_add(4)).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn frames_come_out_of_the_transmit_queue_without_their_header() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        // Chain 0: header and frame in one descriptor; chain 1: header alone, then two pieces.
        let frame_a: Vec<u8> = (0..60).collect();
        mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(0x10_0000))
            .unwrap();
        mem.write_slice(&frame_a, GuestAddress(0x10_0000 + NET_HDR_LEN as u64))
            .unwrap();
        mem.write_slice(&[7; 30], GuestAddress(0x20_0000)).unwrap();
        mem.write_slice(&[8; 34], GuestAddress(0x30_0000)).unwrap();
        vq.add_desc_chains(
            &[
                desc(0x10_0000, 72, 0, 0),
                desc(0x11_0000, NET_HDR_LEN as u32, F_NEXT, 2),
                desc(0x20_0000, 30, F_NEXT, 3),
                desc(0x30_0000, 34, 0, 0),
            ],
            0,
        )
        .unwrap();
        let mut pool = BufferPool::new(4, 2048);
        let (mut out, stats) = receive_from(&mem, &vq, &mut pool, Offloads::None);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data(), &frame_a[..]);
        let mut b = vec![7u8; 30];
        b.extend_from_slice(&[8; 34]);
        assert_eq!(out[1].data(), &b[..]);
        assert_eq!((stats.packets, stats.bytes, stats.bad_chains), (2, 124, 0));
        assert_eq!(used_entries(&mem, &vq), vec![(0, 0), (1, 0)]);
        for b in out.drain(..) {
            pool.free(b);
        }
        assert_eq!(pool.available(), 4, "no buffer kept");
    }

    /// Direct chains (header and frame in one buffer), taken in one pass, and chains the
    /// general walk takes, interleaved in one burst: the frames and the used ring keep the
    /// guest's order. With fewer buffers than chains the rest wait in the ring.
    #[test]
    fn direct_and_walked_chains_in_one_burst_keep_their_order() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        // Chains 0 and 2 direct, chain 1 header then frame, chains 3 and 4 direct.
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i + 1; 60 + usize::from(i)]).collect();
        let mut descs = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let at = 0x10_0000 + 0x1000 * i as u64;
            mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(at))
                .unwrap();
            mem.write_slice(f, GuestAddress(at + 0x100)).unwrap();
            mem.write_slice(f, GuestAddress(at + NET_HDR_LEN as u64))
                .unwrap();
            if i == 1 {
                let next = descs.len() as u16 + 1;
                descs.push(desc(at, NET_HDR_LEN as u32, F_NEXT, next));
                descs.push(desc(at + 0x100, f.len() as u32, 0, 0));
            } else {
                descs.push(desc(at, (NET_HDR_LEN + f.len()) as u32, 0, 0));
            }
        }
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q = split(&mem, &vq);
        // Four buffers for five frames: the fifth waits.
        let mut pool = BufferPool::new(4, 2048);
        let mut out = Vec::with_capacity(8);
        let mut stats = RingStats::default();
        assert_eq!(
            receive(&mut q, &mut pool, &mut out, 8, &mut stats, Offloads::None),
            4
        );
        for (got, want) in out.iter().zip(&frames) {
            assert_eq!(got.data(), &want[..]);
        }
        assert_eq!(
            (stats.packets, stats.bad_chains, stats.no_buffer),
            (4, 0, 1)
        );
        // Heads 0, 1 (a chain of two descriptors), 3, 4; the fifth chain (head 5) not taken.
        assert_eq!(
            used_entries(&mem, &vq),
            vec![(0, 0), (1, 0), (3, 0), (4, 0)]
        );
        for b in out.drain(..) {
            pool.free(b);
        }
        let mut stats = RingStats::default();
        assert_eq!(
            receive(&mut q, &mut pool, &mut out, 8, &mut stats, Offloads::None),
            1
        );
        assert_eq!(out[0].data(), &frames[4][..]);
        assert_eq!(used_entries(&mem, &vq).last(), Some(&(5, 0)));
    }

    /// An avail index more than the ring's size ahead: nothing is taken, and the burst
    /// counts it (the port resets the ring on it), however the burst ends.
    #[test]
    fn a_broken_avail_index_is_counted_not_followed() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let mut q = split(&mem, &vq);
        mem.write_obj(40u16, vq.avail_addr().unchecked_add(2))
            .unwrap();
        let mut pool = BufferPool::new(4, 2048);
        let mut out = Vec::with_capacity(8);
        let mut stats = RingStats::default();
        assert_eq!(
            receive(&mut q, &mut pool, &mut out, 8, &mut stats, Offloads::None),
            0
        );
        assert_eq!((stats.packets, stats.bad_chains), (0, 1));
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn hostile_chains_are_returned_and_counted_not_followed() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let size = mem.last_addr().raw_value() as GuestUsize;
        vq.add_desc_chains(
            &[
                // Past the end of guest memory.
                desc(size - 10, 200, 0, 0),
                // Shorter than the header.
                desc(0x10_0000, 4, 0, 0),
                // Longer than a buffer (2048): dropped, not truncated into a wrong frame.
                desc(0x10_0000, 3000, 0, 0),
                // A loop: 3 -> 4 -> 3 ...; ends after the queue's size, frame too long or short.
                desc(0x20_0000, 600, F_NEXT, 4),
                desc(0x20_0000, 600, F_NEXT, 3),
            ],
            0,
        )
        .unwrap();
        let mut pool = BufferPool::new(8, 2048);
        let (out, stats) = receive_from(&mem, &vq, &mut pool, Offloads::None);
        assert!(out.is_empty());
        assert_eq!(stats.bad_chains, 4);
        // Every chain went back to the guest: the queue is not stuck.
        assert_eq!(used_entries(&mem, &vq).len(), 4);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn frames_go_into_the_receive_queue_merged_across_buffers() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        // Four receive chains of 64 writable bytes each.
        add_receive_chains(&vq, 4, 64);
        let mut q = split(&mem, &vq);
        let mut pool = BufferPool::new(4, 2048);
        let frame: Vec<u8> = (0..100u8).collect();
        let mut stats = RingStats::default();
        assert_eq!(
            send(&mut q, &mut pool, &[&[0xaa; 20], &frame], &mut stats),
            2
        );
        assert_eq!(pool.available(), 4);
        // The small frame: one buffer, num_buffers 1.
        let mut hdr = [0u8; NET_HDR_LEN];
        mem.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 1);
        // The big one: 12 + 100 bytes in two buffers (64 + 48), num_buffers 2.
        mem.read_slice(&mut hdr, GuestAddress(0x10_1000)).unwrap();
        assert_eq!(u16::from_le_bytes([hdr[10], hdr[11]]), 2);
        let mut got = vec![0u8; 52];
        mem.read_slice(&mut got, GuestAddress(0x10_1000 + 12))
            .unwrap();
        let mut rest = vec![0u8; 48];
        mem.read_slice(&mut rest, GuestAddress(0x10_2000)).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, frame);
        assert_eq!(used_entries(&mem, &vq), vec![(0, 32), (1, 64), (2, 48)]);

        // One buffer left (64 bytes) and a frame that needs two: it is dropped, the buffer is
        // left to the guest for the next frame.
        let mut stats = RingStats::default();
        assert_eq!(send(&mut q, &mut pool, &[&frame], &mut stats), 0);
        assert_eq!(stats.no_room, 1);
        assert_eq!(used_entries(&mem, &vq).len(), 3);
        assert_eq!(send(&mut q, &mut pool, &[&[1; 40]], &mut stats), 1);
        assert_eq!(used_entries(&mem, &vq)[3], (3, 52));
    }

    #[test]
    fn frames_batched_around_a_merged_one_keep_their_order_in_the_used_ring() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        add_receive_chains(&vq, 6, 64);
        let mut q = split(&mem, &vq);
        let mut pool = BufferPool::new(4, 2048);
        let big: Vec<u8> = (0..100u8).collect();
        let frames: [&[u8]; 4] = [&[0xa1; 20], &big, &[0xc3; 30], &[0xd4; 52]];
        let mut pkts: Vec<_> = frames
            .iter()
            .map(|f| {
                let mut p = pool.alloc().unwrap();
                p.set_frame(f).unwrap();
                p
            })
            .collect();
        let mut stats = RingStats::default();
        let sent = transmit(
            &mut q,
            &mut pkts,
            &mut pool,
            &mut stats,
            Offloads::None,
            None,
        );
        assert_eq!((sent, stats.packets, stats.no_room), (4, 4, 0));
        // In the order sent: the small frames in one chain each, the big one in two chains
        // (consecutive, as num_buffers requires).
        assert_eq!(
            used_entries(&mem, &vq),
            vec![(0, 32), (1, 64), (2, 48), (3, 42), (4, 64)]
        );
        for (chain, frame) in [(0u64, frames[0]), (3, frames[2]), (4, frames[3])] {
            let mut got = vec![0u8; NET_HDR_LEN + frame.len()];
            mem.read_slice(&mut got, GuestAddress(0x10_0000 + chain * 0x1000))
                .unwrap();
            assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "chain {chain}");
            assert_eq!(&got[NET_HDR_LEN..], frame, "chain {chain}");
        }
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn a_receive_buffer_outside_guest_memory_is_returned_and_the_frame_dropped() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let end = mem.last_addr().raw_value();
        vq.add_desc_chains(
            &[
                desc(end - 20, 64, F_WRITE, 0),
                desc(0x10_0000, 8, F_WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut q = split(&mem, &vq);
        let mut pool = BufferPool::new(4, 2048);
        let mut stats = RingStats::default();
        for _ in 0..2 {
            assert_eq!(send(&mut q, &mut pool, &[&[5; 60]], &mut stats), 0);
        }
        // The first chain runs past the end; the second cannot hold the header.
        assert_eq!(stats.bad_chains, 2);
        assert_eq!(used_entries(&mem, &vq), vec![(0, 0), (1, 0)]);
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn frames_written_while_a_migration_runs_mark_their_pages_in_the_log() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        // Two receive chains: one page-aligned, one straddling pages 0x201 and 0x202.
        vq.add_desc_chains(
            &[
                desc(0x10_0000, 2048, F_WRITE, 0),
                desc(0x20_1f00, 2048, F_WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut q = split(&mem, &vq);
        let file = crate::vhost_user::dirty_log::tests::memfd(4096);
        // Enough for 0x40_0000 bytes of memory: 1024 pages, 128 bytes.
        let log = DirtyLog::map(&file, 128, 0).unwrap();
        let mut pool = BufferPool::new(4, 2048);
        let mut pkts = Vec::new();
        for len in [100, 1000] {
            let mut p = pool.alloc().unwrap();
            p.set_frame(&vec![3; len]).unwrap();
            pkts.push(p);
        }
        let mut stats = RingStats::default();
        assert_eq!(
            transmit(
                &mut q,
                &mut pkts,
                &mut pool,
                &mut stats,
                Offloads::None,
                Some(&log)
            ),
            2
        );
        let marked: Vec<u64> = (0..log.pages()).filter(|&p| log.is_marked(p)).collect();
        assert_eq!(marked, vec![0x100, 0x201, 0x202]);
    }

    /// The Internet checksum's ones' complement sum of `data`.
    fn ones_sum(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// One guest transmit chain: the 12-byte header `hdr` (little endian), then `frame`.
    fn guest_frame(
        mem: &GuestMemoryMmap,
        vq: &MockSplitQueue<GuestMemoryMmap>,
        hdr: Offload,
        frame: &[u8],
    ) {
        let mut h = [0u8; NET_HDR_LEN];
        h[..VNET_HDR_LEN].copy_from_slice(&hdr.emit_le());
        mem.write_slice(&h, GuestAddress(0x10_0000)).unwrap();
        // The frame in 4 KiB pieces (a superframe spans several descriptors).
        let mut descs = vec![desc(0x10_0000, NET_HDR_LEN as u32, F_NEXT, 1)];
        for (i, piece) in frame.chunks(4096).enumerate() {
            let at = 0x20_0000 + i as u64 * 0x1000;
            mem.write_slice(piece, GuestAddress(at)).unwrap();
            let last = (i + 1) * 4096 >= frame.len();
            descs.push(desc(
                at,
                piece.len() as u32,
                if last { 0 } else { F_NEXT },
                i as u16 + 2,
            ));
        }
        vq.add_desc_chains(&descs, 0).unwrap();
    }

    fn tso_request(len: usize) -> Offload {
        Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: Offload::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        }
        .with_gso_if(len > 1514)
    }

    trait GsoIf {
        fn with_gso_if(self, gso: bool) -> Self;
    }
    impl GsoIf for Offload {
        fn with_gso_if(mut self, gso: bool) -> Self {
            if !gso {
                self.gso_type = Offload::GSO_NONE;
                self.gso_size = 0;
            }
            self
        }
    }

    #[test]
    fn a_guest_superframe_comes_out_whole_in_a_large_buffer_with_its_request() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 64);
        let frame: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
        guest_frame(&mem, &vq, tso_request(frame.len()), &frame);
        let mut pool = BufferPool::with_large(4, 2048, 2, 65_600);
        let (mut out, _) = receive_from(&mem, &vq, &mut pool, Offloads::PassOn);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data(), &frame[..], "untouched");
        assert_eq!(out[0].meta.offload, tso_request(frame.len()));
        assert_eq!(pool.available(), 4, "the normal buffer went back");
        for b in out.drain(..) {
            pool.free(b);
        }
        assert_eq!(pool.large_available(), 2);

        // The same superframe on a port whose guest did not negotiate offloads: dropped.
        let vq = MockSplitQueue::new(&*mem, 64);
        guest_frame(&mem, &vq, tso_request(frame.len()), &frame);
        let (out, stats) = receive_from(&mem, &vq, &mut pool, Offloads::None);
        assert!(out.is_empty());
        assert_eq!(stats.bad_chains, 1);
        assert_eq!((pool.available(), pool.large_available()), (4, 2));
    }

    #[test]
    fn a_partial_checksum_is_passed_on_or_finished_as_negotiated() {
        let mem = memory();
        // 14 Ethernet + 20 IPv4 + 20 TCP + 100 payload; the field holds a pseudo-header sum.
        let mut frame: Vec<u8> = (0..154u32).map(|i| (i * 13 + 5) as u8).collect();
        frame[34 + 16..34 + 18].copy_from_slice(&0x1234u16.to_be_bytes());
        let request = tso_request(frame.len());
        for offloads in [Offloads::PassOn, Offloads::None] {
            let vq = MockSplitQueue::new(&*mem, 16);
            guest_frame(&mem, &vq, request, &frame);
            let mut pool = BufferPool::new(4, 2048);
            let (out, _) = receive_from(&mem, &vq, &mut pool, offloads);
            assert_eq!(out.len(), 1);
            let got = out[0].data();
            if offloads == Offloads::PassOn {
                assert_eq!(got, &frame[..]);
                assert_eq!(out[0].meta.offload, request);
            } else {
                assert_eq!(out[0].meta.offload, Offload::NONE);
                assert_eq!(&got[..50], &frame[..50]);
                // With the pseudo-header sum the field held, the transport part now sums to
                // 0xffff: the checksum is complete.
                let mut with_pseudo = got[34..].to_vec();
                with_pseudo.extend_from_slice(&0x1234u16.to_be_bytes());
                assert_eq!(ones_sum(&with_pseudo), 0xffff);
            }
        }
    }

    #[test]
    fn a_superframe_to_the_guest_carries_its_request_across_merged_buffers() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 64);
        // 48 receive buffers of 1536 bytes: 60 KiB needs 41 of them.
        add_receive_chains(&vq, 48, 1536);
        let mut q = split(&mem, &vq);
        let mut pool = BufferPool::with_large(4, 2048, 1, 65_600);
        let frame: Vec<u8> = (0..61_440u32).map(|i| (i % 251) as u8).collect();
        let mut big = pool.alloc_large().unwrap();
        big.set_frame(&frame).unwrap();
        big.meta.offload = tso_request(frame.len());
        let mut pkts = vec![big];
        let mut stats = RingStats::default();
        assert_eq!(
            transmit(
                &mut q,
                &mut pkts,
                &mut pool,
                &mut stats,
                Offloads::PassOn,
                None
            ),
            1
        );
        let mut hdr = [0u8; NET_HDR_LEN];
        mem.read_slice(&mut hdr, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(
            Offload::parse_le(hdr.first_chunk().unwrap()),
            tso_request(frame.len())
        );
        let buffers = (NET_HDR_LEN + frame.len()).div_ceil(1536);
        assert_eq!(usize::from(u16::from_le_bytes([hdr[10], hdr[11]])), buffers);
        let mut got = Vec::new();
        for i in 0..buffers as u64 {
            let mut b = vec![0u8; 1536];
            mem.read_slice(&mut b, GuestAddress(0x10_0000 + i * 0x1000))
                .unwrap();
            got.extend_from_slice(&b);
        }
        assert_eq!(&got[NET_HDR_LEN..NET_HDR_LEN + frame.len()], &frame[..]);
        assert_eq!(used_entries(&mem, &vq).len(), buffers);

        // Without offloads negotiated the header stays zero (the graph segmented before).
        let mut small = pool.alloc().unwrap();
        small.set_frame(&[1; 60]).unwrap();
        small.meta.offload = tso_request(60);
        let mut pkts = vec![small];
        assert_eq!(
            transmit(
                &mut q,
                &mut pkts,
                &mut pool,
                &mut stats,
                Offloads::None,
                None
            ),
            1
        );
        let at = 0x10_0000 + buffers as u64 * 0x1000;
        mem.read_slice(&mut hdr, GuestAddress(at)).unwrap();
        assert_eq!(&hdr[..10], &[0; 10]);
    }

    #[test]
    fn garbage_rings_only_cost_frames() {
        use crate::vhost_user::split::tests::Garbage;
        let mem = memory();
        let mut g = Garbage(0x2545_f491_4f6c_dd1d);
        let mut pool = BufferPool::with_large(64, 2048, 2, 65_600);
        let mut total = RingStats::default();
        for round in 0..200 {
            let vq = MockSplitQueue::new(&*mem, 16);
            g.fill(&mem, &vq, 18);
            mem.write_obj((g.next() % 20) as u16, GuestAddress(vq.avail_addr().0 + 2))
                .unwrap();
            // The last round's used index (the mock leaves it).
            mem.write_obj(0u16, vq.used_addr().unchecked_add(2))
                .unwrap();
            let mut q = split(&mem, &vq);
            let mut stats = RingStats::default();
            if round % 2 == 0 {
                let mut out = Vec::new();
                receive(
                    &mut q,
                    &mut pool,
                    &mut out,
                    32,
                    &mut stats,
                    Offloads::PassOn,
                );
                for b in out.drain(..) {
                    pool.free(b);
                }
            } else {
                let mut pkts = Vec::new();
                for len in [60, 1500, 9000, 60] {
                    let mut p = if len > 2000 {
                        pool.alloc_large().unwrap()
                    } else {
                        pool.alloc().unwrap()
                    };
                    p.set_frame(&vec![7; len]).unwrap();
                    pkts.push(p);
                }
                transmit(
                    &mut q,
                    &mut pkts,
                    &mut pool,
                    &mut stats,
                    Offloads::PassOn,
                    None,
                );
            }
            // Every buffer came back; whatever was used is published.
            assert_eq!((pool.available(), pool.large_available()), (64, 2));
            assert_eq!(used_entries(&mem, &vq).len(), usize::from(q.next_used()));
            total.packets += stats.packets;
            total.bad_chains += stats.bad_chains;
            total.no_room += stats.no_room;
        }
        // Some of the garbage made frames, most made faults.
        assert!(
            total.packets > 0 && total.bad_chains > total.packets,
            "{total:?}"
        );
    }

    /// Direct chains whose buffers alternate between two regions of guest memory: each is
    /// found in its region (the one found last, or the other), both ways, in one burst.
    #[test]
    fn direct_chains_in_alternating_regions_pass_both_ways() {
        let mem = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x20_0000),
                (GuestAddress(0x40_0000), 0x20_0000),
            ])
            .unwrap(),
        );
        let at = |i: u64| if i % 2 == 0 { 0x10_0000 } else { 0x40_0000 } + i * 0x1000;
        let frames: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i + 1; 64]).collect();
        let vq = MockSplitQueue::new(&*mem, 16);
        let descs: Vec<_> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let a = at(i as u64);
                mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(a)).unwrap();
                mem.write_slice(f, GuestAddress(a + NET_HDR_LEN as u64))
                    .unwrap();
                desc(a, (NET_HDR_LEN + f.len()) as u32, 0, 0)
            })
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut pool = BufferPool::new(8, 2048);
        let (mut out, stats) = receive_from(&mem, &vq, &mut pool, Offloads::None);
        assert_eq!(
            out.iter().map(|b| b.data().to_vec()).collect::<Vec<_>>(),
            frames
        );
        assert_eq!((stats.packets, stats.bad_chains), (6, 0));
        for b in out.drain(..) {
            pool.free(b);
        }

        let vq = MockSplitQueue::new(&*mem, 16);
        let descs: Vec<_> = (0..6u64).map(|i| desc(at(i), 2048, F_WRITE, 0)).collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q = split(&mem, &vq);
        let mut stats = RingStats::default();
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        assert_eq!(send(&mut q, &mut pool, &refs, &mut stats), 6);
        for (i, f) in frames.iter().enumerate() {
            let mut got = vec![0u8; f.len()];
            mem.read_slice(&mut got, GuestAddress(at(i as u64) + NET_HDR_LEN as u64))
                .unwrap();
            assert_eq!(&got, f);
        }
        assert_eq!(used_entries(&mem, &vq).len(), 6);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn frames_pass_in_buffers_across_adjacent_regions_of_guest_memory() {
        // Guest memory in two backends, one after the other (as a guest with two memory
        // backends, or DPDK's virtio-user with a region per hugepage, lays it out).
        let mem = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x20_0000),
                (GuestAddress(0x20_0000), 0x20_0000),
            ])
            .unwrap(),
        );
        let boundary = 0x20_0000u64;
        let frame: Vec<u8> = (0..200u8).collect();

        // From the guest: header and frame in one buffer that crosses the boundary 5 bytes
        // into the header.
        let vq = MockSplitQueue::new(&*mem, 16);
        let start = boundary - 5;
        mem.write_slice(&[0; NET_HDR_LEN], GuestAddress(start))
            .unwrap();
        mem.write_slice(&frame, GuestAddress(start + NET_HDR_LEN as u64))
            .unwrap();
        vq.add_desc_chains(&[desc(start, (NET_HDR_LEN + frame.len()) as u32, 0, 0)], 0)
            .unwrap();
        let mut pool = BufferPool::new(4, 2048);
        let (mut out, stats) = receive_from(&mem, &vq, &mut pool, Offloads::None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data(), &frame[..]);
        assert_eq!(stats.bad_chains, 0);
        for b in out.drain(..) {
            pool.free(b);
        }

        // To the guest: a receive buffer that crosses it 7 bytes into the header, and one
        // that crosses it inside the frame.
        for start in [boundary - 7, boundary - 100] {
            let vq = MockSplitQueue::new(&*mem, 16);
            vq.add_desc_chains(&[desc(start, 2048, F_WRITE, 0)], 0)
                .unwrap();
            let mut q = split(&mem, &vq);
            let mut stats = RingStats::default();
            assert_eq!(send(&mut q, &mut pool, &[&frame], &mut stats), 1);
            assert_eq!(stats.bad_chains, 0);
            let mut got = vec![0u8; NET_HDR_LEN + frame.len()];
            mem.read_slice(&mut got, GuestAddress(start)).unwrap();
            assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
            assert_eq!(&got[NET_HDR_LEN..], &frame[..]);
            assert_eq!(
                used_entries(&mem, &vq),
                vec![(0, (NET_HDR_LEN + frame.len()) as u32)]
            );
        }
        assert_eq!(pool.available(), 4);
    }
}
