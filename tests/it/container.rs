//! What the `Dockerfile` relies on, without Docker: the binary started the way the image starts
//! it (its `CMD`: `http --bind 0.0.0.0:8080 --behind-tls-proxy`, with port 0 here, and its `ENV`),
//! the `Host` allow-list from `PAYLINK_ALLOWED_HOSTS`, and `paylink-mcp healthcheck` (the image's
//! `HEALTHCHECK`) against it.
//!
//! The server binds 0.0.0.0 as in the image, but every request here goes to 127.0.0.1; the `Host`
//! header is set explicitly to play the name a client behind the proxy would use.

use serde_json::Value;

use crate::harness::http::{Server, initialize_body, post, rpc_answer};
use crate::harness::{EXIT_DEADLINE, command, within};

/// The Dockerfile's instructions: comments dropped, `\` continuations joined.
fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read the Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

/// The exec-form JSON array after `CMD` in `instruction`.
fn exec_form(instruction: &str) -> Vec<String> {
    let at = instruction.find("CMD [").expect("an exec-form CMD") + "CMD ".len();
    serde_json::from_str(&instruction[at..]).expect("CMD is a JSON array")
}

/// What the image runs: the arguments of `CMD` and the variables of its `ENV` (runtime stage).
struct Image {
    cmd: Vec<String>,
    healthcheck: Vec<String>,
    env: Vec<(String, String)>,
}

fn image() -> Image {
    let instructions = dockerfile();
    let runtime = instructions
        .iter()
        .rposition(|i| i.starts_with("FROM "))
        .expect("a FROM");
    let runtime = &instructions[runtime..];
    let cmd = runtime
        .iter()
        .rfind(|i| i.starts_with("CMD "))
        .map(|i| exec_form(i))
        .expect("a CMD");
    let healthcheck = runtime
        .iter()
        .rfind(|i| i.starts_with("HEALTHCHECK "))
        .map(|i| exec_form(i))
        .expect("a HEALTHCHECK");
    let env = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(|vars| {
            vars.split_whitespace().map(|kv| {
                let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
                (k.to_owned(), v.to_owned())
            })
        })
        .collect();
    Image {
        cmd,
        healthcheck,
        env,
    }
}

impl Image {
    /// `CMD` after `http` (the test helper adds `http`), on port 0 instead of 8080.
    fn http_args(&self) -> Vec<String> {
        assert_eq!(
            self.cmd,
            ["http", "--bind", "0.0.0.0:8080", "--behind-tls-proxy"],
            "the image serves HTTP on all interfaces behind a TLS proxy"
        );
        self.cmd[1..]
            .iter()
            .map(|a| a.replace("0.0.0.0:8080", "0.0.0.0:0"))
            .collect()
    }

    fn env(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the image sets {name}"))
    }

    /// The image's environment with `overrides` applied (as `docker run -e` would).
    fn env_with<'a>(&'a self, overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .filter(|(k, _)| overrides.iter().all(|(o, _)| o != k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(overrides);
        env
    }
}

/// Starts the server as the image does, with `env`.
fn start(image: &Image, env: &[(&str, &str)]) -> Server {
    let args = image.http_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args, env);
    assert!(
        server.addr.starts_with("0.0.0.0:"),
        "bound to all interfaces: {}",
        server.addr
    );
    server
}

/// `POST /mcp` on 127.0.0.1 with `host` as the `Host` header: an `initialize` with a Bearer token.
async fn initialize_as(server: &Server, host: &str, token: Option<&str>) -> reqwest::Response {
    let url = format!("http://127.0.0.1:{}/mcp", server.port());
    post(&url, token, &[("host", host)], &initialize_body()).await
}

/// Asserts a 200 whose JSON-RPC answer is this server's `initialize` result.
async fn assert_initialized(response: reqwest::Response, host: &str) {
    assert_eq!(response.status(), 200, "Host {host} is accepted");
    let answer = rpc_answer(response).await;
    assert_eq!(
        answer["result"]["serverInfo"]["name"], "paylink-mcp",
        "Host {host}: {answer}"
    );
}

/// Asserts the gate's 403 for a `Host` not on the list.
async fn assert_host_refused(response: reqwest::Response, host: &str) {
    assert_eq!(response.status(), 403, "Host {host} is refused");
    let body: Value = response.json().await.expect("a JSON refusal");
    assert_eq!(body["error"]["kind"], "forbidden", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Host")),
        "{body}"
    );
}

/// Runs `paylink-mcp <args>` (the healthcheck) with exactly `env`; returns (exit code, stdout,
/// stderr).
async fn probe(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = within(
        EXIT_DEADLINE,
        "paylink-mcp healthcheck exits",
        command(args, env).output(),
    )
    .await
    .expect("run paylink-mcp healthcheck");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An operator sets `PAYLINK_ALLOWED_HOSTS` to the public name: that name is served, any other
/// name is 403 (the list replaces the loopback defaults, so `127.0.0.1` is refused on `/mcp`
/// too), a request without a key is 401 (no anonymous tenant off loopback, even on the sandbox),
/// and the health check on 127.0.0.1 passes (`/healthz` is not behind the `Host` check).
#[tokio::test]
async fn behind_a_proxy_the_host_allow_list_from_the_environment_decides() {
    let image = image();
    let env = image.env_with(&[("PAYLINK_ALLOWED_HOSTS", "mcp.example.com,mcp.internal:8080")]);
    let server = start(&image, &env);
    let port = server.port().to_string();

    for host in [
        "mcp.example.com",
        "mcp.example.com:443",
        "mcp.internal:8080",
    ] {
        assert_initialized(initialize_as(&server, host, Some("tenant-key")).await, host).await;
    }
    for host in [
        "evil.example",
        "mcp.example.com.evil.example",
        "mcp.internal:9999",
        &format!("127.0.0.1:{port}"),
        &format!("localhost:{port}"),
    ] {
        assert_host_refused(initialize_as(&server, host, Some("tenant-key")).await, host).await;
    }

    let response = initialize_as(&server, "mcp.example.com", None).await;
    assert_eq!(response.status(), 401, "no key, no anonymous tenant");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"paylink-mcp\""
    );

    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let (code, stdout, stderr) = probe(&["healthcheck", "--url", &healthz], &[]).await;
    assert_eq!(code, Some(0), "healthy: {stderr}");
    assert_eq!(stdout, "");

    let log = server.stderr();
    assert!(
        !log.contains("only loopback names"),
        "no warning when a public name is allowed: {log}"
    );
    // PAYLINK_LOG_FORMAT=json from the image: one JSON object per line.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "a JSON log line: {line}"
        );
    }
}

/// The image as built, with no `-e`: its `ENV` allows only loopback names, which the server
/// warns about when bound to 0.0.0.0; `docker run -p 8080:8080` then `curl localhost:8080`
/// works, a public name is 403, and the image's `HEALTHCHECK` (`paylink-mcp healthcheck`, URL from
/// `PAYLINK_HEALTHCHECK_URL`) reports healthy.
#[tokio::test]
async fn the_image_defaults_serve_loopback_names_and_pass_the_health_check() {
    let image = image();
    assert_eq!(image.env("PAYLINK_ALLOWED_HOSTS"), "localhost,127.0.0.1");
    let env = image.env_with(&[]);
    let server = start(&image, &env);
    let port = server.port().to_string();

    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_initialized(
            initialize_as(&server, &host, Some("tenant-key")).await,
            &host,
        )
        .await;
    }
    assert_host_refused(
        initialize_as(&server, "mcp.example.com", Some("tenant-key")).await,
        "mcp.example.com",
    )
    .await;
    assert!(
        server
            .stderr()
            .contains("with only loopback names in --allowed-host"),
        "the operator is told to set the public name: {}",
        server.stderr()
    );

    // HEALTHCHECK: the same binary, `healthcheck`, the URL from the image's ENV (its port
    // replaced: this server listens on a free port, not 8080).
    assert_eq!(
        image.healthcheck,
        ["/usr/local/bin/paylink-mcp", "healthcheck"]
    );
    assert_eq!(
        image.env("PAYLINK_HEALTHCHECK_URL"),
        "http://127.0.0.1:8080/healthz"
    );
    let url = image
        .env("PAYLINK_HEALTHCHECK_URL")
        .replace(":8080/", &format!(":{port}/"));
    let env = image.env_with(&[("PAYLINK_HEALTHCHECK_URL", &url)]);
    let args: Vec<&str> = image.healthcheck[1..].iter().map(String::as_str).collect();
    let (code, stdout, stderr) = probe(&args, &env).await;
    assert_eq!(code, Some(0), "healthy: {stderr}");
    assert_eq!(stdout, "");
}
