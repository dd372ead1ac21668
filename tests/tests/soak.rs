//! The chaos soak's checks can fail: `authmux-soak` with a rogue manager process that
//! refreshes a copy of the shared session without the others' lock must report the
//! double refresh (and the session it costs) and exit non-zero. (The soak itself runs
//! in `cargo xtask ci` and `cargo xtask soak`.)

use std::process::Command;

#[test]
fn the_soak_fails_on_a_double_refresh() {
    let output = Command::new(env!("CARGO_BIN_EXE_authmux-soak"))
        .args(["conduct", "--seconds", "6", "--rogue", "yes"])
        // The fakes only: quick, and the real server is not needed to prove the check.
        .env_remove("AUTHMUX_DIRECTUS_URL")
        .output()
        .expect("authmux-soak runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the soak passed despite a rogue refresher:\n{stdout}\n{stderr}"
    );
    assert!(stderr.contains("the soak FAILED"), "{stdout}\n{stderr}");
    // Both refreshing fakes saw one refresh credential presented twice.
    for target in ["linxio fake", "directus fake"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("soak {target}")) && l.contains("calls"))
            .unwrap_or_else(|| panic!("no line for {target}:\n{stdout}"));
        assert!(
            !line.contains("double refreshes 0"),
            "{target}: the double refresh went unseen: {line}"
        );
    }
}
