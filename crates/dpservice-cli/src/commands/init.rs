//! `init`, `get init`, `get version`

use dp_proto::v1;

use super::{call, check, Client, Ctx};
use crate::error::CliError;
use crate::types::*;

/// `client.CheckInitialized`
async fn check_initialized(client: &mut Client) -> Result<Initialized, CliError> {
    let res = client
        .check_initialized(v1::CheckInitializedRequest {})
        .await?
        .into_inner();
    check(&res.status)?;
    Ok(Initialized {
        kind: kind::INITIALIZED.into(),
        metadata: Empty {},
        spec: InitializedSpec { uuid: res.uuid },
        status: Status::from_proto(res.status.as_ref()),
    })
}

pub async fn init(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    match check_initialized(&mut client).await {
        Ok(i) => {
            return Err(CliError::msg(format!(
                "error dp-service already initialized, uuid: {}",
                i.spec.uuid
            )))
        }
        Err(e) if !e.text().contains("not initialized") => {
            return Err(CliError::msg("error checking initialization"))
        }
        Err(_) => {}
    }
    let wrap = |e: CliError| e.context("error initializing");
    let res = call(
        client.initialize(v1::InitializeRequest {}),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = Initialized {
        kind: kind::INITIALIZED.into(),
        metadata: Empty {},
        spec: InitializedSpec { uuid: res.uuid },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("", &obj)
}

pub async fn get_init(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let obj = check_initialized(&mut client)
        .await
        .map_err(|e| e.context("error checking initialization status"))?;
    ctx.print("", &obj)
}

pub async fn version(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let meta = VersionMeta {
        client_protocol: dp_proto::PROTOCOL_VERSION.to_owned(),
        client_name: "dpservice-cli".to_owned(),
        client_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let wrap = |e: CliError| e.context("error getting version");
    let res = call(
        client.get_version(v1::GetVersionRequest {
            client_protocol: meta.client_protocol.clone(),
            client_name: meta.client_name.clone(),
            client_version: meta.client_version.clone(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = Version {
        kind: kind::VERSION.into(),
        metadata: meta,
        spec: VersionSpec {
            service_protocol: res.service_protocol,
            service_version: res.service_version,
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("", &obj)
}
