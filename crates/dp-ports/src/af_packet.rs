//! AF_PACKET ports on an existing interface (e.g. one end of a veth pair, an uplink NIC).
//!
//! [`AfPacketPort::open`] binds a raw packet socket (`ETH_P_ALL`) to the interface and maps two
//! rings shared with the kernel:
//!
//! - **RX**: a `TPACKET_V3` ring of blocks holding variable-size frames. The kernel hands a
//!   block over when it is full or when its retire timer fires
//!   ([`AfPacketOptions::retire_timeout_ms`], 1 ms by default: at low rates the timer is the
//!   latency, the pitfall of `TPACKET_V3`). [`PortQueue::rx_burst`] copies each frame into a pool
//!   buffer (one copy; lending ring frames as `PacketBuf`s, zero-copy, is future work) and
//!   gives the block back once all its frames are taken.
//! - **TX**: a `TPACKET_V3` ring of fixed-size frame slots. [`PortQueue::tx_burst`] copies each frame
//!   into the next free slot and kicks the kernel with one `sendto` per burst.
//!
//! The socket also asks for `PACKET_QDISC_BYPASS` (frames go straight to the driver),
//! `PACKET_IGNORE_OUTGOING` (our own transmissions, and anything else leaving the interface, are
//! not received back) and promiscuous mode (the VMs and routers behind the port use MAC
//! addresses that are not the interface's). The membership ends with the socket.
//!
//! # Unfinished checksums
//! A frame from a veth peer or another local sender may carry a TCP/UDP checksum that offload
//! left unfinished (Linux `CHECKSUM_PARTIAL`; in `tp_status`, `TP_STATUS_CSUMNOTREADY`). The
//! socket uses `PACKET_VNET_HDR`, so every received frame is preceded in the ring by a
//! virtio-net header saying where the checksum starts and where it goes; the port finishes it
//! in software while copying (without parsing the frame), so the pipeline always sees complete
//! checksums. Exception: an offset of 8 is SCTP's CRC32c, which is left alone. (This is
//! [`ChecksumPolicy::FinishRequested`], the policy shared with the other backends.) Transmitted
//! frames get an all-zero virtio-net header (no offload).
//!
//! # Large frames
//! A frame longer than a pool buffer (or cut by the ring) is counted in `rx_errors` and
//! dropped. This includes TSO/GSO superframes, which a veth peer sends when its TCP
//! segmentation offload is on: turn it off on the peer (`ethtool -K PEER tso off gso off`) for
//! TCP through an AF_PACKET port on a veth.
//!
//! # VLAN tags
//! The kernel strips a VLAN tag into metadata (`TP_STATUS_VLAN_VALID`); the port puts it back
//! into the frame, so frames arrive as they were sent.
//!
//! # Link state
//! [`PortDevice::link_up`] is `IFF_UP` and `IFF_RUNNING` (carrier: for a veth, the peer is up too) of
//! the interface, looked up by ifindex (two `ioctl`s). While the interface is down, transmits
//! fail and are counted in `tx_errors`; receiving resumes by itself when it comes back up.
//! Taking the interface down also leaves an error pending on the socket (`ENETDOWN`), which
//! makes the descriptor poll as ready (`POLLERR`) until it is read: `link_up` reads it, and so
//! does every 64th consecutive empty receive burst, so an idle worker does not spin for long.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::sys::{self, Mmap};
use crate::{
    BufferPool, MacAddr, PacketBuf, PortCounters, PortDevice, PortError, PortQueue, PortStats,
};
use dp_buffer::offload::ChecksumPolicy;
use dp_buffer::{Offload, VNET_HDR_LEN};

// linux/if_packet.h
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// Byte offsets in `struct tpacket_block_desc` (the `tpacket_hdr_v1` variant).
mod block {
    pub const STATUS: usize = 8;
    pub const NUM_PKTS: usize = 12;
    pub const FIRST_PKT: usize = 16;
    /// Size of the part read here.
    pub const LEN: usize = 20;
}

/// Byte offsets in `struct tpacket3_hdr`.
mod hdr {
    pub const NEXT_OFFSET: usize = 0;
    pub const SNAPLEN: usize = 12;
    pub const LEN: usize = 16;
    pub const STATUS: usize = 20;
    pub const MAC: usize = 24;
    pub const VLAN_TCI: usize = 32;
    pub const VLAN_TPID: usize = 36;
    /// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`.
    pub const SIZE: usize = 48;
}

/// `struct virtio_net_hdr` (legacy, native endian for packet sockets).
mod vnet {
    pub const LEN: usize = super::VNET_HDR_LEN;
    #[cfg(test)]
    pub const FLAGS: usize = 0;
    #[cfg(test)]
    pub const CSUM_START: usize = 6;
    #[cfg(test)]
    pub const CSUM_OFFSET: usize = 8;
    #[cfg(test)]
    pub const F_NEEDS_CSUM: u8 = 1;
}

/// The checksum-offload policy: every frame comes with a virtio-net header that says where a
/// checksum is partial, and it is completed while copying.
const CHECKSUMS: ChecksumPolicy = ChecksumPolicy::FinishRequested;

const VLAN_HLEN: usize = 4;
const ETH_ADDRS_LEN: usize = 12;
const ETH_P_8021Q: u16 = dp_packet::EtherType::VLAN.0;

/// Sizes and switches of an [`AfPacketPort`]. The defaults suit 1500-byte MTUs and map a
/// 4 MiB RX ring and a 2 MiB TX ring per port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Bytes per ring block (RX and TX): a multiple of the page size and of `frame_size`.
    pub block_size: usize,
    /// RX ring blocks. The RX ring holds `rx_blocks * block_size` bytes of frames.
    pub rx_blocks: usize,
    /// Bytes per TX frame slot, the ring header included (48 bytes plus a 10-byte virtio-net
    /// header), so the largest frame sent is 58 bytes less. A multiple of 16.
    pub frame_size: usize,
    /// TX frame slots (rounded up to whole blocks).
    pub tx_frames: usize,
    /// How long the kernel keeps a partly filled RX block before handing it over, in
    /// milliseconds (at least 1): the receive latency at low rates.
    pub retire_timeout_ms: u32,
    /// Receive frames for any destination MAC (`PACKET_MR_PROMISC`).
    pub promiscuous: bool,
    /// Send straight to the driver, skipping the interface's qdisc (`PACKET_QDISC_BYPASS`).
    pub qdisc_bypass: bool,
    /// Join this `PACKET_FANOUT` group (hash mode): sockets of one group on one interface share
    /// its received frames by flow hash (one socket per worker). `None`: receive everything.
    pub fanout_group: Option<u16>,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            block_size: 128 * 1024,
            rx_blocks: 32,
            frame_size: 2048,
            tx_frames: 1024,
            retire_timeout_ms: 1,
            promiscuous: true,
            qdisc_bypass: true,
            fanout_group: None,
        }
    }
}

/// An AF_PACKET port; see the module docs.
#[derive(Debug)]
pub struct AfPacketPort {
    name: String,
    fd: OwnedFd,
    /// For `SIOCGIF*` requests (link state).
    ctl: OwnedFd,
    ifindex: libc::c_int,
    mac: MacAddr,
    counters: Arc<PortCounters>,
    /// The RX ring followed by the TX ring, as the kernel maps them.
    ring: Mmap,
    rx: RxRing,
    tx: TxRing,
    /// Consecutive empty receive bursts (see "Link state").
    empty_bursts: u32,
}

/// Every this many consecutive empty receive bursts, a pending socket error is cleared.
const CLEAR_ERROR_EVERY: u32 = 64;

#[derive(Debug)]
struct RxRing {
    block_size: usize,
    blocks: usize,
    /// The block being read, or the next one to wait for.
    block: usize,
    /// Frames of `block` not yet taken; 0 when the block is not open.
    left: u32,
    /// Offset in `block` of the next frame.
    offset: usize,
}

#[derive(Debug)]
struct TxRing {
    /// Offset of the TX ring in the mapping.
    base: usize,
    block_size: usize,
    frame_size: usize,
    frames_per_block: usize,
    frames: usize,
    /// The next slot to fill; always the kernel's next slot to send once a burst is done.
    next: usize,
    /// Offset of the frame data in a slot.
    data_offset: usize,
    /// Largest frame that fits a slot.
    max_len: usize,
}

impl AfPacketPort {
    /// Opens an AF_PACKET port on the existing Ethernet interface `ifname`; see the module
    /// docs. The interface's state is left as found (a down interface stays down).
    ///
    /// Fails with [`PortError::InvalidName`] for a name the kernel would refuse, and
    /// [`PortError::Io`] naming the step that failed: the interface does not exist or is not
    /// Ethernet, the options are invalid, the process lacks `CAP_NET_RAW` (`EPERM`), or the
    /// kernel refuses a ring or option.
    pub fn open(ifname: &str, opts: &AfPacketOptions) -> Result<AfPacketPort, PortError> {
        sys::check_name(ifname)?;
        let name = ifname;
        let geometry = Geometry::new(opts).map_err(|what| {
            sys::io_error(name, what, io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        let ctl = sys::control_socket(name)?;
        let iface = sys::ethernet_interface(&ctl, name)?;

        // Protocol 0: nothing is queued before the rings exist; bind() sets ETH_P_ALL.
        // SAFETY: socket() takes no pointers; on success we own the new descriptor.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            // (EPERM without CAP_NET_RAW; PortError::PermissionDenied's message is about TAP.)
            return Err(sys::os_error(
                name,
                "cannot create an AF_PACKET socket (needs CAP_NET_RAW)",
            ));
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        let opt = |option: libc::c_int, value: libc::c_int, what: &'static str| {
            sys::setsockopt(&fd, libc::SOL_PACKET, option, &value)
                .map_err(|e| sys::io_error(name, what, e))
        };
        opt(libc::PACKET_VERSION, TPACKET_V3, "cannot select TPACKET_V3")?;
        opt(libc::PACKET_VNET_HDR, 1, "cannot enable PACKET_VNET_HDR")?;
        // A malformed TX frame is skipped instead of stopping the ring.
        opt(libc::PACKET_LOSS, 1, "cannot enable PACKET_LOSS")?;
        opt(
            libc::PACKET_IGNORE_OUTGOING,
            1,
            "cannot enable PACKET_IGNORE_OUTGOING (Linux 4.20+)",
        )?;
        if opts.qdisc_bypass {
            opt(
                libc::PACKET_QDISC_BYPASS,
                1,
                "cannot enable PACKET_QDISC_BYPASS",
            )?;
        }

        // The TX frame data starts `tp_hdrlen - sizeof(struct sockaddr_ll)` into a slot, that
        // is TPACKET_ALIGN(sizeof(struct tpacket3_hdr)), the size PACKET_HDRLEN reports.
        let mut hdrlen: libc::c_int = TPACKET_V3;
        sys::getsockopt(&fd, libc::SOL_PACKET, libc::PACKET_HDRLEN, &mut hdrlen)
            .map_err(|e| sys::io_error(name, "cannot read PACKET_HDRLEN", e))?;
        let data_offset = usize::try_from(hdrlen).unwrap_or(0).next_multiple_of(16);
        if data_offset < hdr::SIZE || data_offset + vnet::LEN + 64 > opts.frame_size {
            return Err(sys::io_error(
                name,
                "frame_size too small for the TX slot header",
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }

        let rx_req = libc::tpacket_req3 {
            tp_block_size: geometry.block_size,
            tp_block_nr: geometry.rx_blocks,
            tp_frame_size: geometry.frame_size,
            tp_frame_nr: geometry.rx_blocks * geometry.frames_per_block,
            tp_retire_blk_tov: opts.retire_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req)
            .map_err(|e| sys::io_error(name, "cannot set up the RX ring", e))?;
        let tx_req = libc::tpacket_req3 {
            tp_block_size: geometry.block_size,
            tp_block_nr: geometry.tx_blocks,
            tp_frame_size: geometry.frame_size,
            tp_frame_nr: geometry.tx_blocks * geometry.frames_per_block,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req)
            .map_err(|e| sys::io_error(name, "cannot set up the TX ring", e))?;

        let block_size = geometry.block_size as usize;
        let rx_len = block_size * geometry.rx_blocks as usize;
        let tx_len = block_size * geometry.tx_blocks as usize;
        let ring = Mmap::shared(&fd, rx_len + tx_len, 0)
            .map_err(|e| sys::io_error(name, "cannot map the rings", e))?;

        // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = iface.ifindex;
        // SAFETY: a valid sockaddr_ll of the stated length.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(sys::os_error(name, "cannot bind to the interface"));
        }

        if let Some(group) = opts.fanout_group {
            // PACKET_FANOUT_HASH with defragmentation: a flow's frames go to one socket.
            let arg = u32::from(group)
                | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
            sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
                .map_err(|e| sys::io_error(name, "cannot join the PACKET_FANOUT group", e))?;
        }

        if opts.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: iface.ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|e| sys::io_error(name, "cannot enable promiscuous mode", e))?;
        }

        let frame_size = geometry.frame_size as usize;
        let frames_per_block = geometry.frames_per_block as usize;
        Ok(AfPacketPort {
            name: name.into(),
            fd,
            ctl,
            ifindex: iface.ifindex,
            mac: iface.mac,
            counters: PortCounters::new(),
            ring,
            rx: RxRing {
                block_size,
                blocks: geometry.rx_blocks as usize,
                block: 0,
                left: 0,
                offset: 0,
            },
            tx: TxRing {
                base: rx_len,
                block_size,
                frame_size,
                frames_per_block,
                frames: frames_per_block * geometry.tx_blocks as usize,
                next: 0,
                data_offset,
                max_len: frame_size - data_offset - vnet::LEN,
            },
            empty_bursts: 0,
        })
    }

    /// The interface's ifindex.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Frames the kernel dropped because the RX ring was full since the last call
    /// (`PACKET_STATISTICS`, which resets on read); `None` if the kernel refuses.
    pub fn take_ring_drops(&self) -> Option<u64> {
        // struct tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt.
        let mut st = [0u32; 3];
        sys::getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, &mut st).ok()?;
        Some(u64::from(st[1]))
    }

    /// Reads (and so clears) a pending socket error, left by the interface going down.
    fn clear_socket_error(&self) {
        let mut err: libc::c_int = 0;
        let _ = sys::getsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut err);
    }

    /// The status word of RX block `i`.
    fn block_status(&self, i: usize) -> &AtomicU32 {
        let off = i * self.rx.block_size + block::STATUS;
        debug_assert!(off + 4 <= self.ring.len());
        // SAFETY: `i < rx.blocks`, so the word lies inside the mapping, 4-aligned (blocks are
        // page-aligned). The kernel and we access it only atomically.
        unsafe { &*self.ring.ptr().add(off).cast::<AtomicU32>() }
    }

    /// The status word of TX slot `i`.
    fn slot_status(&self, i: usize) -> &AtomicU32 {
        let off = self.slot_offset(i) + hdr::STATUS;
        debug_assert!(off + 4 <= self.ring.len());
        // SAFETY: `i < tx.frames`, so the word lies inside the mapping, 4-aligned (slots are
        // 16-aligned). The kernel and we access it only atomically.
        unsafe { &*self.ring.ptr().add(off).cast::<AtomicU32>() }
    }

    /// Offset of TX slot `i` in the mapping (slots do not straddle blocks).
    fn slot_offset(&self, i: usize) -> usize {
        let t = &self.tx;
        t.base + (i / t.frames_per_block) * t.block_size + (i % t.frames_per_block) * t.frame_size
    }

    /// Hands the current RX block back to the kernel and moves to the next.
    fn release_block(&mut self) {
        self.block_status(self.rx.block)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.rx.left = 0;
        self.rx.block = (self.rx.block + 1) % self.rx.blocks;
    }

    /// Gives the TX slots from the first still waiting (`SEND_REQUEST`) among the `queued`
    /// slots starting at `first` back to us and rewinds `tx.next` there, where the kernel
    /// stopped. Returns (frames, bytes) taken back.
    fn reclaim(&mut self, first: usize, queued: usize) -> (u64, u64) {
        let frames = self.tx.frames;
        let Some(stop) = (0..queued).find(|&i| {
            self.slot_status((first + i) % frames)
                .load(Ordering::Acquire)
                == TP_STATUS_SEND_REQUEST
        }) else {
            return (0, 0);
        };
        let mut bytes = 0u64;
        for i in stop..queued {
            let slot = (first + i) % frames;
            let len_at = self.slot_offset(slot) + hdr::LEN;
            // SAFETY: a 4-byte field inside the slot, which is ours while it waits; read
            // unaligned-tolerant.
            let len = unsafe { self.ring.ptr().add(len_at).cast::<u32>().read_unaligned() };
            bytes += u64::from(len).saturating_sub(vnet::LEN as u64);
            self.slot_status(slot)
                .store(TP_STATUS_AVAILABLE, Ordering::Release);
        }
        self.tx.next = (first + stop) % frames;
        ((queued - stop) as u64, bytes)
    }

    /// One `sendto` kick for the slots just queued; on failure takes the unsent ones back and
    /// counts them.
    fn kick(&mut self, first: usize, queued: usize, d: &mut PortStats) {
        let mut retries = 0;
        let errno = loop {
            // SAFETY: no buffer is passed; the kernel sends what the TX ring holds.
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
            if rc >= 0 {
                break None;
            }
            let errno = io::Error::last_os_error().raw_os_error();
            match errno {
                Some(libc::EINTR) => continue,
                // The driver or the peer is full: try again a little, then give up.
                Some(libc::ENOBUFS | libc::EAGAIN) if retries < 2 => retries += 1,
                _ => break errno,
            }
        };
        // After success everything queued is gone, unless the kernel stopped early; check
        // the last slot before looking closer.
        let last = (first + queued - 1) % self.tx.frames;
        if errno.is_none()
            && self.slot_status(last).load(Ordering::Acquire) != TP_STATUS_SEND_REQUEST
        {
            return;
        }
        let (frames, bytes) = self.reclaim(first, queued);
        d.tx_packets = d.tx_packets.saturating_sub(frames);
        d.tx_bytes = d.tx_bytes.saturating_sub(bytes);
        match errno {
            Some(libc::ENOBUFS | libc::EAGAIN) => d.tx_dropped += frames,
            _ => d.tx_errors += frames,
        }
    }
}

/// Validated ring geometry, as the kernel wants it.
struct Geometry {
    block_size: u32,
    frame_size: u32,
    frames_per_block: u32,
    rx_blocks: u32,
    tx_blocks: u32,
}

impl Geometry {
    fn new(o: &AfPacketOptions) -> Result<Geometry, &'static str> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        if o.block_size == 0 || o.block_size % page != 0 {
            return Err("block_size must be a multiple of the page size");
        }
        if o.frame_size == 0 || o.frame_size % 16 != 0 || o.block_size % o.frame_size != 0 {
            return Err("frame_size must be a multiple of 16 dividing block_size");
        }
        if o.rx_blocks == 0 || o.tx_frames == 0 {
            return Err("rx_blocks and tx_frames must not be 0");
        }
        let frames_per_block = o.block_size / o.frame_size;
        let tx_blocks = o.tx_frames.div_ceil(frames_per_block);
        let fit = |v: usize| u32::try_from(v).map_err(|_| "ring too large");
        let g = Geometry {
            block_size: fit(o.block_size)?,
            frame_size: fit(o.frame_size)?,
            frames_per_block: fit(frames_per_block)?,
            rx_blocks: fit(o.rx_blocks)?,
            tx_blocks: fit(tx_blocks)?,
        };
        fit(o.rx_blocks * frames_per_block)?;
        fit(tx_blocks * frames_per_block)?;
        fit(o.block_size * (o.rx_blocks + tx_blocks))?;
        Ok(g)
    }
}

/// Why a received frame was not handed out.
enum Bad {
    /// The frame is unusable (cut, too large, empty); go on with the next one.
    Frame,
    /// The block's frame list is corrupt; give the rest of the block up.
    Block,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Copies the frame whose `tpacket3_hdr` is at `at` in `block` into `buf`: puts a stripped
/// VLAN tag back and finishes an unfinished checksum. Returns the frame length and the offset
/// of the next header (relative to `at`).
fn take_frame(block: &[u8], at: usize, buf: &mut PacketBuf) -> (Result<usize, Bad>, u32) {
    let Some(h) = block.get(at..at + hdr::SIZE) else {
        return (Err(Bad::Block), 0);
    };
    let field = |off| u32_at(h, off).unwrap_or(0);
    let next = field(hdr::NEXT_OFFSET);
    let snaplen = field(hdr::SNAPLEN) as usize;
    let len = field(hdr::LEN) as usize;
    let status = field(hdr::STATUS);
    let mac = usize::from(u16_at(h, hdr::MAC).unwrap_or(0));
    let vlan = (status & TP_STATUS_VLAN_VALID != 0).then(|| {
        let tci = field(hdr::VLAN_TCI) as u16;
        let tpid = match u16_at(h, hdr::VLAN_TPID) {
            Some(t) if status & TP_STATUS_VLAN_TPID_VALID != 0 && t != 0 => t,
            _ => ETH_P_8021Q,
        };
        (tpid, tci)
    });

    let (Some(frame), Some(vh)) = (
        block.get(at + mac..at + mac + snaplen),
        mac.checked_sub(vnet::LEN)
            .and_then(|v| block.get(at + v..at + mac)),
    ) else {
        return (Err(Bad::Block), next);
    };
    let extra = if vlan.is_some() { VLAN_HLEN } else { 0 };
    let total = snaplen + extra;
    let area = buf.receive_area();
    if snaplen < len || snaplen < ETH_ADDRS_LEN || total > area.len() {
        return (Err(Bad::Frame), next);
    }
    let (Some(out), Some(addrs), Some(rest)) = (
        area.get_mut(..total),
        frame.get(..ETH_ADDRS_LEN),
        frame.get(ETH_ADDRS_LEN..),
    ) else {
        return (Err(Bad::Frame), next);
    };
    match vlan {
        None => out.copy_from_slice(frame),
        Some((tpid, tci)) => {
            let (a, b) = out.split_at_mut(ETH_ADDRS_LEN);
            a.copy_from_slice(addrs);
            let (tag, tail) = b.split_at_mut(VLAN_HLEN);
            let [t0, t1] = tpid.to_be_bytes();
            let [c0, c1] = tci.to_be_bytes();
            tag.copy_from_slice(&[t0, t1, c0, c1]);
            tail.copy_from_slice(rest);
        }
    }

    // The kernel's request, its offsets moved past a tag put back in front of them.
    let request = <&[u8; VNET_HDR_LEN]>::try_from(vh)
        .ok()
        .map(Offload::parse)
        .and_then(|mut r| r.shift(extra).ok().map(|()| r));
    CHECKSUMS.on_rx(out, request);
    match buf.set_len(total) {
        Ok(()) => (Ok(total), next),
        Err(_) => (Err(Bad::Frame), next),
    }
}

impl PortQueue for AfPacketPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut d = PortStats::default();
        let mut got = 0;
        // Empty blocks are possible in principle; never look at more than the ring per burst.
        let mut opened = 0;
        while got < max {
            if self.rx.left == 0 {
                if opened == self.rx.blocks
                    || self.block_status(self.rx.block).load(Ordering::Acquire) & TP_STATUS_USER
                        == 0
                {
                    break;
                }
                opened += 1;
                let start = self.rx.block * self.rx.block_size;
                // SAFETY: the block is ours (TP_STATUS_USER, read with Acquire) until we store
                // TP_STATUS_KERNEL; the kernel does not write it meanwhile.
                let desc =
                    unsafe { std::slice::from_raw_parts(self.ring.ptr().add(start), block::LEN) };
                let num = u32_at(desc, block::NUM_PKTS).unwrap_or(0);
                let first = u32_at(desc, block::FIRST_PKT).unwrap_or(0) as usize;
                if num == 0 {
                    self.release_block();
                    continue;
                }
                self.rx.left = num;
                self.rx.offset = first;
            }
            let Some(mut buf) = pool.alloc() else {
                d.rx_nombuf += 1;
                break;
            };
            let start = self.rx.block * self.rx.block_size;
            // SAFETY: as above: the open block belongs to us until it is released.
            let block = unsafe {
                std::slice::from_raw_parts(self.ring.ptr().add(start), self.rx.block_size)
            };
            let (taken, next) = take_frame(block, self.rx.offset, &mut buf);
            match taken {
                Ok(n) => {
                    d.rx_packets += 1;
                    d.rx_bytes += n as u64;
                    out.push(buf);
                    got += 1;
                    self.rx.left -= 1;
                }
                Err(Bad::Frame) => {
                    d.rx_errors += 1;
                    pool.free(buf);
                    self.rx.left -= 1;
                }
                Err(Bad::Block) => {
                    d.rx_errors += u64::from(self.rx.left);
                    pool.free(buf);
                    self.rx.left = 0;
                }
            }
            self.rx.offset += next as usize;
            if self.rx.left == 0 {
                self.release_block();
            }
        }
        if got == 0 {
            self.empty_bursts = self.empty_bursts.wrapping_add(1);
            if self.empty_bursts % CLEAR_ERROR_EVERY == 0 {
                self.clear_socket_error();
            }
        } else {
            self.empty_bursts = 0;
        }
        self.counters.add(&d);
        got
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        let mut d = PortStats::default();
        let first = self.tx.next;
        let mut queued = 0;
        let mut full = false;
        for pkt in pkts.drain(..) {
            let len = pkt.len();
            if len == 0 || len > self.tx.max_len {
                d.tx_errors += 1;
            } else if full {
                d.tx_dropped += 1;
            } else {
                let slot = self.tx.next;
                match self.slot_status(slot).load(Ordering::Acquire) {
                    TP_STATUS_AVAILABLE | TP_STATUS_WRONG_FORMAT => {
                        let at = self.slot_offset(slot);
                        // SAFETY: the slot lies inside the mapping and is ours while it is
                        // AVAILABLE (or refused): the kernel only reads slots we mark
                        // SEND_REQUEST, and does so inside our own sendto.
                        let s = unsafe {
                            std::slice::from_raw_parts_mut(
                                self.ring.ptr().add(at),
                                self.tx.frame_size,
                            )
                        };
                        let data = self.tx.data_offset;
                        let wire = (len + vnet::LEN) as u32;
                        if let Some(area) = s.get_mut(data..data + vnet::LEN + len) {
                            let (v, f) = area.split_at_mut(vnet::LEN);
                            v.fill(0);
                            f.copy_from_slice(pkt.data());
                        }
                        for (off, val) in [
                            (hdr::NEXT_OFFSET, 0),
                            (hdr::SNAPLEN, wire),
                            (hdr::LEN, wire),
                        ] {
                            if let Some(w) = s.get_mut(off..off + 4) {
                                w.copy_from_slice(&val.to_ne_bytes());
                            }
                        }
                        self.slot_status(slot)
                            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
                        self.tx.next = (slot + 1) % self.tx.frames;
                        queued += 1;
                        d.tx_packets += 1;
                        d.tx_bytes += len as u64;
                    }
                    // Still queued or in flight: the ring is full.
                    _ => {
                        full = true;
                        d.tx_dropped += 1;
                    }
                }
            }
            pool.free(pkt);
        }
        if queued > 0 {
            self.kick(first, queued, &mut d);
        }
        self.counters.add(&d);
        d.tx_packets as usize
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn offloads(&self) -> bool {
        CHECKSUMS.passes_requests()
    }
}

impl PortDevice for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_up(&self) -> bool {
        self.clear_socket_error();
        sys::link_up(&self.ctl, self.ifindex)
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_packet::checksum;
    use std::net::Ipv4Addr;

    /// A ring block holding one frame as the kernel lays it out: `tpacket3_hdr`, padding, the
    /// virtio-net header, then the frame at `MAC`.
    fn block_with(
        frame: &[u8],
        status: u32,
        vlan: Option<(u16, u16)>,
        vnet_hdr: [u8; 10],
    ) -> Vec<u8> {
        const AT: usize = 64; // where the header sits in the block
        const MAC: usize = 82; // tp_mac, relative to the header
        let mut b = vec![0u8; AT + MAC + frame.len() + 64];
        let h = &mut b[AT..];
        h[hdr::SNAPLEN..hdr::SNAPLEN + 4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        h[hdr::LEN..hdr::LEN + 4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        h[hdr::STATUS..hdr::STATUS + 4].copy_from_slice(&status.to_ne_bytes());
        h[hdr::MAC..hdr::MAC + 2].copy_from_slice(&(MAC as u16).to_ne_bytes());
        if let Some((tpid, tci)) = vlan {
            h[hdr::VLAN_TCI..hdr::VLAN_TCI + 4].copy_from_slice(&u32::from(tci).to_ne_bytes());
            h[hdr::VLAN_TPID..hdr::VLAN_TPID + 2].copy_from_slice(&tpid.to_ne_bytes());
        }
        h[MAC - vnet::LEN..MAC].copy_from_slice(&vnet_hdr);
        h[MAC..MAC + frame.len()].copy_from_slice(frame);
        b
    }

    /// Ethernet + IPv4 + UDP with the checksum complete, and the same with the field holding
    /// only the pseudo-header sum (what offload leaves).
    fn udp_frames() -> (Vec<u8>, Vec<u8>) {
        let payload = b"partial checksum";
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[38..40].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(payload);
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut partial = f.clone();
        let pseudo = checksum::pseudo_header_v4(
            &src,
            &dst,
            dp_packet::IpProtocol::UDP,
            (8 + payload.len()) as u32,
        );
        partial[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let sum = checksum::transport_v4(&src, &dst, dp_packet::IpProtocol::UDP, &f[34..]);
        f[40..42].copy_from_slice(&sum.to_be_bytes());
        (f, partial)
    }

    fn needs_csum(start: u16, offset: u16) -> [u8; 10] {
        let mut v = [0u8; 10];
        v[vnet::FLAGS] = vnet::F_NEEDS_CSUM;
        v[vnet::CSUM_START..vnet::CSUM_START + 2].copy_from_slice(&start.to_ne_bytes());
        v[vnet::CSUM_OFFSET..vnet::CSUM_OFFSET + 2].copy_from_slice(&offset.to_ne_bytes());
        v
    }

    #[test]
    fn partial_checksum_is_finished_from_the_vnet_header() {
        let (good, partial) = udp_frames();
        let block = block_with(&partial, TP_STATUS_USER, None, needs_csum(34, 6));
        let mut buf = PacketBuf::new(2048);
        let (r, _) = take_frame(&block, 64, &mut buf);
        assert_eq!(r.ok(), Some(good.len()));
        assert_eq!(buf.data(), good.as_slice());
    }

    #[test]
    fn stripped_vlan_tag_is_put_back_and_the_checksum_still_found() {
        let (good, partial) = udp_frames();
        let status = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        let block = block_with(&partial, status, Some((0x88a8, 0x2007)), needs_csum(34, 6));
        let mut buf = PacketBuf::new(2048);
        let (r, _) = take_frame(&block, 64, &mut buf);
        let mut want = good.clone();
        want.splice(12..12, [0x88, 0xa8, 0x20, 0x07]);
        assert_eq!(r.ok(), Some(want.len()));
        assert_eq!(buf.data(), want.as_slice());
        // Without a TPID from the kernel, 802.1Q is assumed.
        let block = block_with(
            &good,
            TP_STATUS_USER | TP_STATUS_VLAN_VALID,
            Some((0, 7)),
            [0; 10],
        );
        let (_, _) = take_frame(&block, 64, &mut buf);
        assert_eq!(&buf.data()[12..16], &[0x81, 0x00, 0x00, 0x07]);
    }

    #[test]
    fn cut_oversized_and_corrupt_frames_are_refused() {
        let (good, _) = udp_frames();
        let mut small = PacketBuf::new(40);
        let block = block_with(&good, TP_STATUS_USER, None, [0; 10]);
        assert!(matches!(
            take_frame(&block, 64, &mut small).0,
            Err(Bad::Frame)
        ));
        // Cut by the ring: snaplen < len.
        let mut cut = block.clone();
        cut[64 + hdr::LEN..64 + hdr::LEN + 4].copy_from_slice(&9000u32.to_ne_bytes());
        let mut buf = PacketBuf::new(2048);
        assert!(matches!(take_frame(&cut, 64, &mut buf).0, Err(Bad::Frame)));
        // A header or frame outside the block.
        assert!(matches!(
            take_frame(&block, block.len() - 8, &mut buf).0,
            Err(Bad::Block)
        ));
        let mut wild = block.clone();
        wild[64 + hdr::MAC..64 + hdr::MAC + 2].copy_from_slice(&0xfff0u16.to_ne_bytes());
        assert!(matches!(take_frame(&wild, 64, &mut buf).0, Err(Bad::Block)));
    }

    #[test]
    fn geometry_is_validated() {
        let ok = AfPacketOptions::default();
        let g = Geometry::new(&ok).unwrap();
        assert_eq!(g.frames_per_block, 64);
        assert_eq!(g.tx_blocks, 16);
        for bad in [
            AfPacketOptions {
                block_size: 5000,
                ..ok.clone()
            },
            AfPacketOptions {
                frame_size: 1000,
                ..ok.clone()
            },
            AfPacketOptions {
                frame_size: 3 * 1024,
                ..ok.clone()
            },
            AfPacketOptions {
                rx_blocks: 0,
                ..ok.clone()
            },
        ] {
            assert!(Geometry::new(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_are_send() {
        fn send<T: Send>() {}
        send::<AfPacketPort>();
        send::<crate::AfXdpPort>();
    }
}
