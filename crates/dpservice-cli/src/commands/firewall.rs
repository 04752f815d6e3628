//! `create|get|list|delete firewallrule`

use dp_proto::v1;

use super::{call, check, interface, prefix_to_proto, stable_sort, Client, Ctx};
use crate::cli::{
    parse_prefix, require, CreateFirewallRule, FirewallRuleIdArgs, GetFirewallRule,
    ListFirewallRules,
};
use crate::error::CliError;
use crate::types::*;

/// `api.ProtoFwRuleToFwRule`
pub(crate) fn from_proto(
    r: &v1::FirewallRule,
    interface_id: &str,
) -> Result<FirewallRule, CliError> {
    let pfx = |p: &Option<v1::Prefix>| {
        let p = p.clone().unwrap_or_default();
        let text = format!(
            "{}/{}",
            String::from_utf8_lossy(&p.ip.unwrap_or_default().address),
            p.length
        );
        parse_prefix_strict(&text).map_err(|e| CliError::msg(e).context("error converting prefix"))
    };
    let src = pfx(&r.source_prefix)?;
    let dst = pfx(&r.destination_prefix)?;
    Ok(FirewallRule {
        kind: kind::FIREWALL_RULE.into(),
        metadata: FirewallRuleMeta {
            interface_id: interface_id.to_owned(),
        },
        spec: FirewallRuleSpec {
            id: String::from_utf8_lossy(&r.id).into_owned(),
            direction: if r.direction == 0 {
                "Ingress"
            } else {
                "Egress"
            }
            .into(),
            action: if r.action == 0 { "Drop" } else { "Accept" }.into(),
            priority: r.priority,
            source_prefix: Some(src),
            destination_prefix: Some(dst),
            protocol_filter: r.protocol_filter.as_ref().map(ProtocolFilter::from_proto),
        },
        status: Status::default(),
    })
}

/// `netip.ParsePrefix` without trimming.
fn parse_prefix_strict(s: &str) -> Result<Prefix, String> {
    if s.trim() != s {
        return Err(format!(
            "netip.ParsePrefix({}): ParseAddr: unable to parse IP",
            crate::cli::go_quote(s)
        ));
    }
    parse_prefix(s)
}

fn check_ports(ports: [i32; 4]) -> Result<(), CliError> {
    if ports.iter().any(|&p| p < -1 || p == 0 || p > 65535) {
        return Err(CliError::msg("ports can only be -1 or <1,65535>"));
    }
    if ports[0] > ports[1] || ports[2] > ports[3] {
        return Err(CliError::msg("min port must be lower or equal to max port"));
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, o: CreateFirewallRule) -> Result<(), CliError> {
    // cobra's PreRunE adds these requirements depending on --protocol
    let mut flags = vec![
        ("interface-id", o.interface_id.is_some()),
        ("rule-id", o.rule_id.is_some()),
        ("direction", o.direction.is_some()),
        ("action", o.action.is_some()),
        ("src", o.src.is_some()),
        ("dst", o.dst.is_some()),
    ];
    let src_min = o.src_port_min.unwrap_or(-1);
    let dst_min = o.dst_port_min.unwrap_or(-1);
    match o.protocol.as_str() {
        "icmp" | "1" => {
            flags.push(("icmp-type", o.icmp_type.is_some()));
            flags.push(("icmp-code", o.icmp_code.is_some()));
        }
        "tcp" | "6" | "udp" | "17" => {
            flags.push(("src-port-min", o.src_port_min.is_some()));
            if src_min != -1 {
                flags.push(("src-port-max", o.src_port_max.is_some()));
            }
            flags.push(("dst-port-min", o.dst_port_min.is_some()));
            if dst_min != -1 {
                flags.push(("dst-port-max", o.dst_port_max.is_some()));
            }
        }
        _ => {}
    }
    require(&flags)?;
    let mut client = ctx.client().await?;
    let ports = [
        src_min,
        o.src_port_max.unwrap_or(-1),
        dst_min,
        o.dst_port_max.unwrap_or(-1),
    ];
    let port_filter = |ports: [i32; 4]| PortFilter {
        src_port_lower: ports[0],
        src_port_upper: ports[1],
        dst_port_lower: ports[2],
        dst_port_upper: ports[3],
    };
    let filter = match o.protocol.as_str() {
        "icmp" | "1" => Some(FilterKind::Icmp(IcmpFilter {
            icmp_type: o.icmp_type.unwrap_or(-1),
            icmp_code: o.icmp_code.unwrap_or(-1),
        })),
        "tcp" | "6" => {
            check_ports(ports)?;
            Some(FilterKind::Tcp(port_filter(ports)))
        }
        "udp" | "17" => {
            check_ports(ports)?;
            Some(FilterKind::Udp(port_filter(ports)))
        }
        "" => None,
        _ => {
            return Err(CliError::msg(
                "protocol can be only: icmp = 1/tcp = 6/udp = 17",
            ))
        }
    };
    if o.priority > 65536 {
        return Err(CliError::msg("priority can be only: <0,65536"));
    }
    let wrap = |e: CliError| e.context("error creating firewall rule");
    let (action_num, action) = match o.action.clone().unwrap_or_default().to_lowercase().as_str() {
        "accept" | "allow" | "1" => (1, "Accept"),
        "drop" | "deny" | "0" => (0, "Drop"),
        _ => {
            return Err(wrap(CliError::msg(
                "firewall action can be only: drop/deny/0|accept/allow/1",
            )))
        }
    };
    let (dir_num, direction) = match o
        .direction
        .clone()
        .unwrap_or_default()
        .to_lowercase()
        .as_str()
    {
        "ingress" | "0" => (0, "Ingress"),
        "egress" | "1" => (1, "Egress"),
        _ => {
            return Err(wrap(CliError::msg(
                "traffic direction can be only: Ingress = 0/Egress = 1",
            )))
        }
    };
    let id = o.interface_id.unwrap_or_default();
    let rule_id = o.rule_id.unwrap_or_default();
    let (src, dst) = (o.src.unwrap_or_default(), o.dst.unwrap_or_default());
    let pf = ProtocolFilter { filter };
    let res = call(
        client.create_firewall_rule(v1::CreateFirewallRuleRequest {
            interface_id: id.clone().into_bytes(),
            rule: Some(v1::FirewallRule {
                id: rule_id.clone().into_bytes(),
                direction: dir_num,
                action: action_num,
                priority: o.priority,
                source_prefix: Some(prefix_to_proto(&src)),
                destination_prefix: Some(prefix_to_proto(&dst)),
                protocol_filter: Some(pf.to_proto()),
            }),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let rule = FirewallRule {
        kind: kind::FIREWALL_RULE.into(),
        metadata: FirewallRuleMeta { interface_id: id },
        spec: FirewallRuleSpec {
            id: rule_id,
            direction: direction.into(),
            action: action.into(),
            priority: o.priority,
            source_prefix: Some(src),
            destination_prefix: Some(dst),
            protocol_filter: Some(pf),
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("created", &rule)
}

pub async fn get(ctx: &Ctx, o: GetFirewallRule) -> Result<(), CliError> {
    if !o.rule_id.is_empty() {
        require(&[("interface-id", o.interface_id.is_some())])?;
    }
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    if o.rule_id.is_empty() {
        return list(
            ctx,
            ListFirewallRules {
                interface_id: id,
                sort_by: String::new(),
            },
        )
        .await;
    }
    let wrap = |e: CliError| e.context("error getting firewall rule");
    let res = call(
        client.get_firewall_rule(v1::GetFirewallRuleRequest {
            interface_id: id.clone().into_bytes(),
            rule_id: o.rule_id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let rule = from_proto(&res.rule.unwrap_or_default(), &id).map_err(wrap)?;
    ctx.print("", &rule)
}

pub async fn delete(ctx: &Ctx, o: FirewallRuleIdArgs) -> Result<(), CliError> {
    require(&[
        ("rule-id", o.rule_id.is_some()),
        ("interface-id", o.interface_id.is_some()),
    ])?;
    let mut client = ctx.client().await?;
    let id = o.interface_id.unwrap_or_default();
    let rule_id = o.rule_id.unwrap_or_default();
    let wrap = |e: CliError| e.context("error deleting firewall rule");
    let res = call(
        client.delete_firewall_rule(v1::DeleteFirewallRuleRequest {
            interface_id: id.clone().into_bytes(),
            rule_id: rule_id.clone().into_bytes(),
        }),
        |r| &r.status,
        wrap,
    )
    .await?;
    let rule = FirewallRule {
        kind: kind::FIREWALL_RULE.into(),
        metadata: FirewallRuleMeta { interface_id: id },
        spec: FirewallRuleSpec {
            id: rule_id,
            ..Default::default()
        },
        status: Status::from_proto(res.status.as_ref()),
    };
    ctx.print("deleted", &rule)
}

/// `client.ListFirewallRules`
async fn fetch_all(client: &mut Client, id: &str) -> Result<FirewallRuleList, CliError> {
    let res = client
        .list_firewall_rules(v1::ListFirewallRulesRequest {
            interface_id: id.as_bytes().to_vec(),
        })
        .await?
        .into_inner();
    check(&res.status)?;
    let items = res
        .rules
        .iter()
        .map(|r| from_proto(r, id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FirewallRuleList {
        kind: kind::FIREWALL_RULE_LIST.into(),
        metadata: FirewallRuleMeta {
            interface_id: id.to_owned(),
        },
        status: Status::from_proto(res.status.as_ref()),
        items: Some(items),
    })
}

pub async fn list(ctx: &Ctx, o: ListFirewallRules) -> Result<(), CliError> {
    let mut client = ctx.client().await?;
    let mut list = if o.interface_id.is_empty() {
        let ifaces = interface::fetch_all(&mut client)
            .await
            .map_err(|e| e.context("error listing interfaces"))?;
        let mut items: Option<Vec<FirewallRule>> = None;
        for iface in ifaces.items.unwrap_or_default() {
            let got = fetch_all(&mut client, &iface.metadata.id)
                .await
                .map_err(|e| e.context("error getting firewall rules"))?;
            let got = got.items.unwrap_or_default();
            if !got.is_empty() {
                items.get_or_insert_with(Vec::new).extend(got);
            }
        }
        FirewallRuleList {
            kind: kind::FIREWALL_RULE_LIST.into(),
            items,
            ..Default::default()
        }
    } else {
        fetch_all(&mut client, &o.interface_id)
            .await
            .map_err(|e| e.context("error listing firewall rules"))?
    };
    let key = o.sort_by.to_lowercase();
    let pf = |r: &FirewallRule| {
        r.spec
            .protocol_filter
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default()
    };
    if let Some(items) = list.items.as_mut() {
        stable_sort(items, |a, b| match key.as_str() {
            "direction" => a.spec.direction < b.spec.direction,
            "src" | "source" => {
                go_opt(a.spec.source_prefix.as_ref()) < go_opt(b.spec.source_prefix.as_ref())
            }
            "dst" | "destination" => {
                go_opt(a.spec.destination_prefix.as_ref())
                    < go_opt(b.spec.destination_prefix.as_ref())
            }
            "action" => a.spec.action < b.spec.action,
            "protocol" => pf(a) < pf(b),
            "priority" => a.spec.priority < b.spec.priority,
            _ => a.spec.id < b.spec.id,
        });
    }
    ctx.print("", &list)
}
