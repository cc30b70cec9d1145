//! A backend whose configuration is missing (no key): the server still starts, and every call
//! explains what the operator must set. Start-up never fails on a key, so that Claude Desktop
//! shows the model a clear error instead of a server that silently did not start.

use async_trait::async_trait;

use super::{
    Backend, LineItemsQuery, LinksQuery, NewPaymentLink, Preview, ProductsQuery, StatusUpdate,
};
use crate::domain::PaymentLinkId;
use crate::error::{Error, Result, UpstreamContext};
use crate::model::{BackendKind, LineItem, Page, PaymentLink, Product};

pub(crate) struct Unconfigured {
    kind: BackendKind,
    message: String,
}

impl Unconfigured {
    pub(crate) fn new(kind: BackendKind, message: impl Into<String>) -> Self {
        Unconfigured {
            kind,
            message: message.into(),
        }
    }

    fn error(&self) -> Error {
        Error::auth(self.message.clone(), UpstreamContext::default())
    }
}

#[async_trait]
impl Backend for Unconfigured {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn livemode(&self) -> bool {
        false
    }

    async fn create_payment_link(&self, _request: NewPaymentLink) -> Result<PaymentLink> {
        Err(self.error())
    }

    async fn preview_payment_link(&self, _request: &NewPaymentLink) -> Result<Preview> {
        Err(self.error())
    }

    async fn get_payment_link(&self, _id: &PaymentLinkId) -> Result<PaymentLink> {
        Err(self.error())
    }

    async fn list_line_items(&self, _query: LineItemsQuery) -> Result<Page<LineItem>> {
        Err(self.error())
    }

    async fn list_products(&self, _query: ProductsQuery) -> Result<Page<Product>> {
        Err(self.error())
    }

    async fn list_payment_links(&self, _query: LinksQuery) -> Result<Page<PaymentLink>> {
        Err(self.error())
    }

    async fn update_payment_link_status(&self, _update: StatusUpdate) -> Result<PaymentLink> {
        Err(self.error())
    }
}
