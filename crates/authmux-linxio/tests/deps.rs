//! "A user who depends on `authmux-linxio` alone compiles no code of the other
//! dialects": the crate's normal dependency graph (what a user builds; dev-dependencies
//! such as the test kit are not part of it) holds no other authmux crate than the core,
//! with and without the default transports (features `hyper` and `reqwest`).

use authmux_testkit::deps::authmux_crates;
use std::collections::BTreeSet;

fn normal_dependencies(extra: &[&str]) -> BTreeSet<String> {
    authmux_testkit::deps::normal_dependencies(
        env!("CARGO"),
        env!("CARGO_MANIFEST_DIR"),
        "authmux-linxio",
        extra,
    )
}

#[test]
fn only_the_core_comes_along_with_default_features() {
    let names = normal_dependencies(&[]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-linxio"]);
    // The listing is real: both transports are in it.
    assert!(names.contains("hyper-rustls"), "{names:?}");
    assert!(names.contains("reqwest"), "{names:?}");
}

#[test]
fn the_hyper_transport_alone_builds_no_reqwest() {
    let names = normal_dependencies(&["--no-default-features", "--features", "hyper"]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-linxio"]);
    assert!(names.contains("hyper-util"), "{names:?}");
    assert!(!names.contains("reqwest"), "{names:?}");
}

#[test]
fn only_the_core_comes_along_without_default_features() {
    let names = normal_dependencies(&["--no-default-features"]);
    assert_eq!(authmux_crates(&names), ["authmux-core", "authmux-linxio"]);
    for transport in ["reqwest", "hyper-rustls", "hyper-util", "hyper"] {
        assert!(
            !names.contains(transport),
            "the transport features are forwarded to the core: {names:?}"
        );
    }
}
