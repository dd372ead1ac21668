//! The command-line interface, declared with clap's derive API: global options
//! (`--home`, `--profile`) and one subcommand per task.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Signs in to Linxio, LinkUTM and Directus backends, keeps each session in a profile,
/// and hands out valid access tokens.
///
/// Exit codes: 0 success; 2 usage or bad input; 3 credentials rejected or no usable
/// session; 4 a one-time code is required; 5 network failure, timeout or server
/// unavailable; 6 rate limited.
#[derive(Debug, Parser)]
#[command(name = "authmux", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Folder holding the profiles (default: $AUTHMUX_HOME, else the platform's config
    /// folder, e.g. ~/.config/authmux).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,

    /// The profile to use: one session with one backend.
    #[arg(long, global = true, value_name = "NAME", default_value = "default")]
    pub(crate) profile: String,

    /// Where the profile's session lives: file (default), keyring (the OS keychain),
    /// auto (the keychain, else the file with a warning), or a shared Redis,
    /// redis://[:PASSWORD@]HOST:PORT/DB, which a machine with no local profile can use
    /// too (default: $AUTHMUX_STORE). Remembered by `login`.
    #[arg(long, global = true, value_name = "STORE", value_parser = crate::stores::parse_store_arg)]
    pub(crate) store: Option<crate::stores::StoreArg>,

    /// The session's key in a shared store (default: authmux:<profile>).
    #[arg(long, global = true, value_name = "KEY")]
    pub(crate) store_key: Option<String>,

    /// Encrypt the shared session with the base64 32-byte key held in this environment
    /// variable (e.g. from `openssl rand -base64 32`).
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) store_key_env: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sign in and keep the session in the profile.
    Login(LoginArgs),
    /// Finish a login that asked for a one-time code.
    Otp {
        /// The one-time code.
        code: String,
        /// Read the password (for backends that need it again) from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a valid access token (only the token), refreshing first when needed.
    Token {
        /// Refresh first unless the token stays valid at least this long (`30s`, `5m`,
        /// `1h`; a bare number is seconds).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        min_valid: Option<Duration>,
    },
    /// Run a command with a valid token in its environment (never on its command line).
    ///
    /// The token is in $AUTHMUX_TOKEN (or --env-var NAME) and the backend's base URL in
    /// $AUTHMUX_URL. Standard input, output and error are the command's, and so is the
    /// exit code: authmux replaces itself with the command (on Unix). If authmux cannot
    /// start it: 127 (not found) or 126 (not executable).
    Exec(ExecArgs),
    /// Serve a local reverse proxy to the profile's backend that authorizes every request.
    Proxy(ProxyArgs),
    /// Print a shell completion script (e.g. `authmux completions bash > /etc/bash_completion.d/authmux`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `authmux man | man -l -`.
    Man,
    /// Show the signed-in user, as the server reports it.
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the profile: dialect, URL, user, expiry, whether it can refresh. No network.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh the session now.
    Refresh,
    /// End the session on the server (when the backend can) and locally.
    Logout,
    /// List or revoke the user's sign-ins (backends that have them).
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Create an account: the server emails a code; finish with `signup-verify CODE`.
    Signup(SignupArgs),
    /// Finish a signup with the emailed code; signs in.
    SignupVerify {
        /// The code from the email.
        code: String,
    },
    /// Forgotten, reset or changed passwords.
    #[command(subcommand)]
    Password(PasswordCommand),
    /// List the OAuth/SSO providers the backend offers.
    Providers {
        #[command(flatten)]
        target: TargetArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the URL that starts an OAuth/SSO sign-in in a browser.
    OauthUrl {
        /// The provider's key, e.g. `google` or `github`.
        provider: String,
        /// Where the server should send the browser at the end.
        #[arg(long, value_name = "URL")]
        redirect: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Finish an OAuth/SSO sign-in with the URL the browser ended on; signs in.
    OauthComplete {
        /// The callback URL, as the browser shows it.
        callback_url: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Run the session lifecycle on all three dialects, on embedded fake servers.
    Demo,
    /// Run one fake server standalone until killed (prints its URL and users).
    FakeServer {
        /// linxio, linkutm or directus.
        #[arg(long)]
        dialect: String,
        /// The port on 127.0.0.1 (0: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

/// Where a profile's session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// `session.json` in the profile folder (0600).
    File,
    /// The tokens in the OS keychain; the rest in the profile folder.
    Keyring,
    /// The keychain when it works, else the file (with a warning).
    Auto,
}

/// `authmux exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The environment variable that receives the access token.
    #[arg(long, value_name = "NAME", default_value = "AUTHMUX_TOKEN")]
    pub(crate) env_var: String,
    /// Refresh first unless the token stays valid at least this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) min_valid: Duration,
    /// The command and its arguments (after `--`).
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

/// `authmux proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The address to listen on; port 0 picks a free one. The first line on standard
    /// output is `listening on http://ADDRESS`.
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
    /// Allow listening on an address that is not loopback. Requires a proxy token.
    #[arg(long)]
    pub(crate) allow_remote: bool,
    /// A file holding the token clients must present as `Proxy-Authorization: Bearer
    /// TOKEN` (else $AUTHMUX_PROXY_TOKEN; never on the command line, where `ps` shows it).
    #[arg(long, value_name = "FILE")]
    pub(crate) proxy_token_file: Option<PathBuf>,
    /// Request bodies up to this many bytes are buffered so they can be replayed after a
    /// 401; larger ones stream and are not replayed (the 401 goes to the client).
    #[arg(long, value_name = "BYTES", default_value_t = crate::proxy::DEFAULT_REPLAY_LIMIT)]
    pub(crate) replay_limit: usize,
}

/// A duration: `500ms`, `30s`, `5m`, `2h`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 5m, 1h)"))?;
    let seconds = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?} is not a duration (e.g. 30s, 5m, 1h)")),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Which backend to talk to. Commands that need no session take these or use the
/// profile's settings.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TargetArgs {
    /// The backend's dialect: linxio, linkutm, directus or oauth2.
    #[arg(long, value_name = "DIALECT")]
    pub(crate) dialect: Option<String>,
    /// The backend's base URL (https://..., or http:// to loopback).
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Linxio: the tenant-domain hint sent at login.
    #[arg(long, value_name = "D")]
    pub(crate) domain: Option<String>,
    /// Directus: json, cookie or session.
    #[arg(long, value_name = "MODE")]
    pub(crate) mode: Option<String>,
    /// LinkUTM: the workspace (uuid or slug) authorized calls act in.
    #[arg(long, value_name = "W")]
    pub(crate) workspace: Option<String>,
    /// Allow plain http:// to a host that is not loopback (credentials travel in clear).
    #[arg(long)]
    pub(crate) allow_insecure_http: bool,
    /// Per-request timeout in milliseconds (default 30000).
    #[arg(long, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
    #[command(flatten)]
    pub(crate) oauth2: crate::oauth2::OAuth2Args,
}

/// `authmux login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// The email (sign-in name); default: the one the profile last signed in with.
    #[arg(long)]
    pub(crate) email: Option<String>,
    /// Read the password from standard input (first line) instead of $AUTHMUX_PASSWORD
    /// or a prompt.
    #[arg(long)]
    pub(crate) password_stdin: bool,
    /// A one-time code to send with the login, for backends that ask for one.
    #[arg(long, value_name = "CODE")]
    pub(crate) otp: Option<String>,
    #[command(flatten)]
    pub(crate) grant: crate::oauth2::GrantArgs,
}

/// `authmux signup`.
#[derive(Debug, Args)]
pub(crate) struct SignupArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// The new account's email.
    #[arg(long)]
    pub(crate) email: String,
    /// The new account's display name.
    #[arg(long)]
    pub(crate) name: String,
    /// Read the new account's password from standard input.
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

/// `authmux sessions ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// List the user's active sign-ins.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one sign-in, or every sign-in with --all (this one included).
    Revoke {
        /// The sign-in's id (from `sessions list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Revoke every sign-in of the user, this one included.
        #[arg(long)]
        all: bool,
    },
}

/// `authmux password ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PasswordCommand {
    /// Ask the server to email a password-reset link.
    Forgot {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// Where the link should lead, for backends that accept one.
        #[arg(long, value_name = "URL")]
        reset_url: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Set a new password with the token from the reset email.
    Reset {
        /// The reset token from the email's link.
        #[arg(long)]
        token: String,
        /// Read the new password from standard input instead of $AUTHMUX_NEW_PASSWORD
        /// or a prompt.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Change the signed-in user's password.
    Change {
        /// Read the current password (first line) and the new one (second line) from
        /// standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_interface_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        let cli = Cli::try_parse_from(["authmux", "--profile", "work", "token"]).unwrap();
        assert_eq!(cli.profile, "work");
        let cli = Cli::try_parse_from(["authmux", "token", "--home", "/tmp/x"]).unwrap();
        assert_eq!(cli.home.as_deref(), Some(std::path::Path::new("/tmp/x")));
        assert_eq!(cli.profile, "default");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "5x", "-1s", "1.5m", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exec_takes_the_command_after_the_separator() {
        let cli = Cli::try_parse_from([
            "authmux",
            "exec",
            "--",
            "sh",
            "-c",
            "echo $X",
            "--min-valid",
        ])
        .unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(args.command, ["sh", "-c", "echo $X", "--min-valid"]);
        assert_eq!(args.env_var, "AUTHMUX_TOKEN");
        assert_eq!(args.min_valid, Duration::from_secs(60));
        assert!(Cli::try_parse_from(["authmux", "exec"]).is_err());
    }

    #[test]
    fn sessions_revoke_needs_an_id_or_all_but_not_both() {
        assert!(Cli::try_parse_from(["authmux", "sessions", "revoke"]).is_err());
        assert!(Cli::try_parse_from(["authmux", "sessions", "revoke", "x", "--all"]).is_err());
        assert!(Cli::try_parse_from(["authmux", "sessions", "revoke", "--all"]).is_ok());
        assert!(Cli::try_parse_from(["authmux", "sessions", "revoke", "id-1"]).is_ok());
    }
}
