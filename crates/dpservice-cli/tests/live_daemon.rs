//! The CLI against the real daemon (TAP ports; needs root).
//!
//! Each test starts its own `dpservice` with uniquely named TAP devices and
//! its own gRPC port, drives it with the `dpservice-cli` binary and checks
//! the JSON the CLI prints and its exit code. Skipped (with a message) when
//! not root or when the daemon binary has not been built
//! (`cargo build -p dpservice`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_dpservice-cli");

fn daemon_binary() -> Option<PathBuf> {
    let beside_cli = Path::new(CLI).parent().map(|d| d.join("dpservice"));
    let in_workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/dpservice");
    [beside_cli, Some(in_workspace)]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A running daemon; killed when dropped (also when a test fails).
struct Daemon {
    child: Child,
    port: u16,
    /// prefix of this daemon's interface names
    u: String,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("daemon log kept in {}", self.log.display());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn unique_prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    // short: Linux interface names have at most 15 characters
    format!("c{:x}{n}", std::process::id() & 0xfffff)
}

/// Starts a daemon, or returns `None` (after saying why) when this
/// environment cannot run one.
fn start() -> Option<Daemon> {
    if !is_root() {
        eprintln!("SKIPPED: live daemon tests need root (TAP devices)");
        return None;
    }
    let Some(bin) = daemon_binary() else {
        eprintln!("SKIPPED: target/debug/dpservice not built (cargo build -p dpservice)");
        return None;
    };
    let u = unique_prefix();
    let port = free_port();
    let log = std::env::temp_dir().join(format!("dpservice-cli-test-{u}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(bin)
        .args(["--nic-type", "tap"])
        .args(["--pf0", &format!("{u}p0"), "--pf1", &format!("{u}p1")])
        .args(["--vf-pattern", &format!("{u}v"), "--vf-count", "3"])
        .args([
            "--ipv6",
            "fc00:1::1",
            "--grpc-port",
            &port.to_string(),
            "--no-stats",
        ])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn dpservice");
    let mut d = Daemon {
        child,
        port,
        u,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = d.child.try_wait() {
            let log = std::fs::read_to_string(&d.log).unwrap_or_default();
            panic!("dpservice exited early ({status}):\n{log}");
        }
        if TcpStream::connect(("127.0.0.1", d.port)).is_ok() {
            return Some(d);
        }
        assert!(
            Instant::now() < deadline,
            "dpservice did not open its gRPC port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Output of one CLI run.
struct Run {
    code: i32,
    stdout: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

impl Daemon {
    fn cli_raw(&self, args: &[&str]) -> Run {
        let out = Command::new(CLI)
            .arg(format!("--address=localhost:{}", self.port))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dpservice-cli");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    /// Runs the CLI with `-o json`, expecting success.
    fn ok(&self, args: &str) -> Value {
        let r = self.json_run(args);
        assert_eq!(r.code, 0, "dpservice-cli {args}: {}", r.stdout);
        let v = r.json();
        assert_ne!(v["kind"], "Error", "dpservice-cli {args}: {v}");
        v
    }

    /// Runs the CLI with `-o json`, expecting an error document; returns
    /// (exit code, source, code, message).
    fn fails(&self, args: &str) -> (i32, String, u64, String) {
        let r = self.json_run(args);
        let v = r.json();
        assert_eq!(
            v["kind"], "Error",
            "dpservice-cli {args}: expected an error, got {v}"
        );
        assert_ne!(r.code, 0);
        (
            r.code,
            v["spec"]["source"].as_str().unwrap_or_default().to_owned(),
            v["status"]["code"].as_u64().unwrap_or_default(),
            v["status"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }

    fn json_run(&self, args: &str) -> Run {
        let mut a = vec!["-o", "json"];
        a.extend(args.split_whitespace());
        self.cli_raw(&a)
    }

    fn init(&self) -> String {
        let v = self.ok("init");
        assert_eq!(v["kind"], "Initialized");
        v["spec"]["uuid"].as_str().expect("uuid").to_owned()
    }

    fn dev(&self, n: u32) -> String {
        format!("{}v{n}", self.u)
    }
}

fn in_host_underlay(addr: &Value) -> bool {
    let s = addr.as_str().unwrap_or_default();
    let ip: std::net::Ipv6Addr = s
        .parse()
        .unwrap_or_else(|_| panic!("not an IPv6 address: {addr}"));
    ip.segments()[..4] == [0xfc00, 1, 0, 0]
}

#[test]
fn init_version_and_interfaces() {
    let Some(d) = start() else { return };

    // before init every call but Initialize is refused by dpservice
    let (code, source, grpc_code, msg) = d.fails("get init");
    assert_eq!(
        (code, source.as_str(), grpc_code, msg.as_str()),
        (1, "grpc", 10, "not initialized")
    );

    let uuid = d.init();
    assert!(!uuid.is_empty());
    let v = d.ok("get init");
    assert_eq!(v["spec"]["uuid"], uuid.as_str());
    assert_eq!(
        v["status"],
        serde_json::json!({"code": 0, "message": "Success"})
    );
    let (code, source, _, msg) = d.fails("init");
    assert_eq!((code, source.as_str()), (1, "client"));
    assert_eq!(
        msg,
        format!("error dp-service already initialized, uuid: {uuid}")
    );

    let v = d.ok("get version");
    assert_eq!(v["kind"], "Version");
    assert_eq!(v["metadata"]["client_name"], "dpservice-cli");
    assert!(
        !v["spec"]["service_version"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );

    // create: the reply carries the underlay address allocated in --ipv6's /64
    let v = d.ok(&format!(
        "add interface --id vm1 --vni 100 --ipv4 10.100.1.1 --ipv6 2000:100:1::1 --device {}",
        d.dev(0)
    ));
    assert_eq!(v["metadata"]["id"], "vm1");
    assert_eq!(v["spec"]["vni"], 100);
    assert_eq!(v["spec"]["primary_ipv4"], "10.100.1.1");
    assert_eq!(v["spec"]["primary_ipv6"], "2000:100:1::1");
    assert_eq!(v["spec"]["virtual_function"]["name"], d.dev(0).as_str());
    assert!(in_host_underlay(&v["spec"]["underlay_route"]), "{v}");
    let underlay = v["spec"]["underlay_route"].clone();

    // default output of create is the name line
    let r = d.cli_raw(&[
        "add",
        "interface",
        "--id",
        "vm2",
        "--vni",
        "100",
        "--ipv4",
        "10.100.1.2",
        "--device",
        &d.dev(1),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .starts_with("vm2 created, underlay route: fc00:1::"),
        "{}",
        r.stdout
    );

    let v = d.ok("list interfaces");
    assert_eq!(v["kind"], "InterfaceList");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{v}");
    assert_eq!(items[0]["metadata"]["id"], "vm1", "sorted by id");
    assert_eq!(items[0]["spec"]["underlay_route"], underlay);
    assert_eq!(items[0]["spec"]["device"], d.dev(0).as_str());
    assert_eq!(items[1]["metadata"]["id"], "vm2");

    let v = d.ok("get interface --id vm1");
    assert_eq!(v["kind"], "Interface");
    assert_eq!(v["spec"]["vni"], 100);
    assert_eq!(v["spec"]["primary_ipv4"], "10.100.1.1");
    assert_eq!(v["spec"]["underlay_route"], underlay);

    // table output
    let r = d.cli_raw(&["list", "interfaces"]);
    assert_eq!(r.code, 0);
    let mut lines = r.stdout.lines();
    assert!(
        lines
            .next()
            .unwrap_or_default()
            .starts_with(" ID   VNI  Device "),
        "{}",
        r.stdout
    );
    assert!(
        lines.next().unwrap_or_default().starts_with(" vm1  100  "),
        "{}",
        r.stdout
    );

    // errors reported by dpservice: exit code 2, status code and name
    let dup = format!(
        "add interface --id vm1 --vni 100 --ipv4 10.100.1.1 --device {}",
        d.dev(0)
    );
    assert_eq!(
        d.fails(&dup),
        (2, "server".into(), 202, "ALREADY_EXISTS".into())
    );
    let r = d.cli_raw(&dup.split_whitespace().collect::<Vec<_>>());
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stdout,
        "server error: error creating interface: [error code 202] ALREADY_EXISTS\n"
    );
    assert_eq!(
        d.fails("add interface --id vm9 --vni 100 --ipv4 10.100.1.9 --device nosuchdev"),
        (2, "server".into(), 201, "NOT_FOUND".into())
    );
    assert_eq!(
        d.fails("get interface --id nosuch"),
        (2, "server".into(), 201, "NOT_FOUND".into())
    );

    // malformed input never reaches the daemon
    let (code, source, c, msg) = d.fails(&format!(
        "add interface --id vm3 --vni 100 --ipv4 10.100.1.300 --device {}",
        d.dev(2)
    ));
    assert_eq!((code, source.as_str(), c), (1, "client", 1000));
    assert!(
        msg.contains("invalid argument \"10.100.1.300\" for \"--ipv4\" flag"),
        "{msg}"
    );
    let (code, source, _, msg) = d.fails(&format!(
        "add interface --id vm3 --ipv4 10.100.1.3 --device {}",
        d.dev(2)
    ));
    assert_eq!(
        (code, source.as_str(), msg.as_str()),
        (1, "client", "required flag(s) \"vni\" not set")
    );
    assert_eq!(
        d.ok("list interfaces")["items"].as_array().map(Vec::len),
        Some(2)
    );

    let v = d.ok("del interface --id vm2");
    assert_eq!(
        (v["kind"].as_str(), v["metadata"]["id"].as_str()),
        (Some("Interface"), Some("vm2"))
    );
    assert_eq!(
        d.fails("delete interface --id vm2"),
        (2, "server".into(), 201, "NOT_FOUND".into())
    );
    let v = d.ok("list interfaces");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
}

#[test]
fn routes_prefixes_and_vnis() {
    let Some(d) = start() else { return };
    d.init();
    d.ok(&format!(
        "add interface --id vm1 --vni 100 --ipv4 10.100.1.1 --device {}",
        d.dev(0)
    ));

    // VNI usage
    let v = d.ok("get vni --vni 100 --vni-type 0");
    assert_eq!(v["kind"], "Vni");
    assert_eq!(
        v["metadata"],
        serde_json::json!({"vni": 100, "vni_type": 0})
    );
    assert_eq!(v["spec"]["in_use"], true);
    assert_eq!(
        d.ok("get vni --vni 200 --vni-type 0")["spec"]["in_use"],
        false
    );
    let (code, _, _, msg) = d.fails("get vni --vni 100");
    assert_eq!(
        (code, msg.as_str()),
        (1, "required flag(s) \"vni-type\" not set")
    );

    // routes
    let v = d.ok(
        "add route --vni 100 --prefix 10.200.0.0/16 --next-hop-vni 200 --next-hop-ip fc00:2::1",
    );
    assert_eq!(v["kind"], "Route");
    assert_eq!(
        v["spec"],
        serde_json::json!({"prefix": "10.200.0.0/16", "next_hop": {"vni": 200, "address": "fc00:2::1"}})
    );
    let r = d.cli_raw(&[
        "add",
        "route",
        "--vni",
        "100",
        "--prefix",
        "2001:db8::/32",
        "--next-hop-vni",
        "100",
        "--next-hop-ip",
        "fc00:3::1",
    ]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "route/2001:db8::/32-100 created, Next Hop IP: fc00:3::1\n"
        )
    );
    let v = d.ok("list routes --vni 100");
    assert_eq!(v["kind"], "RouteList");
    assert_eq!(v["metadata"]["vni"], 100);
    let items = v["items"].as_array().expect("items");
    let prefixes: Vec<&str> = items
        .iter()
        .filter_map(|i| i["spec"]["prefix"].as_str())
        .collect();
    // dpservice lists a VNI's IPv4 routes only
    assert_eq!(prefixes, vec!["10.200.0.0/16"], "{v}");
    assert_eq!(
        items[0]["spec"]["next_hop"],
        serde_json::json!({"vni": 200, "address": "fc00:2::1"})
    );
    assert_eq!(
        d.fails(
            "add route --vni 100 --prefix 10.200.0.0/16 --next-hop-vni 200 --next-hop-ip fc00:2::1"
        ),
        (2, "server".into(), 301, "ROUTE_EXISTS".into())
    );
    let v = d.ok("del route --vni 100 --prefix 10.200.0.0/16");
    assert_eq!(v["spec"]["prefix"], "10.200.0.0/16");
    assert_eq!(
        d.fails("del route --vni 100 --prefix 10.200.0.0/16"),
        (2, "server".into(), 302, "ROUTE_NOT_FOUND".into())
    );
    assert_eq!(
        d.ok("list routes --vni 100")["items"],
        serde_json::json!([])
    );
    assert_eq!(
        d.ok("del route --vni 100 --prefix 2001:db8::/32")["spec"]["prefix"],
        "2001:db8::/32"
    );
    let (code, source, _, msg) =
        d.fails("add route --vni 100 --prefix 10.0.0.0/33 --next-hop-vni 1 --next-hop-ip fc00::1");
    assert_eq!((code, source.as_str()), (1, "client"));
    assert!(msg.ends_with("prefix length out of range"), "{msg}");

    // prefixes routed to the interface
    let v = d.ok("add prefix --interface-id vm1 --prefix 10.100.5.0/24");
    assert_eq!(v["kind"], "Prefix");
    assert_eq!(v["spec"]["prefix"], "10.100.5.0/24");
    assert!(in_host_underlay(&v["spec"]["underlay_route"]), "{v}");
    let underlay = v["spec"]["underlay_route"].clone();
    let v = d.ok("list prefixes --interface-id vm1");
    assert_eq!(v["kind"], "PrefixList");
    assert_eq!(v["metadata"]["interface_id"], "vm1");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(
        items[0]["metadata"],
        serde_json::json!({"interface_id": "vm1", "vni": 100})
    );
    assert_eq!(
        items[0]["spec"],
        serde_json::json!({"prefix": "10.100.5.0/24", "underlay_route": underlay})
    );
    // all interfaces' prefixes
    assert_eq!(
        d.ok("list prefixes")["items"].as_array().map(Vec::len),
        Some(1)
    );
    let (code, source, _, msg) = d.fails("add prefix --interface-id vm1 --prefix 10.100.5.0/40");
    assert_eq!((code, source.as_str()), (1, "client"));
    assert!(
        msg.contains("netip.ParsePrefix(\"10.100.5.0/40\"): prefix length out of range"),
        "{msg}"
    );
    let v = d.ok("del prefix --interface-id vm1 --prefix 10.100.5.0/24");
    assert_eq!(v["kind"], "Prefix");
    assert_eq!(
        d.ok("list prefixes --interface-id vm1")["items"],
        serde_json::json!([])
    );
    assert_eq!(
        d.ok("list prefixes")["items"],
        Value::Null,
        "no prefix on any interface: null, as the Go CLI"
    );

    // resetting the VNI drops its routes
    d.ok("add route --vni 100 --prefix 10.201.0.0/16 --next-hop-vni 200 --next-hop-ip fc00:2::1");
    assert_eq!(
        d.ok("list routes --vni 100")["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let v = d.ok("reset vni --vni 100");
    assert_eq!(v["kind"], "Vni");
    assert_eq!(
        v["metadata"],
        serde_json::json!({"vni": 100, "vni_type": 2})
    );
    assert_eq!(
        d.ok("list routes --vni 100")["items"],
        serde_json::json!([])
    );
    let (code, _, _, msg) = d.fails("reset vni --vni 100 --vni-type bogus");
    assert_eq!(
        (code, msg.as_str()),
        (1, "VNI type can be only: ipv4 = 0/ipv6 = 1/both = 2")
    );
}

#[test]
fn other_groups_answer_readably() {
    let Some(d) = start() else { return };
    d.init();
    d.ok(&format!(
        "add interface --id vm1 --vni 100 --ipv4 10.100.1.1 --device {}",
        d.dev(0)
    ));
    // Whatever the daemon implements, every command group gets a JSON
    // document: the object or an Error with source, code and message.
    for cmd in [
        "get nat --interface-id vm1",
        "get virtualip --interface-id vm1",
        "list loadbalancers",
        "list firewallrules --interface-id vm1",
        "list lbprefixes --interface-id vm1",
        "list nats",
        "capture status",
    ] {
        let r = d.json_run(cmd);
        let v = r.json();
        if v["kind"] == "Error" {
            assert_ne!(r.code, 0, "{cmd}");
            assert!(
                matches!(
                    v["spec"]["source"].as_str(),
                    Some("client" | "server" | "grpc")
                ),
                "{cmd}: {v}"
            );
            assert!(v["status"]["code"].as_u64().unwrap_or(0) > 0, "{cmd}: {v}");
            assert!(
                !v["status"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty(),
                "{cmd}: {v}"
            );
        } else {
            assert_eq!(r.code, 0, "{cmd}: {v}");
            assert!(v.get("status").is_some(), "{cmd}: {v}");
        }
    }
    // text output of such an error is one line on stdout
    let r = d.cli_raw(&["get", "nat", "--interface-id", "vm1"]);
    if r.code != 0 {
        assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
        assert!(r.stdout.contains(" error: "), "{}", r.stdout);
    }
}

#[test]
fn nat_virtualip_and_firewall() {
    let Some(d) = start() else { return };
    d.init();
    for (id, ip, dev) in [("vm1", "10.100.1.1", 0), ("vm2", "10.100.1.2", 1)] {
        d.ok(&format!(
            "add interface --id {id} --vni 100 --ipv4 {ip} --device {}",
            d.dev(dev)
        ));
    }

    // virtual IP
    let v = d.ok("add virtualip --interface-id vm1 --vip 172.20.0.1");
    assert_eq!(v["kind"], "VirtualIP");
    let ul = v["spec"]["underlay_route"].clone();
    assert!(in_host_underlay(&ul), "{v}");
    let v = d.ok("get virtualip --interface-id vm1");
    assert_eq!(v["spec"]["vip_ip"], "172.20.0.1", "{v}");
    assert_eq!(v["spec"]["underlay_route"], ul, "{v}");
    let (_, source, code, msg) = d.fails("add virtualip --interface-id vm1 --vip 172.20.0.1");
    assert_eq!(
        (source.as_str(), code, msg.as_str()),
        ("server", 343, "SNAT_EXISTS")
    );

    // NAT, shared by two interfaces
    let v = d.ok("add nat --interface-id vm1 --nat-ip 172.21.1.1 --minport 100 --maxport 102");
    assert_eq!(v["kind"], "Nat");
    assert!(in_host_underlay(&v["spec"]["underlay_route"]), "{v}");
    d.ok("add nat --interface-id vm2 --nat-ip 172.21.1.1 --minport 102 --maxport 103");
    let v = d.ok("get nat --interface-id vm1");
    assert_eq!(
        (
            &v["spec"]["nat_ip"],
            &v["spec"]["min_port"],
            &v["spec"]["max_port"]
        ),
        (
            &serde_json::json!("172.21.1.1"),
            &serde_json::json!(100),
            &serde_json::json!(102)
        ),
        "{v}"
    );
    let v = d.ok("list nats --nat-ip 172.21.1.1 --nat-type local");
    assert_eq!(v["kind"], "NatList");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2), "{v}");
    d.ok("add neighbornat --nat-ip 172.21.1.1 --vni 100 --minport 500 --maxport 520 --underlayroute fc00:2::64:0:1");
    let (_, source, code, _) = d.fails(
        "add neighbornat --nat-ip 172.21.1.1 --vni 200 --minport 510 --maxport 530 --underlayroute fc00:2::64:0:1",
    );
    assert_eq!((source.as_str(), code), ("server", 202));

    // firewall rules
    let v = d.ok(
        "add firewallrule --interface-id vm1 --rule-id fw1 --direction ingress --action accept \
         --src 0.0.0.0/0 --dst 10.100.1.1/32 --protocol tcp --src-port-min -1 --dst-port-min 80 \
         --dst-port-max 80",
    );
    assert_eq!(v["kind"], "FirewallRule");
    let v = d.ok("get firewallrule --interface-id vm1 --rule-id fw1");
    assert_eq!(v["spec"]["id"], "fw1", "{v}");
    assert_eq!(v["spec"]["priority"], 1000, "{v}");
    let v = d.ok("list firewallrules --interface-id vm1");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, source, code, _) = d.fails(
        "add firewallrule --interface-id vm1 --rule-id fw1 --direction ingress --action drop \
         --src 0.0.0.0/0 --dst 0.0.0.0/0",
    );
    assert_eq!((source.as_str(), code), ("server", 202));

    // everything goes with the interface
    d.ok("del interface --id vm1");
    let v = d.ok("list nats --nat-ip 172.21.1.1 --nat-type local");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn load_balancers_targets_and_prefixes() {
    let Some(d) = start() else { return };
    d.init();
    d.ok(&format!(
        "add interface --id vm1 --vni 100 --ipv4 10.100.1.1 --device {}",
        d.dev(0)
    ));

    let v = d.ok("add loadbalancer --id lb1 --vni 100 --vip 10.20.30.40 --lbports tcp/80,udp/53");
    assert_eq!(v["kind"], "LoadBalancer");
    let ul = v["spec"]["underlay_route"].clone();
    assert!(in_host_underlay(&ul), "{v}");
    let v = d.ok("get loadbalancer --id lb1");
    assert_eq!(v["spec"]["loadbalanced_ip"], "10.20.30.40", "{v}");
    assert_eq!(v["spec"]["underlay_route"], ul, "{v}");
    assert_eq!(
        v["spec"]["loadbalanced_ports"],
        serde_json::json!([{"protocol": 6, "port": 80}, {"protocol": 17, "port": 53}]),
        "{v}"
    );
    let (_, source, code, _) =
        d.fails("add loadbalancer --id lb1 --vni 100 --vip 10.20.30.40 --lbports tcp/80");
    assert_eq!((source.as_str(), code), ("server", 202));
    let v = d.ok("list loadbalancers");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");

    // A target prefix on vm1, and its underlay address as a target.
    let v = d.ok("add lbprefix --interface-id vm1 --prefix 10.20.30.40/32");
    assert_eq!(v["kind"], "LoadBalancerPrefix");
    let target = v["spec"]["underlay_route"].as_str().unwrap().to_owned();
    let v = d.ok("list lbprefixes --interface-id vm1");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    d.ok(&format!("add lbtarget --lb-id lb1 --target-ip {target}"));
    d.ok("add lbtarget --lb-id lb1 --target-ip fc00:2::64:0:1");
    let v = d.ok("list lbtargets --lb-id lb1");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2), "{v}");
    let (_, source, code, _) = d.fails("add lbtarget --lb-id nope --target-ip fc00:2::64:0:1");
    assert_eq!((source.as_str(), code), ("server", 422));
    let (_, source, code, _) = d.fails("add lbtarget --lb-id lb1 --target-ip 1.2.3.4");
    assert_eq!((source.as_str(), code), ("server", 204));
    d.ok("del lbtarget --lb-id lb1 --target-ip fc00:2::64:0:1");
    let v = d.ok("list lbtargets --lb-id lb1");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");

    // Removal.
    d.ok("del lbprefix --interface-id vm1 --prefix 10.20.30.40/32");
    d.ok("del loadbalancer --id lb1");
    let (_, source, code, _) = d.fails("get loadbalancer --id lb1");
    assert_eq!((source.as_str(), code), ("server", 201));
}
