//! Interface RPCs: CreateInterface, DeleteInterface, GetInterface, ListInterfaces.

use dp_proto::v1;
use std::net::IpAddr;

use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::fields::{
    failed, fixed_str, interface_id, interface_id_chars_valid, invalid, outcome, parse_ipv4,
    parse_ipv6, preferred_underlay, text,
};
use super::{GrpcService, DEVICE_NAME_SIZE, HOSTNAME_SIZE, PXE_FILE_SIZE};
use crate::errors::ok_status;
use crate::state::{InterfaceInfo, InterfaceSpec, Pxe};
use dp_tables::MeterConfig;

pub(super) fn interface_to_proto(i: &InterfaceInfo) -> v1::Interface {
    v1::Interface {
        id: i.id.clone().into_bytes(),
        vni: i.vni,
        primary_ipv4: text(i.ipv4),
        primary_ipv6: text(i.ipv6),
        underlay_route: text(i.underlay),
        pci_name: i.device.clone(),
        metering_params: Some(v1::MeteringParams {
            total_rate: i.meter.total_mbps,
            public_rate: i.meter.public_mbps,
        }),
        hostname: i.hostname.clone().unwrap_or_default(),
    }
}

pub(super) async fn list_interfaces(
    svc: &GrpcService,
    _request: Request<v1::ListInterfacesRequest>,
) -> Result<Response<v1::ListInterfacesResponse>, Status> {
    let state = svc.read()?;
    let interfaces = state
        .list_interfaces()
        .iter()
        .map(interface_to_proto)
        .collect();
    Ok(Response::new(v1::ListInterfacesResponse {
        status: Some(ok_status()),
        interfaces,
    }))
}

pub(super) async fn get_interface(
    svc: &GrpcService,
    request: Request<v1::GetInterfaceRequest>,
) -> Result<Response<v1::GetInterfaceResponse>, Status> {
    const WHAT: &str = "GetInterface";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.get_interface(&id) {
        Ok(i) => v1::GetInterfaceResponse {
            status: Some(ok_status()),
            interface: Some(interface_to_proto(&i)),
        },
        Err(e) => v1::GetInterfaceResponse {
            status: Some(failed(WHAT, e)),
            interface: None,
        },
    }))
}

pub(super) async fn create_interface(
    svc: &GrpcService,
    request: Request<v1::CreateInterfaceRequest>,
) -> Result<Response<v1::CreateInterfaceResponse>, Status> {
    const WHAT: &str = "CreateInterface";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    debug!(
        interface_id = %String::from_utf8_lossy(&r.interface_id),
        vni = r.vni,
        device = %r.device_name,
        "Adding interface"
    );
    if !interface_id_chars_valid(&r.interface_id) {
        return Err(invalid(WHAT, "Invalid interface_id"));
    }
    let ipv4_text = r.ipv4_config.as_ref().map(|c| c.primary_address.as_slice());
    let ipv4 = parse_ipv4(ipv4_text.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid ipv4_config.primary_address"))?;
    let ipv6_text = r.ipv6_config.as_ref().map(|c| c.primary_address.as_slice());
    let ipv6 = parse_ipv6(ipv6_text.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid ipv6_config.primary_address"))?;
    if ipv4.is_unspecified() && ipv6.is_unspecified() {
        return Err(invalid(
            WHAT,
            "Invalid ipv4_config.primary_address and ipv6_config.primary_address combination",
        ));
    }
    let mut pxe = None;
    if let Some(p) = r.pxe_config.as_ref().filter(|p| !p.next_server.is_empty()) {
        // dpservice: the PXE server has the version the interface uses for DHCP(v6).
        let server = if ipv6.is_unspecified() {
            parse_ipv4(p.next_server.as_bytes()).map(IpAddr::V4)
        } else {
            parse_ipv6(p.next_server.as_bytes()).map(IpAddr::V6)
        };
        let server = server.ok_or_else(|| invalid(WHAT, "Invalid pxe_config.next_server"))?;
        let file = fixed_str(p.boot_filename.as_bytes(), PXE_FILE_SIZE)
            .ok_or_else(|| invalid(WHAT, "Invalid pxe_config.boot_filename"))?;
        pxe = Some(Pxe {
            next_server: server,
            boot_filename: file,
        });
    }
    let device = fixed_str(r.device_name.as_bytes(), DEVICE_NAME_SIZE)
        .ok_or_else(|| invalid(WHAT, "Invalid device_name"))?;
    let id = interface_id(WHAT, &r.interface_id)?;
    let hostname = if r.hostname.is_empty() {
        None
    } else {
        Some(
            fixed_str(r.hostname.as_bytes(), HOSTNAME_SIZE)
                .ok_or_else(|| invalid(WHAT, "Invalid hostname"))?,
        )
    };
    let preferred_underlay = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let meter = r
        .metering_parameters
        .map(|m| MeterConfig {
            total_mbps: m.total_rate,
            public_mbps: m.public_rate,
        })
        .unwrap_or_default();

    let spec = InterfaceSpec {
        id: id.clone(),
        vni: r.vni,
        ipv4,
        ipv6,
        device,
        pxe,
        hostname,
        preferred_underlay,
        meter,
    };
    let (result, change) = svc.state().deferred(|s| s.create_interface(spec));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(created) => {
            info!(
                interface_id = %id,
                vni = r.vni,
                %ipv4,
                %ipv6,
                underlay = %created.underlay,
                vf = %created.vf_name,
                total_rate = meter.total_mbps,
                public_rate = meter.public_mbps,
                "Interface created"
            );
            v1::CreateInterfaceResponse {
                status: Some(ok_status()),
                underlay_route: text(created.underlay),
                vf: Some(v1::VirtualFunction {
                    name: created.vf_name,
                    ..Default::default()
                }),
            }
        }
        Err(e) => v1::CreateInterfaceResponse {
            status: Some(failed(WHAT, e)),
            ..Default::default()
        },
    }))
}

pub(super) async fn delete_interface(
    svc: &GrpcService,
    request: Request<v1::DeleteInterfaceRequest>,
) -> Result<Response<v1::DeleteInterfaceResponse>, Status> {
    const WHAT: &str = "DeleteInterface";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (result, change) = svc.state().deferred(|s| s.delete_interface(&id));
    svc.published(change).await;
    let status = outcome(WHAT, result, |i| {
        info!(interface_id = %id, vni = i.vni, port = i.port, "Interface removed");
    });
    Ok(Response::new(v1::DeleteInterfaceResponse {
        status: Some(status),
    }))
}
