//! Conversions between the protocol's address fields and `std::net`.
//!
//! **Addresses travel as text.** Although the address fields are declared as
//! `bytes`, dpservice and its Go client put the textual form of the address
//! into them (`b"10.0.0.1"`, `b"fc00:1::1"`) — `IpAddress.address`,
//! `underlay_route`, `preferred_underlay_route`, `Interface.primary_ipv4/6`
//! and `IpConfig.primary_address` alike. These helpers implement exactly that
//! encoding; use them on both sides of the wire.
//!
//! **Fields are read as C strings.** dpservice copies a field into a C buffer and
//! hands it to `inet_pton()`, which stops at the first NUL: `b"10.0.0.1\0junk"`
//! is `10.0.0.1` to it. [`addr_from_bytes`] — the one address parser, behind
//! [`ipv4_from_bytes`], [`ipv6_from_bytes`], [`ip_from_bytes`] and
//! [`ip_from_proto`] — reads fields the same way (see [`c_str`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::v1::{IpAddress, IpVersion, Prefix};

/// Why a protocol address could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvError {
    /// `IpAddress.ipver` is not a known `IpVersion`.
    UnknownIpVersion(i32),
    /// The field does not hold a valid textual address (of the expected
    /// version, if one is expected).
    BadAddress {
        /// The version expected, `None` if either was acceptable.
        ipver: Option<IpVersion>,
        /// The field's content (lossily decoded).
        text: String,
    },
    /// The prefix has no address.
    MissingAddress,
    /// The prefix length exceeds 32 (IPv4) or 128 (IPv6).
    BadPrefixLength {
        /// The prefix's address.
        addr: IpAddr,
        /// The offending length.
        len: u32,
    },
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvError::UnknownIpVersion(v) => write!(f, "unknown IP version {v}"),
            ConvError::BadAddress {
                ipver: Some(IpVersion::Ipv4),
                text,
            } => {
                write!(f, "invalid IPv4 address {text:?}")
            }
            ConvError::BadAddress {
                ipver: Some(IpVersion::Ipv6),
                text,
            } => {
                write!(f, "invalid IPv6 address {text:?}")
            }
            ConvError::BadAddress { ipver: None, text } => write!(f, "invalid IP address {text:?}"),
            ConvError::MissingAddress => write!(f, "prefix has no address"),
            ConvError::BadPrefixLength { addr, len } => {
                let max = if addr.is_ipv4() { 32 } else { 128 };
                write!(f, "prefix length {len} of {addr} out of range (max {max})")
            }
        }
    }
}

impl std::error::Error for ConvError {}

fn bad(ipver: Option<IpVersion>, b: &[u8]) -> ConvError {
    ConvError::BadAddress {
        ipver,
        text: String::from_utf8_lossy(b).into_owned(),
    }
}

/// The part of a wire field a C `char *` sees: everything before the first NUL
/// (the whole field if it has none).
pub fn c_str(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// An address type a wire field can hold: [`Ipv4Addr`], [`Ipv6Addr`] or
/// [`IpAddr`] (either version).
pub trait WireAddress: FromStr {
    /// The version the type requires, `None` if either is acceptable (used in
    /// [`ConvError::BadAddress`]).
    const IPVER: Option<IpVersion>;
}

impl WireAddress for Ipv4Addr {
    const IPVER: Option<IpVersion> = Some(IpVersion::Ipv4);
}

impl WireAddress for Ipv6Addr {
    const IPVER: Option<IpVersion> = Some(IpVersion::Ipv6);
}

impl WireAddress for IpAddr {
    const IPVER: Option<IpVersion> = None;
}

/// Parses a wire address field the way dpservice does (`inet_pton()` on the
/// field as a C string): the text up to the first NUL must be an address of
/// type `A`. An empty field (or one starting with NUL) is no address.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
/// use dp_proto::addr_from_bytes;
///
/// assert_eq!(addr_from_bytes::<Ipv4Addr>(b"10.0.0.1\0"), Ok(Ipv4Addr::new(10, 0, 0, 1)));
/// assert!(addr_from_bytes::<Ipv6Addr>(b"10.0.0.1").is_err());
/// assert!(addr_from_bytes::<IpAddr>(b"").is_err());
/// ```
pub fn addr_from_bytes<A: WireAddress>(b: &[u8]) -> Result<A, ConvError> {
    std::str::from_utf8(c_str(b))
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(A::IPVER, b))
}

/// Parses a wire address field holding an IPv4 address in text form
/// ([`addr_from_bytes`]).
pub fn ipv4_from_bytes(b: &[u8]) -> Result<Ipv4Addr, ConvError> {
    addr_from_bytes(b)
}

/// Parses a wire address field holding an IPv6 address in text form
/// (e.g. an `underlay_route`; [`addr_from_bytes`]).
pub fn ipv6_from_bytes(b: &[u8]) -> Result<Ipv6Addr, ConvError> {
    addr_from_bytes(b)
}

/// Parses a wire address field holding an IPv4 or IPv6 address in text form
/// ([`addr_from_bytes`]).
pub fn ip_from_bytes(b: &[u8]) -> Result<IpAddr, ConvError> {
    addr_from_bytes(b)
}

/// The wire form of an address: its text.
pub fn ip_to_bytes(ip: impl Into<IpAddr>) -> Vec<u8> {
    ip.into().to_string().into_bytes()
}

/// Converts an `IpAddress` message, checking that `address` is an address
/// of version `ipver`.
pub fn ip_from_proto(ip: &IpAddress) -> Result<IpAddr, ConvError> {
    match IpVersion::try_from(ip.ipver) {
        Ok(IpVersion::Ipv4) => ipv4_from_bytes(&ip.address).map(IpAddr::V4),
        Ok(IpVersion::Ipv6) => ipv6_from_bytes(&ip.address).map(IpAddr::V6),
        Err(_) => Err(ConvError::UnknownIpVersion(ip.ipver)),
    }
}

/// Builds an `IpAddress` message.
pub fn ip_to_proto(ip: IpAddr) -> IpAddress {
    let ipver = if ip.is_ipv4() {
        IpVersion::Ipv4
    } else {
        IpVersion::Ipv6
    };
    IpAddress {
        ipver: ipver as i32,
        address: ip_to_bytes(ip),
    }
}

/// Converts a `Prefix` message to address and length, validating both.
/// (`underlay_route` is not part of the result.)
pub fn prefix_from_proto(p: &Prefix) -> Result<(IpAddr, u8), ConvError> {
    let addr = ip_from_proto(p.ip.as_ref().ok_or(ConvError::MissingAddress)?)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if p.length > max {
        return Err(ConvError::BadPrefixLength {
            addr,
            len: p.length,
        });
    }
    Ok((addr, p.length as u8))
}

/// Builds a `Prefix` message (empty `underlay_route`). The length is not
/// validated here.
pub fn prefix_to_proto(addr: IpAddr, len: u8) -> Prefix {
    Prefix {
        ip: Some(ip_to_proto(addr)),
        length: u32::from(len),
        underlay_route: Vec::new(),
    }
}

impl From<IpAddr> for IpAddress {
    fn from(ip: IpAddr) -> Self {
        ip_to_proto(ip)
    }
}

impl From<Ipv4Addr> for IpAddress {
    fn from(ip: Ipv4Addr) -> Self {
        ip_to_proto(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for IpAddress {
    fn from(ip: Ipv6Addr) -> Self {
        ip_to_proto(IpAddr::V6(ip))
    }
}

impl TryFrom<&IpAddress> for IpAddr {
    type Error = ConvError;
    fn try_from(ip: &IpAddress) -> Result<Self, ConvError> {
        ip_from_proto(ip)
    }
}

impl TryFrom<&Prefix> for (IpAddr, u8) {
    type Error = ConvError;
    fn try_from(p: &Prefix) -> Result<Self, ConvError> {
        prefix_from_proto(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_roundtrip_is_textual() {
        for s in ["10.0.0.1", "0.0.0.0", "fc00:1::1", "::"] {
            let ip: IpAddr = s.parse().unwrap();
            let m = IpAddress::from(ip);
            assert_eq!(m.address, s.as_bytes());
            assert_eq!(IpAddr::try_from(&m).unwrap(), ip);
        }
        let m = ip_to_proto("1.2.3.4".parse().unwrap());
        assert_eq!(m.ipver, IpVersion::Ipv4 as i32);
        assert_eq!(m.address, b"1.2.3.4");
        let m = IpAddress::from("fc00:0:0:0:0:0:0:1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (m.ipver, m.address.as_slice()),
            (IpVersion::Ipv6 as i32, &b"fc00::1"[..])
        );
        assert_eq!(ip_to_bytes(Ipv4Addr::new(10, 0, 0, 1)), b"10.0.0.1");
    }

    #[test]
    fn ip_errors() {
        let bad = IpAddress {
            ipver: IpVersion::Ipv4 as i32,
            address: b"fc00::1".to_vec(),
        };
        assert_eq!(
            ip_from_proto(&bad),
            Err(ConvError::BadAddress {
                ipver: Some(IpVersion::Ipv4),
                text: "fc00::1".into()
            })
        );
        assert_eq!(
            ip_from_proto(&bad).unwrap_err().to_string(),
            "invalid IPv4 address \"fc00::1\""
        );
        let bad = IpAddress {
            ipver: IpVersion::Ipv6 as i32,
            address: b"10.0.0.1".to_vec(),
        };
        assert!(matches!(
            ip_from_proto(&bad),
            Err(ConvError::BadAddress { .. })
        ));
        let raw = IpAddress {
            ipver: IpVersion::Ipv4 as i32,
            address: vec![10, 0, 0, 1],
        };
        assert!(
            ip_from_proto(&raw).is_err(),
            "raw octets are not the wire format"
        );
        let bad = IpAddress {
            ipver: 7,
            address: b"10.0.0.1".to_vec(),
        };
        assert_eq!(ip_from_proto(&bad), Err(ConvError::UnknownIpVersion(7)));
        assert!(ip_from_bytes(b"").is_err());
        assert!(ip_from_bytes(b"10.0.0.256").is_err());
        assert!(ip_from_bytes(&[0xff, 0xfe]).is_err());
        assert_eq!(ip_from_bytes(b"1.2.3.4"), Ok("1.2.3.4".parse().unwrap()));
        assert_eq!(
            ipv6_from_bytes(b"fc00:1::1"),
            Ok("fc00:1::1".parse().unwrap())
        );
        assert!(ipv4_from_bytes(b"::1").is_err());
    }

    #[test]
    fn c_str_stops_at_the_first_nul() {
        assert_eq!(c_str(b"vm1"), b"vm1");
        assert_eq!(c_str(b"vm1\0junk\0"), b"vm1");
        assert_eq!(c_str(b"\0vm1"), b"");
        assert_eq!(c_str(b""), b"");
    }

    #[test]
    fn addresses_parse_as_c_strings() {
        let a4 = Ipv4Addr::new(10, 0, 0, 1);
        let a6: Ipv6Addr = "fc00:1::1".parse().unwrap();
        // NUL-terminated: C sees the text before the NUL, whatever follows.
        assert_eq!(addr_from_bytes::<Ipv4Addr>(b"10.0.0.1\0"), Ok(a4));
        assert_eq!(addr_from_bytes::<Ipv4Addr>(b"10.0.0.1\0junk"), Ok(a4));
        assert_eq!(addr_from_bytes::<Ipv6Addr>(b"fc00:1::1\0\0"), Ok(a6));
        assert_eq!(
            addr_from_bytes::<IpAddr>(b"fc00:1::1\0x"),
            Ok(IpAddr::V6(a6))
        );
        assert_eq!(ipv4_from_bytes(b"10.0.0.1\0\xff"), Ok(a4));
        assert_eq!(ipv6_from_bytes(b"fc00:1::1\0"), Ok(a6));
        assert_eq!(ip_from_bytes(b"10.0.0.1\0"), Ok(IpAddr::V4(a4)));
        // Empty, or empty as C sees it.
        for empty in [&b""[..], b"\0", b"\x0010.0.0.1"] {
            assert!(addr_from_bytes::<Ipv4Addr>(empty).is_err());
            assert!(addr_from_bytes::<Ipv6Addr>(empty).is_err());
            assert!(addr_from_bytes::<IpAddr>(empty).is_err());
        }
        // Invalid text, wrong version, not UTF-8 before the NUL.
        for invalid in [
            &b"10.0.0.256"[..],
            b"10.0.0",
            b" 10.0.0.1",
            b"10.0.0.1 ",
            b"fc00::1::1",
            b"\xff\xfe",
            b"10.0.0.1\xff\0",
        ] {
            assert!(addr_from_bytes::<IpAddr>(invalid).is_err(), "{invalid:?}");
        }
        assert!(addr_from_bytes::<Ipv4Addr>(b"fc00:1::1").is_err());
        assert!(addr_from_bytes::<Ipv6Addr>(b"10.0.0.1\0").is_err());
        // v4 and v6, either accepted as IpAddr.
        assert_eq!(
            addr_from_bytes::<Ipv4Addr>(b"0.0.0.0"),
            Ok(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(
            addr_from_bytes::<Ipv6Addr>(b"::"),
            Ok(Ipv6Addr::UNSPECIFIED)
        );
        assert_eq!(addr_from_bytes::<IpAddr>(b"10.0.0.1"), Ok(IpAddr::V4(a4)));
        assert_eq!(addr_from_bytes::<IpAddr>(b"fc00:1::1"), Ok(IpAddr::V6(a6)));
        // The error names the version expected and shows the whole field.
        assert_eq!(
            addr_from_bytes::<Ipv6Addr>(b"10.0.0.1\0x"),
            Err(ConvError::BadAddress {
                ipver: Some(IpVersion::Ipv6),
                text: "10.0.0.1\0x".into()
            })
        );
        assert_eq!(
            addr_from_bytes::<IpAddr>(b"").unwrap_err().to_string(),
            "invalid IP address \"\""
        );
        // IpAddress messages: the same parser, of the version `ipver` names.
        let m = IpAddress {
            ipver: IpVersion::Ipv4 as i32,
            address: b"10.0.0.1\0".to_vec(),
        };
        assert_eq!(ip_from_proto(&m), Ok(IpAddr::V4(a4)));
    }

    #[test]
    fn prefix_roundtrip_and_limits() {
        let p = prefix_to_proto("10.1.0.0".parse().unwrap(), 16);
        assert_eq!(p.ip.as_ref().unwrap().address, b"10.1.0.0");
        assert_eq!(prefix_from_proto(&p), Ok(("10.1.0.0".parse().unwrap(), 16)));
        let mut p = prefix_to_proto("10.1.0.0".parse().unwrap(), 32);
        assert!(prefix_from_proto(&p).is_ok());
        p.length = 33;
        assert_eq!(
            prefix_from_proto(&p).unwrap_err().to_string(),
            "prefix length 33 of 10.1.0.0 out of range (max 32)"
        );
        let mut p = prefix_to_proto("2001:db8::".parse().unwrap(), 128);
        assert!(<(IpAddr, u8)>::try_from(&p).is_ok());
        p.length = 129;
        assert!(matches!(
            prefix_from_proto(&p),
            Err(ConvError::BadPrefixLength { len: 129, .. })
        ));
        p.ip = None;
        assert_eq!(prefix_from_proto(&p), Err(ConvError::MissingAddress));
    }
}
