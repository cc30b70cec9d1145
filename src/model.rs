//! The normalized objects every backend returns and every tool outputs.
//!
//! Upstreams disagree on shapes (Stream sends decimal strings and nested products, Stripe sends
//! integer amounts and prices); a model sees one vocabulary whatever the backend. These types are
//! the tools' `outputSchema`, so their doc comments are written for a model.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{MoneyView, RESERVED_METADATA_PREFIX};

/// Which payments API a result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The embedded sandbox: no network, no real money.
    Sandbox,
    /// Stream (streampay.sa).
    Stream,
    /// Stripe.
    Stripe,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Sandbox => "sandbox",
            BackendKind::Stream => "stream",
            BackendKind::Stripe => "stripe",
        }
    }
}

/// Whether a payment link accepts payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// Payers can pay.
    Active,
    /// Deactivated: payers see a message instead of a checkout.
    Inactive,
    /// Reached its payment limit or was completed; no further payments.
    Completed,
}

/// What kind of charge a product makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// Charged once; paying makes an invoice.
    OneTime,
    /// Charged every `interval`; paying starts a subscription.
    Recurring,
    /// Billed by usage (Stream only); cannot be sold through a payment link by this server.
    Metered,
}

/// A payment link: a hosted checkout page that payers open at `url`.
///
/// Deserializable so that a stored result (an idempotent replay) reads back as the same link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentLink {
    /// The link's id; pass it as `payment_link_id` to other tools.
    pub id: String,
    /// The checkout page to share with payers.
    pub url: Option<String>,
    /// Name shown to payers.
    pub name: Option<String>,
    /// Longer description shown to payers.
    pub description: Option<String>,
    /// active, inactive or completed.
    pub status: Option<LinkStatus>,
    /// ISO 4217 code of the link's currency.
    pub currency: Option<String>,
    /// What a payer pays, after discounts. Null when it cannot be known exactly: on Stripe a
    /// link has no amount of its own, so list_payment_links leaves it (and item_count) null;
    /// get_payment_link sums it from the line items.
    pub total: Option<MoneyView>,
    /// The total before discounts.
    pub original_total: Option<MoneyView>,
    /// How much has been collected through this link so far.
    pub amount_collected: Option<MoneyView>,
    /// Number of line items (use list_line_items to see them).
    pub item_count: Option<u32>,
    /// How many payments the link accepts before it completes; null means unlimited.
    pub max_number_of_payments: Option<u32>,
    /// RFC 3339 UTC time after which the link no longer accepts payments; null means no expiry.
    pub valid_until: Option<String>,
    /// Where payers go after paying successfully.
    pub success_redirect_url: Option<String>,
    /// Where payers go after a failed payment.
    pub failure_redirect_url: Option<String>,
    /// Billing interval when the link sells recurring products (e.g. "month").
    pub recurring_interval: Option<String>,
    /// Message payers see while the link is inactive.
    pub inactive_message: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: Option<String>,
    /// The caller's metadata (keys reserved by paylink-mcp are not shown).
    pub metadata: BTreeMap<String, String>,
    /// Which backend holds this link.
    pub backend: BackendKind,
    /// True when the link takes real money; false for sandbox, staging and test-mode objects.
    pub livemode: bool,
}

/// One product line on a payment link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LineItem {
    /// The line item's id; pass it as `starting_after`/`ending_before` to page.
    pub id: String,
    /// The product (Stream, sandbox) or price (Stripe) sold.
    pub product_id: Option<String>,
    /// The product's name.
    pub product_name: Option<String>,
    /// Units sold on this line. Null when the payments API's answer had no readable quantity
    /// (missing, negative, fractional, not a number, or above 4294967295): it is never guessed,
    /// and a unit_amount that would have to be derived from it is null too.
    pub quantity: Option<u32>,
    /// Price of one unit before discounts.
    pub unit_amount: Option<MoneyView>,
    /// What this line costs: unit price times quantity, after item-level discounts.
    pub total: Option<MoneyView>,
    /// one_time, recurring or metered.
    pub kind: Option<ProductKind>,
    /// Billing interval of a recurring product (e.g. "month", "year").
    pub interval: Option<String>,
}

/// A product of the merchant's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Product {
    /// Pass this as `items[].product_id` to create_payment_link.
    pub id: String,
    /// The product's name.
    pub name: Option<String>,
    /// The product's description.
    pub description: Option<String>,
    /// one_time, recurring or metered. A payment link cannot mix one_time and recurring products
    /// on Stream and the sandbox.
    pub kind: Option<ProductKind>,
    /// Billing interval of a recurring product (e.g. "month").
    pub interval: Option<String>,
    /// The product's price, one entry per currency it can be sold in. A link's currency must be
    /// one of these for every product on it.
    pub prices: Vec<MoneyView>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub(crate) struct Page<T> {
    /// The entries of this page, in order: at most `limit`, fewer when they are large (a page
    /// is capped in bytes; `has_more` then says that more follow).
    pub data: Vec<T>,
    /// True when more entries follow this page.
    pub has_more: bool,
    /// Pass this value to get the next page (as `cursor`, or as `starting_after` for line items);
    /// null when this is the last page.
    pub next_cursor: Option<String>,
}

impl Page<LineItem> {
    /// A page of line items paged by item id. `next_cursor` is always the forward continuation
    /// (`starting_after`); walking backwards, entries always follow the page (at least the
    /// `ending_before` item itself), so it is set then too.
    pub(crate) fn of_items(data: Vec<LineItem>, has_more: bool, backwards: bool) -> Self {
        let next_cursor = if has_more || backwards {
            data.last().map(|i| i.id.clone())
        } else {
            None
        };
        Page {
            data,
            has_more,
            next_cursor,
        }
    }
}

/// The metadata key under which every create carries our own reference, so that a create whose
/// answer was lost can be found again (Stream) and a replay carries equal parameters (Stripe).
pub(crate) const REQUEST_REF_KEY: &str = "paylink_request_id";

/// Turns upstream metadata values into strings and hides the keys this server reserves.
pub(crate) fn visible_metadata<'a, I>(entries: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
{
    entries
        .into_iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_METADATA_PREFIX))
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}
