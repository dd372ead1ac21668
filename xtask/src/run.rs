//! Running external programs: echo the command, run it, turn failure into a message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Runs `command` to completion with the terminal's stdio, failing with a message that
/// names `what` when it cannot start or exits unsuccessfully.
pub(crate) fn run(what: &str, command: &mut Command) -> Result {
    println!("xtask: $ {}", show(command));
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start `{}`: {e}", show(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status}): `{}`", show(command)))
    }
}

/// Like [`run`], and a failure's message ends with the last `keep` lines the command
/// printed on stdout (which it prints as they come): for a report that must not scroll
/// out of sight behind what is printed after a failure (servers' logs).
pub(crate) fn run_reporting(what: &str, command: &mut Command, keep: usize) -> Result {
    use std::io::BufRead;
    println!("xtask: $ {}", show(command));
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start `{}`: {e}", show(command)))?;
    let mut kept = std::collections::VecDeque::with_capacity(keep);
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if kept.len() == keep {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("{what}: cannot wait for `{}`: {e}", show(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({status}): `{}`\n--- its last {} lines of output ---\n{}",
            show(command),
            kept.len(),
            Vec::from(kept).join("\n")
        ))
    }
}

/// Runs `command` with its output appended to `log`, failing with the log's tail when it
/// does not succeed. For chatty programs whose output matters only when they fail.
pub(crate) fn run_logged(what: &str, command: &mut Command, log: &Path) -> Result {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{what}: cannot open log {}: {e}", log.display()))?;
    let err_file = file
        .try_clone()
        .map_err(|e| format!("{what}: cannot reuse log {}: {e}", log.display()))?;
    command.stdout(file).stderr(err_file);
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start `{}`: {e}", show(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({status}): `{}`\n--- last lines of {} ---\n{}",
            show(command),
            log.display(),
            tail(log, 40)
        ))
    }
}

/// The last `lines` lines of the file at `path`, or a note saying it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// The program `binary` on `PATH`, installing Debian's `package` first when there is
/// none (`apt-get`, as root or through `sudo -n`). `what` names it for the person who
/// must install it by hand when there is no `apt-get`.
pub(crate) fn ensure_debian_package(binary: &str, package: &str, what: &str) -> Result<PathBuf> {
    if let Some(path) = find_on_path(binary) {
        return Ok(path);
    }
    println!("xtask: {binary} is not installed; installing Debian's {package}");
    if find_on_path("apt-get").is_none() {
        return Err(format!(
            "{binary} is missing and there is no apt-get to install it with: \
             install {what} ({binary} on PATH) by hand"
        ));
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run("apt-get update", &mut apt(&["update", "-q"]))?;
    run(
        &format!("apt-get install {package}"),
        &mut apt(&["install", "-y", "-q", "--no-install-recommends", package]),
    )?;
    find_on_path(binary)
        .ok_or_else(|| format!("{package} was installed but {binary} is not on PATH"))
}

/// The file `name` in the first folder of `PATH` that has it.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The command line of `command` as one string, for progress lines and error messages.
pub(crate) fn show(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_repeats_the_last_lines_of_output() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo first; echo second; echo third; exit 3"]);
        let error = run_reporting("the script", &mut command, 2).unwrap_err();
        assert!(error.starts_with("the script failed"), "{error}");
        let (_, output) = error
            .split_once("--- its last 2 lines of output ---\n")
            .unwrap();
        assert_eq!(output, "second\nthird");
    }

    #[test]
    fn a_success_is_ok() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo fine"]);
        assert_eq!(run_reporting("the script", &mut command, 5), Ok(()));
    }
}
