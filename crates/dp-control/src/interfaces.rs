//! The interfaces domain: VF devices, the interfaces bound to them (the snapshot's
//! `ifaces_by_port`), and the interface RPCs (CreateInterface, DeleteInterface, GetInterface,
//! ListInterfaces).
//!
//! As in dpservice (`src/dp_iface.c`, `src/grpc/dp_grpc_impl.c`), an interface owns a `/32`
//! and a `/128` route (`Local{port}`) for its addresses in its VNI, and an underlay address;
//! an all-zero address means "no IPv4" / "no IPv6" and gets no route. Its alias prefixes
//! ([`crate::prefixes`]) are kept with it and go away with it, and so do its VIP
//! ([`crate::vip`]), its NAT ([`crate::nat`]) and its firewall rules ([`crate::firewall`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use dp_tables::{Iface, LpmKey, MeterConfig, PortId, PxeConfig, RouteTarget, Vni};

use crate::errors::DpError;
use crate::firewall::FirewallRuleSpec;
use crate::nat::LocalNat;
use crate::prefixes::PrefixInfo;
use crate::routes::{exact, RouteOp};
use crate::state::State;
use crate::underlay::UnderlayUse;
use crate::vip::VipInfo;

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
    /// Rate limits of what the VM sends (Mbit/s, 0 = none); checked by
    /// [`State::create_interface`] as dpservice's `dp_port_meter_config`.
    pub meter: MeterConfig,
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
    /// The metering as set by CreateInterface.
    pub meter: MeterConfig,
}

/// What CreateInterface returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedInterface {
    pub underlay: Ipv6Addr,
    pub vf_name: String,
}

/// An interface with what it owns besides its own routes.
#[derive(Debug)]
pub(crate) struct IfaceEntry {
    pub(crate) info: InterfaceInfo,
    /// Alias prefixes, in creation order.
    pub(crate) prefixes: Vec<PrefixInfo>,
    /// Load balancer target prefixes (CreateLoadBalancerPrefix), in creation order.
    pub(crate) lb_prefixes: Vec<PrefixInfo>,
    /// CreateVip's address and underlay address.
    pub(crate) vip: Option<VipInfo>,
    /// CreateNat's range and underlay address.
    pub(crate) nat: Option<LocalNat>,
    /// Firewall rules as given, in creation order.
    pub(crate) firewall: Vec<FirewallRuleSpec>,
    /// VIP, NAT and firewall rules, as the packet path reads them (kept in step with `vip`,
    /// `nat` and `firewall` by their domains).
    pub(crate) services: dp_tables::IfaceServices,
}

impl IfaceEntry {
    fn to_iface(&self) -> Iface {
        let mut prefixes_v4 = Vec::new();
        let mut prefixes_v6 = Vec::new();
        // A load balancer target prefix is, for the packet path, an alias prefix without a
        // route: what the VM may send from and what the underlay may deliver to it.
        for p in self.prefixes.iter().chain(&self.lb_prefixes) {
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
                    IpAddr::V6(_) => None,
                },
                next_server_v6: match p.next_server {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                },
                boot_filename: p.boot_filename.clone(),
            }),
            prefixes_v4,
            prefixes_v6,
            services: self.services.clone(),
            meter: i.meter,
        }
    }

    /// The interface's own routes.
    pub(crate) fn own_routes(&self) -> impl Iterator<Item = (IpAddr, u8)> {
        let i = &self.info;
        let v4 = (!i.ipv4.is_unspecified()).then_some((IpAddr::V4(i.ipv4), 32));
        let v6 = (!i.ipv6.is_unspecified()).then_some((IpAddr::V6(i.ipv6), 128));
        v4.into_iter().chain(v6)
    }
}

enum DeviceRef {
    Vf(PortId),
    Uplink,
}

/// The ports interfaces can be bound to, the interfaces, and the snapshot's `ifaces_by_port`.
#[derive(Debug)]
pub(crate) struct Interfaces {
    vf_by_name: HashMap<String, PortId>,
    vf_names: BTreeMap<PortId, String>,
    uplinks: Vec<PortId>,
    by_id: HashMap<String, IfaceEntry>,
    /// The published interfaces, indexed by port; shared with the snapshots until the next
    /// interface change (copy on write), so publishing a route change does not copy it.
    by_port: Arc<Vec<Option<Arc<Iface>>>>,
}

impl Interfaces {
    /// No interfaces yet; `vfs` can be bound, `uplinks` are the PF ports.
    pub(crate) fn new(
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
        Interfaces {
            vf_by_name,
            vf_names,
            uplinks,
            by_id: HashMap::new(),
            by_port: Arc::new(vec![None; ports]),
        }
    }

    /// The snapshot's part: the interfaces by port.
    pub(crate) fn published(&self) -> Arc<Vec<Option<Arc<Iface>>>> {
        Arc::clone(&self.by_port)
    }

    /// The PF ports (pf0, pf1 if there is one).
    pub(crate) fn uplinks(&self) -> &[PortId] {
        &self.uplinks
    }

    pub(crate) fn get(&self, id: &str) -> Option<&IfaceEntry> {
        self.by_id.get(id)
    }

    /// Changes an interface's entry and republishes it.
    pub(crate) fn update<R>(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut IfaceEntry) -> R,
    ) -> Option<R> {
        let e = self.by_id.get_mut(id)?;
        let r = f(e);
        let port = usize::from(e.info.port);
        let iface = Arc::new(e.to_iface());
        if let Some(slot) = Arc::make_mut(&mut self.by_port).get_mut(port) {
            *slot = Some(iface);
        }
        Some(r)
    }

    /// Every interface, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = &IfaceEntry> {
        self.by_id.values()
    }

    /// The interfaces in `vni`.
    pub(crate) fn in_vni(&self, vni: Vni) -> impl Iterator<Item = &IfaceEntry> {
        self.by_id.values().filter(move |e| e.info.vni == vni)
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
        self.by_port
            .get(usize::from(port))
            .and_then(|slot| slot.as_ref())
    }

    fn insert(&mut self, entry: IfaceEntry) {
        let port = usize::from(entry.info.port);
        if let Some(slot) = Arc::make_mut(&mut self.by_port).get_mut(port) {
            *slot = Some(Arc::new(entry.to_iface()));
        }
        self.by_id.insert(entry.info.id.clone(), entry);
    }

    fn remove(&mut self, id: &str) -> Option<IfaceEntry> {
        let entry = self.by_id.remove(id)?;
        if let Some(slot) = Arc::make_mut(&mut self.by_port).get_mut(usize::from(entry.info.port)) {
            *slot = None;
        }
        Some(entry)
    }
}

/// dpservice's checks of `dp_port_meter_config` (which it only applies on Mellanox NICs; we
/// meter on every port, so always): the total rate fits its 32-bit VF rate limit, and the
/// public rate is not above the total (so a public rate needs a total rate).
fn check_meter(m: &MeterConfig) -> Result<(), DpError> {
    if m.total_mbps > u64::from(u32::MAX) || m.public_mbps > m.total_mbps {
        return Err(DpError::PortMeter);
    }
    Ok(())
}

impl State {
    /// Binds a VF to a new interface.
    ///
    /// Errors, in dpservice's order: unknown device → NOT_FOUND; device in use (or an
    /// uplink) → ALREADY_EXISTS; preferred underlay taken → VNF_INSERT; id taken → VM_HANDLE;
    /// the `/32` or `/128` routed already in the VNI → ROUTE_EXISTS; a metering dpservice
    /// refuses (a total rate beyond `u32::MAX` Mbit/s, or a public rate above the total —
    /// also when the total is 0) → PORT_METER. A refused request changes nothing.
    pub fn create_interface(&mut self, spec: InterfaceSpec) -> Result<CreatedInterface, DpError> {
        let port = match self.interfaces.resolve_device(&spec.device) {
            None => return Err(DpError::NotFound),
            Some(DeviceRef::Uplink) => return Err(DpError::AlreadyExists),
            Some(DeviceRef::Vf(port)) => port,
        };
        if self.interfaces.port_iface(port).is_some() {
            return Err(DpError::AlreadyExists);
        }
        let underlay = self.underlays.take(spec.preferred_underlay)?;
        if self.interfaces.by_id.contains_key(&spec.id) {
            return Err(DpError::VmHandle);
        }
        let entry = IfaceEntry {
            info: InterfaceInfo {
                id: spec.id,
                vni: spec.vni,
                ipv4: spec.ipv4,
                ipv6: spec.ipv6,
                underlay,
                device: spec.device,
                vf_name: self
                    .interfaces
                    .vf_names
                    .get(&port)
                    .cloned()
                    .unwrap_or_default(),
                port,
                hostname: spec.hostname.filter(|h| !h.is_empty()),
                pxe: spec.pxe,
                meter: spec.meter,
            },
            prefixes: Vec::new(),
            lb_prefixes: Vec::new(),
            vip: None,
            nat: None,
            firewall: Vec::new(),
            services: Default::default(),
        };
        if let Some(t) = self.vnis.table(spec.vni) {
            if entry
                .own_routes()
                .any(|(addr, len)| exact(t, addr, len).is_some())
            {
                return Err(DpError::RouteExists);
            }
        }
        // dpservice configures the meter after the routes and undoes them when it fails.
        check_meter(&spec.meter)?;

        let target = RouteTarget::Local { port };
        let ops: Vec<RouteOp> = entry
            .own_routes()
            .map(|(addr, len)| RouteOp::insert(addr, len, target))
            .collect();
        self.vnis.attach(spec.vni).commit(&ops);
        self.underlays.insert(
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
        self.interfaces.insert(entry);
        self.changed();
        Ok(created)
    }

    /// Removes an interface with its routes, alias prefixes, VIP, NAT, firewall rules and
    /// underlay addresses, and releases its port. The VNI goes away with its last interface,
    /// and with it the VNI's neighbor NATs (as in dpservice). Unknown id → NOT_FOUND.
    pub fn delete_interface(&mut self, id: &str) -> Result<InterfaceInfo, DpError> {
        let entry = self.interfaces.remove(id).ok_or(DpError::NotFound)?;
        self.underlays.remove(&entry.info.underlay);
        for p in entry.prefixes.iter().chain(&entry.lb_prefixes) {
            self.underlays.remove(&p.underlay);
        }
        self.release_vip(&entry);
        self.release_nat(&entry);
        let vni = entry.info.vni;
        if self.vnis.detach(vni).is_none() {
            self.remove_vni_neighbor_nats(vni);
        } else if let Some(routes) = self.vnis.routes_mut(vni) {
            let mine = RouteTarget::Local {
                port: entry.info.port,
            };
            let ops: Vec<RouteOp> = entry
                .own_routes()
                .chain(entry.prefixes.iter().map(|p| (p.addr, p.len)))
                .filter(|&(addr, len)| exact(routes.table(), addr, len) == Some(mine))
                .map(|(addr, len)| RouteOp::remove(addr, len))
                .collect();
            routes.commit(&ops);
        }
        self.changed();
        Ok(entry.info)
    }

    /// One interface. Unknown id → NOT_FOUND.
    pub fn get_interface(&self, id: &str) -> Result<InterfaceInfo, DpError> {
        self.interfaces
            .get(id)
            .map(|e| e.info.clone())
            .ok_or(DpError::NotFound)
    }

    /// All interfaces, in port order (as dpservice walks its ports).
    pub fn list_interfaces(&self) -> Vec<InterfaceInfo> {
        self.interfaces
            .by_port
            .iter()
            .flatten()
            .filter_map(|i| self.interfaces.get(&i.id).map(|e| e.info.clone()))
            .collect()
    }
}
