//! "A user of the Redis store compiles no adapter and no HTTP client": the crate's
//! normal dependency graph (what a user builds; dev-dependencies such as the test kit
//! are not part of it) holds no other authmux crate than the core, and no reqwest, with
//! and without its optional features; and no OpenSSL in any case.

use authmux_testkit::deps::authmux_crates;
use std::collections::BTreeSet;

fn normal_dependencies(extra: &[&str]) -> BTreeSet<String> {
    authmux_testkit::deps::normal_dependencies(
        env!("CARGO"),
        env!("CARGO_MANIFEST_DIR"),
        "authmux-redis",
        extra,
    )
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
    assert!(!authmux_testkit::deps::has_openssl(&names), "{names:?}");
}
