//! `cargo xtask soak [--seconds N]`: the chaos soak.
//!
//! Builds the `authmux` CLI and `authmux-soak` (`tests/bin/soak.rs`), starts the real
//! Directus of [`crate::directus`] unless `AUTHMUX_DIRECTUS_URL` is set (and stops it
//! on every exit path), and runs `authmux-soak conduct`: for N seconds (default 60),
//! manager processes and a loop of CLI processes sharing one profile per target (the
//! Linxio, LinkUTM and Directus fakes, and the real Directus behind the test kit's
//! fault proxy), with random faults and short token lifetimes. It prints per target:
//! calls made, transient errors, sessions lost, refreshes per expiry, double
//! refreshes and the longest call, and fails on a lost session or a double refresh.
//! `cargo xtask ci` runs it as a step (while its Directus is up).

use std::path::Path;
use std::process::Command;

use crate::Result;
use crate::directus::{self, StartFlags};
use crate::run::{run, run_reporting};

/// The soak's length when `--seconds` is not given (and in CI).
pub(crate) const DEFAULT_SECONDS: u64 = 60;

/// How many of the soak's last output lines a failure repeats.
const REPORT_LINES: usize = 80;

/// Runs `cargo xtask soak [--seconds N]`.
pub(crate) fn main(args: &[String]) -> Result {
    let mut seconds = DEFAULT_SECONDS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = it.next().ok_or("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .map_err(|e| format!("--seconds {value}: {e}"))?;
            }
            other => return Err(format!("unknown soak flag `{other}`\n\n{}", crate::USAGE)),
        }
    }
    if std::env::var("AUTHMUX_DIRECTUS_URL").is_ok_and(|url| !url.is_empty()) {
        println!("xtask: using the Directus at $AUTHMUX_DIRECTUS_URL; not starting one");
        return soak(&[], seconds);
    }
    let servers = directus::Running(directus::start_servers(StartFlags::default(), false)?);
    soak(&directus::exports(&servers.0), seconds)
    // `servers` drops here: they stop, whatever the result.
}

/// Builds the two binaries and runs the soak for `seconds` with `env` (the real
/// Directus's variables).
pub(crate) fn soak(env: &[(&'static str, String)], seconds: u64) -> Result {
    run(
        "building the soak",
        crate::ci::cargo().args([
            "build",
            "--package",
            "authmux-cli",
            "--bin",
            "authmux",
            "--package",
            "authmux-integration-tests",
            "--bin",
            "authmux-soak",
        ]),
    )?;
    let bin = crate::ci::target_dir().join("debug");
    // Its report is repeated in the error, after the servers' logs `cargo xtask ci`
    // prints on a failure, so it is what a CI log ends with.
    run_reporting(
        "the soak",
        Command::new(exe(&bin, "authmux-soak"))
            .args(["conduct", "--seconds", &seconds.to_string(), "--cli"])
            .arg(exe(&bin, "authmux"))
            .envs(env.iter().cloned()),
        REPORT_LINES,
    )
}

fn exe(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}
