//! The `berth-proxy` binary: everything is in the library (see `lib.rs`), but for the allocator.

/// mimalloc: per-thread free lists suit the request path's many short-lived allocations (headers,
/// bodies' frames, per-request state), which glibc's malloc serves more slowly (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth_proxy::main()
}
