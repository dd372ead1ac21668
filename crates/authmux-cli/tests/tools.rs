//! End-to-end tests of the commands for people and scripts: the inline one-time code at
//! a terminal (a pseudo-terminal), `exec`, `token --min-valid`, `proxy`, the OS
//! keychain, completions and the manual page. Against fakes started in this process,
//! each test with its own temporary home.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, SystemTime};

use assert_cmd::Command;
use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::linkutm::endpoints as linkutm_endpoints;
use authmux_testkit::linxio::endpoints as linxio_endpoints;
use authmux_testkit::server::FakeResponse;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD, OTP_CODE, OTP_EMAIL};
use authmux_testkit::{FakeLinkUtm, FakeLinxio, Fault, ManualClock, ServerHandle};
use serde_json::{Value, json};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");

/// A temporary home folder and a way to run `authmux` in it.
struct Home {
    _dir: TempDir,
    path: PathBuf,
}

impl Home {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home");
        Self { _dir: dir, path }
    }

    /// `authmux --home <tmp> <args>` with a clean environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("AUTHMUX_PASSWORD")
            .env_remove("AUTHMUX_NEW_PASSWORD")
            .env_remove("AUTHMUX_HOME")
            .env_remove("AUTHMUX_PROXY_TOKEN")
            .timeout(Duration::from_secs(60))
            .arg("--home")
            .arg(&self.path)
            .args(args);
        cmd
    }

    fn std_cmd(&self, args: &[&str]) -> StdCommand {
        let mut cmd = StdCommand::new(BIN);
        cmd.env_remove("AUTHMUX_PASSWORD")
            .env_remove("AUTHMUX_NEW_PASSWORD")
            .env_remove("AUTHMUX_HOME")
            .env_remove("AUTHMUX_PROXY_TOKEN")
            .arg("--home")
            .arg(&self.path)
            .args(args);
        cmd
    }

    fn login(&self, dialect: &str, url: &str, email: &str, extra: &[&str]) {
        let mut args = vec![
            "login",
            "--dialect",
            dialect,
            "--url",
            url,
            "--email",
            email,
        ];
        args.extend_from_slice(extra);
        let out = self
            .cmd(&args)
            .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "login: {}", text(&out.stderr));
    }

    fn session_file(&self) -> PathBuf {
        self.path.join("profiles/default/session.json")
    }

    fn session(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.session_file()).unwrap()).unwrap()
    }

    fn token(&self, key: &str) -> String {
        self.session()["session"]["tokens"][key]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Rewrites the stored token's expiry to `left` from now (a lifetime of 15 min).
    fn expires_in(&self, left: Duration) {
        let mut envelope = self.session();
        let now = SystemTime::now();
        let at = now + left;
        let issued = at - Duration::from_secs(900);
        let tokens = &mut envelope["session"]["tokens"];
        tokens["issued_at"] = rfc3339(issued).into();
        tokens["expires_at"] = rfc3339(at).into();
        std::fs::write(
            self.session_file(),
            serde_json::to_vec_pretty(&envelope).unwrap(),
        )
        .unwrap();
    }
}

fn rfc3339(at: SystemTime) -> String {
    authmux::timestamp::format(at)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn url_of(server: &ServerHandle) -> String {
    server.base_url().as_str().to_owned()
}

// ----- the inline one-time code (a pseudo-terminal) ---------------------------------

/// Runs `authmux login` in a pseudo-terminal: types the password at the hidden prompt,
/// then each of `codes` at the code prompt; returns everything the terminal showed and
/// the exit code.
#[cfg(unix)]
fn login_at_a_terminal(home: &Home, args: &[&str], codes: &[&str]) -> (String, i32) {
    use rexpect::process::WaitStatus;
    let mut cmd = home.std_cmd(args);
    cmd.env("TERM", "dumb");
    let mut session = rexpect::session::spawn_command(cmd, Some(20_000)).unwrap();
    let mut seen = String::new();
    seen.push_str(&session.exp_string("Password for").unwrap());
    seen.push_str(&session.exp_string(": ").unwrap());
    session.send_line(DEFAULT_PASSWORD).unwrap();
    for code in codes {
        seen.push_str(&session.exp_string("One-time code for").unwrap());
        seen.push_str(&session.exp_string(": ").unwrap());
        session.send_line(code).unwrap();
    }
    seen.push_str(&session.exp_eof().unwrap());
    let status = session.process().wait().unwrap();
    let code = match status {
        WaitStatus::Exited(_, code) => code,
        other => panic!("authmux did not exit normally: {other:?}"),
    };
    (seen, code)
}

#[cfg(unix)]
#[test]
fn inline_one_time_code_at_a_terminal_linxio() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(&fake);
    let login = [
        "login",
        "--dialect",
        "linxio",
        "--url",
        &url,
        "--email",
        OTP_EMAIL,
    ];
    // A wrong code first: asked again, in the same process, without the password.
    let (seen, code) = login_at_a_terminal(&home, &login, &["000000", OTP_CODE]);
    assert_eq!(code, 0, "{seen}");
    assert!(seen.contains("not accepted; try again"), "{seen}");
    assert!(seen.contains("signed in to linxio"), "{seen}");
    assert!(
        !seen.contains(DEFAULT_PASSWORD),
        "the password was echoed: {seen}"
    );
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGIN), 1);
    assert_eq!(fake.recorder().count(linxio_endpoints::LOGIN_OTP), 2);
    assert!(!home.path.join("profiles/default/otp.json").exists());
    home.cmd(&["whoami"]).assert().success();

    // An empty line: the login waits for `authmux otp CODE`, as without a terminal.
    home.cmd(&["logout"]).assert().success();
    let (seen, code) = login_at_a_terminal(&home, &login, &[""]);
    assert_eq!(code, 4, "{seen}");
    assert!(seen.contains("otp CODE"), "{seen}");
    home.cmd(&["otp", OTP_CODE]).assert().success();
}

#[cfg(unix)]
#[test]
fn inline_one_time_code_at_a_terminal_directus() {
    // A frozen clock keeps the TOTP code stable for the whole test.
    let fake = FakeDirectus::builder()
        .clock(ManualClock::starting_now())
        .start()
        .unwrap();
    let home = Home::new();
    let url = url_of(fake.server());
    let code = fake.totp_code(OTP_EMAIL).unwrap();
    // Directus needs the password again with the code: the one typed once is reused
    // from memory.
    let (seen, exit) = login_at_a_terminal(
        &home,
        &[
            "login",
            "--dialect",
            "directus",
            "--url",
            &url,
            "--email",
            OTP_EMAIL,
        ],
        &[&code],
    );
    assert_eq!(exit, 0, "{seen}");
    assert!(seen.contains("signed in to directus"), "{seen}");
    assert!(!seen.contains(DEFAULT_PASSWORD), "{seen}");
    // The first prompt was consumed by the expectation; a second one would show here.
    assert!(!seen.contains("Password for"), "asked twice: {seen}");
    assert!(!home.path.join("profiles/default/otp.json").exists());
    home.cmd(&["whoami"])
        .assert()
        .success()
        .stdout(predicates::str::contains(OTP_EMAIL));
}

// ----- token --min-valid and exec -----------------------------------------------------

#[test]
fn token_min_valid_refreshes_only_when_needed() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    home.login("linxio", &url_of(&fake), ALICE_EMAIL, &[]);
    let refreshes = || fake.recorder().count(linxio_endpoints::REFRESH);
    home.expires_in(Duration::from_secs(180));
    let first = home.token("access");
    let out = home.cmd(&["token", "--min-valid", "2m"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim_end(), first);
    assert_eq!(refreshes(), 0, "3 min left is at least 2 min: no refresh");

    let out = home.cmd(&["token", "--min-valid", "5m"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(refreshes(), 1, "3 min left is less than 5 min: one refresh");
    let second = home.token("access");
    assert_ne!(second, first);
    assert_eq!(text(&out.stdout).trim_end(), second);

    // A refreshed token lives 15 min: asking for more than that cannot be satisfied.
    let out = home.cmd(&["token", "--min-valid", "1h"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("less than --min-valid"),
        "{}",
        text(&out.stderr)
    );
    let out = home
        .cmd(&["token", "--min-valid", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn exec_passes_the_token_in_the_environment_and_the_exit_code_through() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(&fake);
    home.login("linxio", &url, ALICE_EMAIL, &[]);
    let token = home.token("access");

    // The token and URL are in the environment; stdin, stdout and stderr are the
    // command's; the password variable is not passed on; the exit code is the command's.
    let script = r#"
        test -n "$AUTHMUX_TOKEN" || exit 90
        test -z "$AUTHMUX_PASSWORD" || exit 91
        printf '%s\n' "$AUTHMUX_TOKEN"
        printf '%s\n' "$AUTHMUX_URL"
        cat
        echo to-stderr >&2
        tr '\0' ' ' < /proc/$$/cmdline
        echo
        exit 7
    "#;
    let out = home
        .cmd(&["exec", "--", "sh", "-c", script])
        .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
        .write_stdin("from stdin\n")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout} {}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], token);
    assert_eq!(lines[1], url);
    assert_eq!(lines[2], "from stdin");
    // The command line the command ran with holds no token.
    assert!(lines[3].starts_with("sh -c"), "{stdout}");
    assert!(!lines[3].contains(&token), "{stdout}");
    assert_eq!(text(&out.stderr), "to-stderr\n");

    // Another variable name; the token is usable against the backend as it is.
    let out = home
        .cmd(&[
            "exec",
            "--env-var",
            "API_TOKEN",
            "--",
            "sh",
            "-c",
            "test -z \"$AUTHMUX_TOKEN\" && printf '%s' \"$API_TOKEN\"",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), token);

    // --min-valid (default 60 s): a token with 30 s left is refreshed first.
    home.expires_in(Duration::from_secs(30));
    let out = home
        .cmd(&["exec", "--", "sh", "-c", "printf '%s' \"$AUTHMUX_TOKEN\""])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fake.recorder().count(linxio_endpoints::REFRESH), 1);
    assert_eq!(text(&out.stdout), home.token("access"));
    assert_ne!(text(&out.stdout), token);

    // A command that does not exist: 127; a bad variable name: 2; not signed in: 3.
    let out = home
        .cmd(&["exec", "--", "/nonexistent/authmux-test-command"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = home
        .cmd(&["exec", "--env-var", "A=B", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    home.cmd(&["logout"]).assert().success();
    let out = home.cmd(&["exec", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

// ----- completions and the manual -------------------------------------------------------

#[test]
fn completions_and_manual_page() {
    let home = Home::new();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef authmux"),
        ("fish", "complete -c authmux"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = home.cmd(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {marker} missing");
        for command in ["login", "proxy", "exec", "token"] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
    }
    let out = home.cmd(&["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = home.cmd(&["man"]).output().unwrap();
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH authmux"),
        "{page}"
    );
    assert!(page.contains("proxy") && page.contains("exec"), "{page}");
}

// ----- the proxy ----------------------------------------------------------------------

/// A running `authmux proxy`, killed when dropped.
struct Proxy {
    child: Child,
    url: String,
    addr: String,
}

impl Proxy {
    fn start(home: &Home, extra: &[&str]) -> Proxy {
        let mut args = vec!["proxy", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = home
            .std_cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        let addr = url.trim_start_matches("http://").to_owned();
        Proxy { child, url, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Peak resident memory of the proxy process, in bytes (Linux).
    fn peak_memory(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Sends SIGTERM and returns the exit status and standard output left.
    #[cfg(unix)]
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = StdCommand::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One raw HTTP/1.1 request; returns the status and the whole answer.
fn raw(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = text(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What one dialect's fake offers the proxy tests.
struct Backend {
    dialect: &'static str,
    /// An authorized GET and the piece of its answer that shows it worked.
    get: (&'static str, &'static str),
    /// The fake's endpoint name for it (for counters and faults).
    get_endpoint: &'static str,
    /// An authorized POST, its body and the status it answers.
    post: (&'static str, Value, u16),
    post_endpoint: &'static str,
    refresh_endpoint: Option<&'static str>,
    extra_login: &'static [&'static str],
}

fn check_authorized_requests(home: &Home, server: &ServerHandle, backend: &Backend) {
    let dialect = backend.dialect;
    let proxy = Proxy::start(home, &[]);
    let token = home.token("access");
    runtime().block_on(async {
        let client = client();
        // An authorized GET, with a client Authorization that must not get through.
        let answer = client
            .get(proxy.url(backend.get.0))
            .header("authorization", "Bearer the-clients-own")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{dialect}");
        let body = answer.text().await.unwrap();
        assert!(body.contains(backend.get.1), "{dialect}: {body}");
        let seen = server.recorder().last(backend.get_endpoint).unwrap();
        assert_eq!(seen.bearer(), Some(token.as_str()), "{dialect}");
        assert_eq!(
            server
                .recorder()
                .header_values(backend.get_endpoint, "authorization")
                .len(),
            1
        );

        // An authorized POST with a JSON body.
        let (path, body, status) = &backend.post;
        let answer = client
            .post(proxy.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), *status, "{dialect} POST");
        let seen = server.recorder().last(backend.post_endpoint).unwrap();
        assert_eq!(seen.bearer(), Some(token.as_str()), "{dialect}");
        assert_eq!(seen.json().as_ref(), Some(body), "{dialect}");
    });

    // A foreign Host, or an absolute URI naming another host: refused, nothing sent.
    let before = server.recorder().total();
    for request in [
        format!(
            "GET {} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            backend.get.0
        ),
        format!(
            "GET http://evil.example{} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            backend.get.0
        ),
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n",
            backend.get.0, proxy.addr
        ),
    ] {
        let (status, answer) = raw(&proxy.addr, &request);
        assert!(
            status == 421 || status == 403,
            "{dialect}: {request:?} -> {answer}"
        );
        assert!(answer.contains("x-authmux-error"), "{answer}");
    }
    assert_eq!(
        server.recorder().total(),
        before,
        "{dialect}: nothing forwarded"
    );
    // The loopback names are fine.
    let (status, answer) = raw(
        &proxy.addr,
        &format!(
            "GET {} HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n",
            backend.get.0
        ),
    );
    assert_eq!(status, 200, "{answer}");
    #[cfg(unix)]
    assert!(proxy.terminate().success(), "{dialect}: SIGTERM exits 0");
}

fn check_refresh_paths(home: &Home, server: &ServerHandle, backend: &Backend) {
    let dialect = backend.dialect;
    let Some(refresh_endpoint) = backend.refresh_endpoint else {
        return;
    };
    let proxy = Proxy::start(home, &[]);
    runtime().block_on(async {
        let client = client();
        // 401 -> one refresh -> replay: the server's clock jumps past the token's
        // expiry, which the proxy cannot know in advance.
        server.set_clock_ahead(Duration::from_secs(3600));
        let refreshes = server.recorder().count(refresh_endpoint);
        let answer = client.get(proxy.url(backend.get.0)).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{dialect}: replayed after 401");
        assert_eq!(server.recorder().count(refresh_endpoint), refreshes + 1);
        assert_eq!(
            server.recorder().count(backend.get_endpoint),
            2,
            "{dialect}: the 401 and the replay"
        );

        // A POST whose small body is replayed after a 401: the server sees it twice,
        // the handler acts once.
        server.set_clock_ahead(Duration::from_secs(7200));
        let posts = server.recorder().count(backend.post_endpoint);
        let (path, body, status) = &backend.post;
        let answer = client
            .post(proxy.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status().as_u16(),
            *status,
            "{dialect}: POST replayed"
        );
        assert_eq!(server.recorder().count(refresh_endpoint), refreshes + 2);
        let sent = server.recorder().requests_to(backend.post_endpoint);
        assert_eq!(sent.len(), posts + 2);
        assert_eq!(
            sent[posts].json(),
            sent[posts + 1].json(),
            "same body twice"
        );

        // A body larger than the replay limit streams and is not replayed: the client
        // gets the 401, and the session is refreshed for its retry.
        server.set_clock_ahead(Duration::from_secs(10_800));
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
        let answer = client
            .post(proxy.url(path))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            401,
            "{dialect}: a large body is not replayed"
        );
        assert_eq!(server.recorder().count(refresh_endpoint), refreshes + 3);
        let answer = client
            .post(proxy.url(path))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_ne!(answer.status(), 401, "{dialect}: the retry is authorized");
        let last = server.recorder().last(backend.post_endpoint).unwrap();
        assert_eq!(
            last.body.len(),
            2 * 1024 * 1024 + 12,
            "{dialect}: streamed whole"
        );
    });
}

fn linxio_backend() -> Backend {
    Backend {
        dialect: "linxio",
        get: ("/api/vehicles", "\"total\""),
        get_endpoint: linxio_endpoints::VEHICLES,
        post: ("/api/vehicles", json!({"name": "van"}), 201),
        post_endpoint: linxio_endpoints::CREATE_VEHICLE,
        refresh_endpoint: Some(linxio_endpoints::REFRESH),
        extra_login: &[],
    }
}

fn directus_backend() -> Backend {
    Backend {
        dialect: "directus",
        get: ("/users/me", ALICE_EMAIL),
        get_endpoint: "GET /users/me",
        post: (
            "/users/me/tfa/generate",
            json!({"password": DEFAULT_PASSWORD}),
            200,
        ),
        post_endpoint: "POST /users/me/tfa/generate",
        refresh_endpoint: Some("POST /auth/refresh"),
        extra_login: &[],
    }
}

fn linkutm_backend() -> Backend {
    Backend {
        dialect: "linkutm",
        get: ("/api/v1/links", "\"workspaceId\":\"acme\""),
        get_endpoint: linkutm_endpoints::LINKS,
        post: (
            "/api/v1/auth/change-password",
            json!({"currentPassword": DEFAULT_PASSWORD, "newPassword": DEFAULT_PASSWORD}),
            201,
        ),
        post_endpoint: linkutm_endpoints::CHANGE_PASSWORD,
        refresh_endpoint: None,
        extra_login: &["--workspace", "acme"],
    }
}

#[test]
fn proxy_authorizes_get_and_post_on_every_dialect() {
    let linxio = FakeLinxio::start().unwrap();
    let directus = FakeDirectus::start().unwrap();
    let linkutm = FakeLinkUtm::start().unwrap();
    for (server, backend) in [
        (linxio.server(), linxio_backend()),
        (directus.server(), directus_backend()),
        (linkutm.server(), linkutm_backend()),
    ] {
        let home = Home::new();
        home.login(
            backend.dialect,
            &url_of(server),
            ALICE_EMAIL,
            backend.extra_login,
        );
        check_authorized_requests(&home, server, &backend);
    }
    // LinkUTM's dialect rule: the workspace header on API routes, never on auth routes.
    let links = linkutm.recorder().last(linkutm_endpoints::LINKS).unwrap();
    assert_eq!(links.header("x-workspace-id"), Some("acme"));
    let change = linkutm
        .recorder()
        .last(linkutm_endpoints::CHANGE_PASSWORD)
        .unwrap();
    assert_eq!(change.header("x-workspace-id"), None);
}

#[test]
fn proxy_refreshes_once_and_replays_after_401() {
    let linxio = FakeLinxio::start().unwrap();
    let directus = FakeDirectus::start().unwrap();
    for (server, backend) in [
        (linxio.server(), linxio_backend()),
        (directus.server(), directus_backend()),
    ] {
        let home = Home::new();
        home.login(
            backend.dialect,
            &url_of(server),
            ALICE_EMAIL,
            backend.extra_login,
        );
        check_refresh_paths(&home, server, &backend);
    }
}

#[test]
fn proxy_without_refresh_says_the_session_is_over() {
    // LinkUTM cannot refresh: once the server rejects the token, the 401 goes through.
    let fake = FakeLinkUtm::start().unwrap();
    let home = Home::new();
    home.login(
        "linkutm",
        &url_of(fake.server()),
        ALICE_EMAIL,
        &["--workspace", "acme"],
    );
    let proxy = Proxy::start(&home, &[]);
    runtime().block_on(async {
        fake.server()
            .set_clock_ahead(Duration::from_secs(30 * 24 * 3600));
        let answer = client()
            .get(proxy.url("/api/v1/links"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        // The session is over: later requests are refused by the proxy itself.
        let answer = client()
            .get(proxy.url("/api/v1/links"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        assert_eq!(answer.headers()["x-authmux-error"], "no-session");
    });
}

#[test]
fn proxy_expiry_means_one_refresh_for_twenty_concurrent_clients() {
    let linxio = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(6))
        .start()
        .unwrap();
    let directus = FakeDirectus::builder()
        .access_ttl(Duration::from_secs(6))
        .start()
        .unwrap();
    for (server, backend) in [
        (linxio.server(), linxio_backend()),
        (directus.server(), directus_backend()),
    ] {
        let dialect = backend.dialect;
        let refresh = backend.refresh_endpoint.unwrap();
        let home = Home::new();
        home.login(dialect, &url_of(server), ALICE_EMAIL, &[]);
        let proxy = Proxy::start(&home, &[]);
        // The refresh answer is slow, so all 20 requests certainly wait for it.
        server
            .faults()
            .push(refresh, Fault::Delay(Duration::from_millis(400)));
        // Past half the 6 s lifetime the token is due (the manager refreshes ahead).
        std::thread::sleep(Duration::from_millis(3500));
        runtime().block_on(async {
            let client = client();
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let (client, url) = (client.clone(), proxy.url(backend.get.0));
                tasks.spawn(async move { client.get(url).send().await.unwrap().status() });
            }
            while let Some(status) = tasks.join_next().await {
                assert_eq!(status.unwrap(), 200, "{dialect}");
            }
        });
        assert_eq!(
            server.recorder().count(refresh),
            1,
            "{dialect}: one refresh"
        );
        // The refreshed session is the profile's: other authmux processes use it.
        let out = home.cmd(&["token"]).output().unwrap();
        assert_eq!(text(&out.stdout).trim_end(), home.token("access"));
    }
}

#[test]
fn proxy_streams_a_32_mib_download() {
    const SIZE: usize = 32 * 1024 * 1024;
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    home.login("linxio", &url_of(&fake), ALICE_EMAIL, &[]);
    let body: Vec<u8> = (0..SIZE).map(|i| u8::try_from(i % 251).unwrap()).collect();
    fake.faults().push(
        linxio_endpoints::VEHICLES,
        Fault::Respond(FakeResponse::raw(
            http::StatusCode::OK,
            "application/octet-stream",
            body.clone(),
        )),
    );
    let proxy = Proxy::start(&home, &[]);
    let before = proxy.peak_memory();
    runtime().block_on(async {
        let mut answer = client()
            .get(proxy.url("/api/vehicles"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let mut received = 0usize;
        let mut same = true;
        while let Some(chunk) = answer.chunk().await.unwrap() {
            same &= chunk[..] == body[received..received + chunk.len()];
            received += chunk.len();
            // A slow reader: the proxy must hold back, not buffer the whole answer.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        assert_eq!(received, SIZE);
        assert!(same, "the bytes arrived unchanged");
    });
    if let (Some(before), Some(after)) = (before, proxy.peak_memory()) {
        let grew = after.saturating_sub(before);
        assert!(
            grew < 16 * 1024 * 1024,
            "the proxy's peak memory grew by {grew} bytes for a {SIZE}-byte answer: it buffered instead of streaming"
        );
    }
}

#[test]
fn proxy_refuses_remote_listening_without_opt_in_and_token() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    home.login("linxio", &url_of(&fake), ALICE_EMAIL, &[]);
    let out = home
        .cmd(&["proxy", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--allow-remote"),
        "{}",
        text(&out.stderr)
    );
    let out = home
        .cmd(&["proxy", "--listen", "0.0.0.0:0", "--allow-remote"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("proxy token"),
        "{}",
        text(&out.stderr)
    );
    let out = home
        .cmd(&["proxy", "--listen", "0.0.0.0:0", "--allow-remote"])
        .env("AUTHMUX_PROXY_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // With a token, clients must present it.
    let token_file = home._dir.path().join("proxy-token");
    std::fs::write(&token_file, "0123456789abcdef-proxy-token\n").unwrap();
    let proxy = Proxy::start(
        &home,
        &[
            "--allow-remote",
            "--proxy-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    runtime().block_on(async {
        let answer = client()
            .get(proxy.url("/api/vehicles"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 407);
        let answer = client()
            .get(proxy.url("/api/vehicles"))
            .header("proxy-authorization", "Bearer wrong-wrong-wrong-wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 407);
        let answer = client()
            .get(proxy.url("/api/vehicles"))
            .header("proxy-authorization", "Bearer 0123456789abcdef-proxy-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    });
    let seen = fake.recorder().last(linxio_endpoints::VEHICLES).unwrap();
    assert_eq!(seen.header("proxy-authorization"), None, "never forwarded");
    assert_eq!(fake.recorder().count(linxio_endpoints::VEHICLES), 1);

    // Not signed in: the proxy does not start.
    home.cmd(&["logout"]).assert().success();
    let out = home.cmd(&["proxy"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
}

// ----- the OS keychain ------------------------------------------------------------------

#[test]
fn keychain_round_trip_with_keyutils() {
    let fake = FakeLinxio::start().unwrap();
    let home = Home::new();
    let url = url_of(&fake);
    let out = home
        .cmd(&[
            "login",
            "--store",
            "keyring",
            "--dialect",
            "linxio",
            "--url",
            &url,
            "--email",
            ALICE_EMAIL,
        ])
        .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    if !out.status.success() && stderr.contains("--store keyring:") {
        // The keyutils keychain works in a container too (authmux falls back to the
        // session keyring), so a refusal is a failure unless the machine says it has
        // no keychain at all.
        assert!(
            keychain_blocked_by_sandbox(&stderr)
                || std::env::var_os("AUTHMUX_NO_KEYCHAIN").is_some(),
            "the OS keychain refused authmux: {stderr}\n(set AUTHMUX_NO_KEYCHAIN=1 on a machine without one)"
        );
        keychain_unavailable(&stderr);
        // The fallback must work where the keychain does not.
        let out = home
            .cmd(&[
                "login",
                "--store",
                "auto",
                "--dialect",
                "linxio",
                "--url",
                &url,
                "--email",
                ALICE_EMAIL,
            ])
            .env("AUTHMUX_PASSWORD", DEFAULT_PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("warning: "),
            "{}",
            text(&out.stderr)
        );
        home.cmd(&["status"])
            .assert()
            .success()
            .stdout(predicates::str::contains("(file, 0600)"));
        return;
    }
    assert!(out.status.success(), "{stderr}");
    // The tokens are not in the profile folder.
    let file = std::fs::read_to_string(home.session_file()).unwrap();
    let out = home.cmd(&["token"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim_end().to_owned();
    assert!(!file.contains(&token), "{file}");
    assert!(
        !file.contains("refresh_token") || !file.contains("\"refresh\""),
        "{file}"
    );
    home.cmd(&["status"])
        .assert()
        .success()
        .stdout(predicates::str::contains("keyutils"));
    home.cmd(&["refresh"]).assert().success();
    let out = home.cmd(&["token"]).output().unwrap();
    assert_ne!(
        text(&out.stdout).trim_end(),
        token,
        "refreshed through the keychain"
    );
    home.cmd(&["whoami"]).assert().success();
    home.cmd(&["logout"]).assert().success();
    assert!(!home.session_file().exists());
}

/// Whether the kernel keyutils system calls themselves are refused (`EPERM` or `ENOSYS`:
/// a seccomp sandbox, as Docker's default profile is): a machine without a keychain,
/// not a keychain authmux failed to use.
fn keychain_blocked_by_sandbox(why: &str) -> bool {
    why.contains("PermissionDenied") || why.contains("Unknown(38)")
}

/// Says loudly (on the process's stderr, past the harness's capture) that the keychain
/// round trip could not run here, and why.
fn keychain_unavailable(why: &str) {
    let notice = format!(
        "\n************************************************************************\n\
         KEYCHAIN ROUND TRIP NOT RUN: this machine has no usable OS keychain (the\n\
         keyutils system calls are refused, or AUTHMUX_NO_KEYCHAIN is set):\n  {}\n\
         Only the `--store auto` fallback ran. The keyring store's\n\
         logic is still tested against keyring-core's mock store (keychain::tests).\n\
         ************************************************************************\n",
        why.trim()
    );
    let _ = std::io::stderr().lock().write_all(notice.as_bytes());
}
