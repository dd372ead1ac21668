//! Benchmark of the integrations (run with `cargo bench -p authmux-integration-tests
//! --bench layers`): client CPU per request and throughput through `AuthMiddleware`
//! and through `AuthLayer`, against the same clients sending a static bearer header.
//!
//! The server (`authmux-bench-server`, a `StreamServer` answering `GET /hello`) runs in
//! another process, so the CPU time measured (the sum over this process's threads of
//! `/proc/self/task/*/schedstat`, in nanoseconds) is the client's alone. Eight callers
//! send requests concurrently, each one after the other, reading every answer to its
//! end, on one runtime worker thread (`AUTHMUX_BENCH_WORKERS` overrides): the client and
//! the single-threaded server then have one core each of a two-core machine. (With two
//! workers, three busy threads share two cores, and the CPU time per request of one
//! client swings by 15 % from run to run with the scheduling.)
//!
//! Each comparison is a pair of clients measured in blocks of four short runs, A B B A
//! (B A A B every other block), so that a drift of the machine's load within a block
//! cancels out; the pairs take turns, block after block. A block's ratio is B's CPU
//! time over A's. The blocks are shared out among several processes run one after the
//! other (`AUTHMUX_BENCH_PROCESSES`, 8 by default; each starts its own server): every
//! process lays out its code and heap in memory differently (address-space
//! randomization), which moves a client's CPU time by a few per cent, so a single
//! process measures one draw of that layout. The median over all blocks is reported
//! with a 95 % confidence interval from a cluster bootstrap (processes drawn with
//! replacement, then blocks within each), which holds the spread between processes as
//! well as between blocks, and a goal is met when the whole interval is within it. The
//! control pair (the same client twice) shows the noise floor; a pass-through
//! middleware shows what reqwest-middleware itself costs for having a middleware.
//!
//! The parent process only starts the measuring processes (this binary again, with
//! `AUTHMUX_BENCH_CHILD` set), reads what they print, keeps it in
//! `target/bench-layers-raw.txt` and reports.
//!
//! `AUTHMUX_BENCH_PROFILE=<name>` (`reqwest`, `bare-middleware`, `pass-middleware`,
//! `auth-middleware`, `hyper`, `auth-layer`, `hyper-control`) runs one client alone for
//! `AUTHMUX_BENCH_PROFILE_ROUNDS` rounds (10 by default) and reports nothing: for `perf`
//! or valgrind. `AUTHMUX_BENCH_VALGRIND=<valgrind>` measures the layers under
//! cachegrind instead (see `layers_cost`; `cargo xtask layers-cost` sets it).
//!
//! Writes its section of `docs/benchmarks.md` (between `<!-- integrations:begin -->`
//! and `<!-- integrations:end -->`).

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary reports on stdout"
)]

mod layers_cost;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use authmux_core::{AccessToken, Expiry, SessionManager, TokenSet};
use authmux_integration_tests::bench::{cpu_time, median, user_and_system_ticks, write_section};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_reqwest::AuthMiddleware;
use authmux_tower::{AuthLayer, AuthService};
use bytes::Bytes;
use http::HeaderValue;
use http::header::AUTHORIZATION;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use reqwest_middleware::ClientWithMiddleware;
use tower::{Layer, Service, ServiceExt};

const TOKEN: &str = "bench-token";
const CALLERS: usize = 8;
/// Blocks per pair by default (`AUTHMUX_BENCH_BLOCKS` overrides)...
const BLOCKS: usize = 96;
/// ... shared out among this many measuring processes (`AUTHMUX_BENCH_PROCESSES`
/// overrides), one after the other.
const PROCESSES: usize = 8;
/// Requests per caller and run by default (`AUTHMUX_BENCH_REQUESTS_PER_CALLER`
/// overrides): 2,000 requests a run, about 50 ms of the hyper-util client.
const PER_CALLER: usize = 250;
/// The goals: CPU per request at most this times the static-header client's...
const CPU_GOAL: f64 = 1.05;
/// ... and throughput at least this times its.
const THROUGHPUT_GOAL: f64 = 0.95;

type Hyper = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Clients {
    url: String,
    uri: http::Uri,
    header: HeaderValue,
    reqwest: reqwest::Client,
    bare_middleware: ClientWithMiddleware,
    pass_middleware: ClientWithMiddleware,
    auth_middleware: ClientWithMiddleware,
    hyper: Hyper,
    auth_layer: AuthService<Hyper>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// reqwest, static bearer header.
    Reqwest,
    /// reqwest-middleware with no middleware, static bearer header.
    BareMiddleware,
    /// reqwest-middleware with a middleware that passes every request on as it is,
    /// static bearer header: what reqwest-middleware itself costs for a middleware.
    PassMiddleware,
    /// reqwest-middleware with `AuthMiddleware`.
    AuthMiddleware,
    /// hyper-util client, static bearer header.
    Hyper,
    /// hyper-util client inside `AuthLayer`.
    AuthLayer,
    /// The hyper-util client with a static header again: the control, whose ratio to
    /// `Hyper` shows how far two identical clients differ on this machine (noise).
    HyperControl,
}

const VARIANTS: [Variant; 7] = [
    Variant::Reqwest,
    Variant::BareMiddleware,
    Variant::PassMiddleware,
    Variant::AuthMiddleware,
    Variant::Hyper,
    Variant::AuthLayer,
    Variant::HyperControl,
];

impl Variant {
    /// Its name for `AUTHMUX_BENCH_PROFILE`.
    fn name(self) -> &'static str {
        match self {
            Self::Reqwest => "reqwest",
            Self::BareMiddleware => "bare-middleware",
            Self::PassMiddleware => "pass-middleware",
            Self::AuthMiddleware => "auth-middleware",
            Self::Hyper => "hyper",
            Self::AuthLayer => "auth-layer",
            Self::HyperControl => "hyper-control",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Reqwest => "reqwest, static bearer header",
            Self::BareMiddleware => "reqwest-middleware (no middleware), static bearer header",
            Self::PassMiddleware => {
                "reqwest-middleware + a pass-through middleware, static bearer header"
            }
            Self::AuthMiddleware => "reqwest-middleware + `AuthMiddleware`",
            Self::Hyper => "hyper-util client, static bearer header",
            Self::AuthLayer => "hyper-util client + `AuthLayer`",
            Self::HyperControl => "control: the hyper-util client, static bearer header, again",
        }
    }
}

/// A middleware that passes every request on as it is, returning the next one's future
/// (no future of its own): reqwest-middleware's own cost for having a middleware.
struct Pass;

impl reqwest_middleware::Middleware for Pass {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        request: reqwest::Request,
        extensions: &'life1 mut http::Extensions,
        next: reqwest_middleware::Next<'life2>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>>
                + Send
                + 'async_trait,
        >,
    >
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        next.run(request, extensions)
    }
}

/// CPU time of every thread of this process so far, in nanoseconds.
fn cpu_ns() -> u64 {
    u64::try_from(cpu_time().as_nanos()).expect("CPU time fits in u64 nanoseconds")
}

async fn one(clients: &mut Clients, variant: Variant) {
    match variant {
        Variant::Reqwest => {
            let response = clients
                .reqwest
                .get(&clients.url)
                .header(AUTHORIZATION, clients.header.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }
        Variant::BareMiddleware | Variant::PassMiddleware | Variant::AuthMiddleware => {
            let (client, header) = match variant {
                Variant::BareMiddleware => (&clients.bare_middleware, Some(clients.header.clone())),
                Variant::PassMiddleware => (&clients.pass_middleware, Some(clients.header.clone())),
                _ => (&clients.auth_middleware, None),
            };
            let mut request = client.get(&clients.url);
            if let Some(header) = header {
                request = request.header(AUTHORIZATION, header);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }
        Variant::Hyper | Variant::HyperControl => {
            let request = http::Request::get(clients.uri.clone())
                .header(AUTHORIZATION, clients.header.clone())
                .body(Full::default())
                .unwrap();
            let response = clients.hyper.request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
        Variant::AuthLayer => {
            let request = http::Request::get(clients.uri.clone())
                .body(Full::default())
                .unwrap();
            let service = clients.auth_layer.ready().await.unwrap();
            let response = service.call(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    /// On-CPU nanoseconds of all the process's threads.
    cpu: u64,
    /// User and system clock ticks (coarse: summed over the rounds).
    user: u64,
    system: u64,
}

/// One run: `CALLERS` tasks, each sending `per_caller` requests one after the other.
async fn run(clients: &Clients, variant: Variant, per_caller: usize) -> Measured {
    let cpu = cpu_ns();
    let (user, system) = user_and_system_ticks();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            // Each caller has its own handle, as a task in an application would.
            let mut clients = clients.clone();
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    one(&mut clients, variant).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let wall = started.elapsed();
    let cpu = cpu_ns() - cpu;
    let (user_now, system_now) = user_and_system_ticks();
    Measured {
        wall,
        cpu,
        user: user_now - user,
        system: system_now - system,
    }
}

/// What authorizing one request costs in this process, without any network: ns per
/// request for building a request with a static header, and for building one and
/// authorizing it the way the integrations do (the session from the hot path, a copy
/// kept for a replay, the provider's credentials marked sensitive).
async fn authorize_cost(
    manager: &SessionManager,
    uri: &http::Uri,
    header: &HeaderValue,
) -> (f64, f64) {
    const N: u32 = 200_000;
    let started = Instant::now();
    for _ in 0..N {
        let request = http::Request::get(uri.clone())
            .header(AUTHORIZATION, header.clone())
            .body(Full::<Bytes>::default())
            .unwrap();
        std::hint::black_box(request);
    }
    let static_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
    let started = Instant::now();
    for _ in 0..N {
        let mut request = http::Request::get(uri.clone())
            .body(Full::<Bytes>::default())
            .unwrap();
        let session = manager.try_usable_session().unwrap();
        // The copy's parts, and the credentials added beside them, as `AuthService` does.
        let copy = (
            request.method().clone(),
            request.uri().clone(),
            request.body().clone(),
        );
        authmux_core::provider::authorize_headers(
            manager.provider().as_ref(),
            &session,
            authmux_core::provider::RequestTarget {
                method: &copy.0,
                path: copy.1.path(),
            },
            request.headers_mut(),
        )
        .unwrap();
        std::hint::black_box((request, copy));
    }
    let authorized_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
    (static_ns, authorized_ns)
}

/// A measured ratio: the median over the blocks and its 95 % confidence interval.
#[derive(Debug, Clone, Copy)]
struct Ratio {
    median: f64,
    low: f64,
    high: f64,
    /// The lowest and highest median of a single process.
    spread: (f64, f64),
}

impl Ratio {
    /// The median of the block ratios of every process, and a bootstrap of it: the
    /// median of 2,000 resamples (a fixed seed), their 2.5th and 97.5th percentiles.
    /// Each resample draws processes with replacement, then blocks within each drawn
    /// process with replacement (a cluster bootstrap), so the interval holds the spread
    /// between processes as well as between blocks; `spread` is the lowest and highest
    /// median of one process.
    fn of(processes: &[Vec<f64>]) -> Ratio {
        const RESAMPLES: usize = 2000;
        // xorshift64*: enough randomness for resampling, and the same every run.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            usize::try_from(state.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64)
                .expect("less than n")
        };
        let mut medians: Vec<f64> = (0..RESAMPLES)
            .map(|_| {
                let mut pooled = Vec::new();
                for _ in 0..processes.len() {
                    let blocks = &processes[next(processes.len())];
                    pooled.extend((0..blocks.len()).map(|_| blocks[next(blocks.len())]));
                }
                median(pooled)
            })
            .collect();
        medians.sort_by(f64::total_cmp);
        let per_process: Vec<f64> = processes.iter().map(|b| median(b.clone())).collect();
        Ratio {
            median: median(processes.concat()),
            low: medians[RESAMPLES * 25 / 1000],
            high: medians[RESAMPLES * 975 / 1000],
            spread: (
                per_process.iter().copied().fold(f64::INFINITY, f64::min),
                per_process
                    .iter()
                    .copied()
                    .fold(f64::NEG_INFINITY, f64::max),
            ),
        }
    }

    /// "met" when the whole interval is within the goal, "NOT met" when none of it is,
    /// "undecided" when the interval straddles it.
    fn verdict(self, within: impl Fn(f64) -> bool) -> &'static str {
        match (within(self.low), within(self.high)) {
            (true, true) => "met",
            (false, false) => "NOT met",
            _ => "undecided",
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3}x [{:.3}, {:.3}] (processes {:.3}–{:.3})",
            self.median, self.low, self.high, self.spread.0, self.spread.1
        )
    }
}

/// The comparisons: (label, A the static-header client, B the one compared with it,
/// whether the goals apply).
const PAIRS: [(&str, Variant, Variant, bool); 5] = [
    (
        "`AuthMiddleware` vs the same reqwest-middleware client with a static header",
        Variant::BareMiddleware,
        Variant::AuthMiddleware,
        true,
    ),
    (
        "`AuthLayer` vs the same hyper-util client with a static header",
        Variant::Hyper,
        Variant::AuthLayer,
        true,
    ),
    (
        "reqwest-middleware (no middleware) vs plain reqwest, both with a static header",
        Variant::Reqwest,
        Variant::BareMiddleware,
        false,
    ),
    (
        "reqwest-middleware with a pass-through middleware vs without, both with a static header",
        Variant::BareMiddleware,
        Variant::PassMiddleware,
        false,
    ),
    (
        "control: the same hyper-util client vs itself (the noise floor)",
        Variant::Hyper,
        Variant::HyperControl,
        false,
    ),
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Some(valgrind) = std::env::var_os("AUTHMUX_BENCH_VALGRIND") {
        layers_cost::report(Path::new(&valgrind));
        return;
    }
    let per_caller = env_usize("AUTHMUX_BENCH_REQUESTS_PER_CALLER", PER_CALLER);
    let blocks = env_usize("AUTHMUX_BENCH_BLOCKS", BLOCKS);
    let processes = env_usize("AUTHMUX_BENCH_PROCESSES", PROCESSES).max(1);
    let workers = env_usize("AUTHMUX_BENCH_WORKERS", 1);
    if std::env::var_os("AUTHMUX_BENCH_PROFILE").is_some() || std::env::var_os(CHILD).is_some() {
        measure(per_caller, blocks, workers);
        return;
    }
    // The blocks are shared out among processes started one after the other: each has
    // its own layout of code and heap in memory (address-space randomization), which
    // moves a client's CPU time by a few per cent from one process to the next.
    let mut measured: Vec<Vec<Vec<[Measured; 4]>>> = vec![Vec::new(); PAIRS.len()];
    let mut costs = Vec::new();
    // What the processes printed, kept for a closer look (`target/bench-layers-raw.txt`).
    let mut raw = String::new();
    for process in 0..processes {
        let share = blocks / processes + usize::from(process < blocks % processes);
        eprintln!("process {} of {processes}: {share} blocks", process + 1);
        let output = Command::new(std::env::current_exe().expect("this benchmark's path"))
            .arg("--bench")
            .env(CHILD, "1")
            .env("AUTHMUX_BENCH_BLOCKS", share.to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("a measuring process runs");
        assert!(output.status.success(), "a measuring process failed");
        let out = String::from_utf8_lossy(&output.stdout);
        raw.push_str(&format!("process {process}\n{out}"));
        let (blocks, cost) = parse_measured(&out);
        for (p, pair) in blocks.into_iter().enumerate() {
            measured[p].push(pair);
        }
        costs.push(cost);
    }
    let raw_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("target/bench-layers-raw.txt");
    if let Err(error) = std::fs::write(&raw_path, raw) {
        eprintln!("could not write {}: {error}", raw_path.display());
    }
    let static_ns = median(costs.iter().map(|c| c.0).collect());
    let authorized_ns = median(costs.iter().map(|c| c.1).collect());
    report(&measured, per_caller, workers, static_ns, authorized_ns);
}

/// Set in the processes that measure (see `main`).
const CHILD: &str = "AUTHMUX_BENCH_CHILD";

/// One measuring process: starts the server, measures `blocks` blocks of every pair and
/// prints them on stdout (`parse_measured` reads them back). With
/// `AUTHMUX_BENCH_PROFILE`, runs one variant alone instead and prints nothing.
fn measure(per_caller: usize, blocks: usize, workers: usize) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_authmux-bench-server"))
        .arg(TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the benchmark server starts");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = url::Url::parse(line.trim()).expect("the server prints its URL");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let provider = LinxioProvider::new(LinxioConfig::new(base.clone())).unwrap();
        let manager = SessionManager::new(Arc::new(provider));
        let tokens = TokenSet::new(
            AccessToken::new(TOKEN),
            None,
            Expiry::In(Duration::from_secs(24 * 3600)),
            SystemTime::now(),
        );
        manager.hydrate(tokens).await.unwrap();
        let mut header = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
        header.set_sensitive(true);
        let hyper: Hyper = Client::builder(TokioExecutor::new()).build_http();
        let url = format!("{}hello", base.as_str());
        let clients = Clients {
            uri: url.parse().unwrap(),
            url,
            header,
            reqwest: reqwest::Client::new(),
            bare_middleware: reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build(),
            pass_middleware: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(Pass)
                .build(),
            auth_middleware: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(AuthMiddleware::new(manager.clone()))
                .build(),
            auth_layer: AuthLayer::new(manager.clone()).layer(hyper.clone()),
            hyper,
        };
        if let Ok(which) = std::env::var("AUTHMUX_BENCH_PROFILE") {
            // One variant alone, by name, for `perf` or valgrind (`cargo xtask layers-cost`).
            let variant = VARIANTS
                .into_iter()
                .find(|v| v.name() == which)
                .unwrap_or_else(|| {
                    let names: Vec<_> = VARIANTS.iter().map(|v| v.name()).collect();
                    panic!("AUTHMUX_BENCH_PROFILE={which}: one of {}", names.join(", "))
                });
            for _ in 0..env_usize("AUTHMUX_BENCH_PROFILE_ROUNDS", 10) {
                run(&clients, variant, per_caller).await;
            }
            return None;
        }
        let cost = authorize_cost(&manager, &clients.uri, &clients.header).await;
        // Warm up: connections open, allocator and caches settled.
        for variant in VARIANTS {
            run(&clients, variant, per_caller).await;
        }
        // For each pair and block: the four runs, in the order A B B A.
        let mut measured: Vec<Vec<[Measured; 4]>> = vec![Vec::new(); PAIRS.len()];
        for block in 0..blocks {
            for k in 0..PAIRS.len() {
                // The pairs take turns starting a block.
                let p = (k + block) % PAIRS.len();
                let (_, a, b, _) = PAIRS[p];
                let backwards = block % 2 == 1;
                let order = if backwards {
                    [b, a, a, b]
                } else {
                    [a, b, b, a]
                };
                let mut runs = Vec::with_capacity(4);
                for variant in order {
                    runs.push(run(&clients, variant, per_caller).await);
                }
                if backwards {
                    // Stored as A B B A whichever order they ran in.
                    runs.swap(0, 1);
                    runs.swap(2, 3);
                }
                measured[p].push(runs.try_into().unwrap());
            }
        }
        Some((measured, cost))
    });
    drop(server.stdin.take());
    let _ = server.wait();
    let Some((measured, (static_ns, authorized_ns))) = results else {
        return;
    };
    let mut out = format!("cost {static_ns} {authorized_ns}\n");
    for (p, blocks) in measured.iter().enumerate() {
        for block in blocks {
            out.push_str(&format!("block {p}"));
            for m in block {
                out.push_str(&format!(
                    " {} {} {} {}",
                    m.wall.as_nanos(),
                    m.cpu,
                    m.user,
                    m.system
                ));
            }
            out.push('\n');
        }
    }
    print!("{out}");
}

/// Reads back what `measure` printed: the blocks of each pair, and the in-process
/// costs (static, authorized) in nanoseconds.
fn parse_measured(out: &str) -> (Vec<Vec<[Measured; 4]>>, (f64, f64)) {
    let mut blocks: Vec<Vec<[Measured; 4]>> = vec![Vec::new(); PAIRS.len()];
    let mut cost = None;
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["cost", s, a] => cost = Some((s.parse().unwrap(), a.parse().unwrap())),
            ["block", p, rest @ ..] if rest.len() == 16 => {
                let n: Vec<u64> = rest.iter().map(|x| x.parse().unwrap()).collect();
                let runs: Vec<Measured> = n
                    .chunks(4)
                    .map(|m| Measured {
                        wall: Duration::from_nanos(m[0]),
                        cpu: m[1],
                        user: m[2],
                        system: m[3],
                    })
                    .collect();
                blocks[p.parse::<usize>().unwrap()].push(runs.try_into().unwrap());
            }
            _ => panic!("unexpected line from a measuring process: {line:?}"),
        }
    }
    (
        blocks,
        cost.expect("the measuring process printed its costs"),
    )
}

/// `measured[pair][process]`: the blocks one process measured for one pair.
fn report(
    measured: &[Vec<Vec<[Measured; 4]>>],
    per_caller: usize,
    workers: usize,
    static_ns: f64,
    authorized_ns: f64,
) {
    let requests = (CALLERS * per_caller) as f64;
    let processes = measured[0].len();
    let blocks: usize = measured[0].iter().map(Vec::len).sum();
    // Every run of every variant, whichever pair it ran in.
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); VARIANTS.len()];
    let idx = |v: Variant| VARIANTS.iter().position(|x| *x == v).unwrap();
    for (p, (_, a, b, _)) in PAIRS.into_iter().enumerate() {
        for block in measured[p].iter().flatten() {
            runs[idx(a)].extend([block[0], block[3]]);
            runs[idx(b)].extend([block[1], block[2]]);
        }
    }
    let mut rows = String::new();
    for (i, variant) in VARIANTS.into_iter().enumerate() {
        let cpu_us: Vec<f64> = runs[i]
            .iter()
            .map(|m| m.cpu as f64 / 1_000.0 / requests)
            .collect();
        let rps: Vec<f64> = runs[i]
            .iter()
            .map(|m| requests / m.wall.as_secs_f64())
            .collect();
        rows.push_str(&format!(
            "| {} | {:.1} µs | {:.0} req/s |\n",
            variant.label(),
            median(cpu_us),
            median(rps),
        ));
    }
    let mut ratios = String::new();
    for (p, (label, _, _, goals)) in PAIRS.into_iter().enumerate() {
        let processes = &measured[p];
        let cpu = Ratio::of(
            &processes
                .iter()
                .map(|blocks| {
                    blocks
                        .iter()
                        .map(|m| (m[1].cpu + m[2].cpu) as f64 / (m[0].cpu + m[3].cpu) as f64)
                        .collect()
                })
                .collect::<Vec<_>>(),
        );
        // Throughput: the same number of requests, so the ratio of the wall times.
        let throughput = Ratio::of(
            &processes
                .iter()
                .map(|blocks| {
                    blocks
                        .iter()
                        .map(|m| {
                            (m[0].wall + m[3].wall).as_secs_f64()
                                / (m[1].wall + m[2].wall).as_secs_f64()
                        })
                        .collect()
                })
                .collect::<Vec<_>>(),
        );
        let blocks: Vec<&[Measured; 4]> = processes.iter().flatten().collect();
        let (cpu_verdict, throughput_verdict) = if goals {
            (
                cpu.verdict(|r| r <= CPU_GOAL),
                throughput.verdict(|r| r >= THROUGHPUT_GOAL),
            )
        } else {
            ("", "")
        };
        let ticks = |runs: &mut dyn Iterator<Item = &Measured>| {
            runs.fold((0u64, 0u64), |(u, s), m| (u + m.user, s + m.system))
        };
        let (user_a, system_a) = ticks(&mut blocks.iter().flat_map(|m| [&m[0], &m[3]]));
        let (user_b, system_b) = ticks(&mut blocks.iter().flat_map(|m| [&m[1], &m[2]]));
        let share = |x: u64, y: u64| x as f64 / y.max(1) as f64;
        ratios.push_str(&format!(
            "| {label} | {cpu} {cpu_verdict} | {throughput} {throughput_verdict} | {:.3}x / {:.3}x |\n",
            share(user_b, user_a),
            share(system_b, system_a),
        ));
    }
    let hyper_share = {
        let hyper = VARIANTS.iter().position(|x| *x == Variant::Hyper).unwrap();
        let (user, system) = runs[hyper]
            .iter()
            .fold((0u64, 0u64), |(u, s), m| (u + m.user, s + m.system));
        100.0 * system as f64 / (user + system).max(1) as f64
    };
    let section = format!(
        "Written by `cargo bench -p authmux-integration-tests --bench layers` \
         (`tests/bench/layers.rs`) on its last run. Client CPU time per request (all threads \
         of the client process, from `/proc/self/task/*/schedstat`) and throughput, {CALLERS} \
         concurrent callers on {workers} runtime worker thread(s) (the server, `GET /hello` \
         answering 5 bytes, is another process with one thread: each has a core of this \
         two-core machine), {} requests a run. Each comparison ran in {blocks} blocks of four \
         runs, A B B A or B A A B, the pairs taking turns: a block's ratio compares runs \
         next to each other in time, and the order cancels a drift of the machine's load \
         within it. The blocks were shared out among {processes} processes run one after \
         the other (each with its own server): every process lays out code and heap in \
         memory differently, which moves a client's CPU time by a few per cent, so one \
         process alone is one draw of that layout. The ratio is the median over all \
         blocks, with its 95 % confidence interval in brackets (a bootstrap drawing \
         processes, then blocks within them, so the interval holds the spread between \
         processes), and the lowest and highest median of a single process; a goal is met \
         when the whole interval is within it, and undecided when the interval straddles \
         it. The control \
         row compares the static-header hyper-util client with itself: how far apart two \
         identical clients measure in this run. The last column splits the CPU time into \
         user and system (kernel) time, summed over the blocks (`/proc/self/stat`, in \
         clock ticks); the kernel's share of the static-header hyper-util client's CPU \
         time: {hyper_share:.0} %.\n\n\
         | client | CPU per request | throughput |\n|---|---|---|\n{rows}\n\
         | ratio (goal: CPU <= {CPU_GOAL}x, throughput >= {THROUGHPUT_GOAL}x) | CPU | throughput | user / system time |\n|---|---|---|---|\n\
         {ratios}\n\
         In-process, without the network: building a request with a static header costs \
         {static_ns:.0} ns; building one and authorizing it as the integrations do (hot-path \
         session, a copy kept for a replay, the provider's credentials) costs \
         {authorized_ns:.0} ns, so authorizing itself adds {:.0} ns per request.\n",
        CALLERS * per_caller,
        authorized_ns - static_ns
    );
    publish(
        "integrations",
        "Integrations (`cargo bench -p authmux-integration-tests --bench layers`)",
        &section,
    );
}

/// Prints `section` and writes it as section `name` of `docs/benchmarks.md`.
fn publish(name: &str, heading: &str, section: &str) {
    println!("{section}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("docs/benchmarks.md");
    write_section(&path, name, heading, section).expect("docs/benchmarks.md is writable");
    eprintln!("wrote {}", path.display());
}
