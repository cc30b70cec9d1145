//! Cancellation over HTTP: `notifications/cancelled` on a session, or a stateless client that
//! hangs up, aborts the upstream request in flight (the upstream sees its connection close
//! long before any timeout).

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::harness::http::*;

/// A TCP server that accepts one connection, reads the request, never answers, and reports when
/// the client closed the connection.
async fn silent_upstream() -> (
    String,
    tokio::sync::oneshot::Receiver<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_request, got_request_rx) = tokio::sync::oneshot::channel();
    let (closed, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let _ = socket.read(&mut buf).await;
        let _ = got_request.send(());
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let _ = closed.send(());
    });
    (format!("http://{addr}"), got_request_rx, closed_rx)
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn server(base: &str, stateless: bool) -> Server {
    let mut args = vec![
        "--backend",
        "stream",
        "--upstream-timeout-secs",
        "60",
        "--request-deadline-secs",
        "60",
    ];
    if stateless {
        args.push("--stateless");
    }
    Server::start(&args, &[("STREAM_BASE_URL", base)])
}

#[tokio::test]
async fn a_cancelled_session_call_aborts_its_upstream_request() {
    let (base, got_request, closed) = silent_upstream().await;
    let server = server(&base, false);
    let url = server.url();
    let init = post(&url, Some("k"), &[], &initialize_body()).await;
    let session = init
        .headers()
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    post(
        &url,
        Some("k"),
        &headers,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    let call = tokio::spawn({
        let url = url.clone();
        let session = session.clone();
        async move {
            let headers = [
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-06-18"),
            ];
            let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_products", "arguments": {}}});
            let _ = post(&url, Some("k"), &headers, &body).await.text().await;
        }
    });
    within("the upstream request arrives", got_request)
        .await
        .unwrap();
    post(
        &url,
        Some("k"),
        &headers,
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "gave up"}}),
    )
    .await;
    within(
        "the upstream connection closes after the cancellation",
        closed,
    )
    .await
    .unwrap();
    call.abort();
}

#[tokio::test]
async fn a_stateless_client_that_hangs_up_aborts_the_upstream_request() {
    let (base, got_request, closed) = silent_upstream().await;
    let server = server(&base, true);
    let url = server.url();
    let call = tokio::spawn(async move {
        let _ = post(
            &url,
            Some("k"),
            &modern_headers("list_products"),
            &modern_call_body(1, "list_products", json!({})),
        )
        .await;
    });
    within("the upstream request arrives", got_request)
        .await
        .unwrap();
    // The client goes away: its connection to the server closes.
    call.abort();
    let _ = call.await;
    within(
        "the upstream connection closes after the client left",
        closed,
    )
    .await
    .unwrap();
}
