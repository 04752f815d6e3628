//! Creating the daemon's ports: uplinks pf0/pf1 and VF TAPs `<vf-pattern>0…N-1`, numbered in
//! that order (pf0 = 0, pf1 = 1, VFs from 2).

use std::net::Ipv6Addr;
use std::sync::Arc;

use dp_packet::MacAddr;
use dp_pipeline::{PortEntry, PortKind, PortTable};
use dp_ports::{AfPacketOptions, AfPacketPort, AfXdpOptions, AfXdpPort, Port, TapPort};
use dp_tables::PortId;

use crate::options::{NicType, Options};

/// The ports in PortId order, and the shared table describing them.
pub struct Ports {
    pub list: Vec<Box<dyn Port>>,
    pub table: Arc<PortTable>,
    uplinks: Vec<PortId>,
    vfs: Vec<(String, PortId)>,
}

impl Ports {
    pub fn vf_devices(&self) -> Vec<(String, PortId)> {
        self.vfs.clone()
    }

    pub fn uplink_ids(&self) -> Vec<PortId> {
        self.uplinks.clone()
    }
}

/// Our MAC on a port: locally administered, unique per host (from the underlay address) and port.
fn own_mac(underlay: Ipv6Addr, port: PortId) -> MacAddr {
    // FNV-1a over the address: two hosts on one link get different MACs.
    let hash = underlay.octets().iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [h0, h1, h2, _] = hash.to_be_bytes();
    let [hi, lo] = port.to_be_bytes();
    MacAddr([0x02, h0, h1, h2 ^ hi, lo, 0x01])
}

/// Opens one port of the configured kind: a TAP the daemon creates, or an existing interface.
fn open_port(nic_type: NicType, name: &str) -> Result<Box<dyn Port>, String> {
    Ok(match nic_type {
        NicType::Tap => Box::new(
            TapPort::create(name, None)
                .map_err(|e| format!("cannot create TAP device '{name}': {e}"))?,
        ),
        NicType::AfPacket => Box::new(
            AfPacketPort::open(name, &AfPacketOptions::default())
                .map_err(|e| format!("cannot open '{name}' with AF_PACKET: {e}"))?,
        ),
        NicType::AfXdp => {
            let port = AfXdpPort::open(name, &AfXdpOptions::default())
                .map_err(|e| format!("cannot open '{name}' with AF_XDP: {e}"))?;
            tracing::info!(device = %name, mode = ?port.xdp_mode(), zero_copy = port.zero_copy(), "AF_XDP socket bound");
            Box::new(port)
        }
    })
}

pub fn create(opts: &Options, underlay: Ipv6Addr) -> Result<Ports, String> {
    let mut wanted: Vec<(String, PortKind)> = Vec::new();
    if let Some(pf0) = &opts.pf0 {
        wanted.push((pf0.clone(), PortKind::Uplink));
    } else {
        return Err("--pf0 is required: the first uplink's interface name".into());
    }
    if let Some(pf1) = &opts.pf1 {
        wanted.push((pf1.clone(), PortKind::Uplink));
    }
    let pattern = opts.vf_pattern.as_deref().unwrap_or("dtapvf_");
    for i in 0..opts.vf_count {
        wanted.push((format!("{pattern}{i}"), PortKind::Vf));
    }

    let mut list: Vec<Box<dyn Port>> = Vec::with_capacity(wanted.len());
    let mut entries = Vec::with_capacity(wanted.len());
    let mut uplinks = Vec::new();
    let mut vfs = Vec::new();
    for (index, (name, kind)) in wanted.into_iter().enumerate() {
        let id = PortId::try_from(index).map_err(|_| "too many ports".to_string())?;
        let port = open_port(opts.nic_type, &name)?;
        let entry = PortEntry::new(kind, name.clone(), own_mac(underlay, id));
        // The kernel side's MAC is the VM's until its own frames say otherwise (a TAP's peer is
        // its kernel side; an existing interface's MAC is only a placeholder until then).
        if kind == PortKind::Vf {
            entry.learn_peer_mac(port.mac());
            vfs.push((name.clone(), id));
        } else {
            uplinks.push(id);
        }
        tracing::info!(port = id, device = %name, kind = ?kind, mac = %entry.own_mac, "port created");
        entries.push(entry);
        list.push(port);
    }
    Ok(Ports {
        list,
        table: Arc::new(PortTable::new(entries)),
        uplinks,
        vfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_macs_are_local_unicast_and_distinct() {
        let ul: Ipv6Addr = "fc00:1::1".parse().unwrap();
        let a = own_mac(ul, 2);
        let b = own_mac(ul, 3);
        assert_ne!(a, b);
        assert!(a.is_unicast() && a.is_local());
        assert_ne!(own_mac("fc00:2::1".parse().unwrap(), 2), a);
    }
}
