//! The facade's integrations are off by default and pull in only what they name: a
//! user of one dialect and one integration compiles no other authmux crate.

use std::process::Command;

/// The facade's normal dependency tree with `features` (and without the default
/// features when `defaults` is false), one `name version` per line.
fn cargo_tree(defaults: bool, features: &str) -> String {
    let mut args = vec![
        "tree",
        "--offline",
        "-p",
        "authmux",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    if !defaults {
        args.push("--no-default-features");
    }
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    let output = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn crates(tree: &str) -> Vec<String> {
    let mut names: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn authmux_crates(tree: &str) -> Vec<String> {
    crates(tree)
        .into_iter()
        .filter(|name| name.starts_with("authmux"))
        .collect()
}

#[test]
fn the_integrations_are_off_by_default() {
    let tree = cargo_tree(true, "");
    let names = crates(&tree);
    for absent in ["authmux-reqwest", "authmux-tower", "reqwest-middleware"] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {tree}");
    }
}

#[test]
fn one_dialect_and_one_integration_pull_in_nothing_else() {
    let tree = cargo_tree(false, "linxio,tower");
    assert_eq!(
        authmux_crates(&tree),
        ["authmux", "authmux-core", "authmux-linxio", "authmux-tower"],
        "{tree}"
    );
    assert!(!crates(&tree).iter().any(|n| n == "reqwest-middleware"));

    let tree = cargo_tree(false, "directus,reqwest,reqwest-middleware");
    assert_eq!(
        authmux_crates(&tree),
        [
            "authmux",
            "authmux-core",
            "authmux-directus",
            "authmux-reqwest"
        ],
        "{tree}"
    );
}
