//! dpservice status codes as carried in `Status.code` of every response.
//!
//! The numbers are part of the API and must never change. The message that
//! dpservice puts into `Status.message` is the code's name (e.g. a failed
//! request with code 202 carries the message `"ALREADY_EXISTS"`); success is
//! code 0 with message `"Success"` (dpservice always fills the status, also
//! on success).

use crate::v1;

/// Success.
pub const OK: u32 = 0;

macro_rules! status_codes {
    ($( $(#[$doc:meta])* $name:ident = $num:literal, )*) => {
        $( $(#[$doc])* pub const $name: u32 = $num; )*

        /// Every known error code with its name, in ascending order.
        pub const ALL: &[(u32, &str)] = &[ $( ($num, stringify!($name)), )* ];
    };
}

status_codes! {
    /// Unknown or malformed request.
    BAD_REQUEST = 101,
    /// The addressed object does not exist.
    NOT_FOUND = 201,
    /// The object to create exists already.
    ALREADY_EXISTS = 202,
    /// The object exists but is of another type.
    WRONG_TYPE = 203,
    /// Unsupported or inconsistent IP version.
    BAD_IPVER = 204,
    /// No such interface (VM).
    NO_VM = 205,
    /// No such VNI.
    NO_VNI = 206,
    /// Iterating a table failed.
    ITERATOR = 207,
    /// Allocation failed.
    OUT_OF_MEMORY = 208,
    /// A table or resource limit is reached.
    LIMIT_REACHED = 209,
    /// The feature is already active.
    ALREADY_ACTIVE = 210,
    /// The feature is not active.
    NOT_ACTIVE = 211,
    /// Undoing a partial change failed.
    ROLLBACK = 212,
    /// Installing a flow rule failed.
    RTE_RULE_ADD = 213,
    /// Removing a flow rule failed.
    RTE_RULE_DEL = 214,
    /// The route exists already.
    ROUTE_EXISTS = 301,
    /// No such route.
    ROUTE_NOT_FOUND = 302,
    /// Inserting the route failed.
    ROUTE_INSERT = 303,
    /// The route's target port is invalid.
    ROUTE_BAD_PORT = 304,
    /// Resetting the routing table failed.
    ROUTE_RESET = 305,
    /// No DNAT (virtual IP) data.
    DNAT_NO_DATA = 321,
    /// Creating the DNAT entry failed.
    DNAT_CREATE = 322,
    /// The DNAT entry exists already.
    DNAT_EXISTS = 323,
    /// No SNAT (NAT / virtual IP) data.
    SNAT_NO_DATA = 341,
    /// Creating the SNAT entry failed.
    SNAT_CREATE = 342,
    /// The SNAT entry exists already.
    SNAT_EXISTS = 343,
    /// Creating the VNI's IPv4 table failed.
    VNI_INIT4 = 361,
    /// Creating the VNI's IPv6 table failed.
    VNI_INIT6 = 362,
    /// Freeing the VNI's IPv4 table failed.
    VNI_FREE4 = 363,
    /// Freeing the VNI's IPv6 table failed.
    VNI_FREE6 = 364,
    /// Starting the port failed.
    PORT_START = 381,
    /// Stopping the port failed.
    PORT_STOP = 382,
    /// Configuring the port's metering failed.
    PORT_METER = 383,
    /// Registering the underlay address failed.
    VNF_INSERT = 401,
    /// Creating the interface's handle failed.
    VM_HANDLE = 402,
    /// Unregistering the underlay address failed.
    VNF_DELETE = 403,
    /// No such loadbalancer target.
    NO_BACKIP = 421,
    /// No such loadbalancer.
    NO_LB = 422,
    /// Adding the loadbalancer target failed.
    BACKIP_ADD = 423,
    /// Removing the loadbalancer target failed.
    BACKIP_DEL = 424,
    /// Drop actions are not supported.
    NO_DROP_SUPPORT = 441,
}

/// The name of a status code (`"ALREADY_EXISTS"` for 202), `None` if unknown.
/// Code 0 has no name (see [`message`]).
pub fn name(code: u32) -> Option<&'static str> {
    ALL.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The message dpservice sends along with `code`: `"Success"` for 0, the
/// code's name for a known error and `"Invalid gRPC error code"` otherwise.
pub fn message(code: u32) -> &'static str {
    if code == OK {
        return "Success";
    }
    name(code).unwrap_or("Invalid gRPC error code")
}

/// The code whose name is `name`, if any.
pub fn code_of(name: &str) -> Option<u32> {
    ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

impl v1::Status {
    /// A success status: code 0 with message `"Success"`, which dpservice
    /// puts into every successful response.
    pub fn ok() -> Self {
        Self {
            code: OK,
            message: message(OK).to_owned(),
        }
    }

    /// An error status with dpservice's message for `code`.
    pub fn error(code: u32) -> Self {
        Self {
            code,
            message: message(code).to_owned(),
        }
    }

    /// Whether this is a success status.
    pub fn is_ok(&self) -> bool {
        self.code == OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages() {
        assert_eq!(message(0), "Success");
        assert_eq!(message(ALREADY_EXISTS), "ALREADY_EXISTS");
        assert_eq!(message(NO_VM), "NO_VM");
        assert_eq!(message(999), "Invalid gRPC error code");
        assert_eq!(name(0), None);
        assert_eq!(name(441), Some("NO_DROP_SUPPORT"));
        assert_eq!(code_of("ROUTE_EXISTS"), Some(301));
        assert_eq!(code_of("nonsense"), None);
    }

    #[test]
    fn table_is_sorted_and_unique() {
        assert_eq!(ALL.len(), 41);
        for w in ALL.windows(2) {
            assert!(w[0].0 < w[1].0, "{:?} before {:?}", w[0], w[1]);
        }
        let spot: Vec<u32> = [
            BAD_REQUEST,
            NOT_FOUND,
            ALREADY_EXISTS,
            WRONG_TYPE,
            BAD_IPVER,
            NO_VM,
            NO_VNI,
            ITERATOR,
            OUT_OF_MEMORY,
            LIMIT_REACHED,
            ALREADY_ACTIVE,
            NOT_ACTIVE,
            ROLLBACK,
            ROUTE_EXISTS,
            ROUTE_NOT_FOUND,
            ROUTE_INSERT,
            ROUTE_BAD_PORT,
            ROUTE_RESET,
            DNAT_NO_DATA,
            DNAT_CREATE,
            DNAT_EXISTS,
            SNAT_NO_DATA,
            SNAT_CREATE,
            SNAT_EXISTS,
            VNI_INIT4,
            VNI_INIT6,
            VNI_FREE4,
            VNI_FREE6,
            PORT_START,
            PORT_STOP,
            PORT_METER,
            VNF_INSERT,
            VM_HANDLE,
            VNF_DELETE,
            NO_BACKIP,
            NO_LB,
            BACKIP_ADD,
            BACKIP_DEL,
            NO_DROP_SUPPORT,
        ]
        .to_vec();
        assert_eq!(
            spot,
            vec![
                101, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 301, 302, 303,
                304, 305, 321, 322, 323, 341, 342, 343, 361, 362, 363, 364, 381, 382, 383, 401,
                402, 403, 421, 422, 423, 424, 441
            ]
        );
    }

    #[test]
    fn status_constructors() {
        let s = v1::Status::error(NO_VNI);
        assert_eq!((s.code, s.message.as_str()), (206, "NO_VNI"));
        assert!(!s.is_ok());
        let ok = v1::Status::ok();
        assert!(ok.is_ok());
        assert_eq!(ok.message, "Success");
    }
}
