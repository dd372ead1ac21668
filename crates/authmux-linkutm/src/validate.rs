//! Client-side checks LinkUTM documents (email and name required, passwords of at
//! least 8 characters, one-time codes of at least 6), run before anything is sent.
//!
//! A violation is [`AuthError::Validation`] naming the field as it is spelled on the
//! wire (`email`, `name`, `password`, `otp`, `newPassword`, `currentPassword`, `token`),
//! and its message never contains the offending value (it may be a password).

use authmux_core::AuthError;

/// The shortest password LinkUTM accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The shortest one-time code LinkUTM accepts.
pub const MIN_OTP_CHARS: usize = 6;

/// The email, trimmed, if it is present and plausibly shaped: one `@` with a non-empty
/// local part, a domain containing a dot that neither starts nor ends the domain, and
/// no whitespace or control characters.
pub fn email(value: &str) -> Result<&str, AuthError> {
    let email = value.trim();
    if email.is_empty() {
        return Err(AuthError::validation(
            "email",
            "an email address is required",
        ));
    }
    let shaped = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.len() <= 320;
    if shaped {
        Ok(email)
    } else {
        Err(AuthError::validation(
            "email",
            "this does not look like an email address",
        ))
    }
}

/// The display name, trimmed, if it is present.
pub fn name(value: &str) -> Result<&str, AuthError> {
    let name = value.trim();
    if name.is_empty() {
        Err(AuthError::validation("name", "a name is required"))
    } else {
        Ok(name)
    }
}

/// Checks a new password's length (in characters) under the wire name `field`.
pub fn new_password(field: &str, value: &str) -> Result<(), AuthError> {
    if value.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::validation(
            field,
            format!("a password needs at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks that a field holding a secret (current password, reset token) is not empty.
pub fn present(field: &str, value: &str) -> Result<(), AuthError> {
    if value.is_empty() {
        return Err(AuthError::validation(field, "this field is required"));
    }
    Ok(())
}

/// The one-time code, trimmed, if it has at least 6 characters.
pub fn otp(value: &str) -> Result<&str, AuthError> {
    let code = value.trim();
    if code.chars().count() < MIN_OTP_CHARS {
        return Err(AuthError::validation(
            "otp",
            format!("a one-time code has at least {MIN_OTP_CHARS} characters"),
        ));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: AuthError) -> String {
        match err {
            AuthError::Validation { field: Some(f), .. } => f,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(email("  jane@example.com ").unwrap(), "jane@example.com");
        assert!(email("j.doe+tag@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "   ",
            "jane",
            "@example.com",
            "jane@",
            "jane@example",
            "jane@.example.com",
            "jane@example.com.",
            "jane@exa..mple.com",
            "ja ne@example.com",
            "jane@@example.com",
            "a@b@c.com",
        ] {
            assert_eq!(field_of(email(bad).unwrap_err()), "email", "{bad:?}");
        }
    }

    #[test]
    fn names_passwords_codes() {
        assert_eq!(name(" Jane ").unwrap(), "Jane");
        assert_eq!(field_of(name(" \t").unwrap_err()), "name");
        assert!(new_password("password", "12345678").is_ok());
        // Characters, not bytes: 8 two-byte characters pass, 7 do not.
        assert!(new_password("password", "éééééééé").is_ok());
        assert_eq!(
            field_of(new_password("newPassword", "ééééééé").unwrap_err()),
            "newPassword"
        );
        assert_eq!(otp(" 123456 ").unwrap(), "123456");
        assert_eq!(field_of(otp("12345").unwrap_err()), "otp");
        assert_eq!(field_of(otp("  12345  ").unwrap_err()), "otp");
        assert_eq!(
            field_of(present("currentPassword", "").unwrap_err()),
            "currentPassword"
        );
    }

    #[test]
    fn messages_never_echo_the_value() {
        let err = new_password("password", "s3cr3t!").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t!"));
        let err = email("not-an-email-hunter2").unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
