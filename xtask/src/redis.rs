//! `cargo xtask redis ...`: a throwaway `redis-server` for the Redis store's tests.
//!
//! `install` puts Debian's `redis-server` package on the machine when `redis-server` is
//! not on `PATH` (`apt-get`, as root or through `sudo -n`). `start` runs one on a free
//! loopback port with its own temp folder (append-only file on, so a restart keeps the
//! data), records it in a state file in the cache folder so `env` and `stop` work from
//! other processes, and prints `AUTHMUX_REDIS_URL`. `cargo xtask ci` starts one of its
//! own next to the static checks and stops it on every exit path.
//!
//! `AUTHMUX_REDIS_INSTANCE=<name>` keeps the servers of people sharing one machine
//! account apart, like `AUTHMUX_DIRECTUS_INSTANCE`.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;
use crate::directus::install::{Install, non_empty_var};
use crate::run::ensure_debian_package;

/// How long a server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start of the name of every server's temp folder.
const TEMP_DIR_PREFIX: &str = "authmux-redis-";

/// Runs `cargo xtask redis <args>`.
pub(crate) fn main(args: &[String]) -> Result {
    match args {
        [cmd] if cmd == "install" => ensure_installed().map(|_| ()),
        [cmd] if cmd == "start" => start_command(),
        [cmd] if cmd == "stop" => stop_command(),
        [cmd] if cmd == "env" => env_command(),
        _ => Err(format!(
            "unknown redis command `{}`\n\n{}",
            args.join(" "),
            crate::USAGE
        )),
    }
}

/// A running `redis-server`.
pub(crate) struct RedisServer {
    /// Its process id.
    pid: u32,
    /// The loopback port it listens on.
    port: u16,
    /// The temp folder holding its data and log.
    dir: PathBuf,
    /// The binary it runs (`AUTHMUX_REDIS_SERVER` for the tests that start their own).
    binary: PathBuf,
    /// The process handle, when this process started it.
    child: Option<Child>,
}

impl RedisServer {
    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The variables the tests read: the URL of this server, and the binary for the
    /// tests that start (and kill, and restart) servers of their own.
    pub(crate) fn exports(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTHMUX_REDIS_URL", self.url()),
            (
                "AUTHMUX_REDIS_SERVER",
                self.binary.to_string_lossy().into_owned(),
            ),
        ]
    }

    /// The server's log file.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether the process still runs.
    fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => ping(self.port) && Path::new(&format!("/proc/{}", self.pid)).exists(),
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL) and removes its temp folder.
    pub(crate) fn stop(&mut self) -> Result {
        if self.is_running() {
            println!("xtask: [redis] stopping pid {}", self.pid);
            let _ = Command::new("kill")
                .args(["-TERM", "--", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let started = Instant::now();
            while self.is_running() && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if self.is_running() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &self.pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait();
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .map_err(|e| format!("cannot remove {}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    fn save(&self, path: &Path) -> Result {
        let mut text = String::new();
        let _ = writeln!(text, "pid={}", self.pid);
        let _ = writeln!(text, "port={}", self.port);
        let _ = writeln!(text, "dir={}", self.dir.display());
        let _ = writeln!(text, "binary={}", self.binary.display());
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn load(path: &Path) -> Result<RedisServer> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("{} has no `{key}`", path.display()))
        };
        Ok(RedisServer {
            pid: get("pid")?.parse().map_err(|e| format!("bad pid: {e}"))?,
            port: get("port")?.parse().map_err(|e| format!("bad port: {e}"))?,
            dir: PathBuf::from(get("dir")?),
            binary: PathBuf::from(get("binary")?),
            child: None,
        })
    }
}

/// The `redis-server` on `PATH`, installing Debian's package first when there is none.
pub(crate) fn ensure_installed() -> Result<PathBuf> {
    ensure_debian_package("redis-server", "redis-server", "Redis 7")
}

/// Installs Redis if needed and starts a server on a free loopback port. With `detach`
/// it gets its own process group and outlives this process (for `redis start`).
pub(crate) fn start_server(detach: bool) -> Result<RedisServer> {
    let binary = ensure_installed()?;
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    let dir = std::env::temp_dir().join(format!("{TEMP_DIR_PREFIX}{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let log = dir.join("redis.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| format!("cannot reuse {}: {e}", log.display()))?;
    let mut command = Command::new(&binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(&dir)
        .args(["--appendonly", "yes", "--save", "", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(err_file);
    if detach {
        command.process_group(0);
    }
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut server = RedisServer {
        pid: child.id(),
        port,
        dir,
        binary,
        child: Some(child),
    };
    let started = Instant::now();
    while !ping(port) {
        if !server.is_running() || started.elapsed() > READY_TIMEOUT {
            let log = crate::run::tail(&server.log_file(), 20);
            let _ = server.stop();
            return Err(format!("redis-server did not start:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "xtask: [redis] redis-server {} ready at {} in {:.1} s",
        server.binary.display(),
        server.url(),
        started.elapsed().as_secs_f64()
    );
    Ok(server)
}

/// `redis start`.
fn start_command() -> Result {
    let state = state_file()?;
    if let Ok(mut server) = RedisServer::load(&state) {
        if server.is_running() {
            return Err(format!(
                "Redis is already running at {} (pid {}): `cargo xtask redis stop` first, or \
                 set AUTHMUX_REDIS_INSTANCE to a name of your own",
                server.url(),
                server.pid
            ));
        }
        server.stop()?;
    }
    let server = start_server(true)?;
    server.save(&state)?;
    println!(
        "xtask: for the tests: eval \"$(cargo xtask redis env)\"; to stop: cargo xtask redis stop"
    );
    print_exports(&server);
    Ok(())
}

/// `redis stop`.
fn stop_command() -> Result {
    let state = state_file()?;
    if !state.exists() {
        println!("xtask: no Redis was running");
        return Ok(());
    }
    let mut server = RedisServer::load(&state)?;
    server.stop()?;
    std::fs::remove_file(&state).map_err(|e| format!("cannot remove {}: {e}", state.display()))?;
    println!("xtask: stopped Redis ({})", server.url());
    Ok(())
}

/// `redis env`.
fn env_command() -> Result {
    let mut server = RedisServer::load(&state_file()?)
        .map_err(|_| "no Redis is running; run `cargo xtask redis start`".to_string())?;
    if !server.is_running() {
        return Err("Redis is not running any more; run `cargo xtask redis start`".into());
    }
    print_exports(&server);
    Ok(())
}

fn print_exports(server: &RedisServer) {
    for (name, value) in server.exports() {
        println!("export {name}='{}'", value.replace('\'', r"'\''"));
    }
}

/// `<cache>/redis/<instance>.state`.
fn state_file() -> Result<PathBuf> {
    let instance = non_empty_var("AUTHMUX_REDIS_INSTANCE")
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "default".into());
    if !instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "AUTHMUX_REDIS_INSTANCE={instance}: use letters, digits, `-` and `_` only"
        ));
    }
    let install = Install::locate()?;
    let base = install.dir().parent().unwrap_or(install.dir());
    let dir = base.join("redis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir.join(format!("{instance}.state")))
}

/// Whether a Redis on `port` answers `PING` with `PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}
