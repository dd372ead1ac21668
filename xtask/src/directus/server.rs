//! One Directus server: a fresh SQLite database in a new temp folder, started in the
//! background on a free loopback port, waited for, and stopped again.
//!
//! A started server is described by a [`Server`], which is also what the state file in
//! `<install>/run/<name>.state` holds, so `stop` and `env` work from another process.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::install::{Install, write};
use crate::Result;
use crate::run::{run_logged, show, tail};

/// How long a server may take from `directus start` to answering `pong`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a server may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The password-reset page the servers accept as `reset_url`.
pub(crate) const RESET_URL: &str = "http://127.0.0.1/reset";
/// The admin account created by `directus bootstrap`.
const ADMIN_EMAIL: &str = "admin@example.com";
/// Start of the name of every server's temp folder.
const TEMP_DIR_PREFIX: &str = "authmux-directus-";
/// File in a server's temp folder holding the server's pid.
const PID_FILE: &str = "server.pid";
/// Printed in the mails file after each mail, so tests can split the file.
pub(crate) const MAIL_SEPARATOR: &str = "--- end of mail (authmux sendmail) ---";

/// What to start: everything about a server that is chosen before it runs.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Names the state file and the temp folder: `main` or `rate-limited`.
    pub(crate) name: &'static str,
    /// `ACCESS_TOKEN_TTL`, in seconds.
    pub(crate) access_ttl_secs: u64,
    /// Directus's own rate limiter, off when `None`.
    pub(crate) rate_limit: Option<RateLimit>,
}

/// Settings of Directus's per-IP rate limiter (`RATE_LIMITER_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// Requests allowed per window (`RATE_LIMITER_POINTS`).
    pub(crate) points: u32,
    /// Window length in seconds (`RATE_LIMITER_DURATION`).
    pub(crate) duration_secs: u32,
}

/// The admin account of a server.
#[derive(Clone)]
pub(crate) struct Admin {
    /// Login email.
    pub(crate) email: String,
    /// Login password (random per start).
    pub(crate) password: String,
}

impl Admin {
    /// The admin email with a fresh random password.
    pub(crate) fn random() -> Result<Admin> {
        Ok(Admin {
            email: ADMIN_EMAIL.to_string(),
            password: random_hex(16)?,
        })
    }
}

/// A started Directus server.
pub(crate) struct Server {
    /// `main` or `rate-limited` (see [`Options::name`]).
    pub(crate) name: String,
    /// Process id of the `node` process running Directus.
    pub(crate) pid: u32,
    /// Whether that process leads its own process group (then `stop` signals the group).
    pub(crate) own_group: bool,
    /// Base URL, `http://127.0.0.1:<port>`, no trailing slash.
    pub(crate) url: String,
    /// The admin account.
    pub(crate) admin: Admin,
    /// Where the sendmail script appends each mail.
    pub(crate) mail_file: PathBuf,
    /// The temp folder holding the database, logs, mails and sendmail script.
    pub(crate) temp_dir: PathBuf,
    /// `ACCESS_TOKEN_TTL` in seconds.
    pub(crate) access_ttl_secs: u64,
    /// The rate limiter, if on.
    pub(crate) rate_limit: Option<RateLimit>,
    /// The process handle, when this process started the server (not after `load`).
    child: Option<Child>,
}

impl Server {
    /// Bootstraps a fresh database and starts Directus on a free port, returning once
    /// `GET /server/ping` answers `pong`. With `detach`, the server gets its own process
    /// group so it outlives this process and is not hit by the terminal's Ctrl-C.
    pub(crate) fn start(
        install: &Install,
        options: &Options,
        admin: &Admin,
        detach: bool,
    ) -> Result<Server> {
        let label = format!("[directus {}]", options.name);
        let started = Instant::now();
        let temp_dir = new_temp_dir(options.name)?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let mail_file = temp_dir.join("mails.txt");
        let sendmail = temp_dir.join("sendmail.sh");
        write_sendmail_script(&sendmail, &mail_file)?;
        prepare_project_dir(&temp_dir)?;
        let env = environment(options, admin, &temp_dir, port, &url, &sendmail)?;

        println!(
            "xtask: {label} bootstrapping a fresh database in {}",
            temp_dir.display()
        );
        let mut bootstrap = directus(install, &temp_dir, &env, "bootstrap");
        run_logged(
            &format!("{label} directus bootstrap"),
            &mut bootstrap,
            &temp_dir.join("bootstrap.log"),
        )?;
        let bootstrapped = started.elapsed();

        let log_path = temp_dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot reuse {}: {e}", log_path.display()))?;
        let mut command = directus(install, &temp_dir, &env, "start");
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        if detach {
            command.process_group(0);
        }
        println!(
            "xtask: {label} $ {} (log: {})",
            show(&command),
            log_path.display()
        );
        let child = command
            .spawn()
            .map_err(|e| format!("{label} cannot start `{}`: {e}", show(&command)))?;
        // Tells `remove_stale_temp_dirs` that the folder is in use while this pid lives.
        write(&temp_dir.join(PID_FILE), &format!("{}\n", child.id()))?;
        let mut server = Server {
            name: options.name.to_string(),
            pid: child.id(),
            own_group: detach,
            url,
            admin: admin.clone(),
            mail_file,
            temp_dir,
            access_ttl_secs: options.access_ttl_secs,
            rate_limit: options.rate_limit,
            child: Some(child),
        };
        if let Err(e) = server.wait_ready(port) {
            let log_tail = tail(&log_path, 40);
            if let Err(stop) = server.stop() {
                eprintln!("xtask: {label} {stop}");
            }
            return Err(format!(
                "{label} {e}\n--- last lines of the server log ---\n{log_tail}"
            ));
        }
        println!(
            "xtask: {label} ready at {} (bootstrap {:.1} s, start {:.1} s)",
            server.url,
            bootstrapped.as_secs_f64(),
            (started.elapsed() - bootstrapped).as_secs_f64()
        );
        Ok(server)
    }

    /// Polls `GET /server/ping` until it answers `pong`, the process exits, or time runs out.
    fn wait_ready(&mut self, port: u16) -> Result {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("Directus exited before it was ready ({status})"));
            }
            if let Ok((200, body)) = http_get(port, "/server/ping")
                && body.trim() == "pong"
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Directus did not answer `pong` on {}/server/ping within {} s",
                    self.url,
                    READY_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The server log's path.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.temp_dir.join("server.log")
    }

    /// Whether the server process still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => is_directus_process(self.pid),
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after [`STOP_TIMEOUT`]) and removes its
    /// temp folder.
    pub(crate) fn stop(&mut self) -> Result {
        if self.is_running() {
            println!("xtask: [directus {}] stopping pid {}", self.name, self.pid);
            self.signal("TERM");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.is_running() {
                self.signal("KILL");
                while self.is_running() && Instant::now() < deadline + STOP_TIMEOUT {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if self.is_running() {
                return Err(format!(
                    "[directus {}] pid {} is still running after SIGKILL",
                    self.name, self.pid
                ));
            }
        }
        if self.temp_dir.exists() {
            std::fs::remove_dir_all(&self.temp_dir)
                .map_err(|e| format!("cannot remove {}: {e}", self.temp_dir.display()))?;
        }
        Ok(())
    }

    /// Sends `signal` to the server's process group, or to its process when it has none
    /// of its own. Failures are ignored: the caller checks whether the process is gone.
    fn signal(&self, signal: &str) {
        let target = if self.own_group {
            format!("-{}", self.pid)
        } else {
            self.pid.to_string()
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &target])
            .stderr(Stdio::null())
            .status();
    }

    /// Writes the state file at `path` (owner-only: it holds the admin password).
    pub(crate) fn save(&self, path: &Path) -> Result {
        let mut text = String::new();
        let mut field = |key: &str, value: &str| {
            let _ = writeln!(text, "{key}={value}");
        };
        field("name", &self.name);
        field("pid", &self.pid.to_string());
        field("own_group", &self.own_group.to_string());
        field("url", &self.url);
        field("admin_email", &self.admin.email);
        field("admin_password", &self.admin.password);
        field("mail_file", &self.mail_file.to_string_lossy());
        field("temp_dir", &self.temp_dir.to_string_lossy());
        field("access_ttl_secs", &self.access_ttl_secs.to_string());
        if let Some(limit) = self.rate_limit {
            field("rate_limit_points", &limit.points.to_string());
            field("rate_limit_duration_secs", &limit.duration_secs.to_string());
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

    /// Reads a state file written by [`Server::save`].
    pub(crate) fn load(path: &Path) -> Result<Server> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        let need = |key: &str| get(key).ok_or_else(|| format!("{}: no `{key}`", path.display()));
        let number = |key: &str| {
            need(key)?
                .parse::<u64>()
                .map_err(|e| format!("{}: bad `{key}`: {e}", path.display()))
        };
        let rate_limit = match get("rate_limit_points") {
            Some(_) => Some(RateLimit {
                points: to_u32(number("rate_limit_points")?)?,
                duration_secs: to_u32(number("rate_limit_duration_secs")?)?,
            }),
            None => None,
        };
        Ok(Server {
            name: need("name")?,
            pid: to_u32(number("pid")?)?,
            own_group: need("own_group")? == "true",
            url: need("url")?,
            admin: Admin {
                email: need("admin_email")?,
                password: need("admin_password")?,
            },
            mail_file: need("mail_file")?.into(),
            temp_dir: need("temp_dir")?.into(),
            access_ttl_secs: number("access_ttl_secs")?,
            rate_limit,
            child: None,
        })
    }
}

/// Converts a number read from a state file, failing on overflow.
fn to_u32(value: u64) -> Result<u32> {
    u32::try_from(value).map_err(|e| format!("state file number {value}: {e}"))
}

/// The environment Directus runs with (both `bootstrap` and `start`).
fn environment(
    options: &Options,
    admin: &Admin,
    temp_dir: &Path,
    port: u16,
    url: &str,
    sendmail: &Path,
) -> Result<Vec<(&'static str, String)>> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut env = vec![
        ("SECRET", random_hex(32)?),
        ("DB_CLIENT", "sqlite3".into()),
        ("DB_FILENAME", path(&temp_dir.join("directus.db"))),
        ("ADMIN_EMAIL", admin.email.clone()),
        ("ADMIN_PASSWORD", admin.password.clone()),
        ("HOST", "127.0.0.1".into()),
        ("PORT", port.to_string()),
        ("PUBLIC_URL", url.into()),
        // Every login would otherwise take at least 500 ms.
        ("LOGIN_STALL_TIME", "0".into()),
        ("ACCESS_TOKEN_TTL", format!("{}s", options.access_ttl_secs)),
        ("REFRESH_TOKEN_TTL", "7d".into()),
        ("TELEMETRY", "false".into()),
        // Plain http on loopback: cookies must not require https.
        ("REFRESH_TOKEN_COOKIE_SECURE", "false".into()),
        ("SESSION_COOKIE_SECURE", "false".into()),
        ("EMAIL_TRANSPORT", "sendmail".into()),
        ("EMAIL_SENDMAIL_PATH", path(sendmail)),
        ("EMAIL_SENDMAIL_NEW_LINE", "unix".into()),
        ("EMAIL_FROM", "directus@example.com".into()),
        ("PASSWORD_RESET_URL_ALLOW_LIST", RESET_URL.into()),
        ("USER_INVITE_URL_ALLOW_LIST", RESET_URL.into()),
        // Relative defaults (uploads, extensions, temp files) land in the temp folder.
        ("STORAGE_LOCAL_ROOT", path(&temp_dir.join("uploads"))),
        ("EXTENSIONS_PATH", path(&temp_dir.join("extensions"))),
        ("LOG_STYLE", "raw".into()),
        // The load shedder answers 503 "Under pressure" whenever the event loop lags,
        // which on a busy 2-core CI machine fails tests (and the soak) at random; the
        // faults the tests mean to inject come from the fault proxy instead.
        ("PRESSURE_LIMITER_ENABLED", "false".into()),
    ];
    match options.rate_limit {
        None => env.push(("RATE_LIMITER_ENABLED", "false".into())),
        Some(limit) => env.extend([
            ("RATE_LIMITER_ENABLED", "true".into()),
            ("RATE_LIMITER_STORE", "memory".into()),
            ("RATE_LIMITER_POINTS", limit.points.to_string()),
            ("RATE_LIMITER_DURATION", limit.duration_secs.to_string()),
        ]),
    }
    Ok(env)
}

/// A `directus <subcommand>` command running in `temp_dir` with `env`.
///
/// It runs `@directus/api`'s CLI entry directly rather than `npx directus`: the
/// `directus` wrapper only adds an update check against the npm registry (up to 8 s,
/// on every run), and `npx` an extra npm process between us and the server.
/// `--no-node-snapshot` is what `isolated-vm` (sandboxed extensions) needs on Node 20+.
fn directus(
    install: &Install,
    temp_dir: &Path,
    env: &[(&'static str, String)],
    subcommand: &str,
) -> Command {
    let mut command = install.command("node");
    command
        .arg("--no-node-snapshot")
        .arg(install.directus_cli())
        .arg(subcommand)
        .current_dir(temp_dir)
        .envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Writes the `EMAIL_SENDMAIL_PATH` script: it appends the mail on stdin, then
/// [`MAIL_SEPARATOR`], to `mail_file`.
fn write_sendmail_script(script: &Path, mail_file: &Path) -> Result {
    let mail_file = mail_file.to_string_lossy();
    if mail_file.contains('\'') {
        return Err(format!(
            "the mails file path must not contain a quote: {mail_file}"
        ));
    }
    write(
        script,
        &format!(
            "#!/bin/sh\n\
             # Directus's sendmail: keep each mail (arguments: -i -f <from> <to>) for the tests.\n\
             mail=$(cat)\n\
             printf '%s\\n%s\\n' \"$mail\" '{MAIL_SEPARATOR}' >> '{mail_file}'\n"
        ),
    )?;
    std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", script.display()))
}

/// Gives the temp folder what Directus looks for in its working folder, so it starts
/// without warnings: a `package.json` (it scans it for extension packages) and the
/// uploads and extensions folders.
fn prepare_project_dir(temp_dir: &Path) -> Result {
    write(
        &temp_dir.join("package.json"),
        "{ \"name\": \"authmux-directus-server\", \"private\": true }\n",
    )?;
    for dir in ["uploads", "extensions"] {
        let dir = temp_dir.join(dir);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Creates a new, empty temp folder for one server, named
/// `authmux-directus-<name>-<pid of this process>-<random>`.
fn new_temp_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "{TEMP_DIR_PREFIX}{name}-{}-{}",
        std::process::id(),
        random_hex(4)?
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes the temp folders of servers whose run was killed before it could clean up
/// (a Ctrl-C or a CI timeout during `cargo xtask ci`): folders whose creating process
/// is gone and whose server, if one was started, is not running.
pub(crate) fn remove_stale_temp_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_DIR_PREFIX)) else {
            continue;
        };
        let Some(creator) = rest
            .rsplit('-')
            .nth(1)
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let server = std::fs::read_to_string(path.join(PID_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let in_use = std::path::Path::new(&format!("/proc/{creator}")).exists()
            || server.is_some_and(is_directus_process);
        if !in_use {
            println!(
                "xtask: removing {} (left by a run that was killed)",
                path.display()
            );
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A loopback port nobody listens on right now (the OS picks it for port 0).
pub(crate) fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free loopback port: {e}"))
}

/// `bytes` random bytes from the kernel, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// A minimal `GET http://127.0.0.1:<port><path>`: status code and body.
pub(crate) fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Ok((status, body))
}

/// Whether `pid` is a live process running Directus (guards against a reused pid).
fn is_directus_process(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let is_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    !is_zombie && String::from_utf8_lossy(&cmdline).contains("directus")
}

/// A server description for tests, with no process behind it.
#[cfg(test)]
pub(crate) fn example(name: &str, rate_limit: Option<RateLimit>) -> Server {
    Server {
        name: name.to_string(),
        pid: 4_000_000,
        own_group: true,
        url: "http://127.0.0.1:8055".into(),
        admin: Admin {
            email: ADMIN_EMAIL.into(),
            password: "pass'word".into(),
        },
        mail_file: "/tmp/x/mails.txt".into(),
        temp_dir: "/tmp/x".into(),
        access_ttl_secs: 7,
        rate_limit,
        child: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("xtask-state-test-{}", std::process::id()));
        let path = dir.join("run").join("x.state");
        let limit = RateLimit {
            points: 3,
            duration_secs: 10,
        };
        for rate_limit in [None, Some(limit)] {
            let saved = example("x", rate_limit);
            saved.save(&path).unwrap();
            let loaded = Server::load(&path).unwrap();
            assert_eq!(loaded.name, saved.name);
            assert_eq!(loaded.pid, saved.pid);
            assert_eq!(loaded.own_group, saved.own_group);
            assert_eq!(loaded.url, saved.url);
            assert_eq!(loaded.admin.email, saved.admin.email);
            assert_eq!(loaded.admin.password, saved.admin.password);
            assert_eq!(loaded.mail_file, saved.mail_file);
            assert_eq!(loaded.temp_dir, saved.temp_dir);
            assert_eq!(loaded.access_ttl_secs, saved.access_ttl_secs);
            assert_eq!(loaded.rate_limit, rate_limit);
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the state file holds a password: owner only"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dead_pid_is_not_running() {
        assert!(!example("x", None).is_running());
    }
}
