//! System tests: the real `dpservice` daemon with TAP ports, VMs as network namespaces,
//! stock DHCP clients (busybox udhcpc, ISC dhclient) and ping.
//!
//! They need root and `ip`, `udhcpc` (or busybox), `dhclient`, `ping`, `unshare`; without
//! them each test prints `SKIPPED <test>: <reason>` and passes (scripts/test.sh installs the
//! tools). Every name is unique per run, every wait bounded, and guards remove daemons,
//! namespaces and temporary files on success and on failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::cli::{cli_binary, Cli};
use support::daemon::{standard_args, Daemon, STOP_TIMEOUT};
use support::vm::Vm;
use support::{ensure, links_with_prefix, run, run_args, wait_until, Names, Scratch, DAEMON};

/// Tools the DHCP/ping scenario needs.
const SCENARIO_TOOLS: &[&str] = &["ip", "udhcpc", "dhclient", "ping", "unshare", "ipv6"];
/// Tools the daemon-only tests need.
const DAEMON_TOOLS: &[&str] = &["ip"];

const V4_GATEWAY: &str = "169.254.0.1";
const MTU: u32 = 1400;
const DNS4: &str = "10.0.0.53";
const DNS6: &str = "2001:db8::53";

// ---------------------------------------------------------------------------------------
// The lab: a daemon, VMs, and their teardown in the right order.
// ---------------------------------------------------------------------------------------

struct Lab {
    names: Names,
    vms: Vec<Vm>,
    daemon: Option<Daemon>,
    scratch: Scratch,
}

impl Lab {
    fn start(vf_count: usize) -> Result<Lab, String> {
        let names = Names::new();
        let scratch = Scratch::new(&names)?;
        let daemon = Daemon::start_standard(&names, vf_count, scratch.path("dpservice.log"))?;
        Ok(Lab {
            names,
            vms: Vec::new(),
            daemon: Some(daemon),
            scratch,
        })
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon present until drop")
    }

    fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}"))
    }

    /// Daemon output and the state of every VM, for failure messages.
    fn report(&self) -> String {
        let mut s = String::new();
        if let Some(d) = &self.daemon {
            s.push_str(&d.report());
            s.push('\n');
        }
        for vm in &self.vms {
            s.push_str(&vm.report());
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // DHCP clients first, then the daemon (its TAPs vanish, also inside the namespaces),
        // then the namespaces; the scratch directory goes last (field order).
        for vm in &mut self.vms {
            vm.clients.clear();
        }
        self.daemon.take();
        self.vms.clear();
    }
}

/// A VM to configure and the scratch directory for its client files.
fn vm_and_scratch<'a>(lab: &'a mut Lab, name: &str) -> (&'a mut Vm, &'a Scratch) {
    let vm = lab
        .vms
        .iter_mut()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no VM {name}"));
    (vm, &lab.scratch)
}

/// Runs `f` on the lab; on error panics with the error and the lab's report, while the lab
/// still exists (the guard cleans up afterwards).
fn run_in_lab(lab: &mut Lab, f: impl FnOnce(&mut Lab) -> Result<(), String>) {
    if let Err(e) = f(lab) {
        let report = lab.report();
        panic!("{e}\n\n{report}");
    }
}

/// Progress on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[system] {}", format!($($arg)*)) };
}

// ---------------------------------------------------------------------------------------
// Scenario: two VMs in VNI 100, one in VNI 200; DHCP, DHCPv6, RA, ping, isolation, delete.
// ---------------------------------------------------------------------------------------

struct VmDef {
    name: &'static str,
    vni: u32,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
    hostname: Option<&'static str>,
}

const VMS: [VmDef; 3] = [
    VmDef {
        name: "vm1",
        vni: 100,
        ipv4: Ipv4Addr::new(10, 100, 1, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1), // 2000:100:1::1 (VNI as text)
        hostname: Some("vm1-host"),
    },
    VmDef {
        name: "vm2",
        vni: 100,
        ipv4: Ipv4Addr::new(10, 100, 1, 2),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 2),
        hostname: None,
    },
    VmDef {
        name: "vm3",
        vni: 200,
        ipv4: Ipv4Addr::new(10, 200, 1, 3),
        ipv6: Ipv6Addr::new(0x2000, 0x200, 1, 0, 0, 0, 0, 3),
        hostname: None,
    },
];

fn def(name: &str) -> &'static VmDef {
    VMS.iter().find(|d| d.name == name).expect("known VM")
}

#[test]
fn vms_get_addresses_reach_each_other_within_a_vni_only() {
    skip_unless_ready!(
        "vms_get_addresses_reach_each_other_within_a_vni_only",
        SCENARIO_TOOLS
    );
    let mut lab = Lab::start(VMS.len()).unwrap_or_else(|e| panic!("{e}"));
    run_in_lab(&mut lab, scenario);
}

fn scenario(lab: &mut Lab) -> Result<(), String> {
    let mut api = Api::connect(lab.daemon().port)?;
    api.init()?;
    step!("daemon up: {}", lab.daemon().cmdline);

    // Interfaces over gRPC; each gets an underlay address inside the host's --ipv6 /64.
    let mut underlays = Vec::new();
    for (i, d) in VMS.iter().enumerate() {
        let device = lab.names.vf(i);
        let r = api.create_interface(&IfaceSpec {
            id: d.name,
            vni: d.vni,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            device: &device,
            hostname: d.hostname,
        })?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("CreateInterface {}: bad underlay_route: {e}", d.name))?;
        ensure(ul.segments()[..4] == [0xfc00, 1, 0, 0], || {
            format!("{}: underlay {ul} is not inside fc00:1::/64", d.name)
        })?;
        ensure(!underlays.contains(&ul), || {
            format!("{}: underlay {ul} given twice", d.name)
        })?;
        step!(
            "created {} (VNI {}, {}, {}) on {device}: underlay {ul}",
            d.name,
            d.vni,
            d.ipv4,
            d.ipv6
        );
        underlays.push(ul);
    }
    check_listed(&mut api, lab, &["vm1", "vm2", "vm3"])?;

    // VMs: namespaces holding the VF TAPs.
    for (i, d) in VMS.iter().enumerate() {
        let vm = Vm::new(d.name, &lab.names.netns(d.name), &lab.names.vf(i))?;
        lab.vms.push(vm);
    }

    // IPv4 by DHCP: udhcpc for vm1, dhclient for vm2 and vm3.
    let opts = lab.vm("vm1").udhcpc(&lab.scratch)?;
    let opt = |k: &str| opts.get(k).cloned().unwrap_or_default();
    ensure(opt("ip") == "10.100.1.1", || {
        format!("udhcpc got ip {:?}: {opts:?}", opt("ip"))
    })?;
    ensure(opt("mask") == "32", || {
        format!("udhcpc got mask {:?}: {opts:?}", opt("mask"))
    })?;
    ensure(opt("mtu") == MTU.to_string(), || {
        format!("udhcpc got mtu {:?}", opt("mtu"))
    })?;
    ensure(opt("hostname") == "vm1-host", || {
        format!("udhcpc got hostname {:?}", opt("hostname"))
    })?;
    ensure(opt("dns").split_whitespace().any(|d| d == DNS4), || {
        format!("udhcpc got dns {:?}", opt("dns"))
    })?;
    ensure(
        opt("staticroutes").contains("0.0.0.0/0 169.254.0.1"),
        || format!("udhcpc got staticroutes {:?}", opt("staticroutes")),
    )?;
    step!("vm1: udhcpc got {opts:?}");
    for name in ["vm2", "vm3"] {
        let ip = def(name).ipv4.to_string();
        let (vm, scratch) = vm_and_scratch(lab, name);
        vm.dhclient4(scratch, &ip)?;
        let resolv = lab.vm(name).ns.resolv_conf();
        ensure(resolv.contains(&format!("nameserver {DNS4}")), || {
            format!("{name}: dhclient wrote resolv.conf {resolv:?}, want nameserver {DNS4}")
        })?;
        step!("{name}: dhclient got {ip}, DNS {DNS4}");
    }
    for d in &VMS {
        check_ipv4_config(lab.vm(d.name), d)?;
        step!(
            "{}: {}/32, default via {V4_GATEWAY}, MTU {MTU}",
            d.name,
            d.ipv4
        );
    }

    // IPv6 by DHCPv6 (dhclient -6, after link-local DAD), default route by RA.
    for d in &VMS {
        let ip = d.ipv6.to_string();
        let (vm, scratch) = vm_and_scratch(lab, d.name);
        vm.dhclient6(scratch, &ip)?;
        let vm = lab.vm(d.name);
        vm.wait_ra_default_route()
            .map_err(|e| format!("{}: {e}", d.name))?;
        let resolv = vm.ns.resolv_conf();
        ensure(resolv.contains(&format!("nameserver {DNS6}")), || {
            format!(
                "{}: dhclient -6 wrote resolv.conf {resolv:?}, want nameserver {DNS6}",
                d.name
            )
        })?;
        step!(
            "{}: dhclient -6 got {ip}, RA default route via fe80::1, DNS {DNS6}",
            d.name
        );
    }

    // Same VNI: reachable both ways, both families.
    for (a, b) in [("vm1", "vm2"), ("vm2", "vm1")] {
        for dst in [def(b).ipv4.to_string(), def(b).ipv6.to_string()] {
            expect_ping(lab.vm(a), &dst)?;
            step!("{a} -> {b} ({dst}): ping ok");
        }
    }
    // Other VNI: unreachable both ways, both families.
    for (a, b) in [
        ("vm3", "vm1"),
        ("vm3", "vm2"),
        ("vm1", "vm3"),
        ("vm2", "vm3"),
    ] {
        for dst in [def(b).ipv4.to_string(), def(b).ipv6.to_string()] {
            expect_no_ping(lab.vm(a), &dst, &format!("{b} is in another VNI"))?;
            step!("{a} -> {b} ({dst}): no reply, as it must be");
        }
    }

    // Deleting vm2's interface cuts it off.
    api.delete_interface("vm2")?;
    check_listed(&mut api, lab, &["vm1", "vm3"])?;
    ensure(api.delete_interface("vm2").is_err(), || {
        "deleting vm2 a second time succeeded".to_string()
    })?;
    step!("deleted vm2");
    for dst in [def("vm2").ipv4.to_string(), def("vm2").ipv6.to_string()] {
        expect_no_ping(lab.vm("vm1"), &dst, "vm2's interface was deleted")?;
        step!("vm1 -> vm2 ({dst}) after delete: no reply, as it must be");
    }
    Ok(())
}

/// ListInterfaces returns exactly `ids`, each as created.
fn check_listed(api: &mut Api, lab: &Lab, ids: &[&str]) -> Result<(), String> {
    let list = api.list_interfaces()?;
    let mut got: Vec<String> = list
        .iter()
        .map(|i| String::from_utf8_lossy(&i.id).into_owned())
        .collect();
    got.sort();
    ensure(got == ids, || {
        format!("ListInterfaces: got {got:?}, want {ids:?}")
    })?;
    for iface in &list {
        let id = String::from_utf8_lossy(&iface.id).into_owned();
        let (idx, d) = VMS
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == id)
            .ok_or_else(|| format!("unexpected interface {id}"))?;
        let v4 = dp_proto::ipv4_from_bytes(&iface.primary_ipv4).ok();
        let v6 = dp_proto::ipv6_from_bytes(&iface.primary_ipv6).ok();
        ensure(
            iface.vni == d.vni
                && v4 == Some(d.ipv4)
                && v6 == Some(d.ipv6)
                && iface.pci_name == lab.names.vf(idx)
                && iface.hostname == d.hostname.unwrap_or_default(),
            || {
                format!(
                    "ListInterfaces: {id} is vni {} ipv4 {v4:?} ipv6 {v6:?} device {:?} \
                     hostname {:?}; want vni {} {} {} {:?} {:?}",
                    iface.vni,
                    iface.pci_name,
                    iface.hostname,
                    d.vni,
                    d.ipv4,
                    d.ipv6,
                    lab.names.vf(idx),
                    d.hostname.unwrap_or_default()
                )
            },
        )?;
    }
    Ok(())
}

/// The address is a /32, the default route goes via 169.254.0.1, the MTU is --dhcp-mtu.
fn check_ipv4_config(vm: &Vm, d: &VmDef) -> Result<(), String> {
    let addrs = vm.ipv4_addrs()?;
    ensure(addrs.contains(&format!("inet {}/32 ", d.ipv4)), || {
        format!("{}: want {}/32, have: {addrs}", d.name, d.ipv4)
    })?;
    let routes = vm.ipv4_routes()?;
    ensure(
        routes
            .lines()
            .any(|l| l.starts_with(&format!("default via {V4_GATEWAY} "))),
        || format!("{}: no default route via {V4_GATEWAY}: {routes}", d.name),
    )?;
    let mtu = vm.mtu()?;
    ensure(mtu == MTU, || format!("{}: MTU {mtu}, want {MTU}", d.name))
}

fn expect_ping(vm: &Vm, dst: &str) -> Result<(), String> {
    let out = vm.ping(dst)?;
    ensure(out.ok(), || {
        format!("{} cannot ping {dst}:\n{out}", vm.name)
    })
}

/// Sends 3 echo requests (bounded: ~1.5 s); passes iff none is answered. A ping that cannot
/// even send (no route) fails too: the VM was configured, so that would be a different bug.
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

// ---------------------------------------------------------------------------------------
// Start-up errors: non-zero exit, one line on stderr, nothing left behind.
// ---------------------------------------------------------------------------------------

/// Runs the daemon with the standard arguments changed by `edit`; it must fail at once.
fn expect_startup_error(
    test: &str,
    edit: impl FnOnce(&mut Vec<String>),
    port: u16,
    mentions: &[&str],
) {
    let names = Names::new();
    let mut args = standard_args(&names, 2, port);
    edit(&mut args);
    let out = run_args(DAEMON, &args, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{test}: daemon did not exit on a start-up error: {e}"));
    // Whatever happened, nothing of ours may remain.
    let leftovers = wait_until("TAPs to vanish", Duration::from_secs(3), || {
        let l = links_with_prefix(&names.tag);
        if l.is_empty() {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    });
    assert!(!out.ok(), "{test}: the daemon exited successfully:\n{out}");
    assert!(
        out.status.code().is_some(),
        "{test}: the daemon died of a signal:\n{out}"
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{test}: want exactly one line on stderr:\n{out}"
    );
    let line = lines[0].to_lowercase();
    assert!(
        mentions.iter().any(|m| line.contains(&m.to_lowercase())),
        "{test}: the message should mention one of {mentions:?}:\n{out}"
    );
    assert!(leftovers.is_ok(), "{test}: TAPs left behind: {leftovers:?}");
}

fn set_arg(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} not in {args:?}"));
    args[i + 1] = value.to_string();
}

#[test]
fn startup_rejects_unknown_nic_type() {
    skip_unless_ready!("startup_rejects_unknown_nic_type", DAEMON_TOOLS);
    expect_startup_error(
        "startup_rejects_unknown_nic_type",
        |a| set_arg(a, "--nic-type", "bogus"),
        support::free_port(),
        &["nic-type", "bogus"],
    );
}

#[test]
fn startup_rejects_bad_ipv6() {
    skip_unless_ready!("startup_rejects_bad_ipv6", DAEMON_TOOLS);
    expect_startup_error(
        "startup_rejects_bad_ipv6",
        |a| set_arg(a, "--ipv6", "fc00::1::2"),
        support::free_port(),
        &["ipv6", "fc00::1::2"],
    );
}

#[test]
fn startup_fails_when_grpc_port_is_taken() {
    skip_unless_ready!("startup_fails_when_grpc_port_is_taken", DAEMON_TOOLS);
    // [::]:port (dual-stack) conflicts with 127.0.0.1, 0.0.0.0 and [::] binds alike.
    let holder = TcpListener::bind("[::]:0")
        .or_else(|_| TcpListener::bind("0.0.0.0:0"))
        .expect("bind a port to hold");
    let port = holder.local_addr().expect("local addr").port();
    expect_startup_error(
        "startup_fails_when_grpc_port_is_taken",
        |_| {},
        port,
        &[&port.to_string(), "in use", "address"],
    );
    drop(holder);
}

// ---------------------------------------------------------------------------------------
// Shutdown: SIGTERM and SIGINT stop the daemon cleanly and remove every TAP.
// ---------------------------------------------------------------------------------------

fn stops_cleanly_on(test: &str, sig: libc::c_int) {
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let mut d = Daemon::start_standard(&names, 2, scratch.path("dpservice.log"))
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    let taps = names.taps(2);
    assert_eq!(
        links_with_prefix(&names.tag),
        {
            let mut t = taps.clone();
            t.sort();
            t
        },
        "{test}: exactly the TAPs asked for"
    );
    let status = d
        .stop_with(sig, STOP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}"));
    assert!(
        status.success(),
        "{test}: exit status after signal {sig}: {status}\n{}",
        d.report()
    );
    let gone = wait_until("TAPs to vanish", Duration::from_secs(2), || {
        let l = links_with_prefix(&names.tag);
        if l.is_empty() {
            Ok(())
        } else {
            Err(format!("{l:?}"))
        }
    });
    assert!(gone.is_ok(), "{test}: {gone:?}\n{}", d.report());
}

#[test]
fn sigterm_stops_cleanly_and_removes_taps() {
    skip_unless_ready!("sigterm_stops_cleanly_and_removes_taps", DAEMON_TOOLS);
    stops_cleanly_on("sigterm_stops_cleanly_and_removes_taps", libc::SIGTERM);
}

#[test]
fn sigint_stops_cleanly_and_removes_taps() {
    skip_unless_ready!("sigint_stops_cleanly_and_removes_taps", DAEMON_TOOLS);
    stops_cleanly_on("sigint_stops_cleanly_and_removes_taps", libc::SIGINT);
}

// ---------------------------------------------------------------------------------------
// The CLI against the daemon (dpservice-cli grammar and exit codes).
// ---------------------------------------------------------------------------------------

/// Unwraps a support-call result inside a test (the shared helpers return errors; a test panics).
fn must<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn items(list: &serde_json::Value) -> Vec<serde_json::Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn by_id<'a>(items: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    items
        .iter()
        .find(|i| i["metadata"]["id"] == id)
        .unwrap_or_else(|| panic!("no interface {id} in {items:?}"))
}

#[test]
fn cli_creates_lists_and_deletes_interfaces() {
    skip_unless_ready!("cli_creates_lists_and_deletes_interfaces", DAEMON_TOOLS);
    let bin = must(cli_binary());
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let daemon = Daemon::start_standard(&names, 2, scratch.path("dpservice.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cli = Cli {
        bin: bin.clone(),
        address: format!("localhost:{}", daemon.port),
    };
    let (vf0, vf1) = (names.vf(0), names.vf(1));

    must(cli.ok(&["init"]));
    let out = must(cli.ok(&[
        "create",
        "interface",
        "--id=c1",
        "--vni=100",
        "--ipv4=10.100.1.1",
        "--ipv6=2000:100:1::1",
        &format!("--device={vf0}"),
        "--hostname=c1-host",
    ]));
    assert!(out.contains("c1"), "create interface output: {out}");
    // `add` is dpservice-cli's alias of `create`; flags also as separate words.
    must(cli.ok(&[
        "add",
        "interface",
        "--id",
        "c2",
        "--vni",
        "200",
        "--ipv4",
        "10.200.1.2",
        "--ipv6",
        "2000:200:1::2",
        "--device",
        &vf1,
    ]));

    let list = must(cli.json(&["list", "interfaces"]));
    assert_eq!(list["kind"], "InterfaceList", "{list}");
    let its = items(&list);
    assert_eq!(its.len(), 2, "{list}");
    let c1 = by_id(&its, "c1");
    assert_eq!(c1["kind"], "Interface", "{c1}");
    assert_eq!(c1["spec"]["vni"], 100, "{c1}");
    assert_eq!(c1["spec"]["device"], vf0.as_str(), "{c1}");
    assert_eq!(c1["spec"]["primary_ipv4"], "10.100.1.1", "{c1}");
    assert_eq!(c1["spec"]["primary_ipv6"], "2000:100:1::1", "{c1}");
    assert_eq!(c1["spec"]["hostname"], "c1-host", "{c1}");
    let ul = c1["spec"]["underlay_route"].as_str().unwrap_or_default();
    assert!(
        ul.starts_with("fc00:1:"),
        "underlay not in fc00:1::/64: {c1}"
    );
    let c2 = by_id(&its, "c2");
    assert_eq!(c2["spec"]["vni"], 200, "{c2}");
    assert_eq!(c2["spec"]["device"], vf1.as_str(), "{c2}");

    let got = must(cli.json(&["get", "interface", "--id=c1"]));
    assert_eq!(got["metadata"]["id"], "c1", "{got}");
    assert_eq!(got["spec"]["primary_ipv4"], "10.100.1.1", "{got}");

    // A server-side error (duplicate id) exits with 2, as dpservice-cli does.
    let dup = must(cli.run(&[
        "create",
        "interface",
        "--id=c1",
        "--vni=100",
        "--ipv4=10.100.1.9",
        "--ipv6=2000:100:1::9",
        &format!("--device={vf0}"),
    ]));
    assert_eq!(dup.status.code(), Some(2), "duplicate create:\n{dup}");

    must(cli.ok(&["delete", "interface", "--id=c1"]));
    must(cli.ok(&["del", "interface", "--id", "c2"]));
    let list = must(cli.json(&["list", "interfaces"]));
    assert!(
        items(&list).is_empty(),
        "interfaces left after delete: {list}"
    );
    let again = must(cli.run(&["delete", "interface", "--id=c1"]));
    assert_eq!(
        again.status.code(),
        Some(2),
        "deleting a deleted interface:\n{again}"
    );
    drop(daemon);

    // No daemon there: a client-side error, exit code 1, within the connect timeout.
    let nobody = Cli {
        bin,
        address: format!("localhost:{}", support::free_port()),
    };
    let out = must(nobody.run(&["--connect-timeout", "2s", "list", "interfaces"]));
    assert_eq!(out.status.code(), Some(1), "no daemon:\n{out}");
}

// ---------------------------------------------------------------------------------------
// TAP uplinks without --router: the router's MAC from the kernel's neighbour table.
// ---------------------------------------------------------------------------------------

#[test]
fn tap_uplinks_take_the_router_mac_from_the_kernels_neighbour_table() {
    let test = "tap_uplinks_take_the_router_mac_from_the_kernels_neighbour_table";
    skip_unless_ready!(test, DAEMON_TOOLS);
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let log = scratch.path("dpservice.log");
    let d =
        Daemon::start_standard(&names, 1, log.clone()).unwrap_or_else(|e| panic!("{test}: {e}"));
    let pf0 = names.pf0();
    let sh = |args: &[&str]| {
        let mut cmd = std::process::Command::new(args[0]);
        cmd.args(&args[1..]);
        must(run(&mut cmd, Duration::from_secs(10)).and_then(|o| o.check()));
    };
    sh(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv6.conf.{pf0}.disable_ipv6=0"),
    ]);
    sh(&["ip", "link", "set", &pf0, "up"]);
    sh(&[
        "ip",
        "-6",
        "neigh",
        "add",
        "fe80::ffff",
        "lladdr",
        "52:54:00:ab:cd:ef",
        "dev",
        &pf0,
        "nud",
        "permanent",
        "router",
    ]);
    // Read within the back-off (1, 2, 4 s … after start-up).
    let found = wait_until("the router MAC in the log", Duration::from_secs(15), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("neighboring router") && text.contains("52:54:00:ab:cd:ef") {
            Ok(())
        } else {
            Err("not yet".to_string())
        }
    });
    assert!(found.is_ok(), "{test}: {found:?}\n{}", d.report());
}
