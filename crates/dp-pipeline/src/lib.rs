//! The packet pipeline: buffers and batches, and the graph of nodes that decides each packet's
//! fate. Sans-IO: no sockets, no clock, no locks — ports and time are the worker's business.

#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod affinity;
pub mod capture;
pub mod commands;
pub mod config;
pub mod cycles;
pub mod drop;
pub mod graph;
pub mod node;
pub mod nodes;
pub mod port_table;
pub mod summary;
pub mod trace;
pub mod tx;
pub mod worker_ctx;

/// Buffers and offload live in `dp-buffer` (shared with the ports); re-exported under their old paths.
pub use dp_buffer::{buffer, offload};

pub use buffer::{BufferPool, PacketBuf, PacketMeta, DEFAULT_DATA_ROOM, HEADROOM, LARGE_DATA_ROOM};
pub use config::{
    ConntrackMode, DpConfig, DEFAULT_UNDERLAY_MTU, GATEWAY_IPV4, GATEWAY_IPV6, MIN_UNDERLAY_MTU,
};
pub use drop::DropReason;
pub use graph::{
    edge_list, Edge, FlowCounters, Graph, GraphCounters, NodeId, PollCounters, TxSink, BATCH_SIZE,
    MAX_RECIRCULATIONS, TICK_INTERVAL_NS,
};
pub use node::{Ctx, Emit, Node, Verdict};
pub use offload::{Offload, OffloadError, Segments, VNET_HDR_LEN};
pub use port_table::{PortEntry, PortKind, PortTable};
pub use worker_ctx::WorkerCtx;
