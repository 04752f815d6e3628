//! VNI RPCs: CheckVniInUse, ResetVni.

use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{failed, invalid, outcome};
use super::GrpcService;
use crate::errors::ok_status;
use crate::state::VniType;

/// The `type` selector of CheckVniInUse / ResetVni.
pub(super) fn parse_vni_type(t: i32) -> Option<VniType> {
    match v1::VniType::try_from(t).ok()? {
        v1::VniType::VniIpv4 => Some(VniType::Ipv4),
        v1::VniType::VniIpv6 => Some(VniType::Ipv6),
        v1::VniType::VniBoth => Some(VniType::Both),
    }
}

pub(super) async fn check_vni_in_use(
    svc: &GrpcService,
    request: Request<v1::CheckVniInUseRequest>,
) -> Result<Response<v1::CheckVniInUseResponse>, Status> {
    const WHAT: &str = "CheckVniInUse";
    let state = svc.read()?;
    let r = request.into_inner();
    let ty = parse_vni_type(r.r#type).ok_or_else(|| invalid(WHAT, "Invalid type"))?;
    Ok(Response::new(match state.vni_in_use(r.vni, ty) {
        Ok(in_use) => v1::CheckVniInUseResponse {
            status: Some(ok_status()),
            in_use,
        },
        Err(e) => v1::CheckVniInUseResponse {
            status: Some(failed(WHAT, e)),
            in_use: false,
        },
    }))
}

pub(super) async fn reset_vni(
    svc: &GrpcService,
    request: Request<v1::ResetVniRequest>,
) -> Result<Response<v1::ResetVniResponse>, Status> {
    const WHAT: &str = "ResetVni";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let ty = parse_vni_type(r.r#type).ok_or_else(|| invalid(WHAT, "Invalid type"))?;
    let (result, change) = svc.state().deferred(|s| s.reset_vni(r.vni, ty));
    svc.published(change).await;
    let status = outcome(WHAT, result, |_| {
        info!(vni = r.vni, "VNI reset");
    });
    Ok(Response::new(v1::ResetVniResponse {
        status: Some(status),
    }))
}
