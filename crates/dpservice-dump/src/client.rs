//! The client side of the dump socket: one request line, then either a trace stream (frames of
//! `type: u8, len: u32 LE, payload`) or JSON lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A record frame: a `dp_pipeline::trace::Record`.
pub const FRAME_RECORD: u8 = b'R';
/// The daemon's count of records lost to full rings (u64 LE).
pub const FRAME_LOST: u8 = b'L';

/// What the daemon says when a trace starts.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// Wall-clock time (ns since 1970) of the workers' clock zero: a record's `now_ns` plus this
    /// is when it was taken.
    pub epoch_ns: u64,
    /// Names of the ports by port id (the interface id of a VM port, else the device name).
    pub ports: Vec<String>,
}

impl SessionInfo {
    pub fn port_name(&self, port: u16) -> String {
        self.ports
            .get(usize::from(port))
            .cloned()
            .unwrap_or_else(|| format!("port{port}"))
    }
}

fn connect(socket: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to dpservice at {}: {e} (is it running, with --dump-socket?)",
            socket.display()
        )
    })
}

/// Sends `request` and reads the status line: `ok [rest]` gives `rest`.
fn request(
    stream: &mut UnixStream,
    request: &str,
) -> Result<(BufReader<UnixStream>, String), String> {
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| format!("dump socket: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("dump socket: {e}"))?;
    let line = line.trim_end();
    match line.strip_prefix("ok") {
        Some(rest) => Ok((reader, rest.trim().to_string())),
        None => Err(line.strip_prefix("error ").map_or_else(
            || format!("unexpected answer {line:?}"),
            |e| format!("dpservice: {e}"),
        )),
    }
}

/// A running trace: frames as they come.
pub struct Trace {
    reader: BufReader<UnixStream>,
    pub info: SessionInfo,
}

/// One frame of a trace stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Record(Vec<u8>),
    Lost(u64),
}

impl Trace {
    /// Attaches: the daemon traces `flags` (`dp_pipeline::trace::WANT_*`) and the nodes of `mask`
    /// until this is dropped (the connection closes).
    pub fn start(socket: &Path, flags: u64, mask: u64) -> Result<Trace, String> {
        let mut stream = connect(socket)?;
        let (reader, rest) = request(&mut stream, &format!("trace {flags} {mask:x}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&rest).map_err(|e| format!("bad session info: {e}"))?;
        let info = SessionInfo {
            epoch_ns: json["epoch_ns"].as_u64().unwrap_or(0),
            ports: json["ports"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| p.as_str().unwrap_or("?").to_string())
                        .collect()
                })
                .unwrap_or_default(),
        };
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        Ok(Trace { reader, info })
    }

    /// The next frame; `Ok(None)` when none came within the read timeout (the caller checks its
    /// own deadline and signals), an error when the daemon went away.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, String> {
        let mut head = [0u8; 5];
        match self.reader.read(&mut head[..1]) {
            Ok(0) => return Err("dpservice closed the trace".into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(format!("dump socket: {e}")),
        }
        // The rest of a frame follows at once: wait for it whole.
        self.read_exact_patiently(&mut head[1..])?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > 1 << 20 {
            return Err(format!("corrupt trace stream (frame of {len} bytes)"));
        }
        let mut body = vec![0u8; len];
        self.read_exact_patiently(&mut body)?;
        match head[0] {
            FRAME_RECORD => Ok(Some(Frame::Record(body))),
            FRAME_LOST => {
                let n = body
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                Ok(Some(Frame::Lost(n)))
            }
            t => Err(format!("corrupt trace stream (frame type {t})")),
        }
    }

    fn read_exact_patiently(&mut self, mut buf: &mut [u8]) -> Result<(), String> {
        let mut timeouts = 0;
        while !buf.is_empty() {
            match self.reader.read(buf) {
                Ok(0) => return Err("dpservice closed the trace".into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    timeouts += 1;
                    if timeouts > 25 {
                        return Err("dpservice stopped in the middle of a frame".into());
                    }
                }
                Err(e) => return Err(format!("dump socket: {e}")),
            }
        }
        Ok(())
    }
}

/// `dpservice-dump --stop`: makes sure the daemon traces nothing.
pub fn stop(socket: &Path) -> Result<(), String> {
    let mut stream = connect(socket)?;
    request(&mut stream, "stop").map(|_| ())
}

/// The flows (`nat_only`: only source-NAT'd ones) of `iface`, or of all interfaces, as the
/// daemon's JSON objects.
pub fn flows(
    socket: &Path,
    nat_only: bool,
    iface: Option<&str>,
) -> Result<Vec<serde_json::Value>, String> {
    let mut stream = connect(socket)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let what = if nat_only { "nat-ports" } else { "flows" };
    let line = match iface {
        Some(i) => format!("{what} {i}"),
        None => what.to_string(),
    };
    let (reader, _) = request(&mut stream, &line)?;
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(|e| format!("dump socket: {e}"))?;
        if let Some(e) = line.strip_prefix("error ") {
            return Err(format!("dpservice: {e}"));
        }
        out.push(serde_json::from_str(&line).map_err(|e| format!("bad flow line: {e}"))?);
    }
    Ok(out)
}
