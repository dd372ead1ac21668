//! Clock skew: LinkUTM states expiry only as the JWT's `exp`, on the server's clock.
//! Against a `FakeLinkUtm` 10 minutes behind or ahead of the client (one `ManualClock`;
//! the fake adds its offset), the `SessionManager` serves a 20 s token for its whole
//! life and never after: no "expired on arrival", no token the server already refuses.
//! Sign-ins by password and by the Google callback alike.

mod common;

use std::time::Duration;

use authmux_core::{AuthError, AuthProvider, Clock, Credentials, SessionManager};
use authmux_testkit::linkutm::endpoints;
use authmux_testkit::skew;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use common::{Rig, rig_with};
use url::Url;

const LIFETIME: Duration = Duration::from_secs(20);
/// The lifetime on the local clock: a second off, as the JWT's whole-second `iat` may
/// lag the server's clock by up to a second (`authmux_core::token`).
const LOCAL_LIFETIME: Duration = Duration::from_secs(19);
const FRONT_END: &str = "http://localhost:3000";

fn skewed_rig(offset_millis: i64) -> Rig {
    let rig = rig_with(
        |b| b.access_lifetime(LIFETIME).frontend_url(FRONT_END),
        |c| c.with_frontend_url(Url::parse(FRONT_END).unwrap()),
    );
    rig.fake.set_clock_offset_millis(offset_millis);
    rig
}

fn manager(rig: &Rig) -> SessionManager {
    SessionManager::builder(rig.provider.clone())
        .clock(rig.clock.clone())
        .build()
}

/// Asks for a token every half second: the server accepts each one handed out, until
/// the token's (local) life is over; then the manager says `SessionExpired` and hands
/// out nothing.
async fn serves_its_lifetime_and_never_after(rig: &Rig, manager: &SessionManager) {
    let first = manager.session().unwrap();
    assert_eq!(
        first.tokens.expires_at,
        Some(rig.clock.now() + LOCAL_LIFETIME)
    );
    let requests = rig.fake.recorder().total();
    let asks = LOCAL_LIFETIME.as_secs() * 2 - 1;
    let label = format!("server clock {} ms off", rig.fake.clock_offset_millis());
    let handed_out =
        skew::every_half_second(manager, &rig.clock, &*rig.provider, asks, &label).await;
    assert!(
        handed_out.iter().all(|t| *t == first.tokens.access),
        "{label}: another token without a sign-in"
    );
    assert_eq!(
        rig.fake.recorder().total() - requests,
        usize::try_from(asks).unwrap(),
        "only the profile checks were sent"
    );
    rig.clock.advance(Duration::from_millis(500));
    assert!(matches!(
        manager.usable_session().await,
        Err(AuthError::SessionExpired)
    ));
    // A second later, the server agrees the token is over.
    rig.clock.advance(LIFETIME - LOCAL_LIFETIME);
    assert!(rig.provider.current_user(&first).await.is_err());
}

#[tokio::test]
async fn a_password_sign_in_serves_its_lifetime_whatever_the_skew() {
    for offset in skew::OFFSETS_MILLIS {
        let rig = skewed_rig(offset);
        let manager = manager(&rig);
        manager
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap();
        serves_its_lifetime_and_never_after(&rig, &manager).await;
        assert_eq!(rig.fake.recorder().count(endpoints::LOGIN), 1);
    }
}

#[tokio::test]
async fn a_google_sign_in_serves_its_lifetime_whatever_the_skew() {
    for offset in skew::OFFSETS_MILLIS {
        let rig = skewed_rig(offset);
        let callback = rig
            .fake
            .simulate_google_login("gina@example.com", "Gina")
            .unwrap();
        let session = rig
            .provider
            .oauth()
            .unwrap()
            .complete(&callback)
            .await
            .unwrap_or_else(|e| panic!("server clock {offset} ms off: {e}"));
        let manager = manager(&rig);
        manager.sign_in_with(session).await.unwrap();
        serves_its_lifetime_and_never_after(&rig, &manager).await;
    }
}
