//! `session::Origin` answers as `same_origin` and `same_origin_uri` do (and so as the
//! `url` crate's own origins compare) for generated URLs built to trip its quick
//! comparisons: hosts that extend one another, ports that are prefixes of other ports,
//! default ports written out, user information, other cases, IPv6 written two ways.

use authmux_core::session::{Origin, same_origin};
use proptest::prelude::*;
use url::Url;

/// URL text: a scheme, user information, a host, a port and what follows, each picked
/// from values close to one another.
fn url_text() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![Just("http"), Just("https"), Just("ws"), Just("file")];
    let userinfo = prop_oneof![Just(""), Just("user@"), Just("user:pw@")];
    let host = prop_oneof![
        Just("api.example.com"),
        Just("API.Example.com"),
        Just("api.example.co"),
        Just("api.example.com.evil.test"),
        Just("127.0.0.1"),
        Just("127.0.0.10"),
        Just("[::1]"),
        Just("[0:0:0:0:0:0:0:1]"),
    ];
    let port = prop_oneof![
        Just(""),
        Just(":80"),
        Just(":443"),
        Just(":8"),
        Just(":808"),
        Just(":8080"),
        Just(":08080"),
    ];
    let rest = prop_oneof![
        Just(""),
        Just("/"),
        Just("/x/y"),
        Just("?q=1"),
        Just("#top"),
        Just("@evil.test/x"),
    ];
    (scheme, userinfo, host, port, rest).prop_map(|(scheme, userinfo, host, port, rest)| {
        format!("{scheme}://{userinfo}{host}{port}{rest}")
    })
}

proptest! {
    // Some combinations are not URLs (a `file` URL with a port, text after a port):
    // those are drawn again.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn origin_answers_as_same_origin_does(base in url_text(), other in url_text()) {
        let base_url = Url::parse(&base);
        let url = Url::parse(&other);
        prop_assume!(base_url.is_ok() && url.is_ok());
        let (base_url, url) = (base_url.unwrap(), url.unwrap());
        let origin = Origin::new(&base_url);
        let expected = same_origin(&base_url, &url);
        prop_assert_eq!(expected, base_url.origin() == url.origin(), "{} {}", base, other);
        prop_assert_eq!(origin.contains_url(&url), expected, "{} {}", base, other);
        if matches!(url.scheme(), "http" | "https")
            && let Ok(uri) = other.parse::<http::Uri>()
        {
            prop_assert_eq!(origin.contains_uri(&uri), expected, "{} {}", base, other);
        }
    }
}
