//! A small blocking client of the daemon's gRPC API (`dpdkironcore.v1`, via `dp-proto`).
//! Every call is bounded; a non-zero dpservice status code is an error.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dp_proto::v1::{
    CreateFirewallRuleRequest, CreateInterfaceRequest, CreateInterfaceResponse, CreateNatRequest,
    CreateNeighborNatRequest, CreateRouteRequest, CreateVipRequest, DeleteFirewallRuleRequest,
    DeleteInterfaceRequest, DeleteRouteRequest, FirewallRule, InitializeRequest, Interface,
    IpConfig, ListInterfacesRequest, ListRoutesRequest, Route, Status,
};
use dp_proto::v1::{
    CreateLoadBalancerPrefixRequest, CreateLoadBalancerRequest, CreateLoadBalancerTargetRequest,
    DeleteLoadBalancerTargetRequest, LbPort, Prefix, Protocol,
};
use dp_proto::DpdKironcoreClient;
use tonic::transport::Channel;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Api {
    rt: tokio::runtime::Runtime,
    client: DpdKironcoreClient<Channel>,
}

/// Interface as the tests want it.
pub struct IfaceSpec<'a> {
    pub id: &'a str,
    pub vni: u32,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    pub device: &'a str,
    pub hostname: Option<&'a str>,
}

fn check(what: &str, status: Option<Status>) -> Result<(), String> {
    match status {
        Some(s) if s.code == 0 => Ok(()),
        Some(s) => Err(format!(
            "{what}: dpservice error {} ({}): {}",
            s.code,
            dp_proto::status::name(s.code).unwrap_or("?"),
            s.message
        )),
        None => Err(format!("{what}: response carries no status")),
    }
}

impl Api {
    pub fn connect(port: u16) -> Result<Api, String> {
        // One background worker drives the connection between calls too: the daemon sends
        // HTTP/2 keepalive pings every 15 s and closes a connection that leaves them
        // unanswered, which a current-thread runtime (polled only inside calls) would do in
        // a test that pauses longer than that.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let url = format!("http://127.0.0.1:{port}");
        let client = rt
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, DpdKironcoreClient::connect(url.clone())).await
            })
            .map_err(|_| format!("connecting to {url}: timed out"))?
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        Ok(Api { rt, client })
    }

    fn call<T, F>(&self, what: &str, fut: F) -> Result<T, String>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.rt
            .block_on(async { tokio::time::timeout(CALL_TIMEOUT, fut).await })
            .map_err(|_| format!("{what}: no answer within {CALL_TIMEOUT:?}"))?
            .map(tonic::Response::into_inner)
            .map_err(|e| format!("{what}: gRPC error {e}"))
    }

    pub fn init(&mut self) -> Result<String, String> {
        let mut c = self.client.clone();
        let r = self.call("Initialize", c.initialize(InitializeRequest {}))?;
        check("Initialize", r.status)?;
        Ok(r.uuid)
    }

    pub fn create_interface(
        &mut self,
        spec: &IfaceSpec<'_>,
    ) -> Result<CreateInterfaceResponse, String> {
        self.create_interface_metered(spec, 0, 0)
    }

    /// [`Api::create_interface`] with metering parameters (Mbit/s, 0 = none).
    pub fn create_interface_metered(
        &mut self,
        spec: &IfaceSpec<'_>,
        total_rate: u64,
        public_rate: u64,
    ) -> Result<CreateInterfaceResponse, String> {
        self.create_interface_request(spec, total_rate, public_rate, Vec::new())
    }

    /// [`Api::create_interface`] with a `preferred_underlay_route`: the interface's underlay
    /// address is `underlay` (it must lie in the daemon's /64 and carry the externally-generated
    /// flag 0x80 in byte 10) — e.g. the address it had on the hypervisor it migrates from.
    pub fn create_interface_with_underlay(
        &mut self,
        spec: &IfaceSpec<'_>,
        underlay: Ipv6Addr,
    ) -> Result<CreateInterfaceResponse, String> {
        self.create_interface_request(spec, 0, 0, dp_proto::ip_to_bytes(IpAddr::V6(underlay)))
    }

    fn create_interface_request(
        &mut self,
        spec: &IfaceSpec<'_>,
        total_rate: u64,
        public_rate: u64,
        preferred_underlay_route: Vec<u8>,
    ) -> Result<CreateInterfaceResponse, String> {
        let req = CreateInterfaceRequest {
            metering_parameters: Some(dp_proto::v1::MeteringParams {
                total_rate,
                public_rate,
            }),
            interface_id: spec.id.as_bytes().to_vec(),
            vni: spec.vni,
            ipv4_config: Some(IpConfig {
                primary_address: dp_proto::ip_to_bytes(IpAddr::V4(spec.ipv4)),
            }),
            ipv6_config: Some(IpConfig {
                primary_address: dp_proto::ip_to_bytes(IpAddr::V6(spec.ipv6)),
            }),
            device_name: spec.device.to_string(),
            hostname: spec.hostname.unwrap_or_default().to_string(),
            preferred_underlay_route,
            ..Default::default()
        };
        let what = format!("CreateInterface {}", spec.id);
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_interface(req))?;
        check(&what, r.status.clone())?;
        Ok(r)
    }

    pub fn delete_interface(&mut self, id: &str) -> Result<(), String> {
        let what = format!("DeleteInterface {id}");
        let mut c = self.client.clone();
        let r = self.call(
            &what,
            c.delete_interface(DeleteInterfaceRequest {
                interface_id: id.as_bytes().to_vec(),
            }),
        )?;
        check(&what, r.status)
    }

    pub fn list_interfaces(&mut self) -> Result<Vec<Interface>, String> {
        let mut c = self.client.clone();
        let r = self.call(
            "ListInterfaces",
            c.list_interfaces(ListInterfacesRequest {}),
        )?;
        check("ListInterfaces", r.status)?;
        Ok(r.interfaces)
    }

    /// `CreateRoute`: `prefix/len` in `vni` → next hop `(nexthop_vni, nexthop)` (an underlay
    /// address, typically a remote interface's `underlay_route`).
    pub fn create_route(
        &mut self,
        vni: u32,
        prefix: IpAddr,
        len: u8,
        nexthop_vni: u32,
        nexthop: Ipv6Addr,
    ) -> Result<(), String> {
        let what = format!("CreateRoute {prefix}/{len} vni {vni} -> {nexthop} vni {nexthop_vni}");
        let req = CreateRouteRequest {
            vni,
            route: Some(Route {
                prefix: Some(dp_proto::convert::prefix_to_proto(prefix, len)),
                nexthop_vni,
                nexthop_address: Some(dp_proto::convert::ip_to_proto(IpAddr::V6(nexthop))),
                weight: 0,
            }),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_route(req))?;
        check(&what, r.status)
    }

    /// `DeleteRoute` of `prefix/len` in `vni`. The error text names the dpservice status
    /// (e.g. `ROUTE_NOT_FOUND`).
    pub fn delete_route(&mut self, vni: u32, prefix: IpAddr, len: u8) -> Result<(), String> {
        let what = format!("DeleteRoute {prefix}/{len} vni {vni}");
        let req = DeleteRouteRequest {
            vni,
            route: Some(Route {
                prefix: Some(dp_proto::convert::prefix_to_proto(prefix, len)),
                ..Default::default()
            }),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.delete_route(req))?;
        check(&what, r.status)
    }

    /// `ListRoutes` of `vni` as `(prefix, len, nexthop_vni, nexthop)`.
    pub fn list_routes(&mut self, vni: u32) -> Result<Vec<(IpAddr, u8, u32, IpAddr)>, String> {
        let what = format!("ListRoutes vni {vni}");
        let mut c = self.client.clone();
        let r = self.call(&what, c.list_routes(ListRoutesRequest { vni }))?;
        check(&what, r.status)?;
        r.routes
            .iter()
            .map(|rt| {
                let (addr, len) = rt
                    .prefix
                    .as_ref()
                    .ok_or("route without prefix".to_string())
                    .and_then(|p| {
                        dp_proto::convert::prefix_from_proto(p).map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("{what}: {e}"))?;
                let nh = rt
                    .nexthop_address
                    .as_ref()
                    .ok_or("route without next hop".to_string())
                    .and_then(|a| dp_proto::convert::ip_from_proto(a).map_err(|e| e.to_string()))
                    .map_err(|e| format!("{what}: {e}"))?;
                Ok((addr, len, rt.nexthop_vni, nh))
            })
            .collect()
    }

    /// `CreateVip` of `vip` on interface `id`; returns the VIP's underlay address.
    pub fn create_vip(&mut self, id: &str, vip: Ipv4Addr) -> Result<Ipv6Addr, String> {
        let what = format!("CreateVip {vip} on {id}");
        let req = CreateVipRequest {
            interface_id: id.as_bytes().to_vec(),
            vip_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V4(vip))),
            preferred_underlay_route: Vec::new(),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_vip(req))?;
        check(&what, r.status)?;
        dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("{what}: bad underlay_route: {e}"))
    }

    /// `CreateLoadBalancer` `id` in `vni` at `ip` for TCP `port`; returns its underlay address.
    pub fn create_load_balancer(
        &mut self,
        id: &str,
        vni: u32,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<Ipv6Addr, String> {
        let what = format!("CreateLoadBalancer {id} {ip}:{port}");
        let req = CreateLoadBalancerRequest {
            loadbalancer_id: id.as_bytes().to_vec(),
            loadbalanced_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V4(ip))),
            vni,
            loadbalanced_ports: vec![LbPort {
                port: u32::from(port),
                protocol: Protocol::Tcp as i32,
            }],
            preferred_underlay_route: Vec::new(),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_load_balancer(req))?;
        check(&what, r.status)?;
        dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("{what}: bad underlay_route: {e}"))
    }

    /// `CreateLoadBalancerPrefix` `ip/32` on interface `id`; returns its underlay address.
    pub fn create_lb_prefix(&mut self, id: &str, ip: Ipv4Addr) -> Result<Ipv6Addr, String> {
        let what = format!("CreateLoadBalancerPrefix {ip}/32 on {id}");
        let req = CreateLoadBalancerPrefixRequest {
            interface_id: id.as_bytes().to_vec(),
            prefix: Some(Prefix {
                ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V4(ip))),
                length: 32,
                underlay_route: Vec::new(),
            }),
            preferred_underlay_route: Vec::new(),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_load_balancer_prefix(req))?;
        check(&what, r.status)?;
        dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("{what}: bad underlay_route: {e}"))
    }

    /// `CreateLoadBalancerTarget` `target` of balancer `id`.
    pub fn create_lb_target(&mut self, id: &str, target: Ipv6Addr) -> Result<(), String> {
        let what = format!("CreateLoadBalancerTarget {target} of {id}");
        let req = CreateLoadBalancerTargetRequest {
            loadbalancer_id: id.as_bytes().to_vec(),
            target_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V6(target))),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_load_balancer_target(req))?;
        check(&what, r.status)
    }

    /// `DeleteLoadBalancerTarget` `target` of balancer `id`.
    pub fn delete_lb_target(&mut self, id: &str, target: Ipv6Addr) -> Result<(), String> {
        let what = format!("DeleteLoadBalancerTarget {target} of {id}");
        let req = DeleteLoadBalancerTargetRequest {
            loadbalancer_id: id.as_bytes().to_vec(),
            target_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V6(target))),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.delete_load_balancer_target(req))?;
        check(&what, r.status)
    }

    /// `CreateNat` of `ip`, ports `min..max` (upper bound excluded) on interface `id`; returns
    /// the NAT's underlay address.
    pub fn create_nat(
        &mut self,
        id: &str,
        ip: Ipv4Addr,
        min_port: u16,
        max_port: u16,
    ) -> Result<Ipv6Addr, String> {
        let what = format!("CreateNat {ip} {min_port}..{max_port} on {id}");
        let req = CreateNatRequest {
            interface_id: id.as_bytes().to_vec(),
            nat_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V4(ip))),
            min_port: u32::from(min_port),
            max_port: u32::from(max_port),
            preferred_underlay_route: Vec::new(),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_nat(req))?;
        check(&what, r.status)?;
        dp_proto::ipv6_from_bytes(&r.underlay_route)
            .map_err(|e| format!("{what}: bad underlay_route: {e}"))
    }

    /// `CreateNeighborNat`: ports `min..max` of `ip` in `vni` are used by the hypervisor whose
    /// NAT has the underlay address `underlay`.
    pub fn create_neighbor_nat(
        &mut self,
        ip: Ipv4Addr,
        vni: u32,
        min_port: u16,
        max_port: u16,
        underlay: Ipv6Addr,
    ) -> Result<(), String> {
        let what = format!("CreateNeighborNat {ip} vni {vni} {min_port}..{max_port} -> {underlay}");
        let req = CreateNeighborNatRequest {
            nat_ip: Some(dp_proto::convert::ip_to_proto(IpAddr::V4(ip))),
            vni,
            min_port: u32::from(min_port),
            max_port: u32::from(max_port),
            underlay_route: dp_proto::ip_to_bytes(IpAddr::V6(underlay)),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_neighbor_nat(req))?;
        check(&what, r.status)
    }

    /// `CreateFirewallRule` on interface `id`; returns the rule id.
    pub fn create_firewall_rule(&mut self, id: &str, rule: FirewallRule) -> Result<String, String> {
        let what = format!(
            "CreateFirewallRule {} on {id}",
            String::from_utf8_lossy(&rule.id)
        );
        let req = CreateFirewallRuleRequest {
            interface_id: id.as_bytes().to_vec(),
            rule: Some(rule),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.create_firewall_rule(req))?;
        check(&what, r.status)?;
        Ok(String::from_utf8_lossy(&r.rule_id).into_owned())
    }

    /// `DeleteFirewallRule` `rule` of interface `id`.
    pub fn delete_firewall_rule(&mut self, id: &str, rule: &str) -> Result<(), String> {
        let what = format!("DeleteFirewallRule {rule} on {id}");
        let req = DeleteFirewallRuleRequest {
            interface_id: id.as_bytes().to_vec(),
            rule_id: rule.as_bytes().to_vec(),
        };
        let mut c = self.client.clone();
        let r = self.call(&what, c.delete_firewall_rule(req))?;
        check(&what, r.status)
    }
}
