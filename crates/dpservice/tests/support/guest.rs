//! Real VMs for the tests: a tiny Linux guest under QEMU (TCG) with one virtio-net NIC, whose
//! backend is a vhost-user unix socket (QEMU the client, the daemon the backend; issue #14) or,
//! to develop and prove the guest side alone, a TAP device.
//!
//! # Kernel
//! Debian's `linux-image-<ver>-cloud-amd64` (the current one: `apt-cache depends
//! linux-image-cloud-amd64`), fetched by `scripts/guest-kernel.sh` with `apt-get download` and
//! unpacked with `dpkg-deb -x` into `/var/cache/dpservice-rs-tests/kernel/<pkg>_<ver>/`
//! (`$DPSERVICE_GUEST_KERNEL_CACHE`), reused between runs — never installed, /boot untouched.
//! `.ci/run` and `scripts/test.sh` (as root) run the script; the tests only look the kernel up
//! (`guest-kernel.sh --cached`, or `$DPSERVICE_GUEST_KERNEL` = an unpacked package root) and
//! skip without it — fail, with `DPSERVICE_REQUIRE_SYSTEM_TESTS=1`.
//!
//! # Initramfs
//! Built per guest in the test's scratch directory as a newc cpio, written here (no `cpio`
//! tool): busybox-static's `/bin/busybox` (checked to be static: no PT_INTERP), `/dev/console`,
//! the kernel's NIC modules — `virtio_pci` and `virtio_net` plus what their `.ko`'s `depends=`
//! name, transitively (virtio_ring, virtio, virtio_pci_modern_dev, virtio_pci_legacy_dev,
//! failover, net_failover), in dependency order, skipping built-in ones — and:
//! * `/init`: mounts proc/sys/devtmpfs, insmods the modules, brings eth0 up, `udhcpc -f -q -n
//!   -t <tries> -T 2 -s /udhcpc.sh -O staticroutes -O mtu`, pings each address of
//!   [`GuestSpec::pings`] (retrying for `ping_wait` s), runs [`GuestSpec::commands`] (files
//!   `/cmds/<n>.sh`, each under `timeout`), then `poweroff -f`; a watchdog powers off after
//!   `watchdog` s whatever happens;
//! * `/udhcpc.sh`: sets address, MTU and the RFC 3442 classless routes (the dataplane sends
//!   them instead of a router; the /32's gateway gets a host route first) or the router;
//! * `/guest.env`: the spec's settings;
//! * [`GuestSpec::files`]: extra executables of a test.
//!
//! Console lines for the test, all `GUEST: …`: `boot`, `eth0 mac=…`, `ip=<addr>/<len>`,
//! `mtu=`, `router=`, `staticroutes=`, `dns=`, `route …`, or `dhcp failed`; `ping <addr> ok (…)`
//! or `ping <addr> failed`; `cmd <n> exit=<status>`; `done`; `watchdog …`.
//!
//! # QEMU
//! `qemu-system-x86_64 -nodefaults -machine q35 -accel tcg -smp 1 -m 256M -kernel … -initrd …
//! -append "console=ttyS0 panic=-1 quiet …" -serial file:<console log> -display none -monitor
//! none -no-reboot`, and:
//! * `-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem`: vhost-user
//!   passes the guest RAM to the backend as file descriptors, which it maps *shared* to read and
//!   write the virtqueues and buffers; private anonymous RAM cannot be shared;
//! * vhost-user: `-chardev socket,id=chr0,path=<sock>,reconnect=1 -netdev
//!   vhost-user,id=net0,chardev=chr0` — QEMU is the client, the backend listens; `reconnect=1`
//!   retries each second if the backend restarts (QEMU waits for the first connection before
//!   the guest starts);
//! * TAP: `-netdev tap,id=net0,ifname=<tap>,script=no,downscript=no`, QEMU run inside the
//!   test's namespace (`ip netns exec`) that holds the (persistent) TAP;
//! * `-device virtio-net-pci,netdev=net0,mac=<mac>,vectors=0`: `vectors=0` means no MSI-X but
//!   the legacy INTx interrupt: QEMU 7.2 under TCG has no irqfd for a vhost-user backend's call
//!   eventfds on MSI-X vectors, with INTx QEMU watches them and raises the interrupt itself.
//!
//! # Live migration
//! [`Guest::boot_with`] takes [`QemuOptions`]: a QMP socket (`-qmp unix:…,server=on,wait=off`,
//! spoken by [`Qmp`]) and `-incoming`. [`Guest::migration_target`] starts a second QEMU with the
//! same machine, memory backend, kernel, initramfs and NIC (MAC) on another backend socket,
//! paused with `-incoming`, its console in its own file: after QMP `migrate` on the source the
//! guest's console output continues there (tests/qemu_migration.rs, docs/migration.md).
//!
//! The whole guest is fast even under TCG: ~2.3 s of guest uptime to a DHCP lease, ~3.5 s
//! from QEMU's start to its power-off (2 cores). Every wait is bounded, QEMU gets SIGTERM if
//! the test thread dies (`die_with_parent`) and is killed when its [`Guest`] is dropped.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{
    die_with_parent, skip_reason, system_tests_required, tail, wait_until, which, Background,
    Names, Scratch,
};

/// Program name of QEMU.
pub const QEMU: &str = "qemu-system-x86_64";
/// Where busybox-static puts its binary.
pub const BUSYBOX_STATIC: &str = "/bin/busybox";
/// Guest RAM in MiB (also the size of the shared memfd backend).
pub const GUEST_MEM_MIB: u32 = 256;
/// Boot to a DHCP lease under TCG takes ~10–30 s on a loaded 2-core machine; be generous.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// The modules the guest needs for its NIC (dependencies are added from the `.ko` files).
const NIC_MODULES: &[&str] = &["virtio_pci", "virtio_net"];

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The package root (`boot/`, `lib/modules/<release>/`).
    pub root: PathBuf,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
}

/// The repository's `scripts/guest-kernel.sh`.
pub fn kernel_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest-kernel.sh")
}

/// The cached guest kernel (`$DPSERVICE_GUEST_KERNEL`, a package root, if set; else
/// `scripts/guest-kernel.sh --cached`). Never downloads.
pub fn kernel() -> Result<Kernel, String> {
    let root = match std::env::var_os("DPSERVICE_GUEST_KERNEL") {
        Some(r) => PathBuf::from(r),
        None => {
            let script = kernel_script();
            let out = super::run(
                Command::new("bash").arg(&script).arg("--cached"),
                Duration::from_secs(10),
            )?;
            if !out.ok() {
                return Err(format!("no guest kernel: {}", out.stderr.trim()));
            }
            PathBuf::from(out.stdout.trim())
        }
    };
    let first = |dir: &Path, pred: &dyn Fn(&str) -> bool| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| pred(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        v.sort();
        v.pop()
    };
    let vmlinuz = first(&root.join("boot"), &|n| n.starts_with("vmlinuz-"))
        .ok_or_else(|| format!("no boot/vmlinuz-* under {}", root.display()))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or_default()
        .to_string();
    let modules = root.join("lib/modules").join(&release);
    if !modules.join("kernel").is_dir() {
        return Err(format!("no modules for {release} under {}", root.display()));
    }
    Ok(Kernel {
        root,
        vmlinuz,
        modules,
    })
}

/// Why QEMU guests cannot run here (besides the generic `skip_reason` of `tools`).
pub fn guest_skip_reason(tools: &[&str]) -> Option<String> {
    let mut all = vec![QEMU];
    all.extend_from_slice(tools);
    if let Some(r) = skip_reason(&all) {
        return Some(r);
    }
    if let Err(e) = static_busybox() {
        return Some(e);
    }
    kernel().err()
}

/// The guest kernel if QEMU guests can run and `tools` are there (root and TUN too, as for every
/// system test: `skip_reason`); otherwise `None` after printing `SKIPPED` — or a
/// panic if `DPSERVICE_REQUIRE_SYSTEM_TESTS=1` forbids skipping.
pub fn ready_or_skip(test: &str, tools: &[&str]) -> Option<Kernel> {
    match guest_skip_reason(tools) {
        None => Some(kernel().expect("checked by guest_skip_reason")),
        Some(reason) => {
            if system_tests_required() {
                panic!(
                    "{test}: cannot run: {reason} (and DPSERVICE_REQUIRE_SYSTEM_TESTS=1 forbids \
                     skipping)"
                );
            }
            eprintln!("SKIPPED {test}: {reason}");
            None
        }
    }
}

/// `/bin/busybox` if it is statically linked (an ELF without PT_INTERP): the initramfs has no
/// C library.
pub fn static_busybox() -> Result<PathBuf, String> {
    let p = PathBuf::from(BUSYBOX_STATIC);
    let elf = fs::read(&p).map_err(|e| {
        format!(
            "{}: {e} (install busybox-static; scripts/test.sh does)",
            p.display()
        )
    })?;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return Err(format!("{} is not a 64-bit ELF", p.display()));
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err(format!("{}: truncated ELF header", p.display()));
    };
    for i in 0..usize::from(phnum) {
        const PT_INTERP: u32 = 3;
        if u32_at(phoff as usize + i * usize::from(phentsize)) == Some(PT_INTERP) {
            return Err(format!(
                "{} is dynamically linked (install busybox-static; scripts/test.sh does)",
                p.display()
            ));
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------
// Kernel modules
// ---------------------------------------------------------------------------------------

/// `name` → path of `<name>.ko` under `modules/kernel` (names compared with `-` as `_`).
fn find_module(modules: &Path, name: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, want: &str, depth: usize) -> Option<PathBuf> {
        if depth > 12 {
            return None;
        }
        for e in fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            let ft = e.file_type().ok()?;
            if ft.is_dir() {
                if let Some(f) = walk(&p, want, depth + 1) {
                    return Some(f);
                }
            } else if e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".ko"))
                .is_some_and(|n| n.replace('-', "_") == want)
            {
                return Some(p);
            }
        }
        None
    }
    walk(&modules.join("kernel"), &name.replace('-', "_"), 0)
}

/// The `depends=` of an uncompressed `.ko` (its `.modinfo` strings).
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// `wanted` and their dependencies, each before its users: (name, contents of the `.ko`).
/// A module that is built in (`modules.builtin`) is skipped.
pub fn modules_in_load_order(
    kernel: &Kernel,
    wanted: &[&str],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let builtin = fs::read_to_string(kernel.modules.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |n: &str| {
        builtin.lines().any(|l| {
            l.rsplit('/')
                .next()
                .and_then(|f| f.strip_suffix(".ko"))
                .is_some_and(|f| f.replace('-', "_") == n)
        })
    };
    fn visit(
        kernel: &Kernel,
        name: &str,
        is_builtin: &dyn Fn(&str) -> bool,
        stack: &mut Vec<String>,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        if out.iter().any(|(n, _)| n == name) || is_builtin(name) {
            return Ok(());
        }
        if stack.iter().any(|n| n == name) || stack.len() > 32 {
            return Err(format!("module dependency cycle: {stack:?} -> {name}"));
        }
        let path = find_module(&kernel.modules, name).ok_or_else(|| {
            format!(
                "module {name} is neither built in nor under {} (compressed modules are not \
                 supported)",
                kernel.modules.display()
            )
        })?;
        let ko = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        stack.push(name.to_string());
        for dep in module_depends(&ko) {
            visit(kernel, &dep, is_builtin, stack, out)?;
        }
        stack.pop();
        out.push((name.to_string(), ko));
        Ok(())
    }
    let mut out = Vec::new();
    for w in wanted {
        visit(
            kernel,
            &w.replace('-', "_"),
            &is_builtin,
            &mut Vec::new(),
            &mut out,
        )?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// The initramfs: a newc cpio archive
// ---------------------------------------------------------------------------------------

/// A newc ("070701") cpio archive, as the kernel unpacks into its initramfs.
pub struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub fn new() -> Self {
        Cpio {
            buf: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1, // with its NUL
            0,                     // check
        ];
        self.ino += 1;
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, &[], (0, 0));
    }
    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, S_IFREG | mode, data, (0, 0));
    }
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, target.as_bytes(), (0, 0));
    }
    pub fn char_dev(&mut self, name: &str, mode: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | mode, &[], (major, minor));
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

impl Default for Cpio {
    fn default() -> Self {
        Self::new()
    }
}

/// What the guest does once booted.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// The NIC's MAC (`52:54:00:…`; see [`guest_mac`]).
    pub mac: String,
    /// `udhcpc -t`: discover attempts, 2 s apart.
    pub dhcp_tries: u32,
    /// Addresses to ping after DHCP, in order; each is retried (1 s per try) for up to
    /// `ping_wait` seconds, then reported `ok` or `failed`.
    pub pings: Vec<String>,
    pub ping_wait: u32,
    /// Shell commands run after the pings, each bounded by `command_timeout` seconds; their
    /// output goes to the console, then `GUEST: cmd <n> exit=<status>`.
    pub commands: Vec<String>,
    pub command_timeout: u32,
    /// The guest powers itself off after this many seconds whatever it is doing.
    pub watchdog: u32,
    /// Seconds the guest stays up after `done` (still answering on the network, e.g. for a
    /// peer's pings) before it powers off.
    pub linger: u32,
    /// Extra executables put into the initramfs: (path without the leading `/`, e.g.
    /// `bin/tool`, contents), mode 0755 (static binaries: the initramfs has no C library).
    pub files: Vec<(String, Vec<u8>)>,
    /// vCPUs (`-smp`).
    pub cpus: u32,
    /// virtio-net queue pairs of a vhost-user NIC (`queues=` and `mq=on` above 1); Linux
    /// enables as many as it has vCPUs.
    pub queue_pairs: u32,
}

impl GuestSpec {
    pub fn new(mac: &str) -> Self {
        GuestSpec {
            mac: mac.to_string(),
            dhcp_tries: 10,
            pings: Vec::new(),
            ping_wait: 20,
            commands: Vec::new(),
            command_timeout: 30,
            watchdog: 240,
            linger: 0,
            files: Vec::new(),
            cpus: 1,
            queue_pairs: 1,
        }
    }
}

/// A locally administered unicast MAC unique to `names` and `index` (QEMU's `52:54:00` prefix).
pub fn guest_mac(names: &Names, index: u8) -> String {
    let h = names.tag.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        (h >> 16) as u8,
        (h >> 8) as u8,
        index
    )
}

/// `/init`: the whole life of the guest. Its settings come from `/guest.env`.
const INIT: &str = r#"#!/bin/busybox sh
# dpservice-rs test guest (crates/dpservice/tests/support/guest.rs)
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run
. /guest.env
say() { echo "GUEST: $*"; }
say "boot uptime=$(cut -d' ' -f1 /proc/uptime)"
( sleep "$WATCHDOG"; echo "GUEST: watchdog after ${WATCHDOG}s: powering off"; poweroff -f ) &

for m in $(cat /modules.list); do
    insmod "/lib/modules/$m.ko" || say "insmod $m failed"
done
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
if [ ! -e /sys/class/net/eth0 ]; then
    say "no eth0"
    say "done"
    poweroff -f
fi
ip link set lo up
ip link set eth0 up
say "eth0 mac=$(cat /sys/class/net/eth0/address)"

if udhcpc -f -q -n -i eth0 -t "$DHCP_TRIES" -T 2 -s /udhcpc.sh -O staticroutes -O mtu \
        >/tmp/udhcpc.log 2>&1 && [ -f /tmp/lease ]; then
    . /tmp/lease
    say "ip=$ip/${mask:-32}"
    say "mtu=$(cat /sys/class/net/eth0/mtu)"
    say "router=$router"
    say "staticroutes=$staticroutes"
    say "dns=$dns"
    say "dhcp uptime=$(cut -d' ' -f1 /proc/uptime)"
    ip -4 route | sed 's/^/GUEST: route /'
else
    say "dhcp failed"
    sed 's/^/GUEST: udhcpc: /' /tmp/udhcpc.log
fi

for a in $PINGS; do
    end=$(( $(cut -d. -f1 /proc/uptime) + PING_WAIT ))
    ok=
    while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do
        if ping -c 1 -W 1 "$a" >/tmp/ping.out 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    if [ -n "$ok" ]; then
        say "ping $a ok ($(grep -o 'time=[0-9.]* ms' /tmp/ping.out))"
    else
        say "ping $a failed"
    fi
done

i=1
while [ -f "/cmds/$i.sh" ]; do
    timeout "$COMMAND_TIMEOUT" sh "/cmds/$i.sh"
    say "cmd $i exit=$?"
    i=$((i + 1))
done
say "done uptime=$(cut -d' ' -f1 /proc/uptime)"
[ "$LINGER" -gt 0 ] && sleep "$LINGER"
poweroff -f
"#;

/// The udhcpc event script: address, MTU, RFC 3442 classless static routes (as the dataplane
/// sends) or the router option; the lease's variables go to /tmp/lease for /init.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
deconfig)
    ip link set dev "$interface" up
    ip -4 addr flush dev "$interface"
    ;;
bound|renew)
    for v in ip mask router staticroutes mtu dns serverid lease; do
        eval "printf '%s=\"%s\"\n' $v \"\${$v}\""
    done > /tmp/lease
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-32}" dev "$interface" || exit 1
    if [ -n "$staticroutes" ]; then
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            if [ "$2" = 0.0.0.0 ]; then
                ip -4 route replace "$1" dev "$interface"
            else
                # The gateway may lie outside the (/32) subnet: a host route to it first.
                ip -4 route replace "$2" dev "$interface"
                ip -4 route replace "$1" via "$2" dev "$interface"
            fi
            shift 2
        done
    elif [ -n "$router" ]; then
        r="${router%% *}"
        ip -4 route replace "$r" dev "$interface"
        ip -4 route replace default via "$r" dev "$interface"
    fi
    ;;
esac
exit 0
"#;

/// Builds the initramfs of `spec`.
pub fn initramfs(kernel: &Kernel, spec: &GuestSpec) -> Result<Vec<u8>, String> {
    let busybox = static_busybox()?;
    let bb = fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    let modules = modules_in_load_order(kernel, NIC_MODULES)?;
    let mut c = Cpio::new();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "lib",
        "lib/modules",
        "cmds",
    ] {
        c.dir(d);
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    c.char_dev("dev/console", 0o600, 5, 1);
    c.file("bin/busybox", 0o755, &bb);
    c.symlink("bin/sh", "busybox");
    c.file("init", 0o755, INIT.as_bytes());
    c.file("udhcpc.sh", 0o755, UDHCPC_SCRIPT.as_bytes());
    let mut list = String::new();
    for (name, ko) in &modules {
        c.file(&format!("lib/modules/{name}.ko"), 0o644, ko);
        let _ = writeln!(list, "{name}");
    }
    c.file("modules.list", 0o644, list.as_bytes());
    let env = format!(
        "DHCP_TRIES={}\nPINGS='{}'\nPING_WAIT={}\nCOMMAND_TIMEOUT={}\nWATCHDOG={}\nLINGER={}\n",
        spec.dhcp_tries,
        spec.pings.join(" ").replace('\'', ""),
        spec.ping_wait,
        spec.command_timeout,
        spec.watchdog,
        spec.linger
    );
    c.file("guest.env", 0o644, env.as_bytes());
    for (path, data) in &spec.files {
        c.file(path.trim_start_matches('/'), 0o755, data);
    }
    for (i, cmd) in spec.commands.iter().enumerate() {
        c.file(
            &format!("cmds/{}.sh", i + 1),
            0o755,
            format!("{cmd}\n").as_bytes(),
        );
    }
    Ok(c.finish())
}

// ---------------------------------------------------------------------------------------
// QEMU
// ---------------------------------------------------------------------------------------

/// The NIC's backend.
#[derive(Debug, Clone)]
pub enum Backend {
    /// vhost-user: QEMU connects (as the client, reconnecting) to the backend's listening unix
    /// socket — the daemon's `--vhost-user DIR`/`<VF device name>`.
    VhostUser { socket: PathBuf },
    /// A TAP device `ifname` (created beforehand, e.g. `ip tuntap add … mode tap`, or by
    /// QEMU); QEMU runs inside network namespace `netns` if given.
    Tap {
        ifname: String,
        netns: Option<String>,
    },
}

/// QEMU's arguments for `spec` on `backend` (kernel, initrd and console paths given).
pub fn qemu_args(
    vmlinuz: &Path,
    initrd: &Path,
    console: &Path,
    spec: &GuestSpec,
    backend: &Backend,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        "tcg".into(),
        "-smp".into(),
        spec.cpus.to_string(),
        "-m".into(),
        format!("{GUEST_MEM_MIB}M"),
        // vhost-user needs the guest RAM in a file descriptor it can pass to the backend,
        // which maps it (shared) to read and write the virtqueues and packet buffers.
        "-object".into(),
        format!("memory-backend-memfd,id=mem,size={GUEST_MEM_MIB}M,share=on"),
        "-numa".into(),
        "node,memdev=mem".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", console.display()),
        "-no-reboot".into(),
        "-kernel".into(),
        vmlinuz.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init".into(),
    ];
    match backend {
        Backend::VhostUser { socket } => {
            a.push("-chardev".into());
            a.push(format!(
                "socket,id=chr0,path={},reconnect=1",
                socket.display()
            ));
            a.push("-netdev".into());
            a.push(format!(
                "vhost-user,id=net0,chardev=chr0,queues={}",
                spec.queue_pairs.max(1)
            ));
        }
        Backend::Tap { ifname, .. } => {
            a.push("-netdev".into());
            a.push(format!(
                "tap,id=net0,ifname={ifname},script=no,downscript=no"
            ));
        }
    }
    // vectors=0: no MSI-X, the legacy INTx interrupt. Without KVM there are no irqfds, and
    // QEMU 7.2's MSI-X path for a vhost backend's call eventfds does not work under TCG; with
    // INTx QEMU itself watches the eventfds and raises the interrupt. (Same for the TAP
    // variant, so both boot the same guest.)
    let mq = match backend {
        Backend::VhostUser { .. } if spec.queue_pairs > 1 => ",mq=on",
        _ => "",
    };
    a.push("-device".into());
    a.push(format!(
        "virtio-net-pci,netdev=net0,mac={},vectors=0{mq}",
        spec.mac
    ));
    a
}

/// QEMU options beyond the guest and its NIC: a QMP socket, and for the target of a live
/// migration the stream it waits for.
#[derive(Debug, Clone, Default)]
pub struct QemuOptions {
    /// `-qmp unix:<path>,server=on,wait=off`: QEMU's machine protocol ([`Qmp`]).
    pub qmp: Option<PathBuf>,
    /// `-incoming <uri>` (e.g. `unix:<path>`, or `defer` for QMP's `migrate-incoming`): QEMU
    /// starts paused and waits for a migration stream instead of booting.
    pub incoming: Option<String>,
}

impl QemuOptions {
    /// The extra command-line arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(q) = &self.qmp {
            a.push("-qmp".to_string());
            a.push(format!("unix:{},server=on,wait=off", q.display()));
        }
        if let Some(uri) = &self.incoming {
            a.push("-incoming".to_string());
            a.push(uri.clone());
        }
        a
    }
}

/// A booted guest. Dropping it kills QEMU.
pub struct Guest {
    pub name: String,
    qemu: Background,
    pub console: PathBuf,
    pub started: Instant,
    /// Lines of the console consumed by `wait_line` so far.
    seen: usize,
    /// What it was started from (a migration target is started the same way).
    pub spec: GuestSpec,
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub options: QemuOptions,
}

impl Guest {
    /// Builds the initramfs of `spec` in `scratch` and starts QEMU (files `<name>.*`).
    pub fn boot(
        name: &str,
        kernel: &Kernel,
        spec: &GuestSpec,
        backend: &Backend,
        scratch: &Scratch,
    ) -> Result<Guest, String> {
        Self::boot_with(
            name,
            kernel,
            spec,
            backend,
            scratch,
            &QemuOptions::default(),
        )
    }

    /// [`Guest::boot`] with extra QEMU options (a QMP socket).
    pub fn boot_with(
        name: &str,
        kernel: &Kernel,
        spec: &GuestSpec,
        backend: &Backend,
        scratch: &Scratch,
        options: &QemuOptions,
    ) -> Result<Guest, String> {
        let initrd = scratch.path(&format!("{name}.initramfs.cpio"));
        fs::write(&initrd, initramfs(kernel, spec)?)
            .map_err(|e| format!("{}: {e}", initrd.display()))?;
        Self::start(
            name,
            &kernel.vmlinuz,
            &initrd,
            spec,
            backend,
            scratch,
            options,
        )
    }

    /// The target of a live migration of `self`: a second QEMU with the same machine, memory,
    /// kernel, initramfs and NIC (same MAC) on `backend` (the other hypervisor's socket), with
    /// `options` (its `incoming` set, e.g. `unix:<path>`); its console is `<name>.console.log`.
    /// It waits paused until the source migrates to it.
    pub fn migration_target(
        &self,
        name: &str,
        backend: &Backend,
        scratch: &Scratch,
        options: &QemuOptions,
    ) -> Result<Guest, String> {
        if options.incoming.is_none() {
            return Err(format!("migration target {name}: no `incoming` given"));
        }
        Self::start(
            name,
            &self.vmlinuz,
            &self.initrd,
            &self.spec,
            backend,
            scratch,
            options,
        )
    }

    fn start(
        name: &str,
        vmlinuz: &Path,
        initrd: &Path,
        spec: &GuestSpec,
        backend: &Backend,
        scratch: &Scratch,
        options: &QemuOptions,
    ) -> Result<Guest, String> {
        let console = scratch.path(&format!("{name}.console.log"));
        fs::write(&console, "").map_err(|e| format!("{}: {e}", console.display()))?;
        let qemu = which(QEMU).ok_or_else(|| format!("{QEMU} is not installed"))?;
        let mut args = qemu_args(vmlinuz, initrd, &console, spec, backend);
        args.extend(options.args());
        let mut cmd = match backend {
            Backend::Tap {
                netns: Some(ns), ..
            } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&qemu);
                c
            }
            _ => Command::new(&qemu),
        };
        cmd.args(&args);
        die_with_parent(&mut cmd);
        let started = Instant::now();
        let qemu = Background::spawn(&mut cmd, &scratch.path(&format!("{name}.qemu")))?;
        Ok(Guest {
            name: name.to_string(),
            qemu,
            console,
            started,
            seen: 0,
            spec: spec.clone(),
            vmlinuz: vmlinuz.to_path_buf(),
            initrd: initrd.to_path_buf(),
            options: options.clone(),
        })
    }

    /// The console so far, one entry per line (without `\r`).
    pub fn console_lines(&self) -> Vec<String> {
        let raw = fs::read(&self.console).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect()
    }

    /// The `GUEST: …` lines so far (without the prefix).
    pub fn guest_lines(&self) -> Vec<String> {
        self.console_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("GUEST: ").map(str::to_string))
            .collect()
    }

    /// Waits for the next console line (after those already consumed) that starts with
    /// `prefix`, and returns its remainder. Fails early if QEMU exits or the guest reports
    /// `GUEST: done` without such a line.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let seen = &mut self.seen;
        let console = &self.console;
        let qemu = &mut self.qemu;
        let r = wait_until(
            &format!("guest {} to print {prefix:?}", self.name),
            timeout,
            || {
                let exited = qemu.try_exit();
                let raw = fs::read(console).unwrap_or_default();
                let text = String::from_utf8_lossy(&raw);
                // Only complete lines: the last one may still be being written.
                let complete = text.rfind('\n').map_or("", |i| &text[..i]);
                let lines: Vec<&str> = complete.lines().map(|l| l.trim_end_matches('\r')).collect();
                for (i, l) in lines.iter().enumerate().skip(*seen) {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        *seen = i + 1;
                        return Ok(Ok(rest.to_string()));
                    }
                    if l.starts_with("GUEST: done") || l.starts_with("GUEST: watchdog") {
                        *seen = lines.len();
                        return Ok(Err(format!(
                            "the guest finished ({l:?}) without {prefix:?}"
                        )));
                    }
                }
                if let Some(status) = exited {
                    return Ok(Err(format!("QEMU exited with {status}")));
                }
                Err(format!("{} console lines", lines.len()))
            },
        );
        match r {
            Ok(Ok(rest)) => Ok(rest),
            Ok(Err(e)) | Err(e) => Err(format!("{e}\n{}", self.report())),
        }
    }

    /// Waits (bounded) for QEMU to exit by itself (the guest powers off at its end).
    pub fn wait_poweroff(&mut self, timeout: Duration) -> Result<(), String> {
        let out = self.qemu.wait(timeout)?;
        if out.ok() {
            Ok(())
        } else {
            Err(format!("{out}\n{}", self.report()))
        }
    }

    pub fn pid_alive(&mut self) -> bool {
        self.qemu.try_exit().is_none()
    }

    /// Connects to the guest's QMP socket (it must have been started with one).
    pub fn qmp(&mut self, timeout: Duration) -> Result<Qmp, String> {
        let path = self
            .options
            .qmp
            .clone()
            .ok_or_else(|| format!("guest {} has no QMP socket", self.name))?;
        let qemu = &mut self.qemu;
        let r = wait_until(&format!("QMP of guest {}", self.name), timeout, || {
            if let Some(status) = qemu.try_exit() {
                return Ok(Err(format!("QEMU exited with {status}")));
            }
            Qmp::connect(&path).map(Ok)
        });
        match r {
            Ok(Ok(q)) => Ok(q),
            Ok(Err(e)) | Err(e) => Err(format!("{e}\n{}", self.report())),
        }
    }

    /// QEMU's command line and stderr, the console's tail.
    pub fn report(&self) -> String {
        format!(
            "--- guest {}: `{}` ({:.1?} since start)\n--- QEMU stderr:\n{}--- console (last 60 \
             lines of {}):\n{}---",
            self.name,
            self.qemu.cmdline,
            self.started.elapsed(),
            self.qemu.stderr(),
            self.console.display(),
            tail(&self.console, 60)
        )
    }
}

// ---------------------------------------------------------------------------------------
// QMP
// ---------------------------------------------------------------------------------------

/// How long one QMP command may take to answer.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// A QMP client (QEMU Machine Protocol: JSON objects, one per line, over QEMU's `-qmp` unix
/// socket): the greeting is read and `qmp_capabilities` sent on connect; asynchronous events
/// that come between answers are kept in `events`.
pub struct Qmp {
    reader: std::io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
    pub events: Vec<serde_json::Value>,
}

impl Qmp {
    /// Connects (once) and enters command mode.
    pub fn connect(path: &Path) -> Result<Qmp, String> {
        let s = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("QMP {}: {e}", path.display()))?;
        s.set_read_timeout(Some(QMP_TIMEOUT))
            .and_then(|_| s.set_write_timeout(Some(QMP_TIMEOUT)))
            .map_err(|e| format!("QMP {}: {e}", path.display()))?;
        let writer = s
            .try_clone()
            .map_err(|e| format!("QMP {}: {e}", path.display()))?;
        let mut q = Qmp {
            reader: std::io::BufReader::new(s),
            writer,
            events: Vec::new(),
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("QMP {}: greeting {greeting}", path.display()));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read(&mut self) -> Result<serde_json::Value, String> {
        use std::io::BufRead;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| format!("QMP read: {e}"))?;
        if n == 0 {
            return Err("QMP: QEMU closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP: {e}: {line:?}"))
    }

    /// Runs `command` (with `arguments`, an object) and returns its `return` value; an
    /// `error` answer is an `Err` with QEMU's description.
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        use std::io::Write;
        let mut msg = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| format!("QMP {command}: {e}"))?;
        // Bounded: every read has QMP_TIMEOUT, and at most this many events are skipped.
        for _ in 0..1000 {
            let v = self.read().map_err(|e| format!("{command}: {e}"))?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {command}: {e}"));
            }
            self.events.push(v);
        }
        Err(format!("QMP {command}: no answer among 1000 events"))
    }

    /// The names of the events received so far.
    pub fn event_names(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e.get("event").and_then(|n| n.as_str()).map(str::to_string))
            .collect()
    }
}
