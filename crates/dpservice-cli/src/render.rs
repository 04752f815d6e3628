//! The four output formats of the Go CLI: `json`, `yaml`, `table`, `name`.

mod table;
mod yaml;

pub use table::{Cell, TableData};

use serde::Serialize;

use crate::error::CliError;
use crate::types::*;

/// An object as the `name` renderer sees it.
pub trait ApiObject {
    fn kind(&self) -> &str;
    fn name(&self) -> String;
}

/// Anything a command prints: an object or a list of objects.
pub trait Renderable: Serialize {
    fn status(&self) -> &Status;
    /// The objects the `name` renderer prints, one line each.
    fn objects(&self) -> Vec<&dyn ApiObject>;
    /// For lists: the lowercased Go type name (`interfacelist`), printed by
    /// the `name` renderer for a failed list.
    fn list_type(&self) -> Option<&'static str> {
        None
    }
    /// The table; `Err` for types the Go table converter does not know.
    fn table(&self, wide: bool) -> Result<TableData, String>;
}

/// The renderer options (`-o`, `--pretty`, `--wide`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOpts {
    pub output: String,
    pub pretty: bool,
    pub wide: bool,
}

impl RenderOpts {
    /// `RendererOptions.RenderObject` / `RenderList`: renders into a string;
    /// a non-zero status in the object becomes an error after printing.
    pub fn render<R: Renderable + ?Sized>(
        &self,
        operation: &str,
        obj: &R,
    ) -> (String, Result<(), CliError>) {
        let mut operation = operation.to_owned();
        let mut output = self.output.clone();
        let st = obj.status();
        if st.code != 0 {
            operation = format!("server error: {}, {}", st.code, st.message);
            if output == "table" {
                output = "name".to_owned();
            }
        }
        let text = match output.as_str() {
            "json" => render_json(obj, self.pretty),
            "yaml" => render_yaml(obj),
            "name" => render_name(obj, &operation),
            "table" | "" => match obj.table(self.wide) {
                Ok(t) => t.render(),
                Err(e) => {
                    let kind = obj
                        .objects()
                        .first()
                        .map(|o| o.kind().to_owned())
                        .unwrap_or_default();
                    return (
                        String::new(),
                        Err(CliError::msg(format!("error rendering {kind}: {e}"))),
                    );
                }
            },
            other => {
                return (
                    String::new(),
                    Err(CliError::msg(format!("unknown renderer \"{other}\""))
                        .context("error creating renderer")),
                )
            }
        };
        let res = if st.code != 0 {
            Err(CliError::status(st.code, &st.message))
        } else {
            Ok(())
        };
        (text, res)
    }
}

/// Go's `encoding/json` output: HTML-sensitive characters escaped, one
/// document per line (indented by two spaces with `--pretty`).
pub fn render_json<T: Serialize + ?Sized>(v: &T, pretty: bool) -> String {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    let mut s = go_escape(&s.unwrap_or_default());
    s.push('\n');
    s
}

/// Go's `json.Marshal` without the trailing newline.
pub fn marshal_json<T: Serialize + ?Sized>(v: &T) -> String {
    go_escape(&serde_json::to_string(v).unwrap_or_default())
}

fn go_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

pub fn render_yaml<T: Serialize + ?Sized>(v: &T) -> String {
    let value = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    yaml::to_yaml(&value)
}

fn render_name<R: Renderable + ?Sized>(obj: &R, operation: &str) -> String {
    let line = |head: String| {
        if operation.is_empty() {
            format!("{head}\n")
        } else {
            format!("{head} {operation}\n")
        }
    };
    if let Some(t) = obj.list_type() {
        if obj.status().code != 0 {
            return line(t.to_owned());
        }
    }
    obj.objects()
        .into_iter()
        .map(|o| {
            let head = if o.kind().is_empty() {
                o.name()
            } else {
                format!("{}/{}", o.kind().to_lowercase(), o.name())
            };
            line(head)
        })
        .collect()
}

fn opt_addr(a: &Option<Addr>) -> String {
    go_opt(a.as_ref())
}

fn protocol_name(p: u32) -> &'static str {
    match p {
        0 => "UNDEFINED",
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        58 => "ICMPV6",
        132 => "SCTP",
        _ => "",
    }
}

// ------------------------------------------------------------ name renderer

macro_rules! api_object {
    ($t:ty, |$s:ident| $name:expr) => {
        impl ApiObject for $t {
            fn kind(&self) -> &str {
                &self.kind
            }
            fn name(&self) -> String {
                let $s = self;
                $name
            }
        }
    };
}

api_object!(Interface, |s| s.metadata.id.clone());
api_object!(PrefixObj, |s| s.spec.prefix.to_string());
api_object!(Route, |s| format!(
    "{}-{}",
    go_opt(s.spec.prefix.as_ref()),
    s.spec.next_hop.as_ref().map(|n| n.vni).unwrap_or(0)
));
api_object!(VirtualIp, |s| format!(
    "on interface: {}",
    s.metadata.interface_id
));
api_object!(LoadBalancer, |s| s.metadata.id.clone());
api_object!(LoadBalancerTarget, |s| format!(
    "on loadbalancer: {}",
    s.metadata.loadbalancer_id
));
api_object!(LoadBalancerPrefix, |s| s.spec.prefix.to_string());
api_object!(Nat, |s| s.metadata.interface_id.clone());
api_object!(NeighborNat, |s| go_opt(s.metadata.nat_ip.as_ref()));
api_object!(FirewallRule, |s| format!(
    "{}/{}",
    s.metadata.interface_id, s.spec.id
));
api_object!(Initialized, |_s| "initialized".to_owned());
api_object!(Vni, |s| s.metadata.vni.to_string());
api_object!(Version, |s| format!(
    "{}-{}",
    s.metadata.client_name, s.metadata.client_protocol
));
api_object!(CaptureStart, |s| go_opt(
    s.metadata
        .capture_config
        .as_ref()
        .and_then(|c| c.sink_node_ip.as_ref())
));
api_object!(CaptureStop, |_s| "capture stopped".to_owned());
api_object!(CaptureStatus, |_s| "get capture status".to_owned());

macro_rules! renderable_object {
    ($t:ty, |$s:ident, $wide:ident| $table:expr) => {
        impl Renderable for $t {
            fn status(&self) -> &Status {
                &self.status
            }
            fn objects(&self) -> Vec<&dyn ApiObject> {
                vec![self]
            }
            fn table(&self, $wide: bool) -> Result<TableData, String> {
                let $s = self;
                Ok($table)
            }
        }
    };
}

macro_rules! renderable_list {
    ($t:ty, $tname:literal, |$s:ident, $wide:ident| $table:expr) => {
        impl Renderable for $t {
            fn status(&self) -> &Status {
                &self.status
            }
            fn objects(&self) -> Vec<&dyn ApiObject> {
                self.items
                    .iter()
                    .flatten()
                    .map(|i| i as &dyn ApiObject)
                    .collect()
            }
            fn list_type(&self) -> Option<&'static str> {
                Some($tname)
            }
            fn table(&self, $wide: bool) -> Result<TableData, String> {
                let $s = self;
                Ok($table)
            }
        }
    };
}

fn items<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or(&[])
}

// ------------------------------------------------------------------- tables

fn interface_table(ifaces: &[Interface], wide: bool) -> TableData {
    let mut t = TableData::new(&[
        "ID",
        "VNI",
        "Device",
        "IPv4",
        "IPv6",
        "UnderlayRoute",
        "TotalTx",
        "PublicTx",
        "Hostname",
    ]);
    let vf_needed = ifaces.iter().any(|i| i.spec.virtual_function.is_some());
    if vf_needed {
        t.headers.push("VirtualFunction".into());
    }
    if wide {
        t.headers.push("Nat".into());
        t.headers.push("VirtualIP".into());
    }
    for i in ifaces {
        let m = i.spec.metering.clone().unwrap_or_default();
        let mut row = vec![
            Cell::text(&i.metadata.id),
            Cell::num(i.spec.vni),
            Cell::text(&i.spec.device),
            Cell::text(opt_addr(&i.spec.primary_ipv4)),
            Cell::text(opt_addr(&i.spec.primary_ipv6)),
            Cell::text(opt_addr(&i.spec.underlay_route)),
            Cell::num(m.total_rate),
            Cell::num(m.public_rate),
            Cell::text(&i.spec.hostname),
        ];
        if let Some(vf) = &i.spec.virtual_function {
            row.push(Cell::text(&vf.name));
        } else if vf_needed {
            row.push(Cell::text(""));
        }
        // the Go CLI appends these cells also when not wide (without header)
        match (&i.spec.nat, wide) {
            (Some(n), true) => row.push(Cell::text(n.to_string())),
            _ => row.push(Cell::text("")),
        }
        match (&i.spec.vip, wide) {
            (Some(v), true) => row.push(Cell::text(opt_addr(&v.spec.vip_ip))),
            _ => row.push(Cell::text("")),
        }
        t.row(row);
    }
    t
}

fn prefix_table(prefixes: &[PrefixObj]) -> TableData {
    let mut t = TableData::new(&["VNI", "Prefix", "UnderlayRoute", "InterfaceID"]);
    for p in prefixes {
        t.row(vec![
            Cell::num(p.metadata.vni),
            Cell::text(p.spec.prefix.to_string()),
            Cell::text(opt_addr(&p.spec.underlay_route)),
            Cell::text(&p.metadata.interface_id),
        ]);
    }
    t
}

fn route_table(routes: &[Route]) -> TableData {
    let mut t = TableData::new(&["Prefix", "VNI", "NextHopVNI", "NextHopIP"]);
    for r in routes {
        let nh = r.spec.next_hop.clone().unwrap_or_default();
        t.row(vec![
            Cell::text(go_opt(r.spec.prefix.as_ref())),
            Cell::num(r.metadata.vni),
            Cell::num(nh.vni),
            Cell::text(opt_addr(&nh.address)),
        ]);
    }
    t
}

fn lb_table(lbs: &[LoadBalancer]) -> TableData {
    let mut t = TableData::new(&["ID", "VNI", "LbVipIP", "Lbports", "UnderlayRoute"]);
    for lb in lbs {
        let ports: Vec<String> = lb
            .spec
            .loadbalanced_ports
            .iter()
            .map(|p| format!("{}/{}", protocol_name(p.protocol), p.port))
            .collect();
        t.row(vec![
            Cell::text(&lb.metadata.id),
            Cell::num(lb.spec.vni),
            Cell::text(opt_addr(&lb.spec.loadbalanced_ip)),
            Cell::text(format!("[{}]", ports.join(" "))),
            Cell::text(opt_addr(&lb.spec.underlay_route)),
        ]);
    }
    t
}

fn lb_target_table(targets: &[LoadBalancerTarget]) -> TableData {
    let mut t = TableData::new(&["IpVersion", "Address"]);
    for lt in targets {
        let ver = match lt.spec.target_ip.and_then(|a| a.0) {
            Some(std::net::IpAddr::V6(_)) => "IPV6",
            _ => "IPV4",
        };
        // proto.IpVersion is an int32: go-pretty counts it as a number
        t.row(vec![
            Cell {
                text: ver.to_owned(),
                numeric: true,
            },
            Cell::text(opt_addr(&lt.spec.target_ip)),
        ]);
    }
    t
}

fn nat_table(nats: &[Nat]) -> TableData {
    let single = nats
        .first()
        .is_some_and(|n| !n.metadata.interface_id.is_empty());
    let mut t = if single {
        TableData::new(&[
            "InterfaceID",
            "NatIP",
            "MinPort",
            "MaxPort",
            "UnderlayRoute",
        ])
    } else {
        TableData::new(&[
            "VNI",
            "IP",
            "MinPort",
            "MaxPort",
            "UnderlayRoute",
            "NatIP",
            "NatType",
        ])
    };
    for n in nats {
        if single {
            t.row(vec![
                Cell::text(&n.metadata.interface_id),
                Cell::text(opt_addr(&n.spec.nat_ip)),
                Cell::num(n.spec.min_port),
                Cell::num(n.spec.max_port),
                Cell::text(opt_addr(&n.spec.underlay_route)),
            ]);
        } else {
            let nat_type = if n.spec.underlay_route.is_none() {
                "Local"
            } else {
                "Neighbor"
            };
            t.row(vec![
                Cell::num(n.spec.vni),
                Cell::text(opt_addr(&n.spec.nat_ip)),
                Cell::num(n.spec.min_port),
                Cell::num(n.spec.max_port),
                Cell::text(opt_addr(&n.spec.underlay_route)),
                Cell::text(opt_addr(&n.spec.actual_nat_ip)),
                Cell::text(nat_type),
            ]);
        }
    }
    t
}

fn fwrule_table(rules: &[FirewallRule]) -> TableData {
    let mut t = TableData::new(&[
        "InterfaceID",
        "RuleID",
        "Direction",
        "Src",
        "Dst",
        "Action",
        "Protocol",
        "Priority",
    ]);
    for r in rules {
        t.row(vec![
            Cell::text(&r.metadata.interface_id),
            Cell::text(&r.spec.id),
            Cell::text(&r.spec.direction),
            Cell::text(go_opt(r.spec.source_prefix.as_ref())),
            Cell::text(go_opt(r.spec.destination_prefix.as_ref())),
            Cell::text(&r.spec.action),
            Cell::text(
                r.spec
                    .protocol_filter
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            ),
            Cell::num(r.spec.priority),
        ]);
    }
    t
}

fn capture_ifaces(ifaces: &[CaptureInterface]) -> (String, String) {
    let (mut pf, mut vf) = (String::new(), String::new());
    for i in ifaces {
        let s = if i.interface_type == "pf" {
            &mut pf
        } else {
            &mut vf
        };
        s.push_str(&i.interface_info);
        s.push(' ');
    }
    (pf, vf)
}

renderable_object!(Interface, |s, wide| interface_table(
    std::slice::from_ref(s),
    wide
));
renderable_list!(InterfaceList, "interfacelist", |s, wide| interface_table(
    items(&s.items),
    wide
));
renderable_object!(PrefixObj, |s, _w| prefix_table(std::slice::from_ref(s)));
renderable_list!(PrefixList, "prefixlist", |s, _w| prefix_table(items(
    &s.items
)));
impl Renderable for LoadBalancerPrefix {
    fn status(&self) -> &Status {
        &self.status
    }
    fn objects(&self) -> Vec<&dyn ApiObject> {
        vec![self]
    }
    fn table(&self, _wide: bool) -> Result<TableData, String> {
        // not handled by the Go CLI's table converter
        Err("unsupported type *api.LoadBalancerPrefix".to_owned())
    }
}
renderable_object!(Route, |s, _w| route_table(std::slice::from_ref(s)));
renderable_list!(RouteList, "routelist", |s, _w| route_table(items(&s.items)));
renderable_object!(VirtualIp, |s, _w| {
    let mut t = TableData::new(&["InterfaceID", "VirtualIP", "UnderlayRoute"]);
    t.row(vec![
        Cell::text(&s.metadata.interface_id),
        Cell::text(opt_addr(&s.spec.vip_ip)),
        Cell::text(opt_addr(&s.spec.underlay_route)),
    ]);
    t
});
renderable_object!(LoadBalancer, |s, _w| lb_table(std::slice::from_ref(s)));
renderable_list!(LoadBalancerList, "loadbalancerlist", |s, _w| lb_table(
    items(&s.items)
));
renderable_object!(LoadBalancerTarget, |s, _w| lb_target_table(
    std::slice::from_ref(s)
));
renderable_list!(LoadBalancerTargetList, "loadbalancertargetlist", |s, _w| {
    lb_target_table(items(&s.items))
});
renderable_object!(Nat, |s, _w| nat_table(std::slice::from_ref(s)));
renderable_list!(NatList, "natlist", |s, _w| nat_table(items(&s.items)));
renderable_object!(NeighborNat, |s, _w| {
    let mut t = TableData::new(&["VNI", "NatIP", "MinPort", "MaxPort", "UnderlayRoute"]);
    t.row(vec![
        Cell::num(s.spec.vni),
        Cell::text(opt_addr(&s.metadata.nat_ip)),
        Cell::num(s.spec.min_port),
        Cell::num(s.spec.max_port),
        Cell::text(opt_addr(&s.spec.underlay_route)),
    ]);
    t
});
renderable_object!(FirewallRule, |s, _w| fwrule_table(std::slice::from_ref(s)));
renderable_list!(FirewallRuleList, "firewallrulelist", |s, _w| fwrule_table(
    items(&s.items)
));
renderable_object!(Initialized, |s, _w| {
    let mut t = TableData::new(&["UUID"]);
    t.row(vec![Cell::text(&s.spec.uuid)]);
    t
});
renderable_object!(Vni, |s, _w| {
    let mut t = TableData::new(&["VNI", "VniType", "inUse"]);
    t.row(vec![
        Cell::num(s.metadata.vni),
        Cell::num(s.metadata.vni_type),
        Cell::text(s.spec.in_use.to_string()),
    ]);
    t
});
renderable_object!(Version, |s, _w| {
    let mut t = TableData::new(&[
        "ServiceProto",
        "ServiceVersion",
        "ClientName",
        "ClientProto",
        "ClientVersion",
    ]);
    t.row(vec![
        Cell::text(&s.spec.service_protocol),
        Cell::text(&s.spec.service_version),
        Cell::text(&s.metadata.client_name),
        Cell::text(&s.metadata.client_protocol),
        Cell::text(&s.metadata.client_version),
    ]);
    t
});
renderable_object!(CaptureStart, |s, _w| {
    let mut t = TableData::new(&[
        "SinkNodeIP",
        "UdpSrcPort",
        "UdpDstPort",
        "PF Interfaces",
        "VF Interfaces",
    ]);
    let cfg = s.metadata.capture_config.clone().unwrap_or_default();
    let (pf, vf) = capture_ifaces(&s.spec.interfaces);
    t.row(vec![
        Cell::text(opt_addr(&cfg.sink_node_ip)),
        Cell::num(cfg.udp_src_port),
        Cell::num(cfg.udp_dst_port),
        Cell::text(pf),
        Cell::text(vf),
    ]);
    t
});
renderable_object!(CaptureStop, |s, _w| {
    let mut t = TableData::new(&["Stopped Interface"]);
    t.row(vec![Cell::num(s.spec.iface_cnt)]);
    t
});
renderable_object!(CaptureStatus, |s, _w| {
    let mut t = TableData::new(&[
        "Operation Status",
        "SinkNodeIP",
        "UdpSrcPort",
        "UdpDstPort",
        "PF Interfaces",
        "VF Interfaces",
    ]);
    if s.spec.operation_status {
        let cfg = &s.spec.capture_config;
        let (pf, vf) = capture_ifaces(&s.spec.interfaces);
        t.row(vec![
            Cell::text("ACTIVE"),
            Cell::text(opt_addr(&cfg.sink_node_ip)),
            Cell::num(cfg.udp_src_port),
            Cell::num(cfg.udp_dst_port),
            Cell::text(pf),
            Cell::text(vf),
        ]);
    } else {
        t.row(
            ["NOT_ACTIVE", "", "", "", "", ""]
                .into_iter()
                .map(Cell::text)
                .collect(),
        );
    }
    t
});

/// How the Go CLI prints a failed command (`RenderError`): an `Error`
/// document for `json`/`yaml`, else `<source> error: <text>`.
pub fn render_error(r: &crate::error::Report, output: &str) -> String {
    let obj = ErrorObj {
        kind: kind::ERROR.into(),
        spec: ErrorSpec {
            source: r.source.into(),
        },
        status: Status {
            code: r.code,
            message: r.message.clone(),
        },
    };
    match output {
        "json" => format!("{}\n", marshal_json(&obj)),
        "yaml" => render_yaml(&obj),
        _ => format!("{} error: {}\n", r.source, r.text),
    }
}
