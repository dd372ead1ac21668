//! End-to-end tests of the `authmux` binary: every command and every exit code, against
//! fake servers started in this test process. Each test has its own fakes and its own
//! temporary home folder, and never touches the real config folder.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use authmux_testkit::directus::{AuthProvider as SsoProvider, FakeDirectus};
use authmux_testkit::linxio::{ExpiryStyle, endpoints as linxio_endpoints};
use authmux_testkit::users::{
    ALICE_EMAIL, DEFAULT_PASSWORD, FORBIDDEN_EMAIL, OTP_CODE, OTP_EMAIL, SUSPENDED_EMAIL, User,
};
use authmux_testkit::{FakeLinkUtm, FakeLinxio, Fault, ManualClock};
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");

/// A temporary home folder and a way to run `authmux` in it.
struct Home {
    /// Holds the temporary folder; the home is a folder inside it that `authmux`
    /// creates itself.
    _dir: TempDir,
    path: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authmux-home");
        Self { _dir: dir, path }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// `authmux --home <tmp> <args>`, with no password in the environment and no
    /// standard input.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = bare();
        cmd.arg("--home").arg(self.path()).args(args);
        cmd
    }

    /// Like `cmd`, with `AUTHMUX_PASSWORD` set.
    fn with_password(&self, password: &str, args: &[&str]) -> Command {
        let mut cmd = self.cmd(args);
        cmd.env("AUTHMUX_PASSWORD", password);
        cmd
    }

    fn profile_dir(&self, profile: &str) -> PathBuf {
        self.path().join("profiles").join(profile)
    }

    fn session_file(&self, profile: &str) -> PathBuf {
        self.profile_dir(profile).join("session.json")
    }

    fn session(&self, profile: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.session_file(profile)).unwrap()).unwrap()
    }

    fn access_token(&self, profile: &str) -> String {
        self.token_of(profile, "access")
    }

    fn token_of(&self, profile: &str, key: &str) -> String {
        self.session(profile)["session"]["tokens"][key]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Signs in to `url` as `email` with the default password, expecting success.
    fn login(&self, profile: &str, dialect: &str, url: &str, email: &str) -> Output {
        self.with_password(
            DEFAULT_PASSWORD,
            &[
                "--profile",
                profile,
                "login",
                "--dialect",
                dialect,
                "--url",
                url,
                "--email",
                email,
            ],
        )
        .assert()
        .success()
        .get_output()
        .clone()
    }

    /// Moves the stored token's expiry into the past, as if time had passed.
    fn expire(&self, profile: &str) {
        let mut envelope = self.session(profile);
        let tokens = &mut envelope["session"]["tokens"];
        tokens["issued_at"] = "2001-01-01T00:00:00Z".into();
        tokens["expires_at"] = "2001-01-01T00:15:00Z".into();
        std::fs::write(
            self.session_file(profile),
            serde_json::to_vec_pretty(&envelope).unwrap(),
        )
        .unwrap();
    }
}

/// `authmux` with a clean environment: no password, no home, no standard input.
fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("AUTHMUX_PASSWORD")
        .env_remove("AUTHMUX_NEW_PASSWORD")
        .env_remove("AUTHMUX_HOME")
        .timeout(Duration::from_secs(30));
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`, expects exit `code` and exactly one line on stderr containing every
/// piece of `needles`; returns the output.
fn fails(cmd: &mut Command, code: i32, needles: &[&str]) -> Output {
    let output = cmd.assert().code(code).get_output().clone();
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one line on stderr expected, got: {stderr:?}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    output
}

fn url_of(base: &url::Url) -> String {
    base.as_str().to_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ----- the life of a session -------------------------------------------------------

#[test]
fn linxio_session_from_login_to_logout() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let out = home.login("default", "linxio", &url, ALICE_EMAIL);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("signed in to linxio"), "{stdout}");
    assert!(stdout.contains(ALICE_EMAIL), "{stdout}");
    assert!(out.stderr.is_empty());

    #[cfg(unix)]
    {
        assert_eq!(mode(home.path()), 0o700);
        assert_eq!(mode(&home.profile_dir("default")), 0o700);
        for file in ["config.json", "session.json"] {
            assert_eq!(
                mode(&home.profile_dir("default").join(file)),
                0o600,
                "{file}"
            );
        }
    }
    let config: Value = serde_json::from_slice(
        &std::fs::read(home.profile_dir("default").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["dialect"], "linxio");
    assert_eq!(config["url"], url.as_str());

    // `token` prints the token and nothing else.
    let out = home.cmd(&["token"]).assert().success().get_output().clone();
    let first = home.access_token("default");
    assert_eq!(text(&out.stdout), format!("{first}\n"));
    assert!(out.stderr.is_empty());

    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains(ALICE_EMAIL));
    let out = home
        .cmd(&["whoami", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["email"], ALICE_EMAIL);

    home.cmd(&["status"]).assert().success().stdout(
        predicate::str::contains("linxio")
            .and(predicate::str::contains(ALICE_EMAIL))
            .and(predicate::str::contains("valid, expires in"))
            .and(predicate::str::contains("yes")),
    );
    let out = home
        .cmd(&["status", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["dialect"], "linxio");
    assert_eq!(status["signed_in"], true);
    assert_eq!(status["can_refresh"], true);
    assert_eq!(status["expired"], false);
    assert_eq!(status["user"]["email"], ALICE_EMAIL);
    assert!(status["expires_in_secs"].as_i64().unwrap() > 800);

    home.cmd(&["refresh"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(
            "refreshed; the new token expires in",
        ));
    assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH), 1);
    let second = home.access_token("default");
    assert_ne!(second, first);
    let out = home.cmd(&["token"]).assert().success().get_output().clone();
    assert_eq!(text(&out.stdout).trim_end(), second);

    home.cmd(&["logout"])
        .assert()
        .success()
        .stdout(predicate::str::contains("the server ended the session"));
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGOUT), 1);
    assert!(!home.session_file("default").exists());

    // Signed out: no usable session anywhere.
    for args in [&["token"][..], &["whoami"], &["refresh"], &["logout"]] {
        fails(&mut home.cmd(args), 3, &["not signed in", "authmux"]);
    }
    let out = fails(&mut home.cmd(&["status", "--json"]), 3, &["not signed in"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["signed_in"], false);
    // Signing in again needs no flag: the profile remembers the backend and the email.
    home.with_password(DEFAULT_PASSWORD, &["login"])
        .assert()
        .success()
        .stdout(predicate::str::contains(ALICE_EMAIL));
}

#[test]
fn token_ignores_a_server_clock_ten_minutes_off() {
    // The measured defect: with the server 10 minutes behind, every `authmux token`
    // refreshed (the token looked expired on arrival); 10 minutes ahead, the token was
    // believed valid 10 minutes past its real expiry. Both Linxio expiry forms.
    for style in [ExpiryStyle::ExpireAtAndExp, ExpiryStyle::ExpOnly] {
        for offset in [-600_000, 600_000] {
            let fake = FakeLinxio::builder().expiry(style).start().unwrap();
            fake.set_clock_offset_millis(offset);
            let home = Home::new();
            home.login("default", "linxio", &url_of(fake.base_url()), ALICE_EMAIL);
            let first = home.access_token("default");
            for _ in 0..3 {
                let out = home.cmd(&["token"]).assert().success().get_output().clone();
                assert_eq!(text(&out.stdout).trim_end(), first, "{style:?} {offset}");
            }
            assert_eq!(
                fake.recorder().count(linxio_endpoints::REFRESH),
                0,
                "{style:?}, server {offset} ms off"
            );
            let out = home
                .cmd(&["status", "--json"])
                .assert()
                .success()
                .get_output()
                .clone();
            let status: Value = serde_json::from_slice(&out.stdout).unwrap();
            // The server's 900 s, on the local clock (a few seconds for the commands).
            let left = status["expires_in_secs"].as_i64().unwrap();
            assert!((880..=900).contains(&left), "{style:?} {offset}: {left} s");
            home.cmd(&["whoami"]).assert().success();
            assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH), 0);
        }
    }
}

#[test]
fn linxio_one_time_code_across_processes() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let login = [
        "login",
        "--dialect",
        "linxio",
        "--url",
        &url,
        "--email",
        OTP_EMAIL,
    ];
    fails(
        &mut home.with_password(DEFAULT_PASSWORD, &login),
        4,
        &["one-time code is required", "authmux --home", "otp CODE"],
    );
    let pending = home.profile_dir("default").join("otp.json");
    let saved = std::fs::read_to_string(&pending).unwrap();
    assert!(!saved.contains(DEFAULT_PASSWORD));
    #[cfg(unix)]
    assert_eq!(mode(&pending), 0o600);
    home.cmd(&["status"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("a one-time code"));

    fails(
        &mut home.cmd(&["otp", "000000"]),
        3,
        &["invalid one-time code", "still waiting"],
    );
    assert!(pending.exists(), "a wrong code keeps the sign-in waiting");
    home.cmd(&["otp", OTP_CODE])
        .assert()
        .success()
        .stdout(predicate::str::contains("signed in to linxio"));
    assert!(!pending.exists());
    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains(OTP_EMAIL));
    fails(
        &mut home.cmd(&["otp", OTP_CODE]),
        2,
        &["no sign-in is waiting"],
    );

    // A code given up front finishes in one command.
    let mut with_code = login.to_vec();
    with_code.extend(["--otp", OTP_CODE]);
    home.with_password(DEFAULT_PASSWORD, &with_code)
        .assert()
        .success();
}

#[test]
fn directus_one_time_code_needs_the_password_again() {
    // A frozen clock keeps the TOTP code stable for the whole test.
    let fake = FakeDirectus::builder()
        .clock(ManualClock::starting_now())
        .start()
        .unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let code = fake.totp_code(OTP_EMAIL).unwrap();
    fails(
        &mut home.with_password(
            DEFAULT_PASSWORD,
            &[
                "login",
                "--dialect",
                "directus",
                "--url",
                &url,
                "--email",
                OTP_EMAIL,
                "--mode",
                "cookie",
            ],
        ),
        4,
        &["otp CODE", "password again"],
    );
    let saved = std::fs::read_to_string(home.profile_dir("default").join("otp.json")).unwrap();
    assert!(!saved.contains(DEFAULT_PASSWORD));
    fails(
        &mut home.cmd(&["otp", &code]),
        2,
        &["AUTHMUX_PASSWORD", "--password-stdin"],
    );
    home.cmd(&["otp", &code, "--password-stdin"])
        .write_stdin(format!("{DEFAULT_PASSWORD}\n"))
        .assert()
        .success()
        .stdout(predicate::str::contains("signed in to directus"));
    let session = home.session("default");
    assert_eq!(session["session"]["extras"]["mode"], "cookie");
    // Directus's login answer names no user; the profile remembers the email.
    home.cmd(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains(OTP_EMAIL).and(predicate::str::contains("directus")));
    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains(OTP_EMAIL));
    home.cmd(&["logout"]).assert().success();
    // Inline code, password from standard input.
    home.cmd(&[
        "login",
        "--email",
        OTP_EMAIL,
        "--password-stdin",
        "--otp",
        &code,
    ])
    .write_stdin(format!("{DEFAULT_PASSWORD}\r\n"))
    .assert()
    .success();
}

#[test]
fn concurrent_token_processes_refresh_exactly_once() {
    let linxio = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let directus = FakeDirectus::start().unwrap();
    for (dialect, server, refresh_endpoint) in [
        ("linxio", linxio.server(), "POST /token/refresh"),
        ("directus", directus.server(), "POST /auth/refresh"),
    ] {
        let url = url_of(server.base_url());
        // The refresh answer is slow, so the processes certainly overlap: the first one
        // holds the profile's refresh lock while the others queue behind it.
        server
            .faults()
            .push(refresh_endpoint, Fault::Delay(Duration::from_millis(300)));
        let home = Home::new();
        home.login("shared", dialect, &url, ALICE_EMAIL);
        let before = home.token_of("shared", "refresh");
        home.expire("shared");
        let children: Vec<_> = (0..8)
            .map(|_| {
                StdCommand::new(BIN)
                    .args(["--home"])
                    .arg(home.path())
                    .args(["--profile", "shared", "token"])
                    .env_remove("AUTHMUX_PASSWORD")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<Output> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        for output in &outputs {
            assert!(
                output.status.success(),
                "{dialect}: {}",
                text(&output.stderr)
            );
        }
        // Both dialects rotate the refresh token (Directus may hand out the same access
        // JWT within one second, so the refresh token is what shows the refresh).
        assert_ne!(home.token_of("shared", "refresh"), before, "{dialect}");
        let after = home.access_token("shared");
        for output in &outputs {
            assert_eq!(text(&output.stdout).trim_end(), after, "{dialect}");
        }
        assert_eq!(
            server.recorder().count(refresh_endpoint),
            1,
            "{dialect}: one refresh"
        );
        // The rotated family is intact (a second refresh with the spent token would
        // have revoked it): the session still works.
        home.cmd(&["--profile", "shared", "whoami"])
            .assert()
            .success();
    }
}

#[test]
fn a_logout_in_another_process_is_never_undone_by_a_refresh_in_flight() {
    let linxio = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let server = linxio.server();
    let url = url_of(server.base_url());
    let home = Home::new();
    home.login("shared", "linxio", &url, ALICE_EMAIL);
    // The server rotates at once but its answer takes 800 ms: meanwhile the user signs
    // out in another process.
    server.faults().push(
        "POST /token/refresh",
        Fault::DelayAnswer(Duration::from_millis(800)),
    );
    let refreshing = StdCommand::new(BIN)
        .args(["--home"])
        .arg(home.path())
        .args(["--profile", "shared", "refresh"])
        .env_remove("AUTHMUX_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.recorder().count("POST /token/refresh") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    home.cmd(&["--profile", "shared", "logout"])
        .assert()
        .success();
    let refreshed = refreshing.wait_with_output().unwrap();
    assert!(
        !refreshed.status.success(),
        "the refresh claimed success after a logout elsewhere: {}",
        text(&refreshed.stdout)
    );
    // The logout stands: no process finds a session, and the file is gone.
    assert!(!home.path().join("profiles/shared/session.json").exists());
    home.cmd(&["--profile", "shared", "token"])
        .assert()
        .failure()
        .stdout("");
}

#[cfg(unix)]
#[test]
fn a_profile_folder_open_to_others_is_tightened_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let linxio = FakeLinxio::start().unwrap();
    let url = url_of(linxio.server().base_url());
    let home = Home::new();
    home.login("p", "linxio", &url, ALICE_EMAIL);
    let folder = home.path().join("profiles/p");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = home.cmd(&["--profile", "p", "token"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("was open to group or others"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

// ----- dialect capabilities ----------------------------------------------------------

#[test]
fn linkutm_sign_in_sessions_list_and_revoke() {
    let fake = FakeLinkUtm::builder()
        .rate_limit_per_minute(None)
        .start()
        .unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    home.login("a", "linkutm", &url, ALICE_EMAIL);
    home.login("b", "linkutm", &url, ALICE_EMAIL);
    home.cmd(&["--profile", "a", "sessions", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("CURRENT"));
    let list = |profile: &str| -> Vec<Value> {
        let out = home
            .cmd(&["--profile", profile, "sessions", "list", "--json"])
            .assert()
            .success()
            .get_output()
            .clone();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(list("a").len(), 2);
    let b_own = list("b")
        .into_iter()
        .find(|r| r["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    home.cmd(&["--profile", "a", "sessions", "revoke", &b_own])
        .assert()
        .success()
        .stdout(predicate::str::contains(b_own.as_str()));
    fails(
        &mut home.cmd(&["--profile", "b", "whoami"]),
        3,
        &["sign in again"],
    );
    home.cmd(&["--profile", "a", "sessions", "revoke", "--all"])
        .assert()
        .success()
        .stdout(predicate::str::contains("signed out locally"));
    assert!(!home.session_file("a").exists());
    fails(
        &mut home.cmd(&["--profile", "a", "token"]),
        3,
        &["not signed in"],
    );
}

#[test]
fn linkutm_without_refresh_expires_and_says_so() {
    let fake = FakeLinkUtm::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    fails(
        &mut home.with_password(
            DEFAULT_PASSWORD,
            &[
                "login",
                "--dialect",
                "linkutm",
                "--url",
                &url,
                "--email",
                ALICE_EMAIL,
                "--otp",
                "123456",
            ],
        ),
        2,
        &["does not ask for a one-time code"],
    );
    home.with_password(
        DEFAULT_PASSWORD,
        &[
            "login",
            "--dialect",
            "linkutm",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
            "--workspace",
            "acme",
        ],
    )
    .assert()
    .success();
    home.cmd(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no (sign in again"));
    fails(
        &mut home.cmd(&["refresh"]),
        2,
        &["does not support refresh"],
    );
    home.expire("default");
    home.cmd(&["status"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains("expired"))
        .stderr(predicate::str::contains("expired and cannot be refreshed"));
    fails(
        &mut home.cmd(&["token"]),
        3,
        &["session expired", "to sign in again"],
    );
    // An expired session that cannot be refreshed is over: the profile forgets it.
    assert!(!home.session_file("default").exists());
    fails(&mut home.cmd(&["status"]), 3, &["not signed in"]);
}

#[test]
fn linkutm_signup_with_emailed_code() {
    let fake = FakeLinkUtm::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let email = "new.user@example.com";
    let signup = [
        "signup",
        "--dialect",
        "linkutm",
        "--url",
        &url,
        "--email",
        email,
        "--name",
        "New User",
    ];
    // Client-side validation: nothing is sent.
    fails(
        &mut home.with_password("short", &signup),
        2,
        &["password", "at least 8"],
    );
    assert_eq!(fake.recorder().count("POST /api/v1/auth/send-otp"), 0);
    home.with_password("a-long-enough-password", &signup)
        .assert()
        .success()
        .stdout(predicate::str::contains("signup-verify CODE"));
    let code = fake.last_otp(email).unwrap();
    fails(
        &mut home.cmd(&["signup-verify", "12"]),
        2,
        &["otp", "still waiting"],
    );
    let wrong = if code == "999999" { "999998" } else { "999999" };
    fails(
        &mut home.cmd(&["signup-verify", wrong]),
        3,
        &["invalid one-time code", "still waiting"],
    );
    home.cmd(&["signup-verify", &code])
        .assert()
        .success()
        .stdout(predicate::str::contains("signed up and signed in"));
    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains(email));
    fails(
        &mut home.cmd(&["signup-verify", &code]),
        2,
        &["no signup is waiting"],
    );
    // The same email again: the server says it exists.
    fails(
        &mut home.with_password("a-long-enough-password", &signup),
        2,
        &["conflict"],
    );
}

#[test]
fn linkutm_password_reset_and_change() {
    let fake = FakeLinkUtm::builder()
        .rate_limit_per_minute(None)
        .start()
        .unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    home.login("default", "linkutm", &url, ALICE_EMAIL);
    // No --dialect/--url: the profile's backend.
    home.cmd(&["password", "forgot", "--email", ALICE_EMAIL])
        .assert()
        .success()
        .stdout(predicate::str::contains("password reset --token"));
    let token = fake.last_reset_token(ALICE_EMAIL).unwrap();
    let mut reset = home.cmd(&["password", "reset", "--token", &token]);
    reset.env("AUTHMUX_NEW_PASSWORD", "tiny");
    fails(&mut reset, 2, &["newPassword"]);
    fails(
        &mut home.cmd(&["password", "reset", "--token", &token]),
        2,
        &["AUTHMUX_NEW_PASSWORD"],
    );
    let mut reset = home.cmd(&["password", "reset", "--token", &token]);
    reset.env("AUTHMUX_NEW_PASSWORD", "brand-new-password");
    reset.assert().success();
    fails(
        &mut home.with_password(DEFAULT_PASSWORD, &["login", "--email", ALICE_EMAIL]),
        3,
        &["invalid credentials"],
    );
    home.with_password("brand-new-password", &["login", "--email", ALICE_EMAIL])
        .assert()
        .success();

    let mut change = home.with_password("brand-new-password", &["password", "change"]);
    change.env("AUTHMUX_NEW_PASSWORD", "newer-password-1");
    change
        .assert()
        .success()
        .stdout(predicate::str::contains("password changed"));
    home.cmd(&["password", "change", "--password-stdin"])
        .write_stdin("newer-password-1\nnewest-password-2\n")
        .assert()
        .success();
    fails(
        home.cmd(&["password", "change", "--password-stdin"])
            .write_stdin("only-one\n"),
        2,
        &["no line left"],
    );
    home.with_password("newest-password-2", &["login", "--email", ALICE_EMAIL])
        .assert()
        .success();
}

#[test]
fn linkutm_google_oauth() {
    let fake = FakeLinkUtm::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let target = ["--dialect", "linkutm", "--url", url.as_str()];
    home.cmd(&[&["providers"][..], &target].concat())
        .assert()
        .success()
        .stdout(predicate::str::contains("google"));
    let out = home
        .cmd(&[&["providers", "--json"][..], &target].concat())
        .assert()
        .success()
        .get_output()
        .clone();
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "google");
    home.cmd(&[&["oauth-url", "google"][..], &target].concat())
        .assert()
        .success()
        .stdout(predicate::str::ends_with("/api/v1/auth/google\n"));
    fails(
        &mut home.cmd(&[&["oauth-url", "github"][..], &target].concat()),
        2,
        &["google"],
    );
    fails(
        &mut home.cmd(
            &[
                &[
                    "oauth-complete",
                    "https://app.example.com/auth/google/callback?error=denied",
                ][..],
                &target,
            ]
            .concat(),
        ),
        2,
        &["no token"],
    );
    let callback = fake
        .simulate_google_login("gina@example.com", "Gina")
        .unwrap();
    home.cmd(&[&["oauth-complete", callback.as_str()][..], &target].concat())
        .assert()
        .success()
        .stdout(predicate::str::contains("gina@example.com"));
    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicate::str::contains("gina@example.com"));
}

#[test]
fn directus_sso_reset_and_missing_capabilities() {
    let fake = FakeDirectus::builder()
        .provider(SsoProvider::oauth2("github", ALICE_EMAIL).label("GitHub"))
        .start()
        .unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let target = ["--dialect", "directus", "--url", url.as_str()];
    home.cmd(&[&["providers"][..], &target].concat())
        .assert()
        .success()
        .stdout(predicate::str::contains("github").and(predicate::str::contains("GitHub")));
    home.cmd(
        &[
            &[
                "oauth-url",
                "github",
                "--redirect",
                "https://app.example.com/done",
            ][..],
            &target,
        ]
        .concat(),
    )
    .assert()
    .success()
    .stdout(predicate::str::contains("/auth/login/github?redirect="));
    fails(
        &mut home.cmd(
            &[
                &["oauth-complete", "https://app.example.com/done"][..],
                &target,
            ]
            .concat(),
        ),
        2,
        &["refresh cookie"],
    );
    fails(
        &mut home.cmd(&[&["oauth-url", "github", "--redirect", "nope"][..], &target].concat()),
        2,
        &["invalid --redirect"],
    );

    home.cmd(&[&["password", "forgot", "--email", ALICE_EMAIL][..], &target].concat())
        .assert()
        .success();
    let token = fake.last_reset_token().unwrap();
    let mut reset = home.cmd(&[&["password", "reset", "--token", &token][..], &target].concat());
    reset.env("AUTHMUX_NEW_PASSWORD", "directus-new-pw");
    reset.assert().success();
    home.login_with("directus-new-pw", &url);

    fails(
        &mut home.cmd(&["sessions", "list"]),
        2,
        &["does not support"],
    );
    fails(
        &mut home.cmd(&["password", "change"]),
        2,
        &["does not support password change"],
    );
    fails(
        &mut home.with_password(
            "whatever-password",
            &[
                &["signup", "--email", "x@example.com", "--name", "X"][..],
                &target,
            ]
            .concat(),
        ),
        2,
        &["does not support signup"],
    );
    let linxio = FakeLinxio::start().unwrap();
    fails(
        &mut home.cmd(&[
            "providers",
            "--dialect",
            "linxio",
            "--url",
            linxio.base_url().as_str(),
        ]),
        2,
        &["does not support OAuth"],
    );
}

impl Home {
    fn login_with(&self, password: &str, url: &str) {
        self.with_password(
            password,
            &[
                "login",
                "--dialect",
                "directus",
                "--url",
                url,
                "--email",
                ALICE_EMAIL,
            ],
        )
        .assert()
        .success();
    }
}

// ----- exit codes for failures -------------------------------------------------------

#[test]
fn bad_input_exits_2_with_one_line() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let login = |extra: &[&str]| {
        let mut args = vec!["login", "--email", ALICE_EMAIL];
        args.extend_from_slice(extra);
        home.with_password(DEFAULT_PASSWORD, &args)
    };
    fails(
        &mut login(&["--dialect", "okta", "--url", &url]),
        2,
        &["unknown dialect", "okta", "linxio, linkutm, directus"],
    );
    fails(
        &mut login(&["--dialect", "linxio", "--url", "not a url"]),
        2,
        &["invalid --url"],
    );
    fails(
        &mut login(&["--dialect", "linxio", "--url", "http://auth.example.com"]),
        2,
        &["refused", "auth.example.com"],
    );
    fails(
        &mut login(&["--dialect", "linxio", "--url", "ftp://auth.example.com"]),
        2,
        &["scheme"],
    );
    fails(
        &mut login(&["--dialect", "linxio", "--url", &url, "--mode", "cookie"]),
        2,
        &["--mode applies to --dialect directus only"],
    );
    fails(
        &mut login(&["--dialect", "directus", "--url", &url, "--mode", "bogus"]),
        2,
        &["mode"],
    );
    fails(
        &mut login(&[
            "--dialect",
            "linkutm",
            "--url",
            &url,
            "--workspace",
            "has space",
        ]),
        2,
        &["workspace"],
    );
    fails(
        &mut login(&["--dialect", "linxio", "--url", &url, "--timeout-ms", "0"]),
        2,
        &["--timeout-ms"],
    );
    fails(&mut login(&[]), 2, &["--dialect and --url are required"]);
    fails(
        &mut home.with_password(
            DEFAULT_PASSWORD,
            &["login", "--dialect", "linxio", "--url", &url],
        ),
        2,
        &["--email is required"],
    );
    fails(
        &mut home.with_password(
            DEFAULT_PASSWORD,
            &[
                "login",
                "--dialect",
                "linxio",
                "--url",
                &url,
                "--email",
                " ",
            ],
        ),
        2,
        &["email"],
    );
    fails(
        &mut home.cmd(&[
            "login",
            "--dialect",
            "linxio",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
        ]),
        2,
        &["no password", "AUTHMUX_PASSWORD", "--password-stdin"],
    );
    fails(
        home.cmd(&[
            "login",
            "--dialect",
            "linxio",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
            "--password-stdin",
        ])
        .write_stdin(""),
        2,
        &["standard input has no line"],
    );
    fails(
        &mut home.cmd(&["--profile", "../up", "token"]),
        2,
        &["profile name"],
    );
    fails(&mut home.cmd(&[]), 2, &["a command is required"]);
    fails(&mut home.cmd(&["tokn"]), 2, &["authmux --help"]);
    fails(&mut home.cmd(&["login", "--bogus"]), 2, &["--bogus"]);
    fails(
        &mut home.cmd(&["otp", "123456"]),
        2,
        &["no sign-in is waiting"],
    );
    fails(
        &mut home.cmd(&["signup-verify", "123456"]),
        2,
        &["no signup is waiting"],
    );
    fails(
        bare().args(["fake-server", "--dialect", "okta"]),
        2,
        &["unknown dialect"],
    );
    // Nothing was sent and no profile was written by any of these.
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGIN), 0);
    assert!(!home.profile_dir("default").join("config.json").exists());
    // Help and version are not errors.
    home.cmd(&["--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"));
    home.cmd(&["--version"]).assert().success();
}

#[test]
fn insecure_http_to_a_non_loopback_host_needs_the_opt_in() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    // The fake's own address written as an IPv4-mapped IPv6 address: the same socket,
    // but not a loopback host as far as the http:// check is concerned.
    let port = fake.base_url().port().unwrap();
    let url = format!("http://[::ffff:127.0.0.1]:{port}/");
    let login = [
        "login",
        "--dialect",
        "linxio",
        "--url",
        &url,
        "--email",
        ALICE_EMAIL,
    ];
    fails(
        &mut home.with_password(DEFAULT_PASSWORD, &login),
        2,
        &["refused to send credentials", "--allow-insecure-http"],
    );
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGIN), 0);
    home.with_password(
        DEFAULT_PASSWORD,
        &[&login[..], &["--allow-insecure-http"]].concat(),
    )
    .assert()
    .success();
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGIN), 1);
    // The opt-in is part of the profile, so later commands work too.
    home.cmd(&["whoami"]).assert().success();
}

#[test]
fn rejected_credentials_and_dead_sessions_exit_3() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    let login = |email: &str, password: &str| {
        home.with_password(
            password,
            &[
                "login",
                "--dialect",
                "linxio",
                "--url",
                &url,
                "--email",
                email,
            ],
        )
    };
    fails(
        &mut login(ALICE_EMAIL, "wrong password"),
        3,
        &["invalid credentials"],
    );
    fails(&mut login(SUSPENDED_EMAIL, DEFAULT_PASSWORD), 3, &[]);
    fails(&mut login(FORBIDDEN_EMAIL, DEFAULT_PASSWORD), 3, &[]);
    // A refresh the server refuses ends the session.
    login(ALICE_EMAIL, DEFAULT_PASSWORD).assert().success();
    fake.revoke_user(ALICE_EMAIL);
    home.expire("default");
    fails(
        &mut home.cmd(&["token"]),
        3,
        &["refresh token rejected", "sign in again"],
    );
    assert!(!home.session_file("default").exists());
}

#[test]
fn network_failures_exit_5() {
    let home = Home::new();
    let gone = {
        let fake = FakeLinxio::start().unwrap();
        url_of(fake.base_url())
    };
    let login = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "login",
            "--dialect",
            "linxio",
            "--url",
            url,
            "--email",
            ALICE_EMAIL,
        ];
        args.extend_from_slice(extra);
        home.with_password(DEFAULT_PASSWORD, &args)
    };
    fails(&mut login(&gone, &[]), 5, &["could not connect"]);

    let fake = FakeLinxio::start().unwrap();
    let url = url_of(fake.base_url());
    fake.faults()
        .push(linxio_endpoints::LOGIN, Fault::Status(503));
    fails(&mut login(&url, &[]), 5, &["503"]);
    fake.faults()
        .push(linxio_endpoints::LOGIN, Fault::MalformedJson);
    fails(&mut login(&url, &[]), 5, &["malformed"]);
    fake.faults().push(
        linxio_endpoints::LOGIN,
        Fault::Delay(Duration::from_millis(1500)),
    );
    fails(
        &mut login(&url, &["--timeout-ms", "150"]),
        5,
        &["did not answer in time"],
    );

    // A refresh that cannot reach the server keeps the session for later.
    login(&url, &[]).assert().success();
    home.expire("default");
    fake.faults()
        .push(linxio_endpoints::REFRESH, Fault::Status(503));
    fails(&mut home.cmd(&["token"]), 5, &["503"]);
    assert!(home.session_file("default").exists());
    home.cmd(&["token"]).assert().success();
}

#[test]
fn the_first_token_after_a_429_on_refresh_succeeds() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    home.login("default", "linxio", &url, ALICE_EMAIL);
    let old = home.access_token("default");
    home.expire("default");
    // A 429 with a Retry-After within the bound (2 s): the server did not process the
    // refresh, so it is retried inside the same call.
    fake.faults().push(
        linxio_endpoints::REFRESH,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    let before = fake.recorder().count(linxio_endpoints::REFRESH);
    home.cmd(&["token"]).assert().success();
    assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH) - before, 2);
    assert_ne!(home.access_token("default"), old);
    // Beyond the bound it is not waited for: exit 6 at once, after one request.
    home.expire("default");
    fake.faults().push(
        linxio_endpoints::REFRESH,
        Fault::RateLimited {
            retry_after_secs: 30,
        },
    );
    let before = fake.recorder().count(linxio_endpoints::REFRESH);
    fails(&mut home.cmd(&["token"]), 6, &["retry after 30s"]);
    assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH) - before, 1);
}

/// A TCP forwarder from `127.0.0.1:<port>` to `to` on threads of its own, which starts
/// after `delay` and stops (the port then refuses connections) when `stop` is set.
fn forward(
    port: u16,
    to: std::net::SocketAddr,
    delay: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        while !stop.load(Ordering::SeqCst) {
            let Ok((inbound, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            inbound.set_nonblocking(false).unwrap();
            let Ok(outbound) = std::net::TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    })
}

#[test]
fn the_first_token_after_a_refused_connection_succeeds_once_the_server_is_back() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let fake = FakeLinxio::start().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let home = Home::new();
    let stop = Arc::new(AtomicBool::new(false));
    let first = forward(port, fake.addr(), Duration::ZERO, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(50));
    home.login("default", "linxio", &url, ALICE_EMAIL);
    // The server goes away: the port refuses connections.
    stop.store(true, Ordering::SeqCst);
    first.join().unwrap();
    let old = home.access_token("default");
    home.expire("default");
    // While it stays away, the refresh (tried twice) fails as a connection failure and
    // the session is kept for later.
    fails(&mut home.cmd(&["token"]), 5, &["could not connect"]);
    assert!(home.session_file("default").exists());
    // It comes back 100 ms into the next command, before the refresh's one retry
    // (250 ms after the refused connection), provided the command starts within
    // 100 ms; the in-process test of the rule (`authmux-linxio/tests/fault_matrix.rs`)
    // refreshes at once, without a process start in between.
    let _back = forward(
        port,
        fake.addr(),
        Duration::from_millis(100),
        Arc::new(AtomicBool::new(false)),
    );
    let before = fake.recorder().count(linxio_endpoints::REFRESH);
    home.cmd(&["token"]).assert().success();
    assert_ne!(home.access_token("default"), old);
    // The refused attempt never reached the server: one refresh request in all.
    assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH) - before, 1);
}

#[test]
fn rate_limits_exit_6_with_the_retry_after() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    fake.faults().push(
        linxio_endpoints::LOGIN,
        Fault::RateLimited {
            retry_after_secs: 42,
        },
    );
    fails(
        &mut home.with_password(
            DEFAULT_PASSWORD,
            &[
                "login",
                "--dialect",
                "linxio",
                "--url",
                fake.base_url().as_str(),
                "--email",
                ALICE_EMAIL,
            ],
        ),
        6,
        &["rate limited", "retry after 42s"],
    );
}

#[test]
fn a_corrupt_profile_is_reported_and_left_byte_for_byte() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(fake.base_url());
    home.login("default", "linxio", &url, ALICE_EMAIL);
    let session = home.session_file("default");
    let garbage = b"{\"version\": 3, \"session\": {\"tokens\": [trunc";
    std::fs::write(&session, garbage).unwrap();
    for args in [
        &["token"][..],
        &["whoami"],
        &["status"],
        &["refresh"],
        &["logout"],
        &["sessions", "list"],
    ] {
        fails(&mut home.cmd(args), 3, &["corrupt", "left untouched"]);
        assert_eq!(std::fs::read(&session).unwrap(), garbage, "{args:?}");
    }
    fails(
        &mut home.with_password(DEFAULT_PASSWORD, &["login", "--email", ALICE_EMAIL]),
        3,
        &["corrupt", "left untouched"],
    );
    assert_eq!(std::fs::read(&session).unwrap(), garbage);
    assert_eq!(
        fake.recorder().count(linxio_endpoints::LOGIN),
        1,
        "nothing sent"
    );

    // The settings file too.
    let config = home.profile_dir("default").join("config.json");
    std::fs::write(&config, b"not json").unwrap();
    std::fs::remove_file(&session).unwrap();
    fails(
        &mut home.cmd(&["token"]),
        3,
        &["corrupt", "config.json", "left untouched"],
    );
    assert_eq!(std::fs::read(&config).unwrap(), b"not json");
}

// ----- secrets ---------------------------------------------------------------------

#[test]
fn no_secret_reaches_stdout_or_stderr() {
    const PASSWORD: &str = "Pa55-very-secret-Xyz-123";
    const NEW_PASSWORD: &str = "N3w-very-secret-Qrs-456";
    let linxio = FakeLinxio::builder()
        .user(User::new("secret@example.com", PASSWORD).otp("654321"))
        .start()
        .unwrap();
    let linkutm = FakeLinkUtm::builder()
        .rate_limit_per_minute(None)
        .user(User::new("secret@example.com", PASSWORD))
        .start()
        .unwrap();
    let home = Home::new();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut run = |label: &str, cmd: &mut Command| {
        let output = cmd.output().unwrap();
        outputs.push((label.to_owned(), output));
    };
    let remember = |home: &Home, tokens: &mut Vec<String>| {
        if home.session_file("default").exists() {
            let tokens_json = &home.session("default")["session"]["tokens"];
            for key in ["access", "refresh"] {
                if let Some(t) = tokens_json[key].as_str() {
                    tokens.push(t.to_owned());
                }
            }
        }
    };
    let linxio_url = url_of(linxio.base_url());
    let login = [
        "login",
        "--dialect",
        "linxio",
        "--url",
        &linxio_url,
        "--email",
        "secret@example.com",
    ];
    run(
        "wrong password",
        &mut home.with_password("Wr0ng-secret-Abc-789", &login),
    );
    run("login", &mut home.with_password(PASSWORD, &login));
    run("otp wrong", &mut home.cmd(&["otp", "111111"]));
    run("otp", &mut home.cmd(&["otp", "654321"]));
    remember(&home, &mut tokens);
    let token = home.cmd(&["token"]).output().unwrap();
    tokens.push(text(&token.stdout).trim_end().to_owned());
    for args in [
        &["whoami"][..],
        &["whoami", "--json"],
        &["status"],
        &["status", "--json"],
        &["refresh"],
        &["sessions", "list"],
    ] {
        run(&args.join(" "), &mut home.cmd(args));
        remember(&home, &mut tokens);
    }
    home.expire("default");
    let token = home.cmd(&["token"]).output().unwrap();
    tokens.push(text(&token.stdout).trim_end().to_owned());
    remember(&home, &mut tokens);
    run("logout", &mut home.cmd(&["logout"]));

    let linkutm_url = url_of(linkutm.base_url());
    run(
        "linkutm login",
        &mut home.with_password(
            PASSWORD,
            &[
                "login",
                "--dialect",
                "linkutm",
                "--url",
                &linkutm_url,
                "--email",
                "secret@example.com",
            ],
        ),
    );
    remember(&home, &mut tokens);
    let mut change = home.with_password(PASSWORD, &["password", "change"]);
    change.env("AUTHMUX_NEW_PASSWORD", NEW_PASSWORD);
    run("password change", &mut change);
    run(
        "sessions list",
        &mut home.cmd(&["sessions", "list", "--json"]),
    );
    let mut short = home.cmd(&[
        "password",
        "reset",
        "--token",
        "reset-secret-token-0123456789",
    ]);
    short.env("AUTHMUX_NEW_PASSWORD", "S3cr");
    run("password reset", &mut short);
    run("logout", &mut home.cmd(&["logout"]));

    let secrets: Vec<&str> = [
        PASSWORD,
        NEW_PASSWORD,
        "Wr0ng-secret-Abc-789",
        "654321",
        "111111",
    ]
    .into_iter()
    .chain(["reset-secret-token-0123456789"])
    .chain(tokens.iter().map(String::as_str))
    .collect();
    assert!(tokens.len() >= 6, "tokens seen: {}", tokens.len());
    for (label, output) in &outputs {
        for stream in [&output.stdout, &output.stderr] {
            let shown = text(stream);
            for secret in &secrets {
                assert!(
                    !shown.contains(secret),
                    "{label}: a secret was printed: {shown}"
                );
            }
        }
    }
    // The runs above did what they should (so the absence of secrets means something).
    let codes: Vec<Option<i32>> = outputs.iter().map(|(_, o)| o.status.code()).collect();
    assert_eq!(
        codes,
        [
            Some(3),
            Some(4),
            Some(3),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(2),
            Some(0),
            Some(0),
            Some(0),
            Some(0),
            Some(2),
            Some(0)
        ],
        "{:?}",
        outputs
            .iter()
            .map(|(l, o)| format!("{l}: {}", text(&o.stderr)))
            .collect::<Vec<_>>()
    );
    // The secrets are where they belong.
    assert!(!tokens.iter().any(String::is_empty));
}

// ----- where profiles live, the demo, the standalone fake --------------------------

#[test]
fn authmux_home_and_profiles() {
    let fake = FakeLinxio::start().unwrap();
    let env_home = tempfile::tempdir().unwrap();
    let url = url_of(fake.base_url());
    bare()
        .env("AUTHMUX_HOME", env_home.path())
        .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
        .args([
            "--profile",
            "work",
            "login",
            "--dialect",
            "linxio",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
        ])
        .assert()
        .success();
    assert!(env_home.path().join("profiles/work/session.json").exists());
    bare()
        .env("AUTHMUX_HOME", env_home.path())
        .args(["--profile", "work", "whoami"])
        .assert()
        .success();
    // --home wins over the variable; profiles are separate.
    let home = Home::new();
    let mut cmd = home.cmd(&["--profile", "work", "token"]);
    cmd.env("AUTHMUX_HOME", env_home.path());
    fails(&mut cmd, 3, &["not signed in", "--profile work"]);
    bare()
        .env("AUTHMUX_HOME", env_home.path())
        .args(["token"])
        .assert()
        .code(3);
}

#[test]
fn demo_runs_the_lifecycle_on_every_dialect() {
    let out = bare().arg("demo").assert().success().get_output().clone();
    let stdout = text(&out.stdout);
    for dialect in ["== linxio", "== linkutm", "== directus"] {
        assert!(stdout.contains(dialect), "{stdout}");
    }
    assert_eq!(stdout.matches("accepted: signed in").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("after 1 refresh").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches("this dialect has no refresh").count(),
        1,
        "{stdout}"
    );
    assert_eq!(stdout.matches("none: not signed in").count(), 3, "{stdout}");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn fake_server_runs_standalone_until_killed() {
    let mut child = StdCommand::new(BIN)
        .args(["fake-server", "--dialect", "linkutm"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("fake linkutm listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let home = Home::new();
    home.login("default", "linkutm", &url, ALICE_EMAIL);
    home.cmd(&["whoami"]).assert().success();
    child.kill().unwrap();
    child.wait().unwrap();
}
