//! System helpers shared by the ports that attach to an existing interface (AF_PACKET, AF_XDP):
//! interface lookups by `ioctl`, owned memory mappings, socket options.
//!
//! (The TAP port keeps its own copies of the `ifreq` helpers; they could move here.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use crate::{MacAddr, PortError};

/// Longest interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// A [`PortError::Io`] carrying `errno`.
pub(crate) fn os_error(name: &str, what: &'static str) -> PortError {
    io_error(name, what, io::Error::last_os_error())
}

/// A [`PortError::Io`] carrying `source`.
pub(crate) fn io_error(name: &str, what: &'static str, source: io::Error) -> PortError {
    PortError::Io {
        name: name.into(),
        what,
        source,
    }
}

/// Checks `name` as the kernel's `dev_valid_name` does.
pub(crate) fn check_name(name: &str) -> Result<(), PortError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !bytes
            .iter()
            .any(|&b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if valid {
        Ok(())
    } else {
        Err(PortError::InvalidName(name.into()))
    }
}

fn zeroed_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of PODs); all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// An ifreq naming `name` (already checked with [`check_name`]; a longer name is cut).
fn ifreq_for(name: &str) -> libc::ifreq {
    let mut ifr = zeroed_ifreq();
    for (dst, &src) in ifr
        .ifr_name
        .iter_mut()
        .take(IFNAME_MAX)
        .zip(name.as_bytes())
    {
        *dst = src as libc::c_char;
    }
    ifr
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

/// A datagram socket for `SIOC*IF*` requests in the caller's namespace.
pub(crate) fn control_socket(name: &str) -> Result<OwnedFd, PortError> {
    // SAFETY: socket() takes no pointers; on success we own the new descriptor.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_error(name, "cannot create a control socket"));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the port needs to know about an existing Ethernet interface.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Interface {
    pub ifindex: libc::c_int,
    pub mac: MacAddr,
    pub mtu: u32,
}

/// Looks up the Ethernet interface `name` (ifindex, MAC, MTU); fails when there is none or it
/// is not Ethernet.
pub(crate) fn ethernet_interface(ctl: &OwnedFd, name: &str) -> Result<Interface, PortError> {
    let fd = ctl.as_raw_fd();
    let mut ifr = ifreq_for(name);
    ioctl_ifreq(fd, libc::SIOCGIFINDEX as _, &mut ifr).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) => io_error(name, "no such interface", e),
        _ => io_error(name, "cannot read the ifindex", e),
    })?;
    // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
    let ifindex = unsafe { ifr.ifr_ifru.ifru_ifindex };

    let mut ifr = ifreq_for(name);
    ioctl_ifreq(fd, libc::SIOCGIFHWADDR as _, &mut ifr)
        .map_err(|e| io_error(name, "cannot read the MAC address", e))?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    if sa.sa_family != libc::ARPHRD_ETHER {
        return Err(io_error(
            name,
            "not an Ethernet interface",
            io::Error::from_raw_os_error(libc::EINVAL),
        ));
    }
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = src as u8;
    }

    let mut ifr = ifreq_for(name);
    ioctl_ifreq(fd, libc::SIOCGIFMTU as _, &mut ifr)
        .map_err(|e| io_error(name, "cannot read the MTU", e))?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(Interface {
        ifindex,
        mac: MacAddr(mac),
        mtu: u32::try_from(mtu).unwrap_or(0),
    })
}

/// Whether the interface with `ifindex` is administratively up and has carrier
/// (`IFF_UP | IFF_RUNNING`); false when it no longer exists. Looks it up by index, so a rename
/// does not matter. Two `ioctl`s: slow path.
pub(crate) fn link_up(ctl: &OwnedFd, ifindex: libc::c_int) -> bool {
    let fd = ctl.as_raw_fd();
    let mut ifr = zeroed_ifreq();
    ifr.ifr_ifru.ifru_ifindex = ifindex;
    if ioctl_ifreq(fd, libc::SIOCGIFNAME as _, &mut ifr).is_err() {
        return false;
    }
    // The name is now in ifr_name; the same ifreq asks for the flags.
    if ioctl_ifreq(fd, libc::SIOCGIFFLAGS as _, &mut ifr).is_err() {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags });
    let want = libc::IFF_UP | libc::IFF_RUNNING;
    flags & want == want
}

/// `setsockopt` with a plain-data value.
pub(crate) fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points at a live `T` of the stated size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt` into a plain-data value (all-zero is a valid `T`); returns the length the
/// kernel wrote.
pub(crate) fn getsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    option: libc::c_int,
    value: &mut T,
) -> io::Result<usize> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` points at a live, writable `T` of `len` bytes; the kernel writes at most
    // `len` bytes and stores the written length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            option,
            (value as *mut T).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(len as usize)
    }
}

/// A memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the only handle to it (the port that owns it is used by one thread at a time).
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset`, shared and read-write (a socket's rings).
    pub(crate) fn shared(fd: &OwnedFd, len: usize, offset: libc::off_t) -> io::Result<Mmap> {
        Self::map(
            len,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            offset,
        )
    }

    /// `len` bytes of zeroed anonymous memory, populated up front.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mmap> {
        Self::map(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    }

    fn map(len: usize, flags: libc::c_int, fd: RawFd, offset: libc::off_t) -> io::Result<Mmap> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh mapping chosen by the kernel (no fixed address), so no existing memory
        // is affected; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Mmap { ptr, len })
    }

    /// The first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A route netlink socket (`NETLINK_ROUTE`) whose receives wait at most `timeout_secs`.
pub(crate) fn route_netlink_socket(timeout_secs: libc::time_t) -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; on success we own the new descriptor.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: timeout_secs,
        tv_usec: 0,
    };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
    Ok(fd)
}

/// Sends the netlink request `msg` to the kernel on a new [`route_netlink_socket`]; the caller
/// receives the replies on the returned socket.
pub(crate) fn route_netlink_request(msg: &[u8], timeout_secs: libc::time_t) -> io::Result<OwnedFd> {
    let fd = route_netlink_socket(timeout_secs)?;
    // SAFETY: sockaddr_nl is plain old data; all-zero (then the family) addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `msg` and `kernel` are live for the call, with the stated lengths.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
