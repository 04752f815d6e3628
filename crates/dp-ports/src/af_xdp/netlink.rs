//! The XDP program of an interface through rtnetlink (`IFLA_XDP`): which one is attached, and
//! attaching/detaching the classic (non-link) way. A program attached like this stays on the
//! interface when the process that attached it dies: the "stale program" the port removes at
//! start-up.

use std::io;
use std::os::fd::AsRawFd;

// linux/rtnetlink.h, linux/netlink.h, linux/if_link.h
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = 0x3fff;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

pub(crate) const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 2;
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 4;
pub(crate) const XDP_FLAGS_REPLACE: u32 = 16;

// IFLA_XDP_ATTACHED values.
pub(crate) const XDP_ATTACHED_NONE: u8 = 0;
pub(crate) const XDP_ATTACHED_DRV: u8 = 1;
pub(crate) const XDP_ATTACHED_SKB: u8 = 2;
pub(crate) const XDP_ATTACHED_HW: u8 = 3;
pub(crate) const XDP_ATTACHED_MULTI: u8 = 4;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// What `IFLA_XDP` says about an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attached {
    /// `XDP_ATTACHED_*`.
    pub mode: u8,
    /// The program's id (the first one when several are attached).
    pub prog_id: u32,
}

/// A request: header, `ifinfomsg` for `ifindex`, then `attrs`.
fn request(kind: u16, flags: u16, ifindex: i32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.push(libc::AF_UNSPEC as u8); // ifi_family
    m.push(0);
    m.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    m.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
    m.extend_from_slice(attrs);
    m
}

/// Appends an attribute (payloads here are 4 bytes or nested, so no padding is needed).
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
}

/// Sends `msg` and returns the first reply.
fn transact(msg: &[u8], reply: &mut [u8]) -> io::Result<usize> {
    // Replies should never take long; bound the wait anyway.
    let fd = crate::sys::route_netlink_request(msg, 5)?;
    // SAFETY: `reply` is writable for its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The error code of an `NLMSG_ERROR` reply (0 for an acknowledgement); `None` for another
/// message type.
fn error_code(reply: &[u8]) -> Option<i32> {
    if u16_at(reply, 4)? != NLMSG_ERROR {
        return None;
    }
    Some(u32_at(reply, NLMSG_HDRLEN)? as i32)
}

/// Iterates over the attributes in `b`: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & NLA_TYPE_MASK;
        if len < 4 {
            return None;
        }
        let payload = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The XDP program attached to `ifindex`, if any.
pub(crate) fn query(ifindex: i32) -> io::Result<Option<Attached>> {
    let msg = request(RTM_GETLINK, 0, ifindex, &[]);
    let mut reply = vec![0u8; 64 * 1024];
    let n = transact(&msg, &mut reply)?;
    let reply = reply.get(..n).unwrap_or(&[]);
    if let Some(code) = error_code(reply) {
        return Err(io::Error::from_raw_os_error(-code));
    }
    if u16_at(reply, 4) != Some(RTM_NEWLINK) {
        return Err(io::Error::other("unexpected netlink reply"));
    }
    let total = (u32_at(reply, 0).unwrap_or(0) as usize).min(reply.len());
    let body = reply
        .get(NLMSG_HDRLEN + IFINFOMSG_LEN..total)
        .unwrap_or(&[]);
    let Some((_, xdp)) = attrs(body).find(|&(k, _)| k == IFLA_XDP) else {
        return Ok(None);
    };
    let mut mode = XDP_ATTACHED_NONE;
    let mut prog_id = 0;
    for (kind, payload) in attrs(xdp) {
        match kind {
            IFLA_XDP_ATTACHED => mode = payload.first().copied().unwrap_or(0),
            IFLA_XDP_PROG_ID => prog_id = u32_at(payload, 0).unwrap_or(0),
            _ => {}
        }
    }
    Ok((mode != XDP_ATTACHED_NONE).then_some(Attached { mode, prog_id }))
}

/// Sets the interface's XDP program: `prog_fd` -1 detaches. With `expected_fd`, only replaces
/// (or detaches) that very program (`XDP_FLAGS_REPLACE`).
pub(crate) fn set(
    ifindex: i32,
    prog_fd: i32,
    flags: u32,
    expected_fd: Option<i32>,
) -> io::Result<()> {
    let mut inner = Vec::with_capacity(24);
    attr(&mut inner, IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    let flags = flags | expected_fd.map_or(0, |_| XDP_FLAGS_REPLACE);
    attr(&mut inner, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    if let Some(fd) = expected_fd {
        attr(&mut inner, IFLA_XDP_EXPECTED_FD, &fd.to_ne_bytes());
    }
    let mut outer = Vec::with_capacity(inner.len() + 4);
    attr(&mut outer, IFLA_XDP | NLA_F_NESTED, &inner);
    let msg = request(RTM_SETLINK, NLM_F_ACK, ifindex, &outer);
    let mut reply = [0u8; 1024];
    let n = transact(&msg, &mut reply)?;
    match error_code(reply.get(..n).unwrap_or(&[])) {
        Some(0) => Ok(()),
        Some(code) => Err(io::Error::from_raw_os_error(-code)),
        None => Err(io::Error::other("unexpected netlink reply")),
    }
}

/// Detaches whatever program is attached in `mode` (`XDP_FLAGS_SKB_MODE` or
/// `XDP_FLAGS_DRV_MODE`). Fails with `EBUSY` when it is held by a BPF link (a live process).
pub(crate) fn detach(ifindex: i32, mode: u32) -> io::Result<()> {
    set(ifindex, -1, mode, None)
}
