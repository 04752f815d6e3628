//! Helpers for the root-only port tests: a network namespace and a veth pair per test (deleted by
//! drop guards, on failure too), and Debian's python3 for raw frames on the namespace side.
//! Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::fd::RawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dp_ports::{BufferPool, MacAddr, PacketBuf, Port};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: prefix + pid in hex + sequence, ≤ 15 bytes for a
/// prefix of up to 4 bytes.
pub fn unique(prefix: &str) -> String {
    let name = format!(
        "{prefix}{:x}n{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    assert!(name.len() <= 15, "{name}");
    name
}

pub const PYTHON: &str = "/usr/bin/python3";

/// Whether the test can run (root, iproute2, Debian's python3); prints why not.
pub fn can_run(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip").arg("-V").output().is_ok();
    let py = std::path::Path::new(PYTHON).exists();
    if !(root && ip && py) {
        eprintln!("skipping {test}: needs root, iproute2 and {PYTHON}");
        return false;
    }
    true
}

pub fn run(args: &[&str]) -> String {
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

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        let name = unique("dpns");
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        // No IPv6 chatter (DAD, router solicitations, MLD) to disturb counts and idle waits.
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        ns
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    pub fn exec(&self, args: &[&str]) -> String {
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

pub const HOST_IP: &str = "10.77.0.2";
pub const PEER_IP: &str = "10.77.0.1";

/// A veth pair: `host` in our namespace (where the port opens), `peer` in `ns`, both up,
/// `peer` with 10.77.0.1/24 and a permanent neighbour entry for 10.77.0.2 pointing at `host`'s
/// MAC (no ARP needed). The pair goes with the namespace; the guard deletes `host` too.
pub struct Veth {
    pub host: String,
    pub peer: String,
    pub ns: Netns,
    pub host_mac: MacAddr,
    pub peer_mac: MacAddr,
}

impl Veth {
    pub fn new() -> Veth {
        Self::with_setup(|_| {})
    }

    /// Creates the pair and runs `setup` (e.g. MTU changes) before anything is brought up.
    pub fn with_setup(setup: impl FnOnce(&Veth)) -> Veth {
        let ns = Netns::new();
        let host = unique("dph");
        let peer = unique("dpp");
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &peer, "netns", &ns.0,
        ]);
        let mut v = Veth {
            host,
            peer,
            ns,
            host_mac: MacAddr::default(),
            peer_mac: MacAddr::default(),
        };
        let _ = Command::new("sysctl")
            .args([
                "-q",
                "-w",
                &format!("net.ipv6.conf.{}.disable_ipv6=1", v.host),
            ])
            .status();
        setup(&v);
        run(&["ip", "link", "set", &v.host, "up"]);
        v.ns.exec(&["ip", "link", "set", "lo", "up"]);
        v.ns.exec(&["ip", "link", "set", &v.peer, "up"]);
        v.ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{PEER_IP}/24"),
            "dev",
            &v.peer,
        ]);
        v.host_mac = parse_mac(
            &std::fs::read_to_string(format!("/sys/class/net/{}/address", v.host)).unwrap(),
        );
        v.peer_mac = parse_mac(
            &v.ns
                .exec(&["cat", &format!("/sys/class/net/{}/address", v.peer)]),
        );
        v.ns.exec(&[
            "ip",
            "neigh",
            "replace",
            HOST_IP,
            "lladdr",
            &v.host_mac.to_string(),
            "dev",
            &v.peer,
            "nud",
            "permanent",
        ]);
        v
    }

    /// A counter of the peer's (`/sys/class/net/PEER/statistics/NAME`).
    pub fn peer_stat(&self, name: &str) -> u64 {
        self.ns
            .exec(&[
                "cat",
                &format!("/sys/class/net/{}/statistics/{name}", self.peer),
            ])
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until the peer's counter reaches `want` or `timeout` passes; returns the last value.
    pub fn wait_peer_stat(&self, name: &str, want: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.peer_stat(name);
            if v >= want || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a UDP datagram of `len` zero bytes from the peer to 10.77.0.2:`port` through the
    /// kernel's stack (so its checksum is left to offload).
    pub fn send_udp(&self, len: usize, port: u16) {
        let script = format!("head -c {len} /dev/zero > /dev/udp/{HOST_IP}/{port}");
        self.ns.exec(&["bash", "-c", &script]);
    }

    /// Sends raw frames (hex strings) from the peer with an AF_PACKET socket.
    pub fn send_raw(&self, frames: &[Vec<u8>]) {
        let hex: Vec<String> = frames.iter().map(|f| hex(f)).collect();
        let mut args = vec![PYTHON, "-c", SEND_RAW, &self.peer];
        args.extend(hex.iter().map(String::as_str));
        self.ns.exec(&args);
    }

    /// Sends `count` copies of `frame` from the peer, as fast as python goes.
    pub fn flood_raw(&self, frame: &[u8], count: usize) -> Duration {
        let start = Instant::now();
        self.ns.exec(&[
            PYTHON,
            "-c",
            FLOOD_RAW,
            &self.peer,
            &hex(frame),
            &count.to_string(),
        ]);
        start.elapsed()
    }

    /// Starts a raw receiver on the peer that prints (hex) every frame whose bytes contain
    /// `marker`, until it has `count` of them or `timeout` passes.
    pub fn capture(&self, marker: &[u8], count: usize, timeout: Duration) -> Capture {
        let mut child = self
            .ns
            .cmd(&[
                PYTHON,
                "-c",
                CAPTURE,
                &self.peer,
                &hex(marker),
                &count.to_string(),
                &timeout.as_secs_f64().to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "capture did not start");
        // Read as it prints: a full pipe would stop the receiver.
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Capture {
            child,
            reader: Some(reader),
            deadline: Instant::now() + timeout + Duration::from_secs(5),
        }
    }
}

/// A python sender in the peer's namespace that sends one frame per request and reports the
/// `CLOCK_MONOTONIC` time just before sending (the clock is shared with this process).
pub struct TimedSender {
    child: Child,
    input: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl TimedSender {
    pub fn new(v: &Veth) -> TimedSender {
        let mut child =
            v.ns.cmd(&[PYTHON, "-c", TIMED_SEND, &v.peer])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
        let input = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        TimedSender { child, input, out }
    }

    /// Sends `frame`; returns the monotonic time (ns) just before it was sent.
    pub fn send(&mut self, frame: &[u8]) -> u64 {
        use std::io::Write;
        writeln!(self.input, "{}", hex(frame)).unwrap();
        self.input.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

impl Drop for TimedSender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `count` frames one at a time, each only after the previous one was received through
/// `port` (waiting on its descriptor); returns the receive latencies (send to rx_burst).
pub fn latencies(v: &Veth, port: &mut dyn Port, pool: &mut BufferPool, count: u8) -> Vec<Duration> {
    let other = MacAddr::new(0x02, 0x11, 0x22, 0x33, 0x44, 0x55);
    let mut sender = TimedSender::new(v);
    let fd = port.rx_fd().unwrap();
    let mut out = Vec::with_capacity(8);
    let mut lat = Vec::new();
    for i in 0..count {
        let f = test_frame(other, v.peer_mac, &[b'L', b'A', b'T', i], 60);
        let sent = sender.send(&f);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut found = false;
        while !found && Instant::now() < deadline {
            readable_within(fd, 100);
            port.rx_burst(pool, &mut out, 8);
            found = out.iter().any(|b| b.data() == f.as_slice());
            for b in out.drain(..) {
                pool.free(b);
            }
        }
        assert!(found, "frame {i} not received");
        lat.push(Duration::from_nanos(monotonic_ns().saturating_sub(sent)));
    }
    lat
}

const TIMED_SEND: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
print("ready", flush=True)
for line in sys.stdin:
    f = bytes.fromhex(line.strip())
    t = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    s.send(f)
    print(t, flush=True)
"#;

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(Stdio::null())
            .status();
    }
}

/// A running capture; see [`Veth::capture`].
pub struct Capture {
    child: Child,
    reader: Option<std::thread::JoinHandle<String>>,
    deadline: Instant,
}

impl Capture {
    /// The captured frames (waits for the receiver to end, killing it at its deadline).
    pub fn frames(mut self) -> Vec<Vec<u8>> {
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() >= self.deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        let s = self
            .reader
            .take()
            .map(|r| r.join().unwrap())
            .unwrap_or_default();
        s.lines().filter(|l| !l.is_empty()).map(unhex).collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SEND_RAW: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
"#;

const FLOOD_RAW: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
s.bind((sys.argv[1], 0))
f = bytes.fromhex(sys.argv[2])
n = int(sys.argv[3])
deadline = time.time() + 30
i = 0
while i < n and time.time() < deadline:
    try:
        s.send(f)
        i += 1
    except BlockingIOError:
        time.sleep(0.0001)
    except OSError:
        time.sleep(0.0001)
"#;

const CAPTURE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE: past rmem_max (root)
s.bind((sys.argv[1], 0))
marker = bytes.fromhex(sys.argv[2])
want = int(sys.argv[3])
deadline = time.time() + float(sys.argv[4])
print("ready", flush=True)
got = 0
while got < want:
    left = deadline - time.time()
    if left <= 0:
        break
    s.settimeout(left)
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        break
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    if marker in data:
        print(data.hex(), flush=True)
        got += 1
"#;

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

pub fn parse_mac(s: &str) -> MacAddr {
    let b: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Waits until `cond` holds or `timeout` passes; returns whether it held. (Carrier changes
/// reach the interface flags through the kernel's link watch, a little later.)
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn readable_within(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

/// Receives until `want` frames satisfy `keep` or `timeout` passes; other frames are freed.
pub fn receive(
    port: &mut dyn Port,
    pool: &mut BufferPool,
    want: usize,
    timeout: Duration,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut kept = Vec::new();
    let mut out = Vec::with_capacity(64);
    let fd = port.rx_fd();
    while kept.len() < want && Instant::now() < deadline {
        if let Some(fd) = fd {
            readable_within(fd, 20);
        }
        port.rx_burst(pool, &mut out, 64);
        for b in out.drain(..) {
            if kept.len() < want && keep(b.data()) {
                kept.push(b.data().to_vec());
            }
            pool.free(b);
        }
    }
    kept
}

pub fn frame(pool: &mut BufferPool, bytes: &[u8]) -> PacketBuf {
    let mut b = pool.alloc().expect("a free buffer");
    b.set_frame(bytes).expect("fits");
    b
}

/// An Ethernet frame of `len` bytes from `src` to `dst` with ethertype 0x88b5 (local
/// experimental) whose payload starts with `marker` and then counts up.
pub fn test_frame(dst: MacAddr, src: MacAddr, marker: &[u8], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(marker);
    let mut i = 0u8;
    while f.len() < len {
        f.push(i);
        i = i.wrapping_add(1);
    }
    f.truncate(len);
    f
}

/// Checks the UDP checksum of an untagged IPv4 frame (sum over pseudo header and segment is
/// 0xffff, or the checksum is 0).
pub fn udp4_checksum_ok(f: &[u8]) -> bool {
    use dp_packet::checksum;
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let udp = &f[14 + ihl..14 + total];
    if udp[6..8] == [0, 0] {
        return true;
    }
    let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
    let dst = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let pseudo =
        checksum::pseudo_header_v4(&src, &dst, dp_packet::IpProtocol::UDP, udp.len() as u32);
    checksum::combine(&[pseudo, checksum::data(udp)]) == 0xffff
}
