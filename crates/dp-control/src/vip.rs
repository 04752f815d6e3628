//! The VIP domain: an interface's 1:1 public IPv4 address (CreateVip, GetVip, DeleteVip).
//!
//! As in dpservice (`src/grpc/dp_grpc_impl.c`, `src/dp_nat.c`), an interface has at most one
//! VIP (a second one is SNAT_EXISTS), with an underlay address of its own allocated as an
//! interface's is (`UnderlayTarget::Vip`). The VIP is a public address of the interface's VNI
//! (the snapshot's `public`, kept by [`crate::nat`]: `PublicTarget::Vip` translating to the
//! interface's own IPv4 address), so it may not be a public address of the VNI already — another
//! interface's VIP, a NAT or a neighbor NAT address (DNAT_EXISTS). It goes away with the
//! interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::errors::DpError;
use crate::interfaces::IfaceEntry;
use crate::state::State;
use crate::underlay::UnderlayUse;

/// An interface's VIP as GetVip reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipInfo {
    pub ip: Ipv4Addr,
    pub underlay: Ipv6Addr,
}

impl State {
    /// Gives the interface the VIP `ip` with an underlay address (the preferred one, else a
    /// generated one), which is returned.
    ///
    /// Errors, in dpservice's order: unknown interface → NO_VM; IPv6 address → BAD_IPVER;
    /// preferred underlay taken → VNF_INSERT; the interface has a VIP → SNAT_EXISTS; the
    /// address is a public address of the VNI already → DNAT_EXISTS; the public address table
    /// is full → DNAT_CREATE.
    pub fn create_vip(
        &mut self,
        iface_id: &str,
        ip: IpAddr,
        preferred_underlay: Option<Ipv6Addr>,
    ) -> Result<Ipv6Addr, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        let (port, vni, private) = (e.info.port, e.info.vni, e.info.ipv4);
        let IpAddr::V4(ip) = ip else {
            return Err(DpError::BadIpVer);
        };
        let underlay = self.underlays.take(preferred_underlay)?;
        if e.vip.is_some() {
            return Err(DpError::SnatExists);
        }
        if self.nat.public.get(vni, ip).is_some() {
            return Err(DpError::DnatExists);
        }
        if !self
            .nat
            .public
            .admits(vni, ip, self.limits.public_addresses)
        {
            return Err(DpError::DnatCreate);
        }

        self.interfaces.update(iface_id, |e| {
            e.vip = Some(VipInfo { ip, underlay });
            e.services.vip = Some(ip);
        });
        self.underlays
            .insert(underlay, UnderlayUse::Vip { port, vni });
        self.nat.public.set_vip(vni, ip, port, private);
        self.changed();
        Ok(underlay)
    }

    /// The interface's VIP. Errors: unknown interface → NO_VM; no VIP → SNAT_NO_DATA.
    pub fn get_vip(&self, iface_id: &str) -> Result<VipInfo, DpError> {
        let e = self.interfaces.get(iface_id).ok_or(DpError::NoVm)?;
        e.vip.ok_or(DpError::SnatNoData)
    }

    /// Removes the interface's VIP with its underlay address and public address.
    /// Errors: unknown interface → NO_VM; no VIP → SNAT_NO_DATA.
    pub fn delete_vip(&mut self, iface_id: &str) -> Result<VipInfo, DpError> {
        let vip = self.get_vip(iface_id)?;
        let vni = self.interfaces.get(iface_id).map(|e| e.info.vni);
        self.interfaces.update(iface_id, |e| {
            e.vip = None;
            e.services.vip = None;
        });
        self.underlays.remove(&vip.underlay);
        if let Some(vni) = vni {
            self.nat.public.remove_vip(vni, vip.ip);
        }
        self.changed();
        Ok(vip)
    }

    /// Releases what a removed interface's VIP held (no publish).
    pub(crate) fn release_vip(&mut self, entry: &IfaceEntry) {
        if let Some(v) = entry.vip {
            self.underlays.remove(&v.underlay);
            self.nat.public.remove_vip(entry.info.vni, v.ip);
        }
    }
}
