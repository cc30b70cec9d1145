//! The shared store's series: operations by name and outcome, their latency, and the abuse
//! limits that failed open because the store did not answer.
//!
//! Labels are fixed names chosen by this server: an operation (`idempotency_claim`,
//! `rate_count`, ...), an outcome (`ok`, `timeout`, `unreachable`, `error`), a limit. Never a
//! key, a tenant or an address.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the store latency buckets, in seconds: a loopback round trip (~50 µs) to
/// the longest deadline `--store-timeout-ms` allows (2 s).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

/// The outcomes of a store operation, as in `paylink_store_operations_total{outcome}`.
pub(crate) const STORE_OUTCOMES: &[&str] = &["ok", "timeout", "unreachable", "error"];

/// The abuse limits counted in the shared store, as in
/// `paylink_store_limit_fail_open_total{limit}` (names as in `paylink_rate_limited_total`).
pub(crate) const SHARED_LIMITS: &[&str] = &["client_rate", "new_tenants", "tenant_rate"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS.iter().copied())
}

/// The store's metrics, registered in the server's registry.
pub(super) struct StoreMetrics {
    operations: Family<OpLabels, Counter>,
    latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    fail_open: Family<LimitLabel, Counter>,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let operations = Family::<OpLabels, Counter>::default();
        registry.register(
            "store_operations",
            "Operations on the shared store (--store redis://...), by operation and outcome (ok, timeout, unreachable, error)",
            operations.clone(),
        );
        let latency =
            Family::<OpLabel, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register_with_unit(
            "store_operation_duration",
            "Time of one shared-store operation, deadline included, by operation",
            Unit::Seconds,
            latency.clone(),
        );
        let fail_open = Family::<LimitLabel, Counter>::default();
        registry.register(
            "store_limit_fail_open",
            "Requests whose abuse limit was checked by this replica alone because the shared store did not answer, by limit",
            fail_open.clone(),
        );
        // The failure series an alert watches exist from the start.
        for limit in SHARED_LIMITS {
            fail_open.get_or_create_owned(&LimitLabel { limit });
        }
        StoreMetrics {
            operations,
            latency,
            fail_open,
        }
    }

    pub(super) fn operation(&self, op: &'static str, outcome: &'static str, took: Duration) {
        debug_assert!(STORE_OUTCOMES.contains(&outcome));
        self.operations
            .get_or_create(&OpLabels { op, outcome })
            .inc();
        self.latency
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
    }

    pub(super) fn fail_open(&self, limit: &'static str) {
        self.fail_open.get_or_create(&LimitLabel { limit }).inc();
    }
}
