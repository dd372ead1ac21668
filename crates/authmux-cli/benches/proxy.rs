//! Requests per second through `authmux proxy` against the same backend reached
//! directly, and the latency the proxy adds (median and p99).
//!
//! The backend is a local hyper server answering `200 ok` to requests that carry the
//! session's bearer token. A profile pointing at it is written by hand (a Linxio
//! session valid for an hour, so no refresh happens while measuring), the real
//! `authmux proxy` binary serves it, and 8 concurrent clients (each with its own
//! keep-alive connection) send GETs, first directly with the token, then through the
//! proxy without one, alternating rounds so that both see the same machine load.
//!
//! `cargo bench -p authmux-cli --bench proxy` measures and writes the section of
//! `docs/benchmarks.md` between its markers (and `target/bench/proxy.json`);
//! `cargo test --benches` runs a short check only.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use authmux::{
    AccessToken, FileStore, ProviderConfig, RefreshToken, Session, SessionStore, TokenSet,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");
const TOKEN: &str = "bench-access-token";
const CLIENTS: usize = 8;
const BEGIN: &str = "<!-- authmux proxy benchmark: begin -->";
const END: &str = "<!-- authmux proxy benchmark: end -->";

/// The backend: `200 ok` with the right bearer token, `401` otherwise.
async fn backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let authorized = request
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                    if !authorized {
                        *response.status_mut() = StatusCode::UNAUTHORIZED;
                    }
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A profile signed in to the backend, written the way `authmux login` writes it.
async fn profile(home: &Path, backend: std::net::SocketAddr) {
    let url: url::Url = format!("http://{backend}/").parse().unwrap();
    let dir = home.join("profiles/default");
    for folder in [home, &home.join("profiles"), &dir] {
        std::fs::create_dir_all(folder).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
    }
    let config = serde_json::to_vec(&ProviderConfig::new("linxio", url.clone()).unwrap()).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let now = SystemTime::now();
    let session = Session::new(
        "linxio",
        url,
        TokenSet {
            access: AccessToken::new(TOKEN),
            refresh: Some(RefreshToken::new("bench-refresh-token")),
            expires_at: Some(now + Duration::from_secs(3600)),
            issued_at: now,
        },
    );
    FileStore::new(dir.join("session.json"))
        .save(&session)
        .await
        .unwrap();
}

fn start_proxy(home: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(["proxy", "--listen", "127.0.0.1:0"])
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
    (child, url)
}

/// `CLIENTS` clients sending `per_client` GETs each to `url`; returns the wall time and
/// every request's latency.
async fn load(url: &str, bearer: bool, per_client: usize) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = url.to_owned();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let begun = Instant::now();
                let mut request = client.get(&url);
                if bearer {
                    request = request.bearer_auth(TOKEN);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await.unwrap();
                latencies.push(begun.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::with_capacity(CLIENTS * per_client);
    while let Some(latencies) = tasks.join_next().await {
        all.extend(latencies.unwrap());
    }
    (started.elapsed(), all)
}

struct Figures {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn figures(wall: Duration, mut latencies: Vec<Duration>) -> Figures {
    latencies.sort();
    // Nearest rank, the quantile given in thousandths.
    let at = |per_mille: usize| {
        let last = latencies.len() - 1;
        latencies[(last * per_mille / 1000).min(last)].as_secs_f64() * 1e6
    };
    Figures {
        rps: latencies.len() as f64 / wall.as_secs_f64(),
        p50_us: at(500),
        p99_us: at(990),
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, per_client) = if full { (4, 2500) } else { (1, 50) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let backend = runtime.block_on(backend());
    runtime.block_on(profile(&home, backend));
    let (mut proxy, proxy_url) = start_proxy(&home);
    let direct_url = format!("http://{backend}/items");
    let proxied_url = format!("{proxy_url}/items");

    // Warm-up: connections, the proxy's first session read.
    runtime.block_on(load(&direct_url, true, 50));
    runtime.block_on(load(&proxied_url, false, 50));
    let (mut direct, mut proxied) = ((Duration::ZERO, Vec::new()), (Duration::ZERO, Vec::new()));
    for _ in 0..rounds {
        let (wall, lat) = runtime.block_on(load(&direct_url, true, per_client));
        direct.0 += wall;
        direct.1.extend(lat);
        let (wall, lat) = runtime.block_on(load(&proxied_url, false, per_client));
        proxied.0 += wall;
        proxied.1.extend(lat);
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    let requests = direct.1.len();
    let d = figures(direct.0, direct.1);
    let p = figures(proxied.0, proxied.1);
    let table = format!(
        "| path ({CLIENTS} concurrent clients, {requests} GETs each way) | requests/s | median | p99 |\n\
         |---|---|---|---|\n\
         | backend directly | {:.0} | {:.0} µs | {:.0} µs |\n\
         | through `authmux proxy` | {:.0} | {:.0} µs | {:.0} µs |\n\
         | proxy minus direct | {:.2}x | {:+.0} µs | {:+.0} µs |\n",
        d.rps,
        d.p50_us,
        d.p99_us,
        p.rps,
        p.p50_us,
        p.p99_us,
        p.rps / d.rps,
        p.p50_us - d.p50_us,
        p.p99_us - d.p99_us,
    );
    println!("{table}");
    if !full {
        println!("quick check only (run `cargo bench -p authmux-cli --bench proxy` to measure)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    std::fs::create_dir_all(target.join("bench")).unwrap();
    let json = serde_json::json!({
        "clients": CLIENTS,
        "requests_each_way": requests,
        "direct": {"rps": d.rps, "p50_us": d.p50_us, "p99_us": d.p99_us},
        "proxy": {"rps": p.rps, "p50_us": p.p50_us, "p99_us": p.p99_us},
    });
    std::fs::write(
        target.join("bench/proxy.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    let section = format!(
        "{BEGIN}\n## `authmux proxy`\n\n\
         Written by `cargo bench -p authmux-cli --bench proxy` \
         (`crates/authmux-cli/benches/proxy.rs`) on its last run; raw figures in \
         `target/bench/proxy.json`. A local hyper backend answering `200 ok`; {CLIENTS} \
         clients with keep-alive connections, the direct and proxied runs alternating in \
         {rounds} rounds on the same machine (2 cores, shared with the clients and the \
         backend, so the proxy competes with them for CPU). The proxy's added latency is \
         the difference of the two distributions' percentiles.\n\n{table}{END}\n"
    );
    update_section(&root.join("docs/benchmarks.md"), &section);
}

/// Replaces this benchmark's section of `path` (between its markers), or appends it.
fn update_section(path: &Path, section: &str) {
    let doc = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (doc.find(BEGIN), doc.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            format!(
                "{}{section}{}",
                &doc[..begin],
                doc[end + END.len()..].trim_start_matches('\n')
            )
        }
        _ => format!("{}\n\n{section}", doc.trim_end()),
    };
    std::fs::write(path, updated).unwrap();
}
