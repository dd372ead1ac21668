//! Two-factor set-up for the signed-in user: [`DirectusProvider::tfa_generate`],
//! [`DirectusProvider::tfa_enable`], [`DirectusProvider::tfa_disable`], and the
//! [`TfaSecret`] they hand around.
//!
//! These are authorized calls (`/users/me/tfa/*`, bearer token). Through a
//! [`SessionManager`](authmux_core::SessionManager), run them inside
//! `manager.authorized(|session| ...)` so an expired token is refreshed first.
//! Directus codes are RFC 6238 TOTP (SHA-1, 6 digits, 30 s), checked with no clock
//! tolerance.

use authmux_core::{AuthError, OtpCode, Password, Session};
use http::Method;
use serde_json::{Value, json};

use crate::errors::Context;
use crate::provider::DirectusProvider;
use crate::wire::data_object;

/// Two-factor secret material: the base32 TOTP secret, or the `otpauth://` URL that
/// embeds it (the core's redacted, zeroized [`TotpSecret`](authmux_core::TotpSecret)).
pub type TfaSecret = authmux_core::TotpSecret;

impl DirectusProvider {
    /// `POST /users/me/tfa/generate {password}`: a new TOTP secret for the signed-in
    /// user and its `otpauth://` URL (for a QR code). Nothing is enabled yet: confirm
    /// with [`DirectusProvider::tfa_enable`]. A wrong password is
    /// [`AuthError::InvalidCredentials`] (and so, as Directus cannot tell them apart, is
    /// an access token it does not accept).
    pub async fn tfa_generate(
        &self,
        session: &Session,
        password: &Password,
    ) -> Result<(TfaSecret, TfaSecret), AuthError> {
        let body = json!({ "password": password.expose_secret() });
        let data = self
            .tfa_call(session, "generate", &body, Context::Other)
            .await?;
        let data = data.ok_or_else(|| AuthError::protocol("tfa/generate: no `data` object"))?;
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(TfaSecret::new)
                .ok_or_else(|| AuthError::protocol(format!("tfa/generate: no `{key}`")))
        };
        Ok((text("secret")?, text("otpauth_url")?))
    }

    /// `POST /users/me/tfa/enable {secret, otp}`: turns two-factor on, proving the
    /// authenticator app has `secret` with a current `code`. A wrong code is
    /// [`AuthError::InvalidOtp`].
    pub async fn tfa_enable(
        &self,
        session: &Session,
        secret: &TfaSecret,
        code: &OtpCode,
    ) -> Result<(), AuthError> {
        let body = json!({ "secret": secret.expose_secret(), "otp": code.expose_secret() });
        self.tfa_call(session, "enable", &body, Context::Tfa)
            .await
            .map(drop)
    }

    /// `POST /users/me/tfa/disable {otp}`: turns two-factor off with a current code. A
    /// wrong code is [`AuthError::InvalidOtp`].
    pub async fn tfa_disable(&self, session: &Session, code: &OtpCode) -> Result<(), AuthError> {
        let body = json!({ "otp": code.expose_secret() });
        self.tfa_call(session, "disable", &body, Context::Tfa)
            .await
            .map(drop)
    }

    /// One `/users/me/tfa/<action>` call; the `data` object when the answer has one.
    async fn tfa_call(
        &self,
        session: &Session,
        action: &str,
        body: &Value,
        context: Context,
    ) -> Result<Option<serde_json::Map<String, Value>>, AuthError> {
        let url = self.url(&format!("/users/me/tfa/{action}"));
        let request = self.authorized_request(session, Method::POST, &url, Some(body))?;
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.error(&response, context));
        }
        if response.body().is_empty() || response.status() == http::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        data_object(&response, &format!("tfa/{action}")).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted() {
        let secret = TfaSecret::new("JBSWY3DPEHPK3PXP");
        assert_eq!(format!("{secret:?}"), "TotpSecret(** redacted **)");
        assert_eq!(secret.expose_secret(), "JBSWY3DPEHPK3PXP");
    }
}
