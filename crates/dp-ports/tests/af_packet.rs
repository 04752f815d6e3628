//! AF_PACKET port tests on a veth pair whose other end lives in a namespace made by the test.
//! They need root and print why they skip without it. Every wait is bounded; the pair and the
//! namespace are deleted by drop guards, on failure too.

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use dp_ports::{
    AfPacketOptions, AfPacketPort, BufferPool, MacAddr, PortDevice, PortError, PortQueue, PortStats,
};

const SECS: Duration = Duration::from_secs(5);

fn open(v: &Veth) -> AfPacketPort {
    AfPacketPort::open(&v.host, &AfPacketOptions::default()).unwrap()
}

#[test]
fn bad_names_missing_and_non_ethernet_interfaces_are_refused() {
    for bad in ["", "sixteen-chars-xx", "a/b", "a b"] {
        let err = AfPacketPort::open(bad, &AfPacketOptions::default()).unwrap_err();
        assert!(matches!(err, PortError::InvalidName(_)), "{bad:?}: {err}");
    }
    if !can_run("bad_names_missing_and_non_ethernet_interfaces_are_refused") {
        return;
    }
    let err = AfPacketPort::open("dpnope0", &AfPacketOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no such interface"), "{err}");
    let err = AfPacketPort::open("lo", &AfPacketOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("not an Ethernet interface"),
        "{err}"
    );
    let bad = AfPacketOptions {
        block_size: 1000,
        ..AfPacketOptions::default()
    };
    let err = AfPacketPort::open("lo", &bad).unwrap_err();
    assert!(err.to_string().contains("block_size"), "{err}");
}

#[test]
fn mac_promiscuous_while_open_and_cleanup() {
    if !can_run("mac_promiscuous_while_open_and_cleanup") {
        return;
    }
    let v = Veth::new();
    // The kernel counts promiscuity users; `ip -d` shows the count.
    let flags = || run(&["ip", "-d", "link", "show", "dev", &v.host]);
    assert!(flags().contains("promiscuity 0"), "{}", flags());
    let port = open(&v);
    assert_eq!(port.name(), v.host);
    assert_eq!(port.mac(), v.host_mac);
    assert!(port.link_up());
    assert!(flags().contains("promiscuity 1"), "{}", flags());
    assert_eq!(port.stats(), PortStats::default());
    drop(port);
    // The socket (and its promiscuity count) goes when the last descriptor does: a child process
    // another test thread is forking at this instant holds a copy until its exec.
    assert!(
        eventually(SECS, || flags().contains("promiscuity 0")),
        "promiscuous mode ends with the port: {}",
        flags()
    );
}

#[test]
fn udp_from_the_stack_arrives_with_its_checksum_finished() {
    if !can_run("udp_from_the_stack_arrives_with_its_checksum_finished") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(256, 2048);
    for len in [3usize, 100, 1472] {
        let dport = 9000 + len as u16;
        v.send_udp(len, dport);
        let got = receive(&mut port, &mut pool, 1, SECS, |f| {
            f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == dport.to_be_bytes()
        });
        assert_eq!(got.len(), 1, "datagram of {len} bytes did not arrive");
        let f = &got[0];
        assert_eq!(f.len(), 14 + 20 + 8 + len, "exact length");
        assert_eq!(f[0..6], v.host_mac.octets());
        assert_eq!(f[6..12], v.peer_mac.octets());
        assert!(f[42..].iter().all(|&b| b == 0));
        assert!(udp4_checksum_ok(f), "checksum not finished: {}", hex(f));
    }
    let s = port.stats();
    assert!(s.rx_packets >= 3 && s.rx_errors == 0, "{s:?}");
}

#[test]
fn raw_frames_arrive_byte_for_byte_vlan_tags_included() {
    if !can_run("raw_frames_arrive_byte_for_byte_vlan_tags_included") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(256, 2048);
    // Not addressed to the interface: needs promiscuous mode.
    let other = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
    let small = test_frame(other, v.peer_mac, b"RAW1", 60);
    let large = test_frame(other, v.peer_mac, b"RAW2", 1514);
    let mut tagged = test_frame(other, v.peer_mac, b"RAW3", 100);
    tagged.splice(12..12, [0x81, 0x00, 0x20, 0x07]); // VLAN 7, priority 1
    v.send_raw(&[small.clone(), large.clone(), tagged.clone()]);
    let got = receive(&mut port, &mut pool, 3, SECS, |f| {
        f.len() >= 14 && f[0..6] == other.octets()
    });
    assert_eq!(got, vec![small, large, tagged]);
    let s = port.stats();
    assert_eq!(s.rx_packets, 3);
    assert_eq!(s.rx_bytes, 60 + 1514 + 104);
}

#[test]
fn oversized_frames_are_counted_not_delivered() {
    if !can_run("oversized_frames_are_counted_not_delivered") {
        return;
    }
    let v = Veth::with_setup(|v| {
        run(&["ip", "link", "set", &v.host, "mtu", "4000"]);
        v.ns.exec(&["ip", "link", "set", &v.peer, "mtu", "4000"]);
    });
    let mut port = open(&v);
    let mut pool = BufferPool::new(64, 2048);
    let other = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
    let big = test_frame(other, v.peer_mac, b"BIG1", 3000);
    let ok = test_frame(other, v.peer_mac, b"OK01", 200);
    v.send_raw(&[big, ok.clone()]);
    let got = receive(&mut port, &mut pool, 1, SECS, |f| {
        f.len() >= 14 && f[0..6] == other.octets()
    });
    assert_eq!(got, vec![ok]);
    assert_eq!(port.stats().rx_errors, 1);
    assert_eq!(pool.available(), 64, "no buffer leaked");
}

#[test]
fn transmitted_frames_arrive_in_the_namespace() {
    if !can_run("transmitted_frames_arrive_in_the_namespace") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(512, 2048);

    let cap = v.capture(b"TXT1", 2, SECS);
    let a = test_frame(v.peer_mac, v.host_mac, b"TXT1", 60);
    let b = test_frame(MacAddr::BROADCAST, v.host_mac, b"TXT1", 1514);
    let mut tx = vec![frame(&mut pool, &a), frame(&mut pool, &b)];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 2);
    assert!(tx.is_empty());
    assert_eq!(cap.frames(), vec![a, b]);

    // A burst larger than any kick limit, then many bursts wrapping the TX ring.
    let before = v.peer_stat("rx_packets");
    let f = test_frame(v.peer_mac, v.host_mac, b"TXT2", 64);
    let mut sent = 0;
    for _ in 0..40 {
        let mut tx: Vec<_> = (0..100).map(|_| frame(&mut pool, &f)).collect();
        sent += port.tx_burst(&mut tx, &mut pool);
        assert!(tx.is_empty());
    }
    assert_eq!(sent, 4000);
    let after = v.wait_peer_stat("rx_packets", before + 4000, SECS);
    assert_eq!(after - before, 4000);
    let s = port.stats();
    assert_eq!(s.tx_packets, 4002);
    assert_eq!(s.tx_errors + s.tx_dropped, 0);
    assert_eq!(pool.available(), 512, "every buffer back in the pool");

    // Frames the ring cannot take are errors, and nothing is received back (ignore outgoing).
    let mut tx = vec![frame(&mut pool, &[])];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
    assert_eq!(port.stats().tx_errors, 1);
    let mut out = Vec::with_capacity(64);
    std::thread::sleep(Duration::from_millis(20));
    port.rx_burst(&mut pool, &mut out, 64);
    assert!(
        out.iter().all(|b| b.data()[6..12] != v.host_mac.octets()),
        "own frames came back"
    );
}

#[test]
fn link_down_is_seen_and_recovered_from() {
    if !can_run("link_down_is_seen_and_recovered_from") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(256, 2048);
    let f = test_frame(v.peer_mac, v.host_mac, b"LNK1", 64);
    assert!(port.link_up());

    // The peer goes down: no carrier.
    v.ns.exec(&["ip", "link", "set", &v.peer, "down"]);
    assert!(eventually(SECS, || !port.link_up()));
    let mut tx: Vec<_> = (0..10).map(|_| frame(&mut pool, &f)).collect();
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
    let s = port.stats();
    assert_eq!(s.tx_errors + s.tx_dropped, 10, "{s:?}");
    v.ns.exec(&["ip", "link", "set", &v.peer, "up"]);
    assert!(eventually(SECS, || port.link_up()));

    // Our side goes down.
    run(&["ip", "link", "set", &v.host, "down"]);
    assert!(eventually(SECS, || !port.link_up()));
    let mut tx: Vec<_> = (0..10).map(|_| frame(&mut pool, &f)).collect();
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
    assert_eq!(port.stats().tx_errors, s.tx_errors + 10);
    run(&["ip", "link", "set", &v.host, "up"]);
    // Going down leaves an error on the socket (link_up above cleared the first one): the
    // idle descriptor polls ready until empty receive bursts clear it (a worker's idle loop).
    run(&["ip", "link", "set", &v.host, "down"]);
    run(&["ip", "link", "set", &v.host, "up"]);
    let fd = port.rx_fd().unwrap();
    assert!(readable_within(fd, 0), "expected a pending error");
    let mut out = Vec::with_capacity(64);
    for _ in 0..200 {
        if !readable_within(fd, 0) {
            break;
        }
        port.rx_burst(&mut pool, &mut out, 64);
        for b in out.drain(..) {
            pool.free(b);
        }
    }
    assert!(!readable_within(fd, 50), "idle fd still polls ready");
    assert!(eventually(SECS, || port.link_up()));

    // Both directions work again, and the ring was not left stuck.
    let cap = v.capture(b"LNK2", 1, SECS);
    let g = test_frame(v.peer_mac, v.host_mac, b"LNK2", 64);
    let mut tx = vec![frame(&mut pool, &g)];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 1);
    assert_eq!(cap.frames(), vec![g]);
    let other = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
    let r = test_frame(other, v.peer_mac, b"LNK3", 80);
    v.send_raw(std::slice::from_ref(&r));
    let got = receive(&mut port, &mut pool, 1, SECS, |f| {
        f.len() >= 14 && f[0..6] == other.octets()
    });
    assert_eq!(got, vec![r]);
    assert_eq!(pool.available(), 256);
}

#[test]
fn receive_latency_is_bounded_by_the_block_timer() {
    if !can_run("receive_latency_is_bounded_by_the_block_timer") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(64, 2048);
    // One frame at a time, so no block fills up: only the retire timer hands it over.
    let lat = latencies(&v, &mut port, &mut pool, 20);
    let worst = lat.iter().max().copied().unwrap_or_default();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    eprintln!("af_packet: receive latency of single frames: mean {mean:?}, worst {worst:?}");
    // The default timeout is 1 ms; anything near the kernel's default (8 ms+) means it was lost.
    assert!(mean < Duration::from_millis(20), "{lat:?}");
}

#[test]
fn throughput_smoke() {
    if !can_run("throughput_smoke") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(1024, 2048);
    const N: usize = 100_000;

    // TX: 64-byte frames in bursts of 32.
    let f = test_frame(v.peer_mac, v.host_mac, b"THR1", 64);
    let before = v.peer_stat("rx_packets");
    let start = Instant::now();
    let mut sent = 0;
    let mut tx = Vec::with_capacity(32);
    while sent < N && start.elapsed() < Duration::from_secs(20) {
        tx.extend((0..32).map(|_| frame(&mut pool, &f)));
        sent += port.tx_burst(&mut tx, &mut pool);
    }
    let elapsed = start.elapsed();
    let arrived = v.wait_peer_stat("rx_packets", before + sent as u64, SECS) - before;
    eprintln!(
        "af_packet tx: {sent} frames in {elapsed:?} = {:.0} kpps; {arrived} arrived; {:?}",
        sent as f64 / elapsed.as_secs_f64() / 1e3,
        port.stats()
    );

    // RX: python floods the peer; we count what arrives.
    let other = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
    let g = test_frame(other, v.peer_mac, b"THR2", 64);
    let ns = v.ns.0.clone();
    let peer = v.peer.clone();
    let hexed = hex(&g);
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let status = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                PYTHON,
                "-c",
                FLOOD,
                &peer,
                &hexed,
                &N.to_string(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
        start.elapsed()
    });
    let start = Instant::now();
    let mut got = 0usize;
    let mut out = Vec::with_capacity(64);
    let fd = port.rx_fd().unwrap();
    while got < N && start.elapsed() < Duration::from_secs(30) {
        if port.rx_burst(&mut pool, &mut out, 64) == 0 {
            if sender.is_finished() && !readable_within(fd, 100) {
                break;
            }
            readable_within(fd, 5);
        }
        got += out.len();
        for b in out.drain(..) {
            pool.free(b);
        }
    }
    let elapsed = start.elapsed();
    let sender_time = sender.join().unwrap();
    eprintln!(
        "af_packet rx: {got} of {N} frames in {elapsed:?} = {:.0} kpps (sender took {sender_time:?}); ring drops {:?}",
        got as f64 / elapsed.as_secs_f64() / 1e3,
        port.take_ring_drops()
    );
    assert!(got > 0);
}

const FLOOD: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
f = bytes.fromhex(sys.argv[2])
for _ in range(int(sys.argv[3])):
    while True:
        try:
            s.send(f)
            break
        except OSError:
            pass
"#;
