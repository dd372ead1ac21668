//! Device authorization (RFC 8628): [`DeviceAuthorization`], what the user is shown and
//! the device keeps polling with, and [`DevicePoll`], the result of one poll.

use std::fmt;
use std::time::{Duration, SystemTime};

use authmux_core::{AuthError, Session};
use serde::Deserialize;
use url::Url;
use zeroize::Zeroizing;

/// The polling interval when the server states none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// A started device authorization. Show the user [`verification_uri`] and
/// [`user_code`] (or [`verification_uri_complete`]); the device code itself is a secret
/// and stays hidden from `Debug`.
///
/// [`verification_uri`]: DeviceAuthorization::verification_uri
/// [`user_code`]: DeviceAuthorization::user_code
/// [`verification_uri_complete`]: DeviceAuthorization::verification_uri_complete
#[derive(Clone)]
pub struct DeviceAuthorization {
    pub(crate) device_code: Zeroizing<String>,
    /// The code the user types at the verification URI.
    pub user_code: String,
    /// Where the user goes to enter the code.
    pub verification_uri: Url,
    /// The verification URI with the code in it, when the server gives one.
    pub verification_uri_complete: Option<Url>,
    /// When the device code expires (the provider's clock).
    pub expires_at: SystemTime,
    /// How long to wait between polls.
    pub interval: Duration,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"** redacted **")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri.as_str())
            .field("expires_at", &self.expires_at)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The result of one poll of a device authorization.
#[derive(Debug)]
pub enum DevicePoll {
    /// The user has not finished yet (`authorization_pending`).
    Pending,
    /// Polling too fast (`slow_down`): wait `interval` (the old one plus 5 s) from now on.
    SlowDown {
        /// The interval to use from now on.
        interval: Duration,
    },
    /// Signed in.
    Complete(Box<Session>),
}

/// The device authorization endpoint's answer (RFC 8628 §3.2).
#[derive(Deserialize)]
pub(crate) struct DeviceAnswer {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: Url,
    #[serde(default)]
    verification_uri_complete: Option<Url>,
    expires_in: f64,
    #[serde(default)]
    interval: Option<f64>,
}

impl DeviceAnswer {
    pub(crate) fn into_authorization(
        self,
        now: SystemTime,
    ) -> Result<DeviceAuthorization, AuthError> {
        let seconds = |value: f64, what: &str| {
            if value.is_finite() && value >= 0.0 {
                Ok(Duration::from_secs_f64(value.min(1e9)))
            } else {
                Err(AuthError::protocol(format!(
                    "device authorization answer: bad `{what}`"
                )))
            }
        };
        if self.device_code.is_empty() || self.user_code.is_empty() {
            return Err(AuthError::protocol(
                "device authorization answer: empty device or user code",
            ));
        }
        let interval = match self.interval {
            Some(value) => seconds(value, "interval")?.max(Duration::from_secs(1)),
            None => DEFAULT_INTERVAL,
        };
        Ok(DeviceAuthorization {
            device_code: Zeroizing::new(self.device_code),
            user_code: self.user_code,
            verification_uri: self.verification_uri,
            verification_uri_complete: self.verification_uri_complete,
            expires_at: now + seconds(self.expires_in, "expires_in")?,
            interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_authorizations_with_the_default_interval() {
        let now = SystemTime::UNIX_EPOCH;
        let answer: DeviceAnswer = serde_json::from_str(
            r#"{"device_code":"dc-secret-1","user_code":"ABCD-EFGH",
                "verification_uri":"https://as.example/device","expires_in":600}"#,
        )
        .unwrap();
        let device = answer.into_authorization(now).unwrap();
        assert_eq!(device.interval, DEFAULT_INTERVAL);
        assert_eq!(device.expires_at, now + Duration::from_secs(600));
        assert!(!format!("{device:?}").contains("dc-secret-1"));
        let bad: DeviceAnswer = serde_json::from_str(
            r#"{"device_code":"d","user_code":"u","verification_uri":"https://a.example/d","expires_in":-1}"#,
        )
        .unwrap();
        assert!(bad.into_authorization(now).is_err());
    }
}
