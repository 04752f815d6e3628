//! The trace tap (`dpservice-dump`): what is recorded while a client is attached, and that
//! nothing is recorded (nor changed) while none is.

mod common;

use std::sync::Arc;

use common::*;
use dp_pipeline::trace::{self, Event, Record, TraceControl, TraceReader};
use dp_pipeline::{DropReason, NodeId, Verdict};

fn tapped() -> (Harness, Arc<TraceControl>, TraceReader) {
    let mut h = Harness::new();
    let control = Arc::new(TraceControl::default());
    let (tap, reader) = trace::tap(Arc::clone(&control), 0, trace::RING_BYTES);
    h.graph.set_trace_tap(tap);
    (h, control, reader)
}

/// Every waiting record, decoded into owned parts: (event, node, verdict, port, frame).
type Owned = (Event, Option<NodeId>, Option<Verdict>, u16, Vec<u8>);

fn drain(reader: &mut TraceReader) -> Vec<Owned> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while reader.next_record(&mut buf) {
        let r = Record::decode(&buf).expect("a well-formed record");
        assert_eq!(
            r.orig_len as usize,
            r.data.len(),
            "small frames are kept whole"
        );
        out.push((r.event, r.node, r.verdict, r.port, r.data.to_vec()));
    }
    out
}

#[test]
fn received_and_sent_frames_are_recorded_byte_for_byte() {
    let (mut h, control, mut reader) = tapped();
    let frame = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"traced");
    // Nothing attached: nothing recorded.
    assert_eq!(h.run1(VM1, frame.clone()).len(), 1);
    assert!(drain(&mut reader).is_empty());

    control.enable(trace::WANT_PORTS, 0);
    let out = h.run1(VM1, frame.clone());
    assert_eq!(out.len(), 1);
    let records = drain(&mut reader);
    assert_eq!(
        records,
        vec![
            (Event::Rx, None, None, VM1, frame),
            (Event::Tx, None, None, VM2, out[0].1.clone()),
        ]
    );
    control.disable();
    h.run1(VM1, vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"x"));
    assert!(drain(&mut reader).is_empty(), "detached: nothing more");
    assert_eq!(control.lost(), 0);
}

#[test]
fn drops_come_with_their_node_and_reason_and_nodes_with_their_verdicts() {
    let (mut h, control, mut reader) = tapped();
    let spoofed = vm_udp4(
        VM1,
        "10.100.1.99".parse().unwrap(),
        vm_ipv4(VM2),
        64,
        b"spoof",
    );
    control.enable(trace::WANT_DROPS, 0);
    assert!(h.run1(VM1, spoofed.clone()).is_empty());
    let good = vm_udp4(VM1, vm_ipv4(VM1), vm_ipv4(VM2), 64, b"good");
    assert_eq!(h.run1(VM1, good.clone()).len(), 1);
    let records = drain(&mut reader);
    assert_eq!(records.len(), 1, "only the drop: {records:?}");
    let (event, node, verdict, port, data) = &records[0];
    assert_eq!((*event, *port), (Event::Node, VM1));
    assert!(node.is_some());
    assert_eq!(*verdict, Some(Verdict::Drop(DropReason::Spoofed)));
    assert_eq!(data, &spoofed);

    // --nodes: every verdict of the chosen nodes, in the order the packet took them.
    let mask = (1 << NodeId::Classify.index()) | (1 << NodeId::L2Rewrite.index());
    control.enable(trace::WANT_NODES, mask);
    assert_eq!(h.run1(VM1, good).len(), 1);
    let path: Vec<_> = drain(&mut reader)
        .into_iter()
        .map(|(e, n, v, p, _)| (e, n, v, p))
        .collect();
    assert_eq!(
        path,
        vec![
            (
                Event::Node,
                Some(NodeId::Classify),
                Some(Verdict::Next(NodeId::Ipv4Lookup)),
                VM1
            ),
            (
                Event::Node,
                Some(NodeId::L2Rewrite),
                Some(Verdict::Tx(VM2)),
                VM1
            ),
        ]
    );
}
