//! Domain types: values that can only exist in a valid state ("parse, don't validate").
//!
//! Tool arguments are turned into these once, at the edge; everything below the tool layer (the
//! backends, the upstream clients) takes them and never re-checks. Each constructor returns a
//! plain `&'static str`-free [`crate::Error::Validation`] naming the field it was given, so a model
//! learns exactly which argument to fix.

mod currency;
mod ids;
mod metadata;
mod money;
mod page;
mod quantity;
mod redirect_url;
mod text;
mod timestamp;

pub use currency::CurrencyCode;
pub(crate) use currency::STREAM_CURRENCIES;
pub(crate) use ids::{CouponId, IdFormat, PaymentLinkId, ProductId, parse_item_id};
pub(crate) use metadata::{Metadata, RESERVED_METADATA_PREFIX};
pub use money::Money;
pub(crate) use money::MoneyView;
pub use page::{Cursor, PageBytes};
#[cfg(test)]
pub(crate) use page::{PAGE_ENVELOPE, json_len};
pub(crate) use page::{PageCursor, PageLimit};
pub(crate) use quantity::MAX_LINE_ITEMS;
pub(crate) use quantity::{MaxPayments, Quantity};
pub use redirect_url::RedirectUrl;
pub(crate) use text::{Description, LinkName};
pub use timestamp::ValidUntil;
