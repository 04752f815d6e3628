//! The DHCPv4 server for the VMs: DISCOVER gets an OFFER, REQUEST an ACK (or a NAK), always for the
//! interface's own address, with an infinite lease. The reply is written over the request, in place.
//!
//! What is sent matches dpservice's `dhcp_node`:
//! * options, in this order: message type (53), lease time 0xffffffff (51), server identifier
//!   169.254.0.1 (54), classless static routes (121) `169.254.0.0/16 → 0.0.0.0` and
//!   `0.0.0.0/0 → 169.254.0.1` (with virtual services also `169.254.1.0/24 → 169.254.0.1`,
//!   as dpservice built with them), subnet mask 255.255.255.255 (1), interface MTU (26,
//!   `--dhcp-mtu`), then — only for a PXE client — router 169.254.0.1 (3), then DNS servers (6,
//!   `--dhcp-dns`) when configured, host name (12) when the interface has one, end;
//! * `yiaddr` the VM's address, `siaddr` 169.254.0.1 (or the PXE next server), `giaddr` 169.254.0.1;
//! * from 169.254.0.1:67 and our MAC on the port, to the VM's MAC and address on port 68;
//! * PXE: a client whose vendor class contains `PXEClient:Arch:00007` gets the iPXE loader
//!   `ipxe/x86_64/ipxe.new` as boot file, a client with user class (77) `iPXE` gets
//!   `http://<next server><boot file name>`; both with the next server in `siaddr`, broadcast.
//!
//! Deliberate differences (RFC 2131 where dpservice is looser; none changes what a client configures):
//! * a REQUEST for another address (option 50, or `ciaddr` when renewing) is NAKed, broadcast, so a
//!   VM that kept an old lease restarts discovery; dpservice ACKs its own address regardless;
//! * a client's broadcast flag is honoured (reply to ff:ff:ff:ff:ff:ff / 255.255.255.255);
//! * `ciaddr` is zero in an OFFER, `secs` and `hops` are zero, `chaddr` is echoed as the client sent
//!   it, `sname`/`file` are cleared instead of echoing the request's bytes;
//! * a fresh IPv4 header (TTL 64, no options) instead of the request's, and the message is padded to
//!   the 300-byte BOOTP minimum (RFC 1542) after the end option;
//! * PXE answers need the interface to have a PXE next server (dpservice would send `0.0.0.0`), and
//!   the PXE mode is decided per packet (dpservice keeps it in a static across packets);
//! * the request is validated first: IPv4 header and checksum, no fragment, UDP length and checksum,
//!   BOOTREQUEST with Ethernet hardware type/length, magic cookie, well-formed option TLVs, a message
//!   type. DECLINE, RELEASE and INFORM are dropped (`dhcp_unhandled`), as in dpservice.

use core::fmt::Write as _;

use dp_packet::dhcpv4::{self, option, DhcpOp, BOOTP_MIN_LEN, MIN_LEN as BOOTP_HEADER_LEN};
use dp_packet::{
    DhcpMessageType, DhcpOptionWriter, DhcpPacket, EtherType, EthernetFrame, EthernetRepr,
    IpProtocol, Ipv4Addr, Ipv4Packet, Ipv4Repr, MacAddr, UdpPacket, UdpRepr,
};
use dp_tables::Iface;

use crate::buffer::PacketBuf;
use crate::config::{DpConfig, GATEWAY_IPV4};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV4_HEADER_LEN, REPLY_TTL, UDP_HEADER_LEN};

/// Infinite lease, as dpservice hands out.
const LEASE_INFINITE: u32 = 0xffff_ffff;
/// Classless static routes (RFC 3442): 169.254.0.0/16 on-link, default via the gateway.
const CLASSLESS_ROUTES: [u8; 12] = {
    let gw = GATEWAY_IPV4.octets();
    [16, 169, 254, 0, 0, 0, 0, 0, gw[0], gw[1], gw[2], gw[3]]
};
/// With virtual services (as dpservice built with them): also 169.254.1.0/24 via the gateway,
/// where link-local virtual endpoints live (more specific than the on-link /16).
const CLASSLESS_ROUTES_VIRTSVC: [u8; 20] = {
    let gw = GATEWAY_IPV4.octets();
    let r = CLASSLESS_ROUTES;
    [
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], 24, 169, 254, 1,
        gw[0], gw[1], gw[2], gw[3],
    ]
};
const SUBNET_MASK: Ipv4Addr = Ipv4Addr::BROADCAST;
/// dpservice builds replies no larger than a 1500-byte IP packet.
const MAX_IP_LEN: usize = 1500;
const MAX_OPTIONS_LEN: usize = MAX_IP_LEN - IPV4_HEADER_LEN - UDP_HEADER_LEN - BOOTP_HEADER_LEN;

const PXE_VENDOR_CLASS: &[u8] = b"PXEClient:Arch:00007";
const IPXE_USER_CLASS: &[u8] = b"iPXE";
const PXE_TFTP_FILE: &[u8] = b"ipxe/x86_64/ipxe.new";
/// Size of the BOOTP `file` field.
const FILE_FIELD_LEN: usize = 128;

const ETHERNET_HTYPE: u8 = 1;
const ETHERNET_HLEN: u8 = 6;

#[derive(Debug, Default)]
pub struct Dhcp;

impl Node for Dhcp {
    const NAME: &'static str = "dhcp";
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(&mut self, pkt: &mut PacketBuf, ctx: &Ctx<'_>, _worker: &mut WorkerCtx) -> Verdict {
        crate::offload::settle(pkt); // an answer goes back without the request's offload
        match answer(pkt, ctx) {
            Ok(()) => Verdict::Tx(pkt.meta.in_port),
            Err(reason) => Verdict::Drop(reason),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PxeMode {
    None,
    /// Legacy PXE ROM: chain-load iPXE over TFTP.
    Tftp,
    /// iPXE: boot script over HTTP.
    Http,
}

/// Everything the reply needs from the request, copied out before the buffer is rewritten.
struct Request {
    vm_mac: MacAddr,
    msg_type: DhcpMessageType,
    xid: u32,
    flags: u16,
    broadcast: bool,
    ciaddr: Ipv4Addr,
    chaddr: [u8; 16],
    requested_ip: Option<Ipv4Addr>,
    pxe: PxeMode,
}

fn answer(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<(), DropReason> {
    let (port, iface) = vm_port(ctx, pkt.meta.in_port)?;
    let req = parse(pkt.data())?;
    if iface.ipv4.is_unspecified() {
        return Err(DropReason::DhcpNoAddress);
    }
    let reply_type = match req.msg_type {
        DhcpMessageType::DISCOVER => DhcpMessageType::OFFER,
        DhcpMessageType::REQUEST => {
            let wanted = req
                .requested_ip
                .or(Some(req.ciaddr).filter(|a| !a.is_unspecified()));
            match wanted {
                Some(addr) if addr != iface.ipv4 => DhcpMessageType::NAK,
                _ => DhcpMessageType::ACK,
            }
        }
        _ => return Err(DropReason::DhcpUnhandled),
    };
    if reply_type == DhcpMessageType::ACK {
        // As dpservice: the MAC a DHCP client ACKed uses is the VM's from now on.
        port.learn_peer_mac(req.vm_mac);
    }
    let pxe_server = iface.pxe.as_ref().and_then(|p| p.next_server);
    let pxe = match pxe_server {
        Some(_) => req.pxe,
        None => PxeMode::None,
    };
    emit(pkt, ctx.config, iface, port.own_mac, &req, reply_type, pxe)
}

fn parse(frame: &[u8]) -> Result<Request, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| DropReason::Ipv4Malformed)?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    if ip.is_fragment() {
        return Err(DropReason::Ipv4Fragment);
    }
    if ip.protocol() != IpProtocol::UDP {
        return Err(DropReason::DhcpMalformed);
    }
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::L4Malformed)?;
    if !udp.verify_checksum_v4(&ip.src_addr(), &ip.dst_addr()) {
        return Err(DropReason::L4BadChecksum);
    }
    if udp.dst_port() != dhcpv4::SERVER_PORT {
        return Err(DropReason::DhcpMalformed);
    }
    let dhcp = DhcpPacket::new_checked(udp.payload()).map_err(|_| DropReason::DhcpMalformed)?;
    if dhcp.op() != DhcpOp::BOOTREQUEST
        || dhcp.htype() != ETHERNET_HTYPE
        || dhcp.hlen() != ETHERNET_HLEN
    {
        return Err(DropReason::DhcpMalformed);
    }

    let mut msg_type = None;
    let mut requested_ip = None;
    let mut pxe = PxeMode::None;
    for opt in dhcp.options() {
        let (code, data) = opt.map_err(|_| DropReason::DhcpMalformed)?;
        match code {
            option::MESSAGE_TYPE => match data {
                &[t] => msg_type = Some(DhcpMessageType(t)),
                _ => return Err(DropReason::DhcpMalformed),
            },
            option::REQUESTED_IP => match data {
                &[a, b, c, d] => requested_ip = Some(Ipv4Addr::new(a, b, c, d)),
                _ => return Err(DropReason::DhcpMalformed),
            },
            option::USER_CLASS if data == IPXE_USER_CLASS => pxe = PxeMode::Http,
            option::VENDOR_CLASS_ID if contains(data, PXE_VENDOR_CLASS) => pxe = PxeMode::Tftp,
            _ => {}
        }
    }
    let msg_type = msg_type.ok_or(DropReason::DhcpMalformed)?;
    Ok(Request {
        vm_mac: eth.src_addr(),
        msg_type,
        xid: dhcp.xid(),
        flags: dhcp.flags(),
        broadcast: dhcp.broadcast(),
        ciaddr: dhcp.ciaddr(),
        chaddr: dhcp.chaddr(),
        requested_ip,
        pxe,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn emit(
    pkt: &mut PacketBuf,
    config: &DpConfig,
    iface: &Iface,
    own_mac: MacAddr,
    req: &Request,
    reply_type: DhcpMessageType,
    pxe: PxeMode,
) -> Result<(), DropReason> {
    let nak = reply_type == DhcpMessageType::NAK;
    let pxe_server = iface
        .pxe
        .as_ref()
        .and_then(|p| p.next_server)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);

    // The boot file name, formatted on the stack.
    let mut file = FileName::default();
    match pxe {
        PxeMode::None => {}
        PxeMode::Tftp => file.push(PXE_TFTP_FILE)?,
        PxeMode::Http => {
            let name = iface.pxe.as_ref().map_or("", |p| p.boot_filename.as_str());
            write!(file, "http://{pxe_server}{name}").map_err(|_| DropReason::NoRoom)?;
        }
    }

    let broadcast = nak || pxe != PxeMode::None || req.broadcast;
    let (dst_mac, dst_ip) = if broadcast {
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    } else {
        (req.vm_mac, iface.ipv4)
    };

    let udp_at = ETH_HEADER_LEN + IPV4_HEADER_LEN;
    let bootp_at = udp_at + UDP_HEADER_LEN;
    let options_at = bootp_at + BOOTP_HEADER_LEN;
    pkt.set_len(options_at + MAX_OPTIONS_LEN)
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();

    // BOOTP header.
    let bootp = frame
        .get_mut(bootp_at..options_at)
        .ok_or(DropReason::NoRoom)?;
    bootp.fill(0);
    let mut reply = DhcpPacket::new_unchecked(bootp);
    reply.set_op(DhcpOp::BOOTREPLY);
    reply.set_htype(ETHERNET_HTYPE);
    reply.set_hlen(ETHERNET_HLEN);
    reply.set_xid(req.xid);
    reply.set_flags(req.flags);
    reply.set_chaddr(&req.chaddr);
    reply.set_magic_cookie();
    if !nak {
        if reply_type == DhcpMessageType::ACK {
            reply.set_ciaddr(req.ciaddr);
        }
        reply.set_yiaddr(iface.ipv4);
        reply.set_siaddr(match pxe {
            PxeMode::None => GATEWAY_IPV4,
            _ => pxe_server,
        });
        reply.set_giaddr(GATEWAY_IPV4);
        if !file.is_empty() {
            reply
                .set_file(file.as_bytes())
                .map_err(|_| DropReason::NoRoom)?;
        }
    }

    // Options.
    let options = frame.get_mut(options_at..).ok_or(DropReason::NoRoom)?;
    let options_len =
        write_options(options, config, iface, reply_type, pxe).map_err(|_| DropReason::NoRoom)?;
    let bootp_len = BOOTP_HEADER_LEN + options_len;
    let udp_len = UDP_HEADER_LEN + bootp_len;

    // UDP, IPv4, Ethernet.
    let udp_bytes = frame
        .get_mut(udp_at..bootp_at + bootp_len)
        .ok_or(DropReason::NoRoom)?;
    let mut udp = UdpPacket::new_unchecked(udp_bytes);
    UdpRepr {
        src_port: dhcpv4::SERVER_PORT,
        dst_port: dhcpv4::CLIENT_PORT,
        payload_len: bootp_len,
    }
    .emit(&mut udp)
    .map_err(|_| DropReason::NoRoom)?;
    udp.fill_checksum_v4(&GATEWAY_IPV4, &dst_ip);
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv4Repr::new(GATEWAY_IPV4, dst_ip, IpProtocol::UDP, udp_len, REPLY_TTL)
        .emit_into(l3)
        .map_err(|_| DropReason::NoRoom)?;
    EthernetRepr {
        src_addr: own_mac,
        dst_addr: dst_mac,
        ethertype: EtherType::IPV4,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    pkt.truncate(bootp_at + bootp_len);
    Ok(())
}

fn write_options(
    buf: &mut [u8],
    config: &DpConfig,
    iface: &Iface,
    reply_type: DhcpMessageType,
    pxe: PxeMode,
) -> dp_packet::Result<usize> {
    let mut w = DhcpOptionWriter::new(buf);
    w.put_message_type(reply_type)?;
    if reply_type == DhcpMessageType::NAK {
        w.put_ipv4(option::SERVER_ID, GATEWAY_IPV4)?;
    } else {
        w.put_u32(option::LEASE_TIME, LEASE_INFINITE)?;
        w.put_ipv4(option::SERVER_ID, GATEWAY_IPV4)?;
        if config.virtual_services.is_empty() {
            w.put(option::CLASSLESS_STATIC_ROUTE, &CLASSLESS_ROUTES)?;
        } else {
            w.put(option::CLASSLESS_STATIC_ROUTE, &CLASSLESS_ROUTES_VIRTSVC)?;
        }
        w.put_ipv4(option::SUBNET_MASK, SUBNET_MASK)?;
        w.put_u16(option::INTERFACE_MTU, config.dhcp_mtu)?;
        if pxe != PxeMode::None {
            w.put_ipv4(option::ROUTER, GATEWAY_IPV4)?;
        }
        if !config.dhcp_dns.is_empty() {
            w.put_ipv4_list(option::DNS_SERVERS, &config.dhcp_dns)?;
        }
        if let Some(name) = iface.hostname.as_deref() {
            if !name.is_empty() && name.len() <= usize::from(u8::MAX) {
                w.put(option::HOSTNAME, name.as_bytes())?;
            }
        }
    }
    w.finish_padded(BOOTP_MIN_LEN - BOOTP_HEADER_LEN)
}

/// A boot file name being formatted into the 128-byte `file` field (which keeps a NUL at the end).
struct FileName {
    buf: [u8; FILE_FIELD_LEN],
    len: usize,
}

impl Default for FileName {
    fn default() -> Self {
        FileName {
            buf: [0; FILE_FIELD_LEN],
            len: 0,
        }
    }
}

impl FileName {
    fn push(&mut self, bytes: &[u8]) -> Result<(), DropReason> {
        let end = self.len + bytes.len();
        // One byte stays free for the terminating NUL.
        if end >= FILE_FIELD_LEN {
            return Err(DropReason::NoRoom);
        }
        self.buf
            .get_mut(self.len..end)
            .ok_or(DropReason::NoRoom)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Write for FileName {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s.as_bytes()).map_err(|_| core::fmt::Error)
    }
}
