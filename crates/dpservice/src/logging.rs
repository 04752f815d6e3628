//! Log setup: `--log-format text|json` and `--color never|always|auto`, level from `RUST_LOG`
//! (default `info`). Logs go to standard output as dpservice's do.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::options::{ColorMode, LogFormat};

pub fn init(format: LogFormat, color: ColorMode) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = match color {
        ColorMode::Never => false,
        ColorMode::Always => true,
        ColorMode::Auto => std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second initialisation (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
