//! Initialization and version RPCs: CheckInitialized, Initialize, GetVersion.

use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::{debug, info};

use super::fields::{fixed_str, invalid};
use super::{GrpcService, VERSION_SIZE};
use crate::errors::ok_status;
use crate::state::State;

pub(super) async fn check_initialized(
    svc: &GrpcService,
    _request: Request<v1::CheckInitializedRequest>,
) -> Result<Response<v1::CheckInitializedResponse>, Status> {
    let _state = svc.initialized()?;
    Ok(Response::new(v1::CheckInitializedResponse {
        status: Some(ok_status()),
        uuid: svc.shared.uuid.clone(),
    }))
}

pub(super) async fn initialize(
    svc: &GrpcService,
    _request: Request<v1::InitializeRequest>,
) -> Result<Response<v1::InitializeResponse>, Status> {
    let ((), change) = svc.state().deferred(State::initialize);
    svc.published(change).await;
    info!(uuid = %svc.shared.uuid, "Initialized");
    Ok(Response::new(v1::InitializeResponse {
        status: Some(ok_status()),
        uuid: svc.shared.uuid.clone(),
    }))
}

pub(super) async fn get_version(
    svc: &GrpcService,
    request: Request<v1::GetVersionRequest>,
) -> Result<Response<v1::GetVersionResponse>, Status> {
    let _state = svc.initialized()?;
    let r = request.into_inner();
    const WHAT: &str = "GetVersion";
    debug!(
        client_protocol = %r.client_protocol,
        client_name = %r.client_name,
        client_version = %r.client_version,
        "Getting version for client"
    );
    if fixed_str(r.client_protocol.as_bytes(), VERSION_SIZE).is_none() {
        return Err(invalid(WHAT, "Invalid client_protocol"));
    }
    if fixed_str(r.client_name.as_bytes(), VERSION_SIZE).is_none() {
        return Err(invalid(WHAT, "Invalid client_name"));
    }
    if fixed_str(r.client_version.as_bytes(), VERSION_SIZE).is_none() {
        return Err(invalid(WHAT, "Invalid client_version"));
    }
    Ok(Response::new(v1::GetVersionResponse {
        status: Some(ok_status()),
        service_protocol: svc.shared.version.clone(),
        service_version: svc.shared.version.clone(),
    }))
}
