//! Arbitrary bytes as tool arguments, through the tools' own argument decoding and validation
//! (the lenient `args::decode` that names the bad field, then each tool's `validate`) under every
//! backend's rules: any answer is fine, a panic is a bug, and every refusal is an envelope that
//! names the field to fix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paylink_mcp::testing::Error;
use paylink_mcp::testing::BackendRules;
use paylink_mcp::testing::PageBytes;
use paylink_mcp::testing::ErrorKind;
use paylink_mcp::testing::BackendKind;
use paylink_mcp::testing::decode;
use paylink_mcp::testing::{CreatePaymentLinkArgs, refuse_unsupported};
use paylink_mcp::testing::{ListPaymentLinksArgs, UpdatePaymentLinkStatusArgs};
use paylink_mcp::testing::{GetPaymentLinkArgs, ListLineItemsArgs, ListProductsArgs};
use serde_json::{Map, Value};

const KINDS: [BackendKind; 3] = [
    BackendKind::Sandbox,
    BackendKind::Stream,
    BackendKind::Stripe,
];

/// One tool's arguments decoded and validated as the tool does before any backend call.
fn check(tool: u8, args: Option<&Map<String, Value>>, rules: &BackendRules) -> Result<(), Error> {
    let page = PageBytes::new(PageBytes::DEFAULT);
    match tool % 6 {
        0 => {
            refuse_unsupported(args, rules)?;
            decode::<CreatePaymentLinkArgs>(args)?
                .validate(rules)
                .map(drop)
        }
        1 => decode::<GetPaymentLinkArgs>(args)?
            .validate(rules)
            .map(drop),
        2 => decode::<ListLineItemsArgs>(args)?
            .validate(rules, page)
            .map(drop),
        3 => decode::<ListProductsArgs>(args)?
            .validate(rules, page)
            .map(drop),
        4 => decode::<ListPaymentLinksArgs>(args)?
            .validate(rules, page)
            .map(drop),
        _ => decode::<UpdatePaymentLinkStatusArgs>(args)?
            .validate(rules)
            .map(drop),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    // Any JSON: an object is the usual case, anything else is `arguments` absent.
    let Ok(value) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let rules = BackendRules::for_kind(KINDS[usize::from(selector >> 6) % KINDS.len()]);
    if let Err(e) = check(selector, value.as_object(), &rules) {
        let envelope: Value = serde_json::from_str(&e.envelope()).expect("the envelope is JSON");
        assert!(envelope["error"]["kind"].is_string(), "{envelope}");
        if matches!(
            e.kind(),
            ErrorKind::Validation | ErrorKind::UnsupportedByBackend
        ) {
            assert!(e.field().is_some_and(|f| !f.is_empty()), "{envelope}");
        }
    }
});
