//! The authoritative configuration and the operations on it, independent of gRPC.
//!
//! Every operation validates completely before it changes anything, so a rejected request
//! leaves the configuration (and the published snapshot) untouched. Every successful change
//! publishes a new [`Snapshot`] — unless run inside [`State::deferred`], which lets the gRPC
//! service publish several concurrent requests' changes at once ([`State::publish_through`]).
//! The cost of a publish is proportional to the number of VNIs, never to the number of routes:
//! interfaces and underlay addresses are shared between snapshots, and each VNI's table is
//! kept in up to three copies, so a change is applied to an unpublished copy and only that
//! copy is touched (see [`State::table_copies`]).
//!
//! `State` is one struct so that one lock and one publish cover every table, but its parts
//! belong to domains, each owning its part of the one published snapshot and implementing its
//! operations on `State` in its own module (see the crate docs for the list):
//!
//! | domain | module | snapshot part | operations |
//! |---|---|---|---|
//! | interfaces | [`crate::interfaces`] | `ifaces_by_port` | create/delete/get/list interface |
//! | alias prefixes | [`crate::prefixes`] | (in the others) | create/delete/list prefix |
//! | routes | [`crate::routes`] | (tables of `vnis`) | create/delete/list route |
//! | VNIs | [`crate::vnis`] | `vnis` | VNI in use, reset VNI |
//! | underlay | [`crate::underlay`] | `underlay` | (addresses of the others) |
//! | firewall | [`crate::firewall`] | (each interface's `services.firewall`) | create/delete/get/list firewall rule |
//! | VIPs | [`crate::vip`] | (`public`, each interface's `services.vip`) | create/delete/get VIP |
//! | NAT | [`crate::nat`] | `public`, `neighbor_nats` (each interface's `services.nat`) | create/delete/get NAT, list local NATs, create/delete/list neighbor NATs |
//! | capture | [`crate::capture`] | `capture` | capture start/stop/status |
//! | load balancers | [`crate::loadbalancers`] | `load_balancers`, `lb_generation` (target prefixes in each interface's prefixes) | create/delete/get/list balancer, create/delete/list target, create/delete/list target prefix |
//!
//! This module keeps what they share: initialization, publishing and the table limits
//! ([`crate::Limits`]).
//!
//! The semantics follow dpservice's worker-side handlers (`src/grpc/dp_grpc_impl.c`,
//! `src/dp_lpm.c`, `src/dp_vni.c`, `src/dp_iface.c`, `src/dp_vnf.c`); each domain's module
//! documents its part.

use std::net::Ipv6Addr;
use std::sync::Arc;

use dp_tables::{PortId, Publisher, Snapshot, SnapshotReader};

use crate::capture::Capture;
use crate::firewall::Firewalls;
use crate::interfaces::Interfaces;
use crate::loadbalancers::LoadBalancers;
use crate::nat::Nats;
use crate::underlay::{UnderlayMode, Underlays};
use crate::vnis::Vnis;
use crate::Limits;

pub use crate::capture::{CaptureSpec, CaptureStatus, CaptureTarget, CapturedIface};
pub use crate::firewall::{
    FirewallAction, FirewallRuleSpec, PortFilter, RuleFilter, TrafficDirection,
};
pub use crate::loadbalancers::LoadBalancerInfo;
pub use crate::nat::{LocalNatInfo, NatInfo, NeighborNatInfo};
pub use crate::vip::VipInfo;

pub use crate::interfaces::{
    CreatedInterface, InterfaceInfo, InterfaceSpec, Pxe, VfDevice, TAP_ALIAS_PREFIX,
};
pub use crate::prefixes::PrefixInfo;
pub use crate::routes::RouteInfo;
pub use crate::underlay::UnderlayUse;
pub use crate::vnis::VniType;

/// The control plane's configuration; see the module docs.
#[derive(Debug)]
pub struct State {
    publisher: Publisher,
    initialized: bool,
    /// Interfaces and their ports: the snapshot's `ifaces_by_port`.
    pub(crate) interfaces: Interfaces,
    /// VNIs and their routing tables: the snapshot's `vnis`.
    pub(crate) vnis: Vnis,
    /// Underlay addresses in use: the snapshot's `underlay`.
    pub(crate) underlays: Underlays,
    /// Firewall rule versions (the rules are kept with their interfaces).
    pub(crate) firewalls: Firewalls,
    /// Public addresses and neighbor NATs: the snapshot's `public` and `neighbor_nats`
    /// (VIPs and local NATs are kept with their interfaces).
    pub(crate) nat: Nats,
    /// Load balancers and their targets: the snapshot's `load_balancers` and `lb_generation`
    /// (target prefixes are kept with their interfaces).
    pub(crate) lbs: LoadBalancers,
    /// The active packet capture: the snapshot's `capture`.
    pub(crate) capture: Capture,
    /// Table sizes.
    pub(crate) limits: Limits,
    /// Changes made so far, and how many of them have been published.
    changes: u64,
    published: u64,
    /// Set while [`State::deferred`] runs: changes wait for an explicit publish.
    defer: bool,
    /// The snapshot's `firewall_generation`, and the interface table it was counted for.
    firewall_generation: u32,
    firewall_ifaces: Option<Arc<Vec<Option<Arc<dp_tables::Iface>>>>>,
}

impl State {
    /// A configuration with no interfaces, publishing through `publisher`.
    ///
    /// `host_underlay` is the daemon's `--ipv6`; `vfs` the ports interfaces may be bound to;
    /// `uplinks` the PF ports (their `net_tap<N>` alias answers ALREADY_EXISTS, as dpservice's
    /// always-allocated PF ports do).
    pub fn new(
        publisher: Publisher,
        host_underlay: Ipv6Addr,
        mode: UnderlayMode,
        vfs: impl IntoIterator<Item = VfDevice>,
        uplinks: impl IntoIterator<Item = PortId>,
    ) -> Self {
        State {
            publisher,
            initialized: false,
            interfaces: Interfaces::new(vfs, uplinks),
            vnis: Vnis::default(),
            underlays: Underlays::new(host_underlay, mode),
            firewalls: Firewalls::default(),
            nat: Nats::default(),
            lbs: LoadBalancers::default(),
            capture: Capture::default(),
            limits: Limits::default(),
            changes: 0,
            published: 0,
            defer: false,
            firewall_generation: 0,
            firewall_ifaces: None,
        }
    }

    /// The snapshot currently published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.publisher.current()
    }

    /// A reader of the published snapshots (for workers).
    pub fn reader(&self) -> SnapshotReader {
        self.publisher.reader()
    }

    /// Whether Initialize has been called.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// The table limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the table limits; existing entries beyond a lowered limit stay (only further
    /// creations are refused).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether `addr` is acceptable as a `preferred_underlay_route`.
    pub fn accepts_preferred_underlay(&self, addr: Ipv6Addr) -> bool {
        self.underlays.accepts_preferred(addr)
    }

    /// What a registered underlay address of this host delivers to.
    pub fn underlay_use(&self, addr: Ipv6Addr) -> Option<UnderlayUse> {
        self.underlays.get(addr)
    }

    /// How many times a change had to copy a whole VNI table because a reader still held the
    /// spare copy (a cost indicator; ideally it grows by at most one per VNI).
    pub fn table_copies(&self) -> u64 {
        self.vnis.table_copies()
    }

    /// Runs `f` (any operations) without publishing the changes it makes; returns its result
    /// and, if something changed, the change number to hand to [`State::publish_through`]
    /// before answering the request. Until then the changes are visible to later operations
    /// (validation, listings) but not to the packet path.
    pub fn deferred<R>(&mut self, f: impl FnOnce(&mut State) -> R) -> (R, Option<u64>) {
        let before = self.changes;
        let outer = std::mem::replace(&mut self.defer, true);
        let r = f(self);
        self.defer = outer;
        (r, (self.changes != before).then_some(self.changes))
    }

    /// Publishes every pending change unless change number `change` (from
    /// [`State::deferred`]) has been published already. Returns whether it published.
    pub fn publish_through(&mut self, change: u64) -> bool {
        if self.published >= change {
            return false;
        }
        self.publish();
        true
    }

    /// Publishes the pending changes, if any. Returns whether it published.
    pub fn publish_pending(&mut self) -> bool {
        self.publish_through(self.changes)
    }

    /// Leaves deferred mode after a panic inside [`State::deferred`] (later changes publish
    /// at once again).
    pub(crate) fn end_deferred(&mut self) {
        self.defer = false;
    }

    /// Whether changes made inside [`State::deferred`] still wait to be published.
    pub fn has_pending(&self) -> bool {
        self.published < self.changes
    }

    /// Records a change: published at once, or later when deferred.
    pub(crate) fn changed(&mut self) {
        self.changes += 1;
        if !self.defer {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.published = self.changes;
        // Flows are decided again by the firewall when its generation changes: whenever an
        // interface changed (its rules, or it came or went), which the shared interface table
        // tells (a new Arc only then).
        let ifaces = self.interfaces.published();
        if !self
            .firewall_ifaces
            .as_ref()
            .is_some_and(|last| Arc::ptr_eq(last, &ifaces))
        {
            self.firewall_generation =
                dp_tables::next_firewall_generation(self.firewall_generation);
            self.firewall_ifaces = Some(Arc::clone(&ifaces));
        }
        // O(VNIs): each domain hands over its part, shared with the previous snapshot where
        // it did not change (interfaces, underlay addresses, every VNI's table is an Arc).
        let (load_balancers, lb_generation) = self.lbs.published();
        let snapshot = Snapshot {
            ifaces_by_port: ifaces,
            vnis: self.vnis.published(),
            underlay: self.underlays.published(),
            public: self.nat.public.published(),
            neighbor_nats: self.nat.neighbors.published(),
            load_balancers,
            lb_generation,
            firewall_generation: self.firewall_generation,
            capture: self.capture_published(),
            generation: 0,
        };
        self.publisher.publish(snapshot);
    }

    // ----- Initialize -------------------------------------------------------------------------

    /// Marks the service initialized and, as dpservice does on every Initialize, removes all
    /// neighbor NATs and resets all VNI tables to the interface routes (external and
    /// alias-prefix routes are dropped). Interfaces keep their VIPs, NATs and firewall rules.
    pub fn initialize(&mut self) {
        self.initialized = true;
        let had_neighbor_nats = self.clear_neighbor_nats();
        if self.vnis.is_empty() && !had_neighbor_nats {
            return;
        }
        for vni in self.vnis.ids() {
            self.reset_vni_tables(vni);
        }
        self.changed();
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
