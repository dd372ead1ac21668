//! How a command fails: [`Failure`] (an exit code and one line for standard error), the
//! mapping of [`AuthError`] onto the documented exit codes, and clap's usage errors.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 2 | usage or bad input: unknown dialect, bad URL, plain `http://` to a non-loopback host without `--allow-insecure-http`, a validation failure (client- or server-side), a capability the backend lacks |
//! | 3 | credentials rejected or no usable session: wrong password or code, disabled account, expired with no refresh, refresh rejected, signed out, 401/403, a corrupt profile |
//! | 4 | a one-time code is required: run `authmux otp CODE` |
//! | 5 | network failure, timeout, server unavailable or answering nonsense |
//! | 6 | rate limited (the message gives the retry-after) |

use std::io::Write;
use std::process::ExitCode;

use authmux::{AuthError, TransportErrorKind};

/// Usage or bad input.
pub(crate) const USAGE: u8 = 2;
/// Credentials rejected or no usable session.
pub(crate) const NO_SESSION: u8 = 3;
/// A one-time code is required.
pub(crate) const OTP_REQUIRED: u8 = 4;
/// Network failure, timeout or server unavailable.
pub(crate) const UNAVAILABLE: u8 = 5;
/// Rate limited.
pub(crate) const RATE_LIMITED: u8 = 6;

/// A failed command: its exit code and the one line it prints on standard error. The
/// message never holds a secret: it is built from [`AuthError`]'s `Display` (which
/// holds none) and from text this program writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The process exit code.
    pub(crate) code: u8,
    /// What went wrong, for a person.
    pub(crate) message: String,
}

impl Failure {
    /// A failure with this code and message.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Usage or bad input (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// No usable session (exit 3).
    pub(crate) fn no_session(message: impl Into<String>) -> Self {
        Self::new(NO_SESSION, message)
    }

    /// Adds `hint` after the message when the error means the user must sign in again.
    #[must_use]
    pub(crate) fn with_sign_in_hint(mut self, error: &AuthError, hint: &str) -> Self {
        if error.needs_sign_in() || matches!(error, AuthError::Unauthorized { .. }) {
            self.message = format!("{}; {hint}", self.message);
        }
        self
    }

    /// Prints the message as one line on standard error and returns the exit code.
    pub(crate) fn report(&self) -> ExitCode {
        let line = self.message.replace(['\n', '\r'], " ");
        let _ = writeln!(std::io::stderr().lock(), "error: {line}");
        ExitCode::from(self.code)
    }
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        Failure::new(exit_code(&error), describe(&error))
    }
}

/// The exit code for an error.
pub(crate) fn exit_code(error: &AuthError) -> u8 {
    match error {
        AuthError::Validation { .. }
        | AuthError::InsecureTransport { .. }
        | AuthError::Unsupported { .. }
        | AuthError::Conflict { .. }
        | AuthError::Transport {
            kind: TransportErrorKind::Request,
            ..
        } => USAGE,
        AuthError::InvalidCredentials
        | AuthError::AccountDisabled
        | AuthError::InvalidOtp
        | AuthError::SessionExpired
        | AuthError::NotSignedIn
        | AuthError::RefreshRejected
        | AuthError::Unauthorized { .. }
        | AuthError::Forbidden { .. }
        | AuthError::Store { .. } => NO_SESSION,
        AuthError::OtpRequired => OTP_REQUIRED,
        AuthError::RateLimited { .. } => RATE_LIMITED,
        AuthError::Timeout
        | AuthError::Transport { .. }
        | AuthError::Server { .. }
        | AuthError::Protocol { .. } => UNAVAILABLE,
        // A variant added to the core later: most likely about the server.
        _ => UNAVAILABLE,
    }
}

/// One line for a person. `AuthError`'s `Display` never holds a secret; a few variants
/// get a clearer wording here.
pub(crate) fn describe(error: &AuthError) -> String {
    match error {
        AuthError::RateLimited { retry_after: None } => {
            "rate limited by the server (it gave no retry-after; wait a little)".to_owned()
        }
        AuthError::RateLimited {
            retry_after: Some(after),
        } => format!(
            "rate limited by the server: retry after {}s",
            after.as_secs().max(1)
        ),
        AuthError::Timeout => "the server did not answer in time".to_owned(),
        AuthError::Transport { kind, .. } => match kind {
            TransportErrorKind::Connect => "could not connect to the server".to_owned(),
            TransportErrorKind::Io => "the connection to the server broke".to_owned(),
            TransportErrorKind::BodyTooLarge => "the server's answer was too large".to_owned(),
            TransportErrorKind::Request => "the request could not be built".to_owned(),
            _ => "the request failed below HTTP".to_owned(),
        },
        AuthError::Unsupported { capability } => {
            format!("this backend does not support {capability}")
        }
        other => other.to_string(),
    }
}

/// Handles a command line clap could not parse: help and version go to standard output
/// with exit 0; anything else is one line on standard error with exit 2.
pub(crate) fn clap_exit(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            Failure::usage("a command is required (run `authmux --help` to see them)").report()
        }
        _ => {
            let text = error.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ")
                .to_owned();
            Failure::usage(format!("{first} (run `authmux --help` for usage)")).report()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_documented_case_has_its_code() {
        let cases = [
            (AuthError::validation("email", "required"), USAGE),
            (
                AuthError::InsecureTransport {
                    reason: "http".into(),
                },
                USAGE,
            ),
            (
                AuthError::Unsupported {
                    capability: "refresh",
                },
                USAGE,
            ),
            (AuthError::InvalidCredentials, NO_SESSION),
            (AuthError::SessionExpired, NO_SESSION),
            (AuthError::RefreshRejected, NO_SESSION),
            (AuthError::NotSignedIn, NO_SESSION),
            (AuthError::InvalidOtp, NO_SESSION),
            (
                AuthError::Store {
                    message: "corrupt".into(),
                    source: None,
                },
                NO_SESSION,
            ),
            (AuthError::OtpRequired, OTP_REQUIRED),
            (AuthError::Timeout, UNAVAILABLE),
            (
                AuthError::Transport {
                    kind: TransportErrorKind::Connect,
                    source: None,
                },
                UNAVAILABLE,
            ),
            (AuthError::from_status(503, None, None, None), UNAVAILABLE),
            (AuthError::protocol("not json"), UNAVAILABLE),
            (
                AuthError::RateLimited {
                    retry_after: Some(Duration::from_secs(42)),
                },
                RATE_LIMITED,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(exit_code(&error), code, "{error:?}");
        }
    }

    #[test]
    fn rate_limit_messages_give_the_retry_after() {
        let limited = AuthError::RateLimited {
            retry_after: Some(Duration::from_secs(42)),
        };
        assert!(describe(&limited).contains("retry after 42s"));
        assert!(describe(&AuthError::RateLimited { retry_after: None }).contains("no retry-after"));
    }

    #[test]
    fn sign_in_hint_only_when_the_session_is_gone() {
        let hinted = Failure::from(AuthError::SessionExpired)
            .with_sign_in_hint(&AuthError::SessionExpired, "run `authmux login`");
        assert!(hinted.message.ends_with("run `authmux login`"));
        let plain = Failure::from(AuthError::Timeout)
            .with_sign_in_hint(&AuthError::Timeout, "run `authmux login`");
        assert!(!plain.message.contains("login"));
    }
}
