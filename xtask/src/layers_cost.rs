//! `cargo xtask layers-cost`: what `AuthMiddleware` and `AuthLayer` add per request by
//! cachegrind's count and cache model, free of the CPU-time noise of a shared machine.
//! Installs Debian's valgrind when it is not on `PATH`, then runs the layers bench with
//! `AUTHMUX_BENCH_VALGRIND` set (see `tests/bench/layers_cost.rs`), which writes its
//! section of `docs/benchmarks.md`.

use std::process::Command;

use crate::Result;
use crate::run::{ensure_debian_package, run};

pub(crate) fn main(args: &[String]) -> Result {
    if !args.is_empty() {
        return Err(format!("layers-cost takes no arguments, got {args:?}"));
    }
    let valgrind = ensure_debian_package("valgrind", "valgrind", "Valgrind")?;
    run(
        "the layers bench under cachegrind",
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "bench",
                "-p",
                "authmux-integration-tests",
                "--bench",
                "layers",
            ])
            .env("AUTHMUX_BENCH_VALGRIND", valgrind),
    )
}
