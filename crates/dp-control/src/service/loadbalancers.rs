//! Load balancer RPCs: balancers, their targets and target prefixes (request conversion as
//! dpservice's `CreateLoadBalancerCall::FillRequest` and friends).

use dp_packet::IpProtocol;
use dp_proto::ip_to_proto;
use dp_proto::v1;
use dp_tables::LbPort;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{
    alias_prefix, failed, fixed_str, interface_id, invalid, outcome, parse_ip, preferred_underlay,
    text,
};
use super::GrpcService;
use crate::errors::ok_status;
use crate::state::LoadBalancerInfo;

/// Size of dpservice's load balancer id buffer (`DP_LB_ID_MAX_LEN`, NUL included).
pub const LB_ID_SIZE: usize = 64;
/// The largest VNI (24 bits).
const VNI_MAX: u32 = 0xff_ffff;

fn lb_id(what: &'static str, b: &[u8]) -> Result<String, Status> {
    fixed_str(b, LB_ID_SIZE).ok_or_else(|| invalid(what, "Invalid loadbalancer_id"))
}

/// The port list as dpservice's `FillRequest` checks it: TCP or UDP, 16-bit ports, no
/// duplicates, at most `max` entries.
fn lb_ports(what: &'static str, ports: &[v1::LbPort], max: usize) -> Result<Vec<LbPort>, Status> {
    if ports.len() > max {
        return Err(invalid(what, "Too many loadbalanced_ports"));
    }
    let mut out: Vec<LbPort> = Vec::with_capacity(ports.len());
    for p in ports {
        let port =
            u16::try_from(p.port).map_err(|_| invalid(what, "Invalid loadbalanced_ports.port"))?;
        let proto = match v1::Protocol::try_from(p.protocol) {
            Ok(v1::Protocol::Tcp) => IpProtocol::TCP,
            Ok(v1::Protocol::Udp) => IpProtocol::UDP,
            _ => return Err(invalid(what, "Invalid loadbalanced_ports.protocol")),
        };
        let entry = LbPort { proto, port };
        if out.contains(&entry) {
            return Err(invalid(what, "Duplicate loadbalanced_ports entry"));
        }
        out.push(entry);
    }
    Ok(out)
}

fn ports_to_proto(ports: &[LbPort]) -> Vec<v1::LbPort> {
    ports
        .iter()
        // dpservice's port list ends at a zero port: it never reports one.
        .filter(|p| p.port != 0)
        .map(|p| v1::LbPort {
            port: u32::from(p.port),
            protocol: if p.proto == IpProtocol::TCP {
                v1::Protocol::Tcp as i32
            } else {
                v1::Protocol::Udp as i32
            },
        })
        .collect()
}

fn lb_to_proto(lb: &LoadBalancerInfo) -> v1::Loadbalancer {
    v1::Loadbalancer {
        id: lb.id.as_bytes().to_vec(),
        vni: lb.vni,
        ip: Some(ip_to_proto(lb.ip)),
        ports: ports_to_proto(&lb.ports),
        underlay_route: text(lb.underlay),
    }
}

pub(super) async fn create_load_balancer(
    svc: &GrpcService,
    request: Request<v1::CreateLoadBalancerRequest>,
) -> Result<Response<v1::CreateLoadBalancerResponse>, Status> {
    const WHAT: &str = "CreateLoadBalancer";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = lb_id(WHAT, &r.loadbalancer_id)?;
    if r.vni > VNI_MAX {
        return Err(invalid(WHAT, "VNI exceeds 24-bit range"));
    }
    let ip = parse_ip(&r.loadbalanced_ip.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid loadbalanced_ip"))?;
    let max_ports = svc.state().limits().lb_ports;
    let ports = lb_ports(WHAT, &r.loadbalanced_ports, max_ports)?;
    let preferred = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let vni = r.vni;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_load_balancer(&id, vni, ip, ports, preferred));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(underlay) => {
            info!(loadbalancer_id = %id, vni, ip = %ip, %underlay, "Load balancer created");
            v1::CreateLoadBalancerResponse {
                status: Some(ok_status()),
                underlay_route: text(underlay),
            }
        }
        Err(e) => v1::CreateLoadBalancerResponse {
            status: Some(failed(WHAT, e)),
            underlay_route: Vec::new(),
        },
    }))
}

pub(super) async fn get_load_balancer(
    svc: &GrpcService,
    request: Request<v1::GetLoadBalancerRequest>,
) -> Result<Response<v1::GetLoadBalancerResponse>, Status> {
    const WHAT: &str = "GetLoadBalancer";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = lb_id(WHAT, &r.loadbalancer_id)?;
    Ok(Response::new(match state.get_load_balancer(&id) {
        Ok(lb) => v1::GetLoadBalancerResponse {
            status: Some(ok_status()),
            loadbalanced_ip: Some(ip_to_proto(lb.ip)),
            vni: lb.vni,
            loadbalanced_ports: ports_to_proto(&lb.ports),
            underlay_route: text(lb.underlay),
        },
        Err(e) => v1::GetLoadBalancerResponse {
            status: Some(failed(WHAT, e)),
            ..Default::default()
        },
    }))
}

pub(super) async fn list_load_balancers(
    svc: &GrpcService,
    _request: Request<v1::ListLoadBalancersRequest>,
) -> Result<Response<v1::ListLoadBalancersResponse>, Status> {
    let state = svc.read()?;
    Ok(Response::new(v1::ListLoadBalancersResponse {
        status: Some(ok_status()),
        loadbalancers: state
            .list_load_balancers()
            .iter()
            .map(lb_to_proto)
            .collect(),
    }))
}

pub(super) async fn delete_load_balancer(
    svc: &GrpcService,
    request: Request<v1::DeleteLoadBalancerRequest>,
) -> Result<Response<v1::DeleteLoadBalancerResponse>, Status> {
    const WHAT: &str = "DeleteLoadBalancer";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = lb_id(WHAT, &r.loadbalancer_id)?;
    let (result, change) = svc.state().deferred(|s| s.delete_load_balancer(&id));
    svc.published(change).await;
    let status = outcome(WHAT, result, |lb| {
        info!(loadbalancer_id = %id, vni = lb.vni, ip = %lb.ip, "Load balancer removed");
    });
    Ok(Response::new(v1::DeleteLoadBalancerResponse {
        status: Some(status),
    }))
}

pub(super) async fn create_load_balancer_target(
    svc: &GrpcService,
    request: Request<v1::CreateLoadBalancerTargetRequest>,
) -> Result<Response<v1::CreateLoadBalancerTargetResponse>, Status> {
    const WHAT: &str = "CreateLoadBalancerTarget";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = lb_id(WHAT, &r.loadbalancer_id)?;
    let target = parse_ip(&r.target_ip.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid target_ip"))?;
    let (result, change) = svc.state().deferred(|s| s.create_lb_target(&id, target));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(loadbalancer_id = %id, %target, "Load balancer target added");
    });
    Ok(Response::new(v1::CreateLoadBalancerTargetResponse {
        status: Some(status),
    }))
}

pub(super) async fn delete_load_balancer_target(
    svc: &GrpcService,
    request: Request<v1::DeleteLoadBalancerTargetRequest>,
) -> Result<Response<v1::DeleteLoadBalancerTargetResponse>, Status> {
    const WHAT: &str = "DeleteLoadBalancerTarget";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = lb_id(WHAT, &r.loadbalancer_id)?;
    let target = parse_ip(&r.target_ip.unwrap_or_default())
        .ok_or_else(|| invalid(WHAT, "Invalid target_ip"))?;
    let (result, change) = svc.state().deferred(|s| s.delete_lb_target(&id, target));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(loadbalancer_id = %id, %target, "Load balancer target removed");
    });
    Ok(Response::new(v1::DeleteLoadBalancerTargetResponse {
        status: Some(status),
    }))
}

pub(super) async fn list_load_balancer_targets(
    svc: &GrpcService,
    request: Request<v1::ListLoadBalancerTargetsRequest>,
) -> Result<Response<v1::ListLoadBalancerTargetsResponse>, Status> {
    const WHAT: &str = "ListLoadBalancerTargets";
    let state = svc.read()?;
    let r = request.into_inner();
    // An empty id lists the targets of every balancer (as dpservice).
    let id = if r.loadbalancer_id.is_empty() {
        None
    } else {
        Some(lb_id(WHAT, &r.loadbalancer_id)?)
    };
    Ok(Response::new(match state.list_lb_targets(id.as_deref()) {
        Ok(targets) => v1::ListLoadBalancerTargetsResponse {
            status: Some(ok_status()),
            target_ips: targets.into_iter().map(|t| ip_to_proto(t.into())).collect(),
        },
        Err(e) => v1::ListLoadBalancerTargetsResponse {
            status: Some(failed(WHAT, e)),
            target_ips: Vec::new(),
        },
    }))
}

pub(super) async fn create_load_balancer_prefix(
    svc: &GrpcService,
    request: Request<v1::CreateLoadBalancerPrefixRequest>,
) -> Result<Response<v1::CreateLoadBalancerPrefixResponse>, Status> {
    const WHAT: &str = "CreateLoadBalancerPrefix";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (addr, len) = alias_prefix(WHAT, r.prefix)?;
    let preferred = preferred_underlay(&svc.state(), &r.preferred_underlay_route)
        .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
    let (result, change) = svc
        .state()
        .deferred(|s| s.create_lb_prefix(&id, addr, len, preferred));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(underlay) => {
            info!(interface_id = %id, prefix = %addr, len, %underlay, "Load balancer prefix added");
            v1::CreateLoadBalancerPrefixResponse {
                status: Some(ok_status()),
                underlay_route: text(underlay),
            }
        }
        Err(e) => v1::CreateLoadBalancerPrefixResponse {
            status: Some(failed(WHAT, e)),
            underlay_route: Vec::new(),
        },
    }))
}

pub(super) async fn delete_load_balancer_prefix(
    svc: &GrpcService,
    request: Request<v1::DeleteLoadBalancerPrefixRequest>,
) -> Result<Response<v1::DeleteLoadBalancerPrefixResponse>, Status> {
    const WHAT: &str = "DeleteLoadBalancerPrefix";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let (addr, len) = alias_prefix(WHAT, r.prefix)?;
    let (result, change) = svc.state().deferred(|s| s.delete_lb_prefix(&id, addr, len));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(interface_id = %id, prefix = %addr, len, "Load balancer prefix removed");
    });
    Ok(Response::new(v1::DeleteLoadBalancerPrefixResponse {
        status: Some(status),
    }))
}

pub(super) async fn list_load_balancer_prefixes(
    svc: &GrpcService,
    request: Request<v1::ListLoadBalancerPrefixesRequest>,
) -> Result<Response<v1::ListLoadBalancerPrefixesResponse>, Status> {
    const WHAT: &str = "ListLoadBalancerPrefixes";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.list_lb_prefixes(&id) {
        Ok(list) => v1::ListLoadBalancerPrefixesResponse {
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
        Err(e) => v1::ListLoadBalancerPrefixesResponse {
            status: Some(failed(WHAT, e)),
            prefixes: Vec::new(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: v1::Protocol, port: u32) -> v1::LbPort {
        v1::LbPort {
            port,
            protocol: protocol as i32,
        }
    }

    #[test]
    fn port_lists_are_checked_as_dpservice_does() {
        let ok = lb_ports(
            "t",
            &[port(v1::Protocol::Tcp, 80), port(v1::Protocol::Udp, 80)],
            16,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let msg = |r: Result<Vec<LbPort>, Status>| r.unwrap_err().message().to_owned();
        assert_eq!(
            msg(lb_ports("t", &[port(v1::Protocol::Icmp, 22)], 16)),
            "Invalid loadbalanced_ports.protocol"
        );
        assert_eq!(
            msg(lb_ports("t", &[port(v1::Protocol::Udp, 65536)], 16)),
            "Invalid loadbalanced_ports.port"
        );
        assert_eq!(
            msg(lb_ports(
                "t",
                &[port(v1::Protocol::Tcp, 80), port(v1::Protocol::Tcp, 80)],
                16
            )),
            "Duplicate loadbalanced_ports entry"
        );
        let many: Vec<_> = (1..=17).map(|p| port(v1::Protocol::Tcp, p)).collect();
        assert_eq!(msg(lb_ports("t", &many, 16)), "Too many loadbalanced_ports");
        assert_eq!(lb_ports("t", &many[..16], 16).unwrap().len(), 16);
    }
}
