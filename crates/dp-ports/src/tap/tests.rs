//! TAP tests. Those that need root (CAP_NET_ADMIN, `ip netns`) print why and pass when it is
//! missing. Every wait is bounded; namespaces are deleted by a drop guard, on failure too.

use super::*;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: "dpt" + pid in hex (≤ 6) + sequence, ≤ 15 bytes.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{:x}n{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tun = std::path::Path::new("/dev/net/tun").exists();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && tun && ip) {
        eprintln!("skipping {test}: needs root, /dev/net/tun and iproute2");
        return false;
    }
    true
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = unique("dptns");
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sysfs(name: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/{file}"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn readable_within(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

/// Receives until a frame satisfies `want` or `timeout` passes; other frames are discarded.
fn wait_for(
    port: &mut TapPort,
    pool: &mut BufferPool,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(32);
    let fd = port.rx_fd().expect("tap has an fd");
    while Instant::now() < deadline {
        readable_within(fd, 50);
        port.rx_burst(pool, &mut out, 32);
        let found = out
            .iter()
            .find(|b| want(b.data()))
            .map(|b| b.data().to_vec());
        for b in out.drain(..) {
            pool.free(b);
        }
        if found.is_some() {
            return found;
        }
    }
    None
}

fn frame(pool: &mut BufferPool, bytes: &[u8]) -> PacketBuf {
    let mut b = pool.alloc().expect("a free buffer");
    b.set_frame(bytes).expect("fits");
    b
}

const KERNEL_MAC: MacAddr = MacAddr::new(0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01);
const PEER_MAC: MacAddr = MacAddr::new(0x02, 0x00, 0x00, 0x00, 0x00, 0x02);
const KERNEL_IP: [u8; 4] = [10, 77, 0, 1];
const PEER_IP: [u8; 4] = [10, 77, 0, 2];

fn is_arp_request_for(f: &[u8], target: [u8; 4], from: MacAddr) -> bool {
    f.len() >= 42
        && f[12..14] == [0x08, 0x06]
        && f[20..22] == [0, 1]
        && f[6..12] == from.octets()
        && f[38..42] == target
}

fn arp_reply(sha: MacAddr, spa: [u8; 4], tha: MacAddr, tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&tha.octets());
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&sha.octets());
    f.extend_from_slice(&spa);
    f.extend_from_slice(&tha.octets());
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

fn is_udp_to(f: &[u8], mac: MacAddr, ip: [u8; 4], port: u16) -> bool {
    f.len() >= 42
        && f[0..6] == mac.octets()
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && f[30..34] == ip
        && f[36..38] == port.to_be_bytes()
}

/// Sends a UDP datagram of `len` zero bytes from inside `ns` to 10.77.0.2:`port`.
fn send_udp(ns: &Netns, len: usize, port: u16) {
    let script = format!("head -c {len} /dev/zero > /dev/udp/10.77.0.2/{port}");
    ns.exec(&["bash", "-c", &script]);
}

#[test]
fn invalid_names_are_refused() {
    for bad in ["", "sixteen-chars-xx", "a/b", "a b", "a:b", ".", ".."] {
        assert!(
            matches!(TapPort::create(bad, None), Err(PortError::InvalidName(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn existing_non_tap_device_is_refused() {
    if !can_run("existing_non_tap_device_is_refused") {
        return;
    }
    let err = TapPort::create("lo", None).unwrap_err();
    assert!(matches!(err, PortError::NotTap(_)), "{err}");
    assert!(err.to_string().contains("not a TAP device"), "{err}");
}

#[test]
fn existing_tun_device_is_refused() {
    if !can_run("existing_tun_device_is_refused") {
        return;
    }
    let name = unique("dpt");
    run(&["ip", "tuntap", "add", "dev", &name, "mode", "tun"]);
    let err = TapPort::create(&name, None).unwrap_err();
    let _ = Command::new("ip")
        .args(["tuntap", "del", "dev", &name, "mode", "tun"])
        .status();
    assert!(matches!(err, PortError::IncompatibleTap(_)), "{err}");
}

#[test]
fn persistent_tap_made_by_the_operator_is_attached_and_kept() {
    if !can_run("persistent_tap_made_by_the_operator_is_attached_and_kept") {
        return;
    }
    let name = unique("dpt");
    run(&["ip", "tuntap", "add", "dev", &name, "mode", "tap"]);
    let port = TapPort::create(&name, Some(KERNEL_MAC));
    let port_ok = port.is_ok();
    drop(port);
    let still_there = sysfs(&name, "address").is_some();
    let _ = Command::new("ip")
        .args(["tuntap", "del", "dev", &name, "mode", "tap"])
        .status();
    assert!(port_ok && still_there);
}

#[test]
fn second_open_is_busy() {
    if !can_run("second_open_is_busy") {
        return;
    }
    let name = unique("dpt");
    let _first = TapPort::create(&name, None).unwrap();
    let err = TapPort::create(&name, None).unwrap_err();
    assert!(matches!(err, PortError::Busy(_)), "{err}");
}

#[test]
fn mac_link_state_and_cleanup() {
    if !can_run("mac_link_state_and_cleanup") {
        return;
    }
    let name = unique("dpt");
    let port = TapPort::create(&name, Some(KERNEL_MAC)).unwrap();
    assert_eq!(port.name(), name);
    assert_eq!(port.mac(), KERNEL_MAC);
    assert_eq!(sysfs(&name, "address").unwrap(), "02:aa:bb:cc:dd:01");
    assert_eq!(sysfs(&name, "ifindex").unwrap(), port.ifindex().to_string());
    assert_eq!(port.current_name().as_deref(), Some(name.as_str()));
    assert!(port.link_up(), "created up");
    run(&["ip", "link", "set", &name, "down"]);
    assert!(!port.link_up());
    run(&["ip", "link", "set", &name, "up"]);
    assert!(port.link_up());
    assert_eq!(port.stats(), PortStats::default());
    drop(port);
    // A child forked by a parallel test may hold the descriptor until its exec: wait a bit.
    let deadline = Instant::now() + Duration::from_secs(3);
    while sysfs(&name, "address").is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sysfs(&name, "address").is_none(), "not persistent");

    let name = unique("dpt");
    let port = TapPort::create(&name, None).unwrap();
    assert!(!port.mac().is_zero() && port.mac().is_unicast());
    assert_eq!(sysfs(&name, "address").unwrap(), port.mac().to_string());
}

#[test]
fn frames_flow_with_the_kernel_side_in_another_netns() {
    if !can_run("frames_flow_with_the_kernel_side_in_another_netns") {
        return;
    }
    let ns = Netns::new();
    let name = unique("dpt");
    let mut port = TapPort::create(&name, Some(KERNEL_MAC)).unwrap();
    let mut pool = BufferPool::new(64, 2048);

    run(&["ip", "link", "set", &name, "netns", &ns.0]);
    ns.exec(&["ip", "link", "set", "lo", "up"]);
    ns.exec(&["ip", "link", "set", &name, "up"]);
    ns.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", &name]);
    assert!(port.link_up(), "nothing says down yet");
    assert_eq!(port.current_name().as_deref(), Some(name.as_str()));

    // The kernel side resolves 10.77.0.2 before sending the datagram: an ARP request.
    send_udp(&ns, 3, 9);
    let req = wait_for(&mut port, &mut pool, Duration::from_secs(5), |f| {
        is_arp_request_for(f, PEER_IP, KERNEL_MAC)
    });
    assert!(req.is_some(), "no ARP request arrived");

    // Answer it; the kernel then sends the datagram it held.
    let rx_before: u64 = ns
        .exec(&[
            "cat",
            &format!("/sys/class/net/{name}/statistics/rx_packets"),
        ])
        .trim()
        .parse()
        .unwrap();
    let mut tx = vec![frame(
        &mut pool,
        &arp_reply(PEER_MAC, PEER_IP, KERNEL_MAC, KERNEL_IP),
    )];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 1);
    assert!(tx.is_empty());
    let udp = wait_for(&mut port, &mut pool, Duration::from_secs(5), |f| {
        is_udp_to(f, PEER_MAC, PEER_IP, 9)
    });
    assert!(udp.is_some(), "the datagram did not follow the ARP reply");
    let rx_after: u64 = ns
        .exec(&[
            "cat",
            &format!("/sys/class/net/{name}/statistics/rx_packets"),
        ])
        .trim()
        .parse()
        .unwrap();
    assert!(rx_after > rx_before, "the netns did not count our frame");

    let s = port.stats();
    assert!(s.rx_packets >= 2 && s.rx_bytes >= 42 + 45, "{s:?}");
    assert_eq!((s.tx_packets, s.tx_bytes, s.tx_errors), (1, 60, 0));
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");

    // Down in the foreign namespace: the next transmit fails with EIO and says so.
    ns.exec(&["ip", "link", "set", &name, "down"]);
    let mut tx = vec![
        frame(
            &mut pool,
            &arp_reply(PEER_MAC, PEER_IP, KERNEL_MAC, KERNEL_IP),
        ),
        frame(
            &mut pool,
            &arp_reply(PEER_MAC, PEER_IP, KERNEL_MAC, KERNEL_IP),
        ),
    ];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 0);
    assert_eq!(port.stats().tx_errors, 2);
    assert!(!port.link_up());
    ns.exec(&["ip", "link", "set", &name, "up"]);
    let mut tx = vec![frame(
        &mut pool,
        &arp_reply(PEER_MAC, PEER_IP, KERNEL_MAC, KERNEL_IP),
    )];
    assert_eq!(port.tx_burst(&mut tx, &mut pool), 1);
    assert!(port.link_up());
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn link_state_follows_the_kernel_side_in_another_netns_without_traffic() {
    if !can_run("link_state_follows_the_kernel_side_in_another_netns_without_traffic") {
        return;
    }
    let ns = Netns::new();
    let name = unique("dpt");
    let port = TapPort::create(&name, Some(KERNEL_MAC)).unwrap();
    run(&["ip", "link", "set", &name, "netns", &ns.0]);
    // Moving it brought it down; nothing was sent or received.
    assert!(!port.link_up(), "down after the move");
    ns.exec(&["ip", "link", "set", &name, "up"]);
    assert!(port.link_up(), "up in the other namespace");
    for _ in 0..3 {
        ns.exec(&["ip", "link", "set", &name, "down"]);
        assert!(!port.link_up());
        ns.exec(&["ip", "link", "set", &name, "up"]);
        assert!(port.link_up());
    }
    // Renamed there: still followed.
    ns.exec(&["ip", "link", "set", &name, "down"]);
    ns.exec(&["ip", "link", "set", &name, "name", "dptrenamed"]);
    assert!(!port.link_up());
    ns.exec(&["ip", "link", "set", "dptrenamed", "up"]);
    assert!(port.link_up());
    // Moved on to a second namespace: the socket follows it.
    let ns2 = Netns::new();
    ns.exec(&["ip", "link", "set", "dptrenamed", "netns", &ns2.0]);
    assert!(!port.link_up());
    ns2.exec(&["ip", "link", "set", "dptrenamed", "up"]);
    assert!(port.link_up());
    assert_eq!(port.stats(), PortStats::default(), "no frame was needed");
}

#[test]
fn oversized_frame_is_counted_and_skipped() {
    if !can_run("oversized_frame_is_counted_and_skipped") {
        return;
    }
    let ns = Netns::new();
    let name = unique("dpt");
    let mut port = TapPort::create(&name, Some(KERNEL_MAC)).unwrap();
    let mut pool = BufferPool::new(64, 2048);
    run(&["ip", "link", "set", &name, "netns", &ns.0]);
    ns.exec(&["ip", "link", "set", &name, "mtu", "9000", "up"]);
    ns.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", &name]);
    let mac = PEER_MAC.to_string();
    ns.exec(&[
        "ip",
        "neigh",
        "replace",
        "10.77.0.2",
        "lladdr",
        &mac,
        "dev",
        &name,
    ]);

    // Frames of 14 + 20 + 8 + payload bytes into 2048-byte buffers: 4042 and 2049 bytes do
    // not fit, 2048 bytes fit exactly.
    send_udp(&ns, 4000, 9);
    send_udp(&ns, 2006, 9);
    send_udp(&ns, 2007, 9);
    send_udp(&ns, 10, 10);
    let mut lengths = Vec::new();
    let small = wait_for(&mut port, &mut pool, Duration::from_secs(5), |f| {
        if is_udp_to(f, PEER_MAC, PEER_IP, 9) {
            lengths.push(f.len());
        }
        is_udp_to(f, PEER_MAC, PEER_IP, 10)
    });
    assert!(
        small.is_some(),
        "the small datagram after the big ones was lost"
    );
    assert_eq!(lengths, vec![2048], "only the frame that fits is passed on");
    assert_eq!(port.stats().rx_errors, 2);
    assert_eq!(pool.available(), pool.capacity());
}
