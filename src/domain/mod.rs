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

pub use currency::{CurrencyCode, STREAM_CURRENCIES};
pub use ids::{CouponId, IdFormat, PaymentLinkId, ProductId, parse_item_id};
pub use metadata::{Metadata, RESERVED_METADATA_PREFIX};
pub use money::{Money, MoneyParseError, MoneyView};
pub use page::{Cursor, Fit, PAGE_ENVELOPE, PageBytes, PageCursor, PageLimit, json_len};
pub(crate) use quantity::MAX_LINE_ITEMS;
pub use quantity::{MaxPayments, Quantity};
pub use redirect_url::RedirectUrl;
pub use text::{Description, LinkName};
pub use timestamp::ValidUntil;
