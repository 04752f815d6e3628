//! The command grammar of ironcore's dpservice-cli, in clap.
//!
//! Command names and aliases, flag names, defaults and value syntax follow
//! the Go CLI (cobra/pflag): numbers accept Go's base prefixes (`0x10`),
//! booleans take `--flag` or `--flag=false`, durations use Go syntax
//! (`4s`, `500ms`), command names match case-insensitively. Required flags
//! are checked by the commands (see [`require`]) so that the message and its
//! timing match cobra's.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;
use crate::types::Prefix;

#[derive(Debug, Parser)]
#[command(
    name = "dpservice-cli",
    about = "Command-line client for dpservice",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    /// Print the version of dpservice-cli.
    #[arg(short = 'v', long = "version")]
    pub version: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// dpservice address (default localhost:$DP_GRPC_PORT or localhost:1337).
    #[arg(long, global = true, value_name = "string")]
    pub address: Option<String>,

    /// Timeout to connect to the dpservice (Go duration, default 4s).
    #[arg(long = "connect-timeout", global = true, value_name = "duration", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Output format. [json|yaml|table|name]
    #[arg(short = 'o', long, global = true, value_name = "string")]
    pub output: Option<String>,

    /// Whether to render pretty output.
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_name = "bool", value_parser = parse_bool)]
    pub pretty: Option<bool>,

    /// Whether to render more info in table output.
    #[arg(short = 'w', long, global = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_name = "bool", value_parser = parse_bool)]
    pub wide: Option<bool>,
}

// The doc comments are the `--help` text, as the Go CLI prints it: `[vni]` is no link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates one of [interface prefix route virtualip loadbalancer lbprefix lbtarget nat neighbornat firewallrule]
    #[command(alias = "add")]
    Create(CreateCmd),
    /// Deletes one of [interface prefix route virtualip loadbalancer lbprefix lbtarget nat neighbornat firewallrule]
    #[command(alias = "del")]
    Delete(DeleteCmd),
    /// Gets one of [interface virtualip loadbalancer nat firewallrule vni version init lbprefix lbtarget prefix route]
    Get(GetCmd),
    /// Lists one of [firewallrules interfaces prefixes lbprefixes routes lbtargets nats loadbalancers]
    List(ListCmd),
    /// Resets one of [vni]
    Reset(ResetCmd),
    /// Initial set up of the DPDK app
    Init,
    /// Gets one of [start stop status]
    Capture(CaptureCmd),
}

#[derive(Debug, Args)]
pub struct CreateCmd {
    /// Filename, directory, or URL to file to use to create the resource
    #[arg(
        short = 'f',
        long = "filename",
        value_delimiter = ',',
        value_name = "strings"
    )]
    pub filename: Vec<String>,
    #[command(subcommand)]
    pub what: Option<CreateWhat>,
}

#[derive(Debug, Args)]
pub struct DeleteCmd {
    /// Filename, directory, or URL to file to use to delete the resource
    #[arg(
        short = 'f',
        long = "filename",
        value_delimiter = ',',
        value_name = "strings"
    )]
    pub filename: Vec<String>,
    #[command(subcommand)]
    pub what: Option<DeleteWhat>,
}

#[derive(Debug, Args)]
pub struct GetCmd {
    #[command(subcommand)]
    pub what: Option<GetWhat>,
}

#[derive(Debug, Args)]
pub struct ListCmd {
    #[command(subcommand)]
    pub what: Option<ListWhat>,
}

#[derive(Debug, Args)]
pub struct ResetCmd {
    #[command(subcommand)]
    pub what: Option<ResetWhat>,
}

#[derive(Debug, Args)]
pub struct CaptureCmd {
    #[command(subcommand)]
    pub what: Option<CaptureWhat>,
}

#[derive(Debug, Subcommand)]
pub enum CreateWhat {
    /// Create an interface
    #[command(aliases = ["interfaces", "iface", "ifaces"])]
    Interface(CreateInterface),
    /// Create a prefix on interface.
    #[command(aliases = ["prefixes", "prfx", "prfxs"])]
    Prefix(PrefixArgs),
    /// Create a route
    #[command(aliases = ["routes", "rt", "rts"])]
    Route(CreateRoute),
    /// Create a virtual IP on interface.
    #[command(aliases = ["virtualips", "vip", "vips"])]
    Virtualip(CreateVirtualIp),
    /// Create a loadbalancer
    #[command(aliases = ["loadbalancers", "lbs", "lb"])]
    Loadbalancer(CreateLoadBalancer),
    /// Create a loadbalancer prefix
    #[command(aliases = ["loadbalancer-prefix", "loadbalancer-prefixes", "lbprfx", "lbprfxs"])]
    Lbprefix(PrefixArgs),
    /// Create a loadbalancer target
    #[command(aliases = ["loadbalancer-target", "loadbalancer-targets", "lbtrgt", "lbtrgts"])]
    Lbtarget(LbTargetArgs),
    /// Create a NAT on interface
    #[command(alias = "translation")]
    Nat(CreateNat),
    /// Create a Neighbor NAT
    #[command(aliases = ["nnat", "ngbnat", "neighnat"])]
    Neighbornat(CreateNeighborNat),
    /// Create a FirewallRule on interface
    #[command(aliases = ["fwrule", "fw-rule", "firewallrules", "fwrules", "fw-rules"])]
    Firewallrule(CreateFirewallRule),
}

#[derive(Debug, Subcommand)]
pub enum DeleteWhat {
    /// Delete interface
    #[command(aliases = ["interfaces", "iface", "ifaces"])]
    Interface(IdArg),
    /// Delete a prefix
    #[command(aliases = ["prefixes", "prfx", "prfxs"])]
    Prefix(DeletePrefixArgs),
    /// Delete a route
    #[command(aliases = ["routes", "rt", "rts"])]
    Route(DeleteRoute),
    /// Delete virtual IP from interface
    #[command(aliases = ["virtualips", "vip", "vips"])]
    Virtualip(InterfaceIdArg),
    /// Delete loadbalancer
    #[command(aliases = ["loadbalancers", "lbs", "lb"])]
    Loadbalancer(IdArg),
    /// Delete a loadbalancer prefix
    #[command(aliases = ["loadbalancer-prefix", "loadbalancer-prefixes", "lbprfx", "lbprfxs"])]
    Lbprefix(DeletePrefixArgs),
    /// Delete a loadbalancer target
    #[command(aliases = ["loadbalancer-target", "loadbalancer-targets", "lbtrgt", "lbtrgts"])]
    Lbtarget(LbTargetArgs),
    /// Delete nat from interface
    #[command(alias = "translation")]
    Nat(InterfaceIdArg),
    /// Delete neighbor nat
    #[command(aliases = ["nnat", "ngbnat", "neighnat"])]
    Neighbornat(NeighborNatKey),
    /// Delete firewall rule from interface
    #[command(aliases = ["fwrule", "fw-rule", "firewallrules", "fwrules", "fw-rules"])]
    Firewallrule(FirewallRuleIdArgs),
}

#[derive(Debug, Subcommand)]
pub enum GetWhat {
    /// Get interface
    #[command(aliases = ["interfaces", "iface", "ifaces"])]
    Interface(OptIdArg),
    /// Get Virtual IP on interface
    #[command(aliases = ["virtualips", "vip", "vips"])]
    Virtualip(OptInterfaceIdArg),
    /// Get loadbalancer
    #[command(aliases = ["loadbalancers", "lbs", "lb"])]
    Loadbalancer(OptIdArg),
    /// Get NAT on interface
    #[command(alias = "translation")]
    Nat(OptInterfaceIdArg),
    /// Get firewall rule
    #[command(aliases = ["fwrule", "fw-rule", "firewallrules", "fwrules", "fw-rules"])]
    Firewallrule(GetFirewallRule),
    /// Get vni usage information
    Vni(GetVni),
    /// Get version of dpservice and protobuf.
    Version,
    /// Indicates if the DPDK app has been initialized already
    Init,
    /// List loadbalancer prefixes on interface.
    #[command(aliases = ["loadbalancer-prefix", "loadbalancer-prefixes", "lbprfx", "lbprfxs"])]
    Lbprefix(ListPrefixes),
    /// List LoadBalancer Targets
    #[command(aliases = ["loadbalancer-target", "loadbalancer-targets", "lbtrgt", "lbtrgts"])]
    Lbtarget(ListLbTargets),
    /// List prefix(es) on interface.
    #[command(aliases = ["prefixes", "prfx", "prfxs"])]
    Prefix(ListPrefixes),
    /// List routes of specified VNI
    #[command(aliases = ["routes", "rt", "rts"])]
    Route(ListRoutes),
}

#[derive(Debug, Subcommand)]
pub enum ListWhat {
    /// List firewall rules on interface
    #[command(aliases = ["firewallrule", "fwrule", "fw-rule", "fwrules", "fw-rules"])]
    Firewallrules(ListFirewallRules),
    /// List all interfaces
    #[command(aliases = ["interface", "iface", "ifaces"])]
    Interfaces(SortBy),
    /// List prefix(es) on interface.
    #[command(aliases = ["prefix", "prfx", "prfxs"])]
    Prefixes(ListPrefixes),
    /// List loadbalancer prefixes on interface.
    #[command(aliases = ["loadbalancer-prefix", "loadbalancer-prefixes", "lbprefix", "lbprfx", "lbprfxs"])]
    Lbprefixes(ListPrefixes),
    /// List routes of specified VNI
    #[command(aliases = ["route", "rt", "rts"])]
    Routes(ListRoutes),
    /// List LoadBalancer Targets
    #[command(aliases = ["loadbalancer-target", "loadbalancer-targets", "lbtrgt", "lbtrgts", "lbtarget"])]
    Lbtargets(ListLbTargets),
    /// List local/neighbor/both nats with selected IP
    #[command(aliases = ["nat", "translation"])]
    Nats(ListNats),
    /// List all loadbalancers
    #[command(aliases = ["loadbalancer", "lbs", "lb"])]
    Loadbalancers(SortBy),
}

#[derive(Debug, Subcommand)]
pub enum ResetWhat {
    /// Reset vni usage information
    #[command(aliases = ["nat", "translation"])]
    Vni(ResetVni),
}

#[derive(Debug, Subcommand)]
pub enum CaptureWhat {
    /// Start capturing packets
    Start(CaptureStart),
    /// Stop capturing packets for all interfaces
    Stop,
    /// Get the status of the packet capturing feature
    Status,
}

// ------------------------------------------------------------- leaf options

#[derive(Debug, Clone, Default, Args)]
pub struct CreateInterface {
    /// ID of the interface.
    #[arg(long, value_name = "string")]
    pub id: Option<String>,
    /// VNI to add the interface to.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
    /// IPv4 address to assign to the interface.
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub ipv4: Option<IpAddr>,
    /// IPv6 address to assign to the interface. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub ipv6: Option<IpAddr>,
    /// Device to allocate.
    #[arg(long, value_name = "string")]
    pub device: Option<String>,
    /// IPv6 underlay address use for the interface. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlay: Option<IpAddr>,
    /// PXE next server.
    #[arg(long = "pxe-server", value_name = "string", default_value = "")]
    pub pxe_server: String,
    /// PXE boot file name.
    #[arg(long = "pxe-file-name", value_name = "string", default_value = "")]
    pub pxe_file_name: String,
    /// Total meter rate.
    #[arg(long = "total-meter-rate", value_name = "uint", value_parser = parse_u64, default_value = "0")]
    pub total_meter_rate: u64,
    /// Public meter rate.
    #[arg(long = "public-meter-rate", value_name = "uint", value_parser = parse_u64, default_value = "0")]
    pub public_meter_rate: u64,
    /// Hostname for the interface.
    #[arg(long, value_name = "string", default_value = "")]
    pub hostname: String,
}

/// `--prefix`, `--interface-id`, `--underlay` (create prefix / lbprefix).
#[derive(Debug, Clone, Default, Args)]
pub struct PrefixArgs {
    /// Prefix to create on the interface.
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub prefix: Option<Prefix>,
    /// ID of the interface.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
    /// IPv6 underlay address to use. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlay: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct DeletePrefixArgs {
    /// Prefix to delete.
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub prefix: Option<Prefix>,
    /// Interface ID of the prefix.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CreateRoute {
    /// Prefix for the route.
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub prefix: Option<Prefix>,
    /// Next hop VNI for the route.
    #[arg(long = "next-hop-vni", value_name = "uint32", value_parser = parse_u32)]
    pub next_hop_vni: Option<u32>,
    /// Next hop IP for the route.
    #[arg(long = "next-hop-ip", value_name = "ip", value_parser = parse_addr)]
    pub next_hop_ip: Option<IpAddr>,
    /// Source VNI for the route.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct DeleteRoute {
    /// Prefix of the route.
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub prefix: Option<Prefix>,
    /// VNI of the route.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CreateVirtualIp {
    /// Virtual IP to create on interface.
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub vip: Option<IpAddr>,
    /// Interface ID where to create the virtual IP.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
    /// IPv6 underlay address use for the VIP. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlay: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CreateLoadBalancer {
    /// Loadbalancer ID to add.
    #[arg(long, value_name = "string")]
    pub id: Option<String>,
    /// VNI to add the loadbalancer to.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
    /// VIP to assign to the loadbalancer.
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub vip: Option<IpAddr>,
    /// LB ports to assign to the loadbalancer (e.g. TCP/443,UDP/53).
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub lbports: Option<Vec<String>>,
    /// IPv6 underlay address use for the loadbalancer. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlay: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct LbTargetArgs {
    /// Loadbalancer Target IP.
    #[arg(long = "target-ip", value_name = "ip", value_parser = parse_addr)]
    pub target_ip: Option<IpAddr>,
    /// ID of the loadbalancer.
    #[arg(long = "lb-id", value_name = "string")]
    pub lb_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CreateNat {
    /// Interface ID where to create NAT.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
    /// MinPort of NAT.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub minport: Option<u32>,
    /// MaxPort of NAT.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub maxport: Option<u32>,
    /// NAT IP to assign to the interface.
    #[arg(long = "nat-ip", value_name = "ip", value_parser = parse_addr)]
    pub nat_ip: Option<IpAddr>,
    /// IPv6 underlay address use for the NAT. (default ::)
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlay: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CreateNeighborNat {
    #[command(flatten)]
    pub key: NeighborNatKey,
    /// Underlay route of neighbor NAT.
    #[arg(long, value_name = "ip", value_parser = parse_addr)]
    pub underlayroute: Option<IpAddr>,
}

// The flags naming a neighbor NAT: all of `delete neighbornat`, the first ones of
// `create neighbornat`. (No doc comment: clap would take it as the command's about.)
#[derive(Debug, Clone, Default, Args)]
pub struct NeighborNatKey {
    /// Neighbor NAT IP.
    #[arg(long = "nat-ip", value_name = "ip", value_parser = parse_addr)]
    pub nat_ip: Option<IpAddr>,
    /// VNI of neighbor NAT.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
    /// MinPort of neighbor NAT.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub minport: Option<u32>,
    /// MaxPort of neighbor NAT.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub maxport: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct CreateFirewallRule {
    /// InterfaceID of FW Rule.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
    /// RuleID of FW Rule.
    #[arg(long = "rule-id", value_name = "string")]
    pub rule_id: Option<String>,
    /// Traffic direction of FW Rule: Ingress = 0/Egress = 1
    #[arg(long, value_name = "string")]
    pub direction: Option<String>,
    /// Firewall action: drop/deny/0|accept/allow/1
    #[arg(long, value_name = "string")]
    pub action: Option<String>,
    /// Priority of FW Rule.
    #[arg(long, value_name = "uint32", value_parser = parse_u32, default_value = "1000")]
    pub priority: u32,
    /// Source prefix (0.0.0.0/0 matches all source IPs).
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub src: Option<Prefix>,
    /// Destination prefix (0.0.0.0/0 matches all destination IPs).
    #[arg(long, value_name = "ipNet", value_parser = parse_prefix)]
    pub dst: Option<Prefix>,
    /// Protocol used icmp/tcp/udp (none matches all protocols).
    #[arg(long, value_name = "string", default_value = "")]
    pub protocol: String,
    /// Source ports start (-1 matches all source ports).
    #[arg(long = "src-port-min", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub src_port_min: Option<i32>,
    /// Source ports end.
    #[arg(long = "src-port-max", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub src_port_max: Option<i32>,
    /// Destination ports start (-1 matches all destination ports).
    #[arg(long = "dst-port-min", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub dst_port_min: Option<i32>,
    /// Destination ports end.
    #[arg(long = "dst-port-max", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub dst_port_max: Option<i32>,
    /// ICMP type (-1 matches all ICMP types).
    #[arg(long = "icmp-type", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub icmp_type: Option<i32>,
    /// ICMP code (-1 matches all ICMP codes).
    #[arg(long = "icmp-code", value_name = "int32", value_parser = parse_i32, allow_hyphen_values = true)]
    pub icmp_code: Option<i32>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct FirewallRuleIdArgs {
    /// Rule ID.
    #[arg(long = "rule-id", value_name = "string")]
    pub rule_id: Option<String>,
    /// Interface ID of the firewall rule.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct GetFirewallRule {
    /// Rule ID to get.
    #[arg(long = "rule-id", value_name = "string", default_value = "")]
    pub rule_id: String,
    /// Interface ID of the firewall rule.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct IdArg {
    /// ID of the object.
    #[arg(long, value_name = "string")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct OptIdArg {
    /// ID of the object (all when not given).
    #[arg(long, value_name = "string", default_value = "")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct InterfaceIdArg {
    /// Interface ID.
    #[arg(long = "interface-id", value_name = "string")]
    pub interface_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct OptInterfaceIdArg {
    /// Interface ID (all interfaces when not given).
    #[arg(long = "interface-id", value_name = "string", default_value = "")]
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct SortBy {
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ListPrefixes {
    /// Interface ID (all interfaces when not given).
    #[arg(long = "interface-id", value_name = "string", default_value = "")]
    pub interface_id: String,
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ListRoutes {
    /// VNI to get the routes from.
    #[arg(long, value_name = "uint32", value_parser = parse_u32, default_value = "0")]
    pub vni: u32,
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ListLbTargets {
    /// ID of the loadbalancer.
    #[arg(long = "lb-id", value_name = "string", default_value = "")]
    pub lb_id: String,
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ListFirewallRules {
    /// Interface ID (all interfaces when not given).
    #[arg(long = "interface-id", value_name = "string", default_value = "")]
    pub interface_id: String,
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Args)]
pub struct ListNats {
    /// NAT IP to get info for.
    #[arg(long = "nat-ip", value_name = "ip", value_parser = parse_addr, default_value = "0.0.0.0")]
    pub nat_ip: IpAddr,
    /// NAT type: Any = 0/Local = 1/Neigh(bor) = 2
    #[arg(long = "nat-type", value_name = "string", default_value = "0")]
    pub nat_type: String,
    /// Column to sort by.
    #[arg(long = "sort-by", value_name = "string", default_value = "")]
    pub sort_by: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct GetVni {
    /// VNI to check.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
    /// VNI Type: VniIpv4 = 0/VniIpv6 = 1.
    #[arg(long = "vni-type", value_name = "uint8", value_parser = parse_u8)]
    pub vni_type: Option<u8>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ResetVni {
    /// VNI to reset.
    #[arg(long, value_name = "uint32", value_parser = parse_u32)]
    pub vni: Option<u32>,
    /// VNI Type: ipv4 = 0/ipv6 = 1/both = 2.
    #[arg(long = "vni-type", value_name = "string", default_value = "both")]
    pub vni_type: String,
}

#[derive(Debug, Clone, Default, Args)]
pub struct CaptureStart {
    /// IP address of the sink node
    #[arg(long = "sink-node-ip", value_name = "ip", value_parser = parse_addr)]
    pub sink_node_ip: Option<IpAddr>,
    /// UDP source port
    #[arg(long = "udp-src-port", value_name = "uint32", value_parser = parse_u32)]
    pub udp_src_port: Option<u32>,
    /// UDP destination port
    #[arg(long = "udp-dst-port", value_name = "uint32", value_parser = parse_u32)]
    pub udp_dst_port: Option<u32>,
    /// PF index (0 or 1, comma separated)
    #[arg(long, value_name = "string", default_value = "")]
    pub pf: String,
    /// VF names (comma separated)
    #[arg(long, value_name = "string", default_value = "")]
    pub vf: String,
}

// ----------------------------------------------------------- required flags

/// cobra's check of required flags: all missing ones, sorted, one message.
pub fn require(flags: &[(&str, bool)]) -> Result<(), CliError> {
    let mut missing: Vec<&str> = flags
        .iter()
        .filter(|(_, set)| !set)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    Err(CliError::msg(format!(
        "required flag(s) \"{}\" not set",
        missing.join("\", \"")
    )))
}

// ------------------------------------------------------------ value parsers

/// Go's `%q` for the strings we quote (ASCII escapes as Go prints them).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `netip.ParseAddr` (surrounding spaces trimmed, as the Go flag does).
pub fn parse_addr(s: &str) -> Result<IpAddr, String> {
    parse_addr_strict(s.trim())
}

/// `netip.ParseAddr`
pub fn parse_addr_strict(t: &str) -> Result<IpAddr, String> {
    t.parse::<IpAddr>().map_err(|_| {
        let ipv4_overflow = !t.contains(':')
            && t.split('.').count() == 4
            && t.split('.')
                .any(|p| p.parse::<u32>().is_ok_and(|v| v > 255));
        let why = if ipv4_overflow {
            "IPv4 field has value >255"
        } else {
            "unable to parse IP"
        };
        format!("ParseAddr({}): {why}", go_quote(t))
    })
}

/// `netip.ParsePrefix` (surrounding spaces trimmed).
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let t = s.trim();
    let err = |why: String| format!("netip.ParsePrefix({}): {why}", go_quote(t));
    let Some((a, bits)) = t.rsplit_once('/') else {
        return Err(err("no '/'".into()));
    };
    let ip: IpAddr = a
        .parse()
        .map_err(|_| err(format!("ParseAddr({}): unable to parse IP", go_quote(a))))?;
    let bad_bits = || err(format!("bad bits after slash: {}", go_quote(bits)));
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return Err(bad_bits());
    }
    let n: u32 = bits.parse().map_err(|_| bad_bits())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if n > max {
        return Err(err("prefix length out of range".into()));
    }
    Ok(Prefix::new(ip, n as u8))
}

/// Go's `strconv.ParseUint(s, 0, bits)` / `ParseInt(s, 0, bits)`.
fn go_parse_integer(s: &str, signed: bool, bits: u32) -> Result<i128, String> {
    let func = if signed {
        "strconv.ParseInt"
    } else {
        "strconv.ParseUint"
    };
    let syntax = || format!("{func}: parsing {}: invalid syntax", go_quote(s));
    let range = || format!("{func}: parsing {}: value out of range", go_quote(s));
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') if signed => (true, &s[1..]),
        Some(b'+') if signed => (false, &s[1..]),
        _ => (false, s),
    };
    let (digits, radix, prefixed) =
        if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (r, 16, true)
        } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (r, 8, true)
        } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (r, 2, true)
        } else if body.len() > 1 && body.starts_with('0') {
            (&body[1..], 8, true)
        } else {
            (body, 10, false)
        };
    // underscores are allowed only between digits and with a base prefix
    let cleaned: String = if prefixed && digits.contains('_') {
        if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
            return Err(syntax());
        }
        digits.chars().filter(|&c| c != '_').collect()
    } else {
        digits.to_owned()
    };
    if cleaned.is_empty() || !cleaned.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    let v = match u128::from_str_radix(&cleaned, radix) {
        Ok(v) => v,
        Err(_) => return Err(range()),
    };
    let v = i128::try_from(v).map_err(|_| range())?;
    let v = if neg { -v } else { v };
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if v < min || v > max {
        return Err(range());
    }
    Ok(v)
}

pub fn parse_u8(s: &str) -> Result<u8, String> {
    go_parse_integer(s, false, 8).map(|v| v as u8)
}

pub fn parse_u32(s: &str) -> Result<u32, String> {
    go_parse_integer(s, false, 32).map(|v| v as u32)
}

pub fn parse_u64(s: &str) -> Result<u64, String> {
    go_parse_integer(s, false, 64).map(|v| v as u64)
}

pub fn parse_i32(s: &str) -> Result<i32, String> {
    go_parse_integer(s, true, 32).map(|v| v as i32)
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// Go's `time.ParseDuration` (negative durations are clamped to zero).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(s));
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(s)));
        }
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit),
                    go_quote(s)
                ))
            }
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The alias lists of the Go CLI (cmd/common.go).
    const INTERFACE_ALIASES: &[&str] = &["interface", "interfaces", "iface", "ifaces"];
    const PREFIX_ALIASES: &[&str] = &["prefix", "prefixes", "prfx", "prfxs"];
    const ROUTE_ALIASES: &[&str] = &["route", "routes", "rt", "rts"];
    const VIRTUALIP_ALIASES: &[&str] = &["virtualip", "virtualips", "vip", "vips"];
    const LOADBALANCER_ALIASES: &[&str] = &["loadbalancer", "loadbalancers", "lbs", "lb"];
    const LBPREFIX_ALIASES: &[&str] = &[
        "loadbalancer-prefix",
        "loadbalancer-prefixes",
        "lbprefix",
        "lbprfx",
        "lbprfxs",
    ];
    const LBTARGET_ALIASES: &[&str] = &[
        "loadbalancer-target",
        "loadbalancer-targets",
        "lbtrgt",
        "lbtrgts",
        "lbtarget",
    ];
    const NAT_ALIASES: &[&str] = &["nat", "translation"];
    const NEIGHBORNAT_ALIASES: &[&str] = &["nnat", "ngbnat", "neighnat"];
    const FIREWALLRULE_ALIASES: &[&str] = &[
        "firewallrule",
        "fwrule",
        "fw-rule",
        "firewallrules",
        "fwrules",
        "fw-rules",
    ];

    fn p(line: &str) -> Result<Cli, Early> {
        let mut args = vec!["dpservice-cli".to_owned()];
        args.extend(line.split_whitespace().map(str::to_owned));
        parse_args(args)
    }

    fn err(line: &str) -> String {
        match p(line) {
            Err(Early::Error { error, .. }) => error.text().to_owned(),
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    fn cmd(line: &str) -> Command {
        match p(line) {
            Ok(cli) => cli.command.unwrap_or_else(|| panic!("{line}: no command")),
            Err(e) => panic!("{line}: {e:?}"),
        }
    }

    #[test]
    fn every_go_alias_resolves() {
        let groups: &[(&str, &[&str], &str)] = &[
            ("create", INTERFACE_ALIASES, "Interface"),
            ("create", PREFIX_ALIASES, "Prefix"),
            ("create", ROUTE_ALIASES, "Route"),
            ("create", VIRTUALIP_ALIASES, "Virtualip"),
            ("create", LOADBALANCER_ALIASES, "Loadbalancer"),
            ("create", LBPREFIX_ALIASES, "Lbprefix"),
            ("create", LBTARGET_ALIASES, "Lbtarget"),
            ("create", NAT_ALIASES, "Nat"),
            ("create", NEIGHBORNAT_ALIASES, "Neighbornat"),
            ("create", FIREWALLRULE_ALIASES, "Firewallrule"),
            ("delete", INTERFACE_ALIASES, "Interface"),
            ("delete", PREFIX_ALIASES, "Prefix"),
            ("delete", ROUTE_ALIASES, "Route"),
            ("delete", VIRTUALIP_ALIASES, "Virtualip"),
            ("delete", LOADBALANCER_ALIASES, "Loadbalancer"),
            ("delete", LBPREFIX_ALIASES, "Lbprefix"),
            ("delete", LBTARGET_ALIASES, "Lbtarget"),
            ("delete", NAT_ALIASES, "Nat"),
            ("delete", NEIGHBORNAT_ALIASES, "Neighbornat"),
            ("delete", FIREWALLRULE_ALIASES, "Firewallrule"),
            ("get", INTERFACE_ALIASES, "Interface"),
            ("get", VIRTUALIP_ALIASES, "Virtualip"),
            ("get", LOADBALANCER_ALIASES, "Loadbalancer"),
            ("get", NAT_ALIASES, "Nat"),
            ("get", FIREWALLRULE_ALIASES, "Firewallrule"),
            ("get", LBPREFIX_ALIASES, "Lbprefix"),
            ("get", LBTARGET_ALIASES, "Lbtarget"),
            ("get", PREFIX_ALIASES, "Prefix"),
            ("get", ROUTE_ALIASES, "Route"),
            ("list", FIREWALLRULE_ALIASES, "Firewallrules"),
            ("list", INTERFACE_ALIASES, "Interfaces"),
            ("list", PREFIX_ALIASES, "Prefixes"),
            ("list", LBPREFIX_ALIASES, "Lbprefixes"),
            ("list", ROUTE_ALIASES, "Routes"),
            ("list", LBTARGET_ALIASES, "Lbtargets"),
            ("list", NAT_ALIASES, "Nats"),
            ("list", LOADBALANCER_ALIASES, "Loadbalancers"),
            ("reset", NAT_ALIASES, "Vni"),
        ];
        for (group, aliases, variant) in groups {
            for alias in *aliases {
                let c = cmd(&format!("{group} {alias}"));
                let dbg = format!("{c:?}");
                assert!(
                    dbg.contains(&format!("({variant}(")) || dbg.contains(&format!("({variant})")),
                    "{group} {alias} -> {dbg}"
                );
            }
        }
        // the list commands' own names
        for name in [
            "firewallrules",
            "interfaces",
            "prefixes",
            "lbprefixes",
            "routes",
            "lbtargets",
            "nats",
            "loadbalancers",
        ] {
            assert!(matches!(
                cmd(&format!("list {name}")),
                Command::List(ListCmd { what: Some(_) })
            ));
        }
        assert!(matches!(cmd("reset vni --vni 1"), Command::Reset(_)));
        assert!(matches!(
            cmd("get vni --vni 1"),
            Command::Get(GetCmd {
                what: Some(GetWhat::Vni(_))
            })
        ));
        assert!(matches!(
            cmd("get version"),
            Command::Get(GetCmd {
                what: Some(GetWhat::Version)
            })
        ));
        assert!(matches!(
            cmd("get init"),
            Command::Get(GetCmd {
                what: Some(GetWhat::Init)
            })
        ));
        assert!(matches!(cmd("init"), Command::Init));
        assert!(matches!(cmd("capture status"), Command::Capture(_)));
    }

    #[test]
    fn add_and_del_and_case_insensitivity() {
        assert!(matches!(
            cmd("add interface"),
            Command::Create(CreateCmd {
                what: Some(CreateWhat::Interface(_)),
                ..
            })
        ));
        assert!(matches!(
            cmd("del route"),
            Command::Delete(DeleteCmd {
                what: Some(DeleteWhat::Route(_)),
                ..
            })
        ));
        assert!(
            matches!(cmd("GET Interface --id=VM1"), Command::Get(GetCmd { what: Some(GetWhat::Interface(OptIdArg { ref id })) }) if id == "VM1")
        );
        assert!(matches!(
            cmd("List IFACES"),
            Command::List(ListCmd {
                what: Some(ListWhat::Interfaces(_))
            })
        ));
        // a flag value that looks like a command is not rewritten
        match cmd("add prefix --interface-id Route --prefix 10.0.0.0/8") {
            Command::Create(CreateCmd {
                what: Some(CreateWhat::Prefix(a)),
                ..
            }) => {
                assert_eq!(a.interface_id.as_deref(), Some("Route"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_interface_flags() {
        let c = cmd("add interface --id=vm1 --vni 0x64 --ipv4=10.0.0.1 --device tap0 --total-meter-rate=1000 --hostname h");
        let Command::Create(CreateCmd {
            what: Some(CreateWhat::Interface(o)),
            ..
        }) = c
        else {
            panic!()
        };
        assert_eq!(o.id.as_deref(), Some("vm1"));
        assert_eq!(o.vni, Some(100));
        assert_eq!(o.ipv4, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(o.ipv6, None, "defaults to :: in the command");
        assert_eq!(o.device.as_deref(), Some("tap0"));
        assert_eq!(o.total_meter_rate, 1000);
        assert_eq!(o.public_meter_rate, 0);
        assert_eq!(o.hostname, "h");
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = p("-o json --address 10.0.0.1:1234 list interfaces --pretty -w=false --connect-timeout 250ms").unwrap();
        assert_eq!(cli.global.output.as_deref(), Some("json"));
        assert_eq!(cli.global.address.as_deref(), Some("10.0.0.1:1234"));
        assert_eq!(cli.global.pretty, Some(true));
        assert_eq!(cli.global.wide, Some(false));
        assert_eq!(cli.global.connect_timeout, Some(Duration::from_millis(250)));
        let cli = p("get vni --vni 1 --vni-type 0 --output=yaml").unwrap();
        assert_eq!(cli.global.output.as_deref(), Some("yaml"));
        assert!(p("-v").unwrap().version);
        assert!(p("--version").unwrap().version);
    }

    #[test]
    fn bad_values_are_rejected_readably() {
        assert_eq!(
            err("add interface --id vm1 --ipv4 10.0.0.256"),
            "invalid argument \"10.0.0.256\" for \"--ipv4\" flag: ParseAddr(\"10.0.0.256\"): IPv4 field has value >255"
        );
        assert_eq!(
            err("add route --next-hop-ip nonsense"),
            "invalid argument \"nonsense\" for \"--next-hop-ip\" flag: ParseAddr(\"nonsense\"): unable to parse IP"
        );
        assert_eq!(
            err("add prefix --prefix 10.0.0.0/33"),
            "invalid argument \"10.0.0.0/33\" for \"--prefix\" flag: netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range"
        );
        assert_eq!(
            err("add prefix --prefix=fc00::/129"),
            "invalid argument \"fc00::/129\" for \"--prefix\" flag: netip.ParsePrefix(\"fc00::/129\"): prefix length out of range"
        );
        assert_eq!(
            err("del route --prefix 10.0.0.1"),
            "invalid argument \"10.0.0.1\" for \"--prefix\" flag: netip.ParsePrefix(\"10.0.0.1\"): no '/'"
        );
        assert_eq!(
            err("list routes --vni=abc"),
            "invalid argument \"abc\" for \"--vni\" flag: strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            err("get vni --vni-type 300"),
            "invalid argument \"300\" for \"--vni-type\" flag: strconv.ParseUint: parsing \"300\": value out of range"
        );
        assert_eq!(
            err("list interfaces -w=maybe"),
            "invalid argument \"maybe\" for \"-w, --wide\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert_eq!(
            err("list interfaces --connect-timeout 5"),
            "invalid argument \"5\" for \"--connect-timeout\" flag: time: missing unit in duration \"5\""
        );
    }

    #[test]
    fn usage_errors_like_cobra() {
        assert_eq!(err("list interfaces --foo"), "unknown flag: --foo");
        assert_eq!(
            err("list interfaces -x"),
            "unknown shorthand flag: 'x' in -x"
        );
        assert_eq!(
            err("get nothing"),
            "unknown command \"nothing\" for \"dpservice-cli get\""
        );
        assert_eq!(err("list interfaces extra"), "accepts 0 arg(s), received 1");
        match p("get") {
            Err(Early::Error {
                error,
                help: Some(help),
            }) => {
                assert_eq!(error.text(), "subcommand is required");
                assert!(help.contains("interface"), "{help}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(p(""), Err(Early::Error { .. })));
        assert!(matches!(p("--help"), Err(Early::Print(_))));
        assert!(matches!(p("list routes -h"), Err(Early::Print(_))));
    }

    #[test]
    fn error_output_format_from_raw_args() {
        let v = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(manual_parse_output(&v("get init")), "name");
        assert_eq!(manual_parse_output(&v("-o json get init")), "json");
        assert_eq!(manual_parse_output(&v("get init --output=yaml")), "yaml");
        assert_eq!(manual_parse_output(&v("get init -o=table")), "table");
        assert_eq!(
            manual_parse_output(&v("get init -ojson")),
            "name",
            "as in the Go CLI"
        );
    }

    #[test]
    fn integers_follow_go() {
        assert_eq!(parse_u32("100"), Ok(100));
        assert_eq!(parse_u32("0x10"), Ok(16));
        assert_eq!(parse_u32("010"), Ok(8));
        assert_eq!(parse_u32("0b11"), Ok(3));
        assert_eq!(parse_u32("0x1_0"), Ok(16));
        assert_eq!(parse_u32("4294967295"), Ok(u32::MAX));
        assert_eq!(
            parse_u32("4294967296"),
            Err("strconv.ParseUint: parsing \"4294967296\": value out of range".into())
        );
        assert_eq!(
            parse_u32("-1"),
            Err("strconv.ParseUint: parsing \"-1\": invalid syntax".into())
        );
        assert_eq!(
            parse_u32("abc"),
            Err("strconv.ParseUint: parsing \"abc\": invalid syntax".into())
        );
        assert_eq!(
            parse_u8("256"),
            Err("strconv.ParseUint: parsing \"256\": value out of range".into())
        );
        assert_eq!(parse_i32("-1"), Ok(-1));
        assert_eq!(parse_i32("+5"), Ok(5));
        assert_eq!(
            parse_i32("2147483648"),
            Err("strconv.ParseInt: parsing \"2147483648\": value out of range".into())
        );
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn addresses_and_prefixes() {
        assert_eq!(parse_addr(" 10.0.0.1 "), Ok("10.0.0.1".parse().unwrap()));
        assert_eq!(parse_addr("fc00::1"), Ok("fc00::1".parse().unwrap()));
        assert_eq!(
            parse_addr("10.0.0.256"),
            Err("ParseAddr(\"10.0.0.256\"): IPv4 field has value >255".into())
        );
        assert_eq!(
            parse_addr("foo"),
            Err("ParseAddr(\"foo\"): unable to parse IP".into())
        );
        assert_eq!(
            parse_prefix("10.0.0.0/24"),
            Ok(Prefix::new("10.0.0.0".parse().unwrap(), 24))
        );
        assert_eq!(
            parse_prefix("10.0.0.1/24").unwrap().text(),
            "10.0.0.1/24",
            "not masked"
        );
        assert_eq!(parse_prefix("fc00::/64").unwrap().bits(), 64);
        assert_eq!(
            parse_prefix("10.0.0.0/33"),
            Err("netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range".into())
        );
        assert_eq!(
            parse_prefix("fc00::/129"),
            Err("netip.ParsePrefix(\"fc00::/129\"): prefix length out of range".into())
        );
        assert_eq!(
            parse_prefix("10.0.0.0"),
            Err("netip.ParsePrefix(\"10.0.0.0\"): no '/'".into())
        );
        assert_eq!(
            parse_prefix("10.0.0.0/024"),
            Err("netip.ParsePrefix(\"10.0.0.0/024\"): bad bits after slash: \"024\"".into())
        );
        assert_eq!(
            parse_prefix("10.0.0/24"),
            Err(
                "netip.ParsePrefix(\"10.0.0/24\"): ParseAddr(\"10.0.0\"): unable to parse IP"
                    .into()
            )
        );
    }

    #[test]
    fn durations_and_bools() {
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("4"),
            Err("time: missing unit in duration \"4\"".into())
        );
        assert_eq!(
            parse_duration("4x"),
            Err("time: unknown unit \"x\" in duration \"4x\"".into())
        );
        assert_eq!(
            parse_duration("x"),
            Err("time: invalid duration \"x\"".into())
        );
        assert_eq!(parse_bool("false"), Ok(false));
        assert_eq!(parse_bool("T"), Ok(true));
        assert!(parse_bool("yes").is_err());
    }

    #[test]
    fn required_flags_message_is_sorted() {
        assert_eq!(require(&[("id", true)]), Ok(()));
        assert_eq!(
            require(&[
                ("id", false),
                ("vni", false),
                ("ipv4", true),
                ("device", false)
            ])
            .unwrap_err()
            .text(),
            "required flag(s) \"device\", \"id\", \"vni\" not set"
        );
    }
}

// ------------------------------------------------------------ parsing

/// What parsing the command line led to, when it is not a command to run.
#[derive(Debug)]
pub enum Early {
    /// Print this (help, version) and exit 0.
    Print(String),
    /// A usage error; `help` is printed before the error (cobra prints the
    /// help of a command group that was given no subcommand).
    Error {
        error: CliError,
        help: Option<String>,
    },
}

/// Parses the command line like cobra/pflag would, including its error
/// messages.
pub fn parse_args(mut args: Vec<String>) -> Result<Cli, Early> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::CommandFactory;

    let mut root = Cli::command();
    root.build();
    let path = normalize_case(&root, &mut args);
    let path_str = path.join(" ");

    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let ctx_str = |k: ContextKind| match e.get(k) {
                Some(ContextValue::String(s)) => Some(s.clone()),
                Some(ContextValue::Strings(v)) => v.first().cloned(),
                _ => None,
            };
            let msg = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    return Err(Early::Print(e.render().to_string()));
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::MissingSubcommand => {
                    return Err(Early::Error {
                        error: CliError::msg("subcommand is required"),
                        help: Some(help_of(&root, &path)),
                    });
                }
                ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
                    let arg = ctx_str(ContextKind::InvalidArg).unwrap_or_default();
                    let flag = arg
                        .split([' ', '=', '[', '<'])
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let flag = go_flag_name(&root, &path, &flag);
                    let value = ctx_str(ContextKind::InvalidValue).unwrap_or_default();
                    let why = std::error::Error::source(&e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| first_line(&e.render().to_string()));
                    format!(
                        "invalid argument {} for {} flag: {why}",
                        go_quote(&value),
                        go_quote(&flag)
                    )
                }
                ErrorKind::UnknownArgument => {
                    let arg = ctx_str(ContextKind::InvalidArg).unwrap_or_default();
                    if let Some(long) = arg.strip_prefix("--") {
                        format!("unknown flag: --{}", long.split('=').next().unwrap_or(long))
                    } else if let Some(short) = arg.strip_prefix('-') {
                        let c = short.chars().next().unwrap_or('-');
                        format!("unknown shorthand flag: '{c}' in {arg}")
                    } else if path.len() <= 1 || is_group(&path) {
                        format!(
                            "unknown command {} for {}",
                            go_quote(&arg),
                            go_quote(&path_str)
                        )
                    } else {
                        let n = count_positionals(&args);
                        format!("accepts 0 arg(s), received {n}")
                    }
                }
                ErrorKind::InvalidSubcommand => {
                    let arg = ctx_str(ContextKind::InvalidSubcommand).unwrap_or_default();
                    format!(
                        "unknown command {} for {}",
                        go_quote(&arg),
                        go_quote(&path_str)
                    )
                }
                ErrorKind::NoEquals | ErrorKind::InvalidUtf8 | ErrorKind::TooManyValues => {
                    first_line(&e.render().to_string())
                }
                _ => first_line(&e.render().to_string()),
            };
            return Err(Early::Error {
                error: CliError::msg(msg),
                help: None,
            });
        }
    };
    // command groups run without a subcommand print their help and fail
    // (`create`/`delete` alone read objects from files instead)
    let group_missing = match &cli.command {
        None => !cli.version,
        Some(Command::Get(c)) => c.what.is_none(),
        Some(Command::List(c)) => c.what.is_none(),
        Some(Command::Reset(c)) => c.what.is_none(),
        Some(Command::Capture(c)) => c.what.is_none(),
        _ => false,
    };
    if group_missing {
        return Err(Early::Error {
            error: CliError::msg("subcommand is required"),
            help: Some(help_of(&root, &path)),
        });
    }
    Ok(cli)
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    l.strip_prefix("error: ").unwrap_or(l).to_owned()
}

fn is_group(path: &[String]) -> bool {
    path.len() == 2
        && matches!(
            path[1].as_str(),
            "create" | "delete" | "get" | "list" | "reset" | "capture"
        )
}

fn count_positionals(args: &[String]) -> usize {
    // everything after the leaf that is not a flag (approximation of cobra's
    // count of extra arguments)
    args.iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .count()
        .saturating_sub(2)
}

/// The Go flag name for error messages: `--vni`, or `-w, --wide` when the
/// flag has a shorthand.
fn go_flag_name(root: &clap::Command, path: &[String], flag: &str) -> String {
    let long = flag.trim_start_matches('-');
    let mut cmd = root;
    for p in path.iter().skip(1) {
        match cmd.find_subcommand(p) {
            Some(c) => cmd = c,
            None => break,
        }
    }
    let found = cmd.get_arguments().find(|a| {
        a.get_long() == Some(long)
            || (long.len() == 1 && a.get_short().map(|c| c.to_string()) == Some(long.to_owned()))
    });
    match found {
        Some(a) => match (a.get_short(), a.get_long()) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (None, Some(l)) => format!("--{l}"),
            _ => flag.to_owned(),
        },
        None => flag.to_owned(),
    }
}

fn help_of(root: &clap::Command, path: &[String]) -> String {
    let mut cmd = root.clone();
    for p in path.iter().skip(1) {
        match cmd.find_subcommand(p) {
            Some(c) => cmd = c.clone(),
            None => break,
        }
    }
    cmd.render_help().to_string()
}

/// cobra matches command names case-insensitively: rewrites command words
/// to their canonical spelling and returns the command path found.
fn normalize_case(root: &clap::Command, args: &mut [String]) -> Vec<String> {
    let mut path = vec![root.get_name().to_owned()];
    let mut cmd = root;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].clone();
        if a == "--" {
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            if !long.contains('=') && takes_value(cmd, |arg| arg.get_long() == Some(long)) {
                i += 1;
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let shorts: Vec<char> = a[1..].chars().collect();
            for (j, c) in shorts.iter().enumerate() {
                if takes_value(cmd, |arg| arg.get_short() == Some(*c)) {
                    if j + 1 == shorts.len() {
                        i += 1;
                    }
                    break;
                }
            }
        } else {
            let lower = a.to_lowercase();
            let sub = cmd.get_subcommands().find(|s| {
                s.get_name().eq_ignore_ascii_case(&lower)
                    || s.get_all_aliases()
                        .any(|al| al.eq_ignore_ascii_case(&lower))
            });
            match sub {
                Some(s) => {
                    args[i] = if s.get_name().eq_ignore_ascii_case(&lower) {
                        s.get_name().to_owned()
                    } else {
                        s.get_all_aliases()
                            .find(|al| al.eq_ignore_ascii_case(&lower))
                            .unwrap_or(&a)
                            .to_owned()
                    };
                    path.push(s.get_name().to_owned());
                    cmd = s;
                }
                None => break,
            }
        }
        i += 1;
    }
    path
}

fn takes_value(cmd: &clap::Command, pred: impl Fn(&clap::Arg) -> bool) -> bool {
    cmd.get_arguments().find(|a| pred(a)).is_some_and(|a| {
        a.get_action().takes_values() && !matches!(a.get_num_args(), Some(n) if n.min_values() == 0)
    })
}

/// The Go CLI's `manualParseOutput`: the output format used to report
/// errors, taken from the raw arguments (default `name`).
pub fn manual_parse_output(args: &[String]) -> String {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--output" || a == "-o" {
            if let Some(v) = args.get(i + 1) {
                return v.clone();
            }
        } else if let Some(v) = a.strip_prefix("--output=") {
            return v.to_owned();
        } else if let Some(v) = a.strip_prefix("-o=") {
            return v.to_owned();
        }
        i += 1;
    }
    "name".to_owned()
}
