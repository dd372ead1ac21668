//! LinkUTM under the `SessionManager`: JWT expiry is final and typed, the workspace
//! header reaches non-auth endpoints only, and logout revokes this session's own
//! sign-in (never all of them) or says it only forgot the session locally.

mod common;

use std::sync::Arc;
use std::time::Duration;

use authmux_core::{
    AuthError, AuthProvider, Clock, Credentials, LogoutOutcome, Phase, SessionManager,
    SignInSessions, Transport,
};
use authmux_linkutm::{LinkUtmProvider, SIGN_IN_EXTRA};
use authmux_testkit::linkutm::endpoints;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use bytes::Bytes;
use common::{Rig, config_for, login_alice, rig, rig_in_workspace, rig_with};
use http::{Method, Request, Response, StatusCode};
use serde_json::Value;

fn manager(rig: &Rig) -> SessionManager {
    SessionManager::builder(rig.provider.clone())
        .clock(rig.clock.clone())
        .build()
}

fn links() -> Request<Bytes> {
    Request::get("/api/v1/links").body(Bytes::new()).unwrap()
}

#[tokio::test]
async fn past_exp_the_manager_says_session_expired_and_never_hands_out_the_token() {
    let rig = rig_with(
        |b| b.access_lifetime(Duration::from_secs(600)),
        |c| c.with_workspace("acme"),
    );
    let manager = manager(&rig);
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let token = manager.access_token().await.unwrap();
    assert_eq!(
        manager.send(links()).await.unwrap().status(),
        StatusCode::OK
    );

    // The local expiry is a second before `exp` (its whole-second `iat` may lag the
    // server's clock by up to a second: `authmux_core::token`). One second before it,
    // the token is still handed out...
    rig.clock.advance(Duration::from_secs(598));
    assert_eq!(manager.access_token().await.unwrap(), token);
    // ...at it, never again, and nothing reaches the server.
    rig.clock.advance(Duration::from_secs(1));
    let before = rig.fake.recorder().total();
    for _ in 0..3 {
        assert!(matches!(
            manager.access_token().await,
            Err(AuthError::SessionExpired)
        ));
        assert!(matches!(
            manager.send(links()).await,
            Err(AuthError::SessionExpired)
        ));
        assert!(matches!(
            manager.current_user().await,
            Err(AuthError::SessionExpired)
        ));
    }
    assert!(AuthError::SessionExpired.needs_sign_in());
    assert_eq!(manager.phase(), Phase::Expired);
    assert_eq!(
        rig.fake.recorder().total(),
        before,
        "no request after expiry"
    );
    assert!(manager.session().is_none());

    // Signing in again starts over.
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    assert_ne!(manager.access_token().await.unwrap(), token);
}

#[tokio::test]
async fn the_workspace_header_reaches_api_calls_but_never_auth_calls() {
    let rig = rig_in_workspace("acme-marketing");
    let manager = manager(&rig);
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let answer = manager.send(links()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(answer.body()).unwrap();
    assert_eq!(body["workspaceId"], "acme-marketing");
    let sent = rig.fake.recorder().last(endpoints::LINKS).unwrap();
    assert_eq!(sent.header("x-workspace-id"), Some("acme-marketing"));
    assert!(sent.had_bearer());

    // Auth calls made through the manager carry the bearer but not the workspace.
    manager.current_user().await.unwrap();
    let session = manager.session().unwrap();
    rig.provider.list(&session).await.unwrap();
    let recorder = rig.fake.recorder();
    for endpoint in [endpoints::LOGIN, endpoints::PROFILE, endpoints::SESSIONS] {
        let requests = recorder.requests_to(endpoint);
        assert!(!requests.is_empty(), "{endpoint}");
        assert!(
            requests
                .iter()
                .all(|r| r.header("x-workspace-id").is_none()),
            "{endpoint} carried x-workspace-id"
        );
    }

    // A session moved to another workspace sends that one.
    let other = LinkUtmProvider::session_in_workspace(&session, Some("other-team")).unwrap();
    assert_eq!(LinkUtmProvider::workspace_of(&other), Some("other-team"));
    let api = |path: &str| http::Request::get(path).body(bytes::Bytes::new()).unwrap();
    let mut request = api("https://x.example/api/v1/links");
    authmux_core::provider::authorize_request(rig.provider.as_ref(), &other, &mut request).unwrap();
    assert_eq!(request.headers()["x-workspace-id"], "other-team");
    // An auth route never carries it, even when a caller sends it through the manager.
    let mut request = api("https://x.example/api/v1/auth/profile");
    authmux_core::provider::authorize_request(rig.provider.as_ref(), &other, &mut request).unwrap();
    assert!(!request.headers().contains_key("x-workspace-id"));
    assert!(request.headers().contains_key("authorization"));
    assert!(LinkUtmProvider::session_in_workspace(&session, Some("bad id")).is_err());
    let none = LinkUtmProvider::session_in_workspace(&session, None).unwrap();
    let mut request = api("https://x.example/api/v1/links");
    authmux_core::provider::authorize_request(rig.provider.as_ref(), &none, &mut request).unwrap();
    assert!(!request.headers().contains_key("x-workspace-id"));
}

#[tokio::test]
async fn without_a_workspace_no_header_is_sent() {
    let rig = rig();
    let manager = manager(&rig);
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    // The fake's non-auth route needs the header, so it says 400.
    let answer = manager.send(links()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        rig.fake
            .recorder()
            .last(endpoints::LINKS)
            .unwrap()
            .header("x-workspace-id"),
        None
    );
}

#[tokio::test]
async fn hydrated_tokens_get_the_workspace_and_the_sign_in_id() {
    let rig = rig_in_workspace("acme");
    let jwt = rig
        .fake
        .issue_token(ALICE_EMAIL, Some("elsewhere/1.0"))
        .unwrap();
    let manager = manager(&rig);
    let tokens = authmux_core::TokenSet::new(
        jwt.as_str().into(),
        None,
        authmux_core::Expiry::Unstated,
        rig.clock.now(),
    );
    let session = manager.hydrate(tokens).await.unwrap();
    assert_eq!(session.extra_str("workspace"), Some("acme"));
    let sid = rig.fake.sessions_of(ALICE_EMAIL)[0].id.clone();
    assert_eq!(session.extra_str(SIGN_IN_EXTRA), Some(sid.as_str()));
    assert!(session.tokens.expires_at.is_some());
    assert_eq!(
        manager.send(links()).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_revokes_only_this_sign_in() {
    let rig = rig();
    let other_device = login_alice(&rig.provider).await;
    let manager = manager(&rig);
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let mine = manager.session().unwrap();
    let my_id = mine.extra_str(SIGN_IN_EXTRA).unwrap().to_owned();
    assert_eq!(rig.fake.sessions_of(ALICE_EMAIL).len(), 2);

    let outcome = manager.logout().await.unwrap();
    assert_eq!(outcome, LogoutOutcome::SignInRevoked { id: my_id.clone() });
    // Locally gone, on the server revoked, the other device untouched.
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    let left = rig.fake.sessions_of(ALICE_EMAIL);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, my_id);
    assert!(matches!(
        rig.provider.current_user(&mine).await,
        Err(AuthError::Unauthorized { .. })
    ));
    assert!(rig.provider.current_user(&other_device).await.is_ok());
    let recorder = rig.fake.recorder();
    assert_eq!(recorder.count(endpoints::REVOKE_ALL_SESSIONS), 0);
    assert_eq!(recorder.count(endpoints::REVOKE_SESSION), 1);
    assert_eq!(
        recorder.last(endpoints::REVOKE_SESSION).unwrap().path,
        format!("/api/v1/auth/sessions/{my_id}")
    );
}

/// A transport in front of the fake that rewrites the sessions list with `edit`.
fn rewriting(
    inner: Arc<dyn Transport>,
    edit: fn(&mut serde_json::Map<String, Value>),
) -> Arc<dyn Transport> {
    Arc::new(authmux_core::transport::from_fn(
        move |request: Request<Bytes>| {
            let inner = inner.clone();
            async move {
                let is_list = request.method() == Method::GET
                    && request.uri().path().ends_with("/api/v1/auth/sessions");
                let mut response: Response<Bytes> = inner.send(request).await?;
                if is_list && response.status().is_success() {
                    let mut list: Vec<Value> = serde_json::from_slice(response.body()).unwrap();
                    for record in &mut list {
                        edit(record.as_object_mut().unwrap());
                    }
                    *response.body_mut() = Bytes::from(serde_json::to_vec(&list).unwrap());
                }
                Ok(response)
            }
        },
    ))
}

#[tokio::test]
async fn without_a_current_flag_the_jwt_sid_identifies_the_sign_in() {
    let rig = rig();
    let transport = rewriting(rig.provider.transport(), |record| {
        record.remove("current");
    });
    let provider = LinkUtmProvider::with_transport(config_for(&rig.fake), transport)
        .unwrap()
        .with_clock(rig.clock.clone());
    let other_device = login_alice(&provider).await;
    let mut mine = login_alice(&provider).await;
    let my_id = mine.extra_str(SIGN_IN_EXTRA).unwrap().to_owned();
    // Not from the extra: from the token's own `sid` claim.
    mine.extras.remove(SIGN_IN_EXTRA);
    let listed = provider.list(&mine).await.unwrap();
    assert!(listed.iter().all(|r| r.current.is_none()));

    let outcome = provider.logout(&mine).await.unwrap();
    assert_eq!(outcome, LogoutOutcome::SignInRevoked { id: my_id });
    assert!(provider.current_user(&other_device).await.is_ok());
    assert!(provider.current_user(&mine).await.is_err());
    assert_eq!(rig.fake.recorder().count(endpoints::REVOKE_ALL_SESSIONS), 0);
}

#[tokio::test]
async fn an_unidentifiable_sign_in_is_left_alone_and_the_logout_is_local_only() {
    let rig = rig();
    let transport = rewriting(rig.provider.transport(), |record| {
        record.remove("current");
        // Ids the token's claims cannot match.
        let id = record["id"]
            .as_str()
            .unwrap()
            .chars()
            .rev()
            .collect::<String>();
        record.insert("id".into(), Value::from(format!("opaque-{id}")));
    });
    let provider = Arc::new(
        LinkUtmProvider::with_transport(config_for(&rig.fake), transport)
            .unwrap()
            .with_clock(rig.clock.clone()),
    );
    let manager = SessionManager::builder(provider.clone())
        .clock(rig.clock.clone())
        .build();
    manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let mine = manager.session().unwrap();
    let outcome = manager.logout().await.unwrap();
    match outcome {
        LogoutOutcome::LocalOnly { reason } => {
            assert!(reason.contains("no logout endpoint"), "{reason}");
            assert!(reason.contains("nothing was revoked"), "{reason}");
        }
        other => panic!("expected LocalOnly, got {other:?}"),
    }
    let recorder = rig.fake.recorder();
    assert_eq!(recorder.count(endpoints::REVOKE_SESSION), 0);
    assert_eq!(recorder.count(endpoints::REVOKE_ALL_SESSIONS), 0);
    // The session is gone locally but, as reported, the token still works.
    assert!(matches!(
        manager.access_token().await,
        Err(AuthError::NotSignedIn)
    ));
    assert!(provider.current_user(&mine).await.is_ok());
}

#[tokio::test]
async fn logout_with_an_expired_token_is_local_only_and_asks_no_one() {
    let rig = rig();
    let session = login_alice(&rig.provider).await;
    rig.clock.advance(rig.fake.settings().access_lifetime);
    let before = rig.fake.recorder().total();
    let outcome = rig.provider.logout(&session).await.unwrap();
    assert!(
        matches!(outcome, LogoutOutcome::LocalOnly { ref reason } if reason.contains("expired"))
    );
    assert_eq!(rig.fake.recorder().total(), before);
}

#[tokio::test]
async fn logout_reports_server_failures() {
    let rig = rig();
    let session = login_alice(&rig.provider).await;
    rig.fake
        .faults()
        .push(endpoints::SESSIONS, authmux_testkit::Fault::Status(503));
    assert!(matches!(
        rig.provider.logout(&session).await,
        Err(AuthError::Server { status: 503, .. })
    ));
    assert_eq!(rig.fake.recorder().count(endpoints::REVOKE_ALL_SESSIONS), 0);
    assert_eq!(rig.fake.sessions_of(ALICE_EMAIL).len(), 1);
}

#[tokio::test]
async fn a_session_of_another_server_is_never_sent_here() {
    let rig = rig();
    let other = rig_in_workspace("x");
    let foreign = login_alice(&other.provider).await;
    let before = rig.fake.recorder().total();
    assert!(matches!(
        rig.provider.current_user(&foreign).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert!(matches!(
        rig.provider.logout(&foreign).await,
        Err(AuthError::InsecureTransport { .. })
    ));
    assert_eq!(rig.fake.recorder().total(), before);
}
