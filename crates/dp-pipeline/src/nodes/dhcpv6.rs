//! The DHCPv6 server for the VMs: hands out the interface's IPv6 address (IA_NA, infinite lifetimes)
//! and the DNS servers of `--dhcpv6-dns`. The reply is written over the request, in place.
//!
//! As dpservice's `dhcpv6_node`:
//! * SOLICIT gets ADVERTISE, REQUEST gets REPLY, CONFIRM gets REPLY, DECLINE is dropped;
//! * options in this order: server identifier, the client identifier echoed, IA_NA (the client's
//!   IAID, T1 = T2 = infinity, one IAADDR with the interface's address, preferred and valid lifetime
//!   infinity, carrying a nested status code Success), rapid commit, DNS servers (23);
//! * from fe80::1 port 547 and our MAC on the port, to the client's address and MAC, port 546;
//! * an interface without IPv6 answers SOLICIT and REQUEST with a REPLY carrying status
//!   NoAddrsAvail (so the client stops waiting) and drops everything else;
//! * the boot file URL (option 59, RFC 5970), last, after the DNS servers, when the interface
//!   has an IPv6 PXE server (CreateInterface's `pxe_config.next_server` of an interface with
//!   IPv6) and the client is a PXE ROM or iPXE: a vendor class (16) whose first opaque string is
//!   at least 20 bytes long and which contains `PXEClient:Arch:00007` gets
//!   `tftp://[SERVER]/ipxe/x86_64/ipxe.new` (the iPXE loader); a user class (15) whose first
//!   string is exactly `iPXE` gets `http://[SERVER]/BOOT_FILENAME` (CreateInterface's
//!   `pxe_config.boot_filename`). When both are there, the later option decides. Sent with
//!   every lease (ADVERTISE, REPLY to a rapid-commit SOLICIT, REQUEST, RENEW, REBIND); dpservice
//!   asserts on an interface without an IPv6 PXE server, here no option is sent then.
//!
//! Deliberate differences, each to follow RFC 8415 where dpservice does not (clients accept both):
//! * a SOLICIT with rapid commit gets a REPLY with rapid commit (dpservice sends an ADVERTISE
//!   carrying the option); rapid commit is not echoed in answers to other messages;
//! * the server DUID is a DUID-LL of hardware type 1 (Ethernet) with our MAC on the port; dpservice
//!   uses hardware type 0xabcd with the VM's MAC;
//! * RENEW and REBIND are answered like REQUEST, INFORMATION-REQUEST with the DNS servers (dpservice
//!   drops them; with infinite T1/T2 clients rarely send them, but a client capping lifetimes would
//!   otherwise lose its address); RELEASE gets a REPLY with status Success instead of a new lease;
//! * CONFIRM's REPLY carries server and client identifiers and a status code (Success, or NotOnLink
//!   when the client confirms an address that is not the interface's), not an empty option list;
//!   the NoAddrsAvail REPLY carries the identifiers too (clients discard a REPLY without them);
//! * no DNS option when no DNS server is configured (dpservice sends an empty one);
//! * a fresh IPv6 header (hop limit 64) instead of the request's;
//! * the request is validated first: IPv6 header, UDP length and checksum (mandatory over IPv6),
//!   link-local or global unicast source, well-formed option TLVs, client identifier of 1..=130
//!   bytes, IA_NA of at least 12 bytes, empty rapid commit option. Relay messages are dropped.

use dp_packet::dhcpv6::{self, option, status, Dhcpv6MessageType};
use dp_packet::{
    Dhcpv6OptionWriter, Dhcpv6Packet, EtherType, EthernetFrame, EthernetRepr, IaNa, IpProtocol,
    Ipv6Addr, Ipv6Packet, Ipv6Repr, MacAddr, UdpPacket, UdpRepr,
};

use crate::buffer::PacketBuf;
use crate::config::GATEWAY_IPV6;
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Node, Verdict};
use crate::worker_ctx::WorkerCtx;

use super::common::{vm_port, ETH_HEADER_LEN, IPV6_HEADER_LEN, REPLY_TTL, UDP_HEADER_LEN};

/// RFC 8415 §7.7: 0xffffffff is infinity; dpservice hands out infinite leases.
const INFINITY: u32 = 0xffff_ffff;
/// A DUID is at most 130 bytes (RFC 8415 §11.1).
const MAX_DUID_LEN: usize = 130;
/// DUID-LL (RFC 8415 §11.4), hardware type 1 (Ethernet).
const DUID_LL: u16 = 3;
const HW_TYPE_ETHERNET: u16 = 1;

#[derive(Debug, Default)]
pub struct Dhcpv6;

impl Node for Dhcpv6 {
    const NAME: &'static str = "dhcpv6";
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

/// What the reply needs from the request, copied out before the buffer is rewritten.
struct Request {
    vm_mac: MacAddr,
    client: Ipv6Addr,
    msg_type: Dhcpv6MessageType,
    transaction_id: u32,
    client_id: [u8; MAX_DUID_LEN],
    client_id_len: usize,
    /// IAID of the first IA_NA.
    iaid: Option<u32>,
    /// The first address the client names inside its IA_NA (CONFIRM checks it).
    ia_addr: Option<Ipv6Addr>,
    rapid_commit: bool,
    /// The PXE client kind its vendor or user class says (the later option wins).
    pxe: PxeMode,
}

/// Which boot file URL a client gets (dpservice's `dp_pxe_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PxeMode {
    None,
    /// A PXE ROM: the iPXE loader over TFTP.
    Tftp,
    /// iPXE: the interface's boot file over HTTP.
    Http,
}

/// dpservice's `DP_VND_CLASS_ID_COMP_STR` and `DP_USER_CLASS_INF_COMP_STR`, and the iPXE loader
/// (`DP_PXE_TFTP_PATH`, as the DHCPv4 node).
const PXE_VENDOR_CLASS: &[u8] = b"PXEClient:Arch:00007";
const IPXE_USER_CLASS: &[u8] = b"iPXE";
const PXE_TFTP_PATH: &str = "ipxe/x86_64/ipxe.new";

/// A vendor class option of a PXE ROM: enterprise number (4), a first string whose 2-byte length
/// is at least that of `PXEClient:Arch:00007`, and that text somewhere in the option's data.
fn is_pxe_vendor_class(data: &[u8]) -> bool {
    let first_len = be16(data.get(4..6));
    usize::from(first_len) >= PXE_VENDOR_CLASS.len()
        && data
            .get(6..)
            .unwrap_or_default()
            .windows(PXE_VENDOR_CLASS.len())
            .any(|w| w == PXE_VENDOR_CLASS)
}

fn be16(b: Option<&[u8]>) -> u16 {
    b.and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map_or(0, u16::from_be_bytes)
}

/// A user class option whose first string is exactly `iPXE`.
fn is_ipxe_user_class(data: &[u8]) -> bool {
    let first_len = be16(data.get(0..2));
    usize::from(first_len) == IPXE_USER_CLASS.len()
        && data.get(2..2 + IPXE_USER_CLASS.len()) == Some(IPXE_USER_CLASS)
}

impl Request {
    fn client_id(&self) -> Option<&[u8]> {
        match self.client_id_len {
            0 => None,
            n => self.client_id.get(..n),
        }
    }
}

/// What goes into the reply.
enum Reply {
    /// Address (when the client asked for an IA_NA) and DNS servers.
    Lease {
        msg_type: Dhcpv6MessageType,
        rapid_commit: bool,
    },
    /// DNS servers only.
    Information,
    /// Just a status code.
    Status(u16),
}

fn answer(pkt: &mut PacketBuf, ctx: &Ctx<'_>) -> Result<(), DropReason> {
    let (port, iface) = vm_port(ctx, pkt.meta.in_port)?;
    let req = parse(pkt.data())?;
    let has_address = !iface.ipv6.is_unspecified();
    let reply = match req.msg_type {
        Dhcpv6MessageType::SOLICIT | Dhcpv6MessageType::REQUEST if !has_address => {
            Reply::Status(status::NO_ADDRS_AVAIL)
        }
        _ if !has_address => return Err(DropReason::Dhcpv6Unhandled),
        Dhcpv6MessageType::SOLICIT if req.rapid_commit => Reply::Lease {
            msg_type: Dhcpv6MessageType::REPLY,
            rapid_commit: true,
        },
        Dhcpv6MessageType::SOLICIT => Reply::Lease {
            msg_type: Dhcpv6MessageType::ADVERTISE,
            rapid_commit: false,
        },
        Dhcpv6MessageType::REQUEST | Dhcpv6MessageType::RENEW | Dhcpv6MessageType::REBIND => {
            Reply::Lease {
                msg_type: Dhcpv6MessageType::REPLY,
                rapid_commit: false,
            }
        }
        Dhcpv6MessageType::CONFIRM => match req.ia_addr {
            Some(addr) if addr != iface.ipv6 => Reply::Status(status::NOT_ON_LINK),
            _ => Reply::Status(status::SUCCESS),
        },
        Dhcpv6MessageType::RELEASE => Reply::Status(status::SUCCESS),
        Dhcpv6MessageType::INFORMATION_REQUEST => Reply::Information,
        _ => return Err(DropReason::Dhcpv6Unhandled),
    };

    // Everything the reply needs is in `req`; from here on the request's bytes are overwritten.
    let msg_type = match reply {
        Reply::Lease { msg_type, .. } => msg_type,
        Reply::Information | Reply::Status(_) => Dhcpv6MessageType::REPLY,
    };
    let dhcp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN + UDP_HEADER_LEN;
    let options_at = dhcp_at + dhcpv6::HEADER_LEN;
    pkt.set_len(pkt.len() + pkt.tailroom())
        .map_err(|_| DropReason::NoRoom)?;
    let frame = pkt.data_mut();

    let dhcp = frame.get_mut(dhcp_at..).ok_or(DropReason::NoRoom)?;
    dhcpv6::emit_header(dhcp, msg_type, req.transaction_id).map_err(|_| DropReason::NoRoom)?;
    let options = frame.get_mut(options_at..).ok_or(DropReason::NoRoom)?;
    let boot = BootFile::of(&req, iface);
    let options_len = write_options(options, &req, &reply, port.own_mac, iface.ipv6, boot, ctx)
        .map_err(|_| DropReason::NoRoom)?;
    let udp_len = UDP_HEADER_LEN + dhcpv6::HEADER_LEN + options_len;

    let udp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    let udp_bytes = frame
        .get_mut(udp_at..udp_at + udp_len)
        .ok_or(DropReason::NoRoom)?;
    let mut udp = UdpPacket::new_unchecked(udp_bytes);
    UdpRepr {
        src_port: dhcpv6::SERVER_PORT,
        dst_port: dhcpv6::CLIENT_PORT,
        payload_len: udp_len - UDP_HEADER_LEN,
    }
    .emit(&mut udp)
    .map_err(|_| DropReason::NoRoom)?;
    udp.fill_checksum_v6(&GATEWAY_IPV6, &req.client);
    let l3 = frame.get_mut(ETH_HEADER_LEN..).ok_or(DropReason::NoRoom)?;
    Ipv6Repr::new(
        GATEWAY_IPV6,
        req.client,
        IpProtocol::UDP,
        udp_len,
        REPLY_TTL,
    )
    .emit_into(l3)
    .map_err(|_| DropReason::NoRoom)?;
    EthernetRepr {
        src_addr: port.own_mac,
        dst_addr: req.vm_mac,
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .map_err(|_| DropReason::NoRoom)?;
    pkt.truncate(udp_at + udp_len);
    Ok(())
}

fn parse(frame: &[u8]) -> Result<Request, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::EthTruncated)?;
    let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|_| DropReason::Ipv6Malformed)?;
    if ip.next_header() != IpProtocol::UDP {
        return Err(DropReason::Dhcpv6Malformed);
    }
    let src = ip.src_addr();
    if src.is_unspecified() || src.is_multicast() || src.is_loopback() {
        return Err(DropReason::Dhcpv6Malformed);
    }
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::L4Malformed)?;
    if !udp.verify_checksum_v6(&src, &ip.dst_addr()) {
        return Err(DropReason::L4BadChecksum);
    }
    if udp.dst_port() != dhcpv6::SERVER_PORT {
        return Err(DropReason::Dhcpv6Malformed);
    }
    let dhcp = Dhcpv6Packet::new_checked(udp.payload()).map_err(|_| DropReason::Dhcpv6Malformed)?;
    if dhcp.is_relay() {
        return Err(DropReason::Dhcpv6Unhandled);
    }

    let mut req = Request {
        vm_mac: eth.src_addr(),
        client: src,
        msg_type: dhcp.msg_type(),
        transaction_id: dhcp.transaction_id(),
        client_id: [0; MAX_DUID_LEN],
        client_id_len: 0,
        iaid: None,
        ia_addr: None,
        rapid_commit: false,
        pxe: PxeMode::None,
    };
    for opt in dhcp.options() {
        let (code, data) = opt.map_err(|_| DropReason::Dhcpv6Malformed)?;
        match code {
            option::CLIENTID => {
                let slot = req
                    .client_id
                    .get_mut(..data.len())
                    .filter(|_| !data.is_empty())
                    .ok_or(DropReason::Dhcpv6Malformed)?;
                slot.copy_from_slice(data);
                req.client_id_len = data.len();
            }
            option::IA_NA => {
                let ia = IaNa::new_checked(data).map_err(|_| DropReason::Dhcpv6Malformed)?;
                if req.iaid.is_none() {
                    req.iaid = Some(ia.iaid());
                    req.ia_addr = ia.address().map(|a| a.addr());
                }
            }
            option::RAPID_COMMIT => {
                if !data.is_empty() {
                    return Err(DropReason::Dhcpv6Malformed);
                }
                req.rapid_commit = true;
            }
            option::VENDOR_CLASS if is_pxe_vendor_class(data) => req.pxe = PxeMode::Tftp,
            option::USER_CLASS if is_ipxe_user_class(data) => req.pxe = PxeMode::Http,
            _ => {}
        }
    }
    Ok(req)
}

/// The boot file URL's parts: scheme, server, path.
#[derive(Clone, Copy)]
struct BootFile<'a> {
    scheme: &'static str,
    server: Ipv6Addr,
    path: &'a str,
}

impl<'a> BootFile<'a> {
    /// The URL for this client and interface, if it gets one.
    fn of(req: &Request, iface: &'a dp_tables::Iface) -> Option<BootFile<'a>> {
        let pxe = iface.pxe.as_ref()?;
        let server = pxe.next_server_v6?;
        match req.pxe {
            PxeMode::None => None,
            PxeMode::Tftp => Some(BootFile {
                scheme: "tftp",
                server,
                path: PXE_TFTP_PATH,
            }),
            PxeMode::Http => Some(BootFile {
                scheme: "http",
                server,
                path: &pxe.boot_filename,
            }),
        }
    }

    /// `scheme://[server]/path`, as dpservice's `dp_fill_boot_file_option` formats it.
    fn put(&self, w: &mut Dhcpv6OptionWriter<'_>) -> dp_packet::Result<()> {
        use std::io::Write;
        // The address's text form is at most 39 bytes ("[" and "]" around it).
        let mut server = [0u8; 41];
        let mut cursor = std::io::Cursor::new(&mut server[..]);
        write!(cursor, "[{}]", self.server).map_err(|_| dp_packet::Error::Truncated)?;
        let n = cursor.position() as usize;
        let at = w.begin(option::BOOTFILE_URL)?;
        w.put_raw(self.scheme.as_bytes())?;
        w.put_raw(b"://")?;
        w.put_raw(server.get(..n).unwrap_or_default())?;
        w.put_raw(b"/")?;
        w.put_raw(self.path.as_bytes())?;
        w.end(at)
    }
}

fn write_options(
    buf: &mut [u8],
    req: &Request,
    reply: &Reply,
    own_mac: MacAddr,
    address: Ipv6Addr,
    boot: Option<BootFile<'_>>,
    ctx: &Ctx<'_>,
) -> dp_packet::Result<usize> {
    let mut w = Dhcpv6OptionWriter::new(buf);
    let sid = w.begin(option::SERVERID)?;
    w.put_raw(&DUID_LL.to_be_bytes())?;
    w.put_raw(&HW_TYPE_ETHERNET.to_be_bytes())?;
    w.put_raw(&own_mac.0)?;
    w.end(sid)?;
    if let Some(client_id) = req.client_id() {
        w.put(option::CLIENTID, client_id)?;
    }
    match *reply {
        Reply::Lease { rapid_commit, .. } => {
            if let Some(iaid) = req.iaid {
                let ia = w.begin_ia_na(iaid, INFINITY, INFINITY)?;
                let addr = w.begin(option::IAADDR)?;
                w.put_raw(&address.octets())?;
                w.put_raw(&INFINITY.to_be_bytes())?;
                w.put_raw(&INFINITY.to_be_bytes())?;
                w.put_status_code(status::SUCCESS, "")?;
                w.end(addr)?;
                w.end(ia)?;
            }
            if rapid_commit {
                w.put(option::RAPID_COMMIT, &[])?;
            }
            put_dns(&mut w, ctx)?;
            if let Some(boot) = boot {
                boot.put(&mut w)?;
            }
        }
        Reply::Information => put_dns(&mut w, ctx)?,
        Reply::Status(code) => w.put_status_code(code, "")?,
    }
    Ok(w.finish())
}

fn put_dns(w: &mut Dhcpv6OptionWriter<'_>, ctx: &Ctx<'_>) -> dp_packet::Result<()> {
    if ctx.config.dhcpv6_dns.is_empty() {
        return Ok(());
    }
    w.put_ipv6_list(option::DNS_SERVERS, &ctx.config.dhcpv6_dns)
}
