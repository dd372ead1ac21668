//! The record of every secret the fakes issue, for the secret scan of all test output,
//! and the TRACE logging that scan reads.
//!
//! When the environment variable [`SECRET_LOG_ENV`] (`AUTHMUX_SECRET_LOG`) names a file,
//! every secret a fake issues or holds is appended to it, one per line: access tokens
//! and ID tokens (every JWT the fakes sign), refresh tokens, one-time and authorization
//! codes, reset and verification tokens (every random token they mint), TOTP secrets and
//! codes, client secrets, and the passwords of their users. Several test processes may
//! append to one file (each line is one `write` on a file opened for appending). Unset,
//! nothing is recorded and nothing is opened.
//!
//! `cargo xtask ci` sets it for the test step, runs the suite with `RUST_LOG=trace`, and
//! then fails if any recorded secret appears in any test's captured output, naming the
//! test (`xtask/src/secret_scan.rs`). For the log lines to exist, the fakes call
//! [`init_tracing`] when they start: with `RUST_LOG` set to a level (`trace`, `debug`,
//! ...), it installs a global `tracing` subscriber that writes every event (authmux's
//! and its dependencies': reqwest, hyper, rustls) to the test's captured output.
//!
//! ```
//! use authmux_testkit::secret_log;
//!
//! // A no-op unless AUTHMUX_SECRET_LOG is set.
//! secret_log::record("a-token-a-fake-just-issued");
//! ```

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::sync::{Mutex, OnceLock};

/// The environment variable naming the file secrets are appended to.
pub const SECRET_LOG_ENV: &str = "AUTHMUX_SECRET_LOG";

struct Log {
    file: File,
    seen: HashSet<String>,
}

fn log() -> Option<&'static Mutex<Log>> {
    static LOG: OnceLock<Option<Mutex<Log>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let path = std::env::var_os(SECRET_LOG_ENV).filter(|p| !p.is_empty())?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{SECRET_LOG_ENV}={path:?} cannot be opened: {e}"));
        Some(Mutex::new(Log {
            file,
            seen: HashSet::new(),
        }))
    })
    .as_ref()
}

/// Whether secrets are being recorded (`AUTHMUX_SECRET_LOG` is set).
pub fn enabled() -> bool {
    log().is_some()
}

/// Appends `secret` to the secret log, once per process (a no-op when recording is
/// off, and for empty values or values spanning lines).
///
/// # Panics
/// When the secret log cannot be written: a scan over an incomplete record would
/// prove nothing.
pub fn record(secret: &str) {
    let Some(log) = log() else { return };
    if secret.is_empty() || secret.contains(['\n', '\r']) {
        return;
    }
    let mut log = log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !log.seen.insert(secret.to_owned()) {
        return;
    }
    let line = format!("{secret}\n");
    log.file
        .write_all(line.as_bytes())
        .unwrap_or_else(|e| panic!("{SECRET_LOG_ENV} cannot be written: {e}"));
}

/// Installs, once per process, a global `tracing` subscriber at the level `RUST_LOG`
/// names (`error`, `warn`, `info`, `debug`, `trace`; anything else, or unset: nothing
/// is installed), writing through the test harness's capture. A process (or test
/// thread) that set its own subscriber keeps it.
///
/// Only in test harnesses (executables in a `deps` folder, where cargo puts them):
/// programs a test runs that start fakes themselves (`authmux demo`) keep their output
/// as it is, since tests assert on it.
pub fn init_tracing() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let in_test_harness = std::env::current_exe().is_ok_and(|exe| {
            exe.parent()
                .and_then(std::path::Path::file_name)
                .is_some_and(|dir| dir == "deps")
        });
        if !in_test_harness {
            return;
        }
        let Some(level) = std::env::var("RUST_LOG").ok().and_then(|v| {
            v.trim()
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        }) else {
            return;
        };
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_test_writer()
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}
