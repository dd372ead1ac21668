//! `authmux-peers-bench`: authmux side by side with @directus/sdk and plain reqwest on
//! one REAL Directus. `cargo xtask bench` (`xtask/src/bench.rs`) builds and runs it; it
//! is not meant to be run by hand (it needs the xtask's environment, below).
//!
//! The five scenarios, each for authmux, the SDK (`xtask/bench/sdk.mjs`, one Node
//! process driven over stdin/stdout, four more in scenario 4) and, where it applies,
//! plain reqwest:
//!
//! 1. client CPU and wall time of `n` sequential authenticated `GET /users/me` (auto
//!    refresh on), repeated, each rep on a freshly signed-in client, the clients
//!    interleaved rep by rep;
//! 2. a fresh session left alone past its expiry, then `n` concurrent requests: refresh
//!    calls and failed requests;
//! 3. `trials` sessions side by side: 5 concurrent explicit refreshes, then the next
//!    expiry, then one request: is the session alive?
//! 4. 4 processes sharing one stored session (authmux: [`FileStore`], this binary's
//!    `worker` mode; the SDK: its `storage` option over one JSON file), `trials` times
//!    after expiry all 4 make one request at the same instant: failures, refresh calls;
//! 5. throughput and CPU at 8 concurrent callers: authmux `send`, `AuthMiddleware`,
//!    plain reqwest, the SDK, in interleaved rounds.
//!
//! Scenarios 1 and 5 also measure a second plain reqwest client, the control: its ratio
//! to the first is how far two identical clients measure apart in this run (the noise
//! floor of every ratio beside it).
//!
//! Client CPU: this process's threads' on-CPU time (`/proc/self/task/*/schedstat`, the
//! helper the other benchmarks use) around the measured part; the SDK reports
//! `process.cpuUsage()` (getrusage) of its process the same way. Refresh calls are
//! counted at each client's transport (requests to `/auth/refresh`).
//!
//! Plain reqwest keeps the access token in a header value and, on a 401, refreshes by
//! hand (`POST /auth/refresh`, one caller at a time) and retries once: what one writes
//! without a library.
//!
//! Writes the raw figures as JSON (`--json`) and, with `--doc`, its section of
//! `docs/benchmarks.md` (between `<!-- peers:begin -->` and `<!-- peers:end -->`).
//!
//! Environment: `AUTHMUX_DIRECTUS_URL`, `AUTHMUX_DIRECTUS_ADMIN_EMAIL`,
//! `AUTHMUX_DIRECTUS_ADMIN_PASSWORD`, `AUTHMUX_DIRECTUS_ACCESS_TTL_SECS`,
//! `AUTHMUX_BENCH_NODE` (Node 22), `AUTHMUX_BENCH_SDK_SCRIPT` (sdk.mjs in the SDK's
//! install folder), and for the report `AUTHMUX_BENCH_COMMIT`, `AUTHMUX_BENCH_RUSTC`,
//! `AUTHMUX_BENCH_DIRECTUS_VERSION`, `AUTHMUX_BENCH_PROFILE`.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary reports on stdout"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authmux_core::{
    AuthError, ClientOptions, Credentials, FileStore, LoginOutcome, SessionManager, Transport,
    async_trait,
};
use authmux_directus::{DirectusConfig, DirectusProvider};
use authmux_integration_tests::bench::{cpu_time, median, write_section};
use authmux_reqwest::AuthMiddleware;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use serde_json::{Value, json};
use url::Url;

/// The path every scenario requests.
const ME: &str = "/users/me?fields=id";
/// Concurrent callers in scenario 5.
const CALLERS: usize = 8;
/// Processes sharing one session in scenario 4.
const PROCESSES: usize = 4;
/// Concurrent explicit refreshes in scenario 3.
const EXPLICIT: usize = 5;
/// The markers of this benchmark's section of `docs/benchmarks.md`.
const SECTION: &str = "peers";

/// How much of everything to run: the full run or `--smoke`.
#[derive(Debug, Clone, Copy)]
struct Counts {
    sequential: usize,
    reps: usize,
    storm: usize,
    storm_trials: usize,
    explicit_trials: usize,
    shared_trials: usize,
    rounds: usize,
    round: Duration,
}

const FULL: Counts = Counts {
    sequential: 300,
    reps: 5,
    storm: 50,
    storm_trials: 3,
    explicit_trials: 10,
    shared_trials: 6,
    rounds: 5,
    round: Duration::from_secs(1),
};

const SMOKE: Counts = Counts {
    sequential: 20,
    reps: 1,
    storm: 10,
    storm_trials: 1,
    explicit_trials: 1,
    shared_trials: 1,
    rounds: 1,
    round: Duration::from_millis(300),
};

/// The Directus under test, from the xtask's environment.
#[derive(Clone)]
struct Target {
    url: Url,
    email: String,
    password: String,
    ttl: Duration,
}

impl Target {
    fn from_env() -> Target {
        let ttl = var("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS")
            .parse()
            .expect("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS is a number of seconds");
        Target {
            url: var("AUTHMUX_DIRECTUS_URL")
                .parse()
                .expect("AUTHMUX_DIRECTUS_URL is a URL"),
            email: var("AUTHMUX_DIRECTUS_ADMIN_EMAIL"),
            password: var("AUTHMUX_DIRECTUS_ADMIN_PASSWORD"),
            ttl: Duration::from_secs(ttl),
        }
    }

    /// Long enough for a token issued now to have expired (Directus's `exp` is in
    /// whole seconds).
    fn past_expiry(&self) -> Duration {
        self.ttl + Duration::from_millis(1200)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.as_str().trim_end_matches('/'))
    }
}

fn var(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set (run `cargo xtask bench`)"))
}

fn unix_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

// ----- authmux ---------------------------------------------------------------------

/// A transport that counts the refresh calls it carries.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Transport>,
    refreshes: AtomicU64,
}

#[async_trait]
impl Transport for Counting {
    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, AuthError> {
        if request.uri().path().ends_with("/auth/refresh") {
            self.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send(request).await
    }
}

/// An authmux client: a manager on the Directus adapter (json mode) and its counter.
#[derive(Clone)]
struct Authmux {
    manager: SessionManager,
    counting: Arc<Counting>,
}

impl Authmux {
    fn new(target: &Target, store: Option<FileStore>) -> Authmux {
        let counting = Arc::new(Counting {
            // The transport every adapter builds by default (`HyperTransport`).
            inner: ClientOptions::default()
                .build_transport()
                .expect("default transport"),
            refreshes: AtomicU64::new(0),
        });
        let provider = DirectusProvider::with_transport(
            DirectusConfig::new(target.url.clone()),
            counting.clone(),
        )
        .expect("loopback URL accepted");
        let mut builder = SessionManager::builder(Arc::new(provider));
        if let Some(store) = store {
            builder = builder.store(store);
        }
        Authmux {
            manager: builder.build(),
            counting,
        }
    }

    async fn signed_in(target: &Target, store: Option<FileStore>) -> Authmux {
        let client = Authmux::new(target, store);
        let outcome = client
            .manager
            .login(&Credentials::new(
                target.email.clone(),
                target.password.clone(),
            ))
            .await
            .expect("authmux signs in");
        assert!(
            matches!(outcome, LoginOutcome::Authenticated(_)),
            "no second factor expected"
        );
        client
    }

    fn refreshes(&self) -> u64 {
        self.counting.refreshes.load(Ordering::Relaxed)
    }

    /// One `GET /users/me` through `send`: the status (0 for an error).
    async fn me(&self) -> u16 {
        let request = Request::get(ME).body(Bytes::new()).unwrap();
        match self.manager.send(request).await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }
}

// ----- plain reqwest -----------------------------------------------------------------

/// Plain reqwest: a bearer header kept by hand, refreshed by hand on a 401 (one caller
/// at a time; the others wait and take the new header).
#[derive(Clone)]
struct Plain {
    client: reqwest::Client,
    me: String,
    refresh_url: String,
    tokens: Arc<RwLock<(HeaderValue, String)>>,
    /// Held while refreshing by hand, so concurrent 401s refresh once.
    refreshing: Arc<tokio::sync::Mutex<()>>,
    refreshes: Arc<AtomicU64>,
}

fn bearer(data: &Value) -> (HeaderValue, String) {
    let access = data["data"]["access_token"].as_str().expect("access_token");
    let refresh = data["data"]["refresh_token"]
        .as_str()
        .expect("refresh_token");
    let mut header = HeaderValue::from_str(&format!("Bearer {access}")).unwrap();
    header.set_sensitive(true);
    (header, refresh.to_owned())
}

/// `POST url` with a JSON body: the JSON answer when it is a 200 with an access token.
async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> Option<Value> {
    let response = client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let data: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    data["data"]["access_token"].is_string().then_some(data)
}

impl Plain {
    async fn signed_in(target: &Target) -> Plain {
        let client = reqwest::Client::new();
        let body = json!({ "email": target.email, "password": target.password, "mode": "json" });
        let login = post_json(&client, &target.endpoint("/auth/login"), &body)
            .await
            .expect("plain reqwest signs in");
        Plain {
            client,
            me: target.endpoint(ME),
            refresh_url: target.endpoint("/auth/refresh"),
            tokens: Arc::new(RwLock::new(bearer(&login))),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            refreshes: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn get(&self, header: HeaderValue) -> u16 {
        match self
            .client
            .get(&self.me)
            .header(AUTHORIZATION, header)
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                status
            }
            Err(_) => 0,
        }
    }

    async fn me(&self) -> u16 {
        let header = self.tokens.read().unwrap().0.clone();
        let status = self.get(header.clone()).await;
        if status != 401 {
            return status;
        }
        let _refreshing = self.refreshing.lock().await;
        let current = self.tokens.read().unwrap().0.clone();
        if current != header {
            // Another caller refreshed while this one waited.
            return self.get(current).await;
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let refresh_token = self.tokens.read().unwrap().1.clone();
        let body = json!({ "refresh_token": refresh_token, "mode": "json" });
        let Some(data) = post_json(&self.client, &self.refresh_url, &body).await else {
            return 401;
        };
        let tokens = bearer(&data);
        let header = tokens.0.clone();
        *self.tokens.write().unwrap() = tokens;
        self.get(header).await
    }
}

// ----- the SDK -----------------------------------------------------------------------

/// A child process driven one JSON line at a time: a Node process running `sdk.mjs`, or
/// this binary in `worker` mode.
struct Driven {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driven {
    /// Starts `command` with its standard input and output piped to this process.
    fn spawn(command: &mut Command, what: &str) -> Driven {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Driven {
            child,
            stdin,
            stdout,
        }
    }

    fn sdk(target: &Target) -> Driven {
        Self::spawn(
            Command::new(var("AUTHMUX_BENCH_NODE"))
                .arg(var("AUTHMUX_BENCH_SDK_SCRIPT"))
                .env("AUTHMUX_DIRECTUS_URL", target.url.as_str())
                .env("AUTHMUX_DIRECTUS_ADMIN_EMAIL", &target.email)
                .env("AUTHMUX_DIRECTUS_ADMIN_PASSWORD", &target.password)
                .env(
                    "AUTHMUX_BENCH_SDK_LEAD_MS",
                    sdk_lead(target).as_millis().to_string(),
                ),
            "node",
        )
    }

    /// Sends `command` without waiting for its answer.
    fn send(&mut self, command: &Value) {
        writeln!(self.stdin, "{command}").expect("write to node");
        self.stdin.flush().unwrap();
    }

    /// Reads the answer to the last command sent.
    fn receive(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from node");
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("sdk.mjs answered {line:?}: {e}"));
        assert_eq!(answer["ok"], true, "sdk.mjs failed: {answer}");
        answer
    }

    /// Runs `command`, blocking this thread until the answer comes. Called from async
    /// code on purpose: nothing else runs in this process while the SDK is measured.
    fn call(&mut self, command: &Value) -> Value {
        self.send(command);
        self.receive()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK's `msRefreshBeforeExpires`: the lead authmux uses for this lifetime (half
/// of it for a short token; the SDK's default of 30 s would refresh a 5 s token on
/// every request).
fn sdk_lead(target: &Target) -> Duration {
    (target.ttl / 2)
        .min(Duration::from_secs(60))
        .max(target.ttl / 10)
}

// ----- the scenarios -----------------------------------------------------------------

/// One result row: a scenario, a client, and its raw figures.
fn row(scenario: &str, client: &str, figures: Value) -> Value {
    let mut row = json!({ "scenario": scenario, "client": client });
    row.as_object_mut()
        .unwrap()
        .extend(figures.as_object().unwrap().clone());
    row
}

fn ok_count(statuses: &[u16]) -> (usize, Vec<u16>) {
    let failed: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    (failed.len(), failed)
}

/// Scenario 1: sequential requests, reps interleaved between the clients.
async fn sequential(target: &Target, counts: Counts, sdk: &mut Driven) -> Vec<Value> {
    const WARMUP: usize = 5;
    // `c`: plain reqwest again, the control: its ratio to `p` is the noise floor.
    let (mut a, mut p, mut s, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..counts.reps {
        for turn in 0..4 {
            // Rotate the order so that no client always goes first. Every rep starts from
            // a fresh sign-in and a few requests to warm up (connection open), unmeasured.
            match (turn + rep) % 4 {
                0 => {
                    let authmux = Authmux::signed_in(target, None).await;
                    for _ in 0..WARMUP {
                        authmux.me().await;
                    }
                    let refreshes = authmux.refreshes();
                    let cpu = cpu_time();
                    let started = Instant::now();
                    let mut statuses = Vec::with_capacity(counts.sequential);
                    for _ in 0..counts.sequential {
                        statuses.push(authmux.me().await);
                    }
                    a.push((
                        (cpu_time() - cpu).as_secs_f64() * 1e6,
                        started.elapsed().as_secs_f64() * 1e3,
                        ok_count(&statuses).0,
                        authmux.refreshes() - refreshes,
                    ));
                }
                which @ (1 | 3) => {
                    let plain = Plain::signed_in(target).await;
                    for _ in 0..WARMUP {
                        plain.me().await;
                    }
                    let refreshes = plain.refreshes.load(Ordering::Relaxed);
                    let cpu = cpu_time();
                    let started = Instant::now();
                    let mut statuses = Vec::with_capacity(counts.sequential);
                    for _ in 0..counts.sequential {
                        statuses.push(plain.me().await);
                    }
                    let rep = (
                        (cpu_time() - cpu).as_secs_f64() * 1e6,
                        started.elapsed().as_secs_f64() * 1e3,
                        ok_count(&statuses).0,
                        plain.refreshes.load(Ordering::Relaxed) - refreshes,
                    );
                    if which == 1 { p.push(rep) } else { c.push(rep) }
                }
                _ => {
                    let answer = sdk.call(
                        &json!({ "cmd": "sequential", "n": counts.sequential, "warmup": WARMUP }),
                    );
                    s.push((
                        answer["cpu_us"].as_f64().unwrap(),
                        answer["wall_ms"].as_f64().unwrap(),
                        usize::try_from(answer["failures"].as_u64().unwrap()).unwrap(),
                        answer["refreshes"].as_u64().unwrap(),
                    ));
                }
            }
        }
    }
    let n = counts.sequential;
    let figures = |reps: &[(f64, f64, usize, u64)]| {
        json!({
            "requests_per_rep": n,
            "cpu_us_per_rep": reps.iter().map(|r| r.0).collect::<Vec<_>>(),
            "wall_ms_per_rep": reps.iter().map(|r| r.1).collect::<Vec<_>>(),
            "failures_per_rep": reps.iter().map(|r| r.2).collect::<Vec<_>>(),
            "refreshes_per_rep": reps.iter().map(|r| r.3).collect::<Vec<_>>(),
            "median_cpu_us": median(reps.iter().map(|r| r.0).collect()),
            "median_wall_ms": median(reps.iter().map(|r| r.1).collect()),
        })
    };
    let ratios = |of: &[(f64, f64, usize, u64)], other: &[(f64, f64, usize, u64)]| {
        of.iter()
            .zip(other)
            .map(|(a, o)| a.0 / o.0)
            .collect::<Vec<f64>>()
    };
    vec![
        row("1 sequential", "authmux", {
            let mut f = figures(&a);
            f["cpu_ratio_to_plain_reqwest_per_rep"] = json!(ratios(&a, &p));
            f["cpu_ratio_to_sdk_per_rep"] = json!(ratios(&a, &s));
            f
        }),
        row("1 sequential", "plain reqwest", figures(&p)),
        row("1 sequential", "@directus/sdk", figures(&s)),
        row("1 sequential", "plain reqwest (control)", {
            let mut f = figures(&c);
            f["cpu_ratio_to_plain_reqwest_per_rep"] = json!(ratios(&c, &p));
            f
        }),
    ]
}

/// Scenario 2, authmux: a fresh session past its expiry, then `n` concurrent requests.
async fn storm_authmux(target: &Target, n: usize) -> Value {
    let client = Authmux::signed_in(target, None).await;
    tokio::time::sleep(target.past_expiry()).await;
    let before = client.refreshes();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.me().await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let (failures, failed) = ok_count(&statuses);
    json!({ "refreshes": client.refreshes() - before, "requests": n, "failures": failures, "failed_statuses": failed })
}

/// Scenario 3, authmux: one trial.
async fn explicit_authmux(target: Target) -> Value {
    let client = Authmux::signed_in(&target, None).await;
    let calls: Vec<_> = (0..EXPLICIT)
        .map(|_| {
            let manager = client.manager.clone();
            tokio::spawn(async move { manager.refresh().await.is_err() })
        })
        .collect();
    let mut errors = 0;
    for call in calls {
        errors += usize::from(call.await.unwrap());
    }
    let refresh_calls = client.refreshes();
    tokio::time::sleep(target.past_expiry()).await;
    let status = client.me().await;
    json!({ "refresh_calls": refresh_calls, "refresh_errors": errors, "alive": status == 200, "status": status })
}

/// Scenario 4, authmux: `PROCESSES` workers on one `FileStore`, `trials` times.
async fn shared_authmux(target: &Target, trials: usize, dir: &Path) -> Value {
    let file = dir.join("authmux-session.json");
    drop(Authmux::signed_in(target, Some(FileStore::new(&file))).await);
    let mut workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Driven::spawn(
                Command::new(std::env::current_exe().unwrap())
                    .arg("worker")
                    .arg(&file),
                "a worker",
            )
        })
        .collect();
    for worker in &mut workers {
        worker.receive(); // restored
    }
    let result = shared_trials(
        target,
        trials,
        &mut workers,
        |at| json!({ "cmd": "go", "at": at }),
    )
    .await;
    drop(workers);
    result
}

/// Scenario 4, the SDK: `PROCESSES` Node workers on one storage file.
async fn shared_sdk(target: &Target, trials: usize, dir: &Path, sdk: &mut Driven) -> Value {
    let file = dir.join("sdk-session.json");
    let file = file.to_string_lossy().into_owned();
    sdk.call(&json!({ "cmd": "share_login", "file": file }));
    let mut workers: Vec<Driven> = (0..PROCESSES).map(|_| Driven::sdk(target)).collect();
    for worker in &mut workers {
        worker.call(&json!({ "cmd": "share_open", "file": file }));
    }
    shared_trials(
        target,
        trials,
        &mut workers,
        |at| json!({ "cmd": "share_call", "at": at }),
    )
    .await
}

/// Waits past the expiry, then has every worker make one request at the same instant.
async fn shared_trials(
    target: &Target,
    trials: usize,
    workers: &mut [Driven],
    command: impl Fn(u64) -> Value,
) -> Value {
    let mut per_trial = Vec::new();
    for _ in 0..trials {
        tokio::time::sleep(target.past_expiry()).await;
        let go = command(unix_ms() + 300);
        for worker in workers.iter_mut() {
            worker.send(&go);
        }
        let answers: Vec<Value> = workers.iter_mut().map(Driven::receive).collect();
        let statuses: Vec<u64> = answers
            .iter()
            .map(|a| a["status"].as_u64().unwrap())
            .collect();
        let refreshes: u64 = answers
            .iter()
            .map(|a| a["refreshes"].as_u64().unwrap())
            .sum();
        per_trial.push(json!({
            "statuses": statuses,
            "failures": statuses.iter().filter(|s| **s != 200).count(),
            "refreshes": refreshes,
        }));
    }
    let failures: u64 = per_trial
        .iter()
        .map(|t| t["failures"].as_u64().unwrap())
        .sum();
    json!({
        "processes": workers.len(),
        "trials": per_trial,
        "requests": trials * workers.len(),
        "failures": failures,
    })
}

/// The worker of scenario 4: restores the session from `file`, says so, then for each
/// `go` line makes one request at the given instant and answers with its status and
/// the refresh calls it made since the previous one.
async fn worker(file: PathBuf) {
    let target = Target::from_env();
    let client = Authmux::new(&target, Some(FileStore::new(file)));
    client
        .manager
        .restore()
        .await
        .expect("the session file reads")
        .expect("a session is stored");
    println!("{}", json!({ "ok": true }));
    let mut reported = 0;
    let mut lines = std::io::stdin().lock().lines();
    while let Some(Ok(line)) = lines.next() {
        let command: Value = serde_json::from_str(&line).expect("a JSON command");
        let at = command["at"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(unix_ms()))).await;
        let status = client.me().await;
        let refreshes = client.refreshes();
        println!(
            "{}",
            json!({ "ok": true, "status": status, "refreshes": refreshes - reported })
        );
        reported = refreshes;
    }
}

/// One measured round of scenario 5.
#[derive(Debug, Clone, Copy)]
struct Round {
    requests: usize,
    failures: usize,
    cpu_us: f64,
    wall_ms: f64,
}

impl Round {
    fn cpu_per_request(&self) -> f64 {
        self.cpu_us / self.requests.max(1) as f64
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / (self.wall_ms / 1e3)
    }
}

/// Scenario 5: one round of `CALLERS` loops for `length`.
async fn round<F, Fut>(call: F, length: Duration) -> Round
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = u16> + Send,
{
    let cpu = cpu_time();
    let started = Instant::now();
    let deadline = started + length;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let (mut requests, mut failures) = (0, 0);
                while Instant::now() < deadline {
                    requests += 1;
                    failures += usize::from(call().await != 200);
                }
                (requests, failures)
            })
        })
        .collect();
    let (mut requests, mut failures) = (0, 0);
    for task in tasks {
        let (r, f) = task.await.unwrap();
        requests += r;
        failures += f;
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    Round {
        requests,
        failures,
        cpu_us: (cpu_time() - cpu).as_secs_f64() * 1e6,
        wall_ms,
    }
}

async fn throughput(target: &Target, counts: Counts, sdk: &mut Driven) -> Vec<Value> {
    let send = Authmux::signed_in(target, None).await;
    let middleware_manager = Authmux::signed_in(target, None).await;
    let middleware = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AuthMiddleware::new(middleware_manager.manager.clone()))
        .build();
    let plain = Plain::signed_in(target).await;
    // A second plain reqwest client: its ratio to the first is the noise floor.
    let control = Plain::signed_in(target).await;
    let me_url = target.endpoint(ME);
    let clients = [
        "authmux send",
        "AuthMiddleware",
        "plain reqwest",
        "@directus/sdk",
        "plain reqwest (control)",
    ];
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); clients.len()];
    for r in 0..=counts.rounds {
        for turn in 0..clients.len() {
            let i = (turn + r) % clients.len();
            let result = match i {
                0 => {
                    let send = send.clone();
                    round(
                        move || {
                            let send = send.clone();
                            async move { send.me().await }
                        },
                        counts.round,
                    )
                    .await
                }
                1 => {
                    let (middleware, url) = (middleware.clone(), me_url.clone());
                    round(
                        move || {
                            let (middleware, url) = (middleware.clone(), url.clone());
                            async move {
                                match middleware.get(&url).send().await {
                                    Ok(response) => {
                                        let status = response.status().as_u16();
                                        let _ = response.bytes().await;
                                        status
                                    }
                                    Err(_) => 0,
                                }
                            }
                        },
                        counts.round,
                    )
                    .await
                }
                2 | 4 => {
                    let plain = if i == 2 {
                        plain.clone()
                    } else {
                        control.clone()
                    };
                    round(
                        move || {
                            let plain = plain.clone();
                            async move { plain.me().await }
                        },
                        counts.round,
                    )
                    .await
                }
                _ => {
                    let answer = sdk.call(&json!({ "cmd": "throughput", "callers": CALLERS, "ms": counts.round.as_millis() }));
                    Round {
                        requests: usize::try_from(answer["requests"].as_u64().unwrap()).unwrap(),
                        failures: usize::try_from(answer["failures"].as_u64().unwrap()).unwrap(),
                        cpu_us: answer["cpu_us"].as_f64().unwrap(),
                        wall_ms: answer["wall_ms"].as_f64().unwrap(),
                    }
                }
            };
            // Round 0 warms every client up and is not kept.
            if r > 0 {
                results[i].push(result);
            }
        }
    }
    clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let rounds = &results[i];
            let mut figures = json!({
                "callers": CALLERS,
                "round_ms": counts.round.as_millis(),
                "requests_per_round": rounds.iter().map(|r| r.requests).collect::<Vec<_>>(),
                "failures_per_round": rounds.iter().map(|r| r.failures).collect::<Vec<_>>(),
                "cpu_us_per_round": rounds.iter().map(|r| r.cpu_us).collect::<Vec<_>>(),
                "wall_ms_per_round": rounds.iter().map(|r| r.wall_ms).collect::<Vec<_>>(),
                "median_cpu_us_per_request": median(rounds.iter().map(Round::cpu_per_request).collect()),
                "median_requests_per_s": median(rounds.iter().map(Round::rate).collect()),
            });
            if i != 2 && i != 3 {
                let ratio = |other: usize, f: fn(&Round) -> f64| {
                    rounds
                        .iter()
                        .zip(&results[other])
                        .map(|(a, b)| f(a) / f(b))
                        .collect::<Vec<f64>>()
                };
                figures["cpu_ratio_to_plain_reqwest_per_round"] = json!(ratio(2, Round::cpu_per_request));
                figures["throughput_ratio_to_plain_reqwest_per_round"] = json!(ratio(2, Round::rate));
                if i < 2 {
                    figures["cpu_ratio_to_sdk_per_round"] = json!(ratio(3, Round::cpu_per_request));
                }
            }
            row("5 throughput", client, figures)
        })
        .collect()
}

// ----- main --------------------------------------------------------------------------

struct Args {
    smoke: bool,
    json: PathBuf,
    doc: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Args {
    let mut parsed = Args {
        smoke: false,
        json: PathBuf::from("target/bench/peers.json"),
        doc: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => parsed.smoke = true,
            "--json" => parsed.json = args.next().expect("--json PATH").into(),
            "--doc" => parsed.doc = Some(args.next().expect("--doc PATH").into()),
            other => panic!("unknown argument {other}"),
        }
    }
    parsed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("worker") {
        runtime.block_on(worker(PathBuf::from(&args[1])));
        return;
    }
    let args = parse_args(&args);
    let counts = if args.smoke { SMOKE } else { FULL };
    let target = Target::from_env();
    let started = Instant::now();
    let load_before = load_average();
    let dir = std::env::temp_dir().join(format!("authmux-peers-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut sdk = Driven::sdk(&target);
    let versions = sdk.call(&json!({ "cmd": "version" }));

    let mut rows = Vec::new();
    runtime.block_on(async {
        progress("1 sequential", started);
        rows.extend(sequential(&target, counts, &mut sdk).await);

        progress("2 after expiry, concurrent requests", started);
        let (mut a, mut s) = (Vec::new(), Vec::new());
        for _ in 0..counts.storm_trials {
            a.push(storm_authmux(&target, counts.storm).await);
            let command = json!({ "cmd": "storm", "n": counts.storm, "wait_ms": target.past_expiry().as_millis() });
            s.push(sdk.call(&command));
        }
        rows.push(row("2 storm", "authmux", json!({ "requests_per_trial": counts.storm, "trials": a })));
        rows.push(row("2 storm", "@directus/sdk", json!({ "requests_per_trial": counts.storm, "trials": s })));

        progress("3 explicit refreshes", started);
        let trials: Vec<_> = (0..counts.explicit_trials)
            .map(|_| tokio::spawn(explicit_authmux(target.clone())))
            .collect();
        let mut a = Vec::new();
        for trial in trials {
            a.push(trial.await.unwrap());
        }
        let command = json!({ "cmd": "explicit", "trials": counts.explicit_trials, "refreshes": EXPLICIT, "wait_ms": target.past_expiry().as_millis() });
        let s = sdk.call(&command);
        rows.push(row("3 explicit refreshes", "authmux", json!({ "concurrent_refreshes": EXPLICIT, "trials": a })));
        rows.push(row("3 explicit refreshes", "@directus/sdk", json!({ "concurrent_refreshes": EXPLICIT, "trials": s["trials"] })));

        progress("4 processes sharing one session", started);
        rows.push(row("4 shared session", "authmux", shared_authmux(&target, counts.shared_trials, &dir).await));
        let s = shared_sdk(&target, counts.shared_trials, &dir, &mut sdk).await;
        rows.push(row("4 shared session", "@directus/sdk", s));

        progress("5 throughput", started);
        rows.extend(throughput(&target, counts, &mut sdk).await);
    });
    drop(sdk);
    let _ = std::fs::remove_dir_all(&dir);
    let elapsed = started.elapsed();
    let report = json!({
        "date": date(),
        "smoke": args.smoke,
        "json": Path::new("target/bench").join(args.json.file_name().unwrap()),
        "profile": std::env::var("AUTHMUX_BENCH_PROFILE").unwrap_or_else(|_| "unknown".into()),
        "elapsed_s": elapsed.as_secs_f64(),
        "machine": { "cpu": cpu_model(), "cores": std::thread::available_parallelism().map_or(0, usize::from), "load_average_before": load_before, "load_average_after": load_average() },
        "versions": {
            "authmux": std::env::var("AUTHMUX_BENCH_COMMIT").unwrap_or_else(|_| "unknown".into()),
            "rustc": std::env::var("AUTHMUX_BENCH_RUSTC").unwrap_or_else(|_| "unknown".into()),
            "directus": std::env::var("AUTHMUX_BENCH_DIRECTUS_VERSION").unwrap_or_else(|_| "unknown".into()),
            "sdk": versions["sdk"],
            "node": versions["node"],
        },
        "directus_access_ttl_s": target.ttl.as_secs(),
        "sdk_ms_refresh_before_expires": sdk_lead(&target).as_millis(),
        "results": rows,
    });
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    let section = report::section(&report);
    println!("{section}");
    eprintln!("wrote {}", args.json.display());
    if let Some(doc) = &args.doc {
        write_section(
            doc,
            SECTION,
            "Peers: authmux, @directus/sdk and plain reqwest (`cargo xtask bench`)",
            &section,
        )
        .expect("docs/benchmarks.md is writable");
        eprintln!("wrote its section of {}", doc.display());
    }
}

fn progress(what: &str, started: Instant) {
    eprintln!(
        "peers bench: [{:>4.0} s] scenario {what}",
        started.elapsed().as_secs_f64()
    );
}

fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Today's date (UTC), `YYYY-MM-DD`, from the system clock.
fn date() -> String {
    let days = i64::try_from(unix_ms() / 86_400_000).unwrap();
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[path = "peers_report.rs"]
mod report;
