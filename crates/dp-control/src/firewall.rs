//! The firewall domain: per-interface rules (CreateFirewallRule, DeleteFirewallRule,
//! GetFirewallRule, ListFirewallRules), published as each interface's `services.firewall`.
//!
//! As in dpservice (`src/dp_firewall.c`, `src/grpc/dp_grpc_impl.c`), rules are kept per
//! interface in creation order (ListFirewallRules reports them so), identified by their id
//! (unique per interface), and go away with the interface. Unlike dpservice, which ignores
//! the priority and refuses DROP rules (NO_DROP_SUPPORT), both actions are accepted and the
//! rules are enforced by priority ([`dp_tables::FirewallRules`]).
//!
//! Every change of an interface's rules publishes a new [`FirewallRules`] with a new version:
//! versions come from one counter for all interfaces, so a version never repeats and is never
//! 0 once set (packet-path flows decided under another version are decided again).
//!
//! An interface holds at most [`crate::Limits::firewall_rules_per_interface`] rules (dpservice
//! has no limit; a further rule is answered LIMIT_REACHED).

use std::net::IpAddr;
use std::sync::Arc;

use dp_tables::{FirewallRule, FirewallRules, IpNet, PortRange, ProtocolFilter};

pub use dp_tables::{FirewallAction, TrafficDirection};

use crate::errors::DpError;
use crate::state::State;

/// A TCP or UDP port filter as given: `None` is dpservice's `-1`. A `None` lower bound matches
/// every port (whatever the upper bound); otherwise ports `lower..=upper` match, a `None` upper
/// bound meaning 65535.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortFilter {
    pub src_lower: Option<u16>,
    pub src_upper: Option<u16>,
    pub dst_lower: Option<u16>,
    pub dst_upper: Option<u16>,
}

/// The protocol part of a rule as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleFilter {
    /// No filter: every protocol, every port.
    Any,
    Tcp(PortFilter),
    Udp(PortFilter),
    /// ICMP (and ICMPv6 for IPv6 traffic); `None` is dpservice's `-1` (any).
    Icmp {
        icmp_type: Option<u8>,
        icmp_code: Option<u8>,
    },
}

/// A firewall rule as CreateFirewallRule gives it and Get/ListFirewallRules report it.
/// Prefix addresses are kept as given (host bits included); matching ignores the host bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FirewallRuleSpec {
    pub id: String,
    pub direction: TrafficDirection,
    pub action: FirewallAction,
    pub priority: u32,
    pub src_addr: IpAddr,
    pub src_len: u8,
    pub dst_addr: IpAddr,
    pub dst_len: u8,
    pub filter: RuleFilter,
}

fn net(addr: IpAddr, len: u8) -> IpNet {
    match addr {
        IpAddr::V4(a) => IpNet {
            addr: u128::from(u32::from(a)),
            len: len.min(32),
            is_v6: false,
        },
        IpAddr::V6(a) => IpNet {
            addr: u128::from(a),
            len: len.min(128),
            is_v6: true,
        },
    }
}

fn range(lower: Option<u16>, upper: Option<u16>) -> PortRange {
    match lower {
        None => PortRange::ANY,
        Some(lo) => PortRange {
            lo,
            hi: upper.unwrap_or(u16::MAX),
        },
    }
}

impl FirewallRuleSpec {
    /// The rule as the packet path evaluates it.
    pub fn to_rule(&self) -> FirewallRule {
        let ports = |p: &PortFilter| {
            (
                range(p.src_lower, p.src_upper),
                range(p.dst_lower, p.dst_upper),
            )
        };
        FirewallRule {
            id: self.id.clone(),
            direction: self.direction,
            action: self.action,
            priority: self.priority,
            src: net(self.src_addr, self.src_len),
            dst: net(self.dst_addr, self.dst_len),
            filter: match &self.filter {
                RuleFilter::Any => ProtocolFilter::Any,
                RuleFilter::Tcp(p) => {
                    let (src, dst) = ports(p);
                    ProtocolFilter::Tcp { src, dst }
                }
                RuleFilter::Udp(p) => {
                    let (src, dst) = ports(p);
                    ProtocolFilter::Udp { src, dst }
                }
                RuleFilter::Icmp {
                    icmp_type,
                    icmp_code,
                } => ProtocolFilter::Icmp {
                    icmp_type: *icmp_type,
                    icmp_code: *icmp_code,
                },
            },
        }
    }
}

/// The firewall domain's own state: the version counter shared by all interfaces.
#[derive(Debug, Default)]
pub(crate) struct Firewalls {
    last_version: u32,
}

impl Firewalls {
    /// A version never handed out before (0 is skipped when the counter wraps).
    fn next_version(&mut self) -> u32 {
        self.last_version = self.last_version.wrapping_add(1).max(1);
        self.last_version
    }
}

impl State {
    /// Adds a rule to the interface's rules and publishes them.
    ///
    /// Errors, in dpservice's order: unknown interface → NO_VM; a rule with this id exists on
    /// the interface → ALREADY_EXISTS; then (ours) the interface has
    /// [`crate::Limits::firewall_rules_per_interface`] rules already → LIMIT_REACHED.
    pub fn create_firewall_rule(
        &mut self,
        iface_id: &str,
        rule: FirewallRuleSpec,
    ) -> Result<(), DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        if e.firewall.iter().any(|r| r.id == rule.id) {
            return Err(DpError::AlreadyExists);
        }
        if e.firewall.len() >= self.limits.firewall_rules_per_interface {
            return Err(DpError::LimitReached);
        }
        self.change_rules(iface_id, |rules| rules.push(rule));
        Ok(())
    }

    /// Removes a rule. Errors: unknown interface → NO_VM; no such rule → NOT_FOUND.
    pub fn delete_firewall_rule(&mut self, iface_id: &str, rule_id: &str) -> Result<(), DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        let i = e
            .firewall
            .iter()
            .position(|r| r.id == rule_id)
            .ok_or(DpError::NotFound)?;
        self.change_rules(iface_id, |rules| {
            rules.remove(i);
        });
        Ok(())
    }

    /// One rule. Errors: unknown interface → NO_VM; no such rule → NOT_FOUND.
    pub fn get_firewall_rule(
        &self,
        iface_id: &str,
        rule_id: &str,
    ) -> Result<FirewallRuleSpec, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        e.firewall
            .iter()
            .find(|r| r.id == rule_id)
            .cloned()
            .ok_or(DpError::NotFound)
    }

    /// The interface's rules in creation order. Unknown interface → NO_VM.
    pub fn list_firewall_rules(&self, iface_id: &str) -> Result<Vec<FirewallRuleSpec>, DpError> {
        self.interfaces
            .get(iface_id)
            .map(|e| e.firewall.clone())
            .ok_or(DpError::NoVm)
    }

    /// Changes the interface's rules (validated already) and publishes them with a new version.
    fn change_rules(&mut self, iface_id: &str, f: impl FnOnce(&mut Vec<FirewallRuleSpec>)) {
        let version = self.firewalls.next_version();
        self.interfaces.update(iface_id, |e| {
            f(&mut e.firewall);
            e.services.firewall = Arc::new(FirewallRules::new(
                version,
                e.firewall.iter().map(FirewallRuleSpec::to_rule),
            ));
        });
        self.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_never_repeat_and_skip_zero() {
        let mut f = Firewalls::default();
        assert_eq!(f.next_version(), 1);
        assert_eq!(f.next_version(), 2);
        f.last_version = u32::MAX;
        assert_eq!(f.next_version(), 1);
    }

    #[test]
    fn port_filters_follow_dpservice_wildcards() {
        assert_eq!(range(None, Some(80)), PortRange::ANY);
        assert_eq!(range(Some(80), None), PortRange { lo: 80, hi: 65535 });
        assert_eq!(range(Some(80), Some(90)), PortRange { lo: 80, hi: 90 });
        let n = net("10.1.2.3".parse().unwrap(), 8);
        assert!(n.contains(u128::from(u32::from_be_bytes([10, 9, 9, 9])), false));
        let n6 = net("2001:db8::1".parse().unwrap(), 200);
        assert_eq!(n6.len, 128);
    }
}
