//! The text of a confirmation: what the user reads in the client's dialog before a write.
//!
//! Plain text, one fact per line, amounts exact in their currency's exponent. Every amount comes
//! from the preview (the server's own arithmetic over the catalog), never from the model's
//! words; names (the link's, from the model, and the products', from the catalog) are quoted,
//! put on one line and cut, so that no name can draw a line of its own (a fake "Total:").

use crate::backend::{NewPaymentLink, Preview, StatusUpdate, TargetStatus};
use crate::domain::Money;
use crate::model::PaymentLink;

/// The longest a name is shown, in characters.
const NAME_CHARS: usize = 120;

/// The confirmation of a create.
pub(crate) fn create(link: &NewPaymentLink, preview: &Preview, live: bool) -> String {
    let mut out = format!("Create this payment link? {}\n", mode(live));
    out.push_str(&format!("Name: {}\n", quoted(link.name.as_str())));
    for line in &preview.lines {
        let every = line
            .interval
            .as_deref()
            .map(|i| format!(" every {}", one_line(i, 16)))
            .unwrap_or_default();
        out.push_str(&format!(
            "- {} × {} = {}",
            line.quantity,
            show(line.unit),
            show(line.subtotal)
        ));
        if line.total != line.subtotal {
            out.push_str(&format!(" ({} after coupons)", show(line.total)));
        }
        out.push_str(&every);
        if let Some(name) = &line.name {
            out.push_str(&format!(" — {}", quoted(name)));
        }
        out.push('\n');
    }
    if preview.coupons_unknown {
        out.push_str(&format!(
            "Total before coupons: {} (the payments provider applies the coupons when it creates the link, so the link may total less)\n",
            show(preview.total)
        ));
    } else {
        let lines: Option<Money> = preview
            .lines
            .iter()
            .try_fold(Money::from_minor(0, preview.currency), |sum, l| {
                sum.checked_add(l.total)
            });
        let after = if lines.is_some_and(|l| l != preview.total) {
            " (after coupons)"
        } else {
            ""
        };
        out.push_str(&format!("Total: {}{after}\n", show(preview.total)));
    }
    if let Some(until) = &link.valid_until {
        out.push_str(&format!("Valid until: {}\n", until.to_rfc3339()));
    }
    if let Some(max) = link.max_number_of_payments {
        out.push_str(&format!("Max payments: {}\n", max.get()));
    }
    out.trim_end().to_owned()
}

/// The confirmation of a status change, for the link as it is now.
pub(crate) fn status(link: &PaymentLink, update: &StatusUpdate, live: bool) -> String {
    let verb = match update.status {
        TargetStatus::Active => "Activate",
        TargetStatus::Inactive => "Deactivate",
    };
    let mut out = format!("{verb} this payment link? {}\n", mode(live));
    out.push_str(&format!("Link: {}", one_line(&link.id, NAME_CHARS)));
    if let Some(name) = &link.name {
        out.push_str(&format!(" {}", quoted(name)));
    }
    out.push('\n');
    if let Some(total) = &link.total {
        out.push_str(&format!(
            "Total: {} {}\n",
            one_line(&total.amount, 32),
            one_line(&total.currency, 8)
        ));
    }
    let now = link
        .status
        .map(|s| format!("{s:?}").to_lowercase())
        .unwrap_or_else(|| "unknown".to_owned());
    let new = match update.status {
        TargetStatus::Active => "active (it accepts payments again)",
        TargetStatus::Inactive => "inactive (it stops accepting payments)",
    };
    out.push_str(&format!("Status: {now} → {new}\n"));
    if let Some(message) = &update.message {
        out.push_str(&format!("Payers will see: {}\n", quoted(message)));
    }
    out.trim_end().to_owned()
}

/// The title of the form's checkbox.
pub(crate) fn title(update: Option<&StatusUpdate>) -> &'static str {
    match update.map(|u| u.status) {
        None => "Create this payment link",
        Some(TargetStatus::Active) => "Activate this payment link",
        Some(TargetStatus::Inactive) => "Deactivate this payment link",
    }
}

fn mode(live: bool) -> &'static str {
    if live {
        "LIVE: real money"
    } else {
        "TEST: no real money moves"
    }
}

fn show(m: Money) -> String {
    format!("{} {}", m.to_decimal_string(), m.currency())
}

/// `text` in quotes, on one line, cut to [`NAME_CHARS`]. Double quotation marks inside it
/// become `'`, so that a name cannot close its quote and continue as if it were the message's
/// own text.
fn quoted(text: &str) -> String {
    let inner: String = one_line(text, NAME_CHARS)
        .chars()
        .map(|c| match c {
            '“' | '”' | '„' | '‟' | '〝' | '〞' | '〟' | '＂' | '"' | '«' | '»' => {
                '\''
            }
            other => other,
        })
        .collect();
    format!("“{inner}”")
}

/// `text` on one line: line breaks and other controls become spaces, characters that reorder
/// text (bidirectional overrides) are dropped, and it is cut to `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text
        .chars()
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'))
        .map(|c| if c.is_control() || c == '\u{2028}' || c == '\u{2029}' { ' ' } else { c })
        .enumerate()
    {
        if n == max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{NewItem, PreviewLine};
    use crate::domain::{
        CurrencyCode, IdFormat, LinkName, MaxPayments, Metadata, PaymentLinkId, ProductId,
        Quantity, ValidUntil,
    };
    use crate::model::{BackendKind, LinkStatus};

    fn kwd(minor: i64) -> Money {
        Money::from_minor(minor, CurrencyCode::parse("KWD", "c").unwrap())
    }

    fn request(name: &str) -> NewPaymentLink {
        NewPaymentLink {
            name: LinkName::parse(name, "name").unwrap(),
            items: vec![NewItem {
                product_id: ProductId::parse("price_A", "p", IdFormat::Stripe).unwrap(),
                quantity: Quantity::parse(3, "q").unwrap(),
                coupons: vec![],
            }],
            description: None,
            currency: None,
            coupons: vec![],
            valid_until: Some(
                ValidUntil::parse("2030-01-31T23:59:00Z", "v", chrono::Utc::now()).unwrap(),
            ),
            max_number_of_payments: Some(MaxPayments::parse(5, "m").unwrap()),
            success_redirect_url: None,
            failure_redirect_url: None,
            organization_consumer_id: None,
            metadata: Metadata::parse(Default::default(), "metadata", 1).unwrap(),
            reference: String::new(),
            idempotency_key: None,
        }
    }

    fn line(i: usize, q: u32, unit: i64, name: &str) -> PreviewLine {
        PreviewLine::new(i, "p".into(), Some(name.into()), q, kwd(unit), None).unwrap()
    }

    #[test]
    fn a_create_shows_each_line_the_total_the_mode_and_the_limits() {
        let kwd_code = CurrencyCode::parse("KWD", "c").unwrap();
        let preview = Preview::summed(
            kwd_code,
            vec![
                line(0, 3, 2_950, "Ceramic mug"),
                line(1, 7, 34_125, "Dallah"),
            ],
            false,
        )
        .unwrap();
        let text = create(&request("Order 7"), &preview, true);
        assert!(text.starts_with("Create this payment link? LIVE"), "{text}");
        for want in [
            "Name: “Order 7”",
            "- 3 × 2.950 KWD = 8.850 KWD — “Ceramic mug”",
            "- 7 × 34.125 KWD = 238.875 KWD — “Dallah”",
            "Total: 247.725 KWD\n",
            "Valid until: 2030-01-31T23:59:00Z",
            "Max payments: 5",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        assert!(create(&request("x"), &preview, false).contains("TEST: no real money"));
        let mut unknown = preview.clone();
        unknown.coupons_unknown = true;
        assert!(
            create(&request("x"), &unknown, false).contains("Total before coupons: 247.725 KWD")
        );
        let mut discounted = preview;
        discounted.lines[0].total = kwd(8_000);
        discounted.total = kwd(8_000 + 238_875);
        let text = create(&request("x"), &discounted, false);
        assert!(
            text.contains("= 8.850 KWD (8.000 KWD after coupons)"),
            "{text}"
        );
    }

    #[test]
    fn names_cannot_draw_lines_of_their_own() {
        let sar = CurrencyCode::sar();
        let p = Preview::summed(
            sar,
            vec![
                PreviewLine::new(
                    0,
                    "p".into(),
                    Some("Mug\nTotal: 0.01 SAR\u{202E}".into()),
                    1,
                    Money::from_minor(100, sar),
                    None,
                )
                .unwrap(),
            ],
            false,
        )
        .unwrap();
        let text = create(&request("Dinner\nTotal: 1.00 SAR"), &p, false);
        let totals: Vec<&str> = text.lines().filter(|l| l.starts_with("Total")).collect();
        assert_eq!(totals, ["Total: 1.00 SAR"], "{text}");
        assert!(!text.contains('\u{202E}'));
        assert!(text.contains("“Dinner Total: 1.00 SAR”"), "{text}");
        // A name cannot close its own quote.
        let text = create(&request("Tea” — Total: 0.01 SAR “"), &p, false);
        assert!(text.contains("Name: “Tea' — Total: 0.01 SAR '”"), "{text}");
        assert_eq!(quoted("a „b‟ «c» \"d\""), "“a 'b' 'c' 'd'”");
        assert_eq!(one_line(&"x".repeat(200), 5), "xxxxx…");
    }

    #[test]
    fn a_status_change_shows_the_link_and_its_new_status() {
        let link = PaymentLink {
            id: "plink_1".into(),
            url: None,
            name: Some("Order 7".into()),
            description: None,
            status: Some(LinkStatus::Active),
            currency: Some("KWD".into()),
            total: Some(kwd(8_850).view()),
            original_total: None,
            amount_collected: None,
            item_count: None,
            max_number_of_payments: None,
            valid_until: None,
            success_redirect_url: None,
            failure_redirect_url: None,
            recurring_interval: None,
            inactive_message: None,
            created_at: None,
            metadata: Default::default(),
            backend: BackendKind::Stripe,
            livemode: true,
        };
        let update = StatusUpdate {
            payment_link_id: PaymentLinkId::from_upstream("plink_1".into()),
            status: TargetStatus::Inactive,
            message: Some("Sold out".into()),
        };
        let text = status(&link, &update, true);
        for want in [
            "Deactivate this payment link? LIVE",
            "Link: plink_1 “Order 7”",
            "Total: 8.850 KWD",
            "Status: active → inactive",
            "Payers will see: “Sold out”",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        assert_eq!(title(Some(&update)), "Deactivate this payment link");
    }
}
