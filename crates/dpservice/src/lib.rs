//! The dpservice-rs daemon's pieces, as a library so the benchmarks (`crates/dp-bench`) and the
//! tests drive the same worker loop the daemon runs.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod dump;
pub mod logging;
pub mod metrics;
pub mod neighbor;
pub mod options;
pub mod ports;
pub mod stats;
pub mod telemetry;
pub mod worker;
