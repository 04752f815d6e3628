//! `dpservice-bench`: drives the real graph and worker loop on in-memory ports, one worker,
//! and prints packets per second per path.
//!
//! Each case prints one machine-readable line:
//! `BENCH path=<path> flows=<n> routes=<n> size=<bytes> mpps=<x> ns_per_pkt=<x> allocs_per_pkt=<x>`.
//! A counting global allocator proves the packet path allocates nothing per packet. The table also
//! shows the benchmark thread's CPU time per packet (`cpu ns/pkt`): on a shared machine the wall
//! time includes the time other processes held the core; the CPU time does not.
//!
//! Paths (`size` is the VM-side frame, Ethernet included; on the underlay it is 40 bytes longer):
//! * `local`: VM1 → VM2 on this host (UDP; classify → ipv4_lookup → l2_rewrite → tx);
//! * `capture`: `local` with VM1 captured: every packet also copied, wrapped for the capture
//!   sink and sent out of pf0;
//! * `encap`: VM1 → a remote route (IPv4-in-IPv6 out of pf0, the router's MAC known);
//! * `decap`: IPv4-in-IPv6 from pf0 → VM2;
//! * `dhcp`: a DHCPREQUEST (selecting) from VM1 answered in place with a DHCPACK (the slow path:
//!   full UDP checksum, option parsing, a new reply). Its size is fixed at 342 bytes, what a
//!   stock client's request is (BOOTP padded to 300 bytes); `flows` are distinct transaction ids;
//! * `drop`: UDP from VM1 with a spoofed source address (10.100.9.9): parsed and fully validated
//!   (Ethernet, IPv4 header and checksum), then dropped as `spoofed` by ipv4_lookup;
//! * `firewall`: `encap` with ten egress rules on VM1 (the last accepts the remote /16): the
//!   rules are evaluated once per flow, established packets only meet the kept verdict;
//! * `nat`: VM1 behind a NAT (ports 1024–65535 of 203.0.113.1) sends to 198.18.0.0/16 over the
//!   public default route: source address and port translated, then encapsulated;
//! * `nat_return`: the replies of `nat`'s flows from the underlay, translated back to VM1;
//! * `virtsvc`: UDP from VM1 to a virtual service (169.254.1.53:53 → `[fc00:53::1]:5353`): the
//!   IPv4 header replaced by an IPv6 one, a mapped source port, out of pf0 (no conntrack, no
//!   encapsulation); `flows` VM source ports (at most 60,000: a service has 64,512 ports);
//! * `virtsvc_return`: the service's replies to `virtsvc`'s mapped ports, back to VM1 as IPv4;
//! * `setup`: every packet a new flow (`encap` frames, measured over one pass of them, the table
//!   empty at the start): the cost of making a flow, its firewall decision included;
//! * `lb`: UDP from the internet (clients spread over 198.19.0.0/16) to a load balancer's VIP
//!   (its underlay address, from pf0), sent on to the Maglev target of the flow among 16 remote
//!   targets: decapsulated, tracked, encapsulated again; established flows;
//! * `lb_setup`: `lb` with every packet a new flow (one pass, as `setup`): the target choice.
//!
//! Every routed packet passes connection tracking (the `encap`, `decap`, `local` paths too): the
//! flow table holds twice `flows` flows, and the warm-up makes every flow before measuring, so
//! the figures are those of established flows (`setup` aside).
//!
//! `flows`: distinct frames replayed round-robin (destinations spread over a /16, the upper bits
//! in the UDP source port). `routes`: routes in the VNI besides the VMs' own and the remote /16
//! (a mix of /20 and /24 towards another hypervisor), so lookups probe several prefix lengths.
//!
//! Figures are per received packet: every received packet must meet its expected fate (sent, or
//! dropped as `spoofed` on the drop path); a case where some do not prints a warning on stderr.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use dp_bench::{thread_cpu_ns, udp_datagram};
use dp_packet::MacAddr;
use dp_pipeline::{
    BufferPool, ConntrackMode, DpConfig, DropReason, Graph, GraphCounters, PacketBuf, PortEntry,
    PortKind, PortTable, BATCH_SIZE, DEFAULT_DATA_ROOM,
};
use dp_ports::{MemoryPort, Port};
use dp_tables::{
    FirewallAction, FirewallRule, FirewallRules, Iface, IpNet, LbPort, LoadBalancer, NatRange,
    PortRange, ProtocolFilter, PublicTarget, Publisher, RouteTarget, Snapshot, TrafficDirection,
    UnderlayTarget, VniTable,
};

/// Packets a worker round takes in (`setup` measures `flows / SETUP_BURST` rounds).
const SETUP_BURST: usize = BATCH_SIZE;
use dpservice::worker::Worker;

/// Counts every heap allocation of the process.
struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Parser, Debug)]
#[command(
    name = "dpservice-bench",
    about = "Packet-path benchmark on in-memory ports"
)]
struct Args {
    /// A short run of every case but the million-flow ones (for CI smoke tests: they run the
    /// same code as the 100k-flow cases, and filling a million flows takes minutes in a debug
    /// build). `--flows 1000000` still selects them.
    #[arg(long)]
    quick: bool,
    /// Seconds per case (default 1, 0.1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Run exactly this many worker rounds (bursts of 256 packets) per case instead of a fixed
    /// time: for instruction counting under `valgrind --tool=callgrind`.
    #[arg(long)]
    rounds: Option<u64>,
    /// Only these paths (comma-separated: encap, decap, local, encap_untracked,
    /// decap_untracked, local_untracked, dhcp, drop, handoff, firewall, nat, nat_return, setup,
    /// lb, lb_setup, virtsvc, virtsvc_return, capture). `handoff`: two workers in one thread,
    /// worker 0 receives encap flows that worker 1 owns, hands them over, and worker 1
    /// encapsulates them. `*_untracked`: the same packets with `--conntrack stateful`, which
    /// forwards them without a flow (no interface has a firewall rule, VIP or NAT).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only cases with this many flows.
    #[arg(long)]
    flows: Option<usize>,
    /// Only cases with this many routes.
    #[arg(long)]
    routes: Option<usize>,
    /// Only cases with this frame size.
    #[arg(long)]
    size: Option<usize>,
    /// With dpservice-dump attached: what its trace tap records (comma-separated: ports,
    /// drops, nodes — `dpservice-dump --drops` is ports,drops; nodes means every node). The
    /// ring is emptied after every round, outside `Worker::poll_once`.
    #[arg(long, value_delimiter = ',')]
    trace: Vec<String>,
}

const VM1_MAC: MacAddr = MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x01]);
const VM2_MAC: MacAddr = MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x02]);
const GW_MAC: [MacAddr; 4] = [
    MacAddr([0x02, 0, 0, 0, 0, 0x10]),
    MacAddr([0x02, 0, 0, 0, 0, 0x11]),
    MacAddr([0x02, 0, 0, 0, 0, 0x12]),
    MacAddr([0x02, 0, 0, 0, 0, 0x13]),
];
const ROUTER_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0xff, 0x00]);
const VM1_PORT: u16 = 2;
const VM2_PORT: u16 = 3;
const PF0_PORT: u16 = 0;
const VNI: u32 = 100;
const VM1_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 1);
const VM2_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 2);
/// A source VM1 does not own (the drop path).
const SPOOFED_IP: Ipv4Addr = Ipv4Addr::new(10, 100, 9, 9);
/// 10.101.0.0/16 is VM2's alias prefix.
const LOCAL_NET: Ipv4Addr = Ipv4Addr::new(10, 101, 0, 0);
/// 10.102.0.0/16 is routed to another hypervisor.
const REMOTE_NET: Ipv4Addr = Ipv4Addr::new(10, 102, 0, 0);
const REMOTE_HOST: Ipv6Addr = Ipv6Addr::new(0xfc00, 2, 0, 0, 0, 0, 0, 1);
/// Frame size of the DHCP request (Ethernet + IPv4 + UDP + a 300-byte BOOTP message).
const DHCP_FRAME_LEN: usize = 14 + 20 + 8 + 300;

const PATHS: [&str; 18] = [
    "encap",
    "decap",
    "local",
    "encap_untracked",
    "decap_untracked",
    "local_untracked",
    "dhcp",
    "drop",
    "handoff",
    "firewall",
    "nat",
    "nat_return",
    "setup",
    "lb",
    "lb_setup",
    "virtsvc",
    "virtsvc_return",
    "capture",
];
/// The flows of the virtual-service paths: one, and most of a service's 64,512 ports.
const VIRTSVC_FLOWS: [usize; 2] = [1, 60_000];
const VIRTSVC_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 53);
const VIRTSVC_PORT: u16 = 53;
const VIRTSVC_SERVICE: Ipv6Addr = Ipv6Addr::new(0xfc00, 0x53, 0, 0, 0, 0, 0, 1);
const VIRTSVC_SERVICE_PORT: u16 = 5353;
const FLOWS: [usize; 3] = [1, 100_000, 1_000_000];
/// The paths measured with a million flows too (connection tracking at scale).
const MILLION_FLOW_PATHS: [&str; 7] = [
    "encap",
    "firewall",
    "nat",
    "nat_return",
    "setup",
    "lb",
    "lb_setup",
];
/// The load balancer of the `lb` paths (UDP port 9, what `udp_frame` sends to), its clients
/// and its 16 targets on other hypervisors.
const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 80);
const LB_CLIENTS: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
const LB_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0, 0, 0x300, 1);
const LB_TARGETS: u16 = 16;
/// VM1's NAT address and ports, and where its NAT'd flows go (a benchmarking network, RFC 2544).
const NAT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NAT_NET: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const ROUTER_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0xffff, 1);
const VM1_NAT_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0, 0, 0x200, 2);
const ROUTES: [usize; 2] = [10, 100_000];
const SIZES: [usize; 2] = [64, 1400];

struct Case {
    path: &'static str,
    flows: usize,
    routes: usize,
    size: usize,
}

fn cases(args: &Args) -> Vec<Case> {
    let mut cases = Vec::new();
    for path in PATHS {
        let sizes: &[usize] = if path == "dhcp" {
            &[DHCP_FRAME_LEN]
        } else {
            &SIZES
        };
        for &size in sizes {
            let flow_counts: &[usize] = if path.starts_with("virtsvc") {
                &VIRTSVC_FLOWS
            } else {
                &FLOWS
            };
            for &flows in flow_counts {
                if flows > 100_000 && !MILLION_FLOW_PATHS.contains(&path) {
                    continue;
                }
                if path.ends_with("setup") && flows == 1 {
                    continue;
                }
                for routes in ROUTES {
                    cases.push(Case {
                        path,
                        flows,
                        routes,
                        size,
                    });
                }
            }
        }
    }
    cases.retain(|c| {
        let million = c.flows > 100_000;
        (!args.quick || !million || args.flows.is_some())
            && (args.only.is_empty() || args.only.iter().any(|p| p == c.path))
            && args.flows.is_none_or(|f| f == c.flows)
            && args.routes.is_none_or(|r| r == c.routes)
            && args.size.is_none_or(|s| s == c.size)
    });
    cases
}

fn main() {
    let args = Args::parse();
    for p in &args.only {
        if !PATHS.contains(&p.as_str()) {
            eprintln!("unknown path {p:?}: one of {}", PATHS.join(", "));
            std::process::exit(2);
        }
    }
    let seconds = args.seconds.unwrap_or(if args.quick { 0.1 } else { 1.0 });
    let run = match args.rounds {
        Some(n) => Run::Rounds(n),
        None => Run::Time(Duration::from_secs_f64(seconds)),
    };
    let cases = cases(&args);
    let mut trace_flags = 0;
    for t in &args.trace {
        trace_flags |= match t.as_str() {
            "ports" => dp_pipeline::trace::WANT_PORTS,
            "drops" => dp_pipeline::trace::WANT_DROPS,
            "nodes" => dp_pipeline::trace::WANT_NODES,
            _ => {
                eprintln!("unknown --trace {t:?}: ports, drops or nodes");
                std::process::exit(2);
            }
        };
    }
    let trace_label = if args.trace.is_empty() {
        String::new()
    } else {
        format!(" trace={}", args.trace.join("+"))
    };
    println!(
        "{:<8} {:>8} {:>8} {:>6} {:>10} {:>12} {:>12} {:>14}",
        "path", "flows", "routes", "size", "Mpps", "ns/packet", "cpu ns/pkt", "allocs/packet"
    );
    let mut lines = Vec::new();
    for case in &cases {
        let r = run_case(case, run, trace_flags);
        println!(
            "{:<8} {:>8} {:>8} {:>6} {:>10.3} {:>12.1} {:>12.1} {:>14.4}",
            case.path,
            case.flows,
            case.routes,
            case.size,
            r.mpps,
            r.ns_per_pkt,
            r.cpu_ns_per_pkt,
            r.allocs_per_pkt
        );
        lines.push(format!(
            "BENCH path={} flows={} routes={} size={}{trace_label} mpps={:.3} ns_per_pkt={:.1} allocs_per_pkt={:.4}",
            case.path, case.flows, case.routes, case.size, r.mpps, r.ns_per_pkt, r.allocs_per_pkt
        ));
    }
    for line in lines {
        println!("{line}");
    }
}

#[derive(Clone, Copy)]
enum Run {
    Time(Duration),
    Rounds(u64),
}

struct Result {
    mpps: f64,
    ns_per_pkt: f64,
    /// Per packet of the benchmark thread's CPU time: on a shared machine, what the packet
    /// path costs while it runs (wall time also counts the time other processes had the core).
    cpu_ns_per_pkt: f64,
    allocs_per_pkt: f64,
}

fn vm_iface(id: &str, port: u16, ipv4: Ipv4Addr, ipv6: Ipv6Addr) -> Iface {
    Iface {
        id: id.into(),
        vni: VNI,
        port,
        ipv4,
        ipv6,
        underlay_ipv6: Ipv6Addr::new(0xfc00, 1, 0, 0, 0, 0, 0, port),
        hostname: None,
        pxe: None,
        prefixes_v4: Vec::new(),
        prefixes_v6: Vec::new(),
        services: Default::default(),
        meter: Default::default(),
    }
}

/// VM1 (10.100.1.1) on port 2 and VM2 (10.100.1.2, plus a /16 alias prefix so the 100k
/// flows all reach it) on port 3, and `routes` extra remote routes in the VNI.
fn snapshot(routes: usize, path: &str) -> Snapshot {
    let mut vm1 = vm_iface(
        "vm1",
        VM1_PORT,
        Ipv4Addr::new(10, 100, 1, 1),
        "2000:100:1::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
    );
    let mut vm2 = vm_iface(
        "vm2",
        VM2_PORT,
        Ipv4Addr::new(10, 100, 1, 2),
        "2000:100:1::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
    );
    vm2.prefixes_v4.push((Ipv4Addr::new(10, 101, 0, 0), 16));
    if path == "firewall" {
        vm1.services.firewall = Arc::new(egress_rules());
    }
    if path.starts_with("nat") {
        vm1.services.nat = Some(NatRange {
            ip: NAT_IP,
            min_port: 1024,
            max_port: u16::MAX,
        });
    }
    let mut table = VniTable::default();
    let _ = table.v4.insert(
        0,
        0,
        RouteTarget::Remote {
            vni: VNI,
            underlay: ROUTER_UNDERLAY,
            public: true,
        },
    );
    let _ = table.v4.insert(
        u32::from(vm1.ipv4),
        32,
        RouteTarget::Local { port: VM1_PORT },
    );
    let _ = table.v4.insert(
        u32::from(vm2.ipv4),
        32,
        RouteTarget::Local { port: VM2_PORT },
    );
    let _ = table.v4.insert(
        u32::from(Ipv4Addr::new(10, 101, 0, 0)),
        16,
        RouteTarget::Local { port: VM2_PORT },
    );
    let _ = table.v4.insert(
        u32::from(REMOTE_NET),
        16,
        RouteTarget::Remote {
            vni: VNI,
            underlay: REMOTE_HOST,
            public: false,
        },
    );
    // Extra routes: /24s in 172.16.0.0/12 and beyond towards another hypervisor, plus some /20s,
    // so lookups probe several prefix lengths.
    for i in 0..routes {
        let net = 0xAC10_0000u32.wrapping_add((i as u32) << 8);
        let len = if i % 10 == 0 { 20 } else { 24 };
        let _ = table.v4.insert(
            net,
            len,
            RouteTarget::Remote {
                vni: VNI,
                underlay: Ipv6Addr::new(0xfc00, 2, 0, 0, 0, 0, 0, 1),
                public: false,
            },
        );
    }
    let underlay = [
        (
            u128::from(vm1.underlay_ipv6),
            UnderlayTarget::Iface {
                port: VM1_PORT,
                vni: VNI,
            },
        ),
        (
            u128::from(vm2.underlay_ipv6),
            UnderlayTarget::Iface {
                port: VM2_PORT,
                vni: VNI,
            },
        ),
        (
            u128::from(VM1_NAT_UNDERLAY),
            UnderlayTarget::Nat {
                port: VM1_PORT,
                vni: VNI,
            },
        ),
    ]
    .into_iter()
    .collect();
    let mut underlay: rustc_hash::FxHashMap<u128, UnderlayTarget> = underlay;
    let mut load_balancers = rustc_hash::FxHashMap::default();
    if path.starts_with("lb") {
        let ip = std::net::IpAddr::V4(LB_IP);
        let mut lb = LoadBalancer::new(
            "lb".into(),
            VNI,
            ip,
            vec![LbPort {
                proto: dp_packet::IpProtocol::UDP,
                port: 9,
            }],
            LB_UNDERLAY,
        );
        lb.set_targets(
            (1..=LB_TARGETS)
                .map(|i| Ipv6Addr::new(0xfc00, 2 + i, 0, 0, 0, 0, 0x400, 1))
                .collect(),
        );
        load_balancers.insert(dp_tables::lb::lb_key(VNI, ip), Arc::new(lb));
        underlay.insert(
            u128::from(LB_UNDERLAY),
            UnderlayTarget::LoadBalancer { vni: VNI, ip },
        );
    }
    let public = [((VNI, u32::from(NAT_IP)), PublicTarget::Nat)]
        .into_iter()
        .collect();
    Snapshot {
        load_balancers: Arc::new(load_balancers),
        ifaces_by_port: Arc::new(vec![None, None, Some(Arc::new(vm1)), Some(Arc::new(vm2))]),
        vnis: [(VNI, Arc::new(table))].into_iter().collect(),
        underlay: Arc::new(underlay),
        public: Arc::new(public),
        firewall_generation: 1,
        // `capture`: the `local` path with VM1 captured (each packet copied once, as received).
        capture: (path == "capture").then(|| {
            dp_tables::CaptureConfig::new(
                ROUTER_UNDERLAY,
                3000,
                3010,
                dp_tables::CaptureDirections::default(),
                [VM1_PORT],
            )
        }),
        ..Snapshot::default()
    }
}

/// Ten egress rules: nine for other traffic, the last (lowest priority) accepts the remote /16.
fn egress_rules() -> FirewallRules {
    let rule = |i: u32, dst: Ipv4Addr, len: u8| FirewallRule {
        id: format!("rule{i}"),
        direction: TrafficDirection::Egress,
        action: FirewallAction::Accept,
        priority: i,
        src: IpNet {
            addr: 0,
            len: 0,
            is_v6: false,
        },
        dst: IpNet {
            addr: u128::from(u32::from(dst)),
            len,
            is_v6: false,
        },
        filter: ProtocolFilter::Udp {
            src: PortRange::ANY,
            dst: PortRange::ANY,
        },
    };
    let mut rules: Vec<FirewallRule> = (0..9)
        .map(|i| rule(i, Ipv4Addr::new(192, 168, i as u8, 0), 24))
        .collect();
    rules.push(rule(9, REMOTE_NET, 16));
    FirewallRules::new(1, rules)
}

/// The replies to the NAT'd flows in `flows`, as the router sends them: from pf0, to VM1's NAT
/// underlay route, the server's answer to the NAT address and port.
fn nat_replies(flows: &dp_tables::FlowTable, size: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<(u32, Vec<u8>)> = flows
        .iter()
        .map(|(id, f)| {
            let r = &f.reply;
            let inner = dp_bench::udp_frame(
                GW_MAC[usize::from(PF0_PORT)],
                ROUTER_MAC,
                Ipv4Addr::from(r.src as u32),
                Ipv4Addr::from(r.dst as u32),
                r.src_port,
                size,
            );
            let mut inner = inner;
            // `udp_frame` sends to port 5000 (the VM side's destination); the reply goes to the
            // NAT port: patch it and the UDP checksum (over the pseudo header and the ports).
            let l4 = 14 + 20;
            let old = u16::from_be_bytes([inner[l4 + 2], inner[l4 + 3]]);
            inner[l4 + 2..l4 + 4].copy_from_slice(&r.dst_port.to_be_bytes());
            let check = u16::from_be_bytes([inner[l4 + 6], inner[l4 + 7]]);
            let check = dp_packet::checksum::update_u16(check, old, r.dst_port);
            inner[l4 + 6..l4 + 8].copy_from_slice(&check.to_be_bytes());
            (id.0, encapsulated_to(&inner, VM1_NAT_UNDERLAY))
        })
        .collect();
    out.sort_by_key(|(id, _)| *id);
    out.into_iter().map(|(_, f)| f).collect()
}

/// A UDP frame from VM1 (source address `src`) to `dst` of `size` bytes (Ethernet included),
/// checksums filled.
fn udp_frame(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, size: usize) -> Vec<u8> {
    dp_bench::udp_frame(
        GW_MAC[usize::from(VM1_PORT)],
        VM1_MAC,
        src,
        dst,
        src_port,
        size,
    )
}

/// The destination of flow `i`: inside `net` (a /16), the flow's upper bits in the source port.
fn flow_dst(net: Ipv4Addr, i: usize) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from(u32::from(net) | (i as u32 & 0xffff)),
        1000 + (i >> 16) as u16,
    )
}

/// Wraps a VM1 → VM2 frame as the remote hypervisor would send it: from the router on pf0, to
/// VM2's underlay address.
fn encapsulated(inner_frame: &[u8]) -> Vec<u8> {
    encapsulated_to(
        inner_frame,
        Ipv6Addr::new(0xfc00, 1, 0, 0, 0, 0, 0, VM2_PORT),
    )
}

/// Wraps a frame's IP packet as the router sends it on pf0, to the underlay address `dst`.
fn encapsulated_to(inner_frame: &[u8], dst: Ipv6Addr) -> Vec<u8> {
    let inner = inner_frame.get(14..).unwrap_or(&[]);
    let mut f = Vec::with_capacity(54 + inner.len());
    f.extend_from_slice(&GW_MAC[usize::from(PF0_PORT)].0);
    f.extend_from_slice(&ROUTER_MAC.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0x01, 0x23, 0x45]);
    f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    f.extend_from_slice(&[4, 63]);
    f.extend_from_slice(&REMOTE_HOST.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(inner);
    f
}

/// A DHCPREQUEST (selecting state) from VM1 for its address, as a stock client sends it:
/// broadcast, options 53, 50, 54, 55, 61, 12 and end, the BOOTP message padded to 300 bytes.
fn dhcp_request(xid: u32) -> Vec<u8> {
    let mut b = vec![1u8, 1, 6, 0];
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // secs, flags
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(&VM1_MAC.0);
    b.extend_from_slice(&[0; 10 + 64 + 128]);
    b.extend_from_slice(&[0x63, 0x82, 0x53, 0x63]);
    b.extend_from_slice(&[53, 1, 3, 50, 4]);
    b.extend_from_slice(&VM1_IP.octets());
    b.extend_from_slice(&[54, 4, 169, 254, 0, 1]);
    b.extend_from_slice(&[55, 8, 1, 3, 6, 12, 15, 26, 28, 121]);
    b.extend_from_slice(&[61, 7, 1]);
    b.extend_from_slice(&VM1_MAC.0);
    b.extend_from_slice(&[12, 3, b'v', b'm', b'1']);
    b.push(255);
    b.resize(300, 0);

    udp_datagram(
        MacAddr([0xff; 6]),
        VM1_MAC,
        (Ipv4Addr::UNSPECIFIED, 68),
        (Ipv4Addr::BROADCAST, 67),
        &b,
    )
}

/// The path whose frames and tables a case uses: an `*_untracked` path's tracked twin.
fn base_path(path: &str) -> &str {
    path.strip_suffix("_untracked").unwrap_or(path)
}

/// The port the case's frames arrive on, and the frames.
fn frames(case: &Case) -> (u16, Vec<Vec<u8>>) {
    let udp = |src: Ipv4Addr, net: Ipv4Addr| -> Vec<Vec<u8>> {
        match case.flows {
            1 if net == LOCAL_NET => vec![udp_frame(src, VM2_IP, 1000, case.size)],
            n => (0..n)
                .map(|i| {
                    let (dst, sport) = flow_dst(net, i);
                    udp_frame(src, dst, sport, case.size)
                })
                .collect(),
        }
    };
    match base_path(case.path) {
        "encap" => (VM1_PORT, udp(VM1_IP, REMOTE_NET)),
        "handoff" => (VM1_PORT, flows_of_worker_1(case)),
        "decap" => (
            PF0_PORT,
            udp(VM1_IP, LOCAL_NET)
                .iter()
                .map(|f| encapsulated(f))
                .collect(),
        ),
        "dhcp" => (
            VM1_PORT,
            (0..case.flows)
                .map(|i| dhcp_request(0x1000_0000 + i as u32))
                .collect(),
        ),
        "drop" => (VM1_PORT, udp(SPOOFED_IP, LOCAL_NET)),
        "firewall" | "setup" => (VM1_PORT, udp(VM1_IP, REMOTE_NET)),
        "lb" | "lb_setup" => (
            PF0_PORT,
            (0..case.flows)
                .map(|i| {
                    let (src, sport) = flow_dst(LB_CLIENTS, i);
                    encapsulated_to(&udp_frame(src, LB_IP, sport, case.size), LB_UNDERLAY)
                })
                .collect(),
        ),
        // The replies are made from the flows `nat` leaves in the table (`run_case`).
        "nat" | "nat_return" => (VM1_PORT, udp(VM1_IP, NAT_NET)),
        // The same: the replies go to the ports `virtsvc` mapped.
        "virtsvc" | "virtsvc_return" => (
            VM1_PORT,
            (0..case.flows)
                .map(|i| {
                    let mut f = dp_bench::udp_frame(
                        GW_MAC[usize::from(VM1_PORT)],
                        VM1_MAC,
                        VM1_IP,
                        VIRTSVC_IP,
                        1 + i as u16,
                        case.size,
                    );
                    retarget_udp(&mut f, 14 + 20, VIRTSVC_PORT);
                    f
                })
                .collect(),
        ),
        _ => (VM1_PORT, udp(VM1_IP, LOCAL_NET)),
    }
}

/// Sets a UDP frame's destination port (`l4`: where its UDP header is), patching the checksum.
fn retarget_udp(frame: &mut [u8], l4: usize, port: u16) {
    let old = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
    frame[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
    let check = u16::from_be_bytes([frame[l4 + 6], frame[l4 + 7]]);
    let check = dp_packet::checksum::update_u16(check, old, port);
    frame[l4 + 6..l4 + 8].copy_from_slice(&check.to_be_bytes());
}

/// The service's replies (`size` bytes on the VM side, 20 more as IPv6) to every port the
/// virtual service mapped, as the router delivers them on pf0.
fn virtsvc_replies(
    worker: &dp_pipeline::WorkerCtx,
    config: &DpConfig,
    size: usize,
) -> Vec<Vec<u8>> {
    let (Some(map), Some(svc)) = (worker.virtsvc.get(0), config.virtual_services.get(0)) else {
        return Vec::new();
    };
    let payload_len = size.saturating_sub(14 + 20 + 8);
    (0..map.capacity())
        .filter(|&slot| map.conn(slot).is_some_and(|c| c.in_use))
        .map(|slot| {
            let mut udp = Vec::with_capacity(8 + payload_len);
            udp.extend_from_slice(&VIRTSVC_SERVICE_PORT.to_be_bytes());
            udp.extend_from_slice(&map.port_of(slot).to_be_bytes());
            udp.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.resize(8 + payload_len, 0x5a);
            let c = dp_packet::checksum::transport_v6(
                &svc.service_addr,
                &svc.underlay_addr,
                dp_packet::IpProtocol::UDP,
                &udp,
            );
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            let mut f = Vec::with_capacity(54 + udp.len());
            f.extend_from_slice(&GW_MAC[usize::from(PF0_PORT)].0);
            f.extend_from_slice(&ROUTER_MAC.0);
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(udp.len() as u16).to_be_bytes());
            f.extend_from_slice(&[17, 63]);
            f.extend_from_slice(&svc.service_addr.octets());
            f.extend_from_slice(&svc.underlay_addr.octets());
            f.extend_from_slice(&udp);
            f
        })
        .collect()
}

/// `case.flows` encap flows that worker 1 of two owns (by the hand-off node's rule).
fn flows_of_worker_1(case: &Case) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| {
            let (dst, sport) = flow_dst(REMOTE_NET, i);
            udp_frame(VM1_IP, dst, sport, case.size)
        })
        .filter(|f| {
            let key = dp_packet::FlowKey::of_header(f.get(14..).unwrap_or(&[]));
            dp_pipeline::affinity::owner(key.symmetric_hash(), 2) == 1
        })
        .take(case.flows)
        .collect()
}

fn run_case(case: &Case, run: Run, trace_flags: u64) -> Result {
    let publisher = Publisher::new(snapshot(case.routes, base_path(case.path)));
    // Room for every flow of the case (twice: replies of the local paths are not flows of
    // their own, but a table at most half full is the normal operating point).
    let flow_capacity = (2 * case.flows).max(1 << 14);
    let entries = (0..4u16)
        .map(|p| {
            let kind = if p < 2 {
                PortKind::Uplink
            } else {
                PortKind::Vf
            };
            let e = PortEntry::new(kind, format!("p{p}"), GW_MAC[usize::from(p)]);
            if p == PF0_PORT {
                e.confirm_peer(ROUTER_MAC, 0);
            }
            if p == VM1_PORT {
                e.learn_peer_mac(VM1_MAC);
            }
            if p == VM2_PORT {
                e.learn_peer_mac(VM2_MAC);
            }
            e
        })
        .collect();
    let entries: Vec<PortEntry> = entries;
    let port_table = Arc::new(PortTable::new(entries));
    let underlay_ipv6 = Ipv6Addr::new(0xfc00, 1, 0, 0, 0, 0, 0, 1);
    let virtual_services = if case.path.starts_with("virtsvc") {
        dp_tables::VirtualServices::new(vec![dp_tables::VirtualService {
            proto: dp_packet::IpProtocol::UDP,
            virtual_addr: VIRTSVC_IP,
            virtual_port: VIRTSVC_PORT,
            service_addr: VIRTSVC_SERVICE,
            service_port: VIRTSVC_SERVICE_PORT,
            underlay_addr: dp_tables::virtsvc_underlay(underlay_ipv6, 0),
        }])
        .unwrap_or_default()
    } else {
        dp_tables::VirtualServices::default()
    };
    let conntrack = if case.path.ends_with("_untracked") {
        ConntrackMode::Stateful
    } else {
        ConntrackMode::All
    };
    let config = Arc::new(DpConfig {
        underlay_ipv6,
        virtual_services: Arc::new(virtual_services),
        conntrack,
        ..DpConfig::default()
    });
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    let (source_port, mut source_frames) = frames(case);
    for p in 0..4u16 {
        let source = if p == source_port {
            std::mem::take(&mut source_frames)
        } else {
            Vec::new()
        };
        ports.push(Box::new(MemoryPort::replay(
            format!("p{p}"),
            VM1_MAC,
            source,
        )));
    }
    let counters = Arc::new(GraphCounters::default());
    let mut worker = Worker {
        ports,
        graph: Graph::new(4, Arc::clone(&counters)),
        pool: BufferPool::new(4 * BATCH_SIZE, DEFAULT_DATA_ROOM),
        tables: publisher.reader(),
        port_table: Arc::clone(&port_table),
        config: Arc::clone(&config),
        stop: Arc::new(AtomicBool::new(false)),
        worker: dp_pipeline::WorkerCtx::single()
            .with_flow_capacity(flow_capacity)
            .with_virtual_services(&config.virtual_services),
        wakeup: None,
        commands: None,
    };
    // dpservice-dump attached: the tap records, the ring is emptied between rounds.
    let mut trace_reader = None;
    if trace_flags != 0 {
        let control = Arc::new(dp_pipeline::trace::TraceControl::default());
        let (tap, reader) =
            dp_pipeline::trace::tap(Arc::clone(&control), 0, dp_pipeline::trace::RING_BYTES);
        worker.graph.set_trace_tap(tap);
        control.enable(trace_flags, u64::MAX);
        trace_reader = Some((control, reader));
    }
    let mut drain = move || {
        if let Some((_, reader)) = trace_reader.as_mut() {
            reader.discard();
        }
    };
    // The hand-off case: a second worker (its own ports, none with frames, its own pool and
    // graph), polled after the first in every round; it forwards what the first hands it.
    let tx_counters = Arc::new(GraphCounters::default());
    let mut second = None;
    if case.path == "handoff" {
        let mut rings =
            dp_pipeline::affinity::mesh(2, dp_pipeline::affinity::RING_CAPACITY, vec![]);
        let (Some(r1), Some(r0)) = (rings.pop(), rings.pop()) else {
            unreachable!("two workers")
        };
        worker.worker = dp_pipeline::WorkerCtx::with_rings(r0).with_flow_capacity(flow_capacity);
        second = Some(Worker {
            ports: (0..4u16)
                .map(|p| {
                    Box::new(MemoryPort::replay(format!("p{p}"), VM1_MAC, Vec::new()))
                        as Box<dyn Port>
                })
                .collect(),
            graph: Graph::new(4, Arc::clone(&tx_counters)),
            pool: BufferPool::new(4 * BATCH_SIZE, DEFAULT_DATA_ROOM),
            tables: publisher.reader(),
            port_table: Arc::clone(&port_table),
            config: Arc::clone(&config),
            stop: Arc::new(AtomicBool::new(false)),
            worker: dp_pipeline::WorkerCtx::with_rings(r1).with_flow_capacity(flow_capacity),
            wakeup: None,
            commands: None,
        });
    }
    // Where the packets leave: worker 1 in the hand-off case.
    let out = if second.is_some() {
        &tx_counters
    } else {
        &counters
    };
    let mut rx: Vec<PacketBuf> = Vec::with_capacity(BATCH_SIZE);
    // Warm up: caches, branch predictors, first touch of the buffers and of every flow's frame.
    let warm_rounds = match run {
        _ if case.path.ends_with("setup") => 0,
        Run::Rounds(_) => 2 + case.flows / BATCH_SIZE,
        Run::Time(_) => 200.max(2 + case.flows / BATCH_SIZE),
    };
    for _ in 0..warm_rounds {
        worker.poll_once(&mut rx, 0);
        if let Some(w) = second.as_mut() {
            w.poll_once(&mut rx, 0);
        }
        drain();
    }
    if case.path == "nat_return" {
        // The flows exist now: replay their replies from the underlay instead, warmed up too.
        let replies = nat_replies(&worker.worker.flows, case.size);
        if let Some(port) = worker.ports.get_mut(usize::from(VM1_PORT)) {
            *port = Box::new(MemoryPort::replay("p2".to_string(), VM1_MAC, Vec::new()));
        }
        if let Some(port) = worker.ports.get_mut(usize::from(PF0_PORT)) {
            *port = Box::new(MemoryPort::replay("p0".to_string(), VM1_MAC, replies));
        }
        for _ in 0..warm_rounds {
            worker.poll_once(&mut rx, 0);
        }
    }
    if case.path == "virtsvc_return" {
        // The mappings exist now: replay the service's replies to them instead.
        let replies = virtsvc_replies(&worker.worker, &config, case.size);
        if let Some(port) = worker.ports.get_mut(usize::from(VM1_PORT)) {
            *port = Box::new(MemoryPort::replay("p2".to_string(), VM1_MAC, Vec::new()));
        }
        if let Some(port) = worker.ports.get_mut(usize::from(PF0_PORT)) {
            *port = Box::new(MemoryPort::replay("p0".to_string(), VM1_MAC, replies));
        }
        for _ in 0..warm_rounds {
            worker.poll_once(&mut rx, 0);
        }
    }
    // Setup: one pass over the flows, each packet a new one.
    let run = match run {
        _ if case.path.ends_with("setup") => Run::Rounds((case.flows / SETUP_BURST) as u64),
        other => other,
    };
    let tx_before = out.tx_packets.load(Ordering::Relaxed);
    let spoofed_before = counters.drops(DropReason::Spoofed);
    // Both workers' drops (the second's counters stay zero without one).
    let all_drops = || counters.total_drops() + tx_counters.total_drops();
    let drops_before = all_drops();
    let allocs_before = ALLOCATIONS.load(Ordering::Relaxed);
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    let mut received = 0u64;
    let mut rounds = 0u64;
    match run {
        Run::Rounds(n) => {
            while rounds < n {
                received += worker.poll_once(&mut rx, rounds) as u64;
                if let Some(w) = second.as_mut() {
                    w.poll_once(&mut rx, rounds);
                }
                drain();
                rounds += 1;
            }
        }
        Run::Time(duration) => {
            while start.elapsed() < duration {
                for _ in 0..64 {
                    received += worker.poll_once(&mut rx, rounds) as u64;
                    if let Some(w) = second.as_mut() {
                        w.poll_once(&mut rx, rounds);
                    }
                    drain();
                    rounds += 1;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - allocs_before;
    let sent = out.tx_packets.load(Ordering::Relaxed) - tx_before;
    let spoofed = counters.drops(DropReason::Spoofed) - spoofed_before;
    let drops = all_drops() - drops_before;
    let expected = if case.path == "drop" {
        spoofed == received && sent == 0
    } else if case.path == "capture" {
        // Each packet and its copy.
        sent == 2 * received && drops == 0
    } else {
        sent == received && drops == 0
    };
    if !expected || received == 0 {
        eprintln!(
            "warning: case path={} flows={} routes={} size={}: {received} received, {sent} sent, {drops} dropped ({})",
            case.path,
            case.flows,
            case.routes,
            case.size,
            dpservice::stats::summary(std::slice::from_ref(&counters))
        );
    }
    let pkts = received.max(1) as f64;
    Result {
        mpps: received as f64 / elapsed.as_secs_f64() / 1e6,
        ns_per_pkt: elapsed.as_nanos() as f64 / pkts,
        cpu_ns_per_pkt: cpu_ns as f64 / pkts,
        allocs_per_pkt: allocs as f64 / pkts,
    }
}
