//! VIP RPCs: CreateVip, GetVip, DeleteVip (request conversion as dpservice's
//! `CreateVipCall::FillRequest` and friends).

use dp_proto::ip_to_proto;
use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{failed, interface_id, invalid, outcome, parse_ip, preferred_underlay, text};
use super::GrpcService;
use crate::errors::ok_status;

pub(super) async fn create_vip(
    svc: &GrpcService,
    request: Request<v1::CreateVipRequest>,
) -> Result<Response<v1::CreateVipResponse>, Status> {
    const WHAT: &str = "CreateVip";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let ip =
        parse_ip(&r.vip_ip.unwrap_or_default()).ok_or_else(|| invalid(WHAT, "Invalid vip_ip"))?;
    let preferred = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let (result, change) = svc.state().deferred(|s| s.create_vip(&id, ip, preferred));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(underlay) => {
            info!(interface_id = %id, vip = %ip, %underlay, "VIP set");
            v1::CreateVipResponse {
                status: Some(ok_status()),
                underlay_route: text(underlay),
            }
        }
        Err(e) => v1::CreateVipResponse {
            status: Some(failed(WHAT, e)),
            underlay_route: Vec::new(),
        },
    }))
}

pub(super) async fn get_vip(
    svc: &GrpcService,
    request: Request<v1::GetVipRequest>,
) -> Result<Response<v1::GetVipResponse>, Status> {
    const WHAT: &str = "GetVip";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.get_vip(&id) {
        Ok(v) => v1::GetVipResponse {
            status: Some(ok_status()),
            vip_ip: Some(ip_to_proto(v.ip.into())),
            underlay_route: text(v.underlay),
        },
        Err(e) => v1::GetVipResponse {
            status: Some(failed(WHAT, e)),
            ..Default::default()
        },
    }))
}

pub(super) async fn delete_vip(
    svc: &GrpcService,
    request: Request<v1::DeleteVipRequest>,
) -> Result<Response<v1::DeleteVipResponse>, Status> {
    const WHAT: &str = "DeleteVip";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (result, change) = svc.state().deferred(|s| s.delete_vip(&id));
    svc.published(change).await;
    let status = outcome(WHAT, result, |v| {
        info!(interface_id = %id, vip = %v.ip, "VIP removed");
    });
    Ok(Response::new(v1::DeleteVipResponse {
        status: Some(status),
    }))
}
