//! `berth-control`: see the library's documentation (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    berth_control::main()
}
