//! With every log line captured at TRACE level (authmux's own and its dependencies':
//! reqwest, hyper, rustls), a lifecycle on every dialect — wrong password, login, OTP,
//! authorized calls, refresh, a rejected refresh, logout — logs no password, code or
//! token.

use std::io::Write;
use std::sync::{Arc, Mutex};

use authmux_core::{AuthProvider, Credentials, LoginOutcome, SessionManager};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD, OTP_CODE, OTP_EMAIL};
use bytes::Bytes;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the lifecycle; returns every secret it saw.
async fn lifecycle(
    provider: Arc<dyn AuthProvider>,
    path: &str,
    otp_code: Option<String>,
) -> Vec<String> {
    let mut secrets = vec![
        DEFAULT_PASSWORD.to_owned(),
        format!("{DEFAULT_PASSWORD}-wrong"),
    ];
    let manager = SessionManager::new(provider.clone());
    let wrong = Credentials::new(ALICE_EMAIL, format!("{DEFAULT_PASSWORD}-wrong"));
    assert!(manager.login(&wrong).await.is_err());
    if let Some(code) = otp_code {
        secrets.push(code.clone());
        match manager
            .login(&Credentials::new(OTP_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap()
        {
            LoginOutcome::OtpRequired(_) => {
                assert!(manager.verify_otp(&"000000".into()).await.is_err());
                manager.verify_otp(&code.as_str().into()).await.unwrap();
            }
            LoginOutcome::Authenticated(_) => {
                panic!("{}: expected an OTP challenge", provider.dialect())
            }
        }
        manager.logout().await.unwrap();
    }
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let get = || http::Request::get(path).body(Bytes::new()).unwrap();
    assert_eq!(manager.send(get()).await.unwrap().status(), 200);
    let session = manager.session().unwrap();
    secrets.push(session.tokens.access.expose_secret().to_owned());
    if let Some(r) = &session.tokens.refresh {
        secrets.push(r.expose_secret().to_owned());
    }
    if provider.capabilities().refresh {
        manager.refresh().await.unwrap();
        let refreshed = manager.session().unwrap();
        secrets.push(refreshed.tokens.access.expose_secret().to_owned());
        // The old refresh token again: rejected (and logged as a failure, safely).
        assert!(
            provider.refresh(&session).await.is_err() || !provider.capabilities().rotating_refresh
        );
    }
    manager.current_user().await.unwrap();
    manager.logout().await.unwrap();
    secrets
}

#[test]
fn no_secret_reaches_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let secrets = runtime.block_on(async {
        let mut secrets = Vec::new();
        let linxio = authmux_testkit::FakeLinxio::start().unwrap();
        let provider = authmux_linxio::LinxioProvider::new(authmux_linxio::LinxioConfig::new(
            linxio.base_url().clone(),
        ));
        secrets.extend(
            lifecycle(
                Arc::new(provider.unwrap()),
                "/api/vehicles",
                Some(OTP_CODE.to_owned()),
            )
            .await,
        );

        let linkutm = authmux_testkit::FakeLinkUtm::start().unwrap();
        let config =
            authmux_linkutm::LinkUtmConfig::new(linkutm.base_url().clone()).with_workspace("acme");
        secrets.extend(
            lifecycle(
                Arc::new(authmux_linkutm::LinkUtmProvider::new(config).unwrap()),
                "/api/v1/links",
                None,
            )
            .await,
        );

        let directus = authmux_testkit::directus::FakeDirectus::start().unwrap();
        let provider = authmux_directus::DirectusProvider::new(
            authmux_directus::DirectusConfig::new(directus.base_url().clone()),
        );
        let code = directus.totp_code(OTP_EMAIL).unwrap();
        secrets.extend(lifecycle(Arc::new(provider.unwrap()), "/items/articles", Some(code)).await);
        secrets
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.lines().count() > 20,
        "the capture must see the traffic's log lines:\n{log}"
    );
    for secret in secrets.iter().filter(|s| s.len() >= 6) {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
    }
}
