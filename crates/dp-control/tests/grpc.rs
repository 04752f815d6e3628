//! The control plane over real gRPC: served on 127.0.0.1, driven with the generated client.

use std::net::{IpAddr, SocketAddr};

use dp_control::{Config, ControlPlane, UnderlayMode};
use dp_proto::v1;
use dp_proto::{ip_to_proto, DpdKironcoreClient};
use dp_tables::{Publisher, RouteTarget, Snapshot};
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;

type Client = DpdKironcoreClient<Channel>;

struct Server {
    control: ControlPlane,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let mut config = Config::new(
            "fc00:1::1".parse().unwrap(),
            [
                ("dtapvf_0", 2),
                ("dtapvf_1", 3),
                ("dtapvf_2", 4),
                ("dtapvf_3", 5),
            ],
            [0, 1],
        );
        config.underlay_mode = UnderlayMode::Static;
        let control = ControlPlane::new(Publisher::new(Snapshot::default()), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let c = control.clone();
        let task = tokio::spawn(async move {
            c.serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server {
            control,
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn client(&self) -> Client {
        DpdKironcoreClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap();
    }
}

fn ip(s: &str) -> v1::IpAddress {
    ip_to_proto(s.parse::<IpAddr>().unwrap())
}

fn prefix(s: &str) -> v1::Prefix {
    let (addr, len) = s.split_once('/').unwrap();
    v1::Prefix {
        ip: Some(ip(addr)),
        length: len.parse().unwrap(),
        underlay_route: Vec::new(),
    }
}

fn iface_req(id: &str, device: &str, vni: u32, v4: &str, v6: &str) -> v1::CreateInterfaceRequest {
    v1::CreateInterfaceRequest {
        interface_id: id.as_bytes().to_vec(),
        vni,
        ipv4_config: Some(v1::IpConfig {
            primary_address: v4.as_bytes().to_vec(),
        }),
        ipv6_config: Some(v1::IpConfig {
            primary_address: v6.as_bytes().to_vec(),
        }),
        device_name: device.into(),
        ..Default::default()
    }
}

fn route_req(vni: u32, pfx: &str, nh_vni: u32, nh: &str) -> v1::CreateRouteRequest {
    v1::CreateRouteRequest {
        vni,
        route: Some(v1::Route {
            prefix: Some(prefix(pfx)),
            nexthop_vni: nh_vni,
            nexthop_address: Some(ip(nh)),
            weight: 0,
        }),
    }
}

fn del_route_req(vni: u32, pfx: &str) -> v1::DeleteRouteRequest {
    v1::DeleteRouteRequest {
        vni,
        route: Some(v1::Route {
            prefix: Some(prefix(pfx)),
            ..Default::default()
        }),
    }
}

fn code(s: &Option<v1::Status>) -> (u32, &str) {
    let s = s.as_ref().expect("every response carries a status");
    (s.code, s.message.as_str())
}

const OK: (u32, &str) = (0, "Success");

async fn initialized_client(server: &Server) -> Client {
    let mut c = server.client().await;
    c.initialize(v1::InitializeRequest {}).await.unwrap();
    c
}

#[tokio::test]
async fn initialization_and_version() {
    let server = Server::start().await;
    let mut c = server.client().await;

    // Everything but Initialize is refused before it.
    let e = c
        .check_initialized(v1::CheckInitializedRequest {})
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.message()), (Code::Aborted, "not initialized"));
    let e = c
        .list_interfaces(v1::ListInterfacesRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = c
        .create_interface(iface_req("vm1", "dtapvf_0", 100, "10.0.0.1", "::"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = c.get_nat(v1::GetNatRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(!server.control.is_initialized());

    let init = c
        .initialize(v1::InitializeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&init.status), OK);
    assert_eq!(init.uuid, server.control.uuid());
    assert_eq!(init.uuid.len(), 36);
    assert_eq!(init.uuid, init.uuid.to_uppercase());
    let check = c
        .check_initialized(v1::CheckInitializedRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&check.status), OK);
    assert_eq!(check.uuid, init.uuid);
    // Initialize again is accepted and keeps the UUID.
    let again = c
        .initialize(v1::InitializeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.uuid, init.uuid);

    let v = c
        .get_version(v1::GetVersionRequest {
            client_protocol: "v0.3.2".into(),
            client_name: "dpservice-cli".into(),
            client_version: "1.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&v.status), OK);
    assert_eq!(v.service_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.service_protocol, v.service_version);
    let e = c
        .get_version(v1::GetVersionRequest {
            client_protocol: "".into(),
            client_name: "x".into(),
            client_version: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid client_protocol")
    );
    server.stop().await;
}

#[tokio::test]
async fn interfaces() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;

    let mut req = iface_req("vm4", "net_tap5", 100, "10.100.1.4", "2000:100:1::4");
    req.hostname = "vm4-host".into();
    let created = c.create_interface(req.clone()).await.unwrap().into_inner();
    assert_eq!(code(&created.status), OK);
    assert_eq!(created.underlay_route, b"fc00:1::d000:1:0:1");
    assert_eq!(created.vf.unwrap().name, "dtapvf_3");

    let got = c
        .get_interface(v1::GetInterfaceRequest {
            interface_id: b"vm4".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&got.status), OK);
    let i = got.interface.unwrap();
    assert_eq!(
        i,
        v1::Interface {
            id: b"vm4".to_vec(),
            vni: 100,
            primary_ipv4: b"10.100.1.4".to_vec(),
            primary_ipv6: b"2000:100:1::4".to_vec(),
            underlay_route: b"fc00:1::d000:1:0:1".to_vec(),
            pci_name: "net_tap5".into(),
            metering_params: Some(v1::MeteringParams::default()),
            hostname: "vm4-host".into(),
        }
    );
    // The packet path sees it.
    let snap = server.control.snapshot();
    assert_eq!(snap.iface(5).unwrap().id, "vm4");
    assert_eq!(
        snap.vni(100)
            .unwrap()
            .lookup_v4("10.100.1.4".parse().unwrap()),
        Some(&RouteTarget::Local { port: 5 })
    );

    // Duplicate (same device) → 202.
    let dup = c.create_interface(req.clone()).await.unwrap().into_inner();
    assert_eq!(code(&dup.status), (202, "ALREADY_EXISTS"));
    assert!(dup.underlay_route.is_empty() && dup.vf.is_none());
    // Same id on another device → 402.
    let dup = c
        .create_interface(iface_req("vm4", "dtapvf_0", 100, "10.100.1.9", "::"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&dup.status), (402, "VM_HANDLE"));
    // Unknown device → 201.
    let r = c
        .create_interface(iface_req("vm5", "invalid", 100, "10.100.1.5", "::"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (201, "NOT_FOUND"));
    // Address in use → 301.
    let r = c
        .create_interface(iface_req(
            "vm5",
            "dtapvf_0",
            100,
            "1.2.3.4",
            "2000:100:1::4",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (301, "ROUTE_EXISTS"));

    // Malformed requests are gRPC errors with dpservice's messages.
    let cases = [
        (
            iface_req("vm5", "dtapvf_0", 100, "0.0.0.0", "::"),
            "Invalid ipv4_config.primary_address and ipv6_config.primary_address combination",
        ),
        (
            iface_req("vm 5", "dtapvf_0", 100, "10.0.0.5", "::"),
            "Invalid interface_id",
        ),
        (
            iface_req(&"x".repeat(64), "dtapvf_0", 100, "10.0.0.5", "::"),
            "Invalid interface_id",
        ),
        (
            iface_req("", "dtapvf_0", 100, "10.0.0.5", "::"),
            "Invalid interface_id",
        ),
        (
            iface_req("vm5", "dtapvf_0", 100, "10.0.0.256", "::"),
            "Invalid ipv4_config.primary_address",
        ),
        (
            iface_req("vm5", "dtapvf_0", 100, "10.0.0.5", "1.2.3.4"),
            "Invalid ipv6_config.primary_address",
        ),
        (
            iface_req("vm5", "", 100, "10.0.0.5", "::"),
            "Invalid device_name",
        ),
        (
            v1::CreateInterfaceRequest {
                preferred_underlay_route: b"fc00:1::d000:1:0:99".to_vec(),
                ..iface_req("vm5", "dtapvf_0", 100, "10.0.0.5", "::")
            },
            "Invalid preferred_underlay_route",
        ),
        (
            v1::CreateInterfaceRequest {
                hostname: "h".repeat(64),
                ..iface_req("vm5", "dtapvf_0", 100, "10.0.0.5", "::")
            },
            "Invalid hostname",
        ),
        (
            v1::CreateInterfaceRequest {
                pxe_config: Some(v1::PxeConfig {
                    next_server: "2001:dede::1".into(),
                    boot_filename: "ipxe".into(),
                }),
                ..iface_req("vm5", "dtapvf_0", 100, "10.0.0.5", "::")
            },
            "Invalid pxe_config.next_server",
        ),
        (
            v1::CreateInterfaceRequest {
                ipv4_config: None,
                ..iface_req("vm5", "dtapvf_0", 100, "10.0.0.5", "2000::5")
            },
            "Invalid ipv4_config.primary_address",
        ),
    ];
    let generation = server.control.snapshot().generation;
    for (req, msg) in cases {
        let e = c.create_interface(req).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, msg));
    }
    assert_eq!(server.control.snapshot().generation, generation);

    // A preferred underlay with the external flag in the host /64 is used as is.
    let r = c
        .create_interface(v1::CreateInterfaceRequest {
            preferred_underlay_route: b"fc00:1::8000:0:1".to_vec(),
            ..iface_req("vm1", "dtapvf_0", 100, "10.100.1.1", "2000:100:1::1")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.underlay_route, b"fc00:1::8000:0:1");

    let list = c
        .list_interfaces(v1::ListInterfacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&list.status), OK);
    let ids: Vec<&[u8]> = list.interfaces.iter().map(|i| i.id.as_slice()).collect();
    assert_eq!(ids, [&b"vm1"[..], b"vm4"]);
    assert_eq!(list.interfaces[1], i);

    let del = c
        .delete_interface(v1::DeleteInterfaceRequest {
            interface_id: b"vm4".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&del.status), OK);
    assert!(server.control.snapshot().iface(5).is_none());
    let del = c
        .delete_interface(v1::DeleteInterfaceRequest {
            interface_id: b"vm4".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&del.status), (201, "NOT_FOUND"));
    let got = c
        .get_interface(v1::GetInterfaceRequest {
            interface_id: b"vm4".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&got.status), (201, "NOT_FOUND"));
    assert!(got.interface.is_none());
    let e = c
        .get_interface(v1::GetInterfaceRequest {
            interface_id: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid interface_id")
    );
    server.stop().await;
}

#[tokio::test]
async fn routes_and_vnis() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    let nh = "fc00:2::64:0:1";

    // No interface in the VNI yet.
    let r = c
        .create_route(route_req(999, "1.2.3.0/24", 100, nh))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (206, "NO_VNI"));
    let r = c
        .list_routes(v1::ListRoutesRequest { vni: 999 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (206, "NO_VNI"));
    let v = c
        .check_vni_in_use(v1::CheckVniInUseRequest {
            vni: 999,
            r#type: v1::VniType::VniIpv4 as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((code(&v.status), v.in_use), (OK, false));

    c.create_interface(iface_req(
        "vm4",
        "dtapvf_3",
        999,
        "10.99.1.4",
        "2000:99:1::4",
    ))
    .await
    .unwrap();
    let v = c
        .check_vni_in_use(v1::CheckVniInUseRequest {
            vni: 999,
            r#type: v1::VniType::VniIpv6 as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((code(&v.status), v.in_use), (OK, true));
    let v = c
        .check_vni_in_use(v1::CheckVniInUseRequest {
            vni: 999,
            r#type: v1::VniType::VniBoth as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&v.status), (203, "WRONG_TYPE"));
    let e = c
        .check_vni_in_use(v1::CheckVniInUseRequest {
            vni: 999,
            r#type: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid type")
    );

    for (pfx, want) in [
        ("1.2.3.4/24", OK),
        ("1.2.3.4/24", (301, "ROUTE_EXISTS")),
        ("1.2.3.255/24", (301, "ROUTE_EXISTS")),
        ("1.2.3.4/25", OK),
        ("0.0.0.0/0", OK),
        ("::/0", OK),
        ("1.2.3.4/33", (303, "ROUTE_INSERT")),
    ] {
        let r = c
            .create_route(route_req(999, pfx, 100, nh))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), want, "{pfx}");
    }
    let r = c
        .create_route(route_req(999, "4.5.6.7/32", 0, "1.2.3.4"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (204, "BAD_IPVER"));
    let e = c
        .create_route(route_req(999, "4.5.6.7/256", 0, nh))
        .await
        .unwrap_err();
    assert_eq!(e.message(), "Invalid route.prefix.length");
    let mut bad = route_req(999, "4.5.6.7/32", 0, nh);
    bad.route.as_mut().unwrap().prefix.as_mut().unwrap().ip = Some(v1::IpAddress {
        ipver: v1::IpVersion::Ipv6 as i32,
        address: b"4.5.6.7".to_vec(),
    });
    let e = c.create_route(bad).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid route.prefix.ip")
    );
    let mut bad = route_req(999, "4.5.6.7/32", 0, nh);
    bad.route.as_mut().unwrap().nexthop_address = None;
    let e = c.create_route(bad).await.unwrap_err();
    assert_eq!(e.message(), "Invalid route.nexthop_address");

    // Stored for the packet path as a remote target.
    let snap = server.control.snapshot();
    assert_eq!(
        snap.vni(999)
            .unwrap()
            .lookup_v4("1.2.3.200".parse().unwrap()),
        Some(&RouteTarget::Remote {
            vni: 100,
            underlay: nh.parse().unwrap(),
            public: false
        })
    );

    // Listed: external IPv4 routes only, in dpservice's order.
    let list = c
        .list_routes(v1::ListRoutesRequest { vni: 999 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&list.status), OK);
    let want = |p: &str| v1::Route {
        prefix: Some(prefix(p)),
        nexthop_vni: 100,
        nexthop_address: Some(ip(nh)),
        weight: 0,
    };
    assert_eq!(
        list.routes,
        vec![want("0.0.0.0/0"), want("1.2.3.0/25"), want("1.2.3.0/24")]
    );
    let all = c
        .list_routes(v1::ListRoutesRequest { vni: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.routes, list.routes);

    for (pfx, want) in [
        ("1.2.3.4/25", OK),
        ("1.2.3.4/24", OK),
        ("1.2.3.4/24", (302, "ROUTE_NOT_FOUND")),
        ("10.99.1.4/32", (304, "ROUTE_BAD_PORT")),
    ] {
        let r = c
            .delete_route(del_route_req(999, pfx))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), want, "{pfx}");
    }
    let r = c
        .delete_route(del_route_req(300, "0.0.0.0/0"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (206, "NO_VNI"));

    // ResetVni: only type BOTH, clears the external routes, keeps the interface's.
    let r = c
        .reset_vni(v1::ResetVniRequest {
            vni: 999,
            r#type: v1::VniType::VniIpv4 as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (203, "WRONG_TYPE"));
    let r = c
        .reset_vni(v1::ResetVniRequest {
            vni: 999,
            r#type: v1::VniType::VniBoth as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let list = c
        .list_routes(v1::ListRoutesRequest { vni: 999 })
        .await
        .unwrap()
        .into_inner();
    assert!(list.routes.is_empty());
    let snap = server.control.snapshot();
    let t = snap.vni(999).unwrap();
    assert_eq!((t.v4.len(), t.v6.len()), (1, 1));
    server.stop().await;
}

#[tokio::test]
async fn prefixes() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    c.create_interface(iface_req(
        "vm1",
        "dtapvf_0",
        100,
        "10.100.1.1",
        "2000:100:1::1",
    ))
    .await
    .unwrap();
    let create = |id: &str, p: &str| v1::CreatePrefixRequest {
        interface_id: id.as_bytes().to_vec(),
        prefix: Some(prefix(p)),
        preferred_underlay_route: Vec::new(),
    };
    let delete = |id: &str, p: &str| v1::DeletePrefixRequest {
        interface_id: id.as_bytes().to_vec(),
        prefix: Some(prefix(p)),
    };

    let r1 = c
        .create_prefix(create("vm1", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r1.status), OK);
    assert_eq!(r1.underlay_route, b"fc00:1::d000:1:0:2");
    let r = c
        .create_prefix(create("vm1", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (301, "ROUTE_EXISTS"));
    let r2 = c
        .create_prefix(v1::CreatePrefixRequest {
            preferred_underlay_route: b"fc00:1::c000:0:2".to_vec(),
            ..create("vm1", "1234::/64")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r2.underlay_route, b"fc00:1::c000:0:2");
    let r = c
        .create_prefix(create("invalid_name", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    let e = c
        .create_prefix(v1::CreatePrefixRequest {
            prefix: None,
            ..create("vm1", "1.2.3.0/24")
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "Invalid prefix.ip");

    let snap = server.control.snapshot();
    assert_eq!(
        snap.vni(100).unwrap().lookup_v4("1.2.3.9".parse().unwrap()),
        Some(&RouteTarget::Local { port: 2 })
    );
    assert_eq!(snap.iface(2).unwrap().prefixes_v6.len(), 1);

    let list = c
        .list_prefixes(v1::ListPrefixesRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&list.status), OK);
    assert_eq!(
        list.prefixes,
        vec![
            v1::Prefix {
                underlay_route: b"fc00:1::d000:1:0:2".to_vec(),
                ..prefix("1.2.3.0/24")
            },
            v1::Prefix {
                underlay_route: b"fc00:1::c000:0:2".to_vec(),
                ..prefix("1234::/64")
            },
        ]
    );
    let list = c
        .list_prefixes(v1::ListPrefixesRequest {
            interface_id: b"invalid_name".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&list.status), (205, "NO_VM"));

    let r = c
        .delete_prefix(delete("vm1", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c
        .delete_prefix(delete("vm1", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (302, "ROUTE_NOT_FOUND"));
    let r = c
        .delete_prefix(delete("invalid_name", "1.2.3.0/24"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    server.stop().await;
}

#[tokio::test]
async fn load_balancer_rpcs_check_their_arguments_and_answer_dpservices_codes() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    let ip = |a: &str| Some(dp_proto::convert::ip_to_proto(a.parse().unwrap()));
    let port = |protocol: v1::Protocol, port: u32| v1::LbPort {
        port,
        protocol: protocol as i32,
    };
    let lb = |id: &str, ports: Vec<v1::LbPort>| v1::CreateLoadBalancerRequest {
        loadbalancer_id: id.as_bytes().to_vec(),
        loadbalanced_ip: ip("10.20.30.40"),
        vni: 100,
        loadbalanced_ports: ports,
        preferred_underlay_route: Vec::new(),
    };
    for (req, msg) in [
        (lb("", vec![]), "Invalid loadbalancer_id"),
        (
            v1::CreateLoadBalancerRequest {
                vni: 1 << 24,
                ..lb("lb1", vec![])
            },
            "VNI exceeds 24-bit range",
        ),
        (
            lb("lb1", vec![port(v1::Protocol::Icmp, 22)]),
            "Invalid loadbalanced_ports.protocol",
        ),
        (
            lb("lb1", vec![port(v1::Protocol::Udp, 65536)]),
            "Invalid loadbalanced_ports.port",
        ),
        (
            lb(
                "lb1",
                vec![port(v1::Protocol::Tcp, 80), port(v1::Protocol::Tcp, 80)],
            ),
            "Duplicate loadbalanced_ports entry",
        ),
    ] {
        let e = c.create_load_balancer(req).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, msg));
    }
    let r = c
        .create_load_balancer(lb("lb1", vec![port(v1::Protocol::Tcp, 80)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let underlay = r.underlay_route;
    let r = c
        .create_load_balancer(lb("lb1", vec![port(v1::Protocol::Tcp, 80)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (202, "ALREADY_EXISTS"));
    let r = c
        .get_load_balancer(v1::GetLoadBalancerRequest {
            loadbalancer_id: b"lb1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!((r.vni, r.underlay_route), (100, underlay));
    assert_eq!(r.loadbalanced_ports, [port(v1::Protocol::Tcp, 80)]);
    let target = |addr: &str| v1::CreateLoadBalancerTargetRequest {
        loadbalancer_id: b"lb1".to_vec(),
        target_ip: ip(addr),
    };
    let r = c
        .create_load_balancer_target(target("fc00:2::1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c
        .create_load_balancer_target(target("1.2.3.4"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (204, "BAD_IPVER"));
    let r = c
        .create_load_balancer_target(v1::CreateLoadBalancerTargetRequest {
            loadbalancer_id: b"nope".to_vec(),
            ..target("fc00:2::1")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (422, "NO_LB"));
    // An empty id lists every balancer's targets.
    let r = c
        .list_load_balancer_targets(v1::ListLoadBalancerTargetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.target_ips, [ip("fc00:2::1").unwrap()]);
    let e = c
        .list_load_balancer_prefixes(v1::ListLoadBalancerPrefixesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid interface_id")
    );
    let r = c
        .list_load_balancer_prefixes(v1::ListLoadBalancerPrefixesRequest {
            interface_id: b"invalid_name".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    let r = c
        .delete_load_balancer(v1::DeleteLoadBalancerRequest {
            loadbalancer_id: b"lb1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c
        .delete_load_balancer(v1::DeleteLoadBalancerRequest {
            loadbalancer_id: b"lb1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (201, "NOT_FOUND"));
    server.stop().await;
}

#[tokio::test]
async fn capture_status_and_health() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    let r = c
        .capture_status(v1::CaptureStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!r.is_active);
    assert_eq!(code(&r.status), (0, "Success"));

    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "dpdkironcore.v1.DPDKironcore"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    server.stop().await;
}

/// `cargo test --release -p dp-control --test grpc -- --ignored --nocapture route_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn route_rate() {
    const ROUTES: u32 = 100_000;
    const IN_FLIGHT: u32 = 64;
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    c.create_interface(iface_req("vm1", "dtapvf_0", 100, "10.100.1.1", "::"))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..IN_FLIGHT {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = t;
            while i < ROUTES {
                let p = format!("{}.{}.{}.0/24", 11 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
                let r = c
                    .create_route(route_req(100, &p, 100, "fc00:2::1"))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(code(&r.status), OK);
                i += IN_FLIGHT;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{ROUTES} routes in {secs:.2} s: {:.0} CreateRoute/s, {} full table copies",
        f64::from(ROUTES) / secs,
        server.control.with_state(|s| s.table_copies())
    );
    let list = c
        .list_routes(v1::ListRoutesRequest { vni: 100 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.routes.len(), ROUTES as usize);
    server.stop().await;
}

/// The state operation alone (no gRPC), for comparison with `route_rate`.
#[test]
#[ignore = "benchmark"]
fn route_rate_state_only() {
    const ROUTES: u32 = 100_000;
    let control = ControlPlane::new(
        Publisher::new(Snapshot::default()),
        Config::new("fc00:1::1".parse().unwrap(), [("dtapvf_0", 2)], [0, 1]),
    );
    control.with_state(|s| {
        s.initialize();
        let spec = dp_control::state::InterfaceSpec {
            id: "vm1".into(),
            vni: 100,
            ipv4: "10.100.1.1".parse().unwrap(),
            ipv6: "::".parse().unwrap(),
            device: "dtapvf_0".into(),
            pxe: None,
            hostname: None,
            preferred_underlay: None,
            meter: Default::default(),
        };
        s.create_interface(spec).unwrap();
    });
    let nh: IpAddr = "fc00:2::1".parse().unwrap();
    let start = std::time::Instant::now();
    for i in 0..ROUTES {
        let addr = IpAddr::V4(std::net::Ipv4Addr::from((11 << 24) + (i << 8)));
        control.with_state(|s| s.create_route(100, addr, 24, 100, nh).unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{ROUTES} routes in {secs:.3} s: {:.0} ops/s",
        f64::from(ROUTES) / secs
    );
}

/// The server runs on its own thread: dropping the `serve` future (the caller going away) still
/// stops it, and its listening socket closes.
#[tokio::test]
async fn dropping_serve_stops_the_server() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.initialize(v1::InitializeRequest {}).await.unwrap();
    let addr = server.addr;
    server.task.abort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting connections"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// ----- firewall, VIP, NAT ------------------------------------------------------------------------

async fn two_vms(server: &Server) -> Client {
    let mut c = initialized_client(server).await;
    for (id, dev, v4, v6) in [
        ("vm1", "dtapvf_0", "10.100.1.1", "2000:100:1::1"),
        ("vm2", "dtapvf_1", "10.100.1.2", "2000:100:1::2"),
    ] {
        let r = c
            .create_interface(iface_req(id, dev, 100, v4, v6))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), OK);
    }
    c
}

fn tcp_rule(
    id: &str,
    action: v1::FirewallAction,
    dst_lower: i32,
    dst_upper: i32,
) -> v1::FirewallRule {
    v1::FirewallRule {
        id: id.as_bytes().to_vec(),
        direction: v1::TrafficDirection::Ingress as i32,
        action: action as i32,
        priority: 1000,
        source_prefix: Some(prefix("0.0.0.0/0")),
        destination_prefix: Some(prefix("10.100.1.1/32")),
        protocol_filter: Some(v1::ProtocolFilter {
            filter: Some(v1::protocol_filter::Filter::Tcp(v1::TcpFilter {
                src_port_lower: -1,
                src_port_upper: -1,
                dst_port_lower: dst_lower,
                dst_port_upper: dst_upper,
            })),
        }),
    }
}

fn fw_req(iface: &str, rule: v1::FirewallRule) -> v1::CreateFirewallRuleRequest {
    v1::CreateFirewallRuleRequest {
        interface_id: iface.as_bytes().to_vec(),
        rule: Some(rule),
    }
}

#[tokio::test]
async fn firewall_rules() {
    let server = Server::start().await;
    let mut c = two_vms(&server).await;

    let rule = tcp_rule("r1", v1::FirewallAction::Accept, 80, 80);
    let r = c
        .create_firewall_rule(fw_req("vm1", rule.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.rule_id, b"r1");
    // DROP is accepted (dpservice: NO_DROP_SUPPORT); the rule is enforced.
    let drop = tcp_rule("r2", v1::FirewallAction::Drop, 22, -1);
    let r = c
        .create_firewall_rule(fw_req("vm1", drop.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let snap = server.control.snapshot();
    let fw = &snap.iface(2).unwrap().services.firewall;
    assert_ne!(fw.version, 0);
    assert_eq!(fw.rules(dp_tables::TrafficDirection::Ingress).len(), 2);

    // Get and List report the rule as given (-1 wildcards included), in creation order.
    let r = c
        .get_firewall_rule(v1::GetFirewallRuleRequest {
            interface_id: b"vm1".to_vec(),
            rule_id: b"r2".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.rule, Some(drop.clone()));
    let r = c
        .list_firewall_rules(v1::ListFirewallRulesRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.rules, vec![rule.clone(), drop]);

    // dpservice's status codes.
    let r = c
        .create_firewall_rule(fw_req("vm1", rule.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (202, "ALREADY_EXISTS"));
    let r = c
        .create_firewall_rule(fw_req("nope", rule.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    let r = c
        .get_firewall_rule(v1::GetFirewallRuleRequest {
            interface_id: b"vm1".to_vec(),
            rule_id: b"r9".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (201, "NOT_FOUND"));
    let r = c
        .delete_firewall_rule(v1::DeleteFirewallRuleRequest {
            interface_id: b"vm1".to_vec(),
            rule_id: b"r1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c
        .delete_firewall_rule(v1::DeleteFirewallRuleRequest {
            interface_id: b"vm1".to_vec(),
            rule_id: b"r1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (201, "NOT_FOUND"));
    let r = c
        .list_firewall_rules(v1::ListFirewallRulesRequest {
            interface_id: b"nope".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));

    // Malformed rules: INVALID_ARGUMENT with dpservice's messages.
    let mut bad = Vec::new();
    let mut r = rule.clone();
    r.id = Vec::new();
    bad.push((r, "Invalid rule id"));
    let mut r = rule.clone();
    r.id = vec![b'a'; 64];
    bad.push((r, "Invalid rule id"));
    let mut r = rule.clone();
    r.source_prefix = Some(prefix("1.2.3.4/33"));
    bad.push((r, "Invalid source_prefix.length"));
    let mut r = rule.clone();
    r.destination_prefix = Some(prefix("2001:db8::/129"));
    bad.push((r, "Invalid ip6 destination_prefix.length"));
    let mut r = rule.clone();
    r.source_prefix = Some(v1::Prefix {
        ip: Some(v1::IpAddress {
            ipver: 7,
            address: b"1.2.3.4".to_vec(),
        }),
        length: 8,
        underlay_route: Vec::new(),
    });
    bad.push((r, "Invalid source_prefix.ip.ipver"));
    let mut r = rule.clone();
    r.direction = 5;
    bad.push((r, "Invalid direction"));
    let mut r = rule.clone();
    r.action = 5;
    bad.push((r, "Invalid action"));
    let mut r = rule.clone();
    r.priority = 65536;
    bad.push((r, "Invalid priority"));
    bad.push((
        tcp_rule("x", v1::FirewallAction::Accept, 65536, 80),
        "Invalid tcp.dst_port_lower",
    ));
    bad.push((
        tcp_rule("x", v1::FirewallAction::Accept, 90, 80),
        "Invalid tcp.dst_port range",
    ));
    let mut r = rule.clone();
    r.protocol_filter = Some(v1::ProtocolFilter {
        filter: Some(v1::protocol_filter::Filter::Icmp(v1::IcmpFilter {
            icmp_type: 256,
            icmp_code: -1,
        })),
    });
    bad.push((r, "Invalid icmp.icmp_type"));
    for (r, msg) in bad {
        let e = c.create_firewall_rule(fw_req("vm1", r)).await.unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, msg));
    }
    assert_eq!(
        server
            .control
            .with_state(|s| s.list_firewall_rules("vm1").unwrap().len()),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn vips() {
    let server = Server::start().await;
    let mut c = two_vms(&server).await;
    let req = |id: &str, vip: &str| v1::CreateVipRequest {
        interface_id: id.as_bytes().to_vec(),
        vip_ip: Some(ip(vip)),
        preferred_underlay_route: Vec::new(),
    };
    let r = c
        .create_vip(req("vm1", "172.20.0.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.underlay_route, b"fc00:1::d000:1:0:3");
    let snap = server.control.snapshot();
    assert_eq!(
        snap.public_target(100, "172.20.0.1".parse().unwrap()),
        Some(dp_tables::PublicTarget::Vip {
            port: 2,
            private: "10.100.1.1".parse().unwrap()
        })
    );
    let r = c
        .get_vip(v1::GetVipRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(r.vip_ip, Some(ip("172.20.0.1")));
    assert_eq!(r.underlay_route, b"fc00:1::d000:1:0:3");
    // dpservice's test_grpc_vip / test_grpc_vip_errors.
    let r = c
        .create_vip(req("vm1", "172.20.0.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (343, "SNAT_EXISTS"));
    let r = c
        .create_vip(req("vm2", "172.20.0.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (323, "DNAT_EXISTS"));
    let r = c
        .create_vip(req("invalid_name", "172.20.0.1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    let r = c
        .create_vip(req("vm2", "1234::1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (204, "BAD_IPVER"));
    let e = c
        .create_vip(v1::CreateVipRequest {
            interface_id: b"vm2".to_vec(),
            vip_ip: Some(v1::IpAddress {
                ipver: v1::IpVersion::Ipv4 as i32,
                address: b"xxx".to_vec(),
            }),
            preferred_underlay_route: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid vip_ip")
    );
    let r = c
        .delete_vip(v1::DeleteVipRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    for _ in 0..2 {
        let r = c
            .get_vip(v1::GetVipRequest {
                interface_id: b"vm1".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), (341, "SNAT_NO_DATA"));
        assert_eq!(r.vip_ip, None);
        let r = c
            .delete_vip(v1::DeleteVipRequest {
                interface_id: b"vm1".to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), (341, "SNAT_NO_DATA"));
    }
    assert!(server.control.snapshot().public.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn nats_and_neighbor_nats() {
    let server = Server::start().await;
    let mut c = two_vms(&server).await;
    let nat = |id: &str, nat_ip: &str, min: u32, max: u32| v1::CreateNatRequest {
        interface_id: id.as_bytes().to_vec(),
        nat_ip: Some(ip(nat_ip)),
        min_port: min,
        max_port: max,
        preferred_underlay_route: Vec::new(),
    };
    let r = c
        .create_nat(nat("vm1", "172.21.1.1", 100, 102))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let ul1 = r.underlay_route;
    let r = c
        .create_nat(nat("vm2", "172.21.1.1", 102, 103))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c
        .get_nat(v1::GetNatRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    assert_eq!(
        (r.nat_ip, r.min_port, r.max_port, r.underlay_route),
        (Some(ip("172.21.1.1")), 100, 102, ul1)
    );
    // ListLocalNats: nat_ip is the interface's address, actual_nat_ip the NAT address;
    // dpservice's test_grpc_nat_list order.
    let r = c
        .list_local_nats(v1::ListLocalNatsRequest {
            nat_ip: Some(ip("172.21.1.1")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let entry = |own: &str, min: u32, max: u32| v1::NatEntry {
        nat_ip: Some(ip(own)),
        min_port: min,
        max_port: max,
        underlay_route: Vec::new(),
        vni: 100,
        actual_nat_ip: Some(ip("172.21.1.1")),
    };
    assert_eq!(
        r.nat_entries,
        vec![entry("10.100.1.2", 102, 103), entry("10.100.1.1", 100, 102)]
    );
    // Errors.
    let r = c
        .create_nat(nat("vm1", "172.21.1.1", 200, 300))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (343, "SNAT_EXISTS"));
    let r = c
        .create_nat(nat("invalid_name", "172.21.1.1", 200, 300))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (205, "NO_VM"));
    let r = c
        .create_nat(nat("vm1", "1234::1", 1024, 2048))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (204, "BAD_IPVER"));
    let r = c
        .list_local_nats(v1::ListLocalNatsRequest {
            nat_ip: Some(ip("1234::1")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (204, "BAD_IPVER"));
    for (min, max, msg) in [
        (65536, 65537, "Invalid min_port"),
        (1, 65536, "Invalid max_port"),
        (200, 200, "Invalid port range"),
    ] {
        let e = c
            .create_nat(nat("vm1", "172.21.1.1", min, max))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, msg));
    }

    // Neighbor NATs (dpservice's test_grpc_neighnat*).
    let neigh = |vni: u32, min: u32, max: u32| v1::CreateNeighborNatRequest {
        nat_ip: Some(ip("172.21.1.1")),
        vni,
        min_port: min,
        max_port: max,
        underlay_route: b"fc00:2::64:0:1".to_vec(),
    };
    let r = c
        .create_neighbor_nat(neigh(100, 500, 520))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    for req in [
        neigh(100, 500, 520),
        neigh(200, 500, 520),
        neigh(200, 501, 521),
    ] {
        let r = c.create_neighbor_nat(req).await.unwrap().into_inner();
        assert_eq!(code(&r.status), (202, "ALREADY_EXISTS"));
    }
    let e = c
        .create_neighbor_nat(v1::CreateNeighborNatRequest {
            underlay_route: b"1.2.3.4".to_vec(),
            ..neigh(100, 600, 700)
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "Invalid underlay_route")
    );
    let r = c
        .list_neighbor_nats(v1::ListNeighborNatsRequest {
            nat_ip: Some(ip("172.21.1.1")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.nat_entries,
        vec![v1::NatEntry {
            nat_ip: None,
            min_port: 500,
            max_port: 520,
            underlay_route: b"fc00:2::64:0:1".to_vec(),
            vni: 100,
            actual_nat_ip: Some(ip("172.21.1.1")),
        }]
    );
    let snap = server.control.snapshot();
    assert_eq!(
        snap.neighbor_nat(100, "172.21.1.1".parse().unwrap(), 510)
            .map(|n| n.underlay),
        Some("fc00:2::64:0:1".parse().unwrap())
    );
    let del = v1::DeleteNeighborNatRequest {
        nat_ip: Some(ip("172.21.1.1")),
        vni: 100,
        min_port: 500,
        max_port: 520,
    };
    let r = c
        .delete_neighbor_nat(del.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let r = c.delete_neighbor_nat(del).await.unwrap().into_inner();
    assert_eq!(code(&r.status), (201, "NOT_FOUND"));

    // DeleteNat, then GetNat / DeleteNat answer SNAT_NO_DATA.
    for id in ["vm1", "vm2"] {
        let r = c
            .delete_nat(v1::DeleteNatRequest {
                interface_id: id.as_bytes().to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), OK);
    }
    let r = c
        .get_nat(v1::GetNatRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (341, "SNAT_NO_DATA"));
    let r = c
        .delete_nat(v1::DeleteNatRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), (341, "SNAT_NO_DATA"));
    let r = c
        .list_local_nats(v1::ListLocalNatsRequest {
            nat_ip: Some(ip("172.21.1.1")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.nat_entries.is_empty());
    assert!(server.control.snapshot().public.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn metering_parameters_are_validated_stored_and_read_back() {
    let server = Server::start().await;
    let mut c = initialized_client(&server).await;
    let metered = |total, public| {
        let mut req = iface_req("vm1", "dtapvf_0", 100, "10.100.1.1", "::");
        req.metering_parameters = Some(v1::MeteringParams {
            total_rate: total,
            public_rate: public,
        });
        req
    };
    // A public rate above the total: dpservice's PORT_METER (383) in the status, nothing made.
    for (total, public) in [(100, 200), (0, 1), (u64::from(u32::MAX) + 1, 0)] {
        let r = c
            .create_interface(metered(total, public))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r.status), (383, "PORT_METER"), "{total}/{public}");
        assert!(r.vf.is_none());
    }
    let none = c
        .list_interfaces(v1::ListInterfacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(none.interfaces.is_empty());
    assert!(server.control.snapshot().iface(2).is_none());

    let r = c
        .create_interface(metered(100, 30))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r.status), OK);
    let want = Some(v1::MeteringParams {
        total_rate: 100,
        public_rate: 30,
    });
    let got = c
        .get_interface(v1::GetInterfaceRequest {
            interface_id: b"vm1".to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.interface.unwrap().metering_params, want);
    let list = c
        .list_interfaces(v1::ListInterfacesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.interfaces[0].metering_params, want);
    let m = server.control.snapshot().iface(2).unwrap().meter;
    assert_eq!((m.total_mbps, m.public_mbps), (100, 30));
}
