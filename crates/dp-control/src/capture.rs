//! The packet capture domain (CaptureStart, CaptureStop, CaptureStatus).
//!
//! As dpservice's worker-side handlers (`src/grpc/dp_grpc_impl.c`, `dp_process_capture_*`, and
//! `src/rte_flow/dp_rte_flow_capture.c`): one capture at a time, of any number of interfaces (dpservice:
//! 16) — VFs by interface id, PFs by index — with a sink address and UDP ports shared by all of them.
//!
//! * Start: a capture is active already → ALREADY_ACTIVE; an interface id that names no
//!   interface, or a PF index that names no uplink → NOT_FOUND; an interface named twice →
//!   ALREADY_ACTIVE (dpservice's `port->captured` check). A refused start changes nothing
//!   (dpservice turns on the ports one by one and means to roll back; its roll-back calls the
//!   enabling function again, so its earlier ports stay captured — we never half-apply).
//!   dpservice also refuses every start (NOT_ACTIVE) when hardware offload is off, since its
//!   capture is a hardware mirror; ours is done by the workers, so it is always available.
//! * Stop: no capture → NOT_ACTIVE; else the number of interfaces that were captured.
//! * Status: `None` when no capture is active; else the configuration with the interfaces in
//!   port order (PFs first, then VFs), as dpservice lists its captured ports.
//!
//! A captured interface that is deleted stops being captured (dpservice's status skips ports
//! that are no longer allocated), and it no longer counts for Stop.
//!
//! The snapshot's part is `capture` ([`dp_tables::CaptureConfig`]): the sink, the ports and the
//! captured port ids.

use std::net::Ipv6Addr;

use dp_tables::{CaptureConfig, CaptureDirections, PortId, CAPTURE_MAX_PORTS};

use crate::errors::DpError;
use crate::state::State;

/// An interface named in a CaptureStart request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureTarget {
    /// An uplink by its index (0: pf0, 1: pf1).
    Pf(u8),
    /// A VM interface by its interface id.
    Vf(String),
}

/// A captured interface as CaptureStatus reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapturedIface {
    Pf(u8),
    Vf(String),
}

/// The request of a CaptureStart (already converted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSpec {
    pub sink: Ipv6Addr,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    pub interfaces: Vec<CaptureTarget>,
}

/// An active capture as CaptureStatus reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureStatus {
    pub sink: Ipv6Addr,
    pub udp_src_port: u16,
    pub udp_dst_port: u16,
    /// In port order.
    pub interfaces: Vec<CapturedIface>,
}

/// The active capture, if any (part of [`State`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Capture {
    active: Option<Active>,
}

#[derive(Clone, Debug)]
struct Active {
    sink: Ipv6Addr,
    udp_src_port: u16,
    udp_dst_port: u16,
    /// The captured ports, sorted; a VF's interface id with it (checked at every use: the
    /// interface may have been deleted since).
    ports: Vec<(PortId, Option<String>)>,
}

impl State {
    /// Starts capturing (see the module docs for the rules and the errors).
    pub fn capture_start(&mut self, spec: &CaptureSpec) -> Result<(), DpError> {
        if self.capture.active.is_some() {
            return Err(DpError::AlreadyActive);
        }
        if spec.interfaces.len() > CAPTURE_MAX_PORTS {
            return Err(DpError::LimitReached);
        }
        let mut ports: Vec<(PortId, Option<String>)> = Vec::with_capacity(spec.interfaces.len());
        for target in &spec.interfaces {
            let (port, id) = match target {
                CaptureTarget::Pf(index) => {
                    let port = PortId::from(*index);
                    if !self.interfaces.uplinks().contains(&port) {
                        return Err(DpError::NotFound);
                    }
                    (port, None)
                }
                CaptureTarget::Vf(id) => {
                    let e = self.interfaces.get(id).ok_or(DpError::NotFound)?;
                    (e.info.port, Some(id.clone()))
                }
            };
            if ports.iter().any(|(p, _)| *p == port) {
                return Err(DpError::AlreadyActive);
            }
            ports.push((port, id));
        }
        ports.sort_by_key(|(p, _)| *p);
        self.capture.active = Some(Active {
            sink: spec.sink,
            udp_src_port: spec.udp_src_port,
            udp_dst_port: spec.udp_dst_port,
            ports,
        });
        self.changed();
        Ok(())
    }

    /// Stops capturing; returns how many interfaces were captured. No capture → NOT_ACTIVE.
    pub fn capture_stop(&mut self) -> Result<u32, DpError> {
        let count = self.captured_ports().count();
        if self.capture.active.take().is_none() {
            return Err(DpError::NotActive);
        }
        self.changed();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The active capture, `None` if there is none.
    pub fn capture_status(&self) -> Option<CaptureStatus> {
        let a = self.capture.active.as_ref()?;
        Some(CaptureStatus {
            sink: a.sink,
            udp_src_port: a.udp_src_port,
            udp_dst_port: a.udp_dst_port,
            interfaces: self
                .captured_ports()
                .map(|(port, id)| match id {
                    Some(id) => CapturedIface::Vf(id.to_owned()),
                    None => CapturedIface::Pf(u8::try_from(port).unwrap_or(u8::MAX)),
                })
                .collect(),
        })
    }

    /// The snapshot's part: the capture the workers apply.
    pub(crate) fn capture_published(&self) -> Option<CaptureConfig> {
        let a = self.capture.active.as_ref()?;
        Some(CaptureConfig::new(
            a.sink,
            a.udp_src_port,
            a.udp_dst_port,
            CaptureDirections::default(),
            self.captured_ports().map(|(port, _)| port),
        ))
    }

    /// The captured ports whose interface is still there (PFs always are), in port order.
    fn captured_ports(&self) -> impl Iterator<Item = (PortId, Option<&str>)> {
        self.capture
            .active
            .iter()
            .flat_map(|a| a.ports.iter())
            .filter(|(port, id)| match id {
                None => true,
                Some(id) => self
                    .interfaces
                    .get(id)
                    .is_some_and(|e| e.info.port == *port),
            })
            .map(|(port, id)| (*port, id.as_deref()))
    }
}
