//! `authmux proxy` against a REAL Directus 12 (as `cargo xtask directus start` runs it,
//! access tokens living a few seconds). Runs when `AUTHMUX_DIRECTUS_URL` is set (with
//! the `AUTHMUX_DIRECTUS_*` variables `eval "$(cargo xtask directus env)"` exports;
//! `cargo xtask ci` sets them); otherwise it says loudly on stderr that it was skipped.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn skip(test: &str, why: &str) {
    let notice = format!(
        "\n************************************************************************\n\
         SKIPPED {test}: {why}\n\
         This live test needs a real Directus 12: run `cargo xtask directus start` and\n\
         `eval \"$(cargo xtask directus env)\"` (cargo xtask ci does this for you).\n\
         ************************************************************************\n"
    );
    let _ = std::io::stderr().lock().write_all(notice.as_bytes());
}

struct Live {
    url: String,
    email: String,
    password: String,
    ttl: Duration,
}

impl Live {
    fn from_env(test: &str) -> Option<Live> {
        let Some(url) = var("AUTHMUX_DIRECTUS_URL") else {
            skip(test, "AUTHMUX_DIRECTUS_URL is not set");
            return None;
        };
        Some(Live {
            url,
            email: var("AUTHMUX_DIRECTUS_ADMIN_EMAIL").expect("AUTHMUX_DIRECTUS_ADMIN_EMAIL"),
            password: var("AUTHMUX_DIRECTUS_ADMIN_PASSWORD")
                .expect("AUTHMUX_DIRECTUS_ADMIN_PASSWORD"),
            ttl: Duration::from_secs(
                var("AUTHMUX_DIRECTUS_ACCESS_TTL_SECS")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(5),
            ),
        })
    }
}

fn authmux(home: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("AUTHMUX_PASSWORD")
        .env_remove("AUTHMUX_HOME")
        .env_remove("AUTHMUX_PROXY_TOKEN")
        .arg("--home")
        .arg(home)
        .args(args);
    cmd
}

struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(home: &std::path::Path) -> Proxy {
        let mut child = authmux(home, &["proxy", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Proxy { child, url }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn session(home: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(home.join("profiles/default/session.json")).unwrap())
        .unwrap()
}

#[test]
fn live_proxy_against_directus() {
    let Some(live) = Live::from_env("live_proxy_against_directus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = authmux(
        &home,
        &[
            "login",
            "--dialect",
            "directus",
            "--url",
            &live.url,
            "--email",
            &live.email,
        ],
    )
    .env("AUTHMUX_PASSWORD", &live.password)
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    let proxy = Proxy::start(&home);
    runtime.block_on(async {
        // An authorized GET; the client's own Authorization is dropped (Directus would
        // refuse this one).
        let answer = client
            .get(proxy.url("/users/me?fields=email"))
            .header("authorization", "Bearer not-a-directus-token")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let me: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        assert_eq!(me["data"]["email"], live.email.as_str());

        // An authorized POST: create a user.
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let email = format!("proxy-{stamp}@example.com");
        let answer = client
            .post(proxy.url("/users"))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({"email": email, "password": "proxy-pass-1234", "status": "active"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        let answer = client
            .get(proxy.url(&format!("/users?filter[email][_eq]={email}&fields=email")))
            .send()
            .await
            .unwrap();
        let found: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        assert_eq!(found["data"][0]["email"], email.as_str());

        // A 32 MiB file: uploaded through the proxy (streamed: larger than the replay
        // limit) and downloaded back through it (streamed), byte for byte.
        const SIZE: usize = 32 * 1024 * 1024;
        let content: Vec<u8> = (0..SIZE).map(|i| u8::try_from(i % 253).unwrap()).collect();
        let boundary = "authmux-live-boundary-7d1f";
        let mut multipart = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        multipart.extend_from_slice(&content);
        multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer = client
            .post(proxy.url("/files"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(multipart)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "upload");
        let file: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
        let id = file["data"]["id"].as_str().unwrap().to_owned();
        let mut answer = client
            .get(proxy.url(&format!("/assets/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "download");
        let mut received = 0usize;
        let mut same = true;
        while let Some(chunk) = answer.chunk().await.unwrap() {
            same &= chunk[..] == content[received..received + chunk.len()];
            received += chunk.len();
        }
        assert_eq!(received, SIZE);
        assert!(same, "the file came back unchanged");

        // Expiry: 20 clients at once after the token's lifetime. Directus rotates the
        // refresh token, so a second refresh with the same one would fail and some of
        // the 20 would not get 200.
        let refresh_before = session(&home)["session"]["tokens"]["refresh"].clone();
        tokio::time::sleep(live.ttl + Duration::from_millis(500)).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (client, url) = (client.clone(), proxy.url("/users/me?fields=email"));
            tasks.spawn(async move { client.get(url).send().await.unwrap().status() });
        }
        while let Some(status) = tasks.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        assert_ne!(
            session(&home)["session"]["tokens"]["refresh"],
            refresh_before,
            "the refresh reached the profile's store"
        );
    });
    drop(proxy);

    // A 401 from Directus itself: the token has expired on the server while the proxy
    // believes it is good for an hour; the proxy refreshes once and replays.
    std::thread::sleep(live.ttl + Duration::from_secs(1));
    let path = home.join("profiles/default/session.json");
    let mut envelope = session(&home);
    let later = SystemTime::now() + Duration::from_secs(3600);
    envelope["session"]["tokens"]["expires_at"] = authmux::timestamp::format(later).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&envelope).unwrap()).unwrap();
    let stale = envelope["session"]["tokens"]["access"].clone();
    let proxy = Proxy::start(&home);
    runtime.block_on(async {
        let answer = client
            .get(proxy.url("/users/me?fields=email"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "replayed after Directus's 401");
    });
    assert_ne!(session(&home)["session"]["tokens"]["access"], stale);
}
