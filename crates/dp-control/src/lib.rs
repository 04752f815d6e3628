//! The control plane of dpservice-rs: the `dpdkironcore.v1.DPDKironcore` gRPC service,
//! wire- and behaviour-compatible with ironcore dpservice, owning the authoritative
//! configuration and publishing immutable [`dp_tables::Snapshot`]s for the packet path.
//!
//! # Using it from the daemon
//!
//! ```no_run
//! use dp_control::{Config, ControlPlane};
//! use dp_tables::{Publisher, Snapshot};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::new(Snapshot::default());
//! let reader = publisher.reader(); // hand clones of this to the workers
//! # let _ = reader;
//! let config = Config::new(
//!     "fc00:1::1".parse()?,                                    // --ipv6
//!     [("dtapvf_0", 2), ("dtapvf_1", 3)],                     // VF devices: name, PortId
//!     [0, 1],                                                  // uplinks pf0, pf1
//! );
//! let control = ControlPlane::new(publisher, config);
//!
//! // Either let the control plane run the server (dpservice service + gRPC health,
//! // HTTP/2 keepalive 15 s as dpservice sets it; on a thread and runtime of its own) ...
//! let listener = tokio::net::TcpListener::bind("[::]:1337").await?;
//! control.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//!
//! // ... or add the services to a tonic server of your own:
//! let (health_reporter, health) = dp_control::health_service();
//! dp_control::set_serving(&health_reporter).await;
//! tonic::transport::Server::builder()
//!     .add_service(health)
//!     .add_service(control.grpc_service())
//!     .serve("[::]:1337".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Interfaces are bound by `device_name`: a VF's name from [`Config::vfs`] or dpservice's
//! TAP-mode alias `net_tap<N>` (N = PortId; the uplinks' aliases answer ALREADY_EXISTS like
//! dpservice's PF ports).
//!
//! # Behaviour (what is taken from dpservice)
//!
//! * Before `Initialize`, every RPC but `Initialize` fails with gRPC `ABORTED`
//!   `"not initialized"` (`CheckInitialized` included: clients use it to detect a fresh
//!   service). `Initialize` always succeeds, returns the instance UUID (random, upper case,
//!   fixed for the process lifetime) and, when called again, resets every VNI's routes to the
//!   interface routes (as dpservice does).
//! * Malformed requests get gRPC `INVALID_ARGUMENT` with dpservice's message (e.g.
//!   `"Invalid interface_id"`). Well-formed requests get gRPC OK and `status` = `{0,"Success"}`
//!   or a dpservice error code and name (see [`DpError`]).
//! * `GetVersion` reports [`Config::service_version`] (the crate version by default) as both
//!   `service_protocol` and `service_version`, as dpservice reports one version for both.
//! * Underlay addresses are generated as dpservice does (see [`underlay`]), for interfaces,
//!   alias prefixes, VIPs and NATs alike.
//! * Firewall rules, VIPs, NATs and neighbor NATs follow dpservice's checks and codes, except
//!   that firewall rules are enforced (DROP and priorities) and conflicting NAT/VIP set-ups are
//!   refused (see [`firewall`], [`vip`], [`nat`] and docs/compatibility.md).
//! * Tables filled on request have limits ([`Limits`]); a full table is a dpservice error code.
//! * Load balancers, their targets and target prefixes follow dpservice's checks and codes
//!   (see [`loadbalancers`]).
//! * Packet capture (CaptureStart/Stop/Status) follows dpservice's checks and codes; the
//!   copies are made by the workers (see [`capture`]).
//!
//! The operations themselves live in [`state::State`] (usable without gRPC), the gRPC
//! conversion and validation in [`service`].
//!
//! # Domains
//!
//! The control plane is organised by RPC family. Each domain has a state module (its part of
//! [`state::State`], the part of the published [`Snapshot`] it owns, and its operations) and a
//! gRPC module (`service/<domain>.rs`: request conversion and response building), both named
//! after it:
//!
//! | domain | state | snapshot part | gRPC |
//! |---|---|---|---|
//! | interfaces | [`interfaces`] | `ifaces_by_port` | `service/interfaces.rs` |
//! | alias prefixes | [`prefixes`] | (their interface, routes and underlay addresses) | `service/prefixes.rs` |
//! | routes | [`routes`] | (the VNI tables) | `service/routes.rs` |
//! | VNIs | [`vnis`] | `vnis` | `service/vnis.rs` |
//! | underlay addresses | [`underlay`] | `underlay` | (used by the others) |
//! | firewall | [`firewall`] | (each interface's `services.firewall`) | `service/firewall.rs` |
//! | VIPs | [`vip`] | (`public`, each interface's `services.vip`) | `service/vip.rs` |
//! | NAT | [`nat`] | `public`, `neighbor_nats` (each interface's `services.nat`) | `service/nat.rs` |
//! | load balancers | [`loadbalancers`] | `load_balancers`, `lb_generation` (target prefixes in their interface's prefixes and the underlay map) | `service/loadbalancers.rs` |
//! | capture | [`capture`] | `capture` | `service/capture.rs` |
//! | initialization, version | [`state`] | — | `service/init.rs` |
//!
//! A domain whose table in the snapshot changes per request keeps it in a `VersionedTable`
//! (`versioned.rs`: triple buffering plus an operation log, so publishing costs O(change), not
//! O(table)), as the VNI route tables do: implement `Apply` for the table and its operations.
//! Request fields are converted with [`dp_proto::convert`] (addresses: the one C-string-aware
//! parser, [`dp_proto::addr_from_bytes`]).

#![forbid(unsafe_code)]

pub mod capture;
pub mod errors;
pub mod firewall;
pub mod grpc_metrics;
pub mod interfaces;
pub mod loadbalancers;
pub mod nat;
pub mod prefixes;
pub mod routes;
pub mod service;
pub mod state;
pub mod underlay;
mod versioned;
pub mod vip;
pub mod vnis;

use std::future::Future;
use std::net::Ipv6Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dp_proto::v1::dpd_kironcore_server::DpdKironcoreServer;
use dp_tables::{PortId, Publisher, Snapshot, SnapshotReader};
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

pub use errors::DpError;
pub use grpc_metrics::{GrpcCounters, GRPC_COUNTERS};
pub use service::GrpcService;
pub use state::{State, VfDevice};
pub use underlay::UnderlayMode;

/// HTTP/2 keepalive interval of the server (dpservice sets `GRPC_ARG_KEEPALIVE_TIME_MS` 15000).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// What the control plane needs to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The host's underlay address (`--ipv6`); generated underlay addresses share its /64.
    pub underlay_ipv6: Ipv6Addr,
    /// The VF ports interfaces can be bound to.
    pub vfs: Vec<VfDevice>,
    /// The uplink (PF) ports.
    pub uplinks: Vec<PortId>,
    /// How underlay addresses are randomised (default: like a release dpservice build).
    pub underlay_mode: UnderlayMode,
    /// Reported by GetVersion (default: this crate's version).
    pub service_version: String,
    /// Table sizes (default: dpservice's, see [`Limits`]).
    pub limits: Limits,
}

/// Sizes of the tables the control plane fills on request. A request that would go beyond
/// one is refused with a dpservice status code, never silently dropped.
///
/// | limit | default | why | when full |
/// |---|---|---|---|
/// | [`Limits::firewall_rules_per_interface`] | 1024 | dpservice has none (a list per interface) | LIMIT_REACHED (209) |
/// | [`Limits::public_addresses`] | 4032 | dpservice's DNAT table (`DP_NAT_TABLE_MAX` = 126 VFs · 32) | DNAT_CREATE (322), as dpservice |
/// | [`Limits::neighbor_nats`] | 4032 | dpservice has none (a list); as many as public addresses | LIMIT_REACHED (209) |
///
/// The public addresses are the VIPs and NAT addresses (local or neighbor) of all VNIs, one
/// entry per (VNI, address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Firewall rules of one interface.
    pub firewall_rules_per_interface: usize,
    /// Public addresses (VIPs, NAT addresses) of all VNIs together.
    pub public_addresses: usize,
    /// Neighbor NATs of all VNIs together.
    pub neighbor_nats: usize,
    /// Load balancers (dpservice: 256).
    pub load_balancers: usize,
    /// Targets of one load balancer (dpservice: 64).
    pub lb_targets: usize,
    /// Protocol/port pairs of one load balancer (dpservice: 16, of which it accepts 15).
    pub lb_ports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            firewall_rules_per_interface: 1024,
            public_addresses: 126 * 32,
            neighbor_nats: 126 * 32,
            load_balancers: 1024,
            lb_targets: 1024,
            lb_ports: 16,
        }
    }
}

impl Config {
    /// A configuration with the default underlay mode and version.
    pub fn new<N: Into<String>>(
        underlay_ipv6: Ipv6Addr,
        vfs: impl IntoIterator<Item = (N, PortId)>,
        uplinks: impl IntoIterator<Item = PortId>,
    ) -> Self {
        Config {
            underlay_ipv6,
            vfs: vfs
                .into_iter()
                .map(|(name, port)| VfDevice {
                    name: name.into(),
                    port,
                })
                .collect(),
            uplinks: uplinks.into_iter().collect(),
            underlay_mode: UnderlayMode::default(),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            limits: Limits::default(),
        }
    }
}

/// The control plane: a cheap-to-clone handle on the configuration and the gRPC service.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    shared: Arc<service::Shared>,
}

impl ControlPlane {
    /// Takes over `publisher`; every successful change is published through it.
    pub fn new(publisher: Publisher, config: Config) -> Self {
        let mut state = State::new(
            publisher,
            config.underlay_ipv6,
            config.underlay_mode,
            config.vfs,
            config.uplinks,
        );
        state.set_limits(config.limits);
        ControlPlane {
            shared: Arc::new(service::Shared {
                state: Mutex::new(state),
                uuid: underlay::random_uuid(),
                version: config.service_version,
            }),
        }
    }

    /// The instance UUID returned by Initialize / CheckInitialized.
    pub fn uuid(&self) -> &str {
        &self.shared.uuid
    }

    /// A reader of the published snapshots, for the workers.
    pub fn reader(&self) -> SnapshotReader {
        self.shared.lock().reader()
    }

    /// Whether a client has called Initialize.
    pub fn is_initialized(&self) -> bool {
        self.shared.lock().is_initialized()
    }

    /// The snapshot currently published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.lock().snapshot()
    }

    /// Runs `f` on the configuration (e.g. to pre-configure it without gRPC, or to inspect it).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.shared.lock())
    }

    /// The gRPC service, to be added to a tonic server.
    pub fn grpc_service(&self) -> DpdKironcoreServer<GrpcService> {
        DpdKironcoreServer::new(GrpcService {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Serves the dpservice API and gRPC health (reporting SERVING) on `listener` until
    /// `shutdown` completes (or this future is dropped).
    ///
    /// The server runs on a thread of its own ([`SERVER_THREAD`]) with a current-thread tokio
    /// runtime, whatever runtime calls this: it serves the same requests with about a fifth
    /// less CPU than a one-worker multi-thread runtime (see BENCHMARKS.md, "Control plane,
    /// session 6"). The caller's runtime only waits for `shutdown`.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done, mut finished) = tokio::sync::oneshot::channel();
        let control = self.clone();
        std::thread::Builder::new()
            .name(SERVER_THREAD.into())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    // Stops on `stop` or when the caller goes away (the sender is dropped).
                    let stopped = async {
                        let _ = stopped.await;
                    };
                    control
                        .serve_here(listener, stopped)
                        .await
                        .map_err(ServeError::from)
                });
                let _ = done.send(result);
            })?;
        tokio::select! {
            result = &mut finished => return result.unwrap_or(Err(ServeError::Stopped)),
            () = shutdown => {}
        }
        let _ = stop.send(());
        finished.await.unwrap_or(Err(ServeError::Stopped))
    }

    /// [`Self::serve`] on the calling task's runtime.
    async fn serve_here(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let (reporter, health) = health_service();
        set_serving(&reporter).await;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(grpc_server_address = %addr, "Server started and listening");
        }
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .layer(grpc_metrics::GrpcMetricsLayer::new(&GRPC_COUNTERS))
            .add_service(health)
            .add_service(self.grpc_service())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await
    }
}

/// Name of the thread [`ControlPlane::serve`] runs the gRPC server on.
pub const SERVER_THREAD: &str = "dp-grpc-serve";

/// Why [`ControlPlane::serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The listener could not move to the server's thread, or that thread could not start.
    #[error("cannot start the gRPC server: {0}")]
    Io(#[from] std::io::Error),
    /// The server's thread ended without a result (it panicked).
    #[error("the gRPC server thread stopped")]
    Stopped,
}

/// A gRPC health service (`grpc.health.v1.Health`) and its reporter.
pub fn health_service() -> (HealthReporter, HealthServer<impl Health>) {
    tonic_health::server::health_reporter()
}

/// Reports the server (`""`) and the dpservice service as SERVING, as dpservice does once its
/// server runs.
pub async fn set_serving(reporter: &HealthReporter) {
    reporter
        .set_serving::<DpdKironcoreServer<GrpcService>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
}
