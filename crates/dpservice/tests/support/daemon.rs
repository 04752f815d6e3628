//! The `dpservice` daemon as a child process with TAP ports.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{cmdline, die_with_parent, link_exists, signal, tail, wait_until, Names, DAEMON};

/// How long the daemon may take to create its TAPs and open its gRPC port.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a clean shutdown may take after SIGTERM/SIGINT.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The standard command line of the system tests (see README "Running the daemon by hand").
pub fn standard_args(names: &Names, vf_count: usize, grpc_port: u16) -> Vec<String> {
    [
        "--nic-type",
        "tap",
        "--pf0",
        &names.pf0(),
        "--pf1",
        &names.pf1(),
        "--vf-pattern",
        &names.vf_prefix(),
        "--vf-count",
        &vf_count.to_string(),
        "--ipv6",
        "fc00:1::1",
        "--grpc-port",
        &grpc_port.to_string(),
        "--dhcp-mtu",
        "1400",
        "--dhcp-dns",
        "10.0.0.53",
        "--dhcpv6-dns",
        "2001:db8::53",
        "--enable-ipv6-overlay",
        "--no-stats",
        "--dump-socket",
        &names.dump_socket(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The command line of one hypervisor of the multi-host tests (docs/multihost.md): TAP ports
/// named after `names`, underlay address `ipv6` (e.g. `fc00:1::1`), the underlay router found by
/// neighbor discovery of `router` (e.g. `fe80::ffff`) on each uplink, `--dhcp-mtu 1400` so
/// encapsulated VM packets fit a 1500-byte underlay; `extra` is appended (e.g. `--wcmp 50`).
pub fn hypervisor_args(
    names: &Names,
    vf_count: usize,
    grpc_port: u16,
    ipv6: &str,
    router: &str,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--nic-type",
        "tap",
        "--pf0",
        &names.pf0(),
        "--pf1",
        &names.pf1(),
        "--vf-pattern",
        &names.vf_prefix(),
        "--vf-count",
        &vf_count.to_string(),
        "--ipv6",
        ipv6,
        "--router",
        router,
        "--grpc-port",
        &grpc_port.to_string(),
        "--dhcp-mtu",
        "1400",
        "--enable-ipv6-overlay",
        "--no-stats",
        "--dump-socket",
        &names.dump_socket(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A running daemon. Dropping it stops it: SIGTERM, then SIGKILL after `STOP_TIMEOUT`.
pub struct Daemon {
    child: Option<Child>,
    pub cmdline: String,
    pub port: u16,
    pub log: PathBuf,
    pub taps: Vec<String>,
}

impl Daemon {
    /// Starts `dpservice args…`, stdout and stderr to `log`. `taps` are the devices it must
    /// create; `port` is its gRPC port.
    pub fn spawn(
        args: &[String],
        port: u16,
        taps: Vec<String>,
        log: PathBuf,
    ) -> Result<Daemon, String> {
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(DAEMON);
        die_with_parent(&mut cmd);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{line}`: {e}"))?;
        Ok(Daemon {
            child: Some(child),
            cmdline: line,
            port,
            log,
            taps,
        })
    }

    /// Starts the daemon with `standard_args` and waits until it is ready.
    pub fn start_standard(names: &Names, vf_count: usize, log: PathBuf) -> Result<Daemon, String> {
        let port = super::free_port();
        let mut d = Daemon::spawn(
            &standard_args(names, vf_count, port),
            port,
            names.taps(vf_count),
            log,
        )?;
        d.wait_ready(READY_TIMEOUT)?;
        Ok(d)
    }

    /// Starts `dpservice args…` (whose TAPs are `names.taps(vf_count)` and gRPC port `port`)
    /// and waits until it is ready.
    pub fn start(
        args: &[String],
        port: u16,
        taps: Vec<String>,
        log: PathBuf,
    ) -> Result<Daemon, String> {
        let mut d = Daemon::spawn(args, port, taps, log)?;
        d.wait_ready(READY_TIMEOUT)?;
        Ok(d)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Exit status if the daemon has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until every TAP exists and the gRPC port accepts connections; fails early (with
    /// the daemon's output) if it exits.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let taps = self.taps.clone();
        let r = wait_until("the daemon to become ready", timeout, || {
            if let Some(status) = self.try_exit() {
                // Not retryable, but wait_until only knows Ok/Err: report via a marker.
                return Ok(Err(format!("daemon exited during start-up with {status}")));
            }
            let missing: Vec<&String> = taps.iter().filter(|t| !link_exists(t)).collect();
            if !missing.is_empty() {
                return Err(format!("TAP devices not (yet) created: {missing:?}"));
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .map(|_| Ok(()))
                .map_err(|e| format!("gRPC port {addr}: {e}"))
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => Err(format!("{e}\n{}", self.report())),
        }
    }

    /// Sends `sig` and waits (bounded) for the exit.
    pub fn stop_with(&mut self, sig: libc::c_int, timeout: Duration) -> Result<ExitStatus, String> {
        let Some(child) = self.child.as_mut() else {
            return Err("daemon already reaped".into());
        };
        signal(child.id(), sig);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(status);
                }
                Ok(None) if Instant::now() >= deadline => {
                    return Err(format!(
                        "daemon did not exit within {timeout:?} after signal {sig}\n{}",
                        self.report()
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for the daemon: {e}")),
            }
        }
    }

    /// Command line and the tail of the daemon's output, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "--- daemon `{}` output (last 80 lines of {}):\n{}---",
            self.cmdline,
            self.log.display(),
            tail(&self.log, 80)
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "daemon pid {} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
                child.id()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
