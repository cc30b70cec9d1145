//! Tenants: who is calling, and the backend instance that holds their key or their sandbox data.

use std::sync::Arc;

use crate::backend::Backend;

/// One caller: the stdio user, or one HTTP bearer key.
pub struct Tenant {
    /// Short hash of the tenant's key, for logs. Never the key.
    pub fingerprint: String,
    /// Full hash naming the tenant, scoping its idempotency keys. Never the key.
    pub scope: String,
    /// This tenant's backend instance.
    pub backend: Arc<dyn Backend>,
}
