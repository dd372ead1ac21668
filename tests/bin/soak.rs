//! `authmux-soak`: the chaos soak `cargo xtask soak` runs (see `xtask/src/soak.rs`).
//!
//! `authmux-soak conduct --seconds N --cli PATH` starts the Linxio, LinkUTM and Directus
//! fakes with short token lifetimes (in this process) and, when `AUTHMUX_DIRECTUS_URL`
//! is set, the test kit's fault proxy in front of that real Directus. For each of
//! these targets it signs in once with the `authmux` CLI into a profile of its own,
//! then, for N seconds, runs at once: [`WORKERS`] manager processes (this binary's
//! `worker` mode: a `SessionManager` over the profile's `FileStore`, sending authorized
//! requests in a loop), a loop of `authmux token` / `authmux whoami` processes on the
//! same profile, and a stream of random faults on the target's endpoints (the kit's
//! `Faults`, on the fake itself or on the proxy). Faults on the refresh endpoint are
//! only ones the server never processes (5xx, 429, a dropped connection, a short
//! delay): a lost answer to a rotating refresh is unrecoverable by design (tested in
//! `crates/authmux-directus/tests/live_faults.rs`), not a soak finding.
//!
//! It prints one line per target and exits non-zero when a session was lost (a
//! manager left without one, or the profile's token no longer works at the end) or a
//! refresh credential reached the server twice (a double refresh). Errors that ask for
//! a new sign-in (401, CLI exit 3) while the session in fact lived on are counted and
//! printed with their messages ("sign-in errors while the session lived"), not failed
//! on: they are misleading answers, not lost sessions.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the soak reports on stdout; workers report to the conductor on stdout"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use authmux::{Credentials, FileStore, LoginOutcome, ProviderConfig, SessionManager};
use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::fault_proxy::FaultProxy;
use authmux_testkit::faults::Faults;
use authmux_testkit::recorder::{RecordedRequest, Recorder};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{FakeLinkUtm, FakeLinxio, Fault};
use bytes::Bytes;
use serde_json::{Value, json};

/// Manager processes per target.
const WORKERS: usize = 2;
/// The access-token lifetime on the fakes.
const FAKE_TTL: Duration = Duration::from_secs(3);
/// The pause between two calls of one worker.
const PAUSE: Duration = Duration::from_millis(100);
/// The profile every target's processes share.
const PROFILE: &str = "soak";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match args.first().map(String::as_str) {
        Some("conduct") => runtime.block_on(conduct(&args[1..])),
        Some("worker") => runtime.block_on(worker(&args[1..])),
        _ => Err(
            "usage: authmux-soak conduct --seconds N [--cli PATH] [--rogue yes] | worker ..."
                .into(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("authmux-soak: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs.
fn flags(args: &[String]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(name) = it.next() {
        let name = name
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument `{name}`"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        out.insert(name.to_owned(), value.clone());
    }
    Ok(out)
}

fn flag<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| format!("--{name} is required"))
}

fn seconds(flags: &HashMap<String, String>) -> Result<Duration, String> {
    let text = flag(flags, "seconds")?;
    text.parse()
        .map(Duration::from_secs)
        .map_err(|e| format!("--seconds {text}: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ----- worker ----------------------------------------------------------------------

/// One manager process: the profile's backend (`config.json`) and its `FileStore`,
/// authorized `GET <path>` in a loop until the time is up; prints one JSON line.
async fn worker(args: &[String]) -> Result<(), String> {
    let flags = flags(args)?;
    let dir = PathBuf::from(flag(&flags, "profile-dir")?);
    let path = flag(&flags, "path")?.to_owned();
    let deadline = Instant::now() + seconds(&flags)?;
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(dir.join("config.json")).map_err(|e| format!("config.json: {e}"))?,
    )
    .map_err(|e| format!("config.json: {e}"))?;
    if let Some(object) = config.as_object_mut() {
        object.remove("email");
        object.remove("store");
        // So the servers' records tell the processes apart.
        object.insert(
            "user_agent".into(),
            format!("authmux-soak-worker/{}", std::process::id()).into(),
        );
    }
    let provider = ProviderConfig::from_value(config)
        .and_then(|c| c.build())
        .map_err(|e| format!("the profile's backend: {e}"))?;
    // A rogue worker (`--own-store yes`, for proving the soak catches double refreshes)
    // takes a copy of the session and refreshes it without the others' lock.
    let store = if flags.get("own-store").is_some_and(|v| v == "yes") {
        let copy = dir.join(format!("rogue-{}.json", std::process::id()));
        std::fs::copy(dir.join("session.json"), &copy).map_err(|e| format!("copy: {e}"))?;
        copy
    } else {
        dir.join("session.json")
    };
    let manager = SessionManager::builder(provider)
        .store(FileStore::new(store))
        .build();
    manager
        .restore()
        .await
        .map_err(|e| format!("restore: {e}"))?
        .ok_or("no session in the profile")?;
    let (mut calls, mut transient, mut definitive, mut max_ms) = (0u64, 0u64, 0u64, 0u64);
    let mut lost = false;
    let mut errors: HashMap<String, u64> = HashMap::new();
    let mut sign_in_errors: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        let request = http::Request::get(path.as_str())
            .body(Bytes::new())
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let result = manager.send(request).await;
        max_ms = max_ms.max(millis(started.elapsed()));
        calls += 1;
        let failure = match result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) if response.status() == http::StatusCode::UNAUTHORIZED => {
                definitive += 1;
                sign_in_errors.push("401 after the refresh and replay".to_owned());
                Some("401 after the refresh and replay".to_owned())
            }
            Ok(response) => {
                transient += 1;
                Some(format!("status {}", response.status()))
            }
            Err(error) if error.needs_sign_in() => {
                definitive += 1;
                sign_in_errors.push(format!("{error} ({error:?})"));
                Some(error.to_string())
            }
            Err(error) => {
                transient += 1;
                Some(error.to_string())
            }
        };
        if let Some(failure) = failure
            && (errors.len() < 12 || errors.contains_key(&failure))
        {
            *errors.entry(failure).or_default() += 1;
        }
        if manager.session().is_none() {
            lost = true;
            break;
        }
        tokio::time::sleep(PAUSE).await;
    }
    // As an application should before it exits: a refresh started in the background
    // finishes (and is saved) first; it may have rotated the refresh token already.
    manager.idle().await;
    if let Err(error) = manager.flush().await {
        sign_in_errors.push(format!("the last save failed: {error}"));
    }
    println!(
        "{}",
        json!({
            "calls": calls, "transient": transient, "definitive": definitive,
            "lost": lost, "max_ms": max_ms, "errors": errors,
            "sign_in_errors": sign_in_errors.iter().take(5).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

// ----- conductor ---------------------------------------------------------------------

/// One backend the soak runs against.
struct Target {
    name: &'static str,
    /// The backend, as a profile's `config.json` holds it (a `ProviderConfig`).
    config: Value,
    email: String,
    password: String,
    /// What the manager workers `GET`.
    api_path: &'static str,
    /// The endpoints of the API path and of `whoami` (any fault).
    call_endpoints: Vec<&'static str>,
    /// The refresh endpoint (only faults the server never processes).
    refresh_endpoint: Option<&'static str>,
    faults: Arc<dyn Fn() -> &'static Faults + Send + Sync>,
    /// The refresh credentials the server processed, in order.
    presented: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Every refresh and logout request that arrived (faulted or not), to explain a
    /// double refresh.
    refresh_requests: Box<dyn Fn() -> Vec<RecordedRequest> + Send + Sync>,
    /// The access-token lifetime.
    ttl: Option<Duration>,
}

/// What one target's run measured.
#[derive(Debug, Default)]
struct Tally {
    calls: u64,
    transient: u64,
    definitive: u64,
    lost: u64,
    max_ms: u64,
    /// Each error message, with how often it was seen.
    kinds: HashMap<String, u64>,
    refreshes: usize,
    generations: usize,
    doubles: usize,
    errors: Vec<String>,
}

/// Faults for authorized calls: any kind.
fn call_fault() -> Fault {
    match fastrand::u8(0..9) {
        0 => Fault::Status(500),
        1 => Fault::Status(502),
        2 => Fault::Status(503),
        3 => Fault::Status(504),
        4 => Fault::RateLimited {
            retry_after_secs: 1,
        },
        5 => Fault::DropConnection,
        6 => Fault::TruncatedBody,
        7 => Fault::MalformedJson,
        _ => Fault::Delay(Duration::from_millis(fastrand::u64(50..400))),
    }
}

/// Faults for refreshes: only ones the server never processes.
fn refresh_fault() -> Fault {
    match fastrand::u8(0..5) {
        0 => Fault::Status(500),
        1 => Fault::Status(503),
        2 => Fault::RateLimited {
            retry_after_secs: 1,
        },
        3 => Fault::DropConnection,
        _ => Fault::Delay(Duration::from_millis(fastrand::u64(50..400))),
    }
}

/// Leaks a value for the rest of the process (the soak's servers live until exit).
fn keep<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

fn refresh_tokens(recorder: &'static Recorder) -> Box<dyn Fn() -> Vec<String> + Send + Sync> {
    Box::new(move || recorder.refresh_tokens())
}

/// The requests that carry refresh credentials: to the refresh and the logout endpoints.
fn credential_requests(
    recorder: &'static Recorder,
    refresh: &'static str,
    logout: &'static str,
) -> Box<dyn Fn() -> Vec<RecordedRequest> + Send + Sync> {
    Box::new(move || {
        recorder
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == refresh || r.endpoint == logout)
            .collect()
    })
}

fn targets() -> Result<Vec<Target>, String> {
    fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
        move |e| format!("{what}: {e}")
    }
    let mut out = Vec::new();

    let linxio = keep(
        FakeLinxio::builder()
            .access_lifetime(FAKE_TTL)
            .reuse_detection(true)
            .rate_limit(None)
            .start()
            .map_err(io("the Linxio fake"))?,
    );
    use authmux_testkit::linxio::endpoints as lx;
    out.push(Target {
        name: "linxio fake",
        config: json!({"dialect": "linxio", "url": linxio.base_url()}),
        email: ALICE_EMAIL.into(),
        password: DEFAULT_PASSWORD.into(),
        api_path: "/api/vehicles",
        call_endpoints: vec![lx::VEHICLES, lx::ME],
        refresh_endpoint: Some(lx::REFRESH),
        faults: Arc::new(move || linxio.faults()),
        presented: refresh_tokens(linxio.recorder()),
        refresh_requests: credential_requests(linxio.recorder(), lx::REFRESH, lx::LOGOUT),
        ttl: Some(FAKE_TTL),
    });

    let linkutm = keep(
        FakeLinkUtm::builder()
            .rate_limit_per_minute(None)
            .start()
            .map_err(io("the LinkUTM fake"))?,
    );
    use authmux_testkit::linkutm::endpoints as lu;
    out.push(Target {
        name: "linkutm fake",
        config: json!({"dialect": "linkutm", "url": linkutm.base_url(), "workspace": "acme"}),
        email: ALICE_EMAIL.into(),
        password: DEFAULT_PASSWORD.into(),
        api_path: "/api/v1/links",
        call_endpoints: vec![lu::LINKS, lu::PROFILE],
        refresh_endpoint: None,
        faults: Arc::new(move || linkutm.faults()),
        presented: Box::new(Vec::new),
        refresh_requests: Box::new(Vec::new),
        ttl: None,
    });

    let directus = keep(
        FakeDirectus::builder()
            .access_ttl(FAKE_TTL)
            .start()
            .map_err(io("the Directus fake"))?,
    );
    use authmux_testkit::directus::endpoints as dx;
    out.push(Target {
        name: "directus fake",
        config: json!({"dialect": "directus", "url": directus.base_url(), "mode": "json"}),
        email: ALICE_EMAIL.into(),
        password: DEFAULT_PASSWORD.into(),
        api_path: "/users/me?fields=id",
        call_endpoints: vec![dx::ME],
        refresh_endpoint: Some(dx::REFRESH),
        faults: Arc::new(move || directus.faults()),
        presented: refresh_tokens(directus.recorder()),
        refresh_requests: credential_requests(directus.recorder(), dx::REFRESH, dx::LOGOUT),
        ttl: Some(FAKE_TTL),
    });

    match std::env::var("AUTHMUX_DIRECTUS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            let var = |name: &str| {
                std::env::var(name)
                    .map_err(|_| format!("AUTHMUX_DIRECTUS_URL is set, so {name} must be too"))
            };
            let upstream =
                url::Url::parse(&url).map_err(|e| format!("AUTHMUX_DIRECTUS_URL: {e}"))?;
            let proxy = keep(FaultProxy::start(&upstream).map_err(io("the fault proxy"))?);
            let ttl = std::env::var("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS")
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs);
            out.push(Target {
                name: "real Directus via proxy",
                config: json!({"dialect": "directus", "url": proxy.base_url(), "mode": "json"}),
                email: var("AUTHMUX_DIRECTUS_ADMIN_EMAIL")?,
                password: var("AUTHMUX_DIRECTUS_ADMIN_PASSWORD")?,
                api_path: "/users/me?fields=id",
                call_endpoints: vec![dx::ME],
                refresh_endpoint: Some(dx::REFRESH),
                faults: Arc::new(move || proxy.faults()),
                presented: Box::new(move || {
                    proxy
                        .reached()
                        .requests_to(dx::REFRESH)
                        .iter()
                        .filter_map(|r| r.json()?.get("refresh_token")?.as_str().map(str::to_owned))
                        .collect()
                }),
                refresh_requests: credential_requests(proxy.recorder(), dx::REFRESH, dx::LOGOUT),
                ttl,
            });
        }
        None => println!(
            "authmux-soak: AUTHMUX_DIRECTUS_URL is not set: NOT soaking the real Directus \
             (cargo xtask soak starts one)"
        ),
    }
    Ok(out)
}

/// Runs `authmux` with the target's profile; `(exit code, stderr, latency)`.
fn cli(cli: &Path, home: &Path, args: &[&str], password: Option<&str>) -> (i32, String, Duration) {
    let mut command = Command::new(cli);
    command
        .arg("--home")
        .arg(home)
        .args(["--profile", PROFILE])
        .args(args)
        .env_remove("AUTHMUX_PASSWORD")
        .stdin(Stdio::null());
    if let Some(password) = password {
        command.env("AUTHMUX_PASSWORD", password);
    }
    let started = Instant::now();
    match command.output() {
        Ok(output) => (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            started.elapsed(),
        ),
        Err(e) => (
            -1,
            format!("cannot run {}: {e}", cli.display()),
            started.elapsed(),
        ),
    }
}

/// [`cli`] from async code: on a blocking thread, so the runtime that serves the fakes
/// (this process's) is never held up while the CLI talks to them.
async fn cli_async(
    cli_path: &Path,
    home: &Path,
    args: &[&str],
    password: Option<&str>,
) -> (i32, String, Duration) {
    let (cli_path, home) = (cli_path.to_owned(), home.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let password = password.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&cli_path, &home, &args, password.as_deref())
    })
    .await
    .unwrap_or_else(|e| (-1, format!("the CLI call panicked: {e}"), Duration::ZERO))
}

/// A manager over the profile's `FileStore` (what the workers and the CLI use).
fn profile_manager(profile_dir: &Path, config: &Value) -> Result<SessionManager, String> {
    let provider = ProviderConfig::from_value(config.clone())
        .and_then(|c| c.build())
        .map_err(|e| format!("the backend: {e}"))?;
    Ok(SessionManager::builder(provider)
        .store(FileStore::new(profile_dir.join("session.json")))
        .build())
}

/// Signs in to the target into the profile: with `authmux login`, or (without a CLI)
/// the way it does: `config.json` and the `FileStore`.
async fn sign_in(target: &Target, cli_path: Option<&Path>, home: &Path) -> Result<(), String> {
    let profile_dir = home.join("profiles").join(PROFILE);
    if let Some(cli_path) = cli_path {
        let mut login: Vec<String> = vec!["login".into()];
        for (key, value) in target.config.as_object().into_iter().flatten() {
            login.push(format!("--{key}"));
            login.push(value.as_str().unwrap_or_default().to_owned());
        }
        login.extend(["--email".into(), target.email.clone()]);
        let login: Vec<&str> = login.iter().map(String::as_str).collect();
        let (code, stderr, _) = cli_async(cli_path, home, &login, Some(&target.password)).await;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!(
                "{}: authmux login failed ({code}): {stderr}",
                target.name
            ))
        };
    }
    std::fs::create_dir_all(&profile_dir).map_err(|e| format!("{}: {e}", profile_dir.display()))?;
    std::fs::write(profile_dir.join("config.json"), target.config.to_string())
        .map_err(|e| format!("config.json: {e}"))?;
    let manager = profile_manager(&profile_dir, &target.config)?;
    let credentials = Credentials::new(target.email.clone(), target.password.as_str());
    match manager.login(&credentials).await {
        Ok(LoginOutcome::Authenticated(_)) => Ok(()),
        Ok(LoginOutcome::OtpRequired(_)) => {
            Err(format!("{}: a one-time code was asked for", target.name))
        }
        Err(e) => Err(format!("{}: sign-in failed: {e}", target.name)),
    }
}

async fn soak_target(
    target: Target,
    cli_path: Option<PathBuf>,
    duration: Duration,
    rogue: bool,
) -> Result<Tally, String> {
    let home = std::env::temp_dir().join(format!(
        "authmux-soak-{}-{}",
        std::process::id(),
        target.name.replace(' ', "-")
    ));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    sign_in(&target, cli_path.as_deref(), &home).await?;
    let profile_dir = home.join("profiles").join(PROFILE);
    let mut workers = Vec::new();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for n in 0..WORKERS + usize::from(rogue) {
        let own_store = if n == WORKERS { "yes" } else { "no" };
        let child = Command::new(&me)
            .arg("worker")
            .arg("--profile-dir")
            .arg(&profile_dir)
            .args([
                "--path",
                target.api_path,
                "--seconds",
                &duration.as_secs().to_string(),
                "--own-store",
                own_store,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        workers.push(child);
    }
    let deadline = Instant::now() + duration;

    // The CLI loop, on a thread of its own (each call is a process).
    let cli_loop = cli_path.clone().map(|cli_path| {
        let home = home.clone();
        std::thread::spawn(move || {
            let mut tally = Tally::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let command = if n.is_multiple_of(2) {
                    "whoami"
                } else {
                    "token"
                };
                let (code, stderr, took) = cli(&cli_path, &home, &[command], None);
                tally.calls += 1;
                tally.max_ms = tally.max_ms.max(millis(took));
                if code != 0 {
                    let first = stderr.lines().next().unwrap_or_default();
                    *tally
                        .kinds
                        .entry(format!("authmux {command} exited {code}: {first}"))
                        .or_default() += 1;
                }
                match code {
                    0 => {}
                    5 | 6 => tally.transient += 1,
                    _ => {
                        tally.definitive += 1;
                        if tally.errors.len() < 5 {
                            tally
                                .errors
                                .push(format!("authmux {command} exited {code}: {stderr}"));
                        }
                    }
                }
            }
            tally
        })
    });

    // Random faults until the end.
    let faults = Arc::clone(&target.faults);
    let (calls, refresh) = (target.call_endpoints.clone(), target.refresh_endpoint);
    let injector = tokio::spawn(async move {
        // When each refresh fault was queued, to explain a double refresh.
        let mut log: Vec<(SystemTime, String)> = Vec::new();
        let mut injected = 0u64;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..300))).await;
            match refresh {
                Some(endpoint) if fastrand::bool() => {
                    let fault = refresh_fault();
                    log.push((SystemTime::now(), format!("{fault:?}")));
                    faults().push(endpoint, fault);
                }
                _ => faults().push(calls[fastrand::usize(..calls.len())], call_fault()),
            }
            injected += 1;
        }
        (injected, log)
    });

    let mut tally = Tally::default();
    for child in workers {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("a worker: {e}"))?;
        let line = String::from_utf8_lossy(&output.stdout);
        let report: Value = serde_json::from_str(line.trim()).map_err(|_| {
            format!(
                "{}: a worker failed ({}): {}",
                target.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
        let n = |key: &str| report[key].as_u64().unwrap_or_default();
        tally.calls += n("calls");
        tally.transient += n("transient");
        tally.definitive += n("definitive");
        tally.max_ms = tally.max_ms.max(n("max_ms"));
        tally.lost += u64::from(report["lost"].as_bool().unwrap_or_default());
        for (error, count) in report["errors"].as_object().into_iter().flatten() {
            *tally.kinds.entry(format!("manager: {error}")).or_default() +=
                count.as_u64().unwrap_or_default();
        }
        for error in report["sign_in_errors"].as_array().into_iter().flatten() {
            tally
                .errors
                .push(format!("manager: {}", error.as_str().unwrap_or_default()));
        }
    }
    let cli_tally = match cli_loop {
        Some(cli_loop) => cli_loop.join().map_err(|_| "the CLI loop panicked")?,
        None => Tally::default(),
    };
    let (injected, fault_log) = injector.await.map_err(|e| e.to_string())?;
    tally.calls += cli_tally.calls;
    tally.transient += cli_tally.transient;
    tally.definitive += cli_tally.definitive;
    tally.max_ms = tally.max_ms.max(cli_tally.max_ms);
    tally.errors.extend(cli_tally.errors);
    for (kind, n) in cli_tally.kinds {
        *tally.kinds.entry(kind).or_default() += n;
    }

    // The session must have survived: with the faults gone, the profile's token works.
    (target.faults)().clear_all();
    // Its own user agent, so the servers' records tell it from the CLI's processes.
    let mut check_config = target.config.clone();
    if let Some(object) = check_config.as_object_mut() {
        object.insert("user_agent".into(), "authmux-soak-check".into());
    }
    let manager = profile_manager(&profile_dir, &check_config)?;
    let restored = manager.restore().await;
    let survived = match (restored, manager.current_user().await) {
        (Ok(Some(_)), Ok(_)) => true,
        (restored, user) => {
            tally.errors.push(format!(
                "at the end, the profile's session: {restored:?}; current user: {user:?}"
            ));
            false
        }
    };
    if let Some(cli_path) = &cli_path {
        let (code, stderr, _) = cli_async(cli_path, &home, &["whoami"], None).await;
        if code != 0 {
            tally
                .errors
                .push(format!("final authmux whoami exited {code}: {stderr}"));
        }
        tally.lost += u64::from(code != 0 || !survived);
    } else {
        tally.lost += u64::from(!survived);
    }
    let presented = (target.presented)();
    let mut per_credential: HashMap<&str, usize> = HashMap::new();
    for credential in &presented {
        *per_credential.entry(credential.as_str()).or_default() += 1;
    }
    tally.refreshes = presented.len();
    tally.generations = per_credential.len();
    tally.doubles = per_credential.values().filter(|n| **n > 1).count();
    for (credential, processed) in per_credential.iter().filter(|(_, n)| **n > 1) {
        explain_double(
            target.name,
            (credential, *processed),
            &(target.refresh_requests)(),
            &presented,
            &fault_log,
        );
    }
    let per_expiry = if tally.generations == 0 {
        "n/a".to_owned()
    } else {
        format!("{:.2}", tally.refreshes as f64 / tally.generations as f64)
    };
    let lifetimes = target.ttl.map_or_else(
        || "no refresh".to_owned(),
        |ttl| {
            format!(
                "{:.0} token lifetimes",
                duration.as_secs_f64() / ttl.as_secs_f64()
            )
        },
    );
    println!(
        "soak {:<24} calls {:>6}  transient errors {:>5}  sign-in errors while the session lived {}  sessions lost {}  \
         refreshes {:>4} for {:>4} expiries ({per_expiry} per expiry; {lifetimes})  \
         double refreshes {}  faults injected {injected}  max call latency {} ms",
        target.name,
        tally.calls,
        tally.transient,
        tally.definitive,
        tally.lost,
        tally.refreshes,
        tally.generations,
        tally.doubles,
        tally.max_ms,
    );
    let mut kinds: Vec<(&String, &u64)> = tally.kinds.iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (kind, n) in kinds.iter().take(6) {
        println!("soak {:<24}   {n:>5} x {kind}", target.name);
    }
    // The rare misleading answers in full: what a sign-in error while the session
    // lived said, for whoever looks into it.
    for error in tally.errors.iter().take(5) {
        println!("soak {:<24}   error: {error}", target.name);
    }
    let _ = std::fs::remove_dir_all(&home);
    Ok(tally)
}

/// Prints every refresh request that carried `credential` (when it arrived, from which
/// process) and the refresh faults queued around them: what a double refresh needs to
/// be understood.
fn explain_double(
    target: &str,
    (credential, processed): (&str, usize),
    requests: &[RecordedRequest],
    presented: &[String],
    faults: &[(SystemTime, String)],
) {
    let carrying: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(credential))
        .collect();
    let (Some(first), Some(last)) = (carrying.first(), carrying.last()) else {
        return;
    };
    let ms = |at: SystemTime| {
        at.duration_since(first.at).map_or_else(
            |e| -i128::try_from(e.duration().as_millis()).unwrap_or(0),
            |d| i128::try_from(d.as_millis()).unwrap_or(0),
        )
    };
    println!(
        "soak {target:<24} DOUBLE REFRESH: the server processed one refresh credential \
         {processed} times; the requests carrying it (faulted ones too):"
    );
    let fault = |r: &RecordedRequest| {
        let answer = r
            .status
            .map_or_else(|| "no answer".to_owned(), |s| format!("answered {s}"));
        r.fault.as_ref().map_or_else(
            || format!(", {answer}"),
            |f| format!(", {answer}, faulted: {f}"),
        )
    };
    for request in &carrying {
        println!(
            "soak {target:<24}   +{:>6} ms  {} from {}{}",
            ms(request.at),
            request.endpoint,
            request.user_agent().unwrap_or("?"),
            fault(request),
        );
    }
    // The whole chain around it: every refresh request from shortly before the first
    // to shortly after the last, each credential numbered by its first appearance, so a
    // credential that comes back can be traced to the session that still held it.
    println!(
        "soak {target:<24}   the refresh and logout requests around them (credential #, from):"
    );
    let mut numbers: Vec<&str> = Vec::new();
    for request in requests {
        let body = String::from_utf8_lossy(&request.body);
        let Some(held) = presented.iter().find(|c| body.contains(c.as_str())) else {
            continue;
        };
        let number = numbers
            .iter()
            .position(|n| *n == held.as_str())
            .unwrap_or_else(|| {
                numbers.push(held.as_str());
                numbers.len() - 1
            });
        let at = ms(request.at);
        if at >= -2000 && request.at <= last.at + Duration::from_secs(1) {
            println!(
                "soak {target:<24}     +{at:>6} ms  #{number:<4}{} {} from {}{}",
                if held.as_str() == credential {
                    " (the double)"
                } else {
                    ""
                },
                request.endpoint,
                request.user_agent().unwrap_or("?"),
                fault(request),
            );
        }
    }
    let window = Duration::from_secs(2);
    for (at, fault) in faults {
        if *at + window >= first.at && *at <= last.at + window {
            println!(
                "soak {target:<24}   +{:>6} ms  queued refresh fault {fault}",
                ms(*at)
            );
        }
    }
}

async fn conduct(args: &[String]) -> Result<(), String> {
    let flags = flags(args)?;
    let duration = seconds(&flags)?;
    let cli_path = flags.get("cli").map(PathBuf::from);
    let rogue = flags.get("rogue").is_some_and(|v| v == "yes");
    println!(
        "authmux-soak: {} s per target, all targets at once: {WORKERS} manager processes{}{} \
         and random faults each",
        duration.as_secs(),
        if cli_path.is_some() {
            ", an authmux CLI loop"
        } else {
            ""
        },
        if rogue {
            ", a ROGUE manager refreshing a copy of the session"
        } else {
            ""
        },
    );
    let mut runs = Vec::new();
    for target in targets()? {
        let name = target.name;
        runs.push((
            name,
            tokio::spawn(soak_target(target, cli_path.clone(), duration, rogue)),
        ));
    }
    let mut failures = Vec::new();
    let mut total = Tally::default();
    for (name, run) in runs {
        match run.await.map_err(|e| e.to_string())? {
            Ok(tally) => {
                if tally.lost > 0 || tally.doubles > 0 {
                    failures.push(format!(
                        "{name}: {} sessions lost, {} double refreshes; first errors: {:?}",
                        tally.lost, tally.doubles, tally.errors
                    ));
                }
                total.calls += tally.calls;
                total.transient += tally.transient;
                total.lost += tally.lost;
                total.definitive += tally.definitive;
                total.doubles += tally.doubles;
                total.max_ms = total.max_ms.max(tally.max_ms);
            }
            Err(e) => failures.push(e),
        }
    }
    println!(
        "soak total: calls {}  transient errors {}  sign-in errors while the session lived {}  \
         sessions lost {}  double refreshes {}  max call latency {} ms",
        total.calls, total.transient, total.definitive, total.lost, total.doubles, total.max_ms
    );
    if failures.is_empty() {
        return Ok(());
    }
    // On stdout, with the report (what `cargo xtask` repeats after a failure).
    println!("soak FAILED:\n  {}", failures.join("\n  "));
    Err(format!(
        "the soak FAILED ({} of its targets)",
        failures.len()
    ))
}
