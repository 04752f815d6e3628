//! The graph's own behaviour, beyond any node: drops counted per (node, reason), the edges the
//! nodes declare (and the docs draw), the timers shared out between workers.

mod common;

use common::*;
use dp_pipeline::{edge_list, DropReason, NodeId, WorkerCtx};

#[test]
fn drops_are_counted_per_node_and_reason() {
    let mut h = Harness::new();
    // Spoofed IPv4 is dropped by ipv4_lookup, spoofed IPv6 by ipv6_lookup, a runt by classify.
    let v4 = vm_udp4(VM1, vm_ipv4(VM2), vm_ipv4(VM2), 64, b"x");
    let v6 = vm_udp6(VM1, vm_ipv6(VM2), vm_ipv6(VM2), 64, b"x");
    let out = h.run(&[(VM1, v4.clone()), (VM1, v6), (VM1, v4), (VM1, vec![0; 10])]);
    assert!(out.is_empty());
    let c = &h.counters;
    assert_eq!(
        c.node_drops(Some(NodeId::Ipv4Lookup), DropReason::Spoofed),
        2
    );
    assert_eq!(
        c.node_drops(Some(NodeId::Ipv6Lookup), DropReason::Spoofed),
        1
    );
    assert_eq!(
        c.node_drops(Some(NodeId::Classify), DropReason::EthTruncated),
        1
    );
    assert_eq!(c.node_drops(Some(NodeId::Classify), DropReason::Spoofed), 0);
    assert_eq!(c.node_drops(None, DropReason::Spoofed), 0);
    // The totals per reason are the sums over the nodes.
    assert_eq!(h.drops(DropReason::Spoofed), 3);
    assert_eq!(h.total_drops(), 4);
    h.assert_conservation();
}

#[test]
fn a_batch_dropped_whole_counts_every_packet() {
    let mut h = Harness::new();
    let spoofed = vm_udp4(VM1, vm_ipv4(VM2), vm_ipv4(VM2), 64, b"x");
    let frames: Vec<_> = (0..dp_pipeline::BATCH_SIZE)
        .map(|_| (VM1, spoofed.clone()))
        .collect();
    assert!(h.run(&frames).is_empty());
    assert_eq!(
        h.counters
            .node_drops(Some(NodeId::Ipv4Lookup), DropReason::Spoofed),
        64
    );
    h.assert_conservation();
}

#[test]
fn the_docs_draw_the_edges_the_nodes_declare() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/architecture.md"
    ))
    .expect("docs/architecture.md");
    let edges = edge_list();
    assert!(edges.lines().count() > 10, "{edges}");
    // The block between the markers is exactly the edge list (regenerate it from
    // `dp_pipeline::edge_list()` when a node's edges change).
    let block = doc
        .split("<!-- edges:begin -->\n```text\n")
        .nth(1)
        .and_then(|rest| rest.split("```\n<!-- edges:end -->").next())
        .expect("edge markers in docs/architecture.md");
    assert_eq!(block, edges);
}

#[test]
fn every_edge_is_to_a_later_node_or_transmits() {
    // No node declares a recirculation yet: every declared edge goes forward.
    for &node in NodeId::ORDER {
        for &next in node.next_nodes() {
            assert!(
                next.index() > node.index(),
                "{} -> {}",
                node.name(),
                next.name()
            );
        }
    }
    // A timer-only node has no edge leading to it.
    assert!(NodeId::ORDER
        .iter()
        .all(|n| !n.next_nodes().contains(&NodeId::VmProbe)));
}

#[test]
fn silent_vms_are_probed_by_one_worker_each() {
    // Two workers, each with its graph: together they probe every silent VM once.
    let mut sent = Vec::new();
    for index in 0..2 {
        let mut h = Harness::new();
        for p in [VM1, VM2, VM3, VM4] {
            h.ports.get(p).unwrap().forget_peer();
        }
        h.worker = WorkerCtx::new(index, 2);
        let mut ports: Vec<_> = h.tick().into_iter().map(|(p, _)| p).collect();
        ports.retain(|p| ![PF0, PF1].contains(p));
        // Router discovery is the leader's alone.
        sent.push(ports);
    }
    assert!(sent.iter().all(|s| !s.is_empty()), "{sent:?}");
    let mut all: Vec<_> = sent.concat();
    all.sort_unstable();
    assert_eq!(all, [VM1, VM2, VM3, VM4]);
}

#[test]
fn only_the_leader_probes_for_the_router() {
    for (index, expect) in [(0, true), (1, false)] {
        let mut h = Harness::new();
        h.worker = WorkerCtx::new(index, 2);
        let uplink_frames = h
            .tick()
            .into_iter()
            .filter(|(p, _)| [PF0, PF1].contains(p))
            .count();
        assert_eq!(uplink_frames > 0, expect, "worker {index}");
    }
}
