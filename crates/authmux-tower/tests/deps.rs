//! Depending on authmux-tower alone pulls in authmux-core and no adapter nor the other
//! integration crate: a user of one adapter plus this crate compiles nothing else of
//! authmux.

use authmux_testkit::deps::{authmux_crates, normal_dependencies};

#[test]
fn only_the_core_of_authmux_in_the_normal_dependency_tree() {
    let names = normal_dependencies(
        env!("CARGO"),
        env!("CARGO_MANIFEST_DIR"),
        "authmux-tower",
        &["--offline"],
    );
    assert_eq!(
        authmux_crates(&names),
        ["authmux-core", "authmux-tower"],
        "authmux-tower depends on another authmux crate"
    );
}
