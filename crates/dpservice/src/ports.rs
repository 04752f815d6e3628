//! Creating the daemon's ports: uplinks pf0/pf1 and VF TAPs `<vf-pattern>0…N-1`, numbered in
//! that order (pf0 = 0, pf1 = 1, VFs from 2). With `--vhost-user DIR` the VFs are vhost-user
//! sockets `DIR/<vf-pattern>N` instead (`dp_ports::vhost_user`).
//!
//! With `--workers N` every port is opened N times, one handle per worker, and the kernel shares
//! the traffic among them by flow hash: a TAP with N queues (`IFF_MULTI_QUEUE`), an AF_PACKET
//! interface with N sockets in one `PACKET_FANOUT` hash group. AF_XDP would need N hardware
//! queues bound one per worker; not done, so N > 1 is refused for it.
//!
//! VM TAPs exchange virtio-net headers (checksum and TCP segmentation offload, see
//! `dp_ports::tap`) unless `--no-tap-offload`. Uplink TAPs do not: nothing could be passed on
//! to the underlay router in a virtio-net header (it has no GSO type for IP-in-IPv6), so the
//! router's kernel segments and checksums before its frames reach us, and the pipeline's
//! transmit stage (`dp_pipeline::tx`) segments and checksums what we send there.

use std::net::Ipv6Addr;
use std::sync::Arc;

use dp_packet::MacAddr;
use dp_pipeline::{PortEntry, PortKind, PortTable};
use dp_ports::{
    AfPacketOptions, AfPacketPort, AfXdpOptions, AfXdpPort, Port, TapOptions, TapPort,
    VhostUserPort,
};
use dp_tables::PortId;

use crate::options::{NicType, Options};

/// The ports in PortId order, once per worker, and the shared table describing them.
pub struct Ports {
    /// `per_worker[k]`: worker k's handle (queue) of every port, in PortId order.
    pub per_worker: Vec<Vec<Box<dyn Port>>>,
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

    /// Number of ports (per worker).
    pub fn count(&self) -> usize {
        self.table.len()
    }

    /// Whether any port takes offload requests, or may (then workers need large buffers).
    pub fn any_offload(&self) -> bool {
        self.per_worker
            .first()
            .is_some_and(|ports| ports.iter().any(|p| p.may_offload()))
    }
}

/// How to open each port.
#[derive(Clone, Copy, Debug)]
struct OpenSpec {
    nic_type: NicType,
    workers: u16,
    vnet_hdr: bool,
    /// The PACKET_FANOUT group of this port (AF_PACKET with several workers).
    fanout_group: u16,
}

/// Our MAC on a port: locally administered, unique per host (from the underlay address) and port.
/// The dataplane's MAC on a port: the one a `--vdev` EAL argument gives its TAP (as DPDK's TAP
/// driver takes it for its own side), else ours from the underlay address.
fn port_mac(opts: &Options, name: &str, underlay: Ipv6Addr, port: PortId) -> MacAddr {
    opts.vdevs
        .iter()
        .find(|v| v.iface == name)
        .and_then(|v| v.mac)
        .unwrap_or_else(|| own_mac(underlay, port))
}

/// The VM's MAC on a VF TAP until its frames tell: the TAP's kernel-side MAC — or, for a TAP
/// a `--vdev` gave a MAC, that MAC, as dpservice guesses the VM's MAC to be the port's own
/// (`neigh_mac = own_mac` for a VF) until ARP, DHCP or ND arrive (its test/local suite checks
/// this: test_l2_addr_once).
fn initial_vm_mac(opts: &Options, name: &str, kernel_side: MacAddr) -> MacAddr {
    opts.vdevs
        .iter()
        .find(|v| v.iface == name)
        .and_then(|v| v.mac)
        .unwrap_or(kernel_side)
}

fn own_mac(underlay: Ipv6Addr, port: PortId) -> MacAddr {
    // FNV-1a over the address: two hosts on one link get different MACs.
    let hash = underlay.octets().iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [h0, h1, h2, _] = hash.to_be_bytes();
    let [hi, lo] = port.to_be_bytes();
    MacAddr([0x02, h0, h1, h2 ^ hi, lo, 0x01])
}

/// Opens one port of the configured kind, once per worker: a TAP the daemon creates, or an
/// existing interface.
fn open_port(spec: OpenSpec, name: &str) -> Result<Vec<Box<dyn Port>>, String> {
    let n = usize::from(spec.workers.max(1));
    let mut out: Vec<Box<dyn Port>> = Vec::with_capacity(n);
    match spec.nic_type {
        NicType::Tap => {
            let opts = TapOptions {
                vnet_hdr: spec.vnet_hdr,
                queues: spec.workers.max(1),
            };
            for q in TapPort::create_with(name, None, &opts)
                .map_err(|e| format!("cannot create TAP device '{name}': {e}"))?
            {
                out.push(Box::new(q));
            }
        }
        NicType::AfPacket => {
            let opts = AfPacketOptions {
                fanout_group: (n > 1).then_some(spec.fanout_group),
                ..AfPacketOptions::default()
            };
            for _ in 0..n {
                out.push(Box::new(AfPacketPort::open(name, &opts).map_err(|e| {
                    format!("cannot open '{name}' with AF_PACKET: {e}")
                })?));
            }
        }
        NicType::AfXdp => {
            if n > 1 {
                return Err(format!(
                    "--workers {n} with --nic-type af_xdp: each worker would need a queue of \
                     '{name}' of its own, and this build binds AF_XDP to queue 0 only; use \
                     --workers 1, or af_packet / tap"
                ));
            }
            let port = AfXdpPort::open(name, &AfXdpOptions::default())
                .map_err(|e| format!("cannot open '{name}' with AF_XDP: {e}"))?;
            tracing::info!(device = %name, mode = ?port.xdp_mode(), zero_copy = port.zero_copy(), "AF_XDP socket bound");
            out.push(Box::new(port));
        }
    }
    Ok(out)
}

/// A VM port served to QEMU as a vhost-user backend at `dir/name`, with a queue pair per
/// worker (QEMU's `queues=` up to as many). The guest's MAC is QEMU's: unknown until the
/// guest's first frame.
fn open_vhost_user(
    dir: &std::path::Path,
    name: &str,
    workers: u16,
) -> Result<Vec<Box<dyn Port>>, String> {
    let path = dir.join(name);
    let pairs = usize::from(workers.max(1));
    if pairs > dp_ports::vhost_user::device::MAX_QUEUE_PAIRS {
        return Err(format!(
            "--workers {pairs} with --vhost-user: a vhost-user port has at most {} queue pairs",
            dp_ports::vhost_user::device::MAX_QUEUE_PAIRS
        ));
    }
    let queues = VhostUserPort::listen_queues(&path, name, pairs)
        .map_err(|e| format!("cannot serve vhost-user socket {}: {e}", path.display()))?;
    Ok(queues
        .into_iter()
        .map(|q| Box::new(q) as Box<dyn Port>)
        .collect())
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
    let pattern = opts
        .vf_pattern
        .as_deref()
        .unwrap_or(crate::options::DEFAULT_VF_PATTERN);
    for i in 0..opts.vf_count {
        wanted.push((format!("{pattern}{i}"), PortKind::Vf));
    }
    // The VFs served as vhost-user sockets (by name): the first --vhost-user-vfs, or all.
    let vhost_user_vfs = match &opts.vhost_user {
        Some(_) => opts.vhost_user_vfs.unwrap_or(opts.vf_count),
        None => 0,
    };
    let is_vhost_user = |name: &str| {
        (0..vhost_user_vfs.min(opts.vf_count)).any(|i| name == format!("{pattern}{i}"))
    };

    let workers = opts.workers.max(1);
    if let Some(dir) = &opts.vhost_user {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the vhost-user directory {}: {e}",
                dir.display()
            )
        })?;
    }
    if workers > 1 && opts.nic_type == NicType::AfXdp {
        return Err(format!(
            "--workers {workers} is not supported with --nic-type af_xdp (one AF_XDP socket per \
             interface queue 0 only); use --workers 1, or --nic-type af_packet / tap"
        ));
    }
    let mut per_worker: Vec<Vec<Box<dyn Port>>> = (0..workers)
        .map(|_| Vec::with_capacity(wanted.len()))
        .collect();
    // A fanout group id unique to this daemon and port (groups are per network namespace).
    let fanout_base = (std::process::id() as u16).wrapping_mul(257);
    let mut entries = Vec::with_capacity(wanted.len());
    let mut uplinks = Vec::new();
    let mut vfs = Vec::new();
    for (index, (name, kind)) in wanted.into_iter().enumerate() {
        let id = PortId::try_from(index).map_err(|_| "too many ports".to_string())?;
        let spec = OpenSpec {
            nic_type: opts.nic_type,
            workers,
            vnet_hdr: kind == PortKind::Vf && !opts.no_tap_offload,
            fanout_group: fanout_base.wrapping_add(id),
        };
        let vhost_user = kind == PortKind::Vf && is_vhost_user(&name);
        let queues = match &opts.vhost_user {
            Some(dir) if vhost_user => open_vhost_user(dir, &name, workers)?,
            _ => open_port(spec, &name)?,
        };
        let Some(port) = queues.first() else {
            return Err(format!("'{name}': no port opened"));
        };
        let entry = PortEntry::new(kind, name.clone(), port_mac(opts, &name, underlay, id));
        // A TAP's kernel side is the VM's NIC: its MAC (or a --vdev's, see `initial_vm_mac`)
        // is the VM's until the VM's own frames say otherwise. An existing interface's MAC (a veth's host end) is *ours*, not the VM's: the
        // VM's MAC stays unknown — traffic to it is dropped as `no_peer_mac` — until the VM sends
        // a frame or answers the ARP/ND probe the graph's tick sends for it
        // (`dp_pipeline::nodes::VmProbe`).
        if kind == PortKind::Vf {
            if opts.nic_type == NicType::Tap && !vhost_user {
                entry.learn_peer_mac(initial_vm_mac(opts, &name, port.mac()));
            }
            vfs.push((name.clone(), id));
        } else {
            uplinks.push(id);
        }
        tracing::info!(port = id, device = %name, kind = ?kind, mac = %entry.own_mac,
            offload = port.offloads(), queues = queues.len(), "port created");
        entries.push(entry);
        for (worker, q) in per_worker.iter_mut().zip(queues) {
            worker.push(q);
        }
    }
    Ok(Ports {
        per_worker,
        table: Arc::new(PortTable::new(entries)),
        uplinks,
        vfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vdev_mac_is_the_ports_mac() {
        let ul: Ipv6Addr = "fc00:1::1".parse().unwrap();
        let mut opts = Options::default();
        opts.vdevs = vec![crate::options::Vdev {
            iface: "vm0".into(),
            mac: Some(MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0])),
        }];
        assert_eq!(
            port_mac(&opts, "vm0", ul, 2),
            MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0])
        );
        assert_eq!(port_mac(&opts, "p0", ul, 0), own_mac(ul, 0));
        // dpservice's first guess of the VM's MAC is the port's; without a --vdev MAC, the
        // TAP's kernel side.
        let kernel = MacAddr([0x52, 0x54, 0, 0, 0, 7]);
        assert_eq!(
            initial_vm_mac(&opts, "vm0", kernel),
            MacAddr([0x66, 0x66, 0x66, 0x66, 0x66, 0])
        );
        assert_eq!(initial_vm_mac(&opts, "vm1", kernel), kernel);
    }

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
