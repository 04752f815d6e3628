//! The dpservice-rs daemon's pieces, as a library so the benchmark and tests drive the same
//! worker loop the daemon runs.

pub mod bench;
pub mod logging;
pub mod options;
pub mod ports;
pub mod stats;
pub mod worker;
