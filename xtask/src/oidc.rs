//! `cargo xtask oidc ...`: install, start, stop and describe a real OpenID Provider,
//! panva's `oidc-provider` (OpenID Certified), for the live tests of `authmux-oauth2`.
//!
//! It runs with the Node 22 package the Directus install uses ([`Install::ensure_with`]
//! in its own cache folder `oidc-provider-<version>`), from the script
//! `xtask/oidc/server.mjs` (embedded in the xtask binary and written next to the
//! install's `node_modules` at every start). [`exports`] turns a running server into the
//! `AUTHMUX_OIDC_*` variables the tests read.
//!
//! `start` records the server in a state file so `env` and `stop` work from other
//! processes (per machine user; set `AUTHMUX_OIDC_INSTANCE` to keep several apart);
//! `ci` keeps none: its server lives and dies with it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use crate::directus::install::{Install, step, write};
use crate::directus::server::{free_port, http_get, random_hex};
use crate::run::{run, show, tail};

/// The `oidc-provider` release the tests run against.
const OIDC_PROVIDER_VERSION: &str = "9.13.3";
/// The server script, written into the install folder at each start.
const SERVER_SCRIPT: &str = include_str!("../oidc/server.mjs");
/// Access token lifetime, in seconds (short, so expiry is exercised for real).
const ACCESS_TTL_SECS: u64 = 10;
/// How long the server may take to answer its discovery document.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A started OpenID provider.
pub(crate) struct OidcServer {
    /// Process id of the `node` process.
    pid: u32,
    /// Whether that process leads its own process group.
    own_group: bool,
    /// The issuer, `http://127.0.0.1:<port>`.
    pub(crate) issuer: String,
    /// The confidential clients' secret (random per start).
    client_secret: String,
    /// The users' password (random per start).
    password: String,
    /// The log file.
    pub(crate) log: PathBuf,
    /// The process handle, when this process started it.
    child: Option<Child>,
}

/// Runs `cargo xtask oidc <args>`.
pub(crate) fn main(args: &[String]) -> Result {
    match args.first().map(String::as_str) {
        Some("install") if args.len() == 1 => install().map(|_| ()),
        Some("start") if args.len() == 1 => start(),
        Some("stop") if args.len() == 1 => stop(),
        Some("env") if args.len() == 1 => env(),
        _ => Err(format!(
            "unknown oidc command `{}`\n\n{}",
            args.join(" "),
            crate::USAGE
        )),
    }
}

/// Installs Node 22 and `oidc-provider` unless already there.
fn install() -> Result<Install> {
    let install = Install::locate_named(&format!("oidc-provider-{OIDC_PROVIDER_VERSION}"))?;
    install.ensure_with(
        &format!("oidc-provider {OIDC_PROVIDER_VERSION}"),
        |install| {
            step(&format!("installing oidc-provider@{OIDC_PROVIDER_VERSION}"));
            run(
                "npm install of oidc-provider",
                install
                    .command("npm")
                    .args(["install", &format!("oidc-provider@{OIDC_PROVIDER_VERSION}")]),
            )?;
            run(
                "oidc-provider check",
                install.command("node").args([
                    "--input-type=module",
                    "-e",
                    "await import('oidc-provider'); console.log('oidc-provider loads')",
                ]),
            )
        },
    )?;
    Ok(install)
}

impl OidcServer {
    /// Installs if needed and starts the server on a free loopback port, returning once
    /// it serves its discovery document. With `detach` it gets its own process group
    /// (it outlives this process and the terminal's Ctrl-C).
    pub(crate) fn start(detach: bool) -> Result<OidcServer> {
        let install = install()?;
        let started = Instant::now();
        let script = install.dir().join("server.mjs");
        write(&script, SERVER_SCRIPT)?;
        let port = free_port()?;
        let issuer = format!("http://127.0.0.1:{port}");
        let run_dir = install.dir().join("run");
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let log = run_dir.join(format!("server-{port}.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
        let client_secret = random_hex(16)?;
        let password = random_hex(12)?;
        let mut command = install.command("node");
        command
            .arg(&script)
            .env("PORT", port.to_string())
            .env("OIDC_CLIENT_SECRET", &client_secret)
            .env("OIDC_PASSWORD", &password)
            .env("OIDC_ACCESS_TTL", ACCESS_TTL_SECS.to_string())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        if detach {
            command.process_group(0);
        }
        println!(
            "xtask: [oidc] $ {} (log: {})",
            show(&command),
            log.display()
        );
        let child = command
            .spawn()
            .map_err(|e| format!("[oidc] cannot start `{}`: {e}", show(&command)))?;
        let mut server = OidcServer {
            pid: child.id(),
            own_group: detach,
            issuer,
            client_secret,
            password,
            log,
            child: Some(child),
        };
        if let Err(e) = server.wait_ready(port) {
            let log_tail = tail(&server.log, 30);
            if let Err(stop) = server.stop() {
                eprintln!("xtask: [oidc] {stop}");
            }
            return Err(format!(
                "[oidc] {e}\n--- last lines of the server log ---\n{log_tail}"
            ));
        }
        println!(
            "xtask: [oidc] oidc-provider {OIDC_PROVIDER_VERSION} ready at {} ({:.1} s)",
            server.issuer,
            started.elapsed().as_secs_f64()
        );
        Ok(server)
    }

    fn wait_ready(&mut self, port: u16) -> Result {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("the server exited before it was ready ({status})"));
            }
            if let Ok((200, body)) = http_get(port, "/.well-known/openid-configuration")
                && body.contains(&self.issuer)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no discovery document at {} within {} s",
                    self.issuer,
                    READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the server process still runs.
    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => is_oidc_process(self.pid),
        }
    }

    /// Stops the server: SIGTERM, then SIGKILL after [`STOP_TIMEOUT`].
    pub(crate) fn stop(&mut self) -> Result {
        for signal in ["TERM", "KILL"] {
            if !self.is_running() {
                return Ok(());
            }
            println!("xtask: [oidc] stopping pid {} (SIG{signal})", self.pid);
            let target = if self.own_group {
                format!("-{}", self.pid)
            } else {
                self.pid.to_string()
            };
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), "--", &target])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if self.is_running() {
            return Err(format!(
                "[oidc] pid {} is still running after SIGKILL",
                self.pid
            ));
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result {
        let mut text = String::new();
        for (key, value) in [
            ("pid", self.pid.to_string()),
            ("own_group", self.own_group.to_string()),
            ("issuer", self.issuer.clone()),
            ("client_secret", self.client_secret.clone()),
            ("password", self.password.clone()),
            ("log", self.log.to_string_lossy().into_owned()),
        ] {
            let _ = writeln!(text, "{key}={value}");
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn load(path: &Path) -> Result<OidcServer> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let need = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| format!("{}: no `{key}`", path.display()))
        };
        Ok(OidcServer {
            pid: need("pid")?
                .parse()
                .map_err(|e| format!("{}: bad pid: {e}", path.display()))?,
            own_group: need("own_group")? == "true",
            issuer: need("issuer")?,
            client_secret: need("client_secret")?,
            password: need("password")?,
            log: need("log")?.into(),
            child: None,
        })
    }
}

/// Whether `pid` is a live process running the OpenID provider script.
fn is_oidc_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let is_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    !is_zombie && String::from_utf8_lossy(&cmdline).contains("oidc-provider")
}

/// The environment variables the live tests read.
pub(crate) fn exports(server: &OidcServer) -> Vec<(&'static str, String)> {
    vec![
        ("AUTHMUX_OIDC_ISSUER", server.issuer.clone()),
        ("AUTHMUX_OIDC_CLIENT_SECRET", server.client_secret.clone()),
        ("AUTHMUX_OIDC_PASSWORD", server.password.clone()),
        ("AUTHMUX_OIDC_ACCESS_TTL_SECS", ACCESS_TTL_SECS.to_string()),
    ]
}

/// `oidc start`.
fn start() -> Result {
    let path = state_file()?;
    if let Ok(mut server) = OidcServer::load(&path)
        && server.is_running()
    {
        return Err(format!(
            "the OpenID provider is already running at {} (pid {}): run \
             `cargo xtask oidc stop` first, or set AUTHMUX_OIDC_INSTANCE",
            server.issuer, server.pid
        ));
    }
    let server = OidcServer::start(true)?;
    server.save(&path)?;
    println!(
        "xtask: for the tests: eval \"$(cargo xtask oidc env)\"; to stop: cargo xtask oidc stop"
    );
    print_exports(&server);
    Ok(())
}

/// `oidc stop`.
fn stop() -> Result {
    let path = state_file()?;
    if !path.exists() {
        println!("xtask: no OpenID provider was running");
        return Ok(());
    }
    let mut server = OidcServer::load(&path)?;
    server.stop()?;
    std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    println!("xtask: stopped the OpenID provider at {}", server.issuer);
    Ok(())
}

/// `oidc env`.
fn env() -> Result {
    let path = state_file()?;
    let mut server = OidcServer::load(&path)
        .map_err(|_| "no OpenID provider is running; run `cargo xtask oidc start`".to_string())?;
    if !server.is_running() {
        return Err(format!(
            "the OpenID provider (pid {}) is not running any more; run `cargo xtask oidc start`",
            server.pid
        ));
    }
    print_exports(&server);
    Ok(())
}

fn print_exports(server: &OidcServer) {
    for (name, value) in exports(server) {
        println!("export {name}='{}'", value.replace('\'', r"'\''"));
    }
}

/// `<install>/run/<AUTHMUX_OIDC_INSTANCE or default>.state`.
fn state_file() -> Result<PathBuf> {
    let instance = std::env::var("AUTHMUX_OIDC_INSTANCE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "default".to_string());
    if !instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "AUTHMUX_OIDC_INSTANCE={instance}: use letters, digits, `-` and `_` only"
        ));
    }
    let install = Install::locate_named(&format!("oidc-provider-{OIDC_PROVIDER_VERSION}"))?;
    Ok(install.dir().join("run").join(format!("{instance}.state")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-oidc-state-{}", std::process::id()));
        let path = dir.join("x.state");
        let server = OidcServer {
            pid: 4_000_001,
            own_group: true,
            issuer: "http://127.0.0.1:9".into(),
            client_secret: "sec".into(),
            password: "pw".into(),
            log: "/tmp/x.log".into(),
            child: None,
        };
        server.save(&path).unwrap();
        let mut loaded = OidcServer::load(&path).unwrap();
        assert_eq!(loaded.issuer, server.issuer);
        assert_eq!(loaded.client_secret, "sec");
        assert_eq!(loaded.password, "pw");
        assert!(!loaded.is_running());
        let vars = exports(&loaded);
        assert_eq!(
            vars[0],
            ("AUTHMUX_OIDC_ISSUER", "http://127.0.0.1:9".into())
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_server_script_is_embedded() {
        assert!(SERVER_SCRIPT.contains("oidc-provider"));
    }
}
