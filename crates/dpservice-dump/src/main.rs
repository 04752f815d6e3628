//! `dpservice-dump`: dpservice's tool of the same name for dpservice-rs. See the crate docs and
//! docs/architecture.md ("Packet dump").

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dp_pipeline::trace::{self, Record};
use dpservice_dump::client::{self, Frame, Trace};
use dpservice_dump::{node_mask, pcapng::PcapNg, summary};

/// Shows packets going through dpservice-rs's graph: received and sent frames by default, drops
/// and node traversal on request; or lists its flows.
#[derive(Parser, Debug)]
#[command(name = "dpservice-dump", version, disable_version_flag = true)]
struct Opts {
    /// display version and exit
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,

    /// prefix for hugepage filenames (accepted for dpservice's scripts; dpservice-rs has no
    /// hugepages)
    #[arg(long = "file-prefix", value_name = "PREFIX")]
    file_prefix: Option<String>,

    /// show dropped packets
    #[arg(long)]
    drops: bool,

    /// show graph node traversal, limit to REGEX-matched nodes (empty string for all)
    #[arg(long, value_name = "REGEX")]
    nodes: Option<String>,

    /// show only packets matching a pcap-style FILTER
    #[arg(long, value_name = "FILTER")]
    filter: Option<String>,

    /// write packets into a PCAP(ng) file
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// exit after receiving COUNT packets
    #[arg(short = 'c', long = "maxcount", value_name = "COUNT")]
    maxcount: Option<u64>,

    /// do nothing, only make sure tracing is disabled in dp-service
    #[arg(long)]
    stop: bool,

    /// exit after SECONDS [dpservice-rs]
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,

    /// dpservice-rs's dump socket [dpservice-rs]
    #[arg(
        long,
        value_name = "PATH",
        env = "DPSERVICE_DUMP_SOCKET",
        default_value = "/run/dpservice/dump.sock"
    )]
    socket: PathBuf,

    /// list the connection-tracking table instead of tracing [dpservice-rs]
    #[arg(long, conflicts_with_all = ["nat_ports", "drops", "nodes", "filter", "pcap", "stop"])]
    flows: bool,

    /// list the NAT ports in use (source-NAT'd flows) instead of tracing [dpservice-rs]
    #[arg(long = "nat-ports", conflicts_with_all = ["drops", "nodes", "filter", "pcap", "stop"])]
    nat_ports: bool,

    /// with --flows/--nat-ports: only this interface's [dpservice-rs]
    #[arg(long, value_name = "ID")]
    interface: Option<String>,

    /// with --flows/--nat-ports: JSON lines instead of a table [dpservice-rs]
    #[arg(long)]
    json: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let result = if opts.stop {
        client::stop(&opts.socket)
            .map(|()| println!("Graphtrace successfully disabled in dp-service"))
    } else if opts.flows || opts.nat_ports {
        list(&opts)
    } else {
        dump(&opts)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dpservice-dump: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list(opts: &Opts) -> Result<(), String> {
    let flows = client::flows(&opts.socket, opts.nat_ports, opts.interface.as_deref())?;
    if opts.json {
        for f in &flows {
            println!("{f}");
        }
        return Ok(());
    }
    let key = |k: &serde_json::Value| {
        format!(
            "{} {}:{} > {}:{}",
            k["protocol"].as_str().unwrap_or("?"),
            k["src"].as_str().unwrap_or("?"),
            k["src_port"],
            k["dst"].as_str().unwrap_or("?"),
            k["dst_port"]
        )
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    if opts.nat_ports {
        println!(
            "{:<12} {:<24} {:<44} EXPIRES_MS",
            "INTERFACE", "NAT", "ORIGINAL"
        );
        for f in &flows {
            let r = &f["reply"];
            let nat = format!("{}:{}", s(&r["dst"]), r["dst_port"]);
            println!(
                "{:<12} {:<24} {:<44} {}",
                s(&f["interface"]),
                nat,
                key(&f["original"]),
                f["expires_in_ms"]
            );
        }
        println!("{} NAT ports in use", flows.len());
        return Ok(());
    }
    println!(
        "{:<3} {:<12} {:<12} {:<46} {:<46} {:<9} {:<12} {:<9} EXPIRES_MS",
        "W", "INTERFACE", "TO", "ORIGINAL", "REPLY", "XLATE", "TCP", "FIREWALL"
    );
    for f in &flows {
        println!(
            "{:<3} {:<12} {:<12} {:<46} {:<46} {:<9} {:<12} {:<9} {}",
            f["worker"],
            s(&f["interface"]),
            s(&f["dst_interface"]),
            key(&f["original"]),
            key(&f["reply"]),
            s(&f["translation"]),
            s(&f["tcp_state"]),
            s(&f["firewall"]),
            f["expires_in_ms"]
        );
    }
    println!("{} flows", flows.len());
    Ok(())
}

fn dump(opts: &Opts) -> Result<(), String> {
    // Compiled by libpcap itself, for Ethernet frames: every record holds one.
    let filter = match &opts.filter {
        Some(expr) => {
            let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
            Some(
                dead.compile(expr, true)
                    .map_err(|e| format!("bad filter {expr:?}: {e}"))?,
            )
        }
        None => None,
    };
    let mut flags = trace::WANT_PORTS;
    if opts.drops {
        flags |= trace::WANT_DROPS;
    }
    let mut mask = 0;
    if let Some(pattern) = &opts.nodes {
        flags |= trace::WANT_NODES;
        mask = node_mask(pattern).map_err(|e| format!("bad --nodes regex: {e}"))?;
    }
    let mut pcap = opts.pcap.as_deref().map(PcapNg::create).transpose()?;
    // SAFETY: `on_signal` only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut session = Trace::start(&opts.socket, flags, mask)?;
    // Said on stderr once attached (scripts wait for it); packets go to stdout.
    eprintln!(
        "dpservice-dump: attached ({} ports{}{})",
        session.info.ports.len(),
        if opts.drops { ", drops" } else { "" },
        if opts.nodes.is_some() { ", nodes" } else { "" }
    );
    let deadline = opts
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut shown = 0u64;
    let mut lost = 0u64;
    let result = loop {
        if INTERRUPTED.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
        if opts.maxcount.is_some_and(|max| shown >= max) {
            break Ok(());
        }
        let bytes = match session.next_frame() {
            Ok(Some(Frame::Record(bytes))) => bytes,
            Ok(Some(Frame::Lost(n))) => {
                lost = n;
                continue;
            }
            Ok(None) => continue,
            Err(e) => break Err(e),
        };
        let Some(record) = Record::decode(&bytes) else {
            continue;
        };
        if filter.as_ref().is_some_and(|f| !f.filter(record.data)) {
            continue;
        }
        shown += 1;
        match &mut pcap {
            Some(file) => {
                let ts = session.info.epoch_ns + record.now_ns;
                if let Err(e) = file.write(
                    ts,
                    record.orig_len,
                    record.data,
                    summary::comment(&record, &session.info),
                ) {
                    break Err(e);
                }
            }
            None => println!("{}", summary::line(&record, &session.info)),
        }
    };
    drop(session);
    if let Some(file) = pcap {
        file.finish()?;
    }
    if lost > 0 {
        eprintln!("{lost} records lost (dpservice's trace rings were full)");
    }
    eprintln!("{shown} packets");
    eprintln!("Graphtrace successfully disabled in dp-service");
    result
}
