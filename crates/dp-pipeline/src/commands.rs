//! Commands from the control side to one worker, and its answers: what a snapshot cannot carry
//! (state only the worker has, or requests that need its answer).
//!
//! Every worker has a bounded queue ([`queue`], a `std::sync::mpsc::sync_channel`): the sender
//! never waits for room it does not get ([`CommandSender::send`] refuses when the queue is
//! full), and the worker takes at most [`COMMANDS_PER_TICK`] per tick ([`serve`]), so a burst of
//! commands costs it bounded work. Answers go back on a channel that comes with the command.
//!
//! Today: [`WorkerCommand::Report`] (the worker's pool and hand-off counters; the daemon logs
//! them at shutdown) and [`WorkerCommand::Flows`] (a step of a conntrack dump: `dpservice-dump
//! --flows`). Meant to come here: as events the other way, learned MACs.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

use dp_tables::{Flow, FlowTable, PortId};

use crate::buffer::BufferPool;
use crate::graph::GraphCounters;

/// Commands a worker's queue holds.
pub const QUEUE_CAPACITY: usize = 16;

/// Most commands a worker serves per tick.
pub const COMMANDS_PER_TICK: usize = 4;

/// Most flow slots one [`WorkerCommand::Flows`] looks at: a dump of a big table takes several
/// commands (and ticks), each bounded work.
pub const FLOW_SLOTS_PER_COMMAND: usize = 1 << 16;

/// A request to one worker.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Report the pool's and the hand-off counters' state.
    Report { reply: SyncSender<WorkerReport> },
    /// Copy the live flows from slot `from` on (those with an end on `port`, or all) into
    /// `flows` — the asker's vector: the worker never allocates for it — until it is full or
    /// [`FLOW_SLOTS_PER_COMMAND`] slots were looked at; answer where to go on.
    Flows {
        from: usize,
        port: Option<PortId>,
        flows: Vec<Flow>,
        reply: SyncSender<FlowChunk>,
    },
}

/// A worker's answer to [`WorkerCommand::Flows`].
#[derive(Debug)]
pub struct FlowChunk {
    pub index: usize,
    pub flows: Vec<Flow>,
    /// The slot to ask from next; `None`: the dump is complete.
    pub next: Option<usize>,
}

/// A worker's answer to [`WorkerCommand::Report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerReport {
    pub index: usize,
    pub pool_available: usize,
    pub pool_capacity: usize,
    pub handed_off: u64,
    pub handed_in: u64,
    /// Live flows of the worker's table and its room (as of its last tick).
    pub flows: u64,
    pub flow_capacity: u64,
}

/// The control side of a worker's queue.
#[derive(Clone, Debug)]
pub struct CommandSender(SyncSender<WorkerCommand>);

impl CommandSender {
    /// Queues `command`; hands it back when the queue is full or the worker is gone.
    pub fn send(&self, command: WorkerCommand) -> Result<(), WorkerCommand> {
        self.0.try_send(command).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}

/// The worker's side of its queue.
#[derive(Debug)]
pub struct CommandQueue(Receiver<WorkerCommand>);

/// A worker's command queue, bounded ([`QUEUE_CAPACITY`]).
pub fn queue() -> (CommandSender, CommandQueue) {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
    (CommandSender(tx), CommandQueue(rx))
}

/// What a worker shows of itself to its commands.
pub struct WorkerView<'a> {
    pub index: usize,
    pub pool: &'a BufferPool,
    pub counters: &'a GraphCounters,
    pub flows: &'a FlowTable,
}

/// Serves at most [`COMMANDS_PER_TICK`] waiting commands (never blocks); returns how many.
pub fn serve(queue: &CommandQueue, view: &WorkerView<'_>) -> usize {
    let mut served = 0;
    while served < COMMANDS_PER_TICK {
        let command = match queue.0.try_recv() {
            Ok(c) => c,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        };
        served += 1;
        match command {
            WorkerCommand::Report { reply } => {
                // The asker may be gone or its channel full: an answer nobody takes is dropped.
                let _ = reply.try_send(WorkerReport {
                    index: view.index,
                    pool_available: view.pool.available(),
                    pool_capacity: view.pool.capacity(),
                    handed_off: view.counters.handed_off(),
                    handed_in: view.counters.handed_in(),
                    flows: view.counters.flows.live.load(Ordering::Relaxed),
                    flow_capacity: view.counters.flows.capacity.load(Ordering::Relaxed),
                });
            }
            WorkerCommand::Flows {
                from,
                port,
                mut flows,
                reply,
            } => {
                let next = copy_flows(view.flows, from, port, &mut flows);
                let _ = reply.try_send(FlowChunk {
                    index: view.index,
                    flows,
                    next,
                });
            }
        }
    }
    served
}

/// [`WorkerCommand::Flows`]: copies into `out` (up to its capacity) and says where to go on.
fn copy_flows(
    table: &FlowTable,
    from: usize,
    port: Option<PortId>,
    out: &mut Vec<Flow>,
) -> Option<usize> {
    let end = from
        .saturating_add(FLOW_SLOTS_PER_COMMAND)
        .min(table.slot_count());
    let room = out.capacity();
    for (id, flow) in table.live_from(from) {
        let slot = id.0 as usize;
        if slot >= end {
            break;
        }
        if port.is_some_and(|p| !flow.ports.contains(&p)) {
            continue;
        }
        if out.len() >= room {
            return Some(slot);
        }
        out.push(*flow);
    }
    (end < table.slot_count()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_served_a_few_per_tick_and_answered() {
        let (tx, rx) = queue();
        let (reply, answers) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        for _ in 0..QUEUE_CAPACITY {
            assert!(tx
                .send(WorkerCommand::Report {
                    reply: reply.clone()
                })
                .is_ok());
        }
        assert!(
            tx.send(WorkerCommand::Report {
                reply: reply.clone()
            })
            .is_err(),
            "bounded"
        );
        let pool = BufferPool::new(8, 256);
        let counters = GraphCounters::default();
        counters
            .handed_in
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let flows = FlowTable::new(16);
        let view = WorkerView {
            index: 1,
            pool: &pool,
            counters: &counters,
            flows: &flows,
        };
        assert_eq!(serve(&rx, &view), COMMANDS_PER_TICK);
        let report = answers.try_recv().unwrap();
        assert_eq!(
            report,
            WorkerReport {
                index: 1,
                pool_available: 8,
                pool_capacity: 8,
                handed_off: 0,
                handed_in: 3,
                flows: 0,
                flow_capacity: 0,
            }
        );
        let mut total = COMMANDS_PER_TICK;
        loop {
            let n = serve(&rx, &view);
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, QUEUE_CAPACITY);
        assert_eq!(answers.try_iter().count(), QUEUE_CAPACITY - 1);
    }

    #[test]
    fn flows_are_dumped_in_bounded_steps_filtered_by_port() {
        use dp_tables::ConnKey;
        let mut table = FlowTable::new(64);
        for i in 0..40u16 {
            let key = ConnKey {
                src: 1,
                dst: 2,
                src_port: i,
                dst_port: 80,
                ..ConnKey::default()
            };
            let mut flow = Flow::new(key, key.reversed(), u64::MAX);
            flow.ports = [i % 4, dp_tables::NO_PORT];
            table.insert(flow).unwrap();
        }
        let (mut all, mut mine) = (0, Vec::new());
        let mut from = Some(0);
        while let Some(f) = from {
            // A small vector: the dump goes on where the vector filled up.
            let mut out = Vec::with_capacity(3);
            from = copy_flows(&table, f, Some(2), &mut out);
            assert!(out.len() <= 3);
            mine.extend(out.iter().map(|fl| fl.original.src_port));
            all += 1;
        }
        mine.sort_unstable();
        assert_eq!(mine, (0..40).filter(|i| i % 4 == 2).collect::<Vec<_>>());
        assert!(all >= 4, "{all} steps");
        let mut out = Vec::with_capacity(100);
        assert_eq!(copy_flows(&table, 0, None, &mut out), None);
        assert_eq!(out.len(), 40);
    }
}
