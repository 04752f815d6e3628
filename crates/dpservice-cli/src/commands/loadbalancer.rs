//! `create|get|list|delete loadbalancer`, `create|list|delete lbtarget`

use dp_proto::v1;

use super::{
    addr_bytes, call, check, ip_to_proto, parse_wire_addr, parse_wire_addr_or_zero, stable_sort,
    Client, Ctx,
};
use crate::cli::{
    go_quote, require, CreateLoadBalancer, IdArg, LbTargetArgs, ListLbTargets, OptIdArg,
};
use crate::error::CliError;
use crate::types::*;

/// `api.StringLbportToLbport`: `TCP/443` and the like.
pub fn parse_lbport(s: &str) -> Result<LbPort, CliError> {
    let mut parts = s.split('/');
    let proto = parts.next().unwrap_or("").to_lowercase();
    let protocol = match proto.as_str() {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        // the Go CLI looks up "ICMPv6", which the enum does not have: 0
        "icmpv6" => 0,
        _ => return Err(CliError::msg("unsupported protocol")),
    };
    let port_str = parts.next().unwrap_or("");
    let port: i64 =
        go_atoi(port_str).map_err(|e| CliError::msg(e).context("error parsing port number"))?;
    Ok(LbPort {
        protocol,
        port: port as u32,
    })
}

/// Go's `strconv.Atoi`
pub fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

fn ports_from_proto(ports: &[v1::LbPort]) -> Vec<LbPort> {
    ports
        .iter()
        .map(|p| LbPort {
            protocol: p.protocol as u32,
            port: p.port,
        })
        .collect()
}

pub async fn create(ctx: &Ctx, o: CreateLoadBalancer) -> Result<(), CliError> {
    require(&[
        ("id", o.id.is_some()),
        ("vni", o.vni.is_some()),
        ("vip", o.vip.is_some()),
        ("lbports", o.lbports.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let ports = o
        .lbports
        .unwrap_or_default()
        .iter()
        .map(|p| parse_lbport(p).map_err(|e| e.context("error converting port")))
        .collect::<Result<Vec<_>, _>>()?;
    let id = o.id.unwrap_or_default();
    let vni = o.vni.unwrap_or_default();
    let vip = Addr(o.vip);
    let underlay = o
        .underlay
        .map(Addr::ip)
        .unwrap_or_else(Addr::v6_unspecified);
    let wrap = |e: CliError| e.context("error creating loadbalancer");
    let res = call(
        client.create_load_balancer(v1::CreateLoadBalancerRequest {
            loadbalancer_id: id.clone().into_bytes(),
            loadbalanced_ip: Some(ip_to_proto(&vip)),
            vni,
            loadbalanced_ports: ports
                .iter()
                .map(|p| v1::LbPort {
                    port: p.port,
                    protocol: p.protocol as i32,
                })
                .collect(),
            preferred_underlay_route: addr_bytes(&underlay),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let ul = parse_wire_addr(&res.underlay_route)
        .map_err(|e| wrap(e.context("error parsing underlay route")))?;
    let lb = LoadBalancer {
        kind: kind::LOAD_BALANCER.into(),
        metadata: LoadBalancerMeta { id },
        spec: LoadBalancerSpec {
            vni,
            loadbalanced_ip: Some(vip),
            loadbalanced_ports: ports,
            underlay_route: Some(ul),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, underlay route: {ul}"), &lb)
}

pub async fn get(ctx: &Ctx, o: OptIdArg) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    if o.id.is_empty() {
        return list(ctx, "").await;
    }
    let wrap = |e: CliError| e.context("error getting loadbalancer");
    let res = call(
        client.get_load_balancer(v1::GetLoadBalancerRequest {
            loadbalancer_id: o.id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let ul = parse_wire_addr_or_zero(&res.underlay_route)
        .map_err(|e| wrap(e.context("error parsing underlay ip")))?;
    let ip = parse_wire_addr_or_zero(&res.loadbalanced_ip.clone().unwrap_or_default().address)
        .map_err(|e| wrap(e.context("error parsing lb ip")))?;
    let lb = LoadBalancer {
        kind: kind::LOAD_BALANCER.into(),
        metadata: LoadBalancerMeta { id: o.id },
        spec: LoadBalancerSpec {
            vni: res.vni,
            loadbalanced_ip: Some(ip),
            loadbalanced_ports: ports_from_proto(&res.loadbalanced_ports),
            underlay_route: Some(ul),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("", &lb)
}

async fn fetch_all(client: &mut Client) -> Result<LoadBalancerList, CliError> {
    let res = client
        .list_load_balancers(v1::ListLoadBalancersRequest {})
        .await?
        .into_inner();
    check(&res.status)?;
    let mut items = Vec::new();
    for lb in &res.loadbalancers {
        let ul = parse_wire_addr_or_zero(&lb.underlay_route)
            .map_err(|e| e.context("error parsing underlay ip"))?;
        let ip = parse_wire_addr_or_zero(&lb.ip.clone().unwrap_or_default().address)
            .map_err(|e| e.context("error parsing lb ip"))?;
        items.push(LoadBalancer {
            kind: kind::LOAD_BALANCER.into(),
            metadata: LoadBalancerMeta {
                id: String::from_utf8_lossy(&lb.id).into_owned(),
            },
            spec: LoadBalancerSpec {
                vni: lb.vni,
                loadbalanced_ip: Some(ip),
                loadbalanced_ports: ports_from_proto(&lb.ports),
                underlay_route: Some(ul),
            },
            status: Status::default(),
        });
    }
    Ok(LoadBalancerList {
        kind: kind::LOAD_BALANCER_LIST.into(),
        metadata: Empty {},
        status: Status::from_proto(res.status.as_ref()),
        items: Some(items),
    })
}

pub async fn list(ctx: &Ctx, sort_by: &str) -> Result<(), CliError> {
    let mut client = ctx
        .connect()
        .await
        .map_err(|e| e.context("error getting dpdk client"))?;
    let mut list = fetch_all(&mut client)
        .await
        .map_err(|e| e.context("error listing loadbalancers"))?;
    let key = sort_by.to_lowercase();
    let ip = |l: &LoadBalancer| go_opt(l.spec.loadbalanced_ip.as_ref());
    stable_sort(list.items.get_or_insert_with(Vec::new), |a, b| {
        match key.as_str() {
            "vni" if a.spec.vni != b.spec.vni => a.spec.vni < b.spec.vni,
            "vni" => ip(a) < ip(b),
            "ip" if ip(a) != ip(b) => ip(a) < ip(b),
            "ip" => a.spec.vni < b.spec.vni,
            "underlayroute" => {
                go_opt(a.spec.underlay_route.as_ref()) < go_opt(b.spec.underlay_route.as_ref())
            }
            _ => a.metadata.id < b.metadata.id,
        }
    });
    ctx.print("", &list)
}

pub async fn delete(ctx: &Ctx, o: IdArg) -> Result<(), CliError> {
    require(&[("id", o.id.is_some())])?;
    let mut client = ctx.client().await?;
    let id = o.id.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting loadbalancer");
    let res = call(
        client.delete_load_balancer(v1::DeleteLoadBalancerRequest {
            loadbalancer_id: id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let lb = LoadBalancer {
        kind: kind::LOAD_BALANCER.into(),
        metadata: LoadBalancerMeta { id },
        status: Status::from_proto(res.status.as_ref()),
        ..Default::default()
    };
    ctx.print("deleted", &lb)
}

pub async fn create_target(ctx: &Ctx, o: LbTargetArgs) -> Result<(), CliError> {
    require(&[
        ("target-ip", o.target_ip.is_some()),
        ("lb-id", o.lb_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let lb_id = o.lb_id.unwrap_or_default();
    let ip = Addr(o.target_ip);
    let wrap = |e: CliError| e.context("error creating loadbalancer target");
    let res = call(
        client.create_load_balancer_target(v1::CreateLoadBalancerTargetRequest {
            loadbalancer_id: lb_id.clone().into_bytes(),
            target_ip: Some(ip_to_proto(&ip)),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let t = LoadBalancerTarget {
        kind: kind::LOAD_BALANCER_TARGET.into(),
        metadata: LoadBalancerTargetMeta {
            loadbalancer_id: lb_id,
        },
        spec: LoadBalancerTargetSpec {
            target_ip: Some(ip),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("created", &t)
}

pub async fn delete_target(ctx: &Ctx, o: LbTargetArgs) -> Result<(), CliError> {
    require(&[
        ("target-ip", o.target_ip.is_some()),
        ("lb-id", o.lb_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let lb_id = o.lb_id.unwrap_or_default();
    let ip = Addr(o.target_ip);
    // (sic) the Go CLI reports failures of this command with this text
    let wrap = |e: CliError| e.context("error deleting neighbor nat");
    let res = call(
        client.delete_load_balancer_target(v1::DeleteLoadBalancerTargetRequest {
            loadbalancer_id: lb_id.clone().into_bytes(),
            target_ip: Some(ip_to_proto(&ip)),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let t = LoadBalancerTarget {
        kind: kind::LOAD_BALANCER_TARGET.into(),
        metadata: LoadBalancerTargetMeta {
            loadbalancer_id: lb_id,
        },
        spec: LoadBalancerTargetSpec::default(),
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("deleted", &t)
}

pub async fn list_targets(ctx: &Ctx, o: ListLbTargets) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let wrap = |e: CliError| e.context("error listing loadbalancer targets");
    let res = call(
        client.list_load_balancer_targets(v1::ListLoadBalancerTargetsRequest {
            loadbalancer_id: o.lb_id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let mut items = Vec::new();
    for ip in &res.target_ips {
        let addr = parse_wire_addr(&ip.address)
            .map_err(|e| wrap(e.context("error parsing IP address")))?;
        items.push(LoadBalancerTarget {
            kind: kind::LOAD_BALANCER_TARGET.into(),
            metadata: LoadBalancerTargetMeta {
                loadbalancer_id: o.lb_id.clone(),
            },
            spec: LoadBalancerTargetSpec {
                target_ip: Some(addr),
            },
            status: Status::default(),
        });
    }
    stable_sort(&mut items, |a, b| {
        go_opt(a.spec.target_ip.as_ref()) < go_opt(b.spec.target_ip.as_ref())
    });
    let list = LoadBalancerTargetList {
        kind: kind::LOAD_BALANCER_TARGET_LIST.into(),
        metadata: LoadBalancerTargetMeta {
            loadbalancer_id: o.lb_id,
        },
        status: Status::from_proto(res.status.as_ref()),
        items: Some(items),
    };
    ctx.print("", &list)
}
