//! `cargo xtask bench [--smoke]`: authmux side by side with @directus/sdk and plain
//! reqwest on one real Directus (the five scenarios of `tests/bench/peers.rs`).
//!
//! It installs what it needs like `cargo xtask ci` does: Directus and Node 22 through
//! [`crate::directus`], and @directus/sdk [`SDK_VERSION`] from the npm registry into its
//! own folder of the cache (`directus-sdk-<version>`, with the same Node 22 package),
//! beside which it writes `xtask/bench/sdk.mjs` (embedded here) so that the script's
//! `import '@directus/sdk'` resolves. It starts one Directus (`main` only, unless
//! `AUTHMUX_DIRECTUS_URL` points at a running one), builds the bench binary
//! `authmux-peers-bench` (release for the full run) while those install and boot, runs
//! it, and stops the server on every exit path.
//!
//! The full run writes `target/bench/peers.json` and the `peers` section of
//! `docs/benchmarks.md`. `--smoke` runs each scenario once with small counts, from a
//! debug build (inside `ci`, the one its test step already compiled), and writes only
//! `target/bench/peers-smoke.json`: the committed table is left alone. `cargo xtask ci`
//! runs the smoke version against the Directus it started for the tests ([`smoke`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;
use crate::directus::install::{DIRECTUS_VERSION, Install, write};
use crate::directus::{self, Running, StartFlags};
use crate::run::run;

/// The @directus/sdk release the benchmark compares with (pinned).
pub(crate) const SDK_VERSION: &str = "26.0.0";
/// The SDK side of the benchmark, written into the SDK's install folder.
const SDK_SCRIPT: &str = include_str!("../bench/sdk.mjs");
/// The bench binary (a `[[bin]]` of `tests/Cargo.toml`).
const BENCH_BIN: &str = "authmux-peers-bench";
/// The package holding it.
const BENCH_PACKAGE: &str = "authmux-integration-tests";

/// What `bench` was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flags {
    /// `--smoke`: each scenario once, small counts, debug build, no table written.
    smoke: bool,
}

fn parse_flags(args: &[String]) -> Result<Flags> {
    let mut flags = Flags { smoke: false };
    for arg in args {
        match arg.as_str() {
            "--smoke" => flags.smoke = true,
            other => return Err(format!("unknown bench flag `{other}`\n\n{}", crate::USAGE)),
        }
    }
    Ok(flags)
}

/// Runs `cargo xtask bench [--smoke]`.
pub(crate) fn main(args: &[String]) -> Result {
    let flags = parse_flags(args)?;
    let started = Instant::now();
    let external = std::env::var("AUTHMUX_DIRECTUS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    if let Some(url) = &external {
        println!("xtask: using the Directus at {url} from AUTHMUX_DIRECTUS_URL; not starting one");
    }
    let result = std::thread::scope(|scope| {
        // Directus boots and the SDK installs while the bench binary compiles.
        let server = external.is_none().then(|| {
            scope.spawn(|| directus::start_main(StartFlags::default()).map(|s| Running(vec![s])))
        });
        let sdk = scope.spawn(install_sdk);
        let built = build(if flags.smoke {
            Build::Debug
        } else {
            Build::Release
        });
        // From here on the server is inside `Running`, which stops it when dropped.
        let server = server
            .map(|starting| {
                starting
                    .join()
                    .unwrap_or_else(|_| Err("the Directus start panicked".into()))
            })
            .transpose()
            .map_err(|e| format!("starting Directus failed:\n{e}"))?;
        let sdk = sdk
            .join()
            .unwrap_or_else(|_| Err("the SDK install panicked".into()))?;
        let binary = built?;
        let (env, directus_version) = match &server {
            Some(running) => (directus::exports(&running.0), DIRECTUS_VERSION.to_string()),
            None => (
                Vec::new(),
                "at AUTHMUX_DIRECTUS_URL (version not checked)".into(),
            ),
        };
        run_bench(&binary, &sdk, &env, &directus_version, flags.smoke)
        // `server` drops here: it stops, whatever the result.
    });
    println!(
        "xtask: bench {} after {:.0} s",
        if result.is_ok() { "finished" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result
}

/// The smoke run inside `cargo xtask ci`: against the Directus the tests used (its
/// variables in `env`), with the SDK `install_sdk` prepared, from the debug build the
/// test step compiled ([`Build::LikeTheTests`]).
pub(crate) fn smoke(env: &[(&'static str, String)], sdk: &Install) -> Result {
    let binary = build(Build::LikeTheTests)?;
    run_bench(&binary, sdk, env, DIRECTUS_VERSION, true)
}

/// Installs Node 22 and @directus/sdk [`SDK_VERSION`] into the cache unless already
/// there, and writes `sdk.mjs` beside its `node_modules`.
pub(crate) fn install_sdk() -> Result<Install> {
    let install = Install::locate_named(&format!("directus-sdk-{SDK_VERSION}"))?;
    install.ensure_with(&format!("@directus/sdk {SDK_VERSION}"), |install| {
        run(
            "npm install of @directus/sdk",
            install
                .command("npm")
                .args(["install", &format!("@directus/sdk@{SDK_VERSION}")]),
        )
    })?;
    write(&install.dir().join("sdk.mjs"), SDK_SCRIPT)?;
    Ok(install)
}

/// How to build the bench binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Build {
    /// `cargo build --release`: the full run.
    Release,
    /// `cargo build` (dev profile): `cargo xtask bench --smoke`.
    Debug,
    /// `cargo test --workspace --all-features --no-run`: exactly what `cargo xtask ci`'s
    /// test step compiled (the bench binary included, as a binary of a package with
    /// integration tests), so inside `ci` it compiles nothing new. A plain `cargo build`
    /// would not: without the tests' dev-dependency features (tokio's `test-util`, ...)
    /// it would rebuild half the dependency tree.
    LikeTheTests,
}

/// Builds the bench binary and returns its path.
fn build(how: Build) -> Result<PathBuf> {
    let mut command = cargo();
    match how {
        Build::Release => command.args([
            "build",
            "--release",
            "--package",
            BENCH_PACKAGE,
            "--bin",
            BENCH_BIN,
        ]),
        Build::Debug => command.args(["build", "--package", BENCH_PACKAGE, "--bin", BENCH_BIN]),
        Build::LikeTheTests => command.args(["test", "--workspace", "--all-features", "--no-run"]),
    };
    run("building the bench binary", &mut command)?;
    Ok(binary_path(
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
        how == Build::Release,
    ))
}

/// Where cargo puts the bench binary: `$CARGO_TARGET_DIR` or the workspace's `target/`,
/// then the profile's folder.
fn binary_path(target_dir: Option<PathBuf>, release: bool) -> PathBuf {
    let target = target_dir.unwrap_or_else(|| workspace_root().join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(BENCH_BIN)
}

/// The repository's root (the parent of this crate's folder).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs the bench binary with the Directus variables in `env` (the current environment's
/// when empty) and the SDK of `sdk`.
fn run_bench(
    binary: &Path,
    sdk: &Install,
    env: &[(&'static str, String)],
    directus_version: &str,
    smoke: bool,
) -> Result {
    let root = workspace_root();
    let out = root.join("target").join("bench");
    let mut command = Command::new(binary);
    command.current_dir(&root);
    if smoke {
        command
            .args(["--smoke", "--json"])
            .arg(out.join("peers-smoke.json"));
    } else {
        command
            .arg("--json")
            .arg(out.join("peers.json"))
            .arg("--doc")
            .arg(root.join("docs").join("benchmarks.md"));
    }
    command
        .envs(env.iter().cloned())
        .env("AUTHMUX_BENCH_NODE", sdk.node())
        .env("AUTHMUX_BENCH_SDK_SCRIPT", sdk.dir().join("sdk.mjs"))
        .env("AUTHMUX_BENCH_DIRECTUS_VERSION", directus_version)
        .env(
            "AUTHMUX_BENCH_PROFILE",
            if smoke { "debug" } else { "release" },
        )
        .env("AUTHMUX_BENCH_COMMIT", commit(&root))
        .env(
            "AUTHMUX_BENCH_RUSTC",
            output(Command::new("rustc").arg("--version")),
        );
    run(
        if smoke {
            "the peers benchmark (smoke)"
        } else {
            "the peers benchmark"
        },
        &mut command,
    )
}

/// The commit being measured, `-dirty` when tracked files have changes.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let Some(hash) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => hash,
        Some(_) => format!("{hash}-dirty"),
        None => format!("{hash} (worktree state unknown)"),
    }
}

/// The trimmed stdout of `command`, or `unknown` when it fails or prints nothing.
fn output(command: &mut Command) -> String {
    command
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_smoke_or_nothing() {
        assert_eq!(parse_flags(&[]).unwrap(), Flags { smoke: false });
        assert_eq!(
            parse_flags(&["--smoke".to_string()]).unwrap(),
            Flags { smoke: true }
        );
        assert!(parse_flags(&["--fast".to_string()]).is_err());
    }

    #[test]
    fn the_binary_is_in_the_profile_folder_of_the_target_dir() {
        assert_eq!(
            binary_path(Some("/t".into()), false),
            Path::new("/t/debug/authmux-peers-bench")
        );
        assert_eq!(
            binary_path(None, true),
            workspace_root().join("target/release/authmux-peers-bench")
        );
    }

    #[test]
    fn the_script_imports_the_sdk_it_is_installed_beside() {
        assert!(SDK_SCRIPT.contains("from '@directus/sdk'"));
        // The password comes from the environment, never from the command line.
        assert!(SDK_SCRIPT.contains("process.env.AUTHMUX_DIRECTUS_ADMIN_PASSWORD"));
        assert!(!SDK_SCRIPT.contains("process.argv"));
    }
}
