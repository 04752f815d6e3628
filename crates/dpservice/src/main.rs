//! `dpservice`: the dpservice-rs daemon.
//!
//! Start-up order matters for clear failures: options, then the gRPC port (a port in use fails
//! before any device is touched), then the TAP devices, then the workers and the gRPC server.
//! SIGINT/SIGTERM stop the server and the workers; the TAP devices vanish with their descriptors.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dp_control::{Config, ControlPlane};
use dp_pipeline::affinity::{self, Wake};
use dp_pipeline::commands::{self, CommandSender};
use dp_pipeline::{
    BufferPool, DpConfig, Graph, GraphCounters, WorkerCtx, DEFAULT_DATA_ROOM, LARGE_DATA_ROOM,
};
use dp_ports::Wakeup;
use dp_tables::{Publisher, Snapshot};

use dpservice::options::Options;
use dpservice::worker::{EventfdWake, Worker};
use dpservice::{dump, logging, metrics, neighbor, ports, stats, telemetry};

/// Packet buffers per worker: enough for every batch in flight with room to spare.
const BUFFERS_PER_WORKER: usize = 4096;
/// Large (64 KiB) buffers per worker for TCP superframes from VM TAPs with offload: a full
/// receive burst's worth and some (~21 MiB of address space, resident only once used).
const LARGE_BUFFERS_PER_WORKER: usize = 320;
/// Ethernet header and a VLAN tag's worth of slack on top of the underlay MTU.
const UNDERLAY_FRAME_EXTRA: usize = 18;
/// How often the stats line is printed (unless `--no-stats`).
const STATS_INTERVAL: Duration = Duration::from_secs(10);
/// How long the shutdown waits for each worker's report (workers serve commands every tick).
const REPORT_WAIT: Duration = Duration::from_millis(500);
/// How long the time-stamp counter is calibrated against the clock at start (per-node time).
const CALIBRATION: Duration = Duration::from_millis(20);

/// The process's real user id (for DPDK's default telemetry path).
fn uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let opts = match Options::load() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("dpservice: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(opts.log_format, opts.color);
    for warning in &opts.warnings {
        tracing::warn!("{warning}");
    }
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("dpservice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: Options) -> Result<(), String> {
    let underlay = opts
        .ipv6
        .ok_or("--ipv6 is required: the host's underlay IPv6 address")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dp-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?;
    // Watch the signals before anything else: a SIGINT or SIGTERM that arrives while the ports
    // and workers start is then a clean shutdown once the server runs, not the default action
    // (the process killed with its TAPs half set up).
    let signals = runtime
        .block_on(async { ShutdownSignals::watch() })
        .map_err(|e| format!("cannot watch SIGINT/SIGTERM: {e}"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind((
            std::net::Ipv6Addr::UNSPECIFIED,
            opts.grpc_port,
        )))
        .or_else(|_| {
            runtime.block_on(tokio::net::TcpListener::bind((
                std::net::Ipv4Addr::UNSPECIFIED,
                opts.grpc_port,
            )))
        })
        .map_err(|e| format!("cannot listen for gRPC on port {}: {e}", opts.grpc_port))?;

    // The metrics address, like the gRPC port, fails before any device is touched.
    let metrics_listener = match opts.metrics_addr {
        Some(addr) => Some(
            runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?,
        ),
        None => None,
    };

    let ports = ports::create(&opts, underlay)?;
    let config = Arc::new(DpConfig {
        underlay_ipv6: underlay,
        dhcp_mtu: opts.dhcp_mtu,
        dhcp_dns: opts.dhcp_dns.clone(),
        dhcpv6_dns: opts.dhcpv6_dns.clone(),
        ipv6_overlay: opts.enable_ipv6_overlay,
        underlay_mtu: opts.underlay_mtu,
        wcmp_percent: opts.wcmp_percent(),
        router: opts.router,
        flow_timeouts: dp_tables::Timeouts::with_default_secs(u64::from(opts.flow_timeout)),
        conntrack: match opts.conntrack {
            dpservice::options::ConntrackOption::All => dp_pipeline::ConntrackMode::All,
            dpservice::options::ConntrackOption::Stateful => dp_pipeline::ConntrackMode::Stateful,
        },
        router_mac_from_kernel: neighbor::uses_kernel_neighbors(&opts),
        virtual_services: Arc::new(opts.virtual_services(underlay)?),
    });
    if opts.wcmp_enabled() && opts.pf1.is_none() {
        tracing::warn!(
            "--wcmp {} has no effect without --pf1: every flow uses pf0",
            opts.wcmp_percent()
        );
    }
    if usize::from(opts.dhcp_mtu) > config.overlay_mtu() {
        tracing::info!(
            "--dhcp-mtu {} exceeds --underlay-mtu {} minus the 40-byte encapsulation: packets \
             to other hypervisors above {} bytes get ICMP errors (path-MTU discovery)",
            opts.dhcp_mtu,
            opts.underlay_mtu,
            config.overlay_mtu()
        );
    }
    match opts.router {
        Some(router) => tracing::info!(%router, "resolving the underlay router on every uplink"),
        None if config.router_mac_from_kernel => tracing::info!(
            "no --router: the uplinks' router MAC comes from the kernel's IPv6 neighbour table \
             (00:00:00:00:00:00 until it has a router entry)"
        ),
        None => tracing::info!(
            "no --router: the underlay router is whoever sends router advertisements on an uplink"
        ),
    }

    let publisher = Publisher::new(Snapshot::default());
    let reader = publisher.reader();
    let control = ControlPlane::new(
        publisher,
        Config {
            limits: dp_control::Limits {
                firewall_rules_per_interface: opts.max_firewall_rules as usize,
                public_addresses: opts.max_public_addresses as usize,
                neighbor_nats: opts.max_neighbor_nats as usize,
                load_balancers: opts.max_load_balancers as usize,
                lb_targets: opts.max_lb_targets as usize,
                lb_ports: opts.max_lb_ports as usize,
            },
            ..Config::new(underlay, ports.vf_devices(), ports.uplink_ids())
        },
    );

    let stop = Arc::new(AtomicBool::new(false));
    // Room for a whole underlay frame: decapsulation receives up to --underlay-mtu bytes.
    let data_room = DEFAULT_DATA_ROOM.max(usize::from(opts.underlay_mtu) + UNDERLAY_FRAME_EXTRA);
    let large = if ports.any_offload() {
        LARGE_BUFFERS_PER_WORKER
    } else {
        0
    };
    let port_count = ports.count();
    let port_table = Arc::clone(&ports.table);
    let uplink_ids = ports.uplink_ids();
    let mut all_counters = Vec::new();
    let mut worker_threads = Vec::new();
    let worker_count = ports.per_worker.len();
    // Flow affinity: with several workers, rings between every pair and a wake-up each.
    let wakeups: Vec<Arc<Wakeup>> = if worker_count > 1 {
        (0..worker_count)
            .map(|_| Wakeup::new().map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot create a worker wake-up (eventfd): {e}"))?
    } else {
        Vec::new()
    };
    let wakers: Vec<Option<Arc<dyn Wake>>> = wakeups
        .iter()
        .map(|w| Some(Arc::new(EventfdWake(Arc::clone(w))) as Arc<dyn Wake>))
        .collect();
    let mut rings = if worker_count > 1 {
        affinity::mesh(worker_count, affinity::RING_CAPACITY, wakers)
    } else {
        Vec::new()
    }
    .into_iter();
    let mut command_senders: Vec<CommandSender> = Vec::new();
    // dpservice-dump's taps, one ring per worker, off until a client attaches.
    let trace_control = Arc::new(dp_pipeline::trace::TraceControl::default());
    let mut trace_readers = Vec::new();
    // Every port's counters, a set per worker's queue, for the metrics endpoint.
    let port_sources: Vec<metrics::PortSource> = (0..port_count)
        .map(|i| {
            let (workers, queues) = ports
                .per_worker
                .iter()
                .enumerate()
                .filter_map(|(w, list)| list.get(i).map(|p| (w, Arc::clone(p.counters()))))
                .unzip();
            metrics::PortSource {
                port: dp_tables::PortId::try_from(i).unwrap_or(dp_tables::PortId::MAX),
                queues,
                workers,
            }
        })
        .collect();
    let mut virtsvc_used = Vec::new();
    for (index, list) in ports.per_worker.into_iter().enumerate() {
        let (commands_tx, commands_rx) = commands::queue();
        command_senders.push(commands_tx);
        let counters = Arc::new(GraphCounters::default());
        all_counters.push(Arc::clone(&counters));
        let mut graph = Graph::new(port_count, counters);
        graph.set_trace_level(opts.graphtrace_loglevel);
        if !opts.dump_socket.is_empty() {
            let (tap, reader) = dp_pipeline::trace::tap(
                Arc::clone(&trace_control),
                index,
                dp_pipeline::trace::RING_BYTES,
            );
            graph.set_trace_tap(tap);
            trace_readers.push(reader);
        }
        let worker_ctx = match rings.next() {
            Some(r) => WorkerCtx::with_rings(r),
            None => WorkerCtx::new(index, worker_count),
        }
        .with_flow_capacity(opts.flow_table_size as usize / worker_count.max(1))
        .with_virtual_services(&config.virtual_services);
        virtsvc_used.push(worker_ctx.virtsvc.used_ports());
        let worker = Worker {
            graph,
            pool: BufferPool::with_large(BUFFERS_PER_WORKER, data_room, large, LARGE_DATA_ROOM),
            tables: reader.clone(),
            port_table: Arc::clone(&port_table),
            config: Arc::clone(&config),
            stop: Arc::clone(&stop),
            ports: list,
            worker: worker_ctx,
            wakeup: wakeups.get(index).cloned(),
            commands: Some(commands_rx),
        };
        let thread = std::thread::Builder::new()
            .name(format!("dp-worker-{index}"))
            .spawn(move || worker.run_as(index == 0))
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        worker_threads.push(thread);
    }
    let counters = all_counters;
    let vf_ports = port_table
        .iter()
        .filter(|(_, p)| p.kind == dp_pipeline::PortKind::Vf)
        .count();
    let metrics_sources = Arc::new(metrics::Sources {
        hostname: metrics::hostname(),
        graphs: counters.clone(),
        ports: port_sources,
        port_table: Arc::clone(&port_table),
        tables: reader.clone(),
        limits: metrics::TableLimits {
            interfaces: vf_ports as u64,
            public_addresses: u64::from(opts.max_public_addresses),
            load_balancers: u64::from(opts.max_load_balancers),
        },
        virtual_services: Arc::clone(&config.virtual_services),
        virtsvc_used,
        ticks_per_ns: dp_pipeline::cycles::ticks_per_ns(CALIBRATION),
        workers: command_senders.clone(),
        buffer_bytes: (data_room + dp_pipeline::HEADROOM) as u64,
    });
    let dump_thread = if opts.dump_socket.is_empty() {
        None
    } else {
        let ctx = dump::DumpContext {
            control: trace_control,
            readers: trace_readers,
            workers: command_senders.clone(),
            tables: reader.clone(),
            port_table: Arc::clone(&port_table),
            stop: Arc::clone(&stop),
        };
        // Not fatal: the dataplane runs without its dump socket (said in the log).
        match dump::spawn(std::path::Path::new(&opts.dump_socket), ctx) {
            Ok(thread) => {
                tracing::info!(socket = %opts.dump_socket, "serving dpservice-dump");
                Some(thread)
            }
            Err(e) => {
                tracing::warn!("no dpservice-dump socket: {e}");
                None
            }
        }
    };
    // The telemetry socket: an explicit --telemetry-socket must work; DPDK's default path may
    // be another daemon's (then this one goes without).
    let telemetry_server = match opts.telemetry_path(uid()) {
        Some(path) => match telemetry::serve(&path, Arc::clone(&metrics_sources)) {
            Ok(server) => {
                tracing::info!(path = %path.display(), "serving DPDK telemetry");
                Some(server)
            }
            Err(e) if opts.telemetry_socket.is_none() => {
                tracing::warn!(path = %path.display(), "no DPDK telemetry socket: {e}");
                None
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                return Err(format!("cannot serve telemetry on {}: {e}", path.display()));
            }
        },
        None => None,
    };
    let neighbor_thread = if config.router_mac_from_kernel {
        Some(
            neighbor::spawn(Arc::clone(&port_table), uplink_ids, Arc::clone(&stop))
                .map_err(|e| format!("cannot start the neighbour table reader: {e}"))?,
        )
    } else {
        None
    };
    tracing::info!(
        flow_table_size = opts.flow_table_size,
        max_firewall_rules = opts.max_firewall_rules,
        max_public_addresses = opts.max_public_addresses,
        max_neighbor_nats = opts.max_neighbor_nats,
        max_load_balancers = opts.max_load_balancers,
        max_lb_targets = opts.max_lb_targets,
        max_lb_ports = opts.max_lb_ports,
        "table limits"
    );
    tracing::info!(
        ports = port_table.len(),
        workers = worker_threads.len(),
        grpc_port = opts.grpc_port,
        conntrack = ?config.conntrack,
        "dpservice-rs {} running",
        env!("CARGO_PKG_VERSION")
    );

    let stats_enabled = opts.stats_enabled();
    let served = runtime.block_on(async {
        if stats_enabled {
            let counters = counters.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(STATS_INTERVAL);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    println!("{}", stats::summary(&counters));
                }
            });
        }
        if let Some(listener) = metrics_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving Prometheus metrics on /metrics");
            }
            tokio::spawn(async move {
                if let Err(e) = metrics::serve(listener, metrics_sources).await {
                    tracing::error!("metrics endpoint failed: {e}");
                }
            });
        }
        control.serve(listener, signals.recv()).await
    });

    for report in stats::reports(&command_senders, REPORT_WAIT) {
        tracing::info!(
            worker = report.index,
            pool_available = report.pool_available,
            pool_capacity = report.pool_capacity,
            handed_off = report.handed_off,
            handed_in = report.handed_in,
            flows = report.flows,
            flow_capacity = report.flow_capacity,
            "worker report"
        );
    }
    drop(telemetry_server);
    stop.store(true, Ordering::Relaxed);
    for thread in worker_threads {
        let _ = thread.join();
    }
    if let Some(thread) = neighbor_thread {
        let _ = thread.join();
    }
    if let Some(thread) = dump_thread {
        let _ = thread.join();
    }
    if counters.len() > 1 {
        for (index, c) in counters.iter().enumerate() {
            tracing::info!(
                worker = index,
                "{}",
                stats::summary(std::slice::from_ref(c))
            );
        }
    }
    tracing::info!("{}", stats::summary(&counters));
    tracing::info!("dpservice-rs stopped");
    served.map_err(|e| format!("gRPC server failed: {e}"))
}

/// SIGINT and SIGTERM, watched from start-up on (a signal that came before the first wait is
/// kept and ends that wait at once).
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (inside the runtime).
    fn watch() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes on SIGINT or SIGTERM.
    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}
