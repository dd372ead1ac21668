//! Project automation for authmux, run as `cargo xtask <command>` (an alias in
//! `.cargo/config.toml`). Plain std, no dependencies: see `USAGE` for the commands.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports to its user on stdout and stderr"
)]

mod bench;
mod ci;
mod directus;
mod layers_cost;
mod oidc;
mod redis;
mod run;
mod secret_scan;
mod soak;

/// Every xtask step either succeeds or fails with a message for the person at the terminal.
type Result<T = ()> = std::result::Result<T, String>;

/// The command-line help.
const USAGE: &str = "\
usage: cargo xtask <command>

  ci [--no-directus] [--no-oidc]
                       fmt check, clippy, tests (at TRACE, with the secret scan of
                       their output), doc tests, a 60 s soak and docs, as CI runs them.
                       Starts two Directus servers and the OpenID provider for the live
                       tests (and stops them) unless AUTHMUX_DIRECTUS_URL /
                       AUTHMUX_OIDC_ISSUER is set or --no-directus / --no-oidc is given,
                       and a redis-server unless AUTHMUX_REDIS_URL is set; runs
                       `bench --smoke` against that Directus.
  bench [--smoke]      authmux vs @directus/sdk 26 vs plain reqwest on one real Directus
                       (started and stopped here unless AUTHMUX_DIRECTUS_URL is set; the
                       SDK installed into the cache folder): writes target/bench/peers.json
                       and the peers table of docs/benchmarks.md (a few minutes).
                       --smoke: each scenario once, small counts, debug build, writes only
                       target/bench/peers-smoke.json (ci runs this)
  layers-cost          what AuthMiddleware and AuthLayer add per request by cachegrind's
                       count of instructions and model of the caches (no CPU-time noise):
                       each client alone under valgrind (Debian's package, installed
                       when missing), writes the layers-cost section of
                       docs/benchmarks.md (about 6 minutes)
  directus install     install Node 22 and Directus 12.4.0 into the cache folder
                       ($AUTHMUX_CACHE_DIR, else $XDG_CACHE_HOME/authmux, else
                       ~/.cache/authmux), unless already there
  directus start [--access-ttl SECONDS] [--rate-limit POINTS]
                       install if needed, then start two servers in the background on
                       free loopback ports: `main` and `rate-limited` (rate limiter on
                       with POINTS per 10 s, default 5); access tokens live SECONDS
                       (default 5s)
  directus env         print `export AUTHMUX_DIRECTUS_...` lines for the running servers:
                       eval \"$(cargo xtask directus env)\"
  directus stop        stop the servers and remove their temp folders

  oidc install         install Node 22 and oidc-provider 9.13.3 into the cache folder
  oidc start           start the OpenID provider (xtask/oidc/server.mjs) in the
                       background on a free loopback port
  oidc env             print `export AUTHMUX_OIDC_...` lines: eval \"$(cargo xtask oidc env)\"
  oidc stop            stop it (AUTHMUX_OIDC_INSTANCE=<name> keeps several apart)
  redis install        install Debian's redis-server package when redis-server is
                       not on PATH (apt-get, as root or with sudo -n)
  redis start          install if needed, then start a throwaway redis-server on a free
                       loopback port in the background (data in a temp folder)
  redis env            print `export AUTHMUX_REDIS_URL=...` (and AUTHMUX_REDIS_SERVER)
                       for the running server: eval \"$(cargo xtask redis env)\"
  redis stop           stop it and remove its temp folder

  soak [--seconds N]   the chaos soak (default 60 s): CLI and manager processes sharing
                       a profile on each fake and on the real Directus behind the fault
                       proxy, with random faults and short token lifetimes; prints calls,
                       transient errors, sessions lost, refreshes per expiry and the
                       longest call; fails on a lost session or a double refresh.
                       Starts (and stops) a Directus unless AUTHMUX_DIRECTUS_URL is set.

  secret-scan          fail if a secret the fakes recorded appears in any test's
                       output: after `RUST_LOG=trace AUTHMUX_SECRET_LOG=$PWD/target/
                       secret-scan/secrets.txt cargo nextest run --profile ci ...`
                       (ci runs the whole suite this way and scans it)

  start, env and stop share their record of the servers through the cache folder; when
  several people share one machine account, each sets AUTHMUX_DIRECTUS_INSTANCE=<name>
  (AUTHMUX_REDIS_INSTANCE=<name> for Redis) so as to start, see and stop only their
  own servers.";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::main(&args[1..]),
        Some("ci") => ci::main(&args[1..]),
        Some("directus") => directus::main(&args[1..]),
        Some("layers-cost") => layers_cost::main(&args[1..]),
        Some("oidc") => oidc::main(&args[1..]),
        Some("redis") => redis::main(&args[1..]),
        Some("secret-scan") => secret_scan::main(&args[1..]),
        Some("soak") => soak::main(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
