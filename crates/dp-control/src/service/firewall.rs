//! Firewall RPCs: CreateFirewallRule, DeleteFirewallRule, GetFirewallRule, ListFirewallRules.
//!
//! Request conversion as dpservice's `CreateFirewallRuleCall::FillRequest`: the checks and
//! their INVALID_ARGUMENT messages come in its order; `-1` is the wildcard of port bounds and
//! of ICMP type and code. Unlike dpservice, DROP rules are accepted (see [`crate::firewall`]).

use std::net::IpAddr;

use dp_proto::prefix_to_proto;
use dp_proto::v1;
use tonic::{Request, Response, Status};
use tracing::info;

use super::fields::{failed, fixed_str, interface_id, invalid, outcome, parse_ip};
use super::GrpcService;
use crate::errors::ok_status;
use crate::state::{FirewallAction, FirewallRuleSpec, PortFilter, RuleFilter, TrafficDirection};

/// Size of dpservice's firewall rule id buffer (`DP_FIREWALL_ID_MAX_LEN`, NUL included).
pub const RULE_ID_SIZE: usize = 64;

/// dpservice's wildcard (`-1` on the wire) of port bounds and ICMP type and code.
const ANY: i32 = -1;

/// A port bound: `-1` (any) or 0..=65535 (dpservice's `GrpcToDpFwallPort`).
fn port_bound(v: i32) -> Option<Option<u16>> {
    if v == ANY {
        Some(None)
    } else {
        u16::try_from(v).ok().map(Some)
    }
}

fn port_to_proto(v: Option<u16>) -> i32 {
    v.map_or(ANY, i32::from)
}

/// An ICMP type or code: `-1` (any) or 0..=255.
fn icmp_value(v: i32) -> Option<Option<u8>> {
    if v == ANY {
        Some(None)
    } else {
        u8::try_from(v).ok().map(Some)
    }
}

/// One of the rule's prefixes, with the messages for its bad version, address and length.
fn rule_prefix(
    rpc: &'static str,
    p: Option<&v1::Prefix>,
    msgs: [&'static str; 4],
) -> Result<(IpAddr, u8), Status> {
    let [bad_ipver, bad_ip, bad_len4, bad_len6] = msgs;
    let default = v1::Prefix::default();
    let p = p.unwrap_or(&default);
    let ip = p.ip.clone().unwrap_or_default();
    if v1::IpVersion::try_from(ip.ipver).is_err() {
        return Err(invalid(rpc, bad_ipver));
    }
    let addr = parse_ip(&ip).ok_or_else(|| invalid(rpc, bad_ip))?;
    let (max, msg) = if addr.is_ipv4() {
        (32, bad_len4)
    } else {
        (128, bad_len6)
    };
    let len = u8::try_from(p.length)
        .ok()
        .filter(|&l| l <= max)
        .ok_or_else(|| invalid(rpc, msg))?;
    Ok((addr, len))
}

/// A TCP or UDP filter, checked in dpservice's order (lower bounds, upper bounds, ranges).
fn port_filter(
    rpc: &'static str,
    lower_src: i32,
    upper_src: i32,
    lower_dst: i32,
    upper_dst: i32,
    msgs: [&'static str; 6],
) -> Result<PortFilter, Status> {
    let [m_src_lower, m_dst_lower, m_src_upper, m_dst_upper, m_src_range, m_dst_range] = msgs;
    let src_lower = port_bound(lower_src).ok_or_else(|| invalid(rpc, m_src_lower))?;
    let dst_lower = port_bound(lower_dst).ok_or_else(|| invalid(rpc, m_dst_lower))?;
    let src_upper = port_bound(upper_src).ok_or_else(|| invalid(rpc, m_src_upper))?;
    let dst_upper = port_bound(upper_dst).ok_or_else(|| invalid(rpc, m_dst_upper))?;
    // dpservice compares the raw values: an upper bound of -1 is 0xFFFFFFFF, never too low.
    let below = |lower: Option<u16>, upper: Option<u16>| match (lower, upper) {
        (Some(l), Some(u)) => u < l,
        _ => false,
    };
    if below(src_lower, src_upper) {
        return Err(invalid(rpc, m_src_range));
    }
    if below(dst_lower, dst_upper) {
        return Err(invalid(rpc, m_dst_range));
    }
    Ok(PortFilter {
        src_lower,
        src_upper,
        dst_lower,
        dst_upper,
    })
}

/// The rule of a CreateFirewallRule request (after the interface id).
fn rule_from_proto(
    rpc: &'static str,
    r: Option<v1::FirewallRule>,
) -> Result<FirewallRuleSpec, Status> {
    let r = r.unwrap_or_default();
    let id = fixed_str(&r.id, RULE_ID_SIZE).ok_or_else(|| invalid(rpc, "Invalid rule id"))?;
    let (src_addr, src_len) = rule_prefix(
        rpc,
        r.source_prefix.as_ref(),
        [
            "Invalid source_prefix.ip.ipver",
            "Invalid source_prefix.ip",
            "Invalid source_prefix.length",
            "Invalid ip6 source_prefix.length",
        ],
    )?;
    let (dst_addr, dst_len) = rule_prefix(
        rpc,
        r.destination_prefix.as_ref(),
        [
            "Invalid destination_prefix.ip.ipver",
            "Invalid destination_prefix.ip",
            "Invalid destination_prefix.length",
            "Invalid ip6 destination_prefix.length",
        ],
    )?;
    let direction = match v1::TrafficDirection::try_from(r.direction) {
        Ok(v1::TrafficDirection::Ingress) => TrafficDirection::Ingress,
        Ok(v1::TrafficDirection::Egress) => TrafficDirection::Egress,
        Err(_) => return Err(invalid(rpc, "Invalid direction")),
    };
    let action = match v1::FirewallAction::try_from(r.action) {
        Ok(v1::FirewallAction::Accept) => FirewallAction::Accept,
        Ok(v1::FirewallAction::Drop) => FirewallAction::Drop,
        Err(_) => return Err(invalid(rpc, "Invalid action")),
    };
    if r.priority > u32::from(u16::MAX) {
        return Err(invalid(rpc, "Invalid priority"));
    }
    use v1::protocol_filter::Filter;
    let filter = match r.protocol_filter.and_then(|f| f.filter) {
        Some(Filter::Tcp(t)) => RuleFilter::Tcp(port_filter(
            rpc,
            t.src_port_lower,
            t.src_port_upper,
            t.dst_port_lower,
            t.dst_port_upper,
            [
                "Invalid tcp.src_port_lower",
                "Invalid tcp.dst_port_lower",
                "Invalid tcp.src_port_upper",
                "Invalid tcp.dst_port_upper",
                "Invalid tcp.src_port range",
                "Invalid tcp.dst_port range",
            ],
        )?),
        Some(Filter::Udp(u)) => RuleFilter::Udp(port_filter(
            rpc,
            u.src_port_lower,
            u.src_port_upper,
            u.dst_port_lower,
            u.dst_port_upper,
            [
                "Invalid udp.src_port_lower",
                "Invalid udp.dst_port_lower",
                "Invalid udp.src_port_upper",
                "Invalid udp.dst_port_upper",
                "Invalid udp.src_port range",
                "Invalid udp.dst_port range",
            ],
        )?),
        Some(Filter::Icmp(i)) => RuleFilter::Icmp {
            icmp_type: icmp_value(i.icmp_type)
                .ok_or_else(|| invalid(rpc, "Invalid icmp.icmp_type"))?,
            icmp_code: icmp_value(i.icmp_code)
                .ok_or_else(|| invalid(rpc, "Invalid icmp.icmp_code"))?,
        },
        None => RuleFilter::Any,
    };
    Ok(FirewallRuleSpec {
        id,
        direction,
        action,
        priority: r.priority,
        src_addr,
        src_len,
        dst_addr,
        dst_len,
        filter,
    })
}

/// A rule as Get/ListFirewallRules report it (dpservice's `DpToGrpcFwrule`).
pub(super) fn rule_to_proto(r: &FirewallRuleSpec) -> v1::FirewallRule {
    use v1::protocol_filter::Filter;
    let tcp_udp = |p: &PortFilter| {
        (
            port_to_proto(p.src_lower),
            port_to_proto(p.src_upper),
            port_to_proto(p.dst_lower),
            port_to_proto(p.dst_upper),
        )
    };
    let filter = match &r.filter {
        RuleFilter::Any => None,
        RuleFilter::Tcp(p) => {
            let (src_port_lower, src_port_upper, dst_port_lower, dst_port_upper) = tcp_udp(p);
            Some(Filter::Tcp(v1::TcpFilter {
                src_port_lower,
                src_port_upper,
                dst_port_lower,
                dst_port_upper,
            }))
        }
        RuleFilter::Udp(p) => {
            let (src_port_lower, src_port_upper, dst_port_lower, dst_port_upper) = tcp_udp(p);
            Some(Filter::Udp(v1::UdpFilter {
                src_port_lower,
                src_port_upper,
                dst_port_lower,
                dst_port_upper,
            }))
        }
        RuleFilter::Icmp {
            icmp_type,
            icmp_code,
        } => Some(Filter::Icmp(v1::IcmpFilter {
            icmp_type: icmp_type.map_or(ANY, i32::from),
            icmp_code: icmp_code.map_or(ANY, i32::from),
        })),
    };
    v1::FirewallRule {
        id: r.id.clone().into_bytes(),
        direction: match r.direction {
            TrafficDirection::Ingress => v1::TrafficDirection::Ingress,
            TrafficDirection::Egress => v1::TrafficDirection::Egress,
        } as i32,
        action: match r.action {
            FirewallAction::Accept => v1::FirewallAction::Accept,
            FirewallAction::Drop => v1::FirewallAction::Drop,
        } as i32,
        priority: r.priority,
        source_prefix: Some(prefix_to_proto(r.src_addr, r.src_len)),
        destination_prefix: Some(prefix_to_proto(r.dst_addr, r.dst_len)),
        protocol_filter: Some(v1::ProtocolFilter { filter }),
    }
}

/// A request's `rule_id` (Get/DeleteFirewallRule).
fn rule_id(rpc: &'static str, b: &[u8]) -> Result<String, Status> {
    fixed_str(b, RULE_ID_SIZE).ok_or_else(|| invalid(rpc, "Invalid rule_id"))
}

pub(super) async fn list_firewall_rules(
    svc: &GrpcService,
    request: Request<v1::ListFirewallRulesRequest>,
) -> Result<Response<v1::ListFirewallRulesResponse>, Status> {
    const WHAT: &str = "ListFirewallRules";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    Ok(Response::new(match state.list_firewall_rules(&id) {
        Ok(rules) => v1::ListFirewallRulesResponse {
            status: Some(ok_status()),
            rules: rules.iter().map(rule_to_proto).collect(),
        },
        Err(e) => v1::ListFirewallRulesResponse {
            status: Some(failed(WHAT, e)),
            rules: Vec::new(),
        },
    }))
}

pub(super) async fn create_firewall_rule(
    svc: &GrpcService,
    request: Request<v1::CreateFirewallRuleRequest>,
) -> Result<Response<v1::CreateFirewallRuleResponse>, Status> {
    const WHAT: &str = "CreateFirewallRule";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let rule = rule_from_proto(WHAT, r.rule)?;
    let rule_id = rule.id.clone();
    let (result, change) = svc.state().deferred(|s| s.create_firewall_rule(&id, rule));
    svc.published(change).await;
    Ok(Response::new(match result {
        Ok(()) => {
            info!(interface_id = %id, rule_id = %rule_id, "Firewall rule added");
            v1::CreateFirewallRuleResponse {
                status: Some(ok_status()),
                rule_id: rule_id.into_bytes(),
            }
        }
        Err(e) => v1::CreateFirewallRuleResponse {
            status: Some(failed(WHAT, e)),
            rule_id: Vec::new(),
        },
    }))
}

pub(super) async fn get_firewall_rule(
    svc: &GrpcService,
    request: Request<v1::GetFirewallRuleRequest>,
) -> Result<Response<v1::GetFirewallRuleResponse>, Status> {
    const WHAT: &str = "GetFirewallRule";
    let state = svc.read()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let rule_id = rule_id(WHAT, &r.rule_id)?;
    Ok(Response::new(
        match state.get_firewall_rule(&id, &rule_id) {
            Ok(rule) => v1::GetFirewallRuleResponse {
                status: Some(ok_status()),
                rule: Some(rule_to_proto(&rule)),
            },
            Err(e) => v1::GetFirewallRuleResponse {
                status: Some(failed(WHAT, e)),
                rule: None,
            },
        },
    ))
}

pub(super) async fn delete_firewall_rule(
    svc: &GrpcService,
    request: Request<v1::DeleteFirewallRuleRequest>,
) -> Result<Response<v1::DeleteFirewallRuleResponse>, Status> {
    const WHAT: &str = "DeleteFirewallRule";
    svc.ensure_initialized()?;
    let r = request.into_inner();
    let id = interface_id(WHAT, &r.interface_id)?;
    let rule_id = rule_id(WHAT, &r.rule_id)?;
    let (result, change) = svc
        .state()
        .deferred(|s| s.delete_firewall_rule(&id, &rule_id));
    svc.published(change).await;
    let status = outcome(WHAT, result, |()| {
        info!(interface_id = %id, rule_id = %rule_id, "Firewall rule removed");
    });
    Ok(Response::new(v1::DeleteFirewallRuleResponse {
        status: Some(status),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_bounds() {
        assert_eq!(port_bound(-1), Some(None));
        assert_eq!(port_bound(0), Some(Some(0)));
        assert_eq!(port_bound(65535), Some(Some(65535)));
        assert_eq!(port_bound(65536), None);
        assert_eq!(port_bound(-2), None);
        assert_eq!(icmp_value(-1), Some(None));
        assert_eq!(icmp_value(255), Some(Some(255)));
        assert_eq!(icmp_value(256), None);
        assert_eq!(port_to_proto(None), -1);
    }
}
