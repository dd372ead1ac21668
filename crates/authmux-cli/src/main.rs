#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod demo;
mod exec;
mod failure;
mod fake;
mod keychain;
#[cfg(all(feature = "keyring", target_os = "linux"))]
mod keyutils;
mod manual;
mod oauth2;
mod output;
mod profile;
mod proxy;
mod secrets;
mod stores;

use std::process::ExitCode;

use clap::Parser;

/// How long an exiting command waits at most for a refresh it started in the
/// background. A refresh that has sent its refresh token must not be cut off before it
/// saves the answer (the server may have rotated the token: the session would be lost),
/// so this is beyond the sum of a refresh's own bounded steps with the default
/// settings: the store's lock (35 s for a caller whose token expired, 0.1 s in the
/// background), the request (30 s) and its one retry (up to 2 s later, 30 s), and the
/// save (10 s for the file store's write lock). It only bounds a store or transport
/// that ignores its own timeouts.
const SETTLE_REFRESHES: std::time::Duration = std::time::Duration::from_secs(150);

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return failure::clap_exit(&error),
    };
    // The proxy serves many clients at once: one worker thread per core. Every other
    // command makes a few requests in a row.
    let mut builder = if matches!(cli.command, cli::Command::Proxy(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            return failure::Failure::new(
                failure::UNAVAILABLE,
                format!("cannot start the async runtime: {e}"),
            )
            .report();
        }
    };
    if matches!(cli.command, cli::Command::Exec(_)) {
        let prepared = runtime.block_on(async {
            let prepared = exec::prepare(cli).await;
            commands::settle_refreshes(SETTLE_REFRESHES).await;
            // A shared store's refresh lock is released in a spawned task: let it run.
            authmux_redis::settle(std::time::Duration::from_secs(2)).await;
            prepared
        });
        // Nothing of this process (its runtime, its locks) outlives it into the command.
        drop(runtime);
        return match prepared {
            Ok(command) => exec::run(command),
            Err(failure) => failure.report(),
        };
    }
    let result = runtime.block_on(async {
        let result = commands::run(cli).await;
        // A refresh started in the background must finish (and be saved) before the
        // process goes: it may have rotated the refresh token on the server.
        commands::settle_refreshes(SETTLE_REFRESHES).await;
        // A shared store's refresh lock is released in a spawned task: let it run
        // before the runtime goes, so the next process need not wait for the lease.
        authmux_redis::settle(std::time::Duration::from_secs(2)).await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
