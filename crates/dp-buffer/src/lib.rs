//! Packet buffers and what travels with them: the pre-allocated [`PacketBuf`]s of a worker's
//! [`BufferPool`], each packet's [`PacketMeta`], and the checksum/segmentation [`offload`]
//! request a TAP hands over with a frame.
//!
//! Its own crate because both sides of the port seam use it: `dp-ports` fills and drains
//! buffers, `dp-pipeline` decides their fate — and neither depends on the other.

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

pub mod buffer;
pub mod offload;

pub use buffer::{
    BufferError, BufferPool, FlowRef, Origin, PacketBuf, PacketMeta, Parsed, DEFAULT_DATA_ROOM,
    HEADROOM, LARGE_DATA_ROOM,
};
pub use offload::{ChecksumPolicy, Offload, OffloadError, Segments, VNET_HDR_LEN};
