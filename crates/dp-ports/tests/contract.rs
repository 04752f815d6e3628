//! The port contract (`dp_ports::PortQueue` and `PortDevice`), checked the same way over every
//! backend: an in-memory port, a TAP whose kernel side lives in a fresh network namespace, and
//! AF_PACKET and AF_XDP on a veth pair whose peer lives in one.
//!
//! Each check ([`Check`]) talks to the port only through the traits and to the other side only
//! through a [`Fixture`]: put frames on the wire towards the port, see what the port sent, take
//! the link down and up. The checks:
//! - a frame injected on the other side arrives byte for byte, and `rx_packets`/`rx_bytes` add
//!   up to what was handed out;
//! - what the port transmits arrives on the other side, counted in `tx_packets`/`tx_bytes`, and
//!   every buffer goes back to the pool;
//! - every frame handed to `tx_burst` is counted exactly once (sent, `tx_errors`, `tx_dropped`),
//!   even ones the port cannot send (empty, larger than the device takes);
//! - a burst never hands out more than `max` frames nor grows the caller's vector;
//! - a frame larger than the pool's buffers is dropped and counted in `rx_errors`, the next one
//!   still arrives; an empty one too, where the other side can send one (the kernel refuses
//!   frames shorter than an Ethernet header, so only the memory port is fed one);
//! - the link state follows the other side, transmitting while down is counted, and frames flow
//!   again once it is back;
//! - `rx_fd` is readable while a frame waits.
//!
//! TAP, AF_PACKET and AF_XDP need root (and iproute2, Debian's python3); without, they print
//! why and pass, unless `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`, which makes that a failure. AF_XDP
//! is skipped, with the kernel's answer, only when the kernel refuses the socket. Names are
//! unique per run; the namespaces and interfaces go with drop guards, on failure too; every wait
//! is bounded.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dp_ports::{
    AfPacketOptions, AfPacketPort, AfXdpOptions, AfXdpPort, BufferPool, MacAddr, MemoryPort,
    MemoryPortHandle, PacketBuf, Port, PortDevice, PortError, PortQueue, PortStats, TapPort,
};

const SECS: Duration = Duration::from_secs(5);

/// The other side of a port under test.
trait Fixture {
    /// The port, through its traits only.
    fn port(&mut self) -> &mut dyn Port;
    /// Sends `frames` from the other side towards the port.
    fn inject(&mut self, frames: &[Vec<u8>]);
    /// Transmits `pkts` out of the port and returns what `tx_burst` returned and the frames
    /// containing `marker` the other side saw (waiting for up to `expect` of them).
    fn transmit(
        &mut self,
        pkts: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        marker: &[u8],
        expect: usize,
    ) -> (usize, Vec<Vec<u8>>);
    /// Takes the other side's link down or up.
    fn set_link(&mut self, up: bool);
    /// The MAC address frames from the port go to, and the one frames to it come from.
    fn macs(&self) -> (MacAddr, MacAddr);
    /// Whether the other side can send an empty frame.
    fn can_send_empty(&self) -> bool {
        false
    }
}

/// Whether a root-only test can run; with `DPSERVICE_REQUIRE_SYSTEM_TESTS=1` it must.
fn ready(test: &str, tun: bool) -> bool {
    let ok = can_run(test) && (!tun || std::path::Path::new("/dev/net/tun").exists());
    if !ok && std::env::var("DPSERVICE_REQUIRE_SYSTEM_TESTS").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: cannot run (see above), and DPSERVICE_REQUIRE_SYSTEM_TESTS=1 forbids skipping"
        );
    }
    ok
}

/// A marker unique to this process and call, to tell our frames from any other.
fn marker(tag: u8) -> Vec<u8> {
    let mut m = b"dpK".to_vec();
    m.extend_from_slice(&std::process::id().to_be_bytes());
    m.push(tag);
    m
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn delta(a: PortStats, b: PortStats) -> PortStats {
    PortStats {
        rx_packets: b.rx_packets - a.rx_packets,
        rx_bytes: b.rx_bytes - a.rx_bytes,
        rx_errors: b.rx_errors - a.rx_errors,
        rx_nombuf: b.rx_nombuf - a.rx_nombuf,
        tx_packets: b.tx_packets - a.tx_packets,
        tx_bytes: b.tx_bytes - a.tx_bytes,
        tx_errors: b.tx_errors - a.tx_errors,
        tx_dropped: b.tx_dropped - a.tx_dropped,
        resets: b.resets - a.resets,
    }
}

/// What [`collect`] received: the frames containing the marker, and every frame handed out.
struct Received {
    marked: Vec<Vec<u8>>,
    frames: u64,
    bytes: u64,
}

/// Receives in bursts of `max` until `want` frames containing `marker` came or [`SECS`] pass,
/// checking every burst against the contract (at most `max`, appended, no reallocation).
fn collect(
    port: &mut dyn Port,
    pool: &mut BufferPool,
    marker: &[u8],
    want: usize,
    max: usize,
) -> Received {
    let deadline = Instant::now() + SECS;
    let mut r = Received {
        marked: Vec::new(),
        frames: 0,
        bytes: 0,
    };
    let mut out: Vec<PacketBuf> = Vec::with_capacity(max);
    let capacity = out.capacity();
    let fd = port.rx_fd();
    while r.marked.len() < want && Instant::now() < deadline {
        if let Some(fd) = fd {
            readable_within(fd, 20);
        }
        let n = port.rx_burst(pool, &mut out, max);
        assert!(n <= max, "{}: burst of {n} > max {max}", port.name());
        assert_eq!(
            out.len(),
            n,
            "{}: the burst appends what it returns",
            port.name()
        );
        assert_eq!(
            out.capacity(),
            capacity,
            "{}: the port grew the vector",
            port.name()
        );
        for b in out.drain(..) {
            r.frames += 1;
            r.bytes += b.len() as u64;
            assert!(
                !b.is_empty(),
                "{}: an empty frame was handed out",
                port.name()
            );
            if contains(b.data(), marker) {
                r.marked.push(b.data().to_vec());
            }
            pool.free(b);
        }
    }
    r
}

type Check = fn(&mut dyn Fixture);

const CHECKS: &[(&str, Check)] = &[
    (
        "rx_arrives_intact_and_counted",
        rx_arrives_intact_and_counted,
    ),
    ("tx_arrives_and_is_counted", tx_arrives_and_is_counted),
    (
        "every_tx_frame_is_counted_once",
        every_tx_frame_is_counted_once,
    ),
    ("bursts_honour_max", bursts_honour_max),
    (
        "oversize_and_empty_frames_are_dropped_and_counted",
        oversize_and_empty_frames_are_dropped_and_counted,
    ),
    (
        "rx_fd_is_readable_while_a_frame_waits",
        rx_fd_is_readable_while_a_frame_waits,
    ),
    (
        "link_state_follows_the_other_side",
        link_state_follows_the_other_side,
    ),
];

fn run_contract(fx: &mut dyn Fixture) {
    for (name, check) in CHECKS {
        eprintln!("{}: {name}", fx.port().name());
        check(fx);
    }
}

fn rx_arrives_intact_and_counted(fx: &mut dyn Fixture) {
    let (_, from) = fx.macs();
    let to = fx.port().mac();
    let m = marker(1);
    let frames: Vec<Vec<u8>> = [60, 200, 1000, 1514]
        .into_iter()
        .map(|len| test_frame(to, from, &m, len))
        .collect();
    let mut pool = BufferPool::new(256, 2048);
    let before = fx.port().stats();
    fx.inject(&frames);
    let got = collect(fx.port(), &mut pool, &m, frames.len(), 64);
    assert_eq!(
        got.marked,
        frames,
        "{}: frames arrive intact, in order",
        fx.port().name()
    );
    let d = delta(before, fx.port().stats());
    assert_eq!(d.rx_packets, got.frames, "{}: rx_packets", fx.port().name());
    assert_eq!(d.rx_bytes, got.bytes, "{}: rx_bytes", fx.port().name());
    assert_eq!(d.rx_errors, 0);
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
}

fn tx_arrives_and_is_counted(fx: &mut dyn Fixture) {
    let (to, _) = fx.macs();
    let from = MacAddr::new(0x02, 0, 0, 0, 0xc0, 0x01);
    let m = marker(2);
    let frames: Vec<Vec<u8>> = [60, 500, 1514]
        .into_iter()
        .map(|len| test_frame(to, from, &m, len))
        .collect();
    let mut pool = BufferPool::new(64, 2048);
    let mut pkts: Vec<PacketBuf> = frames.iter().map(|f| frame(&mut pool, f)).collect();
    let before = fx.port().stats();
    let (sent, seen) = fx.transmit(&mut pkts, &mut pool, &m, frames.len());
    let name = fx.port().name().to_string();
    assert_eq!(sent, frames.len(), "{name}: all sent");
    assert!(pkts.is_empty(), "{name}: the batch is left empty");
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "{name}: every buffer back"
    );
    assert_eq!(seen, frames, "{name}: the other side got them intact");
    let d = delta(before, fx.port().stats());
    assert_eq!(d.tx_packets, 3, "{name}");
    assert_eq!(
        d.tx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>(),
        "{name}"
    );
    assert_eq!(d.tx_errors + d.tx_dropped, 0, "{name}");
}

fn every_tx_frame_is_counted_once(fx: &mut dyn Fixture) {
    let (to, _) = fx.macs();
    let from = MacAddr::new(0x02, 0, 0, 0, 0xc0, 0x02);
    let m = marker(3);
    let mut pool = BufferPool::new(64, 8192);
    // An empty frame, one larger than any device here takes, and a good one.
    let mut pkts = vec![
        frame(&mut pool, &[]),
        frame(&mut pool, &test_frame(to, from, &m, 6000)),
        frame(&mut pool, &test_frame(to, from, &m, 100)),
    ];
    let before = fx.port().stats();
    let (sent, _) = fx.transmit(&mut pkts, &mut pool, &m, 1);
    let name = fx.port().name().to_string();
    let d = delta(before, fx.port().stats());
    assert!(pkts.is_empty(), "{name}");
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "{name}: every buffer back"
    );
    assert_eq!(
        d.tx_packets, sent as u64,
        "{name}: tx_packets is what tx_burst returned"
    );
    assert_eq!(
        d.tx_packets + d.tx_errors + d.tx_dropped,
        3,
        "{name}: {d:?}"
    );
    assert!(sent >= 1, "{name}: the good frame went: {d:?}");
}

fn bursts_honour_max(fx: &mut dyn Fixture) {
    let (_, from) = fx.macs();
    let to = fx.port().mac();
    let m = marker(4);
    let frames: Vec<Vec<u8>> = (0..6).map(|i| test_frame(to, from, &m, 80 + i)).collect();
    let mut pool = BufferPool::new(64, 2048);
    fx.inject(&frames);
    // A burst of at most 0 takes nothing, even with frames waiting.
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut out: Vec<PacketBuf> = Vec::with_capacity(4);
    while Instant::now() < deadline {
        assert_eq!(fx.port().rx_burst(&mut pool, &mut out, 0), 0);
        assert!(out.is_empty());
        std::thread::sleep(Duration::from_millis(10));
    }
    let got = collect(fx.port(), &mut pool, &m, frames.len(), 2);
    assert_eq!(
        got.marked,
        frames,
        "{}: nothing lost to short bursts",
        fx.port().name()
    );
    assert_eq!(pool.available(), pool.capacity());
}

fn oversize_and_empty_frames_are_dropped_and_counted(fx: &mut dyn Fixture) {
    let (_, from) = fx.macs();
    let to = fx.port().mac();
    let m = marker(5);
    // Buffers with 512 bytes of room past the headroom: 1400 bytes do not fit.
    let mut pool = BufferPool::new(64, 512);
    let big = test_frame(to, from, &m, 1400);
    let small = test_frame(to, from, &m, 100);
    let mut frames = vec![big];
    if fx.can_send_empty() {
        frames.push(Vec::new());
    }
    frames.push(small.clone());
    let before = fx.port().stats();
    fx.inject(&frames);
    let got = collect(fx.port(), &mut pool, &m, 1, 64);
    let name = fx.port().name().to_string();
    assert_eq!(
        got.marked,
        [small],
        "{name}: only the frame that fits arrives"
    );
    let d = delta(before, fx.port().stats());
    assert_eq!(d.rx_errors, frames.len() as u64 - 1, "{name}: {d:?}");
    assert_eq!(d.rx_packets, got.frames, "{name}");
    assert_eq!(d.rx_bytes, got.bytes, "{name}");
    assert_eq!(pool.available(), pool.capacity());
}

fn rx_fd_is_readable_while_a_frame_waits(fx: &mut dyn Fixture) {
    let Some(fd) = fx.port().rx_fd() else {
        eprintln!("{}: no rx_fd (a port that is polled)", fx.port().name());
        return;
    };
    let (_, from) = fx.macs();
    let to = fx.port().mac();
    let m = marker(6);
    let mut pool = BufferPool::new(64, 2048);
    fx.inject(&[test_frame(to, from, &m, 90)]);
    assert!(
        readable_within(fd, SECS.as_millis() as i32),
        "{}: rx_fd not readable with a frame waiting",
        fx.port().name()
    );
    let got = collect(fx.port(), &mut pool, &m, 1, 64);
    assert_eq!(got.marked.len(), 1, "{}", fx.port().name());
}

fn link_state_follows_the_other_side(fx: &mut dyn Fixture) {
    let name = fx.port().name().to_string();
    assert!(fx.port().link_up(), "{name}: up at the start");
    fx.set_link(false);
    assert!(
        eventually(SECS, || !fx.port().link_up()),
        "{name}: down is seen"
    );
    // Transmitting while down: nothing sent, all counted.
    let (to, _) = fx.macs();
    let m = marker(7);
    let mut pool = BufferPool::new(64, 2048);
    let before = fx.port().stats();
    let mut pkts = vec![
        frame(
            &mut pool,
            &test_frame(to, MacAddr::new(2, 0, 0, 0, 0xc0, 3), &m, 64),
        ),
        frame(
            &mut pool,
            &test_frame(to, MacAddr::new(2, 0, 0, 0, 0xc0, 3), &m, 64),
        ),
    ];
    let sent = fx.port().tx_burst(&mut pkts, &mut pool);
    let d = delta(before, fx.port().stats());
    assert_eq!(sent, 0, "{name}: {d:?}");
    assert_eq!(
        d.tx_packets + d.tx_errors + d.tx_dropped,
        2,
        "{name}: {d:?}"
    );
    assert_eq!(pool.available(), pool.capacity());
    fx.set_link(true);
    assert!(
        eventually(SECS, || fx.port().link_up()),
        "{name}: up is seen"
    );
    // And frames flow again (the kernel may need a moment after carrier returns: resend).
    let (_, from) = fx.macs();
    let to_port = fx.port().mac();
    let f = test_frame(to_port, from, &m, 70);
    let deadline = Instant::now() + SECS;
    let mut arrived = false;
    while !arrived && Instant::now() < deadline {
        fx.inject(std::slice::from_ref(&f));
        let mut out = Vec::with_capacity(64);
        let until = Instant::now() + Duration::from_millis(300);
        while !arrived && Instant::now() < until {
            fx.port().rx_burst(&mut pool, &mut out, 64);
            for b in out.drain(..) {
                arrived |= b.data() == f.as_slice();
                pool.free(b);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(arrived, "{name}: frames flow once the link is back");
}

// --- memory -------------------------------------------------------------------------------

struct MemoryFixture {
    port: MemoryPort,
    handle: MemoryPortHandle,
}

const VM_MAC: MacAddr = MacAddr::new(0x66, 0, 0, 0, 0, 2);

impl Fixture for MemoryFixture {
    fn port(&mut self) -> &mut dyn Port {
        &mut self.port
    }
    fn inject(&mut self, frames: &[Vec<u8>]) {
        for f in frames {
            self.handle.inject(f);
        }
    }
    fn transmit(
        &mut self,
        pkts: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        marker: &[u8],
        _expect: usize,
    ) -> (usize, Vec<Vec<u8>>) {
        let sent = self.port.tx_burst(pkts, pool);
        let seen = self
            .handle
            .take_sent()
            .into_iter()
            .filter(|f| contains(f, marker))
            .collect();
        (sent, seen)
    }
    fn set_link(&mut self, up: bool) {
        self.handle.set_link_up(up);
    }
    fn macs(&self) -> (MacAddr, MacAddr) {
        (VM_MAC, VM_MAC)
    }
    fn can_send_empty(&self) -> bool {
        true
    }
}

#[test]
fn memory_port_keeps_the_contract() {
    let (port, handle) = MemoryPort::new("mem0", VM_MAC);
    run_contract(&mut MemoryFixture { port, handle });
}

// --- kernel backends: the other side is an interface in a namespace -------------------------

/// A port whose other side is the interface `v.peer` in namespace `v.ns` (a veth's peer, or a
/// TAP's kernel side moved there). Fields drop in order: the port before the interfaces.
struct NsFixture<P: Port> {
    port: P,
    v: Veth,
    /// Which interface a link change acts on: ours (veth host end, in our namespace) or the
    /// other side (a TAP's kernel side).
    link_on_host: bool,
}

impl<P: Port> Fixture for NsFixture<P> {
    fn port(&mut self) -> &mut dyn Port {
        &mut self.port
    }
    fn inject(&mut self, frames: &[Vec<u8>]) {
        self.v.send_raw(frames);
    }
    fn transmit(
        &mut self,
        pkts: &mut Vec<PacketBuf>,
        pool: &mut BufferPool,
        marker: &[u8],
        expect: usize,
    ) -> (usize, Vec<Vec<u8>>) {
        let cap = self.v.capture(marker, expect, Duration::from_secs(2));
        let sent = self.port.tx_burst(pkts, pool);
        (sent, cap.frames())
    }
    fn set_link(&mut self, up: bool) {
        let state = if up { "up" } else { "down" };
        if self.link_on_host {
            run(&["ip", "link", "set", &self.v.host, state]);
        } else {
            self.v.ns.exec(&["ip", "link", "set", &self.v.peer, state]);
        }
    }
    fn macs(&self) -> (MacAddr, MacAddr) {
        (self.v.peer_mac, self.v.peer_mac)
    }
}

#[test]
fn tap_port_keeps_the_contract() {
    if !ready("tap_port_keeps_the_contract", true) {
        return;
    }
    let ns = Netns::new();
    let name = unique("dpt");
    let port = TapPort::create(&name, None).unwrap();
    let kernel_mac = port.mac();
    run(&["ip", "link", "set", &name, "netns", &ns.0]);
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&["ip", "link", "set", &name, "up"]);
    // The kernel side plays the veth peer; our side has no interface of its own (the guard's
    // `ip link del` of `host` finds nothing in our namespace, and the TAP goes with the port).
    let v = Veth {
        host: name.clone(),
        peer: name,
        ns,
        host_mac: kernel_mac,
        peer_mac: kernel_mac,
    };
    run_contract(&mut NsFixture {
        port,
        v,
        link_on_host: false,
    });
}

#[test]
fn af_packet_port_keeps_the_contract() {
    if !ready("af_packet_port_keeps_the_contract", false) {
        return;
    }
    let v = Veth::new();
    let port = AfPacketPort::open(&v.host, &AfPacketOptions::default()).unwrap();
    run_contract(&mut NsFixture {
        port,
        v,
        link_on_host: true,
    });
}

#[test]
fn af_xdp_port_keeps_the_contract() {
    if !ready("af_xdp_port_keeps_the_contract", false) {
        return;
    }
    let v = Veth::new();
    let port = match AfXdpPort::open(&v.host, &AfXdpOptions::default()) {
        Ok(p) => p,
        Err(PortError::Io { source, what, .. })
            if matches!(
                source.raw_os_error(),
                Some(
                    libc::EAFNOSUPPORT
                        | libc::EOPNOTSUPP
                        | libc::EPERM
                        | libc::ENOSYS
                        | libc::EPROTONOSUPPORT
                )
            ) =>
        {
            eprintln!("SKIPPED af_xdp_port_keeps_the_contract: the kernel refused AF_XDP ({what}: {source})");
            return;
        }
        Err(e) => panic!("AF_XDP on {}: {e}", v.host),
    };
    run_contract(&mut NsFixture {
        port,
        v,
        link_on_host: true,
    });
}
