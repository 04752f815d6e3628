//! vhost-user VM ports (issue #14): the guest's virtio-net rings in shared memory, read and
//! written by the worker directly. Today: the data path on a split virtqueue ([`ring`]); the
//! device (the vhost-user protocol, guest memory maps) is to follow.

pub mod ring;
