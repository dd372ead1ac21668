//! Depending on authmux-tower alone pulls in authmux-core and no adapter nor the other
//! integration crate: a user of one adapter plus this crate compiles nothing else of
//! authmux.

use std::process::Command;

#[test]
fn only_the_core_of_authmux_in_the_normal_dependency_tree() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "authmux-tower",
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
        ours.contains(&"authmux-tower") && ours.contains(&"authmux-core"),
        "{tree}"
    );
    let others: Vec<&&str> = ours
        .iter()
        .filter(|name| !matches!(**name, "authmux-tower" | "authmux-core"))
        .collect();
    assert!(others.is_empty(), "authmux-tower depends on {others:?}");
}
