//! Route RPCs: CreateRoute, DeleteRoute, ListRoutes.

use dp_proto::v1;
use std::net::IpAddr;

use dp_proto::ip_to_proto;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{failed, invalid, outcome, parse_ip, route_prefix};
use super::GrpcService;
use crate::errors::ok_status;

pub(super) async fn list_routes(
    svc: &GrpcService,
    request: Request<v1::ListRoutesRequest>,
) -> Result<Response<v1::ListRoutesResponse>, Status> {
    const WHAT: &str = "ListRoutes";
    let state = svc.read()?;
    let vni = request.into_inner().vni;
    Ok(Response::new(match state.list_routes(vni) {
        Ok(routes) => v1::ListRoutesResponse {
            status: Some(ok_status()),
            routes: routes
                .iter()
                .map(|r| v1::Route {
                    prefix: Some(v1::Prefix {
                        ip: Some(ip_to_proto(r.addr)),
                        length: u32::from(r.len),
                        underlay_route: Vec::new(),
                    }),
                    nexthop_vni: r.nexthop_vni,
                    nexthop_address: Some(ip_to_proto(IpAddr::V6(r.nexthop))),
                    weight: 0,
                })
                .collect(),
        },
        Err(e) => v1::ListRoutesResponse {
            status: Some(failed(WHAT, e)),
            routes: Vec::new(),
        },
    }))
}

pub(super) async fn create_route(
    svc: &GrpcService,
    request: Request<v1::CreateRouteRequest>,
) -> Result<Response<v1::CreateRouteResponse>, Status> {
    const WHAT: &str = "CreateRoute";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let route = r.route.unwrap_or_default();
    let (addr, len) = route_prefix(WHAT, route.prefix)?;
    let nexthop = parse_ip(&route.nexthop_address.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid route.nexthop_address"))?;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_route(r.vni, addr, len, route.nexthop_vni, nexthop));
    svc.published(change).await;
    let status = outcome(WHAT, result, |_| {
        info!(
            vni = r.vni,
            prefix = %addr,
            len,
            nexthop_vni = route.nexthop_vni,
            %nexthop,
            "Route added"
        );
    });
    Ok(Response::new(v1::CreateRouteResponse {
        status: Some(status),
    }))
}

pub(super) async fn delete_route(
    svc: &GrpcService,
    request: Request<v1::DeleteRouteRequest>,
) -> Result<Response<v1::DeleteRouteResponse>, Status> {
    const WHAT: &str = "DeleteRoute";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let (addr, len) = route_prefix(WHAT, r.route.unwrap_or_default().prefix)?;
    let (result, change) = svc.state().deferred(|s| s.delete_route(r.vni, addr, len));
    svc.published(change).await;
    let status = outcome(WHAT, result, |_| {
        info!(vni = r.vni, prefix = %addr, len, "Route removed");
    });
    Ok(Response::new(v1::DeleteRouteResponse {
        status: Some(status),
    }))
}
