//! An AF_XDP socket with its own UMEM and its four rings, set up with raw system calls.
//!
//! Rings are single-producer/single-consumer arrays in memory shared with the kernel; each side
//! publishes its index with a release store and reads the other's with an acquire load. We
//! produce into the fill and TX rings and consume from the RX and completion rings.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, Mmap};

// linux/if_xdp.h
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
/// Linux 6.17+: descriptors one copy-mode `sendto` may send (default 32).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_COPY: u16 = 1 << 1;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_UMEM_UNALIGNED_CHUNK_FLAG: u32 = 1;
/// Unaligned-chunk descriptors: the offset of the data in the high bits of the address.
const XSK_UNALIGNED_BUF_OFFSET_SHIFT: u32 = 48;
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// `SO_BUSY_POLL`, `SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL_BUDGET` (asm-generic/socket.h; the
/// architectures below use those values, the others have their own and go without).
const BUSY_POLL_OPTIONS: Option<(libc::c_int, libc::c_int, libc::c_int)> = if cfg!(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
)) {
    Some((46, 69, 70))
} else {
    None
};

/// How long `bind` keeps trying while the queue is still held by a socket being released.
const BIND_RETRY: Duration = Duration::from_secs(2);

/// `struct xdp_desc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct xdp_umem_reg`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

/// `struct xdp_statistics`: the kernel's own drop counters for the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpStatistics {
    /// Frames dropped for reasons other than an invalid descriptor (e.g. too large).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// One ring: its mapping, where its indexes live, and our side's index.
#[derive(Debug)]
pub(crate) struct Ring {
    map: Mmap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    /// Our index: the producer index for the fill and TX rings, the consumer index for the RX
    /// and completion rings. Published by [`Ring::publish_producer`] or [`Ring::publish_consumer`].
    pub local: u32,
}

impl Ring {
    fn map<T>(fd: &OwnedFd, size: u32, off: &RingOffset, pgoff: libc::off_t) -> io::Result<Ring> {
        let to = |v: u64| usize::try_from(v).map_err(|_| io::Error::other("ring offset"));
        let desc = to(off.desc)?;
        let len = desc + size as usize * std::mem::size_of::<T>();
        let map = Mmap::shared(fd, len, pgoff)?;
        let ring = Ring {
            map,
            producer: to(off.producer)?,
            consumer: to(off.consumer)?,
            flags: to(off.flags)?,
            desc,
            mask: size - 1,
            local: 0,
        };
        for at in [ring.producer, ring.consumer, ring.flags] {
            if at % 4 != 0 || at + 4 > len {
                return Err(io::Error::other("ring index outside its mapping"));
            }
        }
        Ok(ring)
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` was checked against the mapping and for 4-alignment in `map` (the mapping
        // is page-aligned); the kernel and we access these words only atomically.
        unsafe { &*self.map.ptr().add(at).cast::<AtomicU32>() }
    }

    /// The kernel's (or, for producer rings, our published) producer index.
    pub fn producer(&self) -> u32 {
        self.word(self.producer).load(Ordering::Acquire)
    }

    /// The kernel's (or, for consumer rings, our published) consumer index.
    pub fn consumer(&self) -> u32 {
        self.word(self.consumer).load(Ordering::Acquire)
    }

    /// Whether the kernel asks to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.word(self.flags).load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    /// Publishes `local` as our producer index.
    pub fn publish_producer(&self) {
        self.word(self.producer)
            .store(self.local, Ordering::Release);
    }

    /// Publishes `local` as our consumer index.
    pub fn publish_consumer(&self) {
        self.word(self.consumer)
            .store(self.local, Ordering::Release);
    }

    /// The number of entries the ring holds.
    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    fn slot<T>(&self, index: u32) -> *mut T {
        let at = self.desc + (index & self.mask) as usize * std::mem::size_of::<T>();
        // SAFETY: `index & mask < size`, and the mapping holds `size` entries of `T` from
        // `desc` (see `map`), so the pointer stays inside it.
        unsafe { self.map.ptr().add(at).cast::<T>() }
    }

    /// Reads entry `index` (a slot the kernel has published to us, or one we wrote).
    pub fn read<T: Copy>(&self, index: u32) -> T {
        // SAFETY: the slot lies inside the mapping (see `slot`); entries are naturally aligned
        // (the descriptor array is 64-byte aligned); the other side does not write a slot
        // between publishing it and our consuming it.
        unsafe { self.slot::<T>(index).read_volatile() }
    }

    /// Writes entry `index` (a free slot, not yet published to the kernel).
    pub fn write<T: Copy>(&self, index: u32, value: T) {
        // SAFETY: as for `read`; the kernel does not read a slot before we publish it.
        unsafe { self.slot::<T>(index).write_volatile(value) }
    }
}

/// Sizes of a socket's UMEM and rings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub frame_size: u32,
    pub rx_frames: u32,
    pub tx_frames: u32,
}

/// An AF_XDP socket bound to one queue of an interface.
#[derive(Debug)]
pub(crate) struct Xsk {
    pub fd: OwnedFd,
    pub umem: Mmap,
    pub fill: Ring,
    pub comp: Ring,
    pub rx: Ring,
    pub tx: Ring,
    pub zero_copy: bool,
    /// Whether a copy-mode `sendto` may send a whole TX ring (XDP_MAX_TX_SKB_BUDGET).
    pub big_tx_budget: bool,
    /// The UMEM uses unaligned chunks (`XDP_UMEM_UNALIGNED_CHUNK_FLAG`): RX descriptors
    /// carry the frame's address in their low 48 bits and the data's offset in the high 16
    /// (see [`Xsk::rx_frame`]). Our frames stay where they are (aligned); the flag changes
    /// how the kernel tracks them: it takes a free buffer head from a stack (the one just
    /// released, hot in cache) instead of the frame's own head, one per frame (with 4096
    /// frames handed round in turn, a cache miss per frame on the sender's core).
    pub unaligned: bool,
}

/// A step of the set-up that failed, and why.
pub(crate) type SetupError = (&'static str, io::Error);

impl Xsk {
    /// Creates the socket, registers a UMEM of `rx_frames + tx_frames` frames, creates and maps
    /// the rings, binds to `ifindex`/`queue` (trying zero-copy first when `zero_copy`, which
    /// the kernel falls back from by itself) and hands every RX frame to the fill ring.
    pub fn new(
        ifindex: i32,
        queue: u32,
        layout: Layout,
        zero_copy: bool,
        raise_tx_budget: bool,
    ) -> Result<Xsk, SetupError> {
        let Layout {
            frame_size,
            rx_frames,
            tx_frames,
        } = layout;
        // SAFETY: socket() takes no pointers; on success we own the new descriptor.
        let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(("cannot create an AF_XDP socket", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        let frames = rx_frames as usize + tx_frames as usize;
        let umem = Mmap::anonymous(frames * frame_size as usize)
            .map_err(|e| ("cannot allocate the UMEM", e))?;
        let mut reg = UmemReg {
            addr: umem.ptr() as u64,
            len: umem.len() as u64,
            chunk_size: frame_size,
            flags: XDP_UMEM_UNALIGNED_CHUNK_FLAG,
            ..UmemReg::default()
        };
        let xdp_opt = |option, value: &u32, what| {
            sys::setsockopt(&fd, libc::SOL_XDP, option, value).map_err(|e| (what, e))
        };
        // Unaligned chunks (see `unaligned`); a kernel without them takes aligned ones.
        let mut unaligned = true;
        if let Err(e) = sys::setsockopt(&fd, libc::SOL_XDP, XDP_UMEM_REG, &reg) {
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(("cannot register the UMEM", e));
            }
            reg.flags = 0;
            unaligned = false;
            sys::setsockopt(&fd, libc::SOL_XDP, XDP_UMEM_REG, &reg)
                .map_err(|e| ("cannot register the UMEM", e))?;
        }
        xdp_opt(
            XDP_UMEM_FILL_RING,
            &rx_frames,
            "cannot create the fill ring",
        )?;
        xdp_opt(
            XDP_UMEM_COMPLETION_RING,
            &tx_frames,
            "cannot create the completion ring",
        )?;
        xdp_opt(XDP_RX_RING, &rx_frames, "cannot create the RX ring")?;
        xdp_opt(XDP_TX_RING, &tx_frames, "cannot create the TX ring")?;

        let mut off = MmapOffsets::default();
        let got = sys::getsockopt(&fd, libc::SOL_XDP, XDP_MMAP_OFFSETS, &mut off)
            .map_err(|e| ("cannot read the ring offsets", e))?;
        if got != std::mem::size_of::<MmapOffsets>() {
            // Kernels before 5.4 have no ring flags, hence no need_wakeup.
            return Err((
                "the kernel's AF_XDP has no ring flags (Linux 5.4+ needed)",
                io::Error::from_raw_os_error(libc::EOPNOTSUPP),
            ));
        }
        let fill = Ring::map::<u64>(&fd, rx_frames, &off.fr, XDP_UMEM_PGOFF_FILL_RING)
            .map_err(|e| ("cannot map the fill ring", e))?;
        let comp = Ring::map::<u64>(&fd, tx_frames, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(|e| ("cannot map the completion ring", e))?;
        let rx = Ring::map::<Desc>(&fd, rx_frames, &off.rx, XDP_PGOFF_RX_RING)
            .map_err(|e| ("cannot map the RX ring", e))?;
        let tx = Ring::map::<Desc>(&fd, tx_frames, &off.tx, XDP_PGOFF_TX_RING)
            .map_err(|e| ("cannot map the TX ring", e))?;

        // Without XDP_COPY or XDP_ZEROCOPY the kernel tries zero-copy and falls back to copy.
        let mode = if zero_copy { 0 } else { XDP_COPY };
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: mode | XDP_USE_NEED_WAKEUP,
            sxdp_ifindex: ifindex as u32,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // A socket closed a moment ago (by us, or a process that just died) frees its queue
        // in deferred kernel work: until then bind fails with EBUSY. Retry for a while.
        let deadline = Instant::now() + BIND_RETRY;
        loop {
            // SAFETY: a valid sockaddr_xdp of the stated length.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EBUSY) || Instant::now() >= deadline {
                let what = if err.raw_os_error() == Some(libc::EBUSY) {
                    "cannot bind the AF_XDP socket: the queue has another socket"
                } else {
                    "cannot bind the AF_XDP socket"
                };
                return Err((what, err));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut opts = 0u32;
        let zero_copy = sys::getsockopt(&fd, libc::SOL_XDP, XDP_OPTIONS, &mut opts).is_ok()
            && opts & XDP_OPTIONS_ZEROCOPY != 0;
        let big_tx_budget = raise_tx_budget
            && !zero_copy
            && sys::setsockopt(&fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &tx_frames).is_ok();

        let mut xsk = Xsk {
            fd,
            umem,
            fill,
            comp,
            rx,
            tx,
            zero_copy,
            big_tx_budget,
            unaligned,
        };
        // Frames 0..rx_frames receive; the rest transmit.
        for i in 0..rx_frames {
            xsk.fill.write(i, u64::from(i) * u64::from(frame_size));
        }
        xsk.fill.local = rx_frames;
        xsk.fill.publish_producer();
        Ok(xsk)
    }

    /// The UMEM frame (its address as given to the fill ring) and the data's address of a
    /// received descriptor's `addr`, whatever the chunk mode; `frame_size` a power of two.
    pub fn rx_frame(&self, addr: u64, frame_size: u32) -> (u64, u64) {
        if self.unaligned {
            let base = addr & ((1 << XSK_UNALIGNED_BUF_OFFSET_SHIFT) - 1);
            (base, base + (addr >> XSK_UNALIGNED_BUF_OFFSET_SHIFT))
        } else {
            (addr & !(u64::from(frame_size) - 1), addr)
        }
    }

    /// The kernel's drop counters for this socket.
    pub fn statistics(&self) -> Option<XdpStatistics> {
        let mut st = XdpStatistics::default();
        sys::getsockopt(&self.fd, libc::SOL_XDP, XDP_STATISTICS, &mut st).ok()?;
        Some(st)
    }

    /// Turns on preferred busy polling (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` = `usecs`,
    /// `SO_BUSY_POLL_BUDGET` = `budget`): a non-blocking `recvfrom` or `sendto` on the socket
    /// then runs the interface's receive NAPI once on the calling core. Needs CAP_NET_ADMIN
    /// for values above the system's defaults.
    pub fn set_busy_poll(&self, usecs: u32, budget: u32) -> io::Result<()> {
        let Some((busy_poll, prefer, budget_opt)) = BUSY_POLL_OPTIONS else {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        };
        let int = |v: u32| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        sys::setsockopt(&self.fd, libc::SOL_SOCKET, prefer, &1 as &libc::c_int)?;
        sys::setsockopt(&self.fd, libc::SOL_SOCKET, busy_poll, &int(usecs))?;
        sys::setsockopt(&self.fd, libc::SOL_SOCKET, budget_opt, &int(budget))
    }

    /// A zero-length non-blocking `sendto`: asks the kernel to transmit what the TX ring holds
    /// (in copy mode, up to the budget, 32 frames unless raised). `Err(errno)` on failure.
    pub fn kick_tx(&self) -> Result<(), i32> {
        // SAFETY: no buffer is passed; the kernel only looks at the TX ring.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(())
        }
    }

    /// A zero-length non-blocking `recvfrom`: wakes the driver up to refill from the fill ring,
    /// or, with busy polling on, runs the interface's receive NAPI once on this core.
    pub fn kick_rx(&self) {
        // SAFETY: no buffer is passed.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }
}
