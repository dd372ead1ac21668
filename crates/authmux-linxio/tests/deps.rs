//! "A user who depends on `authmux-linxio` alone compiles no code of the other
//! dialects": the crate's normal dependency graph (what a user builds; dev-dependencies
//! such as the test kit are not part of it) holds no other authmux crate than the core,
//! with and without the default `reqwest` feature.

use std::collections::BTreeSet;
use std::process::Command;

/// The package names in `cargo tree -p authmux-linxio -e normal` (host platform: no
/// authmux crate is a platform-specific dependency).
fn normal_dependencies(extra: &[&str]) -> BTreeSet<String> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--manifest-path",
            manifest,
            "-p",
            "authmux-linxio",
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
fn only_the_core_comes_along_with_default_features() {
    let names = normal_dependencies(&[]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-linxio"]);
    // The listing is real: the default transport is in it.
    assert!(names.contains("reqwest"), "{names:?}");
}

#[test]
fn only_the_core_comes_along_without_default_features() {
    let names = normal_dependencies(&["--no-default-features"]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-linxio"]);
    assert!(
        !names.contains("reqwest"),
        "the reqwest feature is forwarded to the core: {names:?}"
    );
}
