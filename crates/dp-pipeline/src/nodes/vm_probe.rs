//! Finding the MAC of a VM that has not spoken yet, as a router does: by asking for it.
//!
//! On a VF port that is an existing interface (`--nic-type af_packet` / `af_xdp`, a veth's host
//! end) the VM's MAC is only known once the VM sends a frame ([`Classify`](super::Classify) learns
//! an unknown MAC from the first frame). Until then [`L2Rewrite`](super::L2Rewrite) drops what is routed to the VM
//! (`no_peer_mac`). A VM with a static address that has nothing to say — or any VM after the
//! daemon restarted — would stay unreachable; so [`VmProbe::tick`] (run by
//! [`Graph::tick`](crate::Graph::tick) every 100 ms, on every worker for its share of the ports,
//! [`WorkerCtx::owns_port`]) asks for it. It is a node that handles no packets, only a timer.
//!
//! # Which ports
//! Every VF port whose link is up, that has an interface in the table snapshot, and whose VM's
//! MAC is unknown. Nothing is sent on a port whose MAC is known (a TAP's, preset from its kernel
//! side; or one learned), whose link is down, or that has no interface.
//!
//! # What is sent
//! * The interface has an IPv4 address: an ARP request, broadcast, from the gateway — sender
//!   169.254.0.1 with our MAC on the port, target hardware address zero, target the interface's
//!   IPv4 address (42 bytes, unpadded, as our ARP replies). A Linux guest answers it (and learns
//!   the gateway's MAC on the way, as from any request addressed to it).
//! * Else, when it has an IPv6 address and the IPv6 overlay is on: a neighbor solicitation from
//!   the gateway fe80::1 to the solicited-node group of the interface's IPv6 address (Ethernet
//!   33:33:ff:xx:xx:xx), hop limit 255, with a source link-layer address option (our MAC), so the
//!   guest can answer at once.
//!
//! The answer (ARP reply, neighbor advertisement) is an ordinary frame from the VM: the
//! responders set the MAC from it and consume it, counted as `arp_reply_consumed` /
//! `vm_na_consumed` (when it is about the interface's own address) rather than as an unexpected
//! message.
//!
//! # How often
//! The first probe goes out at the first tick the port qualifies, the next two
//! [`VM_PROBE_INTERVAL_NS`] (1 s) apart — three in all, as RFC 4861's `MAX_MULTICAST_SOLICIT`
//! and Linux's `mcast_solicit` — after which the wait doubles with every unanswered probe (2 s,
//! 4 s, …) up to [`VM_MAX_PROBE_INTERVAL_NS`] (30 s): probes at 0, 1, 2, 4, 8, 16, 32, 62, 92 s…
//! A stopped VM costs one small frame every 30 s, a VM that
//! boots later is found within 30 s at worst (usually at once: a booting guest sends frames of
//! its own). The back-off starts over (a probe at once) whenever the port qualifies anew: its
//! link came back up, its interface was (re)created or its address changed, or its MAC was
//! known and is no longer. At most [`VM_MAX_PROBES_PER_TICK`] probes go out per tick, the ports
//! taken in turn, so that a restart with many silent VMs does not drain the buffer pool at
//! once. Without a free buffer a probe is simply retried at the next tick.
//!
//! A known MAC is not re-validated: a VM's port has one VM behind it, and a VM that changes its
//! MAC says so by ARP, DHCP or neighbor discovery (as in dpservice, other frames do not change it).

use dp_packet::ipv6::{multicast_mac, solicited_node};
use dp_packet::{
    ArpOperation, ArpRepr, EtherType, EthernetRepr, IpProtocol, Ipv4Addr, Ipv6Addr, Ipv6Repr,
    MacAddr, NdiscRepr,
};
use dp_tables::PortId;

use crate::buffer::PacketBuf;
use crate::config::{GATEWAY_IPV4, GATEWAY_IPV6};
use crate::drop::DropReason;
use crate::graph::NodeId;
use crate::node::{Ctx, Emit, Node, Verdict};
use crate::port_table::PortKind;
use crate::worker_ctx::WorkerCtx;

use super::common::{ETH_HEADER_LEN, IPV6_HEADER_LEN};

/// Time between the first probes (RFC 4861 `RETRANS_TIMER`).
pub const VM_PROBE_INTERVAL_NS: u64 = 1_000_000_000;
/// Probes sent [`VM_PROBE_INTERVAL_NS`] apart before the back-off starts.
pub const VM_FAST_PROBES: u8 = 3;
/// Longest time between two probes of a silent VM.
pub const VM_MAX_PROBE_INTERVAL_NS: u64 = 30_000_000_000;
/// Most probes sent in one tick (all ports together).
pub const VM_MAX_PROBES_PER_TICK: usize = 32;

/// RFC 4861: ND messages are sent with hop limit 255.
const ND_HOP_LIMIT: u8 = 255;

/// What a port's VM is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Target {
    /// Nothing: the port does not qualify (MAC known, link down, no interface).
    #[default]
    None,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// Probing state of one port.
#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    /// What the probes so far asked for; a different target starts over.
    target: Target,
    /// Probes sent for `target`.
    sent: u8,
    /// When the next probe is due.
    next_ns: u64,
}

/// Per-worker probing state (only the leader's is used).
#[derive(Debug, Default)]
pub struct VmProbe {
    ports: Vec<Probe>,
    /// The port to look at first in the next tick (ports are taken in turn).
    cursor: usize,
}

/// The wait after the `sent`-th unanswered probe.
pub fn vm_probe_wait_ns(sent: u8) -> u64 {
    if sent < VM_FAST_PROBES {
        return VM_PROBE_INTERVAL_NS;
    }
    let doublings = u32::from(sent - VM_FAST_PROBES + 1).min(16);
    VM_PROBE_INTERVAL_NS
        .saturating_mul(1 << doublings)
        .min(VM_MAX_PROBE_INTERVAL_NS)
}

impl Node for VmProbe {
    const NAME: &'static str = "vm_probe";
    /// A timer-only node: no edge leads to it, it transmits what its timer makes.
    const NEXT: &'static [NodeId] = &[];
    const TRANSMITS: bool = true;

    fn process(
        &mut self,
        _pkt: &mut PacketBuf,
        _ctx: &Ctx<'_>,
        _worker: &mut WorkerCtx,
    ) -> Verdict {
        // No node sends packets here; one that did would be a bug in the graph.
        Verdict::Drop(DropReason::GraphLoop)
    }

    /// Due at every tick: a new interface or a link coming up makes work at any time; a tick
    /// looks at the ports in turn and sends at most [`VM_MAX_PROBES_PER_TICK`] probes.
    fn poll_timeout(&self) -> Option<u64> {
        (!self.ports.is_empty()).then_some(0)
    }

    fn handle_timeout(&mut self, ctx: &Ctx<'_>, worker: &mut WorkerCtx, emit: &mut Emit<'_>) {
        self.probe(ctx, worker, emit);
    }
}

impl VmProbe {
    /// State for `port_count` ports, allocated here, once.
    pub fn new(port_count: usize) -> Self {
        VmProbe {
            ports: vec![Probe::default(); port_count],
            cursor: 0,
        }
    }

    /// What to ask the VM on `port` for, if the port qualifies (see the module docs).
    fn target(ctx: &Ctx<'_>, port: PortId) -> Target {
        let Some(entry) = ctx.ports.get(port) else {
            return Target::None;
        };
        if entry.kind != PortKind::Vf || !entry.link_up() || entry.peer_mac().is_some() {
            return Target::None;
        }
        let Some(iface) = ctx.tables.iface(port) else {
            return Target::None;
        };
        if !iface.ipv4.is_unspecified() {
            Target::V4(iface.ipv4)
        } else if ctx.config.ipv6_overlay && !iface.ipv6.is_unspecified() {
            Target::V6(iface.ipv6)
        } else {
            Target::None
        }
    }

    /// Probes the silent VMs that are due (see the module docs). Frames go to
    /// `emit(port, frame, pool)`; allocates nothing but buffers from `pool`.
    fn probe(&mut self, ctx: &Ctx<'_>, worker: &WorkerCtx, emit: &mut Emit<'_>) {
        let now = ctx.now_ns;
        let count = self.ports.len();
        if count == 0 {
            return;
        }
        let start = self.cursor % count;
        let mut budget = VM_MAX_PROBES_PER_TICK;
        self.cursor = start;
        for step in 0..count {
            let index = (start + step) % count;
            let Ok(port) = PortId::try_from(index) else {
                continue;
            };
            // Each worker probes its share of the ports: every port by one worker.
            let target = if worker.owns_port(port) {
                Self::target(ctx, port)
            } else {
                Target::None
            };
            let Some(state) = self.ports.get_mut(index) else {
                continue;
            };
            if target != state.target {
                *state = Probe {
                    target,
                    sent: 0,
                    next_ns: now,
                };
            }
            if target == Target::None || now < state.next_ns {
                continue;
            }
            if budget == 0 {
                // Out of probes for this tick: this port is the first one next time.
                self.cursor = index;
                return;
            }
            let Some(own_mac) = ctx.ports.get(port).map(|e| e.own_mac) else {
                continue;
            };
            let Some(mut pkt) = emit.alloc() else {
                // No buffer: try again at the next tick, this port first.
                self.cursor = index;
                return;
            };
            pkt.meta.in_port = port;
            pkt.meta.out_port = port;
            let written = match target {
                Target::V4(addr) => write_arp_request(&mut pkt, own_mac, addr),
                Target::V6(addr) => write_ns(&mut pkt, own_mac, addr),
                Target::None => None,
            };
            if written.is_none() {
                // Cannot happen with a pool's buffers; if it did, do not retry every tick.
                emit.pool().free(pkt);
                state.next_ns = now.saturating_add(vm_probe_wait_ns(state.sent));
                continue;
            }
            budget -= 1;
            if let Err(pkt) = emit.send(pkt, Verdict::Tx(port)) {
                // Staging full (it holds more than a tick's budget): this port first next time.
                emit.pool().free(pkt);
                self.cursor = index;
                return;
            }
            state.sent = state.sent.saturating_add(1);
            state.next_ns = now.saturating_add(vm_probe_wait_ns(state.sent));
        }
    }
}

/// Makes `pkt` an ARP request from the gateway for `target`.
fn write_arp_request(pkt: &mut PacketBuf, own_mac: MacAddr, target: Ipv4Addr) -> Option<()> {
    let request = ArpRepr {
        operation: ArpOperation::REQUEST,
        source_hardware_addr: own_mac,
        source_protocol_addr: GATEWAY_IPV4,
        target_hardware_addr: MacAddr::ZERO,
        target_protocol_addr: target,
    };
    pkt.set_len(ETH_HEADER_LEN + request.buffer_len()).ok()?;
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: own_mac,
        dst_addr: MacAddr::BROADCAST,
        ethertype: EtherType::ARP,
    }
    .emit_into(frame)
    .ok()?;
    request
        .emit_into(frame.get_mut(ETH_HEADER_LEN..)?)
        .ok()
        .map(|_| ())
}

/// Makes `pkt` a neighbor solicitation from the gateway for `target`, to its solicited-node group.
fn write_ns(pkt: &mut PacketBuf, own_mac: MacAddr, target: Ipv6Addr) -> Option<()> {
    let msg = NdiscRepr::NeighborSolicit {
        target_addr: target,
        source_lladdr: Some(own_mac),
    };
    let group = solicited_node(&target);
    let icmp_len = msg.buffer_len();
    let icmp_at = ETH_HEADER_LEN + IPV6_HEADER_LEN;
    pkt.set_len(icmp_at + icmp_len).ok()?;
    let frame = pkt.data_mut();
    EthernetRepr {
        src_addr: own_mac,
        dst_addr: multicast_mac(&group),
        ethertype: EtherType::IPV6,
    }
    .emit_into(frame)
    .ok()?;
    Ipv6Repr::new(
        GATEWAY_IPV6,
        group,
        IpProtocol::ICMPV6,
        icmp_len,
        ND_HOP_LIMIT,
    )
    .emit_into(frame.get_mut(ETH_HEADER_LEN..)?)
    .ok()?;
    msg.emit_into(frame.get_mut(icmp_at..)?, &GATEWAY_IPV6, &group)
        .ok()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=10)
            .map(|n| vm_probe_wait_ns(n) / 1_000_000_000)
            .collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(vm_probe_wait_ns(0), VM_PROBE_INTERVAL_NS);
        assert_eq!(vm_probe_wait_ns(u8::MAX), VM_MAX_PROBE_INTERVAL_NS);
    }
}
