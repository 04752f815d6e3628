//! AF_XDP ports on an existing interface, without libbpf or libxdp.
//!
//! [`AfXdpPort::open`] sets up, with raw system calls:
//!
//! 1. an **AF_XDP socket** with its own UMEM (`rx_frames + tx_frames` frames of
//!    `frame_size` bytes, anonymous memory) and its fill, completion, RX and TX rings, bound to
//!    one queue of the interface with `XDP_USE_NEED_WAKEUP`, in copy mode (`XDP_COPY`), or, when
//!    [`AfXdpOptions::zero_copy`] asks for it, zero-copy where the driver offers it (the kernel
//!    falls back to copy by itself; the port logs it and [`AfXdpPort::zero_copy`] tells);
//! 2. an **XSKMAP** holding the socket at its queue index, and a six-instruction **XDP program**
//!    that redirects each frame to the socket of its RX queue, or passes it to the
//!    kernel's stack when the queue has none;
//! 3. the program's **attachment** as a BPF link (`BPF_LINK_CREATE`), in native (driver) mode,
//!    falling back to generic (SKB) mode when the driver refuses ([`AfXdpOptions::mode`]). A
//!    link detaches when its descriptor closes, so a killed daemon leaves nothing behind.
//!    Before attaching, a stale program attached the classic way (netlink, e.g. by a daemon
//!    killed while using [`XdpAttach::Netlink`], or by `ip link set ... xdp`) is detached.
//!
//! [`PortQueue::rx_burst`] copies each received frame from the UMEM into a pool buffer and gives
//! the UMEM frame straight back to the fill ring (one copy keeps the [`Port`](crate::Port) trait simple;
//! lending UMEM frames out as `PacketBuf`s, zero-copy all the way, is future work). The fill
//! ring's index is published in batches (up to 64 frames) so that the kernel, which reads it
//! on the sending core, finds whole cache lines of new entries. The UMEM is registered with
//! unaligned chunks although its frames are aligned: the kernel then recycles one hot buffer
//! head instead of walking one head per frame (a cache miss per frame on the sending core).
//! [`PortQueue::tx_burst`] copies frames into free UMEM frames, queues them on the TX ring and kicks
//! the kernel with `sendto`. A copy-mode kick sends at most 32 frames (unless Linux 6.17+ lets
//! the port raise that budget with `XDP_MAX_TX_SKB_BUDGET`), so the port kicks until the ring
//! is drained, a bounded number of times, taking completed frames back as it goes.
//!
//! # Busy polling
//! With [`AfXdpOptions::busy_poll_budget`] > 0 the socket prefers busy polling
//! (`SO_PREFER_BUSY_POLL`): an empty receive poll (only while the port saw frames within its
//! last 16 polls, so idle ports make no system calls) makes a non-blocking `recvfrom`, which
//! runs the interface's receive NAPI — the XDP program and the copy into the UMEM — on the
//! worker's core instead of the sender's. DPDK's `net_af_xdp` does this by default. Off by
//! default: on a veth whose sender shares the machine with a busy worker, the worker's core is
//! the scarcer one (see BENCHMARKS.md, "AF_XDP, session 6").
//!
//! # Only one queue
//! The socket serves one RX queue ([`AfXdpOptions::queue`], 0 by default); frames arriving on
//! other queues go to the kernel's stack. Give the interface a single queue (a veth has one
//! unless made with more; for a NIC, `ethtool -L IF combined 1`) or open one port per queue.
//!
//! # veth specifics
//! Native XDP on a veth turns segmentation offload (TSO/GSO) off on the peer and refuses peer
//! MTUs that do not fit a page (e.g. 9000): the port then falls back to SKB mode (see
//! [`AfXdpPort::xdp_mode`]). A veth has no zero-copy.
//!
//! # Checksums
//! XDP hands over frames as bytes, without the kernel's checksum metadata. A TCP/UDP frame
//! that a local stack sent through a veth with checksum offload on arrives with its checksum
//! unfinished (only the pseudo-header sum in the field). With
//! [`AfXdpOptions::finish_checksums`] (the default) the port recognises such frames by that
//! value and finishes them: frames with a complete checksum are never changed, and the test
//! costs a few additions per TCP/UDP frame (Ethernet, up to two VLAN tags, IPv4 or IPv6
//! without extension headers). Turning TX checksum offload off on such senders
//! (`ethtool -K PEER tx off`) makes it unnecessary. This is [`ChecksumPolicy::FinishIfPartial`],
//! the policy shared with the other backends.
//!
//! # Counters
//! The kernel does not say which frame of a kick it dropped, so a frame counts as transmitted
//! (`tx_packets`) when it is queued on the TX ring, unless the kicks that follow say otherwise:
//! each `EBUSY` (the device dropped a frame: no carrier, or its peer was full) moves one frame
//! to `tx_dropped` (bytes estimated), and `ENETDOWN` moves the frames still queued to
//! `tx_errors` (they leave if the interface comes back up). While the interface is down, new
//! frames are counted in `tx_errors` and not queued. Frames the kernel dropped on receive
//! (fill ring empty, too large) are in [`AfXdpPort::statistics`].

mod bpf;
mod netlink;
mod xsk;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::sys;
use crate::{
    BufferPool, MacAddr, PacketBuf, PortCounters, PortDevice, PortError, PortQueue, PortStats,
};
use dp_buffer::offload::ChecksumPolicy;
use netlink::{XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST};
pub use xsk::XdpStatistics;
use xsk::{Desc, Layout, Xsk};

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native if the driver takes it, otherwise SKB (a request only; a port reports which).
    #[default]
    Auto,
    /// In the driver (`XDP_FLAGS_DRV_MODE`): fastest, needs driver support (veth has it).
    Native,
    /// Generic XDP on the kernel's socket buffers (`XDP_FLAGS_SKB_MODE`): works everywhere.
    Skb,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttach {
    /// A BPF link (Linux 5.9+): detached when the port closes or the process dies.
    #[default]
    Link,
    /// Classic netlink attachment (`IFLA_XDP`), for older kernels: detached when the port is
    /// dropped, but left attached if the process is killed (the next open removes it).
    Netlink,
}

/// Sizes and switches of an [`AfXdpPort`]. The defaults suit 1500-byte MTUs and take 12 MiB
/// of UMEM per port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfXdpOptions {
    /// The interface RX/TX queue to bind.
    pub queue: u32,
    /// Where to run the XDP program.
    pub mode: XdpMode,
    /// Ask for zero-copy (falls back to copy mode where the driver has none, e.g. veth).
    pub zero_copy: bool,
    /// How to attach the XDP program.
    pub attach: XdpAttach,
    /// UMEM frame size: 2048 or 4096. A received frame can be `frame_size - 256` bytes long
    /// (the kernel keeps XDP headroom in front of it).
    pub frame_size: u32,
    /// UMEM frames for receiving, and the fill and RX ring size: a power of two. They absorb
    /// the time the worker is not running (4096 frames: about 8 ms at 500 kpps).
    pub rx_frames: u32,
    /// UMEM frames for transmitting, and the TX and completion ring size: a power of two.
    pub tx_frames: u32,
    /// Let one copy-mode kick send a whole TX ring where the kernel allows it (Linux 6.17+);
    /// otherwise the port kicks once per 32 frames.
    pub raise_tx_budget: bool,
    /// Finish TCP/UDP checksums that offload left unfinished (see "Checksums").
    pub finish_checksums: bool,
    /// Preferred busy polling (see "Busy polling"): frames the interface's receive NAPI may
    /// handle per busy poll; 0 turns it off.
    pub busy_poll_budget: u32,
}

impl Default for AfXdpOptions {
    fn default() -> Self {
        AfXdpOptions {
            queue: 0,
            mode: XdpMode::Auto,
            zero_copy: false,
            attach: XdpAttach::Link,
            frame_size: 2048,
            rx_frames: 4096,
            tx_frames: 2048,
            raise_tx_budget: true,
            finish_checksums: true,
            busy_poll_budget: 0,
        }
    }
}

/// An XDP program found on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpProgramInfo {
    /// The kernel's program id (`bpftool prog show id N`).
    pub prog_id: u32,
    /// Where it runs (`Auto` when attached in several modes or offloaded).
    pub mode: XdpMode,
}

/// The XDP program attached to the interface `ifname`, if any.
pub fn xdp_program_on(ifname: &str) -> Result<Option<XdpProgramInfo>, PortError> {
    sys::check_name(ifname)?;
    let ctl = sys::control_socket(ifname)?;
    let iface = sys::ethernet_interface(&ctl, ifname)?;
    let found = netlink::query(iface.ifindex)
        .map_err(|e| sys::io_error(ifname, "cannot query the XDP program", e))?;
    Ok(found.map(info))
}

fn info(a: netlink::Attached) -> XdpProgramInfo {
    XdpProgramInfo {
        prog_id: a.prog_id,
        mode: match a.mode {
            netlink::XDP_ATTACHED_DRV => XdpMode::Native,
            netlink::XDP_ATTACHED_SKB => XdpMode::Skb,
            _ => XdpMode::Auto,
        },
    }
}

/// Detaches an XDP program attached to `ifindex` the classic way (netlink), e.g. left by a
/// process that was killed. Returns what was detached. A program held by a BPF link belongs
/// to a live process and is left alone (an error).
fn detach_stale(name: &str, ifindex: i32) -> Result<Option<XdpProgramInfo>, PortError> {
    let Some(found) = netlink::query(ifindex)
        .map_err(|e| sys::io_error(name, "cannot query the XDP program", e))?
    else {
        return Ok(None);
    };
    let modes: &[u32] = match found.mode {
        netlink::XDP_ATTACHED_DRV => &[XDP_FLAGS_DRV_MODE],
        netlink::XDP_ATTACHED_SKB => &[XDP_FLAGS_SKB_MODE],
        netlink::XDP_ATTACHED_MULTI => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
        netlink::XDP_ATTACHED_HW => &[],
        _ => &[XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE],
    };
    for &mode in modes {
        netlink::detach(ifindex, mode).map_err(|e| {
            let what = if e.raw_os_error() == Some(libc::EBUSY) {
                "an XDP program held by a BPF link (another live process) is attached"
            } else {
                "cannot detach a stale XDP program"
            };
            sys::io_error(name, what, e)
        })?;
    }
    tracing::warn!(
        port = name,
        prog_id = found.prog_id,
        "detached a stale XDP program from the interface"
    );
    Ok(Some(info(found)))
}

/// The XDP program and how it is attached; dropped before the socket.
#[derive(Debug)]
struct Program {
    /// Closing it detaches the program (link attachment).
    link: Option<OwnedFd>,
    prog: OwnedFd,
    _map: OwnedFd,
    /// Netlink attachment: the mode flag to detach on drop.
    netlink: Option<u32>,
    ifindex: i32,
}

impl Drop for Program {
    fn drop(&mut self) {
        drop(self.link.take());
        if let Some(mode) = self.netlink {
            // Only our own program, in case someone replaced it meanwhile.
            let _ = netlink::set(self.ifindex, -1, mode, Some(self.prog.as_raw_fd()));
        }
    }
}

/// An AF_XDP port; see the module docs.
#[derive(Debug)]
pub struct AfXdpPort {
    name: String,
    ifindex: i32,
    mac: MacAddr,
    counters: Arc<PortCounters>,
    ctl: OwnedFd,
    /// First field dropped: detach the program before the socket goes.
    _program: Program,
    xsk: Xsk,
    mode: XdpMode,
    frame_size: u32,
    /// Largest frame received into a UMEM frame (frame_size minus the XDP headroom).
    rx_max: usize,
    /// UMEM bytes used by receive frames (addresses below are RX, above TX).
    rx_area: u64,
    /// Free TX frames (UMEM addresses); never more than `tx_frames`, so it never grows.
    free_tx: Vec<u64>,
    tx_frames: usize,
    /// Set when a kick found the interface down: frames are not queued until a kick succeeds.
    tx_down: bool,
    /// [`ChecksumPolicy::FinishIfPartial`], or `Complete` without `finish_checksums`.
    checksums: ChecksumPolicy,
    /// Fill-ring entries written but not yet published to the kernel.
    fill_pending: u32,
    /// Publish the fill ring once this many entries are pending (see `rx_burst`).
    fill_batch: u32,
    /// Busy polling is on (see "Busy polling").
    busy_poll: bool,
    /// Empty receive polls since the last frame (saturating).
    rx_empty: u32,
}

/// Busy polling: an empty receive poll runs the interface's NAPI (a `recvfrom`) only while
/// the port saw frames within this many empty polls, so idle ports make no system calls.
const BUSY_POLL_AFTER_FRAMES: u32 = 16;
/// Received frames go back to the fill ring at once, but the ring's producer index is
/// published only once this many are pending (a quarter of the ring at most): the kernel,
/// which reads the index and the entries on the sender's core, then finds whole cache lines
/// of new entries instead of taking the index's line from us every few frames.
const FILL_BATCH: u32 = 64;
/// `SO_BUSY_POLL`: irrelevant to non-blocking calls, but must not be 0.
const BUSY_POLL_USECS: u32 = 20;

/// Headroom the kernel keeps in front of a frame it copies into the UMEM.
const XDP_PACKET_HEADROOM: usize = 256;
/// Frames one copy-mode kick sends by default.
const TX_BATCH: u32 = 32;
/// Most kicks one transmit burst may make.
const MAX_KICKS: u32 = 128;

impl AfXdpPort {
    /// Opens an AF_XDP port on queue `opts.queue` of the existing Ethernet interface `ifname`;
    /// see the module docs.
    ///
    /// Fails with [`PortError::InvalidName`] for a name the kernel would refuse, and
    /// [`PortError::Io`] naming the step that failed: the interface does not exist or is not
    /// Ethernet, the options are invalid, the process lacks `CAP_NET_RAW`/`CAP_BPF`/
    /// `CAP_NET_ADMIN` (`EPERM`), the queue has another socket, another live process has an
    /// XDP program on the interface, or the kernel refuses the program (the error carries the
    /// end of the verifier's log).
    pub fn open(ifname: &str, opts: &AfXdpOptions) -> Result<AfXdpPort, PortError> {
        sys::check_name(ifname)?;
        let name = ifname;
        let invalid = |what| sys::io_error(name, what, io::Error::from_raw_os_error(libc::EINVAL));
        if opts.frame_size != 2048 && opts.frame_size != 4096 {
            return Err(invalid("frame_size must be 2048 or 4096"));
        }
        let pow2 = |n: u32| n.is_power_of_two() && (64..=1 << 16).contains(&n);
        if !pow2(opts.rx_frames) || !pow2(opts.tx_frames) {
            return Err(invalid(
                "rx_frames and tx_frames must be powers of two, 64 to 65536",
            ));
        }
        let ctl = sys::control_socket(name)?;
        let iface = sys::ethernet_interface(&ctl, name)?;
        // (Not PortError::PermissionDenied, whose message is about TAP devices: the step and
        // EPERM say it. And bpf(2) answers EACCES when the verifier refuses a program.)
        let permission = |what: &'static str| move |e: io::Error| sys::io_error(name, what, e);

        // The socket first: its queue must be free before we touch the interface's program.
        let layout = Layout {
            frame_size: opts.frame_size,
            rx_frames: opts.rx_frames,
            tx_frames: opts.tx_frames,
        };
        let xsk = Xsk::new(
            iface.ifindex,
            opts.queue,
            layout,
            opts.zero_copy,
            opts.raise_tx_budget,
        )
        .map_err(|(what, e)| permission(what)(e))?;
        if iface.mtu as usize + 18 > opts.frame_size as usize - XDP_PACKET_HEADROOM {
            tracing::warn!(
                port = name,
                mtu = iface.mtu,
                frame_size = opts.frame_size,
                "frames longer than frame_size - 256 bytes will be dropped on receive"
            );
        }
        if opts.zero_copy && !xsk.zero_copy {
            tracing::warn!(
                port = name,
                "zero-copy AF_XDP not available; using copy mode"
            );
        }

        let map =
            bpf::create_xskmap(opts.queue + 1).map_err(permission("cannot create the XSKMAP"))?;
        let prog = bpf::load_redirect_program(&map)
            .map_err(permission("the kernel refused the XDP program"))?;
        bpf::set_xskmap(&map, opts.queue, &xsk.fd)
            .map_err(|e| sys::io_error(name, "cannot put the socket in the XSKMAP", e))?;

        detach_stale(name, iface.ifindex)?;
        let modes: &[(XdpMode, u32)] = match opts.mode {
            XdpMode::Auto => &[
                (XdpMode::Native, XDP_FLAGS_DRV_MODE),
                (XdpMode::Skb, XDP_FLAGS_SKB_MODE),
            ],
            XdpMode::Native => &[(XdpMode::Native, XDP_FLAGS_DRV_MODE)],
            XdpMode::Skb => &[(XdpMode::Skb, XDP_FLAGS_SKB_MODE)],
        };
        let mut last = None;
        let mut attached = None;
        for &(mode, flags) in modes {
            let result = match opts.attach {
                XdpAttach::Link => bpf::attach_link(&prog, iface.ifindex, flags).map(Some),
                XdpAttach::Netlink => netlink::set(
                    iface.ifindex,
                    prog.as_raw_fd(),
                    flags | XDP_FLAGS_UPDATE_IF_NOEXIST,
                    None,
                )
                .map(|()| None),
            };
            match result {
                Ok(link) => {
                    attached = Some((mode, flags, link));
                    break;
                }
                Err(e) => {
                    if opts.mode == XdpMode::Auto && mode == XdpMode::Native {
                        tracing::warn!(
                            port = name,
                            error = %e,
                            "native XDP refused; falling back to SKB mode"
                        );
                    }
                    last = Some(e);
                }
            }
        }
        let Some((mode, flags, link)) = attached else {
            let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
            return Err(permission("cannot attach the XDP program")(e));
        };
        let program = Program {
            netlink: link.is_none().then_some(flags),
            link,
            prog,
            _map: map,
            ifindex: iface.ifindex,
        };

        let busy_poll = opts.busy_poll_budget > 0
            && match xsk.set_busy_poll(BUSY_POLL_USECS, opts.busy_poll_budget) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(port = name, error = %e, "cannot turn on busy polling");
                    false
                }
            };
        let rx_area = u64::from(opts.rx_frames) * u64::from(opts.frame_size);
        let mut free_tx = Vec::with_capacity(opts.tx_frames as usize);
        free_tx.extend(
            (0..u64::from(opts.tx_frames)).map(|i| rx_area + i * u64::from(opts.frame_size)),
        );
        Ok(AfXdpPort {
            name: name.into(),
            ifindex: iface.ifindex,
            mac: iface.mac,
            counters: PortCounters::new(),
            ctl,
            _program: program,
            xsk,
            mode,
            frame_size: opts.frame_size,
            rx_max: opts.frame_size as usize - XDP_PACKET_HEADROOM,
            rx_area,
            free_tx,
            tx_frames: opts.tx_frames as usize,
            tx_down: false,
            checksums: if opts.finish_checksums {
                ChecksumPolicy::FinishIfPartial
            } else {
                ChecksumPolicy::Complete
            },
            fill_pending: 0,
            fill_batch: (opts.rx_frames / 4).min(FILL_BATCH),
            busy_poll,
            rx_empty: BUSY_POLL_AFTER_FRAMES,
        })
    }

    /// The interface's ifindex.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Where the XDP program runs: [`XdpMode::Native`] or [`XdpMode::Skb`].
    pub fn xdp_mode(&self) -> XdpMode {
        self.mode
    }

    /// Whether the socket runs in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.xsk.zero_copy
    }

    /// The kernel's drop counters for the socket (`XDP_STATISTICS`); `None` if it refuses.
    pub fn statistics(&self) -> Option<XdpStatistics> {
        self.xsk.statistics()
    }

    /// Takes completed TX frames back from the completion ring.
    fn reclaim_completions(&mut self) {
        let comp = &mut self.xsk.comp;
        let ready = comp.producer().wrapping_sub(comp.local);
        if ready == 0 {
            return;
        }
        let mask = !(u64::from(self.frame_size) - 1);
        for i in 0..ready {
            let addr = comp.read::<u64>(comp.local.wrapping_add(i)) & mask;
            // Never more than the frames we own (a bogus address would grow the list).
            if addr >= self.rx_area && self.free_tx.len() < self.tx_frames {
                self.free_tx.push(addr);
            }
        }
        comp.local = comp.local.wrapping_add(ready);
        comp.publish_consumer();
    }

    /// Kicks until the kernel has taken everything from the TX ring (copy mode), a bounded
    /// number of times; see "Counters" in the module docs. Returns (frames dropped by the
    /// device, whether the interface is down).
    fn drain_tx(&mut self) -> (u64, bool) {
        let mut dropped = 0;
        let pending = self.xsk.tx.local.wrapping_sub(self.xsk.tx.consumer());
        let per_kick = if self.xsk.big_tx_budget {
            self.xsk.tx.size()
        } else {
            TX_BATCH
        };
        // Enough kicks for the pending frames, plus one for each frame the device drops
        // (each such kick stops there), never more than MAX_KICKS.
        let mut limit = (pending.div_ceil(per_kick) + 2).min(MAX_KICKS);
        let mut kicks = 0;
        while kicks < limit {
            kicks += 1;
            if self.xsk.tx.consumer() == self.xsk.tx.local {
                break;
            }
            // Zero-copy: the driver sends by itself once woken.
            if self.xsk.zero_copy && !self.xsk.tx.needs_wakeup() {
                break;
            }
            match self.xsk.kick_tx() {
                Ok(()) => {}
                // Budget used up, or the completion ring is full: make room and go on.
                Err(libc::EAGAIN) => self.reclaim_completions(),
                // The device dropped one frame (no carrier, or its peer is full).
                Err(libc::EBUSY) => {
                    dropped += 1;
                    limit = (limit + 1).min(MAX_KICKS);
                }
                Err(libc::ENETDOWN) => return (dropped, true),
                Err(_) => break,
            }
            if self.xsk.zero_copy {
                break;
            }
        }
        (dropped, false)
    }
}

impl PortQueue for AfXdpPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut ready = self.xsk.rx.producer().wrapping_sub(self.xsk.rx.local);
        if ready == 0 {
            if !self.busy_poll || self.rx_empty >= BUSY_POLL_AFTER_FRAMES {
                return 0;
            }
            self.rx_empty += 1;
            self.xsk.kick_rx();
            ready = self.xsk.rx.producer().wrapping_sub(self.xsk.rx.local);
            if ready == 0 {
                return 0;
            }
        }
        self.rx_empty = 0;
        let mut d = PortStats::default();
        let want = (ready as usize).min(max) as u32;
        let mut taken = 0u32;
        let mut got = 0;
        while taken < want {
            let Some(mut buf) = pool.alloc() else {
                d.rx_nombuf += 1;
                break;
            };
            let desc: Desc = self.xsk.rx.read(self.xsk.rx.local.wrapping_add(taken));
            taken += 1;
            let len = desc.len as usize;
            let (frame, data) = self.xsk.rx_frame(desc.addr, self.frame_size);
            let start = usize::try_from(data).unwrap_or(usize::MAX);
            let area = buf.receive_area();
            let ok = len > 0
                && len <= area.len()
                && len <= self.rx_max
                && frame < self.rx_area
                && data >= frame
                && start.saturating_add(len) <= self.xsk.umem.len();
            if ok {
                // SAFETY: the frame lies inside the UMEM (checked above) and is ours until we
                // give it back to the fill ring below; the kernel writes other frames only.
                let frame =
                    unsafe { std::slice::from_raw_parts(self.xsk.umem.ptr().add(start), len) };
                if let Some(dst) = area.get_mut(..len) {
                    dst.copy_from_slice(frame);
                }
            }
            if frame < self.rx_area && frame % u64::from(self.frame_size) == 0 {
                let fill = &mut self.xsk.fill;
                fill.write(fill.local, frame);
                fill.local = fill.local.wrapping_add(1);
                self.fill_pending += 1;
            }
            if ok && buf.set_len(len).is_ok() {
                // No per-frame metadata: the policy looks at the frame itself.
                self.checksums.on_rx(buf.data_mut(), None);
                d.rx_packets += 1;
                d.rx_bytes += len as u64;
                out.push(buf);
                got += 1;
            } else {
                d.rx_errors += 1;
                pool.free(buf);
            }
        }
        if taken > 0 {
            self.xsk.rx.local = self.xsk.rx.local.wrapping_add(taken);
            self.xsk.rx.publish_consumer();
            if self.fill_pending >= self.fill_batch {
                self.fill_pending = 0;
                self.xsk.fill.publish_producer();
                if self.xsk.fill.needs_wakeup() {
                    self.xsk.kick_rx();
                }
            }
        }
        self.counters.add(&d);
        got
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        let mut d = PortStats::default();
        self.reclaim_completions();
        if self.tx_down {
            // Queue nothing while the interface is down; one kick tells when it is back.
            match self.xsk.kick_tx() {
                Err(libc::ENETDOWN) => {
                    d.tx_errors += pkts.len() as u64;
                    for pkt in pkts.drain(..) {
                        pool.free(pkt);
                    }
                    self.counters.add(&d);
                    return 0;
                }
                _ => self.tx_down = false,
            }
        }
        let frame_size = self.frame_size as usize;
        let in_ring = self.xsk.tx.local.wrapping_sub(self.xsk.tx.consumer());
        let mut room = self.xsk.tx.size().saturating_sub(in_ring);
        let mut queued = 0u64;
        for pkt in pkts.drain(..) {
            let len = pkt.len();
            if len == 0 || len > frame_size {
                d.tx_errors += 1;
            } else if room == 0 || self.free_tx.is_empty() {
                d.tx_dropped += 1;
            } else if let Some(addr) = self.free_tx.pop() {
                let at = addr as usize;
                // Always true (free TX frames lie in the UMEM and len <= frame_size); checked
                // because the copy below relies on it.
                if at + len <= self.xsk.umem.len() {
                    // SAFETY: a free TX frame inside the UMEM (checked): the kernel gave it
                    // back on the completion ring (or never had it) and reads it only after
                    // we publish its descriptor below.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(self.xsk.umem.ptr().add(at), len) };
                    dst.copy_from_slice(pkt.data());
                    let tx = &mut self.xsk.tx;
                    tx.write(
                        tx.local,
                        Desc {
                            addr,
                            len: len as u32,
                            options: 0,
                        },
                    );
                    tx.local = tx.local.wrapping_add(1);
                    room -= 1;
                    queued += 1;
                    d.tx_packets += 1;
                    d.tx_bytes += len as u64;
                } else {
                    self.free_tx.push(addr);
                    d.tx_errors += 1;
                }
            }
            pool.free(pkt);
        }
        if queued > 0 {
            self.xsk.tx.publish_producer();
        }
        let (dropped, down) = self.drain_tx();
        if dropped > 0 {
            let moved = dropped.min(d.tx_packets);
            let avg = d.tx_bytes.checked_div(d.tx_packets).unwrap_or(0);
            d.tx_packets -= moved;
            d.tx_bytes = d.tx_bytes.saturating_sub(moved * avg);
            d.tx_dropped += moved;
        }
        if down {
            self.tx_down = true;
            // Nothing of this burst left: count it as failed.
            let stuck = u64::from(self.xsk.tx.local.wrapping_sub(self.xsk.tx.consumer()));
            let moved = stuck.min(d.tx_packets);
            let avg = d.tx_bytes.checked_div(d.tx_packets).unwrap_or(0);
            d.tx_packets -= moved;
            d.tx_bytes = d.tx_bytes.saturating_sub(moved * avg);
            d.tx_errors += moved;
        }
        self.counters.add(&d);
        d.tx_packets as usize
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.xsk.fd.as_raw_fd())
    }

    fn offloads(&self) -> bool {
        self.checksums.passes_requests()
    }
}

impl PortDevice for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_up(&self) -> bool {
        sys::link_up(&self.ctl, self.ifindex)
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}
