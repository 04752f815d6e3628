//! The Prometheus endpoint (`--metrics-addr ADDR:PORT`): `GET /metrics` in the text exposition
//! format.
//!
//! Nothing is collected ahead of a scrape: each scrape reads the counters that the workers and
//! ports already keep (atomics, one set per worker), sums them over the workers and encodes
//! them with the `prometheus` crate; the workers never take a lock or do anything more for it.
//! Where ironcore dpservice's exporter (`dpservice-exporter`) has a metric for the same thing,
//! its name and labels are used (`dps_graph_call_count`, `dpdk_ethdev_*`,
//! `dps_firewall_rules_count`, `dps_hash_table_saturation`, `dps_nat_used_ports_count`,
//! `dps_virtsvc_used_ports_count`); the rest are `dpservice_*`.
//!
//! [`Sources`] also computes the figures that both this endpoint and the DPDK telemetry socket
//! ([`crate::telemetry`]) report — NAT and virtual-service ports in use, firewall rules, table
//! saturation, graph node statistics, port statistics — once, for both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dp_pipeline::commands::CommandSender;
use dp_pipeline::{DropReason, GraphCounters, NodeId, PortTable};
use dp_ports::{PortCounters, PortStats};
use dp_tables::{PortId, SnapshotReader, TrafficDirection, VirtualServices};
use prometheus::{CounterVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Label value of `dpservice_drops_total`'s `node` for drops counted outside the nodes (by a
/// port or the worker loop).
pub const OUTSIDE_NODES: &str = "worker";

/// The table dpservice calls its connection-tracking table in `dps_hash_table_saturation`.
pub const FLOW_TABLE: &str = "conntrack_table";

/// One port's counters: one set per worker (a queue each).
pub struct PortSource {
    pub port: PortId,
    pub queues: Vec<Arc<PortCounters>>,
    /// The workers (indices into [`Sources::graphs`]) that poll a queue of the port, in the
    /// order of `queues`.
    pub workers: Vec<usize>,
}

/// The limits the tables are made with: the capacities reported for them (0: no fixed
/// capacity, the table grows with the configuration).
#[derive(Clone, Copy, Debug, Default)]
pub struct TableLimits {
    /// VM ports (an interface each at most).
    pub interfaces: u64,
    /// Public addresses (VIPs and NAT addresses) of all VNIs together.
    pub public_addresses: u64,
    pub load_balancers: u64,
}

/// Everything a scrape (or a telemetry request) reads.
pub struct Sources {
    /// dpservice's `node` label of `dps_graph_call_count` (the host's name).
    pub hostname: String,
    /// Every worker's graph counters.
    pub graphs: Vec<Arc<GraphCounters>>,
    pub ports: Vec<PortSource>,
    /// Port names and link states (the leader worker keeps the link state current).
    pub port_table: Arc<PortTable>,
    /// The tables the control plane publishes (interfaces and their firewall rules).
    pub tables: SnapshotReader,
    pub limits: TableLimits,
    /// The virtual services (`--udp-virtsvc`, `--tcp-virtsvc`).
    pub virtual_services: Arc<VirtualServices>,
    /// Per worker, per service: its ports in use ([`dp_tables::VirtsvcTables::used_ports`]).
    pub virtsvc_used: Vec<Arc<Vec<AtomicU64>>>,
    /// Time-stamp counter ticks per nanosecond (calibrated at start; 0: no per-node time).
    pub ticks_per_ns: f64,
    /// The workers' command queues: the buffer pools are read through them (telemetry's heap
    /// info; empty: no pool figures).
    pub workers: Vec<CommandSender>,
    /// Bytes of one packet buffer (data room and headroom).
    pub buffer_bytes: u64,
}

/// One statistic of every graph node, as DPDK's graph telemetry names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphStat {
    /// Packets the node processed (`obj_count`).
    Objects,
    /// Batches it ran (`call_count`).
    Calls,
    /// Time-stamp counter ticks it took (`cycle_count`).
    Cycles,
    /// Times it grew its batch (`realloc_count`): ours never do.
    Reallocs,
}

/// A hash table's fill, as dpservice's `/dp_service/table/saturation` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableFill {
    pub name: String,
    pub capacity: u64,
    pub entries: u64,
}

impl Sources {
    fn sum(&self, read: impl Fn(&GraphCounters) -> u64) -> u64 {
        self.graphs.iter().map(|g| read(g)).sum()
    }

    /// A port's statistics, summed over its queues.
    pub fn port_stats(&self, port: &PortSource) -> PortStats {
        let mut s = PortStats::default();
        for q in &port.queues {
            let d = q.snapshot();
            s.rx_packets += d.rx_packets;
            s.rx_bytes += d.rx_bytes;
            s.rx_errors += d.rx_errors;
            s.rx_nombuf += d.rx_nombuf;
            s.tx_packets += d.tx_packets;
            s.tx_bytes += d.tx_bytes;
            s.tx_errors += d.tx_errors;
            s.tx_dropped += d.tx_dropped;
            s.resets += d.resets;
        }
        s
    }

    /// The port with id `port`, if there is one.
    pub fn port(&self, port: PortId) -> Option<&PortSource> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// Polls (busy and idle) of worker `index`.
    pub fn worker_polls(&self, index: usize) -> u64 {
        self.graphs.get(index).map_or(0, |g| {
            g.polls.busy.load(Ordering::Relaxed) + g.polls.idle.load(Ordering::Relaxed)
        })
    }

    /// Per interface (every one created): the live flows holding one of its NAT ports
    /// (dpservice's `/dp_service/nat/used_port_count`, `dps_nat_used_ports_count`).
    pub fn nat_used_ports(&self) -> Vec<(String, u64)> {
        let snapshot = self.tables.load();
        snapshot
            .ifaces_by_port
            .iter()
            .flatten()
            .map(|iface| {
                let n = self.sum(|g| g.flows.nat_ports_in_use(iface.port));
                (iface.id.clone(), n)
            })
            .collect()
    }

    /// Per virtual service, named as dpservice does (`UDP:1.2.3.4:53`): its mapped ports with
    /// a live connection (`/dp_service/virtsvc/used_port_count`, `dps_virtsvc_used_ports_count`).
    pub fn virtsvc_used_ports(&self) -> Vec<(String, u64)> {
        self.virtual_services
            .iter()
            .enumerate()
            .map(|(i, svc)| {
                let n = self
                    .virtsvc_used
                    .iter()
                    .filter_map(|w| w.get(i))
                    .map(|c| c.load(Ordering::Relaxed))
                    .sum();
                (virtsvc_name(svc), n)
            })
            .collect()
    }

    /// Firewall rules per interface (`/dp_service/firewall/rule_count`, `dps_firewall_rules_count`).
    pub fn firewall_rules(&self) -> Vec<(String, u64)> {
        let snapshot = self.tables.load();
        snapshot
            .ifaces_by_port
            .iter()
            .flatten()
            .map(|iface| {
                let fw = &iface.services.firewall;
                let n = fw.rules(TrafficDirection::Ingress).len()
                    + fw.rules(TrafficDirection::Egress).len();
                (iface.id.clone(), n as u64)
            })
            .collect()
    }

    /// The fill of dpservice's hash tables, each mapped to what holds that data here (see
    /// docs/architecture.md, Telemetry): `/dp_service/table/saturation`,
    /// `dps_hash_table_saturation`.
    pub fn table_fill(&self) -> Vec<TableFill> {
        let snapshot = self.tables.load();
        let flows = |read: fn(&dp_pipeline::FlowCounters) -> &AtomicU64| {
            self.sum(|g| read(&g.flows).load(Ordering::Relaxed))
        };
        let flow_capacity = flows(|f| &f.capacity);
        let interfaces = snapshot.ifaces_by_port.iter().flatten().count() as u64;
        let translated = snapshot
            .ifaces_by_port
            .iter()
            .flatten()
            .filter(|i| i.services.vip.is_some() || i.services.nat.is_some())
            .count() as u64;
        let nat_flows: u64 = self.nat_used_ports().iter().map(|(_, n)| n).sum();
        let lbs = snapshot.load_balancers.len() as u64;
        let underlay = snapshot.underlay.len() as u64;
        let fill = |name: &str, capacity: u64, entries: u64| TableFill {
            name: name.to_owned(),
            capacity,
            entries,
        };
        let mut out = vec![
            fill("interface_table", self.limits.interfaces, interfaces),
            fill(FLOW_TABLE, flow_capacity, flows(|f| &f.live)),
            fill(
                "dnat_table",
                self.limits.public_addresses,
                snapshot.public.len() as u64,
            ),
            fill("snat_table", self.limits.interfaces, translated),
            fill("nat_portmap_table", flow_capacity, nat_flows),
            fill("nat_portoverload_table", flow_capacity, nat_flows),
            fill("loadbalancer_table", self.limits.load_balancers, lbs),
            fill("loadbalancer_id_table", self.limits.load_balancers, lbs),
            fill("vni_table", 0, snapshot.vnis.len() as u64),
            fill("vnf_table", 0, underlay),
            fill("reverse_vnf_table", 0, underlay),
        ];
        // A service's ports are shared out between the workers: together they have them all.
        for (i, (_, used)) in self.virtsvc_used_ports().into_iter().enumerate() {
            out.push(fill(
                &format!("virtsvc_table_{i}"),
                dp_tables::VIRTSVC_PORT_COUNT as u64,
                used,
            ));
        }
        out
    }

    /// One statistic of every node of the graph, under dpservice's node names: its receive
    /// nodes `rx-<port>-0` and transmit nodes `tx-<port>` per port, `rx_periodic` (the frames
    /// the graph made itself), `drop`, and the nodes of ours (dpservice's names where it has
    /// the node). What is not measured here is 0 (see docs/architecture.md, Telemetry).
    pub fn graph_stats(&self, stat: GraphStat) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for p in &self.ports {
            let s = self.port_stats(p);
            let v = match stat {
                GraphStat::Objects => s.rx_packets,
                GraphStat::Calls => p.workers.iter().map(|&w| self.worker_polls(w)).sum(),
                GraphStat::Cycles | GraphStat::Reallocs => 0,
            };
            out.push((format!("rx-{}-0", p.port), v));
        }
        let (originated, drops) = (self.sum(|g| g.originated()), self.sum(|g| g.total_drops()));
        out.push((
            "rx_periodic".to_owned(),
            if stat == GraphStat::Objects {
                originated
            } else {
                0
            },
        ));
        for &node in NodeId::ORDER {
            let v = match stat {
                GraphStat::Objects => self.sum(|g| g.node_packets(node)),
                GraphStat::Calls => self.sum(|g| g.node_calls(node)),
                GraphStat::Cycles => self.sum(|g| g.node_cycles(node)),
                GraphStat::Reallocs => 0,
            };
            out.push((dpservice_node_name(node).to_owned(), v));
        }
        out.push((
            "drop".to_owned(),
            if stat == GraphStat::Objects { drops } else { 0 },
        ));
        for p in &self.ports {
            let s = self.port_stats(p);
            let v = match stat {
                GraphStat::Objects => s.tx_packets + s.tx_errors + s.tx_dropped,
                _ => 0,
            };
            out.push((format!("tx-{}", p.port), v));
        }
        out
    }

    /// Nanoseconds `node` took, summed over the workers (0 without a calibrated counter).
    pub fn node_nanoseconds(&self, node: NodeId) -> u64 {
        if self.ticks_per_ns <= 0.0 {
            return 0;
        }
        (self.sum(|g| g.node_cycles(node)) as f64 / self.ticks_per_ns) as u64
    }
}

/// dpservice's name of a virtual service in its telemetry: `UDP:1.2.3.4:53`.
pub fn virtsvc_name(svc: &dp_tables::VirtualService) -> String {
    let proto = if svc.proto == dp_packet::IpProtocol::TCP {
        "TCP"
    } else {
        "UDP"
    };
    format!("{proto}:{}:{}", svc.virtual_addr, svc.virtual_port)
}

/// The host's name, for `dps_graph_call_count`'s `node` label ("" when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// dpservice's name for a node in `dps_graph_call_count` where it has the same node (`cls`
/// for classify), else ours.
pub fn dpservice_node_name(node: NodeId) -> &'static str {
    match node {
        NodeId::Classify => "cls",
        other => other.name(),
    }
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The metric families of one scrape, registered as they are made.
struct Families(Registry);

impl Families {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    /// A counter of seconds (a float: Prometheus's base unit of time).
    fn seconds(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<CounterVec> {
        let c = CounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }
}

/// Sets one counter to `v` (a fresh counter per scrape: adding is setting).
fn put(c: &IntCounterVec, labels: &[&str], v: u64) -> prometheus::Result<()> {
    c.get_metric_with_label_values(labels)?.inc_by(v);
    Ok(())
}

/// Sets one seconds counter to `ns` nanoseconds.
fn put_ns(c: &CounterVec, labels: &[&str], ns: u64) -> prometheus::Result<()> {
    c.get_metric_with_label_values(labels)?
        .inc_by(ns as f64 / 1e9);
    Ok(())
}

fn set(g: &IntGaugeVec, labels: &[&str], v: u64) -> prometheus::Result<()> {
    g.get_metric_with_label_values(labels)?
        .set(saturating_i64(v));
    Ok(())
}

/// One scrape: every metric, in the text exposition format.
pub fn render(src: &Sources) -> prometheus::Result<String> {
    let f = Families(Registry::new());
    let graphs = &src.graphs;
    let sum =
        |read: &dyn Fn(&GraphCounters) -> u64| -> u64 { graphs.iter().map(|g| read(g)).sum() };

    // The graph: packets into each node, under dpservice's name and ours.
    let calls = f.gauge(
        "dps_graph_call_count",
        "Packets that entered each graph node, summed over the workers (dpservice's exporter: \
         the node's call count)",
        &["node", "graph_node"],
    )?;
    let node_packets = f.counter(
        "dpservice_node_packets_total",
        "Packets that entered each graph node, summed over the workers",
        &["node"],
    )?;
    for &node in NodeId::ORDER {
        let n = sum(&|g| g.node_packets(node));
        set(&calls, &[&src.hostname, dpservice_node_name(node)], n)?;
        put(&node_packets, &[node.name()], n)?;
    }

    // Drops: per reason always (every reason, so that rates start from zero), per node and
    // reason where there were any.
    let by_reason = f.counter(
        "dpservice_drops_by_reason_total",
        "Packets dropped, per reason, summed over the nodes and workers",
        &["reason"],
    )?;
    let drops = f.counter(
        "dpservice_drops_total",
        "Packets dropped, per node (\"worker\": outside the nodes, by a port or the worker loop) \
         and reason; only the pairs that dropped",
        &["node", "reason"],
    )?;
    let sites = NodeId::ORDER
        .iter()
        .map(|&n| (Some(n), n.name()))
        .chain(std::iter::once((None, OUTSIDE_NODES)));
    for (node, name) in sites {
        for &reason in DropReason::ALL {
            let n = sum(&|g| g.node_drops(node, reason));
            if n > 0 {
                put(&drops, &[name, reason.name()], n)?;
            }
        }
    }
    for &reason in DropReason::ALL {
        put(&by_reason, &[reason.name()], sum(&|g| g.drops(reason)))?;
    }

    // The workers' own totals.
    for (name, help, read) in [
        (
            "dpservice_tx_packets_total",
            "Frames handed to the ports for transmission",
            (|g: &GraphCounters| g.tx_packets.load(std::sync::atomic::Ordering::Relaxed))
                as fn(&GraphCounters) -> u64,
        ),
        (
            "dpservice_originated_packets_total",
            "Frames the graph made itself (neighbor discovery probes, extra fragments)",
            |g| g.originated(),
        ),
        (
            "dpservice_handed_off_packets_total",
            "Packets handed to the worker that owns their flow",
            |g| g.handed_off(),
        ),
        (
            "dpservice_handed_in_packets_total",
            "Packets other workers handed to this one",
            |g| g.handed_in(),
        ),
        (
            "dpservice_capture_copies_total",
            "Packet capture copies made for the sink (CaptureStart)",
            |g| g.capture.copies.load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "dpservice_capture_truncated_total",
            "Packet capture copies cut to the underlay MTU",
            |g| {
                g.capture
                    .truncated
                    .load(std::sync::atomic::Ordering::Relaxed)
            },
        ),
        (
            "dpservice_capture_skipped_offload_total",
            "Superframes (segmentation offload) not copied by packet capture",
            |g| {
                g.capture
                    .skipped_offload
                    .load(std::sync::atomic::Ordering::Relaxed)
            },
        ),
    ] {
        put(&f.counter(name, help, &[])?, &[], sum(&|g| read(g)))?;
    }

    // Per-node batches and time.
    let node_calls = f.counter(
        "dpservice_node_calls_total",
        "Batches each graph node ran, summed over the workers (DPDK's graph call count)",
        &["node"],
    )?;
    let node_ns = f.seconds(
        "dpservice_node_seconds_total",
        "Time each graph node took, summed over the workers (time-stamp counter ticks \
         calibrated against the clock at start)",
        &["node"],
    )?;
    for &node in NodeId::ORDER {
        put(&node_calls, &[node.name()], sum(&|g| g.node_calls(node)))?;
        put_ns(&node_ns, &[node.name()], src.node_nanoseconds(node))?;
    }

    // The worker loops: polls that found work and those that did not, and their time.
    let polls = f.counter(
        "dpservice_worker_polls_total",
        "Worker loop polls of the ports and rings, per worker: busy (something came) or idle",
        &["worker", "state"],
    )?;
    let poll_ns = f.seconds(
        "dpservice_worker_seconds_total",
        "Worker loop time, per worker: busy (rounds that found work) or idle (polling in vain, \
         spinning, sleeping)",
        &["worker", "state"],
    )?;
    for (i, g) in graphs.iter().enumerate() {
        let w = i.to_string();
        let p = &g.polls;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        put(&polls, &[&w, "busy"], load(&p.busy))?;
        put(&polls, &[&w, "idle"], load(&p.idle))?;
        put_ns(&poll_ns, &[&w, "busy"], load(&p.busy_ns))?;
        put_ns(&poll_ns, &[&w, "idle"], load(&p.idle_ns))?;
    }

    // Connection tracking (as of each worker's last tick).
    let flows = |read: fn(&dp_pipeline::FlowCounters) -> &AtomicU64| {
        sum(&|g| read(&g.flows).load(Ordering::Relaxed))
    };
    let live = flows(|f| &f.live);
    let capacity = flows(|f| &f.capacity);
    let saturation = f.gauge(
        "dps_hash_table_saturation",
        "Entries and capacity of dpservice's hash tables, as the tables here hold that data \
         (capacity 0: no fixed capacity)",
        &["table", "stat"],
    )?;
    for t in src.table_fill() {
        set(&saturation, &[&t.name, "capacity"], t.capacity)?;
        set(&saturation, &[&t.name, "entries"], t.entries)?;
    }
    set(
        &f.gauge("dpservice_flows", "Live flows (connections tracked)", &[])?,
        &[],
        live,
    )?;
    set(
        &f.gauge(
            "dpservice_flow_capacity",
            "Most flows the flow tables hold (--flow-table-size)",
            &[],
        )?,
        &[],
        capacity,
    )?;
    for (name, help, read) in [
        (
            "dpservice_flows_created_total",
            "Flows created",
            (|f: &dp_pipeline::FlowCounters| &f.created)
                as fn(&dp_pipeline::FlowCounters) -> &std::sync::atomic::AtomicU64,
        ),
        (
            "dpservice_flows_expired_total",
            "Flows expired (timed out)",
            |f| &f.expired,
        ),
        (
            "dpservice_flows_removed_total",
            "Flows closed before they expired (their VIP, NAT or interface went away)",
            |f| &f.removed,
        ),
        (
            "dpservice_flows_refused_total",
            "New flows refused because the flow table was full",
            |f| &f.refused_full,
        ),
    ] {
        put(&f.counter(name, help, &[])?, &[], flows(read))?;
    }

    // Ports, as dpservice's exporter names DPDK's ethdev statistics.
    let packets = f.counter(
        "dpdk_ethdev_packets_total",
        "Frames received and sent per port",
        &["name", "stat"],
    )?;
    let bytes = f.counter(
        "dpdk_ethdev_bytes_total",
        "Bytes received and sent per port",
        &["name", "stat"],
    )?;
    let errors = f.counter(
        "dpdk_ethdev_errors_total",
        "Receive and transmit errors per port",
        &["name", "stat"],
    )?;
    let misc = f.gauge(
        "dpdk_ethdev_misc",
        "Other port statistics (tx_dropped: frames the other side could not take; resets: times the port was reset because its guest misbehaved)",
        &["name", "stat"],
    )?;
    let link = f.gauge(
        "dpdk_ethdev_link_status",
        "Link status per port (1 up, 0 down)",
        &["name"],
    )?;
    for p in &src.ports {
        let Some(entry) = src.port_table.get(p.port) else {
            continue;
        };
        let name = entry.name.as_str();
        let s = src.port_stats(p);
        put(&packets, &[name, "rx_good_packets"], s.rx_packets)?;
        put(&packets, &[name, "tx_good_packets"], s.tx_packets)?;
        put(&bytes, &[name, "rx_good_bytes"], s.rx_bytes)?;
        put(&bytes, &[name, "tx_good_bytes"], s.tx_bytes)?;
        put(&errors, &[name, "rx_errors"], s.rx_errors)?;
        put(&errors, &[name, "tx_errors"], s.tx_errors)?;
        put(&errors, &[name, "rx_mbuf_allocation_errors"], s.rx_nombuf)?;
        set(&misc, &[name, "tx_dropped"], s.tx_dropped)?;
        set(&misc, &[name, "resets"], s.resets)?;
        set(&link, &[name], u64::from(entry.link_up()))?;
    }

    // Interfaces (from the control plane's current tables).
    let rules = f.gauge(
        "dps_firewall_rules_count",
        "Firewall rules per interface",
        &["interface_id"],
    )?;
    let fw = src.firewall_rules();
    let interfaces = fw.len() as u64;
    for (id, n) in &fw {
        set(&rules, &[id], *n)?;
    }
    let nat = f.gauge(
        "dps_nat_used_ports_count",
        "NAT ports in use per interface (its live flows holding a NAT port)",
        &["interface_id"],
    )?;
    for (id, n) in src.nat_used_ports() {
        set(&nat, &[&id], n)?;
    }
    let virtsvc = f.gauge(
        "dps_virtsvc_used_ports_count",
        "Ports in use per virtual service (PROTO:IP:PORT): mapped ports with a live connection",
        &["address"],
    )?;
    for (address, n) in src.virtsvc_used_ports() {
        set(&virtsvc, &[&address], n)?;
    }

    // gRPC requests (this process's server).
    let grpc = f.counter(
        "dpservice_grpc_requests_total",
        "gRPC requests served, per method and gRPC status code",
        &["method", "code"],
    )?;
    for (method, code, n) in dp_control::GRPC_COUNTERS.requests() {
        put(&grpc, &[method, code], n)?;
    }
    let grpc_errors = f.counter(
        "dpservice_grpc_errors_total",
        "gRPC replies carrying a dpservice error status, per method and dpservice error code",
        &["method", "code"],
    )?;
    for (method, code, n) in dp_control::GRPC_COUNTERS.errors() {
        put(&grpc_errors, &[method, &code.to_string()], n)?;
    }
    set(
        &f.gauge("dpservice_interfaces", "Interfaces (VM ports) created", &[])?,
        &[],
        interfaces,
    )?;
    set(
        &f.gauge("dpservice_workers", "Packet-processing worker threads", &[])?,
        &[],
        graphs.len() as u64,
    )?;

    TextEncoder::new().encode_to_string(&f.0.gather())
}

/// Serves `GET /metrics` on `listener` until the runtime stops.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Arc<Sources>,
) -> std::io::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;

    async fn metrics(
        axum::extract::State(sources): axum::extract::State<Arc<Sources>>,
    ) -> axum::response::Response {
        match render(&sources) {
            Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }

    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(sources);
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_pipeline::PortEntry;
    use dp_pipeline::PortKind;
    use dp_tables::{Publisher, Snapshot};
    use std::sync::atomic::Ordering;

    fn sources(graphs: Vec<Arc<GraphCounters>>) -> (Sources, Publisher) {
        let publisher = Publisher::new(Snapshot::default());
        let table = Arc::new(PortTable::new(vec![PortEntry::new(
            PortKind::Uplink,
            "pf0",
            dp_packet::MacAddr([2, 0, 0, 0, 0, 1]),
        )]));
        let src = Sources {
            hostname: "host1".into(),
            graphs,
            ports: vec![PortSource {
                port: 0,
                queues: vec![PortCounters::new(), PortCounters::new()],
                workers: vec![0, 1],
            }],
            port_table: table,
            tables: publisher.reader(),
            limits: TableLimits::default(),
            virtual_services: Arc::default(),
            virtsvc_used: Vec::new(),
            ticks_per_ns: 2.0,
            workers: Vec::new(),
            buffer_bytes: 2048,
        };
        (src, publisher)
    }

    /// The sample line of `name` whose labels are exactly `labels` (in the encoder's order).
    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn renders_summed_counters_with_dpservice_names_and_labels() {
        let a = Arc::new(GraphCounters::default());
        let b = Arc::new(GraphCounters::default());
        a.node_packets[NodeId::Classify.index()].store(3, Ordering::Relaxed);
        b.node_packets[NodeId::Classify.index()].store(4, Ordering::Relaxed);
        b.node_packets[NodeId::Firewall.index()].store(1, Ordering::Relaxed);
        a.count_drop(Some(NodeId::Classify), DropReason::EthNotForUs, 2);
        b.count_drop(Some(NodeId::Classify), DropReason::EthNotForUs, 5);
        b.count_drop(None, DropReason::EthTruncated, 1);
        a.flows.live.store(10, Ordering::Relaxed);
        a.flows.capacity.store(500, Ordering::Relaxed);
        b.flows.capacity.store(500, Ordering::Relaxed);
        a.tx_packets.store(6, Ordering::Relaxed);
        a.node_calls[NodeId::Classify.index()].store(2, Ordering::Relaxed);
        b.node_calls[NodeId::Classify.index()].store(1, Ordering::Relaxed);
        a.node_cycles[NodeId::Classify.index()].store(3000, Ordering::Relaxed);
        b.node_cycles[NodeId::Classify.index()].store(1000, Ordering::Relaxed);
        a.polls.busy.store(3, Ordering::Relaxed);
        a.polls.idle.store(9, Ordering::Relaxed);
        b.polls.idle_ns.store(1_500_000_000, Ordering::Relaxed);
        let (src, _publisher) = sources(vec![a, b]);
        let text = render(&src).unwrap();

        assert!(text.contains("# HELP dps_graph_call_count "), "{text}");
        assert!(text.contains("# TYPE dps_graph_call_count gauge"), "{text}");
        assert!(
            text.contains("# TYPE dpservice_drops_total counter"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"dps_graph_call_count{graph_node="cls",node="host1"}"#
            ),
            Some(7)
        );
        assert_eq!(
            sample(
                &text,
                r#"dps_graph_call_count{graph_node="firewall",node="host1"}"#
            ),
            Some(1)
        );
        assert_eq!(
            sample(&text, r#"dpservice_node_packets_total{node="classify"}"#),
            Some(7)
        );
        assert_eq!(
            sample(
                &text,
                r#"dpservice_drops_total{node="classify",reason="eth_not_for_us"}"#
            ),
            Some(7)
        );
        assert_eq!(
            sample(
                &text,
                r#"dpservice_drops_total{node="worker",reason="eth_truncated"}"#
            ),
            Some(1)
        );
        // Only the pairs that dropped, but every reason in the per-reason totals.
        assert!(
            !text.contains(r#"dpservice_drops_total{node="arp""#),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"dpservice_drops_by_reason_total{reason="arp_malformed"}"#
            ),
            Some(0)
        );
        assert_eq!(
            text.matches("dpservice_drops_by_reason_total{").count(),
            DropReason::COUNT
        );
        assert_eq!(
            sample(
                &text,
                r#"dps_hash_table_saturation{stat="capacity",table="conntrack_table"}"#
            ),
            Some(1000)
        );
        assert_eq!(
            sample(
                &text,
                r#"dps_hash_table_saturation{stat="entries",table="conntrack_table"}"#
            ),
            Some(10)
        );
        assert_eq!(sample(&text, "dpservice_tx_packets_total"), Some(6));
        assert_eq!(
            sample(&text, r#"dpservice_node_calls_total{node="classify"}"#),
            Some(3)
        );
        // 4000 ticks at 2 per ns: 2 µs.
        assert!(
            text.contains("dpservice_node_seconds_total{node=\"classify\"} 0.000002\n"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"dpservice_worker_polls_total{state="busy",worker="0"}"#
            ),
            Some(3)
        );
        assert_eq!(
            sample(
                &text,
                r#"dpservice_worker_polls_total{state="idle",worker="0"}"#
            ),
            Some(9)
        );
        assert!(
            text.contains("dpservice_worker_seconds_total{state=\"idle\",worker=\"1\"} 1.5\n"),
            "{text}"
        );
        // Every table dpservice reports, this one's capacity unknown (0) without limits.
        assert_eq!(
            sample(
                &text,
                r#"dps_hash_table_saturation{stat="capacity",table="interface_table"}"#
            ),
            Some(0)
        );
        assert_eq!(text.matches("dps_hash_table_saturation{").count(), 22);
        assert_eq!(sample(&text, "dpservice_workers"), Some(2));
        assert_eq!(
            sample(
                &text,
                r#"dpdk_ethdev_packets_total{name="pf0",stat="rx_good_packets"}"#
            ),
            Some(0)
        );
        assert_eq!(
            sample(&text, r#"dpdk_ethdev_link_status{name="pf0"}"#),
            Some(1)
        );
        src.port_table.get(0).unwrap().set_link_up(false);
        let text = render(&src).unwrap();
        assert_eq!(
            sample(&text, r#"dpdk_ethdev_link_status{name="pf0"}"#),
            Some(0)
        );
        // No interface: no firewall rule counts.
        assert!(!text.contains("dps_firewall_rules_count{"), "{text}");
        assert_eq!(sample(&text, "dpservice_interfaces"), Some(0));
    }
}
