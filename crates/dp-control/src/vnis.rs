//! The VNI domain: which VNIs exist, their routing tables (the snapshot's `vnis`), and the VNI
//! RPCs (CheckVniInUse, ResetVni).
//!
//! As in dpservice (`src/dp_vni.c`), a VNI exists while at least one interface uses it; it is
//! created by the first `CreateInterface` and destroyed, routes included, with its last
//! interface. `ResetVni` and `Initialize` rebuild VNI tables with the interface routes only:
//! external and alias-prefix routes are gone, the alias prefix registrations (and their
//! underlay addresses) stay, as in dpservice.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use dp_tables::{RouteTarget, Vni, VniTable};

use crate::errors::DpError;
use crate::routes::{RouteOp, VniRoutes};
use crate::state::State;

/// The `type` selector of CheckVniInUse / ResetVni.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VniType {
    Ipv4,
    Ipv6,
    Both,
}

#[derive(Debug, Default)]
struct VniEntry {
    /// Interfaces using this VNI (dpservice's VNI reference count).
    ifaces: u32,
    routes: VniRoutes,
}

/// The VNIs in use and their routing tables.
#[derive(Debug, Default)]
pub(crate) struct Vnis {
    by_id: BTreeMap<Vni, VniEntry>,
}

impl Vnis {
    /// The snapshot's part: every VNI's published table. O(VNIs), never O(routes): each table
    /// is an `Arc` shared with the snapshot.
    pub(crate) fn published(&self) -> FxHashMap<Vni, Arc<VniTable>> {
        self.by_id
            .iter()
            .map(|(&vni, v)| (vni, v.routes.live()))
            .collect()
    }

    pub(crate) fn contains(&self, vni: Vni) -> bool {
        self.by_id.contains_key(&vni)
    }

    /// The VNI's current tables.
    pub(crate) fn table(&self, vni: Vni) -> Option<&VniTable> {
        self.by_id.get(&vni).map(|v| v.routes.table())
    }

    /// Every VNI's current tables, in VNI order.
    pub(crate) fn tables(&self) -> impl Iterator<Item = (Vni, &VniTable)> {
        self.by_id.iter().map(|(&vni, v)| (vni, v.routes.table()))
    }

    pub(crate) fn routes_mut(&mut self, vni: Vni) -> Option<&mut VniRoutes> {
        self.by_id.get_mut(&vni).map(|v| &mut v.routes)
    }

    /// One more interface uses `vni` (created with empty tables if new); its tables.
    pub(crate) fn attach(&mut self, vni: Vni) -> &mut VniRoutes {
        let v = self.by_id.entry(vni).or_default();
        v.ifaces += 1;
        &mut v.routes
    }

    /// One interface less uses `vni`: the VNI goes away, tables included, with its last
    /// interface (`None`), else its tables.
    pub(crate) fn detach(&mut self, vni: Vni) -> Option<&mut VniRoutes> {
        let v = self.by_id.get_mut(&vni)?;
        v.ifaces = v.ifaces.saturating_sub(1);
        if v.ifaces == 0 {
            self.by_id.remove(&vni);
            return None;
        }
        self.routes_mut(vni)
    }

    /// Whole-table copies made so far, see [`State::table_copies`].
    pub(crate) fn table_copies(&self) -> u64 {
        self.by_id.values().map(|v| v.routes.copies()).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn ids(&self) -> Vec<Vni> {
        self.by_id.keys().copied().collect()
    }
}

impl State {
    /// Whether the VNI has tables (i.e. an interface uses it). dpservice answers WRONG_TYPE
    /// for [`VniType::Both`].
    pub fn vni_in_use(&self, vni: Vni, ty: VniType) -> Result<bool, DpError> {
        match ty {
            VniType::Both => Err(DpError::WrongType),
            VniType::Ipv4 | VniType::Ipv6 => Ok(self.vnis.contains(vni)),
        }
    }

    /// Clears the VNI's tables back to its interfaces' own routes. Only [`VniType::Both`] is
    /// supported (else WRONG_TYPE); an unknown VNI is not an error.
    pub fn reset_vni(&mut self, vni: Vni, ty: VniType) -> Result<(), DpError> {
        if ty != VniType::Both {
            return Err(DpError::WrongType);
        }
        if !self.vnis.contains(vni) {
            return Ok(());
        }
        self.reset_vni_tables(vni);
        self.changed();
        Ok(())
    }

    /// Rebuilds the VNI's tables with its interfaces' own routes only (no publish).
    pub(crate) fn reset_vni_tables(&mut self, vni: Vni) {
        let mut t = VniTable::default();
        for e in self.interfaces.in_vni(vni) {
            let target = RouteTarget::Local { port: e.info.port };
            for (addr, len) in e.own_routes() {
                RouteOp::insert(addr, len, target).apply(&mut t);
            }
        }
        if let Some(routes) = self.vnis.routes_mut(vni) {
            routes.replace(t);
        }
    }
}
