//! `create|get|list|delete interface`

use dp_proto::v1;

use super::{
    addr_bytes, call, check, nat, parse_wire_addr, parse_wire_addr_or_zero, stable_sort, virtualip,
    Client, Ctx,
};
use crate::cli::{require, CreateInterface, IdArg, OptIdArg};
use crate::error::CliError;
use crate::types::*;

/// `api.ProtoInterfaceToInterface`
pub fn from_proto(p: &v1::Interface) -> Result<Interface, CliError> {
    let underlay = parse_wire_addr_or_zero(&p.underlay_route)
        .map_err(|e| e.context("error parsing underlay ip"))?;
    let ipv4 =
        parse_wire_addr(&p.primary_ipv4).map_err(|e| e.context("error parsing primary ipv4"))?;
    let ipv6 =
        parse_wire_addr(&p.primary_ipv6).map_err(|e| e.context("error parsing primary ipv6"))?;
    let m = p.metering_params.unwrap_or_default();
    Ok(Interface {
        kind: kind::INTERFACE.into(),
        metadata: InterfaceMeta {
            id: String::from_utf8_lossy(&p.id).into_owned(),
        },
        spec: InterfaceSpec {
            vni: p.vni,
            device: p.pci_name.clone(),
            primary_ipv4: Some(ipv4),
            primary_ipv6: Some(ipv6),
            underlay_route: Some(underlay),
            metering: Some(MeteringParams {
                total_rate: m.total_rate,
                public_rate: m.public_rate,
            }),
            hostname: p.hostname.clone(),
            ..Default::default()
        },
        status: Status::default(),
    })
}

pub async fn create(ctx: &Ctx, o: CreateInterface) -> Result<(), CliError> {
    require(&[
        ("id", o.id.is_some()),
        ("vni", o.vni.is_some()),
        ("ipv4", o.ipv4.is_some()),
        ("device", o.device.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let id = o.id.unwrap_or_default();
    let ipv4 = Addr(o.ipv4);
    let ipv6 = o.ipv6.map(Addr::ip).unwrap_or_else(Addr::v6_unspecified);
    let underlay = o
        .underlay
        .map(Addr::ip)
        .unwrap_or_else(Addr::v6_unspecified);
    let ip_config = |a: &Addr| {
        a.is_valid().then(|| v1::IpConfig {
            primary_address: addr_bytes(a),
        })
    };
    let req = v1::CreateInterfaceRequest {
        interface_type: v1::InterfaceType::Virtual as i32,
        interface_id: id.clone().into_bytes(),
        vni: o.vni.unwrap_or_default(),
        ipv4_config: ip_config(&ipv4),
        ipv6_config: ip_config(&ipv6),
        pxe_config: (!o.pxe_server.is_empty() && !o.pxe_file_name.is_empty()).then(|| {
            v1::PxeConfig {
                next_server: o.pxe_server.clone(),
                boot_filename: o.pxe_file_name.clone(),
            }
        }),
        device_name: o.device.clone().unwrap_or_default(),
        metering_parameters: Some(v1::MeteringParams {
            total_rate: o.total_meter_rate,
            public_rate: o.public_meter_rate,
        }),
        preferred_underlay_route: addr_bytes(&underlay),
        hostname: o.hostname.clone(),
    };
    let wrap = |e: CliError| e.context("error creating interface");
    let res = call(client.create_interface(req), |r| &r.status, wrap).await?;
    let ul = parse_wire_addr(&res.underlay_route)
        .map_err(|e| wrap(e.context("error parsing underlay route")))?;
    let iface = Interface {
        // the Go CLI passes no kind into the request object and returns it
        kind: String::new(),
        metadata: InterfaceMeta { id },
        spec: InterfaceSpec {
            vni: o.vni.unwrap_or_default(),
            device: o.device.unwrap_or_default(),
            primary_ipv4: Some(ipv4),
            primary_ipv6: Some(ipv6),
            underlay_route: Some(ul),
            virtual_function: Some(VirtualFunction {
                name: res.vf.map(|v| v.name).unwrap_or_default(),
            }),
            pxe: Some(Pxe {
                next_server: o.pxe_server,
                boot_filename: o.pxe_file_name,
            }),
            nat: None,
            vip: None,
            metering: Some(MeteringParams {
                total_rate: o.total_meter_rate,
                public_rate: o.public_meter_rate,
            }),
            hostname: o.hostname,
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, underlay route: {ul}"), &iface)
}

async fn add_wide_info(client: &mut Client, iface: &mut Interface) {
    if let Ok(n) = nat::fetch(client, &iface.metadata.id).await {
        iface.spec.nat = Some(Box::new(n));
    }
    if let Ok(v) = virtualip::fetch(client, &iface.metadata.id).await {
        iface.spec.vip = Some(Box::new(v));
    }
}

pub async fn get(ctx: &Ctx, o: OptIdArg) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    if o.id.is_empty() {
        return list(ctx, "").await;
    }
    let wrap = |e: CliError| e.context("error getting interface");
    let mut iface = fetch(&mut client, &o.id).await.map_err(wrap)?;
    if ctx.render.wide {
        add_wide_info(&mut client, &mut iface).await;
    }
    ctx.print("", &iface)
}

/// `client.GetInterface`
pub async fn fetch(client: &mut Client, id: &str) -> Result<Interface, CliError> {
    let res = client
        .get_interface(v1::GetInterfaceRequest {
            interface_id: id.as_bytes().to_vec(),
        })
        .await?
        .into_inner();
    check(&res.status)?;
    from_proto(&res.interface.unwrap_or_default())
}

/// `client.ListInterfaces`
pub async fn fetch_all(client: &mut Client) -> Result<InterfaceList, CliError> {
    let res = client
        .list_interfaces(v1::ListInterfacesRequest {})
        .await?
        .into_inner();
    check(&res.status)?;
    let items = res
        .interfaces
        .iter()
        .map(from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InterfaceList {
        kind: kind::INTERFACE_LIST.into(),
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
        .map_err(|e| e.context("error listing interfaces"))?;
    let items = list.items.get_or_insert_with(Vec::new);
    if ctx.render.wide {
        for iface in items.iter_mut() {
            add_wide_info(&mut client, iface).await;
        }
    }
    let ipv4 = |i: &Interface| go_opt(i.spec.primary_ipv4.as_ref());
    let key = sort_by.to_lowercase();
    stable_sort(items, |a, b| match key.as_str() {
        "vni" if a.spec.vni != b.spec.vni => a.spec.vni < b.spec.vni,
        "vni" => ipv4(a) < ipv4(b),
        "device" => a.spec.device < b.spec.device,
        "ipv4" if ipv4(a) != ipv4(b) => ipv4(a) < ipv4(b),
        "ipv4" => a.spec.vni < b.spec.vni,
        "ipv6" => go_opt(a.spec.primary_ipv6.as_ref()) < go_opt(b.spec.primary_ipv6.as_ref()),
        "underlayroute" => {
            go_opt(a.spec.underlay_route.as_ref()) < go_opt(b.spec.underlay_route.as_ref())
        }
        _ => a.metadata.id < b.metadata.id,
    });
    ctx.print("", &list)
}

pub async fn delete(ctx: &Ctx, o: IdArg) -> Result<(), CliError> {
    require(&[("id", o.id.is_some())])?;
    let mut client = ctx.client().await?;
    let id = o.id.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting interface");
    let res = call(
        client.delete_interface(v1::DeleteInterfaceRequest {
            interface_id: id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let iface = Interface {
        kind: kind::INTERFACE.into(),
        metadata: InterfaceMeta { id },
        status: Status::from_proto(res.status.as_ref()),
        ..Default::default()
    };
    ctx.print("deleted", &iface)
}
