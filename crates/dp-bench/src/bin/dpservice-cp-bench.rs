//! `dpservice-cp-bench`: control-plane speed through gRPC while a worker forwards.
//!
//! One process, everything on loopback:
//!
//! * a [`ControlPlane`] with `--interfaces` VF devices (plus pf0/pf1) serves gRPC on
//!   `127.0.0.1:0`, `ControlPlane::serve` called from a one-thread runtime as the daemon does
//!   (it runs the server on a current-thread runtime of its own);
//! * a worker thread runs the daemon's worker loop (`Worker::poll_once`, plus the 100 ms link
//!   poll and graph tick of `Worker::run`) over in-memory replay ports, forwarding a steady
//!   VM→VM UDP flow between the first two interfaces; the loop here only adds a timestamp per
//!   round that forwarded packets, to find the gaps between forwarded batches;
//! * a client (its own one-thread runtime, as if it were another process) calls Initialize,
//!   creates the two forwarding interfaces, measures forwarding alone for a while (`baseline`),
//!   then creates the other interfaces (`interfaces`) and `--routes` routes spread over
//!   `--vnis` VNIs (`routes`), `--in-flight` requests at a time, and finally checks the result
//!   (ListRoutes per VNI, lookups in the published snapshot).
//!
//! By default the worker is pinned alone to the last allowed CPU and everything else to the
//! others (`--no-pin` to let the scheduler place them), so a stall measures the control plane's
//! effect on the worker rather than two threads time-sharing one CPU.
//!
//! Machine-readable lines:
//! `CPBENCH phase=<interfaces|routes|total> ops=<n> secs=<x> ops_per_s=<x> rpc_p50_us=<x> rpc_p99_us=<x>`
//! and, per phase, `CPBENCH forwarding phase=<p> worst_gap_us=<x> p99_gap_us=<x> ...
//! worst_cpu_gap_us=<x> ... batches=<n> mpps=<x> mpps_per_cpu_s=<x>`, with the summary line
//! `CPBENCH forwarding worst_gap_us=<x> p99_gap_us=<x> batches=<n> ...` (interfaces and routes
//! phases together), `CPBENCH table_copies=<n>`, `CPBENCH cpu phase=routes server_us_per_op=<x>
//! client_us_per_op=<x>` (CPU time of the server's and the client's threads per request),
//! `CPBENCH publishes interfaces=<n> routes=<n>` (snapshots published per phase: concurrent
//! requests share a publish) and `CPBENCH check ... ok=<true|false>`. A CPU gap is the worker thread's
//! CPU time over a gap: a long wall gap with a short CPU gap is the thread being descheduled.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dp_bench::thread_cpu_ns;
use dp_control::{Config, ControlPlane, UnderlayMode};
use dp_packet::MacAddr;
use dp_pipeline::{
    BufferPool, DpConfig, Graph, GraphCounters, PacketBuf, PortEntry, PortKind, PortTable,
    BATCH_SIZE, DEFAULT_DATA_ROOM, TICK_INTERVAL_NS,
};
use dp_ports::{MemoryPort, Port};
use dp_proto::v1;
use dp_proto::{ip_to_proto, DpdKironcoreClient};
use dp_tables::{PortId, Publisher, RouteTarget, Snapshot, Vni};
use dpservice::worker::{clock_ns, Worker};
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(
    name = "dpservice-cp-bench",
    about = "Control-plane (gRPC) speed while a worker forwards on memory ports"
)]
struct Args {
    /// A short run (100 interfaces, 10k routes, 0.2 s baseline) for smoke tests.
    #[arg(long)]
    quick: bool,
    /// Interfaces to create (default 1000, 100 with --quick); at least 2.
    #[arg(long)]
    interfaces: Option<usize>,
    /// Routes to create (default 100000, 10000 with --quick).
    #[arg(long)]
    routes: Option<usize>,
    /// VNIs the interfaces and routes are spread over.
    #[arg(long, default_value_t = 10)]
    vnis: u32,
    /// Requests in flight at a time (one tokio task each).
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// gRPC connections (HTTP/2 channels) the in-flight tasks share round-robin.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Seconds of forwarding alone before the load (default 1, 0.2 with --quick).
    #[arg(long)]
    baseline_secs: Option<f64>,
    /// Do not pin threads (worker alone on the last CPU, the rest on the others).
    #[arg(long)]
    no_pin: bool,
    /// Log at info level as the daemon does (to a sink: the formatting cost, not the I/O).
    #[arg(long)]
    log: bool,
    /// Also time the same operations on the state directly (no gRPC, no worker) afterwards.
    #[arg(long)]
    direct: bool,
    /// Generate underlay addresses as dpservice's static-underlay test builds do (sequential)
    /// instead of the daemon's default (a random byte per address).
    #[arg(long)]
    static_underlay: bool,
    /// No worker: the control plane alone (to profile it; no forwarding figures).
    #[arg(long)]
    no_forward: bool,
}

const VM1_MAC: MacAddr = MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x01]);
const VM2_MAC: MacAddr = MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x02]);
/// The interfaces' VF ports: interface `i` is `dtapvf_<i>` on port `FIRST_VF + i`.
const FIRST_VF: PortId = 2;
const VM1_PORT: PortId = FIRST_VF;
const VM2_PORT: PortId = FIRST_VF + 1;
const FIRST_VNI: Vni = 100;

/// Our MAC on port `p` (the gateway MAC the VMs send to).
fn own_mac(p: PortId) -> MacAddr {
    let [hi, lo] = p.to_be_bytes();
    MacAddr([0x02, 0, 0, 0, hi, lo])
}

// ----- What the client creates --------------------------------------------------------------

fn iface_vni(i: usize, vnis: u32) -> Vni {
    // The two forwarding VMs share the first VNI; the others go round-robin.
    if i < 2 {
        FIRST_VNI
    } else {
        FIRST_VNI + (i as u32) % vnis
    }
}

fn iface_ipv4(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0001u32 + i as u32) // 10.0.0.1, 10.0.0.2, ...
}

fn iface_ipv6(i: usize) -> Ipv6Addr {
    Ipv6Addr::from(0xfd00_0000_0000_0000_0000_0000_0000_0001u128 + i as u128)
}

/// Route `j`: a distinct /24 from 11.0.0.0 on, in VNI `FIRST_VNI + j % vnis`, to a next hop in
/// fc00:2::/64 (same VNI on the other side).
fn route(j: usize, vnis: u32) -> (Vni, Ipv4Addr, u8, Ipv6Addr) {
    let vni = FIRST_VNI + (j as u32) % vnis;
    let net = Ipv4Addr::from(0x0B00_0000u32.wrapping_add((j as u32) << 8));
    let nexthop =
        Ipv6Addr::from(0xfc00_0002_0000_0000_0000_0000_0000_0001u128 + (j as u128 % 4096));
    (vni, net, 24, nexthop)
}

fn iface_req(i: usize, vnis: u32) -> v1::CreateInterfaceRequest {
    v1::CreateInterfaceRequest {
        interface_id: format!("vm-{i}").into_bytes(),
        vni: iface_vni(i, vnis),
        ipv4_config: Some(v1::IpConfig {
            primary_address: iface_ipv4(i).to_string().into_bytes(),
        }),
        ipv6_config: Some(v1::IpConfig {
            primary_address: iface_ipv6(i).to_string().into_bytes(),
        }),
        device_name: format!("dtapvf_{i}"),
        ..Default::default()
    }
}

fn route_req(j: usize, vnis: u32) -> v1::CreateRouteRequest {
    let (vni, net, len, nexthop) = route(j, vnis);
    v1::CreateRouteRequest {
        vni,
        route: Some(v1::Route {
            prefix: Some(dp_proto::prefix_to_proto(IpAddr::V4(net), len)),
            nexthop_vni: vni,
            nexthop_address: Some(ip_to_proto(IpAddr::V6(nexthop))),
            weight: 0,
        }),
    }
}

// ----- Histogram ----------------------------------------------------------------------------

/// A log-linear histogram of nanosecond values (16 steps per power of two: ≤ 6.25 % error).
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Histogram {
    const SUB: u32 = 4;

    fn new() -> Self {
        Histogram {
            buckets: vec![0; 64 << Self::SUB],
            count: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < (1 << Self::SUB) {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let sub = (v >> (e - Self::SUB)) & ((1 << Self::SUB) - 1);
        (((e - Self::SUB + 1) << Self::SUB) as u64 + sub) as usize
    }

    /// The largest value of bucket `i`.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < (1 << Self::SUB) {
            return i;
        }
        let e = (i >> Self::SUB) + u64::from(Self::SUB) - 1;
        let sub = i & ((1 << Self::SUB) - 1);
        (((1 << Self::SUB) + sub + 1) << (e - u64::from(Self::SUB))) - 1
    }

    fn record(&mut self, v: u64) {
        if let Some(b) = self.buckets.get_mut(Self::index(v)) {
            *b += 1;
        }
        self.count += 1;
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The value below which a fraction `q` of the records fall (bucket upper bound).
    fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }

    fn above(&self, v: u64) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .filter(|&(i, _)| Self::upper(i) > v)
            .map(|(_, &n)| n)
            .sum()
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1e3
}

// ----- Forwarding worker ---------------------------------------------------------------------

/// Phases of the run, as the worker attributes its gaps and packets.
const PHASES: [&str; 4] = ["baseline", "interfaces", "routes", "after"];

/// What the worker saw during one phase.
struct PhaseStats {
    /// Wall-clock time between forwarded batches.
    gaps: Histogram,
    /// The worker thread's CPU time between forwarded batches: a wall gap with a small CPU gap
    /// is the thread not running (preempted), not the thread doing extra work.
    cpu_gaps: Histogram,
    cpu_ns: u64,
    packets: u64,
    first_ns: u64,
    last_ns: u64,
}

impl PhaseStats {
    fn new() -> Self {
        PhaseStats {
            gaps: Histogram::new(),
            cpu_gaps: Histogram::new(),
            cpu_ns: 0,
            packets: 0,
            first_ns: 0,
            last_ns: 0,
        }
    }

    /// Packets per second of the worker thread's CPU time.
    fn mpps_cpu(&self) -> f64 {
        if self.cpu_ns == 0 {
            0.0
        } else {
            self.packets as f64 * 1e3 / self.cpu_ns as f64
        }
    }

    fn mpps(&self) -> f64 {
        let ns = self.last_ns.saturating_sub(self.first_ns);
        if ns == 0 {
            0.0
        } else {
            self.packets as f64 * 1e3 / ns as f64
        }
    }
}

/// A UDP frame VM1 → VM2 (64 bytes, checksums filled).
fn udp_frame() -> Vec<u8> {
    dp_bench::udp_frame(
        own_mac(VM1_PORT),
        VM1_MAC,
        iface_ipv4(0),
        iface_ipv4(1),
        1000,
        64,
    )
}

/// A worker over `ports` memory ports (pf0, pf1, then the VFs); VM1's port replays the flow.
fn build_worker(
    ports: usize,
    control: &ControlPlane,
    counters: &Arc<GraphCounters>,
    stop: &Arc<AtomicBool>,
) -> Worker {
    let mut list: Vec<Box<dyn Port>> = Vec::with_capacity(ports);
    let mut entries = Vec::with_capacity(ports);
    for p in 0..ports {
        let id = PortId::try_from(p).unwrap_or(PortId::MAX);
        let kind = if id < FIRST_VF {
            PortKind::Uplink
        } else {
            PortKind::Vf
        };
        let e = PortEntry::new(kind, format!("p{p}"), own_mac(id));
        let peer = if id == VM2_PORT { VM2_MAC } else { VM1_MAC };
        if kind == PortKind::Vf {
            e.learn_peer_mac(peer);
        }
        entries.push(e);
        let source = if id == VM1_PORT {
            vec![udp_frame()]
        } else {
            Vec::new()
        };
        list.push(Box::new(MemoryPort::replay(format!("p{p}"), peer, source)));
    }
    Worker {
        graph: Graph::new(ports, Arc::clone(counters)),
        pool: BufferPool::new(4 * BATCH_SIZE, DEFAULT_DATA_ROOM),
        tables: control.reader(),
        port_table: Arc::new(PortTable::new(entries)),
        config: Arc::new(DpConfig {
            underlay_ipv6: "fc00:1::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
            ..DpConfig::default()
        }),
        stop: Arc::clone(stop),
        ports: list,
        worker: dp_pipeline::WorkerCtx::single(),
        wakeup: None,
        commands: None,
    }
}

/// `Worker::run`'s loop without the idle sleep (the replay port always has frames), timing the
/// gaps between rounds that forwarded packets.
fn forward(
    mut worker: Worker,
    counters: &GraphCounters,
    phase: &AtomicUsize,
    stop: &AtomicBool,
) -> Vec<PhaseStats> {
    let mut stats: Vec<PhaseStats> = PHASES.iter().map(|_| PhaseStats::new()).collect();
    let mut rx: Vec<PacketBuf> = Vec::with_capacity(BATCH_SIZE);
    let mut vf_cursor = 0;
    let mut next_tick = 0u64;
    let mut last_forward = 0u64;
    let mut last_cpu = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now_ns = clock_ns();
        if now_ns >= next_tick {
            worker.poll_links(&mut vf_cursor);
            worker.tick(now_ns);
            next_tick = now_ns.saturating_add(TICK_INTERVAL_NS);
        }
        let before = counters.tx_packets.load(Ordering::Relaxed);
        worker.poll_once(&mut rx, now_ns);
        let sent = counters.tx_packets.load(Ordering::Relaxed) - before;
        if sent == 0 {
            continue;
        }
        let t = clock_ns();
        let cpu = thread_cpu_ns();
        let p = phase.load(Ordering::Relaxed).min(PHASES.len() - 1);
        if let Some(s) = stats.get_mut(p) {
            if s.first_ns == 0 {
                s.first_ns = t;
            } else {
                s.packets += sent;
                s.cpu_ns += cpu - last_cpu;
            }
            if last_forward != 0 {
                s.gaps.record(t - last_forward);
                s.cpu_gaps.record(cpu - last_cpu);
            }
            s.last_ns = t;
        }
        last_forward = t;
        last_cpu = cpu;
    }
    stats
}

/// CPU time (user + system, µs; clock-tick resolution) of this process's threads whose name
/// starts with `prefix`: what a side of the gRPC exchange costs, whatever else runs on its CPU.
fn threads_cpu_us(prefix: &str) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in dir.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse().ok())
            .collect();
        total += fields.iter().sum::<u64>();
    }
    total * 1_000_000 / ticks
}

// ----- CPU pinning ---------------------------------------------------------------------------

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Pins the calling thread to `cpus` (nothing when empty).
fn pin_current_thread(cpus: &[usize]) {
    if cpus.is_empty() {
        return;
    }
    // SAFETY: as above; `set` outlives the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("warning: cannot pin a thread to CPUs {cpus:?}");
        }
    }
}

fn runtime(name: &str, cpus: Vec<usize>) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .on_thread_start(move || pin_current_thread(&cpus))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the {name} runtime: {e}"))
}

// ----- Client --------------------------------------------------------------------------------

type Client = DpdKironcoreClient<Channel>;

struct Load {
    ops: usize,
    secs: f64,
    rpc: Histogram,
    errors: usize,
}

/// Runs `count` requests made by `make(index)` through `send`, `in_flight` at a time over the
/// clients round-robin.
async fn load<Req, F, Fut>(
    clients: &[Client],
    in_flight: usize,
    range: std::ops::Range<usize>,
    make: fn(usize, u32) -> Req,
    vnis: u32,
    send: F,
) -> Load
where
    Req: Send + 'static,
    F: Fn(Client, Req) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u32, tonic::Status>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(range.start));
    let end = range.end;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight.max(1) {
        let client = clients[t % clients.len()].clone();
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut rpc = Histogram::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let req = make(i, vnis);
                let t0 = Instant::now();
                match send(client.clone(), req).await {
                    Ok(0) => {}
                    Ok(code) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("request {i}: dpservice error {code}");
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("request {i}: {e}");
                        }
                    }
                }
                rpc.record(t0.elapsed().as_nanos() as u64);
            }
            (rpc, errors)
        }));
    }
    let mut rpc = Histogram::new();
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok((h, e)) => {
                rpc.merge(&h);
                errors += e;
            }
            Err(e) => {
                eprintln!("client task failed: {e}");
                errors += 1;
            }
        }
    }
    Load {
        ops: range.len(),
        secs: start.elapsed().as_secs_f64(),
        rpc,
        errors,
    }
}

async fn create_interface(
    mut c: Client,
    req: v1::CreateInterfaceRequest,
) -> Result<u32, tonic::Status> {
    let r = c.create_interface(req).await?.into_inner();
    Ok(r.status.map_or(u32::MAX, |s| s.code))
}

async fn create_route(mut c: Client, req: v1::CreateRouteRequest) -> Result<u32, tonic::Status> {
    let r = c.create_route(req).await?.into_inner();
    Ok(r.status.map_or(u32::MAX, |s| s.code))
}

fn print_load(phase: &str, l: &Load) {
    println!(
        "CPBENCH phase={phase} ops={} secs={:.3} ops_per_s={:.0} rpc_p50_us={:.1} rpc_p99_us={:.1} errors={}",
        l.ops,
        l.secs,
        l.ops as f64 / l.secs,
        us(l.rpc.quantile(0.5)),
        us(l.rpc.quantile(0.99)),
        l.errors
    );
}

/// The client side of the run; returns whether every check passed.
#[allow(clippy::too_many_arguments)]
async fn drive(
    addr: SocketAddr,
    args: &Args,
    interfaces: usize,
    routes: usize,
    baseline: Duration,
    phase: &AtomicUsize,
    control: &ControlPlane,
) -> Result<bool, String> {
    let url = format!("http://{addr}");
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        clients.push(DpdKironcoreClient::new(channel));
    }
    let mut c = clients[0].clone();
    c.initialize(v1::InitializeRequest {})
        .await
        .map_err(|e| format!("Initialize: {e}"))?;
    // The forwarding pair first.
    for i in 0..2 {
        let code = create_interface(c.clone(), iface_req(i, args.vnis))
            .await
            .map_err(|e| format!("CreateInterface: {e}"))?;
        if code != 0 {
            return Err(format!("CreateInterface vm-{i}: dpservice error {code}"));
        }
    }
    tokio::time::sleep(baseline).await;

    phase.store(1, Ordering::Relaxed);
    let generation_before = control.snapshot().generation;
    let ifaces = load(
        &clients,
        args.in_flight,
        2..interfaces,
        iface_req,
        args.vnis,
        create_interface,
    )
    .await;
    phase.store(2, Ordering::Relaxed);
    let copies_before = control.with_state(|s| s.table_copies());
    let generation_routes = control.snapshot().generation;
    let cpu_before = (threads_cpu_us("dp-grpc"), threads_cpu_us("cp-client"));
    let routes_load = load(
        &clients,
        args.in_flight,
        0..routes,
        route_req,
        args.vnis,
        create_route,
    )
    .await;
    phase.store(3, Ordering::Relaxed);
    let copies = control.with_state(|s| s.table_copies()) - copies_before;
    let generation_after = control.snapshot().generation;
    let cpu_after = (threads_cpu_us("dp-grpc"), threads_cpu_us("cp-client"));

    print_load("interfaces", &ifaces);
    print_load("routes", &routes_load);
    let mut total = Histogram::new();
    total.merge(&ifaces.rpc);
    total.merge(&routes_load.rpc);
    print_load(
        "total",
        &Load {
            ops: ifaces.ops + routes_load.ops,
            secs: ifaces.secs + routes_load.secs,
            rpc: total,
            errors: ifaces.errors + routes_load.errors,
        },
    );
    println!("CPBENCH table_copies={copies} (whole VNI tables cloned during the routes phase)");
    let per_op = |after: u64, before: u64| (after - before) as f64 / routes.max(1) as f64;
    println!(
        "CPBENCH cpu phase=routes server_us_per_op={:.1} client_us_per_op={:.1} (thread CPU time per request)",
        per_op(cpu_after.0, cpu_before.0),
        per_op(cpu_after.1, cpu_before.1)
    );
    // Concurrent requests' changes are published together: fewer snapshots than changes.
    println!(
        "CPBENCH publishes interfaces={} routes={} (snapshots published per phase)",
        generation_routes - generation_before,
        generation_after - generation_routes
    );

    // Correctness: every route listed, and the published snapshot routes as asked.
    let mut listed = 0usize;
    for v in 0..args.vnis {
        let r = c
            .list_routes(v1::ListRoutesRequest { vni: FIRST_VNI + v })
            .await
            .map_err(|e| format!("ListRoutes: {e}"))?
            .into_inner();
        listed += r.routes.len();
    }
    let snap: Arc<Snapshot> = control.snapshot();
    let mut lookups_ok = 0usize;
    let samples: Vec<usize> = (0..64)
        .map(|k| k * routes / 64)
        .filter(|&j| j < routes)
        .collect();
    for &j in &samples {
        let (vni, net, _, nexthop) = route(j, args.vnis);
        let host = Ipv4Addr::from(u32::from(net) | 0x2a);
        let want = RouteTarget::Remote {
            vni,
            underlay: nexthop,
            public: false,
        };
        if snap.vni(vni).and_then(|t| t.lookup_v4(host)) == Some(&want) {
            lookups_ok += 1;
        }
    }
    let ifaces_published = snap.ifaces_by_port.iter().flatten().count();
    let vm2_ok = snap.vni(FIRST_VNI).and_then(|t| t.lookup_v4(iface_ipv4(1)))
        == Some(&RouteTarget::Local { port: VM2_PORT });
    let ok = listed == routes
        && lookups_ok == samples.len()
        && ifaces_published == interfaces
        && vm2_ok
        && ifaces.errors + routes_load.errors == 0;
    println!(
        "CPBENCH check listed_routes={listed}/{routes} lookups={lookups_ok}/{} interfaces={ifaces_published}/{interfaces} ok={ok}",
        samples.len()
    );
    Ok(ok)
}

// ----- Direct (no gRPC) ---------------------------------------------------------------------

/// The same operations on the state directly, single-threaded, without a worker: the ceiling
/// the gRPC path could reach.
fn direct(interfaces: usize, routes: usize, vnis: u32, static_underlay: bool) {
    let control = new_control(interfaces, static_underlay);
    control.with_state(|s| s.initialize());
    let start = Instant::now();
    for i in 0..interfaces {
        let spec = dp_control::state::InterfaceSpec {
            id: format!("vm-{i}"),
            vni: iface_vni(i, vnis),
            ipv4: iface_ipv4(i),
            ipv6: iface_ipv6(i),
            device: format!("dtapvf_{i}"),
            pxe: None,
            hostname: None,
            preferred_underlay: None,
            meter: Default::default(),
        };
        if let Err(e) = control.with_state(|s| s.create_interface(spec)) {
            eprintln!("direct CreateInterface {i}: {e:?}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "CPBENCH direct phase=interfaces ops={interfaces} secs={secs:.3} ops_per_s={:.0}",
        interfaces as f64 / secs
    );
    let start = Instant::now();
    for j in 0..routes {
        let (vni, net, len, nexthop) = route(j, vnis);
        if let Err(e) = control
            .with_state(|s| s.create_route(vni, IpAddr::V4(net), len, vni, IpAddr::V6(nexthop)))
        {
            eprintln!("direct CreateRoute {j}: {e:?}");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "CPBENCH direct phase=routes ops={routes} secs={secs:.3} ops_per_s={:.0}",
        routes as f64 / secs
    );
}

fn new_control(interfaces: usize, static_underlay: bool) -> ControlPlane {
    let vfs: Vec<(String, PortId)> = (0..interfaces)
        .map(|i| {
            (
                format!("dtapvf_{i}"),
                FIRST_VF + PortId::try_from(i).unwrap_or(0),
            )
        })
        .collect();
    let mut config = Config::new(
        "fc00:1::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
        vfs,
        [0, 1],
    );
    if static_underlay {
        config.underlay_mode = UnderlayMode::Static;
    }
    ControlPlane::new(Publisher::new(Snapshot::default()), config)
}

// ----- Main ----------------------------------------------------------------------------------

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => {
            eprintln!("dpservice-cp-bench: the final check failed");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("dpservice-cp-bench: {e}");
            std::process::exit(2);
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    let interfaces = args
        .interfaces
        .unwrap_or(if args.quick { 100 } else { 1000 })
        .max(2);
    if interfaces + usize::from(FIRST_VF) > usize::from(PortId::MAX) {
        return Err(format!("--interfaces {interfaces}: too many ports"));
    }
    let routes = args
        .routes
        .unwrap_or(if args.quick { 10_000 } else { 100_000 });
    let vnis = args.vnis.max(1);
    let baseline =
        Duration::from_secs_f64(
            args.baseline_secs
                .unwrap_or(if args.quick { 0.2 } else { 1.0 }),
        );
    if args.log {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .try_init();
    }

    // Pinning: the worker alone on the last CPU, everything else on the others.
    let cpus = allowed_cpus();
    let (worker_cpus, other_cpus) = match cpus.split_last() {
        Some((&last, rest)) if !args.no_pin && !rest.is_empty() => (vec![last], rest.to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    pin_current_thread(&other_cpus);
    println!(
        "dpservice-cp-bench: {interfaces} interfaces, {routes} routes over {vnis} VNIs, {} in flight on {} connection(s); CPUs {cpus:?}, {}",
        args.in_flight,
        args.connections.max(1),
        if worker_cpus.is_empty() {
            "not pinned".to_owned()
        } else {
            format!("worker pinned to {worker_cpus:?}, the rest to {other_cpus:?}")
        }
    );

    let control = new_control(interfaces, args.static_underlay);
    let ports = interfaces + usize::from(FIRST_VF);
    let counters = Arc::new(GraphCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicUsize::new(0));
    let worker = build_worker(ports, &control, &counters, &stop);
    let worker_thread = if args.no_forward {
        None
    } else {
        let (counters, phase, stop) =
            (Arc::clone(&counters), Arc::clone(&phase), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("dp-worker-0".into())
            .spawn(move || {
                pin_current_thread(&worker_cpus);
                forward(worker, &counters, &phase, &stop)
            })
            .map(Some)
            .map_err(|e| format!("cannot start the worker thread: {e}"))?
    };

    // The server, called from its own one-thread runtime as in the daemon; `serve` runs it on a
    // current-thread runtime of its own (thread `dp-grpc-serve`, pinned like its creator).
    let server_rt = runtime("dp-grpc", other_cpus.clone())?;
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen: {e}"))?;
    let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let control = control.clone();
        server_rt.spawn(async move {
            control
                .serve(listener, async {
                    let _ = shutdown_rx.await;
                })
                .await
        })
    };

    // The client, on another one-thread runtime (as if it were another process).
    let client_rt = runtime("cp-client", other_cpus)?;
    let result = client_rt.block_on(drive(
        addr, args, interfaces, routes, baseline, &phase, &control,
    ));
    let _ = shutdown.send(());
    match server_rt.block_on(server) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("server: {e}"),
        Err(e) => eprintln!("server task: {e}"),
    }
    stop.store(true, Ordering::Relaxed);
    let stats = match worker_thread {
        Some(t) => Some(
            t.join()
                .map_err(|_| "the worker thread panicked".to_owned())?,
        ),
        None => None,
    };
    let mut ok = result?;
    if let Some(stats) = stats {
        ok &= report_forwarding(&stats, &counters);
    }
    if args.direct {
        direct(interfaces, routes, vnis, args.static_underlay);
    }
    Ok(ok)
}

/// Prints the forwarding lines; false when some phase forwarded nothing.
fn report_forwarding(stats: &[PhaseStats], counters: &Arc<GraphCounters>) -> bool {
    // Forwarding: per phase, and the load (interfaces + routes) against the baseline.
    for (name, s) in PHASES.iter().zip(stats) {
        println!(
            "CPBENCH forwarding phase={name} worst_gap_us={:.1} p99_gap_us={:.1} p999_gap_us={:.1} gaps_over_100us={} gaps_over_1ms={} worst_cpu_gap_us={:.1} p99_cpu_gap_us={:.1} batches={} mpps={:.2} mpps_per_cpu_s={:.2}",
            us(s.gaps.max),
            us(s.gaps.quantile(0.99)),
            us(s.gaps.quantile(0.999)),
            s.gaps.above(100_000),
            s.gaps.above(1_000_000),
            us(s.cpu_gaps.max),
            us(s.cpu_gaps.quantile(0.99)),
            s.gaps.count,
            s.mpps(),
            s.mpps_cpu()
        );
    }
    let mut during = Histogram::new();
    let mut during_cpu = Histogram::new();
    for s in stats.iter().skip(1).take(2) {
        during.merge(&s.gaps);
        during_cpu.merge(&s.cpu_gaps);
    }
    println!(
        "CPBENCH forwarding worst_gap_us={:.1} p99_gap_us={:.1} batches={} worst_cpu_gap_us={:.1} p99_cpu_gap_us={:.1} baseline_worst_gap_us={:.1} baseline_p99_gap_us={:.1} baseline_worst_cpu_gap_us={:.1}",
        us(during.max),
        us(during.quantile(0.99)),
        during.count,
        us(during_cpu.max),
        us(during_cpu.quantile(0.99)),
        us(stats[0].gaps.max),
        us(stats[0].gaps.quantile(0.99)),
        us(stats[0].cpu_gaps.max),
    );
    let forwarded = stats.iter().map(|s| s.packets).sum::<u64>();
    if forwarded == 0 || stats[0].packets == 0 || during.count == 0 {
        eprintln!(
            "warning: the worker forwarded nothing in some phase ({})",
            dpservice::stats::summary(std::slice::from_ref(counters))
        );
        return false;
    }
    true
}
