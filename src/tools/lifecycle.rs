//! Arguments of the lifecycle tools: `list_payment_links` and `update_payment_link_status`.

use chrono::{DateTime, NaiveDateTime, Utc};
use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Deserialize;

use super::args::decode;
use super::confirm::Consent;
use super::message;
use super::toolbox::{BoxFuture, Caller, Reply, Toolbox, live_guard};
use crate::backend::{BackendRules, LinksQuery, StatusUpdate, TargetStatus};
use crate::domain::{Cursor, Description, PageBytes, PageLimit, PaymentLinkId};
use crate::error::{Error, Result};
use crate::model::{LinkStatus, Page, PaymentLink};
use crate::observability::record;

/// `list_payment_links`.
pub(crate) fn list_payment_links<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<Page<PaymentLink>>> {
    Box::pin(async move {
        let query =
            decode::<ListPaymentLinksArgs>(args)?.validate(tools.rules(), tools.page_bytes())?;
        caller.backend.list_payment_links(query).await
    })
}

/// `update_payment_link_status`: a write, so behind the live guard, and confirmed by the user
/// when the operator's policy says so (the link is read first, to show it as it is).
pub(crate) fn update_payment_link_status<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<Reply<PaymentLink>>> {
    Box::pin(async move {
        let update = decode::<UpdatePaymentLinkStatusArgs>(args)?.validate(tools.rules())?;
        live_guard(caller.backend, caller.allow_live)?;
        let live = caller.backend.livemode();
        if tools.confirm.applies(live) {
            caller.channel.reachable()?;
            let link = caller
                .backend
                .get_payment_link(&update.payment_link_id)
                .await?;
            let question = message::status(&link, &update, live);
            let title = message::title(Some(&update));
            if let Consent::Ask(ask) = caller
                .channel
                .confirm(&tools.confirm, title, question, true)
                .await?
            {
                return Ok(Reply::Ask(ask));
            }
        } else {
            record::confirmation("not_required");
        }
        tools.store_answers().await?;
        caller
            .backend
            .update_payment_link_status(update)
            .await
            .map(Reply::Done)
    })
}

/// A status to filter on.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Active,
    Inactive,
    Completed,
}

/// List payment links, newest first, optionally filtered by status and creation time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPaymentLinksArgs {
    /// Links per page, 1 to 100 (default 10); a page of large entries may hold fewer.
    #[schemars(range(min = 1, max = PageLimit::MAX))]
    pub limit: Option<i64>,
    /// Where to continue: the previous answer's `next_cursor`, unchanged. Omit for the first page.
    pub cursor: Option<String>,
    /// Only links with this status: active, inactive or completed.
    pub status: Option<StatusFilter>,
    /// Only links created at or after this RFC 3339 time (no offset means UTC).
    pub created_from: Option<String>,
    /// Only links created at or before this RFC 3339 time (no offset means UTC).
    pub created_to: Option<String>,
}

fn parse_time(raw: &str, field: &str) -> Result<DateTime<Utc>> {
    let s = raw.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .map_err(|_| {
            Error::validation(
                field,
                "must be an RFC 3339 timestamp such as 2026-01-31T00:00:00Z",
            )
        })
}

impl ListPaymentLinksArgs {
    pub fn validate(self, _rules: &BackendRules, max_bytes: PageBytes) -> Result<LinksQuery> {
        let (limit, cursor) = Cursor::resolve(self.limit, self.cursor.as_deref())?;
        let created_from = self
            .created_from
            .as_deref()
            .map(|t| parse_time(t, "created_from"))
            .transpose()?;
        let created_to = self
            .created_to
            .as_deref()
            .map(|t| parse_time(t, "created_to"))
            .transpose()?;
        if let (Some(from), Some(to)) = (created_from, created_to)
            && from > to
        {
            return Err(Error::validation(
                "created_to",
                "must not be before created_from",
            ));
        }
        Ok(LinksQuery {
            limit,
            max_bytes,
            cursor,
            status: self.status.map(|s| match s {
                StatusFilter::Active => LinkStatus::Active,
                StatusFilter::Inactive => LinkStatus::Inactive,
                StatusFilter::Completed => LinkStatus::Completed,
            }),
            created_from,
            created_to,
        })
    }
}

/// The status to set.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusArg {
    /// Accept payments again.
    Active,
    /// Stop accepting payments (can be undone by setting active).
    Inactive,
}

/// Activate or deactivate a payment link. Deactivating stops new payments (payers see `message`);
/// activating undoes it. Setting the status a link already has changes nothing.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePaymentLinkStatusArgs {
    /// The link to change.
    pub payment_link_id: String,
    /// active or inactive.
    pub status: StatusArg,
    /// Shown to payers who open the link while it is inactive (1 to 500 characters). Only with
    /// status inactive.
    #[schemars(length(min = 1, max = Description::MAX_CHARS))]
    pub message: Option<String>,
}

impl UpdatePaymentLinkStatusArgs {
    pub fn validate(self, rules: &BackendRules) -> Result<StatusUpdate> {
        let payment_link_id =
            PaymentLinkId::parse(&self.payment_link_id, "payment_link_id", rules.id_format)?;
        let status = match self.status {
            StatusArg::Active => TargetStatus::Active,
            StatusArg::Inactive => TargetStatus::Inactive,
        };
        let message = match (self.message, status) {
            (None, _) => None,
            (Some(_), TargetStatus::Active) => {
                return Err(Error::validation(
                    "message",
                    "a message is only shown on an inactive link; omit it when activating",
                ));
            }
            (Some(m), TargetStatus::Inactive) => {
                Some(Description::parse(&m, "message")?.as_str().to_owned())
            }
        };
        Ok(StatusUpdate {
            payment_link_id,
            status,
            message,
        })
    }
}
