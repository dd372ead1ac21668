//! Clock skew: `LinxioProvider` through `SessionManager` against a `FakeLinxio` whose
//! clock is 10 minutes behind or ahead of the client's (a `ManualClock` shared by the
//! manager and the provider; the fake runs on the same clock plus its offset, and dates
//! its answers with it). Expiry comes as `expireAt` (mapped with the answer's `Date`) or
//! as the JWT's `exp` alone (mapped with its `iat`). Whatever the skew, a 20 s token is
//! refreshed once per lifetime, never on every call, and every token handed out is one
//! the server still accepts: also when the server's clock is a fraction of a second off
//! (its `Date` and `iat` then read up to a second behind it, and its JWT dies up to a
//! second before the 20 s are over), asked every half second.

use std::sync::Arc;
use std::time::Duration;

use authmux_core::{
    AuthProvider, Clock, Credentials, LoginOutcome, ManualClock, RefreshWindow, RetryPolicy,
    SessionManager,
};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::linxio::{ExpiryStyle, FakeLinxio, endpoints};
use authmux_testkit::skew;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};

const T0: u64 = 1_800_000_000;
const LIFETIME: Duration = Duration::from_secs(20);
/// The lifetime on the local clock: a server time in whole seconds (`Date`, `iat`) may
/// read up to a second behind, so a second comes off (`authmux_core::token`).
const LOCAL_LIFETIME: Duration = Duration::from_secs(19);
/// The manager refreshes 2 s before expiry (no jitter), so each token serves 17 s.
const LEAD: Duration = Duration::from_secs(2);
const TEN_MINUTES: i64 = 600_000;

struct World {
    clock: ManualClock,
    fake: FakeLinxio,
    provider: Arc<LinxioProvider>,
    manager: SessionManager,
}

fn world(style: ExpiryStyle, offset_millis: i64, lead: Duration) -> World {
    let clock = ManualClock::at_unix(T0);
    let fake = FakeLinxio::builder()
        .clock(clock.clone())
        .access_lifetime(LIFETIME)
        .expiry(style)
        .start()
        .unwrap();
    fake.set_clock_offset_millis(offset_millis);
    let provider = Arc::new(
        LinxioProvider::new(LinxioConfig::new(fake.base_url().clone()))
            .unwrap()
            .with_clock(clock.clone())
            .with_retry(RetryPolicy::NONE),
    );
    let manager = SessionManager::builder(provider.clone())
        .clock(clock.clone())
        .refresh_window(RefreshWindow {
            min_lead: lead,
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

/// Signs in, then asks for a token every half second for `seconds`: checks the server
/// accepts every token handed out, and returns how many refreshes were sent.
async fn run(w: &World, seconds: u64) -> usize {
    let outcome = w
        .manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap();
    let LoginOutcome::Authenticated(session) = outcome else {
        panic!("alice needs no OTP");
    };
    // The lifetime the server granted, on the local clock, whatever the skew.
    assert_eq!(
        session.tokens.expires_at,
        Some(w.clock.now() + LOCAL_LIFETIME)
    );
    let label = format!("server clock {} ms off", w.fake.clock_offset_millis());
    skew::every_half_second(&w.manager, &w.clock, &*w.provider, seconds * 2, &label).await;
    w.fake.recorder().count(endpoints::REFRESH)
}

async fn refreshes_once_per_lifetime(style: ExpiryStyle) {
    const SECONDS: u64 = 100;
    // Each token serves LOCAL_LIFETIME - LEAD = 17 s: refreshes at 17, 34, 51, 68 and
    // 85 s.
    let expected = usize::try_from(SECONDS / (LOCAL_LIFETIME - LEAD).as_secs()).unwrap();
    for offset in skew::OFFSETS_MILLIS {
        let w = world(style, offset, LEAD);
        let refreshes = run(&w, SECONDS).await;
        assert_eq!(
            refreshes, expected,
            "{style:?}, server clock {offset} ms off: {refreshes} refreshes in {SECONDS} s"
        );
    }
}

#[tokio::test]
async fn expire_at_is_mapped_with_the_date_header() {
    refreshes_once_per_lifetime(ExpiryStyle::ExpireAtAndExp).await;
}

#[tokio::test]
async fn jwt_exp_is_mapped_with_its_iat() {
    refreshes_once_per_lifetime(ExpiryStyle::ExpOnly).await;
}

/// Without refreshing ahead (a zero window), a token is used up to its local expiry:
/// that must not be later than the server's, whose `Date` and `iat` lag its clock by up
/// to a second (read as is, they gave the token almost a second too many).
#[tokio::test]
async fn with_no_window_a_token_is_used_up_to_its_server_expiry_and_not_past_it() {
    const SECONDS: u64 = 60;
    for style in [ExpiryStyle::ExpireAtAndExp, ExpiryStyle::ExpOnly] {
        for offset in skew::OFFSETS_MILLIS {
            let w = world(style, offset, Duration::ZERO);
            let refreshes = run(&w, SECONDS).await;
            // Each token serves its whole local lifetime: refreshes at 19 s, 38 s, 57 s.
            let expected = usize::try_from(SECONDS / LOCAL_LIFETIME.as_secs()).unwrap();
            assert_eq!(
                refreshes, expected,
                "{style:?}, server clock {offset} ms off"
            );
        }
    }
}

#[tokio::test]
async fn a_token_past_its_server_expiry_is_never_handed_out() {
    for offset in [-TEN_MINUTES, TEN_MINUTES + 900] {
        let w = world(ExpiryStyle::ExpireAtAndExp, offset, LEAD);
        w.manager
            .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
            .await
            .unwrap();
        let first = w.manager.session().unwrap();
        // Past the token's life: the manager must not hand it out, and refreshes once.
        w.clock.advance(LIFETIME + Duration::from_secs(1));
        let session = w.manager.usable_session().await.unwrap();
        assert_ne!(session.tokens.access, first.tokens.access);
        assert_eq!(w.fake.recorder().count(endpoints::REFRESH), 1);
        w.provider.current_user(&session).await.unwrap();
        // The old token is indeed refused by the server.
        assert!(w.provider.current_user(&first).await.is_err());
    }
}
