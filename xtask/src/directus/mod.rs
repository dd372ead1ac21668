//! `cargo xtask directus ...`: install, start, stop and describe real Directus 12 servers
//! for the live tests.
//!
//! `start` (and `ci`) run two servers side by side from one install and with one admin
//! account: `main`, with the rate limiter off, and `rate-limited`, with Directus's
//! per-IP rate limiter on and a handful of points, for the 429 tests. [`exports`] turns
//! them into the `AUTHMUX_DIRECTUS_*` variables the tests read.
//!
//! `start` records its servers in state files so `env` and `stop` work from other
//! processes. Those files are per machine user; people who share one account set
//! `AUTHMUX_DIRECTUS_INSTANCE` to keep their servers apart (`ci` keeps no state files:
//! its servers live and die with it).

pub(crate) mod install;
pub(crate) mod server;

use std::path::PathBuf;

use crate::Result;
use install::Install;
use server::{Admin, Options, RateLimit, Server};

/// Name of the server with the rate limiter off.
const MAIN: &str = "main";
/// Name of the server with the rate limiter on.
const RATE_LIMITED: &str = "rate-limited";
/// Both servers, in the order they are started, recorded and exported.
const NAMES: [&str; 2] = [MAIN, RATE_LIMITED];
/// `RATE_LIMITER_DURATION` of the rate-limited server, in seconds.
const RATE_LIMIT_WINDOW_SECS: u32 = 10;

/// What `start` and `ci` can choose about the servers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartFlags {
    /// `ACCESS_TOKEN_TTL` in seconds (`--access-ttl`, default 5 s).
    pub(crate) access_ttl_secs: u64,
    /// `RATE_LIMITER_POINTS` of the rate-limited server (`--rate-limit`, default 5).
    pub(crate) rate_limit_points: u32,
}

impl Default for StartFlags {
    fn default() -> StartFlags {
        StartFlags {
            access_ttl_secs: 5,
            rate_limit_points: 5,
        }
    }
}

/// Runs `cargo xtask directus <args>`.
pub(crate) fn main(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("install") if args.len() == 1 => Install::locate()?.ensure(),
        Some("start") => start(&args[1..]),
        Some("stop") if args.len() == 1 => stop(),
        Some("env") if args.len() == 1 => env(),
        _ => Err(format!(
            "unknown directus command `{}`\n\n{}",
            args.join(" "),
            crate::USAGE
        )),
    }
}

/// Installs Directus if needed and starts both servers concurrently. With `detach`
/// they outlive this process (for `directus start`); without, they stay in this
/// process group and the caller must stop them.
pub(crate) fn start_servers(flags: StartFlags, detach: bool) -> Result<Vec<Server>> {
    let install = Install::locate()?;
    install.ensure()?;
    server::remove_stale_temp_dirs();
    let admin = Admin::random()?;
    let options = [
        Options {
            name: MAIN,
            access_ttl_secs: flags.access_ttl_secs,
            rate_limit: None,
        },
        Options {
            name: RATE_LIMITED,
            access_ttl_secs: flags.access_ttl_secs,
            rate_limit: Some(RateLimit {
                points: flags.rate_limit_points,
                duration_secs: RATE_LIMIT_WINDOW_SECS,
            }),
        },
    ];
    let results: Vec<Result<Server>> = std::thread::scope(|scope| {
        let handles: Vec<_> = options
            .iter()
            .map(|options| scope.spawn(|| Server::start(&install, options, &admin, detach)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a Directus start panicked".into()))
            })
            .collect()
    });
    let mut servers = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(server) => servers.push(server),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok(servers);
    }
    for server in &mut servers {
        if let Err(e) = server.stop() {
            errors.push(e);
        }
    }
    Err(errors.join("\n"))
}

/// Installs Directus if needed and starts the `main` server alone (rate limiter off),
/// in this process group: the caller stops it (for `cargo xtask bench`).
pub(crate) fn start_main(flags: StartFlags) -> Result<Server> {
    let install = Install::locate()?;
    install.ensure()?;
    server::remove_stale_temp_dirs();
    let options = Options {
        name: MAIN,
        access_ttl_secs: flags.access_ttl_secs,
        rate_limit: None,
    };
    Server::start(&install, &options, &Admin::random()?, false)
}

/// Servers that stop when this value is dropped, so no exit path leaves them running.
pub(crate) struct Running(pub(crate) Vec<Server>);

impl Drop for Running {
    fn drop(&mut self) {
        for server in &mut self.0 {
            if let Err(e) = server.stop() {
                eprintln!("xtask: {e}");
            }
        }
    }
}

/// The environment variables the live tests read, for running `servers`.
pub(crate) fn exports(servers: &[Server]) -> Vec<(&'static str, String)> {
    let mut vars = Vec::new();
    for server in servers {
        match server.rate_limit {
            None => vars.extend([
                ("AUTHMUX_DIRECTUS_URL", server.url.clone()),
                ("AUTHMUX_DIRECTUS_ADMIN_EMAIL", server.admin.email.clone()),
                (
                    "AUTHMUX_DIRECTUS_ADMIN_PASSWORD",
                    server.admin.password.clone(),
                ),
                (
                    "AUTHMUX_DIRECTUS_MAIL_FILE",
                    server.mail_file.to_string_lossy().into_owned(),
                ),
                (
                    "AUTHMUX_DIRECTUS_MAIL_SEPARATOR",
                    server::MAIL_SEPARATOR.to_string(),
                ),
                ("AUTHMUX_DIRECTUS_RESET_URL", server::RESET_URL.to_string()),
                (
                    "AUTHMUX_DIRECTUS_ACCESS_TTL_SECS",
                    server.access_ttl_secs.to_string(),
                ),
            ]),
            Some(limit) => vars.extend([
                ("AUTHMUX_DIRECTUS_RATE_LIMITED_URL", server.url.clone()),
                (
                    "AUTHMUX_DIRECTUS_RATE_LIMIT_POINTS",
                    limit.points.to_string(),
                ),
                (
                    "AUTHMUX_DIRECTUS_RATE_LIMIT_DURATION_SECS",
                    limit.duration_secs.to_string(),
                ),
            ]),
        }
    }
    vars
}

/// `directus start [--access-ttl SECONDS] [--rate-limit POINTS]`.
fn start(args: &[String]) -> Result {
    let flags = parse_start_flags(args)?;
    let _lock = lock_instance()?;
    for name in NAMES {
        let path = state_file(name)?;
        if let Ok(mut server) = Server::load(&path) {
            if server.is_running() {
                return Err(format!(
                    "Directus `{name}` is already running at {} (pid {}): if it is yours, \
                     run `cargo xtask directus stop` first; if not, set \
                     AUTHMUX_DIRECTUS_INSTANCE to a name of your own",
                    server.url, server.pid
                ));
            }
            // Left over from a server that died: clean up its temp folder.
            server.stop()?;
        }
        remove_state(&path)?;
    }
    let servers = start_servers(flags, true)?;
    for server in &servers {
        server.save(&state_file(&server.name)?)?;
    }
    println!("xtask: Directus is running:");
    for server in &servers {
        println!(
            "xtask:   {} at {} (log {})",
            server.name,
            server.url,
            server.log_file().display()
        );
    }
    println!(
        "xtask: for the tests: eval \"$(cargo xtask directus env)\"; to stop: cargo xtask directus stop"
    );
    print_exports(&servers);
    Ok(())
}

/// `directus stop`: stops the servers `start` recorded and removes their temp folders.
fn stop() -> Result {
    let _lock = lock_instance()?;
    let mut stopped = 0;
    for name in NAMES {
        let path = state_file(name)?;
        if !path.exists() {
            continue;
        }
        let mut server = Server::load(&path)?;
        server.stop()?;
        remove_state(&path)?;
        println!("xtask: stopped Directus `{}` ({})", server.name, server.url);
        stopped += 1;
    }
    if stopped == 0 {
        println!("xtask: no Directus was running");
    }
    Ok(())
}

/// `directus env`: prints `export` lines for the running servers, for `eval`.
fn env() -> Result {
    let mut servers = Vec::new();
    for name in NAMES {
        let path = state_file(name)?;
        if path.exists() {
            let mut server = Server::load(&path)?;
            if !server.is_running() {
                return Err(format!(
                    "Directus `{name}` (pid {}) is not running any more; \
                     run `cargo xtask directus start`",
                    server.pid
                ));
            }
            servers.push(server);
        }
    }
    if servers.is_empty() {
        return Err("no Directus is running; run `cargo xtask directus start`".into());
    }
    print_exports(&servers);
    Ok(())
}

/// Prints `export NAME='value'` lines for `servers` on stdout.
fn print_exports(servers: &[Server]) {
    for (name, value) in exports(servers) {
        println!("export {name}='{}'", value.replace('\'', r"'\''"));
    }
}

/// Where `start` records the server called `name`: in the folder of the instance set
/// named by `AUTHMUX_DIRECTUS_INSTANCE` (default `default`), so that several people
/// sharing one machine each start, use and stop their own servers.
fn state_file(name: &str) -> Result<PathBuf> {
    Ok(instance_dir()?.join(format!("{name}.state")))
}

/// Takes the lock of this instance set, so that two `start`s (or a `start` and a
/// `stop`) never interleave; released when the file is dropped.
fn lock_instance() -> Result<std::fs::File> {
    let dir = instance_dir()?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(".lock");
    let file = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// The folder of the state files of the instance set named by `AUTHMUX_DIRECTUS_INSTANCE`.
fn instance_dir() -> Result<PathBuf> {
    let instance = std::env::var("AUTHMUX_DIRECTUS_INSTANCE")
        .ok()
        .filter(|instance| !instance.is_empty())
        .unwrap_or_else(|| "default".to_string());
    if !instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "AUTHMUX_DIRECTUS_INSTANCE={instance}: use letters, digits, `-` and `_` only"
        ));
    }
    Ok(Install::locate()?.dir().join("run").join(instance))
}

/// Removes a state file if it exists.
fn remove_state(path: &std::path::Path) -> Result {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// Parses `--access-ttl SECONDS` (`5` or `5s`) and `--rate-limit POINTS`.
fn parse_start_flags(args: &[String]) -> Result<StartFlags> {
    let mut flags = StartFlags::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("`{flag}` needs a value"))
                .map(String::as_str)
        };
        match flag.as_str() {
            "--access-ttl" => {
                let text = value()?;
                flags.access_ttl_secs = text
                    .strip_suffix('s')
                    .unwrap_or(text)
                    .parse()
                    .ok()
                    .filter(|secs| *secs > 0)
                    .ok_or_else(|| format!("`--access-ttl {text}`: expected seconds, like 5s"))?;
            }
            "--rate-limit" => {
                let text = value()?;
                flags.rate_limit_points = text
                    .parse()
                    .ok()
                    .filter(|points| *points > 0)
                    .ok_or_else(|| format!("`--rate-limit {text}`: expected a positive number"))?;
            }
            other => return Err(format!("unknown flag `{other}`\n\n{}", crate::USAGE)),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn start_flags_have_defaults_and_accept_seconds_with_or_without_unit() {
        let default = parse_start_flags(&[]).unwrap();
        assert_eq!((default.access_ttl_secs, default.rate_limit_points), (5, 5));
        let flags = parse_start_flags(&args("--access-ttl 30s --rate-limit 2")).unwrap();
        assert_eq!((flags.access_ttl_secs, flags.rate_limit_points), (30, 2));
        assert_eq!(
            parse_start_flags(&args("--access-ttl 9"))
                .unwrap()
                .access_ttl_secs,
            9
        );
    }

    #[test]
    fn bad_start_flags_are_refused() {
        for bad in [
            "--access-ttl",
            "--access-ttl 0",
            "--access-ttl 5m",
            "--rate-limit 0",
            "--what",
        ] {
            assert!(parse_start_flags(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn exports_describe_both_servers() {
        let limit = RateLimit {
            points: 4,
            duration_secs: 10,
        };
        let servers = [
            server::example(MAIN, None),
            server::example(RATE_LIMITED, Some(limit)),
        ];
        let vars = exports(&servers);
        let get = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("AUTHMUX_DIRECTUS_URL"), Some("http://127.0.0.1:8055"));
        assert_eq!(
            get("AUTHMUX_DIRECTUS_ADMIN_EMAIL"),
            Some("admin@example.com")
        );
        assert_eq!(get("AUTHMUX_DIRECTUS_ADMIN_PASSWORD"), Some("pass'word"));
        assert_eq!(get("AUTHMUX_DIRECTUS_MAIL_FILE"), Some("/tmp/x/mails.txt"));
        assert_eq!(get("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS"), Some("7"));
        assert_eq!(
            get("AUTHMUX_DIRECTUS_RATE_LIMITED_URL"),
            Some("http://127.0.0.1:8055")
        );
        assert_eq!(get("AUTHMUX_DIRECTUS_RATE_LIMIT_POINTS"), Some("4"));
        assert_eq!(get("AUTHMUX_DIRECTUS_RATE_LIMIT_DURATION_SECS"), Some("10"));
        assert_eq!(vars.len(), 10);
    }
}
