//! System test of the Prometheus endpoint (`--metrics-addr`): the daemon with TAP ports serves
//! `GET /metrics`; the families are there with their HELP and TYPE lines, the packets the
//! kernel sends into the TAPs (IPv6 neighbor discovery and MLD when they come up, and a ping
//! to all nodes) show in the classify node's call count and the ports' receive counters, an
//! interface created over gRPC shows with its firewall rule count, and `promtool check metrics`
//! accepts the exposition (when promtool is installed; required with
//! `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`).
//!
//! Needs root and IPv6; otherwise SKIPPED (unless `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`). Names
//! are unique per run, every wait is bounded, and guards remove the daemon and files on
//! success and failure.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::api::{Api, IfaceSpec};
use support::daemon::{standard_args, Daemon, READY_TIMEOUT};
use support::{ensure, free_port, wait_until, Names, Scratch};

const TOOLS: &[&str] = &["ipv6"];
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Names that dpservice's exporter gives its metrics and `promtool check metrics` lints
/// ("non-histogram and non-summary metrics should not have "_count" suffix"): kept for
/// compatibility, the only lint findings allowed.
const DPSERVICE_NAMES: &[&str] = &[
    "dps_graph_call_count",
    "dps_firewall_rules_count",
    "dps_nat_used_ports_count",
    "dps_virtsvc_used_ports_count",
];

/// `GET /metrics` over plain HTTP/1.1: the status line and the body.
fn scrape(addr: SocketAddr, path: &str) -> Result<(String, String, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("response not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    // The body comes in one piece or chunked (hyper chooses); undo the chunking.
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((status, head.to_owned(), body))
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n").ok_or("truncated chunk size")?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|e| format!("chunk size: {e}"))?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(tail.get(..n).ok_or("truncated chunk")?);
        rest = tail.get(n + 2..).ok_or("truncated chunk end")?;
    }
}

/// The value of the sample `series` (name and labels as the encoder writes them).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Sum of every sample of `name` whose labels contain all of `labels` (`key="value"`).
fn sum_of(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (lbls, value) = rest.split_once("} ")?;
            labels
                .iter()
                .all(|want| lbls.split(',').any(|l| l == *want))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// `promtool check metrics` on `text`: Ok if it parses and has no lint findings but the
/// allowed ones; `None` when promtool is not installed.
fn promtool(text: &str) -> Option<Result<(), String>> {
    let bin = support::which("promtool")?;
    let run = || -> Result<(), String> {
        let mut child = Command::new(&bin)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting promtool: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to promtool: {e}"))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("promtool: {e}"))?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => Ok(()),
            // 3: lint findings only (the exposition parsed); each line names its metric.
            Some(3) => {
                let unexpected: Vec<&str> = report
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .filter(|l| {
                        !DPSERVICE_NAMES
                            .iter()
                            .any(|n| l.starts_with(&format!("{n} ")) && l.contains("\"_count\""))
                    })
                    .collect();
                ensure(unexpected.is_empty(), || {
                    format!("promtool lint findings: {unexpected:?}")
                })
            }
            _ => Err(format!(
                "promtool check metrics failed ({}): {report}",
                out.status
            )),
        }
    };
    Some(run())
}

#[test]
fn metrics_endpoint_serves_the_counters() {
    skip_unless_ready!("metrics_endpoint_serves_the_counters", TOOLS);
    let names = Names::new();
    let scratch = Scratch::new(&names).expect("scratch directory");
    let grpc = free_port();
    let metrics_port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut args = standard_args(&names, 2, grpc);
    args.extend(["--metrics-addr".to_string(), addr.to_string()]);
    let daemon = Daemon::start(&args, grpc, names.taps(2), scratch.path("daemon.log"))
        .unwrap_or_else(|e| panic!("{e}"));

    let r = (|| -> Result<(), String> {
        // Served from start-up on.
        let (status, head, first) = wait_until("the metrics endpoint", READY_TIMEOUT, || {
            scrape(addr, "/metrics")
        })?;
        ensure(status.contains(" 200 "), || format!("status {status}"))?;
        ensure(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            || format!("content type in {head}"),
        )?;
        for (family, kind) in [
            ("dps_graph_call_count", "gauge"),
            ("dpservice_node_packets_total", "counter"),
            ("dpservice_drops_by_reason_total", "counter"),
            ("dpservice_tx_packets_total", "counter"),
            ("dps_hash_table_saturation", "gauge"),
            ("dpservice_flows", "gauge"),
            ("dpservice_flows_created_total", "counter"),
            ("dpdk_ethdev_packets_total", "counter"),
            ("dpdk_ethdev_bytes_total", "counter"),
            ("dpdk_ethdev_errors_total", "counter"),
            ("dpdk_ethdev_link_status", "gauge"),
            ("dpservice_workers", "gauge"),
            ("dpservice_node_calls_total", "counter"),
            ("dpservice_node_seconds_total", "counter"),
            ("dpservice_worker_polls_total", "counter"),
            ("dpservice_worker_seconds_total", "counter"),
        ] {
            ensure(first.contains(&format!("# HELP {family} ")), || {
                format!("no HELP for {family}:\n{first}")
            })?;
            ensure(first.contains(&format!("# TYPE {family} {kind}\n")), || {
                format!("no TYPE {kind} for {family}:\n{first}")
            })?;
        }
        // Every port, with its link up (the daemon brought its TAPs up).
        for tap in names.taps(2) {
            ensure(
                sample(
                    &first,
                    &format!("dpdk_ethdev_link_status{{name=\"{tap}\"}}"),
                ) == Some(1.0),
                || format!("link status of {tap}:\n{first}"),
            )?;
        }
        // The flow table's room is --flow-table-size (the default: one million).
        ensure(
            sample(
                &first,
                r#"dps_hash_table_saturation{stat="capacity",table="conntrack_table"}"#,
            ) == Some(1_000_000.0),
            || format!("flow table capacity:\n{first}"),
        )?;
        ensure(sample(&first, "dpservice_workers") == Some(1.0), || {
            format!("workers:\n{first}")
        })?;

        // Traffic: the kernel's own neighbor discovery on the new TAPs, and a ping to all
        // nodes out of the first uplink (its answer does not matter).
        let pf0 = names.pf0();
        let _ = Command::new("ping")
            .args([
                "-6", "-c", "2", "-i", "0.2", "-W", "1", "-I", &pf0, "ff02::1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let cls = |t: &str| sum_of(t, "dps_graph_call_count", &[r#"graph_node="cls""#]);
        let rx = |t: &str| {
            sum_of(
                t,
                "dpdk_ethdev_packets_total",
                &[r#"stat="rx_good_packets""#],
            )
        };
        let before = (cls(&first), rx(&first));
        let later = wait_until("packets in the counters", Duration::from_secs(10), || {
            let (_, _, text) = scrape(addr, "/metrics")?;
            let now = (cls(&text), rx(&text));
            if now.0 > before.0 && now.1 > before.1 {
                Ok(text)
            } else {
                Err(format!("cls and rx {now:?} (first scrape: {before:?})"))
            }
        })?;
        // What classify took in, the ports received (one worker, nothing handed around).
        ensure(
            sample(&later, r#"dpservice_node_packets_total{node="classify"}"#) <= Some(rx(&later)),
            || format!("classify counts more than the ports received:\n{later}"),
        )?;
        // Classify ran batches, taking time (where there is a time-stamp counter), at most one
        // batch per packet; the worker found work in some polls and none in others.
        let calls = sample(&later, r#"dpservice_node_calls_total{node="classify"}"#);
        let packets = sample(&later, r#"dpservice_node_packets_total{node="classify"}"#);
        ensure(calls.is_some_and(|c| c >= 1.0) && calls <= packets, || {
            format!("classify batches {calls:?} for {packets:?} packets:\n{later}")
        })?;
        if cfg!(target_arch = "x86_64") {
            ensure(
                sample(&later, r#"dpservice_node_seconds_total{node="classify"}"#)
                    .is_some_and(|s| s > 0.0 && s < 10.0),
                || format!("classify time:\n{later}"),
            )?;
        }
        for state in ["busy", "idle"] {
            let polls = format!("dpservice_worker_polls_total{{state=\"{state}\",worker=\"0\"}}");
            ensure(sample(&later, &polls).is_some_and(|n| n >= 1.0), || {
                format!("{polls}:\n{later}")
            })?;
        }

        // An interface, and its firewall rule count (none yet).
        let mut api = Api::connect(grpc)?;
        api.init()?;
        let vf0 = names.vf(0);
        api.create_interface(&IfaceSpec {
            id: "vm1",
            vni: 100,
            ipv4: Ipv4Addr::new(10, 1, 1, 1),
            ipv6: Ipv6Addr::UNSPECIFIED,
            device: &vf0,
            hostname: None,
        })?;
        api.create_nat("vm1", Ipv4Addr::new(45, 86, 6, 6), 1000, 2000)?;
        // The same interface again: a dpservice error in a gRPC OK reply.
        let again = api.create_interface(&IfaceSpec {
            id: "vm1",
            vni: 100,
            ipv4: Ipv4Addr::new(10, 1, 1, 1),
            ipv6: Ipv6Addr::UNSPECIFIED,
            device: &vf0,
            hostname: None,
        });
        ensure(again.is_err(), || "vm1 created twice".into())?;
        let (_, _, text) = scrape(addr, "/metrics")?;
        ensure(
            sample(&text, r#"dps_firewall_rules_count{interface_id="vm1"}"#) == Some(0.0),
            || format!("firewall rules of vm1:\n{text}"),
        )?;
        // No traffic from vm1: no NAT port in use; the interface and its NAT in the tables.
        ensure(
            sample(&text, r#"dps_nat_used_ports_count{interface_id="vm1"}"#) == Some(0.0),
            || format!("NAT ports of vm1:\n{text}"),
        )?;
        for (table, entries) in [
            ("interface_table", 1.0),
            ("snat_table", 1.0),
            ("dnat_table", 1.0),
        ] {
            let series = format!("dps_hash_table_saturation{{stat=\"entries\",table=\"{table}\"}}");
            ensure(sample(&text, &series) == Some(entries), || {
                format!("{series}:\n{text}")
            })?;
        }
        // The gRPC requests, by method and code, and the failed one's dpservice code.
        for (series, n) in [
            (
                r#"dpservice_grpc_requests_total{code="OK",method="Initialize"}"#,
                1.0,
            ),
            (
                r#"dpservice_grpc_requests_total{code="OK",method="CreateInterface"}"#,
                2.0,
            ),
            (
                r#"dpservice_grpc_requests_total{code="OK",method="CreateNat"}"#,
                1.0,
            ),
            (
                r#"dpservice_grpc_errors_total{code="202",method="CreateInterface"}"#,
                1.0,
            ),
        ] {
            ensure(sample(&text, series) == Some(n), || {
                format!("{series} is not {n}:\n{text}")
            })?;
        }
        ensure(sample(&text, "dpservice_interfaces") == Some(1.0), || {
            format!("interfaces:\n{text}")
        })?;

        // Anything but /metrics is not found.
        let (status, _, _) = scrape(addr, "/")?;
        ensure(status.contains(" 404 "), || {
            format!("GET / answered {status}")
        })?;

        match promtool(&text) {
            Some(r) => r?,
            None if support::system_tests_required() => {
                return Err("promtool is not installed (Debian package prometheus; \
                            scripts/test.sh installs it)"
                    .into())
            }
            None => eprintln!("promtool not installed: exposition not validated"),
        }
        std::fs::write(scratch.path("metrics.txt"), &text).map_err(|e| e.to_string())?;
        Ok(())
    })();
    if let Err(e) = r {
        panic!("{e}\n{}", daemon.report());
    }
}
