//! Multi-host system test (issue #3): two daemons are two hypervisors whose uplink TAPs sit in
//! a router namespace (a plain Linux IPv6 router); VMs on both hosts talk through IPv4- and
//! IPv6-in-IPv6 encapsulation. docs/multihost.md has the picture and the same steps by hand.
//!
//! ```text
//!  vm1 (VNI 100)  vm3 (VNI 200)                         vm2 (VNI 100)
//!       │ vf0          │ vf1                                  │ vf0
//!  ┌────┴──────────────┴────┐                         ┌───────┴────────────────┐
//!  │ hv1  --ipv6 fc00:1::1  │                         │ hv2  --ipv6 fc00:2::1  │
//!  │      --router fe80::ffff                         │      --wcmp 50         │
//!  └──pf0──────────pf1──────┘                         └──pf0──────────pf1──────┘
//!      │            │                                     │            │
//!  ┌───┴────────────┴──── router namespace ───────────────┴────────────┴────┐
//!  │ fe80::ffff on every link, fc00::ffff on lo, IPv6 forwarding            │
//!  │ fc00:1::/64 on-link over hv1's two links, fc00:2::/64 over hv2's       │
//!  └────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Needs root and `ip`, `udhcpc` (or busybox), `dhclient`, `ping`, `unshare`, `iperf3`,
//! `tcpdump`, `bash`, `ss`; otherwise it prints `SKIPPED` and passes (unless
//! `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`). Names are unique per run, every wait is bounded, and
//! guards remove daemons, namespaces, captures and files on success and failure. Measurements
//! (iperf3 throughput, fail-over loss and time) are printed as `[multihost] RESULT …` lines;
//! BENCHMARKS.md records them.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use support::api::{Api, IfaceSpec};
use support::capture::{parse_outer6, Capture, Inner, Outer6};
use support::cli::Cli;
use support::daemon::{hypervisor_args, Daemon};
use support::underlay::{Router, ROUTER_LL};
use support::vm::Vm;
use support::{ensure, free_port, run, wait_until, Background, Names, Scratch};

const TOOLS: &[&str] = &[
    "ip", "udhcpc", "dhclient", "ping", "unshare", "ipv6", "iperf3", "tcpdump", "bash", "ss",
];

/// Progress on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[multihost] {}", format!($($arg)*)) };
}

// ---------------------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------------------

struct HvDef {
    name: &'static str,
    underlay: &'static str,
    prefix: &'static str,
    /// Extra daemon options.
    extra: &'static [&'static str],
}

/// hv2 spreads flows over both uplinks (`--wcmp 50`)
/// for the WCMP check; hv1 runs `--wcmp 100` (the default: every flow on pf0, pf1 as fail-over) so the
/// fail-over check knows which link carries the flow.
const HVS: [HvDef; 2] = [
    HvDef {
        name: "hv1",
        underlay: "fc00:1::1",
        prefix: "fc00:1::/64",
        extra: &["--wcmp", "100"],
    },
    HvDef {
        name: "hv2",
        underlay: "fc00:2::1",
        prefix: "fc00:2::/64",
        extra: &["--wcmp", "50"],
    },
];
const VF_COUNT: usize = 2;

struct VmDef {
    name: &'static str,
    hv: usize,
    vf: usize,
    vni: u32,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

const VMS: [VmDef; 3] = [
    VmDef {
        name: "vm1",
        hv: 0,
        vf: 0,
        vni: 100,
        ipv4: Ipv4Addr::new(10, 100, 1, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1),
    },
    VmDef {
        name: "vm3",
        hv: 0,
        vf: 1,
        vni: 200,
        ipv4: Ipv4Addr::new(10, 200, 1, 3),
        ipv6: Ipv6Addr::new(0x2000, 0x200, 1, 0, 0, 0, 0, 3),
    },
    VmDef {
        name: "vm2",
        hv: 1,
        vf: 0,
        vni: 100,
        ipv4: Ipv4Addr::new(10, 100, 2, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 2, 0, 0, 0, 0, 1),
    },
];

fn def(name: &str) -> &'static VmDef {
    VMS.iter().find(|d| d.name == name).expect("known VM")
}

/// The VM MTU the daemons hand out (`--dhcp-mtu 1400`): 1400 + 40 (outer IPv6) fits 1500.
const VM_MTU: u32 = 1400;
/// What path-MTU discovery must find with a 1500-byte underlay: 1500 - 40.
const PATH_MTU: u32 = 1460;

struct Hv {
    names: Names,
    daemon: Daemon,
    api: Api,
}

struct Lab {
    // Drop order (see Drop): VMs' clients, daemons, VM namespaces, router, scratch.
    vms: Vec<Vm>,
    hvs: Vec<Hv>,
    router: Option<Router>,
    /// Interface id → underlay address, from CreateInterface.
    underlays: Vec<(&'static str, Ipv6Addr)>,
    scratch: Scratch,
}

impl Lab {
    fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }
    fn router(&self) -> &Router {
        self.router.as_ref().expect("router present until drop")
    }
    fn underlay(&self, vm: &str) -> Ipv6Addr {
        self.underlays
            .iter()
            .find(|(n, _)| *n == vm)
            .map(|(_, u)| *u)
            .unwrap_or_else(|| panic!("no underlay for {vm}"))
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
        if let Some(r) = &self.router {
            s.push_str(&r.report());
        }
        for vm in &self.vms {
            s.push_str(&vm.report());
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
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
fn two_hypervisors_encapsulate_fail_over_and_isolate_vnis() {
    skip_unless_ready!(
        "two_hypervisors_encapsulate_fail_over_and_isolate_vnis",
        TOOLS
    );
    let mut lab = setup().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = scenario(&mut lab) {
        let report = lab.report();
        panic!("{e}\n\n{report}");
    }
}

/// Daemons and the router namespace; every failure after the first daemon is reported with
/// the daemons' output.
fn setup() -> Result<Lab, String> {
    let scratch = Scratch::new(&Names::new())?;
    let mut hvs = Vec::new();
    for h in &HVS {
        let names = Names::new();
        let port = free_port();
        let args = hypervisor_args(&names, VF_COUNT, port, h.underlay, ROUTER_LL, h.extra);
        let daemon = Daemon::start(
            &args,
            port,
            names.taps(VF_COUNT),
            scratch.path(&format!("{}.log", h.name)),
        )?;
        step!("{} up: {}", h.name, daemon.cmdline);
        let api = Api::connect(port)?;
        hvs.push(Hv { names, daemon, api });
    }
    let router_ns = hvs[0].names.netns("rtr");
    let mut lab = Lab {
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
        lab.router = Some(router);
        Ok::<(), String>(())
    })();
    match r {
        Ok(()) => Ok(lab),
        Err(e) => Err(format!("{e}\n\n{}", lab.report())),
    }
}

fn scenario(lab: &mut Lab) -> Result<(), String> {
    step!(
        "router {} holds {:?}",
        lab.router().ns.name,
        (0..2)
            .flat_map(|h| [lab.pf(h, 0), lab.pf(h, 1)])
            .collect::<Vec<_>>()
    );

    // The router reaches each hypervisor's own underlay address: the daemons answer neighbor
    // solicitations and echo requests on their uplinks (and find the router's MAC by NS).
    for h in &HVS {
        let t = Instant::now();
        wait_until(
            &format!("the router to ping {} ({})", h.name, h.underlay),
            Duration::from_secs(20),
            || {
                let o = lab.router().ping(h.underlay)?;
                o.check().map(|_| ())
            },
        )?;
        step!(
            "router -> {} {}: ping ok after {:?}",
            h.name,
            h.underlay,
            t.elapsed()
        );
    }

    create_interfaces(lab)?;
    create_routes(lab)?;
    start_vms(lab)?;

    // Same VNI across hosts: both ways, both families.
    let first = Instant::now();
    wait_until(
        "vm1 to reach vm2 for the first time",
        Duration::from_secs(15),
        || lab.vm("vm1").ping(&def("vm2").ipv4.to_string())?.check(),
    )?;
    step!("vm1 -> vm2 reachable after {:?}", first.elapsed());
    for (a, b) in [("vm1", "vm2"), ("vm2", "vm1")] {
        for dst in [def(b).ipv4.to_string(), def(b).ipv6.to_string()] {
            expect_ping(lab.vm(a), &dst)?;
            step!("{a} -> {b} ({dst}): ping ok");
        }
    }

    check_encapsulation(lab)?;
    check_vni_isolation(lab)?;
    check_path_mtu(lab)?;
    check_iperf3(lab)?;
    check_wcmp(lab)?;
    check_fail_over(lab)?;
    check_default_routes(lab)?;
    check_vni_peering(lab)?;
    check_route_delete(lab)?;
    Ok(())
}

fn create_interfaces(lab: &mut Lab) -> Result<(), String> {
    for hv in &mut lab.hvs {
        hv.api.init()?;
    }
    for d in &VMS {
        let device = lab.hvs[d.hv].names.vf(d.vf);
        let r = lab.hvs[d.hv].api.create_interface(&IfaceSpec {
            id: d.name,
            vni: d.vni,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            device: &device,
            hostname: None,
        })?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("CreateInterface {}: bad underlay_route: {e}", d.name))?;
        let host: Ipv6Addr = HVS[d.hv].underlay.parse().expect("valid");
        ensure(ul.segments()[..4] == host.segments()[..4], || {
            format!(
                "{}: underlay {ul} is not inside {}",
                d.name, HVS[d.hv].prefix
            )
        })?;
        step!(
            "{}: created {} (VNI {}, {}, {}) on {device}: underlay {ul}",
            HVS[d.hv].name,
            d.name,
            d.vni,
            d.ipv4,
            d.ipv6
        );
        lab.underlays.push((d.name, ul));
    }
    // Every interface's underlay address answers on the underlay (NS + echo).
    for d in &VMS {
        let ul = lab.underlay(d.name).to_string();
        wait_until(
            &format!("the router to ping {}'s underlay {ul}", d.name),
            Duration::from_secs(10),
            || lab.router().ping(&ul)?.check().map(|_| ()),
        )?;
        step!("router -> {}'s underlay {ul}: ping ok", d.name);
    }
    Ok(())
}

/// The routes metalnet would create: each host's VNI 100 reaches the other host's VM prefix via
/// that VM's underlay address. VNI 200 gets none.
fn create_routes(lab: &mut Lab) -> Result<(), String> {
    let (ul1, ul2) = (lab.underlay("vm1"), lab.underlay("vm2"));
    let routes: [(usize, &str, u8, Ipv6Addr); 4] = [
        (0, "10.100.2.0", 24, ul2),
        (0, "2000:100:2::", 64, ul2),
        (1, "10.100.1.0", 24, ul1),
        (1, "2000:100:1::", 64, ul1),
    ];
    for (hv, prefix, len, nh) in routes {
        let p: IpAddr = prefix.parse().expect("valid");
        lab.hvs[hv].api.create_route(100, p, len, 100, nh)?;
        step!(
            "{}: route VNI 100 {p}/{len} -> VNI 100 via {nh}",
            HVS[hv].name
        );
    }
    // ListRoutes lists the IPv4 routes (as dpservice does); the CLI shows the same.
    for (hv, prefix, nh) in [(0, "10.100.2.0", ul2), (1, "10.100.1.0", ul1)] {
        let p: IpAddr = prefix.parse().expect("valid");
        let listed = lab.hvs[hv].api.list_routes(100)?;
        ensure(listed.contains(&(p, 24, 100, IpAddr::V6(nh))), || {
            format!(
                "{}: ListRoutes(100) = {listed:?}, want {p}/24 via {nh}",
                HVS[hv].name
            )
        })?;
        let cli = Cli::new(lab.hvs[hv].daemon.port)?;
        let j = cli.json(&["list", "routes", "--vni", "100"])?;
        let found = j["items"].as_array().is_some_and(|items| {
            items.iter().any(|i| {
                i["spec"]["prefix"] == format!("{p}/24").as_str()
                    && i["spec"]["next_hop"]["address"] == nh.to_string().as_str()
                    && i["spec"]["next_hop"]["vni"] == 100
            })
        });
        ensure(found, || {
            format!(
                "{}: `dpservice-cli list routes --vni 100` lacks {p}/24: {j}",
                HVS[hv].name
            )
        })?;
    }
    Ok(())
}

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
        let opts = lab.vms[idx].udhcpc(&lab.scratch)?;
        ensure(opts.get("ip") == Some(&d.ipv4.to_string()), || {
            format!("{}: udhcpc got {opts:?}", d.name)
        })?;
        ensure(opts.get("mtu") == Some(&VM_MTU.to_string()), || {
            format!("{}: udhcpc got mtu {:?}", d.name, opts.get("mtu"))
        })?;
        let (vm, scratch) = (&mut lab.vms[idx], &lab.scratch);
        vm.dhclient6(scratch, &d.ipv6.to_string())?;
        vm.wait_ra_default_route()
            .map_err(|e| format!("{}: {e}", d.name))?;
        step!(
            "{}: DHCP {} (MTU {VM_MTU}), DHCPv6 {}, RA default route",
            d.name,
            d.ipv4,
            d.ipv6
        );
    }
    Ok(())
}

fn expect_ping(vm: &Vm, dst: &str) -> Result<(), String> {
    let out = vm.ping(dst)?;
    ensure(out.ok(), || {
        format!("{} cannot ping {dst}:\n{out}", vm.name)
    })
}

/// Three echo requests, none answered (bounded: ~2 s).
fn expect_no_ping(vm: &Vm, dst: &str, why: &str) -> Result<(), String> {
    let out = run(
        &mut vm
            .ns
            .command(&["ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", dst]),
        Duration::from_secs(8),
    )?;
    ensure(
        !out.ok() && out.stdout.contains("3 packets transmitted, 0 received"),
        || {
            format!(
                "{} can ping {dst} although {why} (or ping failed to send):\n{out}",
                vm.name
            )
        },
    )
}

/// Captures on both of `hv`'s uplinks (router side) while `f` runs; returns the parsed frames
/// per uplink (index 0 = pf0).
fn capture_uplinks(
    lab: &Lab,
    hv: usize,
    tag: &str,
    filter: &str,
    f: impl FnOnce() -> Result<(), String>,
) -> Result<[Vec<Outer6>; 2], String> {
    let mut caps = Vec::new();
    for i in 0..2 {
        let link = lab.pf(hv, i);
        caps.push(Capture::start(
            &lab.router().ns,
            &link,
            filter,
            lab.scratch.path(&format!("{tag}-{link}.pcap")),
        )?);
    }
    f()?;
    let mut out: [Vec<Outer6>; 2] = [Vec::new(), Vec::new()];
    for (i, c) in caps.into_iter().enumerate() {
        out[i] = c.stop()?.iter().filter_map(|f| parse_outer6(f)).collect();
    }
    Ok(out)
}

/// A capture in the router shows vm1 -> vm2 pings as IPv6 from vm1's underlay address to vm2's,
/// next header 4 (IPv4 inside) and 41 (IPv6 inside).
fn check_encapsulation(lab: &Lab) -> Result<(), String> {
    let (ul1, ul2) = (lab.underlay("vm1"), lab.underlay("vm2"));
    let (v1, v2) = (def("vm1"), def("vm2"));
    let frames = capture_uplinks(
        lab,
        0,
        "encap",
        &format!("ip6 and src host {ul1} and dst host {ul2}"),
        || {
            expect_ping(lab.vm("vm1"), &v2.ipv4.to_string())?;
            expect_ping(lab.vm("vm1"), &v2.ipv6.to_string())
        },
    )?;
    let all: Vec<&Outer6> = frames.iter().flatten().collect();
    let listing = || all.iter().map(|o| format!("  {o}\n")).collect::<String>();
    let v4: Vec<&&Outer6> = all
        .iter()
        .filter(|o| {
            o.next_header == 4
                && matches!(o.inner, Inner::V4 { src, dst, proto: 1, .. }
                            if src == v1.ipv4 && dst == v2.ipv4)
        })
        .collect();
    let v6: Vec<&&Outer6> = all
        .iter()
        .filter(|o| {
            o.next_header == 41
                && o.inner.src() == Some(IpAddr::V6(v1.ipv6))
                && o.inner.dst() == Some(IpAddr::V6(v2.ipv6))
                && matches!(
                    o.inner,
                    Inner::V6 {
                        next_header: 58,
                        ..
                    }
                )
        })
        .collect();
    ensure(v4.len() >= 3 && v6.len() >= 3, || {
        format!(
            "want >= 3 IPv4-in-IPv6 (nh 4) and >= 3 IPv6-in-IPv6 (nh 41) echo requests \
             {ul1} -> {ul2}; captured {} and {}:\n{}",
            v4.len(),
            v6.len(),
            listing()
        )
    })?;
    ensure(all.iter().all(|o| o.hop_limit > 1), || {
        format!("outer hop limit too low:\n{}", listing())
    })?;
    // One flow, one flow label (it is derived from the inner 5-tuple).
    let labels4: BTreeSet<u32> = v4.iter().map(|o| o.flow_label).collect();
    let labels6: BTreeSet<u32> = v6.iter().map(|o| o.flow_label).collect();
    ensure(labels4.len() == 1 && labels6.len() == 1, || {
        format!(
            "the packets of one ping carry different flow labels ({labels4:x?}, {labels6:x?}):\n{}",
            listing()
        )
    })?;
    step!(
        "capture on hv1's uplinks (pf0 {} frames, pf1 {}): e.g.\n    {}\n    {}",
        frames[0].len(),
        frames[1].len(),
        v4[0],
        v6[0]
    );
    Ok(())
}

/// vm3 (VNI 200 on hv1) has no route to hv2: it cannot reach vm2, and nothing of it leaves hv1.
fn check_vni_isolation(lab: &Lab) -> Result<(), String> {
    let ul3 = lab.underlay("vm3");
    let frames = capture_uplinks(
        lab,
        0,
        "isolation",
        &format!("ip6 and src host {ul3}"),
        || {
            for dst in [def("vm2").ipv4.to_string(), def("vm2").ipv6.to_string()] {
                expect_no_ping(lab.vm("vm3"), &dst, "vm3 is in VNI 200, vm2 in VNI 100")?;
                step!("vm3 -> vm2 ({dst}): no reply, as it must be");
            }
            for dst in [def("vm3").ipv4.to_string(), def("vm3").ipv6.to_string()] {
                expect_no_ping(lab.vm("vm2"), &dst, "vm2 is in VNI 100, vm3 in VNI 200")?;
                step!("vm2 -> vm3 ({dst}): no reply, as it must be");
            }
            Ok(())
        },
    )?;
    let n = frames[0].len() + frames[1].len();
    ensure(n == 0, || {
        format!(
            "{n} frames left hv1 with vm3's underlay address {ul3} as source: {:?}",
            frames
        )
    })
}

/// With a 1500-byte VM MTU a full-size DF packet no longer fits after encapsulation: the
/// dataplane answers "fragmentation needed" / "packet too big" with MTU 1460, and a packet of
/// exactly 1460 bytes then goes through.
fn check_path_mtu(lab: &Lab) -> Result<(), String> {
    let vm = lab.vm("vm1");
    vm.ns
        .output(&["ip", "link", "set", "dev", &vm.ifname, "mtu", "1500"])?;
    let r = (|| {
        let v2 = def("vm2");
        let cases = [
            (v2.ipv4.to_string(), 1472, 1432, "mtu = 1460", "mtu=1460"),
            (v2.ipv6.to_string(), 1452, 1412, "mtu=1460", "mtu: 1460"),
        ];
        for (dst, big, fits, a, b) in cases {
            let s = big.to_string();
            let out = run(
                &mut vm.ns.command(&[
                    "ping", "-n", "-M", "do", "-c", "3", "-i", "0.3", "-W", "1", "-s", &s, &dst,
                ]),
                Duration::from_secs(10),
            )?;
            let text = format!("{}{}", out.stdout, out.stderr);
            ensure(text.contains(a) || text.contains(b), || {
                format!(
                    "ping -M do -s {big} {dst} with VM MTU 1500: no path-MTU feedback with MTU \
                     {PATH_MTU}:\n{out}"
                )
            })?;
            let feedback = text
                .lines()
                .find(|l| l.contains(a) || l.contains(b))
                .unwrap_or_default()
                .to_string();
            let s = fits.to_string();
            let out = run(
                &mut vm.ns.command(&[
                    "ping", "-n", "-M", "do", "-c", "2", "-i", "0.3", "-W", "1", "-s", &s, &dst,
                ]),
                Duration::from_secs(10),
            )?;
            ensure(out.ok(), || {
                format!("a {PATH_MTU}-byte DF packet to {dst} does not get through:\n{out}")
            })?;
            step!("path MTU to {dst}: {feedback:?}; -s {fits} (={PATH_MTU} bytes) passes");
        }
        Ok(())
    })();
    let vm = lab.vm("vm1");
    vm.ns.output(&[
        "ip",
        "link",
        "set",
        "dev",
        &vm.ifname,
        "mtu",
        &VM_MTU.to_string(),
    ])?;
    r
}

/// iperf3 TCP vm1 -> vm2 (3 s) completes; prints its throughput.
fn check_iperf3(lab: &Lab) -> Result<(), String> {
    let (vm1, vm2) = (lab.vm("vm1"), lab.vm("vm2"));
    let server_addr = def("vm2").ipv4.to_string();
    let mut server = Background::spawn(
        &mut vm2
            .ns
            .command(&["iperf3", "-s", "-1", "-B", &server_addr, "-p", "5201"]),
        &lab.scratch.path("iperf3-server"),
    )?;
    wait_until(
        "iperf3 -s to listen in vm2",
        Duration::from_secs(10),
        || {
            if let Some(st) = server.try_exit() {
                return Ok(Err(format!(
                    "iperf3 -s exited with {st}: {}",
                    server.stderr()
                )));
            }
            let l = vm2.ns.output(&["ss", "-Hltn", "sport", "=", ":5201"])?;
            if l.trim().is_empty() {
                Err("not listening".into())
            } else {
                Ok(Ok(()))
            }
        },
    )??;
    let out = run(
        &mut vm1.ns.command(&[
            "iperf3",
            "-c",
            &server_addr,
            "-p",
            "5201",
            "-t",
            "3",
            "-J",
            "--connect-timeout",
            "3000",
        ]),
        Duration::from_secs(30),
    )?
    .check()?;
    let _ = server.wait(Duration::from_secs(5));
    let j: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("iperf3 -J: {e}\n{out}"))?;
    let bps = j["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| format!("iperf3 -J without end.sum_received: {out}"))?;
    let bytes = j["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    let retr = j["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    ensure(bytes > 0.0, || format!("iperf3 moved no data:\n{out}"))?;
    step!(
        "RESULT iperf3 TCP vm1 -> vm2 (3 s, VM MTU {VM_MTU}): {:.2} Gbit/s received, \
         {:.0} MB, {retr} retransmits",
        bps / 1e9,
        bytes / 1e6
    );
    Ok(())
}

/// hv2 runs with `--wcmp 50`: 64 UDP flows from vm2 leave over both of its uplinks, with
/// different flow labels.
fn check_wcmp(lab: &Lab) -> Result<(), String> {
    let ul2 = lab.underlay("vm2");
    let dst = def("vm1").ipv4;
    let script =
        format!("for p in $(seq 20000 20063); do echo wcmp > /dev/udp/{dst}/$p || exit 1; done");
    let frames = capture_uplinks(
        lab,
        1,
        "wcmp",
        &format!("ip6 and src host {ul2} and ip6 proto 4"),
        || {
            run(
                &mut lab.vm("vm2").ns.command(&["bash", "-c", &script]),
                Duration::from_secs(10),
            )?
            .check()
            .map(|_| ())
        },
    )?;
    let udp = |v: &Vec<Outer6>| {
        v.iter()
            .filter(|o| matches!(o.inner, Inner::V4 { proto: 17, .. }))
            .count()
    };
    let (n0, n1) = (udp(&frames[0]), udp(&frames[1]));
    let labels: BTreeSet<u32> = frames
        .iter()
        .flatten()
        .filter(|o| matches!(o.inner, Inner::V4 { proto: 17, .. }))
        .map(|o| o.flow_label)
        .collect();
    step!(
        "RESULT WCMP (--wcmp 50) 64 UDP flows vm2 -> vm1: {n0} on pf0, {n1} on pf1, \
         {} distinct flow labels",
        labels.len()
    );
    ensure(n0 + n1 >= 60, || {
        format!("only {} of 64 UDP datagrams seen on hv2's uplinks", n0 + n1)
    })?;
    ensure(n0 > 0 && n1 > 0, || {
        format!("--wcmp 50 put every one of 64 flows on one uplink: pf0 {n0}, pf1 {n1}")
    })?;
    ensure(labels.len() > 8, || {
        format!(
            "64 flows carry only {} distinct flow labels: {labels:x?}",
            labels.len()
        )
    })
}

/// A reply of `ping -D`: (unix time in seconds, icmp_seq).
fn parse_ping_replies(text: &str) -> Vec<(f64, u32)> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            let t = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let seq = l.split("icmp_seq=").nth(1)?.split_whitespace().next()?;
            Some((t, seq.parse().ok()?))
        })
        .collect()
}

/// A continuous ping vm1 -> vm2 while the router sets hv1's pf0 down for 3 s, then up again:
/// the flow moves to pf1 and back. Asserts bounded loss and that the flow used pf1 while pf0
/// was down and pf0 again after; prints loss, the longest reply gap, when the daemon saw the
/// link change (its log) and when the first encapsulated packet appeared on the other uplink
/// (captures in the router).
fn check_fail_over(lab: &Lab) -> Result<(), String> {
    const COUNT: u32 = 200;
    const INTERVAL: f64 = 0.05;
    let (pf0, pf1) = (lab.pf(0, 0), lab.pf(0, 1));
    let router = lab.router();
    let (ul1, ul2) = (lab.underlay("vm1"), lab.underlay("vm2"));
    let flow = format!("ip6 and src host {ul1} and dst host {ul2}");
    let dst = def("vm2").ipv4.to_string();
    let cap1 = Capture::start(
        &router.ns,
        &pf1,
        &flow,
        lab.scratch.path("failover-pf1.pcap"),
    )?;
    let mut ping = Background::spawn(
        &mut lab.vm("vm1").ns.command(&[
            "ping",
            "-D",
            "-n",
            "-i",
            &INTERVAL.to_string(),
            "-c",
            &COUNT.to_string(),
            "-W",
            "1",
            &dst,
        ]),
        &lab.scratch.path("failover-ping"),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let pf1_before = router.rx_packets(&pf1)?;
    let t_down = unix_now();
    router.link_down(&pf0)?;
    std::thread::sleep(Duration::from_secs(3));
    let pf1_during = router.rx_packets(&pf1)? - pf1_before;
    let t_up = unix_now();
    router.link_up(&pf0)?;
    // tcpdump cannot listen on a link that is down: the pf0 capture starts now.
    let cap0 = Capture::start(
        &router.ns,
        &pf0,
        &flow,
        lab.scratch.path("failover-pf0.pcap"),
    )?;
    let t_cap0 = unix_now();
    let out = ping.wait(Duration::from_secs(25))?;
    let on_pf1 = cap1.stop_timed()?;
    let on_pf0 = cap0.stop_timed()?;

    let replies = parse_ping_replies(&out.stdout);
    let received = replies.len() as u32;
    let loss = 100.0 * f64::from(COUNT - received.min(COUNT)) / f64::from(COUNT);
    // Longest silence between consecutive replies.
    let mut longest = (0.0f64, 0u32, 0u32);
    for w in replies.windows(2) {
        let gap = w[1].0 - w[0].0;
        if gap > longest.0 {
            longest = (gap, w[0].1, w[1].1);
        }
    }
    let answered_while_down = replies
        .iter()
        .filter(|(t, _)| *t > t_down + 1.0 && *t < t_up)
        .count();
    let answered_after_up = replies.iter().filter(|(t, _)| *t > t_up + 1.0).count();
    // First encapsulated packet of the flow on pf1 after the down, on pf0 after the up.
    let first_after = |frames: &[(f64, Vec<u8>)], t0: f64| {
        frames
            .iter()
            .filter(|(t, f)| *t >= t0 && parse_outer6(f).is_some())
            .map(|(t, _)| t - t0)
            .next()
    };
    let to_pf1 = first_after(&on_pf1, t_down);
    let to_pf0 = first_after(&on_pf0, t_up);
    let log = &lab.hvs[0].daemon.log;
    let seen_down = log_event_after(log, &format!("link down port={pf0}"), t_down - 0.5);
    let seen_up = log_event_after(log, &format!("link up port={pf0}"), t_up - 0.5);
    let ms = |d: Option<f64>| d.map_or("-".to_string(), |d| format!("{:.0} ms", d * 1e3));
    step!(
        "RESULT fail-over (hv1 pf0 down 3 s, then up; ping -i {INTERVAL} -c {COUNT}): \
         {received}/{COUNT} replies, {loss:.1}% loss; longest reply gap {:.0} ms (icmp_seq {} \
         -> {}); daemon logged pf0 down {} and up {} after the router's change; first packet \
         on pf1 {} after the down, on pf0 {} after the up (an upper bound: that capture \
         was confirmed listening only {:.0} ms after the up); {answered_while_down} replies while pf0 was down, {answered_after_up} after; pf1 \
         carried {pf1_during} packets while pf0 was down",
        longest.0 * 1e3,
        longest.1,
        longest.2,
        ms(seen_down.map(|t| t - t_down)),
        ms(seen_up.map(|t| t - t_up)),
        ms(to_pf1),
        ms(to_pf0),
        (t_cap0 - t_up) * 1e3,
    );
    let summary = || format!("{out}");
    ensure(loss < 25.0, || {
        format!("fail-over lost {loss:.1}% of the pings:\n{}", summary())
    })?;
    ensure(answered_while_down >= 10 && pf1_during >= 10, || {
        format!(
            "with pf0 down only {answered_while_down} pings were answered and pf1 carried \
             {pf1_during} packets:\n{}",
            summary()
        )
    })?;
    ensure(answered_after_up >= 10, || {
        format!(
            "after pf0 came back only {answered_after_up} pings were answered:\n{}",
            summary()
        )
    })?;
    // Back on pf0 (hv1 keeps --wcmp 100): pings leave through it again.
    let t = Instant::now();
    wait_until(
        "vm1's flow to return to hv1's pf0",
        Duration::from_secs(10),
        || {
            let before = router.rx_packets(&pf0)?;
            let o = run(
                &mut lab
                    .vm("vm1")
                    .ns
                    .command(&["ping", "-n", "-i", "0.05", "-c", "20", "-W", "1", &dst]),
                Duration::from_secs(5),
            )?;
            let moved = router.rx_packets(&pf0)? - before;
            if o.ok() && moved >= 18 {
                Ok(())
            } else {
                Err(format!("pf0 carried {moved} packets of 20 pings:\n{o}"))
            }
        },
    )?;
    step!(
        "after pf0 came back, vm1's flow uses it again (checked within {:?})",
        t.elapsed()
    );
    Ok(())
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time (Unix seconds) of the first line of the daemon's log containing `needle` logged
/// at or after `after`. Log lines start with an RFC 3339 UTC timestamp
/// (`2026-11-22T00:42:52.606208Z`).
fn log_event_after(log: &std::path::Path, needle: &str, after: f64) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| parse_rfc3339(l.split_whitespace().next()?))
        .find(|t| *t >= after)
}

fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

#[test]
fn rfc3339_timestamps_parse() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1.5));
    assert_eq!(
        parse_rfc3339("2026-11-22T00:42:52.606208Z").map(|t| (t * 1e6).round() as i64),
        Some(1_795_308_172_606_208)
    );
    assert_eq!(parse_rfc3339("garbage"), None);
}

/// Default routes work like any other: hv2 replaces its routes to vm1's prefixes by
/// `0.0.0.0/0` and `::/0` via vm1's underlay address.
fn check_default_routes(lab: &mut Lab) -> Result<(), String> {
    let ul1 = lab.underlay("vm1");
    for (prefix, len, default) in [("10.100.1.0", 24, "0.0.0.0"), ("2000:100:1::", 64, "::")] {
        let p: IpAddr = prefix.parse().expect("valid");
        let d: IpAddr = default.parse().expect("valid");
        lab.hvs[1].api.delete_route(100, p, len)?;
        lab.hvs[1].api.create_route(100, d, 0, 100, ul1)?;
    }
    for (a, b) in [("vm2", "vm1"), ("vm1", "vm2")] {
        for dst in [def(b).ipv4.to_string(), def(b).ipv6.to_string()] {
            expect_ping(lab.vm(a), &dst)?;
        }
    }
    step!("hv2: 0.0.0.0/0 and ::/0 via vm1's underlay instead of its prefixes: vm1 <-> vm2 ok");
    Ok(())
}

/// VNI peering: a route in VNI 200 on hv1 whose next hop is VNI 100 (vm2), and the way back
/// in VNI 100 on hv2 to VNI 200 (vm3), let vm3 reach vm2; deleting them isolates again.
fn check_vni_peering(lab: &mut Lab) -> Result<(), String> {
    let (ul2, ul3) = (lab.underlay("vm2"), lab.underlay("vm3"));
    let to_vm2: IpAddr = "10.100.2.0".parse().expect("valid");
    let to_vm3: IpAddr = "10.200.1.0".parse().expect("valid");
    lab.hvs[0].api.create_route(200, to_vm2, 24, 100, ul2)?;
    lab.hvs[1].api.create_route(100, to_vm3, 24, 200, ul3)?;
    expect_ping(lab.vm("vm3"), &def("vm2").ipv4.to_string())?;
    expect_ping(lab.vm("vm2"), &def("vm3").ipv4.to_string())?;
    step!("peering routes VNI 200 <-> VNI 100: vm3 <-> vm2 ping ok");
    lab.hvs[0].api.delete_route(200, to_vm2, 24)?;
    lab.hvs[1].api.delete_route(100, to_vm3, 24)?;
    expect_no_ping(
        lab.vm("vm3"),
        &def("vm2").ipv4.to_string(),
        "the peering routes were deleted",
    )?;
    step!("peering routes deleted: vm3 -> vm2 no reply again");
    Ok(())
}

/// Deleting hv1's route to vm2 stops vm1 -> vm2 in that family only; the CLI deletes the IPv4
/// route, the API the IPv6 one.
fn check_route_delete(lab: &mut Lab) -> Result<(), String> {
    let v2 = def("vm2");
    let cli = Cli::new(lab.hvs[0].daemon.port)?;
    cli.ok(&[
        "delete",
        "route",
        "--vni",
        "100",
        "--prefix",
        "10.100.2.0/24",
    ])?;
    let p4: IpAddr = "10.100.2.0".parse().expect("valid");
    let listed = lab.hvs[0].api.list_routes(100)?;
    ensure(!listed.iter().any(|r| (r.0, r.1) == (p4, 24)), || {
        format!("hv1 still lists 10.100.2.0/24 in VNI 100 after the delete: {listed:?}")
    })?;
    expect_no_ping(lab.vm("vm1"), &v2.ipv4.to_string(), "the route was deleted")?;
    expect_ping(lab.vm("vm1"), &v2.ipv6.to_string())?;
    step!("hv1: deleted 10.100.2.0/24 (CLI): vm1 -> vm2 IPv4 stops, IPv6 still flows");
    let p6: IpAddr = "2000:100:2::".parse().expect("valid");
    lab.hvs[0].api.delete_route(100, p6, 64)?;
    expect_no_ping(lab.vm("vm1"), &v2.ipv6.to_string(), "the route was deleted")?;
    let again = lab.hvs[0].api.delete_route(100, p6, 64);
    ensure(
        again.as_ref().is_err_and(|e| e.contains("ROUTE_NOT_FOUND")),
        || format!("deleting the deleted route again: {again:?}"),
    )?;
    step!("hv1: deleted 2000:100:2::/64 (API): vm1 -> vm2 IPv6 stops; again -> ROUTE_NOT_FOUND");
    Ok(())
}
