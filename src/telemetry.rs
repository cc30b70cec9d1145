//! Logging: always to stderr (stdout belongs to the stdio protocol), text or JSON.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `PAYLINK_LOG` (or `RUST_LOG`) filters; default `info` (rmcp's own chatter at `warn`).
pub(crate) fn init(format: LogFormat) {
    let filter = std::env::var("PAYLINK_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info,rmcp=warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(false);
    // A second init (tests) fails harmlessly.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
