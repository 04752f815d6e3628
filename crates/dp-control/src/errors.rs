//! dpservice status codes returned by the control-plane operations.
//!
//! dpservice distinguishes two kinds of failure (see `src/grpc/dp_async_grpc.cpp`):
//!
//! * a request that cannot even be converted (bad address text, empty or too long id, ...)
//!   is answered with a **gRPC error** (`INVALID_ARGUMENT` + a message such as
//!   `"Invalid interface_id"`); this is produced in [`crate::service`];
//! * a request that is well-formed but cannot be applied gets a gRPC **OK** whose
//!   `status` field carries a dpservice code and its name (`{202, "ALREADY_EXISTS"}`).
//!   Those are the [`DpError`]s returned by [`crate::state::State`].
//!
//! A successful response carries `{0, "Success"}`.

use dp_proto::status;
use dp_proto::v1;

/// A request that was understood but could not be applied; maps to a dpservice status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DpError {
    /// 201: the addressed object (interface, device) does not exist.
    #[error("NOT_FOUND")]
    NotFound,
    /// 202: the object (or the device's binding) exists already.
    #[error("ALREADY_EXISTS")]
    AlreadyExists,
    /// 203: the request's type selector is not supported for this operation.
    #[error("WRONG_TYPE")]
    WrongType,
    /// 204: an address of the wrong IP version (e.g. an IPv4 next hop).
    #[error("BAD_IPVER")]
    BadIpVer,
    /// 205: no interface with this id.
    #[error("NO_VM")]
    NoVm,
    /// 206: no interface (hence no routing table) in this VNI.
    #[error("NO_VNI")]
    NoVni,
    /// 208: a table is full (dpservice: its hash table refused the entry; the load balancers).
    #[error("OUT_OF_MEMORY")]
    OutOfMemory,
    /// 209: a table of ours is full (firewall rules of an interface, neighbor NATs; see
    /// [`crate::Limits`]).
    #[error("LIMIT_REACHED")]
    LimitReached,
    /// 210: a packet capture is active already (or an interface is named twice).
    #[error("ALREADY_ACTIVE")]
    AlreadyActive,
    /// 211: no packet capture is active.
    #[error("NOT_ACTIVE")]
    NotActive,
    /// 301: exactly this prefix is routed already.
    #[error("ROUTE_EXISTS")]
    RouteExists,
    /// 302: no route for exactly this prefix.
    #[error("ROUTE_NOT_FOUND")]
    RouteNotFound,
    /// 303: the route cannot be inserted (prefix length beyond 32 / 128).
    #[error("ROUTE_INSERT")]
    RouteInsert,
    /// 304: the route exists but belongs to something else (an interface vs. the uplink).
    #[error("ROUTE_BAD_PORT")]
    RouteBadPort,
    /// 322: the public address table (VIPs and NAT addresses of all VNIs) is full.
    #[error("DNAT_CREATE")]
    DnatCreate,
    /// 323: the address is a public address of the VNI already (a VIP, or a NAT address where
    /// a VIP is asked for).
    #[error("DNAT_EXISTS")]
    DnatExists,
    /// 341: the interface has no VIP / no NAT.
    #[error("SNAT_NO_DATA")]
    SnatNoData,
    /// 343: the interface has a VIP / a NAT already.
    #[error("SNAT_EXISTS")]
    SnatExists,
    /// 422: no load balancer with this id.
    #[error("NO_LB")]
    NoLb,
    /// 423: the load balancer has as many targets as it may have.
    #[error("BACKIP_ADD")]
    BackipAdd,
    /// 383: the interface's metering cannot be configured (a public rate above the total, a
    /// total beyond 32 bits).
    #[error("PORT_METER")]
    PortMeter,
    /// 401: the (preferred) underlay address is registered already.
    #[error("VNF_INSERT")]
    VnfInsert,
    /// 402: the interface id is taken already (by an interface on another device).
    #[error("VM_HANDLE")]
    VmHandle,
}

impl DpError {
    /// The dpservice status code.
    pub const fn code(self) -> u32 {
        match self {
            DpError::NotFound => status::NOT_FOUND,
            DpError::AlreadyExists => status::ALREADY_EXISTS,
            DpError::WrongType => status::WRONG_TYPE,
            DpError::BadIpVer => status::BAD_IPVER,
            DpError::NoVm => status::NO_VM,
            DpError::NoVni => status::NO_VNI,
            DpError::OutOfMemory => status::OUT_OF_MEMORY,
            DpError::LimitReached => status::LIMIT_REACHED,
            DpError::AlreadyActive => status::ALREADY_ACTIVE,
            DpError::NotActive => status::NOT_ACTIVE,
            DpError::RouteExists => status::ROUTE_EXISTS,
            DpError::RouteNotFound => status::ROUTE_NOT_FOUND,
            DpError::RouteInsert => status::ROUTE_INSERT,
            DpError::RouteBadPort => status::ROUTE_BAD_PORT,
            DpError::DnatCreate => status::DNAT_CREATE,
            DpError::DnatExists => status::DNAT_EXISTS,
            DpError::SnatNoData => status::SNAT_NO_DATA,
            DpError::SnatExists => status::SNAT_EXISTS,
            DpError::PortMeter => status::PORT_METER,
            DpError::VnfInsert => status::VNF_INSERT,
            DpError::VmHandle => status::VM_HANDLE,
            DpError::NoLb => status::NO_LB,
            DpError::BackipAdd => status::BACKIP_ADD,
        }
    }

    /// The message dpservice sends with the code (the code's name).
    pub fn message(self) -> &'static str {
        status::message(self.code())
    }

    /// The `Status` message carried in the response.
    pub fn to_status(self) -> v1::Status {
        v1::Status {
            code: self.code(),
            message: self.message().to_owned(),
        }
    }
}

/// The `Status` of a successful response: `{0, "Success"}`, as dpservice sends it.
pub fn ok_status() -> v1::Status {
    v1::Status {
        code: status::OK,
        message: status::message(status::OK).to_owned(),
    }
}

/// The response `Status` for an operation's outcome.
pub fn status_of<T>(result: &Result<T, DpError>) -> v1::Status {
    match result {
        Ok(_) => ok_status(),
        Err(e) => e.to_status(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_match_dpservice() {
        let all = [
            (DpError::NotFound, 201, "NOT_FOUND"),
            (DpError::AlreadyExists, 202, "ALREADY_EXISTS"),
            (DpError::WrongType, 203, "WRONG_TYPE"),
            (DpError::BadIpVer, 204, "BAD_IPVER"),
            (DpError::NoVm, 205, "NO_VM"),
            (DpError::NoVni, 206, "NO_VNI"),
            (DpError::OutOfMemory, 208, "OUT_OF_MEMORY"),
            (DpError::LimitReached, 209, "LIMIT_REACHED"),
            (DpError::AlreadyActive, 210, "ALREADY_ACTIVE"),
            (DpError::NotActive, 211, "NOT_ACTIVE"),
            (DpError::RouteExists, 301, "ROUTE_EXISTS"),
            (DpError::RouteNotFound, 302, "ROUTE_NOT_FOUND"),
            (DpError::RouteInsert, 303, "ROUTE_INSERT"),
            (DpError::RouteBadPort, 304, "ROUTE_BAD_PORT"),
            (DpError::DnatCreate, 322, "DNAT_CREATE"),
            (DpError::DnatExists, 323, "DNAT_EXISTS"),
            (DpError::SnatNoData, 341, "SNAT_NO_DATA"),
            (DpError::SnatExists, 343, "SNAT_EXISTS"),
            (DpError::PortMeter, 383, "PORT_METER"),
            (DpError::VnfInsert, 401, "VNF_INSERT"),
            (DpError::VmHandle, 402, "VM_HANDLE"),
            (DpError::NoLb, 422, "NO_LB"),
            (DpError::BackipAdd, 423, "BACKIP_ADD"),
        ];
        for (e, code, msg) in all {
            assert_eq!(e.code(), code);
            assert_eq!(e.message(), msg);
            assert_eq!(e.to_string(), msg);
            let s = e.to_status();
            assert_eq!((s.code, s.message.as_str()), (code, msg));
        }
        let ok = ok_status();
        assert_eq!((ok.code, ok.message.as_str()), (0, "Success"));
        assert_eq!(status_of::<()>(&Err(DpError::NoVni)).code, 206);
        assert_eq!(status_of(&Ok(1)).message, "Success");
    }
}
