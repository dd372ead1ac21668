//! Clock skew: Directus states a relative lifetime (`expires`, in milliseconds), which
//! no clock skew can bend; a JWT without `expires` is mapped with its `iat`. Against a
//! `FakeDirectus` 10 minutes behind or ahead of the client (one `ManualClock` shared by
//! the manager and the provider; the fake adds its offset and dates its answers with
//! it), a 20 s token is refreshed once per lifetime, in json and session mode, and every
//! token handed out is one the server accepts: also when the server's clock is a
//! fraction of a second off, asked every half second. (The JWT's `exp` counts from a
//! whole-second `iat`, so it may die up to a second before `expires` says; the local
//! expiry is the earlier of the two, a second off: `authmux_core::token`.)

use std::sync::Arc;
use std::time::Duration;

use authmux_core::{
    AuthProvider, Clock, Credentials, LoginOutcome, ManualClock, RefreshWindow, SessionManager,
};
use authmux_directus::{DirectusConfig, DirectusMode, DirectusProvider};
use authmux_testkit::directus::{DEFAULT_PASSWORD, FakeDirectus, endpoints};
use authmux_testkit::skew;
use authmux_testkit::users::ALICE_EMAIL;
use authmux_testkit::{FakeResponse, Fault};
use http::StatusCode;
use serde_json::json;

const T0: u64 = 1_800_000_000;
const LIFETIME: Duration = Duration::from_secs(20);
/// The lifetime on the local clock: the JWT's, a second off for its whole-second `iat`.
const LOCAL_LIFETIME: Duration = Duration::from_secs(19);
/// The manager refreshes 2 s before expiry (no jitter), so each token serves 17 s.
const LEAD: Duration = Duration::from_secs(2);

struct World {
    clock: ManualClock,
    fake: FakeDirectus,
    provider: Arc<DirectusProvider>,
    manager: SessionManager,
}

fn world(mode: DirectusMode, offset_millis: i64) -> World {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeDirectus::builder()
        .clock(clock.clone())
        .access_ttl(LIFETIME)
        .session_ttl(LIFETIME)
        .start()
        .unwrap();
    fake.set_clock_offset_millis(offset_millis);
    let provider = Arc::new(
        DirectusProvider::new(DirectusConfig::new(fake.base_url().clone()).with_mode(mode))
            .unwrap()
            .with_clock(clock.clone()),
    );
    let manager = SessionManager::builder(provider.clone())
        .clock(clock.clone())
        .refresh_window(RefreshWindow {
            min_lead: LEAD,
            fraction: 0.0,
            jitter: 0.0,
        })
        .build();
    World {
        clock,
        fake,
        provider,
        manager,
    }
}

#[tokio::test]
async fn a_20_s_token_is_refreshed_once_per_lifetime_whatever_the_skew() {
    const SECONDS: u64 = 100;
    // Each token serves LOCAL_LIFETIME - LEAD = 17 s: refreshes at 17, 34, 51, 68 and
    // 85 s.
    let expected = usize::try_from(SECONDS / (LOCAL_LIFETIME - LEAD).as_secs()).unwrap();
    for mode in [DirectusMode::Json, DirectusMode::Session] {
        for offset in skew::OFFSETS_MILLIS {
            let w = world(mode, offset);
            w.manager
                .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
                .await
                .unwrap();
            let session = w.manager.session().unwrap();
            assert_eq!(
                session.tokens.expires_at,
                Some(w.clock.now() + LOCAL_LIFETIME)
            );
            let label = format!("{mode:?}, server clock {offset} ms off");
            skew::every_half_second(&w.manager, &w.clock, &*w.provider, SECONDS * 2, &label).await;
            assert_eq!(
                w.fake.recorder().count(endpoints::REFRESH),
                expected,
                "{mode:?}, server clock {offset} ms off"
            );
        }
    }
}

#[tokio::test]
async fn without_expires_the_jwt_lifetime_counts_from_receipt() {
    for offset in skew::OFFSETS_MILLIS {
        let w = world(DirectusMode::Json, offset);
        // A login answer with no `expires`: only the JWT (issued on the server's clock)
        // tells the expiry.
        let jwt = w
            .fake
            .access_token_at(ALICE_EMAIL, w.fake.now(), LIFETIME)
            .unwrap();
        w.fake.faults().push(
            endpoints::LOGIN,
            Fault::Respond(FakeResponse::json(
                StatusCode::OK,
                &json!({ "data": { "access_token": jwt, "refresh_token": "r" } }),
            )),
        );
        let LoginOutcome::Authenticated(session) = w
            .provider
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap()
        else {
            panic!("no second factor here");
        };
        assert_eq!(
            session.tokens.expires_at,
            Some(w.clock.now() + LOCAL_LIFETIME),
            "server clock {offset} ms off"
        );
        w.provider.current_user(&session).await.unwrap();
    }
}
