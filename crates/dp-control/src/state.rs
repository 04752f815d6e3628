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
//! The semantics follow dpservice's worker-side handlers (`src/grpc/dp_grpc_impl.c`,
//! `src/dp_lpm.c`, `src/dp_vni.c`, `src/dp_iface.c`, `src/dp_vnf.c`):
//!
//! * a VNI exists while at least one interface uses it; it is created by the first
//!   `CreateInterface` and destroyed, routes included, with its last interface;
//! * an interface owns a `/32` and a `/128` route (`Local{port}`) for its addresses in its VNI;
//!   an all-zero address means "no IPv4" / "no IPv6" and gets no route;
//! * an alias prefix is a `Local{port}` route in the interface's VNI plus a registered
//!   underlay address;
//! * an external route is a `Remote{vni, underlay}` route; only those are listed by
//!   `ListRoutes`, and, as in dpservice, only the IPv4 ones;
//! * `ResetVni` and `Initialize` rebuild VNI tables with the interface routes only: external
//!   and alias-prefix routes are gone, the alias prefix registrations (and their underlay
//!   addresses) stay, as in dpservice.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use dp_tables::{
    Iface, LpmKey, PortId, Publisher, PxeConfig, RouteTarget, Snapshot, SnapshotReader,
    UnderlayTarget, Vni, VniTable,
};

use crate::errors::DpError;
use crate::routes::{list_order_v4, RouteOp, VniRoutes};
use crate::underlay::{UnderlayAllocator, UnderlayMode};

/// Prefix of dpservice's TAP-mode device names: `net_tap<N>` names port `N`.
pub const TAP_ALIAS_PREFIX: &str = "net_tap";

/// A VF port an interface can be bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfDevice {
    /// The device name clients use (`device_name` of CreateInterface), e.g. `dtapvf_0`.
    pub name: String,
    pub port: PortId,
}

/// PXE settings of an interface. `next_server` is IPv4 for interfaces without IPv6 and IPv6
/// otherwise (dpservice's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pxe {
    pub next_server: IpAddr,
    pub boot_filename: String,
}

/// A validated CreateInterface request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    pub id: String,
    pub vni: Vni,
    /// `0.0.0.0`: no IPv4.
    pub ipv4: Ipv4Addr,
    /// `::`: no IPv6.
    pub ipv6: Ipv6Addr,
    /// A VF device name or its `net_tap<port>` alias.
    pub device: String,
    pub pxe: Option<Pxe>,
    pub hostname: Option<String>,
    /// Use this underlay address instead of generating one (`None` or `::`: generate).
    pub preferred_underlay: Option<Ipv6Addr>,
}

/// An interface as GetInterface / ListInterfaces report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub id: String,
    pub vni: Vni,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub underlay: Ipv6Addr,
    /// The device name as given in CreateInterface (reported as `pci_name`).
    pub device: String,
    /// The VF's own device name (reported as `vf.name` by CreateInterface).
    pub vf_name: String,
    pub port: PortId,
    pub hostname: Option<String>,
    pub pxe: Option<Pxe>,
}

/// What CreateInterface returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInterface {
    pub underlay: Ipv6Addr,
    pub vf_name: String,
}

/// An alias prefix of an interface. `addr` is kept as given (host bits included), as
/// dpservice lists it; routing uses the masked prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub addr: IpAddr,
    pub len: u8,
    pub underlay: Ipv6Addr,
}

/// An external route as ListRoutes reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The VNI whose table holds the route.
    pub vni: Vni,
    /// The (masked) prefix.
    pub addr: IpAddr,
    pub len: u8,
    pub nexthop_vni: Vni,
    pub nexthop: Ipv6Addr,
}

/// The `type` selector of CheckVniInUse / ResetVni.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VniType {
    Ipv4,
    Ipv6,
    Both,
}

/// What an underlay address registered on this host delivers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlayUse {
    /// An interface's own address.
    Interface { port: PortId, vni: Vni },
    /// An alias prefix routed to an interface.
    Prefix {
        port: PortId,
        vni: Vni,
        addr: IpAddr,
        len: u8,
    },
}

#[derive(Debug)]
struct IfaceEntry {
    info: InterfaceInfo,
    prefixes: Vec<PrefixInfo>,
}

impl IfaceEntry {
    fn to_iface(&self) -> Iface {
        let mut prefixes_v4 = Vec::new();
        let mut prefixes_v6 = Vec::new();
        for p in &self.prefixes {
            match p.addr {
                IpAddr::V4(a) => {
                    prefixes_v4.push((Ipv4Addr::from(u32::from(a).masked(p.len)), p.len))
                }
                IpAddr::V6(a) => {
                    prefixes_v6.push((Ipv6Addr::from(u128::from(a).masked(p.len)), p.len))
                }
            }
        }
        let i = &self.info;
        Iface {
            id: i.id.clone(),
            vni: i.vni,
            port: i.port,
            ipv4: i.ipv4,
            ipv6: i.ipv6,
            underlay_ipv6: i.underlay,
            hostname: i.hostname.clone(),
            pxe: i.pxe.as_ref().map(|p| PxeConfig {
                next_server: match p.next_server {
                    IpAddr::V4(a) => Some(a),
                    // dp-tables cannot carry an IPv6 PXE server yet.
                    IpAddr::V6(_) => None,
                },
                boot_filename: p.boot_filename.clone(),
            }),
            prefixes_v4,
            prefixes_v6,
        }
    }

    /// The interface's own routes.
    fn own_routes(&self) -> impl Iterator<Item = (IpAddr, u8)> {
        let i = &self.info;
        let v4 = (!i.ipv4.is_unspecified()).then_some((IpAddr::V4(i.ipv4), 32));
        let v6 = (!i.ipv6.is_unspecified()).then_some((IpAddr::V6(i.ipv6), 128));
        v4.into_iter().chain(v6)
    }
}

#[derive(Debug, Default)]
struct VniEntry {
    /// Interfaces using this VNI (dpservice's VNI reference count).
    ifaces: u32,
    routes: VniRoutes,
}

enum DeviceRef {
    Vf(PortId),
    Uplink,
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).masked(len))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).masked(len))),
    }
}

/// The route stored for exactly `addr/len` (`None` also for a length beyond the family's).
fn exact(t: &VniTable, addr: IpAddr, len: u8) -> Option<RouteTarget> {
    if len > max_len(addr) {
        return None;
    }
    match addr {
        IpAddr::V4(a) => t.v4.get_exact(u32::from(a), len).copied(),
        IpAddr::V6(a) => t.v6.get_exact(u128::from(a), len).copied(),
    }
}

fn insert_op(addr: IpAddr, len: u8, target: RouteTarget) -> RouteOp {
    match addr {
        IpAddr::V4(a) => RouteOp::Insert4(u32::from(a).masked(len), len, target),
        IpAddr::V6(a) => RouteOp::Insert6(u128::from(a).masked(len), len, target),
    }
}

fn remove_op(addr: IpAddr, len: u8) -> RouteOp {
    match addr {
        IpAddr::V4(a) => RouteOp::Remove4(u32::from(a).masked(len), len),
        IpAddr::V6(a) => RouteOp::Remove6(u128::from(a).masked(len), len),
    }
}

/// The control plane's configuration; see the module docs.
#[derive(Debug)]
pub struct State {
    publisher: Publisher,
    alloc: UnderlayAllocator,
    vf_by_name: HashMap<String, PortId>,
    vf_names: BTreeMap<PortId, String>,
    uplinks: Vec<PortId>,
    initialized: bool,
    ifaces: HashMap<String, IfaceEntry>,
    /// The published interfaces, indexed by port; shared with the snapshots until the next
    /// interface change (copy on write), so publishing a route change does not copy it.
    ifaces_by_port: Arc<Vec<Option<Arc<Iface>>>>,
    vnis: BTreeMap<Vni, VniEntry>,
    underlays: HashMap<Ipv6Addr, UnderlayUse>,
    /// `underlays` as the packet path reads it, kept in step with it and shared likewise.
    published_underlay: Arc<FxHashMap<u128, UnderlayTarget>>,
    /// Changes made so far, and how many of them have been published.
    changes: u64,
    published: u64,
    /// Set while [`State::deferred`] runs: changes wait for an explicit publish.
    defer: bool,
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
        let mut vf_by_name = HashMap::new();
        let mut vf_names = BTreeMap::new();
        for vf in vfs {
            vf_by_name.insert(vf.name.clone(), vf.port);
            vf_names.insert(vf.port, vf.name);
        }
        let uplinks: Vec<PortId> = uplinks.into_iter().collect();
        let ports = vf_names
            .keys()
            .chain(uplinks.iter())
            .map(|&p| usize::from(p) + 1)
            .max()
            .unwrap_or(0);
        State {
            publisher,
            alloc: UnderlayAllocator::new(host_underlay, mode),
            vf_by_name,
            vf_names,
            uplinks,
            initialized: false,
            ifaces: HashMap::new(),
            ifaces_by_port: Arc::new(vec![None; ports]),
            vnis: BTreeMap::new(),
            underlays: HashMap::new(),
            published_underlay: Arc::default(),
            changes: 0,
            published: 0,
            defer: false,
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

    /// Whether `addr` is acceptable as a `preferred_underlay_route`.
    pub fn accepts_preferred_underlay(&self, addr: Ipv6Addr) -> bool {
        self.alloc.accepts_preferred(addr)
    }

    /// What a registered underlay address of this host delivers to.
    pub fn underlay_use(&self, addr: Ipv6Addr) -> Option<UnderlayUse> {
        self.underlays.get(&addr).copied()
    }

    /// How many times a change had to copy a whole VNI table because a reader still held the
    /// spare copy (a cost indicator; ideally it grows by at most one per VNI).
    pub fn table_copies(&self) -> u64 {
        self.vnis.values().map(|v| v.routes.copies()).sum()
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
    fn changed(&mut self) {
        self.changes += 1;
        if !self.defer {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.published = self.changes;
        // O(VNIs): interfaces and underlay addresses are shared, route tables are per-VNI Arcs.
        let snapshot = Snapshot {
            ifaces_by_port: Arc::clone(&self.ifaces_by_port),
            vnis: self
                .vnis
                .iter()
                .map(|(&vni, v)| (vni, v.routes.live()))
                .collect(),
            underlay: Arc::clone(&self.published_underlay),
            generation: 0,
        };
        self.publisher.publish(snapshot);
    }

    /// Registers an underlay address: interfaces and alias prefixes alike deliver into the
    /// interface's port and VNI.
    fn underlay_insert(&mut self, addr: Ipv6Addr, used: UnderlayUse) {
        let (UnderlayUse::Interface { port, vni } | UnderlayUse::Prefix { port, vni, .. }) = used;
        Arc::make_mut(&mut self.published_underlay)
            .insert(u128::from(addr), UnderlayTarget::Iface { port, vni });
        self.underlays.insert(addr, used);
    }

    fn underlay_remove(&mut self, addr: &Ipv6Addr) {
        if self.underlays.remove(addr).is_some() {
            Arc::make_mut(&mut self.published_underlay).remove(&u128::from(*addr));
        }
    }

    fn resolve_device(&self, name: &str) -> Option<DeviceRef> {
        if let Some(&port) = self.vf_by_name.get(name) {
            return Some(DeviceRef::Vf(port));
        }
        let digits = name.strip_prefix(TAP_ALIAS_PREFIX)?;
        let port: PortId = digits.parse().ok()?;
        if port.to_string() != digits {
            return None;
        }
        if self.vf_names.contains_key(&port) {
            Some(DeviceRef::Vf(port))
        } else if self.uplinks.contains(&port) {
            Some(DeviceRef::Uplink)
        } else {
            None
        }
    }

    fn port_iface(&self, port: PortId) -> Option<&Arc<Iface>> {
        self.ifaces_by_port
            .get(usize::from(port))
            .and_then(|slot| slot.as_ref())
    }

    /// The underlay address for a new object: the preferred one if free, else a generated one.
    fn take_underlay(&mut self, preferred: Option<Ipv6Addr>) -> Result<Ipv6Addr, DpError> {
        match preferred.filter(|a| !a.is_unspecified()) {
            Some(addr) if self.underlays.contains_key(&addr) => Err(DpError::VnfInsert),
            Some(addr) => Ok(addr),
            None => {
                // Generated addresses never carry the externally-generated flag, so they can
                // only collide after the 32-bit counter wrapped around.
                for _ in 0..16 {
                    let addr = self.alloc.next_address();
                    if !self.underlays.contains_key(&addr) {
                        return Ok(addr);
                    }
                }
                Err(DpError::VnfInsert)
            }
        }
    }

    fn republish_iface(&mut self, id: &str) {
        if let Some(e) = self.ifaces.get(id) {
            let port = usize::from(e.info.port);
            if let Some(slot) = Arc::make_mut(&mut self.ifaces_by_port).get_mut(port) {
                *slot = Some(Arc::new(e.to_iface()));
            }
        }
    }

    /// The VNI's table rebuilt with its interfaces' own routes only.
    fn interface_routes(&self, vni: Vni) -> VniTable {
        let mut t = VniTable::default();
        for e in self.ifaces.values().filter(|e| e.info.vni == vni) {
            let target = RouteTarget::Local { port: e.info.port };
            for (addr, len) in e.own_routes() {
                insert_op(addr, len, target).apply(&mut t);
            }
        }
        t
    }

    // ----- Initialize -------------------------------------------------------------------------

    /// Marks the service initialized and, as dpservice does on every Initialize, resets all
    /// VNI tables to the interface routes (external and alias-prefix routes are dropped).
    pub fn initialize(&mut self) {
        self.initialized = true;
        if self.vnis.is_empty() {
            return;
        }
        let vnis: Vec<Vni> = self.vnis.keys().copied().collect();
        for vni in vnis {
            let t = self.interface_routes(vni);
            if let Some(v) = self.vnis.get_mut(&vni) {
                v.routes.replace(t);
            }
        }
        self.changed();
    }

    // ----- Interfaces -------------------------------------------------------------------------

    /// Binds a VF to a new interface.
    ///
    /// Errors, in dpservice's order: unknown device → NOT_FOUND; device in use (or an
    /// uplink) → ALREADY_EXISTS; preferred underlay taken → VNF_INSERT; id taken → VM_HANDLE;
    /// the `/32` or `/128` routed already in the VNI → ROUTE_EXISTS.
    pub fn create_interface(&mut self, spec: InterfaceSpec) -> Result<CreatedInterface, DpError> {
        let port = match self.resolve_device(&spec.device) {
            None => return Err(DpError::NotFound),
            Some(DeviceRef::Uplink) => return Err(DpError::AlreadyExists),
            Some(DeviceRef::Vf(port)) => port,
        };
        if self.port_iface(port).is_some() {
            return Err(DpError::AlreadyExists);
        }
        let underlay = self.take_underlay(spec.preferred_underlay)?;
        if self.ifaces.contains_key(&spec.id) {
            return Err(DpError::VmHandle);
        }
        let entry = IfaceEntry {
            info: InterfaceInfo {
                id: spec.id.clone(),
                vni: spec.vni,
                ipv4: spec.ipv4,
                ipv6: spec.ipv6,
                underlay,
                device: spec.device,
                vf_name: self.vf_names.get(&port).cloned().unwrap_or_default(),
                port,
                hostname: spec.hostname.filter(|h| !h.is_empty()),
                pxe: spec.pxe,
            },
            prefixes: Vec::new(),
        };
        if let Some(v) = self.vnis.get(&spec.vni) {
            if entry
                .own_routes()
                .any(|(addr, len)| exact(v.routes.table(), addr, len).is_some())
            {
                return Err(DpError::RouteExists);
            }
        }

        let target = RouteTarget::Local { port };
        let ops: Vec<RouteOp> = entry
            .own_routes()
            .map(|(addr, len)| insert_op(addr, len, target))
            .collect();
        let vni = self.vnis.entry(spec.vni).or_default();
        vni.ifaces += 1;
        vni.routes.commit(&ops);
        self.underlay_insert(
            underlay,
            UnderlayUse::Interface {
                port,
                vni: spec.vni,
            },
        );
        let created = CreatedInterface {
            underlay,
            vf_name: entry.info.vf_name.clone(),
        };
        if let Some(slot) = Arc::make_mut(&mut self.ifaces_by_port).get_mut(usize::from(port)) {
            *slot = Some(Arc::new(entry.to_iface()));
        }
        self.ifaces.insert(spec.id, entry);
        self.changed();
        Ok(created)
    }

    /// Removes an interface with its routes, alias prefixes and underlay addresses, and
    /// releases its port. The VNI goes away with its last interface. Unknown id → NOT_FOUND.
    pub fn delete_interface(&mut self, id: &str) -> Result<InterfaceInfo, DpError> {
        let entry = self.ifaces.remove(id).ok_or(DpError::NotFound)?;
        let port = entry.info.port;
        if let Some(slot) = Arc::make_mut(&mut self.ifaces_by_port).get_mut(usize::from(port)) {
            *slot = None;
        }
        self.underlay_remove(&entry.info.underlay);
        for p in &entry.prefixes {
            self.underlay_remove(&p.underlay);
        }
        let vni_id = entry.info.vni;
        if let Some(vni) = self.vnis.get_mut(&vni_id) {
            vni.ifaces = vni.ifaces.saturating_sub(1);
            if vni.ifaces == 0 {
                self.vnis.remove(&vni_id);
            } else {
                let mine = RouteTarget::Local { port };
                let ops: Vec<RouteOp> = entry
                    .own_routes()
                    .chain(entry.prefixes.iter().map(|p| (p.addr, p.len)))
                    .filter(|&(addr, len)| exact(vni.routes.table(), addr, len) == Some(mine))
                    .map(|(addr, len)| remove_op(addr, len))
                    .collect();
                vni.routes.commit(&ops);
            }
        }
        self.changed();
        Ok(entry.info)
    }

    /// One interface. Unknown id → NOT_FOUND.
    pub fn get_interface(&self, id: &str) -> Result<InterfaceInfo, DpError> {
        self.ifaces
            .get(id)
            .map(|e| e.info.clone())
            .ok_or(DpError::NotFound)
    }

    /// All interfaces, in port order (as dpservice walks its ports).
    pub fn list_interfaces(&self) -> Vec<InterfaceInfo> {
        self.ifaces_by_port
            .iter()
            .flatten()
            .filter_map(|i| self.ifaces.get(&i.id).map(|e| e.info.clone()))
            .collect()
    }

    // ----- Alias prefixes ---------------------------------------------------------------------

    /// Routes `addr/len` to the interface (in its VNI) and registers an underlay address for
    /// it, which is returned.
    ///
    /// Errors: unknown interface → NO_VM; length beyond 32/128 → ROUTE_INSERT; prefix routed
    /// already → ROUTE_EXISTS; preferred underlay taken → VNF_INSERT.
    pub fn create_prefix(
        &mut self,
        id: &str,
        addr: IpAddr,
        len: u8,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let e = self.ifaces.get(id).ok_or(DpError::NoVm)?;
        let (port, vni_id) = (e.info.port, e.info.vni);
        if len > max_len(addr) {
            return Err(DpError::RouteInsert);
        }
        if let Some(v) = self.vnis.get(&vni_id) {
            if exact(v.routes.table(), addr, len).is_some() {
                return Err(DpError::RouteExists);
            }
        }
        let underlay = self.take_underlay(preferred_underlay)?;

        if let Some(v) = self.vnis.get_mut(&vni_id) {
            v.routes
                .commit(&[insert_op(addr, len, RouteTarget::Local { port })]);
        }
        let key = masked(addr, len);
        let mut stale = None;
        if let Some(e) = self.ifaces.get_mut(id) {
            // A registration whose route was dropped by ResetVni/Initialize is replaced.
            if let Some(i) = e
                .prefixes
                .iter()
                .position(|p| p.len == len && masked(p.addr, p.len) == key)
            {
                stale = Some(e.prefixes.remove(i).underlay);
            }
            e.prefixes.push(PrefixInfo {
                addr,
                len,
                underlay,
            });
        }
        if let Some(old) = stale {
            self.underlay_remove(&old);
        }
        self.underlay_insert(
            underlay,
            UnderlayUse::Prefix {
                port,
                vni: vni_id,
                addr,
                len,
            },
        );
        self.republish_iface(id);
        self.changed();
        Ok(underlay)
    }

    /// Removes an alias prefix: its route and its registration.
    ///
    /// Errors: unknown interface → NO_VM; no route for the prefix → ROUTE_NOT_FOUND; the route
    /// is not this interface's → ROUTE_BAD_PORT; route removed but no registration →
    /// NOT_FOUND. As in dpservice, a registration whose route is gone (after ResetVni) is
    /// still removed, and the route error is reported.
    pub fn delete_prefix(&mut self, id: &str, addr: IpAddr, len: u8) -> Result<(), DpError> {
        let e = self.ifaces.get(id).ok_or(DpError::NoVm)?;
        let (port, vni_id) = (e.info.port, e.info.vni);
        let key = masked(addr, len);
        let record = e
            .prefixes
            .iter()
            .position(|p| p.len == len && masked(p.addr, p.len) == key);
        let route = match self
            .vnis
            .get(&vni_id)
            .and_then(|v| exact(v.routes.table(), addr, len))
        {
            None => Err(DpError::RouteNotFound),
            Some(RouteTarget::Local { port: p }) if p == port => Ok(()),
            Some(_) => Err(DpError::RouteBadPort),
        };
        if route.is_err() && record.is_none() {
            return route;
        }

        if route.is_ok() {
            if let Some(v) = self.vnis.get_mut(&vni_id) {
                v.routes.commit(&[remove_op(addr, len)]);
            }
        }
        if let Some(i) = record {
            if let Some(e) = self.ifaces.get_mut(id) {
                let removed = e.prefixes.remove(i);
                self.underlay_remove(&removed.underlay);
            }
            self.republish_iface(id);
        }
        self.changed();
        route.and(record.map(|_| ()).ok_or(DpError::NotFound))
    }

    /// The interface's alias prefixes in creation order. Unknown interface → NO_VM.
    pub fn list_prefixes(&self, id: &str) -> Result<Vec<PrefixInfo>, DpError> {
        self.ifaces
            .get(id)
            .map(|e| e.prefixes.clone())
            .ok_or(DpError::NoVm)
    }

    // ----- Routes -----------------------------------------------------------------------------

    /// Adds an external route `addr/len → (nexthop_vni, nexthop)` to the VNI's table.
    ///
    /// Errors: IPv4 next hop → BAD_IPVER; no interface in the VNI → NO_VNI; length beyond
    /// 32/128 → ROUTE_INSERT; prefix routed already → ROUTE_EXISTS.
    pub fn create_route(
        &mut self,
        vni: Vni,
        addr: IpAddr,
        len: u8,
        nexthop_vni: Vni,
        nexthop: IpAddr,
    ) -> Result<(), DpError> {
        let IpAddr::V6(underlay) = nexthop else {
            return Err(DpError::BadIpVer);
        };
        let v = self.vnis.get_mut(&vni).ok_or(DpError::NoVni)?;
        if len > max_len(addr) {
            return Err(DpError::RouteInsert);
        }
        if exact(v.routes.table(), addr, len).is_some() {
            return Err(DpError::RouteExists);
        }
        let target = RouteTarget::Remote {
            vni: nexthop_vni,
            underlay,
        };
        v.routes.commit(&[insert_op(addr, len, target)]);
        self.changed();
        Ok(())
    }

    /// Removes an external route.
    ///
    /// Errors: no interface in the VNI → NO_VNI; no such prefix → ROUTE_NOT_FOUND; the prefix
    /// is an interface's or alias prefix's route → ROUTE_BAD_PORT.
    pub fn delete_route(&mut self, vni: Vni, addr: IpAddr, len: u8) -> Result<(), DpError> {
        let v = self.vnis.get_mut(&vni).ok_or(DpError::NoVni)?;
        match exact(v.routes.table(), addr, len) {
            None => return Err(DpError::RouteNotFound),
            Some(RouteTarget::Local { .. }) => return Err(DpError::RouteBadPort),
            Some(RouteTarget::Remote { .. }) => {}
        }
        v.routes.commit(&[remove_op(addr, len)]);
        self.changed();
        Ok(())
    }

    /// The external IPv4 routes of one VNI (of every VNI for `vni` 0), in dpservice's order.
    /// Unknown VNI → NO_VNI.
    pub fn list_routes(&self, vni: Vni) -> Result<Vec<RouteInfo>, DpError> {
        let mut out = Vec::new();
        if vni == 0 {
            for (&id, v) in &self.vnis {
                Self::external_routes_v4(id, v.routes.table(), &mut out);
            }
        } else {
            let v = self.vnis.get(&vni).ok_or(DpError::NoVni)?;
            Self::external_routes_v4(vni, v.routes.table(), &mut out);
        }
        Ok(out)
    }

    fn external_routes_v4(vni: Vni, t: &VniTable, out: &mut Vec<RouteInfo>) {
        let mut routes: Vec<(u32, u8, Vni, Ipv6Addr)> =
            t.v4.iter()
                .filter_map(|(addr, len, target)| match *target {
                    RouteTarget::Remote { vni, underlay } => Some((addr, len, vni, underlay)),
                    RouteTarget::Local { .. } => None,
                })
                .collect();
        routes.sort_unstable_by_key(|&(addr, len, _, _)| list_order_v4(addr, len));
        out.extend(
            routes
                .into_iter()
                .map(|(addr, len, nexthop_vni, nexthop)| RouteInfo {
                    vni,
                    addr: IpAddr::V4(Ipv4Addr::from(addr)),
                    len,
                    nexthop_vni,
                    nexthop,
                }),
        );
    }

    // ----- VNIs -------------------------------------------------------------------------------

    /// Whether the VNI has tables (i.e. an interface uses it). dpservice answers WRONG_TYPE
    /// for [`VniType::Both`].
    pub fn vni_in_use(&self, vni: Vni, ty: VniType) -> Result<bool, DpError> {
        match ty {
            VniType::Both => Err(DpError::WrongType),
            VniType::Ipv4 | VniType::Ipv6 => Ok(self.vnis.contains_key(&vni)),
        }
    }

    /// Clears the VNI's tables back to its interfaces' own routes. Only [`VniType::Both`] is
    /// supported (else WRONG_TYPE); an unknown VNI is not an error.
    pub fn reset_vni(&mut self, vni: Vni, ty: VniType) -> Result<(), DpError> {
        if ty != VniType::Both {
            return Err(DpError::WrongType);
        }
        if !self.vnis.contains_key(&vni) {
            return Ok(());
        }
        let t = self.interface_routes(vni);
        if let Some(v) = self.vnis.get_mut(&vni) {
            v.routes.replace(t);
        }
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
