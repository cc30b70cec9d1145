//! MCP over stdin/stdout: newline-delimited JSON-RPC on stdout and nothing else.

use std::os::fd::AsFd;

use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;
use tokio::net::unix::pipe;

use crate::server::PaylinkServer;

/// stdin and stdout as non-blocking pipes driven by the event loop, when they are pipes (as an MCP
/// client spawns us). tokio's own `stdin()`/`stdout()` hand every read and write to a blocking
/// thread, which adds two thread hand-offs to every call's latency. A terminal or a file keeps
/// the portable path.
fn pipes() -> Option<(pipe::Receiver, pipe::Sender)> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    // Both refuse anything that is not a FIFO, leaving the descriptors untouched.
    let receiver = pipe::Receiver::from_owned_fd(stdin).ok()?;
    let sender = pipe::Sender::from_owned_fd(stdout).ok()?;
    Some((receiver, sender))
}

/// Serves one client until stdin closes (or the client disconnects), then returns.
pub async fn serve(server: PaylinkServer) -> Result<(), String> {
    let handshake = match pipes() {
        Some(io) => server.serve(io).await,
        None => server.serve(rmcp::transport::stdio()).await,
    };
    let running = match handshake {
        Ok(running) => running,
        // The client closed stdin before initializing: that is how a stdio session ends, even an
        // empty one, so exit cleanly instead of reporting a configuration error (exit code 2).
        Err(ServerInitializeError::ConnectionClosed(_)) => {
            tracing::info!("stdin closed before the MCP handshake; exiting");
            return Ok(());
        }
        Err(e) => return Err(format!("stdio handshake failed: {e}")),
    };
    running
        .waiting()
        .await
        .map_err(|e| format!("stdio session ended abnormally: {e}"))?;
    Ok(())
}
