//! Checksum and segmentation offload: the virtio-net header a TAP opened with `IFF_VNET_HDR`
//! puts in front of every frame, carried through the graph in [`PacketMeta::offload`], and the
//! software fallbacks for a port whose other side cannot take it.
//!
//! A VM's kernel (or a namespace's stack behind a TAP) hands us
//! * frames whose TCP/UDP checksum is left *partial* ([`Offload::NEEDS_CSUM`]: the field at
//!   `csum_start + csum_offset` holds the pseudo-header sum, the sum over `csum_start..` is still
//!   to be done), and
//! * TCP *superframes* up to 64 KiB ([`Offload::gso_type`] TCPv4/TCPv6, with `gso_size` = MSS):
//!   one header and many segments' worth of payload, also with a partial checksum.
//!
//! Between two such TAPs (VM → VM on this host) the header is passed through unchanged: the
//! receiving kernel segments or checksums only if it must, which is what makes local TCP fast.
//! Towards the underlay it cannot be: no uplink takes a tunnelled superframe, so
//! * `dp-pipeline`'s `ipip_encap` node finishes a partial checksum before encapsulating
//!   ([`finish_checksum`]), and lets a superframe through the MTU check when its *segments* fit;
//! * `dp-pipeline`'s transmit stage (`dp_pipeline::tx`) cuts a superframe into MSS-sized
//!   segments when it hands it to a port that does not accept offload ([`Segments`]),
//!   encapsulated or not: per segment the outer IPv6 payload
//!   length, the inner IPv4 total length / identification / header checksum or IPv6 payload
//!   length, the TCP sequence number, flags (FIN/PSH on the last only, CWR on the first only) and
//!   the full TCP checksum.
//!
//! A node that answers a packet in place (ARP, DHCP, ND, gateway ICMP, ICMP errors) calls
//! [`settle`] first: the partial checksum is finished (so a UDP checksum check passes) and the
//! offload request dropped, so the answer does not go back with a stale one.
//!
//! How each port backend deals with partial checksums on receive is one policy,
//! [`ChecksumPolicy`]: pass the request on (TAP with virtio-net headers), finish what the
//! kernel's header asks for ([`finish_requested`], AF_PACKET), or recognise a partial checksum
//! by its value ([`finish_if_partial`], AF_XDP).
//!
//! Everything here is validated against the frame: a hostile `csum_start` or `gso_size` makes
//! [`Segments::new`] fail (the packet is dropped), never a panic or an out-of-bounds write.

use dp_packet::bytes::{read_u16_be, read_u32_be, write_u16_be, write_u32_be};
use dp_packet::checksum;

use crate::buffer::{PacketBuf, PacketMeta};

mod guess;
pub use guess::finish_if_partial;

/// Why an offload request cannot be carried out; the pipeline counts each as a drop reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// An offset moved past what the header's 16-bit fields can hold.
    TooBig,
    /// The partial checksum's location lies outside the frame.
    BadChecksum,
    /// The request does not match the frame (hostile `csum_start`, zero MSS, not TCP, ...).
    Invalid,
    /// A segment does not fit the buffer it is written into.
    NoRoom,
}

/// Length of `struct virtio_net_hdr` (no `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

// dp-packet's constants under the short names this file's arithmetic reads best with.
const ETH_HEADER_LEN: usize = dp_packet::ethernet::HEADER_LEN;
const IPV6_HEADER_LEN: usize = dp_packet::ipv6::HEADER_LEN;
const IPV4_MIN_HEADER_LEN: usize = dp_packet::ipv4::HEADER_LEN;
const TCP_MIN_HEADER_LEN: usize = dp_packet::tcp::HEADER_LEN;
const ETHERTYPE_IPV4: u16 = dp_packet::EtherType::IPV4.0;
const ETHERTYPE_IPV6: u16 = dp_packet::EtherType::IPV6.0;
const PROTO_TCP: u8 = dp_packet::IpProtocol::TCP.0;
const NEXT_HEADER_IPV4: u8 = dp_packet::IpProtocol::IPV4_IN_IP.0;
const NEXT_HEADER_IPV6: u8 = dp_packet::IpProtocol::IPV6_IN_IP.0;
// The flags byte (the low byte of the offset/flags word).
const TCP_FIN: u8 = dp_packet::TcpFlags::FIN.0 as u8;
const TCP_PSH: u8 = dp_packet::TcpFlags::PSH.0 as u8;
const TCP_CWR: u8 = dp_packet::TcpFlags::CWR.0 as u8;

/// A frame's offload request: the fields of `struct virtio_net_hdr` (`linux/virtio_net.h`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offload {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers (a hint; Linux sends the linear part's length).
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) of a superframe.
    pub gso_size: u16,
    /// Where the checksummed region starts, from the start of the frame (Ethernet header).
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl Offload {
    /// No offload: a complete frame.
    pub const NONE: Offload = Offload {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
    pub const NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the receiver's checksum was checked (rx only).
    pub const DATA_VALID: u8 = 2;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_UDP_L4: u8 = 5;
    /// `VIRTIO_NET_HDR_GSO_ECN`: the flow uses ECN (CWR may be set in the first segment).
    pub const GSO_ECN: u8 = 0x80;

    /// Reads a virtio-net header (native byte order, as a TAP without `TUNSETVNETLE/BE` uses).
    #[inline]
    pub fn parse(h: &[u8; VNET_HDR_LEN]) -> Offload {
        Self::from_header(h, u16::from_ne_bytes)
    }

    /// The virtio-net header for this request (native byte order).
    #[inline]
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        self.header_bytes(u16::to_ne_bytes)
    }

    /// Reads a virtio 1.0 header (little endian: vhost-user and other VERSION_1 devices).
    #[inline]
    pub fn parse_le(h: &[u8; VNET_HDR_LEN]) -> Offload {
        Self::from_header(h, u16::from_le_bytes)
    }

    /// The virtio 1.0 header (little endian) for this request.
    #[inline]
    pub fn emit_le(&self) -> [u8; VNET_HDR_LEN] {
        self.header_bytes(u16::to_le_bytes)
    }

    /// The header's fields, its 16-bit ones read with `u16_of` (the byte order).
    #[inline]
    fn from_header(h: &[u8; VNET_HDR_LEN], u16_of: fn([u8; 2]) -> u16) -> Offload {
        let [flags, gso_type, a, b, c, d, e, f, g, k] = *h;
        Offload {
            flags,
            gso_type,
            hdr_len: u16_of([a, b]),
            gso_size: u16_of([c, d]),
            csum_start: u16_of([e, f]),
            csum_offset: u16_of([g, k]),
        }
    }

    /// The header, its 16-bit fields written with `bytes_of` (the byte order).
    #[inline]
    fn header_bytes(&self, bytes_of: fn(u16) -> [u8; 2]) -> [u8; VNET_HDR_LEN] {
        let [a, b] = bytes_of(self.hdr_len);
        let [c, d] = bytes_of(self.gso_size);
        let [e, f] = bytes_of(self.csum_start);
        let [g, k] = bytes_of(self.csum_offset);
        [self.flags, self.gso_type, a, b, c, d, e, f, g, k]
    }

    /// Whether anything is asked of the receiver (a partial checksum or segmentation).
    #[inline]
    pub fn is_set(&self) -> bool {
        self.needs_csum() || self.is_gso()
    }

    #[inline]
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::NEEDS_CSUM != 0
    }

    /// Whether this is a superframe to be segmented.
    #[inline]
    pub fn is_gso(&self) -> bool {
        self.gso_type & !Self::GSO_ECN != Self::GSO_NONE
    }

    /// Whether this is a TCP superframe (the only kind [`Segments`] cuts).
    #[inline]
    pub fn is_tcp_gso(&self) -> bool {
        matches!(
            self.gso_type & !Self::GSO_ECN,
            Self::GSO_TCPV4 | Self::GSO_TCPV6
        )
    }

    /// Moves the offsets by `n` bytes of headers put in front of the old frame start
    /// (encapsulation). Fails if they would overflow.
    #[inline]
    pub fn shift(&mut self, n: usize) -> Result<(), OffloadError> {
        let n = u16::try_from(n).map_err(|_| OffloadError::TooBig)?;
        if self.needs_csum() {
            self.csum_start = self.csum_start.checked_add(n).ok_or(OffloadError::TooBig)?;
        }
        if self.hdr_len != 0 {
            self.hdr_len = self.hdr_len.saturating_add(n);
        }
        Ok(())
    }
}

/// Finishes a partial checksum in place (`pkt.meta.offload` NEEDS_CSUM) and clears the request.
/// A packet without one is left alone. A superframe keeps its request (segment it instead).
pub fn finish_checksum(pkt: &mut PacketBuf) -> Result<(), OffloadError> {
    let off = pkt.meta.offload;
    if off.is_gso() || !off.needs_csum() {
        return Ok(());
    }
    finish_partial(pkt.data_mut(), &off)?;
    pkt.meta.offload = Offload::NONE;
    Ok(())
}

/// For a node answering a packet in place: finishes a partial checksum (ignoring a request that
/// does not fit the frame) and forgets the offload request.
#[inline]
pub fn settle(pkt: &mut PacketBuf) {
    let off = pkt.meta.offload;
    if off == Offload::NONE {
        return;
    }
    if off.needs_csum() && !off.is_gso() {
        let _ = finish_partial(pkt.data_mut(), &off);
    }
    pkt.meta.offload = Offload::NONE;
}

/// The checksum at `csum_start + csum_offset` over `frame[csum_start..]`, as a NIC does it
/// (a zero result goes out as 0xffff, which is the same value in ones' complement; required
/// for UDP).
fn finish_partial(frame: &mut [u8], off: &Offload) -> Result<(), OffloadError> {
    let start = usize::from(off.csum_start);
    let field = start + usize::from(off.csum_offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::BadChecksum);
    }
    if complete(frame, start, usize::from(off.csum_offset), true) {
        Ok(())
    } else {
        Err(OffloadError::BadChecksum)
    }
}

/// The one routine that completes a partial checksum: the Internet checksum over
/// `frame[start..]` into the field at `start + offset` (which held the pseudo-header sum).
/// With `zero_as_ones`, a computed 0 goes out as 0xffff (the same value in ones' complement;
/// required for UDP, where 0 means "no checksum"). Whether the field lies in the frame.
fn complete(frame: &mut [u8], start: usize, offset: usize, zero_as_ones: bool) -> bool {
    if checksum::finish_partial(frame, start, offset).is_err() {
        return false;
    }
    if zero_as_ones {
        let at = start + offset;
        if let Some(f) = frame.get_mut(at..at + 2) {
            if f == [0, 0] {
                f.copy_from_slice(&[0xff, 0xff]);
            }
        }
    }
    true
}

/// A UDP checksum field's offset in its header; a computed 0 is sent as 0xffff.
const UDP_CSUM_OFFSET: usize = 6;
/// SCTP's checksum offset: a CRC32c, not the Internet checksum; never completed here.
const SCTP_CSUM_OFFSET: usize = 8;

/// Completes the partial checksum a receiving port's kernel said is at `start + offset` of
/// `frame` (a virtio-net header's `csum_start`/`csum_offset`, after any bytes the port put in
/// front): the Internet checksum, except at SCTP's offset (a CRC32c: left alone); a computed 0
/// becomes 0xffff at UDP's offset. Whether the checksum was completed.
pub fn finish_requested(frame: &mut [u8], start: usize, offset: usize) -> bool {
    offset != SCTP_CSUM_OFFSET && complete(frame, start, offset, offset == UDP_CSUM_OFFSET)
}

/// How a port deals with checksums a sender's offload left partial (Linux `CHECKSUM_PARTIAL`):
/// the one checksum-offload policy of every backend (TAP, AF_PACKET, AF_XDP), chosen when the
/// port is opened and applied to each received frame by [`ChecksumPolicy::on_rx`].
///
/// On transmit only [`PassOn`](ChecksumPolicy::PassOn) matters: such a port takes frames with
/// an offload request (`dp_ports::PortQueue::offloads`); for any other the pipeline's transmit
/// stage finishes them first ([`finish_checksum`], [`Segments`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumPolicy {
    /// Frames arrive complete, or are left as they are (a TAP without virtio-net headers, whose
    /// kernel finishes checksums before it hands a frame over; AF_XDP with
    /// `finish_checksums` off).
    Complete,
    /// The kernel's per-frame request (a virtio-net header) is handed on in `meta.offload`
    /// unchanged, and taken back on transmit (a TAP with `IFF_VNET_HDR`).
    PassOn,
    /// The kernel's per-frame header says where a checksum is partial: it is completed in place
    /// ([`finish_requested`]) and no request handed on (AF_PACKET with `PACKET_VNET_HDR`).
    FinishRequested,
    /// No per-frame metadata: a TCP/UDP checksum whose field holds the pseudo-header sum and
    /// does not verify is taken for partial and completed ([`finish_if_partial`]; AF_XDP).
    FinishIfPartial,
}

impl ChecksumPolicy {
    /// Whether the port takes and hands out frames with offload requests.
    #[inline]
    pub const fn passes_requests(self) -> bool {
        matches!(self, ChecksumPolicy::PassOn)
    }

    /// Applies the policy to a received `frame`, given the offload request the port's kernel
    /// made for it (`None` when the port has no such metadata). Returns the request to put in
    /// the frame's `meta.offload`, or `None` to leave the metadata as it is (every policy but
    /// [`PassOn`](ChecksumPolicy::PassOn)).
    #[inline]
    pub fn on_rx(self, frame: &mut [u8], request: Option<Offload>) -> Option<Offload> {
        match self {
            ChecksumPolicy::Complete => None,
            ChecksumPolicy::PassOn => request,
            ChecksumPolicy::FinishRequested => {
                if let Some(r) = request.filter(Offload::needs_csum) {
                    finish_requested(frame, usize::from(r.csum_start), usize::from(r.csum_offset));
                }
                None
            }
            ChecksumPolicy::FinishIfPartial => {
                finish_if_partial(frame);
                None
            }
        }
    }
}

/// Length of one inner segment (IP header to end of payload) of a TCP superframe in `frame`
/// (Ethernet first, encapsulated or not), or `None` when `off` does not describe one.
pub fn gso_segment_len(frame: &[u8], off: &Offload) -> Option<usize> {
    let layout = Layout::new(frame, off).ok()?;
    Some(layout.l4 + layout.tcp_len - layout.inner + usize::from(off.gso_size))
}

/// Where the headers of a TCP superframe are.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// The outer IPv6 header of an IP-in-IPv6 encapsulated frame.
    outer: Option<usize>,
    /// The inner IP header.
    inner: usize,
    inner_v4: bool,
    /// The TCP header.
    l4: usize,
    tcp_len: usize,
}

impl Layout {
    /// Walks Ethernet, an optional outer IPv6 (next header 4 or 41), the inner IP header and
    /// TCP, and checks them against the frame length and the request.
    fn new(frame: &[u8], off: &Offload) -> Result<Layout, OffloadError> {
        let bad = OffloadError::Invalid;
        if !off.is_tcp_gso() || off.gso_size == 0 {
            return Err(bad);
        }
        let (mut outer, mut inner, mut inner_v4) = (None, ETH_HEADER_LEN, false);
        match read_u16_be(frame, 12).ok_or(bad)? {
            ETHERTYPE_IPV4 => inner_v4 = true,
            ETHERTYPE_IPV6 => match frame.get(ETH_HEADER_LEN + 6).copied().ok_or(bad)? {
                NEXT_HEADER_IPV4 | NEXT_HEADER_IPV6 => {
                    let nh = frame.get(ETH_HEADER_LEN + 6).copied().unwrap_or(0);
                    outer = Some(ETH_HEADER_LEN);
                    inner = ETH_HEADER_LEN + IPV6_HEADER_LEN;
                    inner_v4 = nh == NEXT_HEADER_IPV4;
                    let plen = usize::from(read_u16_be(frame, ETH_HEADER_LEN + 4).ok_or(bad)?);
                    if inner + plen != frame.len() {
                        return Err(bad);
                    }
                }
                _ => {}
            },
            _ => return Err(bad),
        }
        let l4 = if inner_v4 {
            let ver_ihl = *frame.get(inner).ok_or(bad)?;
            let ihl = usize::from(ver_ihl & 0x0f) * 4;
            let total = usize::from(read_u16_be(frame, inner + 2).ok_or(bad)?);
            if ver_ihl >> 4 != 4
                || ihl < IPV4_MIN_HEADER_LEN
                || inner + total != frame.len()
                || frame.get(inner + 9) != Some(&PROTO_TCP)
                // A fragment cannot be segmented.
                || read_u16_be(frame, inner + 6).ok_or(bad)? & 0x3fff != 0
            {
                return Err(bad);
            }
            inner + ihl
        } else {
            let plen = usize::from(read_u16_be(frame, inner + 4).ok_or(bad)?);
            if frame.get(inner).map(|b| b >> 4) != Some(6)
                || inner + IPV6_HEADER_LEN + plen != frame.len()
                || frame.get(inner + 6) != Some(&PROTO_TCP)
            {
                return Err(bad);
            }
            inner + IPV6_HEADER_LEN
        };
        let tcp_len = usize::from(frame.get(l4 + 12).ok_or(bad)? >> 4) * 4;
        if tcp_len < TCP_MIN_HEADER_LEN || l4 + tcp_len > frame.len() {
            return Err(bad);
        }
        // The request must point at this TCP header's checksum (or not ask for one).
        if off.needs_csum() && (usize::from(off.csum_start) != l4 || off.csum_offset != 16) {
            return Err(bad);
        }
        Ok(Layout {
            outer,
            inner,
            inner_v4,
            l4,
            tcp_len,
        })
    }
}

/// A TCP superframe cut into segments of at most `gso_size` payload bytes, each a complete frame
/// with the headers of the superframe fixed up. Borrows the superframe; [`Segments::write`]
/// writes segment `i` into a fresh buffer.
#[derive(Debug)]
pub struct Segments<'a> {
    frame: &'a [u8],
    layout: Layout,
    mss: usize,
    count: usize,
}

impl<'a> Segments<'a> {
    /// Validates `frame` against `off` (a TCP superframe, Ethernet first, optionally IPv4- or
    /// IPv6-in-IPv6 encapsulated). Fails with [`OffloadError::Invalid`].
    pub fn new(frame: &'a [u8], off: &Offload) -> Result<Segments<'a>, OffloadError> {
        let layout = Layout::new(frame, off)?;
        let mss = usize::from(off.gso_size);
        let payload = frame.len() - (layout.l4 + layout.tcp_len);
        let count = payload.div_ceil(mss).max(1);
        Ok(Segments {
            frame,
            layout,
            mss,
            count,
        })
    }

    /// How many segments.
    pub fn count(&self) -> usize {
        self.count
    }

    fn headers_len(&self) -> usize {
        self.layout.l4 + self.layout.tcp_len
    }

    /// Frame length of segment `i`.
    pub fn len(&self, i: usize) -> usize {
        let payload = self.frame.len() - self.headers_len();
        let start = (i * self.mss).min(payload);
        let end = ((i + 1) * self.mss).min(payload);
        self.headers_len() + end - start
    }

    /// Whether there is no segment at all (never: a superframe has at least one).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes segment `i` into `buf` (replacing its frame; `meta` is the superframe's, with the
    /// offload request cleared).
    pub fn write(
        &self,
        i: usize,
        buf: &mut PacketBuf,
        meta: PacketMeta,
    ) -> Result<(), OffloadError> {
        let bad = OffloadError::Invalid;
        if i >= self.count {
            return Err(bad);
        }
        let hl = self.headers_len();
        let len = self.len(i);
        let start = hl + i * self.mss;
        buf.reset();
        buf.set_len(len).map_err(|_| OffloadError::NoRoom)?;
        buf.meta = meta;
        buf.meta.offload = Offload::NONE;
        let out = buf.data_mut();
        let (hdr, body) = out.split_at_mut(hl.min(out.len()));
        hdr.copy_from_slice(self.frame.get(..hl).ok_or(bad)?);
        body.copy_from_slice(self.frame.get(start..start + (len - hl)).ok_or(bad)?);
        let Layout {
            outer,
            inner,
            inner_v4,
            l4,
            tcp_len,
        } = self.layout;
        let last = i + 1 == self.count;

        if let Some(o) = outer {
            write_u16_be(out, o + 4, u16::try_from(len - inner).map_err(|_| bad)?);
        }
        let l4_len = len - l4;
        let l4_len16 = u16::try_from(l4_len).map_err(|_| bad)?;
        let pseudo = if inner_v4 {
            let ihl = l4 - inner;
            write_u16_be(out, inner + 2, u16::try_from(len - inner).map_err(|_| bad)?);
            let id = read_u16_be(out, inner + 4)
                .ok_or(bad)?
                .wrapping_add(i as u16);
            write_u16_be(out, inner + 4, id);
            write_u16_be(out, inner + 10, 0);
            let hsum = checksum::finish(checksum::data(out.get(inner..l4).ok_or(bad)?));
            write_u16_be(out, inner + 10, hsum);
            let _ = ihl;
            let a = out.get(inner + 12..inner + 20).ok_or(bad)?;
            checksum::combine(&[checksum::data(a), u16::from(PROTO_TCP), l4_len16])
        } else {
            write_u16_be(out, inner + 4, l4_len16);
            let a = out.get(inner + 8..inner + 40).ok_or(bad)?;
            checksum::combine(&[checksum::data(a), u16::from(PROTO_TCP), l4_len16])
        };
        let seq = read_u32_be(self.frame, l4 + 4).ok_or(bad)?;
        write_u32_be(out, l4 + 4, seq.wrapping_add((i * self.mss) as u32));
        let flags = out.get_mut(l4 + 13).ok_or(bad)?;
        if !last {
            *flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            *flags &= !TCP_CWR;
        }
        write_u16_be(out, l4 + 16, 0);
        let _ = tcp_len;
        let sum = checksum::combine(&[pseudo, checksum::data(out.get(l4..).ok_or(bad)?)]);
        write_u16_be(out, l4 + 16, checksum::finish(sum));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::PacketBuf;

    #[test]
    fn vnet_header_parse_and_emit_round_trip() {
        let off = Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: Offload::GSO_TCPV4 | Offload::GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let h = off.emit();
        // Native byte order; this machine (and every one the tests run on) is little-endian.
        #[cfg(target_endian = "little")]
        assert_eq!(h, [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(Offload::parse(&h), off);
        assert!(off.is_gso() && off.is_tcp_gso() && off.needs_csum() && off.is_set());
        assert!(!Offload::NONE.is_set());
        let mut s = off;
        s.shift(40).unwrap();
        assert_eq!((s.csum_start, s.hdr_len), (74, 106));
    }

    const SRC4: [u8; 4] = [10, 1, 1, 1];
    const DST4: [u8; 4] = [10, 1, 1, 2];

    /// Ethernet + IPv4 + TCP (20 bytes, flags ACK|PSH|FIN|CWR) + `payload`, with the TCP checksum
    /// left partial (pseudo-header sum) as a sender with offload leaves it.
    fn superframe_v4(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = (20 + 20 + payload.len()) as u16;
        f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
        write_u16_be(&mut f, 16, total);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
        let c = checksum::finish(checksum::data(&f[14..34]));
        write_u16_be(&mut f, 24, c);
        // TCP: ports 1000 -> 2000, seq 0xfffffff0 (wraps), ack 1, data offset 5, flags.
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x50, 0x80 | 0x10 | 0x08 | 0x01, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        let tcp_len = (20 + payload.len()) as u32;
        let pseudo = checksum::pseudo_header_v4(
            &SRC4.into(),
            &DST4.into(),
            dp_packet::IpProtocol::TCP,
            tcp_len,
        );
        write_u16_be(&mut f, 34 + 16, pseudo);
        f
    }

    fn gso_v4(mss: u16) -> Offload {
        Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: Offload::GSO_TCPV4,
            hdr_len: 54,
            gso_size: mss,
            csum_start: 34,
            csum_offset: 16,
        }
    }

    /// The expected bytes of segment `i` built from scratch.
    fn expected_v4(i: usize, chunk: &[u8], seq: u32, flags: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34 + i as u8, 0x40, 0, 64, 6, 0, 0]);
        write_u16_be(&mut f, 16, (40 + chunk.len()) as u16);
        f.extend_from_slice(&SRC4);
        f.extend_from_slice(&DST4);
        let c = checksum::finish(checksum::data(&f[14..34]));
        write_u16_be(&mut f, 24, c);
        f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 1, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(chunk);
        let c = checksum::transport_v4(
            &SRC4.into(),
            &DST4.into(),
            dp_packet::IpProtocol::TCP,
            &f[34..],
        );
        write_u16_be(&mut f, 50, c);
        f
    }

    #[test]
    fn three_segment_tcp_superframe_v4() {
        let payload: Vec<u8> = (0..250u32).map(|i| (i * 7 + 3) as u8).collect();
        let frame = superframe_v4(&payload);
        let segs = Segments::new(&frame, &gso_v4(100)).unwrap();
        assert_eq!(segs.count(), 3);
        let mut got = Vec::new();
        for i in 0..3 {
            let mut b = PacketBuf::new(2048);
            segs.write(i, &mut b, PacketMeta::default()).unwrap();
            assert_eq!(b.meta.offload, Offload::NONE);
            got.push(b.data().to_vec());
        }
        // ACK on all; CWR on the first only; PSH and FIN on the last only.
        assert_eq!(got[0], expected_v4(0, &payload[..100], 0xfffffff0, 0x90));
        assert_eq!(got[1], expected_v4(1, &payload[100..200], 0x54, 0x10));
        assert_eq!(got[2], expected_v4(2, &payload[200..], 0xb8, 0x19));
        assert_eq!(got[2].len(), 54 + 50);
        // And the checksums verify independently.
        for g in &got {
            assert_eq!(checksum::data(&g[14..34]), 0xffff);
            let tcp = &g[34..];
            let pseudo = checksum::pseudo_header_v4(
                &SRC4.into(),
                &DST4.into(),
                dp_packet::IpProtocol::TCP,
                tcp.len() as u32,
            );
            assert_eq!(checksum::combine(&[pseudo, checksum::data(tcp)]), 0xffff);
        }
    }

    #[test]
    fn encapsulated_superframe_fixes_outer_length_too() {
        let payload: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let inner = superframe_v4(&payload);
        // Ethernet + outer IPv6 (next header 4) + the inner IP packet.
        let mut f = vec![4, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 3, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 1, 0, 0, 4, 64]);
        write_u16_be(&mut f, 18, (inner.len() - 14) as u16);
        f.extend_from_slice(&[0xfc; 16]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&inner[14..]);
        let mut off = gso_v4(100);
        off.shift(40).unwrap();
        assert_eq!(gso_segment_len(&f, &off), Some(140));
        let segs = Segments::new(&f, &off).unwrap();
        assert_eq!(segs.count(), 3);
        for (i, (range, seq, flags)) in [
            (0..100, 0xfffffff0u32, 0x90u8),
            (100..200, 0x54, 0x10),
            (200..250, 0xb8, 0x19),
        ]
        .into_iter()
        .enumerate()
        {
            let mut b = PacketBuf::new(2048);
            segs.write(i, &mut b, PacketMeta::default()).unwrap();
            let want = expected_v4(i, &payload[range], seq, flags);
            assert_eq!(&b.data()[..14], &f[..14]);
            assert_eq!(read_u16_be(b.data(), 18), Some((want.len() - 14) as u16));
            assert_eq!(&b.data()[20..54], &f[20..54]);
            assert_eq!(&b.data()[54..], &want[14..]);
        }
    }

    #[test]
    fn ipv6_superframe_and_hostile_requests() {
        let src = [0x20u8; 16];
        let dst = [0x21u8; 16];
        let payload = [0xabu8; 30];
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 50, 6, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[
            0, 1, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 1, 0, 0, 0, 0, 0,
        ]);
        f.extend_from_slice(&payload);
        let off = Offload {
            flags: Offload::NEEDS_CSUM,
            gso_type: Offload::GSO_TCPV6,
            hdr_len: 74,
            gso_size: 16,
            csum_start: 54,
            csum_offset: 16,
        };
        let segs = Segments::new(&f, &off).unwrap();
        assert_eq!((segs.count(), segs.len(0), segs.len(1)), (2, 90, 88));
        for i in 0..2 {
            let mut b = PacketBuf::new(2048);
            segs.write(i, &mut b, PacketMeta::default()).unwrap();
            let d = b.data();
            assert_eq!(read_u16_be(d, 18), Some((d.len() - 54) as u16));
            assert_eq!(d[54 + 13], if i == 0 { 0x10 } else { 0x18 });
            let s: [u8; 16] = src;
            let t: [u8; 16] = dst;
            let c = checksum::combine(&[
                checksum::pseudo_header_v6(
                    &s.into(),
                    &t.into(),
                    dp_packet::IpProtocol::TCP,
                    (d.len() - 54) as u32,
                ),
                checksum::data(&d[54..]),
            ]);
            assert_eq!(c, 0xffff);
        }
        // Hostile: checksum pointing elsewhere, zero MSS, wrong lengths, not TCP.
        for bad in [
            Offload {
                csum_start: 20,
                ..off
            },
            Offload { gso_size: 0, ..off },
            Offload {
                gso_type: Offload::GSO_UDP,
                ..off
            },
        ] {
            assert_eq!(Segments::new(&f, &bad).err(), Some(OffloadError::Invalid));
        }
        assert!(Segments::new(&f[..f.len() - 1], &off).is_err());
        assert!(Segments::new(&f[..40], &off).is_err());
    }

    #[test]
    fn partial_checksum_is_finished_and_settled() {
        let frame = superframe_v4(b"hello, world");
        let mut b = PacketBuf::new(2048);
        b.set_frame(&frame).unwrap();
        b.meta.offload = Offload {
            gso_type: 0,
            gso_size: 0,
            ..gso_v4(0)
        };
        finish_checksum(&mut b).unwrap();
        assert_eq!(b.meta.offload, Offload::NONE);
        let want = expected_v4(0, b"hello, world", 0xfffffff0, 0x99);
        assert_eq!(&b.data()[50..52], &want[50..52]);
        // settle() on a request beyond the frame only forgets it.
        let mut b = PacketBuf::new(2048);
        b.set_frame(&frame[..40]).unwrap();
        b.meta.offload = gso_v4(0);
        b.meta.offload.gso_type = 0;
        settle(&mut b);
        assert_eq!(b.meta.offload, Offload::NONE);
        assert_eq!(b.data(), &frame[..40]);
    }

    #[test]
    fn one_checksum_policy_for_every_backend() {
        let partial = superframe_v4(b"policy");
        let done = expected_v4(0, b"policy", 0xfffffff0, 0x99);
        let request = Offload {
            gso_type: 0,
            gso_size: 0,
            ..gso_v4(0)
        };
        assert!(ChecksumPolicy::PassOn.passes_requests());
        for p in [
            ChecksumPolicy::Complete,
            ChecksumPolicy::FinishRequested,
            ChecksumPolicy::FinishIfPartial,
        ] {
            assert!(!p.passes_requests(), "{p:?}");
        }
        // Passed on: the frame untouched, the request handed on.
        let mut f = partial.clone();
        assert_eq!(
            ChecksumPolicy::PassOn.on_rx(&mut f, Some(request)),
            Some(request)
        );
        assert_eq!(f, partial);
        // Complete: nothing touched, even a partial checksum.
        assert_eq!(ChecksumPolicy::Complete.on_rx(&mut f, Some(request)), None);
        assert_eq!(f, partial);
        // Finished where the request says, and only when it asks.
        let mut f = partial.clone();
        let no_csum = Offload {
            flags: 0,
            ..request
        };
        assert_eq!(
            ChecksumPolicy::FinishRequested.on_rx(&mut f, Some(no_csum)),
            None
        );
        assert_eq!(ChecksumPolicy::FinishRequested.on_rx(&mut f, None), None);
        assert_eq!(f, partial);
        assert_eq!(
            ChecksumPolicy::FinishRequested.on_rx(&mut f, Some(request)),
            None
        );
        assert_eq!(f[50..52], done[50..52]);
        // SCTP's offset (a CRC32c) is left alone; a request beyond the frame too.
        let mut f = partial.clone();
        assert!(!finish_requested(&mut f, 34, 8));
        assert!(!finish_requested(&mut f, 34, 100));
        assert_eq!(f, partial);
        // Without a request: recognised by its value, as the requested one would be.
        let mut f = partial.clone();
        assert_eq!(ChecksumPolicy::FinishIfPartial.on_rx(&mut f, None), None);
        assert_eq!(f[50..52], done[50..52]);
        let copy = f.clone();
        ChecksumPolicy::FinishIfPartial.on_rx(&mut f, None);
        assert_eq!(f, copy, "a complete checksum is kept");
        // The pipeline's software completion agrees.
        let mut b = PacketBuf::new(2048);
        b.set_frame(&partial).unwrap();
        b.meta.offload = request;
        finish_checksum(&mut b).unwrap();
        assert_eq!(b.data(), &f[..]);
    }
}
