//! Where passwords come from: with `--password-stdin`, standard input (one secret per
//! line, in the order the command asks for them); otherwise the environment
//! (`AUTHMUX_PASSWORD` for the password, `AUTHMUX_NEW_PASSWORD` for a new one), else a
//! prompt without echo on the terminal. Nothing here ever prints a secret.

use std::collections::VecDeque;
use std::io::{IsTerminal, Read};

use authmux::Password;
use zeroize::Zeroizing;

use crate::failure::Failure;

/// The variable holding the password.
pub(crate) const PASSWORD_VAR: &str = "AUTHMUX_PASSWORD";
/// The variable holding a new password (`password reset`, `password change`).
pub(crate) const NEW_PASSWORD_VAR: &str = "AUTHMUX_NEW_PASSWORD";

/// Which secret is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The account's (current) password.
    Password,
    /// A new password.
    NewPassword,
}

impl Kind {
    fn var(self) -> &'static str {
        match self {
            Kind::Password => PASSWORD_VAR,
            Kind::NewPassword => NEW_PASSWORD_VAR,
        }
    }
}

/// Hands out secrets from the sources the command line allows.
#[derive(Debug)]
pub(crate) struct Secrets {
    from_stdin: bool,
    lines: Option<VecDeque<Password>>,
}

impl Secrets {
    /// Secrets from standard input when `from_stdin`, else from the environment or a
    /// prompt.
    pub(crate) fn new(from_stdin: bool) -> Self {
        Self {
            from_stdin,
            lines: None,
        }
    }

    /// The next secret of `kind`. `prompt` is shown on the terminal when asking.
    /// `why` completes the error when there is no source: "no password for `why`".
    pub(crate) fn get(&mut self, kind: Kind, prompt: &str, why: &str) -> Result<Password, Failure> {
        if self.from_stdin {
            return self.next_line().ok_or_else(|| {
                Failure::usage(format!(
                    "--password-stdin: standard input has no line left for {why}"
                ))
            });
        }
        if let Some(value) = std::env::var_os(kind.var()).filter(|v| !v.is_empty()) {
            return match value.into_string() {
                Ok(text) => Ok(Password::new(text)),
                Err(_) => Err(Failure::usage(format!("{} is not valid UTF-8", kind.var()))),
            };
        }
        if std::io::stdin().is_terminal() {
            let typed = Zeroizing::new(
                rpassword::prompt_password(prompt)
                    .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?,
            );
            if typed.is_empty() {
                return Err(Failure::usage(format!(
                    "an empty password was typed for {why}"
                )));
            }
            if kind == Kind::NewPassword {
                let again = Zeroizing::new(
                    rpassword::prompt_password("Again: ")
                        .map_err(|e| Failure::usage(format!("cannot read the password: {e}")))?,
                );
                if *again != *typed {
                    return Err(Failure::usage("the two passwords typed differ"));
                }
            }
            return Ok(Password::new(typed.as_str()));
        }
        Err(Failure::usage(format!(
            "no password for {why}: set {}, pass --password-stdin, or run in a terminal",
            kind.var()
        )))
    }

    fn next_line(&mut self) -> Option<Password> {
        if self.lines.is_none() {
            let mut text = Zeroizing::new(String::new());
            let lines = match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => text
                    .lines()
                    .map(|line| Password::new(line.strip_suffix('\r').unwrap_or(line)))
                    .filter(|p| !p.is_empty())
                    .collect(),
                Err(_) => VecDeque::new(),
            };
            self.lines = Some(lines);
        }
        self.lines.as_mut().and_then(VecDeque::pop_front)
    }
}

/// Shows `prompt` on standard error and reads one line from standard input (typed
/// text is echoed: for one-time codes, not passwords). `None` for an empty line or the
/// end of input.
pub(crate) fn prompt_line(prompt: &str) -> Result<Option<Zeroizing<String>>, Failure> {
    use std::io::{BufRead, Write};
    {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prompt.as_bytes());
        let _ = err.flush();
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::usage(format!("cannot read the code: {e}")))?;
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    Ok(Some(Zeroizing::new(trimmed.to_owned())))
}

/// One line for the person at the terminal, on standard error.
pub(crate) fn tell(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
