//! The split virtqueue (virtio 1.x §2.7) of one guest ring, hand-written on host pointers.
//!
//! # Why not `virtio_queue::Queue`
//!
//! The project's rule is to hand-write the hot path only where a benchmark shows the library
//! costs; this is such a place. `dpservice-vhost-bench` under callgrind (BENCHMARKS.md,
//! "vhost-user ring copies") put the ring copies over `virtio_queue::Queue` and `vm_memory` at
//! 1555 / 1704 instructions per packet guest → us (64 / 1400 B) and 1925 / 2223 us → guest,
//! more than the whole graph's encap path. Most of it was virtio-queue: `Queue::add_used` 29 %
//! (a used element and the used index written through vm-memory for every packet, each access
//! a region lookup), `DescriptorChain::next` 21 %, `pop_descriptor_chain` 17 %. Here the rings
//! are resolved to host pointers once when the ring is built, descriptors are read with two
//! loads and one check against the region found last, used elements are written as chains
//! complete but the used index is published once per burst ([`SplitRing::publish`]), and the
//! avail index is read once per burst.
//!
//! After, the same bench: 517 / 666 and 603 / 901. Both include the bench's own driver,
//! which wrote its avail entries through vm-memory's `write_obj` (~260 instructions per packet
//! in the new binary, ~560 in the old one, inlined differently). With the driver writing
//! through a host pointer (as the bench now does) the rings alone: virtio-queue 996 / 1145 and
//! 1292 / 1590, this ring 255 / 404 and 340 / 638, a quarter; wall clock, 64 B guest → us
//! from 6–10 to ~36 Mpps on one core, us → guest from 6.5–8 to 21–28 Mpps.
//!
//! # The guest is not trusted
//!
//! The guest writes its rings while we read them. Nothing here forms a `&`/`&mut` reference
//! to guest bytes: descriptors and ring entries are read with volatile loads, the indices with
//! atomics, frames copied with `ptr::copy_nonoverlapping` after bounds checks (what
//! vm-memory's `VolatileSlice` does). Every guest address and length is checked against the
//! memory map: a ring or table must lie inside one mapped region, and so must each buffer
//! (`[addr, addr + len)`). Walks are bounded (at most the ring's size of descriptors in the
//! ring's table, at most the table's length in an indirect one, no nested indirect table), and
//! indices are checked against the table they index. A hostile guest can make us drop its
//! frames ([`Fault`]), not make us read or write outside its regions, loop or panic.
//!
//! [`Chain`] and [`Desc`] are plain values (region index and offset, no pointer): every access
//! through them is checked again against this ring's own region table, so one from another
//! ring, or kept after a ring was rebuilt, can at worst fail an access.

use std::ptr;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Arc;

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

/// The descriptor continues in `next`.
pub const VRING_DESC_F_NEXT: u16 = 1;
/// The buffer is device write-only (the guest's receive buffers).
pub const VRING_DESC_F_WRITE: u16 = 2;
/// The buffer is a table of descriptors.
pub const VRING_DESC_F_INDIRECT: u16 = 4;
/// In `used.flags`: the guest need not kick us.
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// In `avail.flags`: the guest does not want to be interrupted (without EVENT_IDX).
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// The largest split ring (virtio 1.x).
pub const MAX_SIZE: u16 = 32768;

const DESC_LEN: usize = 16;

/// Asks the CPU to bring the two lines from `at` into its cache, to be written (exclusive) or
/// read.
#[inline(always)]
fn prefetch_lines(at: *const u8, for_write: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
        let (a, b) = (at.cast::<i8>(), at.wrapping_add(64).cast::<i8>());
        // SAFETY: a prefetch never faults and changes no memory, whatever the address.
        unsafe {
            if for_write {
                _mm_prefetch::<_MM_HINT_ET0>(a);
                _mm_prefetch::<_MM_HINT_ET0>(b);
            } else {
                _mm_prefetch::<_MM_HINT_T0>(a);
                _mm_prefetch::<_MM_HINT_T0>(b);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, for_write);
}

/// Why a chain (or the ring) cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `avail.idx` ran more than the ring's size ahead of us: the ring is broken.
    AvailIndex,
    /// A head or `next` index outside its table.
    Index,
    /// More descriptors than the table has: a loop.
    TooLong,
    /// An indirect table that is empty, not a multiple of 16 bytes, longer than the ring, has
    /// `NEXT` set, or lies outside guest memory.
    IndirectTable,
    /// An indirect table inside an indirect table.
    NestedIndirect,
    /// A buffer not inside guest memory (it may run across adjacent regions).
    OutsideMemory,
}

/// One mapped region of guest memory.
#[derive(Clone, Copy, Debug)]
struct Region {
    /// Guest physical address.
    start: u64,
    len: u64,
    host: *mut u8,
}

impl Region {
    /// The offset of `[addr, addr + len)` in this region, if it lies inside.
    #[inline(always)]
    fn offset_of(&self, addr: u64, len: u64) -> Option<usize> {
        let off = addr.wrapping_sub(self.start);
        // `off <= self.len` also rejects `addr < start` (it wrapped to a huge value).
        (off <= self.len && len <= self.len - off).then_some(off as usize)
    }
}

/// A descriptor of a chain, resolved: its buffer lies inside one region of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    region: usize,
    /// Where the buffer starts in the region.
    offset: usize,
    addr: u64,
    len: u32,
    write: bool,
}

impl Desc {
    /// The buffer's guest physical address.
    #[inline]
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// The buffer's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the buffer is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the device may write it (a receive buffer) rather than read it.
    #[inline]
    pub fn is_write_only(&self) -> bool {
        self.write
    }
}

/// Where a chain's walk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    head: u16,
    /// The next descriptor's index in the current table.
    next: u32,
    /// Descriptors that may still be read from the current table.
    budget: u32,
    /// The indirect table the walk is in (region, offset, descriptors), if any.
    indirect: Option<(usize, usize, u32)>,
    done: bool,
    /// What is left of a buffer that runs on past the end of its region into the next one.
    rest: Option<Rest>,
}

/// A chain of one descriptor whose buffer lies inside one region of guest memory, resolved
/// to its host address ([`SplitRing::take_direct`]). Only valid while the ring it came from
/// lives (the ring keeps the mapping): the copies through it happen within the burst that
/// took it.
#[derive(Clone, Copy, Debug)]
pub struct Direct {
    /// The chain's head index: what is returned in the used ring.
    pub head: u16,
    /// Host address of the buffer: `len` bytes inside a mapping of guest memory.
    at: *mut u8,
    len: u32,
}

impl Default for Direct {
    fn default() -> Self {
        Direct {
            head: 0,
            at: ptr::null_mut(),
            len: 0,
        }
    }
}

impl Direct {
    /// The buffer's length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the buffer is empty.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's host address. Reading or writing `len()` bytes from it is sound for as
    /// long as the ring it came from lives, with volatile or `ptr::copy` accesses (the guest
    /// may change the bytes at any time: no reference to them may be formed).
    #[inline(always)]
    pub fn host(&self) -> *mut u8 {
        self.at
    }
}

/// The part of a descriptor's buffer not yet returned: a buffer across the boundary of two
/// adjacent regions of guest memory (a guest's RAM in several memory backends, DPDK's
/// virtio-user with one region per hugepage) is returned as one [`Desc`] per region, as
/// DPDK's vhost library splits it. The walk goes on at `next` (or ends, `last`) after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rest {
    addr: u64,
    len: u32,
    write: bool,
    next: u32,
    last: bool,
}

/// `Chain::next` while a [`Rest`] is pending: never inside a table, so the inline path of
/// [`SplitRing::next_desc`] leaves the chain to [`SplitRing::next_desc_any`].
const REST_PENDING: u32 = u32::MAX;

impl Chain {
    /// The chain's head index: what is returned in the used ring.
    #[inline]
    pub fn head(&self) -> u16 {
        self.head
    }
}

/// The device's half of one split virtqueue in guest memory.
pub struct SplitRing {
    /// Keeps the mappings the pointers below point into.
    mem: Arc<GuestMemoryMmap>,
    regions: Box<[Region]>,
    /// The region last found (guests have 1–3).
    last: usize,
    size: u16,
    /// Host pointers of the descriptor table, the avail ring (flags, idx, ring, used_event)
    /// and the used ring (flags, idx, ring, avail_event).
    desc: *const u8,
    avail: *const u8,
    used: *mut u8,
    used_addr: u64,
    event_idx: bool,
    next_avail: u16,
    /// The guest's `avail.idx` as last read.
    avail_idx: u16,
    /// The last read of `avail.idx` by [`SplitRing::has_available`] found it broken.
    index_broken: bool,
    /// Where the next used element goes.
    next_used: u16,
    /// `used.idx` as we last stored it.
    published: u16,
    /// `next_used` at the last [`SplitRing::needs_notification`].
    notified: u16,
    /// What we keep in `used.flags`.
    used_flags: u16,
}

// SAFETY: the raw pointers point into the mappings of `mem` (an `Arc` of a `Send + Sync`
// memory map) that the ring owns a reference to; guest memory is only accessed through
// volatile and atomic operations, so moving the ring to another thread is fine.
unsafe impl Send for SplitRing {}

impl std::fmt::Debug for SplitRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitRing")
            .field("size", &self.size)
            .field("next_avail", &self.next_avail)
            .field("next_used", &self.next_used)
            .field("event_idx", &self.event_idx)
            .finish_non_exhaustive()
    }
}

impl SplitRing {
    /// The ring of `size` entries whose descriptor table, avail ring and used ring are at the
    /// guest physical addresses `desc`, `avail` and `used` in `mem`, starting at `next_avail`
    /// (SET_VRING_BASE; the used ring continues there too). `None` unless `size` is a power of
    /// two up to 32768, the addresses are aligned (16, 2, 4) and each of the three lies inside
    /// one mapped region.
    pub fn new(
        mem: Arc<GuestMemoryMmap>,
        size: u16,
        desc: u64,
        avail: u64,
        used: u64,
        next_avail: u16,
        event_idx: bool,
    ) -> Option<SplitRing> {
        if !size.is_power_of_two() || size > MAX_SIZE {
            return None;
        }
        if desc % 16 != 0 || avail % 2 != 0 || used % 4 != 0 {
            return None;
        }
        let regions: Box<[Region]> = mem
            .iter()
            .filter_map(|r| {
                let host = r.get_host_address(MemoryRegionAddress(0)).ok()?;
                Some(Region {
                    start: r.start_addr().0,
                    len: r.len(),
                    host,
                })
            })
            .collect();
        let n = u64::from(size);
        let resolve = |addr: u64, len: u64, align: usize| -> Option<*mut u8> {
            let host = regions.iter().find_map(|r| {
                let off = r.offset_of(addr, len)?;
                // SAFETY: `off + len <= r.len`: inside the region's mapping.
                Some(unsafe { r.host.add(off) })
            })?;
            // Volatile and atomic accesses need the host address aligned too (a region whose
            // guest address is not page aligned could break that).
            (host as usize % align == 0).then_some(host)
        };
        let desc_host = resolve(desc, 16 * n, 16)?;
        // flags, idx, ring, used_event.
        let avail_host = resolve(avail, 4 + 2 * n + 2, 2)?;
        // flags, idx, ring, avail_event.
        let used_host = resolve(used, 4 + 8 * n + 2, 4)?;
        Some(SplitRing {
            mem,
            regions,
            last: 0,
            size,
            desc: desc_host,
            avail: avail_host,
            used: used_host,
            used_addr: used,
            event_idx,
            next_avail,
            avail_idx: next_avail,
            index_broken: false,
            next_used: next_avail,
            published: next_avail,
            notified: next_avail,
            used_flags: 0,
        })
    }

    /// The guest memory the ring runs over.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The number of entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Where the guest's next chain is in the avail ring (GET_VRING_BASE's answer).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// Where the next used element goes.
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// The used ring's guest address and length (flags, idx, the elements, avail_event): what
    /// the dirty log marks after a burst wrote it.
    pub fn used_ring(&self) -> (u64, usize) {
        (self.used_addr, 4 + 8 * usize::from(self.size) + 2)
    }

    #[inline(always)]
    fn mask(&self) -> u16 {
        self.size - 1
    }

    /// The avail ring's `u16` at byte `at`.
    #[inline(always)]
    fn avail_u16(&self, at: usize) -> &AtomicU16 {
        // SAFETY: every caller passes `at` < 4 + 2 * size + 2 and even: inside the avail ring,
        // which `new` checked lies in one mapped region kept alive by `self.mem`, with a host
        // address aligned to 2. The reference is to an atomic (an `UnsafeCell`), not to plain
        // bytes: the guest changing it concurrently is what atomics are for.
        unsafe { AtomicU16::from_ptr(self.avail.add(at).cast_mut().cast::<u16>()) }
    }

    /// The used ring's `u16` at byte `at`.
    #[inline(always)]
    fn used_u16(&self, at: usize) -> &AtomicU16 {
        // SAFETY: as in `avail_u16`, for the used ring (4 + 8 * size + 2 bytes, host address
        // aligned to 4, `at` even).
        unsafe { AtomicU16::from_ptr(self.used.add(at).cast::<u16>()) }
    }

    /// Takes the guest's next chain, if it made one available: its head, to walk with
    /// [`SplitRing::next_desc`] and return with [`SplitRing::add_used`] (or give back with
    /// [`SplitRing::undo`]). `avail.idx` is read only when the chains seen before are taken,
    /// so once per burst. `Err` when the guest's `avail.idx` is broken (more than the ring's
    /// size ahead): nothing can be taken from the ring any more.
    #[inline]
    pub fn pop(&mut self) -> Result<Option<Chain>, Fault> {
        if !self.has_available() {
            return Ok(None);
        }
        // The read just made found the index broken (a broken read takes nothing in).
        if self.index_broken {
            return Err(Fault::AvailIndex);
        }
        let slot = usize::from(self.next_avail & self.mask());
        let head = u16::from_le(self.avail_u16(4 + 2 * slot).load(Ordering::Relaxed));
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(Chain {
            head,
            next: u32::from(head),
            budget: u32::from(self.size),
            indirect: None,
            done: false,
            rest: None,
        }))
    }

    /// Whether the guest made chains available that are not taken yet (`avail.idx` is read
    /// only when the chains seen before are all taken). A broken avail index says true:
    /// [`SplitRing::pop`] reports it.
    #[inline]
    pub fn has_available(&mut self) -> bool {
        if self.next_avail == self.avail_idx {
            let idx = u16::from_le(self.avail_u16(2).load(Ordering::Acquire));
            self.index_broken = idx.wrapping_sub(self.next_avail) > self.size;
            if self.index_broken {
                return true;
            }
            self.avail_idx = idx;
        }
        self.next_avail != self.avail_idx
    }

    /// Whether chains seen at the last read of `avail.idx` are still to be taken (no load of
    /// the guest's index: a burst that ran out of them ends, and the next one reads it).
    #[inline(always)]
    pub fn known_available(&self) -> bool {
        // A broken index counts: `pop` is to report it.
        self.next_avail != self.avail_idx || self.index_broken
    }

    /// Takes the guest's next chains, up to `out.len()` of them, for as long as each is a
    /// [`Direct`] one: a single descriptor (no `NEXT`, no `INDIRECT`), device-writable if
    /// `write` (a receive buffer) and read-only if not (a transmit buffer), `min_len` (at
    /// least 1) to `max_len` bytes long, inside one region of guest memory. Returns how many went into
    /// `out`; the first chain that is not direct stays in the ring for [`SplitRing::pop`] and
    /// the general walk (as do all when the avail index is broken: `pop` reports it).
    ///
    /// Most chains are direct: a transmitted frame and its header in one buffer (Linux and
    /// DPDK's virtio PMD put them together), one receive buffer per chain (mergeable
    /// buffers). Resolved here in one pass, a chain is read once — its avail entry and its
    /// descriptor — instead of once to prefetch and again to walk it.
    ///
    /// The same pass fetches the first two lines of each buffer, for writing or for reading,
    /// and reads its first byte. Why: a buffer is touched once, by one copy, and with small
    /// pages its translation misses the TLB too. Taken one frame at a time those misses are
    /// serialised behind the work of each frame (a few hundred instructions: the CPU's window
    /// holds less than a frame); in one short loop they overlap. The byte is read because a
    /// prefetch that misses the TLB may be dropped (it was, on the EPYC VM measured: prefetches
    /// alone changed nothing); read, not written: zeroing it instead (it is the header's, which
    /// the frame overwrites) cost a third of the rate. PVP at 64 bytes with 4 KiB guest pages:
    /// 3.5 → 7.1–7.7 Mpps (BENCHMARKS.md, "vhost-user PVP").
    #[inline]
    pub fn take_direct(
        &mut self,
        out: &mut [Direct],
        write: bool,
        min_len: u32,
        max_len: u32,
    ) -> usize {
        // An empty buffer has no byte to read; none is direct.
        let min_len = min_len.max(1);
        if !self.has_available() {
            return 0;
        }
        // At most the ring's size: `has_available` checked the index it read.
        let known = usize::from(self.avail_idx.wrapping_sub(self.next_avail));
        let want = if write { VRING_DESC_F_WRITE } else { 0 };
        let out = match out.get_mut(..known) {
            Some(part) => part,
            None => out,
        };
        // The ring's fields in locals: the loop stores through `out` and may call
        // `find_other`, after which the compiler would load them again for every chain
        // (callgrind: 58 → 47 instructions per chain, `dpservice-vhost-bench`).
        let (size, mask, next_avail) = (self.size, self.mask(), self.next_avail);
        let (desc, avail) = (self.desc, self.avail);
        let mut region = self.regions.get(self.last).copied();
        let mut taken = 0u16;
        let mut touched = 0u8;
        for d in out.iter_mut() {
            let slot = usize::from(next_avail.wrapping_add(taken) & mask);
            // SAFETY: slot < size: the entry is inside the avail ring (see `avail_u16`).
            let entry = unsafe { AtomicU16::from_ptr(avail.add(4 + 2 * slot).cast_mut().cast()) };
            let head = u16::from_le(entry.load(Ordering::Relaxed));
            if head >= size {
                break;
            }
            // SAFETY: head < size: inside the descriptor table (see `read_desc`).
            let (addr, len, flags, _) =
                unsafe { Self::decode(desc.add(DESC_LEN * usize::from(head))) };
            if flags & (VRING_DESC_F_NEXT | VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE) != want
                || len < min_len
                || len > max_len
            {
                break;
            }
            let (r, off) = match region.and_then(|r| Some((r, r.offset_of(addr, u64::from(len))?)))
            {
                Some(found) => found,
                None => {
                    // Another region (`find_other` makes it the last one found).
                    let Some((i, off)) = self.find_other(addr, u64::from(len)) else {
                        break;
                    };
                    let Some(r) = self.regions.get(i).copied() else {
                        break;
                    };
                    region = Some(r);
                    (r, off)
                }
            };
            // SAFETY: `off + len <= r.len` (`offset_of`): inside the region's mapping.
            let at = unsafe { r.host.add(off) };
            prefetch_lines(at, write);
            // SAFETY: as above, and len >= 1: the byte is inside the buffer.
            touched ^= unsafe { ptr::read_volatile(at) };
            *d = Direct { head, at, len };
            taken += 1;
        }
        std::hint::black_box(touched);
        self.next_avail = self.next_avail.wrapping_add(taken);
        usize::from(taken)
    }

    /// Gives back the last `n` chains taken (not returned used): the guest keeps them for
    /// the next frame.
    #[inline]
    pub fn undo(&mut self, n: u16) {
        self.next_avail = self.next_avail.wrapping_sub(n);
    }

    /// The next descriptor of `chain` (an indirect table is followed, not returned), or
    /// `None` at its end. After an `Err` the chain is unusable: return it with length 0.
    #[inline(always)]
    pub fn next_desc(&mut self, chain: &mut Chain) -> Result<Option<Desc>, Fault> {
        if chain.done {
            return Ok(None);
        }
        // The common case inline: a descriptor of the ring's table, in the region of the
        // last one. Anything else (an indirect table, another region, a fault) is decided
        // by `next_desc_any`, which reads the descriptor again and checks everything.
        if chain.indirect.is_none() && chain.budget > 0 && chain.next < u32::from(self.size) {
            // SAFETY: next < size: the descriptor is inside the ring's table, which `new`
            // checked lies in one region (kept mapped by `self.mem`), 16-aligned.
            let (addr, len, flags, next) =
                unsafe { Self::decode(self.desc.add(DESC_LEN * chain.next as usize)) };
            if flags & VRING_DESC_F_INDIRECT == 0 {
                let last = self.last;
                if let Some(offset) = self
                    .regions
                    .get(last)
                    .and_then(|r| r.offset_of(addr, u64::from(len)))
                {
                    chain.budget -= 1;
                    if flags & VRING_DESC_F_NEXT != 0 {
                        chain.next = u32::from(next);
                    } else {
                        chain.done = true;
                    }
                    return Ok(Some(Desc {
                        region: last,
                        offset,
                        addr,
                        len,
                        write: flags & VRING_DESC_F_WRITE != 0,
                    }));
                }
            }
        }
        self.next_desc_any(chain)
    }

    /// [`SplitRing::next_desc`] in general.
    #[inline(never)]
    fn next_desc_any(&mut self, chain: &mut Chain) -> Result<Option<Desc>, Fault> {
        loop {
            if chain.done {
                return Ok(None);
            }
            if let Some(rest) = chain.rest.take() {
                return self.buffer(chain, rest);
            }
            if chain.budget == 0 {
                chain.done = true;
                return Err(Fault::TooLong);
            }
            chain.budget -= 1;
            let (addr, len, flags, next) = match self.read_desc(chain) {
                Some(d) => d,
                None => {
                    chain.done = true;
                    return Err(Fault::Index);
                }
            };
            if flags & VRING_DESC_F_INDIRECT != 0 {
                chain.done = true;
                if chain.indirect.is_some() {
                    return Err(Fault::NestedIndirect);
                }
                let count = len / DESC_LEN as u32;
                if flags & VRING_DESC_F_NEXT != 0
                    || len == 0
                    || len % DESC_LEN as u32 != 0
                    || count > u32::from(self.size)
                {
                    return Err(Fault::IndirectTable);
                }
                let Some((region, offset)) = self.find(addr, u64::from(len)) else {
                    return Err(Fault::IndirectTable);
                };
                let align = self
                    .regions
                    .get(region)
                    .map_or(1, |r| r.host as usize + offset);
                if align % 8 != 0 {
                    // Descriptors are read as two aligned 64-bit words.
                    return Err(Fault::IndirectTable);
                }
                *chain = Chain {
                    head: chain.head,
                    next: 0,
                    budget: count,
                    indirect: Some((region, offset, count)),
                    done: false,
                    rest: None,
                };
                continue;
            }
            return self.buffer(
                chain,
                Rest {
                    addr,
                    len,
                    write: flags & VRING_DESC_F_WRITE != 0,
                    next: u32::from(next),
                    last: flags & VRING_DESC_F_NEXT == 0,
                },
            );
        }
    }

    /// The buffer `b` as a [`Desc`] — or its first piece, if it runs on past the end of the
    /// region it starts in (the rest is kept in `chain` for the next call: at most one piece
    /// per region, each at least a byte long). A buffer that leaves guest memory is a fault
    /// when the walk gets there.
    #[inline(never)]
    fn buffer(&mut self, chain: &mut Chain, b: Rest) -> Result<Option<Desc>, Fault> {
        let whole = self
            .find(b.addr, u64::from(b.len))
            .map(|(r, o)| (r, o, b.len));
        let Some((region, offset, len)) = whole.or_else(|| self.first_piece(b.addr, b.len)) else {
            chain.done = true;
            return Err(Fault::OutsideMemory);
        };
        if len < b.len {
            chain.rest = Some(Rest {
                addr: b.addr + u64::from(len),
                len: b.len - len,
                ..b
            });
            chain.next = REST_PENDING;
        } else if b.last {
            chain.done = true;
        } else {
            chain.next = b.next;
        }
        Ok(Some(Desc {
            region,
            offset,
            addr: b.addr,
            len,
            write: b.write,
        }))
    }

    /// The region `addr` lies in, the offset there and the bytes of `[addr, addr + len)` it
    /// holds (fewer than `len`: the buffer runs on past its end).
    #[cold]
    fn first_piece(&mut self, addr: u64, len: u32) -> Option<(usize, usize, u32)> {
        let (i, off) = self
            .regions
            .iter()
            .enumerate()
            .find_map(|(i, r)| Some((i, r.offset_of(addr, 1)?)))?;
        let r = self.regions.get(i)?;
        // Below `len` (else the whole buffer would be in the region), so it fits u32.
        let piece = (r.len - off as u64).min(u64::from(len)) as u32;
        self.last = i;
        Some((i, off, piece))
    }

    /// The descriptor `chain.next` of the chain's table: (addr, len, flags, next); `None` if
    /// the index is outside the table.
    #[inline(always)]
    fn read_desc(&self, chain: &Chain) -> Option<(u64, u32, u16, u16)> {
        let at = match chain.indirect {
            None => {
                if chain.next >= u32::from(self.size) {
                    return None;
                }
                // SAFETY: next < size: the descriptor is inside the table, which `new`
                // checked lies in one region (kept mapped by `self.mem`).
                unsafe { self.desc.add(DESC_LEN * chain.next as usize) }
            }
            Some((region, offset, count)) => {
                let r = self.regions.get(region)?;
                let end = (offset as u64).checked_add(u64::from(chain.next + 1) * 16)?;
                if chain.next >= count || end > r.len {
                    return None;
                }
                // SAFETY: just checked: the descriptor lies inside the region's mapping.
                unsafe { r.host.add(offset + DESC_LEN * chain.next as usize) }
            }
        };
        // SAFETY: `at` points at 16 bytes inside a mapped region (above), aligned to 8 (the
        // table is 16-aligned, an indirect one was checked for 8 when entered).
        Some(unsafe { Self::decode(at) })
    }

    /// The descriptor at `at`: (addr, len, flags, next).
    ///
    /// # Safety
    /// `at` must point at 16 bytes inside a mapped region of guest memory, aligned to 8.
    #[inline(always)]
    unsafe fn decode(at: *const u8) -> (u64, u32, u16, u16) {
        // SAFETY: the caller's promise. Volatile: the guest may change the descriptor while we
        // read it; the values are copied out before they are used.
        let (a, b) = unsafe {
            (
                ptr::read_volatile(at.cast::<u64>()),
                ptr::read_volatile(at.add(8).cast::<u64>()),
            )
        };
        let b = u64::from_le(b);
        (
            u64::from_le(a),
            b as u32,
            (b >> 32) as u16,
            (b >> 48) as u16,
        )
    }

    /// The region and offset of `[addr, addr + len)`, if it lies inside one region.
    #[inline(always)]
    fn find(&mut self, addr: u64, len: u64) -> Option<(usize, usize)> {
        if let Some(off) = self
            .regions
            .get(self.last)
            .and_then(|r| r.offset_of(addr, len))
        {
            return Some((self.last, off));
        }
        self.find_other(addr, len)
    }

    #[inline(never)]
    fn find_other(&mut self, addr: u64, len: u64) -> Option<(usize, usize)> {
        let (i, off) = self
            .regions
            .iter()
            .enumerate()
            .find_map(|(i, r)| Some((i, r.offset_of(addr, len)?)))?;
        self.last = i;
        Some((i, off))
    }

    /// The host address of `n` bytes at `at` in `d`'s buffer, checked against the buffer and
    /// this ring's own region table.
    #[inline(always)]
    pub(super) fn host(&self, d: &Desc, at: usize, n: usize) -> Option<*mut u8> {
        let end = at.checked_add(n)?;
        if end > d.len as usize {
            return None;
        }
        let r = self.regions.get(d.region)?;
        let start = d.offset.checked_add(at)?;
        if (start as u64).checked_add(n as u64)? > r.len {
            return None;
        }
        // SAFETY: start + n <= r.len: inside the region's mapping, kept alive by `self.mem`.
        Some(unsafe { r.host.add(start) })
    }

    /// Copies `dst.len()` bytes from `at` in `d`'s buffer into `dst`; false (nothing copied)
    /// unless they lie inside the buffer.
    #[inline]
    pub fn read(&self, d: &Desc, at: usize, dst: &mut [u8]) -> bool {
        let Some(src) = self.host(d, at, dst.len()) else {
            return false;
        };
        // SAFETY: `src..src + dst.len()` is inside a mapping of guest memory (checked by
        // `host`), which never overlaps our own buffer `dst`; no reference to guest bytes is
        // formed (the guest may change them while we copy: we get some bytes, never UB here).
        unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` to `at` in `d`'s buffer; false (nothing written) unless it fits inside.
    #[inline]
    pub fn write(&self, d: &Desc, at: usize, src: &[u8]) -> bool {
        let Some(dst) = self.host(d, at, src.len()) else {
            return false;
        };
        // SAFETY: as in `read`, the other way.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        true
    }

    /// Returns the chain `head` to the guest, `len` bytes written into it. The element is
    /// written now; the guest sees it after [`SplitRing::publish`].
    #[inline]
    pub fn add_used(&mut self, head: u16, len: u32) {
        let slot = usize::from(self.next_used & self.mask());
        // SAFETY: slot < size: the element (8 bytes at 4 + 8 * slot) is inside the used ring,
        // which `new` checked lies in one mapped region (kept by `self.mem`), its host address
        // aligned to 4. Volatile: the guest may read it at any time.
        unsafe {
            let e = self.used.add(4 + 8 * slot);
            ptr::write_volatile(e.cast::<u32>(), u32::from(head).to_le());
            ptr::write_volatile(e.add(4).cast::<u32>(), len.to_le());
        }
        self.next_used = self.next_used.wrapping_add(1);
    }

    /// Makes the used elements added so far visible to the guest: one `used.idx` store
    /// (Release: after the elements and the data written into the buffers).
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.next_used {
            self.used_u16(2)
                .store(self.next_used.to_le(), Ordering::Release);
            self.published = self.next_used;
        }
    }

    /// Asks the guest to kick again: with EVENT_IDX `avail_event` set to where we are, else
    /// `VRING_USED_F_NO_NOTIFY` cleared. Returns whether chains are available already (the
    /// guest queued them while kicks were off: look again before sleeping).
    pub fn enable_notification(&mut self) -> bool {
        if self.event_idx {
            let at = 4 + 8 * usize::from(self.size);
            self.used_u16(at)
                .store(self.next_avail.to_le(), Ordering::Relaxed);
        } else {
            self.used_flags &= !VRING_USED_F_NO_NOTIFY;
            self.used_u16(0)
                .store(self.used_flags.to_le(), Ordering::Relaxed);
        }
        // The store above before the read below (the guest does the reverse: avail.idx, then
        // reads whether to kick).
        fence(Ordering::SeqCst);
        u16::from_le(self.avail_u16(2).load(Ordering::Acquire)) != self.next_avail
    }

    /// Asks the guest not to kick (without EVENT_IDX: `VRING_USED_F_NO_NOTIFY`; with it the
    /// guest kicks only when it passes `avail_event`, which we leave behind).
    pub fn disable_notification(&mut self) {
        if !self.event_idx {
            self.used_flags |= VRING_USED_F_NO_NOTIFY;
            self.used_u16(0)
                .store(self.used_flags.to_le(), Ordering::Relaxed);
        }
    }

    /// After a burst: whether the guest wants an interrupt for the used elements added since
    /// the last call (published first). With EVENT_IDX, whether the used index passed the
    /// guest's `used_event` (`vring_need_event`); without, unless the guest set
    /// `VRING_AVAIL_F_NO_INTERRUPT`.
    pub fn needs_notification(&mut self) -> bool {
        self.publish();
        // The used index stored before the guest's fields are read (the guest does the
        // reverse: writes them, then reads the used index).
        fence(Ordering::SeqCst);
        let new = self.next_used;
        let old = std::mem::replace(&mut self.notified, new);
        if self.event_idx {
            let at = 4 + 2 * usize::from(self.size);
            let used_event = u16::from_le(self.avail_u16(at).load(Ordering::Relaxed));
            new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            new != old
                && u16::from_le(self.avail_u16(0).load(Ordering::Relaxed))
                    & VRING_AVAIL_F_NO_INTERRUPT
                    == 0
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const F_NEXT: u16 = VRING_DESC_F_NEXT;
    const F_WRITE: u16 = VRING_DESC_F_WRITE;
    const F_INDIRECT: u16 = VRING_DESC_F_INDIRECT;

    fn memory() -> Arc<GuestMemoryMmap> {
        Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap())
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    fn ring(mem: &Arc<GuestMemoryMmap>, vq: &MockSplitQueue<GuestMemoryMmap>) -> SplitRing {
        ring_with(mem, vq, false)
    }

    fn ring_with(
        mem: &Arc<GuestMemoryMmap>,
        vq: &MockSplitQueue<GuestMemoryMmap>,
        event_idx: bool,
    ) -> SplitRing {
        SplitRing::new(
            Arc::clone(mem),
            16,
            vq.desc_table_addr().0,
            vq.avail_addr().0,
            vq.used_addr().0,
            0,
            event_idx,
        )
        .unwrap()
    }

    /// Every descriptor of the next chain, or its fault.
    fn walk(r: &mut SplitRing) -> Result<Vec<(u64, usize, bool)>, Fault> {
        let mut chain = r.pop()?.expect("a chain");
        let mut out = Vec::new();
        while let Some(d) = r.next_desc(&mut chain)? {
            out.push((d.addr(), d.len(), d.is_write_only()));
        }
        Ok(out)
    }

    fn used_idx(mem: &GuestMemoryMmap, vq: &MockSplitQueue<GuestMemoryMmap>) -> u16 {
        mem.read_obj(GuestAddress(vq.used_addr().0 + 2)).unwrap()
    }

    #[test]
    fn rings_must_be_aligned_sized_and_inside_one_region() {
        let mem = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x1_0000),
                (GuestAddress(0x1_0000), 0x1_0000),
            ])
            .unwrap(),
        );
        let new = |size, desc, avail, used| {
            SplitRing::new(Arc::clone(&mem), size, desc, avail, used, 0, false).is_some()
        };
        assert!(new(256, 0x1000, 0x2000, 0x3000));
        assert!(!new(0, 0x1000, 0x2000, 0x3000), "size 0");
        assert!(!new(100, 0x1000, 0x2000, 0x3000), "not a power of two");
        assert!(!new(256, 0x1008, 0x2000, 0x3000), "desc alignment");
        assert!(!new(256, 0x1000, 0x2001, 0x3000), "avail alignment");
        assert!(!new(256, 0x1000, 0x2000, 0x3002), "used alignment");
        // The descriptor table (4 KiB) across the boundary of two adjacent regions.
        assert!(!new(256, 0xf800, 0x2000, 0x3000));
        // The used ring's avail_event is the 2 bytes past the region's end.
        let used = 0x2_0000 - (4 + 8 * 256);
        assert!(!new(256, 0x1000, 0x2000, used));
        assert!(new(256, 0x1000, 0x2000, used - 4));
        // Outside guest memory altogether.
        assert!(!new(256, 0x10_0000, 0x2000, 0x3000));
        assert!(!new(256, u64::MAX - 15, 0x2000, 0x3000));
    }

    #[test]
    fn chains_are_walked_and_used_is_published_once() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.add_desc_chains(
            &[
                desc(0x10_0000, 100, F_NEXT, 1),
                desc(0x11_0000, 200, F_WRITE, 0),
                desc(0x12_0000, 300, 0, 0),
            ],
            0,
        )
        .unwrap();
        let mut r = ring(&mem, &vq);
        assert_eq!(
            walk(&mut r).unwrap(),
            vec![(0x10_0000, 100, false), (0x11_0000, 200, true)]
        );
        assert_eq!(walk(&mut r).unwrap(), vec![(0x12_0000, 300, false)]);
        assert_eq!(r.pop(), Ok(None));
        r.add_used(0, 7);
        r.add_used(2, 9);
        assert_eq!(used_idx(&mem, &vq), 0, "not before publish");
        r.publish();
        assert_eq!(used_idx(&mem, &vq), 2);
        let at = vq.used_addr().0 + 4;
        let elems: Vec<u32> = (0..4)
            .map(|i| mem.read_obj(GuestAddress(at + 4 * i)).unwrap())
            .collect();
        assert_eq!(elems, vec![0, 7, 2, 9]);
        assert_eq!(r.next_avail(), 2);
        assert_eq!(r.used_ring(), (vq.used_addr().0, 4 + 8 * 16 + 2));
    }

    #[test]
    fn undo_gives_chains_back_unpublished() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.add_desc_chains(
            &[
                desc(0x10_0000, 64, F_WRITE, 0),
                desc(0x11_0000, 64, F_WRITE, 0),
            ],
            0,
        )
        .unwrap();
        let mut r = ring(&mem, &vq);
        let a = r.pop().unwrap().unwrap();
        let b = r.pop().unwrap().unwrap();
        assert_eq!((a.head(), b.head()), (0, 1));
        assert_eq!(r.pop(), Ok(None));
        r.undo(2);
        r.publish();
        assert_eq!(used_idx(&mem, &vq), 0);
        assert_eq!(r.pop().unwrap().unwrap().head(), 0);
    }

    #[test]
    fn indirect_tables_are_followed_once() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        // A table of two descriptors at 0x20_0000.
        let table = [
            desc(0x10_0000, 10, F_NEXT, 1),
            desc(0x11_0000, 20, F_WRITE, 0),
        ];
        for (i, d) in table.iter().enumerate() {
            mem.write_obj(*d, GuestAddress(0x20_0000 + 16 * i as u64))
                .unwrap();
        }
        vq.add_desc_chains(&[desc(0x20_0000, 32, F_INDIRECT, 0)], 0)
            .unwrap();
        let mut r = ring(&mem, &vq);
        assert_eq!(
            walk(&mut r).unwrap(),
            vec![(0x10_0000, 10, false), (0x11_0000, 20, true)]
        );
    }

    #[test]
    fn hostile_chains_are_faults_not_panics_or_loops() {
        let mem = memory();
        let end = 0x40_0000u64;
        // Indirect tables: a nested one, one pointing at itself, one with a next index past
        // its end.
        mem.write_obj(desc(0x21_0000, 16, F_INDIRECT, 0), GuestAddress(0x20_0000))
            .unwrap();
        mem.write_obj(desc(0x22_0000, 16, F_NEXT, 0), GuestAddress(0x22_0000))
            .unwrap();
        mem.write_obj(desc(0x10_0000, 16, F_NEXT, 5), GuestAddress(0x23_0000))
            .unwrap();
        let cases: Vec<(Vec<RawDescriptor>, Fault)> = vec![
            (vec![desc(end - 10, 200, 0, 0)], Fault::OutsideMemory),
            (vec![desc(end, 1, 0, 0)], Fault::OutsideMemory),
            (vec![desc(u64::MAX - 4, 100, 0, 0)], Fault::OutsideMemory),
            (vec![desc(0x10_0000, 10, F_NEXT, 16)], Fault::Index),
            (vec![desc(0x10_0000, 10, F_NEXT, 0xffff)], Fault::Index),
            // A loop through the ring's own table: ends after 16 descriptors.
            (
                vec![
                    desc(0x10_0000, 10, F_NEXT, 1),
                    desc(0x10_0000, 10, F_NEXT, 0),
                ],
                Fault::TooLong,
            ),
            (
                vec![desc(0x20_0000, 16, F_INDIRECT, 0)],
                Fault::NestedIndirect,
            ),
            (vec![desc(0x22_0000, 16, F_INDIRECT, 0)], Fault::TooLong),
            (vec![desc(0x23_0000, 32, F_INDIRECT, 0)], Fault::Index),
            (
                vec![desc(0x20_0000, 24, F_INDIRECT, 0)],
                Fault::IndirectTable,
            ),
            (
                vec![desc(0x20_0000, 0, F_INDIRECT, 0)],
                Fault::IndirectTable,
            ),
            (
                vec![desc(end - 16, 32, F_INDIRECT, 0)],
                Fault::IndirectTable,
            ),
            (
                vec![desc(0x20_0004, 16, F_INDIRECT, 0)],
                Fault::IndirectTable,
            ),
            // Longer than the ring.
            (
                vec![desc(0x20_0000, 17 * 16, F_INDIRECT, 0)],
                Fault::IndirectTable,
            ),
            (
                vec![desc(0x20_0000, 16, F_INDIRECT | F_NEXT, 0)],
                Fault::IndirectTable,
            ),
        ];
        for (descs, fault) in cases {
            let vq = MockSplitQueue::new(&*mem, 16);
            vq.add_desc_chains(&descs, 0).unwrap();
            let mut r = ring(&mem, &vq);
            assert_eq!(walk(&mut r), Err(fault), "{descs:?}");
        }
        // A head index outside the table.
        let vq = MockSplitQueue::new(&*mem, 16);
        mem.write_obj(40u16, GuestAddress(vq.avail_addr().0 + 4))
            .unwrap();
        mem.write_obj(1u16, GuestAddress(vq.avail_addr().0 + 2))
            .unwrap();
        let mut r = ring(&mem, &vq);
        assert_eq!(walk(&mut r), Err(Fault::Index));
    }

    #[test]
    fn a_buffer_across_adjacent_regions_is_walked_in_pieces() {
        // Three adjacent regions, then a gap, then a fourth.
        let mem = Arc::new(
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 0x20_0000),
                (GuestAddress(0x20_0000), 0x20_0000),
                (GuestAddress(0x40_0000), 0x1000),
                (GuestAddress(0x80_0000), 0x1000),
            ])
            .unwrap(),
        );
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.add_desc_chains(
            &[
                // Across one boundary, then the chain goes on.
                desc(0x1f_ff00, 0x200, F_NEXT, 1),
                desc(0x10_0000, 0x10, 0, 0),
                // Across two boundaries, the last descriptor of its chain.
                desc(0x1f_fff0, 0x20_1000, F_WRITE, 0),
                // Into the gap after the third region: a fault where the gap starts.
                desc(0x40_0f00, 0x200, 0, 0),
                // Past the end of the last region.
                desc(0x80_0f00, 0x200, 0, 0),
                // Ending exactly at a boundary: one piece.
                desc(0x1f_ff00, 0x100, 0, 0),
            ],
            0,
        )
        .unwrap();
        let mut r = ring(&mem, &vq);
        assert_eq!(
            walk(&mut r).unwrap(),
            vec![
                (0x1f_ff00, 0x100, false),
                (0x20_0000, 0x100, false),
                (0x10_0000, 0x10, false)
            ]
        );
        assert_eq!(
            walk(&mut r).unwrap(),
            vec![
                (0x1f_fff0, 0x10, true),
                (0x20_0000, 0x20_0000, true),
                (0x40_0000, 0xff0, true)
            ]
        );
        assert_eq!(walk(&mut r), Err(Fault::OutsideMemory));
        assert_eq!(walk(&mut r), Err(Fault::OutsideMemory));
        assert_eq!(walk(&mut r).unwrap(), vec![(0x1f_ff00, 0x100, false)]);
        // Each piece is copied inside its own region.
        mem.write_slice(&[5; 0x200], GuestAddress(0x1f_ff00))
            .unwrap();
        let vq = MockSplitQueue::new(&*mem, 16);
        vq.add_desc_chains(&[desc(0x1f_ff00, 0x200, 0, 0)], 0)
            .unwrap();
        let mut r = ring(&mem, &vq);
        let mut chain = r.pop().unwrap().unwrap();
        let mut got = Vec::new();
        while let Some(d) = r.next_desc(&mut chain).unwrap() {
            let mut piece = vec![0u8; d.len()];
            assert!(r.read(&d, 0, &mut piece));
            assert!(!r.read(&d, 1, &mut piece), "not past the piece");
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, vec![5; 0x200]);
    }

    #[test]
    fn copies_stay_inside_their_buffer() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        mem.write_slice(&[1, 2, 3, 4, 5, 6, 7, 8], GuestAddress(0x10_0000))
            .unwrap();
        vq.add_desc_chains(&[desc(0x10_0000, 8, F_WRITE, 0)], 0)
            .unwrap();
        let mut r = ring(&mem, &vq);
        let mut chain = r.pop().unwrap().unwrap();
        let d = r.next_desc(&mut chain).unwrap().unwrap();
        let mut buf = [0u8; 4];
        assert!(r.read(&d, 4, &mut buf));
        assert_eq!(buf, [5, 6, 7, 8]);
        assert!(!r.read(&d, 5, &mut buf));
        assert!(!r.read(&d, usize::MAX, &mut buf));
        assert!(r.write(&d, 0, &[9; 8]));
        assert!(!r.write(&d, 1, &[9; 8]));
        assert!(r.read(&d, 8, &mut []));
        let mut got = [0u8; 9];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(got, [9, 9, 9, 9, 9, 9, 9, 9, 0]);
        assert_eq!(r.next_desc(&mut chain), Ok(None));
    }

    #[test]
    fn an_avail_index_too_far_ahead_breaks_the_ring() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let idx = GuestAddress(vq.avail_addr().0 + 2);
        mem.write_obj(16u16, idx).unwrap();
        let mut r = ring(&mem, &vq);
        // 16 ahead is a full ring: fine (all heads 0 here: a walk of a zero descriptor).
        for _ in 0..16 {
            assert!(r.pop().unwrap().is_some());
        }
        assert_eq!(r.pop(), Ok(None));
        mem.write_obj(16u16 + 17, idx).unwrap();
        assert_eq!(r.pop(), Err(Fault::AvailIndex));
        // Going backwards is as broken.
        mem.write_obj(15u16, idx).unwrap();
        assert_eq!(r.pop(), Err(Fault::AvailIndex));
    }

    /// A small deterministic generator for garbage (xorshift64).
    pub(crate) struct Garbage(pub(crate) u64);

    impl Garbage {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Fills `vq`'s descriptor table (16 entries), an indirect table area at 0x20_0000
        /// and its avail ring with garbage, the heads below `heads`.
        pub(crate) fn fill(
            &mut self,
            mem: &GuestMemoryMmap,
            vq: &MockSplitQueue<GuestMemoryMmap>,
            heads: u64,
        ) {
            for i in 0..16 {
                vq.desc_table().store(i, self.desc(16)).unwrap();
            }
            for i in 0..8u64 {
                mem.write_obj(self.desc(16), GuestAddress(0x20_0000 + 16 * i))
                    .unwrap();
            }
            for i in 0..16u64 {
                let head = (self.next() % heads) as u16;
                mem.write_obj(head, GuestAddress(vq.avail_addr().0 + 4 + 2 * i))
                    .unwrap();
            }
        }

        /// A descriptor that is often almost right: addresses near the regions' edges,
        /// indices near the table's size, every flag combination.
        pub(crate) fn desc(&mut self, size: u16) -> RawDescriptor {
            let r = self.next();
            let addr = match r % 4 {
                0 => 0x10_0000 + (r >> 8) % 0x1000,
                1 => 0x40_0000u64.wrapping_sub((r >> 8) % 0x100),
                2 => 0x20_0000 + ((r >> 8) % 8) * 16,
                _ => r,
            };
            let len = match (r >> 2) % 4 {
                0 => ((r >> 16) % 64) as u32,
                1 => ((r >> 16) % 4096) as u32,
                2 => 16 * ((r >> 16) % 40) as u32,
                _ => (r >> 32) as u32,
            };
            let flags = ((r >> 24) % 8) as u16;
            let next = if (r >> 40) % 4 == 0 {
                (r >> 48) as u16
            } else {
                ((r >> 48) as u16) % (size + 2)
            };
            desc(addr, len, flags, next)
        }
    }

    #[test]
    fn garbage_rings_end_in_faults_never_in_panics_or_loops() {
        let mem = memory();
        let mut g = Garbage(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let vq = MockSplitQueue::new(&*mem, 16);
            // Garbage in the table, in an indirect table area and in the avail ring.
            g.fill(&mem, &vq, 20);
            let idx = (g.next() % 40) as u16;
            mem.write_obj(idx, GuestAddress(vq.avail_addr().0 + 2))
                .unwrap();
            let mut r = ring_with(&mem, &vq, round % 2 == 0);
            let mut descs = 0;
            while let Ok(Some(mut chain)) = r.pop() {
                while let Ok(Some(d)) = r.next_desc(&mut chain) {
                    descs += 1;
                    assert!(descs < 16 * 40, "a walk did not end");
                    let mut b = [0u8; 64];
                    let n = d.len().min(64);
                    assert!(r.read(&d, 0, &mut b[..n]));
                    assert!(r.write(&d, d.len() - n, &b[..n]));
                }
                r.add_used(chain.head(), 0);
            }
            r.needs_notification();
            r.enable_notification();
        }
    }

    #[test]
    fn kicks_without_event_idx_are_the_used_flags() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let flags = GuestAddress(vq.used_addr().0);
        let mut r = ring(&mem, &vq);
        r.disable_notification();
        assert_eq!(mem.read_obj::<u16>(flags).unwrap(), VRING_USED_F_NO_NOTIFY);
        assert!(!r.enable_notification(), "nothing available");
        assert_eq!(mem.read_obj::<u16>(flags).unwrap(), 0);
        vq.add_desc_chains(&[desc(0x10_0000, 8, 0, 0)], 0).unwrap();
        assert!(r.enable_notification(), "a chain came");
    }

    #[test]
    fn interrupts_without_event_idx_honour_no_interrupt() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let avail_flags = GuestAddress(vq.avail_addr().0);
        let mut r = ring(&mem, &vq);
        assert!(!r.needs_notification(), "nothing used");
        r.add_used(0, 0);
        assert!(r.needs_notification());
        assert_eq!(used_idx(&mem, &vq), 1, "published first");
        r.add_used(1, 0);
        mem.write_obj(VRING_AVAIL_F_NO_INTERRUPT, avail_flags)
            .unwrap();
        assert!(!r.needs_notification(), "the guest polls");
        mem.write_obj(0u16, avail_flags).unwrap();
        r.add_used(2, 0);
        assert!(r.needs_notification());
    }

    #[test]
    fn event_idx_sets_avail_event_and_reads_used_event() {
        let mem = memory();
        let vq = MockSplitQueue::new(&*mem, 16);
        let avail_event = GuestAddress(vq.used_addr().0 + 4 + 8 * 16);
        let used_event = GuestAddress(vq.avail_addr().0 + 4 + 2 * 16);
        let used_flags = GuestAddress(vq.used_addr().0);
        vq.add_desc_chains(
            &(0..6)
                .map(|i| desc(0x10_0000 + i, 8, 0, 0))
                .collect::<Vec<_>>(),
            0,
        )
        .unwrap();
        let mut r = ring_with(&mem, &vq, true);
        for _ in 0..3 {
            let c = r.pop().unwrap().unwrap();
            r.add_used(c.head(), 0);
        }
        // Kicks: avail_event follows what we took; the flags are left alone.
        r.disable_notification();
        assert_eq!(mem.read_obj::<u16>(used_flags).unwrap(), 0);
        assert!(r.enable_notification(), "three more are available");
        assert_eq!(mem.read_obj::<u16>(avail_event).unwrap(), 3);
        // Interrupts: the guest wants one once used passes used_event (here 1: it has seen
        // element 0 and asks for one when element 1 is used). 0 -> 3 crosses it.
        mem.write_obj(1u16, used_event).unwrap();
        assert!(r.needs_notification());
        // 3 -> 4 with used_event still 1: not crossed again.
        let c = r.pop().unwrap().unwrap();
        r.add_used(c.head(), 0);
        assert!(!r.needs_notification());
        // used_event 4: 4 -> 5 crosses it (the new element is 4).
        mem.write_obj(4u16, used_event).unwrap();
        let c = r.pop().unwrap().unwrap();
        r.add_used(c.head(), 0);
        assert!(r.needs_notification());
        // Nothing added since: no interrupt, whatever used_event says.
        mem.write_obj(4u16, used_event).unwrap();
        assert!(!r.needs_notification());
        // Across the wrap of the 16-bit indices.
        let mut r = SplitRing::new(
            Arc::clone(&mem),
            16,
            vq.desc_table_addr().0,
            vq.avail_addr().0,
            vq.used_addr().0,
            0xfffe,
            true,
        )
        .unwrap();
        mem.write_obj(0xffffu16, used_event).unwrap();
        r.add_used(0, 0);
        r.add_used(1, 0);
        r.add_used(2, 0);
        assert!(r.needs_notification(), "0xfffe -> 1 passes 0xffff");
        assert_eq!(used_idx(&mem, &vq), 1);
    }
}
