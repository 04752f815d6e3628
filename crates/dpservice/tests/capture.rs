//! System test of packet capture: a daemon with two VMs (network namespaces behind TAP ports)
//! and its uplinks in a router namespace. `dpservice-cli capture start --vf=vm1,vm2` with the
//! router's own address as the sink; vm1 pings vm2; tcpdump on the router's side of pf0 catches
//! the UDP-wrapped copies and tcpdump in each VM what the VM sent and received. Every ICMP
//! frame a VM sent or received must come back wrapped, byte for byte (vm1's request as vm1
//! sent it and as vm2 received it, and the same for the reply), in dpservice's format:
//! Ethernet + IPv6 (host underlay → sink, UDP) + UDP (the configured ports, valid checksum).
//! After `capture stop` no more copies come.
//!
//! Root and `ip`, `ping`, `tcpdump` needed (the CLI is built next to the daemon); otherwise the
//! test prints `SKIPPED` and passes. Names are unique per run, every wait is bounded, and
//! guards remove the daemon, the namespaces and the files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::capture::Capture;
use support::cli::Cli;
use support::daemon::{hypervisor_args, Daemon};
use support::underlay::{Router, ROUTER_ADDR, ROUTER_LL};
use support::vm::Vm;
use support::{ensure, free_port, run, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ip", "ping", "tcpdump", "ipv6"];
const HOST_UNDERLAY: &str = "fc00:1::1";
const SRC_PORT: u16 = 3000;
const DST_PORT: u16 = 3010;

/// Progress on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[capture] {}", format!($($arg)*)) };
}

struct Lab {
    // Field order is drop order: the daemon (its TAPs go), then the namespaces, the scratch
    // directory last.
    daemon: Daemon,
    vms: Vec<Vm>,
    router: Option<Router>,
    names: Names,
    scratch: Scratch,
}

fn lab() -> Result<Lab, String> {
    let names = Names::new();
    let scratch = Scratch::new(&names)?;
    let port = free_port();
    let args = hypervisor_args(&names, 2, port, HOST_UNDERLAY, ROUTER_LL, &[]);
    let daemon = Daemon::start(&args, port, names.taps(2), scratch.path("dpservice.log"))?;
    let mut lab = Lab {
        daemon,
        vms: Vec::new(),
        router: None,
        names,
        scratch,
    };
    let r = (|| {
        let mut router = Router::new(&lab.names.netns("rtr"))?;
        let (pf0, pf1) = (lab.names.pf0(), lab.names.pf1());
        router.attach(&pf0)?;
        router.attach(&pf1)?;
        router.route_multipath("fc00:1::/64", &[&pf0, &pf1])?;
        lab.router = Some(router);
        let mut api = Api::connect(lab.daemon.port)?;
        api.init()?;
        for i in 0..2u8 {
            let id = format!("vm{}", i + 1);
            let vf = lab.names.vf(usize::from(i));
            api.create_interface(&IfaceSpec {
                id: &id,
                vni: 100,
                ipv4: Ipv4Addr::new(10, 100, 1, i + 1),
                ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, u16::from(i) + 1),
                device: &vf,
                hostname: None,
            })?;
            let vm = Vm::new(&id, &lab.names.netns(&id), &vf)?;
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
            lab.vms.push(vm);
        }
        Ok::<(), String>(())
    })();
    match r {
        Ok(()) => Ok(lab),
        Err(e) => Err(format!("{e}\n\n{}", lab.daemon.report())),
    }
}

impl Lab {
    fn router(&self) -> &Router {
        self.router.as_ref().expect("router set up")
    }

    fn ping(&self, from: usize, to: &str, count: u32) -> Result<(), String> {
        let count = count.to_string();
        run(
            &mut self.vms[from].ns.command(&[
                "ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", "-w", "5", to,
            ]),
            Duration::from_secs(10),
        )?
        .check()
        .map(|_| ())
    }

    /// tcpdump on the router's side of pf0: the wrapped copies.
    fn sink_capture(&self, file: &str) -> Result<Capture, String> {
        Capture::start(
            &self.router().ns,
            &self.names.pf0(),
            &format!("ip6 and udp dst port {DST_PORT}"),
            self.scratch.path(file),
        )
    }
}

/// The frame inside a wrapped copy, after checking the outer headers; `None` if it is not one.
fn unwrap_copy(frame: &[u8]) -> Result<Vec<u8>, String> {
    let hex = || format!("{frame:02x?}");
    ensure(frame.len() >= 62 && frame[12..14] == [0x86, 0xdd], || {
        format!("not IPv6: {}", hex())
    })?;
    let ip = &frame[14..54];
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
    ensure(ip[0] >> 4 == 6 && ip[6] == 17 && ip[7] == 64, || {
        format!(
            "IPv6 header: version 6, UDP, hop limit 64 expected: {}",
            hex()
        )
    })?;
    ensure(
        src == HOST_UNDERLAY.parse::<Ipv6Addr>().unwrap()
            && dst == ROUTER_ADDR.parse::<Ipv6Addr>().unwrap(),
        || format!("outer {src} -> {dst}, want {HOST_UNDERLAY} -> {ROUTER_ADDR}"),
    )?;
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let udp = &frame[54..];
    ensure(payload_len == udp.len(), || {
        format!(
            "IPv6 payload length {payload_len}, {} bytes follow",
            udp.len()
        )
    })?;
    ensure(
        udp[0..2] == SRC_PORT.to_be_bytes()
            && udp[2..4] == DST_PORT.to_be_bytes()
            && usize::from(u16::from_be_bytes([udp[4], udp[5]])) == udp.len(),
        || format!("UDP ports/length: {}", hex()),
    )?;
    // The checksum over the pseudo header and the datagram (field included) must be 0xffff.
    let mut sum: u64 = 0;
    for a in [&ip[8..24], &ip[24..40]] {
        for w in a.chunks(2) {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    sum += udp.len() as u64 + 17;
    for w in udp.chunks(2) {
        sum += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ensure(sum == 0xffff && udp[6..8] != [0, 0], || {
        format!("UDP checksum does not verify: {}", hex())
    })?;
    Ok(udp[8..].to_vec())
}

fn is_icmp4(frame: &[u8]) -> bool {
    frame.len() > 34 && frame[12..14] == [0x08, 0x00] && frame[23] == 1
}

#[test]
fn captured_vms_frames_reach_the_sink_wrapped_byte_for_byte() {
    skip_unless_ready!(
        "captured_vms_frames_reach_the_sink_wrapped_byte_for_byte",
        TOOLS
    );
    let lab = lab().unwrap_or_else(|e| panic!("{e}"));
    if let Err(e) = scenario(&lab) {
        panic!("{e}\n\n{}\n{}", lab.daemon.report(), lab.router().report());
    }
}

fn scenario(lab: &Lab) -> Result<(), String> {
    let cli = Cli::new(lab.daemon.port)?;
    // The daemon knows the router's MAC (it answers the router's pings) and vm1 reaches vm2.
    wait_until(
        "the router to ping the host",
        Duration::from_secs(20),
        || lab.router().ping(HOST_UNDERLAY)?.check().map(|_| ()),
    )?;
    wait_until("vm1 to reach vm2", Duration::from_secs(15), || {
        lab.ping(0, "10.100.1.2", 1)
    })?;
    step!("lab up: {}", lab.daemon.cmdline);

    let status = cli.json(&["capture", "status"])?;
    ensure(status["spec"]["operation_status"] == false, || {
        format!("capture active before start: {status}")
    })?;
    let sink = lab.sink_capture("sink.pcap")?;
    let vm_caps: Vec<Capture> = lab
        .vms
        .iter()
        .map(|vm| {
            Capture::start(
                &vm.ns,
                &vm.ifname,
                "icmp",
                lab.scratch.path(&format!("{}.pcap", vm.name)),
            )
        })
        .collect::<Result<_, _>>()?;
    let out = cli.ok(&[
        "capture",
        "start",
        &format!("--sink-node-ip={ROUTER_ADDR}"),
        &format!("--udp-src-port={SRC_PORT}"),
        &format!("--udp-dst-port={DST_PORT}"),
        "--vf=vm1,vm2",
    ])?;
    step!("capture start: {}", out.trim());
    // A second start is refused with dpservice's code, and changes nothing.
    let again = cli.run(&[
        "capture",
        "start",
        "--sink-node-ip=fc00::1",
        "--udp-src-port=1",
        "--udp-dst-port=2",
        "--pf=0",
    ])?;
    ensure(
        !again.ok() && (again.stdout + &again.stderr).contains("210"),
        || "a second capture start was not refused with ALREADY_ACTIVE (210)".into(),
    )?;
    let status = cli.json(&["capture", "status"])?;
    let spec = &status["spec"];
    ensure(
        spec["operation_status"] == true
            && spec["capture_config"]["sink_node_ipv6"] == ROUTER_ADDR
            && spec["capture_config"]["udp_src_port"] == SRC_PORT
            && spec["capture_config"]["udp_dst_port"] == DST_PORT
            && spec["interfaces"]
                == serde_json::json!([
                    {"interface_type": "vf", "interface_info": "vm1"},
                    {"interface_type": "vf", "interface_info": "vm2"},
                ]),
        || format!("capture status: {status}"),
    )?;

    lab.ping(0, "10.100.1.2", 5)?;
    let mut sent_and_received = Vec::new();
    for c in vm_caps {
        sent_and_received.extend(c.stop()?.into_iter().filter(|f| is_icmp4(f)));
    }
    let copies = sink.stop()?;
    let inner: Vec<Vec<u8>> = copies
        .iter()
        .map(|f| unwrap_copy(f))
        .collect::<Result<_, _>>()?;
    step!(
        "{} copies at the sink, {} ICMP frames in the VMs",
        inner.len(),
        sent_and_received.len()
    );
    // 5 requests and 5 replies, each seen by both VMs: 20 frames, each copied once.
    ensure(sent_and_received.len() >= 20, || {
        format!("the VMs saw {} ICMP frames", sent_and_received.len())
    })?;
    for f in &sent_and_received {
        ensure(inner.contains(f), || {
            format!("frame {f:02x?} seen in a VM has no copy at the sink")
        })?;
    }
    // Both directions: echo requests and replies, as sent (from vm1's MAC) and delivered.
    let icmp: Vec<&Vec<u8>> = inner.iter().filter(|f| is_icmp4(f)).collect();
    let types: Vec<u8> = icmp.iter().map(|f| f[34]).collect();
    ensure(
        types.iter().filter(|&&t| t == 8).count() >= 10
            && types.iter().filter(|&&t| t == 0).count() >= 10,
        || format!("ICMP types at the sink: {types:?}"),
    )?;

    let stop = cli.json(&["capture", "stop"])?;
    ensure(stop["spec"]["iface_cnt"] == 2, || {
        format!("capture stop: {stop}")
    })?;
    let stop_again = cli.run(&["capture", "stop"])?;
    ensure(
        !stop_again.ok() && (stop_again.stdout + &stop_again.stderr).contains("211"),
        || "a second capture stop was not refused with NOT_ACTIVE (211)".into(),
    )?;
    let sink = lab.sink_capture("after.pcap")?;
    lab.ping(0, "10.100.1.2", 3)?;
    let after = sink.stop()?;
    ensure(after.is_empty(), || {
        format!("{} copies after capture stop", after.len())
    })?;
    step!("no copies after stop");
    Ok(())
}
