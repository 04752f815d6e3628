//! AF_XDP port tests on a veth pair whose other end lives in a namespace made by the test.
//! They need root and print why they skip without it. Every wait is bounded; the pair and the
//! namespace are deleted by drop guards, on failure too, and the XDP program goes with the port
//! (a BPF link, closed on drop or when the process dies).

#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use dp_ports::af_xdp::xdp_program_on;
use dp_ports::{
    AfXdpOptions, AfXdpPort, BufferPool, MacAddr, PortDevice, PortError, PortQueue, PortStats,
    XdpAttach, XdpMode,
};

const SECS: Duration = Duration::from_secs(5);
const OTHER: MacAddr = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);

fn open(v: &Veth) -> AfXdpPort {
    AfXdpPort::open(&v.host, &AfXdpOptions::default()).unwrap()
}

fn to_other(f: &[u8]) -> bool {
    f.len() >= 14 && f[0..6] == OTHER.octets()
}

/// Whether `ip` shows an XDP program on the interface.
fn ip_shows_xdp(name: &str) -> bool {
    run(&["ip", "-d", "link", "show", "dev", name]).contains("prog/xdp")
}

/// Whether the interface's XDP program goes (within [`SECS`]). A port detaches it by closing its
/// link, and the kernel releases the link with its last descriptor: a child process another test
/// thread is forking at that instant holds a copy until its exec (or a killed process's until it
/// is reaped).
fn detached(v: &Veth) -> bool {
    eventually(SECS, || xdp_program_on(&v.host).unwrap().is_none())
}

#[test]
fn bad_names_options_and_interfaces_are_refused() {
    let opts = AfXdpOptions::default();
    for bad in ["", "sixteen-chars-xx", "a/b"] {
        let err = AfXdpPort::open(bad, &opts).unwrap_err();
        assert!(matches!(err, PortError::InvalidName(_)), "{bad:?}: {err}");
    }
    let err = AfXdpPort::open(
        "lo",
        &AfXdpOptions {
            frame_size: 3000,
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("frame_size"), "{err}");
    let err = AfXdpPort::open(
        "lo",
        &AfXdpOptions {
            rx_frames: 100,
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("powers of two"), "{err}");
    if !can_run("bad_names_options_and_interfaces_are_refused") {
        return;
    }
    let err = AfXdpPort::open("dpnope0", &opts).unwrap_err();
    assert!(err.to_string().contains("no such interface"), "{err}");
    let err = AfXdpPort::open("lo", &opts).unwrap_err();
    assert!(
        err.to_string().contains("not an Ethernet interface"),
        "{err}"
    );
}

#[test]
fn native_copy_mode_on_veth_one_socket_per_queue_and_cleanup() {
    if !can_run("native_copy_mode_on_veth_one_socket_per_queue_and_cleanup") {
        return;
    }
    let v = Veth::new();
    assert_eq!(xdp_program_on(&v.host).unwrap(), None);
    let port = open(&v);
    assert_eq!(port.name(), v.host);
    assert_eq!(port.mac(), v.host_mac);
    assert_eq!(port.xdp_mode(), XdpMode::Native);
    assert!(!port.zero_copy(), "veth has no zero-copy");
    assert!(port.link_up());
    assert_eq!(port.stats(), PortStats::default());
    let prog = xdp_program_on(&v.host)
        .unwrap()
        .expect("a program attached");
    assert_eq!(prog.mode, XdpMode::Native);
    assert!(ip_shows_xdp(&v.host));

    // The queue has its socket: a second port on it is refused, and the first keeps working.
    let err = AfXdpPort::open(&v.host, &AfXdpOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bind"), "{err}");
    assert_eq!(xdp_program_on(&v.host).unwrap(), Some(prog));

    drop(port);
    assert!(detached(&v), "detached on drop");
    assert!(!ip_shows_xdp(&v.host));

    // Zero-copy is asked for, veth has none: copy mode, and it works.
    let mut port = AfXdpPort::open(
        &v.host,
        &AfXdpOptions {
            zero_copy: true,
            ..AfXdpOptions::default()
        },
    )
    .unwrap();
    assert!(!port.zero_copy());
    let mut pool = BufferPool::new(64, 2048);
    let f = test_frame(OTHER, v.peer_mac, b"ZCF1", 60);
    v.send_raw(std::slice::from_ref(&f));
    assert_eq!(receive(&mut port, &mut pool, 1, SECS, to_other), vec![f]);
}

#[test]
fn skb_mode_when_native_is_refused() {
    if !can_run("skb_mode_when_native_is_refused") {
        return;
    }
    // Native XDP on a veth refuses a peer MTU that does not fit a page.
    let v = Veth::with_setup(|v| {
        run(&["ip", "link", "set", &v.host, "mtu", "9000"]);
        v.ns.exec(&["ip", "link", "set", &v.peer, "mtu", "9000"]);
    });
    let native = AfXdpOptions {
        mode: XdpMode::Native,
        ..AfXdpOptions::default()
    };
    let err = AfXdpPort::open(&v.host, &native).unwrap_err();
    assert!(err.to_string().contains("attach"), "{err}");
    assert_eq!(
        xdp_program_on(&v.host).unwrap(),
        None,
        "nothing left by the failure"
    );

    let mut port = open(&v);
    assert_eq!(port.xdp_mode(), XdpMode::Skb);
    assert_eq!(xdp_program_on(&v.host).unwrap().unwrap().mode, XdpMode::Skb);
    let mut pool = BufferPool::new(64, 2048);
    // Too large for a 2048-byte UMEM frame: dropped by the kernel (counted there).
    let big = test_frame(OTHER, v.peer_mac, b"BIG1", 3000);
    let ok = test_frame(OTHER, v.peer_mac, b"SKB1", 1514);
    v.send_raw(&[big, ok.clone()]);
    assert_eq!(receive(&mut port, &mut pool, 1, SECS, to_other), vec![ok]);
    let st = port.statistics().unwrap();
    assert!(st.rx_dropped >= 1, "{st:?}");

    let cap = v.capture(b"SKB2", 1, SECS);
    let g = test_frame(v.peer_mac, v.host_mac, b"SKB2", 100);
    let mut tx = vec![frame(&mut pool, &g)];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 1);
    assert_eq!(cap.frames(), vec![g]);
    drop(port);
    assert!(detached(&v));
}

#[test]
fn raw_frames_arrive_byte_for_byte() {
    if !can_run("raw_frames_arrive_byte_for_byte") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(256, 2048);
    let small = test_frame(OTHER, v.peer_mac, b"RAW1", 60);
    let large = test_frame(OTHER, v.peer_mac, b"RAW2", 1514);
    let mut tagged = test_frame(OTHER, v.peer_mac, b"RAW3", 100);
    tagged.splice(12..12, [0x81, 0x00, 0x20, 0x07]);
    v.send_raw(&[small.clone(), large.clone(), tagged.clone()]);
    let got = receive(&mut port, &mut pool, 3, SECS, to_other);
    assert_eq!(got, vec![small, large, tagged]);
    let s = port.stats();
    assert_eq!(
        (s.rx_packets, s.rx_bytes, s.rx_errors),
        (3, 60 + 1514 + 104, 0)
    );

    // Many more than the RX ring holds, in rounds: UMEM frames go back to the fill ring.
    let f = test_frame(OTHER, v.peer_mac, b"RAW4", 64);
    let mut total = 0;
    for _ in 0..5 {
        let frames: Vec<Vec<u8>> = (0..1000).map(|_| f.clone()).collect();
        v.send_raw(&frames);
        total += receive(&mut port, &mut pool, 1000, SECS, to_other).len();
    }
    assert_eq!(total, 5000);
    assert_eq!(pool.available(), 256);
}

#[test]
fn small_rings_recycle_frames_with_busy_polling() {
    if !can_run("small_rings_recycle_frames_with_busy_polling") {
        return;
    }
    let v = Veth::new();
    // 64 RX frames: the fill ring is published in batches of 16, so at least 48 frames are
    // always the kernel's; rounds of 40 frames never find it short. Busy polling on.
    let mut port = AfXdpPort::open(
        &v.host,
        &AfXdpOptions {
            rx_frames: 64,
            tx_frames: 64,
            busy_poll_budget: 64,
            ..AfXdpOptions::default()
        },
    )
    .unwrap();
    let mut pool = BufferPool::new(256, 2048);
    let mut total = 0;
    for round in 0..10u8 {
        let frames: Vec<Vec<u8>> = (0..40u8)
            .map(|i| test_frame(OTHER, v.peer_mac, &[b'S', b'R', round, i], 60))
            .collect();
        v.send_raw(&frames);
        let got = receive(&mut port, &mut pool, 40, SECS, to_other);
        assert_eq!(got, frames, "round {round}");
        total += got.len();
    }
    assert_eq!(total, 400);
    assert_eq!(pool.available(), 256);
    if let Some(st) = port.statistics() {
        assert_eq!(
            (st.rx_dropped, st.rx_ring_full, st.rx_fill_ring_empty_descs),
            (0, 0, 0),
            "{st:?}"
        );
    }
}

#[test]
fn udp_from_the_stack_arrives_with_its_checksum_finished() {
    if !can_run("udp_from_the_stack_arrives_with_its_checksum_finished") {
        return;
    }
    let v = Veth::new();
    let mut pool = BufferPool::new(64, 2048);
    let is_udp = |dport: u16| {
        move |f: &[u8]| {
            f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17 && f[36..38] == dport.to_be_bytes()
        }
    };
    {
        let mut port = open(&v);
        for len in [3usize, 1000, 1472] {
            let dport = 9000 + len as u16;
            v.send_udp(len, dport);
            let got = receive(&mut port, &mut pool, 1, SECS, is_udp(dport));
            assert_eq!(got.len(), 1, "datagram of {len} bytes did not arrive");
            assert_eq!(got[0].len(), 42 + len);
            assert!(udp4_checksum_ok(&got[0]), "not finished: {}", hex(&got[0]));
        }
    }
    // Without finishing, the pitfall shows: the veth peer left the checksum to offload.
    let mut port = AfXdpPort::open(
        &v.host,
        &AfXdpOptions {
            finish_checksums: false,
            ..AfXdpOptions::default()
        },
    )
    .unwrap();
    v.send_udp(10, 9999);
    let got = receive(&mut port, &mut pool, 1, SECS, is_udp(9999));
    assert_eq!(got.len(), 1);
    assert!(
        !udp4_checksum_ok(&got[0]),
        "expected an unfinished checksum"
    );
}

#[test]
fn transmit_bursts_larger_than_one_kick_drain() {
    if !can_run("transmit_bursts_larger_than_one_kick_drain") {
        return;
    }
    let v = Veth::new();
    // The classic budget: 32 frames per kick, so these bursts need several kicks each.
    let mut port = AfXdpPort::open(
        &v.host,
        &AfXdpOptions {
            raise_tx_budget: false,
            ..AfXdpOptions::default()
        },
    )
    .unwrap();
    let mut pool = BufferPool::new(512, 2048);

    let cap = v.capture(b"BRST", 100, SECS);
    let frames: Vec<Vec<u8>> = (0..100u8)
        .map(|i| {
            let mut f = test_frame(v.peer_mac, v.host_mac, b"BRST", 60 + usize::from(i) * 10);
            f[18] = i;
            f
        })
        .collect();
    let mut tx: Vec<_> = frames.iter().map(|f| frame(&mut pool, f)).collect();
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 100, "{:?}", port.stats());
    assert!(tx.is_empty());
    let got = cap.frames();
    let lens: Vec<usize> = got.iter().map(|f| f.len()).collect();
    assert_eq!(
        got.len(),
        frames.len(),
        "all 100 arrive: {lens:?} {:?} peer {}",
        port.stats(),
        v.peer_stat("rx_packets")
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != frames[i]) {
        panic!("frame {i} differs: {} vs {}", hex(&got[i]), hex(&frames[i]));
    }

    // Far more than the TX ring and the UMEM TX frames: completions are taken back.
    let before = v.peer_stat("rx_packets");
    let f = test_frame(v.peer_mac, v.host_mac, b"BRS2", 64);
    let mut sent = 0;
    for _ in 0..50 {
        let mut tx: Vec<_> = (0..100).map(|_| frame(&mut pool, &f)).collect();
        sent += port.tx_burst(&mut tx, &mut pool);
    }
    let s = port.stats();
    assert_eq!(sent as u64 + s.tx_dropped, 5000, "{s:?}");
    let arrived = v.wait_peer_stat("rx_packets", before + sent as u64, SECS) - before;
    assert_eq!(arrived, sent as u64, "{s:?}");
    assert!(sent >= 4900, "too many dropped: {s:?}");
    assert_eq!(pool.available(), 512);

    // Empty and oversized frames are errors.
    let mut tx = vec![frame(&mut pool, &[]), frame(&mut pool, &[0u8; 2048])];
    tx[1].set_len(2048).unwrap();
    port.tx_burst(&mut tx, &mut pool);
    let mut big = pool.alloc().unwrap();
    big.set_len(2049).unwrap_or(());
    pool.free(big);
    assert_eq!(port.stats().tx_errors, 1, "{:?}", port.stats());
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

    // The peer goes down: no carrier; the device drops what we send.
    v.ns.exec(&["ip", "link", "set", &v.peer, "down"]);
    assert!(eventually(SECS, || !port.link_up()));
    let mut tx: Vec<_> = (0..10).map(|_| frame(&mut pool, &f)).collect();
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 0, "{:?}", port.stats());
    let s = port.stats();
    assert_eq!(s.tx_dropped + s.tx_errors, 10, "{s:?}");
    v.ns.exec(&["ip", "link", "set", &v.peer, "up"]);
    assert!(eventually(SECS, || port.link_up()));

    // Our side goes down: transmits fail and are not queued.
    run(&["ip", "link", "set", &v.host, "down"]);
    assert!(eventually(SECS, || !port.link_up()));
    for _ in 0..3 {
        let mut tx: Vec<_> = (0..10).map(|_| frame(&mut pool, &f)).collect();
        assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
    }
    assert_eq!(
        port.stats().tx_errors,
        s.tx_errors + 30,
        "{:?}",
        port.stats()
    );
    run(&["ip", "link", "set", &v.host, "up"]);
    assert!(eventually(SECS, || port.link_up()));
    assert!(
        xdp_program_on(&v.host).unwrap().is_some(),
        "the program survives down/up"
    );

    // Both directions work again.
    let cap = v.capture(b"LNK2", 1, SECS);
    let g = test_frame(v.peer_mac, v.host_mac, b"LNK2", 64);
    let mut tx = vec![frame(&mut pool, &g)];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 1, "{:?}", port.stats());
    assert_eq!(cap.frames(), vec![g]);
    let r = test_frame(OTHER, v.peer_mac, b"LNK3", 80);
    v.send_raw(std::slice::from_ref(&r));
    assert_eq!(receive(&mut port, &mut pool, 1, SECS, to_other), vec![r]);
    assert_eq!(pool.available(), 256);
}

/// Run in a child process by the tests below: opens a port on `DP_XDP_HELPER_IF` and dies by
/// SIGKILL, as a crashed or killed daemon would.
#[test]
#[ignore = "a helper that kills its own process; run by the stale-program tests"]
fn helper_open_and_get_killed() {
    let Ok(ifname) = std::env::var("DP_XDP_HELPER_IF") else {
        return;
    };
    let attach = match std::env::var("DP_XDP_HELPER_ATTACH").as_deref() {
        Ok("netlink") => XdpAttach::Netlink,
        _ => XdpAttach::Link,
    };
    let port = AfXdpPort::open(
        &ifname,
        &AfXdpOptions {
            attach,
            ..AfXdpOptions::default()
        },
    );
    println!("HELPER {}", if port.is_ok() { "open" } else { "failed" });
    // SAFETY: kill has no memory preconditions; this process ends here.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Runs [`helper_open_and_get_killed`] in a child; returns whether it opened its port.
fn open_in_child_and_kill(ifname: &str, attach: &str) -> bool {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_open_and_get_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DP_XDP_HELPER_IF", ifname)
        .env("DP_XDP_HELPER_ATTACH", attach)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("HELPER open")
}

#[test]
fn killed_process_with_a_link_leaves_no_program() {
    if !can_run("killed_process_with_a_link_leaves_no_program") {
        return;
    }
    let v = Veth::new();
    assert!(open_in_child_and_kill(&v.host, "link"));
    // The kernel releases the link when the dead process's descriptors close.
    assert!(detached(&v));
    let _port = open(&v);
}

#[test]
fn stale_program_of_a_killed_process_is_detached() {
    if !can_run("stale_program_of_a_killed_process_is_detached") {
        return;
    }
    let v = Veth::new();
    assert!(open_in_child_and_kill(&v.host, "netlink"));
    let stale = xdp_program_on(&v.host)
        .unwrap()
        .expect("netlink attachment outlives its process");
    assert!(ip_shows_xdp(&v.host));

    let mut port = open(&v);
    let now = xdp_program_on(&v.host).unwrap().unwrap();
    assert_ne!(now.prog_id, stale.prog_id, "ours replaced the stale one");
    let mut pool = BufferPool::new(64, 2048);
    let f = test_frame(OTHER, v.peer_mac, b"STL1", 60);
    v.send_raw(std::slice::from_ref(&f));
    assert_eq!(receive(&mut port, &mut pool, 1, SECS, to_other), vec![f]);
    drop(port);
    assert!(detached(&v));

    // A netlink-attached port cleans up after itself when dropped normally.
    let port = AfXdpPort::open(
        &v.host,
        &AfXdpOptions {
            attach: XdpAttach::Netlink,
            ..AfXdpOptions::default()
        },
    )
    .unwrap();
    assert!(xdp_program_on(&v.host).unwrap().is_some());
    drop(port);
    assert!(detached(&v));
}

#[test]
fn receive_latency() {
    if !can_run("receive_latency") {
        return;
    }
    let v = Veth::new();
    let mut port = open(&v);
    let mut pool = BufferPool::new(64, 2048);
    let lat = latencies(&v, &mut port, &mut pool, 20);
    let worst = lat.iter().max().copied().unwrap_or_default();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    eprintln!("af_xdp: receive latency of single frames: mean {mean:?}, worst {worst:?}");
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
        "af_xdp tx: {sent} frames in {elapsed:?} = {:.0} kpps; {arrived} arrived; {:?}",
        sent as f64 / elapsed.as_secs_f64() / 1e3,
        port.stats()
    );

    let g = test_frame(OTHER, v.peer_mac, b"THR2", 64);
    let ns = v.ns.0.clone();
    let peer = v.peer.clone();
    let hexed = hex(&g);
    let sender = std::thread::spawn(move || {
        let start = Instant::now();
        let status = Command::new("ip")
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
        "af_xdp rx: {got} of {N} frames in {elapsed:?} = {:.0} kpps (sender took {sender_time:?}); {:?}",
        got as f64 / elapsed.as_secs_f64() / 1e3,
        port.statistics()
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
