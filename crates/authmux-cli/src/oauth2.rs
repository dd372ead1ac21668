//! The OAuth 2.0 / OpenID Connect parts of the command line: the `--client-id`,
//! `--client-secret-env`, `--scope` and `--password-grant` settings of
//! `--dialect oauth2`, and `login --device | --browser | --client-credentials`.
//!
//! The profile records the NAME of the client secret's environment variable, never the
//! secret: the provider reads the variable whenever it needs the secret (at login and
//! at every refresh).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use authmux::oauth2::{LoopbackListener, OAuth2Config, OAuth2Provider};
use authmux::{AuthError, AuthProvider, ProviderConfig, Session};
use clap::Args;

use crate::cli::LoginArgs;
use crate::commands::{build, check_store, finish_sign_in, manager, resolve_target};
use crate::failure::Failure;
use crate::profile::Profile;

/// Prints one line on standard error: the instructions of an interactive sign-in, kept
/// off standard output (which carries only results).
fn tell(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// How long `login --browser` waits for the browser to come back.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

/// The settings of `--dialect oauth2` (saved in the profile).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct OAuth2Args {
    /// OAuth 2.0: the client id registered with the server.
    #[arg(long, value_name = "ID")]
    pub(crate) client_id: Option<String>,
    /// OAuth 2.0: the environment variable holding the client secret (only its name is
    /// saved; it is read at every command that needs the secret).
    #[arg(long, value_name = "NAME")]
    pub(crate) client_secret_env: Option<String>,
    /// OAuth 2.0: the scopes, space-separated (default "openid"; add offline_access for
    /// a refresh token).
    #[arg(long, value_name = "SCOPES")]
    pub(crate) scope: Option<String>,
    /// OAuth 2.0: allow the legacy password grant for `login --email`.
    #[arg(long)]
    pub(crate) password_grant: bool,
}

impl OAuth2Args {
    fn any(&self) -> bool {
        self.client_id.is_some()
            || self.client_secret_env.is_some()
            || self.scope.is_some()
            || self.password_grant
    }
}

/// How `login` signs in with OAuth 2.0 (none: the password grant, when allowed).
#[derive(Debug, Clone, Copy, Default, Args)]
#[group(multiple = false)]
pub(crate) struct GrantArgs {
    /// OAuth 2.0: sign in on another device (prints a URL and a code, then waits).
    #[arg(long)]
    pub(crate) device: bool,
    /// OAuth 2.0: sign in in a browser (authorization code with PKCE; the redirect comes
    /// back to 127.0.0.1).
    #[arg(long)]
    pub(crate) browser: bool,
    /// OAuth 2.0: sign the client itself in with its id and secret (no user).
    #[arg(long)]
    pub(crate) client_credentials: bool,
}

impl GrantArgs {
    /// Whether one of the OAuth 2.0 sign-in flags was given.
    pub(crate) fn any(self) -> bool {
        self.device || self.browser || self.client_credentials
    }
}

/// Applies the OAuth 2.0 flags to `config`; they apply to `--dialect oauth2` only.
pub(crate) fn apply(config: &mut ProviderConfig, args: &OAuth2Args) -> Result<(), Failure> {
    let dialect = config.dialect();
    let ProviderConfig::OAuth2(c) = config else {
        if args.any() {
            return Err(Failure::usage(format!(
                "--client-id, --client-secret-env, --scope and --password-grant apply to --dialect oauth2 only, not {dialect}"
            )));
        }
        return Ok(());
    };
    if let Some(id) = &args.client_id {
        c.client_id = id.trim().to_owned();
    }
    if let Some(name) = &args.client_secret_env {
        c.client_secret_env = Some(name.trim().to_owned());
    }
    if let Some(scope) = &args.scope {
        c.scopes = scope.split_whitespace().map(str::to_owned).collect();
    }
    if args.password_grant {
        c.password_grant = true;
    }
    if c.client_id.is_empty() {
        return Err(Failure::usage(
            "--client-id is required for --dialect oauth2",
        ));
    }
    Ok(())
}

/// `login --device | --browser | --client-credentials`.
pub(crate) async fn login(profile: &Profile, args: LoginArgs) -> Result<(), Failure> {
    check_store(profile).await?;
    let config = resolve_target(&args.target, profile)?;
    let ProviderConfig::OAuth2(oauth2) = &config else {
        return Err(Failure::usage(format!(
            "--device, --browser and --client-credentials apply to --dialect oauth2 only, not {}",
            config.dialect()
        )));
    };
    if args.email.is_some() || args.password_stdin || args.otp.is_some() {
        return Err(Failure::usage(
            "--email, --password-stdin and --otp do not go with --device, --browser or --client-credentials",
        ));
    }
    // The facade's checks (URL, insecure http) with its error wording, then the
    // concrete provider for the grant calls.
    build(&config)?;
    let provider = OAuth2Provider::new((**oauth2).clone())?;
    let mut session = if args.grant.device {
        device(&provider).await?
    } else if args.grant.browser {
        browser(&provider, oauth2).await?
    } else {
        provider.client_credentials().await?
    };
    // OpenID providers often keep the email out of the ID token (it is in userinfo):
    // ask, so the profile can name the user. A failure here does not undo the sign-in.
    if session.user.as_ref().is_none_or(|u| u.email.is_none())
        && let Ok(user) = provider.current_user(&session).await
    {
        session.user = Some(user);
    }
    let shared: Arc<dyn AuthProvider> = Arc::new(provider);
    let store = profile.store()?;
    manager(&shared, &store)
        .sign_in_with(session.clone())
        .await?;
    finish_sign_in(profile, &config, &store, &session, None, "signed in").await
}

async fn device(provider: &OAuth2Provider) -> Result<Session, AuthError> {
    let device = provider.start_device_authorization().await?;
    tell(&format!(
        "to sign in, open {} and enter the code {}",
        device.verification_uri, device.user_code
    ));
    if let Some(complete) = &device.verification_uri_complete {
        tell(&format!("(or open {complete})"));
    }
    tell("waiting for the sign-in to finish...");
    provider.wait_for_device_authorization(&device).await
}

async fn browser(provider: &OAuth2Provider, config: &OAuth2Config) -> Result<Session, AuthError> {
    let listener = LoopbackListener::bind(&config.redirect_path, 0).await?;
    let request = provider
        .authorization_request(listener.redirect_uri())
        .await?;
    tell(&format!("to sign in, open {}", request.url()));
    if std::io::stdout().is_terminal() {
        open_browser(request.url().as_str());
    }
    tell("waiting for the browser to come back...");
    let callback = tokio::time::timeout(BROWSER_TIMEOUT, listener.wait_for_callback())
        .await
        .map_err(|_| AuthError::Timeout)??;
    provider.complete_authorization(&request, &callback).await
}

/// Tries the platform's URL opener; says nothing when there is none (the URL is printed).
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}
