//! MCP over stdin/stdout: newline-delimited JSON-RPC on stdout and nothing else.

use rmcp::ServiceExt;

use crate::server::PaylinkServer;

/// Serves one client until stdin closes (or the client disconnects), then returns.
pub async fn serve(server: PaylinkServer) -> Result<(), String> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("stdio handshake failed: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("stdio session ended abnormally: {e}"))?;
    Ok(())
}
