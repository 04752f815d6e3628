//! Packet captures with `tcpdump` inside a namespace, and a small reader of the pcap files it
//! writes (Ethernet frames; outer IPv6 with an IPv4 or IPv6 packet inside).

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::vm::Netns;
use super::{wait_until, Background};

/// How long tcpdump may take to open its interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `tcpdump -i <iface> -w <file>` in a namespace. Dropping it kills it.
pub struct Capture {
    bg: Background,
    pub iface: String,
    pub file: PathBuf,
}

impl Capture {
    /// Starts capturing on `iface` in `ns` into `file` (packets matching the pcap `filter`), and
    /// waits until tcpdump listens. `--immediate-mode -U` so nothing captured is still in a
    /// buffer when we stop it; `-Z root` so it may write where the test keeps its files.
    pub fn start(ns: &Netns, iface: &str, filter: &str, file: PathBuf) -> Result<Capture, String> {
        let f = file.display().to_string();
        let mut args = vec![
            "tcpdump",
            "-Z",
            "root",
            "--immediate-mode",
            "-U",
            "-n",
            "-s",
            "256",
            "-i",
            iface,
            "-w",
            &f,
        ];
        args.extend(filter.split_whitespace());
        let mut bg = Background::spawn(&mut ns.command(&args), &file.with_extension("tcpdump"))?;
        let r = wait_until(
            &format!("tcpdump to listen on {iface}"),
            START_TIMEOUT,
            || {
                if let Some(status) = bg.try_exit() {
                    return Ok(Err(format!("tcpdump exited with {status}")));
                }
                let err = bg.stderr();
                if err.contains("listening on") {
                    Ok(Ok(()))
                } else {
                    Err(err)
                }
            },
        );
        match r {
            Ok(Ok(())) => Ok(Capture {
                bg,
                iface: iface.to_string(),
                file,
            }),
            Ok(Err(e)) | Err(e) => Err(format!("{e}\n`{}`: {}", bg.cmdline, bg.stderr())),
        }
    }

    /// Stops tcpdump (SIGINT: it writes what it has and exits) and returns the captured frames.
    pub fn stop(self) -> Result<Vec<Vec<u8>>, String> {
        Ok(self.stop_timed()?.into_iter().map(|(_, f)| f).collect())
    }

    /// [`Capture::stop`] with each frame's capture time (Unix seconds).
    pub fn stop_timed(mut self) -> Result<Vec<(f64, Vec<u8>)>, String> {
        // Give the last packets of the test a moment to pass the interface.
        std::thread::sleep(Duration::from_millis(200));
        let out = self.bg.stop(libc::SIGINT, Duration::from_secs(5))?;
        read_pcap(&self.file).map_err(|e| format!("{e}\n{out}"))
    }
}

/// The frames of a classic pcap file (either byte order, micro- or nanosecond timestamps),
/// each with its capture time in Unix seconds.
pub fn read_pcap(path: &Path) -> Result<Vec<(f64, Vec<u8>)>, String> {
    let data = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if data.len() < 24 {
        return Err(format!(
            "{}: {} bytes, no pcap header",
            path.display(),
            data.len()
        ));
    }
    let magic = [data[0], data[1], data[2], data[3]];
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => {
            return Err(format!(
                "{}: not a pcap file ({magic:02x?})",
                path.display()
            ))
        }
    };
    let u32_at = |i: usize| -> u32 {
        let b = [data[i], data[i + 1], data[i + 2], data[i + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20);
    if linktype != 1 {
        return Err(format!(
            "{}: link type {linktype}, want 1 (Ethernet)",
            path.display()
        ));
    }
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32_at(at + 8) as usize;
        let start = at + 16;
        let end = start + caplen;
        if end > data.len() {
            break; // a record cut short by the kill: ignore it
        }
        let frac = f64::from(u32_at(at + 4)) / if nanos { 1e9 } else { 1e6 };
        frames.push((f64::from(u32_at(at)) + frac, data[start..end].to_vec()));
        at = end;
    }
    Ok(frames)
}

/// What is inside an encapsulating IPv6 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inner {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        ttl: u8,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        next_header: u8,
        hop_limit: u8,
    },
    Other,
}

impl Inner {
    pub fn src(&self) -> Option<IpAddr> {
        match self {
            Inner::V4 { src, .. } => Some(IpAddr::V4(*src)),
            Inner::V6 { src, .. } => Some(IpAddr::V6(*src)),
            Inner::Other => None,
        }
    }
    pub fn dst(&self) -> Option<IpAddr> {
        match self {
            Inner::V4 { dst, .. } => Some(IpAddr::V4(*dst)),
            Inner::V6 { dst, .. } => Some(IpAddr::V6(*dst)),
            Inner::Other => None,
        }
    }
}

/// The outer IPv6 header of an Ethernet frame and what it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outer6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    pub inner: Inner,
}

impl fmt::Display for Outer6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 {} > {} nh {} hlim {} tc {:#04x} flow {:#07x} len {} | {:?}",
            self.src,
            self.dst,
            self.next_header,
            self.hop_limit,
            self.traffic_class,
            self.flow_label,
            self.payload_len,
            self.inner
        )
    }
}

fn v6_at(b: &[u8], i: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[i..i + 16]);
    Ipv6Addr::from(a)
}

/// Parses an Ethernet frame holding IPv6 (no VLAN tag); `None` for anything else.
pub fn parse_outer6(frame: &[u8]) -> Option<Outer6> {
    if frame.len() < 14 + 40 || frame[12..14] != [0x86, 0xdd] {
        return None;
    }
    let ip = &frame[14..];
    if ip[0] >> 4 != 6 {
        return None;
    }
    let vtf = u32::from_be_bytes([ip[0], ip[1], ip[2], ip[3]]);
    let next_header = ip[6];
    let payload = &ip[40..];
    let inner = match next_header {
        4 if payload.len() >= 20 && payload[0] >> 4 == 4 => Inner::V4 {
            src: Ipv4Addr::new(payload[12], payload[13], payload[14], payload[15]),
            dst: Ipv4Addr::new(payload[16], payload[17], payload[18], payload[19]),
            proto: payload[9],
            ttl: payload[8],
        },
        41 if payload.len() >= 40 && payload[0] >> 4 == 6 => Inner::V6 {
            src: v6_at(payload, 8),
            dst: v6_at(payload, 24),
            next_header: payload[6],
            hop_limit: payload[7],
        },
        _ => Inner::Other,
    };
    Some(Outer6 {
        src: v6_at(ip, 8),
        dst: v6_at(ip, 24),
        next_header,
        hop_limit: ip[7],
        traffic_class: ((vtf >> 20) & 0xff) as u8,
        flow_label: vtf & 0xf_ffff,
        payload_len: u16::from_be_bytes([ip[4], ip[5]]),
        inner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_in_ipv6() {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12] = 0x86;
        f[13] = 0xdd;
        f[14] = 0x60 | 0x0b; // version 6, traffic class 0xb0..
        f[15] = 0x01;
        f[16] = 0x23;
        f[17] = 0x45; // flow label 0x12345
        f[18] = 0;
        f[19] = 20;
        f[20] = 4;
        f[21] = 63;
        f[22..38].copy_from_slice(&"fc00:1::5".parse::<Ipv6Addr>().unwrap().octets());
        f[38..54].copy_from_slice(&"fc00:2::7".parse::<Ipv6Addr>().unwrap().octets());
        f[54] = 0x45;
        f[62] = 64;
        f[63] = 1;
        f[66..70].copy_from_slice(&[10, 100, 1, 1]);
        f[70..74].copy_from_slice(&[10, 100, 2, 1]);
        let o = parse_outer6(&f).unwrap();
        assert_eq!(o.src, "fc00:1::5".parse::<Ipv6Addr>().unwrap());
        assert_eq!(o.dst, "fc00:2::7".parse::<Ipv6Addr>().unwrap());
        assert_eq!((o.next_header, o.hop_limit, o.flow_label), (4, 63, 0x12345));
        assert_eq!(o.traffic_class, 0xb0);
        assert_eq!(
            o.inner,
            Inner::V4 {
                src: Ipv4Addr::new(10, 100, 1, 1),
                dst: Ipv4Addr::new(10, 100, 2, 1),
                proto: 1,
                ttl: 64
            }
        );
    }
}
