//! `create|list|delete route` (`get route` lists)

use dp_proto::v1;

use super::{call, check, ip_to_proto, parse_wire_addr, prefix_to_proto, stable_sort, Client, Ctx};
use crate::cli::{require, CreateRoute, DeleteRoute, ListRoutes};
use crate::error::CliError;
use crate::types::*;

/// `api.ProtoRouteToRoute`
pub fn from_proto(vni: u32, r: &v1::Route) -> Result<Route, CliError> {
    let p = r.prefix.clone().unwrap_or_default();
    let addr = parse_wire_addr(&p.ip.unwrap_or_default().address)
        .map_err(|e| e.context("error parsing prefix address"))?;
    let nh = parse_wire_addr(&r.nexthop_address.clone().unwrap_or_default().address)
        .map_err(|e| e.context("error parsing netxt hop address"))?;
    Ok(Route {
        kind: kind::ROUTE.into(),
        metadata: RouteMeta { vni },
        spec: RouteSpec {
            prefix: Some(prefix_from(addr, p.length)),
            next_hop: Some(RouteNextHop {
                vni: r.nexthop_vni,
                address: Some(nh),
            }),
        },
        status: Status::default(),
    })
}

/// `netip.PrefixFrom`: an out-of-range length gives the zero prefix.
pub fn prefix_from(addr: Addr, len: u32) -> Prefix {
    match addr.0 {
        Some(ip) if len <= if ip.is_ipv4() { 32 } else { 128 } => Prefix::new(ip, len as u8),
        _ => Prefix::default(),
    }
}

pub async fn create(ctx: &Ctx, o: CreateRoute) -> Result<(), CliError> {
    require(&[
        ("prefix", o.prefix.is_some()),
        ("next-hop-vni", o.next_hop_vni.is_some()),
        ("next-hop-ip", o.next_hop_ip.is_some()),
        ("vni", o.vni.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let prefix = o.prefix.unwrap_or_default();
    let nh_ip = Addr(o.next_hop_ip);
    let (vni, nh_vni) = (
        o.vni.unwrap_or_default(),
        o.next_hop_vni.unwrap_or_default(),
    );
    let wrap = |e: CliError| e.context("error creating route");
    let req = v1::CreateRouteRequest {
        vni,
        route: Some(v1::Route {
            prefix: Some(prefix_to_proto(&prefix)),
            nexthop_vni: nh_vni,
            nexthop_address: Some(ip_to_proto(&nh_ip)),
            weight: 100,
        }),
    };
    let res = call(client.create_route(req), |r| &r.status, wrap).await?;
    let route = Route {
        kind: kind::ROUTE.into(),
        metadata: RouteMeta { vni },
        spec: RouteSpec {
            prefix: Some(prefix),
            next_hop: Some(RouteNextHop {
                vni: nh_vni,
                address: Some(nh_ip),
            }),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, Next Hop IP: {nh_ip}"), &route)
}

pub async fn delete(ctx: &Ctx, o: DeleteRoute) -> Result<(), CliError> {
    require(&[("prefix", o.prefix.is_some()), ("vni", o.vni.is_some())])?;
    let mut client = ctx.client().await?;
    let prefix = o.prefix.unwrap_or_default();
    let vni = o.vni.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting route");
    let req = v1::DeleteRouteRequest {
        vni,
        route: Some(v1::Route {
            prefix: Some(prefix_to_proto(&prefix)),
            weight: 100,
            ..Default::default()
        }),
    };
    let res = call(client.delete_route(req), |r| &r.status, wrap).await?;
    let route = Route {
        kind: kind::ROUTE.into(),
        metadata: RouteMeta { vni },
        spec: RouteSpec {
            prefix: Some(prefix),
            next_hop: Some(RouteNextHop::default()),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("deleted", &route)
}

/// `client.ListRoutes`
pub async fn fetch_all(client: &mut Client, vni: u32) -> Result<RouteList, CliError> {
    let res = client
        .list_routes(v1::ListRoutesRequest { vni })
        .await?
        .into_inner();
    check(&res.status)?;
    let items = res
        .routes
        .iter()
        .map(|r| from_proto(vni, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteList {
        kind: kind::ROUTE_LIST.into(),
        metadata: RouteMeta { vni },
        status: Status::from_proto(res.status.as_ref()),
        items: Some(items),
    })
}

pub async fn list(ctx: &Ctx, o: ListRoutes) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let mut list = fetch_all(&mut client, o.vni)
        .await
        .map_err(|e| e.context("error listing routes"))?;
    let key = o.sort_by.to_lowercase();
    let nh = |r: &Route| r.spec.next_hop.clone().unwrap_or_default();
    stable_sort(list.items.get_or_insert_with(Vec::new), |a, b| {
        match key.as_str() {
            "nexthopvni" => nh(a).vni < nh(b).vni,
            "nexthopip" => go_opt(nh(a).address.as_ref()) < go_opt(nh(b).address.as_ref()),
            _ => go_opt(a.spec.prefix.as_ref()) < go_opt(b.spec.prefix.as_ref()),
        }
    });
    ctx.print("", &list)
}
