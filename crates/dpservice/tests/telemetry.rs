//! System test of the DPDK telemetry socket (`--telemetry-socket`): the daemon with TAP ports
//! serves DPDK's telemetry v2 protocol with dpservice's commands at a unique path; every
//! command dpservice's `test_telemetry.py` and its Go exporter (`dpservice-exporter`) send is
//! answered in their shapes, and the values follow known traffic and configuration: the
//! firewall rule count of an interface goes 0 → 1 → 0, a NAT'd VM's used NAT ports grow by
//! the UDP flows it opens, a virtual service's used ports by the connection a VM makes, and the
//! graph's object counts by the packets sent. Malformed requests get null replies on a
//! connection that keeps working; the socket goes away with the daemon.
//!
//! Needs root, IPv6 and udhcpc; otherwise SKIPPED (unless `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`).
//! Names and paths are unique per run, every wait is bounded, and guards remove the daemon,
//! namespaces and files on success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dp_proto::v1;
use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon, READY_TIMEOUT, STOP_TIMEOUT};
use support::vm::Vm;
use support::{ensure, free_port, in_netns, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ipv6", "udhcpc"];
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const VNI: u32 = 100;
const NAT_IP: Ipv4Addr = Ipv4Addr::new(45, 86, 6, 6);
const UDP_VIRTSVC: (Ipv4Addr, u16) = (Ipv4Addr::new(1, 2, 3, 4), 53);
const TCP_VIRTSVC: (Ipv4Addr, u16) = (Ipv4Addr::new(1, 2, 3, 4), 443);

/// dpservice's hash tables (test_telemetry.py `HASH_TABLES`), and our two virtual services'.
const HASH_TABLES: &[&str] = &[
    "interface_table",
    "conntrack_table",
    "dnat_table",
    "snat_table",
    "nat_portmap_table",
    "nat_portoverload_table",
    "loadbalancer_table",
    "loadbalancer_id_table",
    "vni_table",
    "vnf_table",
    "reverse_vnf_table",
    "virtsvc_table_0",
    "virtsvc_table_1",
];
/// test_telemetry.py's `HEAP_INFO`: the numbers the exporter exports of `/eal/heap_info`.
const HEAP_INFO: &[&str] = &[
    "Heap_id",
    "Heap_size",
    "Alloc_count",
    "Free_count",
    "Alloc_size",
    "Free_size",
    "Greatest_free_size",
];
/// test_telemetry.py's `ETHDEV_STATS` (one queue: one worker).
const ETHDEV_STATS: &[&str] = &[
    "rx_good_bytes",
    "rx_q0_bytes",
    "tx_good_bytes",
    "tx_q0_bytes",
    "rx_errors",
    "rx_mbuf_allocation_errors",
    "rx_missed_errors",
    "rx_q0_errors",
    "tx_errors",
    "rx_good_packets",
    "rx_q0_packets",
    "tx_good_packets",
    "tx_q0_packets",
];

/// A telemetry client connection.
struct Client {
    sock: Socket,
    greeting: Value,
}

impl Client {
    fn connect(path: &Path) -> Result<Client, String> {
        let io = |e: std::io::Error| format!("telemetry {}: {e}", path.display());
        let sock = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(io)?;
        sock.connect(&SockAddr::unix(path).map_err(io)?)
            .map_err(io)?;
        sock.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let mut c = Client {
            sock,
            greeting: Value::Null,
        };
        c.greeting = c.recv()?;
        Ok(c)
    }

    fn recv(&mut self) -> Result<Value, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = (&self.sock)
            .read(&mut buf)
            .map_err(|e| format!("telemetry read: {e}"))?;
        ensure(n <= 16 * 1024, || format!("reply of {n} bytes"))?;
        serde_json::from_slice(&buf[..n]).map_err(|e| {
            format!(
                "telemetry reply not JSON ({e}): {:?}",
                String::from_utf8_lossy(&buf[..n])
            )
        })
    }

    /// Sends `raw` as one message and returns the whole reply.
    fn raw(&mut self, raw: &[u8]) -> Result<Value, String> {
        self.sock
            .send(raw)
            .map_err(|e| format!("telemetry send: {e}"))?;
        self.recv()
    }

    /// `command` as test_telemetry.py sends it (`command,0\n`): the value of its reply.
    fn ask(&mut self, command: &str) -> Result<Value, String> {
        let reply = self.raw(format!("{command},0\n").as_bytes())?;
        let obj = reply
            .as_object()
            .ok_or_else(|| format!("{command}: reply {reply}"))?;
        ensure(obj.len() == 1, || format!("{command}: reply {reply}"))?;
        obj.get(command)
            .cloned()
            .ok_or_else(|| format!("{command}: reply {reply}"))
    }

    /// `command,param` as the Go exporter sends it (no newline).
    fn ask_param(&mut self, command: &str, param: &str) -> Result<Value, String> {
        let reply = self.raw(format!("{command},{param}").as_bytes())?;
        reply
            .get(command)
            .cloned()
            .ok_or_else(|| format!("{command},{param}: reply {reply}"))
    }

    /// A graph statistic's nodes.
    fn graph(&mut self, stat: &str) -> Result<serde_json::Map<String, Value>, String> {
        let v = self.ask(&format!("/dp_service/graph/{stat}"))?;
        v.get("Node_0_to_255")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(|| format!("{stat}: no Node_0_to_255 in {v}"))
    }
}

fn num(v: &Value, key: &str) -> Result<u64, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("no number {key} in {v}"))
}

fn accept_all_rule(id: &str) -> v1::FirewallRule {
    let any = || {
        Some(dp_proto::convert::prefix_to_proto(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
        ))
    };
    v1::FirewallRule {
        id: id.as_bytes().to_vec(),
        direction: v1::TrafficDirection::Ingress as i32,
        action: v1::FirewallAction::Accept as i32,
        priority: 100,
        source_prefix: any(),
        destination_prefix: any(),
        protocol_filter: None,
    }
}

/// Sends one datagram to `dst` from a fresh socket in `ns` (a new flow each).
fn udp_send(ns: &str, dst: (Ipv4Addr, u16)) -> Result<(), String> {
    let s = in_netns(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))?;
    s.send_to(b"telemetry\n", dst)
        .map_err(|e| format!("UDP to {dst:?}: {e}"))?;
    Ok(())
}

/// Removes the socket's directory when the test ends.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn telemetry_socket_answers_dpservices_commands() {
    skip_unless_ready!("telemetry_socket_answers_dpservices_commands", TOOLS);
    let names = Names::new();
    let scratch = Scratch::new(&names).expect("scratch directory");
    // Not in the scratch directory, which the daemon's log shares: a path of its own, as a
    // deployment's (the directories made by the daemon).
    let dir = std::env::temp_dir().join(format!("dp-telemetry-{}", names.vf_prefix()));
    let _dir = RemoveDir(dir.clone());
    let path = dir.join("rte").join("dpdk_telemetry.v2");
    let grpc = free_port();
    let mut args = standard_args(&names, 2, grpc);
    let udp = format!("{},{},2a00:da8:fff6::1,53", UDP_VIRTSVC.0, UDP_VIRTSVC.1);
    let tcp = format!("{},{},2a00:da8:fff6::2,443", TCP_VIRTSVC.0, TCP_VIRTSVC.1);
    args.extend([
        "--telemetry-socket".to_string(),
        path.display().to_string(),
        "--udp-virtsvc".to_string(),
        udp,
        "--tcp-virtsvc".to_string(),
        tcp,
    ]);
    let mut daemon = Daemon::start(&args, grpc, names.taps(2), scratch.path("daemon.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut vms: Vec<Vm> = Vec::new();

    let r = (|| -> Result<(), String> {
        let mut c = wait_until("the telemetry socket", READY_TIMEOUT, || {
            Client::connect(&path)
        })?;
        // The greeting, as DPDK's.
        let g = c.greeting.clone();
        ensure(
            g.get("version")
                .and_then(Value::as_str)
                .is_some_and(|v| v.starts_with("DPDK ")),
            || format!("greeting {g}"),
        )?;
        ensure(
            num(&g, "pid")? == u64::from(daemon.pid().unwrap_or(0)),
            || format!("greeting pid {g}"),
        )?;
        ensure(num(&g, "max_output_len")? == 16384, || {
            format!("greeting {g}")
        })?;
        ensure(c.ask("/info")? == g, || "/info is not the greeting".into())?;

        // Every command the test and the exporter use is listed.
        let list = c.ask("/")?;
        for cmd in [
            "/dp_service/graph/obj_count",
            "/dp_service/graph/call_count",
            "/dp_service/graph/cycle_count",
            "/dp_service/graph/realloc_count",
            "/dp_service/nat/used_port_count",
            "/dp_service/virtsvc/used_port_count",
            "/dp_service/table/saturation",
            "/dp_service/firewall/rule_count",
            "/ethdev/list",
            "/ethdev/info",
            "/ethdev/link_status",
            "/ethdev/xstats",
            "/ethdev/stats",
            "/eal/heap_list",
            "/eal/heap_info",
        ] {
            ensure(
                list.as_array().is_some_and(|l| l.iter().any(|c| c == cmd)),
                || format!("{cmd} not in {list}"),
            )?;
        }
        ensure(c.ask_param("/help", "/no/such")?.is_null(), || {
            "/help of no command: null".into()
        })?;
        ensure(
            c.ask_param("/help", "/eal/heap_list")?
                .get("/eal/heap_list")
                .is_some_and(Value::is_string),
            || "/help of /eal/heap_list".into(),
        )?;

        // Ports: two uplinks and two VFs, in the daemon's order, by name.
        let ports = c.ask("/ethdev/list")?;
        ensure(ports == serde_json::json!([0, 1, 2, 3]), || {
            format!("/ethdev/list {ports}")
        })?;
        let mut port_of = std::collections::BTreeMap::new();
        for id in 0..4 {
            let info = c.ask_param("/ethdev/info", &id.to_string())?;
            let name = info
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("/ethdev/info,{id}: {info}"))?
                .to_owned();
            port_of.insert(name, id);
            let link = c.ask_param("/ethdev/link_status", &id.to_string())?;
            let status = link.get("status").and_then(Value::as_str).unwrap_or("");
            ensure(status == "UP" || status == "DOWN", || {
                format!("link status {link}")
            })?;
            let x = c.ask_param("/ethdev/xstats", &id.to_string())?;
            let keys: Vec<&str> = x
                .as_object()
                .ok_or_else(|| format!("xstats {x}"))?
                .keys()
                .map(String::as_str)
                .filter(|k| ["bytes", "packets", "errors"].iter().any(|w| k.contains(w)))
                .collect();
            let mut want = ETHDEV_STATS.to_vec();
            want.sort_unstable();
            let mut got = keys.clone();
            got.sort_unstable();
            ensure(got == want, || format!("xstats of {id}: {x}"))?;
            let st = c.ask_param("/ethdev/stats", &id.to_string())?;
            ensure(num(&st, "ipackets")? == num(&x, "rx_good_packets")?, || {
                format!("stats {st} against xstats {x}")
            })?;
        }
        let pf0 = port_of
            .get(&names.pf0())
            .copied()
            .ok_or_else(|| format!("no {} in {port_of:?}", names.pf0()))?;
        ensure(
            c.ask_param("/ethdev/link_status", &pf0.to_string())?["status"] == "UP",
            || "pf0 link is up".into(),
        )?;
        let vf0 = port_of
            .get(&names.vf(0))
            .copied()
            .ok_or_else(|| format!("no {} in {port_of:?}", names.vf(0)))?;
        ensure(c.ask_param("/ethdev/info", "9")?.is_null(), || {
            "/ethdev/info of no port: null".into()
        })?;

        // The heap: the packet buffers.
        ensure(c.ask("/eal/heap_list")? == serde_json::json!([0]), || {
            "/eal/heap_list".into()
        })?;
        let heap = c.ask_param("/eal/heap_info", "0")?;
        for k in HEAP_INFO {
            num(&heap, k)?;
        }
        let (size, allocs, frees) = (
            num(&heap, "Heap_size")?,
            num(&heap, "Alloc_count")?,
            num(&heap, "Free_count")?,
        );
        ensure(
            size > 0 && frees > 0 && size % (allocs + frees) == 0,
            || format!("heap info {heap}"),
        )?;
        ensure(
            num(&heap, "Alloc_size")? + num(&heap, "Free_size")? == size,
            || format!("heap info {heap}"),
        )?;

        // Graph statistics: a receive node per port (test_telemetry.py counts them), transmit
        // nodes, the periodic node and ours.
        for stat in ["obj_count", "call_count", "cycle_count", "realloc_count"] {
            let nodes = c.graph(stat)?;
            let rx = nodes
                .keys()
                .filter(|k| k.starts_with("rx-") && k.ends_with("-0"))
                .count();
            ensure(rx == 4, || format!("{stat}: {rx} rx nodes in {nodes:?}"))?;
            for n in ["tx-0", "tx-3", "rx_periodic", "cls", "conntrack", "drop"] {
                ensure(nodes.get(n).is_some_and(Value::is_u64), || {
                    format!("{stat}: no {n} in {nodes:?}")
                })?;
            }
        }

        // Tables: dpservice's, and a virtual-service table each.
        let sat = c.ask("/dp_service/table/saturation")?;
        let tables: Vec<&str> = sat
            .as_object()
            .ok_or_else(|| format!("saturation {sat}"))?
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = HASH_TABLES.to_vec();
        want.sort_unstable();
        ensure(tables == want, || format!("tables {tables:?}"))?;
        ensure(
            num(&sat["conntrack_table"], "capacity")? == 1_000_000,
            || format!("flow table {sat}"),
        )?;
        ensure(num(&sat["interface_table"], "capacity")? == 2, || {
            format!("interface table {sat}")
        })?;
        ensure(num(&sat["interface_table"], "entries")? == 0, || {
            format!("interface table {sat}")
        })?;

        // Malformed requests: null, and the connection goes on.
        let bad = c.raw(b"\xff\xfe garbage")?;
        ensure(
            bad.as_object()
                .is_some_and(|o| o.len() == 1 && o.values().all(Value::is_null)),
            || format!("garbage answered {bad}"),
        )?;
        ensure(c.ask("/no/such/command")?.is_null(), || "unknown".into())?;
        ensure(c.ask_param("/ethdev/xstats", "x")?.is_null(), || {
            "bad port".into()
        })?;
        // A second client at the same time.
        let mut c2 = Client::connect(&path)?;
        ensure(c2.ask("/eal/heap_list")? == serde_json::json!([0]), || {
            "second client".into()
        })?;

        // Interfaces: vm1 with NAT behind a default route, vm2 without.
        let mut api = Api::connect(grpc)?;
        api.init()?;
        for (id, vf, ip) in [("vm1", 0, 1), ("vm2", 1, 2)] {
            api.create_interface(&IfaceSpec {
                id,
                vni: VNI,
                ipv4: Ipv4Addr::new(10, 1, 1, ip),
                ipv6: Ipv6Addr::UNSPECIFIED,
                device: &names.vf(vf),
                hostname: None,
            })?;
        }
        api.create_nat("vm1", NAT_IP, 1000, 2000)?;
        api.create_route(
            VNI,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            0,
            VNI,
            "fc00::ffff".parse().map_err(|e| format!("{e}"))?,
        )?;
        let zero = serde_json::json!({"vm1": 0, "vm2": 0});
        ensure(c.ask("/dp_service/nat/used_port_count")? == zero, || {
            "no NAT ports used yet".into()
        })?;
        ensure(c.ask("/dp_service/firewall/rule_count")? == zero, || {
            "no firewall rules yet".into()
        })?;
        let sat = c.ask("/dp_service/table/saturation")?;
        ensure(num(&sat["interface_table"], "entries")? == 2, || {
            format!("interface table {sat}")
        })?;
        ensure(num(&sat["snat_table"], "entries")? == 1, || {
            format!("snat table {sat}")
        })?;

        // Firewall rules: 0 -> 1 -> 0 (as test_telemetry.py's test_telemetry_fwall).
        let rule = api.create_firewall_rule("vm1", accept_all_rule("vm1-fw1"))?;
        ensure(
            c.ask("/dp_service/firewall/rule_count")? == serde_json::json!({"vm1": 1, "vm2": 0}),
            || "one rule on vm1".into(),
        )?;
        api.delete_firewall_rule("vm1", &rule)?;
        ensure(c.ask("/dp_service/firewall/rule_count")? == zero, || {
            "the rule is gone".into()
        })?;

        // Traffic: vm1 (DHCP) opens three UDP flows to the internet (NAT'd, whether or not
        // anything answers) and one to the UDP virtual service.
        let vm = Vm::new("vm1", &names.netns("vm1"), &names.vf(0))?;
        let vm_ns = vm.ns.name.clone();
        vms.push(vm);
        vms[0].udhcpc(&scratch)?;
        let objs = |c: &mut Client| -> Result<(u64, u64), String> {
            let nodes = c.graph("obj_count")?;
            let get = |n: &str| nodes.get(n).and_then(Value::as_u64).unwrap_or(0);
            Ok((get("cls"), get(&format!("rx-{vf0}-0"))))
        };
        let before = objs(&mut c)?;
        for _ in 0..3 {
            udp_send(&vm_ns, (Ipv4Addr::new(192, 0, 2, 1), 7))?;
        }
        let used = wait_until("three NAT ports in use", Duration::from_secs(5), || {
            let v = c.ask("/dp_service/nat/used_port_count")?;
            if v == serde_json::json!({"vm1": 3, "vm2": 0}) {
                Ok(v)
            } else {
                Err(format!("NAT ports used: {v}"))
            }
        })?;
        eprintln!("NAT ports in use: {used}");
        let after = objs(&mut c)?;
        ensure(after.0 >= before.0 + 3 && after.1 >= before.1 + 3, || {
            format!("cls and rx-{vf0}-0 objects {before:?} -> {after:?}")
        })?;
        let sat = c.ask("/dp_service/table/saturation")?;
        ensure(num(&sat["nat_portmap_table"], "entries")? == 3, || {
            format!("NAT port map {sat}")
        })?;
        ensure(num(&sat["conntrack_table"], "entries")? >= 3, || {
            format!("flow table {sat}")
        })?;

        let udp_key = format!("UDP:{}:{}", UDP_VIRTSVC.0, UDP_VIRTSVC.1);
        let tcp_key = format!("TCP:{}:{}", TCP_VIRTSVC.0, TCP_VIRTSVC.1);
        let v = c.ask("/dp_service/virtsvc/used_port_count")?;
        ensure(
            v == serde_json::json!({udp_key.clone(): 0, tcp_key.clone(): 0}),
            || format!("virtual services before: {v}"),
        )?;
        udp_send(&vm_ns, UDP_VIRTSVC)?;
        wait_until(
            "a virtual-service port in use",
            Duration::from_secs(10),
            || {
                let v = c.ask("/dp_service/virtsvc/used_port_count")?;
                if v == serde_json::json!({udp_key.clone(): 1, tcp_key.clone(): 0}) {
                    Ok(())
                } else {
                    Err(format!("virtual services: {v}"))
                }
            },
        )?;
        let sat = c.ask("/dp_service/table/saturation")?;
        ensure(num(&sat["virtsvc_table_0"], "entries")? == 1, || {
            format!("virtual-service table {sat}")
        })?;

        // The socket goes away with the daemon.
        drop(c2);
        drop(c);
        vms.clear();
        daemon.stop_with(libc::SIGTERM, STOP_TIMEOUT)?;
        ensure(!path.exists(), || format!("{} left behind", path.display()))?;
        Ok(())
    })();
    if let Err(e) = r {
        let vm_report: String = vms.iter().map(Vm::report).collect();
        panic!("{e}\n{vm_report}\n{}", daemon.report());
    }
}
