//! A test that needs its own process environment (`SSL_CERT_FILE`, `HTTP_PROXY`, ...)
//! runs its checks in a child process: the test binary itself, filtered to that one
//! test, with the variables set there only. The parent's environment, shared with the
//! other tests of the binary, stays as it is (changing it would race with them).
//!
//! ```no_run
//! const CHILD: &str = "MY_TEST_CHILD";
//!
//! #[test]
//! fn needs_a_proxy() {
//!     if std::env::var_os(CHILD).is_some() {
//!         // ... the checks, with the environment below ...
//!         return;
//!     }
//!     let set = [(CHILD, "1".to_owned()), ("HTTP_PROXY", "http://127.0.0.1:1".to_owned())];
//!     authmux_testkit::child::rerun("needs_a_proxy", &set, &["NO_PROXY"]);
//! }
//! ```

/// Runs the test named `test` of the current test binary in a child process with
/// `set` added to its environment and `remove` taken out, and panics with the child's
/// output unless it ran that one test and it passed. Returns the child's output.
pub fn rerun(test: &str, set: &[(&str, String)], remove: &[&str]) -> String {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command.args(["--exact", test, "--nocapture"]);
    for (name, value) in set {
        command.env(name, value);
    }
    for name in remove {
        command.env_remove(name);
    }
    let output = command.output().expect("the test binary runs again");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "the child failed:\n{report}");
    // A filter that matched nothing would also succeed.
    assert!(
        report.contains("1 passed"),
        "the child ran no test:\n{report}"
    );
    report
}

/// The whole pattern: in the child (where `marker` is set), runs `checks` to the end
/// on a current-thread runtime; in the parent, [`rerun`]s `test` with `marker` set to
/// `"1"` plus `set`, and `remove` taken out. The checks read anything else they need
/// (a port, say) from the variables in `set`.
pub fn checks_in_child<F: std::future::Future<Output = ()>>(
    test: &str,
    marker: &str,
    set: &[(&str, String)],
    remove: &[&str],
    checks: impl FnOnce() -> F,
) {
    if run_if_child(marker, checks) {
        return;
    }
    let mut all = vec![(marker, "1".to_owned())];
    all.extend(set.iter().cloned());
    rerun(test, &all, remove);
}

/// The child's side alone, for a parent that must prepare something (a server) before
/// it [`rerun`]s: in the child (where `marker` is set), runs `checks` to the end on a
/// current-thread runtime and returns `true`; in the parent, returns `false` at once.
pub fn run_if_child<F: std::future::Future<Output = ()>>(
    marker: &str,
    checks: impl FnOnce() -> F,
) -> bool {
    if std::env::var_os(marker).is_none() {
        return false;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(checks());
    true
}
