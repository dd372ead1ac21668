//! A command that hands out a still-valid token inside the refresh window starts a
//! refresh in the background; the process must not exit before it finished and was
//! saved. The server rotates the refresh token as soon as it handles the refresh; a
//! process that exits first loses the only copy of the new one, and the profile's
//! session with it (found by the chaos soak).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use authmux_testkit::linxio::endpoints;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{FakeLinxio, Fault};

fn authmux(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_authmux"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
        .output()
        .expect("authmux runs")
}

#[test]
fn a_command_waits_for_the_refresh_it_started_in_the_background() {
    let lifetime = Duration::from_secs(4);
    let fake = FakeLinxio::builder()
        .access_lifetime(lifetime)
        .start()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let url = fake.base_url().to_string();
    let login = authmux(
        home.path(),
        &[
            "login",
            "--dialect",
            "linxio",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
        ],
    );
    assert!(login.status.success(), "{login:?}");
    // Past the refresh point (half the lifetime), before expiry: `token` hands out the
    // valid token at once and refreshes in the background. The server rotates at once
    // and answers 700 ms later.
    std::thread::sleep(lifetime / 2 + Duration::from_millis(600));
    fake.faults().push(
        endpoints::REFRESH,
        Fault::DelayAnswer(Duration::from_millis(700)),
    );
    let token = authmux(home.path(), &["token"]);
    assert!(token.status.success(), "{token:?}");
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    // It printed the refreshed token, the one the profile now holds.
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("profiles/default/session.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&token.stdout).trim_end(),
        stored["session"]["tokens"]["access"].as_str().unwrap(),
        "the printed token is not the profile's"
    );
    // The rotated refresh token was saved: the next refresh works (the old one is dead).
    let refresh = authmux(home.path(), &["refresh"]);
    assert!(
        refresh.status.success(),
        "the background refresh's answer was lost: {refresh:?}"
    );
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 2);
}
