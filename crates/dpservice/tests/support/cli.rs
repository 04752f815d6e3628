//! `dpservice-cli` against a daemon of the test (the binary cargo built next to the daemon).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{run_args, Out, DAEMON};

/// `target/<profile>/dpservice-cli`, next to the daemon cargo built for this test; an error if
/// it is missing or older than its sources (`cargo build --workspace --bins`; scripts/test.sh
/// does that before the tests).
pub fn cli_binary() -> Result<PathBuf, String> {
    let cli = Path::new(DAEMON).with_file_name("dpservice-cli");
    let built = std::fs::metadata(&cli)
        .and_then(|m| m.modified())
        .map_err(|_| {
            format!(
                "{} is missing: build it first (`cargo build --workspace --bins`; \
                 scripts/test.sh does)",
                cli.display()
            )
        })?;
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for src in ["crates/dpservice-cli/src", "crates/dp-proto/src", "proto"] {
        if newest_mtime(&ws.join(src)) > built {
            return Err(format!(
                "{} is older than {src}: rebuild it (`cargo build --workspace --bins`; \
                 scripts/test.sh does)",
                cli.display()
            ));
        }
    }
    Ok(cli)
}

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let t = if p.is_dir() {
                newest_mtime(&p)
            } else {
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            };
            newest = newest.max(t);
        }
    }
    newest
}

/// The CLI bound to one daemon (`--address localhost:<port>`).
pub struct Cli {
    pub bin: PathBuf,
    pub address: String,
}

impl Cli {
    pub fn new(port: u16) -> Result<Cli, String> {
        Ok(Cli {
            bin: cli_binary()?,
            address: format!("localhost:{port}"),
        })
    }

    /// Runs `dpservice-cli --address … args…` (bounded).
    pub fn run(&self, args: &[&str]) -> Result<Out, String> {
        let mut all = vec!["--address", &self.address];
        all.extend_from_slice(args);
        run_args(
            self.bin.to_str().ok_or("non-UTF-8 path")?,
            &all,
            Duration::from_secs(15),
        )
    }

    /// stdout of a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        Ok(self.run(args)?.check()?.stdout)
    }

    /// `-o json args…`, parsed.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all)?;
        serde_json::from_str(&text)
            .map_err(|e| format!("`{}` printed invalid JSON ({e}): {text}", all.join(" ")))
    }
}
