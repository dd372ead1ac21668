//! The `cargo tree` check every crate uses to prove that depending on it alone compiles
//! no other authmux crate than it should: the package names in a crate's normal
//! dependency graph (what a user builds; dev-dependencies such as this test kit are not
//! part of it), on the host platform.

use std::collections::BTreeSet;
use std::process::Command;

/// The package names in `cargo tree -p <package> -e normal`, with `extra` arguments
/// (e.g. `--no-default-features`, `--all-features`). `cargo` is the caller's
/// `env!("CARGO")` and `manifest_dir` its `env!("CARGO_MANIFEST_DIR")`. Panics, with
/// cargo's message, if `cargo tree` fails.
pub fn normal_dependencies(
    cargo: &str,
    manifest_dir: &str,
    package: &str,
    extra: &[&str],
) -> BTreeSet<String> {
    let manifest = format!("{manifest_dir}/Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "tree",
            "--manifest-path",
            &manifest,
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The authmux crates among `names`, sorted.
pub fn authmux_crates(names: &BTreeSet<String>) -> Vec<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| *n == "authmux" || n.starts_with("authmux-") || n.starts_with("authmux_"))
        .collect()
}

/// Whether an OpenSSL crate is among `names` (`openssl-probe`, which only finds the
/// system's certificate files, is not one).
pub fn has_openssl(names: &BTreeSet<String>) -> bool {
    names
        .iter()
        .any(|n| n == "openssl" || n == "openssl-sys" || n.contains("native-tls"))
}
