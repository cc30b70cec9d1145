//! The `paylink-mcp` binary: everything lives in the library; see `startup`.

/// mimalloc rather than glibc's malloc: a tool call allocates and frees a few hundred small
/// blocks (JSON-RPC messages, upstream requests and answers), and glibc's malloc/free were a
/// fifth of the instructions of a call (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    paylink_mcp::startup::main()
}
