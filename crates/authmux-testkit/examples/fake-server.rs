//! Runs one fake standalone until Ctrl-C: `fake-server <linxio|linkutm|directus> [port]`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line example reports where it listens"
)]

use authmux_testkit::directus::FakeDirectus;
use authmux_testkit::linkutm::FakeLinkUtm;
use authmux_testkit::linxio::FakeLinxio;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dialect = args.next().unwrap_or_else(|| "linxio".to_owned());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let server = match dialect.as_str() {
        "linxio" => FakeLinxio::builder().port(port).start()?.into_server(),
        "linkutm" => FakeLinkUtm::builder().port(port).start()?.into_server(),
        "directus" => FakeDirectus::builder().port(port).start()?.into_server(),
        other => {
            eprintln!("unknown dialect {other:?}: use linxio, linkutm or directus");
            std::process::exit(2);
        }
    };
    println!("fake {dialect} listening on {}", server.base_url());
    println!("sign in as {ALICE_EMAIL} / {DEFAULT_PASSWORD}");
    server.serve_forever()
}
