//! The metrics as Prometheus scrapes them: every series registered, named and labelled.
use super::*;

/// The value of the series `name{labels}` in an exposition (labels as encoded, in order).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn events_become_series_with_bounded_labels() {
    let m = Metrics::new();
    m.tool_call(ToolId::ListProducts, "ok", Duration::from_millis(3));
    m.tool_call(ToolId::ListProducts, "ok", Duration::from_millis(40));
    m.tool_call(ToolId::CreatePaymentLink, "validation", Duration::ZERO);
    m.upstream_response("stream", 503);
    m.upstream_retry("stream");
    m.idempotent_replay();
    m.tenant_evicted(Eviction::Capacity, 2);
    m.rate_limited("tenant_rate");
    m.idempotency_store(&IdempotencyStats {
        entries: 6,
        in_flight: 1,
        created: 3,
        unknown: 2,
        bytes: 4096,
        tenants: 2,
    });
    m.idempotency_evicted("unknown");
    m.sandbox_bytes(123_456);
    m.parse_bytes_taken(654_400);
    m.parse_bytes_released(79);
    m.store_operation("idempotency_claim", "ok", Duration::from_micros(80));
    m.store_operation("idempotency_claim", "timeout", Duration::from_millis(250));
    m.store_fail_open("tenant_rate");
    let text = m.encode(7);
    assert_eq!(
        value(
            &text,
            r#"paylink_store_operations_total{op="idempotency_claim",outcome="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_store_operation_duration_seconds_bucket{le="0.0001",op="idempotency_claim"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_store_limit_fail_open_total{limit="client_rate"}"#
        ),
        Some(0.0),
        "present at zero"
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_store_limit_fail_open_total{limit="tenant_rate"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"paylink_idempotency_entries{state="unknown"}"#),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"paylink_idempotency_entries{state="in_flight"}"#),
        Some(1.0)
    );
    assert_eq!(value(&text, "paylink_idempotency_bytes"), Some(4096.0));
    assert_eq!(
        value(
            &text,
            r#"paylink_idempotency_evictions_total{kind="unknown"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_idempotency_evictions_total{kind="created"}"#
        ),
        Some(0.0),
        "present at zero"
    );
    assert_eq!(value(&text, "paylink_sandbox_bytes"), Some(123_456.0));
    assert_eq!(
        value(&text, "paylink_upstream_parse_bytes"),
        Some(654_321.0)
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_tool_calls_total{tool="list_products",outcome="ok"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_tool_call_duration_seconds_count{tool="list_products"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_tool_call_duration_seconds_bucket{le="0.005",tool="list_products"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"paylink_upstream_responses_total{backend="stream",status="503"}"#
        ),
        Some(1.0)
    );
    assert_eq!(value(&text, "paylink_idempotent_replays_total"), Some(1.0));
    assert_eq!(value(&text, "paylink_tenant_cache_tenants"), Some(7.0));
    assert_eq!(
        value(
            &text,
            r#"paylink_tenant_cache_evictions_total{reason="capacity"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&text, r#"paylink_rate_limited_total{reason="client_rate"}"#),
        Some(0.0),
        "present at zero"
    );
    assert!(text.ends_with("# EOF\n"));
}
