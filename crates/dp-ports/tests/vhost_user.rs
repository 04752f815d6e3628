//! A vhost-user port against an in-process frontend (the `vhost` crate's `Frontend`, as QEMU
//! would drive it) and a driver writing virtio rings into memfd-backed guest memory that both
//! sides map: the protocol, the data path both ways, notifications, GET_VRING_BASE, reconnects
//! and rings placed outside guest memory.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dp_ports::vhost_user::device::{FEATURES, RX_QUEUE, TX_QUEUE};
use dp_ports::vhost_user::ring::NET_HDR_LEN;
use dp_ports::{BufferPool, PacketBuf, PortDevice, PortQueue, VhostUserPort};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::message::VhostUserVringAddrFlags;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserDirtyLogRegion, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};
use vmm_sys_util::eventfd::EventFd;

const MEM_SIZE: usize = 4 << 20;
const QUEUE_SIZE: u16 = 16;
/// Where the driver puts its rings and buffers (guest physical addresses).
const RX_RING_AT: u64 = 0x1_0000;
const TX_RING_AT: u64 = 0x2_0000;
const RX_BUFS_AT: u64 = 0x10_0000;
const TX_BUFS_AT: u64 = 0x20_0000;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

/// An anonymous memory file of `len` bytes (guest memory, a dirty log).
fn memfd(len: u64) -> File {
    // SAFETY: a fresh anonymous memory file; the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"vhost-user-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create");
    // SAFETY: `fd` was just created and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len).unwrap();
    file
}

/// Guest memory the test (the "guest" and QEMU's side) maps, backed by a memfd the port maps too.
struct Guest {
    mem: GuestMemoryMmap,
    file: File,
}

impl Guest {
    fn new() -> Guest {
        let file = memfd(MEM_SIZE as u64);
        let region =
            MmapRegion::from_file(FileOffset::new(file.try_clone().unwrap(), 0), MEM_SIZE).unwrap();
        let mem =
            GuestMemoryMmap::from_regions(vec![
                GuestRegionMmap::new(region, GuestAddress(0)).unwrap()
            ])
            .unwrap();
        Guest { mem, file }
    }

    /// The frontend's address of a guest address (QEMU speaks its own addresses).
    fn host(&self, addr: u64) -> u64 {
        self.mem.get_host_address(GuestAddress(addr)).unwrap() as u64
    }
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// The port polled on a thread of its own, as a worker would: frames received are collected,
/// frames queued in `to_send` are transmitted.
struct Worker {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    to_send: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<VhostUserPort>>,
}

impl Worker {
    fn start(mut port: VhostUserPort) -> Worker {
        let received = Arc::new(Mutex::new(Vec::new()));
        let to_send: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, to_send, stop) = (
                Arc::clone(&received),
                Arc::clone(&to_send),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let mut pool = BufferPool::new(64, 2048);
                let mut out: Vec<PacketBuf> = Vec::with_capacity(32);
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    port.rx_burst(&mut pool, &mut out, 32);
                    for b in out.drain(..) {
                        received.lock().unwrap().push(b.data().to_vec());
                        pool.free(b);
                    }
                    let frames: Vec<Vec<u8>> = std::mem::take(&mut *to_send.lock().unwrap());
                    if !frames.is_empty() {
                        let mut pkts = Vec::new();
                        for f in frames {
                            let mut p = pool.alloc().unwrap();
                            p.set_frame(&f).unwrap();
                            pkts.push(p);
                        }
                        port.tx_burst(&mut pkts, &mut pool);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                port
            })
        };
        Worker {
            received,
            to_send,
            stop,
            thread: Some(thread),
        }
    }

    fn wait_received(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.received.lock().unwrap().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.received.lock().unwrap().clone()
    }

    fn finish(mut self) -> VhostUserPort {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// What QEMU does first: owner, features, protocol features (REPLY_ACK), the memory table.
fn handshake(path: &std::path::Path, guest: &Guest) -> Frontend {
    let (frontend, features) = handshake_with(path, guest, 2, VhostUserProtocolFeatures::empty());
    assert_eq!(features, FEATURES);
    frontend
}

/// The handshake for `rings` rings, with the protocol features `extra` on top of REPLY_ACK and
/// LOG_SHMFD (those the device offers); returns the frontend and the features it acked.
fn handshake_with(
    path: &std::path::Path,
    guest: &Guest,
    rings: u64,
    extra: VhostUserProtocolFeatures,
) -> (Frontend, u64) {
    handshake_acking(path, guest, rings, extra, |offered| offered)
}

/// [`handshake_with`], acking `ack(offered)` of the features the device offers.
fn handshake_acking(
    path: &std::path::Path,
    guest: &Guest,
    rings: u64,
    extra: VhostUserProtocolFeatures,
    ack: impl Fn(u64) -> u64,
) -> (Frontend, u64) {
    let mut frontend = Frontend::connect(path, rings).unwrap();
    frontend.set_owner().unwrap();
    let features = ack(frontend.get_features().unwrap());
    frontend.set_features(features).unwrap();
    let pf = frontend.get_protocol_features().unwrap();
    assert!(pf.contains(extra), "{pf:?} lacks {extra:?}");
    frontend
        .set_protocol_features(
            pf & (VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::LOG_SHMFD
                | extra),
        )
        .unwrap();
    frontend
        .set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: guest.host(0),
            mmap_offset: 0,
            mmap_handle: guest.file.as_raw_fd(),
        }])
        .unwrap();
    (frontend, features)
}

/// Sets up ring `q` on `vq` from index `base`, as QEMU does.
fn set_up_ring(
    frontend: &mut Frontend,
    guest: &Guest,
    q: usize,
    vq: &MockSplitQueue<GuestMemoryMmap>,
    base: u16,
    call: &EventFd,
    kick: &EventFd,
) {
    frontend.set_vring_num(q, QUEUE_SIZE).unwrap();
    frontend
        .set_vring_addr(
            q,
            &VringConfigData {
                queue_max_size: QUEUE_SIZE,
                queue_size: QUEUE_SIZE,
                flags: 0,
                desc_table_addr: guest.host(vq.desc_table_addr().raw_value()),
                used_ring_addr: guest.host(vq.used_addr().raw_value()),
                avail_ring_addr: guest.host(vq.avail_addr().raw_value()),
                log_addr: None,
            },
        )
        .unwrap();
    frontend.set_vring_base(q, base).unwrap();
    frontend.set_vring_call(q, call).unwrap();
    frontend.set_vring_kick(q, kick).unwrap();
    frontend.set_vring_enable(q, true).unwrap();
}

/// The rings of one connection, as QEMU sets them up.
struct Setup {
    frontend: Frontend,
    kicks: [EventFd; 2],
    calls: [EventFd; 2],
}

fn connect(
    path: &std::path::Path,
    guest: &Guest,
    rings: [(&MockSplitQueue<GuestMemoryMmap>, u16); 2],
) -> Setup {
    connect_frontend(handshake(path, guest), guest, rings)
}

/// [`connect`] over a frontend already through its handshake.
fn connect_frontend(
    mut frontend: Frontend,
    guest: &Guest,
    rings: [(&MockSplitQueue<GuestMemoryMmap>, u16); 2],
) -> Setup {
    let kicks = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
    let calls = [EventFd::new(0).unwrap(), EventFd::new(0).unwrap()];
    for (q, (vq, base)) in rings.into_iter().enumerate() {
        set_up_ring(&mut frontend, guest, q, vq, base, &calls[q], &kicks[q]);
    }
    // A request with an answer: the device has handled everything before it (the frontend
    // does not wait for the ring messages themselves).
    frontend.get_features().unwrap();
    Setup {
        frontend,
        kicks,
        calls,
    }
}

fn wait_link(port_up: impl Fn() -> bool, up: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while port_up() != up {
        assert!(
            Instant::now() < deadline,
            "link never went {}",
            if up { "up" } else { "down" }
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The used ring's entries (id, len) so far.
fn used(guest: &Guest, vq: &MockSplitQueue<GuestMemoryMmap>) -> Vec<(u32, u32)> {
    let base = vq.used_addr();
    let idx: u16 = guest.mem.read_obj(base.checked_add(2).unwrap()).unwrap();
    (0..u64::from(idx))
        .map(|i| {
            let at = base
                .checked_add(4 + 8 * (i % u64::from(QUEUE_SIZE)))
                .unwrap();
            (
                guest.mem.read_obj(at).unwrap(),
                guest.mem.read_obj(at.checked_add(4).unwrap()).unwrap(),
            )
        })
        .collect()
}

fn frame(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| n.wrapping_add(i as u8)).collect()
}

/// Guest transmit chains: a header-only descriptor then the frame (as Linux's virtio-net does
/// without `any_layout`), or both in one.
fn queue_tx(
    guest: &Guest,
    vq: &MockSplitQueue<GuestMemoryMmap>,
    frames: &[Vec<u8>],
    first_slot: u64,
) {
    let mut descs = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let at = TX_BUFS_AT + (first_slot + i as u64) * 0x1000;
        guest
            .mem
            .write_slice(&[0; NET_HDR_LEN], GuestAddress(at))
            .unwrap();
        guest
            .mem
            .write_slice(f, GuestAddress(at + NET_HDR_LEN as u64))
            .unwrap();
        // `next` is an index into the whole table: the chains start at `2 * first_slot`.
        let d = (2 * first_slot) as u16 + descs.len() as u16;
        descs.push(desc(at, NET_HDR_LEN as u32, F_NEXT, d + 1));
        descs.push(desc(at + NET_HDR_LEN as u64, f.len() as u32, 0, 0));
    }
    vq.add_desc_chains(&descs, (first_slot * 2) as u16).unwrap();
}

#[test]
fn a_frontend_sets_up_the_rings_and_frames_flow_both_ways() {
    let dir = tempdir();
    let path = dir.join("vm0.sock");
    let port = VhostUserPort::listen(&path, "vm0").unwrap();
    assert!(!port.link_up(), "down until a frontend set it up");
    let guest = Guest::new();
    let worker = Worker::start(port);
    let tx = MockSplitQueue::create(&guest.mem, GuestAddress(TX_RING_AT), QUEUE_SIZE);
    let rx = MockSplitQueue::create(&guest.mem, GuestAddress(RX_RING_AT), QUEUE_SIZE);
    let setup = connect(&path, &guest, [(&rx, 0), (&tx, 0)]);

    // Guest -> us: two frames queued and kicked.
    let sent = vec![frame(1, 60), frame(2, 1500)];
    queue_tx(&guest, &tx, &sent, 0);
    setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(worker.wait_received(2), sent);
    let tx_used = used(&guest, &tx);
    assert_eq!(tx_used.iter().map(|u| u.0).collect::<Vec<_>>(), vec![0, 2]);
    // The guest did not suppress interrupts: it is told its buffers are back.
    assert!(setup.calls[TX_QUEUE].read().unwrap() >= 1);

    // Us -> guest: receive buffers posted, a frame transmitted into them.
    let descs: Vec<_> = (0..4u64)
        .map(|i| desc(RX_BUFS_AT + i * 0x1000, 2048, F_WRITE, 0))
        .collect();
    rx.add_desc_chains(&descs, 0).unwrap();
    let reply = frame(9, 98);
    worker.to_send.lock().unwrap().push(reply.clone());
    let deadline = Instant::now() + Duration::from_secs(5);
    while used(&guest, &rx).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the frame never reached the guest"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(used(&guest, &rx), vec![(0, (NET_HDR_LEN + 98) as u32)]);
    let mut got = vec![0u8; 98];
    guest
        .mem
        .read_slice(&mut got, GuestAddress(RX_BUFS_AT + NET_HDR_LEN as u64))
        .unwrap();
    assert_eq!(got, reply);
    assert!(setup.calls[RX_QUEUE].read().unwrap() >= 1);

    // GET_VRING_BASE (QEMU stopping the device): the worker's index, after it let go.
    assert_eq!(setup.frontend.get_vring_base(TX_QUEUE).unwrap(), 2);
    assert_eq!(setup.frontend.get_vring_base(RX_QUEUE).unwrap(), 1);
    let port = worker.finish();
    let stats = port.stats();
    assert_eq!((stats.rx_packets, stats.rx_bytes), (2, 1560));
    assert_eq!(
        (stats.tx_packets, stats.tx_bytes, stats.tx_errors),
        (1, 98, 0)
    );
}

/// `used.flags` (VRING_USED_F_NO_NOTIFY) and, with EVENT_IDX, `avail_event` of ring `vq`.
fn kick_fields(guest: &Guest, vq: &MockSplitQueue<GuestMemoryMmap>) -> (u16, u16) {
    let base = vq.used_addr();
    let flags: u16 = guest.mem.read_obj(base).unwrap();
    let at = base.checked_add(4 + 8 * u64::from(QUEUE_SIZE)).unwrap();
    (flags, guest.mem.read_obj(at).unwrap())
}

/// While the worker polls, the guest is asked not to kick — also between bursts that drain its
/// ring, which a guest slower than us does after every burst; only before the worker sleeps
/// (`prepare_sleep`) are kicks asked for again, and a frame queued while they were off keeps
/// the worker awake. The guest's receive ring is never asked to kick. Both ways of asking:
/// `VRING_USED_F_NO_NOTIFY` (DPDK's virtio-user acks no EVENT_IDX) and `avail_event`.
#[test]
fn kicks_are_off_while_the_worker_polls_and_on_before_it_sleeps() {
    for event_idx in [false, true] {
        let dir = tempdir();
        let path = dir.join("vm0.sock");
        let mut port = VhostUserPort::listen(&path, "vm0").unwrap();
        let guest = Guest::new();
        let tx = MockSplitQueue::create(&guest.mem, GuestAddress(TX_RING_AT), QUEUE_SIZE);
        let rx = MockSplitQueue::create(&guest.mem, GuestAddress(RX_RING_AT), QUEUE_SIZE);
        let without = |f: u64| if event_idx { f } else { f & !(1 << 29) };
        let (frontend, _) = handshake_acking(
            &path,
            &guest,
            2,
            VhostUserProtocolFeatures::empty(),
            without,
        );
        let _setup = connect_frontend(frontend, &guest, [(&rx, 0), (&tx, 0)]);
        wait_link(|| port.link_up(), true);
        let mut pool = BufferPool::new(64, 2048);
        let mut out: Vec<PacketBuf> = Vec::with_capacity(32);
        let mut burst = |port: &mut VhostUserPort| {
            let n = port.rx_burst(&mut pool, &mut out, 32);
            for b in out.drain(..) {
                pool.free(b);
            }
            n
        };
        let no_notify = |vq| kick_fields(&guest, vq).0 & 1 != 0;

        // Kicks on while the port has not seen a frame: an idle guest wakes the worker.
        assert_eq!(burst(&mut port), 0);
        assert!(!no_notify(&tx), "event_idx={event_idx}");
        queue_tx(&guest, &tx, &[frame(1, 60), frame(2, 60)], 0);
        assert_eq!(burst(&mut port), 2);
        // Drained, and polled again and again: still no kicks wanted.
        for _ in 0..3 {
            assert_eq!(burst(&mut port), 0);
            assert_eq!(no_notify(&tx), !event_idx);
        }
        // A frame the guest queued without kicking keeps the worker awake.
        queue_tx(&guest, &tx, &[frame(3, 60)], 2);
        assert!(port.prepare_sleep(), "event_idx={event_idx}");
        assert!(!no_notify(&tx));
        if event_idx {
            assert_eq!(kick_fields(&guest, &tx).1, 2, "armed at what was taken");
        }
        assert_eq!(burst(&mut port), 1);
        assert_eq!(no_notify(&tx), !event_idx);
        assert_eq!(burst(&mut port), 0);
        // Nothing waiting: the worker may sleep, with kicks on.
        assert!(!port.prepare_sleep());
        assert!(!no_notify(&tx));
        if event_idx {
            assert_eq!(kick_fields(&guest, &tx).1, 3);
        }
        // Nothing changed since: nothing to re-arm.
        assert!(!port.prepare_sleep());

        // The receive ring, once the port transmits into it: never a kick.
        let descs: Vec<_> = (0..2u64)
            .map(|i| desc(RX_BUFS_AT + i * 0x1000, 2048, F_WRITE, 0))
            .collect();
        rx.add_desc_chains(&descs, 0).unwrap();
        let mut p = pool.alloc().unwrap();
        p.set_frame(&frame(9, 60)).unwrap();
        let mut pkts = vec![p];
        assert_eq!(port.tx_burst(&mut pkts, &mut pool), 1);
        assert_eq!(no_notify(&rx), !event_idx, "event_idx={event_idx}");
        if event_idx {
            assert_eq!(kick_fields(&guest, &rx).1, 0, "avail_event never set");
        }
    }
}

#[test]
fn a_new_frontend_takes_over_after_the_old_one_went_away() {
    let dir = tempdir();
    let path = dir.join("vm1.sock");
    let port = VhostUserPort::listen(&path, "vm1").unwrap();
    let guest = Guest::new();
    let worker = Worker::start(port);
    let tx = MockSplitQueue::create(&guest.mem, GuestAddress(TX_RING_AT), QUEUE_SIZE);
    let rx = MockSplitQueue::create(&guest.mem, GuestAddress(RX_RING_AT), QUEUE_SIZE);
    let setup = connect(&path, &guest, [(&rx, 0), (&tx, 0)]);
    queue_tx(&guest, &tx, &[frame(3, 64)], 0);
    setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(worker.wait_received(1).len(), 1);
    // QEMU dies: no GET_VRING_BASE, the socket just closes.
    drop(setup);
    std::thread::sleep(Duration::from_millis(300));
    // QEMU comes back (reconnect=1) with the same memory and the ring where it was.
    let setup = connect(&path, &guest, [(&rx, 0), (&tx, 1)]);
    queue_tx(&guest, &tx, &[frame(4, 64)], 1);
    setup.kicks[TX_QUEUE].write(1).unwrap();
    let got = worker.wait_received(2);
    assert_eq!(got, vec![frame(3, 64), frame(4, 64)]);
    let port = worker.finish();
    assert!(port.link_up());
    drop(setup);
    wait_link(|| port.link_up(), false);
}

#[test]
fn rings_outside_guest_memory_are_refused_and_nothing_is_read() {
    let dir = tempdir();
    let path = dir.join("vm2.sock");
    let port = VhostUserPort::listen(&path, "vm2").unwrap();
    let guest = Guest::new();
    let worker = Worker::start(port);
    // The rings' used rings run past the end of the memory: the queues are not run.
    let mut frontend = handshake(&path, &guest);
    let kick = EventFd::new(0).unwrap();
    frontend.set_vring_num(TX_QUEUE, QUEUE_SIZE).unwrap();
    // An address no region holds: refused by the device itself.
    let outside = VringConfigData {
        queue_max_size: QUEUE_SIZE,
        queue_size: QUEUE_SIZE,
        flags: 0,
        desc_table_addr: guest.host(0x1000),
        used_ring_addr: guest.host(0) + MEM_SIZE as u64 + 0x1000,
        avail_ring_addr: guest.host(0x2000),
        log_addr: None,
    };
    // (The frontend does not wait for an answer to SET_VRING_ADDR: the port counts it.)
    let _ = frontend.set_vring_addr(TX_QUEUE, &outside);
    // Inside the region but running off its end: the worker will not run the ring.
    let straddling = VringConfigData {
        used_ring_addr: guest.host(MEM_SIZE as u64 - 8),
        ..outside
    };
    frontend.set_vring_addr(TX_QUEUE, &straddling).unwrap();
    frontend.set_vring_base(TX_QUEUE, 0).unwrap();
    frontend.set_vring_kick(TX_QUEUE, &kick).unwrap();
    frontend.set_vring_enable(TX_QUEUE, true).unwrap();
    kick.write(1).unwrap();
    // The receive ring too, tried by every transmit burst below.
    frontend.set_vring_num(RX_QUEUE, QUEUE_SIZE).unwrap();
    frontend.set_vring_addr(RX_QUEUE, &straddling).unwrap();
    frontend.set_vring_base(RX_QUEUE, 0).unwrap();
    let rx_kick = EventFd::new(0).unwrap();
    frontend.set_vring_kick(RX_QUEUE, &rx_kick).unwrap();
    frontend.set_vring_enable(RX_QUEUE, true).unwrap();
    for i in 0..5 {
        worker.to_send.lock().unwrap().push(frame(i, 64));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(50));
    let port = worker.finish();
    // Counted once each, however often the worker looked at them again (each snapshot, each
    // burst).
    assert_eq!(port.refused(), 3, "the three rings were refused");
    assert!(!port.link_up(), "a port whose rings do not run is down");
    assert_eq!(port.stats().rx_packets, 0);
    assert_eq!(port.stats().tx_packets, 0);
    assert_eq!(port.stats().tx_errors, 5, "every frame dropped");
}

/// Multi-queue: a port with two queue pairs, each polled by a worker of its own. Each worker
/// receives what the guest sends on its pair and transmits into its pair's receive ring; once
/// the guest stops its second pair (a guest with one vCPU runs one), the second worker's frames
/// go into the first pair's receive ring.
#[test]
fn two_queue_pairs_each_have_a_worker_and_a_lone_pair_is_shared() {
    let dir = tempdir();
    let path = dir.join("vm6.sock");
    let queues = VhostUserPort::listen_queues(&path, "vm6", 2).unwrap();
    assert_eq!(
        queues.iter().map(VhostUserPort::pair).collect::<Vec<_>>(),
        vec![0, 1]
    );
    let guest = Guest::new();
    let workers: Vec<Worker> = queues.into_iter().map(Worker::start).collect();
    let (mut frontend, features) = handshake_with(&path, &guest, 4, VhostUserProtocolFeatures::MQ);
    assert_ne!(features & (1 << 22), 0, "VIRTIO_NET_F_MQ offered");
    // Rings 0, 1 (pair 0) and 2, 3 (pair 1), each at an address of its own.
    let vqs: Vec<_> = (0..4u64)
        .map(|i| MockSplitQueue::create(&guest.mem, GuestAddress(0x1_0000 * (i + 1)), QUEUE_SIZE))
        .collect();
    let kicks: Vec<EventFd> = (0..4).map(|_| EventFd::new(0).unwrap()).collect();
    let calls: Vec<EventFd> = (0..4).map(|_| EventFd::new(0).unwrap()).collect();
    for (q, vq) in vqs.iter().enumerate() {
        set_up_ring(&mut frontend, &guest, q, vq, 0, &calls[q], &kicks[q]);
    }
    frontend.get_features().unwrap();
    // Receive buffers in both receive rings.
    for (ring, at) in [(0, RX_BUFS_AT), (2, RX_BUFS_AT + 0x8_0000)] {
        let descs: Vec<_> = (0..4u64)
            .map(|i| desc(at + i * 0x1000, 2048, F_WRITE, 0))
            .collect();
        vqs[ring].add_desc_chains(&descs, 0).unwrap();
    }
    let wait_used = |ring: usize, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while used(&guest, &vqs[ring]).len() < n {
            assert!(
                Instant::now() < deadline,
                "ring {ring} never got {n} used entries"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // The guest sends on each pair: each pair's worker gets it.
    queue_tx(&guest, &vqs[1], &[frame(1, 60)], 0);
    kicks[1].write(1).unwrap();
    assert_eq!(workers[0].wait_received(1), vec![frame(1, 60)]);
    queue_tx(&guest, &vqs[3], &[frame(2, 60)], 1);
    kicks[3].write(1).unwrap();
    assert_eq!(workers[1].wait_received(1), vec![frame(2, 60)]);
    assert!(
        workers[0].received.lock().unwrap().len() == 1,
        "not on worker 0"
    );
    // Each worker transmits into its own pair's receive ring.
    workers[0].to_send.lock().unwrap().push(frame(3, 80));
    workers[1].to_send.lock().unwrap().push(frame(4, 80));
    wait_used(0, 1);
    wait_used(2, 1);

    // The guest stops its second pair: worker 1's frames go into pair 0's receive ring.
    assert_eq!(frontend.get_vring_base(2).unwrap(), 1);
    assert_eq!(frontend.get_vring_base(3).unwrap(), 1);
    workers[1].to_send.lock().unwrap().push(frame(5, 90));
    wait_used(0, 2);
    let mut got = vec![0u8; 90];
    guest
        .mem
        .read_slice(
            &mut got,
            GuestAddress(RX_BUFS_AT + 0x1000 + NET_HDR_LEN as u64),
        )
        .unwrap();
    assert_eq!(got, frame(5, 90));
    assert_eq!(
        used(&guest, &vqs[2]).len(),
        1,
        "the stopped ring is left alone"
    );
    assert_eq!(frontend.get_vring_base(0).unwrap(), 2);
    assert_eq!(frontend.get_vring_base(1).unwrap(), 1);
    // Queue *pairs*, as QEMU and DPDK count them (QEMU's `queues=` may not ask for more).
    // (Last: the vhost crate's frontend takes the answer for a ring count from then on.)
    assert_eq!(frontend.get_queue_num().unwrap(), 2);
    let ports: Vec<VhostUserPort> = workers.into_iter().map(Worker::finish).collect();
    let tx: Vec<u64> = ports.iter().map(|p| p.stats().tx_packets).collect();
    assert_eq!(tx, vec![1, 2], "per pair");
}

/// A guest that queues a hostile chain (a descriptor outside its memory) gets its port reset:
/// the chain back, the rings stopped, the connection cut, `resets` counted. Its frontend
/// reconnects and the port runs again; another port never notices.
#[test]
fn a_hostile_chain_resets_its_port_and_only_its_port() {
    let dir = tempdir();
    let (bad_path, good_path) = (dir.join("vm4.sock"), dir.join("vm5.sock"));
    let (bad_guest, good_guest) = (Guest::new(), Guest::new());
    let bad = Worker::start(VhostUserPort::listen(&bad_path, "vm4").unwrap());
    let good = Worker::start(VhostUserPort::listen(&good_path, "vm5").unwrap());
    fn rings(g: &Guest) -> [MockSplitQueue<'_, GuestMemoryMmap>; 2] {
        [RX_RING_AT, TX_RING_AT]
            .map(|at| MockSplitQueue::create(&g.mem, GuestAddress(at), QUEUE_SIZE))
    }
    let [bad_rx, bad_tx] = rings(&bad_guest);
    let [good_rx, good_tx] = rings(&good_guest);
    let bad_setup = connect(&bad_path, &bad_guest, [(&bad_rx, 0), (&bad_tx, 0)]);
    let good_setup = connect(&good_path, &good_guest, [(&good_rx, 0), (&good_tx, 0)]);
    queue_tx(&good_guest, &good_tx, &[frame(5, 64)], 0);
    good_setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(good.wait_received(1).len(), 1);

    // Past the end of guest memory.
    bad_tx
        .add_desc_chains(&[desc(MEM_SIZE as u64 + 0x1000, 64, 0, 0)], 0)
        .unwrap();
    bad_setup.kicks[TX_QUEUE].write(1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while bad_setup.frontend.get_features().is_ok() {
        assert!(Instant::now() < deadline, "the connection was never cut");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        used(&bad_guest, &bad_tx),
        vec![(0, 0)],
        "the chain went back"
    );
    assert!(bad.received.lock().unwrap().is_empty());

    // The other port goes on.
    queue_tx(&good_guest, &good_tx, &[frame(6, 64)], 1);
    good_setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(good.wait_received(2), vec![frame(5, 64), frame(6, 64)]);

    // The frontend reconnects, the rings where the guest's used ring says (1).
    drop(bad_setup);
    let bad_setup = connect(&bad_path, &bad_guest, [(&bad_rx, 0), (&bad_tx, 1)]);
    queue_tx(&bad_guest, &bad_tx, &[frame(7, 64)], 1);
    bad_setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(bad.wait_received(1), vec![frame(7, 64)]);

    let (bad_port, good_port) = (bad.finish(), good.finish());
    let (b, g) = (bad_port.stats(), good_port.stats());
    assert_eq!((b.resets, b.rx_errors, b.rx_packets), (1, 1, 1));
    assert_eq!((g.resets, g.rx_errors, g.rx_packets), (0, 0, 2));
    drop((bad_setup, good_setup));
}

/// VHOST_F_LOG_ALL.
const LOG_ALL: u64 = 1 << 26;

/// What QEMU does around a live migration: SET_LOG_BASE with a shared bitmap, SET_FEATURES
/// with LOG_ALL, the running rings' addresses again with the log flag; at the end the same
/// without. The port goes on where it was, and marks what it wrote while logging was on.
#[test]
fn while_a_migration_runs_the_pages_the_port_writes_are_logged() {
    let dir = tempdir();
    let path = dir.join("vm3.sock");
    let port = VhostUserPort::listen(&path, "vm3").unwrap();
    let guest = Guest::new();
    let worker = Worker::start(port);
    let tx = MockSplitQueue::create(&guest.mem, GuestAddress(TX_RING_AT), QUEUE_SIZE);
    let rx = MockSplitQueue::create(&guest.mem, GuestAddress(RX_RING_AT), QUEUE_SIZE);
    let setup = connect(&path, &guest, [(&rx, 0), (&tx, 0)]);
    assert_ne!(FEATURES & LOG_ALL, 0, "the device offers dirty logging");
    let descs: Vec<_> = (0..4u64)
        .map(|i| desc(RX_BUFS_AT + i * 0x1000, 2048, F_WRITE, 0))
        .collect();
    rx.add_desc_chains(&descs, 0).unwrap();
    let wait_used = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while used(&guest, &rx).len() < n {
            assert!(
                Instant::now() < deadline,
                "frame {n} never reached the guest"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    // Before the migration: not logged.
    worker.to_send.lock().unwrap().push(frame(1, 100));
    wait_used(1);

    let log_len = (MEM_SIZE / 4096 / 8) as u64;
    let log_file = memfd(log_len);
    setup
        .frontend
        .set_log_base(
            0,
            Some(VhostUserDirtyLogRegion {
                mmap_size: log_len,
                mmap_offset: 0,
                mmap_handle: log_file.as_raw_fd(),
            }),
        )
        .unwrap();
    setup.frontend.set_features(FEATURES).unwrap();
    let with_log = |vq: &MockSplitQueue<GuestMemoryMmap>| VringConfigData {
        queue_max_size: QUEUE_SIZE,
        queue_size: QUEUE_SIZE,
        flags: VhostUserVringAddrFlags::VHOST_VRING_F_LOG.bits(),
        desc_table_addr: guest.host(vq.desc_table_addr().raw_value()),
        used_ring_addr: guest.host(vq.used_addr().raw_value()),
        avail_ring_addr: guest.host(vq.avail_addr().raw_value()),
        log_addr: Some(vq.used_addr().raw_value()),
    };
    for (q, vq) in [(RX_QUEUE, &rx), (TX_QUEUE, &tx)] {
        setup.frontend.set_vring_addr(q, &with_log(vq)).unwrap();
    }
    // A frame into the second receive buffer (page 0x101), and one from the guest.
    worker.to_send.lock().unwrap().push(frame(2, 100));
    wait_used(2);
    queue_tx(&guest, &tx, &[frame(3, 64)], 0);
    setup.kicks[TX_QUEUE].write(1).unwrap();
    assert_eq!(worker.wait_received(1), vec![frame(3, 64)]);

    let mut bitmap = vec![0u8; log_len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&log_file, &mut bitmap, 0).unwrap();
    let marked: Vec<u64> = (0..log_len * 8)
        .filter(|&p| bitmap[(p / 8) as usize] & (1 << (p % 8)) != 0)
        .collect();
    let page = |a: GuestAddress| a.raw_value() / 4096;
    let mut expected = vec![
        page(rx.used_addr()),
        page(tx.used_addr()),
        (RX_BUFS_AT + 0x1000) / 4096,
    ];
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(
        marked, expected,
        "the used rings and the buffer written, nothing else"
    );
    // The rings went on where they were (the addresses came again, unchanged).
    assert_eq!(used(&guest, &rx).len(), 2);
    assert_eq!(setup.frontend.get_vring_base(RX_QUEUE).unwrap(), 2);
    assert_eq!(setup.frontend.get_vring_base(TX_QUEUE).unwrap(), 1);
    worker.finish();
}

/// A directory of the test's own, removed when the test ends (passed or failed).
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "dp-ports-vhost-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
