//! Packet capture RPCs: CaptureStart, CaptureStop, CaptureStatus (request conversion as
//! dpservice's `CaptureStartCall::FillRequest` and friends; the rules are in
//! [`crate::capture`]).

use dp_proto::ip_to_proto;
use dp_proto::v1;
use dp_proto::v1::captured_interface::Spec;
use dp_tables::CAPTURE_MAX_PORTS;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{failed, fixed_str, invalid, outcome, parse_ipv6};
use super::{GrpcService, IFACE_ID_SIZE};
use crate::errors::ok_status;
use crate::state::{CaptureSpec, CaptureTarget, CapturedIface};

/// The request as dpservice's `FillRequest` reads it, in its order of checks.
fn capture_spec(what: &'static str, cfg: v1::CaptureConfig) -> Result<CaptureSpec, Status> {
    let udp_src_port =
        u16::try_from(cfg.udp_src_port).map_err(|_| invalid(what, "Invalid udp_src_port"))?;
    let udp_dst_port =
        u16::try_from(cfg.udp_dst_port).map_err(|_| invalid(what, "Invalid udp_dst_port"))?;
    // The address text, whatever `ipver` says (dpservice's `StrToIpv6`).
    let sink = parse_ipv6(&cfg.sink_node_ip.unwrap_or_default().address)
        .ok_or_else(|| invalid(what, "Invalid sink_node_ip"))?;
    if cfg.interfaces.len() > CAPTURE_MAX_PORTS {
        return Err(invalid(what, "Too many interfaces to be captured"));
    }
    let mut interfaces = Vec::with_capacity(cfg.interfaces.len());
    for i in cfg.interfaces {
        let target = match v1::CaptureInterfaceType::try_from(i.interface_type) {
            // A spec of the other kind reads as the field's default (protobuf's accessors).
            Ok(v1::CaptureInterfaceType::SingleVf) => {
                let name = match &i.spec {
                    Some(Spec::VfName(n)) => n.as_slice(),
                    _ => &[],
                };
                CaptureTarget::Vf(
                    fixed_str(name, IFACE_ID_SIZE)
                        .ok_or_else(|| invalid(what, "Invalid interface_id"))?,
                )
            }
            Ok(v1::CaptureInterfaceType::SinglePf) => {
                let index = match i.spec {
                    Some(Spec::PfIndex(n)) => n,
                    _ => 0,
                };
                CaptureTarget::Pf(
                    u8::try_from(index).map_err(|_| invalid(what, "Invalid pf_index"))?,
                )
            }
            Err(_) => return Err(invalid(what, "Invalid interfaces.interface_type")),
        };
        interfaces.push(target);
    }
    Ok(CaptureSpec {
        sink,
        udp_src_port,
        udp_dst_port,
        interfaces,
    })
}

pub(super) async fn capture_start(
    svc: &GrpcService,
    request: Request<v1::CaptureStartRequest>,
) -> Result<Response<v1::CaptureStartResponse>, Status> {
    const WHAT: &str = "CaptureStart";
    svc.ensure_initialized()?;
    let spec = capture_spec(
        WHAT,
        request.into_inner().capture_config.unwrap_or_default(),
    )?;
    let (result, change) = svc.state().deferred(|s| s.capture_start(&spec));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(sink = %spec.sink, udp_src_port = spec.udp_src_port,
            udp_dst_port = spec.udp_dst_port, interfaces = spec.interfaces.len(),
            "Packet capture started");
    });
    Ok(Response::new(v1::CaptureStartResponse {
        status: Some(status),
    }))
}

pub(super) async fn capture_stop(
    svc: &GrpcService,
    _request: Request<v1::CaptureStopRequest>,
) -> Result<Response<v1::CaptureStopResponse>, Status> {
    const WHAT: &str = "CaptureStop";
    svc.ensure_initialized()?;
    let (result, change) = svc.state().deferred(|s| s.capture_stop());
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(n) => {
            info!(interfaces = n, "Packet capture stopped");
            v1::CaptureStopResponse {
                status: Some(ok_status()),
                stopped_interface_cnt: n,
            }
        }
        Err(e) => v1::CaptureStopResponse {
            status: Some(failed(WHAT, e)),
            stopped_interface_cnt: 0,
        },
    }))
}

pub(super) async fn capture_status(
    svc: &GrpcService,
    _request: Request<v1::CaptureStatusRequest>,
) -> Result<Response<v1::CaptureStatusResponse>, Status> {
    let state = svc.read()?;
    let Some(st) = state.capture_status() else {
        return Ok(Response::new(v1::CaptureStatusResponse {
            status: Some(ok_status()),
            is_active: false,
            capture_config: None,
        }));
    };
    let interfaces = st
        .interfaces
        .into_iter()
        .map(|i| match i {
            CapturedIface::Pf(index) => v1::CapturedInterface {
                interface_type: v1::CaptureInterfaceType::SinglePf as i32,
                filter: Vec::new(),
                spec: Some(Spec::PfIndex(u32::from(index))),
            },
            CapturedIface::Vf(id) => v1::CapturedInterface {
                interface_type: v1::CaptureInterfaceType::SingleVf as i32,
                filter: Vec::new(),
                spec: Some(Spec::VfName(id.into_bytes())),
            },
        })
        .collect();
    Ok(Response::new(v1::CaptureStatusResponse {
        status: Some(ok_status()),
        is_active: true,
        capture_config: Some(v1::CaptureConfig {
            sink_node_ip: Some(ip_to_proto(st.sink.into())),
            udp_src_port: u32::from(st.udp_src_port),
            udp_dst_port: u32::from(st.udp_dst_port),
            interfaces,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::service;
    use dp_proto::status;
    use dp_proto::v1::dpd_kironcore_server::DpdKironcore;

    fn iface(t: v1::CaptureInterfaceType, spec: Spec) -> v1::CapturedInterface {
        v1::CapturedInterface {
            interface_type: t as i32,
            filter: Vec::new(),
            spec: Some(spec),
        }
    }

    fn vf(name: &str) -> v1::CapturedInterface {
        iface(
            v1::CaptureInterfaceType::SingleVf,
            Spec::VfName(name.as_bytes().to_vec()),
        )
    }

    fn pf(index: u32) -> v1::CapturedInterface {
        iface(v1::CaptureInterfaceType::SinglePf, Spec::PfIndex(index))
    }

    fn start_req(interfaces: Vec<v1::CapturedInterface>) -> v1::CaptureStartRequest {
        v1::CaptureStartRequest {
            capture_config: Some(v1::CaptureConfig {
                sink_node_ip: Some(ip_to_proto("fc00::ffff".parse().unwrap())),
                udp_src_port: 3000,
                udp_dst_port: 3010,
                interfaces,
            }),
        }
    }

    async fn start(svc: &GrpcService, r: v1::CaptureStartRequest) -> Result<u32, Status> {
        let r = svc.capture_start(Request::new(r)).await?;
        Ok(r.into_inner().status.unwrap().code)
    }

    /// dpservice stops at 16 interfaces (its NIC's flow rules); ours captures any number.
    #[tokio::test(flavor = "current_thread")]
    async fn more_than_sixteen_interfaces_are_captured() {
        let devices: Vec<(String, dp_tables::PortId)> =
            (0..40u16).map(|i| (format!("dtapvf_{i}"), 2 + i)).collect();
        let config = crate::Config::new(
            "fc00:1::1".parse().unwrap(),
            devices.iter().map(|(d, p)| (d.as_str(), *p)),
            [0, 1],
        );
        let control = crate::ControlPlane::new(
            crate::Publisher::new(dp_tables::Snapshot::default()),
            config,
        );
        let svc = GrpcService {
            shared: std::sync::Arc::clone(&control.shared),
        };
        control.with_state(|s| {
            s.initialize();
            for (i, (device, _)) in devices.iter().enumerate() {
                s.create_interface(crate::state::InterfaceSpec {
                    id: format!("vm{i}"),
                    vni: 100,
                    ipv4: std::net::Ipv4Addr::new(10, 100, 1, i as u8 + 1),
                    ipv6: std::net::Ipv6Addr::UNSPECIFIED,
                    device: device.clone(),
                    pxe: None,
                    hostname: None,
                    preferred_underlay: None,
                    meter: Default::default(),
                })
                .unwrap();
            }
        });
        let mut ifaces: Vec<_> = (0..40).map(|i| vf(&format!("vm{i}"))).collect();
        ifaces.extend([pf(0), pf(1)]);
        assert_eq!(start(&svc, start_req(ifaces)).await.unwrap(), 0);
        let cap = control.snapshot().capture.unwrap();
        assert_eq!(cap.ports().count(), 42);
        assert!(cap.captures(0) && cap.captures(1) && cap.captures(41) && !cap.captures(42));
        let stop = svc
            .capture_stop(Request::new(v1::CaptureStopRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stop.stopped_interface_cnt, 42);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn malformed_requests_are_invalid_arguments_and_change_nothing() {
        let (control, svc) = service();
        let g = control.snapshot().generation;
        let cases: Vec<(v1::CaptureStartRequest, &str)> = vec![
            (
                {
                    let mut r = start_req(vec![]);
                    r.capture_config.as_mut().unwrap().udp_src_port = 65536;
                    r
                },
                "Invalid udp_src_port",
            ),
            (
                {
                    let mut r = start_req(vec![]);
                    r.capture_config.as_mut().unwrap().udp_dst_port = 70000;
                    r
                },
                "Invalid udp_dst_port",
            ),
            (
                {
                    let mut r = start_req(vec![]);
                    r.capture_config.as_mut().unwrap().sink_node_ip =
                        Some(ip_to_proto("10.0.0.1".parse().unwrap()));
                    r
                },
                "Invalid sink_node_ip",
            ),
            (
                v1::CaptureStartRequest {
                    capture_config: None,
                },
                "Invalid sink_node_ip",
            ),
            (
                start_req((0..=CAPTURE_MAX_PORTS).map(|_| pf(0)).collect()),
                "Too many interfaces to be captured",
            ),
            (
                start_req(vec![v1::CapturedInterface {
                    interface_type: 7,
                    filter: Vec::new(),
                    spec: None,
                }]),
                "Invalid interfaces.interface_type",
            ),
            (start_req(vec![vf("")]), "Invalid interface_id"),
            (start_req(vec![vf(&"a".repeat(64))]), "Invalid interface_id"),
            (start_req(vec![pf(256)]), "Invalid pf_index"),
        ];
        for (req, msg) in cases {
            let e = start(&svc, req).await.unwrap_err();
            assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, msg));
        }
        assert_eq!(control.snapshot().generation, g);
        assert!(control.snapshot().capture.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn start_status_stop_as_dpservice() {
        let (control, svc) = service();
        // Nothing active yet.
        let st = svc
            .capture_status(Request::new(v1::CaptureStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(!st.is_active && st.capture_config.is_none());
        assert_eq!(st.status.unwrap().code, 0);
        let stop = svc
            .capture_stop(Request::new(v1::CaptureStopRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stop.status.unwrap().code, status::NOT_ACTIVE);

        // Refusals: unknown interface, missing PF (the service has pf0 and pf1), a duplicate.
        let g = control.snapshot().generation;
        for (ifaces, code) in [
            (vec![vf("vm1"), vf("nope")], status::NOT_FOUND),
            (vec![pf(2)], status::NOT_FOUND),
            (vec![pf(0), vf("vm1"), pf(0)], status::ALREADY_ACTIVE),
        ] {
            assert_eq!(start(&svc, start_req(ifaces)).await.unwrap(), code);
        }
        assert_eq!(control.snapshot().generation, g);
        assert!(control.snapshot().capture.is_none());

        // Started: published to the workers, PF 1, the VF (port 2) and PF 0.
        let code = start(&svc, start_req(vec![pf(1), vf("vm1"), pf(0)]))
            .await
            .unwrap();
        assert_eq!(code, 0);
        let cap = control.snapshot().capture.unwrap();
        assert_eq!(cap.ports().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            cap.sink,
            "fc00::ffff".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!((cap.udp_src_port, cap.udp_dst_port), (3000, 3010));
        // A second start while active.
        assert_eq!(
            start(&svc, start_req(vec![])).await.unwrap(),
            status::ALREADY_ACTIVE
        );

        // Status: in port order, the sink as text.
        let st = svc
            .capture_status(Request::new(v1::CaptureStatusRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(st.is_active);
        let cfg = st.capture_config.unwrap();
        assert_eq!(cfg.sink_node_ip.unwrap().address, b"fc00::ffff".to_vec());
        assert_eq!((cfg.udp_src_port, cfg.udp_dst_port), (3000, 3010));
        assert_eq!(cfg.interfaces, vec![pf(0), pf(1), vf("vm1")]);

        // Deleting the VM's interface ends its capture.
        control.with_state(|s| s.delete_interface("vm1")).unwrap();
        assert_eq!(
            control
                .snapshot()
                .capture
                .unwrap()
                .ports()
                .collect::<Vec<_>>(),
            [0, 1]
        );

        let stop = svc
            .capture_stop(Request::new(v1::CaptureStopRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stop.status.unwrap().code, 0);
        assert_eq!(stop.stopped_interface_cnt, 2);
        assert!(control.snapshot().capture.is_none());
    }
}
