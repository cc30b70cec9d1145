//! Asking the user to confirm a write, through MCP elicitation (form mode, one boolean field):
//! whether to ask (`--confirm-writes never|live|always`), on which protocol, and what the answer
//! means.
//!
//! - A 2025-era client that declared the elicitation capability is asked during the call: an
//!   `elicitation/create` request with a timeout (on expiry rmcp sends `notifications/cancelled`
//!   and the answer is `declined`); the question is withdrawn the same way when the tool call
//!   itself is cancelled. Never spawned: rmcp routes the request by task-locals of the call.
//! - A 2026-07-28 client is asked by the answer itself: an `InputRequiredResult` carrying the
//!   question and a `requestState` sealed with rmcp's [`RequestStateCodec`], bound to the tenant,
//!   the tool and the canonical arguments, and valid as long as the confirmation timeout. Its
//!   retry brings the answer and the state back; a state that does not open for this caller,
//!   tool and arguments is a protocol error (`-32602`), one that expired is `declined`.
//! - A client that cannot be asked (no elicitation capability; stateless HTTP with a 2025-era
//!   client, whose capabilities rmcp reports empty) gets `confirmation_required`. A confirmation
//!   is never skipped.
//!
//! Only `accept` with `confirm: true` goes ahead. This module decides and asks; it must not call
//! a backend, and nothing reaches an upstream while it waits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ErrorData;
use rmcp::model::{
    CancelledNotificationParam, ClientResult, ElicitRequest, ElicitRequestParams, ElicitResult,
    ElicitationAction, ElicitationSchema, InputRequest, InputRequests, InputRequiredResult,
    InputResponses, ProtocolVersion, RequestId, RequestStateCodec, RequestStateError, SealOptions,
    ServerRequest,
};
use rmcp::service::{PeerRequestOptions, RequestContext, ServiceError};
use rmcp::{Peer, RoleServer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::observability::record;

mod state;
use state::UsedStates;
pub(crate) use state::binding;

/// The key of the question in a 2026-07-28 `inputRequests`/`inputResponses` map.
const INPUT_KEY: &str = "confirm";
/// The one field of the form.
const FIELD: &str = "confirm";

/// When writes wait for the user's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfirmPolicy {
    /// Never ask (for test keys and the sandbox; the operator's choice).
    Never,
    /// Ask when the backend moves real money (any Stream host but staging and loopback, any Stripe key but a test-mode one).
    Live,
    /// Ask before every write.
    Always,
}

impl ConfirmPolicy {
    /// Whether a write on a backend with this `livemode` is asked first.
    pub(crate) fn applies(self, livemode: bool) -> bool {
        match self {
            ConfirmPolicy::Never => false,
            ConfirmPolicy::Live => livemode,
            ConfirmPolicy::Always => true,
        }
    }
}

/// The confirmation settings, built once at start-up (the codec's `Debug` shows no key).
#[derive(Clone, Debug)]
pub(crate) struct ConfirmSettings {
    pub policy: ConfirmPolicy,
    /// How long the user has to answer (and a 2026-07-28 request state lives).
    pub timeout: Duration,
    /// Seals 2026-07-28 request states; `None` only if no key could be made (then such a client
    /// cannot be asked, and is told so).
    codec: Option<RequestStateCodec>,
    /// The confirmed states of single-use questions (status changes) already acted on.
    used: Arc<UsedStates>,
}

impl ConfirmSettings {
    /// The default timeout: ten minutes.
    pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

    /// Settings with `key` (at least 32 bytes) sealing request states, or a random key when
    /// `None`: states then die with the process, and replicas cannot open each other's.
    pub(crate) fn new(
        policy: ConfirmPolicy,
        timeout: Duration,
        key: Option<Vec<u8>>,
    ) -> std::result::Result<Self, String> {
        let key = match key {
            Some(key) => key,
            None => random_key()?,
        };
        let codec = RequestStateCodec::try_new(key).map_err(|e| e.to_string())?;
        Ok(ConfirmSettings {
            policy,
            timeout,
            codec: Some(codec),
            used: Arc::default(),
        })
    }

    /// Whether a write on a backend with this `livemode` is asked first.
    pub(crate) fn applies(&self, livemode: bool) -> bool {
        self.policy.applies(livemode)
    }
}

impl Default for ConfirmSettings {
    /// `live`, ten minutes, a random key.
    fn default() -> Self {
        ConfirmSettings::new(ConfirmPolicy::Live, Self::DEFAULT_TIMEOUT, None).unwrap_or(
            ConfirmSettings {
                policy: ConfirmPolicy::Live,
                timeout: Self::DEFAULT_TIMEOUT,
                codec: None,
                used: Arc::default(),
            },
        )
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random_key() -> std::result::Result<Vec<u8>, String> {
    let mut key = vec![0u8; RequestStateCodec::MIN_KEY_LENGTH];
    getrandom::fill(&mut key).map_err(|e| format!("no random key could be made: {e}"))?;
    Ok(key)
}

/// What a sealed request state carries: a random name for this one question, which a confirmed
/// create without a key of the caller's own uses as its idempotency key (so that replaying the
/// confirmed retry cannot create a second link); and the digest of the text the user was shown,
/// so that an answer counts only for the same text (a price that changed between the rounds is
/// asked again).
#[derive(Serialize, Deserialize)]
struct Sealed {
    n: String,
    m: String,
}

/// A 2026-07-28 retry's state, opened.
enum Returned {
    Valid {
        nonce: String,
        /// The digest of the text the answer is about.
        shown: String,
        response: Option<Value>,
    },
    Expired,
}

/// The protocol channel of one call: what a question can travel on, and (2026-07-28) the answer
/// a retry brought.
pub(crate) struct Channel {
    peer: Peer<RoleServer>,
    cancel: CancellationToken,
    /// The client declared (form) elicitation for this request.
    can_elicit: bool,
    /// The request speaks 2026-07-28 or later: a question goes back in the answer.
    modern: bool,
    /// What a request state is bound to (tenant, tool, canonical arguments).
    binding: Vec<u8>,
    returned: Option<Returned>,
}

/// What a write may do after asking.
pub(crate) enum Consent {
    /// The user ticked `confirm`: go ahead.
    Confirmed,
    /// 2026-07-28: answer with this question; the user's answer comes with the retry.
    Ask(Box<InputRequiredResult>),
}

/// How the user answered a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Confirmed,
    /// Accepted without ticking `confirm` (or with it missing).
    Unticked,
    Declined,
    Cancelled,
}

/// What an elicitation result means: only `accept` with `confirm: true` confirms.
pub(crate) fn interpret(result: &ElicitResult) -> Answer {
    match result.action {
        ElicitationAction::Accept => {
            let ticked = result
                .content
                .as_ref()
                .and_then(|c| c.get(FIELD))
                .and_then(Value::as_bool);
            if ticked == Some(true) {
                Answer::Confirmed
            } else {
                Answer::Unticked
            }
        }
        ElicitationAction::Decline => Answer::Declined,
        // Cancel, and any action a later protocol adds: not a yes.
        _ => Answer::Cancelled,
    }
}

impl Channel {
    /// The channel of one call. A 2026-07-28 retry's `requestState` is opened here: one this
    /// server did not issue for this caller, tool and arguments is refused as invalid params.
    pub(crate) fn open(
        context: &RequestContext<RoleServer>,
        input_responses: Option<InputResponses>,
        request_state: Option<&str>,
        binding: Vec<u8>,
        settings: &ConfirmSettings,
    ) -> std::result::Result<Self, ErrorData> {
        let modern = context
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        // Form mode: declared as `form`, or as `elicitation: {}` (which means form); a client
        // that declared only `url` mode is not sent a form.
        let can_elicit = context
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.form.is_some() || e.url.is_none());
        let returned = match (modern, request_state, &settings.codec) {
            (true, Some(state), Some(codec)) => {
                match codec.open_json_with::<Sealed>(state, &binding) {
                    Ok(sealed) => Some(Returned::Valid {
                        nonce: sealed.n,
                        shown: sealed.m,
                        response: input_responses.and_then(|mut r| r.remove(INPUT_KEY)),
                    }),
                    Err(RequestStateError::Expired) => Some(Returned::Expired),
                    Err(_) => {
                        return Err(ErrorData::invalid_params(
                            "invalid requestState: it was not issued by this server for this caller, tool and arguments (or the server's key changed); call the tool again without requestState to be asked again",
                            None,
                        ));
                    }
                }
            }
            _ => None,
        };
        Ok(Channel {
            peer: context.peer.clone(),
            cancel: context.ct.clone(),
            can_elicit,
            modern,
            binding,
            returned,
        })
    }

    /// The idempotency key of a confirmed 2026-07-28 retry: derived from its question, so that
    /// the same confirmed retry sent twice creates one link.
    pub(crate) fn confirmation_key(&self) -> Option<String> {
        match &self.returned {
            Some(Returned::Valid { nonce, .. }) => Some(format!("confirmation-{nonce}")),
            _ => None,
        }
    }

    /// Refuses at once (`confirmation_required`, recorded) when the user cannot be asked on this
    /// channel: checked before any upstream call, reads included.
    pub(crate) fn reachable(&self) -> Result<()> {
        if self.can_elicit {
            return Ok(());
        }
        record::confirmation("required");
        Err(self.unreachable())
    }

    fn unreachable(&self) -> Error {
        Error::confirmation_required(if self.modern {
            NO_CAPABILITY
        } else {
            NO_CHANNEL
        })
    }

    /// Asks the user `message` with a form of one checkbox titled `title`. `Ok(Confirmed)` only
    /// on `accept` with `confirm: true`; `declined` or `confirmation_required` otherwise, with
    /// nothing sent upstream. The outcome is recorded for the audit line.
    ///
    /// `once`: a 2026-07-28 answer confirms this once (a status change: replaying the confirmed
    /// state and answer would repeat it). A create needs no such mark: its confirmed retry is
    /// idempotent by the question's own key.
    pub(crate) async fn confirm(
        &self,
        settings: &ConfirmSettings,
        title: &str,
        message: String,
        once: bool,
    ) -> Result<Consent> {
        let outcome = self.ask(settings, title, message, once).await;
        record::confirmation(match &outcome {
            Ok(Consent::Confirmed) => "confirmed",
            Ok(Consent::Ask(_)) => "asked",
            Err(Error::ConfirmationRequired { .. }) => "required",
            Err(_) => "declined",
        });
        outcome
    }

    async fn ask(
        &self,
        settings: &ConfirmSettings,
        title: &str,
        message: String,
        once: bool,
    ) -> Result<Consent> {
        if !self.can_elicit {
            return Err(self.unreachable());
        }
        let digest = hex(&Sha256::digest(format!("{title}\0{message}").as_bytes()));
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: form(title)?,
        };
        if self.modern {
            return self.ask_in_answer(settings, params, digest, once);
        }
        let request = ServerRequest::from(ElicitRequest::new(params));
        let options = PeerRequestOptions::with_timeout(settings.timeout);
        let handle = self
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| not_asked(&e))?;
        let mut pending = Withdraw {
            peer: self.peer.clone(),
            id: Some(handle.id.clone()),
        };
        let answered = tokio::select! {
            answered = handle.await_response() => answered,
            () = self.cancel.cancelled() => {
                pending.now().await;
                return Err(Error::declined("the tool call was cancelled while the user was asked to confirm; nothing was sent"));
            }
        };
        pending.id = None;
        match answered {
            Ok(ClientResult::ElicitResult(result)) => verdict(interpret(&result)),
            Ok(_) => Err(Error::declined(
                "the client answered the confirmation with something else than a form; nothing was sent",
            )),
            Err(ServiceError::Timeout { timeout }) => Err(Error::declined(format!(
                "the user did not answer the confirmation within {} s; nothing was sent. Call again to ask again",
                timeout.as_secs()
            ))),
            Err(e) => Err(not_asked(&e)),
        }
    }

    /// 2026-07-28: the answer a retry brought, or the question to send back.
    fn ask_in_answer(
        &self,
        settings: &ConfirmSettings,
        params: ElicitRequestParams,
        digest: String,
        once: bool,
    ) -> Result<Consent> {
        match &self.returned {
            Some(Returned::Expired) => {
                return Err(Error::declined(format!(
                    "the confirmation expired (the user has {} s to answer); nothing was sent. Call again without requestState to ask again",
                    settings.timeout.as_secs()
                )));
            }
            Some(Returned::Valid {
                response: Some(raw),
                shown,
                nonce,
            }) if *shown == digest => {
                let answer = serde_json::from_value::<ElicitResult>(raw.clone())
                    .map(|r| interpret(&r))
                    .unwrap_or(Answer::Cancelled);
                // A single-use confirmation already acted on counts as no answer: ask again.
                if answer != Answer::Confirmed
                    || !once
                    || settings
                        .used
                        .first_use(nonce, Instant::now(), settings.timeout)
                {
                    return verdict(answer);
                }
            }
            // No answer in the retry (the spec's rule: ask again), or an answer about other
            // numbers than these: ask again.
            Some(Returned::Valid { .. }) | None => {}
        }
        let Some(codec) = &settings.codec else {
            return Err(Error::confirmation_required(
                "this server has no key to seal a confirmation for a 2026-07-28 client; ask the operator to set PAYLINK_REQUEST_STATE_KEY",
            ));
        };
        let nonce = hex(&random_key().map_err(Error::internal)?[..16]);
        let options = SealOptions::new()
            .associated_data(&self.binding)
            .ttl(settings.timeout);
        let state = codec
            .seal_json_with(
                &Sealed {
                    n: nonce,
                    m: digest,
                },
                &options,
            )
            .map_err(|e| Error::internal(format!("the confirmation could not be sealed: {e}")))?;
        let mut requests = InputRequests::new();
        requests.insert(
            INPUT_KEY.to_owned(),
            InputRequest::Elicitation(ElicitRequest::new(params)),
        );
        Ok(Consent::Ask(Box::new(InputRequiredResult::new(
            Some(requests),
            Some(state),
        ))))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the user said, as what the write may do.
fn verdict(answer: Answer) -> Result<Consent> {
    let why = match answer {
        Answer::Confirmed => return Ok(Consent::Confirmed),
        Answer::Unticked => "the user did not tick the confirmation",
        Answer::Declined => "the user declined",
        Answer::Cancelled => "the user cancelled the confirmation",
    };
    Err(Error::declined(format!(
        "{why}; nothing was sent. Do not retry unless the user asks for it"
    )))
}

/// The question could not be asked or answered (the client went away, or refused the request).
fn not_asked(e: &ServiceError) -> Error {
    Error::declined(format!(
        "the confirmation could not be completed ({e}); nothing was sent"
    ))
}

const NO_CHANNEL: &str = "this write needs the user's confirmation, and this client cannot be asked: it did not declare the MCP elicitation capability, or it is connected over stateless HTTP (--stateless), which cannot carry the question. Nothing was sent. Use a client with elicitation support over stdio or an HTTP session, or ask the operator (--confirm-writes never is meant for test keys only)";

const NO_CAPABILITY: &str = "this write needs the user's confirmation, and this request did not declare the elicitation capability (clientCapabilities), so the user cannot be asked. Nothing was sent. Use a client with elicitation support, or ask the operator (--confirm-writes never is meant for test keys only)";

/// The form: one required checkbox.
fn form(title: &str) -> Result<ElicitationSchema> {
    ElicitationSchema::builder()
        .required_bool_with(FIELD, |b| {
            b.title(title.to_owned())
                .description("Tick to go ahead; leave it unticked (or decline) to stop.")
        })
        .build()
        .map_err(|e| Error::internal(format!("the confirmation form could not be built: {e}")))
}

/// Withdraws an unanswered question: `notifications/cancelled` for it, now or (when the call's
/// future is dropped first) from a task, so that the client's dialog does not outlive the call.
struct Withdraw {
    peer: Peer<RoleServer>,
    id: Option<RequestId>,
}

impl Withdraw {
    async fn now(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = self
                .peer
                .notify_cancelled(CancelledNotificationParam::new(
                    Some(id),
                    Some("the tool call was cancelled".to_owned()),
                ))
                .await;
        }
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let (Some(id), Ok(runtime)) = (self.id.take(), tokio::runtime::Handle::try_current()) {
            let peer = self.peer.clone();
            runtime.spawn(async move {
                let _ = peer
                    .notify_cancelled(CancelledNotificationParam::new(
                        Some(id),
                        Some("the tool call was cancelled".to_owned()),
                    ))
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(action: ElicitationAction, content: Option<Value>) -> ElicitResult {
        let r = ElicitResult::new(action);
        match content {
            Some(c) => r.with_content(c),
            None => r,
        }
    }

    #[test]
    fn only_accept_with_confirm_true_confirms() {
        use ElicitationAction::*;
        assert_eq!(
            interpret(&result(Accept, Some(json!({"confirm": true})))),
            Answer::Confirmed
        );
        for content in [
            Some(json!({"confirm": false})),
            Some(json!({})),
            Some(json!({"confirm": "true"})),
            Some(json!({"confirm": 1})),
            Some(json!({"other": true})),
            None,
        ] {
            assert_eq!(
                interpret(&result(Accept, content.clone())),
                Answer::Unticked,
                "{content:?}"
            );
        }
        assert_eq!(
            interpret(&result(Decline, Some(json!({"confirm": true})))),
            Answer::Declined
        );
        assert_eq!(interpret(&result(Cancel, None)), Answer::Cancelled);
        for a in [Answer::Unticked, Answer::Declined, Answer::Cancelled] {
            let e = verdict(a).err().expect("refused");
            assert_eq!(e.kind().as_str(), "declined");
            assert!(!e.retry_safe());
            assert!(e.to_string().contains("nothing was sent"), "{e}");
        }
        assert!(matches!(verdict(Answer::Confirmed), Ok(Consent::Confirmed)));
    }

    #[test]
    fn the_policy_asks_for_live_money_by_default() {
        assert!(!ConfirmPolicy::Live.applies(false));
        assert!(ConfirmPolicy::Live.applies(true));
        assert!(ConfirmPolicy::Always.applies(false));
        assert!(!ConfirmPolicy::Never.applies(true));
        assert_eq!(ConfirmSettings::default().policy, ConfirmPolicy::Live);
        assert!(
            ConfirmSettings::new(
                ConfirmPolicy::Live,
                Duration::from_secs(1),
                Some(vec![7; 31])
            )
            .is_err()
        );
        assert!(
            ConfirmSettings::new(
                ConfirmPolicy::Live,
                Duration::from_secs(1),
                Some(vec![7; 32])
            )
            .is_ok()
        );
    }
}
