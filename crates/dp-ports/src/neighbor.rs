//! The underlay router's MAC from the kernel's IPv6 neighbour table (rtnetlink `RTM_GETNEIGH`),
//! as dpservice reads it for its PF (`dp_nl_get_pf_neigh_mac` in its `src/dp_netlink.c`).
//!
//! With TAP uplinks and no `--router`, the daemon takes the uplink's next hop from here instead of
//! resolving it by neighbor discovery: it dumps the interface's IPv6 neighbours and picks one
//! ([`choose_router`]):
//!
//! * an IPv6 entry on that interface, with the router flag (`NTF_ROUTER`: the kernel learned it
//!   from a router advertisement or from a neighbor advertisement with R set; `ip -6 neigh add …
//!   router`) — dpservice takes only those too;
//! * in a state with a usable link-layer address: `PERMANENT`, `REACHABLE`, `STALE`, `DELAY` or
//!   `PROBE` (`NUD_VALID` less `NOARP`, which dpservice skips as well); `INCOMPLETE` and `FAILED`
//!   entries have no (or no trustworthy) address;
//! * with a 6-byte, unicast, non-zero `NDA_LLADDR`.
//!
//! Among several, a confirmed one (`PERMANENT`, `REACHABLE`) wins over one still to be
//! confirmed (`STALE`, `DELAY`, `PROBE`); otherwise the first in the kernel's order, as
//! dpservice does. dpservice's check that the MAC is not the PF's own is skipped in TAP mode by
//! dpservice itself, and so here (this reader is only used for TAP uplinks).
//!
//! The parsing ([`dump_request`], [`parse_dump`]) is separate from the socket ([`neighbors`]) so
//! that it is tested on captured bytes.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;

use dp_packet::MacAddr;

// linux/netlink.h, linux/rtnetlink.h, linux/neighbour.h
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_DUMP: u16 = 0x300;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NDA_IFINDEX: u16 = 8;
const NLA_TYPE_MASK: u16 = 0x3fff;
const AF_INET6: u8 = 10;

/// `ndm_state` bits (`NUD_*`).
pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;
/// `ndm_flags`: the neighbour is a router.
pub const NTF_ROUTER: u8 = 0x80;

const NLMSG_HDRLEN: usize = 16;
const NDMSG_LEN: usize = 12;

/// One IPv6 neighbour entry of the dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub ifindex: u32,
    /// `NDA_DST`; unspecified when the entry has none.
    pub addr: Ipv6Addr,
    /// `NDA_LLADDR` when it is 6 bytes long.
    pub mac: Option<MacAddr>,
    /// `NUD_*` bits.
    pub state: u16,
    /// `NTF_*` bits.
    pub flags: u8,
}

impl Neighbor {
    pub fn is_router(&self) -> bool {
        self.flags & NTF_ROUTER != 0
    }

    /// Confirmed: a permanent entry, or one reachable now.
    fn confirmed(&self) -> bool {
        self.state & (NUD_PERMANENT | NUD_REACHABLE) != 0
    }

    /// In a state whose link-layer address can be used.
    fn usable(&self) -> bool {
        self.state & (NUD_PERMANENT | NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE) != 0
            && self.state & NUD_NOARP == 0
    }
}

/// The `RTM_GETNEIGH` dump request for the IPv6 neighbours of `ifindex` (the kernel filters by
/// the `NDA_IFINDEX` attribute, as dpservice asks; [`parse_dump`] filters again).
pub fn dump_request(ifindex: u32, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + NDMSG_LEN + 8;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.push(AF_INET6); // ndm_family
    m.extend_from_slice(&[0, 0, 0]); // padding
    m.extend_from_slice(&0i32.to_ne_bytes()); // ndm_ifindex
    m.extend_from_slice(&0u16.to_ne_bytes()); // ndm_state
    m.push(0); // ndm_flags
    m.push(0); // ndm_type (RTN_UNSPEC)
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&NDA_IFINDEX.to_ne_bytes());
    m.extend_from_slice(&ifindex.to_ne_bytes());
    m
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
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

/// What one receive of the dump held.
#[derive(Debug, PartialEq, Eq)]
pub enum DumpPart {
    /// More messages follow.
    More,
    /// `NLMSG_DONE` was seen: the dump is complete.
    Done,
}

/// Parses one receive of a neighbour dump (one or more netlink messages), appending the IPv6
/// entries of `ifindex` to `out`. Messages of another sequence number are skipped. An
/// `NLMSG_ERROR` with a non-zero code is that error; a truncated message is `InvalidData`.
pub fn parse_dump(
    buf: &[u8],
    ifindex: u32,
    seq: u32,
    out: &mut Vec<Neighbor>,
) -> io::Result<DumpPart> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let kind = u16_at(rest, 4).unwrap_or(0);
        let flags = u16_at(rest, 6).unwrap_or(0);
        let msg_seq = u32_at(rest, 8).unwrap_or(0);
        let body = rest.get(NLMSG_HDRLEN..len).unwrap_or(&[]);
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        if msg_seq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => return Ok(DumpPart::Done),
            NLMSG_ERROR => {
                let code = u32_at(body, 0).unwrap_or(0) as i32;
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                return Ok(DumpPart::Done);
            }
            RTM_NEWNEIGH => {
                if let Some(n) = parse_neigh(body) {
                    if n.ifindex == ifindex {
                        out.push(n);
                    }
                }
                if flags & NLM_F_MULTI == 0 {
                    return Ok(DumpPart::Done);
                }
            }
            _ => {}
        }
    }
    Ok(DumpPart::More)
}

/// An `ndmsg` and its attributes; `None` when it is not IPv6 or too short.
fn parse_neigh(body: &[u8]) -> Option<Neighbor> {
    let family = *body.first()?;
    if family != AF_INET6 {
        return None;
    }
    let ifindex = u32_at(body, 4)?;
    let state = u16_at(body, 8)?;
    let flags = *body.get(10)?;
    let mut n = Neighbor {
        ifindex,
        addr: Ipv6Addr::UNSPECIFIED,
        mac: None,
        state,
        flags,
    };
    for (kind, payload) in attrs(body.get(NDMSG_LEN..)?) {
        match kind {
            NDA_DST => {
                if let Ok(a) = <[u8; 16]>::try_from(payload) {
                    n.addr = Ipv6Addr::from(a);
                }
            }
            NDA_LLADDR => {
                if let Ok(m) = <[u8; 6]>::try_from(payload) {
                    n.mac = Some(MacAddr(m));
                }
            }
            _ => {}
        }
    }
    Some(n)
}

/// The router's MAC among `neighbors` (see the module docs for the rules).
pub fn choose_router(neighbors: &[Neighbor]) -> Option<MacAddr> {
    let candidates = || {
        neighbors.iter().filter_map(|n| {
            let mac = n.mac.filter(|m| m.is_unicast() && !m.is_zero())?;
            (n.is_router() && n.usable()).then_some((n, mac))
        })
    };
    candidates()
        .find(|(n, _)| n.confirmed())
        .or_else(|| candidates().next())
        .map(|(_, mac)| mac)
}

/// The interface index of `name` (`ENODEV` when there is none).
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name with NUL"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// The IPv6 neighbours of interface `ifindex` in the kernel's table.
pub fn neighbors(ifindex: u32) -> io::Result<Vec<Neighbor>> {
    const SEQ: u32 = 1;
    let msg = dump_request(ifindex, SEQ);
    let fd = crate::sys::route_netlink_request(&msg, 2)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    // A dump is a bounded number of receives (the table is finite); bound it anyway.
    for _ in 0..1024 {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let part = buf.get(..n as usize).unwrap_or(&[]);
        if part.is_empty() || parse_dump(part, ifindex, SEQ, &mut out)? == DumpPart::Done {
            return Ok(out);
        }
    }
    Err(io::Error::other("netlink neighbour dump did not end"))
}

/// The router's MAC on interface `name` from the kernel's IPv6 neighbour table, if there is one.
pub fn router_mac(name: &str) -> io::Result<Option<MacAddr>> {
    Ok(choose_router(&neighbors(ifindex(name)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_NEWNEIGH` message as the kernel sends it in a dump.
    fn newneigh(seq: u32, ifindex: u32, state: u16, flags: u8, dst: &str, mac: &[u8]) -> Vec<u8> {
        let mut body = vec![AF_INET6, 0, 0, 0];
        body.extend_from_slice(&ifindex.to_ne_bytes());
        body.extend_from_slice(&state.to_ne_bytes());
        body.push(flags);
        body.push(1); // RTN_UNICAST
        let dst: Ipv6Addr = dst.parse().unwrap();
        body.extend_from_slice(&20u16.to_ne_bytes());
        body.extend_from_slice(&NDA_DST.to_ne_bytes());
        body.extend_from_slice(&dst.octets());
        body.extend_from_slice(&((4 + mac.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
        body.extend_from_slice(mac);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        // NDA_CACHEINFO (ignored)
        body.extend_from_slice(&20u16.to_ne_bytes());
        body.extend_from_slice(&3u16.to_ne_bytes());
        body.extend_from_slice(&[0u8; 16]);
        header(RTM_NEWNEIGH, NLM_F_MULTI, seq, &body)
    }

    fn header(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&4242u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    fn done(seq: u32) -> Vec<u8> {
        header(NLMSG_DONE, NLM_F_MULTI, seq, &0i32.to_ne_bytes())
    }

    const R: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xff];
    const H: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x01];

    #[test]
    fn the_request_is_rtm_getneigh_dump_with_the_ifindex_attribute() {
        let m = dump_request(7, 1);
        assert_eq!(m.len(), 36);
        assert_eq!(u32_at(&m, 0), Some(36));
        assert_eq!(u16_at(&m, 4), Some(RTM_GETNEIGH));
        assert_eq!(u16_at(&m, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&m, 8), Some(1));
        assert_eq!(m[16], AF_INET6);
        assert_eq!(u16_at(&m, 28), Some(8));
        assert_eq!(u16_at(&m, 30), Some(NDA_IFINDEX));
        assert_eq!(u32_at(&m, 32), Some(7));
    }

    #[test]
    fn a_dump_parses_into_the_interfaces_entries() {
        let mut buf = newneigh(1, 7, NUD_STALE, 0, "fe80::1", &H);
        buf.extend(newneigh(1, 7, NUD_PERMANENT, NTF_ROUTER, "fe80::ffff", &R));
        buf.extend(newneigh(1, 8, NUD_REACHABLE, NTF_ROUTER, "fe80::2", &H));
        buf.extend(done(1));
        let mut out = Vec::new();
        assert_eq!(parse_dump(&buf, 7, 1, &mut out).unwrap(), DumpPart::Done);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1],
            Neighbor {
                ifindex: 7,
                addr: "fe80::ffff".parse().unwrap(),
                mac: Some(MacAddr(R)),
                state: NUD_PERMANENT,
                flags: NTF_ROUTER,
            }
        );
        assert!(!out[0].is_router());
        assert_eq!(choose_router(&out), Some(MacAddr(R)));
    }

    #[test]
    fn a_dump_spread_over_receives_ends_at_done() {
        let mut out = Vec::new();
        let first = newneigh(1, 7, NUD_REACHABLE, NTF_ROUTER, "fe80::ffff", &R);
        assert_eq!(parse_dump(&first, 7, 1, &mut out).unwrap(), DumpPart::More);
        // Another request's answer is skipped.
        let other = newneigh(9, 7, NUD_REACHABLE, NTF_ROUTER, "fe80::9", &H);
        assert_eq!(parse_dump(&other, 7, 1, &mut out).unwrap(), DumpPart::More);
        assert_eq!(
            parse_dump(&done(1), 7, 1, &mut out).unwrap(),
            DumpPart::Done
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn errors_and_truncation_are_reported() {
        let err = header(NLMSG_ERROR, 0, 1, &(-libc::EPERM).to_ne_bytes());
        let e = parse_dump(&err, 7, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let mut cut = newneigh(1, 7, NUD_REACHABLE, NTF_ROUTER, "fe80::ffff", &R);
        cut.truncate(30);
        let e = parse_dump(&cut, 7, 1, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Not IPv6: skipped.
        let mut v4 = newneigh(1, 7, NUD_REACHABLE, NTF_ROUTER, "fe80::ffff", &R);
        v4[16] = 2;
        let mut out = Vec::new();
        parse_dump(&v4, 7, 1, &mut out).unwrap();
        assert!(out.is_empty());
    }

    fn n(state: u16, flags: u8, mac: Option<[u8; 6]>) -> Neighbor {
        Neighbor {
            ifindex: 1,
            addr: "fe80::1".parse().unwrap(),
            mac: mac.map(MacAddr),
            state,
            flags,
        }
    }

    #[test]
    fn the_router_is_a_usable_router_entry_confirmed_first() {
        let stale = [0x02, 0, 0, 0, 0, 1];
        let reach = [0x06, 0, 0, 0, 0, 2];
        assert_eq!(choose_router(&[]), None);
        // Not a router, no usable address, or a state without one: none.
        assert_eq!(choose_router(&[n(NUD_REACHABLE, 0, Some(R))]), None);
        assert_eq!(choose_router(&[n(NUD_INCOMPLETE, NTF_ROUTER, None)]), None);
        assert_eq!(choose_router(&[n(NUD_FAILED, NTF_ROUTER, Some(R))]), None);
        assert_eq!(choose_router(&[n(NUD_NOARP, NTF_ROUTER, Some(R))]), None);
        assert_eq!(
            choose_router(&[n(NUD_REACHABLE, NTF_ROUTER, Some([0; 6]))]),
            None
        );
        assert_eq!(
            choose_router(&[n(NUD_REACHABLE, NTF_ROUTER, Some([0x33, 0x33, 0, 0, 0, 1]))]),
            None
        );
        // STALE, DELAY, PROBE are taken when nothing better is there.
        for state in [NUD_STALE, NUD_DELAY, NUD_PROBE] {
            assert_eq!(
                choose_router(&[n(state, NTF_ROUTER, Some(stale))]),
                Some(MacAddr(stale))
            );
        }
        assert_eq!(
            choose_router(&[
                n(NUD_STALE, NTF_ROUTER, Some(stale)),
                n(NUD_REACHABLE, NTF_ROUTER, Some(reach)),
            ]),
            Some(MacAddr(reach))
        );
        assert_eq!(
            choose_router(&[
                n(NUD_STALE, NTF_ROUTER, Some(stale)),
                n(NUD_STALE, NTF_ROUTER, Some(reach)),
            ]),
            Some(MacAddr(stale))
        );
    }
}
