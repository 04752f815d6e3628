//! DPDK's telemetry socket, version 2, with dpservice's commands: what `dpdk-telemetry.py`,
//! dpservice's `dpservice-exporter` and dpservice's tests talk to.
//!
//! A unix `SOCK_SEQPACKET` socket at `/var/run/dpdk/rte/dpdk_telemetry.v2` (root) or
//! `/run/user/<uid>/dpdk/rte/dpdk_telemetry.v2` (`--telemetry-socket` elsewhere, `none` off;
//! [`crate::options::Options::telemetry_path`]).
//! On connect the server sends `{"version":…,"pid":…,"max_output_len":16384}`; then every
//! message is a request `command[,parameter]` and gets one message back, `{"<command>": value}`,
//! compact JSON of at most [`MAX_OUTPUT_LEN`] bytes (entries that do not fit are left out, as
//! DPDK does). An unknown command, or one that fails (a bad parameter), answers
//! `{"<command>":null}`. `/` lists the commands, `/help,<command>` describes one, `/info` is
//! the greeting again.
//!
//! The values come from [`Sources`], the same figures the Prometheus endpoint reports
//! (`crate::metrics`): nothing is computed twice. One thread serves every client with
//! `poll(2)` (at most [`MAX_CONNECTIONS`], as DPDK); it never touches the workers but to ask
//! for their buffer pools' fill (`/eal/heap_info`, answered at their next tick).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::metrics::{GraphStat, PortSource, Sources};

/// The socket's file name in its directory (DPDK's `dpdk_telemetry.v2`).
pub const SOCKET_NAME: &str = "dpdk_telemetry.v2";
/// Largest reply (DPDK's `MAX_OUTPUT_LEN`), announced in the greeting.
pub const MAX_OUTPUT_LEN: usize = 16 * 1024;
/// Longest command name (DPDK's `MAX_CMD_LEN`): longer ones are unknown.
pub const MAX_CMD_LEN: usize = 56;
/// Most bytes of a request read (DPDK's buffer); the rest of a longer message is lost.
pub const MAX_REQUEST_LEN: usize = 1024;
/// Clients served at once (DPDK's `MAX_CONNECTIONS`); more are closed at once.
pub const MAX_CONNECTIONS: usize = 10;
/// How often the server looks at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a reply may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `/eal/heap_info` waits for each worker's pool figures (they answer every tick).
const REPORT_WAIT: Duration = Duration::from_millis(300);

/// The version string of the greeting and `/info`: DPDK's form, naming what answers.
pub fn version() -> String {
    format!(
        "DPDK telemetry v2 (dpservice-rs {})",
        env!("CARGO_PKG_VERSION")
    )
}

/// One command: its name, its help text (`/help`) and what computes its value (`None`: the
/// command failed, answered with null).
struct Command {
    name: &'static str,
    help: &'static str,
    run: fn(&Sources, Option<&str>) -> Option<Value>,
}

const COMMANDS: &[Command] = &[
    Command {
        name: "/",
        help: "Returns list of available commands, Takes no parameters",
        run: |_, _| Some(json!(COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>())),
    },
    Command {
        name: "/info",
        help: "Returns DPDK Telemetry information. Takes no parameters",
        run: |_, _| Some(greeting_value()),
    },
    Command {
        name: "/help",
        help: "Returns help text for a command. Parameters: string command",
        run: |_, param| help(param),
    },
    Command {
        name: "/dp_service/graph/obj_count",
        help: "Returns total number of objects processed by each graph node.",
        run: |s, _| Some(graph(s, GraphStat::Objects)),
    },
    Command {
        name: "/dp_service/graph/call_count",
        help: "Returns total number of calls made by each graph node.",
        run: |s, _| Some(graph(s, GraphStat::Calls)),
    },
    Command {
        name: "/dp_service/graph/cycle_count",
        help: "Returns total number of cycles used by each graph node.",
        run: |s, _| Some(graph(s, GraphStat::Cycles)),
    },
    Command {
        name: "/dp_service/graph/realloc_count",
        help: "Returns total number of reallocations done by each graph node.",
        run: |s, _| Some(graph(s, GraphStat::Reallocs)),
    },
    Command {
        name: "/dp_service/nat/used_port_count",
        help: "Returns the number of nat ports in use by each VF interface (attached VM).",
        run: |s, _| Some(counts(s.nat_used_ports())),
    },
    Command {
        name: "/dp_service/virtsvc/used_port_count",
        help: "Returns the number of ports in use by each virtual service.",
        run: |s, _| Some(counts(s.virtsvc_used_ports())),
    },
    Command {
        name: "/dp_service/table/saturation",
        help: "Returns the current and maximal capacity of each hash table.",
        run: |s, _| {
            let mut m = Map::new();
            for t in s.table_fill() {
                m.insert(
                    t.name,
                    json!({"capacity": t.capacity, "entries": t.entries}),
                );
            }
            Some(Value::Object(m))
        },
    },
    Command {
        name: "/dp_service/firewall/rule_count",
        help: "Returns the number of firewall rules for each VF interface (attached VM).",
        run: |s, _| Some(counts(s.firewall_rules())),
    },
    Command {
        name: "/ethdev/list",
        help: "Returns list of available ethdev ports. Takes no parameters",
        run: |s, _| Some(json!(s.ports.iter().map(|p| p.port).collect::<Vec<_>>())),
    },
    Command {
        name: "/ethdev/info",
        help: "Returns the device info for a port. Parameters: int port_id",
        run: |s, param| ethdev_info(s, port_param(s, param)?),
    },
    Command {
        name: "/ethdev/link_status",
        help: "Returns the link status for a port. Parameters: int port_id",
        run: |s, param| {
            let p = port_param(s, param)?;
            let up = s.port_table.get(p.port).is_some_and(|e| e.link_up());
            // The speed is not known here (TAPs and AF_XDP do not have one): 0.
            Some(if up {
                json!({"status": "UP", "speed": 0, "duplex": "full-duplex"})
            } else {
                json!({"status": "DOWN"})
            })
        },
    },
    Command {
        name: "/ethdev/stats",
        help: "Returns the common stats for a port. Parameters: int port_id",
        run: |s, param| Some(ethdev_stats(s, port_param(s, param)?)),
    },
    Command {
        name: "/ethdev/xstats",
        help: "Returns the extended stats for a port. Parameters: int port_id",
        run: |s, param| Some(ethdev_xstats(s, port_param(s, param)?)),
    },
    Command {
        name: "/eal/heap_list",
        help: "List of heap IDs. Takes no parameters",
        run: |_, _| Some(json!([0])),
    },
    Command {
        name: "/eal/heap_info",
        help: "Returns malloc heap stats. Parameters: int heap_id",
        run: |s, param| heap_info(s, param),
    },
];

/// The greeting's fields (also `/info`'s value).
fn greeting_value() -> Value {
    json!({
        "version": version(),
        "pid": std::process::id(),
        "max_output_len": MAX_OUTPUT_LEN,
    })
}

/// What the server sends a client when it connects.
pub fn greeting() -> String {
    greeting_value().to_string()
}

fn help(param: Option<&str>) -> Option<Value> {
    let cmd = COMMANDS
        .iter()
        .find(|c| c.name == param.unwrap_or("/help"))?;
    Some(match param {
        Some(name) => {
            let mut m = Map::new();
            m.insert(name.to_owned(), json!(cmd.help));
            Value::Object(m)
        }
        None => json!(cmd.help),
    })
}

/// `{name: count}` of a list of named counts.
fn counts(list: Vec<(String, u64)>) -> Value {
    Value::Object(list.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

/// A graph statistic as dpservice nests it: blocks of up to 256 nodes (DPDK's dictionary
/// limit), the first `Node_0_to_255`.
fn graph(s: &Sources, stat: GraphStat) -> Value {
    let mut blocks = Map::new();
    for (i, chunk) in s.graph_stats(stat).chunks(256).enumerate() {
        let first = i * 256;
        blocks.insert(
            format!("Node_{first}_to_{}", first + 255),
            counts(chunk.to_vec()),
        );
    }
    Value::Object(blocks)
}

/// The port a parameter names (`/ethdev/...,<port_id>`), if it is one of ours.
fn port_param<'s>(s: &'s Sources, param: Option<&str>) -> Option<&'s PortSource> {
    let id: u16 = param?.trim().parse().ok()?;
    s.port(id)
}

fn ethdev_info(s: &Sources, p: &PortSource) -> Option<Value> {
    let entry = s.port_table.get(p.port)?;
    let mac = entry
        .own_mac
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Some(json!({
        "name": entry.name,
        "port_id": p.port,
        "state": 1,
        "nb_rx_queues": p.queues.len(),
        "nb_tx_queues": p.queues.len(),
        "mac_addr": mac,
        "promiscuous": 0,
        "all_multicast": 0,
        "socket_id": 0,
    }))
}

/// DPDK's basic statistics (`rte_eth_stats`), with the per-queue arrays (a queue per worker).
fn ethdev_stats(s: &Sources, p: &PortSource) -> Value {
    let t = s.port_stats(p);
    let queues: Vec<_> = p.queues.iter().map(|q| q.snapshot()).collect();
    let per = |f: fn(&dp_ports::PortStats) -> u64| queues.iter().map(f).collect::<Vec<_>>();
    json!({
        "ipackets": t.rx_packets,
        "opackets": t.tx_packets,
        "ibytes": t.rx_bytes,
        "obytes": t.tx_bytes,
        "imissed": 0,
        "ierrors": t.rx_errors,
        "oerrors": t.tx_errors + t.tx_dropped,
        "rx_nombuf": t.rx_nombuf,
        "q_ipackets": per(|q| q.rx_packets),
        "q_opackets": per(|q| q.tx_packets),
        "q_ibytes": per(|q| q.rx_bytes),
        "q_obytes": per(|q| q.tx_bytes),
        "q_errors": per(|q| q.rx_errors),
    })
}

/// DPDK's generic extended statistics of a port (the names a software device has), a set of
/// `rx_qN_*`/`tx_qN_*` per queue, and `tx_dropped` (frames the other side could not take).
fn ethdev_xstats(s: &Sources, p: &PortSource) -> Value {
    let t = s.port_stats(p);
    let mut m = Map::new();
    let mut put = |k: String, v: u64| {
        m.insert(k, json!(v));
    };
    put("rx_good_packets".into(), t.rx_packets);
    put("tx_good_packets".into(), t.tx_packets);
    put("rx_good_bytes".into(), t.rx_bytes);
    put("tx_good_bytes".into(), t.tx_bytes);
    put("rx_missed_errors".into(), 0);
    put("rx_errors".into(), t.rx_errors);
    put("tx_errors".into(), t.tx_errors);
    put("rx_mbuf_allocation_errors".into(), t.rx_nombuf);
    for (i, q) in p.queues.iter().enumerate() {
        let q = q.snapshot();
        put(format!("rx_q{i}_packets"), q.rx_packets);
        put(format!("rx_q{i}_bytes"), q.rx_bytes);
        put(format!("rx_q{i}_errors"), q.rx_errors);
        put(format!("tx_q{i}_packets"), q.tx_packets);
        put(format!("tx_q{i}_bytes"), q.tx_bytes);
    }
    put("tx_dropped".into(), t.tx_dropped);
    put("resets".into(), t.resets);
    Value::Object(m)
}

/// Heap 0: the packet buffer pools of every worker, in DPDK's heap terms (the mempools of a
/// DPDK application live in its heap): the size of all buffers, those in use (allocated) and
/// free, and the largest free block — one buffer, when any is free (they are not contiguous).
fn heap_info(s: &Sources, param: Option<&str>) -> Option<Value> {
    let id: u32 = param.map_or(Some(0), |p| p.trim().parse().ok())?;
    if id != 0 {
        return None;
    }
    let reports = crate::stats::reports(&s.workers, REPORT_WAIT);
    let capacity: u64 = reports.iter().map(|r| r.pool_capacity as u64).sum();
    let free: u64 = reports.iter().map(|r| r.pool_available as u64).sum();
    let used = capacity.saturating_sub(free);
    let b = s.buffer_bytes;
    Some(json!({
        "Heap_id": 0,
        "Name": "packet buffers",
        "Heap_size": capacity * b,
        "Free_size": free * b,
        "Alloc_size": used * b,
        "Greatest_free_size": if free > 0 { b } else { 0 },
        "Alloc_count": used,
        "Free_count": free,
    }))
}

/// The reply to one request message (as DPDK parses it: the command up to the first comma,
/// the rest its parameter; here also without the trailing newline a shell's `echo` adds).
pub fn reply(sources: &Sources, request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    let text = text.trim_end_matches(['\n', '\r', '\0', ' ']);
    let (cmd, param) = match text.split_once(',') {
        Some((c, p)) => (c, Some(p).filter(|p| !p.is_empty())),
        None => (text, None),
    };
    let value = COMMANDS
        .iter()
        .find(|c| cmd.len() < MAX_CMD_LEN && c.name == cmd)
        .and_then(|c| (c.run)(sources, param))
        .unwrap_or(Value::Null);
    // The command as the key, as DPDK echoes it (at most its own length limit of it).
    let key: String = cmd.chars().take(MAX_CMD_LEN).collect();
    bounded(key, value)
}

/// `{key: value}` in at most [`MAX_OUTPUT_LEN`] bytes: entries are left out from the end
/// (of the innermost last container first) until it fits; null if even the empty one does not.
fn bounded(key: String, mut value: Value) -> String {
    loop {
        let mut out = Map::new();
        out.insert(key.clone(), value);
        let text = serde_json::to_string(&out).unwrap_or_default();
        let excess = text.len().saturating_sub(MAX_OUTPUT_LEN);
        if excess == 0 {
            return text;
        }
        value = out.remove(&key).unwrap_or(Value::Null);
        if shrink_by(&mut value, excess) == 0 {
            return format!("{{{}:null}}", Value::String(key));
        }
    }
}

/// Leaves out entries worth at least `want` bytes of JSON (as near as it can tell): from the
/// end of the last container, innermost first. Returns about how many bytes it left out.
fn shrink_by(v: &mut Value, want: usize) -> usize {
    let mut freed = 0;
    match v {
        Value::Object(m) => {
            while freed < want {
                let Some(last) = m.keys().next_back().cloned() else {
                    break;
                };
                let inner = m.get_mut(&last).map_or(0, |x| shrink_by(x, want - freed));
                if inner > 0 {
                    freed += inner;
                } else if let Some(x) = m.remove(&last) {
                    // "key":value and a comma.
                    freed += last.len() + x.to_string().len() + 4;
                }
            }
        }
        Value::Array(a) => {
            while freed < want {
                let Some(x) = a.last_mut() else {
                    break;
                };
                let inner = shrink_by(x, want - freed);
                if inner > 0 {
                    freed += inner;
                } else if let Some(x) = a.pop() {
                    freed += x.to_string().len() + 1;
                }
            }
        }
        _ => {}
    }
    freed
}

/// The running server: the socket file is removed, and the thread stopped, on drop.
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket at `path` (its directories made, a stale socket replaced; anything else
/// there is an error) and serves it on a thread of its own until the returned server drops.
pub fn serve(path: &Path, sources: Arc<Sources>) -> io::Result<Server> {
    let listener = bind(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("dp-telemetry".into())
        .spawn(move || run(&listener, &sources, &flag))?;
    Ok(Server {
        path: path.to_owned(),
        stop,
        thread: Some(thread),
    })
}

fn bind(path: &Path) -> io::Result<Socket> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            // A live server there (another dpservice) answers a connect: leave it alone.
            let probe = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
            if probe.connect(&SockAddr::unix(path)?).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is served by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(MAX_CONNECTIONS as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// The server loop: `poll(2)` over the listener and the clients, a request answered as it
/// comes; a client that hangs up or errs is dropped.
fn run(listener: &Socket, sources: &Sources, stop: &AtomicBool) {
    let mut clients: Vec<Socket> = Vec::new();
    let mut buf = [0u8; MAX_REQUEST_LEN];
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener)
            .chain(clients.iter())
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs
        // for the duration of the call; poll only writes their `revents`.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                POLL_INTERVAL.as_millis() as libc::c_int,
            )
        };
        if n <= 0 {
            continue;
        }
        // Clients first (their indices are those of this round), then new connections.
        let mut gone = Vec::new();
        for (i, (fd, client)) in fds.iter().skip(1).zip(clients.iter()).enumerate() {
            if fd.revents == 0 {
                continue;
            }
            // One message per read (a sequenced-packet socket keeps their bounds).
            match (&*client).read(&mut buf) {
                Ok(0) | Err(_) => gone.push(i),
                Ok(len) => {
                    let answer = reply(sources, buf.get(..len).unwrap_or_default());
                    if client.send(answer.as_bytes()).is_err() {
                        gone.push(i);
                    }
                }
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
        if fds.first().is_some_and(|l| l.revents != 0) {
            accept_all(listener, &mut clients);
        }
    }
}

fn accept_all(listener: &Socket, clients: &mut Vec<Socket>) {
    while let Ok((client, _)) = listener.accept() {
        if clients.len() >= MAX_CONNECTIONS {
            tracing::warn!("telemetry: too many clients, connection closed");
            continue;
        }
        let ready = client
            .set_nonblocking(false)
            .and_then(|()| client.set_write_timeout(Some(SEND_TIMEOUT)))
            .and_then(|()| client.send(greeting().as_bytes()));
        if ready.is_ok() {
            clients.push(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{PortSource, TableLimits};
    use dp_pipeline::{GraphCounters, NodeId, PortEntry, PortKind, PortTable};
    use dp_tables::{Publisher, Snapshot};
    use std::sync::atomic::Ordering;

    fn sources() -> (Sources, Publisher) {
        let publisher = Publisher::new(Snapshot::default());
        let table = Arc::new(PortTable::new(vec![
            PortEntry::new(
                PortKind::Uplink,
                "pf0",
                dp_packet::MacAddr([2, 0, 0, 0, 0, 1]),
            ),
            PortEntry::new(PortKind::Vf, "vf0", dp_packet::MacAddr([2, 0, 0, 0, 0, 2])),
        ]));
        let graph = Arc::new(GraphCounters::default());
        graph.node_packets[NodeId::Classify.index()].store(5, Ordering::Relaxed);
        graph.node_calls[NodeId::Classify.index()].store(2, Ordering::Relaxed);
        let src = Sources {
            hostname: "host1".into(),
            graphs: vec![graph],
            ports: (0..2)
                .map(|port| PortSource {
                    port,
                    queues: vec![dp_ports::PortCounters::new()],
                    workers: vec![0],
                })
                .collect(),
            port_table: table,
            tables: publisher.reader(),
            limits: TableLimits::default(),
            virtual_services: Arc::default(),
            virtsvc_used: Vec::new(),
            ticks_per_ns: 1.0,
            workers: Vec::new(),
            buffer_bytes: 2048,
        };
        (src, publisher)
    }

    fn ask(s: &Sources, request: &str) -> Value {
        let text = reply(s, request.as_bytes());
        assert!(text.len() <= MAX_OUTPUT_LEN);
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn greeting_and_info() {
        let g: Value = serde_json::from_str(&greeting()).unwrap();
        assert!(g["version"].as_str().unwrap().starts_with("DPDK "));
        assert_eq!(g["pid"], json!(std::process::id()));
        assert_eq!(g["max_output_len"], json!(16384));
        let (s, _p) = sources();
        assert_eq!(ask(&s, "/info")["/info"], g);
    }

    #[test]
    fn requests_parse_with_and_without_parameter_and_newline() {
        let (s, _p) = sources();
        for req in [
            "/dp_service/graph/obj_count",
            "/dp_service/graph/obj_count\n",
            "/dp_service/graph/obj_count,0",
            "/dp_service/graph/obj_count,0\n",
        ] {
            let v = ask(&s, req);
            assert_eq!(
                v["/dp_service/graph/obj_count"]["Node_0_to_255"]["cls"],
                json!(5),
                "{req:?}: {v}"
            );
        }
        let v = ask(&s, "/dp_service/graph/call_count,0\n");
        let nodes = &v["/dp_service/graph/call_count"]["Node_0_to_255"];
        assert_eq!(nodes["cls"], json!(2));
        for name in ["rx-0-0", "rx-1-0", "tx-0", "tx-1", "rx_periodic", "drop"] {
            assert!(nodes.get(name).is_some(), "{name} in {nodes}");
        }
    }

    #[test]
    fn unknown_and_malformed_requests_answer_null() {
        let (s, _p) = sources();
        assert_eq!(reply(&s, b"/nope,1"), r#"{"/nope":null}"#);
        assert_eq!(reply(&s, b""), r#"{"":null}"#);
        assert_eq!(reply(&s, b"\xff\xfe,\x00"), "{\"\u{fffd}\u{fffd}\":null}");
        assert_eq!(reply(&s, b"/ethdev/stats,x"), r#"{"/ethdev/stats":null}"#);
        assert_eq!(reply(&s, b"/ethdev/stats,9"), r#"{"/ethdev/stats":null}"#);
        assert_eq!(reply(&s, b"/ethdev/stats"), r#"{"/ethdev/stats":null}"#);
        assert_eq!(reply(&s, b"/eal/heap_info,1"), r#"{"/eal/heap_info":null}"#);
        let long = format!("/{}", "x".repeat(2000));
        let v = ask(&s, &long);
        let (k, val) = v.as_object().unwrap().iter().next().unwrap();
        assert_eq!(k.len(), MAX_CMD_LEN);
        assert!(val.is_null());
    }

    #[test]
    fn list_and_help() {
        let (s, _p) = sources();
        let list = ask(&s, "/");
        let names: Vec<&str> = list["/"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for cmd in [
            "/dp_service/nat/used_port_count",
            "/dp_service/virtsvc/used_port_count",
            "/dp_service/table/saturation",
            "/dp_service/firewall/rule_count",
            "/ethdev/xstats",
            "/eal/heap_info",
        ] {
            assert!(names.contains(&cmd), "{cmd} in {names:?}");
        }
        assert_eq!(
            ask(&s, "/help,/dp_service/table/saturation")["/help"]["/dp_service/table/saturation"],
            json!("Returns the current and maximal capacity of each hash table.")
        );
        assert!(ask(&s, "/help")["/help"].is_string());
        assert!(ask(&s, "/help,/nope")["/help"].is_null());
    }

    #[test]
    fn dpservice_and_ethdev_shapes() {
        let (s, _p) = sources();
        let sat = ask(&s, "/dp_service/table/saturation");
        let tables = sat["/dp_service/table/saturation"].as_object().unwrap();
        for name in [
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
        ] {
            assert!(tables[name]["capacity"].is_u64(), "{name}");
            assert!(tables[name]["entries"].is_u64(), "{name}");
        }
        assert_eq!(tables.len(), 11);
        assert_eq!(
            ask(&s, "/dp_service/nat/used_port_count")["/dp_service/nat/used_port_count"],
            json!({})
        );
        assert_eq!(ask(&s, "/ethdev/list")["/ethdev/list"], json!([0, 1]));
        assert_eq!(
            ask(&s, "/ethdev/info,1")["/ethdev/info"]["name"],
            json!("vf0")
        );
        assert_eq!(
            ask(&s, "/ethdev/info,1")["/ethdev/info"]["mac_addr"],
            json!("02:00:00:00:00:02")
        );
        assert_eq!(
            ask(&s, "/ethdev/link_status,0")["/ethdev/link_status"]["status"],
            json!("UP")
        );
        let x = ask(&s, "/ethdev/xstats,0");
        let x = x["/ethdev/xstats"].as_object().unwrap();
        for k in [
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
        ] {
            assert!(x[k].is_u64(), "{k}");
        }
        assert_eq!(
            ask(&s, "/ethdev/stats,0")["/ethdev/stats"]["q_ipackets"],
            json!([0])
        );
        assert_eq!(ask(&s, "/eal/heap_list")["/eal/heap_list"], json!([0]));
        // No workers to ask: an empty heap.
        let h = ask(&s, "/eal/heap_info,0");
        assert_eq!(h["/eal/heap_info"]["Heap_size"], json!(0));
        assert_eq!(h["/eal/heap_info"]["Heap_id"], json!(0));
    }

    #[test]
    fn replies_are_bounded() {
        let mut big = Map::new();
        for i in 0..5000 {
            big.insert(format!("interface-{i:05}"), json!(i));
        }
        let text = bounded("/x".into(), json!({"Node_0_to_255": Value::Object(big)}));
        assert!(text.len() <= MAX_OUTPUT_LEN);
        let v: Value = serde_json::from_str(&text).unwrap();
        let kept = v["/x"]["Node_0_to_255"].as_object().unwrap();
        assert!(kept.len() > 100 && kept.len() < 5000);
        assert!(kept.contains_key("interface-00000"));
        // Nothing that could fit: null.
        let text = bounded("/y".into(), json!("z".repeat(MAX_OUTPUT_LEN)));
        assert_eq!(text, r#"{"/y":null}"#);
    }

    #[test]
    fn serves_the_socket_and_removes_it() {
        let dir = std::env::temp_dir().join(format!("dp-tel-unit-{}", std::process::id()));
        let path = dir.join("sub").join(SOCKET_NAME);
        // A stale socket file is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (s, _p) = sources();
        let server = serve(&path, Arc::new(s)).unwrap();
        let client = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        client.connect(&SockAddr::unix(&path).unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = vec![0u8; MAX_OUTPUT_LEN + 1];
        let mut recv = || {
            let n = (&client).read(&mut buf).unwrap();
            serde_json::from_slice::<Value>(&buf[..n]).unwrap()
        };
        assert!(recv()["max_output_len"].is_u64());
        client.send(b"/ethdev/list,0\n").unwrap();
        assert_eq!(recv(), json!({"/ethdev/list": [0, 1]}));
        client.send(b"garbage").unwrap();
        assert_eq!(recv(), json!({"garbage": null}));
        // A second server on the same path is refused while this one runs.
        let (s2, _p2) = sources();
        assert!(serve(&path, Arc::new(s2)).is_err());
        drop(server);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
