//! An interface's firewall rules as the packet path evaluates them: once per new flow (and again
//! when the rules change), never per packet — the verdict is kept in the flow.
//!
//! Enforcing, unlike dpservice (whose node computes verdicts and never drops): per direction,
//! an interface with no rules in that direction accepts everything; once it has one, a flow no
//! rule accepts is dropped. Rules are tried by priority (0 first); among rules of one priority
//! a drop rule is tried before an accept rule, so the outcome never depends on creation order.

use dp_packet::{FlowKey, IpProtocol};

/// Which of an interface's traffic a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrafficDirection {
    /// Towards the VM.
    Ingress,
    /// From the VM.
    Egress,
}

/// What a matching rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    Accept,
    Drop,
}

/// An inclusive port range; `PortRange::ANY` is every port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };

    #[inline]
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// The protocol part of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolFilter {
    /// Every protocol.
    Any,
    Tcp {
        src: PortRange,
        dst: PortRange,
    },
    Udp {
        src: PortRange,
        dst: PortRange,
    },
    /// ICMP (IPv4) or ICMPv6; `None` is a wildcard.
    Icmp {
        icmp_type: Option<u8>,
        icmp_code: Option<u8>,
    },
}

/// An address prefix of either family (IPv4 in the low 32 bits, as in [`FlowKey`]). Length 0
/// matches every address of its family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: u128,
    pub len: u8,
    pub is_v6: bool,
}

impl IpNet {
    /// Whether `addr` (of the family `is_v6`) is inside the prefix.
    #[inline]
    pub fn contains(&self, addr: u128, is_v6: bool) -> bool {
        if is_v6 != self.is_v6 {
            return false;
        }
        let bits: u32 = if is_v6 { 128 } else { 32 };
        let len = u32::from(self.len).min(bits);
        if len == 0 {
            return true;
        }
        let shift = bits - len;
        // Both sides are masked the same way; IPv4 values never exceed 32 bits.
        (addr >> shift) == (self.addr >> shift)
    }
}

/// One rule, as CreateFirewallRule gave it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FirewallRule {
    pub id: String,
    pub direction: TrafficDirection,
    pub action: FirewallAction,
    pub priority: u32,
    pub src: IpNet,
    pub dst: IpNet,
    pub filter: ProtocolFilter,
}

/// What a rule is matched against: the flow's key as the VM sees it (before any NAT on the way
/// out, after it on the way in) and, for ICMP, the first packet's type and code.
#[derive(Clone, Copy, Debug)]
pub struct FlowMatch<'a> {
    pub key: &'a FlowKey,
    pub icmp: Option<(u8, u8)>,
}

impl FirewallRule {
    /// Whether the rule matches the flow.
    pub fn matches(&self, flow: &FlowMatch<'_>) -> bool {
        let key = flow.key;
        if !self.src.contains(key.src, key.is_v6) || !self.dst.contains(key.dst, key.is_v6) {
            return false;
        }
        match self.filter {
            ProtocolFilter::Any => true,
            ProtocolFilter::Tcp { src, dst } => {
                key.proto == IpProtocol::TCP
                    && src.contains(key.src_port)
                    && dst.contains(key.dst_port)
            }
            ProtocolFilter::Udp { src, dst } => {
                key.proto == IpProtocol::UDP
                    && src.contains(key.src_port)
                    && dst.contains(key.dst_port)
            }
            ProtocolFilter::Icmp {
                icmp_type,
                icmp_code,
            } => {
                let icmp_proto = if key.is_v6 {
                    IpProtocol::ICMPV6
                } else {
                    IpProtocol::ICMP
                };
                key.proto == icmp_proto
                    && match flow.icmp {
                        Some((t, c)) => {
                            icmp_type.is_none_or(|want| want == t)
                                && icmp_code.is_none_or(|want| want == c)
                        }
                        None => icmp_type.is_none() && icmp_code.is_none(),
                    }
            }
        }
    }
}

/// One interface's rules, sorted for evaluation, with a version that changes on every change
/// (a flow decided under another version is decided again).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FirewallRules {
    /// Bumped by the control plane on every change of this interface's rules (never 0 once a
    /// rule was ever set, so a flow decided with version 0 and no rules stays valid).
    pub version: u32,
    ingress: Vec<FirewallRule>,
    egress: Vec<FirewallRule>,
}

impl FirewallRules {
    /// The rules `rules` (any order) at `version`.
    pub fn new(version: u32, rules: impl IntoIterator<Item = FirewallRule>) -> Self {
        let (mut ingress, mut egress): (Vec<_>, Vec<_>) = rules
            .into_iter()
            .partition(|r| r.direction == TrafficDirection::Ingress);
        let order = |r: &FirewallRule| {
            (
                r.priority,
                r.action != FirewallAction::Drop, // drop first within a priority
                r.id.clone(),
            )
        };
        ingress.sort_by_cached_key(order);
        egress.sort_by_cached_key(order);
        FirewallRules {
            version,
            ingress,
            egress,
        }
    }

    /// The rules of one direction, in evaluation order.
    pub fn rules(&self, direction: TrafficDirection) -> &[FirewallRule] {
        match direction {
            TrafficDirection::Ingress => &self.ingress,
            TrafficDirection::Egress => &self.egress,
        }
    }

    /// Whether there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.egress.is_empty()
    }

    /// The verdict for a new flow in `direction`: accept when the direction has no rules, else
    /// the action of the first matching rule, else drop.
    pub fn decide(&self, direction: TrafficDirection, flow: &FlowMatch<'_>) -> FirewallAction {
        let rules = self.rules(direction);
        if rules.is_empty() {
            return FirewallAction::Accept;
        }
        rules
            .iter()
            .find(|r| r.matches(flow))
            .map_or(FirewallAction::Drop, |r| r.action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net4(a: [u8; 4], len: u8) -> IpNet {
        IpNet {
            addr: u128::from(u32::from_be_bytes(a)),
            len,
            is_v6: false,
        }
    }

    fn rule(id: &str, dir: TrafficDirection, action: FirewallAction, prio: u32) -> FirewallRule {
        FirewallRule {
            id: id.into(),
            direction: dir,
            action,
            priority: prio,
            src: net4([0, 0, 0, 0], 0),
            dst: net4([0, 0, 0, 0], 0),
            filter: ProtocolFilter::Tcp {
                src: PortRange::ANY,
                dst: PortRange { lo: 80, hi: 80 },
            },
        }
    }

    fn tcp(dst_port: u16) -> FlowKey {
        FlowKey {
            src: u128::from(u32::from_be_bytes([10, 0, 0, 1])),
            dst: u128::from(u32::from_be_bytes([10, 0, 0, 2])),
            proto: IpProtocol::TCP,
            is_v6: false,
            src_port: 40000,
            dst_port,
        }
    }

    #[test]
    fn no_rules_accept_and_one_rule_enforces() {
        use FirewallAction::*;
        use TrafficDirection::*;
        let empty = FirewallRules::default();
        let k = tcp(22);
        let m = FlowMatch {
            key: &k,
            icmp: None,
        };
        assert_eq!(empty.decide(Ingress, &m), Accept);
        let rules = FirewallRules::new(1, [rule("web", Ingress, Accept, 10)]);
        assert_eq!(rules.decide(Ingress, &m), Drop, "nothing accepts port 22");
        assert_eq!(rules.decide(Egress, &m), Accept, "egress has no rules");
        let k80 = tcp(80);
        let m80 = FlowMatch {
            key: &k80,
            icmp: None,
        };
        assert_eq!(rules.decide(Ingress, &m80), Accept);
    }

    #[test]
    fn priority_then_drop_first() {
        use FirewallAction::*;
        use TrafficDirection::*;
        let k = tcp(80);
        let m = FlowMatch {
            key: &k,
            icmp: None,
        };
        let rules = FirewallRules::new(
            1,
            [rule("a", Ingress, Accept, 5), rule("b", Ingress, Drop, 9)],
        );
        assert_eq!(rules.decide(Ingress, &m), Accept);
        let rules = FirewallRules::new(
            2,
            [rule("a", Ingress, Accept, 5), rule("b", Ingress, Drop, 5)],
        );
        assert_eq!(rules.decide(Ingress, &m), Drop);
    }

    #[test]
    fn prefixes_and_icmp() {
        let n = net4([10, 0, 0, 0], 8);
        assert!(n.contains(u128::from(u32::from_be_bytes([10, 9, 9, 9])), false));
        assert!(!n.contains(u128::from(u32::from_be_bytes([11, 0, 0, 0])), false));
        assert!(!n.contains(1, true), "families never mix");
        let mut r = rule("icmp", TrafficDirection::Ingress, FirewallAction::Accept, 0);
        r.filter = ProtocolFilter::Icmp {
            icmp_type: Some(8),
            icmp_code: None,
        };
        let mut k = tcp(0);
        k.proto = IpProtocol::ICMP;
        assert!(r.matches(&FlowMatch {
            key: &k,
            icmp: Some((8, 0))
        }));
        assert!(!r.matches(&FlowMatch {
            key: &k,
            icmp: Some((0, 0))
        }));
    }
}
