//! `BufferBodiesLayer`: streaming bodies within the limit are read whole and replayed
//! after a `401` (against the Linxio fake, through a hyper-util client); longer ones,
//! and ones whose size hint is over the limit, stream through unread and get the `401`
//! back; a body that fails mid-way fails the same way, after what was read; trailers
//! survive.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use authmux_core::{Credentials, LoginOutcome, Session, SessionManager};
use authmux_linxio::{LinxioConfig, LinxioProvider};
use authmux_testkit::jwt::decode_unverified;
use authmux_testkit::linxio::{FakeLinxio, endpoints};
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_tower::{AuthLayer, BufferBodiesLayer, Buffered, ReplayBody};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

/// A streaming body: these frames one per poll (then, optionally, an error), counting
/// how many were taken; its size hint is whatever the test says (default: unknown).
struct Chunks {
    frames: VecDeque<Frame<Bytes>>,
    fail_at_end: bool,
    hint: SizeHint,
    taken: Arc<AtomicUsize>,
}

impl Chunks {
    fn new(chunks: &[&'static str]) -> Self {
        Self {
            frames: chunks
                .iter()
                .map(|c| Frame::data(Bytes::from_static(c.as_bytes())))
                .collect(),
            fail_at_end: false,
            hint: SizeHint::default(),
            taken: Arc::default(),
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.frames.pop_front() {
            this.taken.fetch_add(1, Ordering::SeqCst);
            return Poll::Ready(Some(Ok(frame)));
        }
        if std::mem::take(&mut this.fail_at_end) {
            return Poll::Ready(Some(Err(io::Error::other("the upload broke"))));
        }
        Poll::Ready(None)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// Every frame of `body`, data as text, in order, and the error that ended it.
async fn drain<B: Body<Data = Bytes> + Unpin>(mut body: B) -> (Vec<String>, Option<String>)
where
    B::Error: std::fmt::Display,
{
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => seen.push(String::from_utf8(data.to_vec()).unwrap()),
                Err(frame) => seen.push(format!("trailers {:?}", frame.into_trailers().unwrap())),
            },
            Err(e) => return (seen, Some(e.to_string())),
        }
    }
    (seen, None)
}

#[tokio::test]
async fn a_body_within_the_limit_is_read_whole_and_copies_send_the_same_bytes() {
    let body = Chunks::new(&["ab", "cd", "ef"]);
    let taken = Arc::clone(&body.taken);
    let buffered = Buffered::read(body, 6).await;
    assert!(buffered.is_buffered());
    assert_eq!(taken.load(Ordering::SeqCst), 3);
    assert_eq!(buffered.size_hint().exact(), Some(6));
    let copy = buffered
        .try_clone_body()
        .expect("a whole body is replayable");
    assert_eq!(drain(buffered).await, (vec!["abcdef".to_owned()], None));
    assert_eq!(drain(copy).await, (vec!["abcdef".to_owned()], None));
}

#[tokio::test]
async fn a_body_past_the_limit_streams_on_in_order_and_is_not_replayable() {
    let body = Chunks::new(&["ab", "cd", "ef", "gh"]);
    let taken = Arc::clone(&body.taken);
    let buffered = Buffered::read(body, 3).await;
    assert!(!buffered.is_buffered());
    assert_eq!(
        taken.load(Ordering::SeqCst),
        2,
        "reading stops past the limit"
    );
    assert!(buffered.try_clone_body().is_none());
    let (frames, error) = drain(buffered).await;
    assert_eq!(frames, ["ab", "cd", "ef", "gh"]);
    assert_eq!(error, None);
}

#[tokio::test]
async fn a_size_hint_over_the_limit_means_nothing_is_read_ahead() {
    let mut body = Chunks::new(&["abcdef"]);
    body.hint = SizeHint::with_exact(6);
    let taken = Arc::clone(&body.taken);
    let buffered = Buffered::read(body, 5).await;
    assert!(!buffered.is_buffered());
    assert_eq!(taken.load(Ordering::SeqCst), 0);
    assert_eq!(buffered.size_hint().exact(), Some(6));
    assert_eq!(drain(buffered).await, (vec!["abcdef".to_owned()], None));
}

#[tokio::test]
async fn a_body_that_fails_while_read_fails_the_same_way_after_what_was_read() {
    let mut body = Chunks::new(&["ab", "cd"]);
    body.fail_at_end = true;
    let buffered = Buffered::read(body, 100).await;
    assert!(!buffered.is_buffered(), "a broken body is never replayed");
    let (frames, error) = drain(buffered).await;
    assert_eq!(frames, ["ab", "cd"]);
    assert_eq!(error.as_deref(), Some("the upload broke"));
}

#[tokio::test]
async fn trailers_are_kept_and_replayed() {
    let mut body = Chunks::new(&["ab"]);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("42"));
    body.frames.push_back(Frame::trailers(trailers));
    let buffered = Buffered::read(body, 10).await;
    assert!(buffered.is_buffered());
    let copy = buffered.try_clone_body().unwrap();
    let expected = vec![
        "ab".to_owned(),
        r#"trailers {"x-checksum": "42"}"#.to_owned(),
    ];
    assert_eq!(drain(buffered).await.0, expected);
    assert_eq!(drain(copy).await.0, expected);
}

// ----- through the layers, against the Linxio fake ---------------------------------------

async fn signed_in() -> (FakeLinxio, SessionManager, Session) {
    let fake = FakeLinxio::start().unwrap();
    let provider = LinxioProvider::new(LinxioConfig::new(fake.base_url().clone())).unwrap();
    let manager = SessionManager::new(Arc::new(provider));
    let LoginOutcome::Authenticated(session) = manager
        .login(&Credentials::new(ALICE_EMAIL, DEFAULT_PASSWORD))
        .await
        .unwrap()
    else {
        panic!("alice needs no code")
    };
    // The server forgets the access token: the next request gets a 401.
    let claims = decode_unverified(session.tokens.access.expose_secret()).unwrap();
    fake.families().revoke_access(&claims.jti);
    (fake, manager, session)
}

async fn post(
    fake: &FakeLinxio,
    manager: &SessionManager,
    body: Chunks,
    limit: usize,
) -> http::StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Buffered<Chunks>>();
    let service = ServiceBuilder::new()
        .layer(BufferBodiesLayer::new(limit))
        .layer(AuthLayer::new(manager.clone()))
        .service(client);
    let request = Request::post(fake.url("/api/vehicles"))
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    service.oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_small_streamed_upload_is_replayed_after_a_401() {
    let (fake, manager, first) = signed_in().await;
    let chunks = [r#"{"name": "#, r#""Truck 7"}"#];
    let status = post(&fake, &manager, Chunks::new(&chunks), 1024).await;
    assert!(status.is_success(), "{status}");
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    let sent = fake.recorder().requests_to(endpoints::CREATE_VEHICLE);
    assert_eq!(sent.len(), 2, "sent, refused, replayed");
    assert_eq!(sent[0].bearer(), Some(first.tokens.access.expose_secret()));
    let now = manager.session().unwrap().tokens.access;
    assert_eq!(sent[1].bearer(), Some(now.expose_secret()));
    for request in &sent {
        assert_eq!(request.body.as_ref(), chunks.concat().as_bytes());
    }
}

#[tokio::test]
async fn a_streamed_upload_past_the_limit_gets_the_401_back_with_the_session_refreshed() {
    let (fake, manager, first) = signed_in().await;
    let chunks = [r#"{"name": "#, r#""Truck 8"}"#];
    let status = post(&fake, &manager, Chunks::new(&chunks), 4).await;
    assert_eq!(status, 401);
    let sent = fake.recorder().requests_to(endpoints::CREATE_VEHICLE);
    assert_eq!(sent.len(), 1, "not replayed");
    assert_eq!(
        sent[0].body.as_ref(),
        chunks.concat().as_bytes(),
        "sent whole"
    );
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1);
    assert_ne!(
        manager.session().unwrap().tokens.access,
        first.tokens.access
    );
}

#[test]
fn buffered_bodies_show_lengths_only_in_debug() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let buffered = rt.block_on(Buffered::read(Chunks::new(&["secret-token"]), 100));
    let shown = format!("{buffered:?}");
    assert!(!shown.contains("secret-token"), "{shown}");
    assert!(shown.contains("len: 12"), "{shown}");
}
