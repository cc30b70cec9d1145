//! The `paylink-mcp` binary: everything lives in the library; see `startup`.

fn main() -> std::process::ExitCode {
    paylink_mcp::startup::main()
}
