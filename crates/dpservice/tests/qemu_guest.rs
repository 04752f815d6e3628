//! Real VMs: tiny Linux guests under QEMU (TCG) with a virtio-net NIC (the harness and how the
//! guest is made: tests/support/guest.rs).
//!
//! * `guest_boots_and_gets_an_address_by_dhcp_on_a_tap` proves the harness without the
//!   daemon: the guest's NIC is a TAP in a namespace of the test, busybox `udhcpd` serves it a
//!   lease, the guest pings the host end.
//! * `vhost_user_guest_dhcp_and_ping` is issue #14's scenario: the daemon with `--vhost-user`
//!   is the NIC's backend, the guests get their interface's address from the dataplane's DHCP
//!   and ping the gateway and each other.
//! * `qemu_connects_to_a_vhost_user_socket_and_asks_for_features` checks the vhost-user command
//!   line without a backend: QEMU connects to a listening socket and sends GET_FEATURES.
//! * `vhost_user_guest_reaches_a_vm_on_another_hypervisor`: a guest on one daemon and a VM on
//!   a second, across the underlay.
//! * `vhost_user_port_survives_a_daemon_restart_and_a_qemu_restart`: reconnects both ways.
//! * `vhost_user_guest_with_two_queue_pairs_is_served_by_both_workers`: multi-queue with a
//!   2-vCPU guest and `--workers 2`.
//!
//! They need root, `ip`, `qemu-system-x86_64`, busybox-static and the guest kernel
//! (`scripts/guest-kernel.sh`); without them they print `SKIPPED <test>: <reason>` and pass,
//! unless `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`.

#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::api::{Api, IfaceSpec};
use support::daemon::{hypervisor_args, standard_args, Daemon, READY_TIMEOUT};
use support::guest::{self, guest_mac, Backend, Guest, GuestSpec, BOOT_TIMEOUT};
use support::underlay::{Router, ROUTER_LL};
use support::vm::{Netns, Vm};
use support::{ensure, wait_until, Background, Names, Scratch};

/// Progress on stderr (shown with `--nocapture` and on failure).
macro_rules! step {
    ($($arg:tt)*) => { eprintln!("[qemu] {}", format!($($arg)*)) };
}

/// After DHCP: pings and the end of the guest's script.
const AFTER_DHCP_TIMEOUT: Duration = Duration::from_secs(60);
/// `poweroff -f` to QEMU's exit.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The harness on a TAP, without the daemon.
// ---------------------------------------------------------------------------------------

/// The namespace's private subnet: host end .1, the guest's static lease .50.
const TAP_HOST: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 1);
const TAP_GUEST: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 50);

#[test]
fn guest_boots_and_gets_an_address_by_dhcp_on_a_tap() {
    const TEST: &str = "guest_boots_and_gets_an_address_by_dhcp_on_a_tap";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip", "busybox"]) else {
        return;
    };
    let t0 = Instant::now();
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let ns = Netns::new(&names.netns("qemu")).unwrap_or_else(|e| panic!("{e}"));
    let tap = format!("{}t0", names.tag);
    let mac = guest_mac(&names, 0);

    // The host end: a persistent TAP in our namespace, addressed, with udhcpd on it.
    for args in [
        &["ip", "tuntap", "add", "dev", &tap, "mode", "tap"][..],
        &["ip", "addr", "add", &format!("{TAP_HOST}/24"), "dev", &tap],
        &["ip", "link", "set", &tap, "up"],
    ] {
        ns.exec(args)
            .and_then(|o| o.check())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let conf = scratch
        .write(
            "udhcpd.conf",
            &format!(
                "start 10.213.7.100\nend 10.213.7.110\ninterface {tap}\n\
                 lease_file {}\npidfile {}\nstatic_lease {mac} {TAP_GUEST}\n\
                 option subnet 255.255.255.0\noption router {TAP_HOST}\noption lease 600\n",
                scratch.path("udhcpd.leases").display(),
                scratch.path("udhcpd.pid").display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = scratch.write("udhcpd.leases", "");
    let busybox = support::which("busybox").expect("checked");
    let mut udhcpd = Background::spawn(
        &mut ns.command(&[
            &busybox.display().to_string(),
            "udhcpd",
            "-f",
            &conf.display().to_string(),
        ]),
        &scratch.path("udhcpd"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    step!("netns {} with {tap} {TAP_HOST}/24 and udhcpd", ns.name);

    let mut spec = GuestSpec::new(&mac);
    spec.pings = vec![TAP_HOST.to_string()];
    spec.commands = vec![
        "ip -4 addr show dev eth0".into(),
        "cat /proc/version".into(),
    ];
    let backend = Backend::Tap {
        ifname: tap.clone(),
        netns: Some(ns.name.clone()),
    };
    let mut g =
        Guest::boot("g0", &kernel, &spec, &backend, &scratch).unwrap_or_else(|e| panic!("{e}"));
    step!("QEMU started: guest {mac} on {tap}");

    let result = (|| -> Result<(), String> {
        let got_mac = g.wait_line("GUEST: eth0 mac=", BOOT_TIMEOUT)?;
        ensure(got_mac == mac, || {
            format!("guest eth0 has MAC {got_mac}, want {mac}")
        })?;
        let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
        let t_dhcp = g.started.elapsed();
        step!("guest got ip={ip} by DHCP {t_dhcp:.1?} after QEMU start");
        ensure(ip == format!("{TAP_GUEST}/24"), || {
            format!("guest got {ip}, want {TAP_GUEST}/24 (static lease for {mac})")
        })?;
        let router = g.wait_line("GUEST: router=", AFTER_DHCP_TIMEOUT)?;
        ensure(router == TAP_HOST.to_string(), || {
            format!("guest got router {router:?}, want {TAP_HOST}")
        })?;
        let ping = g.wait_line(&format!("GUEST: ping {TAP_HOST} "), AFTER_DHCP_TIMEOUT)?;
        ensure(ping.starts_with("ok"), || {
            format!("guest ping {TAP_HOST}: {ping}")
        })?;
        step!("guest ping {TAP_HOST}: {ping}");
        for n in 1..=spec.commands.len() {
            let st = g.wait_line(&format!("GUEST: cmd {n} exit="), AFTER_DHCP_TIMEOUT)?;
            ensure(st == "0", || {
                format!("guest command {:?} exited with {st}", spec.commands[n - 1])
            })?;
        }
        g.wait_line("GUEST: done", AFTER_DHCP_TIMEOUT)?;
        g.wait_poweroff(POWEROFF_TIMEOUT)?;
        step!(
            "guest powered off {:.1?} after QEMU start",
            g.started.elapsed()
        );
        // The host side served it: udhcpd acknowledged the static lease, and still runs.
        let log = udhcpd.stderr();
        ensure(log.contains(&format!("sending ACK to {TAP_GUEST}")), || {
            format!("udhcpd did not acknowledge {TAP_GUEST}: {log}")
        })?;
        ensure(udhcpd.try_exit().is_none(), || {
            format!("udhcpd exited: {}", udhcpd.stderr())
        })
    })();
    if let Err(e) = result {
        panic!(
            "{e}\n{}\n--- udhcpd stderr:\n{}",
            g.report(),
            udhcpd.stderr()
        );
    }
    step!("whole test {:.1?}", t0.elapsed());
    drop(g);
    drop(udhcpd);
    drop(ns);
}

// ---------------------------------------------------------------------------------------
// The vhost-user variant of the harness, without a backend: QEMU connects and talks.
// ---------------------------------------------------------------------------------------

/// vhost-user's VHOST_USER_GET_FEATURES, QEMU's first request on a new connection.
const VHOST_USER_GET_FEATURES: u32 = 1;
/// The version bits of a request's flags.
const VHOST_USER_VERSION: u32 = 0x1;

/// QEMU with the harness's vhost-user command line (memfd guest RAM, `-chardev socket` as a
/// client, `vhost-user` netdev, `vectors=0`) starts and connects to a listening unix socket,
/// and its first message is a well-formed GET_FEATURES: the command line is right for a
/// backend such as the daemon's `--vhost-user`. No backend answers, so the guest never boots.
#[test]
fn qemu_connects_to_a_vhost_user_socket_and_asks_for_features() {
    const TEST: &str = "qemu_connects_to_a_vhost_user_socket_and_asks_for_features";
    let Some(kernel) = guest::ready_or_skip(TEST, &[]) else {
        return;
    };
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let socket = scratch.path("vu0.sock");
    let listener = UnixListener::bind(&socket).unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let spec = GuestSpec::new(&guest_mac(&names, 0));
    let backend = Backend::VhostUser {
        socket: socket.clone(),
    };
    let mut g =
        Guest::boot("vu0", &kernel, &spec, &backend, &scratch).unwrap_or_else(|e| panic!("{e}"));
    let result = (|| -> Result<(), String> {
        let mut conn = wait_until("QEMU to connect", Duration::from_secs(30), || {
            ensure(g.pid_alive(), || "QEMU exited".to_string())?;
            listener
                .accept()
                .map(|(c, _)| c)
                .map_err(|e| format!("accept: {e}"))
        })?;
        step!(
            "QEMU connected to {} after {:.1?}",
            socket.display(),
            g.started.elapsed()
        );
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut hdr = [0u8; 12];
        conn.read_exact(&mut hdr)
            .map_err(|e| format!("reading QEMU's first vhost-user header: {e}"))?;
        let word = |i: usize| u32::from_le_bytes(hdr[i * 4..i * 4 + 4].try_into().expect("4"));
        let (request, flags, size) = (word(0), word(1), word(2));
        step!("first message: request {request} flags {flags:#x} size {size}");
        ensure(
            request == VHOST_USER_GET_FEATURES && flags & 0x3 == VHOST_USER_VERSION && size == 0,
            || format!("first message request {request} flags {flags:#x} size {size}"),
        )
    })();
    if let Err(e) = result {
        panic!("{e}\n{}", g.report());
    }
}

// ---------------------------------------------------------------------------------------
// Issue #14: guests on the daemon's vhost-user ports.
// ---------------------------------------------------------------------------------------

const GATEWAY: &str = "169.254.0.1";
const TRANSFER_KIB: usize = 1024;
/// The namespace VM on a TAP next to the guests.
const NS_VM: &str = "nsvm3";
const NS_VM_VF: usize = 2;
const NS_VM_IPV4: Ipv4Addr = Ipv4Addr::new(10, 100, 1, 3);
const TRANSFER_PORT: u16 = 5001;
const MTU: &str = "1400";

struct GuestDef {
    id: &'static str,
    vf: usize,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

const GUESTS: [GuestDef; 2] = [
    GuestDef {
        id: "qvm1",
        vf: 0,
        ipv4: Ipv4Addr::new(10, 100, 1, 1),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1),
    },
    GuestDef {
        id: "qvm2",
        vf: 1,
        ipv4: Ipv4Addr::new(10, 100, 1, 2),
        ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 2),
    },
];

/// Two QEMU guests on VF 0 and VF 1 of a daemon with `--vhost-user DIR` (every VF port a
/// vhost-user socket `DIR/<VF device name>`), both interfaces in VNI 100: each gets its
/// address, /32, MTU and the classless default route by the dataplane's DHCP, pings the
/// gateway (answered by the dataplane) and the other guest, and 1 MiB goes from the first
/// to the second over TCP (busybox nc), checked by its MD5 on both ends.
#[test]
fn vhost_user_guest_dhcp_and_ping() {
    const TEST: &str = "vhost_user_guest_dhcp_and_ping";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip"]) else {
        return;
    };
    let t0 = Instant::now();
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    // The daemon: TAP uplinks, VF 0 and 1 vhost-user (the guests), VF 2 a TAP (a namespace VM).
    let (mut daemon, sockets) = vhost_user_daemon(
        &names,
        &scratch,
        GUESTS.len() + 1,
        GUESTS.len(),
        &[],
        &[NS_VM_VF],
    );

    let result = (|| -> Result<(), String> {
        let mut api = Api::connect(daemon.port)?;
        api.init()?;
        for d in &GUESTS {
            let device = names.vf(d.vf);
            api.create_interface(&IfaceSpec {
                id: d.id,
                vni: 100,
                ipv4: d.ipv4,
                ipv6: d.ipv6,
                device: &device,
                hostname: None,
            })?;
            step!("created {} ({}) on {device}", d.id, d.ipv4);
        }
        let ns_vf = names.vf(NS_VM_VF);
        api.create_interface(&IfaceSpec {
            id: NS_VM,
            vni: 100,
            ipv4: NS_VM_IPV4,
            ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 3),
            device: &ns_vf,
            hostname: None,
        })?;
        let ns_vm = Vm::new(NS_VM, &names.netns(NS_VM), &ns_vf)?;
        let lease = ns_vm.udhcpc(&scratch)?;
        ensure(
            lease.get("ip").map(String::as_str) == Some("10.100.1.3"),
            || format!("{NS_VM}: udhcpc got {lease:?}"),
        )?;
        step!("{NS_VM} ({NS_VM_IPV4}) on the TAP {ns_vf}: DHCP done");

        // Both guests boot at once; each pings the gateway, then the other (retrying while
        // the other is still booting).
        let mut guests = Vec::new();
        for (i, d) in GUESTS.iter().enumerate() {
            let other = &GUESTS[1 - i];
            let mut spec = GuestSpec::new(&guest_mac(&names, d.vf as u8));
            spec.pings = vec![
                GATEWAY.to_string(),
                other.ipv4.to_string(),
                NS_VM_IPV4.to_string(),
            ];
            spec.ping_wait = 90;
            // Up until the other one is done with it too (the test kills both at the end).
            spec.linger = 120;
            spec.command_timeout = 90;
            spec.commands = vec![if i == 0 {
                format!(
                    "dd if=/dev/urandom of=/tmp/s bs=1024 count={TRANSFER_KIB} 2>/dev/null; \
                     echo \"GUEST: sent $(md5sum < /tmp/s | cut -c1-32)\"; n=0; \
                     until nc {} {TRANSFER_PORT} < /tmp/s; do n=$((n + 1)); \
                     [ $n -ge 100 ] && exit 1; sleep 0.5; done; \
                     echo \"GUEST: eth0 tx $(cat /sys/class/net/eth0/statistics/tx_packets) \
                     $(cat /sys/class/net/eth0/statistics/tx_bytes)\"",
                    other.ipv4
                )
            } else {
                format!(
                    // stdin stays the console, which never ends: nc leaves when the peer
                    // closes (with stdin at its end it would leave at once).
                    "nc -l -p {TRANSFER_PORT} < /dev/console > /tmp/r; \
                     echo \"GUEST: received $(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -c1-32)\"; \
                     echo \"GUEST: eth0 rx $(cat /sys/class/net/eth0/statistics/rx_packets) \
                     $(cat /sys/class/net/eth0/statistics/rx_bytes)\""
                )
            }];
            let backend = Backend::VhostUser {
                socket: sockets[i].clone(),
            };
            guests.push(Guest::boot(d.id, &kernel, &spec, &backend, &scratch)?);
            step!(
                "QEMU started: {} ({}) on {}",
                d.id,
                spec.mac,
                sockets[i].display()
            );
        }
        let checks = (|| -> Result<(), String> {
            for (g, d) in guests.iter_mut().zip(&GUESTS) {
                let want_mac = guest_mac(&names, d.vf as u8);
                let mac = g.wait_line("GUEST: eth0 mac=", BOOT_TIMEOUT)?;
                ensure(mac == want_mac, || {
                    format!("{}: eth0 has MAC {mac}, want {want_mac}", d.id)
                })?;
                let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
                step!(
                    "{}: ip={ip} {:.1?} after QEMU start",
                    d.id,
                    g.started.elapsed()
                );
                ensure(ip == format!("{}/32", d.ipv4), || {
                    format!("{}: got {ip}, want {}/32", d.id, d.ipv4)
                })?;
                let mtu = g.wait_line("GUEST: mtu=", AFTER_DHCP_TIMEOUT)?;
                ensure(mtu == MTU, || format!("{}: MTU {mtu}, want {MTU}", d.id))?;
                let routes = g.wait_line("GUEST: staticroutes=", AFTER_DHCP_TIMEOUT)?;
                ensure(routes.contains(&format!("0.0.0.0/0 {GATEWAY}")), || {
                    format!("{}: classless routes {routes:?}", d.id)
                })?;
            }
            for (i, (g, d)) in guests.iter_mut().zip(&GUESTS).enumerate() {
                let others = [GUESTS[1 - i].ipv4.to_string(), NS_VM_IPV4.to_string()];
                for dst in [GATEWAY.to_string()].iter().chain(&others) {
                    let r = g.wait_line(&format!("GUEST: ping {dst} "), BOOT_TIMEOUT)?;
                    ensure(r.starts_with("ok"), || format!("{} ping {dst}: {r}", d.id))?;
                    step!("{} -> {dst}: {r}", d.id);
                }
            }
            // The namespace VM reaches both guests (on their vhost-user ports).
            for d in &GUESTS {
                let ip = d.ipv4.to_string();
                let out = ns_vm
                    .ns
                    .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip])?;
                ensure(out.ok(), || format!("{NS_VM} ping {ip}: {out}"))?;
                step!("{NS_VM} -> {} ({ip}): ok", d.id);
            }
            let sent = guests[0].wait_line("GUEST: sent ", BOOT_TIMEOUT)?;
            let received = guests[1].wait_line("GUEST: received ", BOOT_TIMEOUT)?;
            step!("1 MiB over TCP: sent {sent}, received {received}");
            ensure(
                received == format!("{} {sent}", TRANSFER_KIB * 1024),
                || format!("sent {sent}, received {received}"),
            )?;
            // Offloads: the sender's stack handed its virtio-net TCP superframes (TSO), and
            // they reached the receiver whole (its driver counts frames as they come off the
            // ring). Segmented anywhere, no frame would be larger than the MTU.
            let average = |line: &str| -> Result<u64, String> {
                let n: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                match n[..] {
                    [packets, bytes] if packets > 0 => Ok(bytes / packets),
                    _ => Err(format!("eth0 statistics: {line:?}")),
                }
            };
            let tx = average(&guests[0].wait_line("GUEST: eth0 tx ", AFTER_DHCP_TIMEOUT)?)?;
            let rx = average(&guests[1].wait_line("GUEST: eth0 rx ", AFTER_DHCP_TIMEOUT)?)?;
            step!(
                "average frame: {tx} bytes sent by {}, {rx} received by {}",
                GUESTS[0].id,
                GUESTS[1].id
            );
            ensure(tx > 1514 && rx > 1514, || {
                format!("no superframes VM -> VM: {tx} bytes per frame sent, {rx} received")
            })?;
            for g in &mut guests {
                g.wait_line("GUEST: done", AFTER_DHCP_TIMEOUT)?;
            }
            ensure(daemon.try_exit().is_none(), || {
                "the daemon exited while the guests ran".to_string()
            })
        })();
        checks.map_err(|e| {
            let reports: Vec<String> = guests.iter().map(Guest::report).collect();
            format!("{e}\n{}\n{}", reports.join("\n"), ns_vm.report())
        })
    })();
    if let Err(e) = result {
        panic!("{e}\n{}", daemon.report());
    }
    step!("whole test {:.1?}", t0.elapsed());
}

/// Echo requests each vCPU of the multi-queue guest sends to the gateway.
const MQ_PINGS: u32 = 40;

/// A guest with two vCPUs and a two-queue-pair virtio-net NIC on a daemon with `--workers 2`
/// (a queue pair per worker): Linux enables both pairs (QEMU's control queue asks the backend
/// to enable the second), and sends on the queue of the CPU it runs on (XPS). Pings pinned to
/// each vCPU all come back, and each worker served at least that many rounds: both queue pairs
/// carried traffic, each to its own worker.
#[test]
fn vhost_user_guest_with_two_queue_pairs_is_served_by_both_workers() {
    const TEST: &str = "vhost_user_guest_with_two_queue_pairs_is_served_by_both_workers";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip"]) else {
        return;
    };
    let t0 = Instant::now();
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let metrics = support::free_port();
    let workers = [
        "--workers",
        "2",
        "--metrics-addr",
        &format!("127.0.0.1:{metrics}"),
    ];
    let (mut daemon, sockets) = vhost_user_daemon(&names, &scratch, 1, 1, &workers, &[]);
    let socket = sockets[0].clone();

    let result = (|| -> Result<(), String> {
        let mut api = Api::connect(daemon.port)?;
        api.init()?;
        let d = &GUESTS[0];
        let device = names.vf(d.vf);
        api.create_interface(&IfaceSpec {
            id: d.id,
            vni: 100,
            ipv4: d.ipv4,
            ipv6: d.ipv6,
            device: &device,
            hostname: None,
        })?;
        let mut spec = GuestSpec::new(&guest_mac(&names, d.vf as u8));
        spec.cpus = 2;
        spec.queue_pairs = 2;
        spec.pings = vec![GATEWAY.to_string()];
        spec.ping_wait = 90;
        spec.command_timeout = 60;
        spec.commands = vec![
            "echo \"GUEST: queues $(ls /sys/class/net/eth0/queues | tr '\\n' ' ')\"; \
             echo \"GUEST: cpus $(nproc)\""
                .to_string(),
        ];
        for cpu in 0..2 {
            spec.commands.push(format!(
                "echo \"GUEST: cpu {cpu} $(taskset -c {cpu} ping -c {MQ_PINGS} -i 0.1 -W 2 \
                 {GATEWAY} | grep 'packets transmitted')\""
            ));
        }
        let backend = Backend::VhostUser {
            socket: socket.clone(),
        };
        let mut g = Guest::boot(d.id, &kernel, &spec, &backend, &scratch)?;
        step!(
            "QEMU started: {} ({}), 2 vCPUs, 2 queue pairs",
            d.id,
            spec.mac
        );
        let checks = (|| -> Result<(), String> {
            let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
            step!(
                "{}: ip={ip} {:.1?} after QEMU start",
                d.id,
                g.started.elapsed()
            );
            ensure(ip == format!("{}/32", d.ipv4), || {
                format!("{}: got {ip}, want {}/32", d.id, d.ipv4)
            })?;
            let queues = g.wait_line("GUEST: queues ", AFTER_DHCP_TIMEOUT)?;
            let cpus = g.wait_line("GUEST: cpus ", AFTER_DHCP_TIMEOUT)?;
            step!("guest: {cpus} vCPUs, queues {queues}");
            ensure(queues.trim() == "rx-0 rx-1 tx-0 tx-1", || {
                format!("the guest runs queues {queues:?}, want two pairs ({cpus} vCPUs)")
            })?;
            for cpu in 0..2 {
                let r = g.wait_line(&format!("GUEST: cpu {cpu} "), AFTER_DHCP_TIMEOUT)?;
                step!("pings from vCPU {cpu}: {r}");
                let want = format!("{MQ_PINGS} packets transmitted, {MQ_PINGS} packets received");
                ensure(r.starts_with(&want), || format!("vCPU {cpu}: {r}"))?;
            }
            g.wait_line("GUEST: done", AFTER_DHCP_TIMEOUT)?;
            let text = support::scrape_metrics(metrics)?;
            let busy = |w: u32| {
                support::metric_value(
                    &text,
                    &format!("dpservice_worker_polls_total{{state=\"busy\",worker=\"{w}\"}}"),
                )
                .unwrap_or(0.0)
            };
            let (busy0, busy1) = (busy(0), busy(1));
            step!("busy rounds: worker 0 {busy0}, worker 1 {busy1}");
            ensure(
                busy0 >= f64::from(MQ_PINGS) && busy1 >= f64::from(MQ_PINGS),
                || {
                    format!(
                        "each worker should have served the pings of its queue pair: busy \
                     rounds {busy0} and {busy1}, {MQ_PINGS} pings per vCPU"
                    )
                },
            )?;
            ensure(daemon.try_exit().is_none(), || {
                "the daemon exited while the guest ran".to_string()
            })
        })();
        checks.map_err(|e| format!("{e}\n{}", g.report()))
    })();
    if let Err(e) = result {
        panic!("{e}\n{}", daemon.report());
    }
    step!("whole test {:.1?}", t0.elapsed());
}

/// A daemon (`standard_args`) with `vf_count` VFs, the first `vhost_user_vfs` of them
/// vhost-user ports (sockets in `<scratch>/vhost-user`), `extra` options, and TAPs for its
/// uplinks and the VFs `tap_vfs`; returns it once it listens on every socket, with the sockets
/// (VF order). Panics with the daemon's report if it does not come up.
fn vhost_user_daemon(
    names: &Names,
    scratch: &Scratch,
    vf_count: usize,
    vhost_user_vfs: usize,
    extra: &[&str],
    tap_vfs: &[usize],
) -> (Daemon, Vec<PathBuf>) {
    let sock_dir = scratch.path("vhost-user");
    std::fs::create_dir_all(&sock_dir).unwrap_or_else(|e| panic!("{e}"));
    let port = support::free_port();
    let mut args = standard_args(names, vf_count, port);
    args.extend(["--vhost-user".to_string(), sock_dir.display().to_string()]);
    args.extend(["--vhost-user-vfs".to_string(), vhost_user_vfs.to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut taps = vec![names.pf0(), names.pf1()];
    taps.extend(tap_vfs.iter().map(|&vf| names.vf(vf)));
    let daemon = Daemon::start(&args, port, taps, scratch.path("dpservice.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let sockets: Vec<_> = (0..vhost_user_vfs)
        .map(|vf| sock_dir.join(names.vf(vf)))
        .collect();
    wait_for_sockets(&sockets).unwrap_or_else(|e| panic!("{e}\n{}", daemon.report()));
    step!("daemon up: {}", daemon.cmdline);
    (daemon, sockets)
}

/// Waits until the daemon listens on every one of `sockets`.
fn wait_for_sockets(sockets: &[PathBuf]) -> Result<(), String> {
    wait_until("the vhost-user sockets", READY_TIMEOUT, || {
        let missing: Vec<_> = sockets.iter().filter(|s| !is_socket(s)).collect();
        ensure(missing.is_empty(), || format!("missing: {missing:?}"))
    })
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Issue #14: a QEMU guest on hv1's vhost-user port and a namespace VM on hv2's TAP, two
/// daemons whose uplinks meet in a router namespace (as tests/multihost.rs): the guest gets its
/// address by DHCP, pings the VM across the IPv6 underlay (IPv4 in IPv6), and the VM sends it
/// 1 MiB over TCP, checked by MD5.
#[test]
fn vhost_user_guest_reaches_a_vm_on_another_hypervisor() {
    const TEST: &str = "vhost_user_guest_reaches_a_vm_on_another_hypervisor";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip", "busybox", "md5sum"]) else {
        return;
    };
    let t0 = Instant::now();
    let (n1, n2) = (Names::new(), Names::new());
    let scratch = Scratch::new(&n1).unwrap_or_else(|e| panic!("{e}"));
    let sock_dir = scratch.path("vhost-user");
    let p1 = support::free_port();
    let a1 = hypervisor_args(
        &n1,
        1,
        p1,
        "fc00:1::1",
        ROUTER_LL,
        &["--vhost-user", &sock_dir.display().to_string()],
    );
    let hv1 = Daemon::start(&a1, p1, vec![n1.pf0(), n1.pf1()], scratch.path("hv1.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let p2 = support::free_port();
    let a2 = hypervisor_args(&n2, 1, p2, "fc00:2::1", ROUTER_LL, &[]);
    let hv2 = Daemon::start(&a2, p2, n2.taps(1), scratch.path("hv2.log"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut router = Router::new(&n1.netns("rtr")).unwrap_or_else(|e| panic!("{e}"));
    let mut vm2: Option<Vm> = None;
    let mut qvm: Option<Guest> = None;
    let result = (|| -> Result<(), String> {
        for n in [&n1, &n2] {
            router.attach(&n.pf0())?;
            router.attach(&n.pf1())?;
        }
        router.route_multipath("fc00:1::/64", &[&n1.pf0(), &n1.pf1()])?;
        router.route_multipath("fc00:2::/64", &[&n2.pf0(), &n2.pf1()])?;
        for ul in ["fc00:1::1", "fc00:2::1"] {
            wait_until(&format!("the router to ping {ul}"), READY_TIMEOUT, || {
                router.ping(ul)?.check().map(|_| ())
            })?;
        }
        step!("two hypervisors up, the router reaches both");

        let (mut api1, mut api2) = (Api::connect(p1)?, Api::connect(p2)?);
        api1.init()?;
        api2.init()?;
        let guest_ip = Ipv4Addr::new(10, 100, 1, 1);
        let vm2_ip = Ipv4Addr::new(10, 100, 2, 1);
        let (dev1, dev2) = (n1.vf(0), n2.vf(0));
        let r1 = api1.create_interface(&IfaceSpec {
            id: "qvm1",
            vni: 100,
            ipv4: guest_ip,
            ipv6: Ipv6Addr::new(0x2000, 0x100, 1, 0, 0, 0, 0, 1),
            device: &dev1,
            hostname: None,
        })?;
        let r2 = api2.create_interface(&IfaceSpec {
            id: "vm2",
            vni: 100,
            ipv4: vm2_ip,
            ipv6: Ipv6Addr::new(0x2000, 0x100, 2, 0, 0, 0, 0, 1),
            device: &dev2,
            hostname: None,
        })?;
        let ul1 = dp_proto::ipv6_from_bytes(&r1.underlay_route).map_err(|e| e.to_string())?;
        let ul2 = dp_proto::ipv6_from_bytes(&r2.underlay_route).map_err(|e| e.to_string())?;
        api1.create_route(100, "10.100.2.0".parse().expect("valid"), 24, 100, ul2)?;
        api2.create_route(100, "10.100.1.0".parse().expect("valid"), 24, 100, ul1)?;
        step!("qvm1 on hv1 ({ul1}), vm2 on hv2 ({ul2}), routes both ways");

        let vm = vm2.insert(Vm::new("vm2", &n2.netns("vm2"), &dev2)?);
        vm.udhcpc(&scratch)?;

        let mut spec = GuestSpec::new(&guest_mac(&n1, 0));
        spec.pings = vec![vm2_ip.to_string()];
        spec.ping_wait = 60;
        spec.linger = 60;
        spec.command_timeout = 90;
        spec.commands = vec![format!(
            "nc -l -p {TRANSFER_PORT} < /dev/console > /tmp/r; \
             echo \"GUEST: received $(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -c1-32)\""
        )];
        let backend = Backend::VhostUser {
            socket: sock_dir.join(&dev1),
        };
        let g = qvm.insert(Guest::boot("qvm1", &kernel, &spec, &backend, &scratch)?);
        let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
        ensure(ip == format!("{guest_ip}/32"), || format!("qvm1 got {ip}"))?;
        let r = g.wait_line(&format!("GUEST: ping {vm2_ip} "), BOOT_TIMEOUT)?;
        ensure(r.starts_with("ok"), || format!("qvm1 ping {vm2_ip}: {r}"))?;
        step!("qvm1 (hv1, vhost-user) -> vm2 (hv2) across the underlay: {r}");
        let out = vm.ping(&guest_ip.to_string())?;
        ensure(out.ok(), || format!("vm2 ping {guest_ip}: {out}"))?;
        step!("vm2 -> qvm1: ok");

        // vm2 sends 1 MiB to the guest (retrying until the guest listens).
        let file = scratch.path("transfer.bin");
        let data: Vec<u8> = (0..TRANSFER_KIB * 1024)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1])
            .collect();
        std::fs::write(&file, &data).map_err(|e| e.to_string())?;
        let md5 = support::run_args("md5sum", &[file.display().to_string()], READY_TIMEOUT)?
            .check()?
            .stdout
            .chars()
            .take(32)
            .collect::<String>();
        let send = format!(
            "for n in $(seq 1 100); do busybox nc {guest_ip} {TRANSFER_PORT} < {} && exit 0; \
             sleep 0.3; done; exit 1",
            file.display()
        );
        let out = support::run(&mut vm.ns.command(&["sh", "-c", &send]), BOOT_TIMEOUT)?;
        ensure(out.ok(), || format!("vm2 could not send: {out}"))?;
        let received = g.wait_line("GUEST: received ", BOOT_TIMEOUT)?;
        ensure(received == format!("{} {md5}", data.len()), || {
            format!("sent {} bytes {md5}, guest received {received}", data.len())
        })?;
        step!("vm2 -> qvm1: 1 MiB over TCP across the underlay, MD5 {md5}");
        Ok(())
    })();
    if let Err(e) = result {
        let guest = qvm.as_ref().map(Guest::report).unwrap_or_default();
        let vm = vm2.as_ref().map(Vm::report).unwrap_or_default();
        panic!(
            "{e}\n{guest}\n{vm}\n{}\n{}\n{}",
            router.report(),
            hv1.report(),
            hv2.report()
        );
    }
    drop(qvm);
    drop(vm2);
    drop(hv1);
    drop(hv2);
    drop(router);
    step!("whole test {:.1?}", t0.elapsed());
}

/// Issue #14, reconnect both ways: a guest keeps pinging the gateway while (1) the daemon is
/// stopped and started again (a new process, the interface created again as a control plane
/// would) — QEMU (`reconnect=1`) re-establishes the port and the guest's pings come back
/// without a reboot or a new DHCP exchange — and then (2) QEMU is killed and a new QEMU boots on
/// the same socket while the daemon runs on: it gets its lease and pings.
#[test]
fn vhost_user_port_survives_a_daemon_restart_and_a_qemu_restart() {
    const TEST: &str = "vhost_user_port_survives_a_daemon_restart_and_a_qemu_restart";
    let Some(kernel) = guest::ready_or_skip(TEST, &["ip"]) else {
        return;
    };
    let t0 = Instant::now();
    let names = Names::new();
    let scratch = Scratch::new(&names).unwrap_or_else(|e| panic!("{e}"));
    let sock_dir = scratch.path("vhost-user");
    let socket = sock_dir.join(names.vf(0));
    let start = |log: &str| -> Result<Daemon, String> {
        let port = support::free_port();
        let mut args = standard_args(&names, 1, port);
        args.extend(["--vhost-user".to_string(), sock_dir.display().to_string()]);
        let d = Daemon::start(
            &args,
            port,
            vec![names.pf0(), names.pf1()],
            scratch.path(log),
        )?;
        let mut api = Api::connect(d.port)?;
        api.init()?;
        api.create_interface(&IfaceSpec {
            id: "qvm1",
            vni: 100,
            ipv4: GUESTS[0].ipv4,
            ipv6: GUESTS[0].ipv6,
            device: &names.vf(0),
            hostname: None,
        })?;
        wait_for_sockets(std::slice::from_ref(&socket))?;
        Ok(d)
    };
    let mut daemon = start("dpservice-1.log").unwrap_or_else(|e| panic!("{e}"));
    let mut spec = GuestSpec::new(&guest_mac(&names, 0));
    spec.pings = vec![GATEWAY.to_string()];
    spec.ping_wait = 60;
    spec.command_timeout = 150;
    spec.linger = 30;
    // One ping every ~0.3 s, its outcome on the console (bounded: 400 rounds).
    spec.commands = vec![format!(
        "i=0; while [ $i -lt 400 ]; do \
         if ping -c 1 -W 1 {GATEWAY} >/dev/null 2>&1; then echo \"GUEST: alive $i ok\"; \
         else echo \"GUEST: alive $i fail\"; fi; i=$((i + 1)); sleep 0.3; done"
    )];
    let backend = Backend::VhostUser {
        socket: socket.clone(),
    };
    let mut qvm: Option<Guest> = None;
    let result = (|| -> Result<(), String> {
        let g = qvm.insert(Guest::boot("qvm1", &kernel, &spec, &backend, &scratch)?);
        let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
        ensure(ip == format!("{}/32", GUESTS[0].ipv4), || {
            format!("got {ip}")
        })?;
        let first = g.wait_line("GUEST: alive ", BOOT_TIMEOUT)?;
        ensure(first.ends_with(" ok"), || format!("first ping: {first}"))?;
        step!("guest up, pinging the gateway: {first}");

        // (1) The daemon goes away: the pings fail; a new daemon: they come back.
        let status = daemon.stop_with(libc::SIGTERM, Duration::from_secs(10))?;
        step!("daemon stopped ({status})");
        let outage = Instant::now();
        let fail = wait_for_ping(g, " fail", Duration::from_secs(30))?;
        step!("guest sees the outage: {fail}");
        daemon = start("dpservice-2.log")?;
        step!("daemon started again after {:.1?}", outage.elapsed());
        let back = wait_for_ping(g, " ok", Duration::from_secs(60))?;
        step!("pings back {:.1?} after the stop: {back}", outage.elapsed());
        let dhcp = g
            .guest_lines()
            .iter()
            .filter(|l| l.starts_with("ip="))
            .count();
        ensure(dhcp == 1, || {
            format!("{dhcp} DHCP leases: the guest asked again")
        })?;

        // (2) QEMU goes away and a new one boots on the same socket; the daemon runs on.
        if let Some(old) = qvm.take() {
            drop(old);
        }
        let g = qvm.insert(Guest::boot("qvm1b", &kernel, &spec, &backend, &scratch)?);
        let ip = g.wait_line("GUEST: ip=", BOOT_TIMEOUT)?;
        ensure(ip == format!("{}/32", GUESTS[0].ipv4), || {
            format!("got {ip}")
        })?;
        let r = wait_for_ping(g, " ok", BOOT_TIMEOUT)?;
        step!("a new QEMU on the same socket: ip={ip}, {r}");
        ensure(daemon.try_exit().is_none(), || {
            "the daemon exited".to_string()
        })
    })();
    if let Err(e) = result {
        let guest = qvm.as_ref().map(Guest::report).unwrap_or_default();
        panic!("{e}\n{guest}\n{}", daemon.report());
    }
    step!("whole test {:.1?}", t0.elapsed());
}

/// The next `GUEST: alive <n> <outcome>` line whose outcome is `suffix` (` ok` or ` fail`).
fn wait_for_ping(g: &mut Guest, suffix: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure(!left.is_zero(), || {
            format!("no ping{suffix} in {timeout:?}")
        })?;
        let line = g.wait_line("GUEST: alive ", left)?;
        if line.ends_with(suffix) {
            return Ok(line);
        }
    }
}
