//! The dump server: what `dpservice-dump` attaches to. A unix stream socket (`--dump-socket`)
//! taking one request line per connection (the protocol is in docs/architecture.md, "Packet
//! dump"):
//!
//! - `trace <flags> <node-mask>`: sets the workers' trace taps ([`dp_pipeline::trace`]) and
//!   streams their records until the client hangs up, then clears them. One client at a time.
//! - `stop`: clears the taps (`dpservice-dump --stop`, after a client that died uncleanly).
//! - `flows [INTERFACE]`, `nat-ports [INTERFACE]`: the workers' conntrack tables (asked with
//!   [`WorkerCommand::Flows`], in bounded steps), as JSON lines.
//!
//! A thread of its own: it never runs on a worker, and a worker never waits for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dp_pipeline::commands::{CommandSender, FlowChunk, WorkerCommand};
use dp_pipeline::trace::{TraceControl, TraceReader};
use dp_pipeline::PortTable;
use dp_tables::{ConnKey, Flow, PortId, SnapshotReader, TcpState, Translation, NO_PORT};

/// Where `dpservice-dump` looks by default.
pub const DEFAULT_SOCKET: &str = "/run/dpservice/dump.sock";

/// Frame types of a trace stream: a record, or the running count of records lost to full rings.
pub const FRAME_RECORD: u8 = b'R';
pub const FRAME_LOST: u8 = b'L';

/// Flows asked of a worker per step (the vector it fills).
const FLOWS_PER_STEP: usize = 4096;
/// How long a worker has to answer one step.
const STEP_WAIT: Duration = Duration::from_secs(2);

/// What the server needs of the daemon.
pub struct DumpContext {
    pub control: Arc<TraceControl>,
    pub readers: Vec<TraceReader>,
    pub workers: Vec<CommandSender>,
    pub tables: SnapshotReader,
    pub port_table: Arc<PortTable>,
    pub stop: Arc<AtomicBool>,
}

/// Binds `path` (its directory created; a stale socket replaced, a live one left alone) and
/// serves on a thread of its own until `ctx.stop`.
pub fn spawn(path: &Path, ctx: DumpContext) -> Result<std::thread::JoinHandle<()>, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is served by another process", path.display()));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("dump socket: {e}"))?;
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("dp-dump".into())
        .spawn(move || serve(listener, path, ctx))
        .map_err(|e| format!("cannot start the dump server: {e}"))
}

fn serve(listener: UnixListener, path: PathBuf, mut ctx: DumpContext) {
    while !ctx.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handle(stream, &mut ctx) {
                    tracing::debug!("dump client: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                tracing::warn!("dump socket: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    ctx.control.disable();
    let _ = std::fs::remove_file(path);
}

fn handle(stream: UnixStream, ctx: &mut DumpContext) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?.take(4096)).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    let mut out = stream;
    match (words.next(), words.next(), words.next()) {
        (Some("trace"), Some(flags), Some(nodes)) => {
            let (Ok(flags), Ok(nodes)) = (flags.parse::<u64>(), u64::from_str_radix(nodes, 16))
            else {
                return out.write_all(b"error bad trace request\n");
            };
            trace_session(out, flags, nodes, ctx)
        }
        (Some("stop"), None, None) => {
            ctx.control.disable();
            out.write_all(b"ok\n")
        }
        (Some(what @ ("flows" | "nat-ports")), iface, None) => {
            list_flows(&mut out, what == "nat-ports", iface, ctx)
        }
        _ => out.write_all(b"error unknown request\n"),
    }
}

/// Streams the taps' records to the client until it hangs up (or the daemon stops).
fn trace_session(
    mut out: UnixStream,
    flags: u64,
    nodes: u64,
    ctx: &mut DumpContext,
) -> std::io::Result<()> {
    for reader in &mut ctx.readers {
        reader.discard();
    }
    let gone = Arc::new(AtomicBool::new(false));
    // The client sends nothing more: a read returning (0 bytes or an error) means it left.
    let watcher = {
        let gone = Arc::clone(&gone);
        let mut input = out.try_clone()?;
        input.set_read_timeout(None)?;
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let _ = input.read(&mut byte);
            gone.store(true, Ordering::Relaxed);
        })
    };
    out.write_all(format!("ok {}\n", session_info(ctx)).as_bytes())?;
    ctx.control.enable(flags, nodes);
    tracing::info!(
        flags,
        nodes = format!("{nodes:x}"),
        "dpservice-dump attached"
    );
    let result = stream_records(&mut out, &gone, ctx);
    ctx.control.disable();
    tracing::info!("dpservice-dump detached");
    let _ = out.shutdown(std::net::Shutdown::Both);
    let _ = watcher.join();
    result
}

/// What the client needs to show records: the wall-clock time of the workers' clock zero and
/// the ports' names (a VM port's interface id, else its device name).
fn session_info(ctx: &DumpContext) -> String {
    let wall_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let epoch_ns = wall_ns.saturating_sub(crate::worker::clock_ns());
    let tables = ctx.tables.load();
    let ports: Vec<String> = (0..ctx.port_table.len())
        .map(|p| {
            let id = PortId::try_from(p).unwrap_or(PortId::MAX);
            match (tables.iface(id), ctx.port_table.get(id)) {
                (Some(iface), _) => iface.id.clone(),
                (None, Some(entry)) => entry.name.clone(),
                (None, None) => format!("port{p}"),
            }
        })
        .collect();
    serde_json::json!({ "epoch_ns": epoch_ns, "ports": ports }).to_string()
}

fn stream_records(
    out: &mut UnixStream,
    gone: &AtomicBool,
    ctx: &mut DumpContext,
) -> std::io::Result<()> {
    let mut record = Vec::new();
    let mut frames = Vec::with_capacity(1 << 16);
    let mut lost_sent = ctx.control.lost();
    while !gone.load(Ordering::Relaxed) && !ctx.stop.load(Ordering::Relaxed) {
        frames.clear();
        for reader in &mut ctx.readers {
            while frames.len() < (1 << 16) && reader.next_record(&mut record) {
                frames.push(FRAME_RECORD);
                frames.extend_from_slice(&(record.len() as u32).to_le_bytes());
                frames.extend_from_slice(&record);
            }
        }
        let lost = ctx.control.lost();
        if lost != lost_sent {
            lost_sent = lost;
            frames.push(FRAME_LOST);
            frames.extend_from_slice(&8u32.to_le_bytes());
            frames.extend_from_slice(&lost.to_le_bytes());
        }
        if frames.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        out.write_all(&frames)?;
    }
    Ok(())
}

/// `flows` and `nat-ports`: every worker's flows (of `iface`, or all), a JSON line each.
fn list_flows(
    out: &mut UnixStream,
    nat_only: bool,
    iface: Option<&str>,
    ctx: &DumpContext,
) -> std::io::Result<()> {
    let tables = ctx.tables.load();
    let port_name = |port: PortId| -> Option<String> {
        if port == NO_PORT {
            return None;
        }
        tables.iface(port).map(|i| i.id.clone())
    };
    let port = match iface {
        None => None,
        Some(id) => {
            let found = (0..ctx.port_table.len())
                .filter_map(|p| PortId::try_from(p).ok())
                .find(|&p| tables.iface(p).is_some_and(|i| i.id == id));
            match found {
                Some(p) => Some(p),
                None => return out.write_all(format!("error no interface {id}\n").as_bytes()),
            }
        }
    };
    out.write_all(b"ok\n")?;
    let now = crate::worker::clock_ns();
    for worker in &ctx.workers {
        let mut from = Some(0);
        while let Some(start) = from {
            let (reply, answer) = std::sync::mpsc::sync_channel::<FlowChunk>(1);
            let command = WorkerCommand::Flows {
                from: start,
                port,
                flows: Vec::with_capacity(FLOWS_PER_STEP),
                reply,
            };
            if worker.send(command).is_err() {
                return out.write_all(b"error a worker's command queue is full\n");
            }
            let Ok(chunk) = answer.recv_timeout(STEP_WAIT) else {
                return out.write_all(b"error a worker did not answer\n");
            };
            for flow in &chunk.flows {
                if nat_only
                    && !matches!(flow.translation, Translation::SnatNat | Translation::Nat64)
                {
                    continue;
                }
                let line = flow_json(chunk.index, flow, now, &port_name);
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
            }
            from = chunk.next;
        }
    }
    Ok(())
}

fn addr(key: &ConnKey, which: u128) -> String {
    if key.is_v6 {
        Ipv6Addr::from(which).to_string()
    } else {
        Ipv4Addr::from(which as u32).to_string()
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

fn key_json(key: &ConnKey) -> serde_json::Value {
    serde_json::json!({
        "vni": key.vni,
        "protocol": proto_name(key.proto.0),
        "src": addr(key, key.src),
        "dst": addr(key, key.dst),
        "src_port": key.src_port,
        "dst_port": key.dst_port,
    })
}

/// One flow as `dpservice-dump --flows` prints it (and `--json` passes on).
pub fn flow_json(
    worker: usize,
    flow: &Flow,
    now_ns: u64,
    port_name: &dyn Fn(PortId) -> Option<String>,
) -> String {
    let translation = match flow.translation {
        Translation::None => "none",
        Translation::SnatVip => "vip",
        Translation::SnatNat => "nat",
        Translation::DnatVip => "dnat_vip",
        Translation::Nat64 => "nat64",
        Translation::Lb => "lb",
    };
    let tcp = match flow.tcp {
        TcpState::None => "none",
        TcpState::SynSent => "syn_sent",
        TcpState::SynReceived => "syn_received",
        TcpState::Established => "established",
        TcpState::FinWait => "fin_wait",
        TcpState::Closed => "closed",
    };
    let firewall = match (flow.firewall.is_decided(), flow.firewall.accept) {
        (false, _) => "undecided",
        (true, true) => "accept",
        (true, false) => "drop",
    };
    serde_json::json!({
        "worker": worker,
        "interface": port_name(flow.ports[0]),
        "dst_interface": port_name(flow.ports[1]),
        "original": key_json(&flow.original),
        "reply": key_json(&flow.reply),
        "translation": translation,
        "tcp_state": tcp,
        "firewall": firewall,
        "expires_in_ms": flow.expires_ns.saturating_sub(now_ns) / 1_000_000,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_tables::{ConnKey, FirewallVerdict};

    #[test]
    fn a_flow_shows_its_firewall_verdict() {
        let key = ConnKey::default();
        let firewall_of = |firewall| {
            let flow = Flow {
                firewall,
                ..Flow::new(key, key.reversed(), 5_000_000)
            };
            let json: serde_json::Value =
                serde_json::from_str(&flow_json(0, &flow, 0, &|_| None)).unwrap();
            assert_eq!(json["expires_in_ms"], 5);
            json["firewall"].as_str().unwrap().to_string()
        };
        assert_eq!(firewall_of(FirewallVerdict::UNDECIDED), "undecided");
        let decided = |accept| FirewallVerdict {
            generation: 0,
            accept,
        };
        assert_eq!(firewall_of(decided(true)), "accept");
        assert_eq!(
            firewall_of(decided(false)),
            "drop",
            "generation 0 is a decision"
        );
    }
}
