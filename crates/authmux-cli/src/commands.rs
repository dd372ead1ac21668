//! The commands. Each turns its arguments into calls on the authmux facade: a
//! [`ProviderConfig`] from the flags or the profile, the provider it builds, and a
//! [`SessionManager`] over the profile's store (its `FileStore`, the keychain, or a
//! shared Redis: see [`crate::stores`]). No command knows a dialect by
//! name: what a backend can do comes from its `capabilities()` and capability accessors.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use authmux::{
    AuthError, AuthProvider, Credentials, LoginOutcome, LogoutOutcome, OtpChallenge, OtpCode,
    ProviderConfig, ResetToken, Session, SessionManager, SignupRequest, UserProfile,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use crate::cli::{
    Cli, Command, LoginArgs, PasswordCommand, SessionsCommand, SignupArgs, TargetArgs,
};
use crate::failure::{Failure, OTP_REQUIRED, describe, exit_code};
use crate::output::{self, say};
use crate::profile::{Home, Profile, ProfileStore, Settings, store_name};
use crate::secrets::{self, Kind, Secrets};
use crate::stores;
use crate::{demo, fake};

/// A login waiting for its one-time code (`otp.json`): the backend it was made with, the
/// challenge (which never holds the password) and whether the password is needed again.
#[derive(Debug, Serialize, Deserialize)]
struct PendingOtp {
    provider: ProviderConfig,
    challenge: OtpChallenge,
    password_needed: bool,
}

/// A signup waiting for its emailed code (`signup.json`).
#[derive(Debug, Serialize, Deserialize)]
struct PendingSignup {
    provider: ProviderConfig,
    email: String,
}

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Demo => return demo::run().await,
        Command::FakeServer { dialect, port } => return fake::run(&dialect, port),
        Command::Completions { shell } => return crate::manual::completions(shell),
        Command::Man => return crate::manual::man(),
        _ => {}
    }
    let home = Home::resolve(cli.home)?;
    let kind = stores::configure(cli.store, cli.store_key, cli.store_key_env);
    let profile = home.profile(&cli.profile)?.with_store_flag(kind);
    match cli.command {
        Command::Login(args) => login(&profile, args).await,
        Command::Otp {
            code,
            password_stdin,
        } => otp(&profile, &code, password_stdin).await,
        Command::Token { min_valid } => token(&profile, min_valid).await,
        Command::Exec(_) => Err(Failure::usage("exec runs from main")),
        Command::Proxy(args) => crate::proxy::run(&profile, args).await,
        Command::Whoami { json } => whoami(&profile, json).await,
        Command::Status { json } => status(&profile, json).await,
        Command::Refresh => refresh(&profile).await,
        Command::Logout => logout(&profile).await,
        Command::Sessions(command) => sessions(&profile, command).await,
        Command::Signup(args) => signup(&profile, args).await,
        Command::SignupVerify { code } => signup_verify(&profile, &code).await,
        Command::Password(command) => password(&profile, command).await,
        Command::Providers { target, json } => providers(&profile, &target, json).await,
        Command::OauthUrl {
            provider,
            redirect,
            target,
        } => oauth_url(&profile, &provider, redirect.as_deref(), &target),
        Command::OauthComplete {
            callback_url,
            target,
        } => oauth_complete(&profile, &callback_url, &target).await,
        // Run above, before any profile is opened.
        Command::Demo | Command::FakeServer { .. } | Command::Completions { .. } | Command::Man => {
            Ok(())
        }
    }
}

// ----- the backend ---------------------------------------------------------------

/// The backend the flags name, or the profile's. With `--url`, a fresh configuration of
/// `--dialect` (or the profile's dialect) is built from the flags alone; without it, the
/// profile's settings are used, with the flags applied on top.
pub(crate) fn resolve_target(
    args: &TargetArgs,
    profile: &Profile,
) -> Result<ProviderConfig, Failure> {
    let saved = profile.read_config()?;
    let mut config = match &args.url {
        Some(url) => {
            let dialect = match (&args.dialect, &saved) {
                (Some(dialect), _) => dialect.clone(),
                (None, Some(saved)) => saved.dialect().to_owned(),
                (None, None) => {
                    return Err(Failure::usage(
                        "--dialect is required (linxio, linkutm, directus or oauth2)",
                    ));
                }
            };
            ProviderConfig::new(&dialect, parse_url(url, "--url")?)?
        }
        None => {
            let Some(saved) = saved else {
                return Err(Failure::usage(format!(
                    "--dialect and --url are required: profile {:?} has no backend yet",
                    profile.name()
                )));
            };
            if let Some(dialect) = &args.dialect
                && dialect != saved.dialect()
            {
                // Checked for a clear message about an unknown dialect first.
                ProviderConfig::new(dialect, saved.url().clone())?;
                return Err(Failure::usage(format!(
                    "--url is required: profile {:?} is set up for {}, not {dialect}",
                    profile.name(),
                    saved.dialect()
                )));
            }
            saved
        }
    };
    apply_options(&mut config, args)?;
    Ok(config)
}

/// Applies the dialect-specific and HTTP flags to `config`.
fn apply_options(config: &mut ProviderConfig, args: &TargetArgs) -> Result<(), Failure> {
    let dialect = config.dialect();
    for (value, flag, owner) in [
        (&args.domain, "--domain", "linxio"),
        (&args.mode, "--mode", "directus"),
        (&args.workspace, "--workspace", "linkutm"),
    ] {
        if value.is_some() && dialect != owner {
            return Err(Failure::usage(format!(
                "{flag} applies to --dialect {owner} only, not {dialect}"
            )));
        }
    }
    if args.allow_insecure_http {
        config.client_mut().allow_insecure_http = true;
    }
    if let Some(ms) = args.timeout_ms {
        if ms == 0 {
            return Err(Failure::usage("--timeout-ms must be at least 1"));
        }
        config.client_mut().timeout_ms = Some(ms);
    }
    crate::oauth2::apply(config, &args.oauth2)?;
    match config {
        ProviderConfig::Linxio(c) => {
            if let Some(domain) = &args.domain {
                c.domain = Some(domain.clone());
            }
        }
        ProviderConfig::LinkUtm(c) => {
            if let Some(workspace) = &args.workspace {
                c.workspace = Some(workspace.clone());
            }
        }
        ProviderConfig::Directus(c) => {
            if let Some(mode) = &args.mode {
                c.mode = mode.parse()?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Parses a URL flag; the parser's message never repeats the text.
fn parse_url(text: &str, flag: &str) -> Result<Url, Failure> {
    let url =
        Url::parse(text.trim()).map_err(|e| Failure::usage(format!("invalid {flag}: {e}")))?;
    if url.host().is_none() {
        return Err(Failure::usage(format!(
            "invalid {flag}: expected an https:// URL with a host"
        )));
    }
    Ok(url)
}

pub(crate) fn build(config: &ProviderConfig) -> Result<Arc<dyn AuthProvider>, Failure> {
    config.build().map_err(|error| {
        let insecure = matches!(error, AuthError::InsecureTransport { .. });
        let mut failure = Failure::from(error);
        if insecure {
            failure.message.push_str(" (--allow-insecure-http)");
        }
        failure
    })
}

pub(crate) fn manager(provider: &Arc<dyn AuthProvider>, store: &ProfileStore) -> SessionManager {
    SessionManager::builder(provider.clone())
        .shared_store(store.store.clone())
        .build()
}

/// Fails (exit 3, file untouched) if the profile's session cannot be read.
pub(crate) async fn check_store(profile: &Profile) -> Result<ProfileStore, Failure> {
    let store = match stores::open(profile).await? {
        Some(shared) => shared,
        None => profile.store()?,
    };
    store.store.load().await?;
    Ok(store)
}

/// Like [`check_store`], for the store a sign-in saves to.
async fn check_sign_in_store(profile: &Profile) -> Result<ProfileStore, Failure> {
    let store = match stores::open(profile).await? {
        Some(shared) => shared,
        None => profile.sign_in_store()?,
    };
    store.store.load().await?;
    Ok(store)
}

/// A signed-in profile, ready to use.
pub(crate) struct SignedIn {
    pub(crate) provider: Arc<dyn AuthProvider>,
    pub(crate) manager: SessionManager,
    pub(crate) store: ProfileStore,
}

fn not_signed_in(profile: &Profile) -> Failure {
    Failure::no_session(format!(
        "not signed in (profile {:?}): run {}",
        profile.name(),
        profile.command("login --dialect D --url URL --email EMAIL")
    ))
}

pub(crate) fn login_hint(profile: &Profile) -> String {
    format!("run {} to sign in again", profile.command("login ..."))
}

/// Every manager this process opened, so that [`settle_refreshes`] can wait for the
/// refreshes they started in the background before the process exits.
static OPENED: std::sync::Mutex<Vec<SessionManager>> = std::sync::Mutex::new(Vec::new());

/// Waits (at most `limit`) for the background refreshes of every manager this process
/// opened. A short-lived command (`token`, `whoami`) that hands out a still-valid token
/// inside the refresh window has started a refresh in the background; were the process
/// to exit with it in flight, the server could rotate the refresh token and its answer,
/// the only copy of the new one, would die with the process: the session would be lost
/// (found by the chaos soak, `cargo xtask soak`).
pub(crate) async fn settle_refreshes(limit: std::time::Duration) {
    let managers = std::mem::take(
        &mut *OPENED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let _ = tokio::time::timeout(limit, async {
        for manager in managers {
            manager.idle().await;
            // A refreshed session that could not be saved yet: one more try.
            let _ = manager.flush().await;
        }
    })
    .await;
}

/// The profile's session, restored (no network).
pub(crate) async fn open(profile: &Profile) -> Result<SignedIn, Failure> {
    open_with(profile, |builder| builder).await
}

/// Like [`open`], with the manager's settings adjusted by `configure` (e.g. a refresh
/// window).
pub(crate) async fn open_with(
    profile: &Profile,
    configure: impl FnOnce(authmux::ManagerBuilder) -> authmux::ManagerBuilder,
) -> Result<SignedIn, Failure> {
    let store = check_store(profile).await?;
    // No local profile: a shared store's session names its backend.
    let config = match profile.read_config()? {
        Some(config) => config,
        None => stores::config_from_store(&store.store)
            .await?
            .ok_or_else(|| not_signed_in(profile))?,
    };
    let provider = build(&config)?;
    let manager =
        configure(SessionManager::builder(provider.clone()).shared_store(store.store.clone()))
            .build();
    if manager.restore().await?.is_none() {
        return Err(not_signed_in(profile));
    }
    OPENED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(manager.clone());
    Ok(SignedIn {
        provider,
        manager,
        store,
    })
}

/// Maps an error of a call made with the session, adding the sign-in hint when the
/// session is gone.
pub(crate) fn session_failure(profile: &Profile, error: AuthError) -> Failure {
    Failure::from(error.clone()).with_sign_in_hint(&error, &login_hint(profile))
}

/// Checks that `session` reached the store, saves the profile's settings (the backend
/// and `email`), and says so.
pub(crate) async fn finish_sign_in(
    profile: &Profile,
    config: &ProviderConfig,
    store: &ProfileStore,
    session: &Session,
    email: Option<&str>,
    verb: &str,
) -> Result<(), Failure> {
    match store.store.load().await? {
        Some(stored) if stored.session.tokens == session.tokens => {}
        _ => {
            return Err(Failure::no_session(format!(
                "signed in, but the session could not be saved to {}",
                store.location
            )));
        }
    }
    let email = user_email(session).or(email);
    profile.write_settings(&Settings {
        provider: config.clone(),
        email: email.map(str::to_owned),
        store: Some(store.kind),
    })?;
    stores::record(profile)?;
    profile.remove(&profile.otp_path())?;
    let who = email.unwrap_or("(unknown user)");
    let expiry = match session.tokens.expires_at {
        Some(at) => format!(
            "the token expires {}",
            output::relative(at, SystemTime::now())
        ),
        None => "the token has no stated expiry".to_owned(),
    };
    say(&format!(
        "{verb} to {} at {} as {who}; {expiry}",
        config.dialect(),
        config.url()
    ));
    Ok(())
}

fn user_email(session: &Session) -> Option<&str> {
    session
        .user
        .as_ref()
        .and_then(|u| u.email.as_deref())
        .or_else(|| session.extra_str("email"))
}

// ----- signing in ------------------------------------------------------------------

async fn login(profile: &Profile, args: LoginArgs) -> Result<(), Failure> {
    if args.grant.any() {
        return crate::oauth2::login(profile, args).await;
    }
    // A corrupt profile is reported before anything is sent, and left as it is.
    let store = check_sign_in_store(profile).await?;
    let config = resolve_target(&args.target, profile)?;
    let provider = build(&config)?;
    let remembered = match &args.email {
        Some(_) => None,
        None => profile.read_settings()?.and_then(|s| s.email),
    };
    let Some(email) = args
        .email
        .as_deref()
        .or(remembered.as_deref())
        .map(str::trim)
    else {
        return Err(Failure::usage(format!(
            "--email is required: profile {:?} has not signed in before",
            profile.name()
        )));
    };
    if email.is_empty() {
        return Err(AuthError::validation("email", "an email address is required").into());
    }
    let mut credentials = Credentials::new(
        email,
        Secrets::new(args.password_stdin).get(
            Kind::Password,
            &format!("Password for {email}: "),
            "signing in",
        )?,
    );
    if let Some(code) = &args.otp {
        if !provider.capabilities().otp_login {
            return Err(Failure::usage(format!(
                "{} does not ask for a one-time code at login; drop --otp",
                config.dialect()
            )));
        }
        credentials = credentials.with_otp(code.trim());
    }
    let manager = manager(&provider, &store);
    match manager.login(&credentials).await? {
        LoginOutcome::Authenticated(session) => {
            finish_sign_in(profile, &config, &store, &session, Some(email), "signed in").await
        }
        LoginOutcome::OtpRequired(challenge) => {
            if !args.password_stdin && std::io::stdin().is_terminal() {
                return otp_inline(profile, &config, &store, &manager, challenge).await;
            }
            Err(wait_for_code(profile, config, challenge)?)
        }
    }
}

/// How many codes a person may type at the inline prompt before the login waits for
/// `authmux otp CODE` instead.
const INLINE_OTP_TRIES: u32 = 3;

/// At a terminal: asks for the one-time code and finishes the login in this process,
/// with the password still in memory (in the challenge; zeroized when it is dropped).
/// A wrong code may be typed again; an empty line (or end of input) leaves the login
/// waiting for `authmux otp CODE`, as without a terminal.
async fn otp_inline(
    profile: &Profile,
    config: &ProviderConfig,
    store: &ProfileStore,
    manager: &SessionManager,
    challenge: OtpChallenge,
) -> Result<(), Failure> {
    for attempt in 1..=INLINE_OTP_TRIES {
        let Some(code) = secrets::prompt_line(&format!(
            "One-time code for {} (empty to finish later): ",
            challenge.email
        ))?
        else {
            break;
        };
        match manager
            .verify_otp_with(&challenge, &OtpCode::new(code.trim()))
            .await
        {
            Ok(session) => {
                let email = challenge.email.clone();
                return finish_sign_in(profile, config, store, &session, Some(&email), "signed in")
                    .await;
            }
            Err(AuthError::InvalidOtp) if attempt < INLINE_OTP_TRIES => {
                secrets::tell("that code was not accepted; try again");
            }
            Err(error) => {
                let _ = wait_for_code(profile, config.clone(), challenge)?;
                return Err(still_waiting(
                    error,
                    "sign-in",
                    &profile.command("otp CODE"),
                ));
            }
        }
    }
    Err(wait_for_code(profile, config.clone(), challenge)?)
}

/// Keeps the login waiting for its code (`otp.json`, without the password) and returns
/// the failure (exit 4) that says how to finish it.
fn wait_for_code(
    profile: &Profile,
    config: ProviderConfig,
    challenge: OtpChallenge,
) -> Result<Failure, Failure> {
    let pending = PendingOtp {
        provider: config,
        password_needed: challenge.password.is_some(),
        challenge,
    };
    profile.write_json(&profile.otp_path(), &pending)?;
    let again = if pending.password_needed {
        " (this backend needs the password again then: AUTHMUX_PASSWORD, --password-stdin or the prompt)"
    } else {
        ""
    };
    Ok(Failure::new(
        OTP_REQUIRED,
        format!(
            "a one-time code is required to finish signing in: run {}{again}",
            profile.command("otp CODE")
        ),
    ))
}

async fn otp(profile: &Profile, code: &str, password_stdin: bool) -> Result<(), Failure> {
    let Some(pending) = profile.read_json::<PendingOtp>(&profile.otp_path())? else {
        return Err(Failure::usage(format!(
            "no sign-in is waiting for a one-time code in profile {:?}: run {} first",
            profile.name(),
            profile.command("login ...")
        )));
    };
    let store = check_sign_in_store(profile).await?;
    let provider = build(&pending.provider)?;
    let mut challenge = pending.challenge;
    if pending.password_needed {
        let password = Secrets::new(password_stdin).get(
            Kind::Password,
            &format!("Password for {} (needed again): ", challenge.email),
            "finishing the sign-in (this backend sends the password again with the code)",
        )?;
        challenge = challenge.with_password(password);
    }
    let manager = manager(&provider, &store);
    let session = match manager
        .verify_otp_with(&challenge, &OtpCode::new(code.trim()))
        .await
    {
        Ok(session) => session,
        Err(error) => {
            return Err(still_waiting(
                error,
                "sign-in",
                &profile.command("otp CODE"),
            ));
        }
    };
    let email = challenge.email.clone();
    finish_sign_in(
        profile,
        &pending.provider,
        &store,
        &session,
        Some(&email),
        "signed in",
    )
    .await
}

// ----- using the session -----------------------------------------------------------

async fn token(profile: &Profile, min_valid: Option<Duration>) -> Result<(), Failure> {
    let (_, session) = crate::exec::valid_session(profile, min_valid).await?;
    say(session.tokens.access.expose_secret());
    Ok(())
}

fn user_json(user: &UserProfile) -> serde_json::Value {
    json!({ "id": user.id, "email": user.email, "name": user.name, "raw": user.raw })
}

fn user_line(user: &UserProfile) -> String {
    let mut line = user
        .email
        .clone()
        .unwrap_or_else(|| "(no email)".to_owned());
    if let Some(name) = &user.name {
        line.push_str(&format!(" ({name})"));
    }
    if let Some(id) = &user.id {
        line.push_str(&format!(", id {id}"));
    }
    line
}

async fn whoami(profile: &Profile, as_json: bool) -> Result<(), Failure> {
    let signed = open(profile).await?;
    let user = signed
        .manager
        .current_user()
        .await
        .map_err(|e| session_failure(profile, e))?;
    if as_json {
        output::json(&user_json(&user));
    } else {
        say(&user_line(&user));
    }
    Ok(())
}

async fn status(profile: &Profile, as_json: bool) -> Result<(), Failure> {
    let settings = profile.read_settings()?;
    let remembered = settings.as_ref().and_then(|s| s.email.clone());
    let config = settings.map(|s| s.provider);
    let otp_pending = profile
        .read_json::<PendingOtp>(&profile.otp_path())?
        .is_some();
    let (session, can_refresh_dialect, store) = match &config {
        Some(config) => {
            let store = check_store(profile).await?;
            let provider = build(config)?;
            let session = manager(&provider, &store).restore().await?;
            (session, provider.capabilities().refresh, Some(store))
        }
        None => (None, false, None),
    };
    let now = SystemTime::now();
    let expires_at = session.as_ref().and_then(|s| s.tokens.expires_at);
    let expired = session
        .as_ref()
        .is_some_and(|s| s.tokens.is_expired_at(now));
    let can_refresh =
        can_refresh_dialect && session.as_ref().is_some_and(|s| s.tokens.refresh.is_some());
    let usable = session.is_some() && (!expired || can_refresh);
    if as_json {
        let expires_in = expires_at.map(|at| match at.duration_since(now) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        });
        output::json(&json!({
            "profile": profile.name(),
            "dialect": config.as_ref().map(ProviderConfig::dialect),
            "url": config.as_ref().map(|c| c.url().as_str()),
            "signed_in": session.is_some(),
            "user": session.as_ref().map(|s| json!({
                "id": s.user.as_ref().and_then(|u| u.id.clone()),
                "email": user_email(s).or(remembered.as_deref()),
                "name": s.user.as_ref().and_then(|u| u.name.clone()),
            })),
            "expires_at": expires_at.map(authmux::timestamp::format),
            "expires_in_secs": expires_in,
            "expired": expired,
            "can_refresh": can_refresh,
            "usable": usable,
            "otp_pending": otp_pending,
            "store": store.as_ref().map(|s| json!({
                "kind": store_name(s.kind),
                "location": s.location,
            })),
        }));
    } else {
        let mut rows = vec![vec!["profile".to_owned(), profile.name().to_owned()]];
        if let Some(config) = &config {
            rows.push(vec!["dialect".into(), config.dialect().into()]);
            rows.push(vec!["url".into(), config.url().to_string()]);
        }
        match &session {
            Some(s) => {
                rows.push(vec![
                    "user".into(),
                    user_email(s)
                        .or(remembered.as_deref())
                        .unwrap_or("(unknown: see `authmux whoami`)")
                        .to_owned(),
                ]);
                let token = match expires_at {
                    Some(at) if expired => format!(
                        "expired {} ({})",
                        output::relative(at, now),
                        authmux::timestamp::format(at)
                    ),
                    Some(at) => format!(
                        "valid, expires {} ({})",
                        output::relative(at, now),
                        authmux::timestamp::format(at)
                    ),
                    None => "valid, no stated expiry".to_owned(),
                };
                rows.push(vec!["token".into(), token]);
                rows.push(vec![
                    "refresh".into(),
                    if can_refresh {
                        "yes".into()
                    } else {
                        "no (sign in again when the token expires)".into()
                    },
                ]);
            }
            None => rows.push(vec!["session".into(), "none (not signed in)".into()]),
        }
        if let Some(store) = &store {
            rows.push(vec!["stored".into(), store.location.clone()]);
        }
        if otp_pending {
            rows.push(vec![
                "pending".into(),
                format!("a one-time code: run {}", profile.command("otp CODE")),
            ]);
        }
        let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0);
        for row in &rows {
            say(&format!("{:<width$}  {}", row[0], row[1]));
        }
    }
    if usable {
        Ok(())
    } else if session.is_some() {
        Err(Failure::no_session(format!(
            "the session has expired and cannot be refreshed; {}",
            login_hint(profile)
        )))
    } else {
        Err(not_signed_in(profile))
    }
}

async fn refresh(profile: &Profile) -> Result<(), Failure> {
    let signed = open(profile).await?;
    if !signed.provider.capabilities().refresh {
        return Err(Failure::from(AuthError::Unsupported {
            capability: "refresh (sign in again when the token expires)",
        }));
    }
    signed
        .manager
        .refresh()
        .await
        .map_err(|e| session_failure(profile, e))?;
    let expiry = match signed.manager.session().and_then(|s| s.tokens.expires_at) {
        Some(at) => format!(
            "the new token expires {}",
            output::relative(at, SystemTime::now())
        ),
        None => "the new token has no stated expiry".to_owned(),
    };
    say(&format!("refreshed; {expiry}"));
    Ok(())
}

async fn logout(profile: &Profile) -> Result<(), Failure> {
    let signed = open(profile).await?;
    let result = signed.manager.logout().await;
    profile.remove(&profile.otp_path())?;
    if signed.store.store.load().await?.is_some() {
        return Err(Failure::no_session(format!(
            "could not remove the session from {}",
            signed.store.location
        )));
    }
    match result {
        Ok(LogoutOutcome::Revoked) => say("signed out: the server ended the session"),
        Ok(LogoutOutcome::SignInRevoked { id }) => {
            say(&format!(
                "signed out: the server revoked this sign-in ({id})"
            ));
        }
        Ok(LogoutOutcome::LocalOnly { reason }) => {
            say(&format!("signed out locally only: {reason}"));
        }
        Ok(_) => say("signed out"),
        Err(error) => {
            return Err(Failure::new(
                exit_code(&error),
                format!(
                    "signed out locally, but the server could not be told: {}",
                    describe(&error)
                ),
            ));
        }
    }
    Ok(())
}

async fn sessions(profile: &Profile, command: SessionsCommand) -> Result<(), Failure> {
    let signed = open(profile).await?;
    if signed.provider.sign_in_sessions().is_none() {
        return Err(Failure::from(AuthError::Unsupported {
            capability: "listing or revoking sign-ins",
        }));
    }
    let provider = signed.provider.clone();
    let unsupported = || AuthError::Unsupported {
        capability: "listing or revoking sign-ins",
    };
    match command {
        SessionsCommand::List { json: as_json } => {
            let records = signed
                .manager
                .authorized(|session| {
                    let provider = provider.clone();
                    async move {
                        match provider.sign_in_sessions() {
                            Some(sessions) => sessions.list(&session).await,
                            None => Err(unsupported()),
                        }
                    }
                })
                .await
                .map_err(|e| session_failure(profile, e))?;
            if as_json {
                output::json(&serde_json::to_value(&records).unwrap_or_default());
            } else if records.is_empty() {
                say("no active sign-ins");
            } else {
                let mut rows = vec![vec![
                    "ID".to_owned(),
                    "CURRENT".to_owned(),
                    "CREATED".to_owned(),
                    "USER AGENT".to_owned(),
                ]];
                for r in &records {
                    rows.push(vec![
                        r.id.clone(),
                        match r.current {
                            Some(true) => "yes".into(),
                            Some(false) => "no".into(),
                            None => "?".into(),
                        },
                        r.created_at.clone().unwrap_or_default(),
                        r.user_agent.clone().unwrap_or_default(),
                    ]);
                }
                say(&output::table(&rows));
            }
        }
        SessionsCommand::Revoke { id: Some(id), .. } => {
            let target = id.clone();
            signed
                .manager
                .authorized(|session| {
                    let (provider, id) = (provider.clone(), target.clone());
                    async move {
                        match provider.sign_in_sessions() {
                            Some(sessions) => sessions.revoke(&session, &id).await,
                            None => Err(unsupported()),
                        }
                    }
                })
                .await
                .map_err(|e| session_failure(profile, e))?;
            say(&format!("revoked sign-in {id}"));
        }
        SessionsCommand::Revoke { id: None, .. } => {
            signed
                .manager
                .authorized(|session| {
                    let provider = provider.clone();
                    async move {
                        match provider.sign_in_sessions() {
                            Some(sessions) => sessions.revoke_all(&session).await,
                            None => Err(unsupported()),
                        }
                    }
                })
                .await
                .map_err(|e| session_failure(profile, e))?;
            signed.store.store.delete().await?;
            say("revoked every sign-in of the user, this one included; signed out locally");
        }
    }
    Ok(())
}

// ----- accounts and passwords --------------------------------------------------------

async fn signup(profile: &Profile, args: SignupArgs) -> Result<(), Failure> {
    let config = resolve_target(&args.target, profile)?;
    let provider = build(&config)?;
    let Some(signup) = provider.signup() else {
        return Err(AuthError::Unsupported {
            capability: "signup",
        }
        .into());
    };
    let password = Secrets::new(args.password_stdin).get(
        Kind::Password,
        "Password for the new account: ",
        "the new account",
    )?;
    let email = args.email.trim().to_owned();
    signup
        .send_code(&SignupRequest {
            email: email.clone(),
            name: args.name.clone(),
            password,
        })
        .await?;
    profile.write_json(
        &profile.signup_path(),
        &PendingSignup {
            provider: config,
            email: email.clone(),
        },
    )?;
    say(&format!(
        "a code was sent to {email}: run {}",
        profile.command("signup-verify CODE")
    ));
    Ok(())
}

async fn signup_verify(profile: &Profile, code: &str) -> Result<(), Failure> {
    let Some(pending) = profile.read_json::<PendingSignup>(&profile.signup_path())? else {
        return Err(Failure::usage(format!(
            "no signup is waiting for a code in profile {:?}: run {} first",
            profile.name(),
            profile.command("signup ...")
        )));
    };
    let store = check_sign_in_store(profile).await?;
    let provider = build(&pending.provider)?;
    let Some(signup) = provider.signup() else {
        return Err(AuthError::Unsupported {
            capability: "signup",
        }
        .into());
    };
    let session = match signup
        .verify_code(&pending.email, &OtpCode::new(code.trim()))
        .await
    {
        Ok(session) => session,
        Err(error) => {
            return Err(still_waiting(
                error,
                "signup",
                &profile.command("signup-verify CODE"),
            ));
        }
    };
    manager(&provider, &store)
        .sign_in_with(session.clone())
        .await?;
    profile.remove(&profile.signup_path())?;
    finish_sign_in(
        profile,
        &pending.provider,
        &store,
        &session,
        Some(&pending.email),
        "signed up and signed in",
    )
    .await
}

async fn password(profile: &Profile, command: PasswordCommand) -> Result<(), Failure> {
    match command {
        PasswordCommand::Forgot {
            email,
            reset_url,
            target,
        } => {
            let config = resolve_target(&target, profile)?;
            let provider = build(&config)?;
            let Some(reset) = provider.password_reset() else {
                return Err(AuthError::Unsupported {
                    capability: "password reset",
                }
                .into());
            };
            let reset_url = reset_url
                .map(|u| parse_url(&u, "--reset-url"))
                .transpose()?;
            let email = email.trim();
            reset.request_reset(email, reset_url.as_ref()).await?;
            say(&format!(
                "if {email} has an account, a reset email is on its way; then run {}",
                profile.command("password reset --token TOKEN")
            ));
        }
        PasswordCommand::Reset {
            token,
            password_stdin,
            target,
        } => {
            let config = resolve_target(&target, profile)?;
            let provider = build(&config)?;
            let Some(reset) = provider.password_reset() else {
                return Err(AuthError::Unsupported {
                    capability: "password reset",
                }
                .into());
            };
            let new = Secrets::new(password_stdin).get(
                Kind::NewPassword,
                "New password: ",
                "the new password",
            )?;
            reset
                .complete_reset(&ResetToken::new(token.trim()), &new)
                .await?;
            say(&format!(
                "password changed: sign in with the new one ({})",
                profile.command("login ...")
            ));
        }
        PasswordCommand::Change { password_stdin } => {
            let signed = open(profile).await?;
            if signed.provider.password_change().is_none() {
                return Err(AuthError::Unsupported {
                    capability: "password change",
                }
                .into());
            }
            let mut secrets = Secrets::new(password_stdin);
            let current =
                secrets.get(Kind::Password, "Current password: ", "the current password")?;
            let new = secrets.get(Kind::NewPassword, "New password: ", "the new password")?;
            let provider = signed.provider.clone();
            signed
                .manager
                .authorized(|session| {
                    let (provider, current, new) = (provider.clone(), current.clone(), new.clone());
                    async move {
                        match provider.password_change() {
                            Some(change) => change.change_password(&session, &current, &new).await,
                            None => Err(AuthError::Unsupported {
                                capability: "password change",
                            }),
                        }
                    }
                })
                .await
                .map_err(|e| session_failure(profile, e))?;
            say("password changed");
        }
    }
    Ok(())
}

// ----- OAuth -----------------------------------------------------------------------

fn oauth_unsupported() -> Failure {
    AuthError::Unsupported {
        capability: "OAuth sign-in",
    }
    .into()
}

async fn providers(profile: &Profile, target: &TargetArgs, as_json: bool) -> Result<(), Failure> {
    let config = resolve_target(target, profile)?;
    let provider = build(&config)?;
    let Some(oauth) = provider.oauth() else {
        return Err(oauth_unsupported());
    };
    let list = oauth.providers().await?;
    if as_json {
        output::json(&serde_json::to_value(&list).unwrap_or_default());
    } else if list.is_empty() {
        say("the backend offers no OAuth providers");
    } else {
        let mut rows = vec![vec!["NAME".to_owned(), "LABEL".to_owned()]];
        for p in &list {
            rows.push(vec![p.name.clone(), p.label.clone().unwrap_or_default()]);
        }
        say(&output::table(&rows));
    }
    Ok(())
}

fn oauth_url(
    profile: &Profile,
    name: &str,
    redirect: Option<&str>,
    target: &TargetArgs,
) -> Result<(), Failure> {
    let config = resolve_target(target, profile)?;
    let provider = build(&config)?;
    let Some(oauth) = provider.oauth() else {
        return Err(oauth_unsupported());
    };
    let redirect = redirect.map(|r| parse_url(r, "--redirect")).transpose()?;
    let url = oauth.start_url(name, redirect.as_ref())?;
    say(url.as_str());
    Ok(())
}

async fn oauth_complete(
    profile: &Profile,
    callback: &str,
    target: &TargetArgs,
) -> Result<(), Failure> {
    let config = resolve_target(target, profile)?;
    let store = check_sign_in_store(profile).await?;
    let provider = build(&config)?;
    let Some(oauth) = provider.oauth() else {
        return Err(oauth_unsupported());
    };
    let callback = parse_url(callback, "CALLBACK_URL")?;
    let session = oauth.complete(&callback).await?;
    manager(&provider, &store)
        .sign_in_with(session.clone())
        .await?;
    finish_sign_in(profile, &config, &store, &session, None, "signed in").await
}

/// A rejected one-time code: the error, with a hint that the pending step (kept on
/// disk) can be finished with `command` once more.
fn still_waiting(error: AuthError, what: &str, command: &str) -> Failure {
    let mut failure = Failure::from(error.clone());
    if matches!(error, AuthError::InvalidOtp | AuthError::Validation { .. }) {
        failure.message = format!(
            "{}; the {what} is still waiting: run {command} again",
            failure.message
        );
    }
    failure
}
