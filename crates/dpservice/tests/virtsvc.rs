//! System test of virtual services (`--udp-virtsvc`, `--tcp-virtsvc`): an IPv4-only VM reaches
//! a UDP and a TCP server that listen on IPv6 addresses in the router namespace, through
//! virtual IPv4 endpoints; the servers see the daemon's per-service underlay address and a
//! mapped port, the VM sees the virtual endpoint answer.
//!
//! ```text
//!  vm1 10.100.1.1 (DHCP: 169.254.1.0/24 via the gateway)
//!   │ vf0        UDP 169.254.1.53:53  -> [fc00:53::1]:5353
//!  ┌┴──────────┐ TCP 203.0.113.80:80  -> [fc00:53::2]:8080
//!  │ dpservice │ --ipv6 fc00:1::1: the services' addresses fc00:1::d0ff:4000:0:0 and
//!  └─pf0───pf1─┘ fc00:1::d0ff:4000:100:0 (dpservice's scheme), answered by neighbor discovery
//!  ┌─┴──────┴─ router namespace ─┐
//!  │ fc00:1::/64 on-link over both uplinks; fc00:53::1, fc00:53::2 on lo (the servers) │
//!  └─────────────────────────────┘
//! ```
//!
//! Needs root, `ip` and `udhcpc` (or busybox); otherwise SKIPPED (unless
//! `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`). Names are unique per run, every wait is bounded, and
//! guards remove the daemon, namespaces, threads and files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::api::{Api, IfaceSpec};
use support::daemon::{hypervisor_args, Daemon};
use support::underlay::{Router, ROUTER_LL};
use support::vm::Vm;
use support::{ensure, free_port, in_netns, sa, udp_exchange, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ip", "udhcpc", "ipv6"];

const HOST: &str = "fc00:1::1";
const VNI: u32 = 100;
const VM_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 1);
const UDP_VIRTUAL: (Ipv4Addr, u16) = (Ipv4Addr::new(169, 254, 1, 53), 53);
const UDP_SERVICE: (Ipv6Addr, u16) = (Ipv6Addr::new(0xfc00, 0x53, 0, 0, 0, 0, 0, 1), 5353);
const TCP_VIRTUAL: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 80), 80);
const TCP_SERVICE: (Ipv6Addr, u16) = (Ipv6Addr::new(0xfc00, 0x53, 0, 0, 0, 0, 0, 2), 8080);
/// dpservice's underlay addresses of service 0 (UDP, given first) and 1 under `--ipv6`.
const UDP_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0xd0ff, 0x4000, 0, 0);
const TCP_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0xd0ff, 0x4000, 0x100, 0);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[virtsvc] {}", format!($($arg)*)) };
}

/// A server thread in a namespace that answers every datagram or connection with
/// `peer=<addr> bytes=<n>` and records the peers. Dropping it stops the thread (~50 ms).
struct Server {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    fn spawn(body: impl FnOnce(&AtomicBool, &Mutex<Vec<SocketAddr>>) + Send + 'static) -> Server {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p2, s2) = (peers.clone(), stop.clone());
        let handle = thread::spawn(move || body(&s2, &p2));
        Server {
            peers,
            stop,
            handle: Some(handle),
        }
    }

    fn udp(ns: &str, addr: SocketAddr) -> Result<Server, String> {
        let sock = in_netns(ns, || UdpSocket::bind(addr))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        Ok(Server::spawn(move |stop, peers| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    peers.lock().expect("not poisoned").push(peer);
                    let _ = sock.send_to(format!("peer={peer} bytes={n}\n").as_bytes(), peer);
                }
            }
        }))
    }

    fn tcp(ns: &str, addr: SocketAddr) -> Result<Server, String> {
        let listener = in_netns(ns, || TcpListener::bind(addr))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(Server::spawn(move |stop, peers| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        peers.lock().expect("not poisoned").push(peer);
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                        let _ = s.set_write_timeout(Some(IO_TIMEOUT));
                        // Everything up to the first newline, counted.
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
                        let _ = s.write_all(format!("peer={peer} bytes={total}\n").as_bytes());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        }))
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().expect("not poisoned").clone()
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

/// The peer in a server's answer.
fn answered_peer(reply: &str) -> Result<SocketAddr, String> {
    reply
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("not a server answer: {reply:?}"))
}

/// A TCP connection from `ns` to `dst` sending `len` bytes and a newline; the answer must
/// count them all (bulk data makes the VM's kernel send TCP superframes).
fn tcp_exchange(ns: &str, dst: SocketAddr, len: usize) -> Result<String, String> {
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
    ensure(reply.split_whitespace().any(|w| w == want), || {
        format!(
            "TCP {dst}: sent {} bytes, the server answered {reply:?}",
            len + 1
        )
    })?;
    Ok(reply)
}

struct Lab {
    // Drop order: servers, the VM's clients, the daemon, the VM namespace, the router.
    servers: Vec<Server>,
    vm: Option<Vm>,
    daemon: Option<Daemon>,
    router: Option<Router>,
    scratch: Scratch,
}

impl Lab {
    fn report(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.daemon {
            s.push_str(&d.report());
        }
        if let Some(r) = &self.router {
            s.push_str(&r.report());
        }
        if let Some(vm) = &self.vm {
            s.push_str(&vm.report());
        }
        for (i, srv) in self.servers.iter().enumerate() {
            s.push_str(&format!("server {i} saw {:?}\n", srv.peers()));
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.servers.clear();
        if let Some(vm) = &mut self.vm {
            vm.clients.clear();
        }
        self.daemon.take();
        self.vm.take();
        self.router.take();
        let _ = &self.scratch;
    }
}

#[test]
fn a_vm_reaches_ipv6_udp_and_tcp_services_through_virtual_ipv4_endpoints() {
    skip_unless_ready!(
        "a_vm_reaches_ipv6_udp_and_tcp_services_through_virtual_ipv4_endpoints",
        TOOLS
    );
    run_lab(1);
}

/// The same with two workers: each connection lives on the worker that owns its VM endpoint,
/// which maps only ports of its own; replies are handed to it by their port.
#[test]
fn virtual_services_work_with_two_workers() {
    skip_unless_ready!("virtual_services_work_with_two_workers", TOOLS);
    run_lab(2);
}

fn run_lab(workers: usize) {
    let t0 = Instant::now();
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let mut lab = Lab {
        servers: Vec::new(),
        vm: None,
        daemon: None,
        router: None,
        scratch,
    };
    if let Err(e) = scenario(&mut lab, &names, workers) {
        let report = lab.report();
        panic!("{e}\n\n{report}");
    }
    step!("RESULT {workers} worker(s): passed in {:?}", t0.elapsed());
}

/// The mapped port the service saw is the one expected: exactly dpservice's with one worker;
/// with several, a port of the range not seen before.
fn check_port(
    what: &str,
    peer: SocketAddr,
    underlay: Ipv6Addr,
    want: u16,
    workers: usize,
    seen: &mut Vec<u16>,
) -> Result<(), String> {
    let ok = peer.ip() == IpAddr::V6(underlay)
        && if workers == 1 {
            peer.port() == want
        } else {
            peer.port() >= 1024 && !seen.contains(&peer.port())
        };
    seen.push(peer.port());
    ensure(ok, || {
        format!("{what}: the service saw {peer}, want [{underlay}]:{want} (workers {workers})")
    })
}

fn scenario(lab: &mut Lab, names: &Names, workers: usize) -> Result<(), String> {
    let port = free_port();
    let udp = format!(
        "{},{},{},{}",
        UDP_VIRTUAL.0, UDP_VIRTUAL.1, UDP_SERVICE.0, UDP_SERVICE.1
    );
    let tcp = format!(
        "{},{},{},{}",
        TCP_VIRTUAL.0, TCP_VIRTUAL.1, TCP_SERVICE.0, TCP_SERVICE.1
    );
    let workers_arg = workers.to_string();
    let extra = [
        "--udp-virtsvc",
        &udp,
        "--tcp-virtsvc",
        &tcp,
        "--workers",
        &workers_arg,
    ];
    let args = hypervisor_args(names, 1, port, HOST, ROUTER_LL, &extra);
    let daemon = Daemon::start(&args, port, names.taps(1), lab.scratch.path("hv.log"))?;
    step!("daemon up: {}", daemon.cmdline);
    lab.daemon = Some(daemon);

    let mut router = Router::new(&names.netns("inet"))?;
    router.attach(&names.pf0())?;
    router.attach(&names.pf1())?;
    router.route_multipath("fc00:1::/64", &[&names.pf0(), &names.pf1()])?;
    router.sh(&format!(
        "set -e; ip -6 addr add {}/128 dev lo; ip -6 addr add {}/128 dev lo",
        UDP_SERVICE.0, TCP_SERVICE.0
    ))?;
    lab.router = Some(router);
    let router = lab.router.as_ref().expect("set");
    wait_until(
        &format!("the router to ping {HOST}"),
        Duration::from_secs(20),
        || router.ping(HOST)?.check().map(|_| ()),
    )?;
    let rns = router.ns.name.clone();
    lab.servers
        .push(Server::udp(&rns, sa(UDP_SERVICE.0, UDP_SERVICE.1))?);
    lab.servers
        .push(Server::tcp(&rns, sa(TCP_SERVICE.0, TCP_SERVICE.1))?);

    let mut api = Api::connect(port)?;
    api.init()?;
    api.create_interface(&IfaceSpec {
        id: "vm1",
        vni: VNI,
        ipv4: VM_IP,
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1),
        device: &names.vf(0),
        hostname: None,
    })?;
    let vm = Vm::new("vm1", &names.netns("vm1"), &names.vf(0))?;
    let opts = vm.udhcpc(&lab.scratch)?;
    ensure(opts.get("ip") == Some(&VM_IP.to_string()), || {
        format!("udhcpc got {opts:?}")
    })?;
    let routes = vm.ipv4_routes()?;
    ensure(routes.contains("169.254.1.0/24 via 169.254.0.1"), || {
        format!("DHCP should route 169.254.1.0/24 via the gateway: {routes}")
    })?;
    step!(
        "vm1: DHCP {VM_IP}, staticroutes {:?}",
        opts.get("staticroutes")
    );
    let ns = vm.ns.name.clone();
    lab.vm = Some(vm);

    // UDP: the answer comes from the virtual endpoint; the server saw our underlay address of
    // the service and the first mapped port, then the next for a second socket.
    let (mut udp_ports, mut tcp_ports) = (Vec::new(), Vec::new());
    for (i, want_port) in [(0, 1025u16), (1, 1026)] {
        let reply = udp_exchange(&ns, sa(UDP_VIRTUAL.0, UDP_VIRTUAL.1))?;
        let peer = answered_peer(&reply)?;
        let what = format!("UDP exchange {i}");
        check_port(
            &what,
            peer,
            UDP_UNDERLAY,
            want_port,
            workers,
            &mut udp_ports,
        )?;
        step!(
            "UDP {i}: {} answered, service saw {peer}",
            sa(UDP_VIRTUAL.0, UDP_VIRTUAL.1)
        );
    }

    // TCP: a short exchange, then 1 MB (superframes from the VM's kernel, segmented for the
    // uplink), each a new connection with the next port.
    for (i, len, want_port) in [(0, 5usize, 1025u16), (1, 1 << 20, 1026)] {
        let reply = tcp_exchange(&ns, sa(TCP_VIRTUAL.0, TCP_VIRTUAL.1), len)?;
        let peer = answered_peer(&reply)?;
        let what = format!("TCP exchange {i}");
        check_port(
            &what,
            peer,
            TCP_UNDERLAY,
            want_port,
            workers,
            &mut tcp_ports,
        )?;
        step!(
            "TCP {i}: {len} bytes through {}, service saw {peer}",
            sa(TCP_VIRTUAL.0, TCP_VIRTUAL.1)
        );
    }
    Ok(())
}
