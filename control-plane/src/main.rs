//! `berth-control`: see the library's documentation (`src/lib.rs`).

/// mimalloc: each catalog change parses Consul's whole service list and summary (thousands of
/// short strings made and freed), which glibc's malloc served with a third of the CPU of a change
/// at 10,000 services (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth_control::main()
}
