//! `capture start|stop|status`

use dp_proto::v1;
use v1::captured_interface::Spec;

use super::{call, ip_to_proto, loadbalancer::go_atoi, parse_wire_addr, Ctx};
use crate::cli::{require, CaptureStart as StartArgs};
use crate::error::CliError;
use crate::types::*;

fn pf_indexes(s: &str) -> Result<Vec<String>, CliError> {
    let idx: Vec<String> = s.split(',').map(str::to_owned).collect();
    if idx.len() > 2 {
        return Err(CliError::msg("too many pf indexes specified"));
    }
    for i in &idx {
        let v = go_atoi(i).map_err(|e| CliError::msg(e).context("error parsing pf index"))?;
        if v > 1 {
            return Err(CliError::msg("pf index must be 0 or 1"));
        }
    }
    Ok(idx)
}

pub async fn start(ctx: &Ctx, o: StartArgs) -> Result<(), CliError> {
    require(&[
        ("sink-node-ip", o.sink_node_ip.is_some()),
        ("udp-src-port", o.udp_src_port.is_some()),
        ("udp-dst-port", o.udp_dst_port.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let mut ifaces = Vec::new();
    if !o.pf.is_empty() {
        for i in pf_indexes(&o.pf).map_err(|e| e.context("error converting PF indexes"))? {
            ifaces.push(CaptureInterface {
                interface_type: "pf".into(),
                interface_info: i,
            });
        }
    }
    if !o.vf.is_empty() {
        for v in o.vf.split(',') {
            ifaces.push(CaptureInterface {
                interface_type: "vf".into(),
                interface_info: v.to_owned(),
            });
        }
    }
    let mut wire = Vec::new();
    for i in &ifaces {
        let (t, spec) = if i.interface_type == "pf" {
            match go_atoi(&i.interface_info) {
                Ok(n) => (v1::CaptureInterfaceType::SinglePf, Spec::PfIndex(n as u32)),
                Err(_) => {
                    println!(
                        "error filling interface info for interface {}",
                        i.interface_info
                    );
                    continue;
                }
            }
        } else {
            (
                v1::CaptureInterfaceType::SingleVf,
                Spec::VfName(i.interface_info.clone().into_bytes()),
            )
        };
        wire.push(v1::CapturedInterface {
            interface_type: t as i32,
            filter: Vec::new(),
            spec: Some(spec),
        });
    }
    let sink = Addr(o.sink_node_ip);
    let cfg = CaptureConfig {
        sink_node_ip: Some(sink),
        udp_src_port: o.udp_src_port.unwrap_or_default(),
        udp_dst_port: o.udp_dst_port.unwrap_or_default(),
    };
    let wrap = |e: CliError| e.context("error initializing packet capturing");
    let res = call(
        client.capture_start(v1::CaptureStartRequest {
            capture_config: Some(v1::CaptureConfig {
                sink_node_ip: Some(ip_to_proto(&sink)),
                udp_src_port: cfg.udp_src_port,
                udp_dst_port: cfg.udp_dst_port,
                interfaces: wire,
            }),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = CaptureStart {
        kind: kind::CAPTURE_START.into(),
        metadata: CaptureStartMeta {
            capture_config: Some(cfg),
        },
        spec: CaptureStartSpec { interfaces: ifaces },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print(&format!("Packet capturing initialized: {sink}\n"), &obj)
}

pub async fn stop(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let wrap = |e: CliError| e.context("error stopping capturing");
    let res = call(
        client.capture_stop(v1::CaptureStopRequest {}),
        |r| &r.status,
        wrap,
    )
    .await?;
    let obj = CaptureStop {
        kind: String::new(),
        metadata: Empty {},
        spec: CaptureStopSpec {
            iface_cnt: res.stopped_interface_cnt,
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("Packet capturing stopped \n", &obj)
}

pub async fn status(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let wrap = |e: CliError| e.context("error checking initialization status");
    let res = call(
        client.capture_status(v1::CaptureStatusRequest {}),
        |r| &r.status,
        wrap,
    )
    .await?;
    let mut spec = CaptureStatusSpec::default();
    if res.is_active {
        let cfg = res.capture_config.clone().unwrap_or_default();
        for i in &cfg.interfaces {
            let (t, info) = match (
                v1::CaptureInterfaceType::try_from(i.interface_type),
                &i.spec,
            ) {
                (Ok(v1::CaptureInterfaceType::SinglePf), s) => {
                    let idx = match s {
                        Some(Spec::PfIndex(n)) => *n,
                        _ => 0,
                    };
                    ("pf", idx.to_string())
                }
                (Ok(v1::CaptureInterfaceType::SingleVf), s) => {
                    let name = match s {
                        Some(Spec::VfName(n)) => String::from_utf8_lossy(n).into_owned(),
                        _ => String::new(),
                    };
                    ("vf", name)
                }
                _ => return Err(wrap(CliError::msg("unsupported interface type"))),
            };
            spec.interfaces.push(CaptureInterface {
                interface_type: t.into(),
                interface_info: info,
            });
        }
        let sink = parse_wire_addr(&cfg.sink_node_ip.clone().unwrap_or_default().address)
            .map_err(|e| wrap(e.context("error parsing IP address")))?;
        spec.operation_status = true;
        spec.capture_config = CaptureConfig {
            sink_node_ip: Some(sink),
            udp_src_port: cfg.udp_src_port,
            udp_dst_port: cfg.udp_dst_port,
        };
    }
    let obj = CaptureStatus {
        kind: String::new(),
        metadata: Empty {},
        spec,
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("", &obj)
}
