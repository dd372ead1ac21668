//! Depending on authmux-directus alone pulls in authmux-core and no other adapter (the
//! sqlx layout: one crate per backend, nothing of the others).

use authmux_testkit::deps::{authmux_crates, normal_dependencies};

#[test]
fn no_other_adapter_in_the_normal_dependency_tree() {
    let names = normal_dependencies(
        env!("CARGO"),
        env!("CARGO_MANIFEST_DIR"),
        "authmux-directus",
        &["--offline"],
    );
    assert_eq!(
        authmux_crates(&names),
        ["authmux-core", "authmux-directus"],
        "authmux-directus depends on another authmux crate"
    );
}
