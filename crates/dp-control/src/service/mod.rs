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
//!
//! # Layout
//!
//! This module holds the tonic trait implementation, which only dispatches each RPC to its
//! domain's file, and what every RPC shares (the lock, the initialization check, publishing).
//! The RPCs themselves — field conversion, the [`State`] operation, the response — live per
//! domain, next to the state domains of the same names: `init.rs` (CheckInitialized,
//! Initialize, GetVersion), `interfaces.rs`, `prefixes.rs`, `routes.rs`, `vnis.rs`,
//! `firewall.rs`, `vip.rs`, `nat.rs`, `loadbalancers.rs`, `capture.rs`; the request field rules
//! they share are in `fields.rs`.
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

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dp_proto::v1::{self, dpd_kironcore_server::DpdKironcore};
use tonic::{Request, Response, Status};

use crate::state::State;

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

mod capture;
mod fields;
mod firewall;
mod init;
mod interfaces;
mod loadbalancers;
mod nat;
mod prefixes;
mod routes;
mod vip;
mod vnis;

pub use firewall::RULE_ID_SIZE;

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
}

#[tonic::async_trait]
impl DpdKironcore for GrpcService {
    // ----- initialization and version (init.rs) --------------------------------------------------

    async fn check_initialized(
        &self,
        request: Request<v1::CheckInitializedRequest>,
    ) -> Result<Response<v1::CheckInitializedResponse>, Status> {
        init::check_initialized(self, request).await
    }

    async fn initialize(
        &self,
        request: Request<v1::InitializeRequest>,
    ) -> Result<Response<v1::InitializeResponse>, Status> {
        init::initialize(self, request).await
    }

    async fn get_version(
        &self,
        request: Request<v1::GetVersionRequest>,
    ) -> Result<Response<v1::GetVersionResponse>, Status> {
        init::get_version(self, request).await
    }

    // ----- interfaces (interfaces.rs) ------------------------------------------------------------

    async fn list_interfaces(
        &self,
        request: Request<v1::ListInterfacesRequest>,
    ) -> Result<Response<v1::ListInterfacesResponse>, Status> {
        interfaces::list_interfaces(self, request).await
    }

    async fn get_interface(
        &self,
        request: Request<v1::GetInterfaceRequest>,
    ) -> Result<Response<v1::GetInterfaceResponse>, Status> {
        interfaces::get_interface(self, request).await
    }

    async fn create_interface(
        &self,
        request: Request<v1::CreateInterfaceRequest>,
    ) -> Result<Response<v1::CreateInterfaceResponse>, Status> {
        interfaces::create_interface(self, request).await
    }

    async fn delete_interface(
        &self,
        request: Request<v1::DeleteInterfaceRequest>,
    ) -> Result<Response<v1::DeleteInterfaceResponse>, Status> {
        interfaces::delete_interface(self, request).await
    }

    // ----- alias prefixes (prefixes.rs) ----------------------------------------------------------

    async fn list_prefixes(
        &self,
        request: Request<v1::ListPrefixesRequest>,
    ) -> Result<Response<v1::ListPrefixesResponse>, Status> {
        prefixes::list_prefixes(self, request).await
    }

    async fn create_prefix(
        &self,
        request: Request<v1::CreatePrefixRequest>,
    ) -> Result<Response<v1::CreatePrefixResponse>, Status> {
        prefixes::create_prefix(self, request).await
    }

    async fn delete_prefix(
        &self,
        request: Request<v1::DeletePrefixRequest>,
    ) -> Result<Response<v1::DeletePrefixResponse>, Status> {
        prefixes::delete_prefix(self, request).await
    }

    // ----- routes (routes.rs) --------------------------------------------------------------------

    async fn list_routes(
        &self,
        request: Request<v1::ListRoutesRequest>,
    ) -> Result<Response<v1::ListRoutesResponse>, Status> {
        routes::list_routes(self, request).await
    }

    async fn create_route(
        &self,
        request: Request<v1::CreateRouteRequest>,
    ) -> Result<Response<v1::CreateRouteResponse>, Status> {
        routes::create_route(self, request).await
    }

    async fn delete_route(
        &self,
        request: Request<v1::DeleteRouteRequest>,
    ) -> Result<Response<v1::DeleteRouteResponse>, Status> {
        routes::delete_route(self, request).await
    }

    // ----- VNIs (vnis.rs) ------------------------------------------------------------------------

    async fn check_vni_in_use(
        &self,
        request: Request<v1::CheckVniInUseRequest>,
    ) -> Result<Response<v1::CheckVniInUseResponse>, Status> {
        vnis::check_vni_in_use(self, request).await
    }

    async fn reset_vni(
        &self,
        request: Request<v1::ResetVniRequest>,
    ) -> Result<Response<v1::ResetVniResponse>, Status> {
        vnis::reset_vni(self, request).await
    }

    // ----- firewall (firewall.rs) ---------------------------------------------------------------

    async fn list_firewall_rules(
        &self,
        request: Request<v1::ListFirewallRulesRequest>,
    ) -> Result<Response<v1::ListFirewallRulesResponse>, Status> {
        firewall::list_firewall_rules(self, request).await
    }

    async fn create_firewall_rule(
        &self,
        request: Request<v1::CreateFirewallRuleRequest>,
    ) -> Result<Response<v1::CreateFirewallRuleResponse>, Status> {
        firewall::create_firewall_rule(self, request).await
    }

    async fn get_firewall_rule(
        &self,
        request: Request<v1::GetFirewallRuleRequest>,
    ) -> Result<Response<v1::GetFirewallRuleResponse>, Status> {
        firewall::get_firewall_rule(self, request).await
    }

    async fn delete_firewall_rule(
        &self,
        request: Request<v1::DeleteFirewallRuleRequest>,
    ) -> Result<Response<v1::DeleteFirewallRuleResponse>, Status> {
        firewall::delete_firewall_rule(self, request).await
    }

    // ----- VIPs (vip.rs) ------------------------------------------------------------------------

    async fn create_vip(
        &self,
        request: Request<v1::CreateVipRequest>,
    ) -> Result<Response<v1::CreateVipResponse>, Status> {
        vip::create_vip(self, request).await
    }

    async fn get_vip(
        &self,
        request: Request<v1::GetVipRequest>,
    ) -> Result<Response<v1::GetVipResponse>, Status> {
        vip::get_vip(self, request).await
    }

    async fn delete_vip(
        &self,
        request: Request<v1::DeleteVipRequest>,
    ) -> Result<Response<v1::DeleteVipResponse>, Status> {
        vip::delete_vip(self, request).await
    }

    // ----- NAT (nat.rs) -------------------------------------------------------------------------

    async fn create_nat(
        &self,
        request: Request<v1::CreateNatRequest>,
    ) -> Result<Response<v1::CreateNatResponse>, Status> {
        nat::create_nat(self, request).await
    }

    async fn get_nat(
        &self,
        request: Request<v1::GetNatRequest>,
    ) -> Result<Response<v1::GetNatResponse>, Status> {
        nat::get_nat(self, request).await
    }

    async fn delete_nat(
        &self,
        request: Request<v1::DeleteNatRequest>,
    ) -> Result<Response<v1::DeleteNatResponse>, Status> {
        nat::delete_nat(self, request).await
    }

    async fn list_local_nats(
        &self,
        request: Request<v1::ListLocalNatsRequest>,
    ) -> Result<Response<v1::ListLocalNatsResponse>, Status> {
        nat::list_local_nats(self, request).await
    }

    async fn create_neighbor_nat(
        &self,
        request: Request<v1::CreateNeighborNatRequest>,
    ) -> Result<Response<v1::CreateNeighborNatResponse>, Status> {
        nat::create_neighbor_nat(self, request).await
    }

    async fn delete_neighbor_nat(
        &self,
        request: Request<v1::DeleteNeighborNatRequest>,
    ) -> Result<Response<v1::DeleteNeighborNatResponse>, Status> {
        nat::delete_neighbor_nat(self, request).await
    }

    async fn list_neighbor_nats(
        &self,
        request: Request<v1::ListNeighborNatsRequest>,
    ) -> Result<Response<v1::ListNeighborNatsResponse>, Status> {
        nat::list_neighbor_nats(self, request).await
    }

    // ----- load balancers -------------------------------------------------------------------

    // Load balancers (service/loadbalancers.rs): balancers, their targets and prefixes.
    async fn create_load_balancer(
        &self,
        request: Request<v1::CreateLoadBalancerRequest>,
    ) -> Result<Response<v1::CreateLoadBalancerResponse>, Status> {
        loadbalancers::create_load_balancer(self, request).await
    }

    async fn get_load_balancer(
        &self,
        request: Request<v1::GetLoadBalancerRequest>,
    ) -> Result<Response<v1::GetLoadBalancerResponse>, Status> {
        loadbalancers::get_load_balancer(self, request).await
    }

    async fn delete_load_balancer(
        &self,
        request: Request<v1::DeleteLoadBalancerRequest>,
    ) -> Result<Response<v1::DeleteLoadBalancerResponse>, Status> {
        loadbalancers::delete_load_balancer(self, request).await
    }

    async fn list_load_balancers(
        &self,
        request: Request<v1::ListLoadBalancersRequest>,
    ) -> Result<Response<v1::ListLoadBalancersResponse>, Status> {
        loadbalancers::list_load_balancers(self, request).await
    }

    async fn create_load_balancer_target(
        &self,
        request: Request<v1::CreateLoadBalancerTargetRequest>,
    ) -> Result<Response<v1::CreateLoadBalancerTargetResponse>, Status> {
        loadbalancers::create_load_balancer_target(self, request).await
    }

    async fn list_load_balancer_targets(
        &self,
        request: Request<v1::ListLoadBalancerTargetsRequest>,
    ) -> Result<Response<v1::ListLoadBalancerTargetsResponse>, Status> {
        loadbalancers::list_load_balancer_targets(self, request).await
    }

    async fn delete_load_balancer_target(
        &self,
        request: Request<v1::DeleteLoadBalancerTargetRequest>,
    ) -> Result<Response<v1::DeleteLoadBalancerTargetResponse>, Status> {
        loadbalancers::delete_load_balancer_target(self, request).await
    }

    async fn list_load_balancer_prefixes(
        &self,
        request: Request<v1::ListLoadBalancerPrefixesRequest>,
    ) -> Result<Response<v1::ListLoadBalancerPrefixesResponse>, Status> {
        loadbalancers::list_load_balancer_prefixes(self, request).await
    }

    async fn create_load_balancer_prefix(
        &self,
        request: Request<v1::CreateLoadBalancerPrefixRequest>,
    ) -> Result<Response<v1::CreateLoadBalancerPrefixResponse>, Status> {
        loadbalancers::create_load_balancer_prefix(self, request).await
    }

    async fn delete_load_balancer_prefix(
        &self,
        request: Request<v1::DeleteLoadBalancerPrefixRequest>,
    ) -> Result<Response<v1::DeleteLoadBalancerPrefixResponse>, Status> {
        loadbalancers::delete_load_balancer_prefix(self, request).await
    }

    // ----- packet capture (capture.rs) -----------------------------------------------------

    async fn capture_start(
        &self,
        request: Request<v1::CaptureStartRequest>,
    ) -> Result<Response<v1::CaptureStartResponse>, Status> {
        capture::capture_start(self, request).await
    }

    async fn capture_stop(
        &self,
        request: Request<v1::CaptureStopRequest>,
    ) -> Result<Response<v1::CaptureStopResponse>, Status> {
        capture::capture_stop(self, request).await
    }

    async fn capture_status(
        &self,
        request: Request<v1::CaptureStatusRequest>,
    ) -> Result<Response<v1::CaptureStatusResponse>, Status> {
        capture::capture_status(self, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_proto::ip_to_proto;
    use dp_tables::{Publisher, RouteTarget, Snapshot};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// An initialized service with one interface in VNI 100, called directly (no transport).
    pub(super) fn service() -> (crate::ControlPlane, GrpcService) {
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
                meter: Default::default(),
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
}
