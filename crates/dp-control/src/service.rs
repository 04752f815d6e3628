//! The `dpdkironcore.v1.DPDKironcore` gRPC service: request conversion and validation
//! (dpservice's `FillRequest()` step), the state operations, and response building.
//!
//! As in dpservice (`src/grpc/dp_async_grpc.cpp`):
//!
//! * before `Initialize`, every call except `Initialize` fails with gRPC `ABORTED`
//!   `"not initialized"` — `CheckInitialized` included (clients rely on that message);
//! * a request whose fields cannot be converted fails with gRPC `INVALID_ARGUMENT` and
//!   dpservice's message (`"Invalid interface_id"`, `"Invalid route.prefix.ip"`, ...);
//! * otherwise the call succeeds at the gRPC level and the response's `status` carries
//!   `{0, "Success"}` or the dpservice error code and name.
//!
//! RPCs not implemented yet answer gRPC `UNIMPLEMENTED` (after the initialization check).
//!
//! # Publishing
//!
//! A request that changes the configuration is answered only once its change is published to
//! the packet path (the next batch a worker starts sees it). Requests that arrive together are
//! published together: each applies its change without publishing
//! ([`State::deferred`]), then yields to the runtime so that the other requests already
//! received can apply theirs, and the first of them to resume publishes everything pending
//! ([`State::publish_through`]); the others find their change published and answer at once.
//! A request cancelled while waiting still publishes its change (on drop). Read-only requests
//! publish pending changes before they read, so no answer shows a change the packet path does
//! not see yet.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dp_proto::v1::{self, dpd_kironcore_server::DpdKironcore};
use dp_proto::{addr_from_bytes, c_str, ip_from_proto, ip_to_bytes, ip_to_proto};
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::errors::{ok_status, DpError};
use crate::state::{InterfaceInfo, InterfaceSpec, Pxe, State, VniType};

/// Size of dpservice's interface id buffer (`DP_IFACE_ID_MAX_LEN`, NUL included).
pub const IFACE_ID_SIZE: usize = 64;
/// Size of dpservice's device name buffer (`RTE_ETH_NAME_MAX_LEN`).
pub const DEVICE_NAME_SIZE: usize = 64;
/// Size of dpservice's hostname buffer (`DP_IFACE_HOSTNAME_MAX_LEN`).
pub const HOSTNAME_SIZE: usize = 64;
/// Size of dpservice's PXE boot file name buffer (`DP_IFACE_PXE_MAX_LEN`).
pub const PXE_FILE_SIZE: usize = 32;
/// Size of dpservice's version string buffers (`DP_GRPC_VERSION_MAX_LEN`).
pub const VERSION_SIZE: usize = 64;

/// Message of the error returned by RPCs not implemented yet.
pub const UNIMPLEMENTED_MESSAGE: &str = "not implemented yet in dpservice-rs";

/// State shared by the [`crate::ControlPlane`] handle and the gRPC service.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) uuid: String,
    pub(crate) version: String,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| {
            // A panic inside `State::deferred` must not leave publishing deferred for good.
            let mut state = PoisonError::into_inner(poisoned);
            state.end_deferred();
            state
        })
    }
}

/// The tonic service implementation; obtain it through [`crate::ControlPlane::grpc_service`].
#[derive(Clone, Debug)]
pub struct GrpcService {
    pub(crate) shared: Arc<Shared>,
}

// ----- conversion helpers (dpservice's C-string and inet_pton rules: dp_proto::convert) ---------

/// dpservice's `SNPRINTF_FAILED`: the field must be non-empty and fit into `size` bytes
/// (NUL included). Returns the text as C would store it.
fn fixed_str(b: &[u8], size: usize) -> Option<String> {
    let s = c_str(b);
    if b.is_empty() || s.len() >= size {
        return None;
    }
    Some(String::from_utf8_lossy(s).into_owned())
}

/// dpservice's `IsInterfaceIdValid`: alphanumerics, `_` and `-` only.
fn interface_id_chars_valid(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c == b'-' || c == b'_' || c.is_ascii_alphanumeric())
}

/// An IPv4 address field as dpservice's `inet_pton()` reads it ([`dp_proto::addr_from_bytes`]).
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    addr_from_bytes(b).ok()
}

/// An IPv6 address field as dpservice's `inet_pton()` reads it ([`dp_proto::addr_from_bytes`]).
fn parse_ipv6(b: &[u8]) -> Option<Ipv6Addr> {
    addr_from_bytes(b).ok()
}

/// dpservice's `GrpcToDpAddress`: the address must parse as the version `ipver` names
/// ([`dp_proto::ip_from_proto`]).
fn parse_ip(ip: &v1::IpAddress) -> Option<IpAddr> {
    ip_from_proto(ip).ok()
}

fn parse_vni_type(t: i32) -> Option<VniType> {
    match v1::VniType::try_from(t).ok()? {
        v1::VniType::VniIpv4 => Some(VniType::Ipv4),
        v1::VniType::VniIpv6 => Some(VniType::Ipv6),
        v1::VniType::VniBoth => Some(VniType::Both),
    }
}

fn invalid(what: &'static str, msg: &'static str) -> Status {
    warn!(request = what, error = msg, "Rejected invalid request");
    Status::invalid_argument(msg)
}

fn failed(what: &'static str, e: DpError) -> v1::Status {
    warn!(
        request = what,
        code = e.code(),
        error = e.message(),
        "Failed request"
    );
    e.to_status()
}

/// The request's `interface_id`, as dpservice copies it into its fixed-size buffer.
fn interface_id(what: &'static str, b: &[u8]) -> Result<String, Status> {
    fixed_str(b, IFACE_ID_SIZE).ok_or_else(|| invalid(what, "Invalid interface_id"))
}

/// An alias prefix (`prefix.ip`, then `prefix.length`).
fn alias_prefix(what: &'static str, prefix: Option<v1::Prefix>) -> Result<(IpAddr, u8), Status> {
    let prefix = prefix.unwrap_or_default();
    let addr = parse_ip(&prefix.ip.unwrap_or_default())
        .ok_or_else(|| invalid(what, "Invalid prefix.ip"))?;
    let len = u8::try_from(prefix.length).map_err(|_| invalid(what, "Invalid prefix.length"))?;
    Ok((addr, len))
}

/// A route's prefix (`route.prefix.length`, then `route.prefix.ip`).
fn route_prefix(what: &'static str, prefix: Option<v1::Prefix>) -> Result<(IpAddr, u8), Status> {
    let prefix = prefix.unwrap_or_default();
    let len =
        u8::try_from(prefix.length).map_err(|_| invalid(what, "Invalid route.prefix.length"))?;
    let addr = parse_ip(&prefix.ip.unwrap_or_default())
        .ok_or_else(|| invalid(what, "Invalid route.prefix.ip"))?;
    Ok((addr, len))
}

/// The reply status of a state change: OK (after `on_ok`, which logs it) or the failure.
fn outcome<T>(what: &'static str, res: Result<T, DpError>, on_ok: impl FnOnce(T)) -> v1::Status {
    match res {
        Ok(v) => {
            on_ok(v);
            ok_status()
        }
        Err(e) => failed(what, e),
    }
}

fn text(ip: impl Into<IpAddr>) -> Vec<u8> {
    ip_to_bytes(ip.into())
}

fn interface_to_proto(i: &InterfaceInfo) -> v1::Interface {
    v1::Interface {
        id: i.id.clone().into_bytes(),
        vni: i.vni,
        primary_ipv4: text(i.ipv4),
        primary_ipv6: text(i.ipv6),
        underlay_route: text(i.underlay),
        pci_name: i.device.clone(),
        // Metering has no effect on these ports (as dpservice on non-Mellanox NICs): 0 = none.
        metering_params: Some(v1::MeteringParams::default()),
        hostname: i.hostname.clone().unwrap_or_default(),
    }
}

/// Publishes every change up to `change` when dropped, unless that happened already: at the
/// end of the request, or when the request is cancelled while it waits.
struct PublishOnDrop<'a> {
    shared: &'a Shared,
    change: u64,
}

impl Drop for PublishOnDrop<'_> {
    fn drop(&mut self) {
        self.shared.lock().publish_through(self.change);
    }
}

impl GrpcService {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Fails with gRPC ABORTED "not initialized" before Initialize (without keeping the lock).
    fn ensure_initialized(&self) -> Result<(), Status> {
        self.initialized().map(drop)
    }

    /// The state for a read-only request, once every pending change is published.
    fn read(&self) -> Result<MutexGuard<'_, State>, Status> {
        let mut state = self.initialized()?;
        state.publish_pending();
        Ok(state)
    }

    /// Returns once change `change` (from [`State::deferred`]) is published, publishing it
    /// together with the changes of the other requests that were ready to run.
    async fn published(&self, change: Option<u64>) {
        let Some(change) = change else {
            return;
        };
        let _publish = PublishOnDrop {
            shared: &self.shared,
            change,
        };
        tokio::task::yield_now().await;
    }

    /// The state, if Initialize has been called; gRPC ABORTED "not initialized" otherwise.
    fn initialized(&self) -> Result<MutexGuard<'_, State>, Status> {
        let state = self.state();
        if state.is_initialized() {
            Ok(state)
        } else {
            Err(Status::aborted("not initialized"))
        }
    }

    /// dpservice's `StrToPreferredUnderlay`: empty means none; else an IPv6 address that is `::`
    /// or lies in the host /64 with the externally-generated flag.
    fn preferred_underlay(state: &State, b: &[u8]) -> Option<Option<Ipv6Addr>> {
        if b.is_empty() {
            return Some(None);
        }
        let addr = parse_ipv6(b)?;
        state
            .accepts_preferred_underlay(addr)
            .then_some((!addr.is_unspecified()).then_some(addr))
    }

    fn unimplemented(&self, rpc: &'static str) -> Status {
        if let Err(e) = self.initialized() {
            return e;
        }
        warn!(request = rpc, "Request not implemented yet");
        Status::unimplemented(UNIMPLEMENTED_MESSAGE)
    }
}

/// Implements RPCs of later issues as gRPC UNIMPLEMENTED. The methods are written in the form
/// `#[async_trait]` expands to, because the attribute cannot see into a macro invocation.
macro_rules! unimplemented_rpcs {
    ($( $method:ident ( $req:ident ) -> $resp:ident; )*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: Request<v1::$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<v1::$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(std::future::ready(Err(self.unimplemented(stringify!($method)))))
            }
        )*
    };
}

#[tonic::async_trait]
impl DpdKironcore for GrpcService {
    // ----- initialization and version -----------------------------------------------------------

    async fn check_initialized(
        &self,
        _request: Request<v1::CheckInitializedRequest>,
    ) -> Result<Response<v1::CheckInitializedResponse>, Status> {
        let _state = self.initialized()?;
        Ok(Response::new(v1::CheckInitializedResponse {
            status: Some(ok_status()),
            uuid: self.shared.uuid.clone(),
        }))
    }

    async fn initialize(
        &self,
        _request: Request<v1::InitializeRequest>,
    ) -> Result<Response<v1::InitializeResponse>, Status> {
        let ((), change) = self.state().deferred(State::initialize);
        self.published(change).await;
        info!(uuid = %self.shared.uuid, "Initialized");
        Ok(Response::new(v1::InitializeResponse {
            status: Some(ok_status()),
            uuid: self.shared.uuid.clone(),
        }))
    }

    async fn get_version(
        &self,
        request: Request<v1::GetVersionRequest>,
    ) -> Result<Response<v1::GetVersionResponse>, Status> {
        let _state = self.initialized()?;
        let r = request.into_inner();
        const WHAT: &str = "GetVersion";
        debug!(
            client_protocol = %r.client_protocol,
            client_name = %r.client_name,
            client_version = %r.client_version,
            "Getting version for client"
        );
        if fixed_str(r.client_protocol.as_bytes(), VERSION_SIZE).is_none() {
            return Err(invalid(WHAT, "Invalid client_protocol"));
        }
        if fixed_str(r.client_name.as_bytes(), VERSION_SIZE).is_none() {
            return Err(invalid(WHAT, "Invalid client_name"));
        }
        if fixed_str(r.client_version.as_bytes(), VERSION_SIZE).is_none() {
            return Err(invalid(WHAT, "Invalid client_version"));
        }
        Ok(Response::new(v1::GetVersionResponse {
            status: Some(ok_status()),
            service_protocol: self.shared.version.clone(),
            service_version: self.shared.version.clone(),
        }))
    }

    // ----- interfaces ---------------------------------------------------------------------------

    async fn list_interfaces(
        &self,
        _request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        let state = self.read()?;
        let interfaces = state
            .list_interfaces()
            .iter()
            .map(interface_to_proto)
            .collect();
        Ok(Response::new(v1::ListInterfacesResponse {
            status: Some(ok_status()),
            interfaces,
        }))
    }

    async fn get_interface(
        &self,
        request: Request<v1::GetInterfaceRequest>,
    ) -> Result<Response<v1::GetInterfaceResponse>, Status> {
        const WHAT: &str = "GetInterface";
        let state = self.read()?;
        let r = request.into_inner();
        let id = interface_id(WHAT, &r.interface_id)?;
        Ok(Response::new(match state.get_interface(&id) {
            Ok(i) => v1::GetInterfaceResponse {
                status: Some(ok_status()),
                interface: Some(interface_to_proto(&i)),
            },
            Err(e) => v1::GetInterfaceResponse {
                status: Some(failed(WHAT, e)),
                interface: None,
            },
        }))
    }

    async fn create_interface(
        &self,
        request: Request<v1::CreateInterfaceRequest>,
    ) -> Result<Response<v1::CreateInterfaceResponse>, Status> {
        const WHAT: &str = "CreateInterface";
        self.ensure_initialized()?;
        let r = request.into_inner();
        debug!(
            interface_id = %String::from_utf8_lossy(&r.interface_id),
            vni = r.vni,
            device = %r.device_name,
            "Adding interface"
        );
        if !interface_id_chars_valid(&r.interface_id) {
            return Err(invalid(WHAT, "Invalid interface_id"));
        }
        let ipv4_text = r.ipv4_config.as_ref().map(|c| c.primary_address.as_slice());
        let ipv4 = parse_ipv4(ipv4_text.unwrap_or_default())
            .ok_or_else(|| invalid(WHAT, "Invalid ipv4_config.primary_address"))?;
        let ipv6_text = r.ipv6_config.as_ref().map(|c| c.primary_address.as_slice());
        let ipv6 = parse_ipv6(ipv6_text.unwrap_or_default())
            .ok_or_else(|| invalid(WHAT, "Invalid ipv6_config.primary_address"))?;
        if ipv4.is_unspecified() && ipv6.is_unspecified() {
            return Err(invalid(
                WHAT,
                "Invalid ipv4_config.primary_address and ipv6_config.primary_address combination",
            ));
        }
        let mut pxe = None;
        if let Some(p) = r.pxe_config.as_ref().filter(|p| !p.next_server.is_empty()) {
            // dpservice: the PXE server has the version the interface uses for DHCP(v6).
            let server = if ipv6.is_unspecified() {
                parse_ipv4(p.next_server.as_bytes()).map(IpAddr::V4)
            } else {
                parse_ipv6(p.next_server.as_bytes()).map(IpAddr::V6)
            };
            let server = server.ok_or_else(|| invalid(WHAT, "Invalid pxe_config.next_server"))?;
            let file = fixed_str(p.boot_filename.as_bytes(), PXE_FILE_SIZE)
                .ok_or_else(|| invalid(WHAT, "Invalid pxe_config.boot_filename"))?;
            pxe = Some(Pxe {
                next_server: server,
                boot_filename: file,
            });
        }
        let device = fixed_str(r.device_name.as_bytes(), DEVICE_NAME_SIZE)
            .ok_or_else(|| invalid(WHAT, "Invalid device_name"))?;
        let id = interface_id(WHAT, &r.interface_id)?;
        let hostname = if r.hostname.is_empty() {
            None
        } else {
            Some(
                fixed_str(r.hostname.as_bytes(), HOSTNAME_SIZE)
                    .ok_or_else(|| invalid(WHAT, "Invalid hostname"))?,
            )
        };
        let preferred_underlay =
            Self::preferred_underlay(&self.state(), &r.preferred_underlay_route)
                .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
        if let Some(m) = r
            .metering_parameters
            .filter(|m| m.total_rate != 0 || m.public_rate != 0)
        {
            warn!(
                interface_id = %id,
                total_rate = m.total_rate,
                public_rate = m.public_rate,
                "Metering config will not take effect on these ports"
            );
        }

        let spec = InterfaceSpec {
            id: id.clone(),
            vni: r.vni,
            ipv4,
            ipv6,
            device,
            pxe,
            hostname,
            preferred_underlay,
        };
        let (result, change) = self.state().deferred(|s| s.create_interface(spec));
        self.published(change).await;
        Ok(Response::new(match result {
            Ok(created) => {
                info!(
                    interface_id = %id,
                    vni = r.vni,
                    %ipv4,
                    %ipv6,
                    underlay = %created.underlay,
                    vf = %created.vf_name,
                    "Interface created"
                );
                v1::CreateInterfaceResponse {
                    status: Some(ok_status()),
                    underlay_route: text(created.underlay),
                    vf: Some(v1::VirtualFunction {
                        name: created.vf_name,
                        ..Default::default()
                    }),
                }
            }
            Err(e) => v1::CreateInterfaceResponse {
                status: Some(failed(WHAT, e)),
                ..Default::default()
            },
        }))
    }

    async fn delete_interface(
        &self,
        request: Request<v1::DeleteInterfaceRequest>,
    ) -> Result<Response<v1::DeleteInterfaceResponse>, Status> {
        const WHAT: &str = "DeleteInterface";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let id = interface_id(WHAT, &r.interface_id)?;
        let (result, change) = self.state().deferred(|s| s.delete_interface(&id));
        self.published(change).await;
        let status = outcome(WHAT, result, |i| {
            info!(interface_id = %id, vni = i.vni, port = i.port, "Interface removed");
        });
        Ok(Response::new(v1::DeleteInterfaceResponse {
            status: Some(status),
        }))
    }

    // ----- alias prefixes -----------------------------------------------------------------------

    async fn list_prefixes(
        &self,
        request: Request<v1::ListPrefixesRequest>,
    ) -> Result<Response<v1::ListPrefixesResponse>, Status> {
        const WHAT: &str = "ListPrefixes";
        let state = self.read()?;
        let r = request.into_inner();
        let id = interface_id(WHAT, &r.interface_id)?;
        Ok(Response::new(match state.list_prefixes(&id) {
            Ok(list) => v1::ListPrefixesResponse {
                status: Some(ok_status()),
                prefixes: list
                    .iter()
                    .map(|p| v1::Prefix {
                        ip: Some(ip_to_proto(p.addr)),
                        length: u32::from(p.len),
                        underlay_route: text(p.underlay),
                    })
                    .collect(),
            },
            Err(e) => v1::ListPrefixesResponse {
                status: Some(failed(WHAT, e)),
                prefixes: Vec::new(),
            },
        }))
    }

    async fn create_prefix(
        &self,
        request: Request<v1::CreatePrefixRequest>,
    ) -> Result<Response<v1::CreatePrefixResponse>, Status> {
        const WHAT: &str = "CreatePrefix";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let id = interface_id(WHAT, &r.interface_id)?;
        let (addr, len) = alias_prefix(WHAT, r.prefix)?;
        let preferred = Self::preferred_underlay(&self.state(), &r.preferred_underlay_route)
            .ok_or_else(|| invalid(WHAT, "Invalid preferred_underlay_route"))?;
        let (result, change) = self
            .state()
            .deferred(|s| s.create_prefix(&id, addr, len, preferred));
        self.published(change).await;
        Ok(Response::new(match result {
            Ok(underlay) => {
                info!(interface_id = %id, prefix = %addr, len, %underlay, "Alias prefix added");
                v1::CreatePrefixResponse {
                    status: Some(ok_status()),
                    underlay_route: text(underlay),
                }
            }
            Err(e) => v1::CreatePrefixResponse {
                status: Some(failed(WHAT, e)),
                underlay_route: Vec::new(),
            },
        }))
    }

    async fn delete_prefix(
        &self,
        request: Request<v1::DeletePrefixRequest>,
    ) -> Result<Response<v1::DeletePrefixResponse>, Status> {
        const WHAT: &str = "DeletePrefix";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let id = interface_id(WHAT, &r.interface_id)?;
        let (addr, len) = alias_prefix(WHAT, r.prefix)?;
        let (result, change) = self.state().deferred(|s| s.delete_prefix(&id, addr, len));
        self.published(change).await;
        let status = outcome(WHAT, result, |_| {
            info!(interface_id = %id, prefix = %addr, len, "Alias prefix removed");
        });
        Ok(Response::new(v1::DeletePrefixResponse {
            status: Some(status),
        }))
    }

    // ----- routes -------------------------------------------------------------------------------

    async fn list_routes(
        &self,
        request: Request<v1::ListRoutesRequest>,
    ) -> Result<Response<v1::ListRoutesResponse>, Status> {
        const WHAT: &str = "ListRoutes";
        let state = self.read()?;
        let vni = request.into_inner().vni;
        Ok(Response::new(match state.list_routes(vni) {
            Ok(routes) => v1::ListRoutesResponse {
                status: Some(ok_status()),
                routes: routes
                    .iter()
                    .map(|r| v1::Route {
                        prefix: Some(v1::Prefix {
                            ip: Some(ip_to_proto(r.addr)),
                            length: u32::from(r.len),
                            underlay_route: Vec::new(),
                        }),
                        nexthop_vni: r.nexthop_vni,
                        nexthop_address: Some(ip_to_proto(IpAddr::V6(r.nexthop))),
                        weight: 0,
                    })
                    .collect(),
            },
            Err(e) => v1::ListRoutesResponse {
                status: Some(failed(WHAT, e)),
                routes: Vec::new(),
            },
        }))
    }

    async fn create_route(
        &self,
        request: Request<v1::CreateRouteRequest>,
    ) -> Result<Response<v1::CreateRouteResponse>, Status> {
        const WHAT: &str = "CreateRoute";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let route = r.route.unwrap_or_default();
        let (addr, len) = route_prefix(WHAT, route.prefix)?;
        let nexthop = parse_ip(&route.nexthop_address.unwrap_or_default())
            .ok_or_else(|| invalid(WHAT, "Invalid route.nexthop_address"))?;
        let (result, change) = self
            .state()
            .deferred(|s| s.create_route(r.vni, addr, len, route.nexthop_vni, nexthop));
        self.published(change).await;
        let status = outcome(WHAT, result, |_| {
            info!(
                vni = r.vni,
                prefix = %addr,
                len,
                nexthop_vni = route.nexthop_vni,
                %nexthop,
                "Route added"
            );
        });
        Ok(Response::new(v1::CreateRouteResponse {
            status: Some(status),
        }))
    }

    async fn delete_route(
        &self,
        request: Request<v1::DeleteRouteRequest>,
    ) -> Result<Response<v1::DeleteRouteResponse>, Status> {
        const WHAT: &str = "DeleteRoute";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let (addr, len) = route_prefix(WHAT, r.route.unwrap_or_default().prefix)?;
        let (result, change) = self.state().deferred(|s| s.delete_route(r.vni, addr, len));
        self.published(change).await;
        let status = outcome(WHAT, result, |_| {
            info!(vni = r.vni, prefix = %addr, len, "Route removed");
        });
        Ok(Response::new(v1::DeleteRouteResponse {
            status: Some(status),
        }))
    }

    // ----- VNIs ---------------------------------------------------------------------------------

    async fn check_vni_in_use(
        &self,
        request: Request<v1::CheckVniInUseRequest>,
    ) -> Result<Response<v1::CheckVniInUseResponse>, Status> {
        const WHAT: &str = "CheckVniInUse";
        let state = self.read()?;
        let r = request.into_inner();
        let ty = parse_vni_type(r.r#type).ok_or_else(|| invalid(WHAT, "Invalid type"))?;
        Ok(Response::new(match state.vni_in_use(r.vni, ty) {
            Ok(in_use) => v1::CheckVniInUseResponse {
                status: Some(ok_status()),
                in_use,
            },
            Err(e) => v1::CheckVniInUseResponse {
                status: Some(failed(WHAT, e)),
                in_use: false,
            },
        }))
    }

    async fn reset_vni(
        &self,
        request: Request<v1::ResetVniRequest>,
    ) -> Result<Response<v1::ResetVniResponse>, Status> {
        const WHAT: &str = "ResetVni";
        self.ensure_initialized()?;
        let r = request.into_inner();
        let ty = parse_vni_type(r.r#type).ok_or_else(|| invalid(WHAT, "Invalid type"))?;
        let (result, change) = self.state().deferred(|s| s.reset_vni(r.vni, ty));
        self.published(change).await;
        let status = outcome(WHAT, result, |_| {
            info!(vni = r.vni, "VNI reset");
        });
        Ok(Response::new(v1::ResetVniResponse {
            status: Some(status),
        }))
    }

    // ----- not implemented yet ------------------------------------------------------------------

    unimplemented_rpcs! {
        list_load_balancer_prefixes(ListLoadBalancerPrefixesRequest) -> ListLoadBalancerPrefixesResponse;
        create_load_balancer_prefix(CreateLoadBalancerPrefixRequest) -> CreateLoadBalancerPrefixResponse;
        delete_load_balancer_prefix(DeleteLoadBalancerPrefixRequest) -> DeleteLoadBalancerPrefixResponse;
        create_vip(CreateVipRequest) -> CreateVipResponse;
        get_vip(GetVipRequest) -> GetVipResponse;
        delete_vip(DeleteVipRequest) -> DeleteVipResponse;
        create_load_balancer(CreateLoadBalancerRequest) -> CreateLoadBalancerResponse;
        get_load_balancer(GetLoadBalancerRequest) -> GetLoadBalancerResponse;
        delete_load_balancer(DeleteLoadBalancerRequest) -> DeleteLoadBalancerResponse;
        list_load_balancers(ListLoadBalancersRequest) -> ListLoadBalancersResponse;
        create_load_balancer_target(CreateLoadBalancerTargetRequest) -> CreateLoadBalancerTargetResponse;
        list_load_balancer_targets(ListLoadBalancerTargetsRequest) -> ListLoadBalancerTargetsResponse;
        delete_load_balancer_target(DeleteLoadBalancerTargetRequest) -> DeleteLoadBalancerTargetResponse;
        create_nat(CreateNatRequest) -> CreateNatResponse;
        get_nat(GetNatRequest) -> GetNatResponse;
        delete_nat(DeleteNatRequest) -> DeleteNatResponse;
        list_local_nats(ListLocalNatsRequest) -> ListLocalNatsResponse;
        create_neighbor_nat(CreateNeighborNatRequest) -> CreateNeighborNatResponse;
        delete_neighbor_nat(DeleteNeighborNatRequest) -> DeleteNeighborNatResponse;
        list_neighbor_nats(ListNeighborNatsRequest) -> ListNeighborNatsResponse;
        list_firewall_rules(ListFirewallRulesRequest) -> ListFirewallRulesResponse;
        create_firewall_rule(CreateFirewallRuleRequest) -> CreateFirewallRuleResponse;
        get_firewall_rule(GetFirewallRuleRequest) -> GetFirewallRuleResponse;
        delete_firewall_rule(DeleteFirewallRuleRequest) -> DeleteFirewallRuleResponse;
        capture_start(CaptureStartRequest) -> CaptureStartResponse;
        capture_stop(CaptureStopRequest) -> CaptureStopResponse;
        capture_status(CaptureStatusRequest) -> CaptureStatusResponse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_tables::{Publisher, RouteTarget, Snapshot};

    /// An initialized service with one interface in VNI 100, called directly (no transport).
    fn service() -> (crate::ControlPlane, GrpcService) {
        let config = crate::Config::new("fc00:1::1".parse().unwrap(), [("dtapvf_0", 2)], [0, 1]);
        let control = crate::ControlPlane::new(Publisher::new(Snapshot::default()), config);
        let svc = GrpcService {
            shared: Arc::clone(&control.shared),
        };
        control.with_state(|s| {
            s.initialize();
            s.create_interface(crate::state::InterfaceSpec {
                id: "vm1".into(),
                vni: 100,
                ipv4: "10.100.1.1".parse().unwrap(),
                ipv6: Ipv6Addr::UNSPECIFIED,
                device: "dtapvf_0".into(),
                pxe: None,
                hostname: None,
                preferred_underlay: None,
            })
            .unwrap();
        });
        (control, svc)
    }

    fn route_req(i: u32) -> v1::CreateRouteRequest {
        v1::CreateRouteRequest {
            vni: 100,
            route: Some(v1::Route {
                prefix: Some(dp_proto::prefix_to_proto(
                    IpAddr::V4(Ipv4Addr::from((11 << 24) | (i << 8))),
                    24,
                )),
                nexthop_vni: 100,
                nexthop_address: Some(ip_to_proto("fc00:2::1".parse().unwrap())),
                weight: 0,
            }),
        }
    }

    fn routed(control: &crate::ControlPlane, i: u32) -> bool {
        let host = Ipv4Addr::from((11 << 24) | (i << 8) | 1);
        matches!(
            control.snapshot().vni(100).and_then(|t| t.lookup_v4(host)),
            Some(RouteTarget::Remote { .. })
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_changes_are_published_together() {
        let (control, svc) = service();
        let g0 = control.snapshot().generation;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let svc = svc.clone();
            let control = control.clone();
            tasks.spawn(async move {
                let r = svc.create_route(Request::new(route_req(i))).await.unwrap();
                assert_eq!(r.into_inner().status.unwrap().code, 0);
                // Answered only once the change is visible to the packet path.
                assert!(routed(&control, i), "route {i} answered unpublished");
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        // The 16 requests were all ready together: one publish for all of them.
        assert_eq!(control.snapshot().generation, g0 + 1);
        assert!(!control.with_state(|s| s.has_pending()));
        // One at a time, every change is published by its own request.
        for i in 16..20 {
            svc.create_route(Request::new(route_req(i))).await.unwrap();
            assert!(routed(&control, i));
        }
        assert_eq!(control.snapshot().generation, g0 + 5);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rejected_requests_do_not_publish() {
        let (control, svc) = service();
        svc.create_route(Request::new(route_req(1))).await.unwrap();
        let g = control.snapshot().generation;
        // Exists already: dpservice error, nothing published.
        let r = svc.create_route(Request::new(route_req(1))).await.unwrap();
        assert_ne!(r.into_inner().status.unwrap().code, 0);
        // Malformed: INVALID_ARGUMENT, nothing published.
        let mut bad = route_req(2);
        bad.route.as_mut().unwrap().nexthop_address = None;
        let e = svc.create_route(Request::new(bad)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "Invalid route.nexthop_address");
        assert_eq!(control.snapshot().generation, g);
        assert!(!routed(&control, 2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_request_still_publishes_its_change() {
        let (control, svc) = service();
        let g = control.snapshot().generation;
        let call = svc.create_route(Request::new(route_req(7)));
        tokio::select! {
            biased;
            _ = call => panic!("answered before yielding"),
            () = std::future::ready(()) => {}
        }
        // Dropped after applying its change, while waiting to publish.
        assert_eq!(control.snapshot().generation, g + 1);
        assert!(routed(&control, 7));
    }

    #[test]
    fn a_panic_while_deferred_does_not_defer_publishing_for_good() {
        let (control, svc) = service();
        let shared = Arc::clone(&svc.shared);
        let panicked = std::thread::spawn(move || {
            let mut state = shared.lock();
            state.deferred(|_| panic!("bug in an operation"));
        })
        .join();
        assert!(panicked.is_err());
        let g = control.snapshot().generation;
        control
            .with_state(|s| {
                s.create_route(
                    100,
                    IpAddr::V4(Ipv4Addr::new(11, 0, 0, 0)),
                    24,
                    100,
                    "fc00::2".parse().unwrap(),
                )
            })
            .unwrap();
        assert_eq!(control.snapshot().generation, g + 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_publish_pending_changes_first() {
        let (control, svc) = service();
        let g = control.snapshot().generation;
        let call = svc.create_route(Request::new(route_req(3)));
        let list = svc.list_routes(Request::new(v1::ListRoutesRequest { vni: 100 }));
        let (created, listed) = tokio::join!(call, list);
        assert_eq!(created.unwrap().into_inner().status.unwrap().code, 0);
        // The listing saw the route, so it must have published it before answering.
        assert_eq!(listed.unwrap().into_inner().routes.len(), 1);
        assert_eq!(control.snapshot().generation, g + 1);
    }

    #[test]
    fn c_string_rules() {
        assert_eq!(fixed_str(b"vm1", 64).as_deref(), Some("vm1"));
        assert_eq!(fixed_str(b"", 64), None);
        assert_eq!(fixed_str(&[b'a'; 63], 64).map(|s| s.len()), Some(63));
        assert_eq!(fixed_str(&[b'a'; 64], 64), None);
        // C sees the text up to the first NUL.
        assert_eq!(fixed_str(b"vm1\0junk", 64).as_deref(), Some("vm1"));
        assert!(interface_id_chars_valid(b"Vm-1_a"));
        assert!(interface_id_chars_valid(b""));
        assert!(!interface_id_chars_valid(b"vm 1"));
        assert!(!interface_id_chars_valid(b"vm.1"));
        assert!(!interface_id_chars_valid(b"vm1\0"));
    }

    #[test]
    fn address_rules() {
        assert_eq!(parse_ipv4(b"10.0.0.1"), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(parse_ipv4(b""), None);
        assert_eq!(parse_ipv4(b"::1"), None);
        assert_eq!(parse_ipv6(b"fc00::1"), Some("fc00::1".parse().unwrap()));
        assert_eq!(parse_ipv6(b"1.2.3.4"), None);
        let v4 = v1::IpAddress {
            ipver: v1::IpVersion::Ipv4 as i32,
            address: b"1.2.3.4".to_vec(),
        };
        assert_eq!(parse_ip(&v4), Some("1.2.3.4".parse().unwrap()));
        let mismatch = v1::IpAddress {
            ipver: v1::IpVersion::Ipv6 as i32,
            address: b"1.2.3.4".to_vec(),
        };
        assert_eq!(parse_ip(&mismatch), None);
        let unknown = v1::IpAddress {
            ipver: 5,
            address: b"1.2.3.4".to_vec(),
        };
        assert_eq!(parse_ip(&unknown), None);
        assert_eq!(parse_vni_type(2), Some(VniType::Both));
        assert_eq!(parse_vni_type(3), None);
    }
}
