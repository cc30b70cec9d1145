//! Arguments of the read tools: `get_payment_link`, `list_line_items`, `list_products`.

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Deserialize;

use super::args::decode;
use super::toolbox::{BoxFuture, Caller, Toolbox};
use crate::backend::{BackendRules, LineItemsQuery, ProductsQuery};
use crate::domain::{Cursor, PageBytes, PageLimit, PaymentLinkId, parse_item_id};
use crate::error::Result;
use crate::model::{LineItem, Page, PaymentLink, Product};

/// `get_payment_link`.
pub(crate) fn get_payment_link<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<PaymentLink>> {
    Box::pin(async move {
        let id = decode::<GetPaymentLinkArgs>(args)?.validate(tools.rules())?;
        caller.backend.get_payment_link(&id).await
    })
}

/// `list_line_items`.
pub(crate) fn list_line_items<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<Page<LineItem>>> {
    Box::pin(async move {
        let query =
            decode::<ListLineItemsArgs>(args)?.validate(tools.rules(), tools.page_bytes())?;
        caller.backend.list_line_items(query).await
    })
}

/// `list_products`.
pub(crate) fn list_products<'a>(
    tools: &'a Toolbox,
    caller: &'a Caller<'a>,
    args: Option<&'a JsonObject>,
) -> BoxFuture<'a, Result<Page<Product>>> {
    Box::pin(async move {
        let query =
            decode::<ListProductsArgs>(args)?.validate(tools.rules(), tools.page_bytes())?;
        caller.backend.list_products(query).await
    })
}

/// Fetch one payment link by id: its status, total, URL and limits.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetPaymentLinkArgs {
    /// The link's id, as returned by create_payment_link (`id`).
    pub payment_link_id: String,
}

impl GetPaymentLinkArgs {
    pub fn validate(self, rules: &BackendRules) -> Result<PaymentLinkId> {
        PaymentLinkId::parse(&self.payment_link_id, "payment_link_id", rules.id_format)
    }
}

/// List the line items (products, quantities, amounts) of a payment link, a page at a time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListLineItemsArgs {
    /// The link whose items to list.
    pub payment_link_id: String,
    /// Items per page, 1 to 100 (default 10); a page of large entries may hold fewer.
    #[schemars(range(min = 1, max = PageLimit::MAX))]
    pub limit: Option<i64>,
    /// Return the items after this line item id: pass the previous answer's `next_cursor`.
    pub starting_after: Option<String>,
    /// Return the items before this line item id (to page backwards).
    pub ending_before: Option<String>,
}

impl ListLineItemsArgs {
    pub fn validate(self, rules: &BackendRules, max_bytes: PageBytes) -> Result<LineItemsQuery> {
        Ok(LineItemsQuery {
            max_bytes,
            payment_link_id: PaymentLinkId::parse(
                &self.payment_link_id,
                "payment_link_id",
                rules.id_format,
            )?,
            limit: PageLimit::parse(self.limit, "limit")?,
            starting_after: self
                .starting_after
                .as_deref()
                .map(|s| parse_item_id(s, "starting_after"))
                .transpose()?,
            ending_before: self
                .ending_before
                .as_deref()
                .map(|s| parse_item_id(s, "ending_before"))
                .transpose()?,
        })
    }
}

/// List the merchant's products (the catalog), to find the `product_id`s a link can sell.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListProductsArgs {
    /// Products per page, 1 to 100 (default 10); a page of large entries may hold fewer.
    #[schemars(range(min = 1, max = PageLimit::MAX))]
    pub limit: Option<i64>,
    /// Where to continue: the previous answer's `next_cursor`, unchanged. Omit for the first page.
    pub cursor: Option<String>,
}

impl ListProductsArgs {
    pub fn validate(self, _rules: &BackendRules, max_bytes: PageBytes) -> Result<ProductsQuery> {
        let (limit, cursor) = Cursor::resolve(self.limit, self.cursor.as_deref())?;
        Ok(ProductsQuery {
            limit,
            max_bytes,
            cursor,
        })
    }
}
