//! Issue #14: live migration of a QEMU guest between two hypervisors (the DPDK HowTo "Live
//! Migration of VM with Virtio on host running vhost_user"), with the dataplane on both ends.
//!
//! Two daemons stand for two hypervisors (their uplinks meet in a router namespace, as in
//! tests/multihost.rs); the guest runs under QEMU A on hv1's vhost-user port, a second QEMU (B)
//! waits with `-incoming` on hv2's; the test does what metalnet would on the API (the same
//! interface on hv2 with the same underlay address, `preferred_underlay_route`; then the
//! interface deleted on hv1 and a route to it put in its place) and QEMU migrates. A namespace
//! VM on a third port (vm3, a TAP on hv1) pings the guest every 10 ms and streams TCP to it
//! the whole time. The exact sequence, and why the addresses are what they are:
//! docs/migration.md.
//!
//! Measured and printed (`[migration] …` lines): pings lost, the longest gap between two
//! answers, QEMU's total migration time and downtime, when the stream moved again. Checked,
//! with tolerances that a TCG guest meets: the migration completes, pings come back (the last
//! 100 before the end all answered), loss and gap under generous bounds, the stream still
//! delivers after the switch and arrives whole (byte count and MD5), the guest keeps its
//! address and never asks for one again (hv2's DHCP node saw no packet).
//!
//! And the backend's dirty log (VHOST_F_LOG_ALL): QEMU is held in its pre-copy passes
//! (`downtime-limit` 1 ms, a guest process that keeps dirtying pages) while a second, "parked"
//! TCP stream arrives right after a pass copied the guest's dirty pages; the guest leaves it
//! unread in its socket's receive queue — in receive buffers only the backend wrote — until
//! after the migration. Only the log makes QEMU copy those pages again: without it (the marks
//! disabled by hand) the guest on hv2 reads stale memory and this test fails on the parked
//! stream's MD5, every time it was tried.
//!
//! Needs root, `ip`, `ping`, `md5sum`, `qemu-system-x86_64`, busybox-static and the guest kernel
//! (`scripts/guest-kernel.sh`); without them it prints `SKIPPED <test>: <reason>` and passes,
//! unless `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::api::{Api, IfaceSpec};
use support::daemon::{hypervisor_args, Daemon, READY_TIMEOUT};
use support::guest::{self, guest_mac, Backend, Guest, GuestSpec, QemuOptions, Qmp, BOOT_TIMEOUT};
use support::underlay::{Router, ROUTER_LL};
use support::vm::Vm;
use support::{ensure, in_netns, wait_until, Background, Names, Scratch};

/// Progress and measurements on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[migration] {}", format!($($arg)*)) };
}

const VNI: u32 = 100;
/// The two hypervisors' `--ipv6`: one /64, since a `preferred_underlay_route` must lie in the
/// host's own /64 (docs/migration.md).
const HV1_IPV6: &str = "fc00:1::1";
const HV2_IPV6: &str = "fc00:1::2";
/// The guest (qvm1) and the namespace VM (vm3). Every underlay address is given
/// (`preferred_underlay_route`): `<host /64>:d000:8000:0:N`, byte 8 0xd0, byte 10 the
/// externally-generated flag 0x80.
const GUEST_ID: &str = "qvm1";
const GUEST_IPV4: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 1);
const GUEST_IPV6: Ipv6Addr = Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1);
const GUEST_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0xd000, 0x8000, 0, 1);
const VM3_ID: &str = "vm3";
const VM3_IPV4: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 3);
const VM3_IPV6: Ipv6Addr = Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 3);
const VM3_UNDERLAY: Ipv6Addr = Ipv6Addr::new(0xfc00, 1, 0, 0, 0xd000, 0x8000, 0, 3);
/// hv1: VF 0 the guest's vhost-user socket, VF 1 vm3's TAP. hv2: VF 0, the target's socket.
const GUEST_VF: usize = 0;
const VM3_VF: usize = 1;

const STREAM_PORT: u16 = 5001;
/// The TCP stream: a chunk every 10 ms (~100 KiB/s: TCG guests are slow, and what the guest
/// receives is what dirties its memory during the migration).
const STREAM_CHUNK: usize = 1024;
const STREAM_EVERY: Duration = Duration::from_millis(10);
/// The stream's writer gives up after this (the test is over long before).
const STREAM_MAX: Duration = Duration::from_secs(200);
/// A write may block this long (the path is down for a while during the switch).
const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Traffic runs this long before the migration's first step, and this long after the switch.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(10);
/// QEMU's `max-bandwidth` for the first pass (bytes/s): the guest's ~100 MB of touched memory
/// take a few seconds to go, with the traffic going on (and the backend writing into guest
/// memory, under the dirty log) the whole time.
const MIGRATION_BANDWIDTH: u64 = 32 << 20;
/// QEMU's `downtime-limit` (ms) while the parked stream arrives: too small for the guest's
/// dirty pages (the dirtier's 128 pages every millisecond) to ever fit, so QEMU keeps copying
/// pass after pass; then its default, 300 ms, and the migration converges.
const HOLD_DOWNTIME_MS: u64 = 1;
const DOWNTIME_MS: u64 = 300;
/// `max-bandwidth` from the end of the first pass until QEMU is let go: every pass then takes
/// long enough (the guest's dirty pages at 4 MiB/s: ~100 ms or more) for the guest to run and
/// dirty pages in between, even on a busy host (a pass that finds nothing dirty converges);
/// and at the end, so that the last copy is quick.
const HOLD_BANDWIDTH: u64 = 4 << 20;
const FINAL_BANDWIDTH: u64 = 1 << 30;
/// The parked stream goes at the end of a pass after the first (from this many syncs on, and
/// with this little left to copy in it): QEMU has just copied the pages the guest had dirtied
/// (receive buffers it filled in, among them), and does not copy them again unless someone
/// marks them dirty — the guest, or, for what the backend writes into them, the dirty log.
const PARKED_SYNC: u64 = 3;
const PARKED_REMAINING: u64 = 512 << 10;
/// The first pass's end is near when this much is left to copy.
const FIRST_PASS_TAIL: u64 = 16 << 20;
/// Passes (dirty-bitmap syncs) QEMU makes after the parked stream is seen in the guest's
/// receive queue before it may converge: the pages the backend wrote must have been copied
/// again.
const PASSES_AFTER_PARKED: u64 = 2;
/// `migrate` to `completed`.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(90);
/// The stream moving again after the switch.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);
/// The tolerances (TCG, 2 CPUs shared by two QEMUs and two daemons).
const MAX_LOSS_PERCENT: f64 = 20.0;
const MAX_GAP: Duration = Duration::from_secs(10);
/// The last pings that must all have been answered (ignoring the few in flight at the end).
const TAIL_ANSWERED: u64 = 100;
const TAIL_IN_FLIGHT: u64 = 10;

/// The parked stream: a blob vm3 sends at the end of a pre-copy pass, which the guest leaves
/// unread (in its socket's receive queue: in the receive buffers the backend wrote) until the
/// main stream has ended. Only the dirty log tells QEMU those pages changed after it copied
/// them; without it the guest on hv2 reads stale memory (MD5 mismatch). 48 KiB: within the
/// guest's receive window and queue, so its kernel neither collapses (copies) the queue nor
/// holds part of it back; nothing reads it (no pipe, whose copy the guest's CPU would write).
const PARKED_PORT: u16 = 5002;
const PARKED_BYTES: usize = 48 * 1024;

/// `/bin/parked`, run by the guest's `nc -l -e` with the parked connection as its stdin: reads
/// nothing until `/tmp/drain` exists (bounded: 4 minutes), then all of it into `/tmp/p`.
const PARKED_SCRIPT: &str = "#!/bin/sh\nn=0\n\
    while [ ! -f /tmp/drain ] && [ $n -lt 1200 ]; do sleep 0.2; n=$((n + 1)); done\n\
    cat > /tmp/p\n";

/// The guest's command: starts [`dirtier_elf`] (QEMU's passes always find dirty pages, so it
/// goes on copying until the test lets it converge); listens for the parked stream
/// ([`PARKED_SCRIPT`]) and the main stream (as in tests/qemu_guest.rs, stdin the console so
/// that nc leaves when the peer closes); reports twice a second the bytes of the main stream
/// received and the parked stream's receive queue; at the end count and MD5 of both, and its
/// address then.
fn receiver_command() -> String {
    format!(
        "/bin/dirtier & \
         nc -l -p {PARKED_PORT} -e /bin/parked & q=$!; \
         nc -l -p {STREAM_PORT} < /dev/console > /tmp/r & p=$!; echo \"GUEST: listening\"; n=0; \
         while kill -0 $p 2>/dev/null && [ $n -lt 1000 ]; do \
         echo \"GUEST: rx $(cut -d' ' -f1 /proc/uptime) $(wc -c < /tmp/r) \
         $(netstat -tn 2>/dev/null | awk '$4 ~ /:{PARKED_PORT}$/ {{print $2}}')\"; \
         sleep 0.5; n=$((n + 1)); done; wait $p; \
         echo \"GUEST: received $(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -c1-32)\"; \
         touch /tmp/drain; wait $q; \
         echo \"GUEST: parked $(wc -c < /tmp/p) $(md5sum < /tmp/p | cut -c1-32)\"; \
         echo \"GUEST: addr $(ip -4 -o addr show dev eth0 | awk '{{print $4}}')\""
    )
}

/// `/bin/dirtier` of the guest, a busy guest's memory: a static x86-64 Linux executable (an ELF
/// header, one RWX PT_LOAD at 0x400000 whose zero-filled tail holds 128 pages at 0x402000, and
/// the code below) that, 300 000 times (~5 minutes at most), write-protects and unprotects its
/// 128 pages (`mprotect`: the guest kernel flushes their TLB entries; without that, QEMU 7.2's
/// TCG was seen to find the pages of a plain write loop clean after the first few syncs —
/// presumably their TLB entries, hot, no longer trapped to mark them dirty), increments one
/// byte in each and sleeps 1 ms
/// (`nanosleep`); then exits 0. Busybox has no way to write memory without a process or a file
/// per page. The code (`as --64`, Intel syntax):
///
/// ```text
///     mov r12d, 300000
/// 1:  mov eax, 10 ; mov edi, 0x402000 ; mov esi, 0x80000 ; mov edx, 1 ; syscall   # mprotect R
///     mov eax, 10 ; mov edi, 0x402000 ; mov esi, 0x80000 ; mov edx, 3 ; syscall   # mprotect RW
///     mov ecx, 128 ; mov edi, 0x402000
/// 2:  inc byte ptr [rdi] ; add rdi, 4096 ; dec ecx ; jnz 2b
///     mov eax, 35 ; lea rdi, [rip + ts] ; xor esi, esi ; syscall                  # nanosleep
///     dec r12d ; jnz 1b
///     mov eax, 60 ; xor edi, edi ; syscall                                        # exit(0)
/// ts: .quad 0, 1000000
/// ```
const DIRTIER_CODE: [u8; 119] = [
    0x41, 0xbc, 0xe0, 0x93, 0x04, 0x00, // mov r12d, 300000
    0xb8, 0x0a, 0x00, 0x00, 0x00, // 1: mov eax, 10
    0xbf, 0x00, 0x20, 0x40, 0x00, // mov edi, 0x402000
    0xbe, 0x00, 0x00, 0x08, 0x00, // mov esi, 0x80000
    0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1 (PROT_READ)
    0x0f, 0x05, // syscall
    0xb8, 0x0a, 0x00, 0x00, 0x00, // mov eax, 10
    0xbf, 0x00, 0x20, 0x40, 0x00, // mov edi, 0x402000
    0xbe, 0x00, 0x00, 0x08, 0x00, // mov esi, 0x80000
    0xba, 0x03, 0x00, 0x00, 0x00, // mov edx, 3 (PROT_READ | PROT_WRITE)
    0x0f, 0x05, // syscall
    0xb9, 0x80, 0x00, 0x00, 0x00, // mov ecx, 128
    0xbf, 0x00, 0x20, 0x40, 0x00, // mov edi, 0x402000
    0xfe, 0x07, // 2: inc byte ptr [rdi]
    0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, // add rdi, 4096
    0xff, 0xc9, // dec ecx
    0x75, 0xf3, // jnz 2b
    0xb8, 0x23, 0x00, 0x00, 0x00, // mov eax, 35
    0x48, 0x8d, 0x3d, 0x12, 0x00, 0x00, 0x00, // lea rdi, [rip + 0x12] (ts)
    0x31, 0xf6, // xor esi, esi
    0x0f, 0x05, // syscall
    0x41, 0xff, 0xcc, // dec r12d
    0x75, 0xa8, // jnz 1b
    0xb8, 0x3c, 0x00, 0x00, 0x00, // mov eax, 60
    0x31, 0xff, // xor edi, edi
    0x0f, 0x05, // syscall
    0, 0, 0, 0, 0, 0, 0, 0, // ts: 0 s
    0x40, 0x42, 0x0f, 0, 0, 0, 0, 0, // 1 000 000 ns
];

/// The ELF around [`DIRTIER_CODE`].
fn dirtier_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    /// From BASE to the end of the 128 pages at 0x402000.
    const MEM_SIZE: u64 = 0x2000 + 128 * 4096;
    let file_size = HEADERS + DIRTIER_CODE.len() as u64;
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF");
    elf.extend([2, 1, 1, 0]); // 64-bit, little endian, version 1, System V
    elf.extend([0u8; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // x86-64
    elf.extend(1u32.to_le_bytes());
    elf.extend((BASE + HEADERS).to_le_bytes()); // entry: the code after the headers
    elf.extend(64u64.to_le_bytes()); // program headers right after this one
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        elf.extend(v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(7u32.to_le_bytes()); // read, write, execute
    elf.extend(0u64.to_le_bytes()); // from file offset 0
    elf.extend(BASE.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(file_size.to_le_bytes());
    elf.extend(MEM_SIZE.to_le_bytes());
    elf.extend(0x1000u64.to_le_bytes());
    elf.extend(DIRTIER_CODE);
    elf
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

// ---------------------------------------------------------------------------------------
// The TCP stream vm3 -> guest
// ---------------------------------------------------------------------------------------

/// Byte `i` of the stream (deterministic, not compressible).
fn stream_byte(i: usize) -> u8 {
    ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8
}

/// What the writer did.
struct StreamEnd {
    sent: Vec<u8>,
    error: Option<String>,
    /// The longest a single write blocked.
    longest_write: Duration,
}

/// A paced TCP stream from a socket made in vm3's namespace to the guest. Dropping it stops
/// the writer (the socket shut down both ways) and joins it.
struct Stream {
    socket: TcpStream,
    stop: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<StreamEnd>>,
}

impl Stream {
    /// Connects from namespace `ns` (retrying until the guest listens) and starts writing.
    fn start(ns: &str, dst: SocketAddr) -> Result<Stream, String> {
        let socket = wait_until("vm3 to connect to the guest", RESUME_TIMEOUT, || {
            in_netns(ns, || {
                TcpStream::connect_timeout(&dst, Duration::from_secs(2))
            })
        })?;
        socket
            .set_write_timeout(Some(STREAM_WRITE_TIMEOUT))
            .and_then(|_| socket.set_nodelay(true))
            .map_err(|e| format!("stream socket: {e}"))?;
        let mut w = socket.try_clone().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = thread::spawn(move || {
            let mut end = StreamEnd {
                sent: Vec::new(),
                error: None,
                longest_write: Duration::ZERO,
            };
            let deadline = Instant::now() + STREAM_MAX;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                let base = end.sent.len();
                let chunk: Vec<u8> = (base..base + STREAM_CHUNK).map(stream_byte).collect();
                let mut off = 0;
                let t = Instant::now();
                while off < chunk.len() {
                    match w.write(&chunk[off..]) {
                        Ok(0) => {
                            end.error = Some("write returned 0".into());
                            break;
                        }
                        Ok(n) => {
                            end.sent.extend_from_slice(&chunk[off..off + n]);
                            off += n;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            end.error = Some(format!(
                                "write after {} bytes ({:.1?} blocked): {e}",
                                end.sent.len(),
                                t.elapsed()
                            ));
                            break;
                        }
                    }
                }
                end.longest_write = end.longest_write.max(t.elapsed());
                if end.error.is_some() {
                    break;
                }
                thread::sleep(STREAM_EVERY);
            }
            end
        });
        Ok(Stream {
            socket,
            stop,
            writer: Some(writer),
        })
    }

    /// Stops writing and closes our sending side (the guest's nc sees the end).
    fn finish(&mut self) -> Result<StreamEnd, String> {
        self.stop.store(true, Ordering::Relaxed);
        let end = self
            .writer
            .take()
            .ok_or("stream already finished")?
            .join()
            .map_err(|_| "the stream's writer panicked".to_string())?;
        self.socket
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("stream shutdown: {e}"))?;
        Ok(end)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The parked stream's sender: connected early, writes [`PARKED_BYTES`] when told to.
struct Parked {
    socket: TcpStream,
    go: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<Result<Vec<u8>, String>>>,
}

impl Parked {
    fn connect(ns: &str, dst: SocketAddr) -> Result<Parked, String> {
        let socket = wait_until("vm3 to connect the parked stream", RESUME_TIMEOUT, || {
            in_netns(ns, || {
                TcpStream::connect_timeout(&dst, Duration::from_secs(2))
            })
        })?;
        socket
            .set_write_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| format!("parked socket: {e}"))?;
        let mut w = socket.try_clone().map_err(|e| e.to_string())?;
        let go = Arc::new(AtomicBool::new(false));
        let go2 = go.clone();
        let writer = thread::spawn(move || {
            let deadline = Instant::now() + STREAM_MAX;
            while !go2.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    return Err("never told to send".to_string());
                }
                thread::sleep(Duration::from_millis(5));
            }
            // Different bytes from the main stream's.
            let blob: Vec<u8> = (0..PARKED_BYTES).map(|i| stream_byte(i + 12345)).collect();
            w.write_all(&blob)
                .map_err(|e| format!("parked stream: {e}"))?;
            Ok(blob)
        });
        Ok(Parked {
            socket,
            go,
            writer: Some(writer),
        })
    }

    fn send(&self) {
        self.go.store(true, Ordering::Relaxed);
    }

    /// Waits for the blob to be written (the guest drains it once the main stream ended) and
    /// closes the sending side.
    fn finish(&mut self) -> Result<Vec<u8>, String> {
        self.send();
        let blob = self
            .writer
            .take()
            .ok_or("parked stream already finished")?
            .join()
            .map_err(|_| "the parked stream's writer panicked".to_string())??;
        self.socket
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("parked shutdown: {e}"))?;
        Ok(blob)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        // Unblocks a waiting or blocked writer.
        self.go.store(true, Ordering::Relaxed);
        let _ = self.socket.shutdown(Shutdown::Both);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// MD5 (hex) of `data`, by `md5sum` on a scratch file `name`.
fn md5(scratch: &Scratch, name: &str, data: &[u8]) -> Result<String, String> {
    let path = scratch.path(name);
    std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(
        support::run_args("md5sum", &[path.display().to_string()], READY_TIMEOUT)?
            .check()?
            .stdout
            .chars()
            .take(32)
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// Ping -D output
// ---------------------------------------------------------------------------------------

/// iputils `ping -D` output, parsed.
#[derive(Debug, Default)]
struct PingRun {
    transmitted: u64,
    /// (icmp_seq, unix time of the answer), first answer per sequence number.
    answers: Vec<(u64, f64)>,
}

impl PingRun {
    fn parse(out: &str) -> Result<PingRun, String> {
        let mut run = PingRun::default();
        let mut seen = BTreeSet::new();
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix('[') {
                let Some((ts, tail)) = rest.split_once(']') else {
                    continue;
                };
                let seq = tail
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("icmp_seq="))
                    .and_then(|s| s.parse::<u64>().ok());
                if let (Ok(ts), Some(seq)) = (ts.parse::<f64>(), seq) {
                    if tail.contains(" bytes from ") && seen.insert(seq) {
                        run.answers.push((seq, ts));
                    }
                }
            } else if l.contains(" packets transmitted") {
                run.transmitted = l
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("ping summary {l:?}"))?;
            }
        }
        if run.transmitted == 0 {
            return Err(format!("no ping summary in:\n{out}"));
        }
        Ok(run)
    }

    fn lost(&self) -> u64 {
        self.transmitted.saturating_sub(self.answers.len() as u64)
    }

    /// The longest time between two consecutive answers: (gap, time of the answer before it).
    fn longest_gap(&self) -> (Duration, f64) {
        let mut by_time: Vec<f64> = self.answers.iter().map(|a| a.1).collect();
        by_time.sort_by(f64::total_cmp);
        by_time
            .windows(2)
            .map(|w| (Duration::from_secs_f64((w[1] - w[0]).max(0.0)), w[0]))
            .max_by_key(|g| g.0)
            .unwrap_or((Duration::ZERO, 0.0))
    }

    /// The longest run of unanswered sequence numbers (1-based ping sequence numbers).
    fn longest_missing_run(&self) -> u64 {
        let got: BTreeSet<u64> = self.answers.iter().map(|a| a.0).collect();
        let (mut best, mut cur) = (0, 0);
        for seq in 1..=self.transmitted {
            if got.contains(&seq) {
                cur = 0;
            } else {
                cur += 1;
                best = best.max(cur);
            }
        }
        best
    }

    /// Whether the `n` sequence numbers before the last `in_flight` were all answered.
    fn tail_answered(&self, n: u64, in_flight: u64) -> Result<(), String> {
        let got: BTreeSet<u64> = self.answers.iter().map(|a| a.0).collect();
        let end = self.transmitted.saturating_sub(in_flight);
        let start = end.saturating_sub(n) + 1;
        let missing: Vec<u64> = (start..=end).filter(|s| !got.contains(s)).collect();
        ensure(end >= n && missing.is_empty(), || {
            format!(
                "of pings {start}..={end} (of {} sent) unanswered: {missing:?}",
                self.transmitted
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

/// `GET /metrics` of a daemon's `--metrics-addr 127.0.0.1:<port>`.
fn scrape(port: u16) -> Result<String, String> {
    support::scrape_metrics(port)
}

/// Packets that entered graph node `node` (`dpservice_node_packets_total{node="…"}`).
fn node_packets(port: u16, node: &str) -> Result<u64, String> {
    let text = scrape(port)?;
    let key = format!("dpservice_node_packets_total{{node=\"{node}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {key:?} in the metrics of port {port}"))
}

/// The daemon's drops, per node and reason, where there were any (`dpservice_drops_total`):
/// `node/reason=count`.
fn drops(port: u16) -> Result<Vec<String>, String> {
    let text = scrape(port)?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("dpservice_drops_total{"))
        .filter_map(|l| {
            let (labels, n) = l.split_once("} ")?;
            let get = |k: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
            };
            Some(format!("{}/{}={}", get("node")?, get("reason")?, n.trim()))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

/// The latest `GUEST: rx <uptime> <bytes> [<parked recv-q>]` of a console: bytes of the main
/// stream received so far, and the parked stream's receive queue.
fn latest_rx(g: &Guest) -> Option<(u64, Option<u64>)> {
    g.guest_lines().iter().rev().find_map(|l| {
        let mut w = l.strip_prefix("rx ")?.split_whitespace().skip(1);
        let bytes = w.next()?.parse().ok()?;
        Some((bytes, w.next().and_then(|q| q.parse().ok())))
    })
}

/// Waits for QEMU's `query-migrate` to report an end state (polling every 20 ms, at most
/// [`MIGRATION_TIMEOUT`]); returns its last answer. `progress` sees every answer while it runs
/// (and may send commands of its own).
fn wait_migration(
    qmp: &mut Qmp,
    mut progress: impl FnMut(&mut Qmp, &serde_json::Value) -> Result<(), String>,
) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let r = qmp.execute("query-migrate", None)?;
        match r.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(r),
            Some(s @ ("failed" | "cancelled")) => return Err(format!("migration {s}: {r}")),
            _ if Instant::now() >= deadline => {
                return Err(format!(
                    "the migration did not complete within {MIGRATION_TIMEOUT:?}: {r}"
                ))
            }
            _ => progress(qmp, &r)?,
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// QEMU's `query-status` `status` field.
fn run_state(qmp: &mut Qmp) -> Result<String, String> {
    let r = qmp.execute("query-status", None)?;
    r.get("status")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("query-status: {r}"))
}

#[test]
fn vhost_user_guest_live_migrates_to_another_hypervisor() {
    const TEST: &str = "vhost_user_guest_live_migrates_to_another_hypervisor";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip", "ping", "md5sum"]) else {
        return;
    };
    let t0 = Instant::now();
    let (n1, n2) = (Names::new(), Names::new());
    let scratch = Scratch::new(&n1).unwrap_or_else(|e| panic!("{e}"));
    let (vu1, vu2) = (
        scratch.path("hv1-vhost-user"),
        scratch.path("hv2-vhost-user"),
    );
    let (p1, p2) = (support::free_port(), support::free_port());
    let (m1, m2) = (support::free_port(), support::free_port());
    let (metrics1, metrics2) = (format!("127.0.0.1:{m1}"), format!("127.0.0.1:{m2}"));
    let (vu1s, vu2s) = (vu1.display().to_string(), vu2.display().to_string());
    // hv1: VF 0 vhost-user (the guest), VF 1 a TAP (vm3). hv2: VF 0 vhost-user (the target).
    let a1 = hypervisor_args(
        &n1,
        2,
        p1,
        HV1_IPV6,
        ROUTER_LL,
        &[
            "--vhost-user",
            &vu1s,
            "--vhost-user-vfs",
            "1",
            "--metrics-addr",
            &metrics1,
        ],
    );
    let hv1 = Daemon::start(
        &a1,
        p1,
        vec![n1.pf0(), n1.pf1(), n1.vf(VM3_VF)],
        scratch.path("hv1.log"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a2 = hypervisor_args(
        &n2,
        1,
        p2,
        HV2_IPV6,
        ROUTER_LL,
        &["--vhost-user", &vu2s, "--metrics-addr", &metrics2],
    );
    let hv2 = Daemon::start(&a2, p2, vec![n2.pf0(), n2.pf1()], scratch.path("hv2.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut router = Router::new(&n1.netns("rtr")).unwrap_or_else(|e| panic!("{e}"));
    // Dropped in reverse order of declaration: traffic first, then the QEMUs, then vm3.
    let mut vm3: Option<Vm> = None;
    let mut qemu_a: Option<Guest> = None;
    let mut qemu_b: Option<Guest> = None;
    let mut ping: Option<Background> = None;
    let mut stream: Option<Stream> = None;
    let mut parked: Option<Parked> = None;

    let result = (|| -> Result<(), String> {
        let (hv1_links, hv2_links) = ([n1.pf0(), n1.pf1()], [n2.pf0(), n2.pf1()]);
        let hv1_links: Vec<&str> = hv1_links.iter().map(String::as_str).collect();
        let hv2_links: Vec<&str> = hv2_links.iter().map(String::as_str).collect();
        for l in hv1_links.iter().chain(&hv2_links) {
            router.attach(l)?;
        }
        // Per /128: both hosts share a /64 (docs/migration.md).
        router.set_route(&format!("{HV1_IPV6}/128"), &hv1_links)?;
        router.set_route(&format!("{HV2_IPV6}/128"), &hv2_links)?;
        for ul in [HV1_IPV6, HV2_IPV6] {
            wait_until(&format!("the router to ping {ul}"), READY_TIMEOUT, || {
                router.ping(ul)?.check().map(|_| ())
            })?;
        }
        step!("hv1 {HV1_IPV6} and hv2 {HV2_IPV6} up (one /64), the router reaches both");

        let (mut api1, mut api2) = (Api::connect(p1)?, Api::connect(p2)?);
        api1.init()?;
        api2.init()?;

        // (1) hv1: the guest's interface on its vhost-user VF 0, vm3 on its TAP VF 1.
        let (guest_dev1, vm3_dev, guest_dev2) = (n1.vf(GUEST_VF), n1.vf(VM3_VF), n2.vf(GUEST_VF));
        let r = api1.create_interface_with_underlay(
            &IfaceSpec {
                id: GUEST_ID,
                vni: VNI,
                ipv4: GUEST_IPV4,
                ipv6: GUEST_IPV6,
                device: &guest_dev1,
                hostname: None,
            },
            GUEST_UNDERLAY,
        )?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route).map_err(|e| e.to_string())?;
        ensure(ul == GUEST_UNDERLAY, || {
            format!("hv1 gave {GUEST_ID} underlay {ul}, asked for {GUEST_UNDERLAY}")
        })?;
        let r = api1.create_interface_with_underlay(
            &IfaceSpec {
                id: VM3_ID,
                vni: VNI,
                ipv4: VM3_IPV4,
                ipv6: VM3_IPV6,
                device: &vm3_dev,
                hostname: None,
            },
            VM3_UNDERLAY,
        )?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route).map_err(|e| e.to_string())?;
        ensure(ul == VM3_UNDERLAY, || {
            format!("hv1 gave {VM3_ID} underlay {ul}, asked for {VM3_UNDERLAY}")
        })?;
        router.set_route(&format!("{GUEST_UNDERLAY}/128"), &hv1_links)?;
        router.set_route(&format!("{VM3_UNDERLAY}/128"), &hv1_links)?;
        step!("hv1: {GUEST_ID} {GUEST_IPV4} on {guest_dev1} ({GUEST_UNDERLAY}), {VM3_ID} {VM3_IPV4} on {vm3_dev} ({VM3_UNDERLAY})");

        let vm = vm3.insert(Vm::new(VM3_ID, &n1.netns(VM3_ID), &vm3_dev)?);
        let lease = vm.udhcpc(&scratch)?;
        ensure(
            lease.get("ip").map(String::as_str) == Some(&VM3_IPV4.to_string()),
            || format!("{VM3_ID}: udhcpc got {lease:?}"),
        )?;

        let sock1 = vu1.join(&guest_dev1);
        wait_until("hv1's vhost-user socket", READY_TIMEOUT, || {
            ensure(is_socket(&sock1), || format!("no {}", sock1.display()))
        })?;
        let mut spec = GuestSpec::new(&guest_mac(&n1, GUEST_VF as u8));
        spec.pings = vec![VM3_IPV4.to_string()];
        spec.ping_wait = 60;
        spec.commands = vec![receiver_command()];
        spec.files = vec![
            ("bin/dirtier".into(), dirtier_elf()),
            ("bin/parked".into(), PARKED_SCRIPT.as_bytes().to_vec()),
        ];
        spec.command_timeout = 250;
        spec.watchdog = 280;
        spec.linger = 30;
        let a = qemu_a.insert(Guest::boot_with(
            "qvm1-a",
            &kernel,
            &spec,
            &Backend::VhostUser {
                socket: sock1.clone(),
            },
            &scratch,
            &QemuOptions {
                qmp: Some(scratch.path("qvm1-a.qmp")),
                incoming: None,
            },
        )?);
        let ip = a.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
        ensure(ip == format!("{GUEST_IPV4}/32"), || {
            format!("{GUEST_ID} got {ip} by DHCP")
        })?;
        step!(
            "QEMU A: {GUEST_ID} on hv1's {}, ip={ip} by DHCP {:.1?} after start",
            sock1.display(),
            a.started.elapsed()
        );
        let r = a.wait_line(&format!("GUEST: ping {VM3_IPV4} "), BOOT_TIMEOUT)?;
        ensure(r.starts_with("ok"), || {
            format!("{GUEST_ID} ping {VM3_IPV4}: {r}")
        })?;
        a.wait_line("GUEST: listening", BOOT_TIMEOUT)?;
        let mut qmp_a = a.qmp(Duration::from_secs(10))?;
        ensure(run_state(&mut qmp_a)? == "running", || {
            "QEMU A not running".into()
        })?;

        // The measurement: pings every 10 ms and the TCP stream, from vm3.
        let guest_ip = GUEST_IPV4.to_string();
        ping = Some(Background::spawn(
            &mut vm.ns.command(&[
                "ping", "-D", "-n", "-i", "0.01", "-W", "1", "-w", "240", &guest_ip,
            ]),
            &scratch.path("ping"),
        )?);
        stream = Some(Stream::start(
            &vm.ns.name,
            SocketAddr::new(IpAddr::V4(GUEST_IPV4), STREAM_PORT),
        )?);
        let parked = parked.insert(Parked::connect(
            &vm.ns.name,
            SocketAddr::new(IpAddr::V4(GUEST_IPV4), PARKED_PORT),
        )?);
        thread::sleep(BEFORE);
        let rx_before = latest_rx(a).map_or(0, |r| r.0);
        ensure(rx_before > 0, || {
            format!("the guest received nothing of the stream in {BEFORE:?}")
        })?;
        step!(
            "{VM3_ID} -> {GUEST_ID}: ping -i 0.01 and a TCP stream running ({rx_before} bytes in)"
        );

        // (2) QEMU B on hv2's socket, waiting for the migration stream.
        let sock2 = vu2.join(&guest_dev2);
        wait_until("hv2's vhost-user socket", READY_TIMEOUT, || {
            ensure(is_socket(&sock2), || format!("no {}", sock2.display()))
        })?;
        let migration_sock = scratch.path("migration.sock");
        let b = qemu_b.insert(a.migration_target(
            "qvm1-b",
            &Backend::VhostUser {
                socket: sock2.clone(),
            },
            &scratch,
            &QemuOptions {
                qmp: Some(scratch.path("qvm1-b.qmp")),
                incoming: Some(format!("unix:{}", migration_sock.display())),
            },
        )?);
        let mut qmp_b = b.qmp(Duration::from_secs(30))?;
        let state = run_state(&mut qmp_b)?;
        ensure(state == "inmigrate", || {
            format!("QEMU B is {state:?}, not waiting for the migration")
        })?;
        wait_until("QEMU B's migration socket", READY_TIMEOUT, || {
            ensure(is_socket(&migration_sock), || "not yet".into())
        })?;
        step!("QEMU B on hv2's {}: inmigrate", sock2.display());

        // (3) hv2: the same interface with the same underlay address; a route to vm3.
        let r = api2.create_interface_with_underlay(
            &IfaceSpec {
                id: GUEST_ID,
                vni: VNI,
                ipv4: GUEST_IPV4,
                ipv6: GUEST_IPV6,
                device: &guest_dev2,
                hostname: None,
            },
            GUEST_UNDERLAY,
        )?;
        let ul = dp_proto::ipv6_from_bytes(&r.underlay_route).map_err(|e| e.to_string())?;
        ensure(ul == GUEST_UNDERLAY, || {
            format!("hv2 gave {GUEST_ID} underlay {ul}, asked for {GUEST_UNDERLAY}")
        })?;
        api2.create_route(VNI, IpAddr::V4(VM3_IPV4), 32, VNI, VM3_UNDERLAY)?;
        step!("hv2: {GUEST_ID} on {guest_dev2} with underlay {GUEST_UNDERLAY}; {VM3_IPV4}/32 -> {VM3_UNDERLAY}");

        // (4) QEMU A migrates to QEMU B: held in its pre-copy passes (downtime-limit 1 ms)
        // until the parked stream arrived after the first pass and QEMU made two more passes,
        // then let converge (300 ms).
        qmp_a.execute(
            "migrate-set-parameters",
            Some(serde_json::json!({
                "max-bandwidth": MIGRATION_BANDWIDTH,
                "downtime-limit": HOLD_DOWNTIME_MS,
            })),
        )?;
        let t_migrate = unix_now();
        let started = Instant::now();
        qmp_a.execute(
            "migrate",
            Some(serde_json::json!({ "uri": format!("unix:{}", migration_sock.display()) })),
        )?;
        // (time, dirty-sync count) when the parked stream went, when the guest had it in its
        // receive queue, and when QEMU was let go.
        let mut held = false;
        let mut parked_at: Option<(f64, u64)> = None;
        let mut queued_at: Option<(f64, u64)> = None;
        let mut released_at: Option<(f64, u64)> = None;
        let guest_a: &Guest = a;
        let info = wait_migration(&mut qmp_a, |qmp, r| {
            let ram = |k: &str| r["ram"].get(k).and_then(|v| v.as_u64());
            let (Some(syncs), Some(remaining)) = (ram("dirty-sync-count"), ram("remaining")) else {
                return Ok(());
            };
            // One sync at the start, one after the first pass.
            if !held && (syncs >= 2 || remaining < FIRST_PASS_TAIL) {
                qmp.execute(
                    "migrate-set-parameters",
                    Some(serde_json::json!({ "max-bandwidth": HOLD_BANDWIDTH })),
                )?;
                held = true;
            }
            match (parked_at, queued_at, released_at) {
                (None, _, _) if syncs >= PARKED_SYNC && remaining < PARKED_REMAINING => {
                    parked.send();
                    parked_at = Some((unix_now(), syncs));
                }
                (Some(_), None, _)
                    if latest_rx(guest_a).and_then(|r| r.1).is_some_and(|q| q > 0) =>
                {
                    queued_at = Some((unix_now(), syncs));
                }
                (Some(_), Some((_, at)), None) if syncs >= at + PASSES_AFTER_PARKED => {
                    qmp.execute(
                        "migrate-set-parameters",
                        Some(serde_json::json!({
                            "downtime-limit": DOWNTIME_MS,
                            "max-bandwidth": FINAL_BANDWIDTH,
                        })),
                    )?;
                    released_at = Some((unix_now(), syncs));
                }
                _ => {}
            }
            Ok(())
        })?;
        let (
            Some((parked_at, parked_sync)),
            Some((queued_at, queued_sync)),
            Some((released_at, _)),
        ) = (parked_at, queued_at, released_at)
        else {
            return Err(format!(
                "QEMU converged before the parked stream was sent, queued in the guest and \
                 copied again (parked {parked_at:?}, queued {queued_at:?}, released \
                 {released_at:?}): {info}"
            ));
        };
        let migration_time = started.elapsed();
        let t_completed = unix_now();
        let ms = |k: &str| info.get(k).and_then(|v| v.as_u64());
        let ram = |k: &str| info["ram"].get(k).and_then(|v| v.as_u64());
        step!(
            "migration completed: {migration_time:.1?} (QEMU: total-time {:?} ms, downtime {:?} \
             ms, setup-time {:?} ms, {:?} bytes of RAM sent, {:?} dirty syncs, {:?} pages \
             dirtied per second at the end); parked stream sent at {:+.2} s (after sync \
             {parked_sync}), in the guest's receive queue at {:+.2} s (sync {queued_sync}), \
             converging from {:+.2} s",
            ms("total-time"),
            ms("downtime"),
            ms("setup-time"),
            ram("transferred"),
            ram("dirty-sync-count"),
            ram("dirty-pages-rate"),
            parked_at - t_migrate,
            queued_at - t_migrate,
            released_at - t_migrate,
        );
        wait_until("QEMU B to run the guest", Duration::from_secs(10), || {
            let s = run_state(&mut qmp_b)?;
            ensure(s == "running", || s)
        })?;
        let a_state = run_state(&mut qmp_a)?;

        // (5) hv1: the interface goes, a route to it (now behind hv2) in its place; the router
        // follows the announcement of its /128.
        api1.delete_interface(GUEST_ID)?;
        api1.create_route(VNI, IpAddr::V4(GUEST_IPV4), 32, VNI, GUEST_UNDERLAY)?;
        router.set_route(&format!("{GUEST_UNDERLAY}/128"), &hv2_links)?;
        let t_switch = unix_now();
        let (rx_switch, queue_switch) = latest_rx(b).or(latest_rx(a)).unwrap_or((0, None));
        step!(
            "switched {:.0} ms after `completed`: hv1 {GUEST_ID} deleted, {GUEST_IPV4}/32 -> \
             {GUEST_UNDERLAY}; router {GUEST_UNDERLAY}/128 via hv2 (QEMU A: {a_state})",
            (t_switch - t_completed) * 1000.0
        );
        let _ = qmp_a.execute("quit", None);
        let _ = qemu_a
            .take()
            .map(|mut a| a.wait_poweroff(Duration::from_secs(10)));

        // The stream goes on behind hv2.
        let b = qemu_b.as_mut().expect("started");
        let resumed = wait_until(
            "the stream to move again",
            RESUME_TIMEOUT,
            || match latest_rx(b) {
                Some((n, q)) if n > rx_switch => Ok((n, q)),
                n => Err(format!("guest received {n:?}, {rx_switch} at the switch")),
            },
        )?;
        let t_resumed = unix_now();
        step!(
            "stream moving on hv2: {} bytes in, {:.1} s after the switch; parked stream: {:?} \
             bytes unread in the guest at the switch, {:?} after",
            resumed.0,
            t_resumed - t_switch,
            queue_switch,
            resumed.1
        );
        let left = Duration::from_secs_f64((t_switch + AFTER.as_secs_f64() - unix_now()).max(0.0));
        thread::sleep(left);

        // The end: ping's numbers, the stream's, the guest's view.
        let out = ping
            .take()
            .expect("started")
            .stop(libc::SIGINT, Duration::from_secs(5))?;
        let run = PingRun::parse(&out.stdout)?;
        let end = stream.as_mut().expect("started").finish()?;
        let md5 = md5(&scratch, "stream.bin", &end.sent)?;
        let received = b.wait_line("GUEST: received ", Duration::from_secs(30))?;
        let blob = parked.finish()?;
        let blob_md5 = self::md5(&scratch, "parked.bin", &blob)?;
        let parked_got = b.wait_line("GUEST: parked ", Duration::from_secs(30))?;
        let addr = b.wait_line("GUEST: addr ", Duration::from_secs(10))?;

        let lost = run.lost();
        let loss = 100.0 * lost as f64 / run.transmitted as f64;
        let (gap, gap_at) = run.longest_gap();
        step!(
            "RESULT pings: {} sent, {} answered, {lost} lost ({loss:.1} %), longest gap {:.0} ms \
             ({:+.2} s .. {:+.2} s from `migrate`; `completed` at {:+.2} s, switch at {:+.2} s), \
             longest run of unanswered pings {}",
            run.transmitted,
            run.answers.len(),
            gap.as_secs_f64() * 1000.0,
            gap_at - t_migrate,
            gap_at + gap.as_secs_f64() - t_migrate,
            t_completed - t_migrate,
            t_switch - t_migrate,
            run.longest_missing_run()
        );
        step!(
            "RESULT migration: {:.0} ms (QEMU total-time {:?} ms, downtime {:?} ms)",
            migration_time.as_secs_f64() * 1000.0,
            ms("total-time"),
            ms("downtime")
        );
        step!(
            "RESULT parked stream: {} bytes sent (MD5 {blob_md5}) during the migration, {:?} \
             of them unread in guest memory at the switch; guest read {parked_got}",
            blob.len(),
            queue_switch
        );
        step!(
            "RESULT stream: {} bytes sent (MD5 {md5}), guest received {received}; moving again \
             {:.1} s after the switch; longest blocked write {:.1?}{}",
            end.sent.len(),
            t_resumed - t_switch,
            end.longest_write,
            end.error
                .as_ref()
                .map(|e| format!("; writer error: {e}"))
                .unwrap_or_default()
        );

        // The guest kept its address and asked nobody for it: hv2's DHCP node saw no packet
        // (hv1's did, at boot).
        let (dhcp1, dhcp2) = (node_packets(m1, "dhcp")?, node_packets(m2, "dhcp")?);
        let b_dhcp: Vec<String> = b
            .guest_lines()
            .into_iter()
            .filter(|l| l.starts_with("ip=") || l.starts_with("dhcp"))
            .collect();
        let (drops1, drops2) = (drops(m1)?, drops(m2)?);
        step!("RESULT drops: hv1 {drops1:?}; hv2 {drops2:?}");
        // vm3's flows to the moved guest follow it at once: none is refused for naming the
        // deleted interface (conntrack remakes such a flow on its next packet).
        ensure(
            !drops1.iter().any(|d| d.contains("/firewall_denied=")),
            || format!("hv1 refused flows to the moved guest: {drops1:?}"),
        )?;
        step!(
            "RESULT DHCP: packets into the dhcp node: hv1 {dhcp1}, hv2 {dhcp2}; guest address \
             at the end {addr}"
        );

        ensure(end.error.is_none(), || {
            format!("the TCP stream broke: {:?}", end.error)
        })?;
        ensure(received == format!("{} {md5}", end.sent.len()), || {
            format!(
                "sent {} bytes {md5}, the guest received {received}",
                end.sent.len()
            )
        })?;
        ensure(parked_got == format!("{} {blob_md5}", blob.len()), || {
            format!(
                "parked stream: sent {} bytes {blob_md5}, the guest read {parked_got} (memory \
                 the backend wrote during the migration did not reach hv2: dirty log?)",
                blob.len()
            )
        })?;
        ensure(addr == format!("{GUEST_IPV4}/32"), || {
            format!("the guest has {addr:?} at the end")
        })?;
        ensure(dhcp1 > 0 && dhcp2 == 0 && b_dhcp.is_empty(), || {
            format!("DHCP after the migration: hv1 {dhcp1}, hv2 {dhcp2}, guest {b_dhcp:?}")
        })?;
        run.tail_answered(TAIL_ANSWERED, TAIL_IN_FLIGHT)
            .map_err(|e| format!("pings did not come back after the migration: {e}"))?;
        ensure(loss < MAX_LOSS_PERCENT, || {
            format!("{loss:.1} % of the pings lost (bound {MAX_LOSS_PERCENT} %)")
        })?;
        ensure(gap < MAX_GAP, || {
            format!("longest gap between answers {gap:.1?} (bound {MAX_GAP:?})")
        })
    })();
    if let Err(e) = result {
        let guests: Vec<String> = qemu_a
            .iter()
            .chain(qemu_b.iter())
            .map(Guest::report)
            .collect();
        let vm = vm3.as_ref().map(Vm::report).unwrap_or_default();
        let ping = ping
            .as_ref()
            .map(|p| format!("--- ping:\n{}{}", tail_str(&p.stdout(), 20), p.stderr()))
            .unwrap_or_default();
        panic!(
            "{e}\n{}\n{vm}\n{ping}\n{}\n{}\n{}",
            guests.join("\n"),
            router.report(),
            hv1.report(),
            hv2.report()
        );
    }
    drop(parked);
    drop(stream);
    drop(ping);
    drop(qemu_b);
    drop(qemu_a);
    drop(vm3);
    drop(hv1);
    drop(hv2);
    drop(router);
    step!("whole test {:.1?}", t0.elapsed());
}

fn tail_str(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let mut t = lines[lines.len().saturating_sub(n)..].join("\n");
    t.push('\n');
    t
}
