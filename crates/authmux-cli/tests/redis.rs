//! The `authmux` binary with `--store redis://...` on a REAL `redis-server`
//! (`$AUTHMUX_REDIS_URL`, else one started here; skipped loudly without either): a
//! session signed in on one machine (home) and used by others that have no profile,
//! the CLI fleet refreshing once, encryption, `AUTHMUX_STORE`, and Redis being down.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use authmux::SessionStore;
use authmux_redis::RedisStore;
use authmux_testkit::linxio::endpoints;
use authmux_testkit::redis::redis_url;
use authmux_testkit::users::{ALICE_EMAIL, DEFAULT_PASSWORD};
use authmux_testkit::{FakeLinxio, Fault};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_authmux");
/// A base64 32-byte key for the encryption tests (not a secret: a test value).
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

/// `authmux --home <home> <args>` with a clean environment plus `env`.
fn authmux(home: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--home")
        .arg(home.path())
        .args(args)
        .env_remove("AUTHMUX_PASSWORD")
        .env_remove("AUTHMUX_HOME")
        .env_remove("AUTHMUX_STORE")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("authmux runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn login(home: &TempDir, fake: &FakeLinxio, store: &str, extra: &[&str], env: &[(&str, &str)]) {
    let url = fake.base_url().to_string();
    let mut args = vec![
        "--profile",
        "shared",
        "login",
        "--dialect",
        "linxio",
        "--url",
        url.as_str(),
        "--email",
        ALICE_EMAIL,
        "--store",
        store,
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("AUTHMUX_PASSWORD", DEFAULT_PASSWORD));
    let output = run(&mut authmux(home, &args, &env));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

fn unique_key() -> String {
    format!(
        "authmux-cli-test:{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn a_cli_fleet_without_profiles_shares_one_session_and_refreshes_once() {
    let Some(redis) =
        redis_url("a_cli_fleet_without_profiles_shares_one_session_and_refreshes_once")
    else {
        return;
    };
    let url = redis.url();
    let fake = FakeLinxio::builder()
        .access_lifetime(Duration::from_secs(2))
        .reuse_detection(true)
        .start()
        .unwrap();
    let key = unique_key();
    let signer = TempDir::new().unwrap();
    login(&signer, &fake, &url, &["--store-key", &key], &[]);
    // The profile records the store (no secret) and keeps no session file.
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(signer.path().join("profiles/shared/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["shared_store"]["key"], key.as_str());
    assert!(
        config["shared_store"]["url"]
            .as_str()
            .unwrap()
            .starts_with("redis://127.0.0.1:")
    );
    assert!(!signer.path().join("profiles/shared/session.json").exists());

    // After expiry, 4 machines with no profile of their own ask for a token at once;
    // the refresh answer is slow, so they certainly overlap on the Redis lock.
    std::thread::sleep(Duration::from_millis(2100));
    fake.faults()
        .push(endpoints::REFRESH, Fault::Delay(Duration::from_millis(300)));
    let homes: Vec<TempDir> = (0..4).map(|_| TempDir::new().unwrap()).collect();
    let children: Vec<_> = homes
        .iter()
        .map(|home| {
            authmux(
                home,
                &[
                    "--profile",
                    "shared",
                    "token",
                    "--store",
                    &url,
                    "--store-key",
                    &key,
                ],
                &[],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored = rt.block_on(async {
        let store = RedisStore::connect(&url, key.clone()).await.unwrap();
        store.load().await.unwrap().unwrap().session
    });
    for output in &outputs {
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stdout).trim_end(),
            stored.tokens.access.expose_secret()
        );
    }
    assert_eq!(fake.recorder().count(endpoints::REFRESH), 1, "one refresh");
    // Those machines wrote nothing locally.
    for home in &homes {
        assert!(!home.path().join("profiles/shared").exists());
    }
    // And the signer's profile, with no flag, uses the refreshed shared session.
    let output = run(&mut authmux(
        &signer,
        &["--profile", "shared", "token"],
        &[],
    ));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout).trim_end(),
        stored.tokens.access.expose_secret()
    );
}

#[test]
fn an_encrypted_shared_session_needs_the_right_key() {
    let Some(redis) = redis_url("an_encrypted_shared_session_needs_the_right_key") else {
        return;
    };
    let url = redis.url();
    let fake = FakeLinxio::builder().reuse_detection(true).start().unwrap();
    let key = unique_key();
    let signer = TempDir::new().unwrap();
    login(
        &signer,
        &fake,
        &url,
        &["--store-key", &key, "--store-key-env", "FLEET_KEY"],
        &[("FLEET_KEY", KEY_A)],
    );
    let config =
        std::fs::read_to_string(signer.path().join("profiles/shared/config.json")).unwrap();
    assert!(
        config.contains("FLEET_KEY") && !config.contains(KEY_A),
        "{config}"
    );

    // Through AUTHMUX_STORE, on a machine with no profile, with the key: a token.
    let other = TempDir::new().unwrap();
    let args = [
        "--profile",
        "shared",
        "token",
        "--store-key",
        key.as_str(),
        "--store-key-env",
        "FLEET_KEY",
    ];
    let output = run(&mut authmux(
        &other,
        &args,
        &[("AUTHMUX_STORE", &url), ("FLEET_KEY", KEY_A)],
    ));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(!text(&output.stdout).trim().is_empty());

    // Without the variable: a usage error naming it.
    let output = run(&mut authmux(&other, &args, &[("AUTHMUX_STORE", &url)]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("FLEET_KEY"));
    // With another key: exit 3 naming the key id it needs, the stored value untouched.
    let output = run(&mut authmux(
        &other,
        &args,
        &[("AUTHMUX_STORE", &url), ("FLEET_KEY", KEY_B)],
    ));
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("which this store does not have"),
        "{stderr}"
    );
    assert!(!stderr.contains(KEY_B) && !stderr.contains(KEY_A));
    let output = run(&mut authmux(
        &signer,
        &["--profile", "shared", "token"],
        &[("FLEET_KEY", KEY_A)],
    ));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn redis_down_is_a_clear_error_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = TempDir::new().unwrap();
    let store = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let output = run(&mut authmux(&home, &["token", "--store", &store], &[]));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // Not a Redis URL: a usage error.
    let output = run(&mut authmux(
        &home,
        &["token", "--store", "memcached://x"],
        &[],
    ));
    assert_eq!(output.status.code(), Some(2));
}
