//! Depending on authmux-oauth2 alone pulls in authmux-core and no other adapter (the
//! sqlx layout: one crate per backend, nothing of the others).

use std::process::Command;

#[test]
fn no_other_adapter_in_the_normal_dependency_tree() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "authmux-oauth2",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("authmux"))
        .collect();
    assert!(
        ours.contains(&"authmux-oauth2") && ours.contains(&"authmux-core"),
        "{tree}"
    );
    let others: Vec<&&str> = ours
        .iter()
        .filter(|name| !matches!(**name, "authmux-oauth2" | "authmux-core"))
        .collect();
    assert!(others.is_empty(), "authmux-oauth2 depends on {others:?}");
    // No OpenSSL anywhere: rustls and aws-lc-rs only (`openssl-probe` only finds the
    // system's certificate files).
    let openssl: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| matches!(*name, "openssl" | "openssl-sys"))
        .collect();
    assert!(openssl.is_empty(), "{openssl:?}");
}
