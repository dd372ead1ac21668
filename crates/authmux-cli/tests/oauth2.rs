//! End-to-end tests of `authmux login --dialect oauth2 ...` against the in-process
//! `FakeOAuth2`: the device flow (the test plays the user with the code the command
//! prints), the browser flow (the test plays the browser with the URL it prints),
//! client credentials with the secret read from an environment variable that is never
//! saved, and four `token` processes sharing one profile after expiry refreshing once
//! with a rotating refresh token, so that the server's reuse detection never fires;
//! the last also against the real `oidc-provider` when `AUTHMUX_OIDC_ISSUER` is set
//! (`cargo xtask ci` sets it), with a loud skip otherwise.
#![allow(clippy::print_stderr, reason = "a skipped live test says so on stderr")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use authmux_testkit::FakeOAuth2;
use authmux_testkit::faults::Fault;
use authmux_testkit::oauth2::{CLIENT_SECRET, CONFIDENTIAL_CLIENT_ID, PUBLIC_CLIENT_ID, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");
const SCOPE: &str = "openid email offline_access";

struct Home {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home");
        Self { _dir: dir, path }
    }

    fn cmd(&self, profile: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("AUTHMUX_PASSWORD")
            .env_remove("AUTHMUX_HOME")
            .arg("--home")
            .arg(&self.path)
            .args(["--profile", profile])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.cmd(profile, args).output().unwrap()
    }

    fn file(&self, profile: &str, name: &str) -> PathBuf {
        self.path.join("profiles").join(profile).join(name)
    }

    fn session(&self, profile: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.file(profile, "session.json")).unwrap()).unwrap()
    }

    /// Moves the stored token's expiry into the past.
    fn expire(&self, profile: &str) {
        let mut envelope = self.session(profile);
        let tokens = &mut envelope["session"]["tokens"];
        tokens["issued_at"] = "2001-01-01T00:00:00Z".into();
        tokens["expires_at"] = "2001-01-01T00:15:00Z".into();
        std::fs::write(
            self.file(profile, "session.json"),
            serde_json::to_vec_pretty(&envelope).unwrap(),
        )
        .unwrap();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

/// Spawns `cmd` and hands its stderr lines over a channel as they come.
fn spawn_reading_stderr(mut cmd: Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// The first stderr line containing `needle`.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no line with {needle:?} on stderr"));
        if line.contains(needle) {
            return line;
        }
    }
}

/// `login --device` into `profile`, the user approving with the printed code.
fn device_login(home: &Home, fake: &FakeOAuth2, profile: &str) {
    let url = fake.base_url().to_string();
    let cmd = home.cmd(
        profile,
        &[
            "login",
            "--dialect",
            "oauth2",
            "--url",
            &url,
            "--client-id",
            PUBLIC_CLIENT_ID,
            "--scope",
            SCOPE,
            "--device",
        ],
    );
    let (child, rx) = spawn_reading_stderr(cmd);
    let line = line_with(&rx, "enter the code");
    let code = line.rsplit(' ').next().unwrap().trim();
    assert!(fake.approve_device(code, ALICE_EMAIL), "{line}");
    let output = child.wait_with_output().unwrap();
    let done = ok(&output);
    assert!(
        done.contains("signed in to oauth2") && done.contains(ALICE_EMAIL),
        "{done}"
    );
}

#[test]
fn device_login_then_every_session_command() {
    let fake = FakeOAuth2::start().unwrap();
    let home = Home::new();
    device_login(&home, &fake, "p");
    let whoami = ok(&home.run("p", &["whoami"]));
    assert!(whoami.contains(ALICE_EMAIL), "{whoami}");
    let token = ok(&home.run("p", &["token"]));
    assert_eq!(
        token.trim(),
        home.session("p")["session"]["tokens"]["access"]
    );
    let before = home.session("p")["session"]["tokens"]["refresh"].clone();
    ok(&home.run("p", &["refresh"]));
    assert_ne!(
        home.session("p")["session"]["tokens"]["refresh"],
        before,
        "rotated"
    );
    let status = ok(&home.run("p", &["status", "--json"]));
    assert!(status.contains("oauth2"), "{status}");
    let logout = home.run("p", &["logout"]);
    ok(&logout);
    assert_eq!(fake.live_grants(), 0, "logout revoked the grant");
}

#[test]
fn four_token_processes_on_one_profile_refresh_once_and_the_grant_survives() {
    let fake = FakeOAuth2::start().unwrap();
    let home = Home::new();
    device_login(&home, &fake, "shared");
    let before = home.session("shared")["session"]["tokens"]["refresh"].clone();
    home.expire("shared");
    // A slow refresh answer, so that the processes certainly overlap.
    fake.server()
        .faults()
        .push(endpoints::TOKEN, Fault::Delay(Duration::from_millis(300)));
    let children: Vec<Child> = (0..4)
        .map(|_| {
            home.cmd("shared", &["token"])
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
    let after = home.session("shared")["session"]["tokens"].clone();
    for output in &outputs {
        assert_eq!(ok(output).trim(), after["access"].as_str().unwrap());
    }
    assert_ne!(after["refresh"], before);
    assert_eq!(
        fake.server().recorder().refresh_tokens().len(),
        1,
        "one refresh"
    );
    // The rotating grant survived (a second refresh with the spent token would have
    // revoked it): the session works and refreshes again.
    assert_eq!(fake.live_grants(), 1);
    ok(&home.run("shared", &["whoami"]));
    ok(&home.run("shared", &["refresh"]));
    assert_eq!(fake.live_grants(), 1);
}

#[test]
fn client_credentials_read_the_secret_from_the_environment_and_never_save_it() {
    let fake = FakeOAuth2::start().unwrap();
    let home = Home::new();
    let url = fake.base_url().to_string();
    let mut login = home.cmd(
        "svc",
        &[
            "login",
            "--dialect",
            "oauth2",
            "--url",
            &url,
            "--client-id",
            CONFIDENTIAL_CLIENT_ID,
            "--client-secret-env",
            "SVC_SECRET",
            "--scope",
            "api",
            "--client-credentials",
        ],
    );
    let output = login.env("SVC_SECRET", CLIENT_SECRET).output().unwrap();
    ok(&output);
    assert!(!text(&output.stderr).contains(CLIENT_SECRET));
    for file in ["config.json", "session.json"] {
        let saved = std::fs::read_to_string(home.file("svc", file)).unwrap();
        assert!(!saved.contains(CLIENT_SECRET), "{file} holds the secret");
    }
    let config = std::fs::read_to_string(home.file("svc", "config.json")).unwrap();
    assert!(config.contains("SVC_SECRET"), "{config}");
    home.expire("svc");
    let first = ok(&home
        .cmd("svc", &["token"])
        .env("SVC_SECRET", CLIENT_SECRET)
        .output()
        .unwrap());
    assert!(!first.trim().is_empty());
    // Without the variable, the refresh cannot authenticate, and says which variable.
    home.expire("svc");
    let missing = home.run("svc", &["token"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("SVC_SECRET"),
        "{}",
        text(&missing.stderr)
    );
    let whoami = ok(&home
        .cmd("svc", &["whoami"])
        .env("SVC_SECRET", CLIENT_SECRET)
        .output()
        .unwrap());
    assert!(whoami.contains(CONFIDENTIAL_CLIENT_ID), "{whoami}");
}

/// Plays the browser on the fake's login form: GET the authorization URL, POST the form
/// with the user's email and password, follow the redirect to the CLI's listener.
fn play_browser(authorize: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use authmux::Transport;
        let transport = authmux::ReqwestTransport::new().unwrap();
        let get = |url: &str| http::Request::get(url).body(bytes::Bytes::new()).unwrap();
        let page = transport.send(get(authorize)).await.unwrap();
        let html = text(page.body());
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        let mut rest = html.as_str();
        while let Some(i) = rest.find("<input type=\"hidden\" name=\"") {
            let tail = &rest[i + 27..];
            let name_end = tail.find('"').unwrap();
            let name = &tail[..name_end];
            let value_start = tail.find("value=\"").unwrap() + 7;
            let value_end = value_start + tail[value_start..].find('"').unwrap();
            let value = tail[value_start..value_end]
                .replace("&amp;", "&")
                .replace("&quot;", "\"");
            form.append_pair(name, &value);
            rest = &tail[value_end..];
        }
        form.append_pair("login", ALICE_EMAIL)
            .append_pair("password", DEFAULT_PASSWORD);
        let target = url::Url::parse(authorize)
            .unwrap()
            .join("/authorize")
            .unwrap();
        let answer = transport
            .send(
                http::Request::post(target.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(bytes::Bytes::from(form.finish()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let location = answer.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with("http://127.0.0.1:"), "{location}");
        let back = transport.send(get(&location)).await.unwrap();
        assert_eq!(back.status(), 200);
    });
}

#[test]
fn browser_login_through_the_loopback_redirect() {
    let fake = FakeOAuth2::start().unwrap();
    let home = Home::new();
    let url = fake.base_url().to_string();
    let cmd = home.cmd(
        "web",
        &[
            "login",
            "--dialect",
            "oauth2",
            "--url",
            &url,
            "--client-id",
            PUBLIC_CLIENT_ID,
            "--scope",
            SCOPE,
            "--browser",
        ],
    );
    let (child, rx) = spawn_reading_stderr(cmd);
    let line = line_with(&rx, "to sign in, open ");
    let authorize = line
        .split("to sign in, open ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    play_browser(&authorize);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "login --browser failed");
    let whoami = ok(&home.run("web", &["whoami"]));
    assert!(whoami.contains(ALICE_EMAIL), "{whoami}");
}

#[test]
fn oauth2_flags_are_checked() {
    let home = Home::new();
    let no_client = home.run(
        "x",
        &[
            "login",
            "--dialect",
            "oauth2",
            "--url",
            "https://login.example.com",
            "--device",
        ],
    );
    assert_eq!(
        no_client.status.code(),
        Some(2),
        "{}",
        text(&no_client.stderr)
    );
    assert!(text(&no_client.stderr).contains("--client-id"));
    let wrong_dialect = home.run(
        "x",
        &[
            "login",
            "--dialect",
            "linxio",
            "--url",
            "https://api.example.com",
            "--client-id",
            "c",
            "--device",
        ],
    );
    assert_eq!(wrong_dialect.status.code(), Some(2));
    assert!(text(&wrong_dialect.stderr).contains("oauth2 only"));
    let both = home.run("x", &["login", "--device", "--browser"]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn live_four_token_processes_on_one_profile_against_oidc_provider() {
    let Some(issuer) = std::env::var("AUTHMUX_OIDC_ISSUER")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!(
            "\n*** SKIPPED live_four_token_processes_on_one_profile_against_oidc_provider: \
             AUTHMUX_OIDC_ISSUER is not set, so the real OpenID provider was not tested. Run \
             `cargo xtask oidc start` and `eval \"$(cargo xtask oidc env)\"`, or `cargo xtask ci`. ***\n"
        );
        return;
    };
    let password = std::env::var("AUTHMUX_OIDC_PASSWORD").expect("AUTHMUX_OIDC_PASSWORD");
    let home = Home::new();
    let cmd = home.cmd(
        "live",
        &[
            "login",
            "--dialect",
            "oauth2",
            "--url",
            &issuer,
            "--client-id",
            "authmux-cli",
            "--scope",
            SCOPE,
            "--device",
        ],
    );
    let (child, rx) = spawn_reading_stderr(cmd);
    let line = line_with(&rx, "enter the code");
    let uri = line
        .split("open ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    let code = line.rsplit(' ').next().unwrap().trim().to_owned();
    // The test plays the user at the verification URI.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = std::sync::Arc::new(authmux::ReqwestTransport::new().unwrap());
        authmux_testkit::browser::Browser::new(transport)
            .run(
                &uri.parse().unwrap(),
                None,
                &authmux::Credentials::new("alice@example.com", password.as_str()),
                authmux_testkit::browser::Decision::Allow,
                Some(&code),
            )
            .await
            .unwrap();
    });
    let output = child.wait_with_output().unwrap();
    assert!(ok(&output).contains("alice@example.com"));
    let before = home.session("live")["session"]["tokens"]["refresh"].clone();
    home.expire("live");
    let children: Vec<Child> = (0..4)
        .map(|_| {
            home.cmd("live", &["token"])
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
    let after = home.session("live")["session"]["tokens"].clone();
    for output in &outputs {
        assert_eq!(ok(output).trim(), after["access"].as_str().unwrap());
    }
    assert_ne!(
        after["refresh"], before,
        "oidc-provider rotated the refresh token"
    );
    // Had two processes refreshed with the same token, oidc-provider would have revoked
    // the grant: it is alive, and refreshes again.
    assert!(ok(&home.run("live", &["whoami"])).contains("alice@example.com"));
    ok(&home.run("live", &["refresh"]));
    ok(&home.run("live", &["logout"]));
}
