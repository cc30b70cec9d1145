//! `create_payment_link` end to end, in this order: the backend's refusals and the arguments,
//! the live guard, the operator's product list, the idempotency store (a replay or a twin's
//! outcome answers without asking again), the preview, the spend caps, the user's confirmation,
//! and only then the one upstream write, of exactly what the preview showed.
//!
//! Nothing is written upstream before every check has passed and the user has said yes (reads
//! for the preview aside); after the user answered, a backend that charges the prices of the
//! moment of the write reads them again first. A key claimed for a create that stopped before
//! its write is given back; an amount held against a budget is given back when nothing was
//! created, and stays when the link may exist. A link created at another total than its preview
//! is deactivated at once and counted at what it was made at. A repeat of a create whose
//! outcome was unknown, on an upstream that deduplicates creates, is sent again as it was,
//! neither asked nor counted again.

use rmcp::model::{InputRequiredResult, JsonObject};

use super::args::decode;
use super::confirm::Consent;
use super::create::{
    CreatePaymentLinkArgs, CreateRequest, IdempotencyKey, reference_for, refuse_unsupported,
};
use super::message;
use super::safety::Hold;
use super::toolbox::{BoxFuture, Caller, Reply, Toolbox, live_guard, to_value};
use crate::backend::{NewPaymentLink, Preview, StatusUpdate, TargetStatus, money_text};
use crate::domain::{Money, PaymentLinkId};
use crate::error::{Error, Result, UpstreamContext};
use crate::idempotency::{Claimed as Claim, Hold as KeyHold, IdempotencyKeys, Outcome, args_hash};
use crate::model::PaymentLink;
use crate::observability::record;

/// `create_payment_link`.
pub(crate) fn create_payment_link<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<Reply<PaymentLink>>> {
    Box::pin(async move {
        refuse_unsupported(args, tools.rules())?;
        let request = decode::<CreatePaymentLinkArgs>(args)?.validate(tools.rules())?;
        live_guard(caller.backend, caller.allow_live)?;
        // The operator's list: before any upstream call, reads included.
        tools.spend.check_products(&request.link)?;
        run(request, tools, caller).await
    })
}

/// Runs a validated create: through the idempotency store when there is a key (the caller's, or
/// a confirmed 2026-07-28 retry's own), then the preview, caps and confirmation, then the write.
pub(crate) async fn run(
    request: CreateRequest,
    tools: &Toolbox,
    caller: &Caller<'_>,
) -> Result<Reply<PaymentLink>> {
    let CreateRequest {
        mut link,
        idempotency_key,
    } = request;
    let key = match idempotency_key {
        Some(key) => Some(key),
        None => caller
            .channel
            .confirmation_key()
            .map(|k| IdempotencyKey::parse(&k, "idempotency_key"))
            .transpose()?,
    };
    let keys = tools.idempotency.as_ref();
    let mut claimed = Claimed(None);
    match &key {
        // Nothing to keep, but replicas whose shared store is down refuse every write alike.
        None => keys.ready().await?,
        Some(key) => {
            match claim(&link, key, caller, keys).await? {
                Claim::Done(outcome) => return replayed(outcome).map(Reply::Done),
                Claim::Run(hold) => claimed = Claimed(Some(hold)),
            }
            if let Some(found) = claimed.recover(caller).await? {
                return Ok(Reply::Done(found));
            }
        }
    }
    link.reference = match claimed.reference() {
        Some(reference) => reference,
        None => reference_for(caller.scope, None),
    };
    let prepared = match claimed.previous_sent() {
        // The earlier attempt was confirmed, counted and sent, and its outcome is unknown; this
        // upstream deduplicates creates, so sending it again is the same write, not a new one.
        Some(sent) if caller.backend.dedupes_creates() => resend(&link, sent, tools, caller).await,
        _ => prepare(&link, tools, caller).await,
    };
    match prepared {
        Err(e) => Err(claimed.fail(e).await),
        Ok(Prepared::Ask(question)) => {
            // Nothing was sent and nothing decided: the key is free for the retry.
            drop(claimed);
            Ok(Reply::Ask(question))
        }
        Ok(Prepared::Go(preview, mut hold)) => {
            // The user may have taken minutes to answer: the key must still be this call's for
            // as long as one attempt may take, or nothing is sent.
            if let Err(e) = claimed.before_send().await {
                hold.release().await;
                return Err(claimed.fail(e).await);
            }
            let mut ticket = claimed.take();
            if let Some(ticket) = &mut ticket {
                ticket.sending(preview.as_ref().map(Preview::digest));
            }
            hold.sending();
            let result = match &preview {
                Some(p) => caller.backend.create_previewed(link, p).await,
                None => caller.backend.create_payment_link(link).await,
            };
            let result = match (result, &preview) {
                (Ok(created), Some(p)) => match p.differs_from(created.total.as_ref()) {
                    Some(spent) => {
                        hold.commit_as(spent).await;
                        Err(withdraw(created, p, spent, caller).await)
                    }
                    None => {
                        hold.commit().await;
                        Ok(created)
                    }
                },
                (result, _) => {
                    hold.settle(&result).await;
                    result
                }
            };
            finish(ticket, result).await.map(Reply::Done)
        }
    }
}

/// What a create may do once its checks are done.
enum Prepared {
    /// Write: with the preview the user saw (if one was made) and the amount held.
    Go(Option<Preview>, Hold),
    /// Ask a 2026-07-28 client first.
    Ask(Box<InputRequiredResult>),
}

/// The preview (when a confirmation or a cap needs the amount), the caps, the confirmation.
async fn prepare(link: &NewPaymentLink, tools: &Toolbox, caller: &Caller<'_>) -> Result<Prepared> {
    let live = caller.backend.livemode();
    let ask = tools.confirm.applies(live);
    // A link whose currency is known now and has no cap needs no preview: no reads.
    let currency = link.currency.or_else(|| caller.backend.default_currency());
    if !ask && !tools.spend.needs_amount(currency) {
        record::cap("uncapped");
        record::confirmation("not_required");
        return Ok(Prepared::Go(None, Hold::none()));
    }
    if ask {
        caller.channel.reachable()?;
    }
    let preview = caller.backend.preview_payment_link(link).await?;
    record::preview_total(preview.total);
    let hold = tools.spend.hold(caller.scope, &preview).await?;
    if !ask {
        record::confirmation("not_required");
        return Ok(Prepared::Go(Some(preview), hold));
    }
    let question = message::create(link, &preview, live);
    let answer = caller
        .channel
        .confirm(&tools.confirm, message::title(None), question, false)
        .await;
    let checked = match answer {
        // The user may have taken minutes: a backend that charges the prices of the moment of
        // the write checks they are still the ones the user saw.
        Ok(Consent::Confirmed) => caller
            .backend
            .recheck_preview(link, &preview)
            .await
            .map(|()| Consent::Confirmed),
        other => other,
    };
    match checked {
        Ok(Consent::Confirmed) => Ok(Prepared::Go(Some(preview), hold)),
        Ok(Consent::Ask(question)) => {
            hold.release().await;
            Ok(Prepared::Ask(question))
        }
        Err(e) => {
            hold.release().await;
            Err(e)
        }
    }
}

/// The repeat of a create whose earlier attempt was confirmed, counted and sent as `sent`, with
/// an unknown outcome, on an upstream that deduplicates creates: the same write again, neither
/// asked nor counted a second time, provided the catalog still prices it the same. Otherwise
/// it is not sent: what the earlier attempt made cannot be told from what a new one would.
async fn resend(
    link: &NewPaymentLink,
    sent: [u8; 32],
    tools: &Toolbox,
    caller: &Caller<'_>,
) -> Result<Prepared> {
    let preview = caller.backend.preview_payment_link(link).await?;
    record::preview_total(preview.total);
    if preview.digest() != sent {
        return Err(Error::outcome_unknown(
            format!(
                "an earlier attempt with this idempotency_key was sent and may have created the link, and the catalog now prices it otherwise (a total of {}); it is not sent again. Look for the link with list_payment_links; use a new idempotency_key for a new link",
                money_text(preview.total)
            ),
            UpstreamContext::default(),
        ));
    }
    record::cap(if tools.spend.needs_amount(Some(preview.currency)) {
        "earlier"
    } else {
        "uncapped"
    });
    record::confirmation(if tools.confirm.applies(caller.backend.livemode()) {
        "earlier"
    } else {
        "not_required"
    });
    Ok(Prepared::Go(Some(preview), Hold::none()))
}

/// Payers see this on a link withdrawn because its total was not the confirmed one.
const WITHDRAWN: &str = "This link was withdrawn: its total was not the one confirmed.";

/// The upstream made the link with another total than the preview showed (a price changed
/// between the preview's reads and the write): it is deactivated before anyone can pay it, and
/// the caller is told both totals and the link's id. Never retry-safe: the link exists.
async fn withdraw(
    created: PaymentLink,
    preview: &Preview,
    spent: Money,
    caller: &Caller<'_>,
) -> Error {
    let what = format!(
        "{} created link {} with a total of {}, not the {} that was previewed (and checked against the caps, and confirmed if the user was asked): a price changed while it was being created",
        caller.backend.kind().as_str(),
        created.id,
        money_text(spent),
        money_text(preview.total)
    );
    tracing::error!(link = %created.id, previewed = %money_text(preview.total), created = %money_text(spent), "a link was created with another total than its preview; deactivating it");
    let update = StatusUpdate {
        payment_link_id: PaymentLinkId::from_upstream(created.id.clone()),
        status: TargetStatus::Inactive,
        message: Some(WITHDRAWN.to_owned()),
    };
    let outcome = match caller.backend.update_payment_link_status(update).await {
        Ok(_) => format!(
            "{what}. The link was deactivated, so nobody can pay it; {} counts against the daily budget. Call again to make the link at the current prices (the new total is shown again)",
            money_text(spent)
        ),
        Err(e) => format!(
            "{what}. Deactivating it failed ({e}): the link is ACTIVE and can take payments. Deactivate it with update_payment_link_status now"
        ),
    };
    Error::upstream_failure(outcome, UpstreamContext::default())
}

/// A key this create holds in the idempotency keys (this process's or the shared store's).
struct Claimed(Option<Box<dyn KeyHold>>);

async fn claim(
    link: &NewPaymentLink,
    key: &IdempotencyKey,
    caller: &Caller<'_>,
    keys: &dyn IdempotencyKeys,
) -> Result<Claim> {
    // The validated request is canonical (trimmed, upper-cased, parsed), so equal intents hash
    // equal whatever their JSON spelling.
    let args = args_hash(&format!("{link:?}"));
    // Links kept in this process (the in-memory sandbox) die with their data: so do their keys'
    // entries, or a replay could answer a link that no longer exists.
    let local_scope = caller
        .backend
        .local_data()
        .map(|data| keys.local_scope(data, caller.scope));
    let scope = local_scope.as_deref().unwrap_or(caller.scope);
    keys.claim(
        scope,
        key.as_str(),
        args,
        reference_for(caller.scope, Some(key)),
    )
    .await
}

impl Claimed {
    /// An earlier attempt's outcome was unknown: look for its link before anything else. Found,
    /// it is the answer; still unknown, it stays so (never a second create).
    async fn recover(&mut self, caller: &Caller<'_>) -> Result<Option<PaymentLink>> {
        let Some(hold) = &self.0 else {
            return Ok(None);
        };
        if !hold.previous_unknown() {
            return Ok(None);
        }
        let reference = hold.reference().to_owned();
        match caller.backend.recover_create(&reference).await {
            Ok(Some(found)) => {
                let value = to_value(&found)?;
                if let Some(hold) = self.take() {
                    hold.complete(Outcome::Created(value)).await;
                }
                Ok(Some(found))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                if let Some(hold) = self.take() {
                    hold.complete_unknown().await;
                }
                Err(e)
            }
        }
    }

    /// What an earlier attempt with an unknown outcome was sent as, once confirmed and counted.
    fn previous_sent(&self) -> Option<[u8; 32]> {
        self.0.as_ref().and_then(|hold| hold.previous_sent())
    }

    fn reference(&self) -> Option<String> {
        self.0.as_ref().map(|hold| hold.reference().to_owned())
    }

    /// Whether the key is still this call's for one more attempt (always, without a key).
    async fn before_send(&mut self) -> Result<()> {
        match &mut self.0 {
            Some(hold) => hold.before_send().await,
            None => Ok(()),
        }
    }

    /// The hold, for the write: from here on, a drop means the outcome is unknown.
    fn take(&mut self) -> Option<Box<dyn KeyHold>> {
        self.0.take()
    }

    /// Refused before the write: the error is the outcome (waiting twins get it too), except
    /// after an earlier unknown outcome, which stays unknown.
    async fn fail(mut self, e: Error) -> Error {
        if let Some(hold) = self.take() {
            if hold.previous_unknown() {
                hold.complete_unknown().await;
            } else {
                hold.complete(Outcome::Failed(e.clone())).await;
            }
        }
        e
    }
}

impl Drop for Claimed {
    /// Dropped before the write (a question goes back first, or the call was cancelled while
    /// the user was asked or the preview read): nothing was sent, so the key is given back —
    /// except after an earlier unknown outcome, which dropping the hold keeps unknown.
    fn drop(&mut self) {
        if let Some(hold) = self.take()
            && !hold.previous_unknown()
        {
            hold.release();
        }
    }
}

/// Records how the write ended in the hold, if any.
async fn finish(
    hold: Option<Box<dyn KeyHold>>,
    result: Result<PaymentLink>,
) -> Result<PaymentLink> {
    let Some(hold) = hold else {
        return result;
    };
    match &result {
        Ok(created) => hold.complete(Outcome::Created(to_value(created)?)).await,
        // The link may exist (an unknown outcome, or a timeout the upstream deduplicates): a
        // repeat looks for it, or sends the same write again, rather than asking anew.
        Err(e) if e.may_have_written() => hold.complete_unknown().await,
        Err(e) => hold.complete(Outcome::Failed(e.clone())).await,
    }
    result
}

/// Answers from a stored (or a concurrent twin's) outcome, without an upstream call.
fn replayed(outcome: Outcome) -> Result<PaymentLink> {
    crate::observability::metrics::idempotent_replay();
    match outcome {
        // Stored by `finish` from a `PaymentLink`: it reads back as the same link.
        Outcome::Created(value) => serde_json::from_value(value)
            .map_err(|e| Error::internal(format!("a stored result could not be read back: {e}"))),
        Outcome::Failed(e) => Err(e),
        Outcome::Unknown { .. } => Err(Error::outcome_unknown(
            "a concurrent call with this idempotency_key ended with an unknown outcome; call again with the same key to look for the link",
            UpstreamContext::default(),
        )),
    }
}
