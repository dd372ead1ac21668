//! `cargo xtask ci`: every check CI runs, in order, failing fast; the same command is
//! what `.ci/run` calls, so a green local run means a green CI.
//!
//! Unless `AUTHMUX_DIRECTUS_URL` is already set or `--no-directus` is given, it starts
//! the two Directus servers of [`crate::directus`] while the format and lint checks run,
//! hands their `AUTHMUX_DIRECTUS_*` variables to the tests and doc tests, and stops
//! them once those ran (also when any step fails), before the docs build. The OpenID
//! provider of [`crate::oidc`] is started and stopped the same way, beside them
//! (`AUTHMUX_OIDC_ISSUER`, `--no-oidc`).
//!
//! While Directus runs, after the doc tests, it runs the peers benchmark's smoke version
//! against it ([`crate::bench::smoke`]: each scenario once, nothing written to the docs);
//! the SDK it needs installs while the static checks run.
//! The test step runs the suite once at TRACE and scans every test's output for the
//! secrets the fakes recorded ([`crate::secret_scan`]); the chaos soak
//! ([`crate::soak`], 60 s) runs after the benchmark smoke run, against the fakes and
//! that Directus.
//!
//! Likewise, unless `AUTHMUX_REDIS_URL` is already set, it starts a throwaway
//! `redis-server` ([`crate::redis`], installing Debian's package when missing) for the
//! Redis store's tests, hands them `AUTHMUX_REDIS_URL` and `AUTHMUX_REDIS_SERVER`, and
//! stops it on every exit path.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Result;
use crate::bench;
use crate::directus::install::Install;
use crate::directus::{self, Running, StartFlags};
use crate::oidc::{self, OidcServer};
use crate::redis::{self, RedisServer};
use crate::run::{run, tail};
use crate::{secret_scan, soak};

/// The number of steps, for progress lines.
const STEPS: u32 = 7;

/// Runs `cargo xtask ci [--no-directus] [--no-oidc]`.
pub(crate) fn main(args: &[String]) -> Result {
    let mut no_directus = false;
    let mut no_oidc = false;
    for arg in args {
        match arg.as_str() {
            "--no-directus" => no_directus = true,
            "--no-oidc" => no_oidc = true,
            other => return Err(format!("unknown ci flag `{other}`\n\n{}", crate::USAGE)),
        }
    }
    let started = Instant::now();
    let external_url = std::env::var("AUTHMUX_DIRECTUS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let start_directus = if no_directus {
        warn_skipped(
            "--no-directus",
            "Directus",
            "AUTHMUX_DIRECTUS_URL",
            external_url.as_deref(),
        );
        false
    } else if let Some(url) = &external_url {
        println!("xtask: using the Directus at {url} from AUTHMUX_DIRECTUS_URL; not starting one");
        false
    } else {
        true
    };
    let external_issuer = std::env::var("AUTHMUX_OIDC_ISSUER")
        .ok()
        .filter(|url| !url.is_empty());
    let start_oidc = if no_oidc {
        warn_skipped(
            "--no-oidc",
            "the OpenID provider",
            "AUTHMUX_OIDC_ISSUER",
            external_issuer.as_deref(),
        );
        false
    } else if let Some(url) = &external_issuer {
        println!(
            "xtask: using the OpenID provider at {url} from AUTHMUX_OIDC_ISSUER; not starting one"
        );
        false
    } else {
        true
    };

    let external_redis = std::env::var("AUTHMUX_REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if let Some(url) = &external_redis {
        println!("xtask: using the Redis at {url} from AUTHMUX_REDIS_URL; not starting one");
    }

    let result = std::thread::scope(|scope| {
        // The servers boot while fmt and clippy run; the tests need them only later.
        let directus_starting = start_directus
            .then(|| scope.spawn(|| directus::start_servers(StartFlags::default(), false)));
        let oidc_starting = start_oidc.then(|| scope.spawn(|| OidcServer::start(false)));
        let redis_starting = external_redis
            .is_none()
            .then(|| scope.spawn(|| redis::start_server(false)));
        // The peers benchmark's smoke run needs the SDK (and a Directus).
        let sdk_installing =
            (start_directus || external_url.is_some()).then(|| scope.spawn(bench::install_sdk));
        let static_checks = static_checks();
        // From here on the servers are inside `Running`, which stops them when dropped.
        let servers = directus_starting.map(|starting| {
            starting
                .join()
                .unwrap_or_else(|_| Err("the Directus start panicked".into()))
                .map(Running)
                .map_err(|e| format!("starting Directus failed:\n{e}"))
        });
        let provider = oidc_starting.map(|starting| {
            starting
                .join()
                .unwrap_or_else(|_| Err("the OpenID provider start panicked".into()))
                .map(RunningOidc)
                .map_err(|e| format!("starting the OpenID provider failed:\n{e}"))
        });
        // From here on Redis is inside `RunningRedis`, which stops it when dropped.
        let redis = redis_starting.map(|starting| {
            starting
                .join()
                .unwrap_or_else(|_| Err("the Redis start panicked".into()))
                .map(RunningRedis)
                .map_err(|e| format!("starting Redis failed:\n{e}"))
        });
        let sdk = sdk_installing.map(|installing| {
            installing
                .join()
                .unwrap_or_else(|_| Err("the SDK install panicked".into()))
                .map_err(|e| format!("installing @directus/sdk failed:\n{e}"))
        });
        static_checks?;
        let servers = servers.transpose()?;
        let sdk = sdk.transpose()?;
        let provider = provider.transpose()?;
        let redis = redis.transpose()?;
        let mut env = Vec::new();
        if let Some(servers) = &servers {
            env.extend(directus::exports(&servers.0));
        }
        if let Some(provider) = &provider {
            env.extend(oidc::exports(&provider.0));
        }
        if let Some(redis) = &redis {
            env.extend(redis.0.exports());
        }
        for (name, value) in &env {
            let shown = if name.ends_with("PASSWORD") || name.ends_with("SECRET") {
                "(hidden)"
            } else {
                value
            };
            println!("xtask: test environment: {name}={shown}");
        }
        let result = tests(&env)
            .and_then(|()| bench_smoke(&env, sdk.as_ref()))
            .and_then(|()| {
                // Step 6: the chaos soak, on the fakes and the real Directus still running.
                println!(
                    "xtask: ci step 6/{STEPS}: soak ({} s)",
                    soak::DEFAULT_SECONDS
                );
                let started = Instant::now();
                soak::soak(&env, soak::DEFAULT_SECONDS)?;
                println!(
                    "xtask: ci step 6/{STEPS}: soak passed ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
                Ok(())
            });
        if result.is_err() {
            for server in servers.iter().flat_map(|s| &s.0) {
                println!(
                    "xtask: --- last lines of the Directus `{}` log ---\n{}",
                    server.name,
                    tail(&server.log_file(), 30)
                );
            }
            if let Some(provider) = &provider {
                println!(
                    "xtask: --- last lines of the OpenID provider log ---\n{}",
                    tail(&provider.0.log, 30)
                );
            }
            if let Some(redis) = &redis {
                println!(
                    "xtask: --- last lines of the Redis log ---\n{}",
                    tail(&redis.0.log_file(), 30)
                );
            }
        }
        result
        // `servers`, `provider` and `redis` drop here: they stop, whatever the result.
    })
    // The docs need no server: build them after the servers are gone.
    .and_then(|()| docs());
    match &result {
        Ok(()) => println!(
            "xtask: ci passed in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => println!(
            "xtask: ci FAILED after {:.0} s",
            started.elapsed().as_secs_f64()
        ),
    }
    result
}

/// The Redis server, stopped when this value is dropped.
struct RunningRedis(RedisServer);

impl Drop for RunningRedis {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("xtask: {e}");
        }
    }
}

/// The OpenID provider, stopped when this value is dropped.
struct RunningOidc(OidcServer);

impl Drop for RunningOidc {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("xtask: {e}");
        }
    }
}

/// Steps 1 and 2: formatting and lints.
fn static_checks() -> Result {
    step(
        1,
        "format check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        2,
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// Steps 3 and 4: tests and doc tests, with `env` for the live ones.
///
/// The tests run once, at TRACE, with the fakes recording every secret they issue, and
/// their captured output (passing tests' too, in nextest's JUnit report) is then
/// scanned for those secrets ([`secret_scan`]).
fn tests(env: &[(&'static str, String)]) -> Result {
    let target = target_dir();
    let scan_dir = target.join("secret-scan");
    std::fs::create_dir_all(&scan_dir)
        .map_err(|e| format!("cannot create {}: {e}", scan_dir.display()))?;
    let secret_log = scan_dir.join("secrets.txt");
    let junit = target.join("nextest").join("ci").join("junit.xml");
    for stale in [&secret_log, &junit] {
        // A report or record of an earlier run must not pass for this one's.
        let _ = std::fs::remove_file(stale);
    }
    let mut unit = cargo();
    let nextest = has_nextest();
    if nextest {
        unit.args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--profile",
            "ci",
        ])
        .env("RUST_LOG", "trace")
        .env("AUTHMUX_SECRET_LOG", &secret_log);
    } else {
        println!(
            "xtask: cargo-nextest is not installed; using cargo test, WITHOUT the secret scan \
             (it reads nextest's JUnit report)"
        );
        unit.args(["test", "--workspace", "--all-features"]);
    }
    step(
        3,
        "tests (at TRACE, then the secret scan of their output)",
        unit.envs(env.iter().cloned()),
    )?;
    if nextest {
        let scan = secret_scan::scan_files(&junit, &secret_log)?;
        println!("xtask: {}", secret_scan::verdict(&scan, &secret_log)?);
    }
    step(
        4,
        "doc tests (nextest does not run them)",
        cargo()
            .args(["test", "--workspace", "--doc", "--all-features"])
            .envs(env.iter().cloned()),
    )
}

/// Step 5: `cargo xtask bench --smoke` against the same Directus, while it still runs.
fn bench_smoke(env: &[(&'static str, String)], sdk: Option<&Install>) -> Result {
    let Some(sdk) = sdk else {
        println!(
            "xtask: ci step 5/{STEPS}: peers benchmark smoke run SKIPPED (no Directus: see above)"
        );
        return Ok(());
    };
    println!("xtask: ci step 5/{STEPS}: peers benchmark, smoke run (cargo xtask bench --smoke)");
    let started = Instant::now();
    bench::smoke(env, sdk).map_err(|e| format!("ci step 5/{STEPS} (bench smoke): {e}"))?;
    println!(
        "xtask: ci step 5/{STEPS}: peers benchmark smoke run passed ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Step 7: the docs build without warnings.
fn docs() -> Result {
    step(
        7,
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )
}

/// Runs one numbered step, printing its name and how long it took.
fn step(number: u32, name: &str, command: &mut Command) -> Result {
    println!("xtask: ci step {number}/{STEPS}: {name}");
    let started = Instant::now();
    run(&format!("ci step {number}/{STEPS} ({name})"), command)?;
    println!(
        "xtask: ci step {number}/{STEPS}: {name} passed ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The workspace's target folder (`$CARGO_TARGET_DIR`, else `target` at the root).
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map_or_else(
            || {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .parent()
                    .unwrap_or_else(|| std::path::Path::new("."))
                    .join("target")
            },
            std::path::PathBuf::from,
        )
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Whether `cargo nextest` is available.
fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Says loudly that `flag` skipped starting `what` for the live tests.
fn warn_skipped(flag: &str, what: &str, var: &str, external: Option<&str>) {
    let detail = match external {
        Some(url) => format!("the live tests use {var}={url} from your environment"),
        None => format!("{var} is unset: the live tests of {what} will SKIP"),
    };
    let bar = "#".repeat(78);
    println!("xtask: {bar}");
    println!("xtask: # {flag}: NOT starting {what}; {detail}");
    println!(
        "xtask: # This run does not show what CI shows. Run `cargo xtask ci` before you push."
    );
    println!("xtask: {bar}");
}
