//! Depending on authmux-oauth2 alone pulls in authmux-core and no other adapter (the
//! sqlx layout: one crate per backend, nothing of the others).

use authmux_testkit::deps::{authmux_crates, has_openssl, normal_dependencies};

#[test]
fn no_other_adapter_in_the_normal_dependency_tree() {
    let names = normal_dependencies(
        env!("CARGO"),
        env!("CARGO_MANIFEST_DIR"),
        "authmux-oauth2",
        &["--offline"],
    );
    assert_eq!(
        authmux_crates(&names),
        ["authmux-core", "authmux-oauth2"],
        "authmux-oauth2 depends on another authmux crate"
    );
    // No OpenSSL anywhere: rustls and aws-lc-rs only.
    assert!(!has_openssl(&names), "{names:?}");
}
