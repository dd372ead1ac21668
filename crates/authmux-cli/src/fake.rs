//! `authmux fake-server --dialect D [--port P]`: one fake server of the test kit, run
//! standalone until the process is killed, for trying the command line by hand:
//!
//! ```text
//! authmux fake-server --dialect directus --port 8055 &
//! AUTHMUX_PASSWORD='correct horse battery' authmux login --dialect directus \
//!     --url http://127.0.0.1:8055 --email alice@example.com
//! ```

use std::io::Write;

use authmux_testkit::directus::{FakeDirectus, OTP_TOTP_SECRET};
use authmux_testkit::users::User;
use authmux_testkit::{FakeLinkUtm, FakeLinxio, ServerHandle};

use crate::failure::{Failure, UNAVAILABLE};
use crate::output::{self, say};

/// Starts the fake, prints its URL (first line: `fake <dialect> listening on <url>`) and
/// its users, and serves until killed.
pub(crate) fn run(dialect: &str, port: u16) -> Result<(), Failure> {
    let cannot_start = |e: std::io::Error| {
        Failure::new(
            UNAVAILABLE,
            format!("cannot start a fake {dialect} server on port {port}: {e}"),
        )
    };
    let (server, users, two_factor): (ServerHandle, Vec<User>, Option<String>) = match dialect {
        "linxio" => {
            let fake = FakeLinxio::builder()
                .port(port)
                .start()
                .map_err(cannot_start)?;
            let users = fake.users().all();
            (fake.into_server(), users, None)
        }
        "linkutm" => {
            let fake = FakeLinkUtm::builder()
                .port(port)
                .start()
                .map_err(cannot_start)?;
            let users = fake.users().all();
            (fake.into_server(), users, None)
        }
        "directus" => {
            let fake = FakeDirectus::builder()
                .port(port)
                .start()
                .map_err(cannot_start)?;
            let users = fake.users().all();
            (
                fake.into_server(),
                users,
                Some(format!("two-factor on (TOTP secret {OTP_TOTP_SECRET})")),
            )
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Failure::usage(format!(
                "unknown dialect {shown:?}; expected one of linxio, linkutm, directus"
            )));
        }
    };
    say(&format!(
        "fake {dialect} listening on {}",
        server.base_url()
    ));
    let mut rows = vec![vec![
        "EMAIL".to_owned(),
        "PASSWORD".to_owned(),
        "NOTES".to_owned(),
    ]];
    for user in users {
        let mut notes = Vec::new();
        if let Some(code) = &user.otp_code {
            notes.push(match &two_factor {
                Some(text) => text.clone(),
                None => format!("one-time code {code}"),
            });
        }
        if user.forbidden {
            notes.push("refused (forbidden)".to_owned());
        }
        if user.suspended {
            notes.push("suspended".to_owned());
        }
        rows.push(vec![user.email, user.password, notes.join(", ")]);
    }
    say("users (the fake's test accounts):");
    say(&output::table(&rows));
    say("stop it with Ctrl-C");
    let _ = std::io::stdout().flush();
    server.serve_forever()
}
