//! The daemon's command-line and config-file options, compatible with ironcore dpservice's,
//! plus a few of our own.
//!
//! Names, argument forms, defaults and ranges follow dpservice (`dp_conf.json`,
//! `dp_conf.c`, `dp_argparse.c`), so its deployments keep working:
//!
//! # Sources and precedence
//! 1. The **config file** is read first: `$DP_CONF` if set, else `/run/dpservice/dpservice.conf`.
//!    A missing default file is fine; a file named by `DP_CONF` must exist; `DP_CONF=""`
//!    disables the file. One `key value` per line, the keys being the long options without `--`
//!    (`no-stats` for a flag). Lines starting with `#` and blank lines are ignored. The first bad
//!    line (unknown key, missing or invalid value) stops start-up with its line number.
//! 2. The **command line** comes second and wins for single-valued options.
//! 3. The repeatable options (`--dhcp-dns`, `--dhcpv6-dns`, `--udp-virtsvc`, `--tcp-virtsvc`)
//!    **append**: command-line values are added after the config file's, as in dpservice (both
//!    feed the same list there).
//!
//! # DPDK EAL arguments
//! dpservice is started as `dpservice-bin EAL-ARGS -- OPTIONS`. Everything before the first `--`
//! is taken as EAL arguments and ignored (listed in [`Options::warnings`]), except the TAPs they
//! ask for: `--vdev=net_tapN,iface=NAME,mac=MAC` gives the port on `NAME` the MAC `MAC` (the one
//! the dataplane answers ARP/ND with and sends from, as DPDK's TAP driver takes it for its own
//! side), and unless `--vf-count` is given the VF count is the number of such TAPs whose name
//! starts with the VF pattern — so ironcore's `test/local` command line works unchanged. Other
//! `--vdev`s are ignored with a warning; a `net_tap` without `iface=` or with a bad MAC is refused.
//! Without a `--`, every argument is ours. The config-file keys `a-pf0`/`a-pf1` (EAL `-a` device arguments for
//! Mellanox NICs) are accepted and ignored the same way.
//!
//! # Where we differ from dpservice, on purpose
//! - `--nic-type` defaults to `tap` and `tap` is the only supported value for now; `mellanox`
//!   and `bluefield2` (dpservice's default) are refused with an error naming what is supported.
//! - `--graphtrace-loglevel` and `--flow-timeout` are always available (dpservice only has them
//!   in test builds); `--udp-virtsvc`/`--tcp-virtsvc` are always available too (dpservice only
//!   with `ENABLE_VIRTSVC`), parsed and checked as dpservice does (docs/compatibility.md).
//! - Accepted but ignored, each with a warning at start-up when given ([`ignored_options`]):
//!   `--active-lockfile` (there is no active/standby lock: the daemon forwards at once, so a
//!   standby started with it would forward too), `--sync-tap` (no dpservice-ha state sync),
//!   `--debug-coredumps`. `--graphtrace-loglevel` is
//!   honoured: 1 logs every node's verdict on every packet (target `graphtrace`), 2 also the
//!   frame's first 64 bytes. `--multiport-eswitch` is accepted with a warning too (TAP ports).
//! - Config file: lines of only whitespace count as blank, a `#` after leading whitespace starts
//!   a comment, a trailing `\r` is ignored, and words after the value are ignored with a
//!   warning (dpservice ignores them silently); a value given to a flag (`no-stats false`) is
//!   ignored — the flag is set, as in dpservice — with a warning. An unreadable default file is
//!   an error (dpservice ignores any failure to open it; we only ignore its absence).
//! - IPv4 addresses must be dotted quads (dpservice's `inet_aton` also takes legacy forms such
//!   as `10.1`).
//! - Ours: `--vf-count`, `--workers`, `--router`, `--underlay-mtu`, `--no-tap-offload` (also
//!   usable as config-file keys). `--no-offload` keeps dpservice's meaning (hardware flow
//!   offload, which TAP ports never do); VM TAPs use virtio-net headers (checksum and TCP
//!   segmentation offload from the VM's kernel) unless `--no-tap-offload` is given.
//! - `--wcmp` defaults to 100, as dpservice's: every flow on pf0, pf1 (when given) as the
//!   fail-over only; `--wcmp 50` spreads flows evenly over both uplinks, each the other's
//!   fail-over. (dpservice's test/local suite runs with both uplinks and no `--wcmp`, and
//!   expects everything on pf0.)
//! - `--vhost-user DIR` (ours): the VF ports are vhost-user sockets in DIR, named as the TAP
//!   devices would be (`DIR/<vf-pattern>N`), served to QEMU as the vhost-user backend, with a
//!   queue pair per worker (`--workers N`: QEMU's `queues=` up to N). `--vhost-user-vfs N`
//!   makes only the first N VFs vhost-user, the rest stay TAPs.
//! - `--nic-type` also takes `af_packet` and `af_xdp` (ours): the uplinks and VF ports are then
//!   existing interfaces (e.g. veth ends) opened with AF_PACKET TPACKET_V3 rings or AF_XDP
//!   sockets instead of TAP devices the daemon creates.
//!
//! [`Options::load`] prints help or the version and exits on `-h`/`-v`; every other problem is
//! one line in its `Err`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use dp_packet::MacAddr;

/// The config file read when `DP_CONF` is not set.
pub const DEFAULT_CONF_FILE: &str = "/run/dpservice/dpservice.conf";

/// Longest interface name (IF_NAMESIZE - 1).
const IFNAME_MAX: usize = 15;
/// Longest `--active-lockfile` path (dpservice's buffer is 256 bytes with the NUL).
const LOCKFILE_MAX: usize = 255;
/// DHCP option lengths are one byte: at most 63 IPv4 and 15 IPv6 addresses (RFC 2132).
const DHCP_DNS_MAX: usize = 255 / 4;
const DHCPV6_DNS_MAX: usize = 255 / 16;
/// dpservice's DP_VIRTSVC_MAX.
const VIRTSVC_MAX: usize = 256;

/// The daemon's options; see the module docs for sources and precedence.
// The doc comments are the `--help` text: `<file-prefix>` there is no HTML tag.
#[allow(rustdoc::invalid_html_tags)]
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "dpservice",
    version,
    about = "dpservice-rs: a hypervisor dataplane, drop-in for ironcore's dpservice",
    after_help = "Arguments before a '--' are DPDK EAL arguments and are ignored. \
                  The config file ($DP_CONF, default /run/dpservice/dpservice.conf) takes \
                  'key value' lines with the long option names; the command line wins.",
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true,
    infer_long_args = true
)]
pub struct Options {
    /// display this help and exit
    #[arg(short = 'h', long = "help", action = ArgAction::Help)]
    help: Option<bool>,

    /// display version and exit
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    version: Option<bool>,

    /// first physical interface (e.g. eth0)
    #[arg(long, value_name = "IFNAME", value_parser = ifname)]
    pub pf0: Option<String>,

    /// second physical interface (e.g. eth1)
    #[arg(long, value_name = "IFNAME", value_parser = ifname)]
    pub pf1: Option<String>,

    /// IPv6 underlay address
    #[arg(long, value_name = "ADDR6", value_parser = ipv6)]
    pub ipv6: Option<Ipv6Addr>,

    /// virtual interface name pattern (e.g. 'eth1vf')
    #[arg(long = "vf-pattern", value_name = "PATTERN", value_parser = ifname)]
    pub vf_pattern: Option<String>,

    /// set the mtu field in DHCP responses (68 - 1500)
    #[arg(long = "dhcp-mtu", value_name = "SIZE", default_value = "1500",
          value_parser = ranged::<u16>(68, 1500))]
    pub dhcp_mtu: u16,

    /// set the domain name server field in DHCP responses (can be used multiple times)
    #[arg(long = "dhcp-dns", value_name = "IPv4", action = ArgAction::Append, value_parser = ipv4)]
    pub dhcp_dns: Vec<Ipv4Addr>,

    /// set the domain name server field in DHCPv6 responses (can be used multiple times)
    #[arg(long = "dhcpv6-dns", value_name = "ADDR6", action = ArgAction::Append,
          value_parser = ipv6)]
    pub dhcpv6_dns: Vec<Ipv6Addr>,

    /// map a VM-accessible IPv4 endpoint to an outside IPv6 UDP service
    #[arg(long = "udp-virtsvc", value_name = "IPv4,port,IPv6,port", action = ArgAction::Append,
          value_parser = VirtSvc::from_str)]
    pub udp_virtsvc: Vec<VirtSvc>,

    /// map a VM-accessible IPv4 endpoint to an outside IPv6 TCP service
    #[arg(long = "tcp-virtsvc", value_name = "IPv4,port,IPv6,port", action = ArgAction::Append,
          value_parser = VirtSvc::from_str)]
    pub tcp_virtsvc: Vec<VirtSvc>,

    /// weighted-cost-multipath percentage for pf0 (0 - 100; default 50 with --pf1, else 100)
    #[arg(long, value_name = "PERCENTAGE", value_parser = ranged::<u8>(0, 100))]
    pub wcmp: Option<u8>,

    /// NIC type to use: 'tap' (TAP devices created by the daemon), 'af_packet' or 'af_xdp'
    /// (existing interfaces)
    #[arg(long = "nic-type", value_name = "NICTYPE", default_value = "tap",
          value_parser = NicType::from_str)]
    pub nic_type: NicType,

    /// do not print periodic statistics to stdout
    #[arg(long = "no-stats")]
    pub no_stats: bool,

    /// enable IPv6 overlay addresses
    #[arg(long = "enable-ipv6-overlay")]
    pub enable_ipv6_overlay: bool,

    /// disable traffic offloading
    #[arg(long = "no-offload")]
    pub no_offload: bool,

    /// verbosity level of packet traversing the graph framework (0 - 2)
    #[arg(long = "graphtrace-loglevel", value_name = "LEVEL", default_value = "0",
          value_parser = ranged::<u8>(0, 2))]
    pub graphtrace_loglevel: u8,

    /// output colorization mode
    #[arg(long, value_name = "MODE", value_enum, default_value_t = ColorMode::Never)]
    pub color: ColorMode,

    /// set the format of individual log lines (on standard output)
    #[arg(long = "log-format", value_name = "FORMAT", value_enum,
          default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// listen for gRPC clients on this port (1024 - 65535)
    #[arg(long = "grpc-port", value_name = "PORT", default_value = "1337",
          value_parser = ranged::<u16>(1024, 65535))]
    pub grpc_port: u16,

    /// inactive flow timeout (except TCP established flows) (1 - 300)
    #[arg(long = "flow-timeout", value_name = "SECONDS", default_value = "30",
          value_parser = ranged::<u32>(1, 300))]
    pub flow_timeout: u32,

    /// which routed packets connection tracking keeps a flow for: all (dpservice's behaviour),
    /// or stateful: only those a firewall rule, VIP, NAT or load balancer needs, so traffic
    /// between interfaces without any is forwarded untracked (dpservice-rs)
    #[arg(
        long = "conntrack",
        value_name = "MODE",
        value_enum,
        default_value = "all"
    )]
    pub conntrack: ConntrackOption,

    /// most tracked flows (connections) of the daemon, shared out evenly between the workers;
    /// a new flow beyond it is dropped (counted), live flows are never evicted (dpservice-rs;
    /// dpservice has a fixed 850000)
    #[arg(long = "flow-table-size", value_name = "FLOWS", default_value = "1000000",
          value_parser = ranged::<u32>(1024, 1 << 28))]
    pub flow_table_size: u32,

    /// most firewall rules per interface (dpservice-rs; dpservice has no limit)
    #[arg(long = "max-firewall-rules", value_name = "RULES", default_value = "1024",
          value_parser = ranged::<u32>(1, 1 << 20))]
    pub max_firewall_rules: u32,

    /// most public addresses (VIPs and NAT addresses) of all VNIs (dpservice-rs; dpservice:
    /// a fixed 4032)
    #[arg(long = "max-public-addresses", value_name = "ADDRESSES", default_value = "4032",
          value_parser = ranged::<u32>(1, 1 << 24))]
    pub max_public_addresses: u32,

    /// most neighbor NAT ranges of all VNIs (dpservice-rs; dpservice has no limit)
    #[arg(long = "max-neighbor-nats", value_name = "RANGES", default_value = "4032",
          value_parser = ranged::<u32>(1, 1 << 24))]
    pub max_neighbor_nats: u32,

    /// most load balancers (dpservice-rs; dpservice: a fixed 256)
    #[arg(long = "max-load-balancers", value_name = "BALANCERS", default_value = "1024",
          value_parser = ranged::<u32>(1, 1 << 16))]
    pub max_load_balancers: u32,

    /// most targets of one load balancer (dpservice-rs; dpservice: a fixed 64)
    #[arg(long = "max-lb-targets", value_name = "TARGETS", default_value = "1024",
          value_parser = ranged::<u32>(1, 65_535))]
    pub max_lb_targets: u32,

    /// most protocol/port pairs of one load balancer (dpservice-rs; dpservice: 16, of which
    /// it accepts 15)
    #[arg(long = "max-lb-ports", value_name = "PORTS", default_value = "16",
          value_parser = ranged::<u32>(1, 1024))]
    pub max_lb_ports: u32,

    /// serve Prometheus metrics (GET /metrics) over HTTP on this address, e.g.
    /// 127.0.0.1:9064; off when not given [dpservice-rs]
    #[arg(long = "metrics-addr", value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// serve dpservice-dump (packet trace, flow listing) on this unix socket; "" turns it
    /// off [dpservice-rs]
    #[arg(long = "dump-socket", value_name = "PATH",
          default_value = crate::dump::DEFAULT_SOCKET)]
    pub dump_socket: String,
    /// serve DPDK telemetry (v2, dpservice's commands) on this unix socket, or `none` for no
    /// socket; default DPDK's: /var/run/dpdk/<file-prefix>/dpdk_telemetry.v2 for root,
    /// /run/user/<uid>/dpdk/<file-prefix>/dpdk_telemetry.v2 otherwise (the EAL
    /// --file-prefix, default rte) [dpservice-rs]
    #[arg(long = "telemetry-socket", value_name = "PATH|none")]
    pub telemetry_socket: Option<PathBuf>,

    /// run on NIC configured in multiport e-switch mode
    #[arg(long = "multiport-eswitch")]
    pub multiport_eswitch: bool,

    /// file to be locked before starting packet processing
    #[arg(long = "active-lockfile", value_name = "PATH", value_parser = lockfile)]
    pub active_lockfile: Option<PathBuf>,

    /// TAP device to use for dpservice-ha synchronization
    #[arg(long = "sync-tap", value_name = "IFNAME", value_parser = ifname)]
    pub sync_tap: Option<String>,

    /// Change /proc/self/coredump-flags to 0x7f for complete core-dumps
    #[arg(long = "debug-coredumps")]
    pub debug_coredumps: bool,

    /// number of VM ports (VFs) to create (0 - 256) [dpservice-rs]
    #[arg(long = "vf-count", value_name = "N", default_value = "4",
          value_parser = ranged::<u16>(0, 256))]
    pub vf_count: u16,

    /// number of packet-processing worker threads (1 - 64) [dpservice-rs]
    #[arg(long, value_name = "N", default_value = "1", value_parser = ranged::<u16>(1, 64))]
    pub workers: u16,

    /// serve the VM ports (VFs) as vhost-user sockets DIR/<vf name> for QEMU guests
    /// (`-chardev socket,path=DIR/<vf name>,reconnect=1 -netdev vhost-user,...`) instead of
    /// TAP devices, with a queue pair per worker (QEMU's queues= up to --workers); the uplinks
    /// are unchanged [dpservice-rs]
    #[arg(long = "vhost-user", value_name = "DIR")]
    pub vhost_user: Option<PathBuf>,

    /// with --vhost-user: only the first N VF ports are vhost-user sockets, the others TAPs
    /// (default: all) [dpservice-rs]
    #[arg(long = "vhost-user-vfs", value_name = "N", requires = "vhost_user")]
    pub vhost_user_vfs: Option<u16>,

    /// do not exchange virtio-net headers with VM TAP devices (no checksum/TSO offload from
    /// the VMs' kernels) [dpservice-rs]
    #[arg(long = "no-tap-offload")]
    pub no_tap_offload: bool,

    /// IPv6 address of the underlay router [dpservice-rs]
    #[arg(long, value_name = "ADDR6", value_parser = ipv6)]
    pub router: Option<Ipv6Addr>,

    /// largest IPv6 packet the uplinks may send, encapsulation included (1320 - 9000)
    /// [dpservice-rs]
    #[arg(long = "underlay-mtu", value_name = "SIZE", default_value = "1500",
          value_parser = ranged::<u16>(1320, 9000))]
    pub underlay_mtu: u16,

    /// Things worth logging once logging is up (ignored EAL arguments, unimplemented options).
    #[arg(skip)]
    pub warnings: Vec<String>,

    /// The TAP devices the EAL arguments ask for (`--vdev=net_tapN,iface=NAME,mac=MAC`): their
    /// MAC is the dataplane's on that port (see "DPDK EAL arguments").
    #[arg(skip)]
    pub vdevs: Vec<Vdev>,

    /// The EAL argument `--file-prefix` (DPDK's runtime directory name, `rte` by default).
    #[arg(skip)]
    pub file_prefix: Option<String>,
}

/// DPDK's runtime directory name without `--file-prefix`.
pub const DEFAULT_FILE_PREFIX: &str = "rte";

/// The `--file-prefix` value among the EAL arguments (`--file-prefix=P` or `--file-prefix P`;
/// the last one wins, as in DPDK's getopt loop).
fn file_prefix_of(eal: &[OsString]) -> Option<String> {
    let mut out = None;
    let mut args = eal.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        if let Some(p) = arg.strip_prefix("--file-prefix=") {
            out = Some(p.to_string());
        } else if arg == "--file-prefix" {
            out = args.next().map(|p| p.to_string());
        }
    }
    out.filter(|p| !p.is_empty() && !p.contains('/'))
}

/// The VF interface name pattern when `--vf-pattern` is not given.
pub const DEFAULT_VF_PATTERN: &str = "dtapvf_";

/// One `--vdev=net_tapN,iface=NAME[,mac=MAC][,...]` EAL argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vdev {
    /// The TAP's interface name.
    pub iface: String,
    /// The MAC DPDK's TAP driver gives its own side: the MAC the dataplane answers ARP/ND with
    /// and sends from on that port (`None`: ours, derived from the underlay address).
    pub mac: Option<MacAddr>,
}

impl Vdev {
    /// Parses a `--vdev` value; `Ok(None)` for a device that is not a TAP (ignored).
    fn parse(spec: &str) -> Result<Option<Vdev>, String> {
        let mut parts = spec.split(',');
        let driver = parts.next().unwrap_or_default();
        if !driver.starts_with("net_tap") {
            return Ok(None);
        }
        let (mut iface, mut mac) = (None, None);
        for part in parts {
            match part.split_once('=') {
                Some(("iface", name)) => iface = Some(name.trim_matches('"').to_string()),
                Some(("mac", value)) => {
                    let value = value.trim_matches('"');
                    mac = Some(value.parse::<MacAddr>().map_err(|_| {
                        format!("--vdev={spec}: mac '{value}' is not a MAC address")
                    })?);
                }
                _ => {} // persist, remote=, … : nothing for us
            }
        }
        let iface = iface.ok_or_else(|| format!("--vdev={spec}: no iface="))?;
        Ok(Some(Vdev { iface, mac }))
    }
}

/// The `--vdev` values among the EAL arguments (`--vdev=SPEC` or `--vdev SPEC`).
fn vdevs_of(eal: &[OsString], warnings: &mut Vec<String>) -> Result<Vec<Vdev>, String> {
    let mut out = Vec::new();
    let mut args = eal.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = args.next() {
        let spec = match arg.strip_prefix("--vdev=") {
            Some(spec) => spec.to_string(),
            None if arg == "--vdev" => match args.next() {
                Some(spec) => spec.to_string(),
                None => break,
            },
            None => continue,
        };
        match Vdev::parse(&spec)? {
            Some(vdev) => out.push(vdev),
            None => warnings.push(format!("ignoring --vdev={spec}: not a TAP device")),
        }
    }
    Ok(out)
}

impl Default for Options {
    /// Every option at its default, no config file.
    fn default() -> Options {
        Options::parse_from(["dpservice"])
    }
}

/// The kind of NIC ports are made on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicType {
    /// Linux TAP devices the daemon creates.
    Tap,
    /// Existing interfaces through AF_PACKET TPACKET_V3 rings.
    AfPacket,
    /// Existing interfaces through AF_XDP sockets (copy mode; native XDP where the driver has it).
    AfXdp,
}

impl FromStr for NicType {
    type Err = String;

    fn from_str(s: &str) -> Result<NicType, String> {
        match s {
            "tap" => Ok(NicType::Tap),
            "af_packet" => Ok(NicType::AfPacket),
            "af_xdp" => Ok(NicType::AfXdp),
            "mellanox" | "bluefield2" => Err(format!(
                "'{s}' is not supported by dpservice-rs (supported: 'tap', 'af_packet', 'af_xdp')"
            )),
            _ => Err(format!(
                "invalid choice '{s}' (supported: 'tap', 'af_packet', 'af_xdp'; dpservice also \
                 knows 'mellanox' and 'bluefield2')"
            )),
        }
    }
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    Never,
    Always,
    Auto,
}

/// `--conntrack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConntrackOption {
    All,
    Stateful,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A virtual service: `IPv4,port,IPv6,port` — a VM-visible IPv4 endpoint mapped to an IPv6
/// service outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtSvc {
    pub virtual_addr: Ipv4Addr,
    pub virtual_port: u16,
    pub service_addr: Ipv6Addr,
    pub service_port: u16,
}

impl FromStr for VirtSvc {
    type Err = String;

    /// dpservice's `add_virtsvc`: four comma-separated fields (empty fields skipped, as
    /// `strtok` does; anything after the fourth ignored), ports 1 - 65535 in decimal, and its
    /// error messages.
    fn from_str(s: &str) -> Result<VirtSvc, String> {
        let mut parts = s.split(',').filter(|p| !p.is_empty());
        let mut next = |what: &str| {
            parts
                .next()
                .ok_or_else(|| format!("Missing virtual service {what}"))
        };
        let port = |p: &str, what: &str| match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(format!("Invalid virtual service {what} port '{p}'")),
        };
        let v4 = next("IPv4")?;
        let virtual_addr = v4
            .parse()
            .map_err(|_| format!("Invalid virtual service IPv4 address '{v4}'"))?;
        let virtual_port = port(next("IPv4 port")?, "IPv4")?;
        let v6 = next("IPv6")?;
        let service_addr = v6
            .parse()
            .map_err(|_| format!("Invalid virtual service IPv6 address '{v6}'"))?;
        let service_port = port(next("IPv6 port")?, "IPv6")?;
        Ok(VirtSvc {
            virtual_addr,
            virtual_port,
            service_addr,
            service_port,
        })
    }
}

impl fmt::Display for VirtSvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.virtual_addr, self.virtual_port, self.service_addr, self.service_port
        )
    }
}

/// Why [`Options::load_from`] did not produce options.
#[derive(Debug)]
pub enum LoadError {
    /// `-h` or `-v`: print this (`clap::Error::exit` does) and exit successfully.
    Exit(clap::Error),
    /// Bad options: one line saying what and where.
    Invalid(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Exit(e) => write!(f, "{e}"),
            LoadError::Invalid(msg) => f.write_str(msg),
        }
    }
}

/// Where the config file comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// No config file (`DP_CONF=""`).
    None,
    /// The default file: fine if it does not exist.
    Default(PathBuf),
    /// A file named by `DP_CONF`: must exist.
    Required(PathBuf),
}

impl ConfigSource {
    /// dpservice's rule for the value of `DP_CONF`.
    pub fn from_env(dp_conf: Option<&OsStr>) -> ConfigSource {
        match dp_conf {
            None => ConfigSource::Default(PathBuf::from(DEFAULT_CONF_FILE)),
            Some(v) if v.is_empty() => ConfigSource::None,
            Some(v) => ConfigSource::Required(PathBuf::from(v)),
        }
    }

    /// The file's text, if there is one to read.
    fn read(&self) -> Result<Option<(String, &Path)>, String> {
        let (path, required) = match self {
            ConfigSource::None => return Ok(None),
            ConfigSource::Default(p) => (p.as_path(), false),
            ConfigSource::Required(p) => (p.as_path(), true),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some((text, path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!(
                "Error opening config file '{}': {e}",
                path.display()
            )),
        }
    }
}

impl Options {
    /// Loads the options of this process: the config file named by `DP_CONF` (or the default),
    /// then `std::env::args_os()`. On `-h`/`--help` or `-v`/`--version`, prints and exits 0.
    pub fn load() -> Result<Options, String> {
        let source = ConfigSource::from_env(std::env::var_os("DP_CONF").as_deref());
        match Options::load_from(&source, std::env::args_os()) {
            Ok(opts) => Ok(opts),
            Err(LoadError::Exit(e)) => e.exit(),
            Err(LoadError::Invalid(msg)) => Err(msg),
        }
    }

    /// [`Options::load`] with the config source and the arguments (program name first) given.
    pub fn load_from<I, T>(source: &ConfigSource, args: I) -> Result<Options, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let file = source.read().map_err(LoadError::Invalid)?;
        let file = file.as_ref().map(|(text, path)| (text.as_str(), *path));
        Options::parse_sources(file, args)
    }

    /// Parses a config file's text (with the path used in messages), then the arguments
    /// (program name first).
    pub fn parse_sources<I, T>(config: Option<(&str, &Path)>, args: I) -> Result<Options, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        let mut warnings = Vec::new();
        let mut argv: Vec<OsString> = Vec::new();
        let mut args = args.into_iter().map(Into::into);
        argv.push(args.next().unwrap_or_else(|| OsString::from("dpservice")));

        if let Some((text, path)) = config {
            argv.extend(config_args(text, path, &mut warnings)?);
        }

        let rest: Vec<OsString> = args.collect();
        let mut vdevs = Vec::new();
        let mut file_prefix = None;
        match rest.iter().position(|a| a == "--") {
            Some(sep) => {
                if sep > 0 {
                    let eal_args = rest.get(..sep).unwrap_or_default();
                    vdevs = vdevs_of(eal_args, &mut warnings).map_err(LoadError::Invalid)?;
                    file_prefix = file_prefix_of(eal_args);
                    let eal: Vec<_> = eal_args.iter().map(|a| a.to_string_lossy()).collect();
                    warnings.push(format!(
                        "ignoring DPDK EAL arguments (but the TAPs of --vdev): {}",
                        eal.join(" ")
                    ));
                }
                argv.extend(rest.into_iter().skip(sep + 1));
            }
            None => argv.extend(rest),
        }

        let matches = match Options::command().try_get_matches_from(argv) {
            Ok(m) => m,
            Err(e) => {
                return Err(match e.kind() {
                    clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion => LoadError::Exit(e),
                    _ => LoadError::Invalid(one_line(&e)),
                })
            }
        };
        let mut opts =
            Options::from_arg_matches(&matches).map_err(|e| LoadError::Invalid(one_line(&e)))?;
        opts.help = None;
        opts.version = None;
        // As DPDK's TAP driver: the VF count follows the TAPs the EAL arguments create, unless
        // --vf-count says otherwise.
        if !vdevs.is_empty() && matches.value_source("vf_count") == Some(ValueSource::DefaultValue)
        {
            let pattern = opts.vf_pattern.as_deref().unwrap_or(DEFAULT_VF_PATTERN);
            let vfs = vdevs
                .iter()
                .filter(|v| v.iface.starts_with(pattern))
                .count();
            opts.vf_count = u16::try_from(vfs).unwrap_or(u16::MAX).min(256);
        }
        opts.vdevs = vdevs;
        opts.file_prefix = file_prefix;
        opts.validate(&mut warnings).map_err(LoadError::Invalid)?;
        warnings.extend(ignored_options(&matches));
        opts.warnings = warnings;
        Ok(opts)
    }

    /// Checks that span several values, and notes what is accepted but not done.
    fn validate(&self, warnings: &mut Vec<String>) -> Result<(), String> {
        if self.dhcp_dns.len() > DHCP_DNS_MAX {
            return Err(format!(
                "Too many DHCP DNS addresses specified (at most {DHCP_DNS_MAX})"
            ));
        }
        if self.dhcpv6_dns.len() > DHCPV6_DNS_MAX {
            return Err(format!(
                "Too many DHCPv6 DNS addresses specified (at most {DHCPV6_DNS_MAX})"
            ));
        }
        if self.udp_virtsvc.len() + self.tcp_virtsvc.len() > VIRTSVC_MAX {
            return Err(format!(
                "Number of virtual services is limited to {VIRTSVC_MAX}"
            ));
        }
        for (proto, list) in [("udp", &self.udp_virtsvc), ("tcp", &self.tcp_virtsvc)] {
            for (i, svc) in list.iter().enumerate() {
                for earlier in &list[..i] {
                    if (earlier.virtual_addr, earlier.virtual_port)
                        == (svc.virtual_addr, svc.virtual_port)
                    {
                        return Err(format!(
                            "--{proto}-virtsvc: IPv4 specification already used for '{svc}'"
                        ));
                    }
                    if (earlier.service_addr, earlier.service_port)
                        == (svc.service_addr, svc.service_port)
                    {
                        return Err(format!(
                            "--{proto}-virtsvc: IPv6 specification already used for '{svc}'"
                        ));
                    }
                }
            }
        }
        // dpservice refuses this before starting, whatever the NIC.
        if self.multiport_eswitch && !self.no_offload {
            return Err(
                "HW offloading is currently not supported for multi-port eswitch mode \
                 (add --no-offload)"
                    .into(),
            );
        }
        if self.multiport_eswitch {
            warnings.push("--multiport-eswitch has no effect with TAP ports".into());
        }
        Ok(())
    }

    /// The virtual services, UDP first then TCP, each in the order given (dpservice keeps one
    /// list in the order the options come; the index only picks the service's underlay
    /// address, [`dp_tables::virtsvc_underlay`]), with their addresses under `underlay`.
    pub fn virtual_services(
        &self,
        underlay: Ipv6Addr,
    ) -> Result<dp_tables::VirtualServices, String> {
        let udp = self
            .udp_virtsvc
            .iter()
            .map(|s| (dp_packet::IpProtocol::UDP, s));
        let tcp = self
            .tcp_virtsvc
            .iter()
            .map(|s| (dp_packet::IpProtocol::TCP, s));
        let list = udp
            .chain(tcp)
            .enumerate()
            .map(|(i, (proto, s))| dp_tables::VirtualService {
                proto,
                virtual_addr: s.virtual_addr,
                virtual_port: s.virtual_port,
                service_addr: s.service_addr,
                service_port: s.service_port,
                underlay_addr: dp_tables::virtsvc_underlay(underlay, i as u32),
            })
            .collect();
        dp_tables::VirtualServices::new(list).map_err(|e| format!("virtual services: {e:?}"))
    }

    /// Where the DPDK telemetry socket goes for a process of `uid` (`None`: no socket).
    pub fn telemetry_path(&self, uid: u32) -> Option<PathBuf> {
        match &self.telemetry_socket {
            Some(p) if p.as_os_str() == "none" => None,
            Some(p) => Some(p.clone()),
            None => {
                let prefix = self.file_prefix.as_deref().unwrap_or(DEFAULT_FILE_PREFIX);
                let dir = if uid == 0 {
                    PathBuf::from("/var/run/dpdk")
                } else {
                    PathBuf::from(format!("/run/user/{uid}/dpdk"))
                };
                Some(dir.join(prefix).join(crate::telemetry::SOCKET_NAME))
            }
        }
    }

    /// Whether periodic statistics are printed (dpservice's `stats_enabled`).
    pub fn stats_enabled(&self) -> bool {
        !self.no_stats
    }

    /// Whether offloading is on (dpservice's `offload_enabled`); TAP ports never offload.
    pub fn offload_enabled(&self) -> bool {
        !self.no_offload
    }

    /// pf0's share of flows in percent: `--wcmp`, else 100 (dpservice's default).
    pub fn wcmp_percent(&self) -> u8 {
        self.wcmp.unwrap_or(100)
    }

    /// Whether WCMP is in use (dpservice: a pf0 share below 100%).
    pub fn wcmp_enabled(&self) -> bool {
        self.wcmp_percent() < 100
    }
}

/// Warnings for the options given (on the command line or in the config file) that are
/// accepted, for dpservice's deployments, but do nothing here; one per option.
pub fn ignored_options(matches: &ArgMatches) -> Vec<String> {
    const IGNORED: [(&str, &str); 3] = [
        (
            "active_lockfile",
            "--active-lockfile is ignored: dpservice-rs has no active/standby lock and starts \
             forwarding at once, so a standby started with it would forward alongside the \
             active instance",
        ),
        (
            "sync_tap",
            "--sync-tap is ignored: dpservice-rs does not synchronize with dpservice-ha",
        ),
        (
            "debug_coredumps",
            "--debug-coredumps is ignored: /proc/self/coredump_filter is left unchanged",
        ),
    ];
    IGNORED
        .iter()
        .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
        .map(|(_, warning)| warning.to_string())
        .collect()
}

/// Turns config-file lines into `--key=value` / `--flag` arguments, each checked on its own so
/// errors name the line.
fn config_args(
    text: &str,
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<OsString>, LoadError> {
    let cmd = Options::command();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let at = || format!("Config file '{}' line {lineno}", path.display());
        let mut words = raw.split([' ', '\t', '\r']).filter(|w| !w.is_empty());
        let Some(key) = words.next() else { continue };
        if key.starts_with('#') {
            continue;
        }
        let value = words.next();
        if let Some(extra) = words.next() {
            if !extra.starts_with('#') {
                warnings.push(format!(
                    "{}: ignoring '{extra}' and anything after it",
                    at()
                ));
            }
        }

        if key == "a-pf0" || key == "a-pf1" {
            if value.is_none() {
                return Err(LoadError::Invalid(format!(
                    "{}: value required for key '{key}'",
                    at()
                )));
            }
            warnings.push(format!(
                "{}: '{key}' (a DPDK EAL device argument) is ignored",
                at()
            ));
            continue;
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key) && !matches!(key, "help" | "version"));
        let Some(arg) = arg else {
            return Err(LoadError::Invalid(format!("{}: unknown key '{key}'", at())));
        };
        let is_flag = matches!(arg.get_action(), ArgAction::SetTrue);
        let token = match (is_flag, value) {
            (true, Some(v)) => {
                warnings.push(format!(
                    "{}: value '{v}' for flag '{key}' ignored (the flag is set)",
                    at()
                ));
                format!("--{key}")
            }
            (true, None) => format!("--{key}"),
            (false, Some(v)) => format!("--{key}={v}"),
            (false, None) => {
                return Err(LoadError::Invalid(format!(
                    "{}: value required for key '{key}'",
                    at()
                )))
            }
        };
        // Check the value now, so the error names the line.
        Options::command()
            .try_get_matches_from(["dpservice", token.as_str()])
            .map_err(|e| LoadError::Invalid(format!("{}: {}", at(), one_line(&e))))?;
        out.push(OsString::from(token));
    }
    Ok(out)
}

/// The first line of a clap error, without its "error: " prefix.
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// An integer in `min..=max`, parsed as dpservice does (decimal, sign allowed).
fn ranged<T>(min: i64, max: i64) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: TryFrom<i64>,
{
    move |s: &str| {
        let n: i64 = s.parse().map_err(|_| format!("'{s}' is not an integer"))?;
        if n < min || n > max {
            return Err(format!("'{s}' is out of range ({min}-{max})"));
        }
        T::try_from(n).map_err(|_| format!("'{s}' is out of range ({min}-{max})"))
    }
}

fn ifname(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an interface name must not be empty".into());
    }
    if s.len() > IFNAME_MAX {
        return Err(format!("'{s}' is too long (max {IFNAME_MAX} characters)"));
    }
    Ok(s.to_string())
}

fn lockfile(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the path must not be empty".into());
    }
    if s.len() > LOCKFILE_MAX {
        return Err(format!(
            "the path is too long (max {LOCKFILE_MAX} characters)"
        ));
    }
    Ok(PathBuf::from(s))
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("invalid IPv4 address '{s}'"))
}

fn ipv6(s: &str) -> Result<Ipv6Addr, String> {
    s.parse().map_err(|_| format!("invalid IPv6 address '{s}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Options, LoadError> {
        let argv = std::iter::once("dpservice").chain(args.iter().copied());
        Options::parse_sources(None, argv)
    }

    fn with_file(text: &str, args: &[&str]) -> Result<Options, LoadError> {
        let argv = std::iter::once("dpservice").chain(args.iter().copied());
        Options::parse_sources(Some((text, Path::new("/test.conf"))), argv)
    }

    fn err(r: Result<Options, LoadError>) -> String {
        match r {
            Err(LoadError::Invalid(msg)) => {
                assert!(!msg.contains('\n'), "one line: {msg:?}");
                msg
            }
            Err(LoadError::Exit(e)) => panic!("unexpected exit: {e}"),
            Ok(o) => panic!("unexpectedly valid: {o:?}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Options::command().debug_assert();
    }

    #[test]
    fn defaults() {
        assert_eq!(Options::default(), cli(&[]).unwrap());
        let o = cli(&[]).unwrap();
        assert_eq!(o.pf0, None);
        assert_eq!(o.pf1, None);
        assert_eq!(o.ipv6, None);
        assert_eq!(o.vf_pattern, None);
        assert_eq!(o.dhcp_mtu, 1500);
        assert!(o.dhcp_dns.is_empty() && o.dhcpv6_dns.is_empty());
        assert!(o.udp_virtsvc.is_empty() && o.tcp_virtsvc.is_empty());
        assert_eq!(o.wcmp, None);
        assert_eq!(o.wcmp_percent(), 100);
        assert!(!o.wcmp_enabled());
        assert_eq!(o.nic_type, NicType::Tap);
        assert!(o.stats_enabled() && o.offload_enabled());
        assert!(!o.enable_ipv6_overlay && !o.multiport_eswitch && !o.debug_coredumps);
        assert_eq!(o.graphtrace_loglevel, 0);
        assert_eq!(o.color, ColorMode::Never);
        assert_eq!(o.log_format, LogFormat::Text);
        assert_eq!(o.grpc_port, 1337);
        assert_eq!(o.flow_timeout, 30);
        assert_eq!(o.conntrack, ConntrackOption::All);
        assert_eq!(o.active_lockfile, None);
        assert_eq!(o.sync_tap, None);
        assert_eq!(o.vf_count, 4);
        assert_eq!(o.workers, 1);
        assert!(!o.no_tap_offload);
        assert_eq!(o.router, None);
        assert_eq!(o.underlay_mtu, 1500);
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn dpservice_test_command_line_parses() {
        // As dpservice's test/local/dp_service.py starts it (TAP mode), EAL arguments included.
        let o = cli(&[
            "-l",
            "0,1",
            "--log-level=user*:8",
            "--no-pci",
            "--vdev=net_tap0,iface=dtap0,mac=\"22:22:22:22:22:00\"",
            "--",
            "--pf0=dtap0",
            "--pf1=dtap1",
            "--vf-pattern=dtapvf_",
            "--nic-type=tap",
            "--ipv6=2001:db8:fefe::1",
            "--enable-ipv6-overlay",
            "--dhcp-mtu=1450",
            "--dhcp-dns=8.8.4.4",
            "--dhcp-dns=8.8.8.8",
            "--dhcpv6-dns=2001:4860:4860::6464",
            "--dhcpv6-dns=2001:4860:4860::64",
            "--grpc-port=1337",
            "--no-stats",
            "--color=auto",
            "--graphtrace-loglevel=1",
            "--no-offload",
            "--wcmp=50",
            "--flow-timeout=1",
            "--udp-virtsvc=1.2.3.4,53,2a00:da8:fff6::1,53",
            "--tcp-virtsvc=1.2.3.4,443,2a00:da8:fff6::1,443",
            "--active-lockfile=/tmp/dp_lock",
            "--sync-tap=dtapsync",
        ])
        .unwrap();
        assert_eq!(o.pf0.as_deref(), Some("dtap0"));
        assert_eq!(o.vf_pattern.as_deref(), Some("dtapvf_"));
        assert_eq!(o.ipv6, Some("2001:db8:fefe::1".parse().unwrap()));
        assert_eq!(o.dhcp_mtu, 1450);
        assert_eq!(
            o.dhcp_dns,
            vec![Ipv4Addr::new(8, 8, 4, 4), Ipv4Addr::new(8, 8, 8, 8)]
        );
        assert_eq!(o.dhcpv6_dns.len(), 2);
        assert!(o.no_stats && o.no_offload && o.enable_ipv6_overlay);
        assert_eq!(o.color, ColorMode::Auto);
        assert_eq!(
            (o.graphtrace_loglevel, o.wcmp, o.flow_timeout),
            (1, Some(50), 1)
        );
        assert!(o.wcmp_enabled());
        assert_eq!(
            o.udp_virtsvc,
            vec![VirtSvc {
                virtual_addr: Ipv4Addr::new(1, 2, 3, 4),
                virtual_port: 53,
                service_addr: "2a00:da8:fff6::1".parse().unwrap(),
                service_port: 53,
            }]
        );
        assert_eq!(o.tcp_virtsvc[0].service_port, 443);
        assert_eq!(o.active_lockfile, Some(PathBuf::from("/tmp/dp_lock")));
        assert_eq!(o.sync_tap.as_deref(), Some("dtapsync"));
        assert!(o
            .warnings
            .iter()
            .any(|w| w.contains("EAL") && w.contains("-l 0,1")));
        // The one TAP of the EAL arguments, with its MAC; no VF among them.
        assert_eq!(
            o.vdevs,
            vec![Vdev {
                iface: "dtap0".into(),
                mac: Some(MacAddr([0x22, 0x22, 0x22, 0x22, 0x22, 0x00])),
            }]
        );
        assert_eq!(o.vf_count, 0);
        // Virtual services are implemented: no warning about them.
        assert!(!o.warnings.iter().any(|w| w.contains("virtsvc")));
    }

    /// The suite's six TAPs: two uplinks and four VFs by the pattern, MACs as given (quoted or
    /// not), a non-TAP device ignored, a bad MAC refused; an explicit --vf-count wins.
    #[test]
    fn vdevs_make_the_taps_and_count_the_vfs() {
        let mut args = vec!["-l", "0,1", "--no-pci"];
        let specs = [
            "--vdev=net_tap0,iface=dtap0,mac=\"22:22:22:22:22:00\"",
            "--vdev=net_tap1,iface=dtap1,mac=22:22:22:22:22:01",
            "--vdev=net_tap2,iface=dtapvf_0,mac=\"66:66:66:66:66:00\"",
            "--vdev=net_tap3,iface=dtapvf_1,mac=\"66:66:66:66:66:01\"",
            "--vdev=net_tap4,iface=dtapvf_2,mac=\"66:66:66:66:66:02\"",
            "--vdev",
            "net_tap5,iface=dtapvf_3,mac=\"66:66:66:66:66:03\"",
            "--vdev=net_ring0",
        ];
        args.extend(specs);
        args.extend(["--", "--pf0=dtap0", "--pf1=dtap1", "--vf-pattern=dtapvf_"]);
        let o = cli(&args).unwrap();
        assert_eq!(o.vf_count, 4);
        assert_eq!(o.vdevs.len(), 6);
        assert_eq!(o.vdevs[5].iface, "dtapvf_3");
        assert_eq!(
            o.vdevs[5].mac,
            Some(MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0x03]))
        );
        assert!(o.warnings.iter().any(|w| w.contains("net_ring0")));
        let mut explicit = args.clone();
        explicit.push("--vf-count=2");
        assert_eq!(cli(&explicit).unwrap().vf_count, 2);
        let bad = ["--vdev=net_tap0,iface=x,mac=nope", "--", "--pf0=x"];
        assert!(cli(&bad).is_err());
        let no_iface = ["--vdev=net_tap0,mac=22:22:22:22:22:00", "--", "--pf0=x"];
        assert!(cli(&no_iface).is_err());
    }

    #[test]
    fn space_separated_values_and_our_options() {
        let o = cli(&[
            "--pf0",
            "eth0",
            "--vf-count",
            "8",
            "--workers",
            "2",
            "--router",
            "fc00::ffff",
            "--underlay-mtu",
            "9000",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(o.pf0.as_deref(), Some("eth0"));
        assert_eq!((o.vf_count, o.workers), (8, 2));
        assert_eq!(o.router, Some("fc00::ffff".parse().unwrap()));
        assert_eq!(o.underlay_mtu, 9000);
        assert_eq!(o.log_format, LogFormat::Json);
    }

    #[test]
    fn metrics_addr_is_off_by_default_and_an_address_with_a_port() {
        assert_eq!(cli(&["--ipv6", "fc00::1"]).unwrap().metrics_addr, None);
        assert_eq!(
            cli(&["--metrics-addr", "127.0.0.1:9064"])
                .unwrap()
                .metrics_addr,
            Some("127.0.0.1:9064".parse().unwrap())
        );
        assert!(cli(&["--metrics-addr", "127.0.0.1"]).is_err());
    }

    #[test]
    fn telemetry_socket_is_dpdks_unless_given_or_none() {
        let o = cli(&["--ipv6", "fc00::1"]).unwrap();
        assert_eq!(
            o.telemetry_path(0),
            Some(PathBuf::from("/var/run/dpdk/rte/dpdk_telemetry.v2"))
        );
        assert_eq!(
            o.telemetry_path(1000),
            Some(PathBuf::from("/run/user/1000/dpdk/rte/dpdk_telemetry.v2"))
        );
        let o = cli(&["--telemetry-socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(o.telemetry_path(0), Some(PathBuf::from("/tmp/x.sock")));
        let o = cli(&["--telemetry-socket", "none"]).unwrap();
        assert_eq!(o.telemetry_path(0), None);
        let o = cli(&["-l", "0", "--file-prefix=dp1", "--", "--ipv6", "fc00::1"]).unwrap();
        assert_eq!(
            o.telemetry_path(0),
            Some(PathBuf::from("/var/run/dpdk/dp1/dpdk_telemetry.v2"))
        );
        let o = cli(&["--file-prefix", "dp2", "--", "--ipv6", "fc00::1"]).unwrap();
        assert_eq!(o.file_prefix.as_deref(), Some("dp2"));
    }

    #[test]
    fn long_options_may_be_abbreviated_like_getopt() {
        assert_eq!(cli(&["--grpc=2000"]).unwrap().grpc_port, 2000);
        assert!(err(cli(&["--dhcp=1"])).contains("--dhcp"));
    }

    #[test]
    fn ranges() {
        for (arg, ok) in [
            ("--dhcp-mtu=67", false),
            ("--dhcp-mtu=68", true),
            ("--dhcp-mtu=1500", true),
            ("--dhcp-mtu=1501", false),
            ("--wcmp=0", true),
            ("--wcmp=100", true),
            ("--underlay-mtu=1319", false),
            ("--underlay-mtu=1320", true),
            ("--underlay-mtu=9000", true),
            ("--underlay-mtu=9001", false),
            ("--wcmp=101", false),
            ("--wcmp=-1", false),
            ("--grpc-port=1023", false),
            ("--grpc-port=1024", true),
            ("--grpc-port=65535", true),
            ("--grpc-port=65536", false),
            ("--flow-timeout=0", false),
            ("--flow-timeout=300", true),
            ("--flow-timeout=301", false),
            ("--flow-table-size=1023", false),
            ("--flow-table-size=1024", true),
            ("--max-firewall-rules=0", false),
            ("--max-firewall-rules=1", true),
            ("--max-public-addresses=0", false),
            ("--max-neighbor-nats=16777216", true),
            ("--max-neighbor-nats=16777217", false),
            ("--max-load-balancers=0", false),
            ("--max-load-balancers=65536", true),
            ("--max-lb-targets=65535", true),
            ("--max-lb-targets=65536", false),
            ("--max-lb-ports=0", false),
            ("--max-lb-ports=1024", true),
            ("--graphtrace-loglevel=2", true),
            ("--graphtrace-loglevel=3", false),
            ("--workers=0", false),
            ("--vf-count=0", true),
            ("--vf-count=257", false),
        ] {
            assert_eq!(cli(&[arg]).is_ok(), ok, "{arg}");
        }
        let msg = err(cli(&["--dhcp-mtu=2000"]));
        assert!(
            msg.contains("--dhcp-mtu") && msg.contains("out of range (68-1500)"),
            "{msg}"
        );
        let msg = err(cli(&["--wcmp=half"]));
        assert!(msg.contains("not an integer"), "{msg}");
    }

    #[test]
    fn bad_values() {
        for args in [
            &["--ipv6=10.0.0.1"][..],
            &["--dhcp-dns=fe80::1"],
            &["--dhcp-dns=1.2.3"],
            &["--dhcpv6-dns=1.2.3.4"],
            &["--pf0=sixteen-chars-xx"],
            &["--pf0="],
            &["--color=sometimes"],
            &["--log-format=xml"],
            &["--udp-virtsvc=1.2.3.4,53,2a00::1"],
            &["--udp-virtsvc=1.2.3.4,0,2a00::1,53"],
            &["--tcp-virtsvc=1.2.3.4,80,1.2.3.5,80"],
            &["--no-stats=1"],
            &["--unknown"],
            &["--pf0"],
            &["stray"],
        ] {
            err(cli(args));
        }
        let msg = err(cli(&["--pf0=sixteen-chars-xx"]));
        assert!(msg.contains("too long (max 15 characters)"), "{msg}");
    }

    #[test]
    fn nic_type_names_what_is_supported() {
        assert_eq!(cli(&["--nic-type=tap"]).unwrap().nic_type, NicType::Tap);
        assert_eq!(
            cli(&["--nic-type=af_packet"]).unwrap().nic_type,
            NicType::AfPacket
        );
        assert_eq!(
            cli(&["--nic-type=af_xdp"]).unwrap().nic_type,
            NicType::AfXdp
        );
        for other in ["mellanox", "bluefield2", "virtio"] {
            let msg = err(cli(&["--nic-type", other]));
            assert!(msg.contains("--nic-type") && msg.contains(other), "{msg}");
            assert!(msg.contains("supported") && msg.contains("'tap'"), "{msg}");
        }
        let msg = err(with_file("nic-type mellanox\n", &[]));
        assert!(msg.contains("line 1") && msg.contains("'tap'"), "{msg}");
    }

    #[test]
    fn help_and_version_exit() {
        for a in ["-h", "--help", "-v", "--version"] {
            match cli(&[a]) {
                Err(LoadError::Exit(_)) => {}
                other => panic!("{a}: {other:?}"),
            }
        }
        match cli(&["-v"]) {
            Err(LoadError::Exit(e)) => assert!(e.to_string().contains(env!("CARGO_PKG_VERSION"))),
            other => panic!("{other:?}"),
        }
        match cli(&["--help"]) {
            Err(LoadError::Exit(e)) => {
                let help = e.to_string();
                for opt in [
                    "--pf0",
                    "--dhcp-dns",
                    "--nic-type",
                    "--grpc-port",
                    "--vf-count",
                    // dpservice's test runner enables its virtual-service tests when it
                    // finds this in `--help`.
                    "--udp-virtsvc",
                    "--tcp-virtsvc",
                ] {
                    assert!(help.contains(opt), "{opt} missing from help");
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn config_file_parsing() {
        let text = "\
# This has been generated by prepare.sh
no-stats

   \t
  # indented comment
pf0 eth0
pf1\teth1   # trailing comment
vf-pattern eth1vf\r
ipv6 fc00:1::1
a-pf0 0000:3b:00.0,class=rxq_cqe_comp_en=0,rx_vec_en=1
dhcp-dns 1.1.1.1
dhcp-dns 8.8.8.8
grpc-port 1400
enable-ipv6-overlay
vf-count 2
";
        let o = with_file(text, &[]).unwrap();
        assert!(o.no_stats && o.enable_ipv6_overlay);
        assert_eq!(o.pf0.as_deref(), Some("eth0"));
        assert_eq!(o.pf1.as_deref(), Some("eth1"));
        assert_eq!(o.vf_pattern.as_deref(), Some("eth1vf"));
        assert_eq!(o.ipv6, Some("fc00:1::1".parse().unwrap()));
        assert_eq!(o.dhcp_dns.len(), 2);
        assert_eq!(o.grpc_port, 1400);
        assert_eq!(o.vf_count, 2);
        assert!(o
            .warnings
            .iter()
            .any(|w| w.contains("line 10") && w.contains("a-pf0")));
        assert_eq!(o.warnings.len(), 1, "{:?}", o.warnings);
    }

    #[test]
    fn config_file_errors_name_the_line() {
        let msg = err(with_file("pf0 eth0\nbogus 1\n", &[]));
        assert!(
            msg.contains("/test.conf")
                && msg.contains("line 2")
                && msg.contains("unknown key 'bogus'"),
            "{msg}"
        );
        let msg = err(with_file("# c\ndhcp-mtu 9000\n", &[]));
        assert!(
            msg.contains("line 2") && msg.contains("out of range"),
            "{msg}"
        );
        let msg = err(with_file("pf0\n", &[]));
        assert!(
            msg.contains("line 1") && msg.contains("value required"),
            "{msg}"
        );
        let msg = err(with_file("ipv6 nonsense\n", &[]));
        assert!(
            msg.contains("line 1") && msg.contains("invalid IPv6"),
            "{msg}"
        );
        for key in ["help", "version", "a-pf1"] {
            err(with_file(&format!("{key}\n"), &[]));
        }
        // Keys are exact: no abbreviations in the file.
        assert!(err(with_file("grpc 2000\n", &[])).contains("unknown key 'grpc'"));
    }

    #[test]
    fn config_file_oddities_are_warned() {
        let o = with_file("no-stats false\ndhcp-dns 1.1.1.1 8.8.8.8\n", &[]).unwrap();
        assert!(
            o.no_stats,
            "dpservice sets a flag whatever value follows it"
        );
        assert_eq!(o.dhcp_dns, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
    }

    #[test]
    fn command_line_wins_and_lists_append() {
        let text = "pf0 eth0\ngrpc-port 1400\nno-stats\ndhcp-dns 1.1.1.1\ndhcpv6-dns fc00::53\n";
        let o = with_file(
            text,
            &[
                "--pf0=eth9",
                "--no-stats",
                "--dhcp-dns=8.8.8.8",
                "--dhcp-dns=9.9.9.9",
                "--dhcpv6-dns=fc00::54",
            ],
        )
        .unwrap();
        assert_eq!(o.pf0.as_deref(), Some("eth9"));
        assert_eq!(o.grpc_port, 1400, "kept from the file");
        assert!(o.no_stats);
        assert_eq!(
            o.dhcp_dns,
            vec![
                Ipv4Addr::new(1, 1, 1, 1),
                Ipv4Addr::new(8, 8, 8, 8),
                Ipv4Addr::new(9, 9, 9, 9)
            ]
        );
        assert_eq!(
            o.dhcpv6_dns,
            vec![
                "fc00::53".parse::<Ipv6Addr>().unwrap(),
                "fc00::54".parse().unwrap()
            ]
        );
        // The same option twice on the command line: the last one wins.
        assert_eq!(cli(&["--wcmp=10", "--wcmp=20"]).unwrap().wcmp, Some(20));
        // As dpservice: pf0 takes every flow by default, with two uplinks too.
        assert_eq!(cli(&["--pf1=p1"]).unwrap().wcmp_percent(), 100);
        assert_eq!(
            cli(&["--pf1=p1", "--wcmp=100"]).unwrap().wcmp_percent(),
            100
        );
        assert_eq!(cli(&[]).unwrap().wcmp_percent(), 100);
    }

    #[test]
    fn repeated_dns_limits() {
        let v4: Vec<String> = (0..64).map(|i| format!("--dhcp-dns=10.0.0.{i}")).collect();
        let v4: Vec<&str> = v4.iter().map(String::as_str).collect();
        assert_eq!(cli(&v4[..63]).unwrap().dhcp_dns.len(), 63);
        assert!(err(cli(&v4)).contains("Too many DHCP DNS"));
        let v6: Vec<String> = (0..16).map(|i| format!("--dhcpv6-dns=fc00::{i}")).collect();
        let v6: Vec<&str> = v6.iter().map(String::as_str).collect();
        assert_eq!(cli(&v6[..15]).unwrap().dhcpv6_dns.len(), 15);
        assert!(err(cli(&v6)).contains("Too many DHCPv6 DNS"));
        // The limit counts the file's and the command line's together.
        let file: String = (0..60).map(|i| format!("dhcp-dns 10.1.0.{i}\n")).collect();
        assert!(err(with_file(&file, &v4[..4])).contains("Too many"));
    }

    #[test]
    fn virtsvc_values_are_parsed_and_refused_as_dpservice_does() {
        let o = cli(&[
            "--udp-virtsvc=1.2.3.4,5353,2a00:da8:fff6::1,53",
            "--tcp-virtsvc",
            "5.6.7.8,4443,2a00:da8:fff6::2,443",
            "--udp-virtsvc=169.254.1.1,,53,,fc00::53,53,extra",
        ])
        .unwrap();
        assert_eq!(o.udp_virtsvc.len(), 2);
        assert_eq!(o.udp_virtsvc[1].to_string(), "169.254.1.1,53,fc00::53,53");
        assert_eq!(o.tcp_virtsvc[0].virtual_port, 4443);
        let host: Ipv6Addr = "fc00:1::1".parse().unwrap();
        let services = o.virtual_services(host).unwrap();
        assert_eq!(services.len(), 3);
        // UDP first, then TCP; the index picks the underlay address.
        let tcp = services.get(2).unwrap();
        assert_eq!(tcp.proto, dp_packet::IpProtocol::TCP);
        assert_eq!(tcp.underlay_addr, dp_tables::virtsvc_underlay(host, 2));
        assert_eq!(
            services.find_virtual(dp_packet::IpProtocol::UDP, Ipv4Addr::new(1, 2, 3, 4), 5353),
            Some(0)
        );
        for (value, msg) in [
            ("", "Missing virtual service IPv4"),
            ("1.2.3.4", "Missing virtual service IPv4 port"),
            ("1.2.3.4,53", "Missing virtual service IPv6"),
            ("1.2.3.4,53,fc00::1", "Missing virtual service IPv6 port"),
            ("1.2.3", "Invalid virtual service IPv4 address '1.2.3'"),
            (
                "1.2.3.4,0,fc00::1,53",
                "Invalid virtual service IPv4 port '0'",
            ),
            (
                "1.2.3.4,65536,fc00::1,53",
                "Invalid virtual service IPv4 port '65536'",
            ),
            (
                "1.2.3.4,+53,fc00::1,53",
                "Invalid virtual service IPv4 port '+53'",
            ),
            (
                "1.2.3.4,5x,fc00::1,53",
                "Invalid virtual service IPv4 port '5x'",
            ),
            (
                "1.2.3.4,53,1.2.3.5,53",
                "Invalid virtual service IPv6 address '1.2.3.5'",
            ),
            (
                "1.2.3.4,53,fc00::1,-1",
                "Invalid virtual service IPv6 port '-1'",
            ),
        ] {
            for opt in ["--udp-virtsvc", "--tcp-virtsvc"] {
                let arg = format!("{opt}={value}");
                let got = err(cli(&[arg.as_str()]));
                assert!(got.contains(msg), "{arg}: {got}");
            }
        }
        // At most 256 services, UDP and TCP together.
        let many: Vec<String> = (1..=257u32)
            .map(|i| {
                let proto = if i % 2 == 0 { "udp" } else { "tcp" };
                format!(
                    "--{proto}-virtsvc=10.0.{}.{},53,fc00::{i:x},53",
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let got = err(cli(&refs));
        assert!(
            got.contains("Number of virtual services is limited to 256"),
            "{got}"
        );
        cli(&refs[..256]).unwrap();
        // The IPv6 endpoint may not be shared either.
        let msg = err(cli(&[
            "--tcp-virtsvc=1.2.3.4,53,fc00::1,53",
            "--tcp-virtsvc=1.2.3.5,53,fc00::1,53",
        ]));
        assert!(msg.contains("IPv6 specification already used"), "{msg}");
        // From the config file too (the repeatable list appends).
        let o = with_file(
            "udp-virtsvc 1.2.3.4,53,fc00::1,53\n",
            &["--tcp-virtsvc=1.2.3.4,53,fc00::1,53"],
        )
        .unwrap();
        assert_eq!((o.udp_virtsvc.len(), o.tcp_virtsvc.len()), (1, 1));
    }

    #[test]
    fn virtsvc_duplicates_and_eswitch_rule() {
        let msg = err(cli(&[
            "--udp-virtsvc=1.2.3.4,53,fc00::1,53",
            "--udp-virtsvc=1.2.3.4,53,fc00::2,53",
        ]));
        assert!(msg.contains("IPv4 specification already used"), "{msg}");
        // Same endpoints on different protocols are fine.
        cli(&[
            "--udp-virtsvc=1.2.3.4,53,fc00::1,53",
            "--tcp-virtsvc=1.2.3.4,53,fc00::1,53",
        ])
        .unwrap();
        assert!(err(cli(&["--multiport-eswitch"])).contains("--no-offload"));
        cli(&["--multiport-eswitch", "--no-offload"]).unwrap();
    }

    #[test]
    fn ignored_options_are_listed_when_given() {
        let given = |args: &[&str]| {
            let argv = std::iter::once("dpservice").chain(args.iter().copied());
            ignored_options(&Options::command().try_get_matches_from(argv).unwrap())
        };
        assert!(given(&[]).is_empty());
        assert!(given(&["--pf0=eth0", "--no-offload", "--wcmp=50"]).is_empty());
        let w = given(&["--active-lockfile=/tmp/lock", "--sync-tap=tapsync"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("--active-lockfile") && w[0].contains("standby"));
        assert!(w[1].starts_with("--sync-tap"));
        // Given at its default value is still given.
        let w = given(&[
            "--debug-coredumps",
            "--graphtrace-loglevel=0",
            "--flow-timeout=30",
        ]);
        let names: Vec<&str> = w.iter().map(|w| w.split(' ').next().unwrap()).collect();
        // --graphtrace-loglevel is honoured (the graph's trace), not ignored; so is
        // --flow-timeout (the flow table's timeout).
        assert_eq!(names, ["--debug-coredumps"]);
        // Options::warnings carries them, from the config file too.
        let o = with_file(
            "active-lockfile /run/lock
",
            &["--sync-tap=t"],
        )
        .unwrap();
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert!(o.warnings[0].starts_with("--active-lockfile"));
        assert!(o.warnings[1].starts_with("--sync-tap"));
    }

    #[test]
    fn eal_separator() {
        // Without '--' everything is ours; with it, only what follows.
        assert!(cli(&["-l", "0,1"]).is_err());
        let o = cli(&["-l", "0,1", "--", "--pf0=x"]).unwrap();
        assert_eq!(o.pf0.as_deref(), Some("x"));
        let o = cli(&["--", "--pf0=x"]).unwrap();
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn config_source_rules() {
        assert_eq!(
            ConfigSource::from_env(None),
            ConfigSource::Default(PathBuf::from(DEFAULT_CONF_FILE))
        );
        assert_eq!(
            ConfigSource::from_env(Some(OsStr::new(""))),
            ConfigSource::None
        );
        let dir = std::env::temp_dir().join(format!("dps-opts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.conf");
        // A missing default file is fine; a missing DP_CONF file is not.
        Options::load_from(&ConfigSource::Default(missing.clone()), ["dpservice"]).unwrap();
        let e = Options::load_from(&ConfigSource::Required(missing), ["dpservice"]).unwrap_err();
        assert!(e.to_string().contains("Error opening config file"), "{e}");
        let conf = dir.join("dpservice.conf");
        std::fs::write(&conf, "grpc-port 2000\n").unwrap();
        let o = Options::load_from(&ConfigSource::Required(conf.clone()), ["dpservice"]).unwrap();
        assert_eq!(o.grpc_port, 2000);
        let o = Options::load_from(
            &ConfigSource::Default(conf),
            ["dpservice", "--grpc-port=3000"],
        )
        .unwrap();
        assert_eq!(o.grpc_port, 3000);
        assert!(Options::load_from(&ConfigSource::None, ["dpservice"]).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
