//! Benchmark of the integrations (run with `cargo bench -p authmux-integration-tests
//! --bench layers`): client CPU per request and throughput through `AuthMiddleware`
//! and through `AuthLayer`, against the same clients sending a static bearer header.
//!
//! The server (`authmux-bench-server`, a `StreamServer` answering `GET /hello`) runs in
//! another process, so the CPU time measured (the sum over this process's threads of
//! `/proc/self/task/*/schedstat`, in nanoseconds) is the client's alone. Eight callers
//! send requests concurrently, each one after the other, reading every answer to its
//! end. The variants run interleaved, round after round, so that a change of machine
//! load hits them alike; each ratio is taken within a round and the median over the
//! rounds is reported.
//!
//! Writes its section of `docs/benchmarks.md` (between `<!-- integrations:begin -->`
//! and `<!-- integrations:end -->`).

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark binary reports on stdout"
)]

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
/// Rounds by default (`AUTHMUX_BENCH_ROUNDS` overrides): enough that each variant runs
/// in every position of the round several times.
const ROUNDS: usize = 36;

type Hyper = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct Clients {
    url: String,
    uri: http::Uri,
    header: HeaderValue,
    reqwest: reqwest::Client,
    bare_middleware: ClientWithMiddleware,
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

const VARIANTS: [Variant; 6] = [
    Variant::Reqwest,
    Variant::BareMiddleware,
    Variant::AuthMiddleware,
    Variant::Hyper,
    Variant::AuthLayer,
    Variant::HyperControl,
];

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::Reqwest => "reqwest, static bearer header",
            Self::BareMiddleware => "reqwest-middleware (no middleware), static bearer header",
            Self::AuthMiddleware => "reqwest-middleware + `AuthMiddleware`",
            Self::Hyper => "hyper-util client, static bearer header",
            Self::AuthLayer => "hyper-util client + `AuthLayer`",
            Self::HyperControl => "control: the hyper-util client, static bearer header, again",
        }
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
        Variant::BareMiddleware | Variant::AuthMiddleware => {
            let (client, header) = if variant == Variant::BareMiddleware {
                (&clients.bare_middleware, Some(clients.header.clone()))
            } else {
                (&clients.auth_middleware, None)
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
        let mut copy = http::Request::new(request.body().clone());
        *copy.uri_mut() = request.uri().clone();
        *copy.headers_mut() = request.headers().clone();
        authmux_core::provider::authorize_request(
            manager.provider().as_ref(),
            &session,
            &mut request,
        )
        .unwrap();
        std::hint::black_box((request, copy));
    }
    let authorized_ns = started.elapsed().as_nanos() as f64 / f64::from(N);
    (static_ns, authorized_ns)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn main() {
    let per_caller: usize = std::env::var("AUTHMUX_BENCH_REQUESTS_PER_CALLER")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
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

    let rounds: usize = std::env::var("AUTHMUX_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS);
    let workers: usize = std::env::var("AUTHMUX_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
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
            auth_middleware: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
                .with(AuthMiddleware::new(manager.clone()))
                .build(),
            auth_layer: AuthLayer::new(manager.clone()).layer(hyper.clone()),
            hyper,
        };
        if let Ok(which) = std::env::var("AUTHMUX_BENCH_PROFILE") {
            // One variant alone (its index in `VARIANTS`), for `perf` or callgrind.
            let variant = VARIANTS[which.parse::<usize>().expect("a variant index")];
            let rounds = std::env::var("AUTHMUX_BENCH_PROFILE_ROUNDS")
                .map_or(10, |n| n.parse().expect("a number of rounds"));
            for _ in 0..rounds {
                run(&clients, variant, per_caller).await;
            }
            return None;
        }
        let cost = authorize_cost(&manager, &clients.uri, &clients.header).await;
        // Warm up: connections open, allocator and caches settled.
        for variant in VARIANTS {
            run(&clients, variant, per_caller / 4).await;
        }
        let mut results: Vec<Vec<Measured>> = vec![Vec::new(); VARIANTS.len()];
        let n = VARIANTS.len();
        for round in 0..rounds {
            // Each round starts one variant later, and every other cycle runs backwards,
            // so that each variant runs in every position and after each neighbour.
            let mut order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
            if (round / n) % 2 == 1 {
                order.reverse();
            }
            for i in order {
                results[i].push(run(&clients, VARIANTS[i], per_caller).await);
            }
        }
        Some((results, cost))
    });
    drop(server.stdin.take());
    let _ = server.wait();
    let Some((results, (static_ns, authorized_ns))) = results else {
        return;
    };

    let requests = (CALLERS * per_caller) as f64;
    let cpu_us = |i: usize, round: usize| results[i][round].cpu as f64 / 1_000.0 / requests;
    let rps = |i: usize, round: usize| requests / results[i][round].wall.as_secs_f64();
    // User and system ticks of a variant, summed over all rounds.
    let ticks = |i: usize| {
        results[i]
            .iter()
            .fold((0u64, 0u64), |(u, s), m| (u + m.user, s + m.system))
    };
    let idx = |v: Variant| VARIANTS.iter().position(|x| *x == v).unwrap();
    // The median ratio over the rounds, with its first and third quartiles.
    let ratio = |f: &dyn Fn(usize, usize) -> f64, a: Variant, b: Variant| {
        let mut all: Vec<f64> = (0..rounds).map(|r| f(idx(a), r) / f(idx(b), r)).collect();
        all.sort_by(f64::total_cmp);
        (all[rounds / 4], all[rounds / 2], all[3 * rounds / 4])
    };
    let mut rows = String::new();
    for (i, variant) in VARIANTS.into_iter().enumerate() {
        rows.push_str(&format!(
            "| {} | {:.1} µs | {:.0} req/s |\n",
            variant.label(),
            median((0..rounds).map(|r| cpu_us(i, r)).collect()),
            median((0..rounds).map(|r| rps(i, r)).collect()),
        ));
    }
    let pairs = [
        (
            "`AuthMiddleware` vs the same reqwest-middleware client with a static header",
            Variant::AuthMiddleware,
            Variant::BareMiddleware,
        ),
        (
            "`AuthMiddleware` vs plain reqwest with a static header",
            Variant::AuthMiddleware,
            Variant::Reqwest,
        ),
        (
            "`AuthLayer` vs the same hyper-util client with a static header",
            Variant::AuthLayer,
            Variant::Hyper,
        ),
        (
            "control: the same hyper-util client vs itself (the noise floor)",
            Variant::HyperControl,
            Variant::Hyper,
        ),
    ];
    let mut ratios = String::new();
    for (label, a, b) in pairs {
        let (cpu_q1, cpu, cpu_q3) = ratio(&cpu_us, a, b);
        let (tput_q1, tput, tput_q3) = ratio(&rps, a, b);
        let (cpu_verdict, tput_verdict) = if a == Variant::HyperControl {
            ("", "")
        } else {
            (verdict(cpu <= 1.05), verdict(tput >= 0.95))
        };
        let ((user_a, system_a), (user_b, system_b)) = (ticks(idx(a)), ticks(idx(b)));
        let share = |x: u64, y: u64| x as f64 / y.max(1) as f64;
        ratios.push_str(&format!(
            "| {label} | {cpu:.3}x [{cpu_q1:.3}, {cpu_q3:.3}] {cpu_verdict} | \
             {tput:.3}x [{tput_q1:.3}, {tput_q3:.3}] {tput_verdict} | {:.3}x / {:.3}x |\n",
            share(user_a, user_b),
            share(system_a, system_b),
        ));
    }
    let section = format!(
        "Written by `cargo bench -p authmux-integration-tests --bench layers` \
         (`tests/bench/layers.rs`) on its last run. Client CPU time per request (all threads \
         of the client process, from `/proc/self/task/*/schedstat`) and throughput, {CALLERS} \
         concurrent callers on {workers} runtime worker thread(s), {} requests per variant and round, {rounds} rounds run \
         interleaved (each round starts one variant later, every other cycle backwards, so \
         every variant runs in every position); the server (`GET /hello`, 5 bytes) is another \
         process, started by the benchmark. Medians over the rounds; each ratio is taken \
         within a round (so both sides saw the same machine load), then the median is \
         reported with the first and third quartiles over the rounds in brackets. The \
         control row compares the static-header hyper-util client with itself: how far apart \
         two identical clients measure on this machine in this run. The last column splits \
         the CPU time into user and system (kernel) time, each summed over all rounds \
         (`/proc/self/stat`, in clock ticks): what authmux adds is user-space work, while \
         the kernel's share (sockets, wake-ups) is the same for every client: {:.0} % of \
         the static-header hyper-util client's CPU time in this run.\n\n\
         | client | CPU per request | throughput |\n|---|---|---|\n{rows}\n\
         | ratio (goal: CPU <= 1.05x, throughput >= 0.95x) | CPU | throughput | user / system time |\n|---|---|---|---|\n\
         {ratios}\n\
         In-process, without the network: building a request with a static header costs \
         {static_ns:.0} ns; building one and authorizing it as the integrations do (hot-path \
         session, a copy kept for a replay, the provider's credentials) costs \
         {authorized_ns:.0} ns, so authorizing itself adds {:.0} ns per request.\n",
        CALLERS * per_caller,
        {
            let (user, system) = ticks(idx(Variant::Hyper));
            100.0 * system as f64 / (user + system).max(1) as f64
        },
        authorized_ns - static_ns
    );
    println!("{section}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("docs/benchmarks.md");
    write_section(
        &path,
        "integrations",
        "Integrations (`cargo bench -p authmux-integration-tests --bench layers`)",
        &section,
    )
    .expect("docs/benchmarks.md is writable");
    eprintln!("wrote {}", path.display());
}
