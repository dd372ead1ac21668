//! Real `redis-server` processes for tests: [`RedisServer`] starts a throwaway one on a
//! free loopback port (with its own temp folder, append-only file fsynced on every
//! write, so a restart keeps the data), and can kill, stop and restart it, for tests of
//! what clients do while Redis goes away.
//!
//! The binary is `$AUTHMUX_REDIS_SERVER`, else `redis-server` on `PATH` (`cargo xtask
//! redis start` and `cargo xtask ci` install Debian's `redis-server` package when it is
//! missing). [`redis_url`] gives tests a Redis: `$AUTHMUX_REDIS_URL` (what `cargo xtask
//! ci` sets) or a server of their own; with neither, tests say loudly that they skip.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` this process started; killed, and its folder removed, on drop.
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Where a test finds its Redis: `$AUTHMUX_REDIS_URL`, or one it started.
#[derive(Debug)]
pub enum TestRedis {
    /// The Redis at `$AUTHMUX_REDIS_URL` (shared: use keys of your own).
    External(String),
    /// A server of this test's own.
    Own(RedisServer),
}

impl TestRedis {
    /// The URL to connect to.
    pub fn url(&self) -> String {
        match self {
            TestRedis::External(url) => url.clone(),
            TestRedis::Own(server) => server.url(),
        }
    }
}

/// A Redis for a test: `$AUTHMUX_REDIS_URL` when set, else a new [`RedisServer`]. `None`
/// (after printing loudly why on stderr) when there is neither a URL nor a
/// `redis-server` binary: the caller returns, skipping.
pub fn redis_url(test: &str) -> Option<TestRedis> {
    if let Some(url) = std::env::var("AUTHMUX_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Some(TestRedis::External(url));
    }
    own_server(test).map(TestRedis::Own)
}

/// A new [`RedisServer`] for `test`, or `None` (after saying loudly that `test` is
/// skipped) when there is no `redis-server` binary. Panics if one exists but fails.
pub fn own_server(test: &str) -> Option<RedisServer> {
    if RedisServer::binary().is_none() {
        skip(test);
        return None;
    }
    Some(RedisServer::start().expect("redis-server starts"))
}

#[allow(clippy::print_stderr, reason = "a skipped test must say so")]
fn skip(test: &str) {
    let bar = "#".repeat(78);
    eprintln!(
        "{bar}\n# SKIPPED {test}: no Redis. Set AUTHMUX_REDIS_URL or install redis-server\n# (`cargo xtask redis start` installs and starts one; `cargo xtask ci` does it all).\n{bar}"
    );
}

impl RedisServer {
    /// The `redis-server` binary: `$AUTHMUX_REDIS_SERVER`, else the first on `PATH`.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("AUTHMUX_REDIS_SERVER").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join("redis-server"))
            .find(|path| path.is_file())
    }

    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub fn start() -> io::Result<RedisServer> {
        let binary = RedisServer::binary()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no redis-server binary"))?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!(
            "authmux-test-redis-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            binary,
            port,
            dir,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is running (started and not yet killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL: no goodbye to clients). Its data survives in the
    /// append-only file, which is fsynced on every write.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the killed server again on the same port with the same data, and waits
    /// until it answers.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))?;
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if ping(self.port) {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited at start ({status}); log: {}",
                    self.dir.join("redis.log").display()
                )));
            }
            if started.elapsed() > READY_TIMEOUT {
                self.kill();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "redis-server did not answer PING",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a Redis on `port` answers `PING` with `PONG`.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
