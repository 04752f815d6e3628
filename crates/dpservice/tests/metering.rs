//! System test of metering: vm1 (a network namespace behind a TAP port) is created with
//! `metering_parameters.total_rate` 100 Mbit/s and sends TCP to vm2 on the same daemon with
//! iperf3 for 3 s; the receiver must see 90–105 Mbit/s. Without the meter the same path runs
//! at several Gbit/s (tests/offload.rs), so the figure is the meter's.
//!
//! Root and `ip`, `iperf3` needed; otherwise the test prints `SKIPPED` and passes. Names are
//! unique per run, every wait is bounded, and guards remove the daemon, the namespaces and the
//! files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Stdio;
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon, STOP_TIMEOUT};
use support::vm::Vm;
use support::{free_port, run, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ip", "iperf3"];

/// The rate vm1 is metered at, Mbit/s.
const TOTAL_RATE: u64 = 100;

struct Lab {
    vms: Vec<Vm>,
    daemon: Daemon,
    _scratch: Scratch,
}

/// One daemon, vm1 (metered) and vm2 in VNI 100.
fn lab(names: &Names) -> Result<Lab, String> {
    let scratch = Scratch::new(names)?;
    let port = free_port();
    let args = standard_args(names, 2, port);
    let daemon = Daemon::start(&args, port, names.taps(2), scratch.path("dpservice.log"))?;
    let mut api = Api::connect(port)?;
    api.init()?;
    let mut vms = Vec::new();
    for i in 0..2u8 {
        let id = format!("vm{}", i + 1);
        let spec = IfaceSpec {
            id: &id,
            vni: 100,
            ipv4: Ipv4Addr::new(10, 100, 1, i + 1),
            ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, u16::from(i) + 1),
            device: &names.vf(usize::from(i)),
            hostname: None,
        };
        let total = if i == 0 { TOTAL_RATE } else { 0 };
        api.create_interface_metered(&spec, total, 0)?;
        let vm = Vm::new(&id, &names.netns(&id), &names.vf(usize::from(i)))?;
        let dev = vm.ifname.clone();
        let addr = format!("10.100.1.{}/32", i + 1);
        for cmd in [
            vec!["ip", "addr", "add", &addr, "dev", &dev],
            vec!["ip", "route", "add", "169.254.0.1/32", "dev", &dev],
            vec![
                "ip",
                "route",
                "add",
                "10.100.1.0/24",
                "via",
                "169.254.0.1",
                "dev",
                &dev,
            ],
        ] {
            vm.ns.exec(&cmd)?.check()?;
        }
        vms.push(vm);
    }
    Ok(Lab {
        vms,
        daemon,
        _scratch: scratch,
    })
}

/// iperf3 (TCP, 3 s) from `from` to `to`; the receiver's rate in Mbit/s.
fn iperf(from: &Vm, to: &Vm, to_ip: &str) -> Result<f64, String> {
    let mut server = to
        .ns
        .command(&["iperf3", "-s", "-1", "-B", to_ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 -s: {e}"))?;
    let result = (|| {
        wait_until("vm1 reaches vm2", Duration::from_secs(10), || {
            from.ns
                .exec(&["ping", "-c", "1", "-W", "1", to_ip])?
                .check()
                .map(|_| ())
        })?;
        let mut client = from.ns.command(&["iperf3", "-c", to_ip, "-t", "3", "-J"]);
        let out = wait_until("iperf3 server up", Duration::from_secs(10), || {
            run(&mut client, Duration::from_secs(30))?.check()
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("iperf3 -J: {e}"))?;
        let received = &json["end"]["sum_received"];
        let sent = &json["end"]["sum_sent"];
        eprintln!(
            "[metering] RESULT received {:.1} Mbit/s, sent {:.1} Mbit/s, retransmits {}",
            received["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
            sent["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
            sent["retransmits"]
        );
        received["bits_per_second"]
            .as_f64()
            .map(|b| b / 1e6)
            .ok_or_else(|| format!("no sum_received in {}", out.stdout))
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

#[test]
fn a_metered_vm_gets_its_total_rate_over_tcp() {
    skip_unless_ready!("a_metered_vm_gets_its_total_rate_over_tcp", TOOLS);
    let names = Names::new();
    let mut lab = lab(&names).unwrap_or_else(|e| panic!("{e}"));
    let result = iperf(&lab.vms[0], &lab.vms[1], "10.100.1.2");
    let report = lab.daemon.report();
    let mbps = result.unwrap_or_else(|e| panic!("{e}\n{report}"));
    lab.daemon
        .stop_with(libc::SIGTERM, STOP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let log = std::fs::read_to_string(&lab.daemon.log).unwrap_or_default();
    assert!(
        (90.0..=105.0).contains(&mbps),
        "vm1 metered at {TOTAL_RATE} Mbit/s got {mbps:.1} Mbit/s\n{report}\n{log}"
    );
    // The meter did the limiting: its drops are counted (TCP probes above the rate).
    assert!(log.contains("meter_total_exceeded"), "{log}");
}
