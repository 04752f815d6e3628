//! Output objects of the CLI.
//!
//! These mirror the Go `api` types of ironcore's dpservice-go (the `kind`,
//! `metadata`, `spec`, `status` envelope) field by field and in field order,
//! so that `-o json` prints byte-identical documents. Go conventions that
//! matter here:
//! * a `netip.Addr`/`netip.Prefix` value marshals as its text, the zero value
//!   as `""` (see [`Addr`], [`Prefix`]); a nil pointer is omitted
//!   (`omitempty`) or `null`;
//! * `omitempty` drops `""`, `0`, `false`, nil pointers and empty slices;
//! * a nil slice without `omitempty` marshals as `null` (`Option<Vec<_>>`).

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

/// A Go `netip.Addr`: either the zero value or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Addr(pub Option<IpAddr>);

impl Addr {
    pub fn ip(ip: IpAddr) -> Self {
        Addr(Some(ip))
    }

    /// `netip.IPv6Unspecified()`
    pub fn v6_unspecified() -> Self {
        Addr(Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)))
    }

    pub fn is_valid(&self) -> bool {
        self.0.is_some()
    }

    /// The text form Go's `MarshalText` produces (`""` for the zero value).
    pub fn text(&self) -> String {
        self.0.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

impl fmt::Display for Addr {
    /// Go's `Addr.String()`: the zero value prints as `invalid IP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("invalid IP"),
        }
    }
}

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A Go `netip.Prefix`: the zero value or address and length (not masked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefix(pub Option<(IpAddr, u8)>);

impl Prefix {
    pub fn new(ip: IpAddr, len: u8) -> Self {
        Prefix(Some((ip, len)))
    }

    /// `Prefix.Addr()`: the zero `Addr` for the zero prefix.
    pub fn addr(&self) -> Addr {
        Addr(self.0.map(|(ip, _)| ip))
    }

    /// `Prefix.Bits()`: -1 for the zero prefix.
    pub fn bits(&self) -> i32 {
        self.0.map(|(_, l)| i32::from(l)).unwrap_or(-1)
    }

    pub fn text(&self) -> String {
        self.0
            .map(|(ip, l)| format!("{ip}/{l}"))
            .unwrap_or_default()
    }
}

impl fmt::Display for Prefix {
    /// Go's `Prefix.String()`: the zero value prints as `invalid Prefix`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((ip, l)) => write!(f, "{ip}/{l}"),
            None => f.write_str("invalid Prefix"),
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

fn is_empty_vec<T>(v: &[T]) -> bool {
    v.is_empty()
}

/// `api.Status`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub code: u32,
    pub message: String,
}

impl Status {
    pub fn from_proto(s: Option<&dp_proto::v1::Status>) -> Self {
        s.map(|s| Status {
            code: s.code,
            message: s.message.clone(),
        })
        .unwrap_or_default()
    }
}

/// An empty Go struct (`{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

// ----------------------------------------------------------------- Interface

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InterfaceMeta {
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VirtualFunction {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pxe {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_server: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub boot_filename: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeteringParams {
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub total_rate: u64,
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub public_rate: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InterfaceSpec {
    pub vni: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_ipv4: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_ipv6: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_function: Option<VirtualFunction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pxe: Option<Pxe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<Box<Nat>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<Box<VirtualIp>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metering: Option<MeteringParams>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interface {
    pub kind: String,
    pub metadata: InterfaceMeta,
    pub spec: InterfaceSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InterfaceList {
    pub kind: String,
    pub metadata: Empty,
    pub status: Status,
    pub items: Option<Vec<Interface>>,
}

// -------------------------------------------------------------------- Prefix

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixMeta {
    pub interface_id: String,
    pub vni: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixSpec {
    pub prefix: Prefix,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
}

/// `api.Prefix`; also the items of a loadbalancer-prefix list (then with
/// kind `LoadBalancerPrefix`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixObj {
    pub kind: String,
    pub metadata: PrefixMeta,
    pub spec: PrefixSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixListMeta {
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrefixList {
    pub kind: String,
    pub metadata: PrefixListMeta,
    pub status: Status,
    pub items: Option<Vec<PrefixObj>>,
}

// --------------------------------------------------------------------- Route

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteMeta {
    pub vni: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteNextHop {
    pub vni: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<RouteNextHop>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Route {
    pub kind: String,
    pub metadata: RouteMeta,
    pub spec: RouteSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteList {
    pub kind: String,
    pub metadata: RouteMeta,
    pub status: Status,
    pub items: Option<Vec<Route>>,
}

// ----------------------------------------------------------------- VirtualIP

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VirtualIpMeta {
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VirtualIpSpec {
    pub vip_ip: Option<Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VirtualIp {
    pub kind: String,
    pub metadata: VirtualIpMeta,
    pub spec: VirtualIpSpec,
    pub status: Status,
}

// -------------------------------------------------------------- LoadBalancer

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerMeta {
    pub id: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LbPort {
    pub protocol: u32,
    pub port: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerSpec {
    pub vni: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadbalanced_ip: Option<Addr>,
    #[serde(skip_serializing_if = "is_empty_vec")]
    pub loadbalanced_ports: Vec<LbPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancer {
    pub kind: String,
    pub metadata: LoadBalancerMeta,
    pub spec: LoadBalancerSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerList {
    pub kind: String,
    pub metadata: Empty,
    pub status: Status,
    pub items: Option<Vec<LoadBalancer>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerTargetMeta {
    pub loadbalancer_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerTargetSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_ip: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerTarget {
    pub kind: String,
    pub metadata: LoadBalancerTargetMeta,
    pub spec: LoadBalancerTargetSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerTargetList {
    pub kind: String,
    pub metadata: LoadBalancerTargetMeta,
    pub status: Status,
    pub items: Option<Vec<LoadBalancerTarget>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerPrefixMeta {
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadBalancerPrefix {
    pub kind: String,
    pub metadata: LoadBalancerPrefixMeta,
    pub spec: PrefixSpec,
    pub status: Status,
}

// ----------------------------------------------------------------------- NAT

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NatMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NatSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_ip: Option<Addr>,
    pub min_port: u32,
    pub max_port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
    pub vni: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_nat_ip: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Nat {
    pub kind: String,
    pub metadata: NatMeta,
    pub spec: NatSpec,
    pub status: Status,
}

impl fmt::Display for Nat {
    /// Go's `Nat.String()`: `<nat ip> <min, max>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} <{}, {}>",
            go_opt(self.spec.nat_ip.as_ref()),
            self.spec.min_port,
            self.spec.max_port
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NatListMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_ip: Option<Addr>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nat_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NatList {
    pub kind: String,
    pub metadata: NatListMeta,
    pub status: Status,
    pub items: Option<Vec<Nat>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NeighborNatMeta {
    pub nat_ip: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NeighborNatSpec {
    pub vni: u32,
    pub min_port: u32,
    pub max_port: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_route: Option<Addr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NeighborNat {
    pub kind: String,
    pub metadata: NeighborNatMeta,
    pub spec: NeighborNatSpec,
    pub status: Status,
}

// ------------------------------------------------------------------ Firewall

/// The Go CLI marshals the generated protobuf struct with `encoding/json`:
/// the oneof appears as `{"Filter":{"Tcp":{...}}}` and zero values of the
/// filters' fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProtocolFilter {
    #[serde(rename = "Filter")]
    pub filter: Option<FilterKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FilterKind {
    Icmp(IcmpFilter),
    Tcp(PortFilter),
    Udp(PortFilter),
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IcmpFilter {
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub icmp_type: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub icmp_code: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PortFilter {
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub src_port_lower: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub src_port_upper: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub dst_port_lower: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub dst_port_upper: i32,
}

impl ProtocolFilter {
    pub fn from_proto(p: &dp_proto::v1::ProtocolFilter) -> Self {
        use dp_proto::v1::protocol_filter::Filter;
        let filter = p.filter.as_ref().map(|f| match f {
            Filter::Icmp(i) => FilterKind::Icmp(IcmpFilter {
                icmp_type: i.icmp_type,
                icmp_code: i.icmp_code,
            }),
            Filter::Tcp(t) => FilterKind::Tcp(PortFilter {
                src_port_lower: t.src_port_lower,
                src_port_upper: t.src_port_upper,
                dst_port_lower: t.dst_port_lower,
                dst_port_upper: t.dst_port_upper,
            }),
            Filter::Udp(u) => FilterKind::Udp(PortFilter {
                src_port_lower: u.src_port_lower,
                src_port_upper: u.src_port_upper,
                dst_port_lower: u.dst_port_lower,
                dst_port_upper: u.dst_port_upper,
            }),
        });
        ProtocolFilter { filter }
    }

    pub fn to_proto(&self) -> dp_proto::v1::ProtocolFilter {
        use dp_proto::v1::protocol_filter::Filter;
        use dp_proto::v1::{IcmpFilter as PIcmp, TcpFilter, UdpFilter};
        let filter = self.filter.as_ref().map(|f| match f {
            FilterKind::Icmp(i) => Filter::Icmp(PIcmp {
                icmp_type: i.icmp_type,
                icmp_code: i.icmp_code,
            }),
            FilterKind::Tcp(p) => Filter::Tcp(TcpFilter {
                src_port_lower: p.src_port_lower,
                src_port_upper: p.src_port_upper,
                dst_port_lower: p.dst_port_lower,
                dst_port_upper: p.dst_port_upper,
            }),
            FilterKind::Udp(p) => Filter::Udp(UdpFilter {
                src_port_lower: p.src_port_lower,
                src_port_upper: p.src_port_upper,
                dst_port_lower: p.dst_port_lower,
                dst_port_upper: p.dst_port_upper,
            }),
        });
        dp_proto::v1::ProtocolFilter { filter }
    }
}

impl fmt::Display for ProtocolFilter {
    /// The protobuf text format Go's `String()` prints (single-spaced).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn fields(f: &mut fmt::Formatter<'_>, kv: &[(&str, i32)]) -> fmt::Result {
            let parts: Vec<String> = kv
                .iter()
                .filter(|(_, v)| *v != 0)
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            write!(f, "{}", parts.join(" "))
        }
        match &self.filter {
            None => Ok(()),
            Some(FilterKind::Icmp(i)) => {
                f.write_str("icmp:{")?;
                fields(f, &[("icmp_type", i.icmp_type), ("icmp_code", i.icmp_code)])?;
                f.write_str("}")
            }
            Some(FilterKind::Tcp(p)) | Some(FilterKind::Udp(p)) => {
                let name = if matches!(self.filter, Some(FilterKind::Tcp(_))) {
                    "tcp"
                } else {
                    "udp"
                };
                write!(f, "{name}:{{")?;
                fields(
                    f,
                    &[
                        ("src_port_lower", p.src_port_lower),
                        ("src_port_upper", p.src_port_upper),
                        ("dst_port_lower", p.dst_port_lower),
                        ("dst_port_upper", p.dst_port_upper),
                    ],
                )?;
                f.write_str("}")
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallRuleMeta {
    pub interface_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallRuleSpec {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub direction: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    pub priority: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_prefix: Option<Prefix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_prefix: Option<Prefix>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_filter: Option<ProtocolFilter>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallRule {
    pub kind: String,
    pub metadata: FirewallRuleMeta,
    pub spec: FirewallRuleSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FirewallRuleList {
    pub kind: String,
    pub metadata: FirewallRuleMeta,
    pub status: Status,
    pub items: Option<Vec<FirewallRule>>,
}

// ------------------------------------------------- Init, VNI, Version, Capture

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InitializedSpec {
    pub uuid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Initialized {
    pub kind: String,
    pub metadata: Empty,
    pub spec: InitializedSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VniMeta {
    pub vni: u32,
    pub vni_type: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VniSpec {
    pub in_use: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Vni {
    pub kind: String,
    pub metadata: VniMeta,
    pub spec: VniSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VersionMeta {
    pub client_protocol: String,
    pub client_name: String,
    pub client_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VersionSpec {
    pub service_protocol: String,
    pub service_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Version {
    pub kind: String,
    pub metadata: VersionMeta,
    pub spec: VersionSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureConfig {
    #[serde(rename = "sink_node_ipv6", skip_serializing_if = "Option::is_none")]
    pub sink_node_ip: Option<Addr>,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub udp_src_port: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub udp_dst_port: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureInterface {
    pub interface_type: String,
    pub interface_info: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStartMeta {
    pub capture_config: Option<CaptureConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStartSpec {
    #[serde(skip_serializing_if = "is_empty_vec")]
    pub interfaces: Vec<CaptureInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStart {
    pub kind: String,
    pub metadata: CaptureStartMeta,
    pub spec: CaptureStartSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStopSpec {
    pub iface_cnt: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStop {
    pub kind: String,
    pub metadata: Empty,
    pub spec: CaptureStopSpec,
    pub status: Status,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStatusSpec {
    pub operation_status: bool,
    pub capture_config: CaptureConfig,
    #[serde(skip_serializing_if = "is_empty_vec")]
    pub interfaces: Vec<CaptureInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureStatus {
    pub kind: String,
    pub metadata: Empty,
    pub spec: CaptureStatusSpec,
    pub status: Status,
}

// --------------------------------------------------------------------- Error

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorSpec {
    pub source: String,
}

/// The document printed for a failed command with `-o json|yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorObj {
    pub kind: String,
    pub spec: ErrorSpec,
    pub status: Status,
}

/// Go's `fmt.Sprint` of a pointer to a `Stringer`: `<nil>` for nil.
pub fn go_opt<T: fmt::Display>(v: Option<&T>) -> String {
    v.map(|v| v.to_string())
        .unwrap_or_else(|| "<nil>".to_owned())
}

/// Kind names (Go: `reflect.TypeOf(T{}).Name()`).
pub mod kind {
    pub const INTERFACE: &str = "Interface";
    pub const INTERFACE_LIST: &str = "InterfaceList";
    pub const LOAD_BALANCER: &str = "LoadBalancer";
    pub const LOAD_BALANCER_LIST: &str = "LoadBalancerList";
    pub const LOAD_BALANCER_TARGET: &str = "LoadBalancerTarget";
    pub const LOAD_BALANCER_TARGET_LIST: &str = "LoadBalancerTargetList";
    pub const LOAD_BALANCER_PREFIX: &str = "LoadBalancerPrefix";
    pub const LOAD_BALANCER_PREFIX_LIST: &str = "LoadBalancerPrefixList";
    pub const PREFIX: &str = "Prefix";
    pub const PREFIX_LIST: &str = "PrefixList";
    pub const VIRTUAL_IP: &str = "VirtualIP";
    pub const ROUTE: &str = "Route";
    pub const ROUTE_LIST: &str = "RouteList";
    pub const NAT: &str = "Nat";
    pub const NAT_LIST: &str = "NatList";
    pub const NEIGHBOR_NAT: &str = "NeighborNat";
    pub const FIREWALL_RULE: &str = "FirewallRule";
    pub const FIREWALL_RULE_LIST: &str = "FirewallRuleList";
    pub const INITIALIZED: &str = "Initialized";
    pub const VNI: &str = "Vni";
    pub const VERSION: &str = "Version";
    pub const CAPTURE_START: &str = "CaptureStart";
    pub const ERROR: &str = "Error";
}
