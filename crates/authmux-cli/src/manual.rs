//! `authmux completions SHELL` (clap_complete) and `authmux man` (clap_mangen): both
//! generated from the same clap definition as the parser, so they never drift from it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::failure::{Failure, UNAVAILABLE};

/// Prints the completion script for `shell` on standard output.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "authmux", &mut out);
    write_out(&out)
}

/// Prints the manual page (roff) on standard output: synopsis, options, the list of
/// commands, exit codes and version.
pub(crate) fn man() -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Failure::new(UNAVAILABLE, format!("cannot render the manual: {e}")))?;
    write_out(&out)
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`authmux man | head`) is not an error worth reporting.
    let _ = stdout.write_all(bytes);
    let _ = stdout.flush();
    Ok(())
}
