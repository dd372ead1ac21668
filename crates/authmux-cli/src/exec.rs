//! `authmux exec [--env-var NAME] [--min-valid D] -- COMMAND ARGS...` and the
//! `--min-valid` rule it shares with `authmux token`.
//!
//! The command gets a token valid for at least `--min-valid` in `$AUTHMUX_TOKEN` (or
//! `NAME`) and the backend's base URL in `$AUTHMUX_URL`, and never the password
//! variables. The token is only ever in the environment, which other users cannot read
//! (`/proc/PID/environ` is private to the owner), never on a command line that `ps`
//! shows. On Unix authmux then replaces itself with the command (`execvp`), so standard
//! input, output and error, signals and the exit code are the command's own; elsewhere
//! it runs the command, waits, and exits with its code.

use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux::{RefreshWindow, Session};

use crate::cli::{Cli, Command as CliCommand, ExecArgs};
use crate::commands::{SignedIn, login_hint, open, open_with, session_failure};
use crate::failure::Failure;
use crate::output;
use crate::profile::{Home, Profile};
use crate::secrets::{NEW_PASSWORD_VAR, PASSWORD_VAR};

/// The variable holding the backend's base URL.
pub(crate) const URL_VAR: &str = "AUTHMUX_URL";

/// Exit code when the command cannot be found (as POSIX shells use).
const NOT_FOUND: u8 = 127;
/// Exit code when the command cannot be run.
const CANNOT_RUN: u8 = 126;

/// The profile's session with a token valid now, and, with `min_valid`, for at least
/// that long: refreshed first otherwise (through the manager's refresh pipeline, so
/// processes sharing the profile refresh once). Without an expiry from the server the
/// token is taken as valid.
pub(crate) async fn valid_session(
    profile: &Profile,
    min_valid: Option<Duration>,
) -> Result<(SignedIn, Arc<Session>), Failure> {
    let signed = match min_valid {
        None => open(profile).await?,
        // The manager's own rule "refresh when due" becomes "refresh when it expires
        // within min_valid" (capped by the manager at half the token's lifetime; the
        // check below covers the rest).
        Some(min) => {
            open_with(profile, |builder| {
                builder.refresh_window(RefreshWindow {
                    min_lead: min,
                    fraction: 0.0,
                    jitter: 0.0,
                })
            })
            .await?
        }
    };
    let mut session = signed
        .manager
        .usable_session()
        .await
        .map_err(|e| session_failure(profile, e))?;
    // A token inside the refresh window comes with a refresh started in the background,
    // which the process waits for before exiting anyway (it may rotate the refresh
    // token): hand out its result, the token the profile then holds.
    signed.manager.idle().await;
    if let Some(current) = signed.manager.session()
        && current.tokens.access != session.tokens.access
        && current.lineage == session.lineage
    {
        session = Arc::new(current);
    }
    if let Some(min) = min_valid
        && left(&session).is_some_and(|l| l < min)
    {
        let can_refresh =
            signed.provider.capabilities().refresh && session.tokens.refresh.is_some();
        if !can_refresh {
            return Err(Failure::no_session(format!(
                "the token expires in {}, sooner than --min-valid {}, and this backend cannot refresh it; {}",
                output::duration(left(&session).unwrap_or_default()),
                output::duration(min),
                login_hint(profile)
            )));
        }
        signed
            .manager
            .refresh()
            .await
            .map_err(|e| session_failure(profile, e))?;
        session = signed
            .manager
            .usable_session()
            .await
            .map_err(|e| session_failure(profile, e))?;
        if left(&session).is_some_and(|l| l < min) {
            return Err(Failure::usage(format!(
                "the server's tokens are valid for {} only, less than --min-valid {}",
                output::duration(left(&session).unwrap_or_default()),
                output::duration(min)
            )));
        }
    }
    // A refreshed session that could not be saved would be lost with this process (its
    // refresh token already spent): say so with a failing exit, not silently.
    signed
        .manager
        .flush()
        .await
        .map_err(|e| session_failure(profile, e))?;
    Ok((signed, session))
}

/// How long the session's token stays valid (`None`: no stated expiry).
fn left(session: &Session) -> Option<Duration> {
    let at = session.tokens.expires_at?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Gets the token and builds the command to run (no process is started yet).
pub(crate) async fn prepare(cli: Cli) -> Result<Command, Failure> {
    let CliCommand::Exec(args) = cli.command else {
        return Err(Failure::usage("not an exec command"));
    };
    check_var_name(&args.env_var)?;
    let home = Home::resolve(cli.home)?;
    let kind = crate::stores::configure(cli.store, cli.store_key, cli.store_key_env);
    let profile = home.profile(&cli.profile)?.with_store_flag(kind);
    let (_, session) = valid_session(&profile, Some(args.min_valid)).await?;
    Ok(command(&args, &session))
}

fn command(args: &ExecArgs, session: &Session) -> Command {
    let (program, rest) = args
        .command
        .split_first()
        .map_or((OsString::new(), &[][..]), |(p, r)| (p.clone(), r));
    let mut command = Command::new(program);
    command
        .args(rest)
        .env_remove(PASSWORD_VAR)
        .env_remove(NEW_PASSWORD_VAR)
        .env(&args.env_var, session.tokens.access.expose_secret())
        .env(URL_VAR, session.base_url.as_str());
    command
}

fn check_var_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--env-var {name:?}: a variable name is letters, digits and '_', not starting with a digit"
        )))
    }
}

/// Runs the prepared command in place of this process (Unix) or as a child whose exit
/// code becomes ours (elsewhere). Returns only on failure to start it (Unix).
pub(crate) fn run(mut command: Command) -> ExitCode {
    let name = command.get_program().to_string_lossy().into_owned();
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        cannot_start(&name, &error).report()
    }
    #[cfg(not(unix))]
    {
        match command.status() {
            Ok(status) => ExitCode::from(
                status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(1),
            ),
            Err(error) => cannot_start(&name, &error).report(),
        }
    }
}

fn cannot_start(name: &str, error: &std::io::Error) -> Failure {
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_RUN
    };
    Failure::new(code, format!("cannot run {name:?}: {error}"))
}
