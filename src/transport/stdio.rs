//! MCP over stdin/stdout: newline-delimited JSON-RPC on stdout and nothing else.

use rmcp::ServiceExt;
use rmcp::service::ServerInitializeError;

use crate::server::PaylinkServer;

/// Serves one client until stdin closes (or the client disconnects), then returns.
pub async fn serve(server: PaylinkServer) -> Result<(), String> {
    let running = match server.serve(rmcp::transport::stdio()).await {
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
