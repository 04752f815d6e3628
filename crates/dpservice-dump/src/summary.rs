//! One line per record: when, which worker, where in the graph, where it went, and what the frame
//! is (addresses, protocol, ports; the inner packet of an underlay frame).

use std::fmt::Write as _;

use dp_pipeline::summary::FrameSummary;
use dp_pipeline::trace::{Event, Record};
use dp_pipeline::Verdict;

use crate::client::SessionInfo;

/// Where the record was taken and what happened: `rx vm1`, `classify -> ipv4_lookup`,
/// `ipv4_lookup DROP spoofed`, `tx pf0`.
pub fn place(r: &Record<'_>, info: &SessionInfo) -> String {
    let node = r.node.map_or("?", |n| n.name());
    match (r.event, r.verdict) {
        (Event::Rx, _) => format!("rx {}", info.port_name(r.port)),
        (Event::Tx, _) => format!("tx {}", info.port_name(r.port)),
        (Event::Node, Some(Verdict::Next(next))) => format!("{node} -> {}", next.name()),
        (Event::Node, Some(Verdict::Tx(port))) => format!("{node} -> tx {}", info.port_name(port)),
        (Event::Node, Some(Verdict::Drop(reason))) => format!("{node} DROP {}", reason.name()),
        (Event::Node, Some(Verdict::Handoff(w))) => format!("{node} -> worker {w}"),
        (Event::Node, None) => node.to_string(),
    }
}

/// The comment a pcapng packet carries: the place and the receiving port.
pub fn comment(r: &Record<'_>, info: &SessionInfo) -> String {
    let mut s = format!("worker={} {}", r.worker, place(r, info));
    if r.event == Event::Node {
        let _ = write!(s, " in_port={}", info.port_name(r.port));
    }
    if let Some(Verdict::Drop(reason)) = r.verdict {
        let _ = write!(s, " reason={}", reason.name());
    }
    s
}

/// The line `dpservice-dump` prints for a record.
pub fn line(r: &Record<'_>, info: &SessionInfo) -> String {
    let secs = (info.epoch_ns + r.now_ns) / 1_000_000_000;
    let micros = ((info.epoch_ns + r.now_ns) / 1_000) % 1_000_000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let mut out = format!(
        "{h:02}:{m:02}:{s:02}.{micros:06} w{} {:<30} {}",
        r.worker,
        place(r, info),
        frame(r.data)
    );
    if r.event == Event::Node {
        let _ = write!(out, " (in {})", info.port_name(r.port));
    }
    let _ = write!(out, ", length {}", r.orig_len);
    out
}

/// What an Ethernet frame carries, briefly ([`FrameSummary`]).
pub fn frame(data: &[u8]) -> String {
    FrameSummary(data).to_string()
}
