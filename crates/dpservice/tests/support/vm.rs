//! VMs as network namespaces holding the kernel side of a VF TAP, configured by stock DHCP
//! clients (busybox `udhcpc`, ISC `dhclient` for v4 and `dhclient -6`).

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{
    cmdline, die_with_parent, run, run_args, signal, tail, udhcpc_command, wait_until, Out, Scratch,
};

const IP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lease acquisition (either family) may take this long.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(25);
/// Link-local DAD takes ~1–2 s (one probe, 1 s retransmit timer).
pub const DAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The kernel solicits routers at link-up and every 4 s after.
pub const RA_TIMEOUT: Duration = Duration::from_secs(15);

/// udhcpc event script: applies address, MTU and RFC 3442 classless static routes (which the
/// dataplane sends instead of a router option) and records the received options.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# dpservice-rs system test: udhcpc event script (see tests/support/vm.rs)
dump="${UDHCPC_DUMP:-/dev/null}"
case "$1" in
deconfig)
    ip link set dev "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
bound|renew)
    for v in ip mask subnet router staticroutes mtu dns hostname domain serverid lease; do
        eval "printf '%s=%s\n' $v \"\${$v}\""
    done > "$dump"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-32}" dev "$interface" || exit 1
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip -4 route replace "$1" dev "$interface"
            else
                ip -4 route replace "$1" via "$2" dev "$interface" onlink
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        ip -4 route replace default via "${router%% *}" dev "$interface" onlink
    fi
    ;;
esac
exit 0
"#;

/// dhclient configuration: what Debian's default requests, minus what we do not need.
const DHCLIENT4_CONF: &str = "\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name-servers, host-name,
        interface-mtu, rfc3442-classless-static-routes;
timeout 20;
retry 1;
";
const DHCLIENT6_CONF: &str = "\
request dhcp6.name-servers;
timeout 20;
retry 1;
";

/// A network namespace. Drop kills every process left in it (only ours can be there), deletes
/// it and its `/etc/netns/<name>` directory.
pub struct Netns {
    pub name: String,
    etc_dir: PathBuf,
}

impl Netns {
    pub fn new(name: &str) -> Result<Netns, String> {
        run_args("ip", &["netns", "add", name], IP_TIMEOUT)?.check()?;
        // Guard first, so a failure below still removes the namespace.
        let ns = Netns {
            name: name.to_string(),
            etc_dir: PathBuf::from("/etc/netns").join(name),
        };
        // dhclient-script rewrites /etc/resolv.conf: with this file present, `ip netns exec`
        // bind-mounts it over the host's, so the host's stays untouched.
        fs::create_dir_all(&ns.etc_dir)
            .and_then(|_| fs::write(ns.etc_dir.join("resolv.conf"), ""))
            .map_err(|e| format!("{}: {e}", ns.etc_dir.display()))?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?.check()?;
        Ok(ns)
    }

    /// `ip netns exec <ns> args…` as a Command.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a short command in the namespace (bounded).
    pub fn exec(&self, args: &[&str]) -> Result<Out, String> {
        run(&mut self.command(args), IP_TIMEOUT)
    }

    /// stdout of a command that must succeed.
    pub fn output(&self, args: &[&str]) -> Result<String, String> {
        Ok(self.exec(args)?.check()?.stdout)
    }

    pub fn resolv_conf(&self) -> String {
        fs::read_to_string(self.etc_dir.join("resolv.conf")).unwrap_or_default()
    }

    pub fn pids(&self) -> Vec<u32> {
        run_args("ip", &["netns", "pids", &self.name], IP_TIMEOUT)
            .map(|o| {
                o.stdout
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for pid in self.pids() {
            signal(pid, libc::SIGKILL);
        }
        let _ = wait_until("namespace processes to die", Duration::from_secs(2), || {
            if self.pids().is_empty() {
                Ok(())
            } else {
                Err("still running".into())
            }
        });
        let _ = run_args("ip", &["netns", "del", &self.name], IP_TIMEOUT);
        let _ = fs::remove_dir_all(&self.etc_dir);
    }
}

/// A long-running client (dhclient stays in the foreground to renew). Killed on drop.
pub struct Client {
    child: Option<Child>,
    pub cmdline: String,
    pub log: PathBuf,
}

impl Client {
    pub fn report(&self) -> String {
        format!(
            "--- `{}` output ({}):\n{}---",
            self.cmdline,
            self.log.display(),
            tail(&self.log, 60)
        )
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One VM: its namespace and the name of its interface there (the VF TAP moved in).
pub struct Vm {
    // Field order is drop order: clients die before their namespace goes.
    pub clients: Vec<Client>,
    pub ns: Netns,
    pub name: String,
    pub ifname: String,
}

impl Vm {
    /// Creates the namespace and moves the TAP `tap` into it, IPv6 enabled with router
    /// advertisements accepted, the link up. DHCP is separate.
    pub fn new(name: &str, ns_name: &str, tap: &str) -> Result<Vm, String> {
        let ns = Netns::new(ns_name)?;
        run_args("ip", &["link", "set", tap, "netns", ns_name], IP_TIMEOUT)?.check()?;
        // A device moved into a namespace takes that namespace's defaults; set what we rely
        // on explicitly (a host with forwarding=1 or disable_ipv6=1 defaults would break RA).
        let sysctl = format!(
            "set -e; c=/proc/sys/net/ipv6/conf/{tap}; echo 0 > $c/disable_ipv6; \
             echo 0 > $c/forwarding; echo 1 > $c/accept_ra; echo 1 > $c/accept_ra_defrtr"
        );
        ns.exec(&["sh", "-c", &sysctl])?.check()?;
        ns.exec(&["ip", "link", "set", tap, "up"])?.check()?;
        Ok(Vm {
            name: name.to_string(),
            ifname: tap.to_string(),
            ns,
            clients: Vec::new(),
        })
    }

    /// Everything useful for a failure message.
    pub fn report(&self) -> String {
        let mut s = format!(
            "=== VM {} (netns {}, {}):\n",
            self.name, self.ns.name, self.ifname
        );
        for args in [
            &["ip", "addr"][..],
            &["ip", "-4", "route"],
            &["ip", "-6", "route"],
            &["ip", "neigh"],
        ] {
            match self.ns.exec(args) {
                Ok(o) => s.push_str(&format!("$ {}\n{}{}", args.join(" "), o.stdout, o.stderr)),
                Err(e) => s.push_str(&format!("$ {}: {e}\n", args.join(" "))),
            }
        }
        s.push_str(&format!("resolv.conf: {:?}\n", self.ns.resolv_conf()));
        for c in &self.clients {
            s.push_str(&c.report());
            s.push('\n');
        }
        s
    }

    /// IPv4 by busybox udhcpc (quits once bound). Returns the options it received.
    pub fn udhcpc(&self, scratch: &Scratch) -> Result<BTreeMap<String, String>, String> {
        let script = scratch.write("udhcpc.script", UDHCPC_SCRIPT)?;
        set_executable(&script)?;
        let dump = scratch.path(&format!("udhcpc-{}.env", self.name));
        let _ = fs::remove_file(&dump);
        let mut args: Vec<String> = vec!["env".into(), format!("UDHCPC_DUMP={}", dump.display())];
        args.extend(udhcpc_command().ok_or("no udhcpc")?);
        args.extend(
            [
                "-f", // foreground
                "-q", // quit once bound
                "-n", // fail if no lease
                "-t",
                "5", // discover attempts
                "-T",
                "2", // seconds between them
                "-i",
                &self.ifname,
                "-s",
            ]
            .map(String::from),
        );
        args.push(script.display().to_string());
        args.extend(["-O", "staticroutes", "-O", "mtu", "-O", "hostname"].map(String::from));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&mut self.ns.command(&argv), DHCP_TIMEOUT)?.check()?;
        let text = fs::read_to_string(&dump).map_err(|e| {
            format!(
                "udhcpc left no option dump ({}): {e}\n{out}",
                dump.display()
            )
        })?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// IPv4 by ISC dhclient (stays running in the foreground; killed with the VM). Waits until
    /// `expect` is configured on the interface.
    pub fn dhclient4(&mut self, scratch: &Scratch, expect: &str) -> Result<(), String> {
        let want = format!("inet {expect}/");
        self.dhclient("4", DHCLIENT4_CONF, scratch, move |vm| {
            let a = vm
                .ns
                .output(&["ip", "-4", "-o", "addr", "show", "dev", &vm.ifname])?;
            if a.contains(&want) {
                Ok(())
            } else {
                Err(format!("no {want}: {a}"))
            }
        })
    }

    /// IPv6 by `dhclient -6`; waits until `expect` is configured and its DAD finished.
    pub fn dhclient6(&mut self, scratch: &Scratch, expect: &str) -> Result<(), String> {
        self.wait_link_local()?;
        let want = format!("inet6 {expect}/");
        self.dhclient("6", DHCLIENT6_CONF, scratch, move |vm| {
            let a = vm.ns.output(&[
                "ip", "-6", "-o", "addr", "show", "dev", &vm.ifname, "scope", "global",
            ])?;
            match a.lines().find(|l| l.contains(&want)) {
                Some(l) if l.contains("dadfailed") => Err(format!("DAD failed: {l}")),
                Some(l) if l.contains("tentative") => Err(format!("still tentative: {l}")),
                Some(_) => Ok(()),
                None => Err(format!("no {want}: {a}")),
            }
        })
    }

    fn dhclient(
        &mut self,
        family: &str,
        conf: &str,
        scratch: &Scratch,
        mut configured: impl FnMut(&Vm) -> Result<(), String>,
    ) -> Result<(), String> {
        let base = format!("dhclient{family}-{}", self.name);
        let cf = scratch.write(&format!("{base}.conf"), conf)?;
        let lf = scratch.write(&format!("{base}.leases"), "")?;
        let pf = scratch.path(&format!("{base}.pid"));
        let log = scratch.path(&format!("{base}.log"));
        let (cf, lf, pf) = (
            cf.display().to_string(),
            lf.display().to_string(),
            pf.display().to_string(),
        );
        // `unshare --uts`: dhclient-script may set the hostname from DHCP; keep the host's.
        let mut cmd = self.ns.command(&[
            "unshare",
            "--uts",
            "dhclient",
            &format!("-{family}"),
            "-d", // foreground: we own the process and kill it at the end
            "-1", // try once, exit 2 on failure
            "-v",
            "-cf",
            &cf,
            "-lf",
            &lf,
            "-pf",
            &pf,
            &self.ifname,
        ]);
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        die_with_parent(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let line = cmdline(&cmd);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run `{line}`: {e}"))?;
        self.clients.push(Client {
            child: Some(child),
            cmdline: line.clone(),
            log: log.clone(),
        });
        let idx = self.clients.len() - 1;
        let r = wait_until(
            &format!("`{line}` to configure {}", self.ifname),
            DHCP_TIMEOUT,
            || {
                if let Some(c) = self.clients[idx].child.as_mut() {
                    if let Ok(Some(status)) = c.try_wait() {
                        return Ok(Err(format!("dhclient exited with {status}")));
                    }
                }
                configured(self).map(Ok)
            },
        );
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => Err(format!("{e}\n{}", self.clients[idx].report())),
        }
    }

    /// Waits until the interface's link-local address has passed DAD (dhclient -6 binds it).
    pub fn wait_link_local(&self) -> Result<(), String> {
        wait_until(
            &format!("link-local DAD on {}", self.ifname),
            DAD_TIMEOUT,
            || {
                let a = self.ns.output(&[
                    "ip",
                    "-6",
                    "-o",
                    "addr",
                    "show",
                    "dev",
                    &self.ifname,
                    "scope",
                    "link",
                ])?;
                match a.lines().find(|l| l.contains("inet6 fe80:")) {
                    Some(l) if l.contains("tentative") || l.contains("dadfailed") => {
                        Err(l.to_string())
                    }
                    Some(_) => Ok(()),
                    None => Err(format!("no link-local address: {a}")),
                }
            },
        )
    }

    /// Waits for the default route the router advertisement installs (`via fe80::1 proto ra`).
    pub fn wait_ra_default_route(&self) -> Result<String, String> {
        wait_until("an RA default route via fe80::1", RA_TIMEOUT, || {
            let r = self.ns.output(&["ip", "-6", "route", "show", "default"])?;
            if r.contains("via fe80::1 ") && r.contains("proto ra") {
                Ok(r)
            } else {
                Err(format!("ip -6 route show default: {r:?}"))
            }
        })
    }

    pub fn ipv4_addrs(&self) -> Result<String, String> {
        self.ns
            .output(&["ip", "-4", "-o", "addr", "show", "dev", &self.ifname])
    }
    pub fn ipv4_routes(&self) -> Result<String, String> {
        self.ns
            .output(&["ip", "-4", "route", "show", "dev", &self.ifname])
    }
    pub fn mtu(&self) -> Result<u32, String> {
        let l = self
            .ns
            .output(&["ip", "-o", "link", "show", "dev", &self.ifname])?;
        let mut it = l.split_whitespace();
        it.find(|w| *w == "mtu")
            .and_then(|_| it.next())
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("no mtu in {l:?}"))
    }

    /// `ping -c 3` (bounded: at most 5 s); `Ok` with the output iff replies came back.
    pub fn ping(&self, dst: &str) -> Result<Out, String> {
        run(
            &mut self.ns.command(&[
                "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "5", dst,
            ]),
            Duration::from_secs(10),
        )
    }
}

fn set_executable(p: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}
