//! `create|list|delete prefix` and `create|list|delete lbprefix`

use dp_proto::v1;

use super::{
    addr_bytes, call, check, interface, parse_wire_addr, prefix_to_proto, route, stable_sort,
    Client, Ctx,
};
use crate::cli::{require, DeletePrefixArgs, ListPrefixes, PrefixArgs};
use crate::error::CliError;
use crate::types::*;

/// Interface prefixes or loadbalancer (target) prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prefix,
    LoadBalancer,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Prefix => "prefix",
            Kind::LoadBalancer => "loadbalancer prefix",
        }
    }
}

/// `api.ProtoPrefixToPrefix`
pub(crate) fn from_proto(
    interface_id: &str,
    p: &v1::Prefix,
    k: Kind,
) -> Result<PrefixObj, CliError> {
    let addr = parse_wire_addr(&p.ip.clone().unwrap_or_default().address)
        .map_err(|e| e.context("error parsing dpdk prefix address"))?;
    let ul = parse_wire_addr(&p.underlay_route)
        .map_err(|e| e.context("error parsing underlay route"))?;
    Ok(PrefixObj {
        kind: match k {
            Kind::Prefix => kind::PREFIX,
            Kind::LoadBalancer => kind::LOAD_BALANCER_PREFIX,
        }
        .into(),
        metadata: PrefixMeta {
            interface_id: interface_id.to_owned(),
            vni: 0,
        },
        spec: PrefixSpec {
            prefix: route::prefix_from(addr, p.length),
            underlay_route: Some(ul),
        },
        status: Status::default(),
    })
}

pub async fn create(ctx: &Ctx, o: PrefixArgs, k: Kind) -> Result<(), CliError> {
    require(&[
        ("prefix", o.prefix.is_some()),
        ("interface-id", o.interface_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let prefix = o.prefix.unwrap_or_default();
    let id = o.interface_id.unwrap_or_default();
    let underlay = o
        .underlay
        .map(Addr::ip)
        .unwrap_or_else(Addr::v6_unspecified);
    let wrap = |e: CliError| e.context(format!("error creating {}", k.what()));
    let (status, ul_bytes) = match k {
        Kind::Prefix => {
            let req = v1::CreatePrefixRequest {
                interface_id: id.clone().into_bytes(),
                prefix: Some(prefix_to_proto(&prefix)),
                preferred_underlay_route: addr_bytes(&underlay),
            };
            let r = call(client.create_prefix(req), |r| &r.status, wrap).await?;
            (r.status, r.underlay_route)
        }
        Kind::LoadBalancer => {
            let req = v1::CreateLoadBalancerPrefixRequest {
                interface_id: id.clone().into_bytes(),
                prefix: Some(prefix_to_proto(&prefix)),
                preferred_underlay_route: addr_bytes(&underlay),
            };
            let r = call(client.create_load_balancer_prefix(req), |r| &r.status, wrap).await?;
            (r.status, r.underlay_route)
        }
    };
    let ul =
        parse_wire_addr(&ul_bytes).map_err(|e| wrap(e.context("error parsing underlay route")))?;
    let op = format!("created, underlay route: {ul}");
    let spec = PrefixSpec {
        prefix,
        underlay_route: Some(ul),
    };
    let status = Status::from_proto(status.as_ref());
    match k {
        Kind::Prefix => ctx.print(
            &op,
            &PrefixObj {
                kind: kind::PREFIX.into(),
                metadata: PrefixMeta {
                    interface_id: id,
                    vni: 0,
                },
                spec,
                status,
            },
        ),
        Kind::LoadBalancer => ctx.print(
            &op,
            &LoadBalancerPrefix {
                kind: kind::LOAD_BALANCER_PREFIX.into(),
                metadata: LoadBalancerPrefixMeta { interface_id: id },
                spec,
                status,
            },
        ),
    }
}

pub async fn delete(ctx: &Ctx, o: DeletePrefixArgs, k: Kind) -> Result<(), CliError> {
    require(&[
        ("prefix", o.prefix.is_some()),
        ("interface-id", o.interface_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let prefix = o.prefix.unwrap_or_default();
    let id = o.interface_id.unwrap_or_default();
    let wrap = |e: CliError| e.context(format!("error deleting {}", k.what()));
    let status = match k {
        Kind::Prefix => {
            let req = v1::DeletePrefixRequest {
                interface_id: id.clone().into_bytes(),
                prefix: Some(prefix_to_proto(&prefix)),
            };
            call(client.delete_prefix(req), |r| &r.status, wrap)
                .await?
                .status
        }
        Kind::LoadBalancer => {
            let req = v1::DeleteLoadBalancerPrefixRequest {
                interface_id: id.clone().into_bytes(),
                prefix: Some(prefix_to_proto(&prefix)),
            };
            call(client.delete_load_balancer_prefix(req), |r| &r.status, wrap)
                .await?
                .status
        }
    };
    let spec = PrefixSpec {
        prefix,
        underlay_route: None,
    };
    let status = Status::from_proto(status.as_ref());
    match k {
        Kind::Prefix => ctx.print(
            "deleted",
            &PrefixObj {
                kind: kind::PREFIX.into(),
                metadata: PrefixMeta {
                    interface_id: id,
                    vni: 0,
                },
                spec,
                status,
            },
        ),
        Kind::LoadBalancer => ctx.print(
            "deleted",
            &LoadBalancerPrefix {
                kind: kind::LOAD_BALANCER_PREFIX.into(),
                metadata: LoadBalancerPrefixMeta { interface_id: id },
                spec,
                status,
            },
        ),
    }
}

/// `client.ListPrefixes` / `client.ListLoadBalancerPrefixes`
pub async fn fetch_all(client: &mut Client, id: &str, k: Kind) -> Result<PrefixList, CliError> {
    let (status, prefixes) = match k {
        Kind::Prefix => {
            let r = client
                .list_prefixes(v1::ListPrefixesRequest {
                    interface_id: id.as_bytes().to_vec(),
                })
                .await?
                .into_inner();
            (r.status, r.prefixes)
        }
        Kind::LoadBalancer => {
            let r = client
                .list_load_balancer_prefixes(v1::ListLoadBalancerPrefixesRequest {
                    interface_id: id.as_bytes().to_vec(),
                })
                .await?
                .into_inner();
            (r.status, r.prefixes)
        }
    };
    check(&status)?;
    let items = prefixes
        .iter()
        .map(|p| from_proto(id, p, k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PrefixList {
        kind: match k {
            Kind::Prefix => kind::PREFIX_LIST,
            Kind::LoadBalancer => kind::LOAD_BALANCER_PREFIX_LIST,
        }
        .into(),
        metadata: PrefixListMeta {
            interface_id: id.to_owned(),
        },
        status: Status::from_proto(status.as_ref()),
        items: Some(items),
    })
}

pub async fn list(ctx: &Ctx, o: ListPrefixes, k: Kind) -> Result<(), CliError> {
    let mut client = ctx
        .connect()
        .await
        .map_err(|e| e.context("error creating client"))?;
    let plural = match k {
        Kind::Prefix => "prefixes",
        Kind::LoadBalancer => "loadbalancer prefixes",
    };
    let mut list = if o.interface_id.is_empty() {
        let ifaces = interface::fetch_all(&mut client)
            .await
            .map_err(|e| e.context("error listing interfaces"))?;
        let mut all: Option<Vec<PrefixObj>> = None;
        for iface in ifaces.items.unwrap_or_default() {
            let got = fetch_all(&mut client, &iface.metadata.id, k)
                .await
                .map_err(|e| e.context(format!("error getting {plural}")))?;
            let mut items = got.items.unwrap_or_default();
            for p in &mut items {
                p.metadata.vni = iface.spec.vni;
            }
            if !items.is_empty() {
                all.get_or_insert_with(Vec::new).extend(items);
            }
        }
        PrefixList {
            kind: kind::PREFIX_LIST.into(),
            items: all,
            ..Default::default()
        }
    } else {
        let mut list = fetch_all(&mut client, &o.interface_id, k)
            .await
            .map_err(|e| e.context(format!("error listing {plural}")))?;
        let iface = interface::fetch(&mut client, &o.interface_id)
            .await
            .map_err(|e| e.context("error getting interface"))?;
        for p in list.items.iter_mut().flatten() {
            p.metadata.vni = iface.spec.vni;
        }
        list
    };
    let key = o.sort_by.to_lowercase();
    if let Some(items) = list.items.as_mut() {
        stable_sort(items, |a, b| match key.as_str() {
            "underlayroute" => {
                go_opt(a.spec.underlay_route.as_ref()) < go_opt(b.spec.underlay_route.as_ref())
            }
            _ => a.spec.prefix.to_string() < b.spec.prefix.to_string(),
        });
    }
    ctx.print("", &list)
}
