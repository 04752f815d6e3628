//! `create|get|delete virtualip`

use dp_proto::v1;

use super::{addr_bytes, call, interface, ip_to_proto, parse_wire_addr, Client, Ctx};
use crate::cli::{require, CreateVirtualIp, InterfaceIdArg, OptInterfaceIdArg};
use crate::error::CliError;
use crate::types::*;

/// `client.GetVirtualIP`; a status listed in `ignore` is returned in the
/// object instead of as an error.
pub async fn fetch_ignoring(
    client: &mut Client,
    id: &str,
    ignore: &[u32],
) -> Result<VirtualIp, CliError> {
    let res = client
        .get_vip(v1::GetVipRequest {
            interface_id: id.as_bytes().to_vec(),
        })
        .await?
        .into_inner();
    let status = Status::from_proto(res.status.as_ref());
    if status.code != 0 {
        let obj = VirtualIp {
            kind: kind::VIRTUAL_IP.into(),
            metadata: VirtualIpMeta {
                interface_id: id.to_owned(),
            },
            spec: VirtualIpSpec::default(),
            status,
        };
        if ignore.contains(&obj.status.code) {
            return Ok(obj);
        }
        return Err(CliError::status(obj.status.code, &obj.status.message));
    }
    let ip = parse_wire_addr(&res.vip_ip.unwrap_or_default().address)
        .map_err(|e| e.context("error parsing virtual ip address"))?;
    let ul = parse_wire_addr(&res.underlay_route)
        .map_err(|e| e.context("error parsing underlay route"))?;
    Ok(VirtualIp {
        kind: kind::VIRTUAL_IP.into(),
        metadata: VirtualIpMeta {
            interface_id: id.to_owned(),
        },
        spec: VirtualIpSpec {
            vip_ip: Some(ip),
            underlay_route: Some(ul),
        },
        status,
    })
}

pub async fn fetch(client: &mut Client, id: &str) -> Result<VirtualIp, CliError> {
    fetch_ignoring(client, id, &[]).await
}

pub async fn create(ctx: &Ctx, o: CreateVirtualIp) -> Result<(), CliError> {
    require(&[
        ("vip", o.vip.is_some()),
        ("interface-id", o.interface_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    let vip = Addr(o.vip);
    let underlay = o
        .underlay
        .map(Addr::ip)
        .unwrap_or_else(Addr::v6_unspecified);
    let wrap = |e: CliError| e.context("error creating virtual ip");
    let res = call(
        client.create_vip(v1::CreateVipRequest {
            interface_id: id.clone().into_bytes(),
            vip_ip: Some(ip_to_proto(&vip)),
            preferred_underlay_route: addr_bytes(&underlay),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let ul = parse_wire_addr(&res.underlay_route)
        .map_err(|e| wrap(e.context("error parsing underlay route")))?;
    let obj = VirtualIp {
        kind: kind::VIRTUAL_IP.into(),
        metadata: VirtualIpMeta { interface_id: id },
        spec: VirtualIpSpec {
            vip_ip: Some(vip),
            underlay_route: Some(ul),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("created, underlay route: {ul}"), &obj)
}

pub async fn get(ctx: &Ctx, o: OptInterfaceIdArg) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let wrap = |e: CliError| e.context("error getting virtual ip");
    if o.interface_id.is_empty() {
        let ifaces = interface::fetch_all(&mut client)
            .await
            .map_err(|e| e.context("error listing interfaces"))?;
        let ifaces = ifaces.items.unwrap_or_default();
        if ifaces.is_empty() {
            return Err(wrap(CliError::status(dp_proto::status::NO_VM, "NO_VM")));
        }
        let mut vips = Vec::new();
        for iface in &ifaces {
            let vip = fetch_ignoring(
                &mut client,
                &iface.metadata.id,
                &[dp_proto::status::SNAT_NO_DATA],
            )
            .await
            .map_err(wrap)?;
            if vip.status.code == 0 {
                vips.push(vip);
            }
        }
        for vip in &vips {
            ctx.print("", vip)?;
        }
        return Ok(());
    }
    let vip = fetch(&mut client, &o.interface_id).await.map_err(wrap)?;
    ctx.print("", &vip)
}

pub async fn delete(ctx: &Ctx, o: InterfaceIdArg) -> Result<(), CliError> {
    require(&[("interface-id", o.interface_id.is_some())])?;
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting virtual ip");
    let res = call(
        client.delete_vip(v1::DeleteVipRequest {
            interface_id: id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = VirtualIp {
        kind: kind::VIRTUAL_IP.into(),
        metadata: VirtualIpMeta { interface_id: id },
        spec: VirtualIpSpec::default(),
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("deleted", &obj)
}
