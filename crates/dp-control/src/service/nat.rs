//! NAT RPCs: CreateNat, GetNat, DeleteNat, ListLocalNats, CreateNeighborNat,
//! DeleteNeighborNat, ListNeighborNats (request conversion as dpservice's
//! `CreateNatCall::FillRequest` and friends; NatEntry filled as its `ParseReply`s do).

use dp_proto::ip_to_proto;
use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{
    failed, interface_id, invalid, outcome, parse_ip, parse_ipv6, preferred_underlay, text,
};
use super::GrpcService;
use crate::errors::ok_status;

/// A port range `min_port..max_port` as dpservice checks it: both at most 65535, min < max.
fn port_range(what: &'static str, min: u32, max: u32) -> Result<(u16, u16), Status> {
    let min = u16::try_from(min).map_err(|_| invalid(what, "Invalid min_port"))?;
    let max = u16::try_from(max).map_err(|_| invalid(what, "Invalid max_port"))?;
    if min >= max {
        return Err(invalid(what, "Invalid port range"));
    }
    Ok((min, max))
}

fn nat_ip(what: &'static str, ip: Option<v1::IpAddress>) -> Result<std::net::IpAddr, Status> {
    parse_ip(&ip.unwrap_or_default()).ok_or_else(|| invalid(what, "Invalid nat_ip"))
}

pub(super) async fn create_nat(
    svc: &GrpcService,
    request: Request<v1::CreateNatRequest>,
) -> Result<Response<v1::CreateNatResponse>, Status> {
    const WHAT: &str = "CreateNat";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let ip = nat_ip(WHAT, r.nat_ip)?;
    let (min, max) = port_range(WHAT, r.min_port, r.max_port)?;
    let preferred = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_nat(&id, ip, min, max, preferred));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(underlay) => {
            info!(interface_id = %id, nat_ip = %ip, min, max, %underlay, "NAT set");
            v1::CreateNatResponse {
                status: Some(ok_status()),
                underlay_route: text(underlay),
            }
        }
        Err(e) => v1::CreateNatResponse {
            status: Some(failed(WHAT, e)),
            underlay_route: Vec::new(),
        },
    }))
}

pub(super) async fn get_nat(
    svc: &GrpcService,
    request: Request<v1::GetNatRequest>,
) -> Result<Response<v1::GetNatResponse>, Status> {
    const WHAT: &str = "GetNat";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.get_nat(&id) {
        Ok(n) => v1::GetNatResponse {
            status: Some(ok_status()),
            nat_ip: Some(ip_to_proto(n.ip.into())),
            min_port: u32::from(n.min_port),
            max_port: u32::from(n.max_port),
            underlay_route: text(n.underlay),
        },
        Err(e) => v1::GetNatResponse {
            status: Some(failed(WHAT, e)),
            ..Default::default()
        },
    }))
}

pub(super) async fn delete_nat(
    svc: &GrpcService,
    request: Request<v1::DeleteNatRequest>,
) -> Result<Response<v1::DeleteNatResponse>, Status> {
    const WHAT: &str = "DeleteNat";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (result, change) = svc.state().deferred(|s| s.delete_nat(&id));
    svc.published(change).await;
    let status = outcome(WHAT, result, |n| {
        info!(interface_id = %id, nat_ip = %n.ip, "NAT removed");
    });
    Ok(Response::new(v1::DeleteNatResponse {
        status: Some(status),
    }))
}

pub(super) async fn list_local_nats(
    svc: &GrpcService,
    request: Request<v1::ListLocalNatsRequest>,
) -> Result<Response<v1::ListLocalNatsResponse>, Status> {
    const WHAT: &str = "ListLocalNats";
    let state = svc.read()?;
    let r = request.into_inner();
    let ip = nat_ip(WHAT, r.nat_ip)?;
    Ok(Response::new(match state.list_local_nats(ip) {
        // As dpservice: `nat_ip` is the interface's own address, `actual_nat_ip` the NAT
        // address; no underlay route.
        Ok(list) => v1::ListLocalNatsResponse {
            status: Some(ok_status()),
            nat_entries: list
                .iter()
                .map(|n| v1::NatEntry {
                    nat_ip: Some(ip_to_proto(n.iface_ipv4.into())),
                    min_port: u32::from(n.min_port),
                    max_port: u32::from(n.max_port),
                    underlay_route: Vec::new(),
                    vni: n.vni,
                    actual_nat_ip: Some(ip_to_proto(n.nat_ip.into())),
                })
                .collect(),
        },
        Err(e) => v1::ListLocalNatsResponse {
            status: Some(failed(WHAT, e)),
            nat_entries: Vec::new(),
        },
    }))
}

pub(super) async fn create_neighbor_nat(
    svc: &GrpcService,
    request: Request<v1::CreateNeighborNatRequest>,
) -> Result<Response<v1::CreateNeighborNatResponse>, Status> {
    const WHAT: &str = "CreateNeighborNat";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let ip = nat_ip(WHAT, r.nat_ip)?;
    let (min, max) = port_range(WHAT, r.min_port, r.max_port)?;
    let underlay =
        parse_ipv6(&r.underlay_route).ok_or_else(|| invalid(WHAT, "Invalid underlay_route"))?;
    let vni = r.vni;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_neighbor_nat(ip, vni, min, max, underlay));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(nat_ip = %ip, vni, min, max, %underlay, "Neighbor NAT added");
    });
    Ok(Response::new(v1::CreateNeighborNatResponse {
        status: Some(status),
    }))
}

pub(super) async fn delete_neighbor_nat(
    svc: &GrpcService,
    request: Request<v1::DeleteNeighborNatRequest>,
) -> Result<Response<v1::DeleteNeighborNatResponse>, Status> {
    const WHAT: &str = "DeleteNeighborNat";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let ip = nat_ip(WHAT, r.nat_ip)?;
    let (min, max) = port_range(WHAT, r.min_port, r.max_port)?;
    let vni = r.vni;
    let (result, change) = svc
        .state()
        .deferred(|s| s.delete_neighbor_nat(ip, vni, min, max));
    svc.published(change).await;
    let status = outcome(WHAT, result, |_| {
        info!(nat_ip = %ip, vni, min, max, "Neighbor NAT removed");
    });
    Ok(Response::new(v1::DeleteNeighborNatResponse {
        status: Some(status),
    }))
}

pub(super) async fn list_neighbor_nats(
    svc: &GrpcService,
    request: Request<v1::ListNeighborNatsRequest>,
) -> Result<Response<v1::ListNeighborNatsResponse>, Status> {
    const WHAT: &str = "ListNeighborNats";
    let state = svc.read()?;
    let r = request.into_inner();
    let ip = nat_ip(WHAT, r.nat_ip)?;
    Ok(Response::new(match state.list_neighbor_nats(ip) {
        // As dpservice: the NAT address as `actual_nat_ip`, `nat_ip` not set.
        Ok(list) => v1::ListNeighborNatsResponse {
            status: Some(ok_status()),
            nat_entries: list
                .iter()
                .map(|n| v1::NatEntry {
                    nat_ip: None,
                    min_port: u32::from(n.min_port),
                    max_port: u32::from(n.max_port),
                    underlay_route: text(n.underlay),
                    vni: n.vni,
                    actual_nat_ip: Some(ip_to_proto(n.nat_ip.into())),
                })
                .collect(),
        },
        Err(e) => v1::ListNeighborNatsResponse {
            status: Some(failed(WHAT, e)),
            nat_entries: Vec::new(),
        },
    }))
}
