//! Alias prefix RPCs: CreatePrefix, DeletePrefix, ListPrefixes.

use dp_proto::ip_to_proto;
use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{
    alias_prefix, failed, interface_id, invalid, outcome, preferred_underlay, text,
};
use super::GrpcService;
use crate::errors::ok_status;

pub(super) async fn list_prefixes(
    svc: &GrpcService,
    request: Request<v1::ListPrefixesRequest>,
) -> Result<Response<v1::ListPrefixesResponse>, Status> {
    const WHAT: &str = "ListPrefixes";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.list_prefixes(&id) {
        Ok(list) => v1::ListPrefixesResponse {
            status: Some(ok_status()),
            prefixes: list
                .iter()
                .map(|p| v1::Prefix {
                    ip: Some(ip_to_proto(p.addr)),
                    length: u32::from(p.len),
                    underlay_route: text(p.underlay),
                })
                .collect(),
        },
        Err(e) => v1::ListPrefixesResponse {
            status: Some(failed(WHAT, e)),
            prefixes: Vec::new(),
        },
    }))
}

pub(super) async fn create_prefix(
    svc: &GrpcService,
    request: Request<v1::CreatePrefixRequest>,
) -> Result<Response<v1::CreatePrefixResponse>, Status> {
    const WHAT: &str = "CreatePrefix";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (addr, len) = alias_prefix(WHAT, r.prefix)?;
    let preferred = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_prefix(&id, addr, len, preferred));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(underlay) => {
            info!(interface_id = %id, prefix = %addr, len, %underlay, "Alias prefix added");
            v1::CreatePrefixResponse {
                status: Some(ok_status()),
                underlay_route: text(underlay),
            }
        }
        Err(e) => v1::CreatePrefixResponse {
            status: Some(failed(WHAT, e)),
            underlay_route: Vec::new(),
        },
    }))
}

pub(super) async fn delete_prefix(
    svc: &GrpcService,
    request: Request<v1::DeletePrefixRequest>,
) -> Result<Response<v1::DeletePrefixResponse>, Status> {
    const WHAT: &str = "DeletePrefix";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (addr, len) = alias_prefix(WHAT, r.prefix)?;
    let (result, change) = svc.state().deferred(|s| s.delete_prefix(&id, addr, len));
    svc.published(change).await;
    let status = outcome(WHAT, result, |_| {
        info!(interface_id = %id, prefix = %addr, len, "Alias prefix removed");
    });
    Ok(Response::new(v1::DeletePrefixResponse {
        status: Some(status),
    }))
}
