//! `get vni`, `reset vni`

use dp_proto::v1;

use super::{call, Ctx};
use crate::cli::{require, GetVni, ResetVni};
use crate::error::CliError;
use crate::types::*;

pub async fn get(ctx: &Ctx, o: GetVni) -> Result<(), CliError> {
    require(&[("vni", o.vni.is_some()), ("vni-type", o.vni_type.is_some())])?;
    let mut client = ctx.client().await?;
    let (vni, vni_type) = (o.vni.unwrap_or_default(), o.vni_type.unwrap_or_default());
    let wrap = |e: CliError| e.context("error getting vni");
    let res = call(
        client.check_vni_in_use(v1::CheckVniInUseRequest {
            vni,
            r#type: i32::from(vni_type),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = Vni {
        kind: kind::VNI.into(),
        metadata: VniMeta { vni, vni_type },
        spec: VniSpec { in_use: res.in_use },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("", &obj)
}

/// The `--vni-type` values `reset vni` accepts.
pub fn parse_vni_type(s: &str) -> Result<u8, CliError> {
    match s.to_lowercase().as_str() {
        "ipv4" | "0" => Ok(0),
        "ipv6" | "1" => Ok(1),
        "both" | "2" => Ok(2),
        _ => Err(CliError::msg(
            "VNI type can be only: ipv4 = 0/ipv6 = 1/both = 2",
        )),
    }
}

pub async fn reset(ctx: &Ctx, o: ResetVni) -> Result<(), CliError> {
    require(&[("vni", o.vni.is_some())])?;
    let mut client = ctx.client().await?;
    let vni = o.vni.unwrap_or_default();
    let vni_type = parse_vni_type(&o.vni_type)?;
    let wrap = |e: CliError| e.context("error resetting vni");
    let res = call(
        client.reset_vni(v1::ResetVniRequest {
            vni,
            r#type: i32::from(vni_type),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = Vni {
        kind: kind::VNI.into(),
        metadata: VniMeta { vni, vni_type },
        spec: VniSpec { in_use: false },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("reset", &obj)
}
