//! What a model reads about each tool: its name, title, description, annotations and schemas.
//!
//! The descriptions are written for a model that has never seen this server: what the tool is
//! for, which tool to call first, and what an error means for a retry. Schemas are generated from
//! the argument and output types (their doc comments become field descriptions) and pruned for
//! the backend: a Stripe server does not advertise fields Stripe cannot honour.

use std::sync::Arc;

use rmcp::handler::server::tool::{schema_for_input, schema_for_output};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde_json::Value;

use super::id::ToolId;
use super::{create, lifecycle, read, schema};
use crate::backend::BackendRules;
use crate::error::StartupError;
use crate::model::{LineItem, Page, PaymentLink, Product};
use crate::ui;

const CREATE_DESCRIPTION: &str = "Create a payment link: a hosted checkout page selling one or more products, whose `url` you share with the payer. \
Find product ids with list_products first. Returns the new link, its total as exact Money. \
NOT idempotent by itself: to retry safely after a timeout or `outcome_unknown`, pass an `idempotency_key` and reuse it with \
the same arguments; a new link needs a new key. The user may be asked to confirm the exact lines and total first. \
Errors are {\"error\": {kind, message, field, retry_safe}}: fix `field` on `validation`; `declined`: the user said no, do not \
retry unless they ask; `confirmation_required`: this client cannot show the confirmation; `cap_exceeded`, `product_not_allowed`: \
the operator's limits, do not work around them. Never blindly retry when retry_safe is false.";

const GET_DESCRIPTION: &str = "Get one payment link by id: status (active, inactive, completed), url, total and \
collected amounts as exact Money, limits (max payments, valid_until) and metadata. Always read fresh from the payments API.";

const LINE_ITEMS_DESCRIPTION: &str = "List the line items of a payment link (product, quantity, unit and line amounts), \
a page at a time: `limit` 1-100 (default 10). Forwards: while `has_more` is true, call again with `starting_after` set \
to the answer's `next_cursor`. Backwards: pass the first item's id (`data[0].id`) as `ending_before`; then `has_more` \
says whether earlier items exist.";

const PRODUCTS_DESCRIPTION: &str = "List the merchant's products, a page at a time (`limit` 1-100, default 10; pass \
`next_cursor` back as `cursor` for the next page). Each product has an `id` to use as `items[].product_id` in \
create_payment_link, its kind (one_time or recurring, with interval) and its prices, one per currency.";

const LIST_LINKS_DESCRIPTION: &str = "List payment links, newest first, a page at a time (`limit` 1-100, default 10; \
pass `next_cursor` back as `cursor`). Filter by `status` (active, inactive, completed) and by creation time \
(`created_from`, `created_to`, RFC 3339). A filter the backend cannot apply is refused (unsupported_by_backend), never ignored.";

const UPDATE_STATUS_DESCRIPTION: &str = "Activate or deactivate a payment link. `status: inactive` stops new payments \
(payers see the optional `message`); `status: active` reopens it. Repeating the same call changes nothing more. \
Returns the link as it now is. The user may be asked to confirm first (`declined`, `confirmation_required`: as for create_payment_link).";

/// The definition of `id` as `tools/list` shows it on a server for `rules`' backend.
pub(crate) fn definition(id: ToolId, rules: &BackendRules) -> Result<Tool, StartupError> {
    let (title, description, input, output, annotations) = match id {
        ToolId::CreatePaymentLink => (
            "Create payment link",
            CREATE_DESCRIPTION,
            prune_create_schema(&input::<create::CreatePaymentLinkArgs>()?, rules),
            schema_for_output::<PaymentLink>(),
            // Not idempotent by itself: annotations are static, the description explains
            // `idempotency_key`.
            ToolAnnotations::with_title("Create payment link")
                .read_only(false)
                .destructive(false)
                .idempotent(false)
                .open_world(true),
        ),
        ToolId::GetPaymentLink => (
            "Get payment link",
            GET_DESCRIPTION,
            input::<read::GetPaymentLinkArgs>()?,
            schema_for_output::<PaymentLink>(),
            read_annotations("Get payment link"),
        ),
        ToolId::ListLineItems => (
            "List line items",
            LINE_ITEMS_DESCRIPTION,
            input::<read::ListLineItemsArgs>()?,
            schema_for_output::<Page<LineItem>>(),
            read_annotations("List line items"),
        ),
        ToolId::ListProducts => (
            "List products",
            PRODUCTS_DESCRIPTION,
            input::<read::ListProductsArgs>()?,
            schema_for_output::<Page<Product>>(),
            read_annotations("List products"),
        ),
        ToolId::ListPaymentLinks => (
            "List payment links",
            LIST_LINKS_DESCRIPTION,
            input::<lifecycle::ListPaymentLinksArgs>()?,
            schema_for_output::<Page<PaymentLink>>(),
            read_annotations("List payment links"),
        ),
        ToolId::UpdatePaymentLinkStatus => (
            "Activate or deactivate a payment link",
            UPDATE_STATUS_DESCRIPTION,
            input::<lifecycle::UpdatePaymentLinkStatusArgs>()?,
            schema_for_output::<PaymentLink>(),
            // Setting a status twice leaves the same state.
            ToolAnnotations::with_title("Activate or deactivate a payment link")
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(true),
        ),
    };
    let tool = Tool::new(
        id.name(),
        description,
        Arc::new(schema::portable_input(&input)),
    )
    .with_title(title)
    .with_raw_output_schema(Arc::new(schema::portable_output(&output)))
    .with_annotations(annotations);
    // The tools whose result is one payment link render as the link card in MCP Apps hosts;
    // others ignore `_meta`, and the result itself is the same either way.
    Ok(match id {
        ToolId::CreatePaymentLink | ToolId::GetPaymentLink | ToolId::UpdatePaymentLinkStatus => {
            tool.with_meta(ui::tool_meta())
        }
        ToolId::ListLineItems | ToolId::ListProducts | ToolId::ListPaymentLinks => tool,
    })
}

fn input<T: JsonSchema + 'static>() -> Result<JsonObject, StartupError> {
    schema_for_input::<T>()
        .map(|schema| schema.as_ref().clone())
        .map_err(StartupError::Schema)
}

fn read_annotations(title: &str) -> ToolAnnotations {
    ToolAnnotations::with_title(title)
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(true)
}

/// Removes what the backend cannot honour from `create_payment_link`'s input schema; such a
/// field, if sent anyway, is refused by name (see `create::refuse_unsupported`).
fn prune_create_schema(schema: &JsonObject, rules: &BackendRules) -> JsonObject {
    let mut schema = schema.clone();
    for field in rules.unsupported_create_fields {
        if let Some(nested) = field.strip_prefix("items[].") {
            // The item schema sits in $defs; prune it there.
            if let Some(Value::Object(defs)) = schema.get_mut("$defs")
                && let Some(Value::Object(item)) = defs.get_mut("ItemArgs")
                && let Some(Value::Object(props)) = item.get_mut("properties")
            {
                props.remove(nested);
            }
        } else if let Some(Value::Object(props)) = schema.get_mut("properties") {
            props.remove(*field);
        }
    }
    schema
}
