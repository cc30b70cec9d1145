//! `paylink-mcp healthcheck`, the container probe, against tiny loopback servers started here:
//! one that answers 200 on `/healthz`, one that answers 503, one that redirects, one that accepts
//! and never answers, and a port nobody listens on.
//!
//! Docker reads only the exit code (0 healthy, 1 unhealthy; 2 is reserved), so every case asserts
//! the exact code, and that stdout stays empty.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::harness::{EXIT_DEADLINE, command, within};

/// What one run of the probe did.
struct Probe {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `paylink-mcp healthcheck` with `args` and exactly `env` (plus `PATH`).
async fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Probe {
    let mut full = vec!["healthcheck"];
    full.extend_from_slice(args);
    let started = Instant::now();
    let output = within(
        EXIT_DEADLINE,
        "paylink-mcp healthcheck exits",
        command(&full, env).output(),
    )
    .await
    .expect("run paylink-mcp healthcheck");
    Probe {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Serves `app` on a free loopback port for the rest of the test; returns its address.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    addr
}

fn healthz(addr: SocketAddr) -> String {
    format!("http://{addr}/healthz")
}

/// A server whose `/healthz` answers `status`.
async fn server_answering(status: StatusCode) -> SocketAddr {
    serve(Router::new().route(
        "/healthz",
        get(move || async move { (status, r#"{"status":"test"}"#) }),
    ))
    .await
}

#[tokio::test]
async fn a_200_is_healthy_exit_0_and_nothing_is_printed() {
    let addr = server_answering(StatusCode::OK).await;
    let p = healthcheck(&["--url", &healthz(addr)], &[]).await;
    assert_eq!(p.code, Some(0), "stderr: {}", p.stderr);
    assert_eq!(p.stdout, "", "nothing on stdout");
    assert_eq!(p.stderr, "", "nothing on stderr either when healthy");
}

#[tokio::test]
async fn a_503_is_unhealthy_exit_1_with_the_status_on_stderr() {
    let addr = server_answering(StatusCode::SERVICE_UNAVAILABLE).await;
    let p = healthcheck(&["--url", &healthz(addr)], &[]).await;
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
    assert_eq!(p.stdout, "");
    assert!(
        p.stderr.contains("503"),
        "stderr names the status: {}",
        p.stderr
    );
}

#[tokio::test]
async fn a_closed_port_is_unhealthy_exit_1() {
    // Bind a free port, then free it again: nothing listens there any more.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("local addr")
    };
    let p = healthcheck(&["--url", &healthz(addr)], &[]).await;
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
    assert_eq!(p.stdout, "");
    assert!(
        p.stderr.contains("failed"),
        "stderr says the request failed: {}",
        p.stderr
    );
}

/// A server that accepts the connection and never answers must not hang the probe: Docker would
/// otherwise only learn of it from its own (long) timeout.
#[tokio::test]
async fn a_server_that_never_answers_times_out_exit_1() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let p = healthcheck(&["--url", &healthz(addr), "--timeout-secs", "1"], &[]).await;
    holder.abort();
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
    assert_eq!(p.stdout, "");
    assert!(p.stderr.contains("timed out"), "{}", p.stderr);
    assert!(
        p.took < Duration::from_secs(5),
        "a 1 s timeout ends the probe promptly, took {:?}",
        p.took
    );
}

/// A redirect is not a 200: the probe does not follow it (a redirect to a login page, or to
/// another host, says nothing about this server's health).
#[tokio::test]
async fn a_redirect_is_unhealthy_even_to_a_200() {
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/elsewhere")],
                )
                    .into_response()
            }),
        )
        .route("/elsewhere", get(|| async { StatusCode::OK }));
    let addr = serve(app).await;
    let p = healthcheck(&["--url", &healthz(addr)], &[]).await;
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
    assert!(p.stderr.contains("307"), "{}", p.stderr);
}

/// The URL can come from the environment, as a container image sets it.
#[tokio::test]
async fn the_url_comes_from_paylink_healthcheck_url() {
    let healthy = server_answering(StatusCode::OK).await;
    let url = healthz(healthy);
    let p = healthcheck(&[], &[("PAYLINK_HEALTHCHECK_URL", url.as_str())]).await;
    assert_eq!(p.code, Some(0), "stderr: {}", p.stderr);

    let sick = server_answering(StatusCode::SERVICE_UNAVAILABLE).await;
    let url = healthz(sick);
    let p = healthcheck(&[], &[("PAYLINK_HEALTHCHECK_URL", url.as_str())]).await;
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
}

/// The probe needs no key and ignores a configuration the server itself would refuse (two keys
/// and no --backend is exit 2 for `stdio`): it only asks the running server.
#[tokio::test]
async fn the_probe_ignores_server_configuration_it_does_not_need() {
    let addr = server_answering(StatusCode::OK).await;
    let p = healthcheck(
        &["--url", &healthz(addr)],
        &[("STREAM_API_KEY", "one"), ("STRIPE_API_KEY", "sk_test_two")],
    )
    .await;
    assert_eq!(p.code, Some(0), "stderr: {}", p.stderr);
}

/// A bad URL is exit 1, never 2 (Docker reserves 2 in HEALTHCHECK).
#[tokio::test]
async fn a_bad_url_is_exit_1_not_2() {
    let p = healthcheck(&["--url", "not a url"], &[]).await;
    assert_eq!(p.code, Some(1), "stderr: {}", p.stderr);
    assert!(p.stderr.contains("not a URL"), "{}", p.stderr);
    assert_eq!(p.stdout, "");
}
