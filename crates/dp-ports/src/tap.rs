//! Linux TAP ports.
//!
//! [`TapPort::create`] opens `/dev/net/tun` and attaches to (or creates) a TAP device with
//! `IFF_TAP | IFF_NO_PI`: every `read(2)` is one Ethernet frame the kernel side sent, every
//! `write(2)` one frame the kernel side receives. The descriptor is non-blocking; `EAGAIN` ends a
//! burst.
//!
//! # Offload ([`TapOptions::vnet_hdr`])
//! With `IFF_VNET_HDR` every frame is preceded by a 10-byte `struct virtio_net_hdr`, and
//! `TUNSETOFFLOAD` (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN`) tells the kernel we
//! take partial checksums and TCP superframes of up to 64 KiB: the kernel side then sends them
//! without segmenting or checksumming (as to a virtio-net guest). Received, the header goes into
//! [`PacketMeta::offload`](dp_buffer::PacketMeta); transmitted, it is written back from there
//! (the kernel finishes or segments what the header asks). A superframe is received into one of
//! the pool's large buffers ([`BufferPool::with_large`]): the read scatters into a normal buffer
//! and the tail of a large one, and only a frame that overflows the normal buffer moves (its
//! first part is copied over). Without large buffers a superframe is cut and counted in
//! `rx_errors`. UDP segmentation offload (`TUN_F_USO4/6`) is not asked for: nothing here could
//! segment a UDP superframe for a port that cannot take it.
//!
//! # Multi-queue ([`TapOptions::queues`] > 1)
//! With `IFF_MULTI_QUEUE` the device is opened once per queue, each descriptor a [`TapPort`] of
//! its own (one per worker): the kernel spreads what its side sends over the queues by flow hash.
//!
//! # Lifetime
//! The device is **not** made persistent: it disappears when the port is dropped (or the
//! daemon dies) — that is the cleanup. A device created beforehand by the operator
//! (`ip tuntap add NAME mode tap`) is attached to and left as it was found.
//!
//! # Network namespaces
//! The operator may move the kernel side into another namespace (`ip link set NAME netns NS`, as
//! the system tests do with a VM namespace); the descriptor keeps working there. Moving brings
//! the device down: it must be set up again inside the namespace.
//!
//! # Link state
//! A TAP descriptor cannot read the kernel side's flags. [`PortDevice::link_up`] therefore reports the
//! device's `IFF_UP` (`SIOCGIFFLAGS` by name) through a socket in the namespace the device lives
//! in now:
//! - in the namespace it was created in, the socket made at creation;
//! - in another namespace (found with `TUNGETDEVNETNS`), a socket made there once — by a
//!   short-lived helper thread that enters the namespace (`setns`), so the worker's own thread
//!   never changes namespace — and kept until the device moves again.
//!
//! Where that is not possible (a kernel without `TUNGETDEVNETNS`, or no `CAP_SYS_ADMIN` for
//! `setns`), it reports what the data path last saw once the device has left home: a `write`
//! that failed with `EIO` (the kernel's answer while the device is down) marks it down, a
//! successful `write` or `read` marks it up again; it starts up. A device taken down in a
//! foreign namespace is then only noticed on the next transmit.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use dp_buffer::offload::ChecksumPolicy;
use dp_buffer::{Offload, VNET_HDR_LEN};

use crate::{
    BufferPool, MacAddr, PacketBuf, PortCounters, PortDevice, PortError, PortQueue, PortStats,
};

/// Longest interface name (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// The `_IOC` encoding of `linux/ioctl.h`.
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    #[cfg(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc64"
    ))]
    const SIZE_BITS: u32 = 13;
    #[cfg(not(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc64"
    )))]
    const SIZE_BITS: u32 = 14;
    (dir << (16 + SIZE_BITS)) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

#[cfg(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
))]
mod dir {
    pub const NONE: u32 = 1;
    pub const READ: u32 = 2;
    pub const WRITE: u32 = 4;
}
#[cfg(not(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc64"
)))]
mod dir {
    pub const NONE: u32 = 0;
    pub const WRITE: u32 = 1;
    pub const READ: u32 = 2;
}

// linux/if_tun.h
const TUNSETIFF: u32 = ioc(dir::WRITE, b'T', 202, 4);
const TUNGETIFF: u32 = ioc(dir::READ, b'T', 210, 4);
const TUNGETDEVNETNS: u32 = ioc(dir::NONE, b'T', 227, 0);
const TUNSETOFFLOAD: u32 = ioc(dir::WRITE, b'T', 208, 4);
const TUNSETVNETHDRSZ: u32 = ioc(dir::WRITE, b'T', 216, 4);
const IFF_VNET_HDR: libc::c_int = 0x4000;
const IFF_MULTI_QUEUE: libc::c_int = 0x0100;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

/// How to open a TAP device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapOptions {
    /// Exchange a virtio-net header with every frame and take checksum and TCP segmentation
    /// offload from the kernel side (see the module docs).
    pub vnet_hdr: bool,
    /// Queues (descriptors) to open; more than 1 opens the device with `IFF_MULTI_QUEUE`.
    pub queues: u16,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr: false,
            queues: 1,
        }
    }
}

/// A TAP device; see the module docs.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    /// The tun descriptor: frames, and the ioctls that follow the device wherever it goes.
    tun: OwnedFd,
    /// A datagram socket in the namespace the device was created in, for `SIOC*IF*` by name.
    ctl: OwnedFd,
    ifindex: libc::c_int,
    /// (st_dev, st_ino) of the creation namespace, when the kernel has `TUNGETDEVNETNS`.
    home_netns: Option<(u64, u64)>,
    mac: MacAddr,
    counters: Arc<PortCounters>,
    /// Set by a write that failed with EIO, cleared by any successful read or write.
    seen_down: Cell<bool>,
    /// A datagram socket in the foreign namespace the device was last seen in, with that
    /// namespace's (st_dev, st_ino); `None` until needed (or when it cannot be made).
    foreign_ctl: RefCell<Option<((u64, u64), OwnedFd)>>,
    /// Frames carry a virtio-net header (`IFF_VNET_HDR`).
    vnet_hdr: bool,
}

impl TapPort {
    /// Creates (or attaches to) the TAP device `ifname`, sets the kernel side's MAC to `mac` if
    /// given (otherwise keeps the kernel's and reads it), and brings the device up.
    ///
    /// Fails with [`PortError::InvalidName`] for a name the kernel would refuse (longer than 15
    /// bytes, ...), [`PortError::NotTap`] when a non-TAP device has that name,
    /// [`PortError::Busy`] when another process has the TAP open, and
    /// [`PortError::PermissionDenied`] without `CAP_NET_ADMIN`.
    pub fn create(ifname: &str, mac: Option<MacAddr>) -> Result<TapPort, PortError> {
        let mut queues = Self::create_with(ifname, mac, &TapOptions::default())?;
        queues.pop().ok_or_else(|| PortError::Io {
            name: ifname.into(),
            what: "no queue opened",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })
    }

    /// [`TapPort::create`] with options: one [`TapPort`] per queue (the first sets the device
    /// up; all share the device and its counters are per queue), with or without offload.
    pub fn create_with(
        ifname: &str,
        mac: Option<MacAddr>,
        opts: &TapOptions,
    ) -> Result<Vec<TapPort>, PortError> {
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if opts.vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        if opts.queues > 1 {
            flags |= IFF_MULTI_QUEUE;
        }
        let first = Self::open_queue(ifname, mac, flags, true)?;
        let name = first.name.clone();
        let mut queues = vec![first];
        for _ in 1..opts.queues.max(1) {
            queues.push(Self::open_queue(&name, None, flags, false)?);
        }
        if opts.vnet_hdr {
            if let Some(q) = queues.first() {
                q.enable_offload()?;
            }
        }
        Ok(queues)
    }

    /// Sets the virtio-net header size and the offloads we accept (device-wide).
    fn enable_offload(&self) -> Result<(), PortError> {
        let fd = self.tun.as_raw_fd();
        let size: libc::c_int = dp_buffer::VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points at `size`.
        if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ as _, &size as *const libc::c_int) } < 0 {
            return Err(os_error(&self.name, "TUNSETVNETHDRSZ failed"));
        }
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes the flags as the argument value itself.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, offloads as libc::c_ulong) } < 0 {
            return Err(os_error(&self.name, "TUNSETOFFLOAD failed"));
        }
        Ok(())
    }

    /// Whether frames carry a virtio-net header (offload on).
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The checksum-offload policy: with virtio-net headers requests are passed on
    /// ([`ChecksumPolicy::PassOn`]); without, the kernel finishes checksums before a frame
    /// reaches us ([`ChecksumPolicy::Complete`]).
    #[inline]
    pub fn checksums(&self) -> ChecksumPolicy {
        if self.vnet_hdr {
            ChecksumPolicy::PassOn
        } else {
            ChecksumPolicy::Complete
        }
    }

    fn open_queue(
        ifname: &str,
        mac: Option<MacAddr>,
        tun_flags: libc::c_int,
        set_up: bool,
    ) -> Result<TapPort, PortError> {
        let mut ifr = ifreq_for(ifname)?;

        // SAFETY: a NUL-terminated path literal; on success we own the new descriptor.
        let tun = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if tun < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => PortError::PermissionDenied(ifname.into()),
                _ => PortError::Io {
                    name: ifname.into(),
                    what: "cannot open /dev/net/tun",
                    source: err,
                },
            });
        }
        // SAFETY: `tun` was just opened and is owned by nobody else.
        let tun = unsafe { OwnedFd::from_raw_fd(tun) };

        // SAFETY: socket() takes no pointers; on success we own the new descriptor.
        let ctl = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if ctl < 0 {
            return Err(os_error(ifname, "cannot create a control socket"));
        }
        // SAFETY: `ctl` was just created and is owned by nobody else.
        let ctl = unsafe { OwnedFd::from_raw_fd(ctl) };

        ifr.ifr_ifru.ifru_flags = tun_flags as libc::c_short;
        if let Err(err) = ioctl_ifreq(tun.as_raw_fd(), TUNSETIFF as _, &mut ifr) {
            return Err(match err.raw_os_error() {
                Some(libc::EINVAL) if ifindex_by_name(&ctl, ifname).is_some() => {
                    // Only TUN/TAP devices have tun_flags.
                    if std::path::Path::new(&format!("/sys/class/net/{ifname}/tun_flags")).exists()
                    {
                        PortError::IncompatibleTap(ifname.into())
                    } else {
                        PortError::NotTap(ifname.into())
                    }
                }
                Some(libc::EBUSY) => PortError::Busy(ifname.into()),
                Some(libc::EPERM | libc::EACCES) => PortError::PermissionDenied(ifname.into()),
                _ => PortError::Io {
                    name: ifname.into(),
                    what: "TUNSETIFF failed",
                    source: err,
                },
            });
        }
        // The kernel writes back the name it used (it expands a "%d" template).
        let name = ifr_name(&ifr);

        if let Some(mac) = mac {
            let mut set = ifreq_for(&name)?;
            set.ifr_ifru.ifru_hwaddr = sockaddr_from_mac(mac);
            // On the tun descriptor: applies to this very device, wherever it lives.
            ioctl_ifreq(tun.as_raw_fd(), libc::SIOCSIFHWADDR as _, &mut set).map_err(|e| {
                PortError::Io {
                    name: name.clone(),
                    what: "cannot set the MAC address",
                    source: e,
                }
            })?;
        }
        let mut get = ifreq_for(&name)?;
        ioctl_ifreq(ctl.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut get).map_err(|e| {
            PortError::Io {
                name: name.clone(),
                what: "cannot read the MAC address",
                source: e,
            }
        })?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        let mac = mac_from_sockaddr(unsafe { &get.ifr_ifru.ifru_hwaddr });

        let ifindex = ifindex_by_name(&ctl, &name)
            .ok_or_else(|| os_error(&name, "cannot read the ifindex"))?;

        if set_up {
            let mut flags = ifreq_for(&name)?;
            ioctl_ifreq(ctl.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut flags).map_err(|e| {
                PortError::Io {
                    name: name.clone(),
                    what: "cannot read the device flags",
                    source: e,
                }
            })?;
            // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
            unsafe { flags.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            ioctl_ifreq(ctl.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut flags).map_err(|e| {
                PortError::Io {
                    name: name.clone(),
                    what: "cannot bring the device up",
                    source: e,
                }
            })?;
        }

        let home_netns = device_netns(&tun);
        Ok(TapPort {
            name,
            tun,
            ctl,
            ifindex,
            home_netns,
            mac,
            counters: PortCounters::new(),
            seen_down: Cell::new(false),
            foreign_ctl: RefCell::new(None),
            vnet_hdr: tun_flags & IFF_VNET_HDR != 0,
        })
    }

    /// The device's ifindex when it was created.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The device's current name, asked through the tun descriptor (it follows a rename, even
    /// in another namespace); `None` if the kernel refuses.
    pub fn current_name(&self) -> Option<String> {
        let mut ifr = zeroed_ifreq();
        ioctl_ifreq(self.tun.as_raw_fd(), TUNGETIFF as _, &mut ifr).ok()?;
        Some(ifr_name(&ifr))
    }

    /// Whether the device is still in the namespace it was created in.
    fn at_home(&self) -> bool {
        match self.home_netns {
            Some(home) => device_netns(&self.tun) == Some(home),
            None => self
                .current_name()
                .and_then(|n| ifindex_by_name(&self.ctl, &n))
                .is_some_and(|i| i == self.ifindex),
        }
    }

    /// IFF_* flags of the device, when it is in the creation namespace.
    fn home_flags(&self) -> Option<libc::c_int> {
        if !self.at_home() {
            return None;
        }
        flags_by_name(&self.ctl, &self.current_name()?)
    }

    /// IFF_* flags of the device wherever it is: through the creation namespace's socket at
    /// home, else through a socket in its current namespace (made on first need).
    fn current_flags(&self) -> Option<libc::c_int> {
        let Some((ns, id)) = device_netns_fd(&self.tun) else {
            return self.home_flags();
        };
        if Some(id) == self.home_netns {
            return flags_by_name(&self.ctl, &self.current_name()?);
        }
        let mut cached = self.foreign_ctl.try_borrow_mut().ok()?;
        if cached.as_ref().map(|(cached_id, _)| *cached_id) != Some(id) {
            *cached = socket_in_netns(&ns).map(|fd| (id, fd));
        }
        let (_, ctl) = cached.as_ref()?;
        flags_by_name(ctl, &self.current_name()?)
    }
}

impl PortQueue for TapPort {
    fn rx_burst(&mut self, pool: &mut BufferPool, out: &mut Vec<PacketBuf>, max: usize) -> usize {
        let fd = self.tun.as_raw_fd();
        let mut d = PortStats::default();
        let mut got = 0;
        let hdr_len = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
        let use_large = self.vnet_hdr && pool.large_room() > 0;
        // A large buffer whose tail catches what overflows the normal one (superframes).
        let mut large: Option<PacketBuf> = None;
        while got < max {
            if use_large && large.is_none() {
                large = pool.alloc_large();
                if large.is_none() {
                    d.rx_nombuf += 1;
                    break;
                }
            }
            let Some(mut buf) = pool.alloc() else {
                d.rx_nombuf += 1;
                break;
            };
            let mut hdr = [0u8; VNET_HDR_LEN];
            // The kernel cuts a frame longer than the buffers to fit: one spare byte behind them
            // tells a cut frame from one that fills them exactly.
            let mut spare = 0u8;
            let area = buf.receive_area();
            let room = area.len();
            let (tail_ptr, tail_len) = match large.as_mut() {
                Some(l) => match l.receive_area().get_mut(room..) {
                    Some(t) if !t.is_empty() => (t.as_mut_ptr(), t.len()),
                    _ => (&mut spare as *mut u8, 1),
                },
                None => (&mut spare as *mut u8, 1),
            };
            let iov = [
                libc::iovec {
                    iov_base: hdr.as_mut_ptr().cast(),
                    iov_len: hdr_len,
                },
                libc::iovec {
                    iov_base: area.as_mut_ptr().cast(),
                    iov_len: room,
                },
                libc::iovec {
                    iov_base: tail_ptr.cast(),
                    iov_len: tail_len,
                },
                libc::iovec {
                    iov_base: (&mut spare as *mut u8).cast(),
                    iov_len: usize::from(tail_len > 1),
                },
            ];
            // SAFETY: every iovec points at live, writable memory of the stated length (the
            // header array, the buffer's receive area, the large buffer's area past `room` or
            // `spare`), none of which anything else borrows during the call.
            let n = unsafe { libc::readv(fd, iov.as_ptr(), 4) };
            if n < 0 {
                let errno = io::Error::last_os_error().raw_os_error();
                pool.free(buf);
                if errno != Some(libc::EAGAIN) {
                    d.rx_errors += 1;
                }
                break;
            }
            let n = (n as usize).saturating_sub(hdr_len);
            let capacity = room + if tail_len > 1 { tail_len } else { 0 };
            // A frame longer than the buffers was cut: count it, do not pass it on.
            if n == 0 || n > capacity {
                d.rx_errors += 1;
                pool.free(buf);
                continue;
            }
            if n > room {
                // A superframe: move the head into the large buffer, whose tail has the rest.
                let Some(mut l) = large.take() else {
                    d.rx_errors += 1;
                    pool.free(buf);
                    continue;
                };
                if let (Some(dst), Some(src)) = (
                    l.receive_area().get_mut(..room),
                    buf.receive_area().get(..room),
                ) {
                    dst.copy_from_slice(src);
                }
                pool.free(buf);
                buf = l;
            }
            if buf.set_len(n).is_err() {
                d.rx_errors += 1;
                pool.free(buf);
                continue;
            }
            let request = self.vnet_hdr.then(|| Offload::parse(&hdr));
            if let Some(off) = self.checksums().on_rx(buf.data_mut(), request) {
                buf.meta.offload = off;
            }
            d.rx_packets += 1;
            d.rx_bytes += n as u64;
            out.push(buf);
            got += 1;
        }
        if let Some(l) = large {
            pool.free(l);
        }
        if got > 0 {
            self.seen_down.set(false);
        }
        self.counters.add(&d);
        got
    }

    fn tx_burst(&mut self, pkts: &mut Vec<PacketBuf>, pool: &mut BufferPool) -> usize {
        let fd = self.tun.as_raw_fd();
        let mut d = PortStats::default();
        let mut down = false;
        let mut full = false;
        for pkt in pkts.drain(..) {
            if down {
                d.tx_errors += 1;
            } else if full {
                d.tx_dropped += 1;
            } else {
                let data = pkt.data();
                let n = if self.vnet_hdr {
                    let mut off = pkt.meta.offload;
                    off.hdr_len = off
                        .hdr_len
                        .min(u16::try_from(data.len()).unwrap_or(u16::MAX));
                    let hdr = off.emit();
                    let iov = [
                        libc::iovec {
                            iov_base: hdr.as_ptr() as *mut libc::c_void,
                            iov_len: VNET_HDR_LEN,
                        },
                        libc::iovec {
                            iov_base: data.as_ptr() as *mut libc::c_void,
                            iov_len: data.len(),
                        },
                    ];
                    // SAFETY: both iovecs point at live memory of the stated lengths, which the
                    // kernel only reads.
                    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
                    if n >= VNET_HDR_LEN as isize {
                        n - VNET_HDR_LEN as isize
                    } else {
                        n.min(-1)
                    }
                } else {
                    // SAFETY: writes the frame's own bytes.
                    unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
                };
                if n >= 0 && n as usize == data.len() {
                    d.tx_packets += 1;
                    d.tx_bytes += data.len() as u64;
                } else if n >= 0 {
                    d.tx_errors += 1;
                } else {
                    match io::Error::last_os_error().raw_os_error() {
                        // The device is down: the rest of the burst would fail the same way.
                        Some(libc::EIO) => {
                            down = true;
                            d.tx_errors += 1;
                        }
                        Some(libc::EAGAIN | libc::ENOBUFS) => {
                            full = true;
                            d.tx_dropped += 1;
                        }
                        _ => d.tx_errors += 1,
                    }
                }
            }
            pool.free(pkt);
        }
        if down {
            self.seen_down.set(true);
        } else if d.tx_packets > 0 {
            self.seen_down.set(false);
        }
        self.counters.add(&d);
        d.tx_packets as usize
    }

    fn reads_by_syscall(&self) -> bool {
        true
    }

    fn rx_fd(&self) -> Option<RawFd> {
        Some(self.tun.as_raw_fd())
    }

    fn offloads(&self) -> bool {
        self.checksums().passes_requests()
    }
}

impl PortDevice for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_up(&self) -> bool {
        match self.current_flags() {
            Some(flags) => flags & libc::IFF_UP != 0,
            None => !self.seen_down.get(),
        }
    }

    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn counters(&self) -> &Arc<PortCounters> {
        &self.counters
    }
}

fn zeroed_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of PODs); all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An ifreq naming `name`, after checking the name as the kernel's `dev_valid_name` does.
fn ifreq_for(name: &str) -> Result<libc::ifreq, PortError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !bytes
            .iter()
            .any(|&b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if !valid {
        return Err(PortError::InvalidName(name.into()));
    }
    let mut ifr = zeroed_ifreq();
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(ifr)
}

fn ifr_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One `ioctl` taking a `struct ifreq *`.
fn ioctl_ifreq(fd: RawFd, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here reads and/or writes one `struct ifreq`, which `ifr` is.
    let rc = unsafe { libc::ioctl(fd, request, ifr as *mut libc::ifreq) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The ifindex of `name` in the control socket's namespace.
fn ifindex_by_name(ctl: &OwnedFd, name: &str) -> Option<libc::c_int> {
    let mut ifr = ifreq_for(name).ok()?;
    ioctl_ifreq(ctl.as_raw_fd(), libc::SIOCGIFINDEX as _, &mut ifr).ok()?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    Some(unsafe { ifr.ifr_ifru.ifru_ifindex })
}

/// (st_dev, st_ino) of the namespace the device currently lives in (`TUNGETDEVNETNS`, Linux
/// 5.2+); `None` when unsupported or refused.
fn device_netns(tun: &OwnedFd) -> Option<(u64, u64)> {
    device_netns_fd(tun).map(|(_, id)| id)
}

/// A descriptor of the namespace the device currently lives in, and its (st_dev, st_ino).
fn device_netns_fd(tun: &OwnedFd) -> Option<(OwnedFd, (u64, u64))> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor that we own.
    let ns = unsafe { libc::ioctl(tun.as_raw_fd(), TUNGETDEVNETNS as _) };
    if ns < 0 {
        return None;
    }
    // SAFETY: `ns` is a fresh descriptor owned by nobody else; dropping closes it.
    let ns = unsafe { OwnedFd::from_raw_fd(ns) };
    // SAFETY: fstat writes one `struct stat` into the zeroed value we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a pointer to a live `struct stat`.
    if unsafe { libc::fstat(ns.as_raw_fd(), &mut st) } < 0 {
        return None;
    }
    Some((ns, (st.st_dev, st.st_ino)))
}

/// A datagram socket in the network namespace `ns`, made by a helper thread that enters it (a
/// socket stays in the namespace it was made in; the calling thread's namespace is untouched).
/// `None` without the privilege to enter it (`CAP_SYS_ADMIN`).
fn socket_in_netns(ns: &OwnedFd) -> Option<OwnedFd> {
    let ns = ns.as_raw_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: `ns` is a live namespace descriptor; setns only changes this
                // short-lived thread's namespace.
                if unsafe { libc::setns(ns, libc::CLONE_NEWNET) } < 0 {
                    return None;
                }
                // SAFETY: socket() takes no pointers; on success we own the new descriptor.
                let fd = unsafe {
                    libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
                };
                // SAFETY: a fresh descriptor owned by nobody else.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .join()
            .ok()
            .flatten()
    })
}

/// IFF_* flags of the device `name` in the namespace of the socket `ctl`.
fn flags_by_name(ctl: &OwnedFd, name: &str) -> Option<libc::c_int> {
    let mut ifr = ifreq_for(name).ok()?;
    ioctl_ifreq(ctl.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr).ok()?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    Some(unsafe { ifr.ifr_ifru.ifru_flags } as libc::c_int)
}

fn sockaddr_from_mac(mac: MacAddr) -> libc::sockaddr {
    // SAFETY: sockaddr is plain old data; all-zero is valid.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in sa.sa_data.iter_mut().zip(mac.octets()) {
        *dst = src as libc::c_char;
    }
    sa
}

fn mac_from_sockaddr(sa: &libc::sockaddr) -> MacAddr {
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = src as u8;
    }
    MacAddr(mac)
}

/// A [`PortError::Io`] carrying `errno`.
fn os_error(name: &str, what: &'static str) -> PortError {
    PortError::Io {
        name: name.into(),
        what,
        source: io::Error::last_os_error(),
    }
}

#[cfg(test)]
mod tests;
