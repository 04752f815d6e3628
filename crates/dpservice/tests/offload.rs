//! System tests of TAP offload and several workers: two VMs (network namespaces) in one VNI on
//! one daemon, a TCP transfer between them with TSO on in the VMs, so the daemon sees and
//! passes on 64 KiB superframes (virtio-net headers, `IFF_VNET_HDR`); and the same with
//! `--workers 2` (multi-queue TAPs), where both workers must forward and the final stats line
//! is the sum of theirs.
//!
//! Root and `ip`, `iperf3`, `ethtool` needed; otherwise each test prints `SKIPPED` and passes.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon, STOP_TIMEOUT};
use support::vm::Vm;
use support::{free_port, run, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ip", "iperf3", "ethtool"];

/// Counters of the VM-side interface, from /sys.
fn stat(vm: &Vm, what: &str) -> Result<u64, String> {
    let path = format!("/sys/class/net/{}/statistics/{what}", vm.ifname);
    vm.ns
        .output(&["cat", &path])?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))
}

struct Lab {
    vms: Vec<Vm>,
    daemon: Daemon,
    _scratch: Scratch,
}

fn lab(names: &Names, workers: u16) -> Result<Lab, String> {
    let scratch = Scratch::new(names)?;
    let port = free_port();
    let mut args = standard_args(names, 2, port);
    args.extend(["--workers".to_string(), workers.to_string()]);
    let daemon = Daemon::start(&args, port, names.taps(2), scratch.path("dpservice.log"))?;
    let mut api = Api::connect(port)?;
    api.init()?;
    let mut vms = Vec::new();
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
        // The daemon asked for TSO with TUNSETOFFLOAD: the VM's kernel must offer it.
        let features = vm.ns.output(&["ethtool", "-k", &dev])?;
        if !features.contains("tcp-segmentation-offload: on") {
            return Err(format!("{id}: TSO is not on for {dev}:\n{features}"));
        }
        vms.push(vm);
    }
    Ok(Lab {
        vms,
        daemon,
        _scratch: scratch,
    })
}

/// iperf3 from vm1 to vm2 with `streams` parallel TCP streams for 2 s; returns the bytes vm2's
/// interface received and in how many (super)frames.
fn transfer(lab: &Lab, streams: u32) -> Result<(u64, u64), String> {
    let (vm1, vm2) = (&lab.vms[0], &lab.vms[1]);
    let mut server = vm2
        .ns
        .command(&["iperf3", "-s", "-1", "-B", "10.100.1.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("iperf3 -s: {e}"))?;
    let result = (|| {
        wait_until("vm1 reaches vm2", Duration::from_secs(10), || {
            vm1.ns
                .exec(&["ping", "-c", "1", "-W", "1", "10.100.1.2"])?
                .check()
                .map(|_| ())
        })?;
        let (bytes0, pkts0) = (stat(vm2, "rx_bytes")?, stat(vm2, "rx_packets")?);
        let p = streams.to_string();
        let mut client =
            vm1.ns
                .command(&["iperf3", "-c", "10.100.1.2", "-t", "2", "-P", &p, "-f", "g"]);
        let out = wait_until("iperf3 server up", Duration::from_secs(10), || {
            run(&mut client, Duration::from_secs(30))?.check()
        })?;
        eprintln!("{}", out.stdout);
        let bytes = stat(vm2, "rx_bytes")? - bytes0;
        let pkts = stat(vm2, "rx_packets")? - pkts0;
        Ok((bytes, pkts))
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// The `stats: rx=… tx=…` numbers of the lines in the daemon's log (after it stopped).
fn stats_lines(log: &str) -> Vec<(String, u64, u64)> {
    log.lines()
        .filter_map(|l| {
            let at = l.find("stats: rx=")?;
            let rest = &l[at + "stats: ".len()..];
            let num = |key: &str| -> Option<u64> {
                let v = rest.split_whitespace().find_map(|w| w.strip_prefix(key))?;
                v.parse().ok()
            };
            Some((l.to_string(), num("rx=")?, num("tx=")?))
        })
        .collect()
}

fn stop(mut lab: Lab) -> Result<String, String> {
    lab.daemon.stop_with(libc::SIGTERM, STOP_TIMEOUT)?;
    let log = std::fs::read_to_string(&lab.daemon.log).map_err(|e| e.to_string())?;
    drop(lab.vms);
    Ok(log)
}

#[test]
fn tso_superframes_pass_vm_to_vm() {
    skip_unless_ready!("tso_superframes_pass_vm_to_vm", TOOLS);
    let names = Names::new();
    let lab = lab(&names, 1).unwrap_or_else(|e| panic!("{e}"));
    let result = transfer(&lab, 1);
    let report = lab.daemon.report();
    let (bytes, pkts) = result.unwrap_or_else(|e| panic!("{e}\n{report}"));
    // Segmented frames would average at most the MTU; superframes average far more.
    assert!(bytes > 10_000_000, "only {bytes} bytes received\n{report}");
    assert!(
        bytes / pkts.max(1) > 3000,
        "vm2 received {bytes} bytes in {pkts} frames: no superframes passed\n{report}"
    );
    let log = stop(lab).unwrap_or_else(|e| panic!("{e}"));
    assert!(!log.contains("offload_invalid"), "{log}");
}

#[test]
fn two_workers_forward_vm_to_vm_and_stats_sum_both() {
    skip_unless_ready!("two_workers_forward_vm_to_vm_and_stats_sum_both", TOOLS);
    let names = Names::new();
    let lab = lab(&names, 2).unwrap_or_else(|e| panic!("{e}"));
    for vm in &lab.vms {
        let out = Command::new("ip")
            .args(["netns", "exec", &vm.ns.name, "ethtool", "-l", &vm.ifname])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!("{}: {out}", vm.ifname);
    }
    let result = transfer(&lab, 8);
    let report = lab.daemon.report();
    let (bytes, _) = result.unwrap_or_else(|e| panic!("{e}\n{report}"));
    assert!(bytes > 10_000_000, "only {bytes} bytes received\n{report}");
    let log = stop(lab).unwrap_or_else(|e| panic!("{e}"));
    let lines = stats_lines(&log);
    let per_worker: Vec<_> = lines
        .iter()
        .filter(|(l, ..)| l.contains("worker"))
        .collect();
    let total = lines
        .iter()
        .rfind(|(l, ..)| !l.contains("worker"))
        .unwrap_or_else(|| panic!("no total stats line\n{log}"));
    assert_eq!(per_worker.len(), 2, "{log}");
    for (line, rx, tx) in &per_worker {
        assert!(
            *rx > 0 && *tx > 0,
            "a worker forwarded nothing: {line}\n{log}"
        );
    }
    let rx: u64 = per_worker.iter().map(|(_, rx, _)| rx).sum();
    let tx: u64 = per_worker.iter().map(|(_, _, tx)| tx).sum();
    assert_eq!((total.1, total.2), (rx, tx), "{log}");
}
