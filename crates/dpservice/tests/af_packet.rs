//! System test of `--nic-type af_packet`: VF ports are existing veths whose other ends are the
//! VMs' interfaces (network namespaces). A VM with a static address that never sent a frame is
//! reachable anyway: the daemon finds its MAC by ARP (`VmProbe`), as a router would.
//!
//! Root and `ip`, `ping` needed; otherwise the test prints `SKIPPED` and passes. Every veth has
//! one end in a namespace owned by a guard, so deleting the namespaces (on failure too, or by a
//! later run's sweep) removes the pairs.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon, STOP_TIMEOUT};
use support::vm::Netns;
use support::{free_port, run_args, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ip", "ping"];
const IP_TIMEOUT: Duration = Duration::from_secs(5);

fn ip(args: &[&str]) -> Result<(), String> {
    run_args("ip", args, IP_TIMEOUT)?.check().map(|_| ())
}

fn no_ipv6(ns: Option<&Netns>, dev: &str) -> Result<(), String> {
    let key = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    let script = format!("[ ! -e {key} ] || echo 1 > {key}");
    match ns {
        Some(ns) => ns.exec(&["sh", "-c", &script])?.check().map(|_| ()),
        None => run_args("sh", &["-c", &script], IP_TIMEOUT)?
            .check()
            .map(|_| ()),
    }
}

/// A veth pair: `host` (for the daemon) in our namespace, `peer` in `ns`, both up, no IPv6 on
/// either (a quiet VM: no DAD, router solicitation or MLD from it).
fn veth(host: &str, peer: &str, ns: &Netns) -> Result<(), String> {
    ip(&[
        "link", "add", host, "type", "veth", "peer", "name", peer, "netns", &ns.name,
    ])?;
    no_ipv6(None, host)?;
    no_ipv6(Some(ns), peer)?;
    ip(&["link", "set", host, "up"])?;
    ns.exec(&["ip", "link", "set", peer, "up"])?.check()?;
    Ok(())
}

/// A VM's static IPv4 configuration: `addr`/32, default route via the gateway 169.254.0.1.
fn static_ipv4(ns: &Netns, dev: &str, addr: &str) -> Result<(), String> {
    let script = format!(
        "set -e; ip addr add {addr}/32 dev {dev}; ip route add 169.254.0.1 dev {dev}; \
         ip route add default via 169.254.0.1 dev {dev}"
    );
    ns.exec(&["sh", "-c", &script])?.check().map(|_| ())
}

/// Field order is drop order: the daemon stops before the namespaces (and veths) go.
struct Lab {
    daemon: Daemon,
    vm1: Netns,
    _vm2: Netns,
    _wires: Netns,
    _scratch: Scratch,
}

fn lab(names: &Names) -> Result<Lab, String> {
    let scratch = Scratch::new(names)?;
    let wires = Netns::new(&names.netns("ul"))?;
    let vm1 = Netns::new(&names.netns("vm1"))?;
    let vm2 = Netns::new(&names.netns("vm2"))?;
    for ns in [&vm1, &vm2] {
        ns.exec(&[
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        ])?;
    }
    let (vm1_if, vm2_if) = (format!("{}a", names.tag), format!("{}b", names.tag));
    veth(&names.pf0(), &format!("{}q0", names.tag), &wires)?;
    veth(&names.pf1(), &format!("{}q1", names.tag), &wires)?;
    veth(&names.vf(0), &vm1_if, &vm1)?;
    veth(&names.vf(1), &vm2_if, &vm2)?;
    static_ipv4(&vm1, &vm1_if, "10.100.1.1")?;
    static_ipv4(&vm2, &vm2_if, "10.100.1.2")?;

    let port = free_port();
    let mut args = standard_args(names, 2, port);
    if let Some(i) = args.iter().position(|a| a == "--nic-type") {
        args[i + 1] = "af_packet".to_string();
    }
    let daemon = Daemon::start(&args, port, names.taps(2), scratch.path("dpservice.log"))?;
    let mut api = Api::connect(port)?;
    api.init()?;
    for i in 0..2u8 {
        let id = format!("vm{}", i + 1);
        api.create_interface(&IfaceSpec {
            id: &id,
            vni: 100,
            ipv4: Ipv4Addr::new(10, 100, 1, i + 1),
            ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, u16::from(i) + 1),
            device: &names.vf(usize::from(i)),
            hostname: None,
        })?;
    }
    Ok(Lab {
        daemon,
        vm1,
        _vm2: vm2,
        _wires: wires,
        _scratch: scratch,
    })
}

#[test]
fn silent_vm_with_a_static_address_is_found_by_arp_and_reachable() {
    skip_unless_ready!(
        "silent_vm_with_a_static_address_is_found_by_arp_and_reachable",
        TOOLS
    );
    let names = Names::new();
    let mut lab = lab(&names).unwrap_or_else(|e| panic!("{e}"));
    // vm2 has sent nothing: only the daemon's probe can have taught its MAC.
    let pinged = wait_until(
        "vm1 reaches the silent vm2",
        Duration::from_secs(10),
        || {
            lab.vm1
                .exec(&["ping", "-c", "1", "-W", "1", "10.100.1.2"])?
                .check()
                .map(|_| ())
        },
    );
    let report = lab.daemon.report();
    pinged.unwrap_or_else(|e| panic!("{e}\n{report}"));
    lab.daemon
        .stop_with(libc::SIGTERM, STOP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::read_to_string(&lab.daemon.log).unwrap_or_default();
    assert!(
        log.contains("drop.arp_reply_consumed="),
        "the final stats should count vm2's answer to the probe:\n{log}"
    );
}
