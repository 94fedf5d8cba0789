//! The `berth-proxy` binary: everything is in the library (see `lib.rs`).

fn main() -> std::process::ExitCode {
    berth_proxy::main()
}
