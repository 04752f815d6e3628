//! Helpers for the system tests: the real `dpservice` daemon on TAP ports, VMs as
//! network namespaces, stock DHCP clients and `ping`.
//!
//! Rules every helper follows:
//! * every wait is bounded (a timeout of seconds, then an error that says what was awaited);
//! * everything created is owned by a guard whose `Drop` removes it, on success and on panic;
//! * names are unique per run (`Names`), so parallel tests and leftovers of killed runs do not
//!   collide; interface names stay within the kernel's 15 characters.
#![allow(dead_code, unused_macros)] // each test binary uses a part of the support

pub mod api;
pub mod capture;
pub mod cli;
pub mod daemon;
pub mod guest;
pub mod underlay;
pub mod vm;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The daemon under test, built by cargo for this test target.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_dpservice");

/// Skips the calling test (it passes, printing `SKIPPED`) unless we are root and every listed
/// tool is installed. Use only at the very start of a test. With
/// `DPSERVICE_REQUIRE_SYSTEM_TESTS=1` (scripts/test.sh as root, CI) a skip is a failure instead.
macro_rules! skip_unless_ready {
    ($test:expr, $tools:expr) => {
        if let Some(reason) = $crate::support::skip_reason($tools) {
            if $crate::support::system_tests_required() {
                panic!(
                    "{}: cannot run: {} (and DPSERVICE_REQUIRE_SYSTEM_TESTS=1 forbids skipping)",
                    $test, reason
                );
            }
            eprintln!("SKIPPED {}: {}", $test, reason);
            return;
        }
    };
}

/// Whether skipping is forbidden (`DPSERVICE_REQUIRE_SYSTEM_TESTS=1`).
pub fn system_tests_required() -> bool {
    std::env::var("DPSERVICE_REQUIRE_SYSTEM_TESTS").is_ok_and(|v| v == "1")
}

/// Why the system tests cannot run here, `None` if they can.
/// `tools` are program names; `"udhcpc"` is also satisfied by busybox's applet, and the
/// pseudo-tool `"ipv6"` asks for a kernel with IPv6 enabled.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("system tests need root (TAP devices, network namespaces)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    let mut missing = Vec::new();
    for tool in tools {
        let found = match *tool {
            "udhcpc" => udhcpc_command().is_some(),
            "ipv6" => Path::new("/proc/sys/net/ipv6").exists(),
            t => which(t).is_some(),
        };
        if !found {
            missing.push(*tool);
        }
    }
    if !missing.is_empty() {
        return Some(format!(
            "missing tools: {} (scripts/test.sh installs them)",
            missing.join(", ")
        ));
    }
    None
}

/// Full path of `prog` on PATH or in the sbin directories (non-login root shells may lack them).
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file());
    found
}

/// The command to run busybox's DHCP client: `udhcpc` or `busybox udhcpc`.
pub fn udhcpc_command() -> Option<Vec<String>> {
    if let Some(p) = which("udhcpc") {
        return Some(vec![p.display().to_string()]);
    }
    let bb = which("busybox")?;
    let applets = Command::new(&bb).arg("--list").output().ok()?;
    String::from_utf8_lossy(&applets.stdout)
        .lines()
        .any(|l| l.trim() == "udhcpc")
        .then(|| vec![bb.display().to_string(), "udhcpc".into()])
}

/// Names unique to one test of one run: `tag` is `d` + 5 hex digits of the pid + a counter +
/// 2 characters of the clock, e.g. `d1f3a20k7` (≤ 10 chars, so `<tag>v0` etc. fit IFNAMSIZ).
#[derive(Debug, Clone)]
pub struct Names {
    pub tag: String,
}

impl Names {
    pub fn new() -> Self {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        const B36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) as usize;
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_micros() as usize)
            .unwrap_or(0);
        let tag = format!(
            "d{:05x}{}{}{}",
            std::process::id() & 0xfffff,
            B36[n % 36] as char,
            B36[clock % 36] as char,
            B36[(clock / 36) % 36] as char,
        );
        Names { tag }
    }
    pub fn pf0(&self) -> String {
        format!("{}p0", self.tag)
    }
    /// The daemon's `--dump-socket` (one per test: never the shared default path); swept with
    /// the scratch directories when its run was killed.
    pub fn dump_socket(&self) -> String {
        std::env::temp_dir()
            .join(format!(
                "{SCRATCH_PREFIX}{}-{}.dump.sock",
                std::process::id(),
                self.tag
            ))
            .to_string_lossy()
            .into_owned()
    }
    pub fn pf1(&self) -> String {
        format!("{}p1", self.tag)
    }
    /// `--vf-pattern`: the VF TAPs are `<vf_prefix>0 … <vf_prefix>N-1`.
    pub fn vf_prefix(&self) -> String {
        format!("{}v", self.tag)
    }
    pub fn vf(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }
    /// All TAPs a daemon with `vf_count` VFs must create.
    pub fn taps(&self, vf_count: usize) -> Vec<String> {
        let mut t = vec![self.pf0(), self.pf1()];
        t.extend((0..vf_count).map(|i| self.vf(i)));
        t
    }
    /// `dps-<pid>-<tag>-<vm>`: the pid lets a later run remove what a killed run left.
    pub fn netns(&self, vm: &str) -> String {
        format!("{NETNS_PREFIX}{}-{}-{vm}", std::process::id(), self.tag)
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

const NETNS_PREFIX: &str = "dps-";
const SCRATCH_PREFIX: &str = "dpservice-systest-";

/// The pid in `<prefix><pid>-…`, if the name is ours.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// Removes namespaces and scratch directories left by test runs that were killed (their pid
/// is gone), so leftovers never pile up. Only names of our own format are touched.
fn sweep_stale() {
    let alive = |pid: u32| Path::new("/proc").join(pid.to_string()).exists();
    if let Ok(o) = run_args("ip", &["netns", "list"], Duration::from_secs(5)) {
        for ns in o.stdout.lines().filter_map(|l| l.split_whitespace().next()) {
            if owner_pid(ns, NETNS_PREFIX).is_some_and(|p| !alive(p)) {
                if let Ok(p) = run_args("ip", &["netns", "pids", ns], Duration::from_secs(5)) {
                    for pid in p.stdout.split_whitespace().filter_map(|p| p.parse().ok()) {
                        signal(pid, libc::SIGKILL);
                    }
                }
                let _ = run_args("ip", &["netns", "del", ns], Duration::from_secs(5));
                let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
            }
        }
    }
    if let Ok(rd) = fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if owner_pid(&name, SCRATCH_PREFIX).is_some_and(|p| !alive(p)) {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
    }
}

/// Makes the child get SIGTERM if the test thread that spawned it dies (a killed test run
/// must not leave daemons or DHCP clients behind).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Does a network interface of this name exist in the host (root) namespace?
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Host-namespace interfaces whose name starts with `prefix`.
pub fn links_with_prefix(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A private temporary directory, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(names: &Names) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "{SCRATCH_PREFIX}{}-{}",
            std::process::id(),
            names.tag
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(Scratch { dir })
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn write(&self, name: &str, content: &str) -> Result<PathBuf, String> {
        let p = self.path(name);
        fs::write(&p, content).map_err(|e| format!("writing {}: {e}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Result of a finished command.
#[derive(Debug)]
pub struct Out {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    /// `Err` with the whole story unless the command succeeded.
    pub fn check(self) -> Result<Out, String> {
        if self.ok() {
            Ok(self)
        } else {
            Err(format!("{self}"))
        }
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout\n{}--- stderr\n{}---",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
}

/// Human-readable command line.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, killing it after `timeout`. Output goes through files, not pipes,
/// so a daemonizing grandchild cannot make us wait for EOF.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Out, String> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let line = cmdline(cmd);
    let base = std::env::temp_dir().join(format!(
        "{SCRATCH_PREFIX}{}-out-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let (po, pe) = (base.with_extension("out"), base.with_extension("err"));
    let fo = fs::File::create(&po).map_err(|e| format!("{}: {e}", po.display()))?;
    let fe = fs::File::create(&pe).map_err(|e| format!("{}: {e}", pe.display()))?;
    let spawned = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(fo))
        .stderr(Stdio::from(fe))
        .spawn();
    let result = match spawned {
        Err(e) => Err(format!("cannot run `{line}`: {e}")),
        Ok(mut child) => {
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(format!("`{line}` did not finish within {timeout:?}"));
                    }
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                    Err(e) => break Err(format!("waiting for `{line}`: {e}")),
                }
            }
        }
    };
    let stdout = fs::read_to_string(&po).unwrap_or_default();
    let stderr = fs::read_to_string(&pe).unwrap_or_default();
    let _ = fs::remove_file(&po);
    let _ = fs::remove_file(&pe);
    match result {
        Ok(status) => Ok(Out {
            cmdline: line,
            status,
            stdout,
            stderr,
        }),
        Err(e) => Err(format!("{e}\n--- stdout\n{stdout}--- stderr\n{stderr}---")),
    }
}

/// `run` of a program with arguments.
pub fn run_args<S: AsRef<std::ffi::OsStr>>(
    prog: &str,
    args: &[S],
    timeout: Duration,
) -> Result<Out, String> {
    run(Command::new(prog).args(args), timeout)
}

/// Polls `f` every 100 ms until it returns `Ok`, for at most `timeout`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last state: {e}"
                ))
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A TCP port that was free a moment ago (the kernel's choice of an ephemeral port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(41337)
}

/// The last `n` lines of a file (for failure reports).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut s = lines[start..].join("\n");
    s.push('\n');
    s
}

/// Sends `sig` to `pid` (a process this test started).
pub fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a pid we own; failure (already gone) is harmless.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// A process running in the background (an iperf3 server, a long ping, tcpdump), its stdout
/// and stderr going to files. Dropping it kills it (SIGKILL) and reaps it.
pub struct Background {
    child: Option<Child>,
    pub cmdline: String,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Background {
    /// Starts `cmd`, output to `<base>.out` and `<base>.err`; it gets SIGTERM if the test
    /// thread dies.
    pub fn spawn(cmd: &mut Command, base: &Path) -> Result<Background, String> {
        let stdout_path = base.with_extension("out");
        let stderr_path = base.with_extension("err");
        let fo = fs::File::create(&stdout_path)
            .map_err(|e| format!("{}: {e}", stdout_path.display()))?;
        let fe = fs::File::create(&stderr_path)
            .map_err(|e| format!("{}: {e}", stderr_path.display()))?;
        die_with_parent(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(fo))
            .stderr(Stdio::from(fe));
        let line = cmdline(cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{line}`: {e}"))?;
        Ok(Background {
            child: Some(child),
            cmdline: line,
            stdout_path,
            stderr_path,
        })
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `Some(status)` once it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for it to exit by itself; on timeout kills it and fails.
    pub fn wait(&mut self, timeout: Duration) -> Result<Out, String> {
        self.finish(None, timeout)
    }

    /// Sends `sig`, then waits (bounded) for the exit; kills it if it ignores the signal.
    pub fn stop(&mut self, sig: libc::c_int, timeout: Duration) -> Result<Out, String> {
        self.finish(Some(sig), timeout)
    }

    fn finish(&mut self, sig: Option<libc::c_int>, timeout: Duration) -> Result<Out, String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("`{}` was already reaped", self.cmdline));
        };
        if let Some(sig) = sig {
            signal(child.id(), sig);
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "`{}` did not finish within {timeout:?}",
                        self.cmdline
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("waiting for `{}`: {e}", self.cmdline)),
            }
        };
        match status {
            Ok(status) => Ok(Out {
                cmdline: self.cmdline.clone(),
                status,
                stdout: self.stdout(),
                stderr: self.stderr(),
            }),
            Err(e) => Err(format!(
                "{e}\n--- stdout\n{}--- stderr\n{}---",
                self.stdout(),
                self.stderr()
            )),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `f` on a fresh thread that has entered the network namespace `ns` (`setns` changes the
/// namespace of the calling thread only). A socket made there stays in that namespace wherever
/// it is used afterwards.
pub fn in_netns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> Result<T, String> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    thread::scope(|s| {
        s.spawn(|| {
            let file = fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: setns(2) with a valid namespace fd, affecting only this (scoped, soon
            // ended) thread; it has no memory-safety preconditions.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!(
                    "setns({path}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            f().map_err(|e| format!("in netns {ns}: {e}"))
        })
        .join()
        .map_err(|_| format!("the thread in netns {ns} panicked"))?
    })
}

/// `Ok(())` if `cond`, else the error `msg()` (a test step's check).
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// A socket address.
pub fn sa(ip: impl Into<std::net::IpAddr>, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.into(), port)
}

/// Sends a datagram from namespace `ns` to `dst` (from a fresh socket of `dst`'s family) and
/// returns the answer, which must come from `dst`; up to 4 tries of 1 s.
pub fn udp_exchange(ns: &str, dst: std::net::SocketAddr) -> Result<String, String> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
    let any: SocketAddr = if dst.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = in_netns(ns, || UdpSocket::bind(any))?;
    let io = |e: std::io::Error| format!("UDP {dst}: {e}");
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(io)?;
    let mut buf = [0u8; 1500];
    let mut last = String::from("no try");
    for _ in 0..4 {
        s.send_to(b"hello\n", dst).map_err(io)?;
        match s.recv_from(&mut buf) {
            Ok((n, from)) if from == dst => {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            Ok((_, from)) => last = format!("answer from {from}, not {dst}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("UDP {dst}: no answer to 4 datagrams ({last})"))
}

/// `GET /metrics` of a daemon's `--metrics-addr 127.0.0.1:<port>`: the Prometheus text.
pub fn scrape_metrics(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("metrics {addr}: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("metrics {addr}: {e}"))?;
    Ok(text)
}

/// The value of the sample `series` (name and labels exactly as printed, e.g.
/// `dpservice_worker_polls_total{state="busy",worker="1"}`) in a Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
