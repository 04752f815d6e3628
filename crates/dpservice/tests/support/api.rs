//! A small blocking client of the daemon's gRPC API (`dpdkironcore.v1`, via `dp-proto`).
//! Every call is bounded; a non-zero dpservice status code is an error.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dp_proto::v1::{
    CreateInterfaceRequest, CreateInterfaceResponse, CreateRouteRequest, DeleteInterfaceRequest,
    DeleteRouteRequest, InitializeRequest, Interface, IpConfig, ListInterfacesRequest,
    ListRoutesRequest, Route, Status,
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
        let req = CreateInterfaceRequest {
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
}
