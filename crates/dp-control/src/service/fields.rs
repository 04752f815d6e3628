//! Request fields as dpservice's `FillRequest()` step reads them: C-string fields in
//! fixed-size buffers, textual addresses (parsed by [`dp_proto::addr_from_bytes`], the one
//! C-string-aware address parser), and the logging and status helpers every domain's RPCs use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dp_proto::v1;
use dp_proto::{addr_from_bytes, c_str, ip_from_proto, ip_to_bytes};
use tonic::Status;
use tracing::warn;

use super::IFACE_ID_SIZE;
use crate::errors::{ok_status, DpError};
use crate::state::State;

/// dpservice's `SNPRINTF_FAILED`: the field must be non-empty and fit into `size` bytes
/// (NUL included). Returns the text as C would store it.
pub(super) fn fixed_str(b: &[u8], size: usize) -> Option<String> {
    let s = c_str(b);
    if b.is_empty() || s.len() >= size {
        return None;
    }
    Some(String::from_utf8_lossy(s).into_owned())
}

/// dpservice's `IsInterfaceIdValid`: alphanumerics, `_` and `-` only.
pub(super) fn interface_id_chars_valid(b: &[u8]) -> bool {
    b.iter()
        .all(|&c| c == b'-' || c == b'_' || c.is_ascii_alphanumeric())
}

/// An IPv4 address field as dpservice's `inet_pton()` reads it ([`dp_proto::addr_from_bytes`]).
pub(super) fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    addr_from_bytes(b).ok()
}

/// An IPv6 address field as dpservice's `inet_pton()` reads it ([`dp_proto::addr_from_bytes`]).
pub(super) fn parse_ipv6(b: &[u8]) -> Option<Ipv6Addr> {
    addr_from_bytes(b).ok()
}

/// dpservice's `GrpcToDpAddress`: the address must parse as the version `ipver` names
/// ([`dp_proto::ip_from_proto`]).
pub(super) fn parse_ip(ip: &v1::IpAddress) -> Option<IpAddr> {
    ip_from_proto(ip).ok()
}

pub(super) fn invalid(what: &'static str, msg: &'static str) -> Status {
    warn!(request = what, error = msg, "Rejected invalid request");
    Status::invalid_argument(msg)
}

pub(super) fn failed(what: &'static str, e: DpError) -> v1::Status {
    warn!(
        request = what,
        code = e.code(),
        error = e.message(),
        "Failed request"
    );
    crate::GRPC_COUNTERS.count_error(what, e.code());
    e.to_status()
}

/// The request's `interface_id`, as dpservice copies it into its fixed-size buffer.
pub(super) fn interface_id(what: &'static str, b: &[u8]) -> Result<String, Status> {
    fixed_str(b, IFACE_ID_SIZE).ok_or_else(|| invalid(what, "Invalid interface_id"))
}

/// An alias prefix (`prefix.ip`, then `prefix.length`).
pub(super) fn alias_prefix(
    what: &'static str,
    prefix: Option<v1::Prefix>,
) -> Result<(IpAddr, u8), Status> {
    let prefix = prefix.unwrap_or_default();
    let addr = parse_ip(&prefix.ip.unwrap_or_default())
        .ok_or_else(|| invalid(what, "Invalid prefix.ip"))?;
    let len = u8::try_from(prefix.length).map_err(|_| invalid(what, "Invalid prefix.length"))?;
    Ok((addr, len))
}

/// A route's prefix (`route.prefix.length`, then `route.prefix.ip`).
pub(super) fn route_prefix(
    what: &'static str,
    prefix: Option<v1::Prefix>,
) -> Result<(IpAddr, u8), Status> {
    let prefix = prefix.unwrap_or_default();
    let len =
        u8::try_from(prefix.length).map_err(|_| invalid(what, "Invalid route.prefix.length"))?;
    let addr = parse_ip(&prefix.ip.unwrap_or_default())
        .ok_or_else(|| invalid(what, "Invalid route.prefix.ip"))?;
    Ok((addr, len))
}

/// The reply status of a state change: OK (after `on_ok`, which logs it) or the failure.
pub(super) fn outcome<T>(
    what: &'static str,
    res: Result<T, DpError>,
    on_ok: impl FnOnce(T),
) -> v1::Status {
    match res {
        Ok(v) => {
            on_ok(v);
            ok_status()
        }
        Err(e) => failed(what, e),
    }
}

pub(super) fn text(ip: impl Into<IpAddr>) -> Vec<u8> {
    ip_to_bytes(ip.into())
}

/// dpservice's `StrToPreferredUnderlay`: empty means none; else an IPv6 address that is `::`
/// or lies in the host /64 with the externally-generated flag.
pub(super) fn preferred_underlay(state: &State, b: &[u8]) -> Option<Option<Ipv6Addr>> {
    if b.is_empty() {
        return Some(None);
    }
    let addr = parse_ipv6(b)?;
    state
        .accepts_preferred_underlay(addr)
        .then_some((!addr.is_unspecified()).then_some(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::vnis::parse_vni_type;
    use crate::state::VniType;

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
