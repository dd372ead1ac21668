//! "A user of the Redis store compiles no adapter and no HTTP client": the crate's
//! normal dependency graph (what a user builds; dev-dependencies such as the test kit
//! are not part of it) holds no other authmux crate than the core, and no reqwest, with
//! and without its optional features; and no OpenSSL in any case.

use std::collections::BTreeSet;
use std::process::Command;

/// The package names in `cargo tree -p authmux-redis -e normal` (host platform: no
/// authmux crate is a platform-specific dependency).
fn normal_dependencies(extra: &[&str]) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--manifest-path",
            manifest,
            "-p",
            "authmux-redis",
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

fn authmux_crates(names: &BTreeSet<String>) -> Vec<&str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|n| *n == "authmux" || n.starts_with("authmux-") || n.starts_with("authmux_"))
        .collect()
}

#[test]
fn only_the_core_comes_along_and_no_http_client() {
    let names = normal_dependencies(&[]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-redis"]);
    // The listing is real: the Redis client is in it.
    assert!(names.contains("redis"), "{names:?}");
    assert!(!names.contains("reqwest"), "{names:?}");
}

#[test]
fn with_every_feature_still_only_the_core_and_rustls_not_openssl() {
    let names = normal_dependencies(&["--all-features"]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-redis"]);
    assert!(
        names.contains("rustls"),
        "the tls feature uses rustls: {names:?}"
    );
    assert!(!names.contains("reqwest"), "{names:?}");
    // `openssl-probe` (from rustls-native-certs) only looks for certificate files.
    assert!(
        !names
            .iter()
            .any(|n| n == "openssl" || n == "openssl-sys" || n.contains("native-tls")),
        "{names:?}"
    );
}
