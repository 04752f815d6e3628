//! Golden output of every object kind, built from protocol messages the way
//! the commands build them. The expected documents were derived from the Go
//! `api` types' json tags (field order, `omitempty`, value encodings) and the
//! Go renderers.

use dp_proto::v1;
use serde_json::json;

use super::{firewall, interface, nat, prefix, route};
use crate::error::CliError;
use crate::render::{render_error, render_json, render_yaml, RenderOpts, Renderable};
use crate::types::*;

fn text(b: &str) -> Vec<u8> {
    b.as_bytes().to_vec()
}

fn ip4(a: &str) -> v1::IpAddress {
    v1::IpAddress {
        ipver: v1::IpVersion::Ipv4 as i32,
        address: text(a),
    }
}

fn ip6(a: &str) -> v1::IpAddress {
    v1::IpAddress {
        ipver: v1::IpVersion::Ipv6 as i32,
        address: text(a),
    }
}

fn ok() -> Status {
    Status {
        code: 0,
        message: "Success".into(),
    }
}

fn addr(s: &str) -> Addr {
    Addr::ip(s.parse().unwrap())
}

fn pfx(s: &str) -> Prefix {
    crate::cli::parse_prefix(s).unwrap()
}

fn render<R: Renderable>(output: &str, op: &str, r: &R) -> String {
    let opts = RenderOpts {
        output: output.into(),
        pretty: false,
        wide: false,
    };
    let (text, res) = opts.render(op, r);
    res.unwrap();
    text
}

fn json_of<R: Renderable>(r: &R) -> String {
    render("json", "", r)
}

fn proto_iface() -> v1::Interface {
    v1::Interface {
        id: text("vm1"),
        vni: 100,
        primary_ipv4: text("10.100.1.1"),
        primary_ipv6: text("2000:100:1::1"),
        underlay_route: text("fc00:1::8000:0:1"),
        pci_name: text("tap0").iter().map(|&b| b as char).collect(),
        metering_params: Some(v1::MeteringParams {
            total_rate: 0,
            public_rate: 0,
        }),
        hostname: String::new(),
    }
}

#[test]
fn interface_from_get() {
    let i = interface::from_proto(&proto_iface()).unwrap();
    assert_eq!(
        json_of(&i),
        r#"{"kind":"Interface","metadata":{"id":"vm1"},"spec":{"vni":100,"device":"tap0","primary_ipv4":"10.100.1.1","primary_ipv6":"2000:100:1::1","underlay_route":"fc00:1::8000:0:1","metering":{}},"status":{"code":0,"message":""}}"#
            .to_owned()
            + "\n"
    );
    assert_eq!(render("name", "", &i), "interface/vm1\n");
    assert_eq!(
        render("table", "", &i),
        " ID   VNI  Device  IPv4        IPv6           UnderlayRoute     TotalTx  PublicTx  Hostname     \n \
         vm1  100  tap0    10.100.1.1  2000:100:1::1  fc00:1::8000:0:1        0         0               \n"
    );
}

#[test]
fn interface_with_metering_and_hostname() {
    let mut p = proto_iface();
    p.metering_params = Some(v1::MeteringParams {
        total_rate: 1000,
        public_rate: 0,
    });
    p.hostname = "my-vm".into();
    p.underlay_route = Vec::new();
    let i = interface::from_proto(&p).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json_of(&i)).unwrap();
    assert_eq!(v["spec"]["metering"], json!({"total_rate": 1000}));
    assert_eq!(v["spec"]["hostname"], json!("my-vm"));
    assert_eq!(
        v["spec"]["underlay_route"],
        json!(""),
        "empty underlay is the zero netip.Addr"
    );
}

#[test]
fn interface_bad_address_is_an_error() {
    let mut p = proto_iface();
    p.primary_ipv4 = vec![10, 0, 0, 1];
    let e = interface::from_proto(&p).unwrap_err();
    assert!(
        e.text()
            .starts_with("error parsing primary ipv4: ParseAddr("),
        "{e}"
    );
}

#[test]
fn created_interface() {
    // what `create interface` prints (kind empty, as in the Go CLI)
    let i = Interface {
        kind: String::new(),
        metadata: InterfaceMeta { id: "vm1".into() },
        spec: InterfaceSpec {
            vni: 100,
            device: "tap0".into(),
            primary_ipv4: Some(addr("10.100.1.1")),
            primary_ipv6: Some(Addr::v6_unspecified()),
            underlay_route: Some(addr("fc00:1::8000:0:1")),
            virtual_function: Some(VirtualFunction {
                name: "tap0".into(),
            }),
            pxe: Some(Pxe::default()),
            metering: Some(MeteringParams::default()),
            ..Default::default()
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&i),
        "{\"kind\":\"\",\"metadata\":{\"id\":\"vm1\"},\"spec\":{\"vni\":100,\"device\":\"tap0\",\
         \"primary_ipv4\":\"10.100.1.1\",\"primary_ipv6\":\"::\",\"underlay_route\":\"fc00:1::8000:0:1\",\
         \"virtual_function\":{\"name\":\"tap0\"},\"pxe\":{},\"metering\":{}},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "created, underlay route: fc00:1::8000:0:1", &i),
        "vm1 created, underlay route: fc00:1::8000:0:1\n"
    );
    let t = render("table", "", &i);
    assert!(t.starts_with(" ID   VNI  Device  IPv4        IPv6  UnderlayRoute     TotalTx  PublicTx  Hostname  VirtualFunction     \n"), "{t}");
}

#[test]
fn interface_list_and_empty_list() {
    let list = InterfaceList {
        kind: kind::INTERFACE_LIST.into(),
        metadata: Empty {},
        status: ok(),
        items: Some(vec![interface::from_proto(&proto_iface()).unwrap()]),
    };
    let v: serde_json::Value = serde_json::from_str(&json_of(&list)).unwrap();
    assert_eq!(v["kind"], "InterfaceList");
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["items"][0]["metadata"]["id"], "vm1");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(json_of(&list).find("\"status\"") < json_of(&list).find("\"items\""));
    assert_eq!(keys.len(), 4);
    let empty = InterfaceList {
        kind: kind::INTERFACE_LIST.into(),
        status: ok(),
        items: Some(vec![]),
        ..Default::default()
    };
    assert_eq!(
        json_of(&empty),
        "{\"kind\":\"InterfaceList\",\"metadata\":{},\"status\":{\"code\":0,\"message\":\"Success\"},\"items\":[]}\n"
    );
    assert_eq!(
        render("name", "", &empty),
        "",
        "name output of an empty list is empty"
    );
    assert_eq!(
        render("table", "", &empty),
        " ID  VNI  Device  IPv4  IPv6  UnderlayRoute  TotalTx  PublicTx  Hostname \n"
    );
}

#[test]
fn route_and_route_list() {
    let r = v1::Route {
        prefix: Some(v1::Prefix {
            ip: Some(ip4("10.200.0.0")),
            length: 16,
            underlay_route: vec![],
        }),
        nexthop_vni: 200,
        nexthop_address: Some(ip6("fc00:2::1")),
        weight: 100,
    };
    let route = route::from_proto(100, &r).unwrap();
    let list = RouteList {
        kind: kind::ROUTE_LIST.into(),
        metadata: RouteMeta { vni: 100 },
        status: ok(),
        items: Some(vec![route]),
    };
    assert_eq!(
        json_of(&list),
        "{\"kind\":\"RouteList\",\"metadata\":{\"vni\":100},\"status\":{\"code\":0,\"message\":\"Success\"},\
         \"items\":[{\"kind\":\"Route\",\"metadata\":{\"vni\":100},\"spec\":{\"prefix\":\"10.200.0.0/16\",\
         \"next_hop\":{\"vni\":200,\"address\":\"fc00:2::1\"}},\"status\":{\"code\":0,\"message\":\"\"}}]}\n"
    );
    assert_eq!(render("name", "", &list), "route/10.200.0.0/16-200\n");
    assert_eq!(
        render("table", "", &list),
        " Prefix         VNI  NextHopVNI  NextHopIP \n 10.200.0.0/16  100         200  fc00:2::1 \n"
    );
    // deleted route: next hop without address
    let del = Route {
        kind: kind::ROUTE.into(),
        metadata: RouteMeta { vni: 100 },
        spec: RouteSpec {
            prefix: Some(pfx("10.200.0.0/16")),
            next_hop: Some(RouteNextHop::default()),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&del),
        "{\"kind\":\"Route\",\"metadata\":{\"vni\":100},\"spec\":{\"prefix\":\"10.200.0.0/16\",\"next_hop\":{\"vni\":0}},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "deleted", &del),
        "route/10.200.0.0/16-0 deleted\n"
    );
}

#[test]
fn prefix_list_and_lb_prefix() {
    let p = v1::Prefix {
        ip: Some(ip4("10.100.5.0")),
        length: 24,
        underlay_route: text("fc00:1::8000:0:2"),
    };
    let mut item = prefix::from_proto("vm1", &p, prefix::Kind::Prefix).unwrap();
    item.metadata.vni = 100;
    let list = PrefixList {
        kind: kind::PREFIX_LIST.into(),
        metadata: PrefixListMeta {
            interface_id: "vm1".into(),
        },
        status: ok(),
        items: Some(vec![item]),
    };
    assert_eq!(
        json_of(&list),
        "{\"kind\":\"PrefixList\",\"metadata\":{\"interface_id\":\"vm1\"},\"status\":{\"code\":0,\"message\":\"Success\"},\
         \"items\":[{\"kind\":\"Prefix\",\"metadata\":{\"interface_id\":\"vm1\",\"vni\":100},\"spec\":{\"prefix\":\"10.100.5.0/24\",\
         \"underlay_route\":\"fc00:1::8000:0:2\"},\"status\":{\"code\":0,\"message\":\"\"}}]}\n"
    );
    assert_eq!(render("name", "", &list), "prefix/10.100.5.0/24\n");
    assert_eq!(
        render("table", "", &list),
        " VNI  Prefix         UnderlayRoute     InterfaceID \n 100  10.100.5.0/24  fc00:1::8000:0:2  vm1         \n"
    );
    let lb = prefix::from_proto("vm1", &p, prefix::Kind::LoadBalancer).unwrap();
    assert_eq!(lb.kind, "LoadBalancerPrefix");
    assert_eq!(
        render("name", "", &lb),
        "loadbalancerprefix/10.100.5.0/24\n"
    );
    // an all-interfaces listing without any prefix has items null
    let none = PrefixList {
        kind: kind::PREFIX_LIST.into(),
        ..Default::default()
    };
    assert_eq!(
        json_of(&none),
        "{\"kind\":\"PrefixList\",\"metadata\":{\"interface_id\":\"\"},\"status\":{\"code\":0,\"message\":\"\"},\"items\":null}\n"
    );
    let created = LoadBalancerPrefix {
        kind: kind::LOAD_BALANCER_PREFIX.into(),
        metadata: LoadBalancerPrefixMeta {
            interface_id: "vm1".into(),
        },
        spec: PrefixSpec {
            prefix: pfx("10.10.10.0/24"),
            underlay_route: Some(addr("fc00::2")),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&created),
        "{\"kind\":\"LoadBalancerPrefix\",\"metadata\":{\"interface_id\":\"vm1\"},\"spec\":{\"prefix\":\"10.10.10.0/24\",\
         \"underlay_route\":\"fc00::2\"},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    let opts = RenderOpts {
        output: "table".into(),
        pretty: false,
        wide: false,
    };
    let (_, res) = opts.render("", &created);
    assert_eq!(
        res.unwrap_err().text(),
        "error rendering LoadBalancerPrefix: unsupported type *api.LoadBalancerPrefix"
    );
}

#[test]
fn vni_version_initialized() {
    let vni = Vni {
        kind: kind::VNI.into(),
        metadata: VniMeta {
            vni: 100,
            vni_type: 0,
        },
        spec: VniSpec { in_use: true },
        status: ok(),
    };
    assert_eq!(
        json_of(&vni),
        "{\"kind\":\"Vni\",\"metadata\":{\"vni\":100,\"vni_type\":0},\"spec\":{\"in_use\":true},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(render("name", "reset", &vni), "vni/100 reset\n");
    assert_eq!(
        render("table", "", &vni),
        " VNI  VniType  inUse \n 100        0  true  \n"
    );
    let v = Version {
        kind: kind::VERSION.into(),
        metadata: VersionMeta {
            client_protocol: "p".into(),
            client_name: "dpservice-cli".into(),
            client_version: "1".into(),
        },
        spec: VersionSpec {
            service_protocol: "sp".into(),
            service_version: "sv".into(),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&v),
        "{\"kind\":\"Version\",\"metadata\":{\"client_protocol\":\"p\",\"client_name\":\"dpservice-cli\",\"client_version\":\"1\"},\
         \"spec\":{\"service_protocol\":\"sp\",\"service_version\":\"sv\"},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(render("name", "", &v), "version/dpservice-cli-p\n");
    let i = Initialized {
        kind: kind::INITIALIZED.into(),
        metadata: Empty {},
        spec: InitializedSpec { uuid: "U".into() },
        status: ok(),
    };
    assert_eq!(json_of(&i), "{\"kind\":\"Initialized\",\"metadata\":{},\"spec\":{\"uuid\":\"U\"},\"status\":{\"code\":0,\"message\":\"Success\"}}\n");
    assert_eq!(render("name", "", &i), "initialized/initialized\n");
}

#[test]
fn virtual_ip_loadbalancer_and_targets() {
    let vip = VirtualIp {
        kind: kind::VIRTUAL_IP.into(),
        metadata: VirtualIpMeta {
            interface_id: "vm1".into(),
        },
        spec: VirtualIpSpec {
            vip_ip: Some(addr("20.20.20.20")),
            underlay_route: Some(addr("fc00::6")),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&vip),
        "{\"kind\":\"VirtualIP\",\"metadata\":{\"interface_id\":\"vm1\"},\"spec\":{\"vip_ip\":\"20.20.20.20\",\"underlay_route\":\"fc00::6\"},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "deleted", &vip),
        "virtualip/on interface: vm1 deleted\n"
    );
    let deleted = VirtualIp {
        spec: VirtualIpSpec::default(),
        ..vip
    };
    assert!(
        json_of(&deleted).contains("\"spec\":{\"vip_ip\":null}"),
        "vip_ip has no omitempty"
    );

    let lb = LoadBalancer {
        kind: kind::LOAD_BALANCER.into(),
        metadata: LoadBalancerMeta { id: "4".into() },
        spec: LoadBalancerSpec {
            vni: 100,
            loadbalanced_ip: Some(addr("10.20.30.40")),
            loadbalanced_ports: vec![
                LbPort {
                    protocol: 6,
                    port: 443,
                },
                LbPort {
                    protocol: 17,
                    port: 53,
                },
            ],
            underlay_route: Some(addr("fc00::4")),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&lb),
        "{\"kind\":\"LoadBalancer\",\"metadata\":{\"id\":\"4\"},\"spec\":{\"vni\":100,\"loadbalanced_ip\":\"10.20.30.40\",\
         \"loadbalanced_ports\":[{\"protocol\":6,\"port\":443},{\"protocol\":17,\"port\":53}],\"underlay_route\":\"fc00::4\"},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("table", "", &lb),
        " ID  VNI  LbVipIP      Lbports           UnderlayRoute \n 4   100  10.20.30.40  [TCP/443 UDP/53]  fc00::4       \n"
    );
    let t = LoadBalancerTarget {
        kind: kind::LOAD_BALANCER_TARGET.into(),
        metadata: LoadBalancerTargetMeta {
            loadbalancer_id: "4".into(),
        },
        spec: LoadBalancerTargetSpec {
            target_ip: Some(addr("ff80::5")),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&t),
        "{\"kind\":\"LoadBalancerTarget\",\"metadata\":{\"loadbalancer_id\":\"4\"},\"spec\":{\"target_ip\":\"ff80::5\"},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "created", &t),
        "loadbalancertarget/on loadbalancer: 4 created\n"
    );
    assert_eq!(
        render("table", "", &t),
        " IpVersion  Address \n      IPV6  ff80::5 \n"
    );
}

#[test]
fn nat_entries() {
    let entries = vec![
        v1::NatEntry {
            nat_ip: Some(ip4("10.0.0.5")),
            min_port: 100,
            max_port: 200,
            underlay_route: vec![],
            vni: 7,
            actual_nat_ip: Some(ip4("20.0.0.1")),
        },
        v1::NatEntry {
            nat_ip: None,
            min_port: 200,
            max_port: 300,
            underlay_route: text("fc00:2::9"),
            vni: 7,
            actual_nat_ip: None,
        },
    ];
    let list = nat::entries_to_list(&entries, addr("20.0.0.1"), "0", None).unwrap();
    assert_eq!(
        json_of(&list),
        "{\"kind\":\"NatList\",\"metadata\":{\"nat_ip\":\"20.0.0.1\",\"nat_type\":\"0\"},\"status\":{\"code\":0,\"message\":\"\"},\"items\":[\
         {\"kind\":\"Nat\",\"metadata\":{},\"spec\":{\"nat_ip\":\"10.0.0.5\",\"min_port\":100,\"max_port\":200,\"vni\":7,\"actual_nat_ip\":\"20.0.0.1\"},\"status\":{\"code\":0,\"message\":\"\"}},\
         {\"kind\":\"NeighborNat\",\"metadata\":{},\"spec\":{\"min_port\":200,\"max_port\":300,\"underlay_route\":\"fc00:2::9\",\"vni\":7,\"actual_nat_ip\":\"20.0.0.1\"},\"status\":{\"code\":0,\"message\":\"\"}}]}\n"
    );
    assert_eq!(
        render("table", "", &list),
        " VNI  IP        MinPort  MaxPort  UnderlayRoute  NatIP     NatType  \n   7  10.0.0.5      100      200  <nil>          20.0.0.1  Local    \n   7  <nil>         200      300  fc00:2::9      20.0.0.1  Neighbor \n"
    );
    let n = NeighborNat {
        kind: kind::NEIGHBOR_NAT.into(),
        metadata: NeighborNatMeta {
            nat_ip: Some(addr("10.20.30.40")),
        },
        spec: NeighborNatSpec {
            vni: 100,
            min_port: 30000,
            max_port: 30100,
            underlay_route: Some(addr("ff80::1")),
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&n),
        "{\"kind\":\"NeighborNat\",\"metadata\":{\"nat_ip\":\"10.20.30.40\"},\"spec\":{\"vni\":100,\"min_port\":30000,\"max_port\":30100,\
         \"underlay_route\":\"ff80::1\"},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "created, underlay route: ff80::1", &n),
        "neighbornat/10.20.30.40 created, underlay route: ff80::1\n"
    );
}

#[test]
fn firewall_rule_from_proto() {
    let r = v1::FirewallRule {
        id: text("12"),
        direction: v1::TrafficDirection::Egress as i32,
        action: v1::FirewallAction::Accept as i32,
        priority: 100,
        source_prefix: Some(v1::Prefix {
            ip: Some(ip4("1.1.1.1")),
            length: 32,
            underlay_route: vec![],
        }),
        destination_prefix: Some(v1::Prefix {
            ip: Some(ip4("5.5.5.0")),
            length: 24,
            underlay_route: vec![],
        }),
        protocol_filter: Some(v1::ProtocolFilter {
            filter: Some(v1::protocol_filter::Filter::Tcp(v1::TcpFilter {
                src_port_lower: 1,
                src_port_upper: 1000,
                dst_port_lower: -1,
                dst_port_upper: -1,
            })),
        }),
    };
    let rule = firewall::from_proto(&r, "vm1").unwrap();
    assert_eq!(
        json_of(&rule),
        "{\"kind\":\"FirewallRule\",\"metadata\":{\"interface_id\":\"vm1\"},\"spec\":{\"id\":\"12\",\"direction\":\"Egress\",\
         \"action\":\"Accept\",\"priority\":100,\"source_prefix\":\"1.1.1.1/32\",\"destination_prefix\":\"5.5.5.0/24\",\
         \"protocol_filter\":{\"Filter\":{\"Tcp\":{\"src_port_lower\":1,\"src_port_upper\":1000,\"dst_port_lower\":-1,\
         \"dst_port_upper\":-1}}}},\"status\":{\"code\":0,\"message\":\"\"}}\n"
    );
    assert_eq!(render("name", "", &rule), "firewallrule/vm1/12\n");
    assert_eq!(
        render("table", "", &rule),
        " InterfaceID  RuleID  Direction  Src         Dst         Action  Protocol                                                                        Priority \n \
         vm1          12      Egress     1.1.1.1/32  5.5.5.0/24  Accept  tcp:{src_port_lower:1 src_port_upper:1000 dst_port_lower:-1 dst_port_upper:-1}       100 \n"
    );
    let mut any = r.clone();
    any.protocol_filter = Some(v1::ProtocolFilter { filter: None });
    let rule = firewall::from_proto(&any, "vm1").unwrap();
    assert!(json_of(&rule).contains("\"protocol_filter\":{\"Filter\":null}"));
}

#[test]
fn capture_objects() {
    let s = CaptureStart {
        kind: kind::CAPTURE_START.into(),
        metadata: CaptureStartMeta {
            capture_config: Some(CaptureConfig {
                sink_node_ip: Some(addr("fc00:2::64:0:1")),
                udp_src_port: 30000,
                udp_dst_port: 30100,
            }),
        },
        spec: CaptureStartSpec {
            interfaces: vec![CaptureInterface {
                interface_type: "pf".into(),
                interface_info: "0".into(),
            }],
        },
        status: ok(),
    };
    assert_eq!(
        json_of(&s),
        "{\"kind\":\"CaptureStart\",\"metadata\":{\"capture_config\":{\"sink_node_ipv6\":\"fc00:2::64:0:1\",\"udp_src_port\":30000,\
         \"udp_dst_port\":30100}},\"spec\":{\"interfaces\":[{\"interface_type\":\"pf\",\"interface_info\":\"0\"}]},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("name", "Packet capturing initialized: fc00:2::64:0:1\n", &s),
        "capturestart/fc00:2::64:0:1 Packet capturing initialized: fc00:2::64:0:1\n\n"
    );
    let st = CaptureStatus {
        status: ok(),
        ..Default::default()
    };
    assert_eq!(
        json_of(&st),
        "{\"kind\":\"\",\"metadata\":{},\"spec\":{\"operation_status\":false,\"capture_config\":{}},\"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(render("name", "", &st), "get capture status\n");
    let stop = CaptureStop {
        spec: CaptureStopSpec { iface_cnt: 2 },
        status: ok(),
        ..Default::default()
    };
    assert_eq!(
        render("name", "Packet capturing stopped \n", &stop),
        "capture stopped Packet capturing stopped \n\n"
    );
}

/// An active capture as `capture status` prints it (dpservice-cli's `captureStatusTable`: the
/// interfaces of each kind joined with a space after each).
#[test]
fn capture_status_active() {
    let iface = |t: &str, i: &str| CaptureInterface {
        interface_type: t.into(),
        interface_info: i.into(),
    };
    let st = CaptureStatus {
        spec: CaptureStatusSpec {
            operation_status: true,
            capture_config: CaptureConfig {
                sink_node_ip: Some(addr("fc00::ffff")),
                udp_src_port: 3000,
                udp_dst_port: 3010,
            },
            interfaces: vec![iface("pf", "0"), iface("vf", "vm1"), iface("vf", "vm2")],
        },
        status: ok(),
        ..Default::default()
    };
    assert_eq!(
        json_of(&st),
        "{\"kind\":\"\",\"metadata\":{},\"spec\":{\"operation_status\":true,\"capture_config\":\
         {\"sink_node_ipv6\":\"fc00::ffff\",\"udp_src_port\":3000,\"udp_dst_port\":3010},\"interfaces\":\
         [{\"interface_type\":\"pf\",\"interface_info\":\"0\"},{\"interface_type\":\"vf\",\
         \"interface_info\":\"vm1\"},{\"interface_type\":\"vf\",\"interface_info\":\"vm2\"}]},\
         \"status\":{\"code\":0,\"message\":\"Success\"}}\n"
    );
    assert_eq!(
        render("table", "", &st),
        " Operation Status  SinkNodeIP  UdpSrcPort  UdpDstPort  PF Interfaces  VF Interfaces \n \
         ACTIVE            fc00::ffff        3000        3010  0              vm1 vm2       \n"
    );
}

#[test]
fn pretty_json_and_html_escaping() {
    let v = Vni {
        kind: kind::VNI.into(),
        metadata: VniMeta {
            vni: 1,
            vni_type: 2,
        },
        spec: VniSpec { in_use: false },
        status: ok(),
    };
    assert_eq!(
        render_json(&v, true),
        "{\n  \"kind\": \"Vni\",\n  \"metadata\": {\n    \"vni\": 1,\n    \"vni_type\": 2\n  },\n  \"spec\": {\n    \"in_use\": false\n  },\n  \"status\": {\n    \"code\": 0,\n    \"message\": \"Success\"\n  }\n}\n"
    );
    let e = CliError::msg("ports can only be -1 or <1,65535>").report();
    assert_eq!(
        render_error(&e, "json"),
        "{\"kind\":\"Error\",\"spec\":{\"source\":\"client\"},\"status\":{\"code\":1000,\"message\":\"ports can only be -1 or \\u003c1,65535\\u003e\"}}\n"
    );
}

#[test]
fn errors_in_every_format() {
    let r = CliError::status(202, "ALREADY_EXISTS")
        .context("error creating interface")
        .report();
    assert_eq!(
        render_error(&r, "json"),
        "{\"kind\":\"Error\",\"spec\":{\"source\":\"server\"},\"status\":{\"code\":202,\"message\":\"ALREADY_EXISTS\"}}\n"
    );
    assert_eq!(
        render_error(&r, "yaml"),
        "kind: Error\nspec:\n  source: server\nstatus:\n  code: 202\n  message: ALREADY_EXISTS\n"
    );
    assert_eq!(
        render_error(&r, "name"),
        "server error: error creating interface: [error code 202] ALREADY_EXISTS\n"
    );
    assert_eq!(
        render_error(&r, "table"),
        "server error: error creating interface: [error code 202] ALREADY_EXISTS\n"
    );
}

#[test]
fn yaml_of_an_object() {
    let i = interface::from_proto(&proto_iface()).unwrap();
    assert_eq!(
        render_yaml(&i),
        "kind: Interface\nmetadata:\n  id: vm1\nspec:\n  device: tap0\n  metering: {}\n  primary_ipv4: 10.100.1.1\n  \
         primary_ipv6: 2000:100:1::1\n  underlay_route: fc00:1::8000:0:1\n  vni: 100\nstatus:\n  code: 0\n  message: \"\"\n"
    );
}

#[test]
fn status_error_in_object_is_reported_after_rendering() {
    // RenderObject with a non-zero status: name output with the error, then
    // the status error
    let v = Vni {
        kind: kind::VNI.into(),
        status: Status {
            code: 206,
            message: "NO_VNI".into(),
        },
        ..Default::default()
    };
    let opts = RenderOpts {
        output: "table".into(),
        pretty: false,
        wide: false,
    };
    let (text, res) = opts.render("", &v);
    assert_eq!(text, "vni/0 server error: 206, NO_VNI\n");
    assert_eq!(res.unwrap_err().text(), "[error code 206] NO_VNI");
}
