//! The Prometheus endpoint (`--metrics-addr ADDR:PORT`): `GET /metrics` in the text exposition
//! format.
//!
//! Nothing is collected ahead of a scrape: each scrape reads the counters that the workers and
//! ports already keep (atomics, one set per worker), sums them over the workers and encodes
//! them with the `prometheus` crate; the workers never take a lock or do anything more for it.
//! Where ironcore dpservice's exporter (`dpservice-exporter`) has a metric for the same thing,
//! its name and labels are used (`dps_graph_call_count`, `dpdk_ethdev_*`,
//! `dps_firewall_rules_count`, `dps_hash_table_saturation`); the rest are `dpservice_*`.

use std::sync::Arc;

use dp_pipeline::{DropReason, GraphCounters, NodeId, PortTable};
use dp_ports::PortCounters;
use dp_tables::{PortId, SnapshotReader, TrafficDirection};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

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
}

/// Everything a scrape reads.
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
}

/// The host's name, for `dps_graph_call_count`'s `node` label ("" when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// dpservice's name for a node in `dps_graph_call_count` where it has the same node (`cls`
/// for classify), else ours.
fn dpservice_node_name(node: NodeId) -> &'static str {
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

    // Connection tracking (as of each worker's last tick).
    let flows = |read: fn(&dp_pipeline::FlowCounters) -> &std::sync::atomic::AtomicU64| {
        sum(&|g| read(&g.flows).load(std::sync::atomic::Ordering::Relaxed))
    };
    let live = flows(|f| &f.live);
    let capacity = flows(|f| &f.capacity);
    let saturation = f.gauge(
        "dps_hash_table_saturation",
        "Entries and capacity of the flow table, summed over the workers",
        &["table", "stat"],
    )?;
    set(&saturation, &[FLOW_TABLE, "capacity"], capacity)?;
    set(&saturation, &[FLOW_TABLE, "entries"], live)?;
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
        "Other port statistics (tx_dropped: frames the other side could not take)",
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
        let mut s = dp_ports::PortStats::default();
        for q in &p.queues {
            let d = q.snapshot();
            s.rx_packets += d.rx_packets;
            s.rx_bytes += d.rx_bytes;
            s.rx_errors += d.rx_errors;
            s.rx_nombuf += d.rx_nombuf;
            s.tx_packets += d.tx_packets;
            s.tx_bytes += d.tx_bytes;
            s.tx_errors += d.tx_errors;
            s.tx_dropped += d.tx_dropped;
        }
        put(&packets, &[name, "rx_good_packets"], s.rx_packets)?;
        put(&packets, &[name, "tx_good_packets"], s.tx_packets)?;
        put(&bytes, &[name, "rx_good_bytes"], s.rx_bytes)?;
        put(&bytes, &[name, "tx_good_bytes"], s.tx_bytes)?;
        put(&errors, &[name, "rx_errors"], s.rx_errors)?;
        put(&errors, &[name, "tx_errors"], s.tx_errors)?;
        put(&errors, &[name, "rx_mbuf_allocation_errors"], s.rx_nombuf)?;
        set(&misc, &[name, "tx_dropped"], s.tx_dropped)?;
        set(&link, &[name], u64::from(entry.link_up()))?;
    }

    // Interfaces (from the control plane's current tables).
    let snapshot = src.tables.load();
    let rules = f.gauge(
        "dps_firewall_rules_count",
        "Firewall rules per interface",
        &["interface_id"],
    )?;
    let mut interfaces = 0u64;
    for iface in snapshot.ifaces_by_port.iter().flatten() {
        interfaces += 1;
        let fw = &iface.services.firewall;
        let n =
            fw.rules(TrafficDirection::Ingress).len() + fw.rules(TrafficDirection::Egress).len();
        set(&rules, &[&iface.id], n as u64)?;
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
            }],
            port_table: table,
            tables: publisher.reader(),
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
