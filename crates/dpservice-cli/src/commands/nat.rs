//! `create|get|delete nat`, `list nats`, `create|delete neighbornat`

use dp_proto::v1;

use super::{
    addr_bytes, call, check, interface, ip_to_proto, parse_wire_addr, parse_wire_addr_or_zero,
    stable_sort, Client, Ctx,
};
use crate::cli::{
    require, CreateNat, CreateNeighborNat, InterfaceIdArg, ListNats, NeighborNatKey,
    OptInterfaceIdArg,
};
use crate::error::CliError;
use crate::types::*;

/// `client.GetNat` + `api.ProtoNatToNat`
pub async fn fetch(client: &mut Client, id: &str) -> Result<Nat, CliError> {
    let res = client
        .get_nat(v1::GetNatRequest {
            interface_id: id.as_bytes().to_vec(),
        })
        .await?
        .into_inner();
    check(&res.status)?;
    let ul = parse_wire_addr_or_zero(&res.underlay_route)
        .map_err(|e| e.context("error parsing underlay ip"))?;
    let ip = parse_wire_addr_or_zero(&res.nat_ip.clone().unwrap_or_default().address)
        .map_err(|e| e.context("error parsing nat ip"))?;
    Ok(Nat {
        kind: kind::NAT.into(),
        metadata: NatMeta {
            interface_id: id.to_owned(),
        },
        spec: NatSpec {
            nat_ip: Some(ip),
            min_port: res.min_port,
            max_port: res.max_port,
            underlay_route: Some(ul),
            ..Default::default()
        },
        status: Status::from_proto(res.status.as_ref()),
    })
}

pub async fn create(ctx: &Ctx, o: CreateNat) -> Result<(), CliError> {
    require(&[
        ("interface-id", o.interface_id.is_some()),
        ("minport", o.minport.is_some()),
        ("maxport", o.maxport.is_some()),
        ("nat-ip", o.nat_ip.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    let ip = Addr(o.nat_ip);
    let (min, max) = (o.minport.unwrap_or_default(), o.maxport.unwrap_or_default());
    let underlay = o
        .underlay
        .map(Addr::ip)
        .unwrap_or_else(Addr::v6_unspecified);
    let wrap = |e: CliError| e.context("error creating nat");
    let res = call(
        client.create_nat(v1::CreateNatRequest {
            interface_id: id.clone().into_bytes(),
            nat_ip: Some(ip_to_proto(&ip)),
            min_port: min,
            max_port: max,
            preferred_underlay_route: addr_bytes(&underlay),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let ul = parse_wire_addr(&res.underlay_route)
        .map_err(|e| wrap(e.context("error parsing underlay route")))?;
    let nat = Nat {
        kind: kind::NAT.into(),
        metadata: NatMeta { interface_id: id },
        spec: NatSpec {
            nat_ip: Some(ip),
            min_port: min,
            max_port: max,
            underlay_route: Some(ul),
            ..Default::default()
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, underlay route: {ul}"), &nat)
}

pub async fn get(ctx: &Ctx, o: OptInterfaceIdArg) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let wrap = |e: CliError| e.context("error getting nat");
    if o.interface_id.is_empty() {
        let ifaces = interface::fetch_all(&mut client)
            .await
            .map_err(|e| e.context("error listing interfaces"))?;
        let mut items: Option<Vec<Nat>> = None;
        for iface in ifaces.items.unwrap_or_default() {
            let nat = fetch(&mut client, &iface.metadata.id).await.map_err(wrap)?;
            items.get_or_insert_with(Vec::new).push(nat);
        }
        let list = NatList {
            kind: kind::NAT_LIST.into(),
            items,
            ..Default::default()
        };
        return ctx.print("", &list);
    }
    let nat = fetch(&mut client, &o.interface_id).await.map_err(wrap)?;
    ctx.print("", &nat)
}

pub async fn delete(ctx: &Ctx, o: InterfaceIdArg) -> Result<(), CliError> {
    require(&[("interface-id", o.interface_id.is_some())])?;
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting nat");
    let res = call(
        client.delete_nat(v1::DeleteNatRequest {
            interface_id: id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let nat = Nat {
        kind: kind::NAT.into(),
        metadata: NatMeta { interface_id: id },
        status: Status::from_proto(res.status.as_ref()),
        ..Default::default()
    };
    ctx.print("deleted", &nat)
}

/// `client.ListNats`
async fn fetch_list(
    client: &mut Client,
    nat_ip: Addr,
    nat_type: &str,
) -> Result<NatList, CliError> {
    let t = match nat_type.to_lowercase().as_str() {
        "local" | "1" => 1,
        "neigh" | "2" | "neighbor" => 2,
        "any" | "0" | "" => 0,
        _ => {
            return Err(CliError::msg(
                "nat type can be only: Any = 0/Local = 1/Neigh(bor) = 2",
            ))
        }
    };
    let req = Some(ip_to_proto(&nat_ip));
    let mut entries = Vec::new();
    let mut status = None;
    if t == 0 || t == 1 {
        let r = client
            .list_local_nats(v1::ListLocalNatsRequest {
                nat_ip: req.clone(),
            })
            .await?
            .into_inner();
        if t == 1 {
            check(&r.status)?;
            status = r.status;
        }
        entries.extend(r.nat_entries);
    }
    if t == 0 || t == 2 {
        let r = client
            .list_neighbor_nats(v1::ListNeighborNatsRequest { nat_ip: req })
            .await?
            .into_inner();
        if t == 2 {
            check(&r.status)?;
            status = r.status;
        }
        entries.extend(r.nat_entries);
    }
    entries_to_list(&entries, nat_ip, nat_type, status.as_ref())
}

/// The list the Go client builds from NAT entries.
pub(crate) fn entries_to_list(
    entries: &[v1::NatEntry],
    nat_ip: Addr,
    nat_type: &str,
    status: Option<&v1::Status>,
) -> Result<NatList, CliError> {
    // the Go client reuses one object for all entries: fields not set by an
    // entry keep the previous entry's value
    let mut nat = Nat::default();
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        if !e.underlay_route.is_empty() {
            let ul = parse_wire_addr(&e.underlay_route)
                .map_err(|e| e.context("error parsing underlay route"))?;
            nat.spec.underlay_route = Some(ul);
            nat.spec.nat_ip = None;
            nat.kind = kind::NEIGHBOR_NAT.into();
        } else if let Some(ip) = &e.nat_ip {
            let ip =
                parse_wire_addr(&ip.address).map_err(|e| e.context("error parsing natted ip"))?;
            nat.spec.nat_ip = Some(ip);
            nat.kind = kind::NAT.into();
        }
        if let Some(ip) = &e.actual_nat_ip {
            let ip = parse_wire_addr(&ip.address).map_err(|e| e.context("error parsing nat ip"))?;
            nat.spec.actual_nat_ip = Some(ip);
        }
        nat.spec.min_port = e.min_port;
        nat.spec.max_port = e.max_port;
        nat.spec.vni = e.vni;
        items.push(nat.clone());
    }
    Ok(NatList {
        kind: kind::NAT_LIST.into(),
        metadata: NatListMeta {
            nat_ip: Some(nat_ip),
            nat_type: nat_type.to_owned(),
        },
        status: Status::from_proto(status),
        items: Some(items),
    })
}

pub async fn list(ctx: &Ctx, o: ListNats) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let mut list = fetch_list(&mut client, Addr::ip(o.nat_ip), &o.nat_type)
        .await
        .map_err(|e| e.context("error listing nats"))?;
    let key = o.sort_by.to_lowercase();
    stable_sort(list.items.get_or_insert_with(Vec::new), |a, b| {
        match key.as_str() {
            "ip" => match (&a.spec.nat_ip, &b.spec.nat_ip) {
                (Some(x), Some(y)) => x.to_string() < y.to_string(),
                _ => true,
            },
            "minport" => a.spec.min_port < b.spec.min_port,
            "maxport" => a.spec.max_port < b.spec.max_port,
            "underlayroute" => match (&a.spec.underlay_route, &b.spec.underlay_route) {
                (Some(x), Some(y)) => x.to_string() < y.to_string(),
                _ => true,
            },
            _ => a.spec.vni < b.spec.vni,
        }
    });
    ctx.print("", &list)
}

pub async fn create_neighbor(ctx: &Ctx, o: CreateNeighborNat) -> Result<(), CliError> {
    let CreateNeighborNat {
        key: k,
        underlayroute,
    } = o;
    require(&[
        ("nat-ip", k.nat_ip.is_some()),
        ("vni", k.vni.is_some()),
        ("minport", k.minport.is_some()),
        ("maxport", k.maxport.is_some()),
        ("underlayroute", underlayroute.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let ip = Addr(k.nat_ip);
    let ul = Addr(underlayroute);
    let (vni, min, max) = (
        k.vni.unwrap_or_default(),
        k.minport.unwrap_or_default(),
        k.maxport.unwrap_or_default(),
    );
    let wrap = |e: CliError| e.context("error creating neighbor nat");
    let res = call(
        client.create_neighbor_nat(v1::CreateNeighborNatRequest {
            nat_ip: Some(ip_to_proto(&ip)),
            vni,
            min_port: min,
            max_port: max,
            underlay_route: ul.to_string().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let n = NeighborNat {
        kind: kind::NEIGHBOR_NAT.into(),
        metadata: NeighborNatMeta { nat_ip: Some(ip) },
        spec: NeighborNatSpec {
            vni,
            min_port: min,
            max_port: max,
            underlay_route: Some(ul),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, underlay route: {ul}"), &n)
}

pub async fn delete_neighbor(ctx: &Ctx, o: NeighborNatKey) -> Result<(), CliError> {
    require(&[
        ("nat-ip", o.nat_ip.is_some()),
        ("vni", o.vni.is_some()),
        ("minport", o.minport.is_some()),
        ("maxport", o.maxport.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let ip = Addr(o.nat_ip);
    let wrap = |e: CliError| e.context("error deleting neighbor nat");
    let res = call(
        client.delete_neighbor_nat(v1::DeleteNeighborNatRequest {
            nat_ip: Some(ip_to_proto(&ip)),
            vni: o.vni.unwrap_or_default(),
            min_port: o.minport.unwrap_or_default(),
            max_port: o.maxport.unwrap_or_default(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let n = NeighborNat {
        kind: kind::NEIGHBOR_NAT.into(),
        metadata: NeighborNatMeta { nat_ip: Some(ip) },
        spec: NeighborNatSpec::default(),
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("deleted", &n)
}
