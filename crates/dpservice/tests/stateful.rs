//! Stateful system test: NAT, VIP, the enforcing firewall, NAT64 and neighbor NAT with the real
//! daemons, against "the internet" — a router namespace that terminates the IPv6 tunnels and
//! holds the servers' public-looking addresses.
//!
//! ```text
//!  vm1 (NAT 203.0.113.1     vm2 (VIP 203.0.113.10,   vm3 (IPv6 only,      vm4 (NAT 203.0.113.1
//!       ports 1024-2048)         firewall)             NAT 203.0.113.2)        ports 2048-3072)
//!       │ vf0                    │ vf1                 │ vf2                   │ vf0
//!  ┌────┴────────────────────────┴─────────────────────┴───┐           ┌───────┴──────────────┐
//!  │ hv1  --ipv6 fc00:1::1   VNI 100: 0.0.0.0/0, ::/0       │           │ hv2  --ipv6 fc00:2::1│
//!  │      -> fc00::ffff; neighbor NAT 2048-3072 -> hv2      │           │ 0.0.0.0/0 -> router  │
//!  └──pf0──────────pf1─────────────────────────────────────┘           └──pf0──────────pf1────┘
//!      │            │                                                      │            │
//!  ┌───┴────────────┴──────────────── router namespace ─────────────────────┴────────────┴───┐
//!  │ fc00::ffff on lo, fc00:1::/64 and fc00:2::/64 on-link over each host's uplinks           │
//!  │ 198.51.100.10 (TCP and UDP servers), 198.51.100.20 (a client) on lo                      │
//!  │ TUN "tin" + a raw IPv6 socket on fc00::ffff (UserTunnel): IPv4-in-IPv6 decapsulated    │
//!  │ into tin; what is routed into tin encapsulated to the public address's underlay address: │
//!  │   203.0.113.1 -> vm1's NAT, 203.0.113.2 -> vm3's NAT, 203.0.113.10 -> vm2's VIP (hv1)    │
//!  └──────────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Steps (one test, one lab; each step names itself on failure):
//! 1. NAT: vm1 reaches the TCP and UDP servers; they see 203.0.113.1 and a port of vm1's range;
//!    nothing from outside reaches vm1 through its NAT address.
//! 2. VIP: a client in the router connects to 203.0.113.10 and vm2 sees the client's address;
//!    vm2's own connections leave from the VIP.
//! 3. Firewall: an ingress rule accepting only TCP port A on vm2 → B fails, A passes; a rule for
//!    B → B passes; the rule deleted → a new connection to B fails again.
//! 4. NAT64: IPv6-only vm3 reaches 64:ff9b::198.51.100.10 (TCP and UDP); the server sees
//!    203.0.113.2.
//! 5. Neighbor NAT: vm4 on hv2 shares 203.0.113.1 (ports 2048–3072); the router sends every
//!    packet for 203.0.113.1 to hv1, which relays the replies of vm4's flows to hv2 (seen on
//!    hv1's uplinks, encapsulated towards hv2's NAT underlay address) and vm4 gets them.
//! 6. Load balancer: 203.0.113.20:9000 on hv1 with two targets, vm1 (hv1) and vm4 (hv2), each
//!    holding the address in a target prefix; 100 connections from the internet spread over
//!    both and stay open; removing vm4's target moves only vm4's connections (vm1's keep
//!    answering, vm4's are sent to vm1, which resets them) and new ones all go to vm1.
//!
//! Sockets are plain std sockets made by a thread that entered the namespace (`setns`), so the
//! servers and clients need no tools and the test reads exactly which addresses they saw.
//!
//! The router's tunnel endpoint is in user space ([`UserTunnel`]): kernels built without
//! `CONFIG_IPV6_TUNNEL` (no `ip6tnl`, as on the CI machine this was written on) still run the
//! test; it is the plain RFC 2473 encapsulation an `ip -6 tunnel … mode ipip6 encaplimit none`
//! would do (outer source fc00::ffff, hop limit 64, next header 4).
//!
//! Needs root and `ip`, `udhcpc` (or busybox), `dhclient`, `unshare`, `ping`, `tcpdump`;
//! otherwise it prints `SKIPPED` and passes (unless
//! `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`). Names are unique per run, every wait and traffic loop is
//! bounded, and guards remove daemons, namespaces, threads and files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use dp_proto::v1;
use support::api::{Api, IfaceSpec};
use support::capture::{parse_outer6, Capture, Inner, Outer6};
use support::daemon::{hypervisor_args, Daemon};
use support::underlay::{Router, ROUTER_ADDR, ROUTER_LL};
use support::vm::Vm;
use support::{ensure, free_port, in_netns, sa, udp_exchange, wait_until, Names, Scratch};

const TOOLS: &[&str] = &[
    "ip", "udhcpc", "dhclient", "unshare", "ping", "tcpdump", "ipv6",
];

/// Progress on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[stateful] {}", format!($($arg)*)) };
}

// ---------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------

const VNI: u32 = 100;
/// The "internet" server (TCP and UDP) and a client, on the router's loopback.
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5300;
/// vm1's NAT (shared with vm4 on hv2), vm3's NAT (NAT64), vm2's VIP.
const NAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NAT64_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// Port ranges (upper bound excluded): hv1's share of NAT_IP, hv2's share.
const HV1_PORTS: (u16, u16) = (1024, 2048);
const HV2_PORTS: (u16, u16) = (2048, 3072);
/// The firewall test's ports on vm2.
const PORT_A: u16 = 7001;
const PORT_B: u16 = 7002;

/// Bytes of the bulk transfers.
const BULK: usize = 1 << 20;
/// Client connect / read timeout: a connection that does not complete within it failed.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

struct HvDef {
    name: &'static str,
    underlay: &'static str,
    prefix: &'static str,
    vf_count: usize,
}

const HVS: [HvDef; 2] = [
    HvDef {
        name: "hv1",
        underlay: "fc00:1::1",
        prefix: "fc00:1::/64",
        vf_count: 3,
    },
    HvDef {
        name: "hv2",
        underlay: "fc00:2::1",
        prefix: "fc00:2::/64",
        vf_count: 1,
    },
];

struct VmDef {
    name: &'static str,
    hv: usize,
    vf: usize,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

const VMS: [VmDef; 4] = [
    VmDef {
        name: "vm1",
        hv: 0,
        vf: 0,
        ipv4: Ipv4Addr::new(10, 100, 1, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1),
    },
    VmDef {
        name: "vm2",
        hv: 0,
        vf: 1,
        ipv4: Ipv4Addr::new(10, 100, 1, 2),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 2),
    },
    VmDef {
        name: "vm3",
        hv: 0,
        vf: 2,
        ipv4: Ipv4Addr::new(10, 100, 1, 3),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 3),
    },
    VmDef {
        name: "vm4",
        hv: 1,
        vf: 0,
        ipv4: Ipv4Addr::new(10, 100, 2, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 2, 0, 0, 0, 0, 1),
    },
];

fn def(name: &str) -> &'static VmDef {
    VMS.iter().find(|d| d.name == name).expect("known VM")
}

/// `64:ff9b::<v4>` (RFC 6052 well-known prefix).
fn nat64(v4: Ipv4Addr) -> Ipv6Addr {
    let o = v4.octets();
    Ipv6Addr::new(
        0x64,
        0xff9b,
        0,
        0,
        0,
        0,
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

// ---------------------------------------------------------------------------------------
// Sockets inside a namespace
// ---------------------------------------------------------------------------------------

/// What a server saw of one connection or datagram: the peer and our local address.
#[derive(Clone, Copy, Debug)]
struct Seen {
    peer: SocketAddr,
    local: SocketAddr,
}

/// The line a server answers with: `peer=<addr> local=<addr>`.
fn answer(seen: &Seen) -> String {
    format!("peer={} local={}\n", seen.peer, seen.local)
}

/// The peer address in a server's answer.
fn answered_peer(reply: &str) -> Result<SocketAddr, String> {
    reply
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("not a server answer: {reply:?}"))
}

/// A TCP or UDP server in a namespace, on its own thread: it answers each connection (after
/// reading a line) or datagram with [`answer`] and records what it saw. Dropping it stops the
/// thread (within ~50 ms) and closes the socket.
struct Server {
    what: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn tcp(ns: &str, addr: SocketAddr) -> Result<Server, String> {
        let listener = in_netns(ns, || TcpListener::bind(addr))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("tcp {addr}: {e}"))?;
        Ok(Server::run(
            format!("tcp {addr} in {ns}"),
            move |stop, seen| {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut s, peer)) => {
                            let Ok(local) = s.local_addr() else { continue };
                            let one = Seen { peer, local };
                            seen.lock().expect("not poisoned").push(one);
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                            let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                            // Everything up to the first newline (a bulk client sends
                            // megabytes of 'x' first), counted.
                            let mut buf = vec![0u8; 65536];
                            let mut total = 0usize;
                            loop {
                                match s.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        total += n;
                                        if buf[..n].contains(&b'\n') {
                                            break;
                                        }
                                    }
                                }
                            }
                            let reply = format!("{} bytes={total}\n", answer(&one).trim_end());
                            let _ = s.write_all(reply.as_bytes());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10))
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            },
        ))
    }

    fn udp(ns: &str, addr: SocketAddr) -> Result<Server, String> {
        let sock = in_netns(ns, || UdpSocket::bind(addr))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| format!("udp {addr}: {e}"))?;
        Ok(Server::run(
            format!("udp {addr} in {ns}"),
            move |stop, seen| {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                        let one = Seen { peer, local: addr };
                        seen.lock().expect("not poisoned").push(one);
                        let _ = sock.send_to(answer(&one).as_bytes(), peer);
                    }
                }
            },
        ))
    }

    fn run(
        what: String,
        body: impl FnOnce(&AtomicBool, &Mutex<Vec<Seen>>) + Send + 'static,
    ) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (seen.clone(), stop.clone());
        let handle = thread::spawn(move || body(&st2, &s2));
        Server {
            what,
            seen,
            stop,
            handle: Some(handle),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Connects from namespace `ns` to `dst` (bounded by [`IO_TIMEOUT`]), sends a line and returns
/// the server's answer.
fn tcp_exchange(ns: &str, dst: SocketAddr) -> Result<String, String> {
    let mut s = in_netns(ns, || TcpStream::connect_timeout(&dst, IO_TIMEOUT))
        .map_err(|e| format!("TCP connect to {dst}: {e}"))?;
    let io = |e: std::io::Error| format!("TCP {dst}: {e}");
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.write_all(b"hello\n").map_err(io)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(io)?;
    Ok(reply)
}

/// [`tcp_exchange`] with `len` bytes before the line: the server's answer must count them all.
/// Bulk data makes a VM's kernel send TCP superframes (its TAP offers segmentation offload).
fn tcp_bulk(ns: &str, dst: SocketAddr, len: usize) -> Result<String, String> {
    let t = Instant::now();
    let mut s = in_netns(ns, || TcpStream::connect_timeout(&dst, IO_TIMEOUT))
        .map_err(|e| format!("TCP connect to {dst}: {e}"))?;
    let io = |e: std::io::Error| format!("TCP {dst} ({len} bytes, after {:?}): {e}", t.elapsed());
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
    let mut data = vec![b'x'; len];
    data.push(b'\n');
    s.write_all(&data).map_err(io)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(io)?;
    let want = format!("bytes={}", len + 1);
    if reply.split_whitespace().any(|w| w == want) {
        Ok(reply)
    } else {
        Err(format!(
            "TCP {dst}: sent {} bytes, the server answered {reply:?}",
            len + 1
        ))
    }
}

// ---------------------------------------------------------------------------------------
// The router's tunnel endpoint, in user space
// ---------------------------------------------------------------------------------------

/// IPv4-in-IPv6 between the router and the hypervisors: a TUN device (`tin`, IPv4 routes of
/// the public addresses point into it) and a raw IPv6 socket of protocol 4 bound to the
/// router's underlay address. One thread decapsulates (raw socket → TUN: the kernel hands a
/// raw IPv6 socket the payload without the IPv6 header, which is the inner IPv4 packet), one
/// encapsulates (TUN → raw socket, to the underlay address of the inner destination, see
/// [`UserTunnel::route`]; the kernel writes the outer header). Dropping it stops both threads
/// (within ~50 ms) and closes the descriptors, which removes the TUN device.
struct UserTunnel {
    routes: Arc<Mutex<Vec<(Ipv4Addr, Ipv6Addr)>>>,
    /// Packets decapsulated, encapsulated, and read from the TUN without a route.
    counts: Arc<[AtomicU64; 3]>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

fn os_err<T>(what: &str) -> std::io::Result<T> {
    let e = std::io::Error::last_os_error();
    Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn sockaddr6(a: Ipv6Addr) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: a.octets(),
        },
        sin6_scope_id: 0,
    }
}

/// `poll` for input on `fd` for at most `ms` milliseconds.
fn readable(fd: RawFd, ms: libc::c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// The TUN device `name` (IPv4 packets without a packet-information header) in the calling
/// thread's namespace.
fn open_tun(name: &str) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path; on success we own the new descriptor.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return os_err("open /dev/net/tun");
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data, all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `ifr` is.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    } < 0
    {
        return os_err("TUNSETIFF");
    }
    Ok(fd)
}

/// A raw IPv6 socket of protocol 4 (IPv4 inside) bound to `local`, in the calling thread's
/// namespace.
fn open_raw_ipip6(local: Ipv6Addr) -> std::io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; on success we own the new descriptor.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_IPIP,
        )
    };
    if fd < 0 {
        return os_err("socket(AF_INET6, SOCK_RAW, IPPROTO_IPIP)");
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = sockaddr6(local);
    // SAFETY: a valid sockaddr_in6 and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return os_err(&format!("bind {local}"));
    }
    Ok(fd)
}

impl UserTunnel {
    /// Creates `tin` and the raw socket on `local` in the namespace `ns` and starts the threads.
    /// The device still has to be set up (`ip link set tin up`) and routed to.
    fn start(ns: &str, local: Ipv6Addr) -> Result<UserTunnel, String> {
        let (tun, raw) = in_netns(ns, || Ok((open_tun("tin")?, open_raw_ipip6(local)?)))?;
        let (tun, raw) = (Arc::new(tun), Arc::new(raw));
        let routes: Arc<Mutex<Vec<(Ipv4Addr, Ipv6Addr)>>> = Arc::default();
        let counts: Arc<[AtomicU64; 3]> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (tun, raw, counts, stop) = (tun.clone(), raw.clone(), counts.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if !readable(raw.as_raw_fd(), 50) {
                        continue;
                    }
                    // SAFETY: `buf` is valid for writes of its length.
                    let n = unsafe {
                        libc::recv(raw.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                    };
                    let Ok(n) = usize::try_from(n) else { continue };
                    if n >= 20 && buf[0] >> 4 == 4 {
                        // SAFETY: `buf[..n]` is valid for reads.
                        let w = unsafe { libc::write(tun.as_raw_fd(), buf.as_ptr().cast(), n) };
                        if w > 0 {
                            counts[0].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        {
            let (routes, counts, stop) = (routes.clone(), counts.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if !readable(tun.as_raw_fd(), 50) {
                        continue;
                    }
                    // SAFETY: `buf` is valid for writes of its length.
                    let n =
                        unsafe { libc::read(tun.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    let Ok(n) = usize::try_from(n) else { continue };
                    if n < 20 || buf[0] >> 4 != 4 {
                        continue;
                    }
                    let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
                    let remote = routes
                        .lock()
                        .expect("not poisoned")
                        .iter()
                        .find(|(p, _)| *p == dst)
                        .map(|(_, u)| *u);
                    let Some(remote) = remote else {
                        counts[2].fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let sa = sockaddr6(remote);
                    // SAFETY: `buf[..n]` is valid for reads; a valid sockaddr_in6 and its size.
                    let w = unsafe {
                        libc::sendto(
                            raw.as_raw_fd(),
                            buf.as_ptr().cast(),
                            n,
                            0,
                            &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
                            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                        )
                    };
                    if w > 0 {
                        counts[1].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        Ok(UserTunnel {
            routes,
            counts,
            stop,
            threads,
        })
    }

    /// Packets to `public` are encapsulated to `remote`.
    fn route(&self, public: Ipv4Addr, remote: Ipv6Addr) {
        self.routes
            .lock()
            .expect("not poisoned")
            .push((public, remote));
    }

    fn report(&self) -> String {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        format!(
            "user tunnel tin: {} decapsulated, {} encapsulated, {} without a route; routes {:?}\n",
            c(0),
            c(1),
            c(2),
            self.routes.lock().expect("not poisoned")
        )
    }
}

impl Drop for UserTunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------

struct Hv {
    names: Names,
    daemon: Daemon,
    api: Api,
}

struct Lab {
    // Drop order (see Drop): servers, tunnel, VMs' clients, daemons, VM namespaces, router,
    // scratch.
    servers: Vec<Server>,
    tunnel: Option<UserTunnel>,
    vms: Vec<Vm>,
    hvs: Vec<Hv>,
    router: Option<Router>,
    /// Underlay addresses: `(what, addr)`, e.g. ("vm1.nat", …).
    underlays: Vec<(String, Ipv6Addr)>,
    scratch: Scratch,
}

impl Lab {
    fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }
    fn ns(&self, vm: &str) -> String {
        self.vm(vm).ns.name.clone()
    }
    fn router(&self) -> &Router {
        self.router.as_ref().expect("router present until drop")
    }
    fn router_ns(&self) -> String {
        self.router().ns.name.clone()
    }
    fn underlay(&self, what: &str) -> Ipv6Addr {
        self.underlays
            .iter()
            .find(|(n, _)| n == what)
            .map(|(_, u)| *u)
            .unwrap_or_else(|| panic!("no underlay for {what}"))
    }
    fn pf(&self, hv: usize, i: usize) -> String {
        if i == 0 {
            self.hvs[hv].names.pf0()
        } else {
            self.hvs[hv].names.pf1()
        }
    }
    fn report(&self) -> String {
        let mut s = String::new();
        for hv in &self.hvs {
            s.push_str(&hv.daemon.report());
            s.push('\n');
        }
        if let Some(t) = &self.tunnel {
            s.push_str(&t.report());
        }
        if let Some(r) = &self.router {
            s.push_str(&r.report());
            for args in [
                &["ip", "-4", "addr"][..],
                &["ip", "-4", "route"],
                // The kernel's counters of what it dropped.
                &["sh", "-c", "nstat -asz | grep -E 'Err|Discard|NoPort|NoRoute|Drop|Unknown|Csum|InReceives|OutRequests|PassiveOpens|OutRsts' | grep -v ' 0 '"],
            ] {
                match r.ns.exec(args) {
                    Ok(o) => s.push_str(&format!("$ {}\n{}{}", args.join(" "), o.stdout, o.stderr)),
                    Err(e) => s.push_str(&format!("$ {}: {e}\n", args.join(" "))),
                }
            }
        }
        for vm in &self.vms {
            s.push_str(&vm.report());
        }
        for srv in &self.servers {
            s.push_str(&format!("server {}: saw {:?}\n", srv.what, srv.seen()));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        self.tunnel.take();
        for vm in &mut self.vms {
            vm.clients.clear();
        }
        // The daemons' TAPs vanish with them, also those inside the namespaces.
        self.hvs.clear();
        self.vms.clear();
        self.router.take();
    }
}

#[test]
fn nat_vip_firewall_nat64_and_neighbor_nat_against_the_internet() {
    skip_unless_ready!(
        "nat_vip_firewall_nat64_and_neighbor_nat_against_the_internet",
        TOOLS
    );
    let t0 = Instant::now();
    let mut lab = setup().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = scenario(&mut lab) {
        let report = lab.report();
        panic!("{e}\n\n{report}");
    }
    step!("RESULT all steps passed in {:?}", t0.elapsed());
}

/// Daemons and the router namespace with its uplinks; failures after the first daemon carry
/// the daemons' output.
fn setup() -> Result<Lab, String> {
    let scratch = Scratch::new(&Names::new())?;
    let mut hvs = Vec::new();
    for h in &HVS {
        let names = Names::new();
        let port = free_port();
        let args = hypervisor_args(&names, h.vf_count, port, h.underlay, ROUTER_LL, &[]);
        let daemon = Daemon::start(
            &args,
            port,
            names.taps(h.vf_count),
            scratch.path(&format!("{}.log", h.name)),
        )?;
        step!("{} up: {}", h.name, daemon.cmdline);
        let api = Api::connect(port)?;
        hvs.push(Hv { names, daemon, api });
    }
    let router_ns = hvs[0].names.netns("inet");
    let mut lab = Lab {
        servers: Vec::new(),
        tunnel: None,
        vms: Vec::new(),
        hvs,
        router: None,
        underlays: Vec::new(),
        scratch,
    };
    let r = (|| {
        let mut router = Router::new(&router_ns)?;
        for hv in 0..HVS.len() {
            for i in 0..2 {
                router.attach(&lab.pf(hv, i))?;
            }
        }
        for (hv, h) in HVS.iter().enumerate() {
            let (a, b) = (lab.pf(hv, 0), lab.pf(hv, 1));
            router.route_multipath(h.prefix, &[&a, &b])?;
        }
        // The internet's addresses and the tunnel endpoint; the hypervisors' outer source is
        // the sending interface's underlay address, so the endpoint takes any remote.
        lab.tunnel = Some(UserTunnel::start(
            &router.ns.name,
            ROUTER_ADDR.parse().expect("valid"),
        )?);
        router.sh(&format!(
            "set -e; ip addr add {SERVER}/32 dev lo; ip addr add {CLIENT}/32 dev lo; \
             sysctl -qw net.ipv6.conf.tin.disable_ipv6=1; ip link set tin up; \
             for c in all default lo tin; do sysctl -qw net.ipv4.conf.$c.rp_filter=0; done"
        ))?;
        lab.router = Some(router);
        Ok::<(), String>(())
    })();
    match r {
        Ok(()) => Ok(lab),
        Err(e) => Err(format!("{e}\n\n{}", lab.report())),
    }
}

/// Routes `public` into the router's tunnel, encapsulated to `remote` (its underlay address
/// on a hypervisor); connections the router opens to it come from [`CLIENT`].
fn route_public(lab: &Lab, remote: Ipv6Addr, public: Ipv4Addr) -> Result<(), String> {
    lab.tunnel
        .as_ref()
        .expect("tunnel present")
        .route(public, remote);
    lab.router()
        .sh(&format!("ip route add {public}/32 dev tin src {CLIENT}"))?;
    step!("router: {public} -> tunnel to {remote}");
    Ok(())
}

/// One step of the scenario.
type Step = fn(&mut Lab) -> Result<(), String>;

fn scenario(lab: &mut Lab) -> Result<(), String> {
    for h in &HVS {
        wait_until(
            &format!("the router to ping {} ({})", h.name, h.underlay),
            Duration::from_secs(20),
            || lab.router().ping(h.underlay)?.check().map(|_| ()),
        )?;
    }
    step!("router reaches both hypervisors");
    configure(lab)?;
    start_vms(lab)?;
    let rns = lab.router_ns();
    lab.servers.push(Server::tcp(&rns, sa(SERVER, TCP_PORT))?);
    lab.servers.push(Server::udp(&rns, sa(SERVER, UDP_PORT))?);

    let steps: [(&str, Step); 6] = [
        ("1 NAT", check_nat),
        ("2 VIP", check_vip),
        ("3 firewall", check_firewall),
        ("4 NAT64", check_nat64),
        ("5 neighbor NAT", check_neighbor_nat),
        ("6 load balancer", check_load_balancer),
    ];
    for (name, f) in steps {
        let t = Instant::now();
        f(lab).map_err(|e| format!("step {name}: {e}"))?;
        step!("RESULT step {name}: ok in {:?}", t.elapsed());
    }
    Ok(())
}

/// Interfaces, NATs, the VIP, default routes, neighbor NATs and the router's tunnels.
fn configure(lab: &mut Lab) -> Result<(), String> {
    for hv in &mut lab.hvs {
        hv.api.init()?;
    }
    for d in &VMS {
        let device = lab.hvs[d.hv].names.vf(d.vf);
        let r = lab.hvs[d.hv].api.create_interface(&IfaceSpec {
            id: d.name,
            vni: VNI,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            device: &device,
            hostname: None,
        })?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("CreateInterface {}: bad underlay_route: {e}", d.name))?;
        lab.underlays.push((d.name.to_string(), ul));
    }
    let nat1 = lab.hvs[0]
        .api
        .create_nat("vm1", NAT_IP, HV1_PORTS.0, HV1_PORTS.1)?;
    let vip = lab.hvs[0].api.create_vip("vm2", VIP)?;
    let nat3 = lab.hvs[0]
        .api
        .create_nat("vm3", NAT64_IP, HV1_PORTS.0, HV1_PORTS.1)?;
    let nat4 = lab.hvs[1]
        .api
        .create_nat("vm4", NAT_IP, HV2_PORTS.0, HV2_PORTS.1)?;
    // Each host relays the other's share of NAT_IP (metalnet configures both directions).
    lab.hvs[0]
        .api
        .create_neighbor_nat(NAT_IP, VNI, HV2_PORTS.0, HV2_PORTS.1, nat4)?;
    lab.hvs[1]
        .api
        .create_neighbor_nat(NAT_IP, VNI, HV1_PORTS.0, HV1_PORTS.1, nat1)?;
    for (what, ul) in [
        ("vm1.nat", nat1),
        ("vm2.vip", vip),
        ("vm3.nat", nat3),
        ("vm4.nat", nat4),
    ] {
        step!("{what}: underlay {ul}");
        lab.underlays.push((what.to_string(), ul));
    }
    let router: Ipv6Addr = ROUTER_ADDR.parse().expect("valid");
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    lab.hvs[0].api.create_route(VNI, any4, 0, VNI, router)?;
    lab.hvs[0].api.create_route(VNI, any6, 0, VNI, router)?;
    lab.hvs[1].api.create_route(VNI, any4, 0, VNI, router)?;
    step!("VNI {VNI}: 0.0.0.0/0 (and ::/0 on hv1) -> {router}");
    // Every public address is routed to hv1 only: hv2's share of NAT_IP comes back through
    // hv1's neighbor NAT relay.
    route_public(lab, nat1, NAT_IP)?;
    route_public(lab, vip, VIP)?;
    route_public(lab, nat3, NAT64_IP)?;
    Ok(())
}

/// vm1, vm2, vm4 by DHCPv4 (udhcpc); vm3 IPv6 only (DHCPv6 and the RA's default route).
fn start_vms(lab: &mut Lab) -> Result<(), String> {
    for d in &VMS {
        let names = &lab.hvs[d.hv].names;
        let vm = Vm::new(d.name, &names.netns(d.name), &names.vf(d.vf))?;
        lab.vms.push(vm);
    }
    for d in &VMS {
        let idx = lab
            .vms
            .iter()
            .position(|v| v.name == d.name)
            .expect("created");
        if d.name == "vm3" {
            let (vm, scratch) = (&mut lab.vms[idx], &lab.scratch);
            vm.dhclient6(scratch, &d.ipv6.to_string())?;
            vm.wait_ra_default_route()
                .map_err(|e| format!("{}: {e}", d.name))?;
            let v4 = vm.ipv4_addrs()?;
            ensure(v4.trim().is_empty(), || {
                format!("vm3 should be IPv6 only: {v4}")
            })?;
            step!("{}: DHCPv6 {}, RA default route, no IPv4", d.name, d.ipv6);
        } else {
            let opts = lab.vms[idx].udhcpc(&lab.scratch)?;
            ensure(opts.get("ip") == Some(&d.ipv4.to_string()), || {
                format!("{}: udhcpc got {opts:?}", d.name)
            })?;
            step!("{}: DHCP {}", d.name, d.ipv4);
        }
    }
    Ok(())
}

fn server(lab: &Lab, i: usize) -> &Server {
    &lab.servers[i]
}

/// The last thing `srv` saw from `ip`.
fn seen_from(srv: &Server, ip: Ipv4Addr) -> Option<Seen> {
    srv.seen()
        .into_iter()
        .rev()
        .find(|s| s.peer.ip() == IpAddr::V4(ip))
}

fn in_range(port: u16, (lo, hi): (u16, u16)) -> bool {
    (lo..hi).contains(&port)
}

/// TCP and UDP from `vm` to the server: both answer, both saw `public` with a port of `range`
/// (or, for a VIP, any port). Returns the ports.
fn expect_translated(
    lab: &Lab,
    vm: &str,
    server_ip: IpAddr,
    public: Ipv4Addr,
    range: Option<(u16, u16)>,
) -> Result<(u16, u16), String> {
    let ns = lab.ns(vm);
    let mut ports = [0u16; 2];
    for (i, (proto, port)) in [("TCP", TCP_PORT), ("UDP", UDP_PORT)].iter().enumerate() {
        let dst = sa(server_ip, *port);
        let reply = if i == 0 {
            tcp_exchange(&ns, dst)?
        } else {
            udp_exchange(&ns, dst)?
        };
        let peer = answered_peer(&reply)?;
        ensure(peer.ip() == IpAddr::V4(public), || {
            format!("{vm} -> {proto} {dst}: the server saw {peer}, want {public}")
        })?;
        if let Some(r) = range {
            ensure(in_range(peer.port(), r), || {
                format!(
                    "{vm} -> {proto} {dst}: source port {} outside {}..{}",
                    peer.port(),
                    r.0,
                    r.1
                )
            })?;
        }
        let recorded = seen_from(server(lab, i), public);
        ensure(recorded.is_some_and(|s| s.peer == peer), || {
            format!("{proto} server recorded {recorded:?}, the answer said {peer}")
        })?;
        step!("{vm} -> {proto} {dst}: the server saw {peer}");
        ports[i] = peer.port();
    }
    Ok((ports[0], ports[1]))
}

/// Step 1: vm1 behind its NAT reaches the servers; the NAT address accepts nothing from outside.
fn check_nat(lab: &mut Lab) -> Result<(), String> {
    expect_translated(lab, "vm1", IpAddr::V4(SERVER), NAT_IP, Some(HV1_PORTS))?;
    // A second connection keeps the inside endpoint's public port for a new destination port
    // only if it is free; what matters here: it works again (a fresh flow).
    expect_translated(lab, "vm1", IpAddr::V4(SERVER), NAT_IP, Some(HV1_PORTS))?;
    // Bulk data (TCP superframes from the VM's kernel) through the NAT.
    let t = Instant::now();
    let reply = tcp_bulk(&lab.ns("vm1"), sa(SERVER, TCP_PORT), BULK)?;
    step!(
        "vm1 -> TCP {SERVER}:{TCP_PORT}: {BULK} bytes in {:?}: {:?}",
        t.elapsed(),
        reply.trim()
    );
    // From outside, the NAT address is no service: a connection to it fails.
    let rns = lab.router_ns();
    let r = tcp_exchange(&rns, sa(NAT_IP, 1500));
    ensure(r.is_err(), || {
        format!("a TCP connection from the internet to {NAT_IP}:1500 succeeded: {r:?}")
    })?;
    step!(
        "internet -> {NAT_IP}:1500: {} (as it must)",
        r.err().unwrap_or_default()
    );
    Ok(())
}

/// Step 2: the VIP is reachable from outside (vm2 sees the client's address) and vm2's own
/// connections leave from it.
fn check_vip(lab: &mut Lab) -> Result<(), String> {
    let ns2 = lab.ns("vm2");
    let any = Ipv4Addr::UNSPECIFIED;
    lab.servers.push(Server::tcp(&ns2, sa(any, PORT_A))?);
    lab.servers.push(Server::tcp(&ns2, sa(any, PORT_B))?);
    let rns = lab.router_ns();
    for port in [PORT_A, PORT_B] {
        let reply = wait_until(
            &format!("a TCP connection from the internet to {VIP}:{port}"),
            Duration::from_secs(6),
            || tcp_exchange(&rns, sa(VIP, port)),
        )?;
        let peer = answered_peer(&reply)?;
        ensure(peer.ip() == IpAddr::V4(CLIENT), || {
            format!("vm2 saw the connection to {VIP}:{port} from {peer}, want {CLIENT}")
        })?;
        ensure(
            reply.contains(&format!("local={}:{port}", def("vm2").ipv4)),
            || format!("vm2 did not get it on its own address: {reply:?}"),
        )?;
        step!(
            "internet {CLIENT} -> VIP {VIP}:{port}: vm2 answered {:?}",
            reply.trim()
        );
    }
    expect_translated(lab, "vm2", IpAddr::V4(SERVER), VIP, None)?;
    Ok(())
}

fn tcp_rule(id: &str, port: u16) -> v1::FirewallRule {
    v1::FirewallRule {
        id: id.as_bytes().to_vec(),
        direction: v1::TrafficDirection::Ingress as i32,
        action: v1::FirewallAction::Accept as i32,
        priority: 100,
        source_prefix: Some(dp_proto::convert::prefix_to_proto(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        )),
        destination_prefix: Some(dp_proto::convert::prefix_to_proto(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        )),
        protocol_filter: Some(v1::ProtocolFilter {
            filter: Some(v1::protocol_filter::Filter::Tcp(v1::TcpFilter {
                src_port_lower: -1,
                src_port_upper: -1,
                dst_port_lower: i32::from(port),
                dst_port_upper: i32::from(port),
            })),
        }),
    }
}

/// A connection from the internet to the VIP's `port` fails (a firewall drop is a connect
/// timeout). The rules take effect with the next snapshot: bounded retries until it fails.
fn expect_blocked(lab: &Lab, port: u16, why: &str) -> Result<(), String> {
    let rns = lab.router_ns();
    let t = Instant::now();
    let e = wait_until(
        &format!("a connection to {VIP}:{port} to fail ({why})"),
        Duration::from_secs(8),
        || match tcp_exchange(&rns, sa(VIP, port)) {
            Ok(r) => Err(format!("it succeeded: {r:?}")),
            Err(e) => Ok(e),
        },
    )?;
    step!(
        "internet -> {VIP}:{port} fails ({why}): {e} (after {:?})",
        t.elapsed()
    );
    Ok(())
}

fn expect_open(lab: &Lab, port: u16, why: &str) -> Result<(), String> {
    let rns = lab.router_ns();
    let reply = wait_until(
        &format!("a connection to {VIP}:{port} to succeed ({why})"),
        Duration::from_secs(8),
        || tcp_exchange(&rns, sa(VIP, port)),
    )?;
    step!(
        "internet -> {VIP}:{port} passes ({why}): {:?}",
        reply.trim()
    );
    Ok(())
}

/// Step 3: ingress rules on vm2 open exactly the ports they name.
fn check_firewall(lab: &mut Lab) -> Result<(), String> {
    let id_a = lab.hvs[0]
        .api
        .create_firewall_rule("vm2", tcp_rule("allow-a", PORT_A))?;
    step!("vm2: ingress rule {id_a:?} accepts TCP port {PORT_A} only");
    expect_blocked(lab, PORT_B, "only port A is accepted")?;
    expect_open(lab, PORT_A, "rule allow-a")?;
    let id_b = lab.hvs[0]
        .api
        .create_firewall_rule("vm2", tcp_rule("allow-b", PORT_B))?;
    step!("vm2: ingress rule {id_b:?} accepts TCP port {PORT_B}");
    expect_open(lab, PORT_B, "rule allow-b")?;
    lab.hvs[0].api.delete_firewall_rule("vm2", &id_b)?;
    step!("vm2: rule {id_b:?} deleted");
    expect_blocked(lab, PORT_B, "allow-b was deleted")?;
    expect_open(lab, PORT_A, "allow-a is still there")?;
    // vm2's own connections are egress (no egress rules: accepted), their replies pass.
    expect_translated(lab, "vm2", IpAddr::V4(SERVER), VIP, None)?;
    Ok(())
}

/// Step 4: IPv6-only vm3 reaches the IPv4 server through 64:ff9b::/96 and its NAT.
fn check_nat64(lab: &mut Lab) -> Result<(), String> {
    let dst = IpAddr::V6(nat64(SERVER));
    expect_translated(lab, "vm3", dst, NAT64_IP, Some(HV1_PORTS))?;
    // Bulk data: the VM's kernel sends TCPv6 superframes (its TAP offers TSO); after NAT64
    // their offload request must point at the IPv4 packet's TCP header to be segmented.
    let t = Instant::now();
    let reply = tcp_bulk(&lab.ns("vm3"), SocketAddr::new(dst, TCP_PORT), BULK)?;
    step!(
        "vm3 -> TCP [{dst}]:{TCP_PORT}: {BULK} bytes in {:?}: {:?}",
        t.elapsed(),
        reply.trim()
    );
    Ok(())
}

/// Step 5: vm4 on hv2 shares NAT_IP; the internet sends everything for NAT_IP to hv1, which
/// relays the replies in hv2's port range to hv2's NAT underlay address.
fn check_neighbor_nat(lab: &mut Lab) -> Result<(), String> {
    let nat4 = lab.underlay("vm4.nat");
    let filter = format!("ip6 and dst host {nat4}");
    let mut caps = Vec::new();
    for i in 0..2 {
        let link = lab.pf(0, i);
        caps.push(Capture::start(
            &lab.router().ns,
            &link,
            &filter,
            lab.scratch.path(&format!("relay-{link}.pcap")),
        )?);
    }
    let r = expect_translated(lab, "vm4", IpAddr::V4(SERVER), NAT_IP, Some(HV2_PORTS));
    let mut relayed: Vec<Outer6> = Vec::new();
    for c in caps {
        relayed.extend(c.stop()?.iter().filter_map(|f| parse_outer6(f)));
    }
    let (tcp_port, udp_port) = r?;
    let listing = || {
        relayed
            .iter()
            .map(|o| format!("  {o}\n"))
            .collect::<String>()
    };
    for (proto, port) in [(6u8, tcp_port), (17, udp_port)] {
        let n = relayed
            .iter()
            .filter(|o| {
                o.next_header == 4
                    && matches!(o.inner, Inner::V4 { src, dst, proto: p, .. }
                                if src == SERVER && dst == NAT_IP && p == proto)
            })
            .count();
        ensure(n > 0, || {
            format!(
                "no reply to {NAT_IP}:{port} (proto {proto}) left hv1 towards hv2's NAT \
                 underlay {nat4}; hv1 sent it:\n{}",
                listing()
            )
        })?;
    }
    step!(
        "hv1 relayed {} packets for {NAT_IP}:{{{tcp_port},{udp_port}}} to {nat4}, e.g. {}",
        relayed.len(),
        relayed.first().map(|o| o.to_string()).unwrap_or_default()
    );
    // hv1's own share still comes back to hv1.
    expect_translated(lab, "vm1", IpAddr::V4(SERVER), NAT_IP, Some(HV1_PORTS))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Step 6: load balancer
// ---------------------------------------------------------------------------------------

const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const LB_PORT: u16 = 9000;
const LB_CONNECTIONS: usize = 100;

/// A TCP server in a namespace that keeps every connection open and answers each line with its
/// name (a thread per connection). Dropping it stops every thread within ~100 ms.
struct NamedEcho {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl NamedEcho {
    fn start(ns: &str, addr: SocketAddr, name: &'static str) -> Result<NamedEcho, String> {
        let listener = in_netns(ns, || TcpListener::bind(addr))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("tcp {addr}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let st = st.clone();
                        conns.push(thread::spawn(move || echo_name(s, name, &st)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Ok(NamedEcho {
            stop,
            handle: Some(handle),
        })
    }
}

fn echo_name(mut s: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
}

impl Drop for NamedEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends a line on an open connection and reads the one-line answer (bounded by the stream's
/// read timeout).
fn ask(s: &mut TcpStream) -> Result<String, String> {
    s.write_all(b"who\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\n") {
        match s.read(&mut byte) {
            Ok(0) => return Err("closed".into()),
            Ok(_) => answer.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&answer).trim().to_string())
}

/// A connection from the internet to the balancer, and which target answered it.
fn lb_connect(rns: &str, timeout: Duration) -> Result<(TcpStream, String), String> {
    let dst = sa(LB_IP, LB_PORT);
    let mut s = in_netns(rns, || TcpStream::connect_timeout(&dst, IO_TIMEOUT))
        .map_err(|e| format!("TCP connect to {dst}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("{dst}: {e}"))?;
    s.set_write_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("{dst}: {e}"))?;
    let who = ask(&mut s)?;
    Ok((s, who))
}

fn check_load_balancer(lab: &mut Lab) -> Result<(), String> {
    let lb_ul = lab.hvs[0]
        .api
        .create_load_balancer("lb1", VNI, LB_IP, LB_PORT)?;
    let vm1_ul = lab.hvs[0].api.create_lb_prefix("vm1", LB_IP)?;
    let vm4_ul = lab.hvs[1].api.create_lb_prefix("vm4", LB_IP)?;
    lab.hvs[0].api.create_lb_target("lb1", vm1_ul)?;
    lab.hvs[0].api.create_lb_target("lb1", vm4_ul)?;
    step!(
        "lb1 {LB_IP}:{LB_PORT} (underlay {lb_ul}): targets vm1 {vm1_ul} (hv1), vm4 {vm4_ul} (hv2)"
    );
    route_public(lab, lb_ul, LB_IP)?;
    let mut servers = Vec::new();
    for vm in ["vm1", "vm4"] {
        // The balancer's address is the VM's (its target prefix), as a load-balanced VM has it.
        lab.vm(vm)
            .ns
            .exec(&["ip", "addr", "add", &format!("{LB_IP}/32"), "dev", "lo"])?
            .check()?;
        servers.push(NamedEcho::start(&lab.ns(vm), sa(LB_IP, LB_PORT), vm)?);
    }
    let rns = lab.router_ns();
    let first = wait_until(
        "a first connection to the load balancer",
        Duration::from_secs(6),
        || lb_connect(&rns, IO_TIMEOUT),
    )?;
    let mut conns = vec![first];
    while conns.len() < LB_CONNECTIONS {
        conns.push(lb_connect(&rns, IO_TIMEOUT)?);
    }
    let on = |who: &str, conns: &[(TcpStream, String)]| conns.iter().filter(|c| c.1 == who).count();
    let (n1, n4) = (on("vm1", &conns), on("vm4", &conns));
    step!("{LB_CONNECTIONS} connections: vm1 {n1}, vm4 {n4}");
    ensure(n1 + n4 == LB_CONNECTIONS && n1 >= 20 && n4 >= 20, || {
        format!("connections not spread over both targets: vm1 {n1}, vm4 {n4}")
    })?;

    lab.hvs[0].api.delete_lb_target("lb1", vm4_ul)?;
    step!("target vm4 removed");
    let (mut kept, mut reset) = (0, 0);
    for (s, who) in &mut conns {
        if who == "vm1" {
            let again = ask(s)?;
            ensure(again == "vm1", || {
                format!("a vm1 connection answered {again:?}")
            })?;
            kept += 1;
        } else {
            // Sent to vm1 now, which knows no such connection and resets it.
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let r = ask(s);
            ensure(r.is_err(), || {
                format!("a vm4 connection still answered {r:?}")
            })?;
            reset += 1;
        }
    }
    step!("after the removal: {kept} vm1 connections kept, {reset} vm4 connections moved (reset)");
    for _ in 0..20 {
        let (_, who) = lb_connect(&rns, IO_TIMEOUT)?;
        ensure(who == "vm1", || format!("a new connection went to {who}"))?;
    }
    step!("20 new connections: all vm1");
    drop(conns);
    drop(servers);
    Ok(())
}
