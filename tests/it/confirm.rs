//! The user's confirmation of a write, through the real binary and rmcp's real client with an
//! elicitation handler: over stdio and HTTP sessions with 2025-era clients (accept, accept
//! without ticking, decline, cancel, no answer), with 2026-07-28 clients (the multi-round-trip
//! `InputRequiredResult`, and a tampered request state), and with clients that cannot be asked.
//! Every refusal leaves the upstream mocks without a POST; the text the user reads carries each
//! line and the total as this test computes them, and the link created totals exactly that.

use crate::harness as common;
use crate::harness::http as http_support;
use crate::mocks::stream as stream_mock;
use crate::mocks::stripe as stripe_mock;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{CALL_DEADLINE, Log as Captured, within};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationCapability, ErrorData,
    Implementation, ProtocolVersion, UrlElicitationCapability,
};
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::Notify;

const STREAM_TOKEN: &str = "stream-confirm-token";
const STRIPE_KEY: &str = "sk_test_51ConfirmTests";
const STRIPE_LIVE_KEY: &str = "sk_live_51ConfirmTests";
const ESPRESSO: &str = "11111111-1111-4111-8111-111111111111";
const MUG: &str = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";
const DALLAH: &str = "d4e5f6a7-b8c9-4d0e-a1f2-a3b4c5d6e7f8";

/// How the test user answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Accept,
    /// Accept without ticking the box.
    AcceptUnticked,
    Decline,
    Cancel,
    /// Never answers: waits until the server withdraws the question.
    Never,
}

/// A client that declares (or not) elicitation and answers as its mode says, remembering every
/// question it was asked and every question withdrawn.
#[derive(Clone)]
struct User {
    declare: bool,
    /// Declares only URL-mode elicitation (no forms).
    url_only: bool,
    mode: Arc<Mutex<Mode>>,
    asked: Arc<Mutex<Vec<Value>>>,
    asked_now: Arc<Notify>,
    withdrawn: Arc<AtomicUsize>,
    withdrawn_now: Arc<Notify>,
    /// Runs once, while the next question is open (before it is answered).
    while_asked: Arc<Mutex<Option<Hook>>>,
}

type Hook = Box<dyn FnOnce() + Send>;

impl User {
    fn new(mode: Mode) -> Self {
        User {
            declare: true,
            url_only: false,
            mode: Arc::new(Mutex::new(mode)),
            asked: Arc::default(),
            asked_now: Arc::default(),
            withdrawn: Arc::default(),
            withdrawn_now: Arc::default(),
            while_asked: Arc::default(),
        }
    }

    /// Runs `hook` while the next question is open, before the user answers it.
    fn while_asked(&self, hook: impl FnOnce() + Send + 'static) {
        *self.while_asked.lock().unwrap() = Some(Box::new(hook));
    }

    fn without_elicitation() -> Self {
        User {
            declare: false,
            ..User::new(Mode::Accept)
        }
    }

    fn answer(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn questions(&self) -> Vec<Value> {
        self.asked.lock().unwrap().clone()
    }

    /// The text of the last question.
    fn last_message(&self) -> String {
        let asked = self.questions();
        let last = asked.last().expect("the user was asked");
        last["message"].as_str().unwrap().to_owned()
    }
}

impl ClientHandler for User {
    fn get_info(&self) -> ClientConfig {
        let capabilities = if self.url_only {
            ClientCapabilities::builder()
                .enable_elicitation_with(
                    ElicitationCapability::new().with_url(UrlElicitationCapability::new()),
                )
                .build()
        } else if self.declare {
            ClientCapabilities::builder().enable_elicitation().build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(capabilities, Implementation::new("confirm-test", "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap());
        self.asked_now.notify_waiters();
        let hook = self.while_asked.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Accept => {
                Ok(ElicitResult::new(ElicitationAction::Accept)
                    .with_content(json!({"confirm": true})))
            }
            Mode::AcceptUnticked => Ok(ElicitResult::new(ElicitationAction::Accept)
                .with_content(json!({"confirm": false}))),
            Mode::Decline => Ok(ElicitResult::new(ElicitationAction::Decline)),
            Mode::Cancel => Ok(ElicitResult::new(ElicitationAction::Cancel)),
            Mode::Never => {
                // The server's notifications/cancelled for this request cancels this token.
                context.ct.cancelled().await;
                self.withdrawn.fetch_add(1, Ordering::SeqCst);
                self.withdrawn_now.notify_waiters();
                Err(ErrorData::internal_error("withdrawn", None))
            }
        }
    }
}

/// The binary over stdio, behind `user`, as a 2025-era client (`initialize`).
async fn stdio(
    user: &User,
    args: &[&str],
    env: &[(&str, &str)],
) -> (RunningService<RoleClient, User>, Captured) {
    let (transport, stderr) = TokioChildProcess::builder(common::command(args, env))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paylink-mcp");
    let stderr = Captured::drain(stderr.expect("stderr piped"));
    let client = within(CALL_DEADLINE, "initialize", user.clone().serve(transport))
        .await
        .unwrap_or_else(|e| panic!("initialize: {e}\n{}", stderr.text()));
    (client, stderr)
}

fn modern() -> ClientLifecycleMode {
    ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    }
}

/// The binary over stdio, behind `user`, as a 2026-07-28 client (no `initialize`).
async fn stdio_modern(
    user: &User,
    args: &[&str],
    env: &[(&str, &str)],
) -> RunningService<RoleClient, User> {
    let (transport, stderr) = TokioChildProcess::builder(common::command(args, env))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paylink-mcp");
    let stderr = Captured::drain(stderr.expect("stderr piped"));
    within(
        CALL_DEADLINE,
        "discover",
        user.clone().serve_with_lifecycle(transport, modern()),
    )
    .await
    .unwrap_or_else(|e| panic!("discover: {e}\n{}", stderr.text()))
}

/// rmcp's streamable HTTP client behind `user`, with `token`.
async fn http(
    user: &User,
    server: &http_support::Server,
    token: &str,
    lifecycle: Option<ClientLifecycleMode>,
) -> RunningService<RoleClient, User> {
    let transport = StreamableHttpClientTransport::from_config(http_support::client_config(
        &server.url(),
        Some(token),
        &[],
    ));
    let started = match lifecycle {
        Some(l) => {
            within(
                CALL_DEADLINE,
                "discover",
                user.clone().serve_with_lifecycle(transport, l),
            )
            .await
        }
        None => within(CALL_DEADLINE, "initialize", user.clone().serve(transport)).await,
    };
    started.expect("client connects")
}

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_owned()).with_arguments(args.as_object().cloned().unwrap())
}

/// Calls a tool (driving 2026-07-28 rounds through the handler): `Ok(structuredContent)` or
/// `Err(the error envelope's body)`.
async fn call(
    client: &RunningService<RoleClient, User>,
    tool: &str,
    args: Value,
) -> Result<Value, Value> {
    let result = within(CALL_DEADLINE, tool, client.call_tool(params(tool, args)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    outcome(result)
}

fn outcome(result: CallToolResult) -> Result<Value, Value> {
    if result.is_error == Some(true) {
        Err(common::error_body(&result))
    } else {
        Ok(result.structured_content.expect("structured content"))
    }
}

fn espresso_order(quantity: u32) -> Value {
    json!({"name": "Espresso order", "items": [{"product_id": ESPRESSO, "quantity": quantity}]})
}

/// `minor` as the decimal of a currency with `exponent` decimals, with the currency.
fn amount(minor: i64, exponent: u32, currency: &str) -> String {
    format!("{} {currency}", common::decimal(minor, exponent))
}

/// The line of a confirmation as the user must read it.
fn line(quantity: i64, unit: i64, exponent: u32, currency: &str) -> String {
    format!(
        "{quantity} × {} = {}",
        amount(unit, exponent, currency),
        amount(unit * quantity, exponent, currency)
    )
}

#[tokio::test]
async fn a_2025_client_over_stdio_confirms_declines_cancels_or_never_answers() {
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let user = User::new(Mode::Accept);
    let (client, stderr) = stdio(
        &user,
        &[
            "--backend",
            "stream",
            "--confirm-writes",
            "always",
            "--confirm-timeout-secs",
            "1",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;

    let link = call(&client, "create_payment_link", espresso_order(4))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stderr.text()));
    assert_eq!(link["total"]["amount"], "50.00");
    assert_eq!(mock.posts().await.len(), 1);
    let question = &user.questions()[0];
    assert_eq!(question["mode"], "form");
    assert_eq!(
        question["requestedSchema"]["properties"]["confirm"]["type"],
        "boolean"
    );
    assert_eq!(question["requestedSchema"]["required"], json!(["confirm"]));
    let text = user.last_message();
    assert!(text.contains("TEST"), "{text}");
    assert!(text.contains(&line(4, 1250, 2, "SAR")), "{text}");
    assert!(text.contains("Total: 50.00 SAR"), "{text}");

    for mode in [
        Mode::AcceptUnticked,
        Mode::Decline,
        Mode::Cancel,
        Mode::Never,
    ] {
        user.answer(mode);
        let asked = user.questions().len();
        let withdrawn = user.withdrawn_now.notified();
        let e = call(&client, "create_payment_link", espresso_order(1))
            .await
            .unwrap_err();
        assert_eq!(e["kind"], "declined", "{mode:?}: {e}");
        assert_eq!(e["retry_safe"], false, "{mode:?}");
        assert_eq!(user.questions().len(), asked + 1, "{mode:?}: asked once");
        assert_eq!(mock.posts().await.len(), 1, "{mode:?}: nothing was sent");
        if mode == Mode::Never {
            assert!(e["message"].as_str().unwrap().contains("within 1 s"), "{e}");
            // The unanswered question is withdrawn (notifications/cancelled) when it times out.
            within(CALL_DEADLINE, "the question withdrawn", withdrawn).await;
        }
    }
    assert_eq!(user.withdrawn.load(Ordering::SeqCst), 1);

    // A status change is confirmed too, showing the link as it is.
    user.answer(Mode::Decline);
    let e = call(
        &client,
        "update_payment_link_status",
        json!({"payment_link_id": link["id"], "status": "inactive"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "declined");
    let text = user.last_message();
    assert!(text.contains("Deactivate this payment link?"), "{text}");
    assert!(text.contains(link["id"].as_str().unwrap()), "{text}");
    assert!(text.contains("“Espresso order”"), "{text}");
    assert!(text.contains("active → inactive"), "{text}");
    let patches = |m: &stream_mock::MockStream| {
        let m = m.state.lock().unwrap();
        m.arrivals
            .iter()
            .filter(|(_, method, _)| method == "PATCH")
            .count()
    };
    assert_eq!(patches(&mock), 0);
    user.answer(Mode::Accept);
    let changed = call(
        &client,
        "update_payment_link_status",
        json!({"payment_link_id": link["id"], "status": "inactive"}),
    )
    .await
    .unwrap();
    assert_eq!(changed["status"], "inactive");
    assert_eq!(patches(&mock), 1);
    client.cancel().await.unwrap();

    // The audit lines: the previewed total, how the confirmation ended, the cap decision.
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let facts: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["outcome"].as_str().unwrap(),
                l["confirmation"].as_str().unwrap(),
                l["preview_total"]["amount"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        facts,
        [
            ("ok", "confirmed", "50.00"),
            ("declined", "declined", "12.50"),
            ("declined", "declined", "12.50"),
            ("declined", "declined", "12.50"),
            ("declined", "declined", "12.50"),
            ("declined", "declined", "-"),
            ("ok", "confirmed", "-"),
        ]
    );
    assert_eq!(lines[0]["cap"], "uncapped");
}

#[tokio::test]
async fn a_2025_client_over_an_http_session_is_asked_on_its_call_even_with_one_slot_per_tenant() {
    let mock = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    // One request in flight per tenant: the answer to the question is a second POST while the
    // tool call holds the slot. It takes none (the gate lets JSON-RPC responses through).
    let server = http_support::Server::start(
        &[
            "--backend",
            "stripe",
            "--stripe-base-url",
            &mock.uri(),
            "--confirm-writes",
            "always",
            "--confirm-timeout-secs",
            "1",
            "--max-concurrent-per-tenant",
            "1",
            "--max-concurrent-per-client",
            "1",
        ],
        &[],
    );
    let user = User::new(Mode::Accept);
    let client = http(&user, &server, STRIPE_KEY, None).await;
    let order =
        json!({"name": "Beans", "items": [{"product_id": "price_espresso_usd", "quantity": 3}]});
    let link = call(&client, "create_payment_link", order.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.stderr()));
    assert_eq!(link["total"]["amount_minor"], 1050);
    let text = user.last_message();
    assert!(text.contains(&line(3, 350, 2, "USD")), "{text}");
    assert!(text.contains("“Espresso”"), "{text}");
    assert!(text.contains("Total: 10.50 USD"), "{text}");
    assert_eq!(mock.posts().await.len(), 1);

    for mode in [
        Mode::AcceptUnticked,
        Mode::Decline,
        Mode::Cancel,
        Mode::Never,
    ] {
        user.answer(mode);
        let withdrawn = user.withdrawn_now.notified();
        let e = call(&client, "create_payment_link", order.clone())
            .await
            .unwrap_err();
        assert_eq!(e["kind"], "declined", "{mode:?}: {e}");
        assert_eq!(mock.posts().await.len(), 1, "{mode:?}: nothing was sent");
        if mode == Mode::Never {
            within(CALL_DEADLINE, "the timed-out question withdrawn", withdrawn).await;
        }
    }
    assert_eq!(user.withdrawn.load(Ordering::SeqCst), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_client_that_cannot_be_asked_gets_confirmation_required_and_nothing_is_sent() {
    // stdio, a client without the elicitation capability.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let user = User::without_elicitation();
    let (client, _stderr) = stdio(
        &user,
        &["--backend", "stream", "--confirm-writes", "always"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let e = call(&client, "create_payment_link", espresso_order(1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required");
    assert_eq!(e["retry_safe"], false);
    let message = e["message"].as_str().unwrap();
    for hint in ["elicitation", "--stateless", "--confirm-writes never"] {
        assert!(message.contains(hint), "{hint}: {message}");
    }
    let e = call(
        &client,
        "update_payment_link_status",
        json!({"payment_link_id": ESPRESSO, "status": "inactive"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required");
    assert!(
        mock.requests().await.is_empty(),
        "refused before any upstream call"
    );
    client.cancel().await.unwrap();

    // A client that declared only URL-mode elicitation is not sent a form.
    let url_only = User {
        url_only: true,
        ..User::new(Mode::Accept)
    };
    let (client, _stderr) = stdio(
        &url_only,
        &["--backend", "stream", "--confirm-writes", "always"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let e = call(&client, "create_payment_link", espresso_order(1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required");
    assert!(url_only.questions().is_empty());
    assert!(mock.requests().await.is_empty());
    client.cancel().await.unwrap();

    // Stateless HTTP with a 2025-era client: it declares elicitation, but the transport cannot
    // carry the question (rmcp reports no capabilities there).
    let stripe = stripe_mock::MockStripe::start(STRIPE_LIVE_KEY).await;
    let server = http_support::Server::start(
        &[
            "--backend",
            "stripe",
            "--stripe-base-url",
            &stripe.uri(),
            "--stateless",
            "--allow-live",
        ],
        &[],
    );
    let user = User::new(Mode::Accept);
    let client = http(&user, &server, STRIPE_LIVE_KEY, None).await;
    let e = call(
        &client,
        "create_payment_link",
        json!({"name": "Live", "items": [{"product_id": "price_espresso_usd"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required", "{e}");
    assert!(user.questions().is_empty());
    assert!(stripe.posts().await.is_empty());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_2026_client_confirms_through_the_answer_over_stdio_and_http() {
    // stdio, sandbox (KWD, several quantities): the round trip through rmcp's call_tool.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let user = User::new(Mode::Accept);
    let client = stdio_modern(
        &user,
        &[
            "--confirm-writes",
            "always",
            "--audit-log",
            audit.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let order = json!({"name": "Majlis", "currency": "KWD", "items": [
        {"product_id": MUG, "quantity": 3}, {"product_id": DALLAH, "quantity": 7}]});
    let link = call(&client, "create_payment_link", order.clone())
        .await
        .unwrap();
    let total = 3 * 2_950 + 7 * 34_125;
    assert_eq!(link["total"]["amount_minor"], total);
    assert_eq!(link["total"]["amount"], "247.725");
    let text = user.last_message();
    assert!(text.contains(&line(3, 2_950, 3, "KWD")), "{text}");
    assert!(text.contains(&line(7, 34_125, 3, "KWD")), "{text}");
    assert!(
        text.contains(&format!("Total: {}", amount(total, 3, "KWD"))),
        "{text}"
    );
    user.answer(Mode::Decline);
    let e = call(&client, "create_payment_link", order)
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "declined");
    let links = call(&client, "list_payment_links", json!({}))
        .await
        .unwrap();
    assert_eq!(
        links["data"].as_array().unwrap().len(),
        1,
        "the declined link does not exist"
    );
    client.cancel().await.unwrap();
    // Each round is a call of its own: the question asked, then its answer.
    let facts: Vec<(String, String)> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|l| {
            (
                l["outcome"].as_str().unwrap().to_owned(),
                l["confirmation"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("input_required", "asked"),
        ("ok", "confirmed"),
        ("input_required", "asked"),
        ("declined", "declined"),
    ];
    assert_eq!(facts, want.map(|(a, b)| (a.to_owned(), b.to_owned())));

    // HTTP (a 2026-07-28 request is always served statelessly), Stream behind it.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let server = http_support::Server::start(
        &["--backend", "stream", "--confirm-writes", "always"],
        &[("STREAM_BASE_URL", &mock.uri())],
    );
    let user = User::new(Mode::Accept);
    let client = http(&user, &server, STREAM_TOKEN, Some(modern())).await;
    let link = call(&client, "create_payment_link", espresso_order(2))
        .await
        .unwrap();
    assert_eq!(link["total"]["amount"], "25.00");
    assert_eq!(user.questions().len(), 1);
    assert_eq!(mock.posts().await.len(), 1);
    user.answer(Mode::Cancel);
    let e = call(&client, "create_payment_link", espresso_order(2))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "declined");
    assert_eq!(mock.posts().await.len(), 1);

    // Without the capability in its request, a 2026 client is not asked.
    let unable = User::without_elicitation();
    let client = http(&unable, &server, STREAM_TOKEN, Some(modern())).await;
    let e = call(&client, "create_payment_link", espresso_order(2))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "confirmation_required");
    assert_eq!(mock.posts().await.len(), 1);
}

#[tokio::test]
async fn a_tampered_or_rebound_request_state_is_refused_and_a_confirmed_retry_creates_once() {
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let user = User::new(Mode::Accept);
    let client = stdio_modern(
        &user,
        &["--backend", "stream", "--confirm-writes", "always"],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let first = within(
        CALL_DEADLINE,
        "round 1",
        client.call_tool_once(params("create_payment_link", espresso_order(2))),
    )
    .await
    .unwrap();
    let CallToolResponse::InputRequired(question) = first else {
        panic!("a question first, got {first:?}");
    };
    let state = question.request_state.clone().expect("a request state");
    let asked = serde_json::to_value(&question.input_requests).unwrap();
    assert_eq!(asked["confirm"]["method"], "elicitation/create");
    assert!(
        asked["confirm"]["params"]["message"]
            .as_str()
            .unwrap()
            .contains("Total: 25.00 SAR"),
        "{asked}"
    );
    let yes: rmcp::model::InputResponses = [(
        "confirm".to_owned(),
        json!({"action": "accept", "content": {"confirm": true}}),
    )]
    .into();
    let answered = |args: Value, state: String| {
        let mut p = params("create_payment_link", args).with_request_state(state);
        p.input_responses = Some(yes.clone());
        p
    };
    // The state altered, or replayed with other arguments (a bigger order): refused.
    let mut tampered = state.clone();
    tampered.insert(tampered.len() / 2, 'x');
    for (what, request) in [
        ("altered state", answered(espresso_order(2), tampered)),
        (
            "other arguments",
            answered(espresso_order(200), state.clone()),
        ),
    ] {
        match within(CALL_DEADLINE, what, client.call_tool_once(request)).await {
            Err(ServiceError::McpError(e)) => {
                assert_eq!(e.code.0, -32602, "{what}: {e:?}");
                assert!(e.message.contains("requestState"), "{what}: {e:?}");
            }
            other => panic!("{what}: expected -32602, got {other:?}"),
        }
    }
    assert!(
        mock.posts().await.is_empty(),
        "nothing sent on a refused state"
    );

    // The genuine answer creates the link; sending the same confirmed retry again replays it.
    let mut links = Vec::new();
    for _ in 0..2 {
        let done = within(
            CALL_DEADLINE,
            "round 2",
            client.call_tool_once(answered(espresso_order(2), state.clone())),
        )
        .await
        .unwrap();
        let CallToolResponse::Complete(result) = done else {
            panic!("a result, got {done:?}");
        };
        links.push(outcome(result).unwrap()["id"].clone());
    }
    assert_eq!(links[0], links[1], "one confirmation, one link");
    assert_eq!(mock.posts().await.len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_replay_does_not_ask_again_and_a_cancelled_call_withdraws_its_question() {
    let user = User::new(Mode::Accept);
    let (client, _stderr) = stdio(&user, &["--confirm-writes", "always"], &[]).await;
    let order = json!({"name": "Once", "idempotency_key": "order-1",
        "items": [{"product_id": MUG, "quantity": 2}]});
    let first = call(&client, "create_payment_link", order.clone())
        .await
        .unwrap();
    let again = call(&client, "create_payment_link", order).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(
        user.questions().len(),
        1,
        "an idempotent replay is not asked again"
    );

    // A call cancelled while its question is open: the question is withdrawn, nothing created.
    user.answer(Mode::Never);
    let asked = user.asked_now.notified();
    let pending = client.call_tool(params(
        "create_payment_link",
        json!({"name": "Never mind", "items": [{"product_id": MUG}]}),
    ));
    let withdrawn = user.withdrawn_now.notified();
    tokio::select! {
        r = pending => panic!("the call should wait for the user, got {r:?}"),
        () = within(CALL_DEADLINE, "the question", asked) => {}
    }
    // Dropping the call future sends notifications/cancelled for the tool call.
    within(CALL_DEADLINE, "the question withdrawn", withdrawn).await;
    assert_eq!(user.withdrawn.load(Ordering::SeqCst), 1);
    user.answer(Mode::Accept);
    let links = call(&client, "list_payment_links", json!({}))
        .await
        .unwrap();
    assert_eq!(
        links["data"].as_array().unwrap().len(),
        1,
        "the cancelled link does not exist"
    );
    client.cancel().await.unwrap();
}

/// A backend, its environment, the items of a create, and each line's (quantity, unit price).
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value, Vec<(i64, i64)>);

#[tokio::test]
async fn the_preview_total_is_the_created_total_on_every_backend_in_kwd() {
    // Each backend, KWD at 3 decimals, several quantities; the user reads each line and the
    // total as computed here, and the created link totals exactly that.
    let stream = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let stripe = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    let stream_env = [
        ("STREAM_API_KEY", STREAM_TOKEN),
        ("STREAM_BASE_URL", &*stream.uri()),
    ];
    let stripe_env = [
        ("STRIPE_API_KEY", STRIPE_KEY),
        ("STRIPE_BASE_URL", &*stripe.uri()),
    ];
    let cases: Vec<Case> = vec![
        (
            "sandbox",
            &[],
            json!([{"product_id": MUG, "quantity": 3}, {"product_id": DALLAH, "quantity": 7}]),
            vec![(3, 2_950), (7, 34_125)],
        ),
        (
            "stream",
            &stream_env,
            json!([{"product_id": ESPRESSO, "quantity": 3}, {"product_id": ESPRESSO, "quantity": 11}]),
            vec![(3, 1_025), (11, 1_025)],
        ),
        (
            "stripe",
            &stripe_env,
            json!([{"product_id": "price_dates_kwd", "quantity": 3}, {"product_id": "prod_dates", "quantity": 12}]),
            vec![(3, 1_250), (12, 1_250)],
        ),
    ];
    for (backend, env, items, lines) in cases {
        let user = User::new(Mode::Accept);
        let (client, stderr) = stdio(
            &user,
            &["--backend", backend, "--confirm-writes", "always"],
            env,
        )
        .await;
        let link = call(
            &client,
            "create_payment_link",
            json!({"name": "Dates and cups", "currency": "KWD", "items": items}),
        )
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}\n{}", stderr.text()));
        let total: i64 = lines.iter().map(|(q, unit)| q * unit).sum();
        let text = user.last_message();
        for (q, unit) in &lines {
            assert!(
                text.contains(&line(*q, *unit, 3, "KWD")),
                "{backend}: {text}"
            );
        }
        let want = format!("Total: {}", amount(total, 3, "KWD"));
        assert!(
            text.lines().any(|l| l == want),
            "{backend}: {want} in {text}"
        );
        assert_eq!(link["total"]["amount_minor"], total, "{backend}: {link}");
        assert_eq!(
            link["total"]["amount"],
            common::decimal(total, 3),
            "{backend}"
        );
        assert_eq!(link["total"]["currency"], "KWD", "{backend}");
        client.cancel().await.unwrap();
    }
    // Stream: one product read for the two lines of one product, and once more after the user
    // answered, right before the write (its create charges the prices of that moment); Stripe:
    // the prices read once, the create sent exactly the prices the preview showed.
    let product_reads = stream
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == format!("/api/v2/products/{ESPRESSO}"))
        .count();
    assert_eq!(product_reads, 2);
    assert_eq!(
        stripe
            .requests_to("GET", "/v1/prices/price_dates_kwd")
            .await
            .len(),
        1
    );
    let sent = stripe_mock::pairs_of(&stripe.posts().await[0].body);
    let prices: Vec<&str> = sent
        .iter()
        .filter(|(k, _)| k.ends_with("[price]"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(prices, ["price_dates_kwd", "price_dates_kwd"]);
}

#[tokio::test]
async fn an_answer_counts_only_for_the_text_the_user_was_shown() {
    // A 2026-07-28 answer comes with a new call, which reads the link again: if what the user
    // would see has changed since the question, the answer does not count and the user is asked
    // again about what is true now.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let env = [
        ("STREAM_API_KEY", STREAM_TOKEN),
        ("STREAM_BASE_URL", &*mock.uri()),
    ];
    let never =
        common::stdio::Server::start(&["--backend", "stream", "--confirm-writes", "never"], &env)
            .await;
    let link = never.ok("create_payment_link", espresso_order(2)).await;
    never.shutdown().await;
    let user = User::new(Mode::Accept);
    let client = stdio_modern(
        &user,
        &["--backend", "stream", "--confirm-writes", "always"],
        &env,
    )
    .await;
    let deactivate = json!({"payment_link_id": link["id"], "status": "inactive"});
    let first = within(
        CALL_DEADLINE,
        "round 1",
        client.call_tool_once(params("update_payment_link_status", deactivate.clone())),
    )
    .await
    .unwrap();
    let CallToolResponse::InputRequired(question) = first else {
        panic!("a question first, got {first:?}");
    };
    // The link's total changes upstream before the answer arrives.
    {
        let mut state = mock.state.lock().unwrap();
        state.links[0]["amount"] = json!("99.00");
        state.links[0]["amount_in_smallest_unit"] = json!(9900);
    }
    let mut retry = params("update_payment_link_status", deactivate)
        .with_request_state(question.request_state.unwrap());
    retry.input_responses = Some(
        [(
            "confirm".to_owned(),
            json!({"action": "accept", "content": {"confirm": true}}),
        )]
        .into(),
    );
    let second = within(CALL_DEADLINE, "round 2", client.call_tool_once(retry))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(again) = second else {
        panic!("asked again, got {second:?}");
    };
    let text = serde_json::to_value(&again.input_requests).unwrap()["confirm"]["params"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("Total: 99.00 SAR"), "{text}");
    let patches = mock
        .state
        .lock()
        .unwrap()
        .arrivals
        .iter()
        .filter(|(_, method, _)| method == "PATCH")
        .count();
    assert_eq!(patches, 0, "nothing was changed on the stale answer");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_price_changed_while_the_user_was_asked_is_refused_with_nothing_sent() {
    // Stream charges the price of the moment of the create: a price that changes while the
    // question is open must not reach a link the user did not confirm.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let user = User::new(Mode::Accept);
    let (client, stderr) = stdio(
        &user,
        &[
            "--backend",
            "stream",
            "--confirm-writes",
            "always",
            "--max-daily-amount",
            "SAR:100.00",
        ],
        &[
            ("STREAM_API_KEY", STREAM_TOKEN),
            ("STREAM_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let state = mock.state.clone();
    user.while_asked(move || stream_mock::set_price(&state, ESPRESSO, "SAR", "13.00", true));
    let e = call(&client, "create_payment_link", espresso_order(4))
        .await
        .unwrap_err();
    assert!(user.last_message().contains("Total: 50.00 SAR"));
    assert_eq!(e["kind"], "upstream", "{e}\n{}", stderr.text());
    assert_eq!(e["retry_safe"], true, "nothing was sent: {e}");
    assert_eq!(e["field"], "items[0].product_id");
    let message = e["message"].as_str().unwrap();
    for part in ["12.50 SAR", "13.00 SAR", "50.00 SAR", "nothing was sent"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    assert!(mock.posts().await.is_empty(), "nothing was written");

    // Called again, the user is asked about the price of now, and that is what is created.
    let link = call(&client, "create_payment_link", espresso_order(4))
        .await
        .unwrap();
    assert!(user.last_message().contains("Total: 52.00 SAR"));
    assert_eq!(link["total"]["amount"], "52.00");
    assert_eq!(mock.posts().await.len(), 1);
    // The refused attempt held nothing of the budget: 100.00 - 52.00 is left.
    let e = call(&client, "create_payment_link", espresso_order(4))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("48.00 SAR is left"),
        "{e}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_stripe_create_that_timed_out_keeps_its_budget_and_its_retry_is_not_asked_again() {
    let mock = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    let user = User::new(Mode::Accept);
    let (client, stderr) = stdio(
        &user,
        &[
            "--backend",
            "stripe",
            "--confirm-writes",
            "always",
            "--max-daily-amount",
            "USD:14.00",
            "--upstream-timeout-secs",
            "1",
            "--request-deadline-secs",
            "4",
            "--max-retries",
            "0",
        ],
        &[
            ("STRIPE_API_KEY", STRIPE_KEY),
            ("STRIPE_BASE_URL", &mock.uri()),
        ],
    )
    .await;
    let order = |key: &str, quantity: u32| {
        json!({"name": "Beans", "idempotency_key": key,
            "items": [{"product_id": "price_espresso_usd", "quantity": quantity}]})
    };
    // The create reaches Stripe, which makes the link, and its answer never comes in time.
    mock.fault(
        "POST",
        "/v1/payment_links",
        stripe_mock::Fault::Delay(std::time::Duration::from_secs(5)),
    );
    let e = call(&client, "create_payment_link", order("slow", 3))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "upstream", "{e}\n{}", stderr.text());
    assert_eq!(e["retry_safe"], true, "the same key is safe to retry: {e}");
    assert_eq!(mock.link_count(), 1, "Stripe made the link");
    assert_eq!(user.questions().len(), 1);

    // Its 10.50 stays counted: 3.50 is left, one espresso exactly.
    call(&client, "create_payment_link", order("one", 1))
        .await
        .unwrap();
    let e = call(&client, "create_payment_link", order("two", 1))
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "cap_exceeded", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("0.00 USD is left"),
        "{e}"
    );
    let asked = user.questions().len();

    // The retry with the same key is the same write: not asked again, not counted again, and
    // Stripe answers with the link the first attempt made.
    let link = call(&client, "create_payment_link", order("slow", 3))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", stderr.text()));
    assert_eq!(user.questions().len(), asked, "not asked again");
    assert_eq!(link["total"]["amount"], "10.50");
    assert_eq!(mock.link_count(), 2, "no second link for the slow create");
    assert_eq!(mock.replays(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_confirmed_status_change_cannot_be_replayed_with_its_state() {
    // A 2026-07-28 state and its "yes" sent again within the state's lifetime: the change is
    // not made a second time; the user is asked again.
    let mock = stream_mock::MockStream::start(STREAM_TOKEN).await;
    let env = [
        ("STREAM_API_KEY", STREAM_TOKEN),
        ("STREAM_BASE_URL", &*mock.uri()),
    ];
    let never =
        common::stdio::Server::start(&["--backend", "stream", "--confirm-writes", "never"], &env)
            .await;
    let link = never.ok("create_payment_link", espresso_order(1)).await;
    never.shutdown().await;
    let user = User::new(Mode::Accept);
    let client = stdio_modern(
        &user,
        &["--backend", "stream", "--confirm-writes", "always"],
        &env,
    )
    .await;
    let deactivate = json!({"payment_link_id": link["id"], "status": "inactive"});
    let first = within(
        CALL_DEADLINE,
        "round 1",
        client.call_tool_once(params("update_payment_link_status", deactivate.clone())),
    )
    .await
    .unwrap();
    let CallToolResponse::InputRequired(question) = first else {
        panic!("a question first, got {first:?}");
    };
    let mut answered = params("update_payment_link_status", deactivate)
        .with_request_state(question.request_state.unwrap());
    answered.input_responses = Some(
        [(
            "confirm".to_owned(),
            json!({"action": "accept", "content": {"confirm": true}}),
        )]
        .into(),
    );
    let patches = || {
        mock.state
            .lock()
            .unwrap()
            .arrivals
            .iter()
            .filter(|(_, method, _)| method == "PATCH")
            .count()
    };
    let done = within(
        CALL_DEADLINE,
        "round 2",
        client.call_tool_once(answered.clone()),
    )
    .await
    .unwrap();
    let CallToolResponse::Complete(result) = done else {
        panic!("a result, got {done:?}");
    };
    assert_eq!(outcome(result).unwrap()["status"], "inactive");
    assert_eq!(patches(), 1);
    // The link is active again (someone re-activated it); the old "yes" is replayed.
    mock.state.lock().unwrap().links[0]["status"] = json!("ACTIVE");
    let replayed = within(CALL_DEADLINE, "replay", client.call_tool_once(answered))
        .await
        .unwrap();
    assert!(
        matches!(replayed, CallToolResponse::InputRequired(_)),
        "asked again, got {replayed:?}"
    );
    assert_eq!(patches(), 1, "the change was not made again");
    client.cancel().await.unwrap();
}

/// The same over two replicas sharing one Redis (`--store`): what the first attempt sent is
/// kept with its unknown outcome in the shared store, so the retry on the other replica is the
/// same write again — not asked, and Stripe answers it with the link the first attempt made.
#[tokio::test]
async fn over_replicas_a_stripe_create_that_timed_out_is_not_asked_again_on_the_other() {
    let redis = crate::harness::redis::Redis::start();
    let mock = stripe_mock::MockStripe::start(STRIPE_KEY).await;
    let url = redis.url();
    let replica = || {
        http_support::Server::start(
            &[
                "--backend",
                "stripe",
                "--stripe-base-url",
                &mock.uri(),
                "--store",
                &url,
                "--confirm-writes",
                "always",
                "--upstream-timeout-secs",
                "1",
                "--request-deadline-secs",
                "4",
                "--max-retries",
                "0",
            ],
            &[],
        )
    };
    let (a, b) = (replica(), replica());
    let order = json!({"name": "Beans", "idempotency_key": "slow",
        "items": [{"product_id": "price_espresso_usd", "quantity": 3}]});
    mock.fault(
        "POST",
        "/v1/payment_links",
        stripe_mock::Fault::Delay(std::time::Duration::from_secs(5)),
    );
    let user_a = User::new(Mode::Accept);
    let on_a = http(&user_a, &a, STRIPE_KEY, None).await;
    let e = call(&on_a, "create_payment_link", order.clone())
        .await
        .unwrap_err();
    assert_eq!(e["kind"], "upstream", "{e}");
    assert_eq!(e["retry_safe"], true, "{e}");
    assert_eq!(user_a.questions().len(), 1);
    assert_eq!(mock.link_count(), 1, "Stripe made the link");

    let user_b = User::new(Mode::Accept);
    let on_b = http(&user_b, &b, STRIPE_KEY, None).await;
    let link = call(&on_b, "create_payment_link", order).await.unwrap();
    assert!(user_b.questions().is_empty(), "not asked again on B");
    assert_eq!(link["total"]["amount"], "10.50");
    assert_eq!(mock.link_count(), 1, "no second link");
    assert_eq!(mock.replays(), 1, "Stripe replayed the first create");
    on_a.cancel().await.unwrap();
    on_b.cancel().await.unwrap();
}
