//! Where profiles live and what a profile's folder holds.
//!
//! ```text
//! <home>/                          0700  --home, else $AUTHMUX_HOME, else <config dir>/authmux
//!   profiles/<name>/               0700  one folder per profile (--profile, default "default")
//!     config.json                  0600  the backend: a ProviderConfig (dialect, url, mode/
//!                                        workspace/domain, allow_insecure_http, timeout_ms),
//!                                        plus the email last signed in with
//!     session.json                 0600  the session (authmux FileStore: atomic writes)
//!     session.json.lock            0600  FileStore's write lock
//!     session.json.lock.refresh    0600  FileStore's refresh lock (one refresh across processes)
//!     otp.json                     0600  a login waiting for its one-time code (no password)
//!     signup.json                  0600  a signup waiting for its emailed code
//! ```
//!
//! Every file is written whole to a temporary file and renamed into place. A file that
//! cannot be read is reported and never overwritten or removed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authmux::{FileStore, ProviderConfig, SessionStore};
use clap::ValueEnum;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::StoreKind;
use crate::failure::Failure;
use crate::keychain::{Keychain, KeyringStore};

/// The environment variable naming the home folder when `--home` is not given.
pub(crate) const HOME_VAR: &str = "AUTHMUX_HOME";

/// The folder holding the profiles.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    root: PathBuf,
    /// The `--home` flag as given, repeated in the hints this program prints.
    flag: Option<PathBuf>,
}

impl Home {
    /// `--home`, else `$AUTHMUX_HOME`, else the platform's config folder + `authmux`.
    pub(crate) fn resolve(flag: Option<PathBuf>) -> Result<Self, Failure> {
        if let Some(dir) = &flag {
            return Ok(Self {
                root: dir.clone(),
                flag,
            });
        }
        if let Some(dir) = std::env::var_os(HOME_VAR).filter(|v| !v.is_empty()) {
            return Ok(Self {
                root: PathBuf::from(dir),
                flag: None,
            });
        }
        match dirs::config_dir() {
            Some(dir) => Ok(Self {
                root: dir.join("authmux"),
                flag: None,
            }),
            None => Err(Failure::usage(format!(
                "no folder for profiles: pass --home DIR or set {HOME_VAR}"
            ))),
        }
    }

    /// The profile called `name` (not created until something is written).
    pub(crate) fn profile(&self, name: &str) -> Result<Profile, Failure> {
        check_name(name)?;
        Ok(Profile {
            name: name.to_owned(),
            dir: self.root.join("profiles").join(name),
            root: self.root.clone(),
            home_flag: self.flag.clone(),
            store_flag: None,
        })
    }
}

/// Profile names: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(
            "a profile name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

/// A profile's settings (`config.json`): the backend, and the email last signed in
/// with (so that signing in again needs no flag, and `status` can name the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The backend.
    pub(crate) provider: ProviderConfig,
    /// The email last signed in with.
    pub(crate) email: Option<String>,
    /// Where the session lives (`file` when absent).
    pub(crate) store: Option<StoreKind>,
}

/// A profile's session store, and where it keeps the session.
#[derive(Debug, Clone)]
pub(crate) struct ProfileStore {
    /// The store.
    pub(crate) store: Arc<dyn SessionStore>,
    /// `File` or `Keyring` (never `Auto`: that is resolved when signing in).
    pub(crate) kind: StoreKind,
    /// Where the session lives, for people (`status`).
    pub(crate) location: String,
}

/// One profile: one backend and at most one session with it.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    name: String,
    dir: PathBuf,
    root: PathBuf,
    home_flag: Option<PathBuf>,
    store_flag: Option<StoreKind>,
}

impl Profile {
    /// The same profile, with the `--store` flag as given.
    #[must_use]
    pub(crate) fn with_store_flag(mut self, flag: Option<StoreKind>) -> Self {
        self.store_flag = flag;
        self
    }

    /// The profile's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The backend settings file.
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The session file (a [`FileStore`]).
    pub(crate) fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    /// The pending one-time-code login.
    pub(crate) fn otp_path(&self) -> PathBuf {
        self.dir.join("otp.json")
    }

    /// The pending signup.
    pub(crate) fn signup_path(&self) -> PathBuf {
        self.dir.join("signup.json")
    }

    /// Creates the home and profile folders (0700) if missing. An existing profile
    /// folder that group or others can enter is tightened to 0700, with a warning (its
    /// files are 0600 already; the session file itself, if others can read it, is
    /// refused by the store until a person has looked).
    pub(crate) fn ensure_dir(&self) -> Result<(), Failure> {
        for dir in [&self.root, &self.root.join("profiles"), &self.dir] {
            make_private_dir(dir)?;
        }
        tighten(&self.dir)
    }

    /// The store the profile's session lives in (as the last sign-in chose; `--store`,
    /// if given, must agree), its folder created (or tightened) first so that it is
    /// private.
    pub(crate) fn store(&self) -> Result<ProfileStore, Failure> {
        self.ensure_dir()?;
        let saved = self
            .read_settings()?
            .and_then(|s| s.store)
            .unwrap_or(StoreKind::File);
        if let Some(flag) = self.store_flag
            && flag != StoreKind::Auto
            && flag != saved
        {
            return Err(Failure::usage(format!(
                "profile {:?} keeps its session in the {} store, not {}: sign in again with --store {} to move it",
                self.name,
                store_name(saved),
                store_name(flag),
                store_name(flag),
            )));
        }
        self.open_store(saved)
    }

    /// The store a sign-in saves to: `--store`, else the profile's, else the file.
    /// `auto` becomes the keychain when it works here, else the file (with a warning on
    /// standard error). The folder is created first so that it is private.
    pub(crate) fn sign_in_store(&self) -> Result<ProfileStore, Failure> {
        self.ensure_dir()?;
        let saved = self.read_settings()?.and_then(|s| s.store);
        let wanted = self.store_flag.or(saved).unwrap_or(StoreKind::File);
        match wanted {
            StoreKind::File => self.open_store(StoreKind::File),
            StoreKind::Keyring => {
                let keychain = Keychain::platform().map_err(keychain_failure)?;
                keychain
                    .probe(&self.dir.display().to_string())
                    .map_err(keychain_failure)?;
                self.open_store(StoreKind::Keyring)
            }
            StoreKind::Auto => {
                let works = Keychain::platform().and_then(|k| {
                    k.probe(&self.dir.display().to_string())?;
                    Ok(k)
                });
                match works {
                    Ok(_) => self.open_store(StoreKind::Keyring),
                    Err(why) => {
                        let _ = writeln!(
                            std::io::stderr().lock(),
                            "warning: {why}; keeping the session in {} instead (0600)",
                            self.session_path().display()
                        );
                        self.open_store(StoreKind::File)
                    }
                }
            }
        }
    }

    fn open_store(&self, kind: StoreKind) -> Result<ProfileStore, Failure> {
        let path = self.session_path();
        match kind {
            StoreKind::Keyring => {
                let keychain = Keychain::platform().map_err(keychain_failure)?;
                let location = format!(
                    "tokens in {}, the rest in {}",
                    keychain.name(),
                    path.display()
                );
                Ok(ProfileStore {
                    store: Arc::new(KeyringStore::new(&path, keychain)),
                    kind,
                    location,
                })
            }
            StoreKind::File | StoreKind::Auto => Ok(ProfileStore {
                location: format!("{} (file, 0600)", path.display()),
                store: Arc::new(FileStore::new(path)),
                kind: StoreKind::File,
            }),
        }
    }

    /// The profile's settings, if it has any. A file that cannot be read is an error
    /// (exit 3) and is left as it is.
    pub(crate) fn read_settings(&self) -> Result<Option<Settings>, Failure> {
        let path = self.config_path();
        let Some(mut value) = self.read_json::<serde_json::Value>(&path)? else {
            return Ok(None);
        };
        let email = value
            .as_object_mut()
            .and_then(|o| o.remove("email"))
            .and_then(|e| e.as_str().map(str::to_owned));
        let store = match value.as_object_mut().and_then(|o| o.remove("store")) {
            None => None,
            Some(kind) => Some(
                kind.as_str()
                    .and_then(|k| StoreKind::from_str(k, false).ok())
                    .filter(|k| *k != StoreKind::Auto)
                    .ok_or_else(|| corrupt(&path, "\"store\" is not file or keyring"))?,
            ),
        };
        let provider =
            ProviderConfig::from_value(value).map_err(|e| corrupt(&path, &e.to_string()))?;
        Ok(Some(Settings {
            provider,
            email,
            store,
        }))
    }

    /// The profile's backend, if it has one.
    pub(crate) fn read_config(&self) -> Result<Option<ProviderConfig>, Failure> {
        Ok(self.read_settings()?.map(|s| s.provider))
    }

    /// Writes the profile's settings.
    pub(crate) fn write_settings(&self, settings: &Settings) -> Result<(), Failure> {
        let mut value = serde_json::to_value(&settings.provider)
            .map_err(|e| Failure::no_session(format!("cannot encode the settings: {e}")))?;
        if let (Some(object), Some(email)) = (value.as_object_mut(), &settings.email) {
            object.insert("email".to_owned(), email.clone().into());
        }
        if let (Some(object), Some(store)) = (value.as_object_mut(), settings.store)
            && store != StoreKind::File
        {
            object.insert("store".to_owned(), store_name(store).into());
        }
        self.write_json(&self.config_path(), &value)
    }

    /// Reads one of the profile's JSON files; a missing file is `None`, an unreadable
    /// one an error (exit 3), left as it is.
    pub(crate) fn read_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, Failure> {
        let Some(text) = read_text(path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| corrupt(path, &format!("line {}, column {}", e.line(), e.column())))
    }

    /// Writes one of the profile's JSON files, privately and atomically.
    pub(crate) fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), Failure> {
        self.ensure_dir()?;
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Failure::no_session(format!("cannot encode {}: {e}", path.display())))?;
        bytes.push(b'\n');
        write_private(path, &bytes)
    }

    /// Removes one of the profile's files (a missing one is fine).
    pub(crate) fn remove(&self, path: &Path) -> Result<(), Failure> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Failure::no_session(format!(
                "cannot remove {}: {e}",
                path.display()
            ))),
        }
    }

    /// How to run `rest` as a command on this profile, e.g. `authmux --profile work otp
    /// CODE`, for hints.
    pub(crate) fn command(&self, rest: &str) -> String {
        let mut command = String::from("authmux");
        if let Some(home) = &self.home_flag {
            command.push_str(&format!(" --home {}", home.display()));
        }
        if self.name != "default" {
            command.push_str(&format!(" --profile {}", self.name));
        }
        format!("`{command} {rest}`")
    }
}

/// A store kind as the command line spells it.
pub(crate) fn store_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::File => "file",
        StoreKind::Keyring => "keyring",
        StoreKind::Auto => "auto",
    }
}

fn keychain_failure(why: String) -> Failure {
    Failure::no_session(format!(
        "--store keyring: {why} (use --store file, or --store auto to fall back to it)"
    ))
}

fn corrupt(path: &Path, detail: &str) -> Failure {
    Failure::no_session(format!(
        "corrupt profile file {} ({detail}); it was left untouched: fix or remove it",
        path.display()
    ))
}

fn read_text(path: &Path) -> Result<Option<String>, Failure> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| corrupt(path, "not UTF-8")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Failure::no_session(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Makes an existing folder owner-only, saying so on stderr.
#[allow(clippy::print_stderr, reason = "a warning the user must see")]
fn tighten(dir: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = fs::metadata(dir) else {
            return Ok(());
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
                Failure::no_session(format!("cannot make {} private: {e}", dir.display()))
            })?;
            eprintln!(
                "authmux: warning: the profile folder {} was open to group or others (mode {mode:o}); it is now 0700",
                dir.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn make_private_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Failure::no_session(format!("cannot create {}: {e}", dir.display())))
}

/// Writes `bytes` to a new 0600 file next to `path`, flushes it, and renames it over
/// `path`: readers see the old or the new content, never half of one.
/// Writes a profile file through the core's one atomic private writer (exclusive random
/// temp file, 0600, file and folder flushed).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    authmux::store::write_private(path, bytes)
        .map_err(|e| Failure::no_session(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_checked() {
        let home = Home::resolve(Some(PathBuf::from("/tmp/authmux-test-home"))).unwrap();
        for good in ["default", "work", "a", "team-1.prod_x", &"x".repeat(64)] {
            assert!(home.profile(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-x",
            ".hidden",
            "sp ace",
            &"x".repeat(65),
        ] {
            let failure = home.profile(bad).unwrap_err();
            assert_eq!(failure.code, crate::failure::USAGE, "{bad}");
        }
    }

    #[test]
    fn files_are_private_and_corrupt_ones_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().join("home"))).unwrap();
        let profile = home.profile("p").unwrap();
        let settings = Settings {
            provider: ProviderConfig::new("linxio", "https://x.example".parse().unwrap()).unwrap(),
            email: Some("ann@example.com".to_owned()),
            store: Some(StoreKind::Keyring),
        };
        profile.write_settings(&settings).unwrap();
        assert_eq!(profile.read_settings().unwrap(), Some(settings.clone()));
        assert_eq!(profile.read_config().unwrap(), Some(settings.provider));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&profile.config_path()), 0o600);
            assert_eq!(mode(&dir.path().join("home")), 0o700);
            assert_eq!(mode(&dir.path().join("home/profiles/p")), 0o700);
        }
        fs::write(profile.config_path(), b"{\"dialect\": \"lin").unwrap();
        let failure = profile.read_config().unwrap_err();
        assert_eq!(failure.code, crate::failure::NO_SESSION);
        assert!(
            failure.message.contains("left untouched"),
            "{}",
            failure.message
        );
        assert_eq!(
            fs::read(profile.config_path()).unwrap(),
            b"{\"dialect\": \"lin"
        );
    }

    #[test]
    fn hints_repeat_home_and_profile() {
        let home = Home::resolve(Some(PathBuf::from("/h"))).unwrap();
        assert_eq!(
            home.profile("work").unwrap().command("otp CODE"),
            "`authmux --home /h --profile work otp CODE`"
        );
    }
}
