//! The MCP tools: their names, schemas, annotations and the thin code between the protocol and a
//! backend — decode the arguments, validate them into domain types, call one backend method,
//! shape the answer. Business rules live below, in `domain` and `backend`.
//!
//! The tool list is built once per process ([`ToolSet::new`]): schemas are generated, pruned for
//! the backend (a Stripe server does not advertise fields Stripe cannot honour) and filtered by
//! the operator's `--read-only`/`--tools` choice. A tool left out here does not exist for callers.

pub mod args;
pub mod create;
pub mod lifecycle;
pub mod limits;
pub mod read;

pub use limits::ToolLimits;

use std::sync::Arc;

use rmcp::handler::server::tool::{schema_for_input, schema_for_output};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::backend::{Backend, BackendRules};
use crate::domain::PageBytes;
use crate::error::{Error, Result};
use crate::idempotency::{IdempotencyStore, StoreLimits};
use crate::model::{LineItem, Page, PaymentLink, Product};

/// Names of every tool this server knows, in listing order.
pub const CREATE_PAYMENT_LINK: &str = "create_payment_link";
pub const GET_PAYMENT_LINK: &str = "get_payment_link";
pub const LIST_LINE_ITEMS: &str = "list_line_items";
pub const LIST_PRODUCTS: &str = "list_products";
pub const LIST_PAYMENT_LINKS: &str = "list_payment_links";
pub const UPDATE_PAYMENT_LINK_STATUS: &str = "update_payment_link_status";
pub const ALL_TOOLS: &[&str] = &[
    CREATE_PAYMENT_LINK,
    GET_PAYMENT_LINK,
    LIST_LINE_ITEMS,
    LIST_PRODUCTS,
    LIST_PAYMENT_LINKS,
    UPDATE_PAYMENT_LINK_STATUS,
];

/// Which tools the operator enabled.
#[derive(Debug, Clone, Default)]
pub struct ToolFilter {
    /// Only tools that do not write.
    pub read_only: bool,
    /// If set, only these tools (names checked at start-up).
    pub allow: Option<Vec<String>>,
}

const CREATE_DESCRIPTION: &str = "Create a payment link: a hosted checkout page selling one or more products, whose `url` you share with the payer. \
Find product ids with list_products first. Returns the new link (id, url, status, total as exact Money). \
This call is NOT idempotent by itself: calling it twice creates two links. To retry safely after a timeout or an \
`outcome_unknown` error, pass an `idempotency_key` and reuse the SAME key with the same arguments when you retry the same \
intent; a new link needs a new key. Errors come back as {\"error\": {kind, message, field, retry_safe}}: fix `field` on \
`validation`, never blindly retry when retry_safe is false.";

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
Returns the link as it now is.";

struct ToolSpec {
    tool: Tool,
    read_only: bool,
}

/// The enabled tools, built once.
pub struct ToolSet {
    rules: BackendRules,
    idempotency: Arc<IdempotencyStore>,
    page_bytes: PageBytes,
    specs: Vec<ToolSpec>,
    /// `tools/list` answer, shared by every session.
    listed: Arc<Vec<Tool>>,
}

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

impl ToolSet {
    /// Builds the tool list for a backend, applying the operator's filter. Fails on an unknown
    /// tool name in the allow-list, so a typo is caught at start-up rather than hiding a tool.
    pub fn new(rules: BackendRules, filter: &ToolFilter) -> Result<Self, String> {
        // `--tools "a, b"` and a trailing comma are spelling, not intent.
        let allow: Option<Vec<String>> = filter.allow.as_ref().map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect()
        });
        if let Some(allow) = &allow {
            for name in allow {
                if !ALL_TOOLS.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown tool `{name}` in --tools; known tools: {}",
                        ALL_TOOLS.join(", ")
                    ));
                }
            }
        }
        let input = |r: Result<Arc<JsonObject>, String>| r.map_err(|e| format!("tool schema: {e}"));
        let create_schema = input(schema_for_input::<create::CreatePaymentLinkArgs>())?;
        let all = vec![
            ToolSpec {
                tool: Tool::new(
                    CREATE_PAYMENT_LINK,
                    CREATE_DESCRIPTION,
                    Arc::new(prune_create_schema(&create_schema, &rules)),
                )
                .with_title("Create payment link")
                .with_raw_output_schema(schema_for_output::<PaymentLink>())
                .with_annotations(
                    ToolAnnotations::with_title("Create payment link")
                        .read_only(false)
                        .destructive(false)
                        .idempotent(false)
                        .open_world(true),
                ),
                read_only: false,
            },
            ToolSpec {
                tool: Tool::new(
                    GET_PAYMENT_LINK,
                    GET_DESCRIPTION,
                    input(schema_for_input::<read::GetPaymentLinkArgs>())?,
                )
                .with_title("Get payment link")
                .with_raw_output_schema(schema_for_output::<PaymentLink>())
                .with_annotations(read_annotations("Get payment link")),
                read_only: true,
            },
            ToolSpec {
                tool: Tool::new(
                    LIST_LINE_ITEMS,
                    LINE_ITEMS_DESCRIPTION,
                    input(schema_for_input::<read::ListLineItemsArgs>())?,
                )
                .with_title("List line items")
                .with_raw_output_schema(schema_for_output::<Page<LineItem>>())
                .with_annotations(read_annotations("List line items")),
                read_only: true,
            },
            ToolSpec {
                tool: Tool::new(
                    LIST_PRODUCTS,
                    PRODUCTS_DESCRIPTION,
                    input(schema_for_input::<read::ListProductsArgs>())?,
                )
                .with_title("List products")
                .with_raw_output_schema(schema_for_output::<Page<Product>>())
                .with_annotations(read_annotations("List products")),
                read_only: true,
            },
            ToolSpec {
                tool: Tool::new(
                    LIST_PAYMENT_LINKS,
                    LIST_LINKS_DESCRIPTION,
                    input(schema_for_input::<lifecycle::ListPaymentLinksArgs>())?,
                )
                .with_title("List payment links")
                .with_raw_output_schema(schema_for_output::<Page<PaymentLink>>())
                .with_annotations(read_annotations("List payment links")),
                read_only: true,
            },
            ToolSpec {
                tool: Tool::new(
                    UPDATE_PAYMENT_LINK_STATUS,
                    UPDATE_STATUS_DESCRIPTION,
                    input(schema_for_input::<lifecycle::UpdatePaymentLinkStatusArgs>())?,
                )
                .with_title("Activate or deactivate a payment link")
                .with_raw_output_schema(schema_for_output::<PaymentLink>())
                .with_annotations(
                    ToolAnnotations::with_title("Activate or deactivate a payment link")
                        .read_only(false)
                        .destructive(false)
                        .idempotent(true)
                        .open_world(true),
                ),
                read_only: false,
            },
        ];
        let specs: Vec<ToolSpec> = all
            .into_iter()
            .filter(|s| !filter.read_only || s.read_only)
            .filter(|s| {
                allow
                    .as_ref()
                    .is_none_or(|a| a.is_empty() || a.iter().any(|n| n == s.tool.name.as_ref()))
            })
            .collect();
        if specs.is_empty() {
            return Err(
                "no tool is left enabled: --read-only hides every tool named in --tools".into(),
            );
        }
        let listed = Arc::new(specs.iter().map(|s| s.tool.clone()).collect());
        Ok(ToolSet {
            rules,
            idempotency: IdempotencyStore::new(StoreLimits::default()),
            page_bytes: PageBytes::default(),
            specs,
            listed,
        })
    }

    /// The same tools with the operator's bounds (the defaults until then).
    pub fn with_limits(mut self, limits: ToolLimits) -> Self {
        self.idempotency = IdempotencyStore::new(limits.idempotency);
        self.page_bytes = limits.page_bytes;
        self
    }

    /// The `tools/list` answer.
    pub fn listed(&self) -> Arc<Vec<Tool>> {
        self.listed.clone()
    }

    /// The definition of an enabled tool.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.specs.iter().map(|s| &s.tool).find(|t| t.name == name)
    }

    /// Whether an enabled tool writes upstream (is not read-only): the calls the audit log
    /// records.
    pub fn writes(&self, name: &str) -> bool {
        self.specs
            .iter()
            .any(|s| s.tool.name == name && !s.read_only)
    }

    pub fn rules(&self) -> &BackendRules {
        &self.rules
    }

    /// Runs an enabled tool. `None` means the tool does not exist (or is not enabled): the caller
    /// answers with the JSON-RPC error for an unknown tool.
    pub async fn call(
        &self,
        name: &str,
        args: Option<&Map<String, Value>>,
        caller: &Caller<'_>,
    ) -> Option<CallToolResult> {
        let spec = self.specs.iter().find(|s| s.tool.name == name)?;
        let result = self.run(spec.tool.name.as_ref(), args, caller).await?;
        Some(match result {
            Ok(value) => CallToolResult::structured(value),
            Err(e) => error_result(&e),
        })
    }

    async fn run(
        &self,
        name: &str,
        args: Option<&Map<String, Value>>,
        caller: &Caller<'_>,
    ) -> Option<Result<Value>> {
        let rules = &self.rules;
        let backend = caller.backend;
        Some(match name {
            CREATE_PAYMENT_LINK => {
                async {
                    create::refuse_unsupported(args, rules)?;
                    let request =
                        args::decode::<create::CreatePaymentLinkArgs>(args)?.validate(rules)?;
                    live_guard(backend, caller.allow_live)?;
                    create::run(request, caller, &self.idempotency).await
                }
                .await
            }
            GET_PAYMENT_LINK => {
                async {
                    let id = args::decode::<read::GetPaymentLinkArgs>(args)?.validate(rules)?;
                    to_value(backend.get_payment_link(&id).await?)
                }
                .await
            }
            LIST_LINE_ITEMS => {
                async {
                    let q = args::decode::<read::ListLineItemsArgs>(args)?
                        .validate(rules, self.page_bytes)?;
                    to_value(backend.list_line_items(q).await?)
                }
                .await
            }
            LIST_PRODUCTS => {
                async {
                    let q = args::decode::<read::ListProductsArgs>(args)?
                        .validate(rules, self.page_bytes)?;
                    to_value(backend.list_products(q).await?)
                }
                .await
            }
            LIST_PAYMENT_LINKS => {
                async {
                    let q = args::decode::<lifecycle::ListPaymentLinksArgs>(args)?
                        .validate(rules, self.page_bytes)?;
                    to_value(backend.list_payment_links(q).await?)
                }
                .await
            }
            UPDATE_PAYMENT_LINK_STATUS => {
                async {
                    let u = args::decode::<lifecycle::UpdatePaymentLinkStatusArgs>(args)?
                        .validate(rules)?;
                    live_guard(backend, caller.allow_live)?;
                    to_value(backend.update_payment_link_status(u).await?)
                }
                .await
            }
            _ => return None,
        })
    }
}

/// Who is calling: their backend, their scope (a hash naming the tenant, for idempotency keys),
/// and whether live writes are allowed.
pub struct Caller<'a> {
    pub backend: &'a dyn Backend,
    pub scope: &'a str,
    pub allow_live: bool,
}

/// Writes against live money need the operator's `--allow-live`.
fn live_guard(backend: &dyn Backend, allow_live: bool) -> Result<()> {
    if backend.livemode() && !allow_live {
        return Err(Error::LiveGuard {
            message: "this server talks to live money and was not started with --allow-live, so writes are refused. Reads work; ask the operator to restart with --allow-live, or use a test/staging key".into(),
        });
    }
    Ok(())
}

fn read_annotations(title: &str) -> ToolAnnotations {
    ToolAnnotations::with_title(title)
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(true)
}

pub(crate) fn to_value<T: Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v)
        .map_err(|e| Error::internal(format!("could not encode the result: {e}")))
}

/// The `isError` result for an error: its text is exactly the JSON envelope.
pub fn error_result(e: &Error) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(e.envelope())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BackendKind;

    fn names(filter: ToolFilter) -> Result<Vec<String>, String> {
        ToolSet::new(BackendRules::for_kind(BackendKind::Sandbox), &filter)
            .map(|t| t.listed().iter().map(|t| t.name.to_string()).collect())
    }

    #[test]
    fn allow_list_names_are_trimmed_and_empty_entries_ignored() {
        let got = names(ToolFilter {
            read_only: false,
            allow: Some(vec![
                " get_payment_link".into(),
                "".into(),
                "list_products ".into(),
            ]),
        })
        .unwrap();
        assert_eq!(got, ["get_payment_link", "list_products"]);
        assert_eq!(
            names(ToolFilter {
                read_only: false,
                allow: Some(vec![String::new()])
            })
            .unwrap()
            .len(),
            ALL_TOOLS.len()
        );
    }

    #[test]
    fn a_filter_that_leaves_no_tool_is_refused() {
        let e = names(ToolFilter {
            read_only: true,
            allow: Some(vec!["create_payment_link".into()]),
        })
        .unwrap_err();
        assert!(e.contains("no tool"));
    }

    #[test]
    fn stripe_schemas_do_not_advertise_what_stripe_cannot_honour() {
        let tools = ToolSet::new(
            BackendRules::for_kind(BackendKind::Stripe),
            &ToolFilter::default(),
        )
        .unwrap();
        let schema =
            serde_json::to_value(&tools.get(CREATE_PAYMENT_LINK).unwrap().input_schema).unwrap();
        for field in [
            "valid_until",
            "failure_redirect_url",
            "coupons",
            "organization_consumer_id",
        ] {
            assert!(schema["properties"].get(field).is_none(), "{field}");
        }
        assert!(
            schema["$defs"]["ItemArgs"]["properties"]
                .get("coupons")
                .is_none()
        );
        assert!(schema["properties"].get("success_redirect_url").is_some());
    }
}
