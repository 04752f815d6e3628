//! System test of `dpservice-dump` against the daemon (its `--dump-socket`): vm1 and vm2
//! (network namespaces behind TAP ports) in VNI 100.
//!
//! - `--drops --pcap F` while vm1 sends pings from an address it does not own: the file has
//!   the spoofed frames with their drop reason in the packet comment, and `tshark -r F` reads
//!   it (as does `tcpdump -r F`);
//! - `--filter 'icmp and host 10.100.1.2' -c N`: only those packets are shown (UDP to vm2 and
//!   pings to the gateway are not), and the tool exits after N;
//! - `--flows --interface vm1 --json` and `--nat-ports`: vm1's ICMP flow and its NAT'd UDP flow
//!   (with the NAT address and port);
//! - the daemon's `--graphtrace-loglevel 1` logs the same trace: frames in and out and every
//!   node's verdict, with the same one-line summary of the frame.
//!
//! Root, `ip`, `ping`, `tshark` needed; otherwise SKIPPED (a failure with
//! `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`). Names are unique per run, every wait is bounded, guards
//! remove the daemon, the namespaces and the files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon};
use support::vm::Vm;
use support::{ensure, free_port, run, wait_until, Names, Scratch, DAEMON};

const TOOLS: &[&str] = &["ip", "ping", "tshark", "tcpdump"];

struct Lab {
    vms: Vec<Vm>,
    daemon: Daemon,
    api: Api,
    socket: String,
    scratch: Scratch,
}

fn dump_binary() -> PathBuf {
    Path::new(DAEMON).with_file_name("dpservice-dump")
}

/// One daemon, vm1 and vm2 in VNI 100 with static addresses.
fn lab(names: &Names) -> Result<Lab, String> {
    lab_with(names, &[])
}

fn lab_with(names: &Names, extra: &[&str]) -> Result<Lab, String> {
    let scratch = Scratch::new(names)?;
    ensure(dump_binary().exists(), || {
        format!(
            "{} missing: `cargo build --workspace --bins` first",
            dump_binary().display()
        )
    })?;
    let port = free_port();
    let mut args = standard_args(names, 2, port);
    args.extend(extra.iter().map(|s| s.to_string()));
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
        api.create_interface(&spec)?;
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
                "10.0.0.0/8",
                "via",
                "169.254.0.1",
                "dev",
                &dev,
            ],
            vec![
                "ip",
                "route",
                "add",
                "172.16.0.0/12",
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
    let socket = names.dump_socket();
    wait_until("the dump socket", Duration::from_secs(10), || {
        ensure(Path::new(&socket).exists(), || format!("no {socket}"))
    })?;
    wait_until("vm1 reaches vm2", Duration::from_secs(10), || {
        vms[0]
            .ns
            .exec(&["ping", "-c", "1", "-W", "1", "10.100.1.2"])?
            .check()
            .map(|_| ())
    })?;
    Ok(Lab {
        vms,
        daemon,
        api,
        socket,
        scratch,
    })
}

/// `dpservice-dump` in the background (at most `secs`), once it said it is attached.
struct Dump {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Dump {
    fn start(lab: &Lab, name: &str, args: &[&str], secs: u32) -> Result<Dump, String> {
        let stdout = lab.scratch.path(&format!("{name}.out"));
        let stderr = lab.scratch.path(&format!("{name}.err"));
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut cmd = Command::new(dump_binary());
        cmd.args(["--socket", &lab.socket, "--duration", &secs.to_string()])
            .args(args)
            .stdout(Stdio::from(file(&stdout)?))
            .stderr(Stdio::from(file(&stderr)?));
        support::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting dpservice-dump: {e}"))?;
        let dump = Dump {
            child,
            stdout,
            stderr,
        };
        wait_until("dpservice-dump attached", Duration::from_secs(10), || {
            let err = std::fs::read_to_string(&dump.stderr).unwrap_or_default();
            ensure(err.contains("attached"), || {
                format!("stderr so far: {err:?}")
            })
        })?;
        Ok(dump)
    }

    /// Waits for it to exit by itself (count reached or duration over); its stdout.
    fn finish(mut self) -> Result<String, String> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                    ensure(status.success(), || {
                        format!("dpservice-dump failed ({status}): {err}")
                    })?;
                    ensure(err.contains("Graphtrace successfully disabled"), || {
                        err.clone()
                    })?;
                    return std::fs::read_to_string(&self.stdout).map_err(|e| e.to_string());
                }
                Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return Err("dpservice-dump did not exit".into()),
            }
        }
    }
}

impl Drop for Dump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tshark_fields(file: &Path, fields: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let mut args = vec![
        "-r".to_string(),
        file.to_string_lossy().into_owned(),
        "-T".into(),
        "fields".into(),
    ];
    for f in fields {
        args.push("-e".into());
        args.push((*f).into());
    }
    args.extend(["-E".into(), "separator=|".into()]);
    let out = run(Command::new("tshark").args(&args), Duration::from_secs(30))?.check()?;
    Ok(out
        .stdout
        .lines()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect())
}

#[test]
fn drops_are_recorded_with_their_reason_in_a_pcapng_file_tshark_reads() {
    skip_unless_ready!(
        "drops_are_recorded_with_their_reason_in_a_pcapng_file_tshark_reads",
        TOOLS
    );
    let names = Names::new();
    let lab = lab(&names).unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<(), String> {
        let pcap = lab.scratch.path("drops.pcapng");
        let pcap_arg = pcap.to_string_lossy().into_owned();
        let dump = Dump::start(&lab, "drops", &["--drops", "--pcap", &pcap_arg], 6)?;
        let vm1 = &lab.vms[0];
        // An address vm1 does not own: the dataplane drops what it sends from it.
        vm1.ns
            .exec(&["ip", "addr", "add", "10.100.1.99/32", "dev", &vm1.ifname])?
            .check()?;
        let _ = vm1.ns.exec(&[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "-I",
            "10.100.1.99",
            "10.100.1.2",
        ])?;
        vm1.ns
            .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.100.1.2"])?
            .check()?;
        dump.finish()?;
        let rows = tshark_fields(&pcap, &["frame.comment", "ip.src", "ip.dst", "icmp.type"])?;
        let spoofed: Vec<_> = rows
            .iter()
            .filter(|r| r.get(1).is_some_and(|s| s == "10.100.1.99"))
            .collect();
        let dropped = spoofed
            .iter()
            .filter(|r| r[0].contains("reason=spoofed"))
            .count();
        let received = spoofed.iter().filter(|r| r[0].contains("rx vm1")).count();
        ensure(dropped == 3 && received == 3, || {
            format!("3 spoofed echo requests, each received and dropped as spoofed: {rows:?}")
        })?;
        ensure(spoofed.iter().all(|r| !r[0].contains("tx ")), || {
            format!("a spoofed frame went out: {rows:?}")
        })?;
        // The good pings went through: received on vm1, sent to vm2, and back.
        let good_out = rows
            .iter()
            .filter(|r| r[0].contains("tx vm2") && r[1] == "10.100.1.1" && r[3] == "8")
            .count();
        ensure(good_out == 2, || {
            format!("2 echo requests out to vm2: {rows:?}")
        })?;
        // tcpdump reads the file too.
        let out = run(
            Command::new("tcpdump").args(["-n", "-r", &pcap_arg]),
            Duration::from_secs(30),
        )?
        .check()?;
        ensure(
            out.stdout
                .lines()
                .filter(|l| l.contains("10.100.1.99 > 10.100.1.2"))
                .count()
                == 6,
            || format!("tcpdump -r: {}", out.stdout),
        )?;
        Ok(())
    })();
    let report = lab.daemon.report();
    result.unwrap_or_else(|e| panic!("{e}\n{report}"));
}

#[test]
fn a_pcap_filter_shows_only_matching_packets_and_count_ends_the_dump() {
    skip_unless_ready!(
        "a_pcap_filter_shows_only_matching_packets_and_count_ends_the_dump",
        TOOLS
    );
    let names = Names::new();
    let lab = lab(&names).unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<(), String> {
        // Not matching: pings to the gateway and UDP to an address of the VNI with no VM (sent
        // first, so a wrong filter would show them before the count is reached). (UDP to vm2
        // would match: vm2 answers with ICMP port unreachable.)
        let dump = Dump::start(
            &lab,
            "filter",
            &["--filter", "icmp and host 10.100.1.2", "-c", "8"],
            20,
        )?;
        let vm1 = &lab.vms[0];
        vm1.ns
            .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "169.254.0.1"])?
            .check()?;
        let udp = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                   for i in range(5): s.sendto(b'x',('10.100.1.3',9))";
        vm1.ns.exec(&["/usr/bin/python3", "-c", udp])?.check()?;
        // Matching: 2 echo requests and 2 replies, each received and sent: 8 records.
        vm1.ns
            .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.100.1.2"])?
            .check()?;
        let out = dump.finish()?;
        let lines: Vec<&str> = out.lines().collect();
        ensure(lines.len() == 8, || format!("-c 8 shows 8 lines: {out}"))?;
        ensure(
            lines
                .iter()
                .all(|l| l.contains("ICMP echo") && l.contains("10.100.1.2")),
            || format!("only ICMP with 10.100.1.2: {out}"),
        )?;
        for place in ["rx vm1", "tx vm2", "rx vm2", "tx vm1"] {
            ensure(
                lines.iter().filter(|l| l.contains(place)).count() == 2,
                || format!("two lines at {place}: {out}"),
            )?;
        }
        Ok(())
    })();
    let report = lab.daemon.report();
    result.unwrap_or_else(|e| panic!("{e}\n{report}"));
}

fn dump_json(lab: &Lab, args: &[&str]) -> Result<Vec<serde_json::Value>, String> {
    let mut cmd = Command::new(dump_binary());
    cmd.args(["--socket", &lab.socket, "--json"]).args(args);
    let out = run(&mut cmd, Duration::from_secs(30))?.check()?;
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{l}: {e}")))
        .collect()
}

#[test]
fn flows_and_nat_ports_are_listed_per_interface() {
    skip_unless_ready!("flows_and_nat_ports_are_listed_per_interface", TOOLS);
    let names = Names::new();
    let mut lab = lab(&names).unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<(), String> {
        // vm1 gets a NAT and a default route out of the VNI (NAT applies to it), to an underlay
        // address nobody answers: the flow is made all the same, on the way out.
        lab.api
            .create_nat("vm1", Ipv4Addr::new(10, 250, 0, 1), 1000, 1100)?;
        lab.api.create_route(
            100,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            100,
            "fc00:9::1".parse().unwrap(),
        )?;
        let vm1 = &lab.vms[0];
        let udp = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                   s.bind(('10.100.1.1',4444))\ns.sendto(b'x',('172.16.5.5',53))";
        vm1.ns.exec(&["/usr/bin/python3", "-c", udp])?.check()?;
        vm1.ns
            .exec(&["ping", "-c", "1", "-W", "1", "10.100.1.2"])?
            .check()?;
        let flows = dump_json(&lab, &["--flows", "--interface", "vm1"])?;
        let icmp = flows
            .iter()
            .find(|f| f["original"]["protocol"] == "icmp" && f["original"]["dst"] == "10.100.1.2");
        ensure(
            icmp.is_some_and(|f| f["interface"] == "vm1" && f["dst_interface"] == "vm2"),
            || format!("vm1's ping flow to vm2: {flows:?}"),
        )?;
        let nat = flows.iter().find(|f| f["original"]["dst"] == "172.16.5.5");
        ensure(nat.is_some_and(|f| f["translation"] == "nat"), || {
            format!("vm1's NAT'd flow: {flows:?}")
        })?;
        // vm2 has no flow of its own here but the ping's (whose destination it is).
        let vm2 = dump_json(&lab, &["--flows", "--interface", "vm2"])?;
        ensure(
            vm2.iter()
                .all(|f| f["dst_interface"] == "vm2" || f["interface"] == "vm2"),
            || format!("{vm2:?}"),
        )?;
        let ports = dump_json(&lab, &["--nat-ports", "--interface", "vm1"])?;
        ensure(ports.len() == 1, || {
            format!("one NAT port in use: {ports:?}")
        })?;
        let reply = &ports[0]["reply"];
        let port = reply["dst_port"].as_u64().unwrap_or(0);
        ensure(
            reply["dst"] == "10.250.0.1" && (1000..1100).contains(&port),
            || format!("the NAT address and a port of its range: {ports:?}"),
        )?;
        ensure(ports[0]["original"]["src_port"] == 4444, || {
            format!("{ports:?}")
        })?;
        // An unknown interface is an error, said.
        let mut cmd = Command::new(dump_binary());
        cmd.args(["--socket", &lab.socket, "--flows", "--interface", "nope"]);
        let out = run(&mut cmd, Duration::from_secs(10))?;
        ensure(
            !out.status.success() && out.stderr.contains("no interface nope"),
            || format!("{out:?}"),
        )?;
        Ok(())
    })();
    let report = lab.daemon.report();
    result.unwrap_or_else(|e| panic!("{e}\n{report}"));
}

#[test]
fn graphtrace_loglevel_logs_the_same_trace() {
    skip_unless_ready!("graphtrace_loglevel_logs_the_same_trace", TOOLS);
    let names = Names::new();
    let mut lab =
        lab_with(&names, &["--graphtrace-loglevel", "1"]).unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<(), String> {
        lab.vms[0]
            .ns
            .exec(&["ping", "-c", "1", "-W", "1", "10.100.1.2"])?
            .check()?;
        lab.daemon
            .stop_with(libc::SIGTERM, support::daemon::STOP_TIMEOUT)?;
        let log = std::fs::read_to_string(&lab.daemon.log).map_err(|e| e.to_string())?;
        let request = "10.100.1.1 > 10.100.1.2 ICMP echo request";
        let trace: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("graphtrace") && l.contains(request))
            .collect();
        for want in [
            "rx 10.100.1.1",
            "-> ipv4_lookup",
            "-> conntrack",
            "-> tx port 3",
            "tx 10.100.1.1",
        ] {
            ensure(trace.iter().any(|l| l.contains(want)), || {
                format!("{want:?} in the trace: {trace:#?}")
            })?;
        }
        Ok(())
    })();
    let report = lab.daemon.report();
    result.unwrap_or_else(|e| panic!("{e}\n{report}"));
}
