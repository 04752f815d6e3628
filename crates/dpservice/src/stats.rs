//! Periodic statistics on standard output (off with `--no-stats`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use dp_pipeline::commands::{CommandSender, WorkerCommand, WorkerReport};
use dp_pipeline::{DropReason, GraphCounters, NodeId};

/// Asks every worker for its report and waits for the answers (each at most `wait`; workers
/// serve commands every tick), in worker order.
pub fn reports(workers: &[CommandSender], wait: Duration) -> Vec<WorkerReport> {
    let (reply, answers) = std::sync::mpsc::sync_channel(workers.len().max(1));
    let asked = workers
        .iter()
        .filter(|w| {
            w.send(WorkerCommand::Report {
                reply: reply.clone(),
            })
            .is_ok()
        })
        .count();
    let mut out: Vec<WorkerReport> = (0..asked)
        .map_while(|_| answers.recv_timeout(wait).ok())
        .collect();
    out.sort_by_key(|r| r.index);
    out
}

/// One line: per-node packet counts and every non-zero drop counter, summed over workers.
pub fn summary(workers: &[Arc<GraphCounters>]) -> String {
    let mut line = String::from("stats:");
    let rx: u64 = workers
        .iter()
        .map(|c| c.node_packets(NodeId::Classify))
        .sum();
    let tx: u64 = workers
        .iter()
        .map(|c| c.tx_packets.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let originated: u64 = workers
        .iter()
        .map(|c| c.originated.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    let _ = write!(line, " rx={rx} tx={tx}");
    if originated > 0 {
        let _ = write!(line, " originated={originated}");
    }
    // Flow affinity (several workers): rx + originated + handed_in = tx + drops + handed_off.
    let handed_off: u64 = workers.iter().map(|c| c.handed_off()).sum();
    let handed_in: u64 = workers.iter().map(|c| c.handed_in()).sum();
    if handed_off > 0 || handed_in > 0 {
        let _ = write!(line, " handed_off={handed_off} handed_in={handed_in}");
    }
    // Connection tracking: live flows of every worker's table against their room.
    let flows = |f: fn(&dp_pipeline::FlowCounters) -> &std::sync::atomic::AtomicU64| -> u64 {
        workers
            .iter()
            .map(|c| f(&c.flows).load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    };
    let capacity = flows(|f| &f.capacity);
    if capacity > 0 {
        let _ = write!(
            line,
            " flows={}/{capacity} flows_created={} flows_expired={}",
            flows(|f| &f.live),
            flows(|f| &f.created),
            flows(|f| &f.expired)
        );
    }
    for &reason in DropReason::ALL {
        let n: u64 = workers.iter().map(|c| c.drops(reason)).sum();
        if n > 0 {
            let _ = write!(line, " drop.{}={n}", reason.name());
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn summary_sums_workers_and_lists_nonzero_drops() {
        let a = Arc::new(GraphCounters::default());
        let b = Arc::new(GraphCounters::default());
        a.node_packets[NodeId::Classify.index()].store(3, Ordering::Relaxed);
        b.node_packets[NodeId::Classify.index()].store(4, Ordering::Relaxed);
        b.tx_packets.store(5, Ordering::Relaxed);
        b.count_drop(None, DropReason::Spoofed, 2);
        assert_eq!(summary(&[a, b]), "stats: rx=7 tx=5 drop.spoofed=2");
    }
}
