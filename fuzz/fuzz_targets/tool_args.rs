//! Arbitrary bytes as tool arguments, through the real tool layer on the sandbox: any answer is
//! fine, a panic is a bug.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use paylink_mcp::backend::BackendRules;
use paylink_mcp::backend::sandbox::SandboxBackend;
use paylink_mcp::model::BackendKind;
use paylink_mcp::tools::{ALL_TOOLS, Caller, ToolFilter, ToolSet};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
});
static TOOLS: LazyLock<(ToolSet, ToolSet)> = LazyLock::new(|| {
    let filter = ToolFilter::default();
    (
        ToolSet::new(BackendRules::for_kind(BackendKind::Sandbox), &filter).expect("tools"),
        ToolSet::new(BackendRules::for_kind(BackendKind::Stripe), &filter).expect("tools"),
    )
});
static SANDBOX: LazyLock<Arc<SandboxBackend>> =
    LazyLock::new(|| Arc::new(SandboxBackend::new(10_000)));

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(serde_json::Value::Object(args)) = serde_json::from_slice(rest) else {
        return;
    };
    let tool = ALL_TOOLS[usize::from(selector) % ALL_TOOLS.len()];
    let tools = if selector & 0x80 == 0 { &TOOLS.0 } else { &TOOLS.1 };
    let caller = Caller {
        backend: SANDBOX.as_ref(),
        scope: "fuzz",
        allow_live: false,
    };
    let _ = RUNTIME.block_on(tools.call(tool, Some(&args), &caller));
});
