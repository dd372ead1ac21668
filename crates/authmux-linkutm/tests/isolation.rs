//! Depending on `authmux-linkutm` alone compiles no other adapter: its normal
//! dependency tree (default features, and without them) holds `authmux-core` and
//! nothing else of authmux.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn authmux_crates_in_tree(extra: &[&str]) -> BTreeSet<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--manifest-path"])
        .arg(&manifest)
        .args(["-p", "authmux-linkutm", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"])
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
        .filter(|name| name.starts_with("authmux"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn only_core_is_compiled_with_the_adapter() {
    let expected: BTreeSet<String> = ["authmux-core", "authmux-linkutm"]
        .map(str::to_owned)
        .into();
    assert_eq!(authmux_crates_in_tree(&[]), expected);
    assert_eq!(authmux_crates_in_tree(&["--no-default-features"]), expected);
}
